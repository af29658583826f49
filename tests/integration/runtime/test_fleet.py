"""The test fleet works: engines in namespaces answer over mutual TLS only,
the demo images run, and their published ports are reachable from the root
namespace. Session fixtures (conftest.py) start the engines; their start-up
is counted in the first test's timeout, hence the generous marks."""

import http.server
import json
import os
import socket
import struct
import subprocess
import threading
import time
import urllib.request

import pytest

from harness.polling import wait_until
from harness.processes import requests_awaiting_answer
from harness.websocket import ws_accept, ws_frame, ws_key


def curl(url, *args, timeout=5):
    return subprocess.run(["curl", "-sS", "--max-time", str(timeout), *args, url],
                          capture_output=True, text=True, timeout=timeout + 5)


def tls_args(ca, cert=None, key=None):
    a = ["--cacert", ca]
    if cert:
        a += ["--cert", cert, "--key", key]
    return a


@pytest.mark.timeout(240)
def test_three_hosts_come_up_in_seconds(fleet):
    assert [h.id for h in fleet.hosts] == ["h1", "h2", "h3"]
    assert fleet.up_seconds < 30, "fleet took %.1fs to start" % fleet.up_seconds
    assert len({h.addr for h in fleet.hosts}) == 3
    assert [h.az for h in fleet.hosts] == ["az-1", "az-2", "az-3"]
    conf = open(fleet.hosts_conf).read()
    for h in fleet.hosts:
        assert os.path.exists(h.netns_path)
        assert os.path.exists("/proc/%d" % h.pid)
        assert 'id = "%s"; docker = "tcp://%s:2376";' % (h.id, h.addr) in conf
        assert 'address = "%s";' % h.addr in conf
    assert conf.lstrip().startswith("#") and "hosts = (" in conf and conf.rstrip().endswith(");")


@pytest.mark.timeout(120)
def test_each_host_answers_ping_over_mutual_tls(fleet):
    for h in fleet.hosts:
        r = curl("https://%s:2376/_ping" % h.addr, *tls_args(h.tls["ca"], h.tls["cert"], h.tls["key"]))
        assert r.returncode == 0 and r.stdout == "OK", (h.id, r.stderr)
        r = curl("https://%s:2376/v1.41/version" % h.addr,
                 *tls_args(h.tls["ca"], h.tls["cert"], h.tls["key"]))
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["ApiVersion"] >= "1.41"
        # the unix socket answers too
        r = curl("http://docker/_ping", "--unix-socket", h.unix)
        assert r.stdout == "OK", r.stderr


@pytest.mark.timeout(120)
def test_wrong_client_certificate_is_refused(fleet):
    t = fleet.tls
    for h in fleet.hosts:
        url = "https://%s:2376/_ping" % h.addr
        rogue = curl(url, *tls_args(t["ca"], t["rogue_cert"], t["rogue_key"]))
        assert rogue.returncode != 0 and rogue.stdout != "OK", rogue
        none = curl(url, *tls_args(t["ca"]))
        assert none.returncode != 0 and none.stdout != "OK", none
        # and the client refuses a server its CA did not sign
        wrong_ca = curl(url, *tls_args(t["rogue_ca"], t["cert"], t["key"]))
        assert wrong_ca.returncode == 60, wrong_ca  # CURLE_PEER_FAILED_VERIFICATION
        # plain HTTP on the TLS port gets no API answer
        plain = curl("http://%s:2376/_ping" % h.addr)
        assert plain.stdout != "OK"


@pytest.mark.timeout(120)
def test_demo_v1_on_h2_is_reachable_from_root_namespace(fleet):
    c = fleet.run_demo("h2", "wharf-demo:v1", env={"WHARF_TASK_ID": "task-42"},
                       labels={"wharf.test": "fleet"})
    try:
        ports = c.inspect()["NetworkSettings"]["Ports"]["8080/tcp"]
        assert [p["HostIp"] for p in ports] == ["0.0.0.0"]
        with urllib.request.urlopen(c.url + "/", timeout=5) as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "application/json"
            assert r.headers["X-Demo-Version"] == "v1"
            body = json.loads(r.read())
        assert body == {"version": "v1", "hostname": c.id[:12], "task": "task-42"}
        assert c.get("/health") == (200, b'{"status": "ok"}')
        assert c.get("/nope")[0] == 404
        # only h2 runs it: the same port on h1 is closed
        with pytest.raises(OSError):
            socket.create_connection((fleet.host("h1").addr, c.port), timeout=2).close()
    finally:
        c.remove()


@pytest.mark.timeout(120)
def test_demo_v2_answers_v2(fleet):
    c = fleet.run_demo("h3", "wharf-demo:v2")
    try:
        status, body = c.get("/")
        assert status == 200
        body = json.loads(body)
        assert body["version"] == "v2" and body["task"] == body["hostname"] == c.id[:12]
    finally:
        c.remove()


@pytest.mark.timeout(120)
def test_bad_image_is_never_healthy(fleet):
    c = fleet.run_demo("h1", "wharf-demo:bad")
    try:
        assert c.get("/health")[0] == 500
        assert c.get("/health")[0] == 500
        assert json.loads(c.get("/")[1])["version"] == "bad"
    finally:
        c.remove()


