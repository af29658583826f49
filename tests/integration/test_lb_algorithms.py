"""Weighted forwarding between target groups, the target-group algorithms
(weighted_random, least_outstanding_requests) and stickiness (the target
lb cookie wharf-lb-<group> and the group-level cookie wharf-tg-<listener>),
through real wharfd processes and real upstreams.

Shares are measured over thousands of keep-alive requests and compared with
tolerances of about 5 binomial standard deviations (stated at each test), so
a correct wharfd fails them about once in a million runs, while a wharfd that
ignores the weights misses them by tens of points."""

import collections
import json
import math
import threading
import time

import pytest

from harness.admin_client import Admin, admin_block, write_token
from harness.cookies import cookie_header, sticky_cookie, tamper
from harness.http_client import RawClient, get
from harness.load import split_counts
from harness.polling import wait_until
from harness.ports import free_port
from harness.reporting import add_diag
from harness.rules_config import cond, config, fwd, listener, rule, tg
from harness.upstreams import default_handler, upstream_of

# After the admin API shows a target out of rotation, a request may still be
# sent to it only until the new snapshot reaches the worker (as in
# test_targets_e2e.py).
PUBLISH_SLACK = 0.3


def _sd_points(p, n):
    """Binomial standard deviation of a share, in percentage points."""
    return 100 * math.sqrt(p * (1 - p) / n)


def _check_share(total, n, name, expected_pct, tol, what):
    got = 100.0 * total.get(name, 0) / n
    assert abs(got - expected_pct) <= tol, (
        "%s: %s got %.2f%% of %d requests, expected %.1f%% +- %.1f points (binomial sd %.2f points); "
        "counts %s" % (what, name, got, n, expected_pct, tol, _sd_points(expected_pct / 100.0, n), dict(total)))
    return got


# --------------------------------------------------------------------------
# weighted forwarding between groups


@pytest.mark.timeout(60)
def test_weighted_forward_90_10_split_over_10000_keepalive_requests(upstream, wharfd, record_property):
    a, b = upstream(name="a"), upstream(name="b")
    port = free_port()
    da = {"forward": fwd(("a", 90), ("b", 10))}
    wharfd(config=config([listener("http", port, da)], [tg("a", [a]), tg("b", [b])]), port=port)
    n = 10000
    total, per_conn, dt = split_counts(port, n, threads=4, path="/w2")
    print("\n90/10: %s in %.2fs (%.0f req/s); per connection %s" % (dict(total), dt, n / dt,
                                                                      [dict(c) for c in per_conn]))
    record_property("weighted_90_10_b_share", total["b"] / n)
    # n = 10,000, p = 0.1: sd 0.3 points; 1.5 points is 5 sd
    _check_share(total, n, "b", 10.0, 1.5, "weight 10 of 100")
    _check_share(total, n, "a", 90.0, 1.5, "weight 90 of 100")
    # chosen per request, not per connection: every connection sees both
    # (2,500 requests each: sd 0.6 points; 3.5 points is ~6 sd)
    for i, c in enumerate(per_conn):
        m = sum(c.values())
        assert abs(100.0 * c["b"] / m - 10.0) <= 3.5, "connection %d: %s" % (i, dict(c))
    assert len(a.requests()) == total["a"] and len(b.requests()) == total["b"], (
        "upstreams saw %d/%d requests, the client %s" % (len(a.requests()), len(b.requests()), dict(total)))


