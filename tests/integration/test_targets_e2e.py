"""The target registry through wharfd with real upstreams:
active health checks take a failing target out of rotation and bring it
back within their thresholds; a target that dies under load costs at most
the requests in flight on it; deregistration through the API and through
SIGHUP drains with zero failed requests while a slow request on the target
completes; targets registered through the API get traffic; fail-open when
every target is unhealthy, 503 for a group without targets; the target and
health-check metrics.

Origins are harness.health_server.HealthServer (threaded, TCP_NODELAY; /health switchable
between 200, 500 and hanging), or the same server in its own process where a
test kills it. Every wait is a poll with a deadline."""

import json
import os
import signal
import time

import pytest

from harness.admin_client import Admin, write_token
from harness.http_client import RawClient
from harness.load import LoadGen, slow_request_on
from harness.polling import wait_until
from harness.ports import free_port
from harness.prometheus import metric_value
from harness.reporting import add_diag
from harness.wharfd import HC_FAST, targets_config, write_config_atomically

INTERVAL = HC_FAST["interval"]
TIMEOUT = HC_FAST["timeout"]
HEALTHY_T = HC_FAST["healthy_threshold"]
UNHEALTHY_T = HC_FAST["unhealthy_threshold"]
SLACK = 1.5  # a loaded 2-core machine
OUT_BOUND = INTERVAL * UNHEALTHY_T + TIMEOUT + SLACK
BACK_BOUND = INTERVAL * HEALTHY_T + SLACK
# After GET /v1/target-groups shows a target out, a request may still reach
# it only if wharfd had picked it before the new snapshot reached the worker
# (10 ms coalescing + a pipe) or our origin's thread stamped it late (GIL).
PUBLISH_SLACK = 0.3


# --------------------------------------------------------------------------
# helpers


def _start(request, wharfd, tmp_path, targets, **kw):
    """wharfd with the admin block; returns (w, admin, cfg)."""
    port, admin_port = free_port(), free_port()
    token_file, token = write_token(tmp_path)
    cfg = targets_config(port, admin_port, token_file, targets, **kw)
    w = wharfd(config=cfg, port=port, wait_ports=[admin_port])
    admin = Admin(admin_port, token)
    add_diag(request, "GET /v1/target-groups at failure", lambda: repr(admin.groups()))
    return w, admin, cfg


def _wait_all(admin, addrs, state, timeout):
    wait_until(lambda: all(admin.state(a) == state for a in addrs), timeout,
               lambda: "not all of %s became %s within %.1fs: %s" % (addrs, state, timeout, admin.targets()))


def _wait_load(load, n, timeout, what="load"):
    wait_until(lambda: load.count() >= n or load.failures, timeout,
               lambda: "%s: only %d requests done in %.0fs" % (what, load.count(), timeout), interval=0.02)


def _load_window(load, seconds, min_requests, timeout):
    """Let the load run until at least `seconds` passed and `min_requests`
    more completed (a poll, not a sleep)."""
    t0, n0 = time.monotonic(), load.count()
    wait_until(lambda: time.monotonic() - t0 >= seconds and load.count() - n0 >= min_requests, timeout,
               lambda: "load window: %d requests in %.1fs, wanted %d in %.1fs"
                       % (load.count() - n0, time.monotonic() - t0, min_requests, seconds), interval=0.02)
    return t0


def _fmt_failures(load, ref):
    return "\n".join("  t0=%+.3fs t1=%+.3fs thread %d: %s" % (f[0] - ref, f[1] - ref, f[2], f[3])
                     for f in load.failures[:30])


def _ok_from(load, name, since=0.0):
    with load.lock:
        return sum(1 for r in load.ok if r[3] == name and r[0] >= since)


