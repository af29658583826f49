"""Helpers for the listener-rules and load-balancing tests (test_rules.py,
test_lb_algorithms.py): config builders in CONFIG.md's shape (rules,
conditions, actions, weighted forwards, algorithms, stickiness), a curl
runner, a keep-alive split counter and stickiness-cookie checks.

Builds on conftest.py (imported as `wharf_proxy_harness`), helpers3.py and
helpers4.py; starts nothing itself (processes come from their fixtures)."""

import collections
import json
import re
import subprocess
import threading
import time

from wharf_proxy_harness import LOOPBACK, Array, RawClient, parse_head, parse_status_line

# --------------------------------------------------------------------------
# configuration


def addr_of(t):
    return t if isinstance(t, str) else t.addr


def tg(name, targets, **settings):
    """A target group: targets are upstreams/servers (.addr), "IP:port" or
    (target, weight) pairs (rendered as { address; weight; })."""
    g = {"name": name}
    g.update(settings)
    out = []
    for t in targets:
        if isinstance(t, tuple):
            out.append({"address": addr_of(t[0]), "weight": t[1]})
        else:
            out.append(addr_of(t))
    g["targets"] = out
    return g


def fwd(*groups):
    """forward = ( ... ): fwd("a") or fwd(("a", 90), ("b", 10))."""
    out = []
    for g in groups:
        if isinstance(g, tuple):
            out.append({"target_group": g[0], "weight": g[1]})
        else:
            out.append({"target_group": g})
    return out


def cond(**kw):
    """conditions = { ... }: list values become libconfig arrays; header and
    query stay blocks (their values too become arrays)."""
    out = {}
    for k, v in kw.items():
        if k in ("header", "query"):
            v = dict(v)
            v["values"] = Array(v["values"])
            out[k] = v
        else:
            out[k] = Array(v)
    return out


def rule(priority, conditions, **action):
    r = {"priority": priority, "conditions": conditions}
    r.update(action)
    return r


def listener(name, port, default_action, rules=None, **extra):
    lst = {"name": name, "bind": "%s:%d" % (LOOPBACK, port), "protocol": "http"}
    lst.update(extra)
    if rules is not None:
        lst["rules"] = list(rules)
    lst["default_action"] = default_action
    return lst


def config(listeners, groups, workers=2, log_level="info", admin=None, timeouts=None):
    t = {"shutdown_drain": 1}
    t.update(timeouts or {})
    cfg = {"workers": workers, "log": {"level": log_level}, "timeouts": t,
           "listeners": list(listeners), "target_groups": list(groups)}
    if admin is not None:
        cfg["admin"] = admin
    return cfg


def admin_block(admin_port, token_file):
    return {"bind": "%s:%d" % (LOOPBACK, admin_port), "token_file": str(token_file), "metrics_public": True}


# --------------------------------------------------------------------------
# responses


def upstream_of(resp):
    """The name of the upstream that answered: the JSON body of conftest's
    default handler, else the X-Upstream header (helpers4.HealthServer)."""
    assert resp.status == 200, "expected a proxied 200, got %r" % (resp,)
    name = resp.headers.get("x-upstream")
    if name is None:
        name = resp.json()["upstream"]
    return name


def get(port, target="/", headers=(), host="wharf.test", method="GET"):
    """One request on a fresh connection."""
    with RawClient(port) as c:
        return c.request(method, target, headers=headers, host=host)


def curl(port, path, host=None, resolve=None, headers=(), method=None, timeout=5):
    """Run curl against wharfd: with resolve=NAME the URL is
    http://NAME:PORT/path and --resolve NAME:PORT:127.0.0.1 (curl then sends
    Host: NAME:PORT); else http://127.0.0.1:PORT/path. host= adds an explicit
    Host header. Returns (status, Headers, body); never follows redirects."""
    if resolve:
        url = "http://%s:%d%s" % (resolve, port, path)
    else:
        url = "http://%s:%d%s" % (LOOPBACK, port, path)
    cmd = ["curl", "-sS", "-i", "--noproxy", "*", "--max-time", str(timeout), "--path-as-is"]
    if resolve:
        cmd += ["--resolve", "%s:%d:%s" % (resolve, port, LOOPBACK)]
    if method:
        cmd += ["-X", method]
    if host is not None:
        cmd += ["-H", "Host: %s" % host]
    for k, v in headers:
        cmd += ["-H", "%s: %s" % (k, v)]
    cmd.append(url)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout + 5)
    assert p.returncode == 0, "curl %s failed (%d): %s" % (" ".join(cmd), p.returncode, p.stderr.decode(errors="replace"))
    out = p.stdout
    idx = out.find(b"\r\n\r\n")
    assert idx >= 0, "curl output without a head: %r" % out[:500]
    start, hdrs = parse_head(out[:idx], "response to curl")
    _, status, _ = parse_status_line(start)
    return status, hdrs, out[idx + 4:]


