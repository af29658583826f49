"""Forwarding and message framing through wharfd: client keep-alive, the
upstream connection pool, pipelining, chunked bodies both ways,
Expect: 100-continue, HEAD/204/304, close-delimited responses, HTTP/1.0."""

import pytest

from harness.http_client import RawClient
from harness.polling import wait_until
from harness.upstreams import Response, echo_handler

pytestmark = pytest.mark.timeout(30)


def test_proxy_forwards_get_and_returns_upstream_response(upstream, wharfd):
    up = upstream(name="origin")
    wd = wharfd([up])
    r = wd.get("/hello?x=1")
    assert r.status == 200, r
    assert r.json()["upstream"] == "origin"
    req = up.wait_for_requests(1)[0]
    assert (req.method, req.target) == ("GET", "/hello?x=1")


def test_proxy_content_length_body_forwarded_exactly(upstream, wharfd):
    up = upstream(echo_handler)
    wd = wharfd([up])
    body = bytes(range(256)) * 4096  # 1 MiB, every byte value
    r = wd.request("POST", "/upload", body=body)
    assert r.status == 200, r
    req = up.wait_for_requests(1)[0]
    assert req.headers.get("content-length") == str(len(body)), req.headers
    assert req.body == body, "upstream received a different body (%d bytes)" % len(req.body)
    assert r.body == body, "client received a different echoed body (%d bytes)" % len(r.body)


def test_proxy_client_keepalive_serves_several_requests_on_one_connection(upstream, wharfd):
    up = upstream()
    wd = wharfd([up])
    with wd.client() as c:
        for i in range(5):
            r = c.request("GET", "/ka/%d" % i)
            assert r.status == 200, "request %d on the kept-alive client connection: %r" % (i, r)
            assert r.json()["target"] == "/ka/%d" % i
    assert [x.target for x in up.requests()] == ["/ka/%d" % i for i in range(5)]


def test_proxy_upstream_pool_reuses_one_connection_for_sequential_requests(upstream, wharfd):
    up = upstream()
    wd = wharfd([up], workers=1)
    n = 6
    with wd.client() as c:
        for i in range(n):
            assert c.request("GET", "/pool/%d" % i).status == 200
    conns = up.connections()
    assert len(conns) == 1, "expected one pooled upstream connection for %d sequential requests, got %d:\n%s" % (
        n, len(conns), up.describe())
    assert conns[0].targets() == ["/pool/%d" % i for i in range(n)]
    assert not conns[0].closed, "wharfd closed the pooled upstream connection:\n" + up.describe()


def test_proxy_upstream_pool_reused_across_client_connections(upstream, wharfd):
    up = upstream()
    wd = wharfd([up], workers=1)
    for i in range(4):
        assert wd.get("/across/%d" % i).status == 200
    conns = up.connections()
    assert len(conns) == 1, (
        "with workers = 1, sequential requests from separate client connections should share one pooled "
        "upstream connection; upstream saw %d:\n%s" % (len(conns), up.describe()))


def test_proxy_pipelined_requests_answered_in_order(upstream, wharfd):
    def h(req):
        # the first answer is the slowest: order must come from wharfd, not luck
        return Response(200, body=req.target.encode(), delay=0.3 if req.target == "/p1" else 0)
    up = upstream(h)
    wd = wharfd([up])
    with wd.client() as c:
        c.send(b"".join(RawClient.build_request("GET", "/p%d" % i) for i in (1, 2, 3)))
        bodies = [c.read_response().body for _ in range(3)]
    assert bodies == [b"/p1", b"/p2", b"/p3"], "pipelined responses out of order or wrong: %r" % bodies


def test_proxy_pipelined_requests_with_bodies_answered_in_order(upstream, wharfd):
    up = upstream(lambda req: Response(200, body=req.method.encode() + b" " + req.target.encode() + b" " + req.body))
    wd = wharfd([up])
    with wd.client() as c:
        c.send(RawClient.build_request("POST", "/a", body=b"first")
               + RawClient.build_request("GET", "/b")
               + RawClient.build_request("PUT", "/c", body=b"third"))
        got = [c.read_response(m).body for m in ("POST", "GET", "PUT")]
    assert got == [b"POST /a first", b"GET /b ", b"PUT /c third"], got