# --------------------------------------------------------------------------
# 1. active health checks: out within interval x unhealthy_threshold + timeout,
#    back within interval x healthy_threshold


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode,reason", [("fail", "status_mismatch"), ("hang", "timeout")])
def test_failing_health_check_takes_target_out_of_rotation_and_back(
        request, health_server, wharfd, tmp_path, record_property, mode, reason):
    a, b, c = health_server("a"), health_server("b"), health_server("c")
    w, admin, _ = _start(request, wharfd, tmp_path, [a, b, c], health_check=HC_FAST)
    _wait_all(admin, [a.addr, b.addr, c.addr], "healthy", 5)

    load = LoadGen(w.port, threads=3).start()
    try:
        _wait_load(load, 300, 20)
        wait_until(lambda: all(s.count() > 0 for s in (a, b, c)), 5, "load did not reach every target")

        # -- out
        t0 = time.monotonic()
        c.set_health(mode)
        tgt, _ = admin.wait_state(c.addr, "unhealthy", OUT_BOUND + 2)
        t_out = time.monotonic() - t0
        assert tgt["reason"] == reason, "unhealthy with reason %r, expected %r: %s" % (tgt["reason"], reason, tgt)
        t_seen = time.monotonic()
        _load_window(load, 1.5, 300, 20)
        late = c.requests_since(t_seen + PUBLISH_SLACK)
        last = c.last_arrival()
        t_last = (last - t0) if last and last >= t0 else 0.0
        assert not late, ("%d requests reached %s more than %.1fs after the API showed it unhealthy "
                          "(first: %s)" % (len(late), c.name, PUBLISH_SLACK, late[:3]))
        assert a.requests_since(t_seen + PUBLISH_SLACK) and b.requests_since(t_seen + PUBLISH_SLACK), \
            "the healthy targets stopped receiving the load"
        assert t_out <= OUT_BOUND, "%s shown unhealthy %.2fs after /health turned %s (bound %.1fs)" % (
            c.name, t_out, mode, OUT_BOUND)
        assert t_last <= OUT_BOUND, "%s received load %.2fs after /health turned %s (bound %.1fs)" % (
            c.name, t_last, mode, OUT_BOUND)
        # the threshold applies: one failed check is not enough (a check may
        # run late on a loaded loop, hence the margin)
        assert t_out >= 0.5 * INTERVAL * (UNHEALTHY_T - 1), \
            "unhealthy after only %.2fs: faster than unhealthy_threshold=%d allows" % (t_out, UNHEALTHY_T)

        # -- back
        t1 = time.monotonic()
        c.set_health("ok")
        tgt, _ = admin.wait_state(c.addr, "healthy", BACK_BOUND + 2)
        t_healthy = time.monotonic() - t1
        assert tgt["reason"] is None, tgt
        wait_until(lambda: c.requests_since(t1), BACK_BOUND + 2, "%s healthy again but receives no load" % c.name)
        t_back = c.requests_since(t1)[0][0] - t1
        assert t_healthy <= BACK_BOUND, "healthy again after %.2fs (bound %.1fs)" % (t_healthy, BACK_BOUND)
        assert t_back <= BACK_BOUND, "first request on %s %.2fs after /health recovered (bound %.1fs)" % (
            c.name, t_back, BACK_BOUND)
        assert t_healthy >= 0.5 * INTERVAL * (HEALTHY_T - 1), \
            "healthy after only %.2fs: faster than healthy_threshold=%d allows" % (t_healthy, HEALTHY_T)
        _load_window(load, 0.5, 100, 20)
    finally:
        load.stop()
    total = load.count()
    print("\nhealth %s: unhealthy (%s) after %.2fs, last request on it %.2fs, healthy after %.2fs, "
          "first request %.2fs; %d requests, %d failed"
          % (mode, reason, t_out, t_last, t_healthy, t_back, total, len(load.failures)))
    for k, v in (("out_s", t_out), ("last_request_s", t_last), ("healthy_s", t_healthy), ("back_s", t_back)):
        record_property("hc_%s_%s" % (mode, k), round(v, 3))
    record_property("hc_%s_failed_requests" % mode, len(load.failures))
    assert not load.failures, "requests failed while a target left and rejoined by health checks:\n%s" % (
        _fmt_failures(load, t0))


# --------------------------------------------------------------------------
# 2. one of three targets dies under load


