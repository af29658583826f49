"""Integration harness for wharfd's HTTP/1.1 reverse proxy
(importable from test modules as `wharf_proxy_harness`).

Real processes only: wharfd runs as a subprocess with a generated config;
upstreams are scriptable origin servers running in-process (threads with raw
sockets on 127.0.0.1) that record every byte they receive per connection, so
a test can prove exactly what reached them.

Fixtures
  wharf_binary   path of wharfd ($WHARF_BUILD_DIR/wharfd, default
                 build/plain/wharfd of this checkout)
  upstream       factory: upstream(handler=None, name=None) -> Upstream
  wharfd         factory: wharfd(targets, limits=..., timeouts=..., ...) -> Wharfd
  refused_target factory: refused_target() -> "127.0.0.1:PORT" with nothing listening
  blackhole      factory: blackhole() -> a loopback listener whose accept queue is
                 full, so a connect() to it hangs (SYN dropped)

Upstream handlers are called once per complete request with an
UpstreamRequest and return an action: a Response, Raw bytes, CLOSE (close
without answering), RESET (close with RST) or HANG (never answer, keep
reading).

Only loopback is ever addressed.
"""

import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

from loopback_server import LoopbackServer

# Test modules import the helpers below with `from wharf_proxy_harness import
# ...`: another conftest.py under this directory (runtime/) is also a module
# named "conftest", so `from conftest import` would get whichever was loaded
# last. pytest always loads this file before the test modules next to it.
sys.modules["wharf_proxy_harness"] = sys.modules[__name__]

LOOPBACK = "127.0.0.1"
# Absolute: wharfd runs with its test's tmp_path as working directory, so a
# relative WHARF_BUILD_DIR ("build/plain") must be resolved here.
BUILD_DIR = Path(os.environ.get("WHARF_BUILD_DIR",
                               str(Path(__file__).resolve().parents[2] / "build" / "plain"))).resolve()

