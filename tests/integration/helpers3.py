"""Helpers for the proxy-at-full-strength tests (issue 3): streaming,
tunnels, signals, access log, metrics.

Builds on conftest.py (imported as `wharf_proxy_harness`) and adds:

  fixtures (import them into a test module to use them)
    wharfd3       factory: wharfd3(cfg, port) -> Wharfd. Like conftest's
                  `wharfd` but the test picks the port (so a config can hold
                  several listeners, an admin block, ...) and may let wharfd
                  exit on purpose (w.exit_expected = True) without the
                  teardown calling it a crash.
    raw_upstream  factory: raw_upstream(handler, name) -> RawUpstream: an
                  origin whose handler owns the socket after the request
                  head (for bodies too big to hold, paced readers, events).
    demo_server   factory: demo_server() -> DemoApp, the static demo web app
                  ($WHARF_BUILD_DIR/tests/app/demo-app or $DEMO_APP) on a
                  free loopback port (runtime/conftest.py's `demo_app` is
                  only the binary's path, and out of reach from here).

  proc_status_kib(pid, key)   VmHWM / VmRSS of a process, KiB
  Pacer                       keeps a reader at a fixed byte rate
  ChunkedDecoder              incremental strict chunked decoder
  read_head(sock, ...)        one response head off a raw socket
  ws_*                        WebSocket client frames and handshake
  LoadGen                     keep-alive GET load from several threads
  parse_prometheus(text)      {name: [(labels, value)]}

Every wait is a poll with a deadline; processes started here are stopped by
their fixture even when the test fails.
"""

import base64
import hashlib
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import zlib
from pathlib import Path

import pytest

from loopback_server import LoopbackServer

from wharf_proxy_harness import (
    BUILD_DIR,
    LOOPBACK,
    SANITIZER_MARKERS,
    ConnectionClosed,
    ProtocolError,
    RawClient,
    ReadTimeout,
    Wharfd,
    _add_diag,
    excerpt,
    free_port,
    parse_head,
    parse_status_line,
    render_config,
    serve_for_test,
    wait_until,
)

MiB = 1024 * 1024
GiB = 1024 * MiB


# --------------------------------------------------------------------------
# processes


def sanitizer_build(binary):
    """True when binary was built with ASan (its peak RSS means nothing)."""
    with open(binary, "rb") as f:
        return b"__asan_init" in f.read()


def proc_status_kib(pid, key):
    """A `key:  N kB` field of /proc/PID/status (VmHWM, VmRSS), in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc/%d/status" % (key, pid))


def connect_refused(port, timeout=0.5):
    """True when a connect to 127.0.0.1:port is refused (ECONNREFUSED),
    False otherwise: it succeeded (the socket is closed again at once) or
    was reset (queued on a listening socket that was then closed)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((LOOPBACK, port))
        return False
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:
        return False
    finally:
        s.close()


def wait_port_open(port, timeout, what, alive=None):
    """Poll until 127.0.0.1:port accepts a connection."""
    def probe():
        if alive is not None and not alive():
            raise AssertionError("%s exited before listening on port %d" % (what, port))
        return not connect_refused(port, timeout=0.2)
    wait_until(probe, timeout, "%s did not listen on 127.0.0.1:%d within %.0fs" % (what, port, timeout),
               interval=0.01)


