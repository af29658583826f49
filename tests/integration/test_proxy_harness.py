"""Self-tests of the proxy test harness (harness/): the scriptable
upstream and the raw client checked against each other, without wharfd, so a
failure in the proxy suite can be trusted to be about wharfd. The last tests
check with `wharfd -t` that the config shapes the suite writes are accepted,
and how the teardown judges the ways a wharfd ends."""

import os
import signal
import subprocess
import time

import pytest

from harness.http_client import RawClient
from harness.http_message import ConnectionClosed, ProtocolError, encode_chunked, parse_chunked
from harness.polling import wait_until
from harness.upstreams import CLOSE, HANG, RESET, Raw, Response
from harness.wharfd import Array, Wharfd, build_config, config_text, render_config

pytestmark = pytest.mark.timeout(20)


def test_harness_upstream_keepalive_and_recording(upstream):
    up = upstream(name="alpha")
    with RawClient(up.port) as c:
        for i in range(3):
            r = c.request("GET", "/k%d" % i)
            assert r.status == 200
            assert r.json()["upstream"] == "alpha"
            assert r.json()["conn"] == 0 and r.json()["index"] == i
    wait_until(lambda: up.connections()[0].closed_by == "peer", 2, "close not seen")
    conn = up.connections()[0]
    assert conn.targets() == ["/k0", "/k1", "/k2"]
    assert conn.received.startswith(b"GET /k0 HTTP/1.1\r\nHost: wharf.test\r\n\r\n")
    assert conn.partial_head is None and conn.parse_error is None


def test_harness_upstream_parses_chunked_request_and_client_reads_chunked_response(upstream):
    up = upstream(lambda req: Response(200, chunked=True, chunks=[b"ab", b"", b"cde"], trailers=[("X-T", "1")]))
    with RawClient(up.port) as c:
        c.send(b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               + encode_chunked([b"hello", b" world"], trailers=[("X-Trailer", "yes")]))
        r = c.read_response("POST")
        assert r.status == 200 and r.chunked and r.body == b"abcde"
        assert r.trailers.get("x-t") == "1"
    req = up.wait_for_requests(1)[0]
    assert req.chunked and req.body == b"hello world" and req.trailers.get("x-trailer") == "yes"


def test_harness_head_204_304_have_no_body(upstream):
    def h(req):
        if req.target == "/204":
            return Response(204)
        if req.target == "/304":
            return Response(304, headers=[("Content-Length", "10")])
        return Response(200, body=b"0123456789")
    up = upstream(h)
    with RawClient(up.port) as c:
        r = c.request("HEAD", "/head")
        assert r.status == 200 and r.headers.get("content-length") == "10" and r.body == b""
        assert c.request("GET", "/204").status == 204
        assert c.request("GET", "/304").status == 304
        assert c.request("GET", "/x").body == b"0123456789"


def test_harness_close_delimited_response(upstream):
    up = upstream(lambda req: Response(200, body=b"until close", content_length=False))
    with RawClient(up.port) as c:
        r = c.request()
        assert r.close_delimited and r.body == b"until close"


def test_harness_interim_responses_collected(upstream):
    up = upstream(lambda req: Response(200, body=b"ok", interim=[b"HTTP/1.1 100 Continue",
                                                                 b"HTTP/1.1 103 Early Hints\r\nLink: </a>"]))
    with RawClient(up.port) as c:
        r = c.request()
        assert [i.status for i in r.interim] == [100, 103] and r.body == b"ok"


def test_harness_upstream_close_reset_hang_and_delay(upstream):
    def h(req):
        return {"/close": CLOSE, "/reset": RESET, "/hang": HANG,
                "/slow": Response(200, body=b"slow", delay=0.3)}[req.target]
    up = upstream(h)
    with RawClient(up.port) as c:
        c.send(RawClient.build_request(target="/close"))
        with pytest.raises(ConnectionClosed):
            c.read_response()
    with RawClient(up.port) as c:
        c.send(RawClient.build_request(target="/reset"))
        with pytest.raises(ConnectionClosed):
            c.read_response()
        assert c.reset
    with RawClient(up.port, timeout=0.3) as c:
        c.send(RawClient.build_request(target="/hang"))
        with pytest.raises(AssertionError, match="nothing more"):
            c.read_response()
    with RawClient(up.port) as c:
        t0 = time.monotonic()
        assert c.request(target="/slow").body == b"slow"
        assert time.monotonic() - t0 >= 0.3
    hang_conn = [c for c in up.connections() if c.targets() == ["/hang"]][0]
    wait_until(lambda: hang_conn.closed_by_peer, 2, "hang conn close not seen")


