"""A listening socket on 127.0.0.1 with a thread accepting on it: the part
the tests' origin servers share (upstreams.Upstream, upstreams.RawUpstream,
health_server.HealthServer). Standard library only: health_server also
runs as its own process."""

import socket
import threading

LOOPBACK = "127.0.0.1"


class LoopbackServer:
    """Subclasses set up their own state, then call __init__, and implement
    _accepted(sock, peer) (start whatever serves the connection; threads
    appended to self._threads are joined by stop()) and _open_sockets() (the
    accepted sockets still open, for stop()). Accepted sockets have
    TCP_NODELAY on: head and body often go out in separate writes, and
    without it each response on a reused connection waits for a delayed
    ACK."""

    def __init__(self, name, port=0, backlog=128, join_timeout=3):
        self.name = name
        self.join_timeout = join_timeout
        self._stop = threading.Event()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((LOOPBACK, port))
        self.lsock.listen(backlog)
        self.lsock.settimeout(0.05)
        self.port = self.lsock.getsockname()[1]
        self.addr = "%s:%d" % (LOOPBACK, self.port)
        self._threads = [threading.Thread(target=self._accept_loop, name="srv-%s" % name, daemon=True)]
        self._threads[0].start()

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                s, peer = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._accepted(s, peer)

    def _start_thread(self, target, *args, name=None):
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _halt(self, end_socket):
        """Stop accepting (the listener closes) and end every open socket."""
        self._stop.set()
        try:
            self.lsock.close()
        except OSError:
            pass
        for s in self._open_sockets():
            try:
                end_socket(s)
            except OSError:
                pass

    def stop(self, end_socket=lambda s: s.shutdown(socket.SHUT_RDWR)):
        self._halt(end_socket)
        for t in list(self._threads):
            t.join(timeout=self.join_timeout)
