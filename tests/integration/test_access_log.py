"""The access log: one JSON line per request with the fields README.md lists,
checked against the requests the test sent and what came back (proxied
200/404, a 400 and a 503 wharfd answered itself, HTTP/1.0, keep-alive),
written within a second; each error wharfd answers itself logs the code
README.md (and src/proxy/access_record.c) names for it, a 5xx the target
sent logs null; SIGUSR1 reopens it after a rename."""

import json
import os
import re
import signal
import time
from datetime import datetime, timezone

import pytest

from harness.http_client import RawClient
from harness.http_message import encode_chunked
from harness.polling import wait_until
from harness.ports import free_port
from harness.upstreams import HANG, Raw, Response
from harness.wharfd import build_config

pytestmark = pytest.mark.timeout(30)

FIELDS = ["time", "client_address", "client_port", "listener", "method", "path", "protocol", "status",
          "bytes_in", "bytes_out", "target_group", "target", "upstream_connect_time",
          "upstream_response_time", "total_time", "request_id", "error", "matched_rule_priority",
          "actions_executed", "ssl_protocol", "ssl_cipher"]
FLUSH_DEADLINE = 1.0  # seconds from a response to its line in the file


def _handler(req):
    if req.target.startswith("/acc/missing"):
        return Response(404, body=b"not here")
    return Response(200, body=b"ok " + req.method.encode() + b" " + req.target.encode(),
                    headers=[("Content-Type", "text/plain")])


def _read_lines(path):
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    assert not data or data.endswith(b"\n"), "the access log ends inside a line: %r" % data[-200:]
    return [json.loads(line) for line in data.decode().splitlines()]


def _log_config(port, up, log_path, port2):
    cfg = build_config(port, groups={"web": [up], "empty": []}, workers=1, log_level="info",
                       timeouts={"shutdown_drain": 1})
    cfg["log"] = {"level": "info", "access_log": str(log_path)}
    cfg["listeners"].append({"name": "nowhere", "bind": "127.0.0.1:%d" % port2, "protocol": "http",
                             "default_action": {"forward": [{"target_group": "empty"}]}})
    return cfg


class Sent:
    """One request as sent and answered, what its log line must say."""

    def __init__(self, client, raw, method, path, protocol, listener, resp_status, nbytes_out,
                 request_id=None, upstream_req=None, error=None, group="web"):
        # error: None for a proxied response, else the code README.md gives
        # for why wharfd answered itself
        self.client_port = client.sock.getsockname()[1]
        self.raw = raw
        self.method = method
        self.path = path
        self.protocol = protocol
        self.listener = listener
        self.status = resp_status
        self.bytes_out = nbytes_out
        self.request_id = request_id
        self.upstream_req = upstream_req
        self.error = error
        self.group = group


def _exchange(c, raw, method="GET", close=False):
    """Send raw, read the response; returns (response, bytes received for it)."""
    before = len(c.received)
    c.send(raw)
    r = c.read_response(method=method)
    if close:
        c.expect_closed(timeout=2)
    return r, len(c.received) - before


