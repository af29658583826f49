"""Signals: SIGHUP reloads under continuous load without a failed request
and a bad file keeps the whole old configuration (errors logged as
file:line); a reload opens an added listener and closes a removed one
without touching the other's connections, and logs a changed bind, workers
or log.access_log as needing a restart without applying it. SIGTERM (and
SIGINT alike) stops accepting, closes idle keep-alive connections, lets
in-flight requests and open tunnels finish, and exits 0 within
timeouts.shutdown_drain; a request outlasting the drain is cut and wharfd
still exits 0."""

import os
import re
import signal
import socket
import struct
import time

import pytest

from harness.http_client import RawClient
from harness.load import LoadGen
from harness.polling import wait_until
from harness.ports import connect_refused, free_port
from harness.upstreams import HANG, Response, named_handler
from harness.websocket import ws_frame, ws_open, ws_read_frame
from harness.wharfd import build_config, render_config, write_config_atomically

OP_TEXT, OP_CLOSE = 0x1, 0x8


def _reloads_done(w):
    return w.stderr_text(limit=10 ** 7).count("configuration reloaded")


def _probe_until_routed(w, names, failures, timeout=3.0, run=10):
    """Fresh-connection GETs until `run` in a row were answered by upstreams
    in `names` (each of them at least once in the run); returns the time of
    the first request of that run. Every probe must succeed."""
    deadline = time.monotonic() + timeout
    streak, seen, t_first = 0, set(), None
    history = []
    while True:
        t0 = time.monotonic()
        try:
            r = w.get("/probe")
        except Exception as e:
            failures.append((t0, time.monotonic(), "probe", "%s: %s" % (type(e).__name__, e)))
            r = None
        name = r.headers.get("x-upstream") if r is not None and r.status == 200 else None
        if r is not None and r.status != 200:
            failures.append((t0, time.monotonic(), "probe", "status %d" % r.status))
        history.append(name)
        if name in names:
            if streak == 0:
                t_first, seen = t0, set()
            streak += 1
            seen.add(name)
            if streak >= run and seen == set(names):
                return t_first
        else:
            streak = 0
        if time.monotonic() > deadline:
            raise AssertionError("requests never went only to %s within %.0fs after the reload; "
                                 "last answers: %s" % (sorted(names), timeout, history[-30:]))


@pytest.mark.timeout(120)
def test_sighup_reloads_under_continuous_load_with_zero_failed_requests(raw_upstream, wharfd, record_property):
    ups = {n: raw_upstream(named_handler(n), n) for n in ("A", "B")}
    phases = [("A",), ("B",), ("A", "B"), ("A",), ("B",), ("A", "B")]  # 5 reloads
    per_phase = 1000
    port = free_port()

    def cfg(names):
        return build_config(port, [ups[n] for n in names], workers=2, log_level="info",
                            timeouts={"shutdown_drain": 2})

    w = wharfd(config=cfg(phases[0]), port=port)
    probe_failures = []
    windows = []  # (names, routed_from, until)
    load = LoadGen(port, threads=4).start()
    try:
        routed_from = _probe_until_routed(w, phases[0], probe_failures)
        for i, names in enumerate(phases):
            if i > 0:
                before = _reloads_done(w)
                write_config_atomically(w, cfg(names))
                t_sig = time.monotonic()
                os.kill(w.proc.pid, signal.SIGHUP)
                windows[-1][2] = t_sig
                wait_until(lambda: _reloads_done(w) > before, 5, "wharfd did not log the reload %d" % i)
                routed_from = _probe_until_routed(w, names, probe_failures)
            start = load.count()
            wait_until(lambda: load.count() >= start + per_phase or load.failures, 60,
                       lambda: "load stalled at %d requests in phase %d" % (load.count(), i), interval=0.02)
            windows.append([names, routed_from, None])
            if load.failures:
                break
        windows[-1][2] = time.monotonic()
    finally:
        load.stop()

    total = len(load.ok)
    record_property("sighup_load_requests", total)
    record_property("sighup_reloads", len(phases) - 1)
    print("\nSIGHUP under load: %d keep-alive requests from 4 threads + probes, %d reloads, %d failures, "
          "%d reconnects" % (total, len(phases) - 1, len(load.failures) + len(probe_failures), load.reconnects))
    assert not load.failures, "%d failed requests during reloads, first: %s" % (len(load.failures), load.failures[:5])
    assert not probe_failures, probe_failures[:5]
    assert load.reconnects == 0, "wharfd closed %d keep-alive connections across the reloads" % load.reconnects
    assert total > 5000, total
    assert "reload failed" not in w.stderr_text(limit=10 ** 7)
    t_first, t_last = min(o[0] for o in load.ok), max(o[1] for o in load.ok)
    assert t_first < windows[0][2] and t_last > windows[-1][1], "the load did not span the reloads"
    # after each reload had taken effect, requests went to its target set
    for names, t_from, t_until in windows:
        served = [o[3] for o in load.ok if o[0] >= t_from and o[1] <= t_until]
        assert len(served) >= per_phase // 2, (names, len(served))
        stray = [n for n in served if n not in names]
        assert not stray, "%d of %d requests went to %s while the targets were %s" % (
            len(stray), len(served), sorted(set(stray)), names)
        assert set(served) == set(names), (names, set(served))


