"""Target registry and active health checks with real upstream servers.

The registry runs on a control loop in its driver program (the
`health_driver` fixture, harness/health_driver.py), which prints every
state change and every published snapshot as JSON lines and takes commands
on stdin (register, deregister, reload, hold/release a worker's request,
passive counters, stats with loop lag and CPU time). Upstreams are real
sockets on 127.0.0.1 in this process.
"""

import http.client
import json
import selectors
import socket
import threading
import time
import urllib.parse

import pytest

from harness.loopback_server import LOOPBACK
from harness.polling import wait_until
from harness.ports import free_port
from harness.upstreams import CLOSE, HANG, RESET, Raw, Response

TOKEN = "health-test-token"
SLACK = 0.3  # scheduling slack on top of the documented bounds (seconds)


# --------------------------------------------------------------------------
# configuration


def _value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    return repr(v)


def group_conf(name="web", targets=(), hc=None, passive=None, delay=None):
    parts = ["name = %s;" % _value(name)]
    if delay is not None:
        parts.append("deregistration_delay = %s;" % _value(delay))
    if hc is not None:
        parts.append("health_check = { %s };" % " ".join("%s = %s;" % (k, _value(v)) for k, v in hc.items()))
    if passive is not None:
        parts.append("passive = { %s };" % " ".join("%s = %s;" % (k, _value(v)) for k, v in passive.items()))
    parts.append("targets = ( %s );" % ", ".join(_value(t) for t in targets))
    return "{ %s }" % " ".join(parts)


def config_text(groups, admin_port=None, token_file=None):
    text = 'log = { level = "warn"; };\ntarget_groups = (\n  %s\n);\n' % ",\n  ".join(groups)
    if admin_port:
        text += 'admin = { bind = "127.0.0.1:%d"; token_file = %s; metrics_public = true; };\n' % (
            admin_port, _value(str(token_file)))
    return text


def fast_hc(**kw):
    hc = {"path": "/health", "interval": 1.0, "timeout": 0.5, "healthy_threshold": 2,
          "unhealthy_threshold": 2}
    hc.update(kw)
    return hc


# --------------------------------------------------------------------------
# the program under test


class Switch:
    """A health endpoint whose answer a test flips: an action returned for
    /health; every other path gets 200."""

    def __init__(self, action=None):
        self.action = action or Response(200, body=b"ok")
        self.health_requests = []
        self.times = []  # time.monotonic() of each check's arrival

    def __call__(self, req):
        if req.target.startswith("/health"):
            self.times.append(time.monotonic())
            self.health_requests.append(req)
            return self.action
        return Response(200, body=b"hello")


# --------------------------------------------------------------------------
# rotation bounds


@pytest.mark.timeout(60)
@pytest.mark.parametrize("failure", ["status_mismatch", "timeout"])
def test_health_failing_target_leaves_and_returns_within_bounds(health_driver, upstream, failure):
    interval, timeout, healthy_th, unhealthy_th = 1.0, 0.5, 2, 2
    switches = [Switch() for _ in range(3)]
    ups = [upstream(handler=s, name="u%d" % i) for i, s in enumerate(switches)]
    h = health_driver(config_text([group_conf(targets=[u.addr for u in ups], hc=fast_hc(
        interval=interval, timeout=timeout, healthy_threshold=healthy_th, unhealthy_threshold=unhealthy_th))]))
    h.publish(lambda o: o["n"] == 3 and not o["fail_open"], timeout=5, message="3 healthy targets")

    victim = ups[1].addr
    start = h.mark()
    switches[1].action = Response(500) if failure == "status_mismatch" else HANG
    t0 = time.monotonic()
    out = h.publish(lambda o: victim not in o["targets"], start, timeout=10,
                    message="%s never left the rotation" % victim)
    took = out["mono"] - t0
    bound = interval * unhealthy_th + timeout
    assert took <= bound + SLACK, "out of rotation after %.2fs, bound %.2fs" % (took, bound)
    ev = h.event(victim, "unhealthy", start)
    assert ev["old"] == "healthy" and ev["reason"] == failure, ev
    assert sorted(out["targets"]) == sorted([ups[0].addr, ups[2].addr]) and not out["fail_open"], out

    start = h.mark()
    switches[1].action = Response(200, body=b"ok")
    t1 = time.monotonic()
    back = h.publish(lambda o: victim in o["targets"], start, timeout=10,
                     message="%s never came back" % victim)
    took_back = back["mono"] - t1
    bound_back = interval * healthy_th
    assert took_back <= bound_back + SLACK, "back after %.2fs, bound %.2fs" % (took_back, bound_back)
    assert h.event(victim, "healthy", start)["old"] == "unhealthy"
    print("%s: out of rotation after %.2fs (bound %.2fs), back after %.2fs (bound %.2fs)"
          % (failure, took, bound, took_back, bound_back))


