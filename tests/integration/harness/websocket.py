"""WebSocket, client side (RFC 6455): the upgrade, client frames, reading
server frames."""

import base64
import hashlib
import os
import struct
import time

from .http_client import RawClient
from .http_message import ConnectionClosed, ProtocolError, excerpt


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
