"""Passive outlier detection through wharfd, from real traffic (README,
"Targets and health checks": consecutive connect failures or 5xx responses
from a target mark it unhealthy with reason `passive` for `eject` seconds):
an upstream that really answers 503, and a target whose port really refuses
connections, are ejected after exactly N consecutive failures, get no
request while ejected, and come back when `eject` has passed. The groups
have no health_check block, so only the ejection takes a target out.
(test_health.py drives the same registry with injected counts; here the
counts come from wharfd's own requests.)"""

import time

import pytest

from harness.admin_client import Admin, write_token
from harness.http_client import RawClient
from harness.ports import free_port
from harness.reporting import add_diag
from harness.upstreams import Response
from harness.wharfd import targets_config

pytestmark = pytest.mark.timeout(60)

N = 3             # consecutive failures that eject
EJECT = 2         # seconds
# The registry sweeps the passive counters every 0.1 s: an ejection shows in
# GET /v1/target-groups within a sweep; 1 s is for a loaded 2-core machine.
EJECT_SEEN_WITHIN = 1.0
# How long a target below N failures is watched to stay healthy (3 sweeps).
STAYS_HEALTHY_FOR = 0.3
# After the API shows a target out, a request may still reach it only if its
# worker picked it before the new snapshot arrived (10 ms coalescing + a pipe).
PUBLISH_SLACK = 0.3


def _start(request, wharfd, tmp_path, targets, passive):
    port, admin_port = free_port(), free_port()
    token_file, token = write_token(tmp_path)
    cfg = targets_config(port, admin_port, token_file, targets, passive=passive, workers=2)
    w = wharfd(config=cfg, port=port, wait_ports=[admin_port])
    admin = Admin(admin_port, token)
    add_diag(request, "GET /v1/target-groups at failure", lambda: repr(admin.groups()))
    return w, admin


def _stays(admin, addr, state, seconds):
    """addr's state is `state` at every poll for `seconds` (a window in
    which the sweep runs several times)."""
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        got = admin.target(addr)
        assert got["state"] == state, "%s became %s: %s" % (addr, got["state"], got)
        time.sleep(0.02)  # poll interval of the window


def _send(port, method, path):
    """One request on a fresh connection (each may go to either worker)."""
    with RawClient(port) as c:
        return c.request(method, path, body=b"x" if method == "POST" else None)


def _eject_and_return(admin, bad, failing_request, count_failures, what):
    """Send failing_request() until the bad target has failed N times,
    checking it stays healthy below N; then it is ejected (reason passive).
    Returns the monotonic time the ejection was seen."""
    assert admin.state(bad) == "healthy", admin.targets()
    sent = 0
    while count_failures() < N:
        before = count_failures()
        failing_request(sent)
        sent += 1
        assert sent <= 4 * N, "%d requests and only %d reached %s" % (sent, count_failures(), bad)
        if count_failures() > before and count_failures() < N:
            _stays(admin, bad, "healthy", STAYS_HEALTHY_FOR)
    assert count_failures() == N, "%s failed %d times, expected exactly %d" % (what, count_failures(), N)
    t_bad = time.monotonic()
    tgt, waited = admin.wait_state(bad, "unhealthy", EJECT_SEEN_WITHIN)
    assert tgt["reason"] == "passive", tgt
    return t_bad, tgt


