"""Proxy errors as an ALB gives them (503/502/504), retries of idempotent
requests (refused connection, reused pooled connection closed before any
response byte) and no retry of a POST, and the client-side timeouts: an
idle keep-alive connection (and one that never sent a byte) is closed bare
at idle_timeout; a request head not complete within client_header (counted
from its first byte) gets 408 and the close."""

import select
import time

import pytest

from harness.polling import wait_until
from harness.upstreams import CLOSE, HANG, RESET, Raw, Response

pytestmark = pytest.mark.timeout(30)


# ---- 503 / 502

def test_proxy_503_when_group_has_no_targets(wharfd):
    wd = wharfd(groups={"web": []})
    r = wd.get("/none")
    assert r.status == 503, r
    r = wd.request("POST", "/none", body=b"x")
    assert r.status == 503, r


def test_proxy_502_when_only_target_refuses(wharfd, refused_target):
    wd = wharfd([refused_target()])
    r = wd.get("/refused")
    assert r.status == 502, r


def test_proxy_502_for_post_when_only_target_refuses(wharfd, refused_target):
    wd = wharfd([refused_target()])
    r = wd.request("POST", "/refused", body=b"data")
    assert r.status == 502, r


def test_proxy_502_when_upstream_closes_fresh_connection_without_response(upstream, wharfd):
    up = upstream(lambda req: CLOSE)
    wd = wharfd([up])
    assert wd.get("/closes").status == 502


def test_proxy_502_when_upstream_resets_fresh_connection(upstream, wharfd):
    up = upstream(lambda req: RESET)
    wd = wharfd([up])
    assert wd.get("/resets").status == 502