@pytest.mark.timeout(60)
def test_target_killed_under_load_fails_only_requests_in_flight(
        request, server_proc, wharfd, tmp_path, record_property):
    a, b, c = server_proc("a"), server_proc("b"), server_proc("c")
    alog = tmp_path / "access.log"
    w, admin, _ = _start(request, wharfd, tmp_path, [a, b, c], health_check=HC_FAST, access_log=alog)
    _wait_all(admin, [a.addr, b.addr, c.addr], "healthy", 5)

    concurrency = 6
    load = LoadGen(w.port, threads=concurrency).start()
    try:
        _wait_load(load, 500, 20)
        wait_until(lambda: all(_ok_from(load, n) for n in "abc"), 5, "load did not reach every target")
        t_kill = time.monotonic()
        c.proc.send_signal(signal.SIGKILL)
        c.proc.wait(timeout=5)
        t_dead = time.monotonic()
        tgt, _ = admin.wait_state(c.addr, "unhealthy", OUT_BOUND + 2)
        t_out = time.monotonic() - t_kill
        out_reason = tgt["reason"]
        t_mark = time.monotonic()
        _load_window(load, 2.0, 1000, 30)
    finally:
        load.stop()
    total = load.count()
    fails = list(load.failures)
    after_mark = [f for f in fails if f[0] >= t_mark]
    late = [f for f in fails if f[0] > t_dead + 0.25]
    after = [r for r in load.ok if r[0] >= t_mark]
    print("\nkill under load: %d ok, %d failed (concurrency %d; %d started after the process died); "
          "%s unhealthy (%s) %.2fs after SIGKILL; %d ok after that\n%s"
          % (total, len(fails), concurrency, len(late), c.name, out_reason, t_out, len(after),
             _fmt_failures(load, t_kill)))
    record_property("kill_failed_requests", len(fails))
    record_property("kill_failed_started_after_death", len(late))
    record_property("kill_out_s", round(t_out, 3))
    record_property("kill_out_reason", out_reason)
    assert out_reason in ("connection_refused", "passive"), tgt
    assert t_out <= OUT_BOUND, "killed target unhealthy only %.2fs later (bound %.1fs)" % (t_out, OUT_BOUND)
    assert len(fails) <= concurrency, "%d failed requests, more than the load's concurrency %d:\n%s" % (
        len(fails), concurrency, _fmt_failures(load, t_kill))
    assert not after_mark, "requests failed after the killed target was out of rotation:\n%s" % (
        _fmt_failures(load, t_kill))
    assert not late, ("requests that started after the target's process had died failed (only requests in "
                      "flight on its connections may fail):\n%s" % _fmt_failures(load, t_kill))
    assert all(r[3] in ("a", "b") for r in after), "requests reached the dead target?"
    # every failed request was on the killed target (the access log names it)
    lines = [json.loads(x) for x in alog.read_text().splitlines() if x.strip()]
    failed_lines = [x for x in lines if x.get("status", 0) >= 500 or x.get("status") == 0]
    detail = ["%s %s -> %s target %s error %s" % (x.get("time"), x.get("path"), x.get("status"), x.get("target"),
                                                  x.get("error")) for x in failed_lines]
    print("access log of the failures:\n  " + "\n  ".join(detail))
    assert len(failed_lines) == len(fails), "access log has %d failures, the load saw %d:\n%s" % (
        len(failed_lines), len(fails), "\n".join(detail))
    assert all(x.get("target") == c.addr for x in failed_lines), \
        "requests failed on targets other than the killed one %s:\n%s" % (c.addr, "\n".join(detail))


# --------------------------------------------------------------------------
# 3. and 4. deregistration under load: API DELETE, and SIGHUP


