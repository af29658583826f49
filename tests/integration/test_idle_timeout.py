"""The listener's idle_timeout between body bytes (README, Configuration:
"idle keep-alive connection, and between body bytes in each direction"):
a client that goes quiet in the middle of its request body, and an upstream
that goes quiet in the middle of its response body, are cut once
idle_timeout passes with no byte; a pause shorter than idle_timeout is not.
What each side sees: the upstream of a cut request body holds an incomplete
message and a connection wharfd closed (README, Errors: a body error found
mid-stream aborts the upstream connection, never reused); the client of a
cut response body holds an incomplete message and a closed connection (the
response cannot complete). And the access log has the line of each such
request, saying why (README: one JSON line per request, `error` when wharfd
ended it)."""

import json
import threading
import time

import pytest

from harness.http_client import RawClient, read_head
from harness.polling import wait_until
from harness.ports import free_port
from harness.upstreams import Response
from harness.wharfd import build_config

pytestmark = pytest.mark.timeout(30)

IDLE = 1  # the listener's idle_timeout, seconds (its minimum)
# a cut comes idle_timeout after the last byte; the upper bound is for a
# loaded 2-core machine
CUT_MIN, CUT_MAX = 0.8 * IDLE, IDLE + 2.5


def _echo(req):
    return Response(200, body=req.body, headers=[("X-Upstream", req.upstream.name)])


def test_idle_timeout_client_pausing_mid_request_body_is_cut_and_upstream_connection_aborted(upstream, wharfd):
    up = upstream(_echo, name="origin")
    wd = wharfd([up], idle_timeout=IDLE, timeouts={"upstream_response": 30})

    # control: pauses shorter than idle_timeout between body bytes are fine,
    # even when the whole body takes longer than idle_timeout
    with wd.client(timeout=10) as c:
        c.send(b"POST /slow-but-steady HTTP/1.1\r\nHost: wharf.test\r\nContent-Length: 10\r\n\r\nabc")
        up.wait_for_partial_head("/slow-but-steady")
        time.sleep(0.5 * IDLE)  # the behaviour: a client pausing between body bytes, within idle_timeout
        c.send(b"defg")
        time.sleep(0.5 * IDLE)  # the behaviour: another pause within idle_timeout
        c.send(b"hij")
        r = c.read_response("POST")
        assert r.status == 200 and r.body == b"abcdefghij", r

    # a pause longer than idle_timeout: both connections are cut
    c = wd.client(timeout=10)
    try:
        c.send(b"POST /paused-body HTTP/1.1\r\nHost: wharf.test\r\nContent-Length: 10\r\n\r\nabc")
        t0 = time.monotonic()
        conn = up.wait_for_partial_head("/paused-body")
        data = c.read_until_close(timeout=IDLE + 6)  # the client sends nothing more: it is quiet
        cut = time.monotonic() - t0
        assert c.eof, "wharfd did not close a client quiet mid-body for %.1f s (idle_timeout = %d)" % (cut, IDLE)
    finally:
        c.close()
    assert CUT_MIN <= cut <= CUT_MAX, "the quiet client was cut after %.2f s, idle_timeout = %d" % (cut, IDLE)
    # the target never answered an incomplete request: nothing the client got can be its answer
    assert not data.startswith(b"HTTP/1.1 2"), "a request with 3 of 10 body bytes got a success: %r" % data[:200]
    wait_until(lambda: conn.closed, 2, lambda: "the upstream connection of the cut request body is still open:\n"
               + up.describe())
    assert conn.closed_by_peer, "upstream connection closed by %s, expected by wharfd" % conn.closed_by
    # (the connection may be the pooled one of the control request)
    assert up.requests_for("/paused-body") == [] and conn.partial_head[1] == "/paused-body", (
        "the upstream must hold an incomplete message:\n" + up.describe())
    received = bytes(conn.received)
    head_end = received.find(b"\r\n\r\n", received.find(b"POST /paused-body ")) + 4
    assert received[head_end:] == b"abc", up.describe()
    # that connection is never reused
    r = wd.request("POST", "/after", body=b"x")
    assert r.status == 200, r
    assert up.requests_for("/after")[0].conn is not conn, up.describe()
    print("\nclient quiet mid-body: cut after %.2f s (idle_timeout %d s); the client got %r"
          % (cut, IDLE, data[:80]))


class _PausingUpstream:
    """A RawUpstream handler: answers with a head announcing 10 body bytes,
    sends 3 of them, then waits (up to 15 s) for wharfd to close the
    connection, noting when it did."""

    def __init__(self):
        self.sent_at = None
        self.closed_at = None
        self.done = threading.Event()

    def __call__(self, conn):
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nabc")
        self.sent_at = time.monotonic()
        conn.sock.settimeout(15)
        try:
            while True:
                data = conn.sock.recv(65536)
                if not data:
                    break
        except OSError:
            pass
        self.closed_at = time.monotonic()
        self.done.set()
        return False


