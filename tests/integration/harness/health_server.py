"""An origin server for the target-registry tests (health checks, passive
ejection, draining, the admin endpoints), in this process or in its own.

  HealthServer    a small threaded HTTP/1.1 origin (raw sockets, TCP_NODELAY,
                  keep-alive, one write per response) whose /health answers
                  200, 500 or hangs (set_health("ok" | "fail" | "hang")),
                  /slow?ms=N waits N ms, /status/NNN answers NNN, anything
                  else 200; every answer carries X-Upstream: NAME. It records
                  the arrival time (time.monotonic) of every request. kill()
                  closes everything abortively (RST).
  ServerProc      a HealthServer in its own python3 process (`python3 -m
                  harness.health_server serve NAME PORT`), so a test can
                  SIGKILL a real process.

Standard library only: it also runs as its own process.
"""

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

from .loopback_server import LOOPBACK, LoopbackServer
from .polling import wait_until
from .ports import connect_refused, free_port, wait_port_open

# the directory holding the harness package (for `python3 -m harness....`)
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[1])


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
        srv._stop.wait(0.5)  # the process's main thread idles until SIGTERM
    srv.stop()


class ServerProc:
    """A HealthServer in its own python3 process."""

    def __init__(self, name, workdir):
        self.name = name
        self.port = free_port()
        self.addr = "%s:%d" % (LOOPBACK, self.port)
        self.log_path = os.path.join(str(workdir), "server-%s.log" % name)
        self._log = open(self.log_path, "wb")
        env = dict(os.environ, PYTHONPATH=_PACKAGE_PARENT)
        self.proc = subprocess.Popen([sys.executable, "-m", "harness.health_server", "serve", name, str(self.port)],
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, env=env)
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


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        _serve_forever(sys.argv[2], int(sys.argv[3]))
        sys.exit(0)
    sys.stderr.write("usage: python3 -m harness.health_server serve NAME PORT\n")
    sys.exit(2)