def test_access_log_lines_are_json_with_every_field_matching_the_requests(upstream, wharfd, tmp_path):
    up = upstream(_handler, name="origin")
    port, port2 = free_port(), free_port()
    log_path = tmp_path / "access.log"
    wharfd(config=_log_config(port, up, log_path, port2), port=port, wait_ports=[port2])
    wall0 = time.time()
    sent = []

    with RawClient(port) as c:  # keep-alive: five requests on one connection
        raw = RawClient.build_request("GET", "/acc/get?q=1&r=two", headers=[("X-Request-Id", "acc-get-1")])
        r, n = _exchange(c, raw)
        t_first = time.monotonic()
        assert r.status == 200, r
        sent.append(Sent(c, raw, "GET", "/acc/get?q=1&r=two", "HTTP/1.1", "http", 200, n, request_id="acc-get-1"))
        # the first line reaches the file within the flush deadline
        wait_until(lambda: len(_read_lines(log_path)) >= 1, FLUSH_DEADLINE,
                   "no access-log line %.1f s after the first response" % FLUSH_DEADLINE, interval=0.01)
        first_flush = time.monotonic() - t_first

        raw = RawClient.build_request("POST", "/acc/post", body=b"hello world",
                                      headers=[("Content-Type", "text/plain")])
        r, n = _exchange(c, raw, "POST")
        assert r.status == 200, r
        sent.append(Sent(c, raw, "POST", "/acc/post", "HTTP/1.1", "http", 200, n))

        raw = RawClient.build_request("HEAD", "/acc/head")
        r, n = _exchange(c, raw, "HEAD")
        assert r.status == 200 and r.body == b"", r
        sent.append(Sent(c, raw, "HEAD", "/acc/head", "HTTP/1.1", "http", 200, n))

        raw = RawClient.build_request("DELETE", "/acc/missing/7", headers=[("X-Request-Id", "acc-del-404")])
        r, n = _exchange(c, raw, "DELETE")
        assert r.status == 404, r
        sent.append(Sent(c, raw, "DELETE", "/acc/missing/7", "HTTP/1.1", "http", 404, n, request_id="acc-del-404"))

        raw = RawClient.build_request("PUT", "/acc/put", headers=[("Transfer-Encoding", "chunked")],
                                      body=encode_chunked([b"abc", b"defgh"]))
        r, n = _exchange(c, raw, "PUT")
        assert r.status == 200, r
        sent.append(Sent(c, raw, "PUT", "/acc/put", "HTTP/1.1", "http", 200, n))

    with RawClient(port) as c:  # HTTP/1.0: answered, then closed
        raw = RawClient.build_request("GET", "/acc/ten", version="HTTP/1.0")
        r, n = _exchange(c, raw, close=True)
        assert r.status == 200, r
        sent.append(Sent(c, raw, "GET", "/acc/ten", "HTTP/1.0", "http", 200, n))

    with RawClient(port) as c:  # malformed (smuggling attempt): 400 from wharfd, closed
        raw = (b"GET /acc/bad HTTP/1.1\r\nHost: wharf.test\r\nContent-Length: 3\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n")
        r, n = _exchange(c, raw, close=True)
        assert r.status == 400, r
        sent.append(Sent(c, raw, "GET", "/acc/bad", "HTTP/1.1", "http", 400, n,
                         request_id=r.headers.get("x-request-id"), error="bad_request", group=None))

    with RawClient(port2) as c:  # a group with no targets: 503 from wharfd
        raw = RawClient.build_request("GET", "/acc/none", headers=[("X-Request-Id", "acc-none-1")])
        r, n = _exchange(c, raw)
        assert r.status == 503, r
        assert r.headers.get("x-request-id") == "acc-none-1", r.headers
        sent.append(Sent(c, raw, "GET", "/acc/none", "HTTP/1.1", "nowhere", 503, n, request_id="acc-none-1",
                         error="no_targets", group="empty"))
    t_last = time.monotonic()

    # proxied requests without a client id: the id is the one the upstream got
    for s in sent:
        if not s.error:
            s.upstream_req = next(q for q in up.requests() if q.target == s.path)
            if s.request_id is None:
                s.request_id = s.upstream_req.headers.get("x-request-id")
                assert s.request_id, s.upstream_req.headers

    wait_until(lambda: len(_read_lines(log_path)) >= len(sent), FLUSH_DEADLINE,
               lambda: "%d access-log lines %.1f s after the last response, expected %d:\n%s"
               % (len(_read_lines(log_path)), FLUSH_DEADLINE, len(sent), log_path.read_text()), interval=0.01)
    last_flush = time.monotonic() - t_last
    wall1 = time.time()
    lines = _read_lines(log_path)
    assert len(lines) == len(sent), "expected exactly %d lines:\n%s" % (len(sent), log_path.read_text())
    print("\naccess log: %d lines; first line in the file %.3f s after its response, all %.3f s after the last"
          % (len(lines), first_flush, last_flush))

    unmatched = list(lines)
    connect_times = []
    problems = []  # every mismatch of every line, reported together

    def check(cond, msg):
        if not cond:
            problems.append(msg)

    for s in sent:
        cands = [ln for ln in unmatched if ln.get("client_port") == s.client_port and ln.get("status") == s.status
                 and ln.get("path") in (s.path, None)]
        assert len(cands) == 1, "no single line for %s %s (port %d, status %d):\n%s" % (
            s.method, s.path, s.client_port, s.status, "\n".join(map(json.dumps, lines)))
        ln = cands[0]
        unmatched.remove(ln)
        what = "%s %s -> %d: %s" % (s.method, s.path, s.status, json.dumps(ln))
        assert sorted(ln) == sorted(FIELDS), "fields %s, expected %s (%s)" % (sorted(ln), sorted(FIELDS), what)

        m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z", ln["time"])
        check(m, "time %r is not ISO 8601 UTC (%s)" % (ln["time"], what))
        if m:
            t = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
            t += float(m.group(2) or 0)
            check(wall0 - 1 <= t <= wall1 + 1, "time %s outside the test's run (%s)" % (ln["time"], what))

        check(ln["client_address"] == "127.0.0.1", "client_address (%s)" % what)
        check(ln["listener"] == s.listener, "listener, expected %r (%s)" % (s.listener, what))
        if s.status == 400:  # the head was refused: wharfd may not have a method or path
            check(ln["method"] in (None, s.method) and ln["path"] in (None, s.path), "method/path (%s)" % what)
        else:
            check(ln["method"] == s.method and ln["path"] == s.path, "method/path (%s)" % what)
        check(ln["protocol"] == s.protocol, "protocol, expected %r (%s)" % (s.protocol, what))
        check(ln["bytes_in"] == len(s.raw), "bytes_in %r, the client sent %d bytes (%s)" % (
            ln["bytes_in"], len(s.raw), what))
        check(ln["bytes_out"] == s.bytes_out, "bytes_out %r, the client received %d bytes (%s)" % (
            ln["bytes_out"], s.bytes_out, what))
        check(ln["request_id"] == s.request_id, "request_id %r, expected %r (%s)" % (
            ln["request_id"], s.request_id, what))
        check(isinstance(ln["total_time"], (int, float)) and ln["total_time"] >= 0, "total_time (%s)" % what)
        # no rules here: every routed request took the default action (0, as ALB logs it); a
        # head refused with 400 was never routed
        want_rule = (None, None) if s.status == 400 else (0, "forward")
        check((ln["matched_rule_priority"], ln["actions_executed"]) == want_rule,
              "matched_rule_priority/actions_executed, expected %r (%s)" % (want_rule, what))
        check(ln["ssl_protocol"] is None and ln["ssl_cipher"] is None, "no TLS on http (%s)" % what)
        if s.error:
            check(ln["error"] == s.error, "error %r, expected %r: wharfd answered %d itself (%s)"
                  % (ln["error"], s.error, s.status, what))
            check(ln["target_group"] == s.group and ln["target"] is None,
                  "target_group %r / target null expected (%s)" % (s.group, what))
            check(ln["upstream_connect_time"] is None and ln["upstream_response_time"] is None,
                  "upstream times must be null when no upstream was asked (%s)" % what)
        else:
            check(ln["error"] is None, "error must be null for a proxied response (%s)" % what)
            check(ln["target_group"] == "web" and ln["target"] == up.addr,
                  "target_group/target, expected web/%s (%s)" % (up.addr, what))
            rt, ct = ln["upstream_response_time"], ln["upstream_connect_time"]
            check(isinstance(rt, (int, float)) and 0 <= rt <= ln["total_time"] + 1e-6,
                  "upstream_response_time (%s)" % what)
            # null when a pooled connection was reused (no connect)
            check(ct is None or (isinstance(ct, (int, float)) and 0 <= ct <= ln["total_time"] + 1e-6),
                  "upstream_connect_time (%s)" % what)
            connect_times.append(ct)
    check(connect_times[0] is not None, "the first proxied request opened a connection: connect time missing")
    assert not unmatched
    assert not problems, "%d mismatches:\n%s" % (len(problems), "\n".join(problems))