@pytest.mark.timeout(120)
def test_health_fail_and_recover_and_docker_healthcheck(fleet):
    c = fleet.run_demo("h1", "wharf-demo:hc")
    try:
        def health():
            return (c.inspect()["State"].get("Health") or {}).get("Status")
        wait_until(lambda: health() == "healthy", 15, "Docker health not 'healthy' within 15 s", interval=0.1)
        req = urllib.request.Request(c.url + "/fail", data=b"", method="POST")
        urllib.request.urlopen(req, timeout=5).close()
        assert c.get("/health")[0] == 500
        wait_until(lambda: health() == "unhealthy", 15, "Docker health not 'unhealthy' within 15 s", interval=0.1)
        req = urllib.request.Request(c.url + "/recover", data=b"", method="POST")
        urllib.request.urlopen(req, timeout=5).close()
        assert c.get("/health")[0] == 200
        wait_until(lambda: health() == "healthy", 15, "Docker health not 'healthy' again within 15 s", interval=0.1)
    finally:
        c.remove()


@pytest.mark.timeout(120)
def test_sigterm_finishes_in_flight_request_and_exits_0(fleet):
    c = fleet.run_demo("h2", "wharf-demo:v1")
    try:
        result = {}

        def slow():
            result["resp"] = c.get("/slow?ms=1500", timeout=10)

        t = threading.Thread(target=slow)
        t.start()
        # in flight: the app (in the container's network namespace) has read
        # the request and not answered it
        pid = c.pid()
        wait_until(lambda: requests_awaiting_answer(8080, netns_of_pid=pid), 5,
                   "the /slow request never reached the demo app in container %s" % c.id[:12])
        t0 = time.monotonic()
        fleet.docker("h2", "stop", "-t", "20", c.id)
        took = time.monotonic() - t0
        t.join(10)
        assert result["resp"][0] == 200, result
        assert json.loads(result["resp"][1])["slept_ms"] == 1500
        state = c.inspect()["State"]
        assert state["ExitCode"] == 0 and not state["OOMKilled"], state
        assert took < 5, "stop took %.1fs: SIGTERM not handled?" % took
        with pytest.raises(OSError):
            socket.create_connection((c.host.addr, c.port), timeout=2).close()
    finally:
        c.remove()


def _ws_read(f):
    b0, b1 = f.read(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", f.read(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", f.read(8))[0]
    assert not b1 & 0x80, "server frames are not masked"
    return b0 & 0x0F, f.read(n)


@pytest.mark.timeout(120)
def test_demo_echo_websocket_and_sse_through_published_port(fleet):
    c = fleet.run_demo("h3", "wharf-demo:v1")
    try:
        body = os.urandom(100000)
        req = urllib.request.Request(c.url + "/echo", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.read() == body
        with urllib.request.urlopen(c.url + "/sse?n=3&ms=50", timeout=5) as r:
            assert r.headers["Content-Type"] == "text/event-stream"
            assert r.read() == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"

        key = ws_key()
        s = socket.create_connection((c.host.addr, c.port), timeout=5)
        s.sendall(("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode())
        f = s.makefile("rb")
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += f.read(1)
        assert head.startswith(b"HTTP/1.1 101 ")
        assert ("Sec-WebSocket-Accept: %s\r\n" % ws_accept(key)).encode() in head
        s.sendall(ws_frame(0x1, b"hello"))
        assert _ws_read(f) == (0x1, b"hello")
        big = os.urandom(70000)
        s.sendall(ws_frame(0x2, big))
        assert _ws_read(f) == (0x2, big)
        s.sendall(ws_frame(0x9, b"p"))
        assert _ws_read(f) == (0xA, b"p")
        s.sendall(ws_frame(0x8, struct.pack("!H", 1000)))
        assert _ws_read(f) == (0x8, struct.pack("!H", 1000))
        assert f.read(1) == b""
        s.close()
    finally:
        c.remove()


@pytest.mark.timeout(120)
def test_engines_reach_root_namespace_as_insecure_registry(fleet):
    """A registry bound on a root-side veth address is reached over plain
    HTTP by the engines (--insecure-registry covers the fleet's range)."""
    seen = []

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    gw = fleet.host("h1").gateway
    srv = http.server.ThreadingHTTPServer((gw, 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        for h in fleet.hosts:
            del seen[:]
            p = fleet.docker(h.id, "pull", "%s:%d/nothing:v1" % (gw, srv.server_port), check=False)
            assert p.returncode != 0
            assert any(x.startswith("/v2/") for x in seen), (h.id, seen, p.stderr)
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.timeout(120)
def test_local_engine_publishes_on_loopback(local_engine):
    (h,) = local_engine.hosts
    assert h.id == "local" and h.docker.startswith("unix://") and h.addr == "127.0.0.1"
    c = local_engine.run_demo("local", "wharf-demo:v1")
    try:
        assert c.url.startswith("http://127.0.0.1:")
        assert json.loads(c.get("/")[1])["version"] == "v1"
    finally:
        c.remove()


@pytest.mark.timeout(120)
def test_restart_engine_keeps_address_and_images(fleet):
    old = fleet.host("h3").pid
    fleet.restart("h3")
    h = fleet.host("h3")
    assert h.pid != old and os.path.exists("/proc/%d" % h.pid)
    r = curl("https://%s:2376/_ping" % h.addr, *tls_args(h.tls["ca"], h.tls["cert"], h.tls["key"]))
    assert r.stdout == "OK", r.stderr
    images = fleet.docker("h3", "images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert set(fleet.images) <= set(images)
