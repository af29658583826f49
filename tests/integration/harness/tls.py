"""HTTPS listeners under test: certificates, TLS clients, configs with
https listeners, TLS load.

  make_cert(dir, stem, names)   a self-signed EC P-256 certificate (openssl
                                CLI) with subjectAltName DNS:names -> Cert
  replace_cert_files(dst, src)  put src's key and cert at dst's paths, each
                                in one rename
  client_context(...)           an ssl.SSLContext for a test client (no
                                verification unless cafile is given: the
                                tests compare the DER they were shown)
  TlsClient(port, ...)          RawClient over TLS (same strict response
                                reading, request(), expect_closed(), ...)
  tls_config_text(...)          a wharfd config with https/http listeners,
                                written by hand so that every certificate
                                entry sits on one known line
  TlsLoad                       HTTPS load: keep-alive threads and
                                new-connection threads, every result kept
  client_hello_bytes(...)       the bytes of a real ClientHello

Only loopback is ever addressed.
"""

import os
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

from .http_client import DEFAULT_IO_TIMEOUT, RawClient
from .load import LoadGen
from .loopback_server import LOOPBACK


# --------------------------------------------------------------------------
# certificates


class Cert:
    def __init__(self, cert, key, names):
        self.cert = Path(cert)
        self.key = Path(key)
        self.names = list(names)

    def der(self):
        """The DER of the certificate now in the file."""
        return ssl.PEM_cert_to_DER_cert(self.cert.read_text())

    def __repr__(self):
        return "<Cert %s %s>" % (self.cert.name, self.names)


def make_cert(directory, stem, names, days=2):
    """A self-signed EC P-256 certificate for DNS names (the first is also
    the CN), with a random serial and a fresh key: <stem>.pem, <stem>.key."""
    directory = Path(directory)
    cert, key = directory / (stem + ".pem"), directory / (stem + ".key")
    san = ",".join("DNS:%s" % n for n in names)
    cmd = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-keyout", str(key), "-out", str(cert), "-days", str(days), "-subj", "/CN=%s" % names[0],
           "-addext", "subjectAltName=%s" % san]
    res = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         timeout=30)
    if res.returncode != 0:
        raise RuntimeError("openssl req failed (%d): %s" % (res.returncode, res.stdout.decode(errors="replace")))
    return Cert(cert, key, names)


def make_key(directory, stem):
    """A lone EC P-256 private key (matches no certificate made here)."""
    key = Path(directory) / (stem + ".key")
    res = subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                          "-out", str(key)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, timeout=30)
    if res.returncode != 0:
        raise RuntimeError("openssl genpkey failed: %s" % res.stdout.decode(errors="replace"))
    return key


def replace_file_atomically(dst, data):
    dst = Path(dst)
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, dst)


def replace_cert_files(dst, src):
    """Install src's key and certificate at dst's paths, each file in one
    rename (nothing reads them until the SIGHUP that follows)."""
    replace_file_atomically(dst.key, src.key.read_bytes())
    replace_file_atomically(dst.cert, src.cert.read_bytes())


# --------------------------------------------------------------------------
# clients