def test_idle_timeout_upstream_pausing_mid_response_body_closes_client_connection(raw_upstream, wharfd):
    pausing = _PausingUpstream()
    up = raw_upstream(pausing, "pausing")
    wd = wharfd([up], idle_timeout=IDLE, timeouts={"upstream_response": 30})
    c = wd.client(timeout=10)
    try:
        c.send(RawClient.build_request("GET", "/paused-response"))
        status, headers, leftover = read_head(c.sock, 5, "response head")
        assert status == 200 and headers.get("content-length") == "10", (status, headers)
        body = bytearray(leftover)
        c.buf.clear()
        rest = c.read_until_close(timeout=IDLE + 6)
        body += rest
        t_client = time.monotonic()
        assert c.eof, "the client connection stayed open %.0f s with the upstream quiet mid-body" % (IDLE + 6)
    finally:
        c.close()
    assert bytes(body) == b"abc", (
        "the client got %r of a body the upstream cut at 3 of 10 bytes: it must stay incomplete" % bytes(body))
    cut = t_client - pausing.sent_at
    assert CUT_MIN <= cut <= CUT_MAX, "client closed %.2f s after the upstream went quiet, idle_timeout = %d" % (
        cut, IDLE)
    assert pausing.done.wait(3), "wharfd did not close the quiet upstream connection"
    up_cut = pausing.closed_at - pausing.sent_at
    assert CUT_MIN <= up_cut <= CUT_MAX, "upstream connection closed after %.2f s, idle_timeout = %d" % (
        up_cut, IDLE)
    print("\nupstream quiet mid-body: client closed after %.2f s, upstream after %.2f s (idle_timeout %d s)"
          % (cut, up_cut, IDLE))


def _read_lines(path):
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines()]


def test_idle_timeout_cut_requests_have_access_log_lines_saying_why(upstream, raw_upstream, wharfd, tmp_path):
    """README, access log: one JSON line per request, and `error` names why
    when wharfd ended the request itself. Both cuts above are requests
    wharfd ended: each has its line, with an error."""
    origin = upstream(_echo, name="origin")
    pausing = _PausingUpstream()
    slow = raw_upstream(pausing, "pausing")
    port = free_port()
    log_path = tmp_path / "access.log"
    cfg = build_config(port, groups={"web": [origin], "pausing": [slow]}, idle_timeout=IDLE, log_level="info", workers=1,
                       timeouts={"shutdown_drain": 1, "upstream_response": 30})
    cfg["log"]["access_log"] = str(log_path)
    cfg["listeners"][0]["rules"] = [{"priority": 1, "conditions": {"path": ["/paused-response"]},
                                     "forward": [{"target_group": "pausing"}]}]
    wd = wharfd(config=cfg, port=port)
    ports = {}
    with wd.client(timeout=10) as c:
        c.send(b"POST /paused-body HTTP/1.1\r\nHost: wharf.test\r\nContent-Length: 10\r\n\r\nabc")
        origin.wait_for_partial_head("/paused-body")
        c.read_until_close(timeout=IDLE + 6)
        assert c.eof
        ports["/paused-body"] = c.sock.getsockname()[1]
    with wd.client(timeout=10) as c:
        c.send(RawClient.build_request("GET", "/paused-response"))
        c.read_until_close(timeout=IDLE + 6)
        assert c.eof
        ports["/paused-response"] = c.sock.getsockname()[1]
    with wd.client() as c:  # a request that completes: its line is the barrier (lines are batched)
        assert c.request("GET", "/barrier").status == 200
        ports["/barrier"] = c.sock.getsockname()[1]
    # one worker: its lines reach the file in the order the requests ended,
    # so once the barrier's line is there, the lines of the cut ones are too
    wait_until(lambda: any(ln["path"] == "/barrier" for ln in _read_lines(log_path)), 2,
               lambda: "no access-log line for /barrier:\n%s" % (log_path.read_text() if log_path.exists() else ""))
    lines = {ln["client_port"]: ln for ln in _read_lines(log_path)}
    problems = []
    # the client went quiet mid-body; the upstream went quiet mid-body (after its 200 head)
    expected = {"/paused-body": ("client_idle_timeout", 0), "/paused-response": ("upstream_timeout", 200)}
    for path, (error, status) in expected.items():
        ln = lines.get(ports[path])
        if ln is None:
            problems.append("%s (cut by idle_timeout): no access-log line at all" % path)
        elif ln["path"] != path or ln["error"] != error or ln["status"] != status:
            problems.append("%s (cut by idle_timeout): expected error %s, status %d: %s"
                            % (path, error, status, json.dumps(ln)))
    assert not problems, "%s\naccess log:\n%s" % ("\n".join(problems), log_path.read_text())