@pytest.mark.timeout(30)
def test_health_new_target_is_healthy_after_one_pass(health_driver, upstream):
    sw = Switch()
    u = upstream(handler=sw)
    h = health_driver(config_text([group_conf(hc=fast_hc(interval=4.0, timeout=1.0, healthy_threshold=5))]))
    reply = h.send("register web %s" % u.addr)
    assert reply["rc"] == 0, reply
    ev = h.event(u.addr, "healthy", timeout=5)
    assert ev["old"] == "initial", ev
    took = ev["mono"] - reply["mono"]
    assert took < 0.5, "a new target is checked at once: healthy after %.2fs" % took
    before = [t for t in sw.times if t <= ev["mono"]]
    assert len(before) == 1, "one pass, not healthy_threshold passes: %d checks" % len(before)
    req = sw.health_requests[0]
    assert (req.method, req.target) == ("GET", "/health")
    assert req.headers.get("Host") == u.addr
    assert req.headers.get("Connection") == "close"


@pytest.mark.timeout(30)
def test_health_failure_reasons(health_driver, upstream, refused_target):
    cases = {
        "connection_refused": refused_target(),
        "timeout": upstream(handler=lambda r: HANG).addr,
        "status_mismatch": upstream(handler=lambda r: Response(404)).addr,
        "malformed_response": upstream(handler=lambda r: Raw(b"HTTP/1.1 2000 Nope\r\n\r\n")).addr,
        "connection_reset": upstream(handler=lambda r: RESET).addr,
    }
    closer = upstream(handler=lambda r: CLOSE).addr
    h = health_driver(config_text([group_conf(targets=list(cases.values()) + [closer], hc=fast_hc(
        interval=0.5, timeout=0.3, unhealthy_threshold=1))]))
    for reason, addr in cases.items():
        ev = h.event(addr, "unhealthy", timeout=5)
        assert ev["reason"] == reason, ev
        assert ev["old"] == "initial"
    assert h.event(closer, "unhealthy", timeout=5)["reason"] == "connection_reset"
    mismatch = h.events_of(cases["status_mismatch"])[-1]
    assert "404" in mismatch["description"], mismatch
    # Every target is unhealthy: the group fails open to all of them.
    h.publish(lambda o: o["fail_open"] and o["n"] == len(cases) + 1, timeout=5)


@pytest.mark.timeout(30)
def test_health_fixed_port_and_host_header(health_driver, upstream, refused_target):
    sw = Switch()
    u = upstream(handler=sw)
    traffic = refused_target()  # the traffic port is closed; the check port answers
    hc = fast_hc(interval=0.5, timeout=0.3, port=u.port, host="status.example", path="/health?deep=1",
                 matcher="200,302")
    h = health_driver(config_text([group_conf(targets=[traffic], hc=hc)]))
    assert h.event(traffic, "healthy", timeout=5)["old"] == "initial"
    req = sw.health_requests[0]
    assert req.target == "/health?deep=1" and req.headers.get("Host") == "status.example"
    # 302 is in the matcher: checks keep passing.
    sw.action = Response(302, headers=[("Location", "/x")])
    seen = len(sw.health_requests)
    wait_until(lambda: len(sw.health_requests) >= seen + 3, 5, "checks stopped", interval=0.05)
    assert [o for o in h.events_of(traffic) if o["new"] == "unhealthy"] == []
    sw.action = Response(301, headers=[("Location", "/x")])
    ev = h.event(traffic, "unhealthy", timeout=5)
    assert ev["reason"] == "status_mismatch" and "301" in ev["description"], ev