def _drain_under_load(request, load, admin, gone, others, port, trigger, record_property, label):
    """With load running: a slow request in flight on `gone`, trigger() takes
    it out (returns the time it was out of the routable set as far as the
    caller knows); checks draining, the slow request, early removal and
    zero failures. Returns a dict of measurements."""
    _wait_load(load, 500, 20)
    slow, started = slow_request_on(port, gone, others, ms=1500)
    t_trigger = time.monotonic()
    t_out = trigger()
    tgt, _ = admin.wait_state(gone.addr, "draining", 3)
    assert tgt["reason"] == "deregistered", tgt
    assert not slow.done.is_set(), "the slow request ended before the drain began: %s" % slow.describe()
    assert tgt["in_flight"] >= 1, "draining target with the slow request in flight shows in_flight=%s" % tgt

    slow.wait(10)
    for s in started:
        s.wait(10)
    bad = [s.describe() for s in started if s.status != 200 or s.error]
    assert slow.status == 200 and slow.upstream == gone.name, \
        "the slow request in flight on the deregistered target: %s" % slow.describe()
    assert not bad, "slow requests failed: %s" % bad

    # gone (or unused) soon after the last request on it ended, long before
    # deregistration_delay (5 s) runs out
    _, waited = admin.wait_state(gone.addr, (None, "unused"), 4)
    t_gone = time.monotonic()
    gone_after_slow = t_gone - slow.t_end
    assert t_gone - t_trigger < 5.0 - 1.0, "drained only %.2fs after deregistration (delay 5 s)" % (
        t_gone - t_trigger)
    assert gone_after_slow <= 1.5, "still listed %.2fs after its last request ended" % gone_after_slow

    # load spanning it: > 2000 requests, and at least 1000 after it
    n_before = sum(1 for r in load.ok if r[0] < t_trigger)
    wait_until(lambda: load.count() >= 2500 and sum(1 for r in list(load.ok) if r[0] >= t_trigger) >= 1000
               or load.failures, 40, lambda: "load too slow: %d requests" % load.count(), interval=0.05)
    load.stop()
    late = [x for x in gone.requests_since(t_out + PUBLISH_SLACK) if not x[1].startswith("/slow")]
    early = [x for x in gone.requests_since(t_trigger) if not x[1].startswith("/slow")]
    total = load.count()
    n_after = total - n_before
    res = {"requests": total, "before": n_before, "after": n_after, "failed": len(load.failures),
           "slow_s": round(slow.t_end - slow.t_start, 3), "gone_after_slow_s": round(gone_after_slow, 3),
           "gone_after_trigger_s": round(t_gone - t_trigger, 3), "arrivals_after_trigger": len(early)}
    print("\n%s: %s" % (label, res))
    for k, v in res.items():
        record_property("%s_%s" % (label, k), v)
    assert not load.failures, "%d of %d requests failed during the drain:\n%s" % (
        len(load.failures), total + len(load.failures), _fmt_failures(load, t_trigger))
    assert total > 2000 and n_before > 0 and n_after >= 1000, res
    assert not late, "%d load requests reached %s after it was deregistered: %s" % (len(late), gone.name, late[:3])
    return res


@pytest.mark.timeout(90)
def test_deregister_through_api_under_load_drains_without_failures(
        request, health_server, wharfd, tmp_path, record_property):
    a, b, c = health_server("a"), health_server("b"), health_server("c")
    w, admin, _ = _start(request, wharfd, tmp_path, [a, b, c], health_check=HC_FAST,
                         deregistration_delay=5)
    _wait_all(admin, [a.addr, b.addr, c.addr], "healthy", 5)
    load = LoadGen(w.port, threads=4).start()
    try:
        def trigger():
            r = admin.deregister(c.addr)
            assert r.status == 202, r
            body = r.json()
            assert body["address"] == c.addr and body["state"] == "draining", body
            return time.monotonic()

        _drain_under_load(request, load, admin, c, [a, b], w.port, trigger, record_property, "api_dereg")
    finally:
        load.stop()
    # and it stays gone: DELETE again is 404
    assert admin.deregister(c.addr).status == 404


