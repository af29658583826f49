"""Header rewriting on proxied requests: X-Forwarded-For/-Proto/-Port,
X-Request-Id, and removal of hop-by-hop headers (both directions)."""

import pytest

from harness.http_message import REQUEST_ID_RE
from harness.upstreams import Response

pytestmark = pytest.mark.timeout(30)


def _one_request(upstream, wharfd, headers=(), handler=None):
    up = upstream(handler)
    wd = wharfd([up])
    r = wd.get("/h", headers=headers)
    assert r.status == 200, r
    return wd, up.wait_for_requests(1)[0], r


def test_proxy_sets_x_forwarded_for_to_client_address(upstream, wharfd):
    _, req, _ = _one_request(upstream, wharfd)
    assert req.headers.get_all("x-forwarded-for") == ["127.0.0.1"], list(req.headers)


def test_proxy_appends_client_address_to_x_forwarded_for(upstream, wharfd):
    _, req, _ = _one_request(upstream, wharfd, headers=[("X-Forwarded-For", "1.2.3.4")])
    assert req.headers.get("x-forwarded-for") == "1.2.3.4, 127.0.0.1", list(req.headers)


def test_proxy_appends_to_x_forwarded_for_chain(upstream, wharfd):
    _, req, _ = _one_request(upstream, wharfd, headers=[("X-Forwarded-For", "1.2.3.4, 5.6.7.8")])
    assert req.headers.get("x-forwarded-for") == "1.2.3.4, 5.6.7.8, 127.0.0.1", list(req.headers)


def test_proxy_sets_x_forwarded_proto_http(upstream, wharfd):
    _, req, _ = _one_request(upstream, wharfd)
    assert req.headers.get_all("x-forwarded-proto") == ["http"], list(req.headers)


def test_proxy_sets_x_forwarded_port_to_listener_port(upstream, wharfd):
    wd, req, _ = _one_request(upstream, wharfd)
    assert req.headers.get_all("x-forwarded-port") == [str(wd.port)], list(req.headers)


def test_proxy_replaces_client_supplied_x_forwarded_proto_and_port(upstream, wharfd):
    wd, req, _ = _one_request(upstream, wharfd, headers=[("X-Forwarded-Proto", "https"),
                                                         ("X-Forwarded-Port", "443")])
    assert req.headers.get_all("x-forwarded-proto") == ["http"], (
        "a client must not be able to spoof X-Forwarded-Proto: %r" % list(req.headers))
    assert req.headers.get_all("x-forwarded-port") == [str(wd.port)], (
        "a client must not be able to spoof X-Forwarded-Port: %r" % list(req.headers))


@pytest.mark.parametrize("rid", ["abc", "A.b_c-9", "0", "x" * 128, "req-2024.01_01-ABCDEF"],
                         ids=["short", "all-classes", "one-char", "128-chars", "typical"])
def test_proxy_keeps_valid_x_request_id(rid, upstream, wharfd):
    _, req, _ = _one_request(upstream, wharfd, headers=[("X-Request-Id", rid)])
    assert req.headers.get_all("x-request-id") == [rid], list(req.headers)


def test_proxy_generates_x_request_id_when_absent(upstream, wharfd):
    _, req, _ = _one_request(upstream, wharfd)
    ids = req.headers.get_all("x-request-id")
    assert len(ids) == 1 and ids[0], "expected one generated X-Request-Id: %r" % list(req.headers)
    assert REQUEST_ID_RE.match(ids[0]), (
        "generated X-Request-Id %r is not itself a valid id (1-128 of [A-Za-z0-9._-])" % ids[0])


def test_proxy_generated_request_ids_differ(upstream, wharfd):
    up = upstream()
    wd = wharfd([up])
    for i in range(5):
        assert wd.get("/id/%d" % i).status == 200
    ids = [r.headers.get("x-request-id") for r in up.requests()]
    assert all(ids) and len(set(ids)) == 5, "generated request ids are not unique: %r" % ids


@pytest.mark.parametrize("bad", ["", "x" * 129, "has space", "slash/es", "semi;colon", "quote\"d", "a,b", "ab+cd"],
                         ids=["empty", "129-chars", "space", "slash", "semicolon", "quote", "comma", "plus"])