@pytest.mark.timeout(30)
def test_health_fail_open_when_all_are_unhealthy(health_driver, upstream):
    sws = [Switch(Response(503)), Switch(Response(503))]
    ups = [upstream(handler=s) for s in sws]
    h = health_driver(config_text([group_conf(targets=[u.addr for u in ups], hc=fast_hc(
        interval=0.5, timeout=0.3, healthy_threshold=1, unhealthy_threshold=1))]))
    for u in ups:
        h.event(u.addr, "unhealthy", timeout=5)
    snap = h.send("snapshot web")
    assert snap["fail_open"] and sorted(snap["targets"]) == sorted(u.addr for u in ups), snap
    start = h.mark()
    sws[0].action = Response(200)
    pub = h.publish(lambda o: not o["fail_open"], start, timeout=5)
    assert pub["targets"] == [ups[0].addr], pub
    # Draining targets are never routed to, fail-open or not.
    start = h.mark()
    assert h.send("deregister web %s" % ups[0].addr)["rc"] == 0
    pub = h.publish(lambda o: True, start, timeout=5)
    assert pub["fail_open"] and pub["targets"] == [ups[1].addr], pub


# --------------------------------------------------------------------------
# passive detection, draining, reload


@pytest.mark.timeout(30)
def test_health_passive_ejection_and_return(health_driver, upstream):
    ups = [upstream(), upstream()]
    h = health_driver(config_text([group_conf(targets=[u.addr for u in ups], passive={
        "consecutive_connect_failures": 3, "consecutive_5xx": 2, "eject": 1})]))
    h.publish(lambda o: o["n"] == 2, timeout=5)
    start = h.mark()
    assert h.send("passive web %s connect 3" % ups[0].addr)["rc"] == 0
    t0 = time.monotonic()
    ev = h.event(ups[0].addr, "unhealthy", start, timeout=2)
    assert ev["reason"] == "passive" and "3 consecutive connect failures" in ev["description"], ev
    assert ev["mono"] - t0 < 0.3, "the sweep runs every 100 ms"
    back = h.event(ups[0].addr, "healthy", start, timeout=3)
    assert 0.9 <= back["mono"] - ev["mono"] <= 1.0 + SLACK, "ejected for `eject` = 1 s"
    start = h.mark()
    h.send("passive web %s 5xx 2" % ups[1].addr)
    assert h.event(ups[1].addr, "unhealthy", start, timeout=2)["reason"] == "passive"


@pytest.mark.timeout(30)
def test_health_drain_ends_with_the_last_request_or_the_delay(health_driver, upstream):
    ups = [upstream(), upstream()]
    h = health_driver(config_text([group_conf("slow", targets=[ups[0].addr], delay=30),
                            group_conf("fast", targets=[ups[1].addr], delay=1)]))
    hold = h.send("hold slow")
    assert hold["rc"] == 0 and hold["n"] == 1
    start = h.mark()
    h.send("deregister slow %s" % ups[0].addr)
    ev = h.event(ups[0].addr, "draining", start)
    assert ev["reason"] == "deregistered"
    h.publish(lambda o: o["n"] == 0, start, group="slow")
    # A request is in flight: it keeps draining until that request ends.
    # The behaviour under test: for 0.5 s (checked every 50 ms) it must not
    # become unused while the request is held.
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        assert not [o for o in h.events_of(ups[0].addr) if o["new"] == "unused"], h.describe()
        time.sleep(0.05)
    released = h.send("release %d" % hold["id"])
    done = h.event(ups[0].addr, "unused", start, timeout=2)
    assert done["reason"] == "drained" and done["mono"] >= released["mono"], done
    assert done["mono"] - released["mono"] < 0.3

    # A tunnel that never ends is cut at deregistration_delay.
    hold = h.send("hold fast")
    start = h.mark()
    sent = h.send("deregister fast %s" % ups[1].addr)
    hard = h.wait_for(lambda o: o["type"] == "drained_hard", 5, "no drained_hard callback", start)
    assert hard["address"] == ups[1].addr and hard["in_flight"] == 1
    assert 0.9 <= hard["mono"] - sent["mono"] <= 1.0 + SLACK, hard
    assert h.event(ups[1].addr, "unused", start)["reason"] == "deregistration_delay"
    h.send("release %d" % hold["id"])