@pytest.mark.timeout(90)
def test_sighup_removes_and_adds_static_targets_under_load(
        request, health_server, wharfd, tmp_path, record_property):
    a, b, c, d = (health_server(n) for n in "abcd")
    w, admin, cfg = _start(request, wharfd, tmp_path, [a, b, c], health_check=HC_FAST,
                           deregistration_delay=5)
    _wait_all(admin, [a.addr, b.addr, c.addr], "healthy", 5)
    load = LoadGen(w.port, threads=4).start()
    try:
        def trigger():
            cfg["target_groups"][0]["targets"] = [a.addr, b.addr]
            write_config_atomically(w, cfg)
            os.kill(w.proc.pid, signal.SIGHUP)
            admin.wait_state(c.addr, "draining", 3)
            return time.monotonic()

        _drain_under_load(request, load, admin, c, [a, b], w.port, trigger, record_property, "sighup_dereg")
    finally:
        load.stop()

    # an added static target gets traffic
    load = LoadGen(w.port, threads=3).start()
    try:
        _wait_load(load, 200, 20)
        cfg["target_groups"][0]["targets"] = [a.addr, b.addr, d.addr]
        write_config_atomically(w, cfg)
        t0 = time.monotonic()
        os.kill(w.proc.pid, signal.SIGHUP)
        tgt, _ = admin.wait_state(d.addr, "healthy", 5)
        t_healthy = time.monotonic() - t0
        assert tgt["source"] == "static", tgt
        wait_until(lambda: d.count() > 0, 5, "the added static target receives no requests")
        t_first = d.requests_since(t0)[0][0] - t0
        _load_window(load, 0.5, 200, 20)
    finally:
        load.stop()
    assert c.addr not in admin.targets(), "the removed target came back: %s" % admin.targets()
    record_property("sighup_added_healthy_s", round(t_healthy, 3))
    record_property("sighup_added_first_request_s", round(t_first, 3))
    print("\nSIGHUP add: healthy after %.2fs, first request %.2fs, %d requests, %d failed"
          % (t_healthy, t_first, load.count(), len(load.failures)))
    assert not load.failures, _fmt_failures(load, t0)
    assert _ok_from(load, "d") > 0


# --------------------------------------------------------------------------
# 5. registration through the API


@pytest.mark.timeout(60)
def test_register_through_api_and_its_errors(request, health_server, wharfd, tmp_path, record_property):
    a, b, n = health_server("a"), health_server("b"), health_server("n")
    w, admin, _ = _start(request, wharfd, tmp_path, [a, b], health_check=HC_FAST)
    _wait_all(admin, [a.addr, b.addr], "healthy", 5)

    # 401: without a token, with a wrong one (and nothing happens)
    for token in (False, "Bearer wrong-token", "Basic dDQ6dDQ="):
        r = admin.register(n.addr, token=token)
        assert r.status == 401, (token, r)
        assert r.json()["error"]["code"], r
        assert admin.request("GET", "/v1/target-groups", token=token).status == 401
        assert admin.deregister(a.addr, token=token).status == 401
    assert n.addr not in admin.targets() and admin.state(a.addr) == "healthy", admin.targets()

    # 404: unknown group
    r = admin.register(n.addr, group="no-such-group")
    assert r.status == 404 and r.json()["error"]["code"] == "TargetGroupNotFound", r
    assert admin.deregister(a.addr, group="no-such-group").status == 404
    assert admin.deregister("127.0.0.1:1").status == 404  # no such target

    # 400: bad addresses and bodies
    for bad in ("not-an-address", "127.0.0.1", "127.0.0.1:99999", "127.0.0.1:abc", "0.0.0.0:80",
                "localhost:80", "", "[::1]"):
        r = admin.register(bad)
        assert r.status == 400, (bad, r)
        assert r.json()["error"]["code"] == "InvalidAddress", (bad, r)
    for body in (b"{not json", b"[]", b'{"weight": 1}', b'{"address": 5}'):
        r = admin.request("POST", "/v1/target-groups/web/targets", body=body)
        assert r.status == 400, (body, r)
    for weight in (0, 1000, 1.5):
        r = admin.register(n.addr, weight=weight)
        assert r.status == 400, (weight, r)
    assert n.addr not in admin.targets(), admin.targets()

    load = LoadGen(w.port, threads=3).start()
    try:
        _wait_load(load, 200, 20)
        t0 = time.monotonic()
        r = admin.register(n.addr, weight=1)
        assert r.status == 201, r
        body = r.json()
        assert body["address"] == n.addr and body["source"] == "api", body
        assert body["state"] in ("initial", "healthy"), body
        assert body["weight"] == 1, body
        tgt, _ = admin.wait_state(n.addr, "healthy", 4)  # healthy after one passing check
        t_healthy = time.monotonic() - t0
        assert tgt["source"] == "api", tgt
        wait_until(lambda: n.count() > 0, 5, "the target registered through the API receives no requests")
        t_first = n.requests_since(t0)[0][0] - t0
        _load_window(load, 0.5, 200, 20)
        # 409: the same address again
        r = admin.register(n.addr)
        assert r.status == 409, r
    finally:
        load.stop()
    record_property("api_register_healthy_s", round(t_healthy, 3))
    record_property("api_register_first_request_s", round(t_first, 3))
    print("\nAPI register: healthy after %.2fs, first request %.2fs; %d requests, %d to it, %d failed"
          % (t_healthy, t_first, load.count(), _ok_from(load, "n"), len(load.failures)))
    assert not load.failures, _fmt_failures(load, t0)
    # one passing check, then traffic: well within one interval (+ slack)
    assert t_healthy <= INTERVAL + SLACK, t_healthy