@pytest.mark.timeout(60)
def test_weighted_forward_three_groups_and_weight_zero_in_a_rule(upstream, wharfd):
    names = ["g60", "g30", "g10", "g0", "dflt"]
    ups = {x: upstream(name=x) for x in names}
    port = free_port()
    rules = [rule(10, cond(path=["/w3/*"]), forward=fwd(("g60", 60), ("g30", 30), ("g10", 10), ("g0", 0)))]
    lst = listener("http", port, {"forward": fwd("dflt")}, rules)
    wharfd(config=config([lst], [tg(x, [u]) for x, u in ups.items()]), port=port)
    n = 10000
    total, per_conn, dt = split_counts(port, n, threads=4, path="/w3")
    print("\n60/30/10/0: %s in %.2fs" % (dict(total), dt))
    # n = 10,000: sd 0.49 (p=0.6), 0.46 (p=0.3), 0.30 (p=0.1) points; 2 points is >= 4 sd
    _check_share(total, n, "g60", 60.0, 2.0, "weight 60 of 100")
    _check_share(total, n, "g30", 30.0, 2.0, "weight 30 of 100")
    _check_share(total, n, "g10", 10.0, 1.5, "weight 10 of 100")
    assert total["g0"] == 0 and total["dflt"] == 0, dict(total)
    assert ups["g0"].total_bytes() == 0 and not ups["g0"].connections(), ups["g0"].describe()
    # outside the rule: the default action only
    got = collections.Counter(upstream_of(get(port, "/other/%d" % k)) for k in range(20))
    assert got == {"dflt": 20}, dict(got)


# --------------------------------------------------------------------------
# algorithms


@pytest.mark.timeout(60)
def test_weighted_random_target_weights_1_and_3(upstream, wharfd):
    a, b = upstream(name="a"), upstream(name="b")
    port = free_port()
    group = tg("web", [(a, 1), (b, 3)], algorithm="weighted_random")
    wharfd(config=config([listener("http", port, {"forward": fwd("web")})], [group]), port=port)
    n = 4000
    total, per_conn, dt = split_counts(port, n, threads=4, path="/wr")
    print("\nweighted_random 1:3: %s in %.2fs" % (dict(total), dt))
    # n = 4,000, p = 0.25: sd 0.68 points; 3.5 points is ~5 sd (round robin: 50%)
    _check_share(total, n, "b", 75.0, 3.5, "target weight 3 of 4")
    _check_share(total, n, "a", 25.0, 3.5, "target weight 1 of 4")


SLOW_S = 1.5


@pytest.mark.timeout(60)
def test_least_outstanding_requests_sends_concurrent_load_to_the_fast_target(upstream, wharfd):
    """Six clients in closed loops (keep-alive, one request at a time each)
    against a fast target and one that answers every request after 1.5 s.
    Least outstanding requests picks the slow one only when it has no more
    requests in flight than the fast one, so it holds a request or two while
    the fast one serves hundreds. Under round robin every client would
    alternate fast / slow: each spends 1.5 s of every two requests on the
    slow target, the fast one serves about 6 requests per 1.5 s (never 300
    within the 8 s deadline) and the slow one gets half of all requests."""
    def slow_handler(req):
        resp = default_handler(req)
        resp.delay = SLOW_S  # simulated work of the origin
        return resp

    slow, fast = upstream(slow_handler, name="slow"), upstream(name="fast")
    port = free_port()
    group = tg("web", [slow, fast], algorithm="least_outstanding_requests")
    wharfd(config=config([listener("http", port, {"forward": fwd("web")})], [group]), port=port)

    stop = threading.Event()
    lock = threading.Lock()
    done = []      # (name, t_start, t_end)
    errors = []

    def client(i):
        try:
            with RawClient(port, timeout=10) as c:
                k = 0
                while not stop.is_set():
                    t0 = time.monotonic()
                    r = c.request("GET", "/lor/%d/%d" % (i, k))
                    k += 1
                    name = upstream_of(r)
                    with lock:
                        done.append((name, t0, time.monotonic()))
        except Exception as e:
            errors.append("client %d: %s: %s" % (i, type(e).__name__, e))

    def count(name):
        with lock:
            return sum(1 for d in done if d[0] == name)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(6)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    try:
        wait_until(lambda: errors or (time.monotonic() - t0 >= 1.0 and count("fast") >= 300
                                      and len(slow.requests()) >= 1), 8,
                   lambda: "after %.1fs: fast answered %d, slow received %d (answered %d): least outstanding "
                           "requests should keep the load off the slow target" % (
                               time.monotonic() - t0, count("fast"), len(slow.requests()), count("slow")),
                   interval=0.02)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=SLOW_S + 8)
    assert not errors, errors
    n_fast, n_slow = count("fast"), count("slow")
    share = 100.0 * n_slow / (n_fast + n_slow)
    print("\nleast_outstanding_requests: fast %d, slow %d (%.1f%%) in %.2fs"
          % (n_fast, n_slow, share, time.monotonic() - t0))
    assert n_slow == len(slow.requests()), (n_slow, slow.describe())
    assert share <= 5.0, "the slow target got %.1f%% of %d requests (fast %d, slow %d)" % (
        share, n_fast + n_slow, n_fast, n_slow)