def test_access_log_reopened_on_sigusr1_after_rename(upstream, wharfd, tmp_path):
    up = upstream(_handler, name="origin")
    port, port2 = free_port(), free_port()
    log_path = tmp_path / "access.log"
    rotated = tmp_path / "access.log.1"
    w = wharfd(config=_log_config(port, up, log_path, port2), port=port)

    def paths(p):
        return [ln["path"] for ln in _read_lines(p)]

    assert w.get("/rot/1").status == 200
    wait_until(lambda: paths(log_path) == ["/rot/1"], FLUSH_DEADLINE, lambda: "log: %r" % paths(log_path))
    os.rename(log_path, rotated)
    # renamed but not reopened: lines still go to the open file
    assert w.get("/rot/2").status == 200
    wait_until(lambda: paths(rotated) == ["/rot/1", "/rot/2"], FLUSH_DEADLINE, lambda: "log: %r" % paths(rotated))
    assert not log_path.exists()

    os.kill(w.proc.pid, signal.SIGUSR1)
    wait_until(log_path.exists, 2, "SIGUSR1 did not reopen %s" % log_path)
    assert w.get("/rot/3").status == 200
    assert w.get("/rot/4").status == 200
    wait_until(lambda: paths(log_path) == ["/rot/3", "/rot/4"], FLUSH_DEADLINE,
               lambda: "new log: %r" % paths(log_path))
    assert paths(rotated) == ["/rot/1", "/rot/2"]
    assert "SIGUSR1" in w.stderr_text()


