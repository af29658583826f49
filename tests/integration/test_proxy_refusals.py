"""Request smuggling and malformed requests are refused.

Header-section refusals: the client gets the stated status, its connection
is closed, and the upstream receives none of the refused request (proved by
all the bytes it received: after a follow-up request used as a barrier, the
upstream has seen that request and nothing else).

Body-stage refusals (only the body reveals the error): the upstream has
received the head (bodies stream), then wharfd aborts that upstream
connection with the message incomplete and never reuses it; the client gets
400/413 and its connection is closed."""

import pytest

from harness.polling import wait_until

pytestmark = pytest.mark.timeout(30)

LIMITS = {"max_header_bytes": "1k", "max_body_bytes": 100}

H = b"Host: wharf.test\r\n"


def req(first_line, *header_lines, body=b""):
    """A request from raw pieces: first_line and header lines without CRLF."""
    out = first_line + b"\r\n" + b"".join(h + b"\r\n" for h in header_lines) + b"\r\n" + body
    return out


# (id, raw request, the status README.md's error table gives). Every request
# carries the marker "refused" in its target so it can be searched for in what
# the upstream got. 501 is a Transfer-Encoding naming a coding other than
# chunked; a malformed one (a coding after chunked, chunked twice: RFC 9112
# 6.3 "chunked is not the final encoding") is a malformed request, 400. 505 is
# a well-formed HTTP version other than 1.0/1.1; a malformed version
# (lowercase, an HTTP/0.9 line without one) is 400.
HEADER_SECTION_REFUSALS = [
    ("cl_and_te", req(b"POST /refused HTTP/1.1", H[:-2], b"Content-Length: 5", b"Transfer-Encoding: chunked",
                      body=b"0\r\n\r\n"), 400),
    ("te_and_cl", req(b"POST /refused HTTP/1.1", H[:-2], b"Transfer-Encoding: chunked", b"Content-Length: 5",
                      body=b"0\r\n\r\n"), 400),
    ("differing_cl", req(b"POST /refused HTTP/1.1", H[:-2], b"Content-Length: 5", b"Content-Length: 6",
                         body=b"hello!"), 400),
    ("differing_cl_list", req(b"POST /refused HTTP/1.1", H[:-2], b"Content-Length: 5, 6", body=b"hello!"), 400),
    ("cl_plus_sign", req(b"POST /refused HTTP/1.1", H[:-2], b"Content-Length: +5", body=b"hello"), 400),
    ("cl_negative", req(b"POST /refused HTTP/1.1", H[:-2], b"Content-Length: -5", body=b"hello"), 400),
    ("cl_empty", req(b"POST /refused HTTP/1.1", H[:-2], b"Content-Length: ", body=b"hello"), 400),
    ("cl_hex", req(b"POST /refused HTTP/1.1", H[:-2], b"Content-Length: 0x5", body=b"hello"), 400),
    ("cl_overflow", req(b"POST /refused HTTP/1.1", H[:-2], b"Content-Length: 99999999999999999999999",
                        body=b"hello"), 400),
    ("te_gzip", req(b"POST /refused HTTP/1.1", H[:-2], b"Transfer-Encoding: gzip", body=b"hello"), 501),
    ("te_chunked_gzip", req(b"POST /refused HTTP/1.1", H[:-2], b"Transfer-Encoding: chunked, gzip",
                            body=b"0\r\n\r\n"), 400),
    ("te_chunked_twice", req(b"POST /refused HTTP/1.1", H[:-2], b"Transfer-Encoding: chunked",
                             b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"), 400),
    ("te_gzip_then_chunked", req(b"POST /refused HTTP/1.1", H[:-2], b"Transfer-Encoding: gzip, chunked",
                                 body=b"0\r\n\r\n"), 501),
    ("te_chunked_with_parameter", req(b"POST /refused HTTP/1.1", H[:-2], b"Transfer-Encoding: chunked;q=1",
                                      body=b"0\r\n\r\n"), 501),
    ("te_identity", req(b"POST /refused HTTP/1.1", H[:-2], b"Transfer-Encoding: identity", body=b"hello"),
     501),
    ("te_unknown_coding", req(b"POST /refused HTTP/1.1", H[:-2], b"Transfer-Encoding: xchunked",
                                   body=b"0\r\n\r\n"), 501),
    ("obs_fold", req(b"GET /refused HTTP/1.1", H[:-2], b"X-Folded: a", b" b"), 400),
    ("obs_fold_tab", req(b"GET /refused HTTP/1.1", H[:-2], b"X-Folded: a", b"\tb"), 400),
    ("bare_cr_in_value", req(b"GET /refused HTTP/1.1", H[:-2], b"X-Bad: a\rb"), 400),
    ("bare_lf_line_end", b"GET /refused HTTP/1.1\r\nHost: wharf.test\nX-A: b\r\n\r\n", 400),
    ("bare_lf_request_line", b"GET /refused HTTP/1.1\nHost: wharf.test\r\n\r\n", 400),
    ("nul_in_value", req(b"GET /refused HTTP/1.1", H[:-2], b"X-Bad: a\x00b"), 400),
    ("ctl_in_value", req(b"GET /refused HTTP/1.1", H[:-2], b"X-Bad: a\x01b"), 400),
    ("del_in_value", req(b"GET /refused HTTP/1.1", H[:-2], b"X-Bad: a\x7fb"), 400),
    ("ctl_in_name", req(b"GET /refused HTTP/1.1", H[:-2], b"X-B\x01ad: a"), 400),
    ("space_in_name", req(b"GET /refused HTTP/1.1", H[:-2], b"X Bad: a"), 400),
    ("space_before_colon", req(b"GET /refused HTTP/1.1", H[:-2], b"X-Bad : a"), 400),
    ("tab_before_colon", req(b"GET /refused HTTP/1.1", H[:-2], b"X-Bad\t: a"), 400),
    ("space_before_colon_cl", req(b"POST /refused HTTP/1.1", H[:-2], b"Content-Length : 5", body=b"hello"), 400),
    ("no_colon", req(b"GET /refused HTTP/1.1", H[:-2], b"X-No-Colon"), 400),
    ("empty_name", req(b"GET /refused HTTP/1.1", H[:-2], b": value"), 400),
    ("http11_without_host", req(b"GET /refused HTTP/1.1", b"X-A: b"), 400),
    ("two_hosts", req(b"GET /refused HTTP/1.1", H[:-2], b"Host: other.test"), 400),
    ("two_identical_hosts", req(b"GET /refused HTTP/1.1", H[:-2], H[:-2]), 400),
    ("http20", req(b"GET /refused HTTP/2.0", H[:-2]), 505),
    ("http12", req(b"GET /refused HTTP/1.2", H[:-2]), 505),
    ("http09_version", req(b"GET /refused HTTP/0.9", H[:-2]), 505),
    ("http30", req(b"GET /refused HTTP/3.0", H[:-2]), 505),
    ("http_lowercase", req(b"GET /refused http/1.1", H[:-2]), 400),
    ("http09", b"GET /refused\r\n", 400),
    ("del_in_path", req(b"GET /refused\x7fpath HTTP/1.1", H[:-2]), 400),
    ("nul_in_path", req(b"GET /refused\x00path HTTP/1.1", H[:-2]), 400),
    ("extra_token_in_request_line", req(b"GET /refused extra HTTP/1.1", H[:-2]), 400),
    ("header_section_over_max_header_bytes",
     req(b"GET /refused HTTP/1.1", H[:-2], *[b"X-Pad-%d: %s" % (i, b"p" * 100) for i in range(20)]), 431),
    ("one_header_over_max_header_bytes", req(b"GET /refused HTTP/1.1", H[:-2], b"X-Big: " + b"b" * 2000), 431),
    ("cl_over_max_body_bytes", req(b"POST /refused HTTP/1.1", H[:-2], b"Content-Length: 101", body=b"x" * 101),
     413),
]


def assert_upstream_saw_only(up, targets, marker=b"refused"):
    """Everything the upstream received parses as exactly these requests and
    holds no byte of the refused request."""
    conns = up.connections()
    seen = [r.target for r in up.requests()]
    assert seen == targets, "upstream received %r, expected only %r\n%s" % (seen, targets, up.describe())
    for c in conns:
        assert c.parse_error is None, "upstream could not parse what wharfd sent:\n" + up.describe()
        assert c.partial_head is None and not c.buf, (
            "upstream holds bytes beyond the complete requests:\n" + up.describe())
        assert marker not in bytes(c.received), "bytes of the refused request reached the upstream:\n" + up.describe()


@pytest.mark.parametrize("raw,status", [pytest.param(r, s, id=i) for i, r, s in HEADER_SECTION_REFUSALS])
def test_proxy_refuses_header_section(raw, status, upstream, wharfd):
    up = upstream()
    wd = wharfd([up], limits=LIMITS)
    with wd.client() as c:
        c.send(raw)
        r = c.read_response("POST" if raw.startswith(b"POST") else "GET")
        assert r.status == status, "expected %d for %r, got %r" % (status, raw[:200], r)
        c.expect_closed(timeout=3, what="the client connection after a refused request")
    # barrier: a valid request through wharfd reaches the upstream after anything
    # wharfd might (wrongly) have forwarded of the refused one
    ok = wd.get("/after-refusal")
    assert ok.status == 200, "wharfd no longer proxies after refusing a request: %r" % ok
    assert_upstream_saw_only(up, ["/after-refusal"])


# Controls: the shapes of the table without their defect are proxied, so each
# refusal above is caused by its defect and not by the rest of the request.
VALID_COUNTERPARTS = [
    ("content_length", req(b"POST /valid HTTP/1.1", H[:-2], b"Content-Length: 5", body=b"hello"), b"hello"),
    ("chunked", req(b"POST /valid HTTP/1.1", H[:-2], b"Transfer-Encoding: chunked",
                    body=b"5\r\nhello\r\n0\r\n\r\n"), b"hello"),
    ("chunked_mixed_case", req(b"POST /valid HTTP/1.1", H[:-2], b"Transfer-Encoding: Chunked",
                               body=b"5\r\nhello\r\n0\r\n\r\n"), b"hello"),
    ("content_length_at_max_body_bytes", req(b"POST /valid HTTP/1.1", H[:-2], b"Content-Length: 100",
                                             body=b"x" * 100), b"x" * 100),
    ("chunked_at_max_body_bytes", req(b"POST /valid HTTP/1.1", H[:-2], b"Transfer-Encoding: chunked",
                                      body=b"64\r\n" + b"y" * 100 + b"\r\n0\r\n\r\n"), b"y" * 100),
    ("tab_in_value", req(b"GET /valid HTTP/1.1", H[:-2], b"X-Tab: a\tb"), b""),
    ("no_space_after_colon", req(b"GET /valid HTTP/1.1", H[:-2], b"X-Tight:value"), b""),
    ("obs_text_in_value", req(b"GET /valid HTTP/1.1", H[:-2], b"X-Obs-Text: caf\xe9"), b""),
    ("header_section_under_max_header_bytes",
     req(b"GET /valid HTTP/1.1", H[:-2], *[b"X-Pad-%d: %s" % (i, b"p" * 50) for i in range(10)]), b""),
    ("http10_without_host", req(b"GET /valid HTTP/1.0"), b""),
]


@pytest.mark.parametrize("raw,body", [pytest.param(r, b, id=i) for i, r, b in VALID_COUNTERPARTS])
def test_proxy_accepts_valid_counterpart_of_refusal(raw, body, upstream, wharfd):
    up = upstream()
    wd = wharfd([up], limits=LIMITS)
    with wd.client() as c:
        c.send(raw)
        r = c.read_response("POST" if raw.startswith(b"POST") else "GET")
        assert r.status == 200, "a valid request was refused: %r -> %r" % (raw[:160], r)
    got = up.wait_for_requests(1)
    assert [x.target for x in got] == ["/valid"] and got[0].body == body, up.describe()


def test_proxy_refusal_closes_connection_even_with_pipelined_request_behind(upstream, wharfd):
    up = upstream()
    wd = wharfd([up], limits=LIMITS)
    smuggled = b"GET /refused-smuggled HTTP/1.1\r\nHost: wharf.test\r\n\r\n"
    with wd.client() as c:
        c.send(req(b"POST /refused HTTP/1.1", H[:-2], b"Content-Length: 5", b"Transfer-Encoding: chunked",
                   body=b"0\r\n\r\n" + smuggled))
        r = c.read_response("POST")
        assert r.status == 400, r
        c.expect_closed(timeout=3)
    assert wd.get("/after-refusal").status == 200
    assert_upstream_saw_only(up, ["/after-refusal"])


# ---- body-stage refusals

FIRST_CHUNK = b"5\r\nhello\r\n"

BODY_STAGE_REFUSALS = [
    ("chunk_size_0x", b"0x5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk_size_negative", b"-5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk_size_17_hex_digits", b"00000000000000005\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk_size_17_hex_digits_overflow", b"fffffffffffffffff\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk_size_not_hex", b"5g\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk_size_empty", b"\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk_size_bare_lf", b"5\nhello\r\n0\r\n\r\n", 400),
    ("chunk_data_without_crlf", b"5\r\nhelloXX\r\n0\r\n\r\n", 400),
    ("chunked_body_over_max_body_bytes", b"64\r\n" + b"a" * 100 + b"\r\n0\r\n\r\n", 413),
]


@pytest.mark.parametrize("rest,status", [pytest.param(r, s, id=i) for i, r, s in BODY_STAGE_REFUSALS])
def test_proxy_refuses_invalid_chunked_body(rest, status, upstream, wharfd):
    up = upstream()
    wd = wharfd([up], limits=LIMITS)
    with wd.client() as c:
        c.send(b"POST /body-stage HTTP/1.1\r\nHost: wharf.test\r\nTransfer-Encoding: chunked\r\n\r\n" + FIRST_CHUNK)
        conn = up.wait_for_partial_head("/body-stage")
        c.send(rest)
        r = c.read_response("POST")
        assert r.status == status, "expected %d for a body ending %r, got %r" % (status, rest[:40], r)
        c.expect_closed(timeout=3, what="the client connection after a refused body")
    # the upstream saw an incomplete message, then wharfd closed that connection
    wait_until(lambda: conn.closed, 3,
               lambda: "wharfd did not close the upstream connection carrying the refused body:\n" + up.describe())
    assert conn.closed_by_peer, "upstream connection closed by %s, expected by wharfd" % conn.closed_by
    assert conn.requests == [], "the upstream received a complete message:\n" + up.describe()
    assert conn.parse_error is None, (
        "wharfd forwarded invalid chunked framing to the upstream (it must cut the message before the bad bytes):\n"
        + up.describe())
    assert conn.partial_head is not None, up.describe()
    # the aborted connection is never reused: the next request arrives on a new one
    nxt = wd.get("/after-body-refusal")
    assert nxt.status == 200, nxt
    after = up.requests_for("/after-body-refusal")
    assert len(after) == 1 and after[0].conn is not conn, up.describe()


def test_proxy_streams_content_length_body_within_limit(upstream, wharfd):
    """Control for the body-stage cases: the head is forwarded before the body
    is complete, and a body within max_body_bytes arriving in pieces passes."""
    up = upstream()
    wd = wharfd([up], limits=LIMITS)
    with wd.client() as c:
        c.send(b"POST /cl-pieces HTTP/1.1\r\nHost: wharf.test\r\nContent-Length: 100\r\n\r\n" + b"a" * 40)
        up.wait_for_partial_head("/cl-pieces")
        c.send(b"b" * 60)
        r = c.read_response("POST")
    assert r.status == 200, r
    assert up.wait_for_requests(1)[0].body == b"a" * 40 + b"b" * 60


def test_proxy_client_abort_mid_body_aborts_upstream_connection(upstream, wharfd):
    up = upstream()
    wd = wharfd([up])
    c = wd.client()
    c.send(b"POST /client-abort HTTP/1.1\r\nHost: wharf.test\r\nContent-Length: 10\r\n\r\n12345")
    conn = up.wait_for_partial_head("/client-abort")
    c.close()
    wait_until(lambda: conn.closed, 3,
               lambda: "wharfd kept the upstream connection of an aborted request body open:\n" + up.describe())
    assert conn.closed_by_peer and conn.requests == [], up.describe()
    assert wd.get("/after-abort").status == 200
    assert up.requests_for("/after-abort")[0].conn is not conn, up.describe()