def _insert_line(text, index, line):
    lines = text.split("\n")
    lines.insert(index, line)
    return "\n".join(lines), index + 1  # the 1-based line number of the inserted line


@pytest.mark.timeout(60)
def test_sighup_bad_file_keeps_whole_old_configuration_and_logs_file_line(raw_upstream, wharfd):
    ups = {n: raw_upstream(named_handler(n), n) for n in ("A", "B")}
    port = free_port()

    def cfg(names):
        return build_config(port, [ups[n] for n in names], workers=2, log_level="info",
                            timeouts={"shutdown_drain": 2})

    w = wharfd(config=cfg(("A",)), port=port)
    fname = w.config_path.name
    failures = []
    load = LoadGen(port, threads=2).start()
    try:
        _probe_until_routed(w, ("A",), failures)
        good_b = render_config(cfg(("B",)))  # what a valid file would switch to
        lines = good_b.split("\n")
        listener_line = next(i for i, s in enumerate(lines) if s.strip() == 'name = "http";')

        # 1: a syntax error (the rest of the file moves traffic to B)
        bad, syntax_line = _insert_line(good_b, 2, "this is not libconfig")
        # 2: two unknown keys, one top-level and one inside the listener
        bad2, key1_line = _insert_line(good_b, 1, "bogus_top_level_key = 1;")
        bad2, key2_line = _insert_line(bad2, listener_line + 2, "    frobnicate = true;")
        cases = [(bad, ["%s:%d" % (fname, syntax_line)]),
                 (bad2, ["%s:%d" % (fname, key1_line), "bogus_top_level_key",
                         "%s:%d" % (fname, key2_line), "frobnicate"])]
        for text, expected in cases:
            before = w.stderr_text(limit=10 ** 7)
            n_failed = before.count("reload failed")
            write_config_atomically(w, text)
            os.kill(w.proc.pid, signal.SIGHUP)
            wait_until(lambda: w.stderr_text(limit=10 ** 7).count("reload failed") > n_failed, 5,
                       lambda: "no 'reload failed' logged for a bad file:\n%s" % w.stderr_text()[-3000:])
            new_log = w.stderr_text(limit=10 ** 7)[len(before):]
            for needle in expected:
                assert needle in new_log, "the log does not name %r:\n%s" % (needle, new_log)
            # the whole old configuration still serves: every request goes to A
            for k in range(20):
                r = w.get("/after-bad-%d" % k)
                assert r.status == 200 and r.headers.get("x-upstream") == "A", r
        # a good file afterwards still applies
        write_config_atomically(w, good_b)
        os.kill(w.proc.pid, signal.SIGHUP)
        _probe_until_routed(w, ("B",), failures)
    finally:
        load.stop()
    print("\nbad-file reloads: %d load requests, %d failures" % (len(load.ok), len(load.failures) + len(failures)))
    assert not load.failures, load.failures[:5]
    assert not failures, failures[:5]
    assert load.reconnects == 0
    assert len(load.ok) > 0


