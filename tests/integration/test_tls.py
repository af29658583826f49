"""HTTPS listeners: TLS termination through real wharfd processes.

Certificates are self-signed EC P-256, made with the openssl CLI in the
test's tmp_path: A for "a.test" (listed first: the default) and B for
"*.b.test". Clients are Python's ssl module, curl and openssl s_client.

Covered: SNI selection (exact, case-insensitive, one-label wildcard,
default), TLS 1.2 + 1.3 and the "tls13" policy (1.1 refused), ALPN
http/1.1, X-Forwarded-Proto/-Port over HTTPS, keep-alive over TLS,
megabyte bodies both ways, session resumption, certificate rotation by
SIGHUP under load with zero failed requests, a bad certificate on reload
and in `wharfd -t`, bad TLS input (plain HTTP, garbage, stalled and half
handshakes) and the HTTP->HTTPS redirect action.
"""

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
import warnings
import zlib
from types import SimpleNamespace

import pytest

from harness.http_client import RawClient
from harness.http_message import excerpt
from harness.loopback_server import LOOPBACK
from harness.polling import wait_until
from harness.ports import free_port
from harness.tls import (
    TlsClient,
    TlsLoad,
    client_context,
    client_hello_bytes,
    handshake_der,
    http_listener,
    https_listener,
    make_cert,
    make_key,
    replace_cert_files,
    replace_file_atomically,
    tls_config_text,
)
from harness.upstreams import Response, named_handler
from harness.websocket import ws_accept, ws_frame, ws_key, ws_read_frame, ws_upgrade_headers
from harness.wharfd import write_config_atomically

TLS12, TLS13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3


@pytest.fixture
def certs(tmp_path):
    d = tmp_path / "certs"
    d.mkdir()
    return SimpleNamespace(dir=d,
                           A=make_cert(d, "a", ["a.test"]),
                           B=make_cert(d, "b", ["*.b.test"]))


def _namer(**known):
    by_der = {der: name for name, der in known.items()}
    return lambda der: by_der.get(der, "an unknown certificate (%d bytes DER)" % len(der or b""))


def _stderr(w):
    return w.stderr_text(limit=10 ** 7)


def _reloads_done(w):
    return _stderr(w).count("configuration reloaded")


def _reloads_failed(w):
    return _stderr(w).count("reload failed")


def _https_get(port, target, sni="a.test", ctx=None, **kw):
    with TlsClient(port, ctx=ctx, server_hostname=sni) as c:
        return c.request("GET", target, host=sni or "wharf.test", **kw)


# --------------------------------------------------------------------------
# 1. SNI


@pytest.mark.timeout(30)
def test_sni_selects_certificate_by_san_and_first_is_default(upstream, wharfd, certs):
    up = upstream(name="web")
    port = free_port()
    # C: several SANs, one of them written in capitals
    cert_c = make_cert(certs.dir, "c", ["c.test", "*.d.test", "Mixed.Case.Test"])
    text, _ = tls_config_text([https_listener("https", port, [certs.A, certs.B, cert_c])], [up])
    w = wharfd(config=text, port=port)
    a, b, c_der = certs.A.der(), certs.B.der(), cert_c.der()
    name = _namer(A=a, B=b, C=c_der)
    cases = [
        (None, a),               # no SNI: the first certificate
        ("a.test", a),           # exact
        ("A.Test", a),           # exact, case-insensitive
        ("unknown.test", a),     # unknown name: the default
        ("x.b.test", b),         # *.b.test
        ("Other.B.TEST", b),     # wildcard, case-insensitive
        ("b.test", a),           # a wildcard needs one label in its place
        ("y.x.b.test", a),       # ... exactly one
        ("c.test", c_der),       # C's first SAN
        ("q.d.test", c_der),     # C's second SAN, a wildcard
        ("mixed.case.test", c_der),  # C's third SAN, in capitals in the certificate
        ("d.test", a),
    ]
    for i, (sni, want) in enumerate(cases):
        with TlsClient(port, server_hostname=sni) as c:
            got = c.peer_der()
            assert got == want, "SNI %r: wharfd presented %s, expected %s" % (sni, name(got), name(want))
            r = c.request("GET", "/sni/%d" % i, host=sni or "wharf.test")
            assert r.status == 200, (sni, r)
            assert r.json()["target"] == "/sni/%d" % i, r
    assert len(up.requests()) == len(cases)

    # the same through another TLS stack: openssl s_client
    for sni, want in (("X.B.TEST", b), ("a.test", a), ("nomatch.test", a)):
        res = subprocess.run(["openssl", "s_client", "-connect", "%s:%d" % (LOOPBACK, port), "-servername", sni],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=15)
        out = res.stdout.decode(errors="replace")
        m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", out, re.S)
        assert m, "openssl s_client -servername %s showed no certificate:\n%s" % (sni, out[-3000:])
        got = ssl.PEM_cert_to_DER_cert(m.group(0))
        assert got == want, "s_client SNI %r: wharfd presented %s, expected %s" % (sni, name(got), name(want))
    assert w.alive()


