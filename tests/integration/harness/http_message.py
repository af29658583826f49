"""The HTTP/1.1 message model and strict parsers the harness checks
wharfd's bytes with, in both directions: heads, status lines, chunked
bodies (whole or incremental), and the errors raised about them."""

import json
import re


TOKEN_BYTES = frozenset(
    b"!#$%&'*+-.^_`|~0123456789"
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
HEX_BYTES = frozenset(b"0123456789abcdefABCDEF")
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def excerpt(data, limit=1500):
    data = bytes(data)
    if len(data) <= limit:
        return repr(data)
    return "%r ... (%d bytes total)" % (data[:limit], len(data))


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