def test_proxy_chunked_request_body_forwarded_well_framed(upstream, wharfd):
    up = upstream(echo_handler)
    wd = wharfd([up])
    pieces = [b"hello ", b"chunked ", b"x" * 5000, b" world"]
    with wd.client() as c:
        c.send(b"POST /chunked-up HTTP/1.1\r\nHost: wharf.test\r\nTransfer-Encoding: chunked\r\n\r\n")
        c.send(b"%x\r\n%s\r\n" % (len(pieces[0]), pieces[0]))
        # the head is forwarded before the body is complete (bodies stream)
        up.wait_for_partial_head("/chunked-up")
        for p in pieces[1:]:
            c.send(b"%x\r\n%s\r\n" % (len(p), p))
        c.send(b"0\r\n\r\n")
        r = c.read_response("POST")
    assert r.status == 200, r
    req = up.wait_for_requests(1)[0]
    assert req.chunked, "upstream request is not chunked: headers %r" % list(req.headers)
    assert not req.headers.has("content-length")
    assert req.body == b"".join(pieces)
    assert r.body == b"".join(pieces)
    assert up.connections()[0].parse_error is None


def test_proxy_chunked_request_with_extension_and_trailer_forwarded_well_framed(upstream, wharfd):
    up = upstream(echo_handler)
    wd = wharfd([up])
    with wd.client() as c:
        c.send(b"POST /trailers HTTP/1.1\r\nHost: wharf.test\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n")
        r = c.read_response("POST")
    assert r.status == 200, r
    req = up.wait_for_requests(1)[0]
    assert req.body == b"hello world"
    conn = up.connections()[0]
    assert conn.parse_error is None and conn.partial_head is None, up.describe()


def test_proxy_chunked_response_relayed(upstream, wharfd):
    chunks = [b"first,", b"second,", b"y" * 10000, b"last"]
    up = upstream(lambda req: Response(200, chunked=True, chunks=chunks, chunk_delay=0.05))
    wd = wharfd([up])
    with wd.client() as c:
        r = c.request("GET", "/chunked-down")
        assert r.status == 200, r
        assert r.body == b"".join(chunks)
        # the client connection is still usable afterwards
        assert c.request("GET", "/after").status == 200


def test_proxy_close_delimited_response_relayed(upstream, wharfd):
    up = upstream(lambda req: Response(200, body=b"no length, ends at close", content_length=False))
    wd = wharfd([up])
    with wd.client() as c:
        r = c.request("GET", "/eof-body")
        assert r.status == 200 and r.body == b"no length, ends at close", r