@pytest.fixture
def wharfd3(request, tmp_path, wharf_binary):
    """Factory: wharfd3(cfg, port, wait_ports=()) -> a running Wharfd.

    cfg is a config dict (rendered with render_config) or text; port is the
    listener port start() waits for (wait_ports: more ports to wait for,
    e.g. an admin listener). Set w.exit_expected = True when the test makes
    wharfd exit; the teardown then only checks stderr for sanitizer reports."""
    procs = []

    def start(cfg, port, wait_ports=()):
        text = cfg if isinstance(cfg, str) else render_config(cfg)
        w = Wharfd(wharf_binary, tmp_path, text, port, 100 + len(procs))
        w.exit_expected = False
        procs.append(w)
        _add_diag(request, "wharfd #%d config" % w.index, lambda: w.config_path.read_text())
        _add_diag(request, "wharfd #%d stderr" % w.index, w.stderr_text)
        w.start()
        for p in wait_ports:
            wait_port_open(p, 10, "wharfd #%d" % w.index, alive=w.alive)
        return w

    yield start
    problems = []
    for w in procs:
        if w.exit_expected and w.proc is not None and w.proc.poll() is not None:
            if w._stderr_f:
                w._stderr_f.close()
            text = w.stderr_text(limit=10 ** 7)
            for marker in SANITIZER_MARKERS:
                if marker in text:
                    problems.append("wharfd #%d stderr holds a sanitizer report (%r)" % (w.index, marker))
                    break
        else:
            problems += w.stop()
    if problems:
        pytest.fail("; ".join(problems) + "\n" + "\n".join(w.stderr_text(8000) for w in procs), pytrace=False)


def write_config_atomically(w, cfg):
    """Replace w's config file in one rename (a reload never reads half a file)."""
    text = cfg if isinstance(cfg, str) else render_config(cfg)
    tmp = w.config_path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, w.config_path)
    return text


# --------------------------------------------------------------------------
# the demo app


def demo_app_path():
    env = os.environ.get("DEMO_APP")
    path = Path(env) if env else BUILD_DIR / "tests" / "app" / "demo-app"
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail("demo app not found at %s: run `make tests/app/demo-app` in the build directory, "
                    "or point WHARF_BUILD_DIR (or DEMO_APP) at it" % path, pytrace=False)
    return path