def test_access_log_names_the_rule_its_action_and_tls(upstream, wharfd, tmp_path):
    """ALB's matched_rule_priority / actions_executed, and the TLS version
    and cipher of an https listener."""
    from harness.tls import TlsClient, make_cert

    up = upstream(_handler, name="origin")
    port, tls_port = free_port(), free_port()
    log_path = tmp_path / "access.log"
    cert = make_cert(tmp_path, "a", ["a.test"])
    rules = """rules = (
      { priority = 7; conditions = { path = [ "/old/*" ]; };
        redirect = { status = 301; location = "/new/#{path}"; }; },
      { priority = 9; conditions = { path = [ "/down" ]; };
        fixed_response = { status = 503; body = "down"; }; },
      { priority = 11; conditions = { path = [ "/app/*" ]; };
        forward = ( { target_group = "web"; } ); } );
    default_action = { forward = ( { target_group = "web"; } ); };"""
    text = """workers = 1;
log = { level = "info"; access_log = "%s"; };
timeouts = { shutdown_drain = 1; };
listeners = (
  { name = "http"; bind = "127.0.0.1:%d"; %s },
  { name = "https"; bind = "127.0.0.1:%d"; protocol = "https";
    certificates = ( { cert = "%s"; key = "%s"; } ); %s } );
target_groups = ( { name = "web"; targets = ( "%s" ); } );
""" % (log_path, port, rules, tls_port, cert.cert, cert.key, rules, up.addr)
    wharfd(config=text, port=port, wait_ports=[tls_port])
    with RawClient(port) as c:
        for path, status in (("/old/x", 301), ("/down", 503), ("/app/1", 200), ("/other", 200)):
            r = c.request("GET", path)
            assert r.status == status, (path, r)
    with TlsClient(tls_port, server_hostname="a.test") as c:
        assert c.request("GET", "/app/tls", host="a.test").status == 200
        tls_version = c.version()
    want = {("http", "/old/x"): (7, "redirect", 301), ("http", "/down"): (9, "fixed-response", 503),
            ("http", "/app/1"): (11, "forward", 200), ("http", "/other"): (0, "forward", 200),
            ("https", "/app/tls"): (11, "forward", 200)}

    def lines_by_request():
        return {(ln["listener"], ln["path"]): ln for ln in _read_lines(log_path)}

    got = wait_until(lambda: len(lines_by_request()) >= len(want) and lines_by_request(), 5,
                     lambda: "access log lines: %r" % _read_lines(log_path))
    for key, (prio, action, status) in want.items():
        ln = got[key]
        assert (ln["matched_rule_priority"], ln["actions_executed"], ln["status"]) == (prio, action, status), ln
        if key[0] == "https":
            assert ln["ssl_protocol"] == tls_version and ln["ssl_cipher"], ln
        else:
            assert ln["ssl_protocol"] is None and ln["ssl_cipher"] is None, ln
        assert ln["target_group"] == ("web" if action == "forward" else None), ln