@pytest.mark.timeout(30)
def test_sigterm_drains_slow_in_flight_requests_refuses_new_closes_idle_and_exits_0(upstream, wharfd,
                                                                                     record_property):
    def handler(req):
        m = re.fullmatch(r"/slow\?ms=([0-9]+)", req.target)
        if m:
            return Response(200, body=b"slow done", delay=int(m.group(1)) / 1000.0)
        return Response(200, body=b"quick")

    up = upstream(handler, name="slow")
    drain = 5
    port = free_port()
    w = wharfd(config=build_config(port, [up], workers=2, log_level="info", timeouts={"shutdown_drain": drain}),
               port=port, exit_expected=0)

    idle = w.client()
    assert idle.request("GET", "/quick").body == b"quick"  # now idle on a keep-alive connection
    fresh = w.client()  # connected, no request yet
    slow = [w.client(timeout=10) for _ in range(5)]
    try:
        for c in slow:
            c.send(RawClient.build_request("GET", "/slow?ms=1500"))
        up.wait_for_requests(6, timeout=3)
        assert len(up.requests_for("/slow?ms=1500")) == 5

        t_term = time.monotonic()
        os.kill(w.proc.pid, signal.SIGTERM)

        wait_until(lambda: connect_refused(port), 1.0, "wharfd still accepts connections 1 s after SIGTERM",
                   interval=0.01)
        t_refused = time.monotonic() - t_term
        assert w.alive(), "wharfd exited with 5 requests in flight"
        for _ in range(5):
            assert connect_refused(port), "a connection was accepted after the listener had closed"
        t_idle = idle.expect_closed(timeout=1.0, what="the idle keep-alive connection after SIGTERM")
        fresh.expect_closed(timeout=1.0, what="the connection that never sent a request, after SIGTERM")
        assert w.alive(), "wharfd exited with 5 requests in flight"

        for i, c in enumerate(slow):
            r = c.read_response(timeout=drain)
            assert r.status == 200 and r.body == b"slow done", "in-flight request %d: %r" % (i, r)
            c.expect_closed(timeout=2, what="in-flight request %d's connection after its response" % i)
            c.close()
        t_done = time.monotonic() - t_term

        wait_until(lambda: w.proc.poll() is not None, max(0.1, drain - (time.monotonic() - t_term)),
                   "wharfd still running %d s (shutdown_drain) after SIGTERM" % drain, interval=0.01)
        t_exit = time.monotonic() - t_term
        assert w.proc.returncode == 0, "wharfd exited with status %s after SIGTERM" % w.proc.returncode
    finally:
        for c in [idle, fresh] + slow:
            c.close()
    record_property("sigterm_exit_seconds", round(t_exit, 2))
    print("\nSIGTERM: refused after %.3f s, idle closed after %.3f s, 5 slow requests done at %.2f s, "
          "exit 0 at %.2f s (shutdown_drain %d s)" % (t_refused, t_idle, t_done, t_exit, drain))


@pytest.mark.timeout(30)
def test_sigterm_drain_keeps_open_websocket_tunnel_until_it_closes(demo_server, wharfd):
    app = demo_server()
    drain = 4
    port = free_port()
    w = wharfd(config=build_config(port, [app.addr], workers=1, log_level="info",
                                   timeouts={"shutdown_drain": drain}), port=port, exit_expected=0)
    c, resp, _ = ws_open(port, "/ws")
    try:
        assert resp.status == 101, resp
        c.send(ws_frame(OP_TEXT, b"before"))
        assert ws_read_frame(c)[2] == b"before"

        t_term = time.monotonic()
        os.kill(w.proc.pid, signal.SIGTERM)
        wait_until(lambda: connect_refused(port), 1.0, "wharfd still accepts connections 1 s after SIGTERM",
                   interval=0.01)
        # the tunnel is in flight: it still carries frames both ways
        for i in range(3):
            c.send(ws_frame(OP_TEXT, b"during %d" % i))
            assert ws_read_frame(c)[2] == b"during %d" % i
        assert w.alive(), "wharfd exited with a tunnel open"
        c.send(ws_frame(OP_CLOSE, struct.pack("!H", 1000)))
        assert ws_read_frame(c)[1] == OP_CLOSE
        c.expect_closed(timeout=2, what="the tunnel after the close handshake")
        c.close()
        t_closed = time.monotonic() - t_term
        wait_until(lambda: w.proc.poll() is not None, max(0.1, drain - (time.monotonic() - t_term)),
                   "wharfd still running %d s after SIGTERM" % drain, interval=0.01)
        t_exit = time.monotonic() - t_term
        assert w.proc.returncode == 0, w.proc.returncode
    finally:
        c.close()
    print("\nSIGTERM with a tunnel: tunnel closed at %.2f s, wharfd exit 0 at %.2f s" % (t_closed, t_exit))