# --------------------------------------------------------------------------
# target stickiness (lb cookie)

LB_COOKIE = "wharf-lb-web"


def _sticky_group(targets, duration=3600, **kw):
    return tg("web", targets, stickiness={"enabled": True, "duration": duration}, **kw)


def _with_cookie(port, value, target="/s", name=LB_COOKIE, others=()):
    """One request on a fresh connection sending the cookie."""
    return get(port, target, headers=cookie_header(name, value, others))


@pytest.mark.timeout(60)
def test_target_stickiness_cookie_pins_clients_and_new_clients_are_spread(upstream, wharfd):
    ups = [upstream(name=x) for x in ("a", "b", "c")]
    port = free_port()
    wharfd(config=config([listener("http", port, {"forward": fwd("web")})], [_sticky_group(ups)]), port=port)

    # without a cookie: round robin (two workers, each rotating: counts
    # within 2 of each other), each response issuing a cookie for its target
    cookie_for = {}
    spread = []
    for k in range(30):
        r = get(port, "/new/%d" % k)
        name = upstream_of(r)
        spread.append(name)
        cookie_for.setdefault(name, sticky_cookie(r, LB_COOKIE, 3600))
    counts = collections.Counter(spread)
    assert set(counts) == {"a", "b", "c"} and max(counts.values()) - min(counts.values()) <= 2, (
        "clients without a cookie are not spread round robin: %s" % spread)

    # with a cookie: always its target, on every new connection
    bad = []
    order = ["a", "b", "c"] * 10
    for k, want in enumerate(order):
        others = ("theme=dark", "lang=en") if k % 2 else ()
        r = _with_cookie(port, cookie_for[want], "/pinned/%d" % k, others=others)
        got = upstream_of(r)
        if got != want:
            bad.append("request %d with the cookie of %s went to %s" % (k, want, got))
    assert not bad, "\n".join(bad)
    # and on one keep-alive connection
    with RawClient(port) as c:
        got = [upstream_of(c.request("GET", "/ka/%d" % k, headers=cookie_header(LB_COOKIE, cookie_for["b"])))
               for k in range(10)]
    assert got == ["b"] * 10, got


@pytest.mark.timeout(60)
def test_target_stickiness_ignores_tampered_garbage_and_expired_cookies(upstream, wharfd):
    ups = [upstream(name=x) for x in ("a", "b", "c")]
    port = free_port()
    duration = 3
    wharfd(config=config([listener("http", port, {"forward": fwd("web")})], [_sticky_group(ups, duration)]), port=port)
    r = get(port, "/first")
    t_issued = time.monotonic()
    pinned = upstream_of(r)
    value = sticky_cookie(r, LB_COOKIE, duration)
    assert [upstream_of(_with_cookie(port, value, "/p/%d" % k)) for k in range(6)] == [pinned] * 6

    def ignored(bad_value, n, what):
        """n requests with bad_value: served, a new cookie issued each time;
        returns the targets."""
        names = []
        for k in range(n):
            r = _with_cookie(port, bad_value, "/bad/%d" % k)
            names.append(upstream_of(r))
            new = sticky_cookie(r, LB_COOKIE, duration)
            assert new != bad_value, "%s cookie %r was issued back unchanged" % (what, bad_value)
        return names

    forged = tamper(value)
    names = ignored(forged, 6, "tampered")
    # round robin over 6 requests on 2 workers reaches at least 2 targets;
    # a cookie taken at its word would pin them all to one
    assert len(set(names)) >= 2, "tampered cookie %r (issued %r for %s) still pins: %s" % (
        forged, value, pinned, names)
    for garbage in ("garbage", "", "!!!!", "AAAA", value + "A", value[:-4], value[:12]):
        ignored(garbage, 1, "garbage")
    # the real cookie still pins
    assert [upstream_of(_with_cookie(port, value, "/p2/%d" % k)) for k in range(6)] == [pinned] * 6

    # expired after `duration` seconds (whole seconds: between duration - 1 and duration + 1)
    seen = []

    def expired():
        names = [upstream_of(_with_cookie(port, value, "/exp/%d" % k)) for k in range(3)]
        seen.append((round(time.monotonic() - t_issued, 2), names))
        return len(set(names)) >= 2
    wait_until(expired, duration + 3, lambda: "cookie still pins %.1fs after it was issued with Max-Age=%d: %s"
               % (time.monotonic() - t_issued, duration, seen[-5:]), interval=0.1)
    age = time.monotonic() - t_issued
    assert age >= duration - 1.2, "cookie ignored only %.2fs after issue (Max-Age=%d): %s" % (age, duration, seen)
    r = _with_cookie(port, value, "/exp/new")
    assert sticky_cookie(r, LB_COOKIE, duration) != value


