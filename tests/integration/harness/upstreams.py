"""Origin servers in this process, on loopback, that record what wharfd sends.

Upstream      scriptable origin: a handler is called once per complete
              request with an UpstreamRequest and returns an action: a
              Response, Raw bytes, CLOSE (close without answering), RESET
              (close with RST) or HANG (never answer, keep reading). Every
              byte received is kept per connection.
RawUpstream   an origin whose handler owns the socket after the request head
              (bodies too big to hold, paced readers, events).
Blackhole     a listener whose accept queue is full: connect() to it hangs.
upstream_of   which upstream answered a proxied response."""

import json
import re
import select
import socket
import struct
import threading
import time

from .http_client import DEFAULT_IO_TIMEOUT
from .http_message import Headers, ProtocolError, excerpt, parse_chunked, parse_head
from .loopback_server import LOOPBACK, LoopbackServer
from .polling import wait_until


# --------------------------------------------------------------------------
# the scriptable upstream


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
                time.sleep(action.delay)  # the scripted behaviour: a slow origin
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
            time.sleep(action.delay)  # the scripted behaviour: a slow origin
        for head in action.interim:
            self._send(head + b"\r\n\r\n")
        self._send(action.head_bytes(req.method))
        for i, piece in enumerate(action.body_pieces(req.method)):
            if i and action.chunk_delay:
                time.sleep(action.chunk_delay)  # the scripted behaviour: a body sent in pieces over time
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


def named_handler(name):
    """A RawUpstream handler answering every request 200 with X-Upstream:
    name, head and body in one write (keep-alive; bodies are read and
    dropped). Upstream parses and records every request and writes head
    and body separately: too slow to put thousands of requests through."""
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


def upstream_of(resp):
    """The name of the upstream that answered: the X-Upstream header
    (HealthServer, RawUpstream's named_handler, Upstream's default handler),
    else the JSON body of Upstream's default handler."""
    assert resp.status == 200, "expected a proxied 200, got %r" % (resp,)
    name = resp.headers.get("x-upstream")
    if name is None:
        name = resp.json()["upstream"]
    return name
