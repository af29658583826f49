"""Loopback ports: handing out free ones, and telling whether something
listens on one. Standard library only (the health server process uses it)."""

import socket
import threading

from .loopback_server import LOOPBACK
from .polling import wait_until


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
