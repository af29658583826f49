"""Helpers for the target-registry tests (issue 4): health checks, passive
ejection, draining, the /v1/target-groups admin endpoints and their metrics.

Builds on conftest.py (imported as `wharf_proxy_harness`) and helpers3.py.

  HealthServer    a small threaded HTTP/1.1 origin (raw sockets, TCP_NODELAY,
                  keep-alive, one write per response) whose /health answers
                  200, 500 or hangs (set_health("ok" | "fail" | "hang")),
                  /slow?ms=N waits N ms, /status/NNN answers NNN, anything
                  else 200; every answer carries X-Upstream:
                  NAME. It records the arrival time (time.monotonic) of every
                  request. kill() closes everything abortively (RST).
                  Also runnable on its own (`python3 helpers4.py serve NAME
                  PORT`) so a test can SIGKILL a real process.

  fixtures (import them into a test module to use them)
    health_server  factory: health_server(name) -> a running HealthServer
    server_proc    factory: server_proc(name) -> ServerProc, a HealthServer in
                   its own python3 process (killed at teardown)

  Admin           the admin API client (token, JSON, /metrics)
  targets_config  a config dict with an admin block and target-group settings
  SlowRequest     one slow request in its own thread (its result recorded)

Every wait is a poll with a deadline; whatever these helpers start is stopped
by their fixture even when the test fails.
"""

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse

from loopback_server import LOOPBACK, LoopbackServer


# --------------------------------------------------------------------------
# the origin server (standard library only: also runs as its own process)


