"""The demo app as a plain local process (no Docker): endpoints, keep-alive,
chunked bodies, WebSocket, SSE, start delay, exit-after, and the SIGTERM
drain. Run: /usr/bin/python3 -m pytest tests/app (WHARF_BUILD_DIR or
DEMO_APP locates the binary, as for tests/integration/runtime)."""

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

# The harness package lives in tests/integration (its pytest.ini puts it on
# the path when both suites run together; this covers `pytest tests/app`).
_INTEGRATION = str(Path(__file__).resolve().parents[1] / "integration")
if _INTEGRATION not in sys.path:
    sys.path.insert(0, _INTEGRATION)

from harness.demo_app import demo_app, demo_server  # noqa: E402, F401  (fixtures)
from harness.polling import wait_until  # noqa: E402
from harness.processes import requests_awaiting_answer  # noqa: E402
from harness.websocket import ws_accept, ws_frame, ws_key  # noqa: E402


def read_response(f):
    """(status, headers dict lower-case, body) from a buffered socket file."""
    line = f.readline()
    assert line.startswith(b"HTTP/1.1 "), line
    status = int(line.split()[1])
    headers = {}
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            break
        k, v = line.decode().split(":", 1)
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = f.read(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size = int(f.readline().strip(), 16)
            if size == 0:
                f.readline()
                break
            body += f.read(size)
            f.readline()
    else:
        body = f.read()
    return status, headers, body


def request(a, method, path, body=None, headers=()):
    s = a.connect()
    try:
        h = "".join("%s: %s\r\n" % kv for kv in headers)
        if body is not None:
            h += "Content-Length: %d\r\n" % len(body)
        s.sendall(("%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s\r\n" % (method, path, h)).encode()
                  + (body or b""))
        return read_response(s.makefile("rb"))
    finally:
        s.close()


@pytest.mark.timeout(30)
def test_root_health_fail_recover(demo_server):
    a = demo_server(DEMO_VERSION="v7", WHARF_TASK_ID="t-9")
    st, h, body = request(a, "GET", "/")
    assert st == 200 and h["content-type"] == "application/json"
    doc = json.loads(body)
    assert doc["version"] == "v7" and doc["task"] == "t-9" and doc["hostname"]
    assert request(a, "GET", "/health")[0] == 200
    assert request(a, "GET", "/fail")[0] == 405
    assert request(a, "POST", "/fail", b"")[0] == 200
    assert request(a, "GET", "/health")[0] == 500
    assert request(a, "POST", "/recover", b"")[0] == 200
    assert request(a, "GET", "/health")[0] == 200
    assert request(a, "GET", "/missing")[0] == 404
    st, h, body = request(a, "HEAD", "/")
    assert st == 200 and int(h["content-length"]) > 0 and body == b""


@pytest.mark.timeout(30)
def test_defaults_and_unhealthy_from_start(demo_server, demo_app):
    a = demo_server(DEMO_FAIL_HEALTH=1)
    doc = json.loads(request(a, "GET", "/")[2])
    assert doc["version"] == "v1" and doc["task"] == doc["hostname"] == socket.gethostname()
    assert request(a, "GET", "/health")[0] == 500
    hc = subprocess.run([demo_app, "-healthcheck"], env={"PORT": str(a.port)}, timeout=10)
    assert hc.returncode == 1
    request(a, "POST", "/recover", b"")
    hc = subprocess.run([demo_app, "-healthcheck"], env={"PORT": str(a.port)}, timeout=10)
    assert hc.returncode == 0


@pytest.mark.timeout(30)
def test_keep_alive_pipelining_and_chunked_echo(demo_server):
    a = demo_server()
    s = a.connect()
    f = s.makefile("rb")
    s.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n"
              b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: y\r\n\r\n"
              b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
    assert read_response(f)[0] == 200
    st, h, body = read_response(f)
    assert st == 200 and body == b"hello, world" and "connection" not in h
    assert f.readline() == b"HTTP/1.1 100 Continue\r\n" and f.readline() == b"\r\n"
    s.sendall(b"abc")
    assert read_response(f)[2] == b"abc"
    s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
    st, h, _ = read_response(f)
    assert st == 400 and h["connection"] == "close"
    assert f.read() == b""
    s.close()


@pytest.mark.timeout(30)
def test_slow_requests_run_concurrently(demo_server):
    a = demo_server()
    results = []

    def one():
        results.append(request(a, "GET", "/slow?ms=400")[0])

    threads = [threading.Thread(target=one) for _ in range(30)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 30
    assert time.monotonic() - t0 < 2.5


@pytest.mark.timeout(30)
def test_sse_chunked_and_close_delimited(demo_server):
    a = demo_server()
    t0 = time.monotonic()
    st, h, body = request(a, "GET", "/sse?n=4&ms=100")
    assert st == 200 and h["content-type"] == "text/event-stream"
    assert h["transfer-encoding"] == "chunked"
    assert body == b"".join(b"data: %d\n\n" % i for i in range(4))
    assert time.monotonic() - t0 >= 0.3
    s = a.connect()
    s.sendall(b"GET /sse?n=2 HTTP/1.0\r\n\r\n")
    st, h, body = read_response(s.makefile("rb"))
    assert "transfer-encoding" not in h and body == b"data: 0\n\ndata: 1\n\n"
    s.close()


def ws_read(f):
    b0, b1 = f.read(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", f.read(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", f.read(8))[0]
    return b0 & 0x8F, f.read(n)


def ws_open(a):
    key = ws_key()
    s = a.connect()
    s.sendall(("GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode())
    f = s.makefile("rb")
    st, h, _ = read_response_head(f)
    assert st == 101
    assert h["sec-websocket-accept"] == ws_accept(key)
    return s, f


def read_response_head(f):
    line = f.readline()
    headers = {}
    while True:
        l2 = f.readline()
        if l2 in (b"\r\n", b""):
            break
        k, v = l2.decode().split(":", 1)
        headers[k.strip().lower()] = v.strip()
    return int(line.split()[1]), headers, None


@pytest.mark.timeout(30)
def test_websocket_echo(demo_server):
    a = demo_server()
    s, f = ws_open(a)
    s.sendall(ws_frame(0x1, b"hi"))
    assert ws_read(f) == (0x81, b"hi")
    big = os.urandom(200000)
    s.sendall(ws_frame(0x2, big))
    assert ws_read(f) == (0x82, big)
    s.sendall(ws_frame(0x1, b"ab", fin=False) + ws_frame(0x0, b"cd"))
    assert ws_read(f) == (0x01, b"ab")
    assert ws_read(f) == (0x80, b"cd")
    s.sendall(ws_frame(0x9, b"ping!"))
    assert ws_read(f) == (0x8A, b"ping!")
    s.sendall(ws_frame(0x8, struct.pack("!H", 1000) + b"bye"))
    assert ws_read(f) == (0x88, struct.pack("!H", 1000))
    assert f.read(1) == b""
    s.close()


@pytest.mark.timeout(30)
def test_sigterm_drains_in_flight_and_exits_0(demo_server):
    a = demo_server()
    slow = {}

    def do_slow():
        slow["r"] = request(a, "GET", "/slow?ms=1200")

    t = threading.Thread(target=do_slow)
    t.start()
    idle = a.connect()  # a keep-alive connection between requests
    idle.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
    idle_f = idle.makefile("rb")
    assert read_response(idle_f)[0] == 200
    ws, ws_f = ws_open(a)
    # the /slow request is in flight once the app has read it and not answered
    wait_until(lambda: requests_awaiting_answer(a.port), 5,
               "the /slow request never reached the demo app")
    a.proc.send_signal(signal.SIGTERM)
    # idle keep-alive connections are closed at once, WebSockets get 1001
    assert idle_f.read(1) == b""
    assert ws_read(ws_f) == (0x88, struct.pack("!H", 1001))
    # no new connections: the app closes its listener before it lets the
    # idle connections go, so it is closed by now
    with pytest.raises(OSError):
        a.connect().close()
    t.join(5)
    st, h, body = slow["r"]
    assert st == 200 and json.loads(body)["slept_ms"] == 1200
    assert a.proc.wait(5) == 0


@pytest.mark.timeout(30)
def test_start_delay_and_exit_after(demo_server):
    a = demo_server(wait=False, DEMO_START_DELAY=1)
    # the behaviour under test: half-way through its 1 s start delay the app
    # does not listen yet
    time.sleep(0.5)
    with pytest.raises(OSError):
        a.connect().close()
    a.wait_listening(3)
    b = demo_server(DEMO_EXIT_AFTER=1)
    assert b.proc.wait(5) == 1
    c = demo_server(DEMO_EXIT_AFTER=1, DEMO_EXIT_CODE=0)
    assert c.proc.wait(5) == 0
    d = demo_server(wait=False, DEMO_START_DELAY=30)
    # SIGTERM while it waits (it logs that once it takes signals)
    wait_until(lambda: "waiting 30 s before listening" in d.log_text(), 5,
               lambda: "the demo app never started its delay: %s" % d.log_text())
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(5) == 0