@pytest.mark.timeout(30)
def test_health_reload_applies_only_static_changes(health_driver, upstream, tmp_path):
    a, b, c, api = (upstream(name=n) for n in ("a", "b", "c", "api"))
    h = health_driver(config_text([group_conf(targets=[a.addr, b.addr])]))
    h.publish(lambda o: o["n"] == 2)
    assert h.send("register web %s" % api.addr)["rc"] == 0
    new = tmp_path / "reload.conf"
    new.write_text(config_text([group_conf(targets=[a.addr, c.addr])]))
    start = h.mark()
    assert h.send("reload %s" % new)["rc"] == 0
    assert h.event(b.addr, "draining", start)["reason"] == "deregistered"
    assert h.event(b.addr, "unused", start)["reason"] == "drained"
    assert h.event(c.addr, "healthy", start)["source"] == "static"
    pub = h.publish(lambda o: o["n"] == 3, start)
    assert sorted(pub["targets"]) == sorted([a.addr, c.addr, api.addr])
    # The same file again changes nothing.
    start = h.mark()
    assert h.send("reload %s" % new)["rc"] == 0
    h.send("stats")
    assert not [o for o in h.lines[start:] if o["type"] in ("event", "publish")], h.describe()


# --------------------------------------------------------------------------
# the admin endpoints


def _http(port, method, path, body=None, token=TOKEN):
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=5)
    headers = {"Authorization": "Bearer %s" % token} if token else {}
    if body is not None:
        body = json.dumps(body)
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    try:
        return r.status, json.loads(data)
    except ValueError:
        return r.status, data.decode()


@pytest.mark.timeout(30)
def test_health_admin_target_endpoints(health_driver, upstream, tmp_path):
    u1, u2 = upstream(), upstream()
    port = free_port()
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    h = health_driver(config_text([group_conf(targets=[u1.addr])], admin_port=port, token_file=token_file))
    h.publish(lambda o: o["n"] == 1)

    status, groups = _http(port, "GET", "/v1/target-groups")
    assert status == 200
    assert groups == [{"name": "web", "algorithm": "round_robin", "slow_start": 0, "targets": [
        {"address": u1.addr, "state": "healthy", "reason": None, "description": None, "source": "static",
         "in_flight": 0, "weight": 1, "slow_start_remaining": 0}]}], groups
    assert _http(port, "GET", "/v1/target-groups", token="wrong")[0] == 401

    status, t = _http(port, "POST", "/v1/target-groups/web/targets", {"address": u2.addr, "weight": 3})
    assert status == 201 and t["state"] == "healthy" and t["source"] == "api" and t["weight"] == 3, t
    status, err = _http(port, "POST", "/v1/target-groups/web/targets", {"address": u2.addr})
    assert status == 409 and err["error"]["code"] == "TargetAlreadyRegistered", err
    status, err = _http(port, "POST", "/v1/target-groups/web/targets", {"address": "example.com:80"})
    assert status == 400 and err["error"]["code"] == "InvalidAddress", err
    status, err = _http(port, "POST", "/v1/target-groups/web/targets", {"address": u2.addr, "weight": 0})
    assert status == 400 and err["error"]["code"] == "InvalidWeight", err
    status, err = _http(port, "POST", "/v1/target-groups/nope/targets", {"address": u2.addr})
    assert status == 404 and err["error"]["code"] == "TargetGroupNotFound", err
    assert _http(port, "POST", "/v1/target-groups/web/targets", "not an object")[0] == 400

    v6 = "[::1]:%d" % free_port()
    assert _http(port, "POST", "/v1/target-groups/web/targets", {"address": v6})[0] == 201
    status, t = _http(port, "DELETE", "/v1/target-groups/web/targets/" + urllib.parse.quote(v6, safe=""))
    assert status == 202 and t["state"] == "draining" and t["reason"] == "deregistered", t
    status, err = _http(port, "DELETE", "/v1/target-groups/web/targets/127.0.0.1:1")
    assert status == 404 and err["error"]["code"] == "TargetNotFound", err
    assert _http(port, "DELETE", "/v1/target-groups/web")[0] == 405

    status, one = _http(port, "GET", "/v1/target-groups/web")
    assert status == 200 and one["name"] == "web"
    assert {t["address"] for t in one["targets"]} >= {u1.addr, u2.addr}
    assert _http(port, "GET", "/v1/target-groups/nope")[0] == 404

    status, text = _http(port, "GET", "/metrics", token=None)
    assert status == 200
    for line in ('wharf_targets{group="web",state="healthy"} 2',
                 'wharf_target_state_changes_total{group="web"}',
                 'wharf_target_fail_open_total{group="web"} 0',
                 'wharf_health_checks_total{group="web",result="success"} 0',
                 "wharf_health_check_duration_seconds_count 0",
                 "wharf_event_loop_lag_seconds"):
        assert line in text, "%r missing from /metrics:\n%s" % (line, text)