class HealthServer(LoopbackServer):
    """Threaded HTTP/1.1 origin on 127.0.0.1:port (0 = any free port)."""

    def __init__(self, name, port=0):
        self.health = "ok"
        self.lock = threading.Lock()
        self.arrivals = []         # (monotonic, target) of every request but /health
        self.health_arrivals = []  # (monotonic, mode it was answered with)
        self.slow_in_flight = 0
        self.slow_done = []        # (monotonic start, monotonic end, target)
        self.slow_seen = set()     # targets of the /slow requests received
        self.errors = []
        self._conns = set()
        super().__init__(name, port, backlog=512, join_timeout=2)

    # -- control and views
    def set_health(self, mode):
        assert mode in ("ok", "fail", "hang"), mode
        with self.lock:
            self.health = mode

    def requests_since(self, t):
        with self.lock:
            return [a for a in self.arrivals if a[0] >= t]

    def count(self):
        with self.lock:
            return len(self.arrivals)

    def last_arrival(self):
        with self.lock:
            return self.arrivals[-1][0] if self.arrivals else None

    def slow_targets_in_flight(self):
        with self.lock:
            return self.slow_in_flight

    def describe(self):
        with self.lock:
            return ("server %s (%s): health=%s, %d requests, %d health checks, %d conns open, "
                    "errors=%s" % (self.name, self.addr, self.health, len(self.arrivals),
                                   len(self.health_arrivals), len(self._conns), self.errors[:5]))

    # -- serving
    def _accepted(self, s, peer):
        with self.lock:
            self._conns.add(s)
        # not in self._threads: stop() joins only the accept thread
        threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _open_sockets(self):
        with self.lock:
            return list(self._conns)

    def _recv(self, s, buf):
        """More bytes into buf; False on EOF, reset or stop."""
        while not self._stop.is_set():
            try:
                data = s.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return False
            if not data:
                return False
            buf += data
            return True
        return False

    def _serve(self, s):
        s.settimeout(0.2)
        buf = bytearray()
        try:
            while not self._stop.is_set():
                idx = buf.find(b"\r\n\r\n")
                if idx < 0:
                    if not self._recv(s, buf):
                        return
                    continue
                head = bytes(buf[:idx]).decode("latin-1")
                del buf[:idx + 4]
                lines = head.split("\r\n")
                parts = lines[0].split(" ")
                if len(parts) != 3:
                    self.errors.append("bad request line %r" % lines[0])
                    return
                headers = {}
                for ln in lines[1:]:
                    k, _, v = ln.partition(":")
                    headers[k.strip().lower()] = v.strip()
                need = int(headers.get("content-length", "0") or 0)
                while len(buf) < need:
                    if not self._recv(s, buf):
                        return
                del buf[:need]
                close = "close" in headers.get("connection", "").lower()
                if not self._handle(s, parts[1], close):
                    return
                if close:
                    return
        finally:
            with self.lock:
                self._conns.discard(s)
            try:
                s.close()
            except OSError:
                pass

    def _reply(self, s, status, body, close):
        reason = {200: "OK", 500: "Internal Server Error", 503: "Service Unavailable"}.get(status, "Status")
        s.sendall(b"HTTP/1.1 %d %s\r\nX-Upstream: %s\r\nContent-Length: %d\r\n%s\r\n"
                  % (status, reason.encode(), self.name.encode(), len(body),
                     b"Connection: close\r\n" if close else b"") + body)

    def _handle(self, s, target, close):
        """Answer one request; False to drop the connection."""
        now = time.monotonic()
        path, _, query = target.partition("?")
        if path == "/health":
            with self.lock:
                mode = self.health
                self.health_arrivals.append((now, mode))
            if mode == "hang":
                buf = bytearray()
                while self._recv(s, buf):  # never answer; wait for the checker to give up
                    pass
                return False
            self._reply(s, 200 if mode == "ok" else 500, b"%s health %s" % (self.name.encode(), mode.encode()), close)
            return True
        if path == "/_ctl/health":  # control when running as a process (direct, not via wharfd)
            mode = urllib.parse.parse_qs(query).get("mode", ["ok"])[0]
            self.set_health(mode)
            self._reply(s, 200, b"ok", close)
            return True
        with self.lock:
            self.arrivals.append((now, target))
        if path == "/slow":
            ms = int(urllib.parse.parse_qs(query).get("ms", ["1000"])[0])
            with self.lock:
                self.slow_in_flight += 1
                self.slow_seen.add(target)
            try:
                # simulated work of the origin, not a wait for anything in the test
                self._stop.wait(ms / 1000.0)
            finally:
                with self.lock:
                    self.slow_in_flight -= 1
                    self.slow_done.append((now, time.monotonic(), target))
            if self._stop.is_set():
                return False
        status = 200
        if path.startswith("/status/"):
            status = int(path[len("/status/"):])
        body = b"from %s %s" % (self.name.encode(), target.encode("latin-1"))
        self._reply(s, status, body, close)
        return True

    # -- stopping
    def kill(self):
        """Like a crash: the listener closes (connects are refused) and every
        connection is reset."""
        def reset(c):
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
        self._halt(reset)


def _serve_forever(name, port):
    srv = HealthServer(name, port)
    sys.stdout.write("ready %d\n" % srv.port)
    sys.stdout.flush()
    signal.signal(signal.SIGTERM, lambda *a: srv._stop.set())
    while not srv._stop.is_set():
        srv._stop.wait(0.5)
    srv.stop()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        _serve_forever(sys.argv[2], int(sys.argv[3]))
        sys.exit(0)
    sys.stderr.write("usage: helpers4.py serve NAME PORT\n")
    sys.exit(2)


# --------------------------------------------------------------------------
# everything below runs under pytest only

import pytest  # noqa: E402

from wharf_proxy_harness import (  # noqa: E402
    RawClient,
    _add_diag,
    build_config,
    free_port,
    serve_for_test,
    wait_until,
)
from helpers3 import connect_refused, parse_prometheus, wait_port_open  # noqa: E402


@pytest.fixture
def health_server(request):
    def new(i, name=None):
        s = HealthServer(name or "hs%d" % i)
        _add_diag(request, "server %s" % s.name, s.describe)
        return s

    yield from serve_for_test(new, lambda s: s.errors, "origin server errors (a test bug)")