def client_context(min_version=None, max_version=None, alpn=("http/1.1",), cafile=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile:
        ctx.load_verify_locations(cafile=str(cafile))
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if min_version is not None:
        ctx.minimum_version = min_version
    if max_version is not None:
        ctx.maximum_version = max_version
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


class TlsClient(RawClient):
    """A RawClient on one TLS connection; the handshake happens in the
    constructor (ssl errors propagate). server_hostname=None sends no SNI."""

    def __init__(self, port, ctx=None, server_hostname=None, session=None, timeout=DEFAULT_IO_TIMEOUT,
                 host=LOOPBACK):
        self.port = port
        self.timeout = timeout
        raw = socket.create_connection((host, port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.sock = (ctx or client_context()).wrap_socket(raw, server_hostname=server_hostname,
                                                              session=session)
        except BaseException:
            raw.close()
            raise
        self.buf = bytearray()
        self.received = bytearray()
        self.eof = False
        self.reset = False

    def peer_der(self):
        return self.sock.getpeercert(binary_form=True)

    def version(self):
        return self.sock.version()

    def alpn(self):
        return self.sock.selected_alpn_protocol()

    @property
    def session(self):
        return self.sock.session

    @property
    def session_reused(self):
        return self.sock.session_reused


def handshake_der(port, server_hostname=None, ctx=None, timeout=DEFAULT_IO_TIMEOUT):
    """The DER of the certificate a fresh handshake is shown."""
    with TlsClient(port, ctx=ctx, server_hostname=server_hostname, timeout=timeout) as c:
        return c.peer_der()


def client_hello_bytes(server_hostname="a.test"):
    """The first flight of a real TLS client (a complete ClientHello record)."""
    ctx = client_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    data = outgoing.read()
    assert data[:1] == b"\x16" and len(data) > 100, data[:20]
    return data


# --------------------------------------------------------------------------
# configuration


def https_listener(name, port, certs, policy=None, default_action=None, idle_timeout=None):
    return {"name": name, "port": port, "protocol": "https", "certs": list(certs), "policy": policy,
            "default_action": default_action, "idle_timeout": idle_timeout}


def http_listener(name, port, default_action=None, idle_timeout=None):
    return {"name": name, "port": port, "protocol": "http", "certs": [], "policy": None,
            "default_action": default_action, "idle_timeout": idle_timeout}


FORWARD_WEB = '{ forward = ( { target_group = "web"; } ); }'


def tls_config_text(listeners, targets, workers=1, log_level="info", timeouts=None, cert_override=None):
    """(text, cert_lines): a config in CONFIG.md's shape. cert_lines maps
    (listener name, index) to the 1-based line of that certificate entry
    (cert and key on that one line). cert_override maps (listener name,
    index) to (cert path, key path) written instead of the Cert's own."""
    t = {"shutdown_drain": 1}
    t.update(timeouts or {})
    lines = ["workers = %d;" % workers,
             'log = { level = "%s"; };' % log_level,
             "timeouts = { %s };" % " ".join("%s = %s;" % kv for kv in t.items()),
             "listeners = ("]
    cert_lines = {}
    for li, l in enumerate(listeners):
        lines.append('  { name = "%s";' % l["name"])
        lines.append('    bind = "%s:%d";' % (LOOPBACK, l["port"]))
        lines.append('    protocol = "%s";' % l["protocol"])
        if l["protocol"] == "https":
            lines.append("    certificates = (")
            for i, c in enumerate(l["certs"]):
                cert, key = (cert_override or {}).get((l["name"], i), (c.cert, c.key))
                lines.append('      { cert = "%s"; key = "%s"; }%s'
                             % (cert, key, "," if i + 1 < len(l["certs"]) else ""))
                cert_lines[(l["name"], i)] = len(lines)
            lines.append("    );")
            if l["policy"]:
                lines.append('    tls_policy = "%s";' % l["policy"])
        if l["idle_timeout"] is not None:
            lines.append("    idle_timeout = %s;" % l["idle_timeout"])
        lines.append("    default_action = %s;" % (l["default_action"] or FORWARD_WEB))
        lines.append("  }%s" % ("," if li + 1 < len(listeners) else ""))
    lines.append(");")
    addrs = ", ".join('"%s"' % (t if isinstance(t, str) else t.addr) for t in targets)
    lines.append('target_groups = ( { name = "web"; targets = ( %s ); } );' % addrs)
    return "\n".join(lines) + "\n", cert_lines


# --------------------------------------------------------------------------
# load


class TlsLoad(LoadGen):
    """HTTPS GET load until stop(): `keepalive` threads each on one TLS
    keep-alive connection (LoadGen's threads over TlsClient), and `fresh`
    threads opening a new TLS connection (full handshake, no resumption) for
    every request.

    ok:       (t_start, t_end, kind, thread, upstream name, cert DER or None)
              (the DER is recorded for fresh connections only)
    failures: (t_start, t_end, kind, thread, message): any non-200 status or
              exception. A keep-alive connection that wharfd closes cleanly
              after `Connection: close` is reopened and counted in
              reconnects; any other error is a failure."""

    def __init__(self, port, keepalive=4, fresh=2, server_hostname="a.test", path="/tls-load"):
        self.server_hostname = server_hostname
        self.ctx = client_context()
        super().__init__(port, threads=keepalive, path=path)
        self._threads += [threading.Thread(target=self._fresh, args=(i,), daemon=True) for i in range(fresh)]

    def _connect(self):
        return TlsClient(self.port, self.ctx, self.server_hostname)

    def _request(self, c, idx, n):
        return c.request("GET", "%s/ka/%d/%d" % (self.path, idx, n), host=self.server_hostname)

    def _ok_entry(self, t0, t1, idx, r, kind="keepalive", der=None):
        return (t0, t1, kind, idx, r.headers.get("x-upstream"), der)

    def _failure_entry(self, t0, t1, idx, e, kind="keepalive"):
        return (t0, t1, kind, idx, "%s: %s" % (type(e).__name__, e))

    def _fresh(self, idx):
        n = 0
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                with TlsClient(self.port, self.ctx, self.server_hostname) as c:
                    der = c.peer_der()
                    r = c.request("GET", "%s/new/%d/%d" % (self.path, idx, n), host=self.server_hostname)
                n += 1
                if r.status != 200:
                    raise AssertionError("status %d: %r" % (r.status, r))
                with self.lock:
                    self.ok.append(self._ok_entry(t0, time.monotonic(), idx, r, "fresh", der))
            except Exception as e:
                with self.lock:
                    self.failures.append(self._failure_entry(t0, time.monotonic(), idx, e, "fresh"))
