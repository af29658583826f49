"""Round robin across a target group's static targets."""

import collections

import pytest

pytestmark = pytest.mark.timeout(30)


def test_proxy_round_robin_spreads_requests_evenly(upstream, wharfd):
    ups = [upstream(name=n) for n in ("alpha", "bravo", "charlie")]
    wd = wharfd(ups, workers=1)
    answered = []
    for i in range(30):
        r = wd.get("/rr/%d" % i)
        assert r.status == 200, r
        answered.append(r.json()["upstream"])
    counts = collections.Counter(answered)
    assert counts == {"alpha": 10, "bravo": 10, "charlie": 10}, "30 requests over 3 targets: %r (order %r)" % (
        dict(counts), answered)
    for u in ups:
        assert len(u.requests()) == 10, u.describe()


def test_proxy_round_robin_rotates_on_one_keepalive_client_connection(upstream, wharfd):
    ups = [upstream(name=n) for n in ("alpha", "bravo", "charlie")]
    wd = wharfd(ups, workers=1)
    with wd.client() as c:
        answered = [c.request("GET", "/rr-ka/%d" % i).json()["upstream"] for i in range(9)]
    assert collections.Counter(answered) == {"alpha": 3, "bravo": 3, "charlie": 3}, (
        "round robin must pick a target per request, not per client connection: %r" % answered)
    # strict rotation: every window of 3 consecutive requests hits all 3 targets
    for i in range(7):
        assert len(set(answered[i:i + 3])) == 3, "not a rotation: %r" % answered


def test_proxy_round_robin_with_two_groups_routes_to_default_group_only(upstream, wharfd):
    web = [upstream(name="web-a"), upstream(name="web-b")]
    other = upstream(name="other")
    wd = wharfd(groups={"web": web, "other": [other]}, workers=1)
    got = collections.Counter(wd.get("/g/%d" % i).json()["upstream"] for i in range(6))
    assert got == {"web-a": 3, "web-b": 3}, got
    assert other.requests() == []