def _read_outcome(c, timeout):
    """What a client whose request wharfd cut sees: ("closed", bytes) once
    the connection ends (FIN or RST), ("open", bytes) if it did not within
    timeout."""
    deadline = time.monotonic() + timeout
    data = bytearray()
    while time.monotonic() < deadline:
        c.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = c.sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return "closed", bytes(data)
        if not chunk:
            return "closed", bytes(data)
        data += chunk
    return "open", bytes(data)


@pytest.mark.timeout(30)
def test_sigterm_cuts_request_outlasting_shutdown_drain_and_exits_0(upstream, wharfd):
    """A request still in flight when timeouts.shutdown_drain ends is cut:
    the client's connection closes without a response, the upstream's
    connection closes, and wharfd exits 0 (README: "exit 0"; src/main.c
    returns 0 after the drain timer ends the workers) about shutdown_drain
    after SIGTERM, having refused new connections all along."""
    up = upstream(lambda req: HANG)  # never answers: the request outlasts any drain
    drain = 2
    port = free_port()
    w = wharfd(config=build_config(port, [up], workers=2, log_level="info",
                                   timeouts={"shutdown_drain": drain, "upstream_response": 60}),
               port=port, exit_expected=0)
    c = w.client(timeout=10)
    try:
        c.send(RawClient.build_request("GET", "/outlasts-the-drain"))
        up.wait_for_requests(1, timeout=3)
        t_term = time.monotonic()
        os.kill(w.proc.pid, signal.SIGTERM)
        wait_until(lambda: connect_refused(port), 1.0, "wharfd still accepts connections 1 s after SIGTERM",
                   interval=0.01)
        # draining: still running, still refusing, the request still open
        assert w.alive(), "wharfd exited at once with a request in flight (shutdown_drain = %d)" % drain
        how, data = _read_outcome(c, drain - 0.5 - (time.monotonic() - t_term))
        assert how == "open" and data == b"", (
            "the in-flight request was %s before shutdown_drain ended (after %.2f s), received %r"
            % (how, time.monotonic() - t_term, data[:200]))
        assert connect_refused(port), "a new connection was accepted during the drain"
        # the drain ends: the request is cut and wharfd exits 0
        how, data = _read_outcome(c, drain + 5)
        t_cut = time.monotonic() - t_term
        assert how == "closed", "the request that outlasted shutdown_drain = %d was not cut within %.0f s" % (
            drain, 2 * drain + 5)
        assert data == b"", "the cut request got bytes, expected only the close: %r" % data[:200]
        wait_until(lambda: w.proc.poll() is not None, drain + 5,
                   "wharfd still running %.1f s after SIGTERM (shutdown_drain = %d)" % (drain + 5, drain),
                   interval=0.01)
        t_exit = time.monotonic() - t_term
    finally:
        c.close()
    assert w.proc.returncode == 0, "wharfd exited with %s after the drain timeout" % w.proc.returncode
    assert drain - 0.2 <= t_exit <= drain + 3, "wharfd exited %.2f s after SIGTERM, shutdown_drain = %d" % (
        t_exit, drain)
    assert t_cut <= drain + 3, t_cut
    conn = up.requests()[0].conn
    wait_until(lambda: conn.closed, 2, lambda: "the upstream connection of the cut request is still open:\n"
               + up.describe())
    assert conn.closed_by_peer, conn.closed_by
    assert "still open after the drain timeout" in w.stderr_text(), w.stderr_text()[-2000:]
    print("\nSIGTERM with a request outlasting shutdown_drain = %d s: cut at %.2f s, exit 0 at %.2f s"
          % (drain, t_cut, t_exit))