def test_harness_upstream_records_incomplete_message_and_peer_close(upstream):
    up = upstream()
    with RawClient(up.port) as c:
        c.send(b"POST /partial HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        conn = up.wait_for_partial_head("/partial")
    wait_until(lambda: conn.closed_by_peer, 2, "close not seen")
    assert conn.requests == [] and conn.parse_error is None


def test_harness_upstream_flags_invalid_framing(upstream):
    up = upstream()
    with RawClient(up.port) as c:
        c.send(b"POST /bad HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n")
        wait_until(lambda: up.connections() and up.connections()[0].parse_error, 2, "no parse error")
    assert "chunk-size" in up.connections()[0].parse_error


def test_harness_raw_response_and_client_strictness(upstream):
    up = upstream(lambda req: Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\nok"))
    with RawClient(up.port) as c:
        with pytest.raises(ProtocolError):
            c.request()


def test_harness_close_after_closes_idle_connection(upstream):
    up = upstream(lambda req: Response(200, body=b"x", close_after=0.2))
    with RawClient(up.port) as c:
        assert c.request().status == 200
        elapsed = c.expect_closed(timeout=2)
        assert elapsed >= 0.1


def test_harness_chunk_parser():
    assert parse_chunked(b"5\r\nhello\r\n0\r\n\r\n", 0, "t") == (15, b"hello", [])
    assert parse_chunked(b"5;ext=1\r\nhello\r\n0\r\nA: b\r\n\r\n", 0, "t")[1:] == (b"hello", [("A", "b")])
    assert parse_chunked(b"5\r\nhel", 0, "t") is None
    assert parse_chunked(b"5\r\nhello\r\n", 0, "t") is None
    for bad in (b"0x5\r\nhello\r\n0\r\n\r\n", b"-5\r\n", b"00000000000000005\r\n", b"5\r\nhelloXX", b"g"):
        with pytest.raises(ProtocolError):
            parse_chunked(bad, 0, "t")


def test_harness_refused_target_is_refused(refused_target):
    addr = refused_target()
    host, port = addr.rsplit(":", 1)
    with pytest.raises(ConnectionRefusedError):
        RawClient(int(port))


def test_harness_blackhole_connect_hangs(blackhole):
    b = blackhole()
    if not b.verified:
        pytest.skip("this kernel accepted a connect to a listener with a full accept queue")
    import socket
    s = socket.socket()
    s.settimeout(0.3)
    with pytest.raises(socket.timeout):
        s.connect(("127.0.0.1", b.port))
    s.close()


def test_harness_config_rendering():
    cfg = build_config(8080, ["127.0.0.1:9001", "127.0.0.1:9002"], limits={"max_header_bytes": "1k"},
                       timeouts={"upstream_connect": 0.3, "upstream_response": 2}, idle_timeout=1,
                       extra={"x": Array(["a", "b"])})
    text = render_config(cfg)
    assert 'bind = "127.0.0.1:8080";' in text
    assert "upstream_connect = 0.3;" in text and "upstream_response = 2;" in text
    assert 'max_header_bytes = "1k";' in text
    assert "targets = (\n" in text and '"127.0.0.1:9002"' in text
    assert 'x = [ "a", "b" ];' in text
    assert "targets = ();" in render_config(build_config(1, groups={"web": []}))


CONFIG_SHAPES = {
    "basic": dict(targets=["127.0.0.1:9001"]),
    "no_targets": dict(groups={"web": []}),
    "limits": dict(targets=["127.0.0.1:9001"], limits={"max_header_bytes": "1k", "max_body_bytes": 100}),
    "timeouts": dict(targets=["127.0.0.1:9001", "127.0.0.1:9002"], idle_timeout=1,
                     timeouts={"client_header": 0.5, "upstream_connect": 0.3, "upstream_response": 0.5}),
}


@pytest.mark.parametrize("shape", sorted(CONFIG_SHAPES))
def test_harness_config_shapes_accepted_by_wharfd_check(shape, wharf_binary, tmp_path):
    path = tmp_path / "check.conf"
    path.write_text(render_config(build_config(18080, **CONFIG_SHAPES[shape])))
    p = subprocess.run([str(wharf_binary), "-t", "-c", str(path)], capture_output=True, text=True, timeout=10)
    out = p.stdout + p.stderr
    assert p.returncode == 0 and "configuration ok" in out, (
        "wharfd -t rejected a config shape the suite uses (exit %d):\n%s\nconfig:\n%s"
        % (p.returncode, out, path.read_text()))


# How each ending of a wharfd is judged at teardown (Wharfd.stop, which the
# `wharfd` fixture turns into a failed test): (exit_expected, what the test
# does to wharfd, the problem stop() must report or None).
ENDINGS = {
    "runs_until_teardown": (None, None, None),
    "killed_during_test": (None, "sigkill", "exited during the test (killed by SIGKILL)"),
    "killed_as_expected": (-9, "sigkill", None),
    "other_status_than_expected": (0, "sigkill", "ended with killed by SIGKILL, the test expected exit status 0"),
    "hangs_after_sigterm": (None, "sigstop", "did not exit within 1 s of SIGTERM (killed with SIGKILL)"),
    "sanitizer_report": (None, "runtime_error", "stderr holds a sanitizer report ('runtime error:')"),
}


@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_harness_wharfd_teardown_judges_how_wharfd_ended(ending, upstream, wharf_binary, tmp_path):
    exit_expected, action, problem = ENDINGS[ending]
    text, port = config_text([upstream()])
    w = Wharfd(wharf_binary, tmp_path, text, port, 0, exit_expected=exit_expected)
    w.start()
    try:
        if action == "sigkill":
            os.kill(w.proc.pid, signal.SIGKILL)
            w.proc.wait(timeout=5)
        elif action == "sigstop":  # SIGTERM stays pending: wharfd hangs
            os.kill(w.proc.pid, signal.SIGSTOP)
        elif action == "runtime_error":
            # wharfd itself prints the marker: a rejected reload names the
            # unknown group of the new file
            w.config_path.write_text(text.replace('target_group = "web"', 'target_group = "runtime error: x"'))
            os.kill(w.proc.pid, signal.SIGHUP)
            wait_until(lambda: "reload failed" in w.stderr_text(), 5, "wharfd did not reject the reload")
        problems = w.stop(term_timeout=1)
    finally:
        if w.alive():
            w.proc.kill()
            w.proc.wait(timeout=5)
    if problem is None:
        assert problems == [], problems
    else:
        assert len(problems) == 1 and problems[0].startswith("wharfd #0 " + problem), problems
