"""Upgrade requests (WebSocket) tunnel both ways once the upstream answers
101; an upgrade the upstream declines (200) is an ordinary exchange on an
ordinary connection; the listener's idle_timeout closes an idle tunnel but
not a busy one. The WebSocket peer is the demo app's /ws echo."""

import os
import struct
import time

import pytest

from harness.upstreams import Response
from harness.websocket import ws_accept, ws_frame, ws_key, ws_open, ws_read_frame, ws_upgrade_headers

pytestmark = pytest.mark.timeout(30)

OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def _tokens(value):
    return [t.strip().lower() for t in (value or "").split(",") if t.strip()]


def _check_101(resp, key):
    assert resp.status == 101, resp
    assert (resp.headers.get("upgrade") or "").lower() == "websocket", resp.headers
    assert "upgrade" in _tokens(resp.headers.get("connection")), resp.headers
    assert resp.headers.get("sec-websocket-accept") == ws_accept(key), resp.headers


def test_websocket_echo_text_binary_ping_and_close_through_wharfd(demo_server, wharfd):
    app = demo_server()
    w = wharfd([app.addr])
    c, resp, key = ws_open(w.port, "/ws")
    try:
        _check_101(resp, key)
        assert c.buf == b"", "bytes after the 101 head before any frame: %r" % bytes(c.buf)

        c.send(ws_frame(OP_TEXT, "hello wharf ✓".encode()))
        assert ws_read_frame(c) == (True, OP_TEXT, "hello wharf ✓".encode())

        small = os.urandom(3)
        c.send(ws_frame(OP_BINARY, small))
        assert ws_read_frame(c) == (True, OP_BINARY, small)

        big = os.urandom(300 * 1024)  # 64-bit length, many TCP segments both ways
        c.send(ws_frame(OP_BINARY, big))
        fin, op, payload = ws_read_frame(c, timeout=10)
        assert (fin, op, len(payload)) == (True, OP_BINARY, len(big)) and payload == big

        # several frames in one write come back in order
        c.send(b"".join(ws_frame(OP_TEXT, b"m%d" % i) for i in range(5)))
        assert [ws_read_frame(c)[2] for _ in range(5)] == [b"m%d" % i for i in range(5)]

        c.send(ws_frame(OP_PING, b"are you there"))
        assert ws_read_frame(c) == (True, OP_PONG, b"are you there")

        c.send(ws_frame(OP_CLOSE, struct.pack("!H", 1000) + b"bye"))
        fin, op, payload = ws_read_frame(c)
        assert op == OP_CLOSE and payload[:2] == struct.pack("!H", 1000), (fin, op, payload)
        c.expect_closed(timeout=3, what="the tunnel after the close handshake")
    finally:
        c.close()


def test_upgrade_declined_with_200_is_an_ordinary_response_on_an_ordinary_connection(upstream, wharfd):
    up = upstream(lambda req: Response(200, body=b"no switch for %s" % req.target.encode(),
                                       headers=[("X-Upstream", "plain")]))
    w = wharfd([up])
    key = ws_key()
    with w.client() as c:
        r = c.request("GET", "/ws", headers=ws_upgrade_headers(key))
        assert r.status == 200 and r.body == b"no switch for /ws", r
        assert not r.headers.get_all("upgrade"), r.headers
        first = up.wait_for_requests(1)[0]
        # the upstream was asked to switch: Upgrade and Connection: upgrade forwarded
        assert (first.headers.get("upgrade") or "").lower() == "websocket", first.headers
        assert "upgrade" in _tokens(first.headers.get("connection")), first.headers

        if "close" in _tokens(r.headers.get("connection")):
            c.expect_closed(timeout=2, what="the connection wharfd said it would close")
            return
        # still HTTP: the next request is parsed and rewritten by wharfd, not
        # relayed raw as a tunnel would
        c.send(c.build_request("GET", "/after", headers=[("X-Probe", "1")]))
        r2 = c.read_response()
        assert r2.status == 200 and r2.body == b"no switch for /after", r2
        second = up.wait_for_requests(2)[1]
        assert second.target == "/after"
        assert second.headers.get("x-forwarded-for") == "127.0.0.1", second.headers
        assert second.headers.get("x-request-id"), second.headers


def test_websocket_tunnel_closed_by_listener_idle_timeout_but_not_while_busy(demo_server, wharfd):
    app = demo_server()
    w = wharfd([app.addr], idle_timeout=1)
    c, resp, key = ws_open(w.port, "/ws")
    try:
        _check_101(resp, key)
        # busy for 2.5 idle timeouts: a ping every 0.3 s, every pong back
        t_open = time.monotonic()
        i = 0
        while True:
            c.send(ws_frame(OP_PING, b"p%d" % i))
            assert ws_read_frame(c, timeout=2) == (True, OP_PONG, b"p%d" % i), "ping %d" % i
            last = time.monotonic()  # the last activity on the tunnel
            i += 1
            if last - t_open >= 2.5:
                break
            time.sleep(0.3)  # pacing the activity, not waiting for anything
        c.expect_closed(timeout=3, what="the idle tunnel (idle_timeout = 1)")
        idle = time.monotonic() - last
    finally:
        c.close()
    print("\nbusy tunnel kept %.1f s with idle_timeout=1; idle tunnel closed after %.2f s" % (last - t_open, idle))
    assert idle >= 0.9, "the tunnel closed after %.2f s idle, before the 1 s idle_timeout" % idle
    assert idle <= 2.0, "the idle tunnel closed only after %.2f s (idle_timeout = 1)" % idle