# --------------------------------------------------------------------------
# 2. protocol versions


@pytest.mark.timeout(30)
def test_tls12_and_tls13_negotiated_and_tls13_policy_refuses_tls12(upstream, wharfd, certs):
    up = upstream(name="web")
    port, strict = free_port(), free_port()
    text, _ = tls_config_text([https_listener("https", port, [certs.A]),
                               https_listener("strict", strict, [certs.A], policy="tls13")], [up])
    w = wharfd(config=text, port=port, wait_ports=[strict])

    def get(p, ctx, target):
        with TlsClient(p, ctx=ctx, server_hostname="a.test") as c:
            r = c.request("GET", target, host="a.test")
            assert r.status == 200, r
            return c.version()

    only12 = client_context(min_version=TLS12, max_version=TLS12)
    only13 = client_context(min_version=TLS13, max_version=TLS13)
    assert get(port, only12, "/v12") == "TLSv1.2"
    assert get(port, only13, "/v13") == "TLSv1.3"
    assert get(port, client_context(), "/vany") == "TLSv1.3", "a client offering 1.2 and 1.3 should get 1.3"

    # "tls13": 1.3 works, a 1.2-only client fails its handshake (it is not left hanging)
    assert get(strict, only13, "/strict13") == "TLSv1.3"
    for _ in range(3):
        t0 = time.monotonic()
        with pytest.raises(ssl.SSLError) as ei:
            with TlsClient(strict, ctx=only12, server_hostname="a.test") as c:
                pytest.fail("a TLS 1.2-only client completed a handshake (%s) with tls_policy \"tls13\""
                            % c.version())
        assert time.monotonic() - t0 < 3, "the refused 1.2 handshake took %.1fs" % (time.monotonic() - t0)
        print("\ntls13 policy, TLS 1.2-only client: %s" % ei.value)
    # below 1.2 is refused under either policy (the client lowers its own security level to offer 1.1)
    only11 = client_context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        only11.minimum_version = only11.maximum_version = ssl.TLSVersion.TLSv1_1
    only11.set_ciphers("DEFAULT:@SECLEVEL=0")
    for p in (port, strict):
        with pytest.raises(ssl.SSLError):
            with TlsClient(p, ctx=only11, server_hostname="a.test") as c:
                pytest.fail("a TLS 1.1-only client completed a handshake (%s)" % c.version())
    assert w.alive(), "wharfd exited after refusing a TLS 1.2 client"
    assert get(strict, only13, "/strict13-after") == "TLSv1.3"
    assert get(port, only12, "/v12-after") == "TLSv1.2"
    assert sorted(r.target for r in up.requests()) == sorted(
        ["/v12", "/v13", "/vany", "/strict13", "/strict13-after", "/v12-after"])


# --------------------------------------------------------------------------
# 3. curl, forwarded headers, ALPN, keep-alive