class ServerProc:
    """A HealthServer in its own python3 process."""

    def __init__(self, name, workdir):
        self.name = name
        self.port = free_port()
        self.addr = "%s:%d" % (LOOPBACK, self.port)
        self.log_path = os.path.join(str(workdir), "server-%s.log" % name)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "serve", name, str(self.port)],
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log)
        wait_port_open(self.port, 10, "server %s" % name, alive=lambda: self.proc.poll() is None)

    def kill(self):
        """SIGKILL, and wait until the port refuses connections."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=5)
        wait_until(lambda: connect_refused(self.port), 5, "port %d still accepts after SIGKILL" % self.port)

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return "(no log)"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()


@pytest.fixture
def server_proc(request, tmp_path):
    made = []

    def make(name):
        p = ServerProc(name, tmp_path)
        made.append(p)
        _add_diag(request, "server process %s log" % name, p.log_text)
        return p

    yield make
    for p in made:
        p.stop()


# --------------------------------------------------------------------------
# configuration

HC_FAST = {"path": "/health", "interval": 1, "timeout": 0.5, "healthy_threshold": 2,
           "unhealthy_threshold": 2}


def targets_config(port, admin_port, token_file, targets, health_check=None, passive=None,
                   deregistration_delay=None, workers=2, more_groups=None, extra_listeners=(),
                   log_level="info", access_log=None):
    """build_config's shape plus the admin block and group "web"'s settings.
    targets: addresses, servers (.addr) or dicts {address, weight}.
    more_groups: {name: [targets]} (no checks). extra_listeners: (port, group)
    pairs, each a listener forwarding to that group. access_log: a path."""
    cfg = build_config(port, [], workers=workers, log_level=log_level,
                       timeouts={"shutdown_drain": 1, "upstream_connect": 1})
    if access_log:
        cfg["log"]["access_log"] = str(access_log)
    web = {"name": "web"}
    if deregistration_delay is not None:
        web["deregistration_delay"] = deregistration_delay
    if health_check is not None:
        web["health_check"] = dict(health_check)
    if passive is not None:
        web["passive"] = dict(passive)
    web["targets"] = [t if isinstance(t, (str, dict)) else t.addr for t in targets]
    cfg["target_groups"] = [web] + [{"name": n, "targets": [t if isinstance(t, (str, dict)) else t.addr for t in tl]}
                                    for n, tl in (more_groups or {}).items()]
    for i, (lport, group) in enumerate(extra_listeners):
        cfg["listeners"].append({"name": "http%d" % (i + 2), "bind": "%s:%d" % (LOOPBACK, lport),
                                 "protocol": "http",
                                 "default_action": {"forward": [{"target_group": group}]}})
    cfg["admin"] = {"bind": "%s:%d" % (LOOPBACK, admin_port), "token_file": str(token_file),
                    "metrics_public": True}
    return cfg


# --------------------------------------------------------------------------
# the admin API


class Admin:
    def __init__(self, port, token):
        self.port = port
        self.token = token

    def request(self, method, path, body=None, token=True, timeout=5.0):
        headers = []
        if token is True:
            headers.append(("Authorization", "Bearer %s" % self.token))
        elif token:
            headers.append(("Authorization", token))
        if body is not None:
            if not isinstance(body, (bytes, str)):
                body = json.dumps(body)
            headers.append(("Content-Type", "application/json"))
        with RawClient(self.port, timeout=timeout) as c:
            return c.request(method, path, headers=headers, body=body, host="%s:%d" % (LOOPBACK, self.port))

    def groups(self):
        r = self.request("GET", "/v1/target-groups")
        assert r.status == 200, r
        return r.json()

    def group(self, name="web"):
        for g in self.groups():
            if g["name"] == name:
                return g
        return None

    def targets(self, group="web"):
        """{address: target dict} of the group (draining ones included)."""
        g = self.group(group)
        assert g is not None, "no group %s in GET /v1/target-groups: %s" % (group, self.groups())
        return {t["address"]: t for t in g["targets"]}

    def target(self, addr, group="web"):
        return self.targets(group).get(addr)

    def state(self, addr, group="web"):
        t = self.target(addr, group)
        return t and t["state"]

    def wait_state(self, addr, states, timeout, group="web", interval=0.02):
        """Poll until addr's state is in states (None: gone); returns
        (target dict or None, seconds waited)."""
        if isinstance(states, str) or states is None:
            states = (states,)
        t0 = time.monotonic()
        got = wait_until(lambda: [self.target(addr, group)] if self.state(addr, group) in states else None,
                         timeout,
                         lambda: "target %s did not reach %s within %.1fs; now: %s"
                                 % (addr, states, timeout, self.target(addr, group)),
                         interval=interval)
        return got[0], time.monotonic() - t0

    def register(self, addr, group="web", weight=1, **kw):
        body = {"address": addr}
        if weight is not None:
            body["weight"] = weight
        return self.request("POST", "/v1/target-groups/%s/targets" % group, body=body, **kw)

    def deregister(self, addr, group="web", **kw):
        return self.request("DELETE", "/v1/target-groups/%s/targets/%s" % (group, urllib.parse.quote(addr, safe="")),
                            **kw)

    def metrics_text(self):
        r = self.request("GET", "/metrics", token=False)
        assert r.status == 200, r
        return r.body.decode()

    def metrics(self):
        return parse_prometheus(self.metrics_text())


def labels_of(lb):
    """'{a="x",b="y"}' -> {"a": "x", "b": "y"}."""
    out = {}
    inner = lb.strip("{}")
    for part in inner.split(","):
        if part:
            k, _, v = part.partition("=")
            out[k.strip()] = v.strip().strip('"')
    return out


def metric_value(samples, name, **labels):
    """The value of name{labels...} (other labels ignored only when one
    series matches); None when absent."""
    matches = [v for lb, v in samples.get(name, []) if all(labels_of(lb).get(k) == v2 for k, v2 in labels.items())]
    if not matches:
        return None
    assert len(matches) == 1, "%s%s matches %d series" % (name, labels, len(matches))
    return matches[0]


def write_token(tmp_path, token="t4-admin-token"):
    p = tmp_path / "admin.token"
    p.write_text(token + "\n")
    return p, token


# --------------------------------------------------------------------------
# requests


class SlowRequest:
    """GET path on a fresh connection to wharfd in its own thread: .status,
    .upstream (X-Upstream), .error, .t_start / .t_end (monotonic)."""

    def __init__(self, port, path, timeout=15.0):
        self.port = port
        self.path = path
        self.timeout = timeout
        self.status = None
        self.upstream = None
        self.error = None
        self.t_start = self.t_end = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.t_start = time.monotonic()
        try:
            with RawClient(self.port, timeout=self.timeout) as c:
                r = c.request("GET", self.path)
            self.status = r.status
            self.upstream = r.headers.get("x-upstream")
        except Exception as e:
            self.error = "%s: %s" % (type(e).__name__, e)
        finally:
            self.t_end = time.monotonic()
            self.done.set()

    def wait(self, timeout):
        assert self.done.wait(timeout), "request %s did not finish within %.1fs" % (self.path, timeout)
        return self

    def describe(self):
        return "%s -> status %s from %s, error %s, %.3fs" % (
            self.path, self.status, self.upstream, self.error,
            (self.t_end or time.monotonic()) - self.t_start if self.t_start else -1)


def slow_request_on(port, server, others, ms=1500, attempts=12, tag="slow"):
    """Start slow requests until one is in flight on server (round robin puts
    them elsewhere too). Returns (the one on server, all started)."""
    started = []
    for k in range(attempts):
        req = SlowRequest(port, "/slow?ms=%d&%s=%d" % (ms, tag, k))
        started.append(req)
        # where did it land? (poll the origins' records for its unique path)
        path = req.path

        def landed():
            for s in [server] + list(others):
                with s.lock:
                    if path in s.slow_seen:
                        return s
            return req.done.is_set() and "done"
        where = wait_until(landed, 5, lambda: "slow request %s reached no origin: %s" % (path, req.describe()))
        if where is server:
            return req, started
    raise AssertionError("none of %d slow requests landed on %s" % (attempts, server.name))