@pytest.mark.timeout(30)
def test_sigint_drains_in_flight_request_closes_idle_refuses_new_and_exits_0(upstream, wharfd):
    """SIGINT is SIGTERM: stop accepting, close idle keep-alive connections,
    finish the request in flight, exit 0 (before shutdown_drain ends)."""
    up = upstream(lambda req: Response(200, body=b"slow done", delay=1.0) if req.target == "/slow"
                  else Response(200, body=b"quick"))
    drain = 6
    port = free_port()
    w = wharfd(config=build_config(port, [up], workers=2, log_level="info", timeouts={"shutdown_drain": drain}),
               port=port, exit_expected=0)
    idle = w.client()
    slow = w.client(timeout=10)
    try:
        assert idle.request("GET", "/quick").body == b"quick"
        slow.send(RawClient.build_request("GET", "/slow"))
        up.wait_for_requests(2, timeout=3)
        t_sig = time.monotonic()
        os.kill(w.proc.pid, signal.SIGINT)
        wait_until(lambda: connect_refused(port), 1.0, "wharfd still accepts connections 1 s after SIGINT",
                   interval=0.01)
        idle.expect_closed(timeout=1.0, what="the idle keep-alive connection after SIGINT")
        assert w.alive(), "wharfd exited on SIGINT with a request in flight"
        r = slow.read_response(timeout=drain)
        assert r.status == 200 and r.body == b"slow done", r
        assert "close" in (r.headers.get("connection") or "").lower(), (
            "a response finished while draining must close its connection: %r" % r)
        slow.expect_closed(timeout=2, what="the drained request's connection")
        wait_until(lambda: w.proc.poll() is not None, 3,
                   "wharfd still running 3 s after its last request finished (SIGINT)", interval=0.01)
        t_exit = time.monotonic() - t_sig
    finally:
        idle.close()
        slow.close()
    assert w.proc.returncode == 0, "wharfd exited with %s after SIGINT" % w.proc.returncode
    assert t_exit < drain, "wharfd waited the whole drain (%.2f s) though nothing was in flight" % t_exit
    assert "signal %d: draining" % signal.SIGINT in w.stderr_text(), w.stderr_text()[-2000:]


def _two_listener_config(port, port2, ups, workers=1, access_log=None):
    cfg = build_config(port, groups={"web": [ups["A"]], "other": [ups["B"]]}, workers=workers, log_level="info",
                       timeouts={"shutdown_drain": 2})
    if port2 is not None:
        cfg["listeners"].append({"name": "second", "bind": "127.0.0.1:%d" % port2, "protocol": "http",
                                 "default_action": {"forward": [{"target_group": "other"}]}})
    if access_log is not None:
        cfg["log"]["access_log"] = str(access_log)
    return cfg


def _reload(w, cfg, what, expect=()):
    """Write cfg, SIGHUP, wait for "configuration reloaded" and for each
    line of expect in the log written since (a worker logs what it did with
    its listeners once it has applied the new configuration, which may be
    after the control thread's line). Returns that part of the log."""
    before = w.stderr_text(limit=10 ** 7)
    n = before.count("configuration reloaded")
    write_config_atomically(w, cfg)
    os.kill(w.proc.pid, signal.SIGHUP)
    wait_until(lambda: w.stderr_text(limit=10 ** 7).count("configuration reloaded") > n, 5,
               lambda: "no 'configuration reloaded' after %s:\n%s" % (what, w.stderr_text()[-3000:]))
    for needle in expect:
        wait_until(lambda: needle in w.stderr_text(limit=10 ** 7)[len(before):], 5,
                   lambda: "no %r logged after %s:\n%s" % (needle, what, w.stderr_text(limit=10 ** 7)[len(before):]))
    return w.stderr_text(limit=10 ** 7)[len(before):]