TOKEN_BYTES = frozenset(
    b"!#$%&'*+-.^_`|~0123456789"
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
HEX_BYTES = frozenset(b"0123456789abcdefABCDEF")
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")

# Upper bound for any single wait on wharfd in these tests (seconds).
DEFAULT_IO_TIMEOUT = 5.0


# --------------------------------------------------------------------------
# small utilities


def wait_until(predicate, timeout, message, interval=0.005):
    """Poll predicate() until it returns something truthy (returned) or the
    deadline passes (AssertionError with message, which may be a callable)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(message() if callable(message) else message)
        time.sleep(interval)


_handed_out_ports = set()
_port_lock = threading.Lock()


def free_port():
    """An ephemeral loopback port that nothing listens on right now and that
    this test session has not handed out before."""
    with _port_lock:
        for _ in range(100):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            port = s.getsockname()[1]
            s.close()
            if port not in _handed_out_ports:
                _handed_out_ports.add(port)
                return port
    raise RuntimeError("could not find an unused ephemeral port")


def excerpt(data, limit=1500):
    data = bytes(data)
    if len(data) <= limit:
        return repr(data)
    return "%r ... (%d bytes total)" % (data[:limit], len(data))


# --------------------------------------------------------------------------
# HTTP message model and a strict little parser (used to check what wharfd
# sends, in both directions)


class HarnessError(AssertionError):
    """Base for errors the harness raises about wharfd's behaviour."""


class ProtocolError(HarnessError):
    """wharfd sent bytes that are not a valid HTTP/1.1 message."""


class ReadTimeout(HarnessError):
    pass


class ConnectionClosed(HarnessError):
    pass


class Headers(list):
    """A list of (name, value) str pairs, order and case preserved, with
    case-insensitive lookups."""

    def get_all(self, name):
        n = name.lower()
        return [v for k, v in self if k.lower() == n]

    def get(self, name, default=None):
        values = self.get_all(name)
        if not values:
            return default
        return ", ".join(values)

    def has(self, name):
        return bool(self.get_all(name))

    def names_lower(self):
        return [k.lower() for k, _ in self]


def _check_field_line(line, what):
    if line[:1] in (b" ", b"\t"):
        raise ProtocolError("%s: obsolete line folding: %r" % (what, line))
    name, sep, value = line.partition(b":")
    if not sep:
        raise ProtocolError("%s: header line without a colon: %r" % (what, line))
    if not name or any(c not in TOKEN_BYTES for c in name):
        raise ProtocolError("%s: invalid header name: %r" % (what, line))
    value = value.strip(b" \t")
    if any((c < 0x20 and c != 0x09) or c == 0x7F for c in value):
        raise ProtocolError("%s: control character in header value: %r" % (what, line))
    return name.decode("latin-1"), value.decode("latin-1")


def parse_head(head, what):
    """Split a head (without the final CRLFCRLF) into start line and
    Headers, strictly: CRLF line ends only, no folding, token names, no CTLs."""
    lines = head.split(b"\r\n")
    for line in lines:
        if b"\r" in line or b"\n" in line:
            raise ProtocolError("%s: bare CR or LF in head: %r" % (what, head))
    headers = Headers()
    for line in lines[1:]:
        headers.append(_check_field_line(line, what))
    return lines[0], headers


def parse_status_line(line):
    """'HTTP/1.1 200 OK' -> ('HTTP/1.1', 200, 'OK'), strictly."""
    m = re.match(rb"^(HTTP/[0-9]\.[0-9]) ([0-9]{3}) ?([^\x00-\x08\x0a-\x1f\x7f]*)$", line)
    if not m:
        raise ProtocolError("invalid status line: %r" % (line,))
    return m.group(1).decode(), int(m.group(2)), m.group(3).decode("latin-1")


def parse_chunked(buf, pos, what):
    """Parse a chunked body in buf starting at pos, strictly.

    Returns (end, payload, trailers) when the body is complete, None when
    more bytes are needed (the bytes so far being a valid prefix), and raises
    ProtocolError when the bytes cannot be a valid chunked body."""
    payload = bytearray()
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            partial = bytes(buf[pos:])
            size_part = partial.partition(b";")[0]
            if size_part.endswith(b"\r"):
                size_part = size_part[:-1]
            if b"\r" in size_part or b"\n" in size_part or any(
                c not in HEX_BYTES and c not in b" \t" for c in size_part
            ) or len(size_part.strip(b" \t")) > 16:
                raise ProtocolError("%s: invalid chunk-size line (partial): %r" % (what, partial[:100]))
            return None
        line = bytes(buf[pos:eol])
        size_part, semi, _ext = line.partition(b";")
        if semi:
            size_part = size_part.rstrip(b" \t")
        if (
            not size_part
            or len(size_part) > 16
            or any(c not in HEX_BYTES for c in size_part)
            or b"\n" in line
            or b"\r" in line
        ):
            raise ProtocolError("%s: invalid chunk-size line: %r" % (what, line[:100]))
        size = int(size_part, 16)
        pos = eol + 2
        if size == 0:
            trailers = Headers()
            while True:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                line = bytes(buf[pos:eol])
                pos = eol + 2
                if not line:
                    return pos, bytes(payload), trailers
                if b"\r" in line or b"\n" in line:
                    raise ProtocolError("%s: bare CR/LF in trailer: %r" % (what, line))
                trailers.append(_check_field_line(line, what + " trailer"))
        if len(buf) < pos + size + 2:
            if len(buf) > pos + size and buf[pos + size : pos + size + 1] != b"\r":
                raise ProtocolError("%s: chunk data not followed by CRLF" % what)
            return None
        payload += buf[pos : pos + size]
        if buf[pos + size : pos + size + 2] != b"\r\n":
            raise ProtocolError(
                "%s: chunk data not followed by CRLF: %r" % (what, bytes(buf[pos + size : pos + size + 10]))
            )
        pos += size + 2


def encode_chunked(chunks, trailers=()):
    out = bytearray()
    for c in chunks:
        if c:
            out += b"%x\r\n" % len(c) + c + b"\r\n"
    out += b"0\r\n"
    for k, v in trailers:
        out += ("%s: %s\r\n" % (k, v)).encode("latin-1")
    out += b"\r\n"
    return bytes(out)


class HttpResponse:
    def __init__(self, version, status, reason, headers, raw_head):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
        self.raw_head = raw_head
        self.body = b""
        self.chunked = False
        self.trailers = Headers()
        self.close_delimited = False
        self.interim = []  # 1xx responses received before this one

    @property
    def status_line(self):
        return "%s %d %s" % (self.version, self.status, self.reason)

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<HttpResponse %s headers=%r body=%s>" % (self.status_line, list(self.headers), excerpt(self.body, 300))


# --------------------------------------------------------------------------
# raw client


class RawClient:
    """A client on one TCP connection: send any bytes, read responses with
    strict framing (Content-Length, chunked, close-delimited; no body for
    HEAD/1xx/204/304)."""

    def __init__(self, port, timeout=DEFAULT_IO_TIMEOUT, host=LOOPBACK):
        self.port = port
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.received = bytearray()  # everything ever received
        self.eof = False
        self.reset = False

    # -- sending
    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    @staticmethod
    def build_request(method="GET", target="/", headers=(), body=None, host="wharf.test", version="HTTP/1.1"):
        lines = ["%s %s %s" % (method, target, version)]
        if host is not None:
            lines.append("Host: %s" % host)
        names = set()
        for k, v in headers:
            lines.append("%s: %s" % (k, v))
            names.add(k.lower())
        if body is not None:
            if isinstance(body, str):
                body = body.encode("latin-1")
            if "content-length" not in names and "transfer-encoding" not in names:
                lines.append("Content-Length: %d" % len(body))
        else:
            body = b""
        return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body

    def request(self, method="GET", target="/", headers=(), body=None, host="wharf.test", version="HTTP/1.1", timeout=None):
        self.send(self.build_request(method, target, headers, body, host, version))
        return self.read_response(method=method, timeout=timeout)

    # -- receiving
    def _recv_more(self, deadline, what):
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ReadTimeout(
                "%s: nothing more from wharfd within the deadline; received so far on this connection: %s"
                % (what, excerpt(self.received))
            )
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise ReadTimeout(
                "%s: nothing more from wharfd within %.1fs; received so far on this connection: %s"
                % (what, self.timeout, excerpt(self.received))
            ) from None
        except ConnectionResetError:
            self.eof = True
            self.reset = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        self.received += data
        return True

    def read_response(self, method="GET", timeout=None, return_interim=False):
        """Read one complete response. 1xx responses (except 101) are
        collected in .interim unless return_interim, in which case the first
        1xx is returned by itself."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        interim = []
        while True:
            idx = self.buf.find(b"\r\n\r\n")
            while idx < 0:
                if not self._recv_more(deadline, "reading a response head"):
                    raise ConnectionClosed(
                        "connection %s by wharfd before a complete response head; "
                        "received on this connection: %s"
                        % ("reset" if self.reset else "closed", excerpt(self.received))
                    )
                idx = self.buf.find(b"\r\n\r\n")
            head = bytes(self.buf[:idx])
            del self.buf[: idx + 4]
            start, headers = parse_head(head, "response from wharfd")
            version, status, reason = parse_status_line(start)
            resp = HttpResponse(version, status, reason, headers, head + b"\r\n\r\n")
            if 100 <= status < 200 and status != 101:
                if headers.has("content-length") or headers.has("transfer-encoding"):
                    raise ProtocolError("1xx response with framing headers: %r" % head)
                if return_interim:
                    return resp
                interim.append(resp)
                continue
            resp.interim = interim
            self._read_body(resp, method, deadline)
            return resp

    def _read_body(self, resp, method, deadline):
        h = resp.headers
        te = h.get_all("transfer-encoding")
        cl = h.get_all("content-length")
        if method == "HEAD" or resp.status in (204, 304) or resp.status == 101:
            if resp.status == 204 and (te or cl):
                raise ProtocolError("204 response with framing headers: %r" % resp.raw_head)
            return
        if te and cl:
            raise ProtocolError("response with both Content-Length and Transfer-Encoding: %r" % resp.raw_head)
        if te:
            if len(te) != 1 or te[0].lower() != "chunked":
                raise ProtocolError("response Transfer-Encoding is not exactly chunked: %r" % te)
            resp.chunked = True
            while True:
                res = parse_chunked(self.buf, 0, "chunked response body from wharfd")
                if res is not None:
                    end, payload, trailers = res
                    del self.buf[:end]
                    resp.body = payload
                    resp.trailers = trailers
                    return
                if not self._recv_more(deadline, "reading a chunked response body"):
                    raise ConnectionClosed(
                        "connection closed in the middle of a chunked response body; received: %s"
                        % excerpt(self.received)
                    )
        if cl:
            if len(set(cl)) != 1 or not re.fullmatch(r"[0-9]{1,18}", cl[0]):
                raise ProtocolError("invalid Content-Length in response: %r" % cl)
            n = int(cl[0])
            while len(self.buf) < n:
                if not self._recv_more(deadline, "reading a Content-Length response body"):
                    raise ConnectionClosed(
                        "connection closed after %d of %d body bytes; received: %s"
                        % (len(self.buf), n, excerpt(self.received))
                    )
            resp.body = bytes(self.buf[:n])
            del self.buf[:n]
            return
        # close-delimited
        resp.close_delimited = True
        while self._recv_more(deadline, "reading a close-delimited response body"):
            pass
        resp.body = bytes(self.buf)
        self.buf.clear()

    def expect_closed(self, timeout=3.0, what="the connection"):
        """Assert that wharfd closes this connection (FIN or RST) within
        timeout and sends nothing more. Returns the seconds it took."""
        t0 = time.monotonic()
        if self.buf:
            raise AssertionError(
                "expected %s to be closed, but wharfd sent more bytes: %s" % (what, excerpt(self.buf))
            )
        deadline = t0 + timeout
        while not self.eof:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("%s is still open %.1fs later; wharfd did not close it" % (what, timeout))
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                self.eof = self.reset = True
                break
            if not data:
                self.eof = True
                break
            self.received += data
            raise AssertionError(
                "expected %s to be closed, but wharfd sent more bytes: %s" % (what, excerpt(data))
            )
        return time.monotonic() - t0

    def read_until_close(self, timeout=3.0):
        deadline = time.monotonic() + timeout
        while self._recv_more(deadline, "reading until close"):
            pass
        data = bytes(self.buf)
        self.buf.clear()
        return data

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------
# scriptable upstream (origin) server


class Response:
    """A scripted upstream response.

    body: bytes; chunked: send with chunked coding (chunks= a list of
    pieces, default [body]); content_length=False and not chunked: a
    close-delimited body (the connection closes after it). HEAD gets the same
    headers (Content-Length of the body) and no body; 204/304/1xx never get a
    body. delay: seconds before anything is sent. interim: raw 1xx heads
    (bytes, without the final CRLF) sent first. close: close after sending;
    close_after: keep the connection open that many seconds, then close it."""

    def __init__(self, status=200, body=b"", headers=(), reason=None, chunked=False, chunks=None,
                 trailers=(), content_length=True, delay=0.0, chunk_delay=0.0, interim=(),
                 close=False, close_after=None):
        if isinstance(body, str):
            body = body.encode()
        self.status = status
        self.body = body
        self.headers = list(headers)
        self.reason = reason
        self.chunked = chunked
        self.chunks = chunks
        self.trailers = list(trailers)
        self.content_length = content_length
        self.delay = delay
        self.chunk_delay = chunk_delay
        self.interim = list(interim)
        self.close = close
        self.close_after = close_after

    def head_bytes(self, req_method):
        reason = self.reason if self.reason is not None else _REASONS.get(self.status, "Status")
        lines = ["HTTP/1.1 %d %s" % (self.status, reason)]
        names = {k.lower() for k, _ in self.headers}
        lines += ["%s: %s" % (k, v) for k, v in self.headers]
        no_body_status = self.status in (204, 304) or 100 <= self.status < 200
        if not no_body_status:
            if self.chunked:
                if "transfer-encoding" not in names:
                    lines.append("Transfer-Encoding: chunked")
            elif self.content_length and "content-length" not in names:
                lines.append("Content-Length: %d" % len(self.body))
        if self.close and "connection" not in names:
            lines.append("Connection: close")
        return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n"

    def body_pieces(self, req_method):
        if req_method == "HEAD" or self.status in (204, 304) or 100 <= self.status < 200:
            return []
        if self.chunked:
            pieces = []
            for c in (self.chunks if self.chunks is not None else [self.body]):
                if c:
                    pieces.append(b"%x\r\n" % len(c) + c + b"\r\n")
            end = b"0\r\n" + b"".join(("%s: %s\r\n" % kv).encode("latin-1") for kv in self.trailers) + b"\r\n"
            pieces.append(end)
            return pieces
        return [self.body] if self.body else []

    def closes_connection(self):
        return self.close or (not self.chunked and not self.content_length and self.status not in (204, 304))


_REASONS = {100: "Continue", 103: "Early Hints", 200: "OK", 201: "Created", 204: "No Content",
            301: "Moved Permanently", 304: "Not Modified", 400: "Bad Request", 404: "Not Found",
            500: "Internal Server Error", 503: "Service Unavailable"}


class Raw:
    """Send these exact bytes (after delay); close afterwards if close, or
    close_after seconds later."""

    def __init__(self, data, close=False, delay=0.0, close_after=None):
        self.data = data
        self.close = close
        self.delay = delay
        self.close_after = close_after


class _Action:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


CLOSE = _Action("CLOSE")  # close the connection without answering (FIN)
RESET = _Action("RESET")  # close the connection with RST
HANG = _Action("HANG")    # never answer; keep reading (to see when wharfd gives up)


class UpstreamRequest:
    def __init__(self, conn, index, seq, method, target, version, headers, body, raw, chunked, trailers):
        self.conn = conn
        self.upstream = conn.upstream
        self.index = index  # position on its connection, 0-based
        self.seq = seq      # arrival order across the whole upstream
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.body = body
        self.raw = raw
        self.chunked = chunked
        self.trailers = trailers

    def __repr__(self):
        return "<UpstreamRequest conn=%d #%d %s %s>" % (self.conn.id, self.index, self.method, self.target)


class UpstreamConn:
    """One accepted connection: every byte received, the requests parsed
    from them, and how the connection ended."""

    def __init__(self, upstream, sock, peer, conn_id):
        self.upstream = upstream
        self.sock = sock
        self.peer = peer
        self.id = conn_id
        self.received = bytearray()
        self.buf = bytearray()
        self.requests = []
        self.partial_head = None  # (method, target, headers) of an incomplete message
        self.parse_error = None
        self.opened_at = time.monotonic()
        self.closed_at = None
        self.closed_by = None  # "peer" (FIN), "peer-reset", "us", "stop"
        self._closing = False  # we started closing (so an EOF we then see is ours)
        self._head = None

    @property
    def closed(self):
        return self.closed_by is not None

    @property
    def closed_by_peer(self):
        return self.closed_by in ("peer", "peer-reset")

    def targets(self):
        return [r.target for r in self.requests]

    def describe(self):
        lines = [
            "conn %d from %s:%d closed_by=%s requests=%s partial_head=%s parse_error=%s"
            % (self.id, self.peer[0], self.peer[1], self.closed_by,
               ["%s %s" % (r.method, r.target) for r in self.requests],
               self.partial_head[:2] if self.partial_head else None, self.parse_error),
            "  received: %s" % excerpt(self.received, 3000),
        ]
        return "\n".join(lines)

    # -- the connection thread
    def run(self):
        up = self.upstream
        self.sock.settimeout(0.05)
        try:
            while not up._stop.is_set() and not self.closed:
                try:
                    data = self.sock.recv(65536)
                except socket.timeout:
                    continue
                except ConnectionResetError:
                    self._set_closed("us" if self._closing else "peer-reset")
                    break
                except OSError:
                    self._set_closed("us" if self._closing else "stop")
                    break
                if not data:
                    self._set_closed("us" if self._closing else "peer")
                    break
                with up.lock:
                    self.received += data
                    self.buf += data
                self._process()
        finally:
            self._set_closed("us" if self._closing else "stop")
            try:
                self.sock.close()
            except OSError:
                pass

    def _set_closed(self, how):
        with self.upstream.lock:
            if self.closed_by is None:
                self.closed_by = how
                self.closed_at = time.monotonic()

    def _close(self, reset=False):
        """Close our side. The close is recorded only once the FIN (or RST)
        is on its way: close() alone from another thread (close_after timers)
        is deferred by the kernel while the connection thread polls the fd,
        so the FIN is sent with shutdown() first."""
        with self.upstream.lock:
            if self._closing:
                return
            self._closing = True
        try:
            if reset:  # only ever called on the connection thread: close() acts at once
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        self._set_closed("us")

    def _process(self):
        while not self.closed and self.parse_error is None:
            try:
                req = self._parse_one()
            except ProtocolError as e:
                with self.upstream.lock:
                    self.parse_error = str(e)
                return
            if req is None:
                return
            try:
                action = self.upstream.handler(req)
            except Exception as e:  # a test bug: report it, fail the test
                self.upstream.handler_errors.append("%r on %r" % (e, req))
                self._close()
                return
            self._perform(req, action)

    def _parse_one(self):
        buf = self.buf
        what = "request from wharfd to upstream %s" % self.upstream.name
        if self._head is None:
            idx = buf.find(b"\r\n\r\n")
            if idx < 0:
                if b"\n\n" in buf or b"\r\r" in buf:
                    raise ProtocolError("%s: head not terminated by CRLFCRLF: %s" % (what, excerpt(buf)))
                return None
            start, headers = parse_head(bytes(buf[:idx]), what)
            parts = start.split(b" ")
            if len(parts) != 3 or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
                raise ProtocolError("%s: invalid request line %r" % (what, start))
            method, target, version = (p.decode("latin-1") for p in parts)
            te = headers.get_all("transfer-encoding")
            cl = headers.get_all("content-length")
            if te and cl:
                raise ProtocolError("%s: both Content-Length and Transfer-Encoding" % what)
            if te and (len(te) != 1 or te[0].lower() != "chunked"):
                raise ProtocolError("%s: Transfer-Encoding not exactly chunked: %r" % (what, te))
            if cl and (len(set(cl)) != 1 or not re.fullmatch(r"[0-9]{1,18}", cl[0])):
                raise ProtocolError("%s: invalid Content-Length %r" % (what, cl))
            self._head = (method, target, version, headers, idx + 4,
                          "chunked" if te else ("length" if cl else "none"), int(cl[0]) if cl else 0)
            with self.upstream.lock:
                self.partial_head = self._head
        method, target, version, headers, head_len, mode, length = self._head
        trailers = Headers()
        if mode == "chunked":
            res = parse_chunked(buf, head_len, what + " (chunked body)")
            if res is None:
                return None
            end, body, trailers = res
        elif mode == "length":
            if len(buf) < head_len + length:
                return None
            end = head_len + length
            body = bytes(buf[head_len:end])
        else:
            end, body = head_len, b""
        up = self.upstream
        with up.lock:
            raw = bytes(buf[:end])
            del buf[:end]
            req = UpstreamRequest(self, len(self.requests), up._seq, method, target, version, headers,
                                  body, raw, mode == "chunked", trailers)
            up._seq += 1
            self.requests.append(req)
            self.partial_head = None
        self._head = None
        return req

    def _perform(self, req, action):
        if action is CLOSE:
            self._close()
            return
        if action is RESET:
            self._close(reset=True)
            return
        if action is HANG:
            return
        if isinstance(action, bytes):
            action = Raw(action)
        if isinstance(action, Raw):
            if action.delay:
                time.sleep(action.delay)
            self._send(action.data)
            if action.close:
                self._close()
            elif action.close_after is not None:
                timer = threading.Timer(action.close_after, self._close)
                timer.daemon = True
                timer.start()
            return
        if not isinstance(action, Response):
            self.upstream.handler_errors.append("handler returned %r for %r" % (action, req))
            self._close()
            return
        if action.delay:
            time.sleep(action.delay)
        for head in action.interim:
            self._send(head + b"\r\n\r\n")
        self._send(action.head_bytes(req.method))
        for i, piece in enumerate(action.body_pieces(req.method)):
            if i and action.chunk_delay:
                time.sleep(action.chunk_delay)
            self._send(piece)
        conn_tokens = [t.strip().lower() for t in req.headers.get("connection", "").split(",")]
        if action.closes_connection() or "close" in conn_tokens:
            self._close()
        elif action.close_after is not None:
            timer = threading.Timer(action.close_after, self._close)
            timer.daemon = True
            timer.start()

    def _send(self, data):
        if self.closed:
            return
        try:
            self.sock.settimeout(DEFAULT_IO_TIMEOUT)
            self.sock.sendall(data)
        except OSError:
            pass
        finally:
            try:
                self.sock.settimeout(0.05)
            except OSError:
                pass


def default_handler(req):
    """200 with a JSON body naming the upstream, connection and request."""
    info = {
        "upstream": req.upstream.name,
        "conn": req.conn.id,
        "index": req.index,
        "method": req.method,
        "target": req.target,
        "body_len": len(req.body),
    }
    return Response(200, body=json.dumps(info).encode(),
                    headers=[("Content-Type", "application/json"), ("X-Upstream", req.upstream.name)])


def echo_handler(req):
    """200 whose body is the request body received."""
    return Response(200, body=req.body, headers=[("X-Upstream", req.upstream.name),
                                                 ("X-Echo-Method", req.method)])


class Upstream(LoopbackServer):
    def __init__(self, handler=None, name="upstream"):
        self.handler = handler or default_handler
        self.lock = threading.RLock()
        self.conns = []
        self.handler_errors = []
        self._seq = 0
        super().__init__(name, join_timeout=2)

    def _accepted(self, s, peer):
        with self.lock:
            conn = UpstreamConn(self, s, peer, len(self.conns))
            self.conns.append(conn)
        self._start_thread(conn.run, name="upstream-%s-conn%d" % (self.name, conn.id))

    def _open_sockets(self):
        return [c.sock for c in self.connections()]

    # -- views
    def connections(self):
        with self.lock:
            return list(self.conns)

    def requests(self):
        with self.lock:
            reqs = [r for c in self.conns for r in c.requests]
        return sorted(reqs, key=lambda r: r.seq)

    def requests_for(self, target):
        return [r for r in self.requests() if r.target == target]

    def total_bytes(self):
        with self.lock:
            return sum(len(c.received) for c in self.conns)

    def wait_for_requests(self, n, timeout=DEFAULT_IO_TIMEOUT):
        return wait_until(lambda: len(self.requests()) >= n and self.requests(), timeout,
                          lambda: "upstream %s received %d requests, expected %d\n%s"
                          % (self.name, len(self.requests()), n, self.describe()))

    def wait_for_partial_head(self, target, timeout=DEFAULT_IO_TIMEOUT):
        """Wait until a connection holds the complete head of a request for
        target whose body has not completed; returns that connection."""
        def find():
            for c in self.connections():
                if c.partial_head and c.partial_head[1] == target:
                    return c
            return None
        return wait_until(find, timeout,
                          lambda: "upstream %s never received the head of the request for %s "
                                  "(wharfd must stream: forward the head before the body is complete)\n%s"
                                  % (self.name, target, self.describe()))

    def describe(self):
        with self.lock:
            conns = list(self.conns)
        if not conns:
            return "upstream %s (%s): no connections" % (self.name, self.addr)
        return "upstream %s (%s): %d connection(s)\n%s" % (
            self.name, self.addr, len(conns), "\n".join(c.describe() for c in conns))

    def stop(self):
        super().stop(end_socket=lambda s: s.close())


class Blackhole:
    """A loopback listener whose accept queue is full (listen(0), filled
    with connections never accepted): further SYNs are dropped, so connect()
    to it hangs until the connecting side gives up. verified says whether a
    probe connect actually timed out."""

    def __init__(self):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind((LOOPBACK, 0))
        self.lsock.listen(0)
        self.port = self.lsock.getsockname()[1]
        self.addr = "%s:%d" % (LOOPBACK, self.port)
        self.fillers = []
        for _ in range(64):
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.setblocking(False)
            c.connect_ex((LOOPBACK, self.port))
            self.fillers.append(c)
            _, writable, _ = select.select([], [c], [], 0.2)
            if not writable:
                break
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.settimeout(0.3)
        try:
            probe.connect((LOOPBACK, self.port))
            self.verified = False
        except socket.timeout:
            self.verified = True
        except OSError:
            self.verified = False
        finally:
            probe.close()

    def close(self):
        for c in self.fillers:
            c.close()
        self.lsock.close()


# --------------------------------------------------------------------------
# wharfd


class Array(list):
    """Rendered as a libconfig array [ ... ] instead of a list ( ... )."""


def render_config_value(value, indent=0):
    pad = "  " * indent
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        r = repr(value)
        return r if ("." in r or "e" in r) else r + ".0"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, Array):
        return "[ " + ", ".join(render_config_value(v, indent + 1) for v in value) + " ]"
    if isinstance(value, (list, tuple)):
        if not value:
            return "()"
        inner = (",\n" + pad + "  ").join(render_config_value(v, indent + 1) for v in value)
        return "(\n" + pad + "  " + inner + "\n" + pad + ")"
    if isinstance(value, dict):
        inner = "".join("%s  %s = %s;\n" % (pad, k, render_config_value(v, indent + 1)) for k, v in value.items())
        return "{\n" + inner + pad + "}"
    raise TypeError("cannot render %r in libconfig" % (value,))


def render_config(cfg):
    return "".join("%s = %s;\n" % (k, render_config_value(v)) for k, v in cfg.items())


def _target_addr(t):
    return t if isinstance(t, str) else t.addr


def build_config(port, targets=(), groups=None, default_group="web", workers=1, log_level="debug",
                 limits=None, timeouts=None, idle_timeout=None, listener_extra=None, extra=None):
    """A config dict in CONFIG.md's shape: one http listener on
    127.0.0.1:port forwarding to default_group; groups maps names to target
    lists (Upstream objects or "IP:port" strings; default {"web": targets})."""
    if groups is None:
        groups = {default_group: list(targets)}
    cfg = {"workers": workers, "log": {"level": log_level}}
    if limits:
        cfg["limits"] = dict(limits)
    t = {"shutdown_drain": 1}  # keep teardown fast; tests here do not test draining
    t.update(timeouts or {})
    cfg["timeouts"] = t
    listener = {"name": "http", "bind": "%s:%d" % (LOOPBACK, port), "protocol": "http"}
    if idle_timeout is not None:
        listener["idle_timeout"] = idle_timeout
    listener["default_action"] = {"forward": [{"target_group": default_group}]}
    if listener_extra:
        listener.update(listener_extra)
    cfg["listeners"] = [listener]
    cfg["target_groups"] = [{"name": name, "targets": [_target_addr(x) for x in tl]} for name, tl in groups.items()]
    if extra:
        cfg.update(extra)
    return cfg


SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


class Wharfd:
    def __init__(self, binary, workdir, config_text, port, index):
        self.binary = binary
        self.workdir = Path(workdir)
        self.port = port
        self.index = index
        self.config_path = self.workdir / ("wharfd-%d.conf" % index)
        self.stderr_path = self.workdir / ("wharfd-%d.stderr" % index)
        self.config_path.write_text(config_text)
        self.proc = None
        self._stderr_f = None
        self.start_failed = False

    @property
    def addr(self):
        return "%s:%d" % (LOOPBACK, self.port)

    def stderr_text(self, limit=30000):
        try:
            data = self.stderr_path.read_bytes()
        except OSError:
            return "(no stderr file)"
        text = data.decode("utf-8", "replace")
        if len(text) > limit:
            text = "...(%d bytes cut)...\n" % (len(text) - limit) + text[-limit:]
        return text

    def start(self, timeout=10.0):
        self._stderr_f = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([str(self.binary), "-c", str(self.config_path)], stdin=subprocess.DEVNULL,
                                     stdout=self._stderr_f, stderr=self._stderr_f, cwd=str(self.workdir))
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self.start_failed = True
                raise AssertionError("wharfd exited with status %s before its listener accepted connections.\n"
                                     "config:\n%s\nstderr:\n%s" % (rc, self.config_path.read_text(), self.stderr_text()))
            try:
                s = socket.create_connection((LOOPBACK, self.port), timeout=0.2)
                s.close()
                return
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise AssertionError("wharfd's listener %s did not accept within %.0fs.\nstderr:\n%s"
                                     % (self.addr, timeout, self.stderr_text()))
            time.sleep(0.01)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, term_timeout=5.0):
        """SIGTERM, then SIGKILL after term_timeout. Returns a list of
        problems (wharfd died during the test, sanitizer reports)."""
        problems = []
        if self.proc is None:
            return problems
        rc = self.proc.poll()
        if rc is not None and self.start_failed:
            pass  # already reported by start()
        elif rc is not None:
            problems.append("wharfd #%d exited during the test with status %s" % (self.index, rc))
        else:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=term_timeout)
            except subprocess.TimeoutExpired:
                warnings.warn("wharfd #%d did not exit %.0fs after SIGTERM; killed" % (self.index, term_timeout))
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
            rc = self.proc.returncode
            if rc is not None and rc < 0 and -rc not in (signal.SIGTERM, signal.SIGKILL):
                problems.append("wharfd #%d died from signal %d on SIGTERM" % (self.index, -rc))
        if self._stderr_f:
            self._stderr_f.close()
        text = self.stderr_text(limit=10 ** 7)
        for marker in SANITIZER_MARKERS:
            if marker in text:
                problems.append("wharfd #%d stderr holds a sanitizer report (%r)" % (self.index, marker))
                break
        return problems

    # -- client conveniences
    def client(self, timeout=DEFAULT_IO_TIMEOUT):
        return RawClient(self.port, timeout=timeout)

    def request(self, method="GET", target="/", headers=(), body=None, host="wharf.test", timeout=None):
        """One request on a fresh connection; returns the response."""
        with self.client() as c:
            return c.request(method, target, headers=headers, body=body, host=host, timeout=timeout)

    def get(self, target="/", **kw):
        return self.request("GET", target, **kw)


# --------------------------------------------------------------------------
# fixtures


def _add_diag(request, title, fn):
    diag = getattr(request.node, "_wharf_diag", None)
    if diag is None:
        diag = request.node._wharf_diag = []
    diag.append((title, fn))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for title, fn in getattr(item, "_wharf_diag", []):
            try:
                text = fn()
            except Exception as e:  # diagnostics must never hide the failure
                text = "(diagnostics failed: %r)" % e
            rep.sections.append(("%s [%s]" % (title, rep.when), text))


@pytest.fixture(scope="session")
def wharf_binary():
    path = BUILD_DIR / "wharfd"
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail("wharfd not found at %s: build it, or point WHARF_BUILD_DIR at a configured build "
                    "directory holding wharfd" % path, pytrace=False)
    return path


@pytest.fixture
def upstream(request):
    """Factory: upstream(handler=None, name=None) -> a running Upstream."""

    def new(i, handler=None, name=None):
        u = Upstream(handler, name or "up%d" % i)
        _add_diag(request, "upstream %s" % u.name, u.describe)
        return u

    yield from serve_for_test(new, lambda u: u.handler_errors, "upstream handler errors (a test bug)")


def serve_for_test(new, errors_of, what):
    """A server fixture's body: yields a factory (new(index, *args) makes a
    running server), stops every server made at teardown, then fails the
    test with what the servers recorded in errors_of(server)."""
    made = []

    def make(*args, **kw):
        s = new(len(made), *args, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()
    errors = [e for s in made for e in errors_of(s)]
    if errors:
        pytest.fail("%s: %s" % (what, errors))


@pytest.fixture
def refused_target():
    """Factory: an "IP:port" on loopback where nothing listens."""
    return lambda: "%s:%d" % (LOOPBACK, free_port())


@pytest.fixture
def blackhole():
    made = []

    def make():
        b = Blackhole()
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


@pytest.fixture
def wharfd(request, tmp_path, wharf_binary):
    """Factory: wharfd(targets, **build_config options) -> a running Wharfd
    (config written to tmp_path, listener on a free loopback port).
    config_text= bypasses build_config (use {port} in the text)."""
    procs = []

    def start(targets=(), config_text=None, **kw):
        port = free_port()
        if config_text is None:
            config_text = render_config(build_config(port, targets, **kw))
        else:
            config_text = config_text.replace("{port}", str(port))
        w = Wharfd(wharf_binary, tmp_path, config_text, port, len(procs))
        procs.append(w)
        _add_diag(request, "wharfd #%d config" % w.index, lambda: w.config_path.read_text())
        _add_diag(request, "wharfd #%d stderr" % w.index, w.stderr_text)
        w.start()
        return w

    yield start
    problems = []
    for w in procs:
        problems += w.stop()
    if problems:
        pytest.fail("; ".join(problems) + "\n" + "\n".join(w.stderr_text(8000) for w in procs), pytrace=False)