def test_passive_ejection_after_consecutive_real_5xx_and_return_after_eject(request, upstream, wharfd, tmp_path):
    bad = upstream(lambda req: Response(503, body=b"unavailable", headers=[("X-Upstream", "bad")]), name="bad")
    good = upstream(lambda req: Response(200, body=b"fine", headers=[("X-Upstream", "good")]), name="good")
    w, admin = _start(request, wharfd, tmp_path, [bad, good],
                      passive={"consecutive_5xx": N, "consecutive_connect_failures": 3, "eject": EJECT})
    statuses = []

    def one(i):
        r = _send(w.port, "GET", "/before/%d" % i)
        statuses.append((r.status, r.headers.get("x-upstream")))
        # a 5xx the target sent is relayed as it is
        assert (r.status, r.headers.get("x-upstream")) in ((503, "bad"), (200, "good")), r

    t_bad, tgt = _eject_and_return(admin, bad.addr, one, lambda: len(bad.requests()), "the 503 target")
    assert "%d consecutive 5xx" % N in (tgt["description"] or ""), tgt
    assert admin.state(good.addr) == "healthy", admin.targets()

    # while ejected, every request goes to the other target
    n_bad = len(bad.requests())
    t_first = time.monotonic()
    results = []
    while time.monotonic() - t_first < 1.0 or len(results) < 20:
        t0 = time.monotonic()
        r = _send(w.port, "GET", "/ejected/%d" % len(results))
        results.append((t0, r.status, r.headers.get("x-upstream")))
        time.sleep(0.01)  # pacing: a request every 10 ms over the window
    late = [x for x in results if x[0] >= t_bad + PUBLISH_SLACK]
    assert late and all(s == 200 and u == "good" for _, s, u in late), (
        "requests reached the ejected target: %s" % [x for x in late if x[2] != "good"])
    assert len(bad.requests()) - n_bad <= len(results) - len(late), bad.describe()
    assert admin.state(bad.addr) == "unhealthy", "ejected for %d s, back after %.1f s: %s" % (
        EJECT, time.monotonic() - t_bad, admin.target(bad.addr))

    # after eject seconds it is healthy again and gets requests (503 again)
    tgt, _ = admin.wait_state(bad.addr, "healthy", EJECT + 3)
    back_after = time.monotonic() - t_bad
    assert EJECT - 0.3 <= back_after <= EJECT + 2.0, "back %.2f s after the ejection, eject = %d" % (
        back_after, EJECT)
    assert tgt["reason"] is None, tgt
    n_bad = len(bad.requests())
    for i in range(10):
        if _send(w.port, "GET", "/returned/%d" % i).status == 503:
            break
    assert len(bad.requests()) > n_bad, "the target back from ejection got none of 10 requests:\n" + bad.describe()
    print("\n5xx ejection: ejected after %d 503s (requests %s), back after %.2f s (eject %d s)"
          % (N, statuses, back_after, EJECT))


def test_passive_ejection_after_consecutive_real_connect_failures_and_return_after_eject(
        request, upstream, wharfd, tmp_path, refused_target):
    """POSTs show where each attempt went: one sent to the refusing target
    is not retried (502), so the 502s count its connect failures; while it
    is ejected every POST succeeds."""
    refused = refused_target()
    good = upstream(lambda req: Response(200, body=b"fine", headers=[("X-Upstream", "good")]), name="good")
    w, admin = _start(request, wharfd, tmp_path, [refused, good],
                      passive={"consecutive_connect_failures": N, "consecutive_5xx": 0, "eject": EJECT})
    statuses = []

    def one(i):
        r = _send(w.port, "POST", "/before/%d" % i)
        assert r.status in (200, 502), r
        statuses.append(r.status)

    t_bad, tgt = _eject_and_return(admin, refused, one, lambda: statuses.count(502), "the refusing target")
    assert "%d consecutive connect failures" % N in (tgt["description"] or ""), tgt
    assert admin.state(good.addr) == "healthy", admin.targets()

    results = []
    t_first = time.monotonic()
    while time.monotonic() - t_first < 1.0 or len(results) < 20:
        t0 = time.monotonic()
        results.append((t0, _send(w.port, "POST", "/ejected/%d" % len(results)).status))
        time.sleep(0.01)  # pacing: a request every 10 ms over the window
    late = [s for t0, s in results if t0 >= t_bad + PUBLISH_SLACK]
    assert late and all(s == 200 for s in late), (
        "POSTs still went to the ejected target (502): %d of %d" % (late.count(502), len(late)))
    assert admin.state(refused) == "unhealthy", admin.target(refused)

    tgt, _ = admin.wait_state(refused, "healthy", EJECT + 3)
    back_after = time.monotonic() - t_bad
    assert EJECT - 0.3 <= back_after <= EJECT + 2.0, "back %.2f s after the ejection, eject = %d" % (
        back_after, EJECT)
    got = [_send(w.port, "POST", "/returned/%d" % i).status for i in range(10)]
    assert 502 in got, "the refusing target back from ejection got none of 10 POSTs: %s" % got
    print("\nconnect-failure ejection: ejected after %d 502s (statuses %s), back after %.2f s (eject %d s)"
          % (N, statuses, back_after, EJECT))