def test_proxy_replaces_invalid_x_request_id(bad, upstream, wharfd):
    _, req, _ = _one_request(upstream, wharfd, headers=[("X-Request-Id", bad)])
    ids = req.headers.get_all("x-request-id")
    assert len(ids) == 1, "expected exactly one X-Request-Id at the upstream: %r" % list(req.headers)
    assert ids[0] and ids[0] != bad, "invalid X-Request-Id %r was kept: %r" % (bad, ids)
    assert REQUEST_ID_RE.match(ids[0]), "generated X-Request-Id %r is not a valid id" % ids[0]


REQUEST_HOP_BY_HOP = [
    ("Connection", "keep-alive, X-Custom-Hop"),
    ("X-Custom-Hop", "secret"),
    ("Keep-Alive", "timeout=5, max=100"),
    ("TE", "trailers"),
    ("Trailer", "X-Checksum"),
    ("Upgrade", "h2c"),
    ("Proxy-Authorization", "Basic dXNlcjpwYXNz"),
    ("Proxy-Connection", "keep-alive"),
]


def test_proxy_removes_hop_by_hop_request_headers(upstream, wharfd):
    _, req, _ = _one_request(upstream, wharfd, headers=REQUEST_HOP_BY_HOP + [("X-Keep-Me", "yes")])
    names = req.headers.names_lower()
    leaked = [n for n in ("x-custom-hop", "keep-alive", "te", "trailer", "upgrade", "proxy-authorization",
                          "proxy-connection") if n in names]
    assert not leaked, "hop-by-hop headers reached the upstream: %s\nall: %r" % (leaked, list(req.headers))
    for value in req.headers.get_all("connection"):
        tokens = {t.strip().lower() for t in value.split(",")}
        assert tokens <= {"keep-alive", "close"}, (
            "the client's Connection header (or its tokens) reached the upstream: %r" % list(req.headers))
    assert req.headers.get_all("x-keep-me") == ["yes"], "an end-to-end header was lost: %r" % list(req.headers)


@pytest.mark.parametrize("name", ["X-Custom-Hop", "Keep-Alive", "TE", "Trailer", "Upgrade",
                                  "Proxy-Authorization", "Proxy-Connection"])
def test_proxy_removes_each_hop_by_hop_request_header(name, upstream, wharfd):
    headers = [(name, "v")]
    if name == "X-Custom-Hop":
        headers.insert(0, ("Connection", "X-Custom-Hop"))
    if name == "TE":
        headers = [("TE", "trailers")]
    _, req, _ = _one_request(upstream, wharfd, headers=headers)
    assert not req.headers.has(name), "%s reached the upstream: %r" % (name, list(req.headers))


def test_proxy_removes_hop_by_hop_response_headers(upstream, wharfd):
    handler = lambda req: Response(200, body=b"ok", headers=[
        ("Connection", "X-Resp-Hop"), ("X-Resp-Hop", "internal"), ("Keep-Alive", "timeout=1"),
        ("X-End-To-End", "kept")])
    _, _, r = _one_request(upstream, wharfd, handler=handler)
    names = r.headers.names_lower()
    assert "x-resp-hop" not in names, "a header named by the upstream's Connection reached the client: %r" % r
    assert "keep-alive" not in names, "the upstream's Keep-Alive reached the client: %r" % r
    for value in r.headers.get_all("connection"):
        assert "x-resp-hop" not in value.lower(), r
    assert r.headers.get("x-end-to-end") == "kept", r
    assert r.body == b"ok"


def test_proxy_forwards_end_to_end_request_headers_unchanged(upstream, wharfd):
    sent = [("Accept", "text/html"), ("Cookie", "a=1; b=2"), ("X-Multi", "one"), ("X-Multi", "two"),
            ("Authorization", "Bearer t0k3n"), ("X-Empty", ""), ("X-Tab", "a\tb")]
    _, req, _ = _one_request(upstream, wharfd, headers=sent)
    assert req.headers.get_all("x-multi") == ["one", "two"] or req.headers.get("x-multi") == "one, two", (
        list(req.headers))
    for k, v in sent:
        if k != "X-Multi":
            assert req.headers.get_all(k) == [v], "%s changed on the way: %r" % (k, list(req.headers))