@pytest.mark.timeout(40)
def test_sighup_opens_an_added_listener_and_closes_a_removed_one_keeping_the_other_connections(
        raw_upstream, upstream, wharfd):
    ups = {"A": raw_upstream(named_handler("A"), "A"), "B": raw_upstream(named_handler("B"), "B")}
    slow_up = upstream(lambda req: Response(200, body=b"slow done", delay=1.5), name="slow")
    port, port2 = free_port(), free_port()

    def cfg(with_second):
        c = _two_listener_config(port, port2 if with_second else None, ups, workers=2)
        c["target_groups"].append({"name": "slow", "targets": [slow_up.addr]})
        c["listeners"][0]["rules"] = [{"priority": 1, "conditions": {"path": ["/slow"]},
                                       "forward": [{"target_group": "slow"}]}]
        return c

    w = wharfd(config=cfg(False), port=port)
    assert connect_refused(port2), "precondition: nothing listens on the port the reload adds"
    keep = w.client()
    slow = w.client(timeout=10)
    try:
        assert keep.request("GET", "/before").headers.get("x-upstream") == "A"
        # added: the new listener opens and serves, with a request in flight on the other
        slow.send(RawClient.build_request("GET", "/slow"))
        slow_up.wait_for_requests(1, timeout=3)
        _reload(w, cfg(True), "adding a listener", expect=["listener second added on 127.0.0.1:%d" % port2])
        wait_until(lambda: not connect_refused(port2), 3, "the added listener did not open", interval=0.02)
        with RawClient(port2) as c2:
            for i in range(3):
                r = c2.request("GET", "/on-the-new-listener/%d" % i)
                assert r.status == 200 and r.headers.get("x-upstream") == "B", r
        r = slow.read_response(timeout=5)
        assert r.status == 200 and r.body == b"slow done", "the request in flight across the reload: %r" % r
        r = keep.request("GET", "/after-add")
        assert r.status == 200 and r.headers.get("x-upstream") == "A", r
        # removed: the listener closes (connect refused); the other keeps its connections
        slow.send(RawClient.build_request("GET", "/slow"))
        slow_up.wait_for_requests(2, timeout=3)
        _reload(w, cfg(False), "removing a listener", expect=["listener second removed"])
        wait_until(lambda: connect_refused(port2), 3, "the removed listener still accepts connections",
                   interval=0.02)
        for _ in range(3):
            assert connect_refused(port2), "the removed listener accepted a connection"
        r = slow.read_response(timeout=5)
        assert r.status == 200 and r.body == b"slow done", "the request in flight across the reload: %r" % r
        for i in range(3):
            r = keep.request("GET", "/after-remove/%d" % i)
            assert r.status == 200 and r.headers.get("x-upstream") == "A", r
        assert not keep.eof and not slow.eof
    finally:
        keep.close()
        slow.close()
    assert "reload failed" not in w.stderr_text()


def _threads(pid):
    return len(os.listdir("/proc/%d/task" % pid))


@pytest.mark.timeout(40)
def test_sighup_bind_workers_and_access_log_changes_are_logged_as_needing_a_restart_and_not_applied(
        raw_upstream, wharfd, tmp_path):
    ups = {"A": raw_upstream(named_handler("A"), "A"), "B": raw_upstream(named_handler("B"), "B")}
    port, new_port = free_port(), free_port()
    log1, log2 = tmp_path / "access-1.log", tmp_path / "access-2.log"
    base = _two_listener_config(port, None, ups, workers=1, access_log=log1)
    w = wharfd(config=base, port=port)
    keep = w.client()
    assert keep.request("GET", "/start").status == 200
    threads0 = _threads(w.proc.pid)

    def serves_on_old_bind(tag):
        r = keep.request("GET", "/%s" % tag)
        assert r.status == 200 and r.headers.get("x-upstream") == "A", r
        with RawClient(port) as c:
            r = c.request("GET", "/%s-fresh" % tag)
        assert r.status == 200, r

    try:
        # 1: the listener's bind
        cfg = _two_listener_config(port, None, ups, workers=1, access_log=log1)
        cfg["listeners"][0]["bind"] = "127.0.0.1:%d" % new_port
        want = "listener http: bind 127.0.0.1:%d -> 127.0.0.1:%d needs a restart; still on 127.0.0.1:%d" % (
            port, new_port, port)
        _reload(w, cfg, "changing the bind", expect=[want])
        serves_on_old_bind("bind")
        assert connect_refused(new_port), "the changed bind was applied without a restart"
        # 2: workers (the worker threads stay as they are)
        cfg = _two_listener_config(port, None, ups, workers=2, access_log=log1)
        _reload(w, cfg, "changing workers", expect=["reload: workers 1 -> 2 needs a restart"])
        serves_on_old_bind("workers")
        assert _threads(w.proc.pid) == threads0, (
            "wharfd has %d threads after a reload changing workers, %d before" % (_threads(w.proc.pid), threads0))
        # 3: log.access_log (lines keep going to the old file)
        cfg = _two_listener_config(port, None, ups, workers=1, access_log=log2)
        _reload(w, cfg, "changing log.access_log", expect=["reload: a change of log.access_log needs a restart"])
        serves_on_old_bind("access-log")
        wait_until(lambda: '"/access-log"' in (log1.read_text() if log1.exists() else ""), 2,
                   lambda: "the request after the reload is not in the old access log %s" % log1)
        assert not log2.exists(), "the new access_log path was opened without a restart"
    finally:
        keep.close()
    assert "reload failed" not in w.stderr_text()