def _admin_wharfd(request, wharfd, tmp_path, groups, port, **kw):
    admin_port = free_port()
    token_file, token = write_token(tmp_path)
    cfg = config([listener("http", port, {"forward": fwd("web")})], groups,
                 admin=admin_block(admin_port, token_file), **kw)
    w = wharfd(config=cfg, port=port, wait_ports=[admin_port])
    admin = Admin(admin_port, token)
    add_diag(request, "GET /v1/target-groups at failure", lambda: json.dumps(admin.groups(), indent=1))
    return w, admin


def _move_off(port, value, gone, t_out, what):
    """Requests with the old cookie `value` until one is served by a target
    other than `gone`; only requests sent before t_out + PUBLISH_SLACK may
    still reach (or fail on) `gone`. Returns (new target, its new cookie)."""
    history = []

    def moved():
        t = time.monotonic()
        r = _with_cookie(port, value, "/move/%d" % len(history))
        name = upstream_of(r) if r.status == 200 else None
        history.append((t, r.status, name))
        return r if (r.status == 200 and name != gone) else None

    r = wait_until(moved, 3, lambda: "%s: requests with the cookie of %s never went elsewhere: %s"
                   % (what, gone, [(round(h[0] - t_out, 3), h[1], h[2]) for h in history[-10:]]), interval=0.01)
    print("\n%s: moved off %s after %d request(s), %.3fs after it was out: %s"
          % (what, gone, len(history), history[-1][0] - t_out, [(round(h[0] - t_out, 3), h[1], h[2]) for h in history]))
    late = [(round(h[0] - t_out, 3), h[1], h[2]) for h in history[:-1] if h[0] > t_out + PUBLISH_SLACK]
    assert not late, "%s: requests with the old cookie went to (or failed on) %s after it was out: %s" % (
        what, gone, late)
    return upstream_of(r), sticky_cookie(r, LB_COOKIE, 3600)


@pytest.mark.timeout(60)
def test_target_stickiness_moves_client_off_deregistered_target_with_a_new_cookie(
        request, upstream, wharfd, tmp_path):
    ups = {x: upstream(name=x) for x in ("a", "b", "c")}
    port = free_port()
    w, admin = _admin_wharfd(request, wharfd, tmp_path,
                             [_sticky_group(list(ups.values()), deregistration_delay=1)], port)
    r = get(port, "/first")
    pinned = upstream_of(r)
    value = sticky_cookie(r, LB_COOKIE, 3600)
    assert [upstream_of(_with_cookie(port, value, "/p/%d" % k)) for k in range(10)] == [pinned] * 10

    n_before = len(ups[pinned].requests())
    rr = admin.deregister(ups[pinned].addr)
    assert rr.status == 202, rr
    t_out = time.monotonic()
    new_target, new_value = _move_off(port, value, pinned, t_out, "deregistered")
    assert new_value != value, "the cookie naming the deregistered target was issued again"
    got = [upstream_of(_with_cookie(port, new_value, "/after/%d" % k)) for k in range(15)]
    assert got == [new_target] * 15, "the new cookie (for %s) does not stick: %s" % (new_target, got)
    late = [q.target for q in ups[pinned].requests()[n_before:] if not q.target.startswith("/move/")]
    assert not late, "the deregistered target %s still received %s" % (pinned, late)