MALFORMED_RESPONSES = [
    ("garbage_status_line", b"HTTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    ("not_http_at_all", b"hello there\r\n\r\n"),
    ("status_code_four_digits", b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok"),
    ("both_cl_and_te", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
    ("differing_cl", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"),
    ("cl_not_a_number", b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nok"),
    ("cl_plus_sign", b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok"),
    ("bare_lf_line_ends", b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok"),
    ("obs_fold", b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok"),
    ("nul_in_header", b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok"),
]


@pytest.mark.parametrize("raw", [pytest.param(r, id=i) for i, r in MALFORMED_RESPONSES])
def test_proxy_502_on_malformed_upstream_response_and_connection_not_reused(raw, upstream, wharfd):
    def h(req):
        if req.target == "/malformed":
            return Raw(raw)  # and keep the connection open: wharfd must drop it
        return Response(200, body=b"fine")
    up = upstream(h)
    wd = wharfd([up])
    r = wd.get("/malformed")
    assert r.status == 502, "malformed upstream response %r gave %r" % (raw[:80], r)
    bad_conn = up.requests_for("/malformed")[0].conn
    wait_until(lambda: bad_conn.closed, 3,
               lambda: "wharfd kept the upstream connection that sent a malformed response open:\n" + up.describe())
    r2 = wd.get("/next")
    assert r2.status == 200 and r2.body == b"fine", r2
    nxt = up.requests_for("/next")
    assert len(nxt) == 1 and nxt[0].conn is not bad_conn, (
        "the connection that sent a malformed response was reused:\n" + up.describe())
    assert len(up.requests_for("/malformed")) == 1, "a malformed response must not be retried:\n" + up.describe()


TRUNCATED = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part"


def _assert_not_a_complete_message(data):
    """data (everything the client got before the close) must not read as a
    complete 200 response: a truncated body must never look whole."""
    if not data:
        return "empty"
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, "incomplete head relayed: %r" % data[:300]
    if head.startswith(b"HTTP/1.1 502"):
        return "502"
    assert head.startswith(b"HTTP/1.1 200"), data[:300]
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        assert not body.endswith(b"0\r\n\r\n"), "a truncated upstream body was relayed as a complete chunked body"
    else:
        assert b"content-length: 100" in lower, "Content-Length changed on a truncated body: %r" % data[:300]
        assert len(body) < 100, data[:300]
    return "truncated"


def test_proxy_truncated_upstream_body_closes_client_connection(upstream, wharfd):
    """The upstream sends the head and part of the body, then (later) closes:
    the response has started, so only closing the client connection can tell."""
    up = upstream(lambda req: Raw(TRUNCATED, close_after=0.3))
    wd = wharfd([up])
    with wd.client() as c:
        c.send(b"GET /truncated HTTP/1.1\r\nHost: wharf.test\r\n\r\n")
        data = c.read_until_close(timeout=5)
        assert c.eof, "client connection not closed after the upstream cut the body short"
    assert _assert_not_a_complete_message(data) == "truncated", (
        "the head and partial body sent 0.3 s before the upstream closed should have been relayed; got %r" % data)


def test_proxy_truncated_upstream_body_in_one_segment_never_looks_complete(upstream, wharfd):
    """Head, partial body and FIN arrive together: whatever wharfd shows the
    client (nothing, a 502, or the truncated message), it closes the
    connection and never completes the message."""
    up = upstream(lambda req: Raw(TRUNCATED, close=True))
    wd = wharfd([up])
    with wd.client() as c:
        c.send(b"GET /truncated HTTP/1.1\r\nHost: wharf.test\r\n\r\n")
        data = c.read_until_close(timeout=5)
        assert c.eof, "client connection not closed after the upstream cut the body short"
    _assert_not_a_complete_message(data)


# ---- 504

def test_proxy_504_on_upstream_response_timeout(upstream, wharfd):
    up = upstream(lambda req: HANG)
    wd = wharfd([up], timeouts={"upstream_response": 0.5})
    t0 = time.monotonic()
    r = wd.get("/hangs")
    elapsed = time.monotonic() - t0
    assert r.status == 504, r
    assert 0.4 <= elapsed <= 3.0, "504 after %.2fs with upstream_response = 0.5" % elapsed
    assert len(up.requests()) == 1, "a timed-out request must not be retried:\n" + up.describe()
    conn = up.requests()[0].conn
    wait_until(lambda: conn.closed, 3,
               lambda: "wharfd kept the timed-out upstream connection open (a late response would desync it):\n"
               + up.describe())


def test_proxy_504_when_response_headers_arrive_after_timeout(upstream, wharfd):
    up = upstream(lambda req: Response(200, body=b"too late", delay=1.5))
    wd = wharfd([up], timeouts={"upstream_response": 0.5})
    r = wd.get("/slow")
    assert r.status == 504, r


def test_proxy_504_on_upstream_connect_timeout(blackhole, wharfd):
    bh = blackhole()
    if not bh.verified:
        pytest.skip("could not make a loopback listener whose connect() hangs (accept queue full) on this kernel; "
                    "the connect-timeout case cannot be produced without non-loopback traffic")
    wd = wharfd([bh], timeouts={"upstream_connect": 0.3, "upstream_response": 10})
    t0 = time.monotonic()
    r = wd.get("/connect-timeout", timeout=8)
    elapsed = time.monotonic() - t0
    assert r.status == 504, r
    assert 0.25 <= elapsed <= 3.0, "504 after %.2fs with upstream_connect = 0.3" % elapsed


# ---- retries

def test_proxy_get_retried_on_other_target_when_connection_refused(upstream, wharfd, refused_target):
    good = upstream(name="good")
    wd = wharfd([refused_target(), good])
    for i in range(8):
        r = wd.get("/retry/%d" % i)
        assert r.status == 200, "GET #%d was not retried on the other target: %r" % (i, r)
        assert r.json()["upstream"] == "good"
    assert [x.target for x in good.requests()] == ["/retry/%d" % i for i in range(8)]


@pytest.mark.parametrize("method", ["HEAD", "PUT", "DELETE", "OPTIONS"])
def test_proxy_other_idempotent_methods_retried_when_connection_refused(method, upstream, wharfd, refused_target):
    good = upstream(name="good")
    wd = wharfd([refused_target(), good])
    for i in range(4):
        body = b"payload" if method == "PUT" else None
        r = wd.request(method, "/idem/%d" % i, body=body)
        assert r.status == 200, "%s #%d was not retried on the other target: %r" % (method, i, r)
    assert len(good.requests()) == 4, good.describe()


def test_proxy_post_not_retried_when_connection_refused(upstream, wharfd, refused_target):
    good = upstream(name="good")
    wd = wharfd([refused_target(), good])
    statuses = []
    # round robin over two targets: one of the first attempts lands on the refusing one
    for i in range(4):
        r = wd.request("POST", "/post/%d" % i, body=b"body-%d" % i)
        statuses.append(r.status)
        if r.status == 502:
            failed = "/post/%d" % i
            assert good.requests_for(failed) == [], (
                "the POST that got 502 was also sent to the other target (retried):\n" + good.describe())
            break
        assert r.status == 200, r
    else:
        pytest.fail("4 POSTs over [refusing, good] with round robin all got %r: a POST sent to the refusing "
                    "target must get 502, not be retried on the other one\n%s" % (statuses, good.describe()))
    assert [x.target for x in good.requests()] == ["/post/%d" % j for j in range(len(statuses) - 1)], (
        good.describe())


def _close_second_request_on_each_connection(req):
    """Serve one response keep-alive; on the connection's next request,
    read it and close without answering."""
    if req.index >= 1:
        return CLOSE
    return Response(200, body=b"ok conn %d" % req.conn.id)


def test_proxy_get_retried_when_reused_pooled_connection_closes_before_response(upstream, wharfd):
    up = upstream(_close_second_request_on_each_connection)
    wd = wharfd([up], workers=1)
    assert wd.get("/first").status == 200
    first_conn = up.requests_for("/first")[0].conn
    r = wd.get("/second")
    seconds = up.requests_for("/second")
    assert seconds and seconds[0].conn is first_conn, (
        "precondition: wharfd should have reused the pooled connection for the second request:\n" + up.describe())
    assert r.status == 200, "GET on a reused connection closed before any response byte was not retried: %r" % r
    assert r.body == b"ok conn %d" % seconds[-1].conn.id
    assert len(seconds) == 2 and seconds[1].conn is not first_conn and seconds[1].index == 0, (
        "expected exactly one retry, on a fresh connection:\n" + up.describe())


def test_proxy_post_not_retried_when_reused_pooled_connection_closes_before_response(upstream, wharfd):
    up = upstream(_close_second_request_on_each_connection)
    wd = wharfd([up], workers=1)
    assert wd.get("/first").status == 200
    first_conn = up.requests_for("/first")[0].conn
    r = wd.request("POST", "/second", body=b"not idempotent")
    seconds = up.requests_for("/second")
    assert seconds and seconds[0].conn is first_conn, (
        "precondition: wharfd should have sent the POST on the pooled connection:\n" + up.describe())
    assert r.status == 502, "POST on a reused connection closed before any response byte: %r" % r
    assert len(seconds) == 1, "the POST was retried:\n" + up.describe()


def test_proxy_pooled_connection_closed_by_upstream_while_idle_is_not_used(upstream, wharfd):
    # the upstream closes idle connections 0.2 s after answering (a short keep-alive timeout)
    up = upstream(lambda req: Response(200, body=b"ok", close_after=0.2))
    wd = wharfd([up], workers=1)
    assert wd.get("/first").status == 200
    first = up.requests_for("/first")[0].conn
    wait_until(lambda: first.closed, 3, "upstream did not close its idle connection")
    r = wd.request("POST", "/later", body=b"x")
    assert r.status == 200, (
        "a POST was sent on a pooled connection the upstream had already closed while idle: %r" % r)


def test_proxy_upstream_connection_close_response_not_reused(upstream, wharfd):
    up = upstream(lambda req: Response(200, body=b"bye", close=True))
    wd = wharfd([up], workers=1)
    for i in range(3):
        r = wd.request("POST", "/cc/%d" % i, body=b"x")
        assert r.status == 200, "request %d after an upstream Connection: close: %r" % (i, r)
    assert len(up.connections()) == 3, up.describe()


# ---- client-side timeouts

def test_proxy_closes_idle_client_keepalive_connection(upstream, wharfd):
    up = upstream()
    wd = wharfd([up], idle_timeout=1)
    with wd.client() as c:
        assert c.request("GET", "/idle").status == 200
        elapsed = c.expect_closed(timeout=4, what="an idle keep-alive client connection (idle_timeout = 1)")
    assert 0.5 <= elapsed <= 3.5, "idle connection closed after %.2fs with idle_timeout = 1" % elapsed


def test_proxy_keeps_client_connection_open_within_idle_timeout(upstream, wharfd):
    up = upstream()
    wd = wharfd([up], idle_timeout=2)
    with wd.client() as c:
        assert c.request("GET", "/a").status == 200
        time.sleep(0.8)  # deliberately idle, well within idle_timeout
        assert c.request("GET", "/b").status == 200


def _assert_408_then_close(c, timeout, what):
    """The client gets exactly one response, 408 with Connection: close, and
    then the close (README: timeouts.client_header, "else 408 and close")."""
    r = c.read_response(timeout=timeout)
    assert r.status == 408, "%s: expected 408 Request Timeout, got %r" % (what, r)
    assert "close" in (r.headers.get("connection") or "").lower(), (
        "%s: the 408 must announce the close (Connection: close): %r" % (what, r))
    c.expect_closed(timeout=3, what="the client connection after its 408")
    return r


def test_proxy_client_header_timeout_answers_408_and_closes(upstream, wharfd):
    up = upstream()
    wd = wharfd([up], timeouts={"client_header": 0.5})
    with wd.client() as c:
        t0 = time.monotonic()
        c.send(b"GET /half HTTP/1.1\r\nHost: wharf.test\r\nX-Partial: ")
        _assert_408_then_close(c, 4, "a header section stalled mid-line (client_header = 0.5)")
        elapsed = time.monotonic() - t0
    assert 0.4 <= elapsed <= 3.0, "408 after %.2fs with client_header = 0.5" % elapsed
    assert up.total_bytes() == 0, "part of an incomplete header section reached the upstream:\n" + up.describe()


def test_proxy_client_header_timeout_counts_from_the_first_byte_of_a_later_keepalive_request(upstream, wharfd):
    """On a keep-alive connection the clock starts at the next request's
    first byte, not at the connection's start: the second, stalled head
    gets its 408 about client_header after that byte."""
    up = upstream()
    wd = wharfd([up], timeouts={"client_header": 1}, idle_timeout=10)
    with wd.client() as c:
        assert c.request("GET", "/first").status == 200
        time.sleep(1.5)  # the behaviour: idle between requests, longer than client_header
        t0 = time.monotonic()
        c.send(b"GET /second HTTP/1.1\r\nHost: wh")
        _assert_408_then_close(c, 5, "a stalled second request head (client_header = 1)")
        elapsed = time.monotonic() - t0
    assert 0.8 <= elapsed <= 3.5, "408 %.2fs after the second head began, client_header = 1" % elapsed
    assert [r.target for r in up.requests()] == ["/first"], up.describe()


def test_proxy_connection_without_a_byte_is_closed_bare_at_idle_timeout_not_client_header(upstream, wharfd):
    """client_header runs from a request's first byte: a connection that
    never sends one is an idle connection, closed without a response after
    the listener's idle_timeout (and not at client_header)."""
    up = upstream()
    wd = wharfd([up], timeouts={"client_header": 0.5}, idle_timeout=2)
    with wd.client() as c:
        elapsed = c.expect_closed(timeout=6, what="a connection that never sent a byte (idle_timeout = 2)")
        assert c.received == b"", "wharfd answered a connection that sent nothing: %r" % bytes(c.received)
    assert 1.6 <= elapsed <= 4.5, (
        "a silent connection closed after %.2fs; idle_timeout = 2 (client_header = 0.5 must not apply)" % elapsed)
    assert up.total_bytes() == 0


def test_proxy_client_header_timeout_applies_to_slowly_dripped_header(upstream, wharfd):
    """The header timeout bounds the whole header section, not the gap
    between bytes (slowloris): a header dripped one line every 0.1 s is
    answered 408 and closed about client_header after it started."""
    up = upstream()
    wd = wharfd([up], timeouts={"client_header": 1})
    with wd.client() as c:
        t0 = time.monotonic()
        answered = False
        for piece in [b"GET /drip HTTP/1.1\r\n"] + [b"X-D%d: d\r\n" % i for i in range(60)]:
            try:
                c.send(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            # wharfd's answer shows on the read side (it keeps reading for a
            # while after closing its side); this wait also paces the drip
            readable, _, _ = select.select([c.sock], [], [], 0.1)
            if readable:
                answered = True
                break
            if time.monotonic() - t0 > 5:
                break
        elapsed = time.monotonic() - t0
        assert answered, "a header section dripped over %.1f s was not cut off (client_header = 1)" % elapsed
        _assert_408_then_close(c, 3, "a header section dripped a line every 0.1 s (client_header = 1)")
    assert elapsed <= 3.0, "cut off only after %.2fs with client_header = 1" % elapsed
    assert elapsed >= 0.8, "cut off after %.2fs, before client_header = 1 had passed" % elapsed
    assert up.total_bytes() == 0, up.describe()