def curl_upstream(port, path, **kw):
    status, hdrs, body = curl(port, path, **kw)
    assert status == 200, "curl %s -> %d %r %r" % (path, status, list(hdrs), body[:300])
    return json.loads(body)["upstream"]


# --------------------------------------------------------------------------
# load: a weighted split over keep-alive connections


def split_counts(port, n, threads=2, path="/split", headers=()):
    """n GETs spread over `threads` keep-alive connections (one per thread).
    Returns (Counter of upstream names, [Counter per connection], seconds).
    Every response must be a 200 from an upstream; the first failure
    (exception text) fails the caller's assertion via the returned errors."""
    per = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]
    results = [collections.Counter() for _ in range(threads)]
    errors = []

    def run(i):
        try:
            with RawClient(port, timeout=10) as c:
                for k in range(per[i]):
                    r = c.request("GET", "%s/%d/%d" % (path, i, k), headers=headers)
                    if r.status != 200:
                        raise AssertionError("request %d on connection %d: %r" % (k, i, r))
                    results[i][upstream_of(r)] += 1
                    if "close" in (r.headers.get("connection") or "").lower():
                        raise AssertionError("wharfd closed keep-alive connection %d after %d requests: %r"
                                             % (i, k + 1, r))
        except Exception as e:  # reported by the caller
            errors.append("connection %d: %s: %s" % (i, type(e).__name__, e))

    ts = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(threads)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=120)
    dt = time.monotonic() - t0
    assert not errors, errors[:5]
    assert not any(t.is_alive() for t in ts), "load threads still running after 120 s"
    total = collections.Counter()
    for c in results:
        total.update(c)
    assert sum(total.values()) == n, (n, total)
    return total, results, dt


# --------------------------------------------------------------------------
# stickiness cookies

# RFC 6265 cookie-octet: no CTLs, whitespace, DQUOTE, comma, semicolon, backslash
COOKIE_OCTETS = re.compile(r"^[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]+$")


def set_cookies(resp, name):
    """The values of the Set-Cookie lines of resp for cookie `name`:
    [(value, [attributes])]."""
    out = []
    for line in resp.headers.get_all("set-cookie"):
        parts = [p.strip() for p in line.split(";")]
        k, sep, v = parts[0].partition("=")
        if sep and k.strip() == name:
            out.append((v.strip(), [p for p in parts[1:] if p]))
    return out


def sticky_cookie(resp, name, max_age):
    """Assert resp carries exactly one `Set-Cookie: NAME=VALUE; Path=/;
    Max-Age=MAX_AGE; HttpOnly` (attributes in any order) and return VALUE."""
    found = set_cookies(resp, name)
    assert len(found) == 1, "expected one Set-Cookie for %s, got %r in %r" % (
        name, found, resp.headers.get_all("set-cookie"))
    value, attrs = found[0]
    assert value and COOKIE_OCTETS.match(value), "cookie %s has an invalid value %r" % (name, value)
    expected = {"Path=/", "Max-Age=%d" % max_age, "HttpOnly"}
    assert sorted(attrs) == sorted(expected), "Set-Cookie %s attributes %r, expected exactly %r" % (
        name, attrs, sorted(expected))
    return value


def tamper(value):
    """value with one character in its middle replaced by another base64url
    character (still a well-formed cookie, no longer the one issued)."""
    i = len(value) // 2
    c = value[i]
    repl = "B" if c != "B" else "C"
    return value[:i] + repl + value[i + 1:]


def cookie_header(name, value, others=()):
    parts = list(others[:1]) + ["%s=%s" % (name, value)] + list(others[1:])
    return [("Cookie", "; ".join(parts))]