HC = {"path": "/health", "interval": 0.5, "timeout": 0.4, "healthy_threshold": 2, "unhealthy_threshold": 2}


@pytest.mark.timeout(60)
def test_target_stickiness_moves_client_off_killed_unhealthy_target_with_a_new_cookie(
        request, health_server, wharfd, tmp_path):
    servers = {x: health_server(x) for x in ("a", "b", "c")}
    port = free_port()
    w, admin = _admin_wharfd(request, wharfd, tmp_path,
                             [_sticky_group(list(servers.values()), health_check=HC)], port)
    wait_until(lambda: all(admin.state(s.addr) == "healthy" for s in servers.values()), 5,
               lambda: "targets not healthy: %s" % admin.targets())
    r = get(port, "/first")
    pinned = upstream_of(r)
    value = sticky_cookie(r, LB_COOKIE, 3600)
    assert [upstream_of(_with_cookie(port, value, "/p/%d" % k)) for k in range(10)] == [pinned] * 10

    servers[pinned].kill()
    admin.wait_state(servers[pinned].addr, "unhealthy", 5)
    t_out = time.monotonic()
    new_target, new_value = _move_off(port, value, pinned, t_out, "unhealthy")
    assert new_value != value, "the cookie naming the unhealthy target was issued again"
    got = [upstream_of(_with_cookie(port, new_value, "/after/%d" % k)) for k in range(15)]
    assert got == [new_target] * 15, "the new cookie (for %s) does not stick: %s" % (new_target, got)


# --------------------------------------------------------------------------
# group-level stickiness


@pytest.mark.timeout(60)
def test_group_stickiness_pins_client_to_one_group_of_a_weighted_forward(upstream, wharfd):
    a, b = upstream(name="a"), upstream(name="b")
    p_http, p_edge = free_port(), free_port()
    weighted = fwd(("ga", 50), ("gb", 50))
    listeners = [
        listener("http", p_http, {"forward": weighted, "stickiness": 600}),
        listener("edge", p_edge,
                 {"fixed_response": {"status": 404, "content_type": "text/plain", "body": "none\n"}},
                 [rule(10, cond(path=["/r/*"]), forward=weighted, stickiness=600)]),
    ]
    wharfd(config=config(listeners, [tg("ga", [a]), tg("gb", [b])]), port=p_http, wait_ports=[p_edge])
    group_of = {"a": "ga", "b": "gb"}

    for port, name, path in ((p_http, "wharf-tg-http", "/d"), (p_edge, "wharf-tg-edge", "/r")):
        cookie_for = {}
        seen = []
        for k in range(40):
            r = get(port, "%s/new/%d" % (path, k))
            g = group_of[upstream_of(r)]
            seen.append(g)
            cookie_for.setdefault(g, sticky_cookie(r, name, 600))
            lb = [c for c in r.headers.get_all("set-cookie") if c.startswith("wharf-lb-")]
            assert not lb, "a target cookie without target stickiness: %r" % lb
        # 50/50 without a cookie: both groups (all 40 alike: p = 2^-39)
        assert set(seen) == {"ga", "gb"}, "%s: %s" % (name, seen)
        bad = []
        for k in range(30):
            want = ("ga", "gb")[k % 2]
            got = group_of[upstream_of(get(port, "%s/pinned/%d" % (path, k),
                                           headers=cookie_header(name, cookie_for[want])))]
            if got != want:
                bad.append("%s: request %d with the cookie of %s went to %s" % (name, k, want, got))
        assert not bad, "\n".join(bad)
        # a tampered cookie is ignored: both groups again, new cookies issued
        forged = tamper(cookie_for["ga"])
        seen = []
        for k in range(20):
            r = get(port, "%s/forged/%d" % (path, k), headers=cookie_header(name, forged))
            seen.append(group_of[upstream_of(r)])
            assert sticky_cookie(r, name, 600) != forged
        assert set(seen) == {"ga", "gb"}, "%s: a tampered cookie still pins: %s" % (name, seen)
    r = get(p_edge, "/elsewhere")
    assert (r.status, r.body) == (404, b"none\n"), r