def _errors_config(port, up, refused, log_path, ports):
    """Listeners: "http" -> web (up), "refused" -> a target whose port
    refuses, "nowhere" -> a group without targets."""
    cfg = build_config(port, groups={"web": [up], "refused": [refused], "empty": []}, workers=1,
                       log_level="info", limits={"max_header_bytes": "1k", "max_body_bytes": 100},
                       timeouts={"shutdown_drain": 1, "client_header": 0.5, "upstream_response": 0.5})
    cfg["log"] = {"level": "info", "access_log": str(log_path)}
    for name, group in (("refused", "refused"), ("nowhere", "empty")):
        cfg["listeners"].append({"name": name, "bind": "127.0.0.1:%d" % ports[name], "protocol": "http",
                                 "default_action": {"forward": [{"target_group": group}]}})
    return cfg


def test_access_log_error_names_why_wharfd_answered_itself(upstream, wharfd, tmp_path, refused_target):
    """Each case wharfd answers itself logs the error code README.md names for
    it (src/proxy/access_record.c's list); a 5xx the target sent logs null."""
    def handler(req):
        if req.target == "/err/hang":
            return HANG
        if req.target == "/err/malformed":
            return Raw(b"HTTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        if req.target == "/err/upstream-503":
            return Response(503, body=b"the target's own 503")
        return Response(200, body=b"ok")

    up = upstream(handler, name="origin")
    refused = refused_target()
    port = free_port()
    ports = {"http": port, "refused": free_port(), "nowhere": free_port()}
    log_path = tmp_path / "access.log"
    wharfd(config=_errors_config(port, up, refused, log_path, ports), port=port,
           wait_ports=[ports["refused"], ports["nowhere"]])
    get = b"GET %s HTTP/1.1\r\nHost: wharf.test\r\n\r\n"
    # (name, listener, raw request, status, error, target_group, target, wharfd closes)
    cases = [
        ("smuggling", "http", b"POST /err/cl-te HTTP/1.1\r\nHost: wharf.test\r\nContent-Length: 3\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "bad_request", None, None, True),
        ("big_head", "http", b"GET /err/big HTTP/1.1\r\nHost: wharf.test\r\nX-Big: " + b"b" * 2000 + b"\r\n\r\n",
         431, "header_too_large", None, None, True),
        ("big_body", "http", b"POST /err/body HTTP/1.1\r\nHost: wharf.test\r\nContent-Length: 101\r\n\r\n"
         + b"x" * 101, 413, "body_too_large", None, None, True),
        ("stalled_head", "http", b"GET /err/stalled HTTP/1.1\r\nHost: wharf.test\r\nX-Half: ", 408,
         "client_header_timeout", None, None, True),
        ("te_gzip", "http", b"POST /err/gzip HTTP/1.1\r\nHost: wharf.test\r\nTransfer-Encoding: gzip\r\n\r\n",
         501, "unsupported_transfer_coding", None, None, True),
        ("http2", "http", b"GET /err/v2 HTTP/2.0\r\nHost: wharf.test\r\n\r\n", 505, "version_not_supported",
         None, None, True),
        ("refused", "refused", get % b"/err/refused", 502, "bad_gateway", "refused", refused, False),
        ("malformed", "http", get % b"/err/malformed", 502, "bad_gateway", "web", up.addr, False),
        ("no_targets", "nowhere", get % b"/err/none", 503, "no_targets", "empty", None, False),
        ("hang", "http", get % b"/err/hang", 504, "upstream_timeout", "web", up.addr, False),
        ("target_503", "http", get % b"/err/upstream-503", 503, None, "web", up.addr, False),
    ]
    by_port = {}
    for name, listener, raw, status, error, group, target, closes in cases:
        with RawClient(ports[listener]) as c:
            c.send(raw)
            r = c.read_response("POST" if raw.startswith(b"POST") else "GET", timeout=5)
            assert r.status == status, "%s: expected %d, got %r" % (name, status, r)
            if closes:
                c.expect_closed(timeout=3, what="the connection after %s" % name)
            by_port[c.sock.getsockname()[1]] = (name, listener, status, error, group, target)

    def lines():
        return {ln["client_port"]: ln for ln in _read_lines(log_path)}

    got = wait_until(lambda: len(lines()) >= len(cases) and lines(), FLUSH_DEADLINE + 1,
                     lambda: "%d access-log lines, expected %d:\n%s"
                     % (len(_read_lines(log_path)), len(cases), log_path.read_text()), interval=0.01)
    assert len(got) == len(cases), "expected exactly %d lines:\n%s" % (len(cases), log_path.read_text())
    problems = []
    for cport, (name, listener, status, error, group, target) in by_port.items():
        ln = got.get(cport)
        if ln is None:
            problems.append("%s: no line for client port %d" % (name, cport))
            continue
        want = {"listener": listener, "status": status, "error": error, "target_group": group, "target": target}
        have = {k: ln[k] for k in want}
        if have != want:
            problems.append("%s: %r, expected %r (line %s)" % (name, have, want, json.dumps(ln)))
    assert not problems, "%d lines say the wrong thing:\n%s" % (len(problems), "\n".join(problems))


def test_access_log_line_for_a_response_the_upstream_cut_or_misframed(upstream, wharfd, tmp_path):
    """A request whose response started but never completed still has its
    line: the status relayed so far, and `error` saying what the upstream did
    (closed mid-body: upstream_reset; broke its chunked framing:
    upstream_bad_framing)."""
    def handler(req):
        if req.target == "/cut":
            return Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 9, close_after=0.2)
        if req.target == "/misframed":
            return Raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n", close_after=2)
        return Response(200, body=b"ok")

    up = upstream(handler, name="origin")
    port = free_port()
    log_path = tmp_path / "access.log"
    cfg = build_config(port, [up], workers=1)
    cfg["log"]["access_log"] = str(log_path)
    wd = wharfd(config=cfg, port=port)
    ports = {}
    for path in ("/cut", "/misframed"):
        with wd.client(timeout=5) as c:
            c.send(b"GET %s HTTP/1.1\r\nHost: wharf.test\r\n\r\n" % path.encode())
            c.read_until_close(timeout=5)
            assert c.eof, "%s: the client connection stayed open" % path
            ports[path] = c.sock.getsockname()[1]
    want = {"/cut": "upstream_reset", "/misframed": "upstream_bad_framing"}
    got = wait_until(lambda: (lambda ls: ls if all(p in ls for p in ports.values()) else None)(
        {ln["client_port"]: ln for ln in _read_lines(log_path)}), FLUSH_DEADLINE + 2,
        lambda: "lines missing:\n%s" % (log_path.read_text() if log_path.exists() else ""))
    for path, error in want.items():
        ln = got[ports[path]]
        assert (ln["path"], ln["status"], ln["error"]) == (path, 200, error), json.dumps(ln)