# --------------------------------------------------------------------------
# 6. fail-open, and a group with no targets


@pytest.mark.timeout(60)
def test_fail_open_when_all_unhealthy_and_503_for_an_empty_group(
        request, health_server, wharfd, tmp_path, record_property):
    a, b, c = health_server("a"), health_server("b"), health_server("c")
    empty_port = free_port()
    w, admin, _ = _start(request, wharfd, tmp_path, [a, b, c], health_check=HC_FAST,
                         more_groups={"empty": []}, extra_listeners=[(empty_port, "empty")])
    _wait_all(admin, [a.addr, b.addr, c.addr], "healthy", 5)
    s0, _ = admin.metrics()
    fo0 = metric_value(s0, "wharf_target_fail_open_total", group="web")
    assert fo0 is not None, "no wharf_target_fail_open_total{group=\"web\"}"

    t0 = time.monotonic()
    for s in (a, b, c):
        s.set_health("fail")
    _wait_all(admin, [a.addr, b.addr, c.addr], "unhealthy", OUT_BOUND + 2)
    t_all = time.monotonic() - t0
    assert all(t["reason"] == "status_mismatch" for t in admin.targets().values()), admin.targets()

    # the API shows a state at once; the fail-open snapshot is published (and
    # counted) up to 10 ms later (coalescing): wait for the count, then for
    # requests to reach every target
    wait_until(lambda: metric_value(admin.metrics()[0], "wharf_target_fail_open_total", group="web") > fo0,
               2, "wharf_target_fail_open_total did not grow after all targets became unhealthy")
    probes = []

    def spread():
        r = w.get("/probe")
        assert r.status == 200, r
        probes.append(r.headers.get("x-upstream"))
        return set(probes) == {"a", "b", "c"}
    wait_until(spread, 3, lambda: "fail-open did not route to every target: %s" % probes)
    m1 = metric_value(admin.metrics()[0], "wharf_target_fail_open_requests_total", group="web")
    assert m1 >= len(probes), "wharf_target_fail_open_requests_total %s < %d probes routed fail-open" % (
        m1, len(probes))

    load = LoadGen(w.port, threads=3).start()
    try:
        t1 = time.monotonic()
        _wait_load(load, 300, 20)
        wait_until(lambda: all(s.requests_since(t1) for s in (a, b, c)), 5,
                   lambda: "fail-open did not route to all targets: %s" % [len(s.requests_since(t1)) for s in (a, b, c)])
    finally:
        load.stop()
    n_fail_open = load.count()
    assert not load.failures, "requests failed while fail-open:\n%s" % _fmt_failures(load, t1)
    per = {s.name: len(s.requests_since(t1)) for s in (a, b, c)}

    s1, _ = admin.metrics()
    fo = metric_value(s1, "wharf_target_fail_open_total", group="web")
    for_req = metric_value(s1, "wharf_target_fail_open_requests_total", group="web")
    assert fo is not None and fo > fo0, "wharf_target_fail_open_total did not grow: %s -> %s" % (fo0, fo)
    assert for_req is not None and for_req - m1 >= n_fail_open, \
        "wharf_target_fail_open_requests_total grew by %s during %d requests routed fail-open" % (
            for_req - m1, n_fail_open)
    assert metric_value(s1, "wharf_targets", group="web", state="unhealthy") == 3

    # one recovers: only it gets requests, the others stay out
    a.set_health("ok")
    admin.wait_state(a.addr, "healthy", BACK_BOUND + 2)
    # the workers get the new snapshot a moment after the API shows the
    # change: wait for a run of requests that all went to a
    streak = []

    def routed_to_a():
        r = w.get("/after-recovery")
        assert r.status == 200, r
        streak.append(r.headers.get("x-upstream"))
        return streak[-6:] == ["a"] * 6
    wait_until(routed_to_a, 2, lambda: "requests still spread after a recovered: %s" % streak[-20:])
    t2 = time.monotonic()
    fo_req1 = metric_value(admin.metrics()[0], "wharf_target_fail_open_requests_total", group="web")
    for i in range(30):
        r = w.get("/after-recovery/%d" % i)
        assert r.status == 200 and r.headers.get("x-upstream") == "a", r
    assert not b.requests_since(t2) and not c.requests_since(t2)
    fo_req2 = metric_value(admin.metrics()[0], "wharf_target_fail_open_requests_total", group="web")

    # a group with no targets at all: 503
    for i in range(3):
        with RawClient(empty_port) as cl:
            r = cl.request("GET", "/nothing/%d" % i)
        assert r.status == 503, r
    assert metric_value(admin.metrics()[0], "wharf_target_fail_open_total", group="empty") == 0
    record_property("fail_open_all_unhealthy_s", round(t_all, 3))
    record_property("fail_open_requests", n_fail_open)
    print("\nfail-open: all unhealthy after %.2fs; %d requests spread %s; fail_open_total %s -> %s, "
          "fail_open_requests_total %s (then %s after one recovered)"
          % (t_all, n_fail_open, per, fo0, fo, for_req, fo_req2))
    assert fo_req2 == fo_req1, "requests counted as fail-open while a target was healthy: %s -> %s" % (
        fo_req1, fo_req2)


