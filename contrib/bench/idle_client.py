#!/usr/bin/python3
"""Open N keep-alive HTTP/1.1 connections to HOST:PORT, send one GET on
each, read its whole response, then hold every connection open and idle.

When all N are idle it writes "ready N" to READY_FILE (if given) and to
stdout, then waits until SIGTERM/SIGINT, watching for connections the
server closes. On exit it prints "closed_by_server K" and exits 0 if K is 0.

Usage: idle_client.py HOST PORT N [READY_FILE] [--parallel P] [--timeout S]
Standard library only; one process, selectors (epoll), non-blocking sockets.
"""
import argparse
import errno
import resource
import selectors
import signal
import socket
import sys
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: wharf-idle-client\r\n\r\n"


class Conn:
    __slots__ = ("sock", "state", "buf", "sent")

    def __init__(self, sock):
        self.sock = sock
        self.state = "connecting"
        self.buf = b""
        self.sent = 0


def response_complete(buf):
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    head = buf[:end].decode("latin-1").split("\r\n")
    if not head[0].startswith("HTTP/1.1 200"):
        raise RuntimeError("unexpected status line: %r" % head[0])
    length = None
    for line in head[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "connection" and "close" in value.lower():
            raise RuntimeError("server wants to close the connection")
        elif name == "transfer-encoding":
            raise RuntimeError("chunked response not expected here")
    if length is None:
        raise RuntimeError("response without Content-Length")
    return len(buf) - (end + 4) >= length


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("n", type=int)
    ap.add_argument("ready_file", nargs="?")
    ap.add_argument("--parallel", type=int, default=64,
                    help="connections in the connect/request phase at once")
    ap.add_argument("--timeout", type=float, default=120.0,
                    help="seconds to get all N connections idle")
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.n + 16 > hard:
        sys.exit("need %d file descriptors, hard limit is %d" % (args.n + 16, hard))

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    sel = selectors.DefaultSelector()
    started = idle = closed = 0
    busy = 0
    deadline = time.monotonic() + args.timeout
    ready_sent = False

    def open_one():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rc = s.connect_ex((args.host, args.port))
        if rc not in (0, errno.EINPROGRESS):
            raise OSError(rc, "connect: " + errno.errorcode.get(rc, str(rc)))
        c = Conn(s)
        sel.register(s, selectors.EVENT_WRITE, c)

    while not stop:
        while started < args.n and busy < args.parallel:
            open_one()
            started += 1
            busy += 1
        if not ready_sent and idle == args.n:
            ready_sent = True
            msg = "ready %d\n" % idle
            if args.ready_file:
                with open(args.ready_file, "w") as f:
                    f.write(msg)
            sys.stdout.write(msg)
            sys.stdout.flush()
        if not ready_sent and time.monotonic() > deadline:
            sys.exit("timeout: %d of %d connections idle" % (idle, args.n))
        for key, ev in sel.select(timeout=0.5):
            c = key.data
            s = c.sock
            if c.state == "connecting":
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    sys.exit("connect failed: %s" % errno.errorcode.get(err, err))
                c.state = "sending"
            if c.state == "sending":
                try:
                    c.sent += s.send(REQUEST[c.sent:])
                except BlockingIOError:
                    continue
                if c.sent == len(REQUEST):
                    c.state = "reading"
                    sel.modify(s, selectors.EVENT_READ, c)
                continue
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                data = b""
            if c.state == "reading":
                if not data:
                    sys.exit("server closed a connection before answering")
                c.buf += data
                if response_complete(c.buf):
                    c.state = "idle"
                    c.buf = b""
                    idle += 1
                    busy -= 1
            else:  # idle: anything but more data means the server closed it
                if not data:
                    closed += 1
                    sel.unregister(s)
                    s.close()
    print("closed_by_server %d" % closed)
    sys.exit(1 if closed else 0)


if __name__ == "__main__":
    main()
