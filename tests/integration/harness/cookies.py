"""Stickiness cookies: reading Set-Cookie, checking the one wharfd issues,
tampering with it, sending it back."""

import re


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
