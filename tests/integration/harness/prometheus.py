"""The Prometheus text format wharfd's /metrics answers in: parsing it and
picking one series."""

import re


_METRIC_LINE = re.compile(
    r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+]?(?:[0-9.]+(?:[eE][-+]?[0-9]+)?|NaN|[-+]?Inf))(\s+-?[0-9]+)?$")


def parse_prometheus(text):
    """Prometheus text exposition format -> ({name: [(labels, float)]},
    {name: type}); raises AssertionError on a line that is neither a
    comment nor a sample, a second TYPE line for a name, or a repeated
    series (same name and labels)."""
    samples, types = {}, {}
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                if parts[2] in types:
                    raise AssertionError("second TYPE line for %s" % parts[2])
                types[parts[2]] = parts[3].strip()
            continue
        m = _METRIC_LINE.match(line)
        if not m:
            raise AssertionError("not a Prometheus sample line: %r" % line)
        series = samples.setdefault(m.group(1), [])
        labels = m.group(2) or ""
        if any(lb == labels for lb, _ in series):
            raise AssertionError("repeated series %s%s" % (m.group(1), labels))
        series.append((labels, float(m.group(3))))
    return samples, types


def labels_of(lb):
    """'{a="x",b="y"}' -> {"a": "x", "b": "y"}."""
    out = {}
    inner = lb.strip("{}")
    for part in inner.split(","):
        if part:
            k, _, v = part.partition("=")
            out[k.strip()] = v.strip().strip('"')
    return out


def metric_value(samples, name, **labels):
    """The value of name{labels...} (other labels ignored only when one
    series matches); None when absent."""
    matches = [v for lb, v in samples.get(name, []) if all(labels_of(lb).get(k) == v2 for k, v2 in labels.items())]
    if not matches:
        return None
    assert len(matches) == 1, "%s%s matches %d series" % (name, labels, len(matches))
    return matches[0]