# --------------------------------------------------------------------------
# 7. metrics


@pytest.mark.timeout(60)
def test_target_and_health_check_metrics(request, health_server, wharfd, tmp_path, record_property):
    a, b, c = health_server("a"), health_server("b"), health_server("c")
    refused = "127.0.0.1:%d" % free_port()
    w, admin, _ = _start(request, wharfd, tmp_path, [a, b, c], health_check=HC_FAST,
                         deregistration_delay=5, more_groups={"other": [a]})
    _wait_all(admin, [a.addr, b.addr, c.addr], "healthy", 5)
    for i in range(30):
        assert w.get("/m/%d" % i).status == 200
    for i in range(3):
        assert w.get("/status/503").status == 503

    c.set_health("fail")
    assert admin.register(refused).status == 201
    admin.wait_state(c.addr, "unhealthy", OUT_BOUND + 2)
    tgt, _ = admin.wait_state(refused, "unhealthy", OUT_BOUND + 2)
    assert tgt["reason"] == "connection_refused", tgt
    slow, slow_all = slow_request_on(w.port, a, [b], ms=4000)
    assert admin.deregister(a.addr).status == 202
    admin.wait_state(a.addr, "draining", 2)

    text = admin.metrics_text()
    listing = admin.targets()
    samples, types = admin.metrics()
    for sr in slow_all:
        sr.wait(10)
        assert sr.status == 200, sr.describe()

    want_types = {
        "wharf_targets": "gauge",
        "wharf_target_state_changes_total": "counter",
        "wharf_target_fail_open_total": "counter",
        "wharf_target_fail_open_requests_total": "counter",
        "wharf_target_group_responses_total": "counter",
        "wharf_health_checks_total": "counter",
        "wharf_health_check_duration_seconds": "histogram",
    }
    for name, typ in want_types.items():
        assert types.get(name) == typ, "TYPE of %s is %r, expected %s\n%s" % (name, types.get(name), typ, text)

    # targets by group and state: every state of every group, matching the listing
    states = ("initial", "healthy", "unhealthy", "draining", "unused")
    for group in ("web", "other"):
        for st in states:
            assert metric_value(samples, "wharf_targets", group=group, state=st) is not None, \
                "no wharf_targets{group=%r,state=%r}\n%s" % (group, st, text)
    by_state = {st: sum(1 for t in listing.values() if t["state"] == st) for st in states}
    got = {st: metric_value(samples, "wharf_targets", group="web", state=st) for st in states}
    assert got == {k: float(v) for k, v in by_state.items()}, (got, by_state)
    assert by_state["healthy"] == 1 and by_state["unhealthy"] == 2 and by_state["draining"] == 1, by_state
    assert metric_value(samples, "wharf_targets", group="other", state="healthy") == 1
    changes = metric_value(samples, "wharf_target_state_changes_total", group="web")
    assert changes >= 3 + 3 + 2 + 1, "state changes %s: 3 registrations, 3 to healthy, 2 to unhealthy, 1 drain" % changes

    # health checks by result, and their latency histogram
    results = ("success", "timeout", "connection_refused", "status_mismatch", "connection_reset",
               "malformed_response", "connection_error")
    checks = {r: metric_value(samples, "wharf_health_checks_total", group="web", result=r) for r in results}
    assert None not in checks.values(), checks
    assert checks["success"] >= 3 and checks["status_mismatch"] >= UNHEALTHY_T \
        and checks["connection_refused"] >= UNHEALTHY_T, checks
    buckets = [(lb, v) for lb, v in samples.get("wharf_health_check_duration_seconds_bucket", [])]
    assert buckets and buckets[-1][0] == '{le="+Inf"}', buckets
    values = [v for _, v in buckets]
    assert values == sorted(values), "histogram buckets not cumulative: %s" % buckets
    count = metric_value(samples, "wharf_health_check_duration_seconds_count")
    total_checks = sum(metric_value(samples, "wharf_health_checks_total", group=g, result=r)
                       for g in ("web", "other") for r in results)
    assert values[-1] == count == total_checks, (values[-1], count, total_checks)
    assert metric_value(samples, "wharf_health_check_duration_seconds_sum") > 0

    # requests by group and status class
    resp = {cl: metric_value(samples, "wharf_target_group_responses_total", group="web", **{"class": cl})
            for cl in ("none", "1xx", "2xx", "3xx", "4xx", "5xx")}
    record_property("metrics_group_responses_web", repr(resp))
    record_property("metrics_checks_web", repr(checks))
    print("\nmetrics: web targets %s; checks %s; responses %s; state changes %s"
          % (got, checks, resp, changes))
    assert None not in resp.values(), resp
    # the slow requests were still in flight at that scrape: counted once done
    samples2, _ = admin.metrics()
    resp2 = {cl: metric_value(samples2, "wharf_target_group_responses_total", group="web", **{"class": cl})
             for cl in ("none", "1xx", "2xx", "3xx", "4xx", "5xx")}
    want = {"none": 0, "1xx": 0, "2xx": 30 + len(slow_all), "3xx": 0, "4xx": 0, "5xx": 3}
    assert resp["2xx"] >= 30 and resp["5xx"] == 3 and resp2 == want, \
        "wharf_target_group_responses_total does not count the responses sent through group web: %s " \
        "while %d slow requests were in flight, then %s; expected %s" % (resp, len(slow_all), resp2, want)