@pytest.mark.timeout(30)
def test_https_request_forwarded_proto_alpn_and_keepalive(upstream, wharfd, certs):
    up = upstream(name="web")
    port = free_port()
    text, _ = tls_config_text([https_listener("https", port, [certs.A, certs.B])], [up])
    w = wharfd(config=text, port=port)

    # curl verifies the chain against A.pem and the name a.test
    res = subprocess.run(["curl", "-sS", "-v", "--max-time", "10", "--resolve", "a.test:%d:%s" % (port, LOOPBACK),
                          "--cacert", str(certs.A.cert), "-H", "X-Forwarded-Proto: http",
                          "https://a.test:%d/curl/path?q=1" % port],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    err = res.stderr.decode(errors="replace")
    assert res.returncode == 0, "curl failed (%d):\n%s" % (res.returncode, err[-3000:])
    assert re.search(r"ALPN[:,] server accepted (to use )?http/1\.1", err), \
        "curl did not report ALPN http/1.1 accepted:\n%s" % err[-3000:]
    body = json.loads(res.stdout)
    assert body["upstream"] == "web" and body["target"] == "/curl/path?q=1", body
    req = up.requests_for("/curl/path?q=1")
    assert len(req) == 1, up.describe()
    h = req[0].headers
    assert h.get_all("x-forwarded-proto") == ["https"], \
        "X-Forwarded-Proto over HTTPS (the client sent 'http'): %r" % list(h)
    assert h.get_all("x-forwarded-port") == [str(port)], list(h)

    # python: ALPN (offering h2 first), verification, several requests on one TLS connection
    ctx = client_context(alpn=("h2", "http/1.1"), cafile=certs.A.cert)
    with TlsClient(port, ctx=ctx, server_hostname="a.test") as c:
        assert c.alpn() == "http/1.1", "ALPN selected %r, expected http/1.1" % c.alpn()
        for i in range(5):
            r = c.request("GET", "/ka/%d" % i, host="a.test")
            assert r.status == 200 and r.json()["target"] == "/ka/%d" % i, r
            assert "close" not in (r.headers.get("connection") or "").lower(), r
        reqs = [up.requests_for("/ka/%d" % i)[0] for i in range(5)]
        assert all(q.headers.get_all("x-forwarded-proto") == ["https"] for q in reqs)
        # still open after the last response
        r = c.request("POST", "/ka/post", host="a.test", body=b"x" * 5000)
        assert r.status == 200 and r.json()["body_len"] == 5000, r

    # a client that offers no ALPN is served too
    with TlsClient(port, ctx=client_context(alpn=None), server_hostname="a.test") as c:
        assert c.alpn() is None
        assert c.request("GET", "/no-alpn", host="a.test").status == 200
    assert w.alive()


@pytest.mark.timeout(30)
def test_large_bodies_both_ways_over_tls(upstream, wharfd, certs):
    """Megabytes through the TLS side in both directions, with a client that
    is slow to start reading (so wharfd's TLS writes cannot all complete at
    once), on one keep-alive connection."""
    size = 3 * 1024 * 1024 + 7
    blob = (os.urandom(65536) * (size // 65536 + 1))[:size]

    def handler(req):
        if req.target == "/big":
            return Response(200, body=blob, headers=[("X-Upstream", "web")])
        return Response(200, body=b"%d %08x" % (len(req.body), zlib.crc32(req.body)), headers=[("X-Upstream", "web")])

    up = upstream(handler, name="web")
    port = free_port()
    text, _ = tls_config_text([https_listener("https", port, [certs.A])], [up])
    w = wharfd(config=text, port=port)
    with TlsClient(port, server_hostname="a.test", timeout=15) as c:
        for i in range(2):
            c.send(RawClient.build_request("GET", "/big", host="a.test"))
            time.sleep(0.3)  # let wharfd's writes back up before reading
            r = c.read_response()
            assert r.status == 200 and len(r.body) == size, (r.status, len(r.body))
            assert zlib.crc32(r.body) == zlib.crc32(blob), "round %d: the body was corrupted" % i
            r = c.request("POST", "/upload", host="a.test", body=blob)
            assert r.status == 200 and r.body == b"%d %08x" % (size, zlib.crc32(blob)), r
    assert w.alive()
    assert [q.target for q in up.requests()] == ["/big", "/upload"] * 2


# --------------------------------------------------------------------------
# 4. session resumption


@pytest.mark.timeout(30)
@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_session_resumption(upstream, wharfd, certs, version):
    up = upstream(name="web")
    port = free_port()
    # two workers: a resumed session must not depend on which thread accepts
    text, _ = tls_config_text([https_listener("https", port, [certs.A])], [up], workers=2)
    wharfd(config=text, port=port)
    v = TLS12 if version == "TLSv1.2" else TLS13
    ctx = client_context(min_version=v, max_version=v)
    with TlsClient(port, ctx=ctx, server_hostname="a.test") as c:
        assert c.request("GET", "/first", host="a.test").status == 200  # (TLS 1.3 tickets come after the handshake)
        assert c.version() == version
        assert not c.session_reused
        session = c.session
    reused = []
    for i in range(8):
        with TlsClient(port, ctx=ctx, server_hostname="a.test", session=session) as c:
            r = c.request("GET", "/resumed/%d" % i, host="a.test")
            assert r.status == 200, r
            reused.append(c.session_reused)
            session = c.session
    assert all(reused), "%s: %d of 8 connections resumed the session: %s" % (version, sum(reused), reused)


# --------------------------------------------------------------------------
# 5. certificate rotation by SIGHUP under load


@pytest.mark.timeout(90)
def test_sighup_rotates_certificate_under_load_with_zero_failed_requests(raw_upstream, wharfd, certs, tmp_path,
                                                                         record_property):
    up = raw_upstream(named_handler("web"), "web")
    port = free_port()
    text, _ = tls_config_text([https_listener("https", port, [certs.A, certs.B])], [up], workers=2)
    (tmp_path / "new").mkdir()
    a_new = make_cert(tmp_path / "new", "a", ["a.test"])
    old, new = certs.A.der(), a_new.der()
    assert old != new
    name = _namer(old=old, new=new)
    per_phase = 2000

    w = wharfd(config=text, port=port)
    probe_failures = []
    load = TlsLoad(port, keepalive=4, fresh=2).start()
    try:
        wait_until(lambda: load.count() >= per_phase or load.failures, 60,
                   lambda: "load stalled at %d requests before the rotation" % load.count(), interval=0.02)
        before = _reloads_done(w)
        replace_cert_files(certs.A, a_new)
        t_sig = time.monotonic()
        n_at_sig = load.count()
        os.kill(w.proc.pid, signal.SIGHUP)
        wait_until(lambda: _reloads_done(w) > before, 5,
                   lambda: "wharfd did not log the reload:\n%s" % w.stderr_text()[-3000:])

        seen = []

        def presents_new():
            t0 = time.monotonic()
            try:
                der = handshake_der(port, "a.test")
            except Exception as e:
                probe_failures.append((t0, "%s: %s" % (type(e).__name__, e)))
                return False
            seen.append(name(der))
            return der == new
        wait_until(presents_new, 5, lambda: "no new handshake presented the new certificate within 5 s "
                                            "of the reload; presented: %s" % seen[-10:], interval=0.02)
        t_switch = time.monotonic()
        for _ in range(20):  # and every new handshake from now on (both workers)
            der = handshake_der(port, "a.test")
            assert der == new, "a handshake after the switch presented %s" % name(der)
        b_der = handshake_der(port, "x.b.test")
        assert b_der == certs.B.der(), "after rotating A, SNI x.b.test presented %s, not B" % name(b_der)
        n_at_switch = load.count()
        wait_until(lambda: load.count() >= n_at_switch + per_phase or load.failures, 60,
                   lambda: "load stalled at %d requests after the rotation" % load.count(), interval=0.02)
    finally:
        load.stop()

    total = len(load.ok)
    fresh = [o for o in load.ok if o[2] == "fresh"]
    record_property("tls_rotation_load_requests", total)
    print("\ncertificate rotation under HTTPS load: %d requests (%d on new connections) from 4 keep-alive + "
          "2 new-connection threads, %d before the SIGHUP, %d after the switch; %d failures, %d reconnects, "
          "%d probe failures" % (total, len(fresh), n_at_sig, total - n_at_switch, len(load.failures),
                                 load.reconnects, len(probe_failures)))
    assert not load.failures, "%d failed requests across the rotation, first: %s" % (
        len(load.failures), load.failures[:5])
    assert not probe_failures, probe_failures[:5]
    assert load.reconnects == 0, "wharfd closed %d keep-alive TLS connections across the reload" % load.reconnects
    assert total >= 2 * per_phase, total
    assert min(o[0] for o in load.ok) < t_sig and max(o[1] for o in load.ok) > t_switch, \
        "the load did not span the reload"
    # keep-alive connections opened before the reload went on serving after it
    ka_threads_after = {o[3] for o in load.ok if o[2] == "keepalive" and o[0] > t_switch}
    assert ka_threads_after == {0, 1, 2, 3}, ka_threads_after
    # new connections: the old certificate before the SIGHUP, the new one once switched
    assert all(o[5] in (old, new) for o in fresh), "a handshake presented a third certificate"
    before_sig = [o for o in fresh if o[1] < t_sig]
    after_switch = [o for o in fresh if o[0] > t_switch]
    assert len(before_sig) >= 20 and len(after_switch) >= 20, (len(before_sig), len(after_switch))
    stale = [o for o in after_switch if o[5] != new]
    assert not stale, "%d of %d handshakes started after the switch presented the old certificate" % (
        len(stale), len(after_switch))
    early = [o for o in before_sig if o[5] != old]
    assert not early, "%d handshakes before the SIGHUP presented the new certificate" % len(early)
    assert "reload failed" not in _stderr(w)


# --------------------------------------------------------------------------
# 6. a bad certificate on reload and in `wharfd -t`


def _check(wharf_binary, path):
    res = subprocess.run([str(wharf_binary), "-t", "-c", str(path)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=15)
    return res.returncode, res.stdout.decode(errors="replace")


@pytest.mark.timeout(60)
def test_bad_certificate_on_reload_keeps_old_one_and_check_mode_names_file_line(upstream, wharfd, wharf_binary,
                                                                                certs, tmp_path):
    up = upstream(name="web")
    port = free_port()
    listeners = [https_listener("https", port, [certs.A, certs.B])]
    good, lines = tls_config_text(listeners, [up])
    missing = certs.dir / "missing.pem"
    bad_b, _ = tls_config_text(listeners, [up], cert_override={("https", 1): (missing, certs.B.key)})
    a, b = certs.A.der(), certs.B.der()
    name = _namer(A=a, B=b)

    w = wharfd(config=good, port=port)
    fname = w.config_path.name
    load = TlsLoad(port, keepalive=2, fresh=1)
    load.start()

    def still_serving(tag):
        for sni, want in ((None, a), ("a.test", a), ("x.b.test", b)):
            for k in range(3):
                with TlsClient(port, server_hostname=sni) as c:
                    got = c.peer_der()
                    assert got == want, "%s: SNI %r presented %s, expected %s" % (tag, sni, name(got), name(want))
                    r = c.request("GET", "/%s/%s/%d" % (tag, sni, k), host=sni or "wharf.test")
                    assert r.status == 200, r
        assert w.alive(), "wharfd exited (%s)" % tag

    def bad_reload(tag, expected):
        before = _stderr(w)
        n_failed, n_ok = before.count("reload failed"), before.count("configuration reloaded")
        os.kill(w.proc.pid, signal.SIGHUP)
        wait_until(lambda: _reloads_failed(w) > n_failed, 5,
                   lambda: "%s: no 'reload failed' logged:\n%s" % (tag, w.stderr_text()[-3000:]))
        new_log = _stderr(w)[len(before):]
        for needle in expected:
            assert needle in new_log, "%s: the log does not name %r:\n%s" % (tag, needle, new_log)
        assert _stderr(w).count("configuration reloaded") == n_ok, "%s: a bad reload was applied" % tag
        still_serving(tag)

    try:
        wait_until(lambda: load.count() >= 50 or load.failures, 30, "no load")
        # 1: the config names a certificate file that does not exist
        write_config_atomically(w, bad_b)
        bad_reload("missing-cert", ["%s:%d" % (fname, lines[("https", 1)]), "listeners[https].certificates[1]"])
        # 2: the config is fine again, but A's key file now holds another key
        write_config_atomically(w, good)
        good_key = certs.A.key.read_bytes()
        other = make_key(tmp_path, "other")
        replace_file_atomically(certs.A.key, other.read_bytes())
        bad_reload("mismatched-key", ["%s:%d" % (fname, lines[("https", 0)]), "listeners[https].certificates[0]"])

        # wharfd -t on the same two problems: FILE:LINE: listeners[NAME].certificates[I]: ..., exit 1
        rc, out = _check(wharf_binary, w.config_path)
        want = "%s:%d: listeners[https].certificates[0]:" % (fname, lines[("https", 0)])
        assert rc == 1 and want in out, "wharfd -t with a mismatched key: exit %d, expected 1 and %r in:\n%s" % (
            rc, want, out)
        replace_file_atomically(certs.A.key, good_key)
        rc, out = _check(wharf_binary, w.config_path)
        assert rc == 0 and "configuration ok" in out, "wharfd -t on the good file: exit %d:\n%s" % (rc, out)
        bad_path = tmp_path / "bad-missing.conf"
        bad_path.write_text(bad_b)
        rc, out = _check(wharf_binary, bad_path)
        want = "%s:%d: listeners[https].certificates[1]:" % (bad_path.name, lines[("https", 1)])
        assert rc == 1 and want in out, "wharfd -t with a missing cert file: exit %d, expected 1 and %r in:\n%s" % (
            rc, want, out)

        # 3: the good files again: the reload applies
        n_ok = _reloads_done(w)
        os.kill(w.proc.pid, signal.SIGHUP)
        wait_until(lambda: _reloads_done(w) > n_ok, 5,
                   lambda: "the good file did not reload:\n%s" % w.stderr_text()[-3000:])
        still_serving("restored")
    finally:
        load.stop()
    print("\nbad-certificate reloads: %d HTTPS load requests, %d failures" % (len(load.ok), len(load.failures)))
    assert not load.failures, load.failures[:5]
    assert load.reconnects == 0
    assert all(o[5] == a for o in load.ok if o[2] == "fresh"), "the load was shown another certificate than A"


# --------------------------------------------------------------------------
# 7. bad TLS input costs one connection


def _wait_closed(sock, deadline):
    """Read until the peer closes (FIN or RST): (seconds waited, bytes
    received); AssertionError if still open at deadline."""
    t0 = time.monotonic()
    got = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("still open after %.1fs; received %s" % (time.monotonic() - t0, excerpt(got)))
        sock.settimeout(remaining)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return time.monotonic(), bytes(got)
        if not data:
            return time.monotonic(), bytes(got)
        got += data


@pytest.mark.timeout(40)
def test_bad_tls_input_closes_only_that_connection(upstream, wharfd, certs):
    up = upstream(name="web")
    port = free_port()
    handshake_timeout = 1.0
    slack = 3.0
    text, _ = tls_config_text([https_listener("https", port, [certs.A])], [up], workers=1,
                              timeouts={"tls_handshake": handshake_timeout})
    w = wharfd(config=text, port=port)

    # a healthy keep-alive connection that must live through everything below
    keeper = TlsClient(port, server_hostname="a.test")
    stalled = []  # (what, socket, opened at)
    try:
        assert keeper.request("GET", "/keeper/0", host="a.test").status == 200

        hello = client_hello_bytes("a.test")
        for i in range(4):
            s = socket.create_connection((LOOPBACK, port), timeout=5)
            stalled.append(("connected and silent #%d" % i, s, time.monotonic()))
        for i in range(3):
            s = socket.create_connection((LOOPBACK, port), timeout=5)
            s.sendall(hello[: len(hello) // 2])
            stalled.append(("half a ClientHello #%d" % i, s, time.monotonic()))
        s = socket.create_connection((LOOPBACK, port), timeout=5)
        s.sendall(b"\x16\x03\x01")  # three bytes of a record header
        stalled.append(("a partial record header", s, time.monotonic()))

        # while those handshakes hang, a normal client is served at once (one worker)
        t0 = time.monotonic()
        r = _https_get(port, "/while-stalled")
        assert r.status == 200, r
        assert time.monotonic() - t0 < 1.0, "a normal HTTPS request took %.2fs while handshakes were stalled" % (
            time.monotonic() - t0)

        # input that is not TLS at all, or broken TLS: closed, not sent upstream
        bad = [
            ("plain HTTP", b"GET /plain HTTP/1.1\r\nHost: a.test\r\n\r\n"),
            ("garbage", bytes(range(256)) * 4),
            ("a TLS record of garbage", b"\x16\x03\x01\x02\x00" + b"\xab" * 512),
            ("a ClientHello then garbage", hello + b"\x17\x03\x03\x00\x20" + b"\xcd" * 32),
        ]
        for what, payload in bad:
            s = socket.create_connection((LOOPBACK, port), timeout=5)
            try:
                t_open = time.monotonic()
                try:
                    s.sendall(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                try:
                    t_closed, got = _wait_closed(s, t_open + handshake_timeout + slack)
                except AssertionError as e:
                    raise AssertionError("%s: wharfd did not close the connection: %s" % (what, e)) from None
                assert not got.startswith(b"HTTP/1.1 200"), "%s: answered %s" % (what, excerpt(got))
                print("\n%s: closed after %.3fs, wharfd sent %d bytes" % (what, t_closed - t_open, len(got)))
            finally:
                s.close()
            assert w.alive(), "wharfd exited after %s" % what
        assert not up.requests_for("/plain"), "plain HTTP on the HTTPS port reached the upstream"

        # the stalled handshakes are closed after timeouts.tls_handshake
        for what, s, t_open in stalled:
            try:
                try:
                    t_closed, got = _wait_closed(s, t_open + handshake_timeout + slack)
                except AssertionError as e:
                    raise AssertionError("%s: not closed within tls_handshake (%.1fs) + %.0fs: %s"
                                         % (what, handshake_timeout, slack, e)) from None
                took = t_closed - t_open
                print("%s: closed after %.3fs" % (what, took))
                assert took >= 0.8 * handshake_timeout, "%s: closed after %.3fs, before tls_handshake (%.1fs)" % (
                    what, took, handshake_timeout)
            finally:
                s.close()

        # everything else still works: the old keep-alive connection (idle for longer than
        # tls_handshake: that timer ends with the handshake) and new ones
        assert w.alive(), "wharfd exited"
        r = keeper.request("GET", "/keeper/1", host="a.test")
        assert r.status == 200, r
        for i in range(5):
            assert _https_get(port, "/after/%d" % i).status == 200
    finally:
        keeper.close()
        for _, s, _ in stalled:
            s.close()
    targets = sorted(q.target for q in up.requests())
    assert targets == sorted(["/keeper/0", "/keeper/1", "/while-stalled"] + ["/after/%d" % i for i in range(5)]), \
        targets


# --------------------------------------------------------------------------
# 8. HTTP -> HTTPS redirect


@pytest.mark.timeout(30)
def test_http_listener_redirects_to_https(upstream, wharfd, certs):
    up = upstream(name="web")
    port, http_port = free_port(), free_port()
    redirect = '{ redirect = { status = 301; location = "https://#{host}/#{path}?#{query}"; }; }'
    text, _ = tls_config_text([https_listener("https", port, [certs.A]),
                               http_listener("http", http_port, default_action=redirect)], [up])
    w = wharfd(config=text, port=port, wait_ports=[http_port])
    cases = [
        ("/a/b?x=1&y=2", "https://shop.test/a/b?x=1&y=2"),
        ("/a/b", "https://shop.test/a/b"),            # no query: no '?'
        ("/p?", "https://shop.test/p"),               # empty query: no '?'
        ("/", "https://shop.test/"),
        ("/deep/er/path.html?q=%20z", "https://shop.test/deep/er/path.html?q=%20z"),
    ]
    c = RawClient(http_port)
    try:
        for target, location in cases:
            r = c.request("GET", target, host="shop.test")
            assert r.status == 301, (target, r)
            assert r.headers.get_all("location") == [location], (target, list(r.headers))
            if "close" in (r.headers.get("connection") or "").lower():
                c.close()
                c = RawClient(http_port)
    finally:
        c.close()
    assert not up.requests(), "a redirected request reached the upstream: %s" % up.describe()
    # following the redirect lands on the https listener
    r = _https_get(port, "/a/b?x=1&y=2")
    assert r.status == 200 and r.json()["target"] == "/a/b?x=1&y=2", r
    assert w.alive()


# --------------------------------------------------------------------------
# 9. WebSocket over TLS, and the handshake counters in /metrics


@pytest.mark.timeout(30)
def test_websocket_tunnel_over_tls_both_ways(demo_server, wharfd, certs):
    """A wss:// tunnel: frames small and large (many TLS records, past what
    wharfd writes to the TLS session in one go) echo back intact."""

    app = demo_server()
    port = free_port()
    text, _ = tls_config_text([https_listener("https", port, [certs.A])], [app.addr], workers=1)
    wharfd(config=text, port=port)
    with TlsClient(port, server_hostname="a.test") as c:
        key = ws_key()
        c.send(RawClient.build_request("GET", "/ws", host="a.test", headers=ws_upgrade_headers(key)))
        resp = c.read_response()
        assert resp.status == 101, resp
        assert resp.headers.get("sec-websocket-accept") == ws_accept(key), resp.headers
        c.send(ws_frame(0x1, b"hello over tls"))
        assert ws_read_frame(c) == (True, 0x1, b"hello over tls")
        big = os.urandom(300 * 1024)
        c.send(ws_frame(0x2, big))
        fin, op, payload = ws_read_frame(c, timeout=10)
        assert (fin, op, len(payload)) == (True, 0x2, len(big)) and payload == big
        c.send(b"".join(ws_frame(0x1, b"m%d" % i) for i in range(5)))
        assert [ws_read_frame(c)[2] for _ in range(5)] == [b"m%d" % i for i in range(5)]


def _metric(admin_port, name):

    with urllib.request.urlopen("http://%s:%d/metrics" % (LOOPBACK, admin_port), timeout=5) as r:
        text = r.read().decode()
    values = {}
    for line in text.splitlines():
        m = re.match(r'^%s\{result="(\w+)"\} (\d+)$' % re.escape(name), line)
        if m:
            values[m.group(1)] = int(m.group(2))
    return values


@pytest.mark.timeout(30)
def test_tls_handshake_results_counted_in_metrics(upstream, wharfd, certs, tmp_path):
    up = upstream(name="web")
    port, admin_port = free_port(), free_port()
    text, _ = tls_config_text([https_listener("https", port, [certs.A])], [up], workers=1,
                              timeouts={"tls_handshake": 0.5})
    token = tmp_path / "admin.token"
    token.write_text("t0ken\n")
    text += 'admin = { bind = "%s:%d"; token_file = "%s"; metrics_public = true; };\n' % (
        LOOPBACK, admin_port, token)
    wharfd(config=text, port=port, wait_ports=(admin_port,))
    for i in range(3):
        assert _https_get(port, "/ok/%d" % i).status == 200
    # The harness's readiness probes connected and closed without a
    # handshake (failed ones); by now the one worker has seen them.
    base = _metric(admin_port, "wharf_tls_handshakes_total")
    assert set(base) == {"ok", "failed", "timeout"} and base["ok"] == 3 and base["timeout"] == 0, base
    with socket.create_connection((LOOPBACK, port), timeout=5) as s:  # plain HTTP: fails at once
        s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        s.settimeout(5)
        try:
            while s.recv(4096):  # an alert, then the close (or a reset)
                pass
        except ConnectionResetError:
            pass
    silent = socket.create_connection((LOOPBACK, port), timeout=5)  # says nothing: times out
    try:
        want = {"ok": 3, "failed": base["failed"] + 1, "timeout": 1}  # plain HTTP; the silent one
        wait_until(lambda: _metric(admin_port, "wharf_tls_handshakes_total") == want, 5,
                   lambda: "handshake counters %r, want %r"
                   % (_metric(admin_port, "wharf_tls_handshakes_total"), want))
    finally:
        silent.close()
