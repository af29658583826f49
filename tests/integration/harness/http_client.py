"""Clients toward wharfd: RawClient (one TCP connection, any bytes out,
strictly framed responses in), a response-head reader for raw sockets,
one-shot GETs and curl."""

import json
import re
import socket
import subprocess
import time

from .http_message import (
    ConnectionClosed,
    HttpResponse,
    ProtocolError,
    ReadTimeout,
    excerpt,
    parse_chunked,
    parse_head,
    parse_status_line,
)
from .loopback_server import LOOPBACK


# Upper bound for any single wait on wharfd in these tests (seconds).
DEFAULT_IO_TIMEOUT = 5.0


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


def get(port, target="/", headers=(), host="wharf.test", method="GET"):
    """One request on a fresh connection."""
    with RawClient(port) as c:
        return c.request(method, target, headers=headers, host=host)


def curl(port, path, host=None, resolve=None, headers=(), method=None, timeout=5):
    """Run curl against wharfd: with resolve=NAME the URL is
    http://NAME:PORT/path and --resolve NAME:PORT:127.0.0.1 (curl then sends
    Host: NAME:PORT); else http://127.0.0.1:PORT/path. host= adds an explicit
    Host header. Returns (status, Headers, body); never follows redirects."""
    if resolve:
        url = "http://%s:%d%s" % (resolve, port, path)
    else:
        url = "http://%s:%d%s" % (LOOPBACK, port, path)
    cmd = ["curl", "-sS", "-i", "--noproxy", "*", "--max-time", str(timeout), "--path-as-is"]
    if resolve:
        cmd += ["--resolve", "%s:%d:%s" % (resolve, port, LOOPBACK)]
    if method:
        cmd += ["-X", method]
    if host is not None:
        cmd += ["-H", "Host: %s" % host]
    for k, v in headers:
        cmd += ["-H", "%s: %s" % (k, v)]
    cmd.append(url)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout + 5)
    assert p.returncode == 0, "curl %s failed (%d): %s" % (" ".join(cmd), p.returncode, p.stderr.decode(errors="replace"))
    out = p.stdout
    idx = out.find(b"\r\n\r\n")
    assert idx >= 0, "curl output without a head: %r" % out[:500]
    start, hdrs = parse_head(out[:idx], "response to curl")
    _, status, _ = parse_status_line(start)
    return status, hdrs, out[idx + 4:]


def curl_upstream(port, path, **kw):
    status, hdrs, body = curl(port, path, **kw)
    assert status == 200, "curl %s -> %d %r %r" % (path, status, list(hdrs), body[:300])
    return json.loads(body)["upstream"]