# --------------------------------------------------------------------------
# 7. slow start in the API: the file's targets start at full share, one
#    added through the API ramps


@pytest.mark.timeout(30)
def test_slow_start_shown_per_target_static_full_share_api_target_ramps(request, health_server, wharfd,
                                                                         tmp_path):
    a, b, c = health_server(), health_server(), health_server()
    port, admin_port = free_port(), free_port()
    token_file, token = write_token(tmp_path)
    cfg = targets_config(port, admin_port, token_file, [a, b])
    cfg["target_groups"][0]["slow_start"] = 30
    wharfd(config=cfg, port=port, wait_ports=[admin_port])
    admin = Admin(admin_port, token)
    add_diag(request, "GET /v1/target-groups at failure", lambda: repr(admin.groups()))

    g = admin.group("web")
    assert g["slow_start"] == 30, g
    for t in g["targets"]:  # came up together with the file: full share at once
        assert t["state"] == "healthy" and t["slow_start_remaining"] == 0, g

    t0 = time.monotonic()
    assert admin.register(c.addr).status == 201
    t, _ = admin.wait_state(c.addr, "healthy", 5)
    waited = time.monotonic() - t0
    assert 30 - waited - 1 <= t["slow_start_remaining"] <= 30, (waited, t)
    assert all(admin.target(x.addr)["slow_start_remaining"] == 0 for x in (a, b)), admin.targets()