def test_proxy_expect_100_continue_answered_by_wharfd_and_not_forwarded(upstream, wharfd):
    up = upstream(echo_handler)
    wd = wharfd([up])
    body = b"the body after 100"
    with wd.client() as c:
        c.send(b"POST /expect HTTP/1.1\r\nHost: wharf.test\r\nExpect: 100-continue\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body))
        interim = c.read_response("POST", return_interim=True)
        assert interim.status_line == "HTTP/1.1 100 Continue", (
            "expected wharfd to answer 'HTTP/1.1 100 Continue' before the body is sent; got %r" % interim)
        c.send(body)
        r = c.read_response("POST")
    assert r.status == 200, r
    assert r.body == body
    req = up.wait_for_requests(1)[0]
    assert not req.headers.has("expect"), "Expect was forwarded to the upstream: %r" % list(req.headers)
    assert req.body == body


@pytest.mark.parametrize("status", [100, 103])
def test_proxy_upstream_interim_response_then_final_response(status, upstream, wharfd):
    interim = b"HTTP/1.1 100 Continue" if status == 100 else b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>"
    up = upstream(lambda req: Response(200, body=b"final", interim=[interim]))
    wd = wharfd([up])
    with wd.client() as c:
        r = c.request("GET", "/interim")
        assert r.status == 200 and r.body == b"final", r
        r2 = c.request("GET", "/interim-again")
        assert r2.status == 200 and r2.body == b"final", r2


def test_proxy_head_response_has_no_body_and_connection_stays_usable(upstream, wharfd):
    body = b"z" * 1234
    up = upstream(lambda req: Response(200, body=body))
    wd = wharfd([up])
    with wd.client() as c:
        r = c.request("HEAD", "/head")
        assert r.status == 200, r
        assert r.headers.get("content-length") == "1234", (
            "HEAD response lost the upstream's Content-Length: %r" % list(r.headers))
        r2 = c.request("GET", "/after-head")
        assert r2.status == 200 and r2.body == body, "request after HEAD on the same connection: %r" % r2
    assert [x.method for x in up.requests()] == ["HEAD", "GET"]


def test_proxy_head_response_with_chunked_header_has_no_body(upstream, wharfd):
    up = upstream(lambda req: Response(200, body=b"chunky", chunked=True))
    wd = wharfd([up])
    with wd.client() as c:
        assert c.request("HEAD", "/head-chunked").status == 200
        r2 = c.request("GET", "/after")
        assert r2.status == 200 and r2.body == b"chunky", r2


def test_proxy_204_response_framed_without_body(upstream, wharfd):
    up = upstream(lambda req: Response(204) if req.target == "/204" else Response(200, body=b"next"))
    wd = wharfd([up])
    with wd.client() as c:
        r = c.request("GET", "/204")
        assert r.status == 204, r
        assert not r.headers.has("transfer-encoding"), "204 must not carry Transfer-Encoding: %r" % r
        r2 = c.request("GET", "/after-204")
        assert r2.status == 200 and r2.body == b"next", "request after 204 on the same connection: %r" % r2


def test_proxy_304_response_framed_without_body(upstream, wharfd):
    up = upstream(lambda req: Response(304, headers=[("ETag", '"v1"')]) if req.target == "/304"
                  else Response(200, body=b"next"))
    wd = wharfd([up])
    with wd.client() as c:
        r = c.request("GET", "/304", headers=[("If-None-Match", '"v1"')])
        assert r.status == 304 and r.headers.get("etag") == '"v1"', r
        assert not r.headers.has("transfer-encoding"), "304 must not carry Transfer-Encoding: %r" % r
        r2 = c.request("GET", "/after-304")
        assert r2.status == 200 and r2.body == b"next", "request after 304 on the same connection: %r" % r2


def test_proxy_304_with_content_length_has_no_body(upstream, wharfd):
    # RFC 9110 8.6: a 304 may carry the Content-Length of the representation; it never has a body.
    up = upstream(lambda req: Response(304, headers=[("Content-Length", "500")]) if req.target == "/304"
                  else Response(200, body=b"next"))
    wd = wharfd([up])
    with wd.client() as c:
        assert c.request("GET", "/304").status == 304
        r2 = c.request("GET", "/after-304", timeout=3)
        assert r2.status == 200 and r2.body == b"next", r2
    conns = up.connections()
    assert len(conns) == 1 and conns[0].targets() == ["/304", "/after-304"], (
        "upstream connection should be reused after a 304 with Content-Length:\n" + up.describe())


def test_proxy_path_forwarded_verbatim(upstream, wharfd):
    up = upstream()
    wd = wharfd([up])
    target = "/a/../b/./%2e%2E/c%2Fd//e?q=%20x&y=1&&z=/../"
    assert wd.get(target).status == 200
    assert up.wait_for_requests(1)[0].target == target


def test_proxy_host_header_forwarded_unchanged(upstream, wharfd):
    up = upstream()
    wd = wharfd([up])
    assert wd.get("/", host="app.example.com:8080").status == 200
    req = up.wait_for_requests(1)[0]
    assert req.headers.get_all("host") == ["app.example.com:8080"], list(req.headers)


def test_proxy_client_connection_close_honoured(upstream, wharfd):
    up = upstream()
    wd = wharfd([up])
    with wd.client() as c:
        r = c.request("GET", "/bye", headers=[("Connection", "close")])
        assert r.status == 200, r
        c.expect_closed(timeout=3, what="a client connection that sent Connection: close")


def test_proxy_http10_request_without_host_served_then_closed(upstream, wharfd):
    up = upstream()
    wd = wharfd([up])
    with wd.client() as c:
        r = c.request("GET", "/ten", host=None, version="HTTP/1.0")
        assert r.status == 200, r
        c.expect_closed(timeout=3, what="an HTTP/1.0 client connection without keep-alive")
    assert up.wait_for_requests(1)[0].target == "/ten"


def test_proxy_chunked_response_to_http10_client_is_not_chunked(upstream, wharfd):
    def h(req):
        # chunked only where the request allows it (wharfd may forward as HTTP/1.1 or 1.0)
        if req.version == "HTTP/1.1":
            return Response(200, chunked=True, chunks=[b"abc", b"def"])
        return Response(200, body=b"abcdef", content_length=False)
    up = upstream(h)
    wd = wharfd([up])
    with wd.client() as c:
        c.send(b"GET /ten-chunked HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200, r
        assert not r.chunked, "chunked coding sent to an HTTP/1.0 client: %r" % r
        assert r.body == b"abcdef", r


def test_proxy_streams_slow_response_within_timeout(upstream, wharfd):
    up = upstream(lambda req: Response(200, body=b"slow but fine", delay=0.5))
    wd = wharfd([up], timeouts={"upstream_response": 3})
    r = wd.get("/slow")
    assert r.status == 200 and r.body == b"slow but fine", r


def test_proxy_many_sequential_connections(upstream, wharfd):
    up = upstream()
    wd = wharfd([up])
    for i in range(50):
        r = wd.get("/n/%d" % i)
        assert r.status == 200 and r.json()["target"] == "/n/%d" % i, r
    wait_until(lambda: len(up.requests()) == 50, 2, "upstream saw %d of 50 requests" % len(up.requests()))