# --------------------------------------------------------------------------
# scale: 1,000 targets checked every second, a tenth of them hanging


class ManyUpstreams:
    """n_ok listeners answering 200 to every request, and n_hang listeners
    that accept and never answer, all served by one selector thread."""

    RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"

    def __init__(self, n_ok, n_hang):
        self.sel = selectors.DefaultSelector()
        self.listeners = []
        self.answered = 0
        self.hung = 0
        self._stop = threading.Event()
        for i in range(n_ok + n_hang):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((LOOPBACK, 0))
            s.listen(128)
            s.setblocking(False)
            hang = i >= n_ok
            self.sel.register(s, selectors.EVENT_READ, ("listen", hang, None))
            self.listeners.append((s, hang))
        self.ok_addrs = ["%s:%d" % s.getsockname() for s, hang in self.listeners if not hang]
        self.hang_addrs = ["%s:%d" % s.getsockname() for s, hang in self.listeners if hang]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop.is_set():
            for key, _ in self.sel.select(0.1):
                kind, hang, buf = key.data
                if kind == "listen":
                    self._accept(key.fileobj, hang)
                else:
                    self._serve(key.fileobj, hang, buf)

    def _accept(self, lsock, hang):
        try:
            conn, _ = lsock.accept()
        except OSError:
            return
        conn.setblocking(False)
        self.hung += hang
        self.sel.register(conn, selectors.EVENT_READ, ("conn", hang, bytearray()))

    def _serve(self, conn, hang, buf):
        try:
            data = conn.recv(4096)
        except OSError:
            data = b""
        if data:
            buf += data
            if hang or b"\r\n\r\n" not in buf:
                return
            try:
                conn.send(self.RESPONSE)
            except OSError:
                pass
            self.answered += 1
        self.sel.unregister(conn)
        conn.close()

    def stop(self):
        self._stop.set()
        self.thread.join(timeout=5)
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()
        self.sel.close()


@pytest.mark.timeout(120)
def test_health_loop_lag_with_1000_targets_and_100_hanging(health_driver):
    many = ManyUpstreams(900, 100)
    try:
        hc = fast_hc(interval=1.0, timeout=0.5, healthy_threshold=2, unhealthy_threshold=2)
        h = health_driver(config_text([group_conf(targets=many.ok_addrs + many.hang_addrs, hc=hc)]))
        h.publish(lambda o: o["n"] == 900 and not o["fail_open"], timeout=15,
                  message="900 healthy targets, the 100 hanging ones out")

        def unhealthy():
            with h.cond:
                return {o["address"] for o in h.lines if o["type"] == "event" and o["new"] == "unhealthy"}
        wait_until(lambda: len(unhealthy()) >= 100, 10, "the hanging targets never became unhealthy", interval=0.1)
        assert unhealthy() == set(many.hang_addrs)
        # Steady state: measure over 10 s (the lag meter's window).
        first = h.send("stats")
        deadline = time.monotonic() + 30
        while True:
            last = h.send("stats")
            if last["uptime"] - first["uptime"] >= 10.5:
                break
            assert time.monotonic() < deadline
            time.sleep(0.5)  # poll interval: the window is 10.5 s of the driver's own uptime
        span = last["uptime"] - first["uptime"]
        checks = last["checks"] - first["checks"]
        cpu = (last["user"] + last["sys"]) - (first["user"] + first["sys"])
        user = last["user"] - first["user"]
        print("1,000 targets every 1 s (100 hanging): %d checks in %.1fs, CPU %.1f%% of a core "
              "(%.1f%% user), %.0f us per check, max loop lag %.1f ms"
              % (checks, span, 100 * cpu / span, 100 * user / span, 1e6 * cpu / max(checks, 1),
                 1000 * last["lag"]))
        assert 950 * span <= checks <= 1020 * span, "not one check per target per second: %d in %.1fs" % (
            checks, span)
        assert last["lag"] < 0.05, "event loop lag %.3fs" % last["lag"]
        assert many.hung >= 100 * int(span) * 0.9
    finally:
        many.stop()