def stop_process(proc, grace=5):
    """SIGTERM, then SIGKILL after grace seconds; waits for the exit."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


class DemoApp:
    def __init__(self, path, workdir, index):
        self.port = free_port()
        self.addr = "%s:%d" % (LOOPBACK, self.port)
        self.log_path = Path(workdir) / ("demo-app-%d.log" % index)
        self._log = open(self.log_path, "wb")
        env = dict(os.environ, PORT=str(self.port), DEMO_VERSION="t3")
        self.proc = subprocess.Popen([str(path)], env=env, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=self._log)
        wait_port_open(self.port, 10, "demo-app", alive=lambda: self.proc.poll() is None)

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")[-8000:]
        except OSError:
            return "(no log)"

    def stop(self):
        stop_process(self.proc)
        self._log.close()


@pytest.fixture
def demo_server(request, tmp_path):
    made = []

    def make():
        d = DemoApp(demo_app_path(), tmp_path, len(made))
        made.append(d)
        _add_diag(request, "demo-app %d log" % (len(made) - 1), d.log_text)
        return d

    yield make
    for d in made:
        d.stop()


# --------------------------------------------------------------------------
# a raw origin server: the handler owns the socket after the request head


class RawUpConn:
    def __init__(self, upstream, sock, peer):
        self.upstream = upstream
        self.sock = sock
        self.peer = peer
        self.method = self.target = self.version = None
        self.headers = None
        self.leftover = b""  # bytes read past the head

    def read_head(self, timeout=10.0):
        """Read one request head; False on a clean EOF before any byte (or
        when the upstream stops). An idle keep-alive connection may wait for
        its next request as long as it likes; once a head has begun it must
        complete within timeout."""
        buf = bytearray()
        deadline = None
        while True:
            idx = buf.find(b"\r\n\r\n")
            if idx >= 0:
                break
            if deadline is None:
                if self.upstream._stop.is_set():
                    return False
                self.sock.settimeout(0.2)
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("upstream %s: no complete request head within %.0fs: %s"
                                         % (self.upstream.name, timeout, excerpt(buf)))
                self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                if not buf:
                    return False  # an idle connection reset: as good as closed
                raise
            if data and deadline is None:
                deadline = time.monotonic() + timeout
            if not data:
                if not buf:
                    return False
                raise AssertionError("upstream %s: EOF inside a request head: %s" % (self.upstream.name, excerpt(buf)))
            buf += data
        start, self.headers = parse_head(bytes(buf[:idx]), "request from wharfd")
        parts = start.decode("latin-1").split(" ")
        if len(parts) != 3:
            raise ProtocolError("bad request line from wharfd: %r" % start)
        self.method, self.target, self.version = parts
        self.leftover = bytes(buf[idx + 4:])
        return True

    def send(self, data):
        self.sock.sendall(data)


class RawUpstream(LoopbackServer):
    """Accepts connections on a loopback port; for each request head read,
    calls handler(conn) which reads the body and writes the response itself
    and returns True to read another request on the connection."""

    def __init__(self, handler, name):
        self.handler = handler
        self.errors = []
        self.conns = []
        self.lock = threading.Lock()
        super().__init__(name)

    def _accepted(self, s, peer):
        conn = RawUpConn(self, s, peer)
        with self.lock:
            self.conns.append(conn)
        self._start_thread(self._serve, conn)

    def _open_sockets(self):
        with self.lock:
            return [c.sock for c in self.conns]

    def _serve(self, conn):
        try:
            while not self._stop.is_set():
                if not conn.read_head():
                    break
                if not self.handler(conn):
                    break
        except Exception as e:  # reported by the fixture: the test fails
            if not self._stop.is_set():
                self.errors.append("%s: %r" % (self.name, e))
        finally:
            try:
                conn.sock.close()
            except OSError:
                pass


@pytest.fixture
def raw_upstream(request):
    yield from serve_for_test(lambda i, handler, name=None: RawUpstream(handler, name or "raw%d" % i),
                              lambda u: u.errors, "raw upstream errors")


def named_handler(name):
    """A RawUpstream handler answering every request 200 with X-Upstream:
    name, head and body in one write (keep-alive; bodies are read and
    dropped). conftest's Upstream writes head and body separately without
    TCP_NODELAY, which costs a delayed ACK (~40 ms) per response on a reused
    connection: too slow to put thousands of requests through."""
    def handler(conn):
        cl = conn.headers.get_all("content-length")
        te = conn.headers.get_all("transfer-encoding")
        if te:
            raise AssertionError("named_handler: chunked request bodies not supported")
        need = int(cl[0]) if cl else 0
        data = bytearray(conn.leftover)
        while len(data) < need:
            chunk = conn.sock.recv(65536)
            if not chunk:
                return False
            data += chunk
        if len(data) > need:
            raise AssertionError("named_handler: pipelined request bytes after the body: %r" % bytes(data[need:]))
        body = b"from %s %s" % (name.encode(), conn.target.encode("latin-1"))
        conn.send(b"HTTP/1.1 200 OK\r\nX-Upstream: %s\r\nContent-Length: %d\r\n\r\n"
                  % (name.encode(), len(body)) + body)
        return True
    return handler


# --------------------------------------------------------------------------
# streaming


class Pacer:
    """Keeps a consumer at `rate` bytes/s: call consumed(n) after each read;
    it sleeps only as long as the consumer is ahead of the rate."""

    def __init__(self, rate):
        self.rate = float(rate)
        self.t0 = None
        self.total = 0

    def consumed(self, n):
        now = time.monotonic()
        if self.t0 is None:
            self.t0 = now
        self.total += n
        ahead = self.t0 + self.total / self.rate - now
        if ahead > 0:
            time.sleep(ahead)


class PatternSource:
    """A stream of `total` bytes made by repeating one random block whose
    size (1 MiB + 17) is coprime with every power-of-two buffer size, so a
    lost, doubled or reordered buffer inside the proxy changes the CRC."""

    BLOCK = MiB + 17

    def __init__(self, total, seed_block=None):
        self.total = total
        self.block = seed_block or os.urandom(self.BLOCK)
        self.crc = self.expected_crc()

    def pieces(self):
        """memoryviews of the stream in order (the last one possibly short)."""
        mv = memoryview(self.block)
        left = self.total
        while left > 0:
            n = min(left, len(self.block))
            yield mv[:n]
            left -= n

    def expected_crc(self):
        crc = 0
        for p in self.pieces():
            crc = zlib.crc32(p, crc)
        return crc


class ChunkedDecoder:
    """Strict, incremental chunked-body decoder. feed(memoryview) passes
    payload pieces to on_data(memoryview) as they arrive; .done once the
    last chunk and the trailer section are in, with .extra holding bytes
    after the body."""

    def __init__(self, on_data):
        self.on_data = on_data
        self.state = "size"
        self.remaining = 0
        self.line = bytearray()
        self.done = False
        self.extra = b""
        self.trailers = []
        self.chunks = 0

    def feed(self, mv):
        i, n = 0, len(mv)
        while i < n:
            if self.done:
                self.extra += bytes(mv[i:])
                return
            if self.state == "data":
                take = min(self.remaining, n - i)
                self.on_data(mv[i:i + take])
                i += take
                self.remaining -= take
                if self.remaining == 0:
                    self.state = "data-crlf"
                continue
            end = min(n, i + 1024)
            seg = bytes(mv[i:end])
            k = seg.find(b"\n")
            if k < 0:
                self.line += seg
                i = end
                if len(self.line) > 4096:
                    raise ProtocolError("chunked body: line longer than 4096 bytes: %s" % excerpt(self.line, 200))
                continue
            self.line += seg[:k + 1]
            i += k + 1
            line = bytes(self.line)
            self.line.clear()
            if not line.endswith(b"\r\n") or b"\r" in line[:-2]:
                raise ProtocolError("chunked body: line not ended by CRLF: %r" % line[:200])
            self._line(line[:-2])

    def _line(self, line):
        if self.state == "size":
            size_part = line.split(b";", 1)[0].rstrip(b" \t")
            if not re.fullmatch(rb"[0-9a-fA-F]{1,16}", size_part):
                raise ProtocolError("chunked body: bad chunk-size line %r" % line[:200])
            size = int(size_part, 16)
            if size == 0:
                self.state = "trailer"
            else:
                self.state = "data"
                self.remaining = size
                self.chunks += 1
        elif self.state == "data-crlf":
            if line:
                raise ProtocolError("chunked body: chunk data not followed by CRLF: %r" % line[:200])
            self.state = "size"
        elif self.state == "trailer":
            if not line:
                self.done = True
            else:
                self.trailers.append(line)


def read_head(sock, timeout, what="response head"):
    """Read one response head from a raw socket: (status, headers, leftover)."""
    buf = bytearray()
    deadline = time.monotonic() + timeout
    while True:
        idx = buf.find(b"\r\n\r\n")
        if idx >= 0:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ReadTimeout("%s: incomplete after %.0fs: %s" % (what, timeout, excerpt(buf)))
        sock.settimeout(remaining)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        if not data:
            raise ConnectionClosed("%s: connection closed; received %s" % (what, excerpt(buf)))
        buf += data
    start, headers = parse_head(bytes(buf[:idx]), what)
    _, status, _ = parse_status_line(start)
    return status, headers, bytes(buf[idx + 4:])


# --------------------------------------------------------------------------
# WebSocket (client side, RFC 6455)

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_key():
    return base64.b64encode(os.urandom(16)).decode()


def ws_accept(key):
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


def ws_upgrade_headers(key):
    return [("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]


def ws_frame(opcode, payload=b"", fin=True, mask=True):
    """One client frame (masked, as a client must)."""
    head = bytearray([(0x80 if fin else 0) | opcode])
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head.append(mbit | n)
    elif n < 65536:
        head.append(mbit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(mbit | 127)
        head += struct.pack("!Q", n)
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4)
    # XOR with the repeated key through big ints: fast enough for 100s of KiB
    k = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big") if n else b""
    return bytes(head) + key + masked


def ws_read_frame(client, timeout=5.0):
    """Read one frame from a RawClient (after its 101): (fin, opcode, payload).
    Server frames must be unmasked."""
    deadline = time.monotonic() + timeout

    def need(n):
        while len(client.buf) < n:
            if not client._recv_more(deadline, "reading a WebSocket frame"):
                raise ConnectionClosed("connection closed while reading a WebSocket frame; buffered: %s"
                                       % excerpt(client.buf))

    need(2)
    b0, b1 = client.buf[0], client.buf[1]
    if b1 & 0x80:
        raise ProtocolError("server WebSocket frame is masked: %s" % excerpt(client.buf[:16]))
    n = b1 & 0x7F
    pos = 2
    if n == 126:
        need(4)
        n = struct.unpack("!H", bytes(client.buf[2:4]))[0]
        pos = 4
    elif n == 127:
        need(10)
        n = struct.unpack("!Q", bytes(client.buf[2:10]))[0]
        pos = 10
    need(pos + n)
    payload = bytes(client.buf[pos:pos + n])
    del client.buf[:pos + n]
    return bool(b0 & 0x80), b0 & 0x0F, payload


def ws_open(port, path, timeout=5.0):
    """Open a WebSocket through wharfd: (RawClient, 101 response, key)."""
    c = RawClient(port, timeout=timeout)
    key = ws_key()
    c.send(RawClient.build_request("GET", path, headers=ws_upgrade_headers(key)))
    resp = c.read_response()
    return c, resp, key


# --------------------------------------------------------------------------
# load


class LoadGen:
    """`threads` threads, each on one keep-alive connection, sending GETs
    until stop(). Every result is recorded: (t_start, t_end, thread, upstream
    name) for successes; failures keep the exception text. A connection
    wharfd closes cleanly after a response that said `Connection: close` is
    reopened; any other error is a failure (and the connection is reopened)."""

    def __init__(self, port, threads=4, path="/load"):
        self.port = port
        self.path = path
        self.ok = []
        self.failures = []
        self.reconnects = 0
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def start(self):
        for t in self._threads:
            t.start()
        return self

    def count(self):
        with self.lock:
            return len(self.ok)

    # What a subclass changes (helpers_tls.TlsLoad): the client, the request
    # and the shape of the records.
    def _connect(self):
        return RawClient(self.port, timeout=5.0)

    def _request(self, c, idx, n):
        return c.request("GET", "%s/%d/%d" % (self.path, idx, n))

    def _ok_entry(self, t0, t1, idx, r):
        return (t0, t1, idx, r.headers.get("x-upstream"))

    def _failure_entry(self, t0, t1, idx, e):
        return (t0, t1, idx, "%s: %s" % (type(e).__name__, e))

    def _run(self, idx):
        c = None
        n = 0
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                if c is None:
                    c = self._connect()
                r = self._request(c, idx, n)
                t1 = time.monotonic()
                n += 1
                if r.status != 200:
                    raise AssertionError("status %d: %r" % (r.status, r))
                with self.lock:
                    self.ok.append(self._ok_entry(t0, t1, idx, r))
                if "close" in (r.headers.get("connection") or "").lower():
                    c.close()
                    c = None
                    with self.lock:
                        self.reconnects += 1
            except Exception as e:
                with self.lock:
                    self.failures.append(self._failure_entry(t0, time.monotonic(), idx, e))
                if c is not None:
                    c.close()
                c = None
        if c is not None:
            c.close()

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)


# --------------------------------------------------------------------------
# metrics

_METRIC_LINE = re.compile(
    r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+]?(?:[0-9.]+(?:[eE][-+]?[0-9]+)?|NaN|[-+]?Inf))(\s+-?[0-9]+)?$")


def parse_prometheus(text):
    """Prometheus text exposition format -> ({name: [(labels, float)]},
    {name: type}); raises AssertionError on a line that is neither a
    comment nor a sample, a second TYPE line for a name, or a repeated
    series (same name and labels)."""
    samples, types = {}, {}
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                if parts[2] in types:
                    raise AssertionError("second TYPE line for %s" % parts[2])
                types[parts[2]] = parts[3].strip()
            continue
        m = _METRIC_LINE.match(line)
        if not m:
            raise AssertionError("not a Prometheus sample line: %r" % line)
        series = samples.setdefault(m.group(1), [])
        labels = m.group(2) or ""
        if any(lb == labels for lb, _ in series):
            raise AssertionError("repeated series %s%s" % (m.group(1), labels))
        series.append((labels, float(m.group(3))))
    return samples, types
