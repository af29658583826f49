"""The service controller end to end: wharfd keeps a service of the file at
its desired count on real Docker engines (the test fleet: 3 hosts in 2 AZs,
h1 and h3 in az-1, h2 alone in az-2), registers each task as
host-address:published-port in the service's target group, and serves it
through the proxy.

What each test proves, against real engines and a real wharfd:
  - a service of 6 spreads 3/3 across the AZs and all 6 tasks answer
    through the proxy;
  - `docker kill` of a task: replaced, the proxy keeps answering under
    continuous load (at most 1% failed, and only requests in flight on the
    killed task);
  - `POST /fail` on a task: replaced once health_check_grace_period has
    passed, not before, the new task started before the old one is stopped;
  - `kill -9` of wharfd and a restart: the same 6 containers, no container
    started or stopped (the engines' event logs are empty);
  - a frozen engine: its tasks replaced on the other hosts after
    lost_task_grace; after the thaw the count is 6 again (surplus stopped);
  - a host set draining in the file and applied by SIGHUP empties while the
    service's healthy count never drops below its minimum.

State is read from the engines (docker ps / inspect / events through
fleet.docker) and from GET /v1/target-groups on the admin listener. Each
test runs its own cluster (label wharf.cluster), so what one leaves can
never be adopted by the next; containers are swept before and after each
test (wharfd leaves its tasks running when it exits, by design). Every wait
is a poll with a deadline. Figures are printed with a "FIGURE" prefix
(pytest -s) and recorded as junit properties.
"""

import collections
import json
import os
import signal
import time

import pytest

from harness.admin_client import Admin, write_token
from harness.fleet import start_fleet
from harness.http_client import RawClient
from harness.polling import wait_until
from harness.ports import free_port
from harness.reporting import add_diag
from harness.services import (TaskLoad, cluster_containers, fleet_events, read_access_log, running,
                              service_config, service_targets, sweep_clusters)
from harness.wharfd import render_config, write_config_atomically

DESIRED = 6


@pytest.fixture(scope="module")
def fleet2(demo_app, _fleet_tmp, _term_as_interrupt):
    """3 engines in 2 AZs (fleet.sh up 3 --azs 2): h1 az-1, h2 az-2, h3 az-1."""
    if os.geteuid() != 0:
        pytest.skip("the fleet needs root (network namespaces, dockerd)")
    f = None
    try:
        f = start_fleet(lambda d: ("up", 3, d, "--azs", "2"), demo_app, _fleet_tmp)
        assert [(h.id, h.az) for h in f.hosts] == [("h1", "az-1"), ("h2", "az-2"), ("h3", "az-1")]
        yield f
    finally:
        if f is not None:
            f.down()


def figure(record_property, name, value):
    print("FIGURE %s: %s" % (name, json.dumps(value)))
    record_property(name, value)


class Env:
    """One test's cluster on the fleet: ports, admin client, config, and
    what the engines and the target group say."""

    def __init__(self, fleet, tmp_path, cluster):
        self.fleet = fleet
        self.cluster = cluster
        self.port = free_port()
        self.admin_port = free_port()
        self.token_file, token = write_token(tmp_path)
        self.admin = Admin(self.admin_port, token)
        self.access_log = tmp_path / "access.log"
        self.t0 = time.monotonic()

    def config(self, **kw):
        return service_config(self.fleet, self.port, self.admin_port, self.token_file, self.cluster, **kw)

    def start(self, wharfd, cfg, **kw):
        return wharfd(config=render_config(cfg), port=self.port, wait_ports=[self.admin_port], **kw)

    def tasks(self, hosts=None):
        return cluster_containers(self.fleet, self.cluster, hosts)

    def targets(self):
        return service_targets(self.admin)

    def wait_steady(self, n, timeout, hosts=None, avoid=()):
        """Poll until service web has exactly n targets, all healthy, none
        at an address in avoid, and the engines of hosts (default all) run
        exactly n containers of the cluster at those addresses. Returns
        ([Task] running, seconds waited)."""
        t0 = time.monotonic()
        last = {}

        def steady():
            tg = self.targets()
            last["targets"] = {a: t["state"] for a, t in tg.items()}
            if (len(tg) != n or any(t["state"] != "healthy" for t in tg.values())
                    or set(tg) & set(avoid)):
                return None
            run = running(self.tasks(hosts))
            last["running"] = [(t.host, t.task, t.addr) for t in run]
            if len(run) != n or {t.addr for t in run} != set(tg):
                return None
            return run

        run = wait_until(steady, timeout, lambda: "service web not steady at %d tasks within %.0f s; "
                         "last seen: %s" % (n, timeout, last), interval=0.05)
        return run, time.monotonic() - t0

    def describe(self):
        lines = []
        for h in self.fleet.hosts:
            p = self.fleet.docker(h.id, "ps", "-a", "--filter", "label=wharf.cluster=%s" % self.cluster,
                                  "--format", "{{.ID}} {{.Status}} {{.Ports}} task={{.Label \"wharf.task\"}}",
                                  check=False, timeout=10)
            lines.append("%s (%s, %s):\n%s%s" % (h.id, h.az, h.addr, p.stdout, p.stderr))
        try:
            lines.append("targets: %s" % {a: t["state"] for a, t in self.targets().items()})
        except Exception as e:  # wharfd may be gone
            lines.append("targets: (%r)" % e)
        return "\n".join(lines)


@pytest.fixture
def env(request, fleet2, tmp_path):
    """Listed before `wharfd` in a test's arguments, so that its teardown (the
    sweep) runs after wharfd has stopped."""
    cluster = "e2e-" + request.node.name.replace("test_", "", 1)[:40]
    sweep_clusters(fleet2)
    e = Env(fleet2, tmp_path, cluster)
    add_diag(request, "engines and targets", e.describe)
    yield e
    sweep_clusters(fleet2)


def answers(env, connections=3, per_connection=30):
    """Counter {task: responses} of GET / through wharfd on a few keep-alive
    connections (each worker round-robins over the healthy targets)."""
    answered = collections.Counter()
    for _ in range(connections):
        with RawClient(env.port, timeout=5) as cl:
            for _ in range(per_connection):
                r = cl.request("GET", "/")
                assert r.status == 200, r
                answered[r.json()["task"]] += 1
    return answered


def az_counts(fleet, tasks):
    return dict(collections.Counter(fleet.host(t.host).az for t in tasks))


def host_counts(tasks):
    return dict(sorted(collections.Counter(t.host for t in tasks).items()))


# --------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_service_of_six_spreads_three_and_three_over_two_azs_and_all_six_answer_through_the_proxy(
        env, wharfd, record_property):
    t0 = time.monotonic()
    env.start(wharfd, env.config(desired=DESIRED))
    tasks, up = env.wait_steady(DESIRED, 60)
    figure(record_property, "spread: 6 tasks healthy after (s)", round(up, 2))
    assert az_counts(env.fleet, tasks) == {"az-1": 3, "az-2": 3}, host_counts(tasks)
    # within az-1 the second strategy (spread by instanceId) splits 2/1
    assert sorted([host_counts(tasks).get("h1", 0), host_counts(tasks).get("h3", 0)]) == [1, 2], host_counts(tasks)
    assert len({t.task for t in tasks}) == DESIRED and all(t.task for t in tasks)
    targets = env.targets()
    assert set(targets) == {t.addr for t in tasks}
    assert all(t["source"] == "service:web" for t in targets.values())

    # served through the proxy: every task answers, and only tasks of ours
    answered = answers(env)
    assert set(answered) == {t.task for t in tasks}, (answered, [t.task for t in tasks])
    figure(record_property, "spread: responses per task", dict(answered))
    figure(record_property, "spread: per host", host_counts(tasks))
    figure(record_property, "spread: test duration (s)", round(time.monotonic() - t0, 2))


@pytest.mark.timeout(180)
def test_docker_kill_of_a_task_replaced_while_the_proxy_keeps_answering(env, wharfd, record_property):
    t0 = time.monotonic()
    env.start(wharfd, env.config(desired=DESIRED, access_log=env.access_log))
    tasks, _ = env.wait_steady(DESIRED, 60)
    load = TaskLoad(env.port, threads=4, prefix="kill").start()
    try:
        wait_until(lambda: len(load.tasks_since(0)) == DESIRED and load.count() >= 300, 30,
                   lambda: "load did not reach all 6 tasks: %s" % load.tasks_since(0))
        victim = next(t for t in tasks if t.host == "h1")
        k0 = time.time()
        env.fleet.docker(victim.host, "kill", victim.id)
        k1 = time.time()
        new, replaced_after = env.wait_steady(DESIRED, 30, avoid=[victim.addr])
        replaced_at = time.time()
        repl = [t for t in new if t.id not in {x.id for x in tasks}]
        assert len(repl) == 1, (repl, new)
        repl = repl[0]
        # the replacement serves under the same load
        wait_until(lambda: load.tasks_since(k1).get(repl.task, 0) >= 20, 20,
                   lambda: "replacement %s got no traffic: %s" % (repl.task, load.tasks_since(k1)))
    finally:
        load.stop()
    # the killed container is removed (its task stopped by itself: nothing to drain)
    wait_until(lambda: victim.id not in {t.id for t in env.tasks([victim.host])}, 15,
               "the killed container %s is still on %s" % (victim.id[:12], victim.host))

    total = len(load.ok) + len(load.failed)
    log = {}

    def logged():
        log.update(read_access_log(env.access_log))
        return all(f[2] in log for f in load.failed)
    wait_until(logged, 5, lambda: "failed requests missing from the access log: %s"
               % [f for f in load.failed if f[2] not in log], interval=0.05)
    # only requests in flight on the killed task may fail: sent to its
    # address, and begun before the kill had reached wharfd (within 1 s of
    # the kill) and not finished before it
    stray = [(f, log.get(f[2])) for f in load.failed
             if log[f[2]].get("target") != victim.addr or not (f[0] <= k1 + 1.0 and f[1] >= k0)]
    figure(record_property, "kill: requests in total", total)
    figure(record_property, "kill: requests failed", len(load.failed))
    figure(record_property, "kill: failures", [(f[3], log[f[2]].get("error"), log[f[2]].get("target"))
                                               for f in load.failed][:10])
    figure(record_property, "kill: replacement healthy and serving after (s)",
           round(replaced_at - k0, 2))
    figure(record_property, "kill: replacement container created after the kill (s)",
           round(repl.created - k0, 3))
    assert not stray, "requests that failed but were not in flight on the killed task %s: %s" % (
        victim.addr, stray[:10])
    assert len(load.failed) <= total * 0.01, (len(load.failed), total)
    assert total >= 1000, "too little load to judge (%d requests)" % total
    figure(record_property, "kill: test duration (s)", round(time.monotonic() - t0, 2))


GRACE = 8.0


@pytest.mark.timeout(180)
def test_failing_health_check_task_replaced_after_the_grace_period(env, wharfd, record_property):
    t0 = time.monotonic()
    env.start(wharfd, env.config(desired=DESIRED, grace=GRACE))
    tasks, _ = env.wait_steady(DESIRED, 60)
    victim = max(tasks, key=lambda t: t.started)
    grace_ends = victim.started + GRACE  # wharfd counts from its inspect, a little later
    assert time.time() < grace_ends - 3, "tasks took too long to become healthy to test the grace period"
    with RawClient(victim.port, timeout=5, host=env.fleet.host(victim.host).addr) as c:
        r = c.request("POST", "/fail", body=b"")
    assert r.status == 200, r
    t_fail = time.time()
    _, took = env.admin.wait_state(victim.addr, "unhealthy", 5)
    t_unhealthy = time.time()
    figure(record_property, "fail: target unhealthy after POST /fail (s)", round(took, 2))
    assert t_unhealthy < grace_ends - 1, "the target went unhealthy too late to test the grace period"
    # kept until the grace period ends, then replaced
    new, _ = env.wait_steady(DESIRED, GRACE + 30, avoid=[victim.addr])
    repl = [t for t in new if t.id not in {x.id for x in tasks}]
    assert len(repl) == 1, (repl, new)
    repl = repl[0]
    wait_until(lambda: victim.id not in {t.id for t in env.tasks([victim.host])}, 20,
               "the failed task's container %s is still on %s" % (victim.id[:12], victim.host))
    evs = fleet_events(env.fleet, env.cluster, t_fail, time.time())  # the victim had started before
    figure(record_property, "fail: replacement created after the task started (s)",
           round(repl.created - victim.started, 2))
    figure(record_property, "fail: grace period (s)", GRACE)
    assert repl.created >= grace_ends - 0.05, (
        "replacement created %.2f s before the grace period ended" % (grace_ends - repl.created))
    assert repl.created <= grace_ends + 3, (
        "replacement created %.2f s after the grace period ended" % (repl.created - grace_ends))
    # start the new task first (maximum_percent 200), then stop the old one:
    # SIGTERM (docker stop), and it exits by itself (the demo app drains)
    started = [e["time"] for e in evs if e["action"] == "start" and e["id"] == repl.id]
    old = [e for e in evs if e["id"] == victim.id]
    assert started and old, evs
    assert started[0] < old[0]["time"], ("the failed task was stopped before its replacement started", evs)
    assert [(e["action"], e["signal"]) for e in old[:2]] == [("kill", "15"), ("die", None)], old
    assert "destroy" in [e["action"] for e in old], old
    figure(record_property, "fail: test duration (s)", round(time.monotonic() - t0, 2))


@pytest.mark.timeout(180)
def test_kill_9_of_wharfd_and_restart_adopts_the_same_six_containers(env, wharfd, record_property):
    t0 = time.monotonic()
    cfg = env.config(desired=DESIRED)
    w1 = env.start(wharfd, cfg, exit_expected=-signal.SIGKILL)
    tasks, _ = env.wait_steady(DESIRED, 60)
    targets = env.targets()
    t_kill = time.time()
    os.kill(w1.proc.pid, signal.SIGKILL)
    w1.proc.wait(timeout=5)
    w2 = env.start(wharfd, cfg)
    restarted = time.monotonic()
    wait_until(lambda: "has reached a steady state." in w2.stderr_text(), 30,
               lambda: "the restarted wharfd never reached a steady state:\n%s" % w2.stderr_text(6000))
    again, _ = env.wait_steady(DESIRED, 30)
    figure(record_property, "restart: steady after the restart (s)", round(time.monotonic() - restarted, 2))
    assert sorted(t.id for t in again) == sorted(t.id for t in tasks)
    assert set(env.targets()) == set(targets)
    assert set(answers(env)) == {t.task for t in tasks}
    # nothing happens afterwards either: observed over 3 reconcile intervals
    until = time.monotonic() + 3
    while time.monotonic() < until:
        now = sorted(t.id for t in running(env.tasks()))
        assert now == sorted(t.id for t in tasks), (now, [t.id for t in tasks])
        time.sleep(0.2)  # poll interval of the observation window
    evs = fleet_events(env.fleet, env.cluster, t_kill, time.time())
    assert evs == [], "the engines saw containers of the cluster change after the restart: %s" % evs
    err = w2.stderr_text()
    assert "has started" not in err and "has stopped" not in err, err[-4000:]
    figure(record_property, "restart: containers adopted", len(again))
    figure(record_property, "restart: test duration (s)", round(time.monotonic() - t0, 2))


LOST_GRACE = 3


@pytest.mark.timeout(240)
def test_frozen_engine_tasks_replaced_on_the_others_and_surplus_stopped_after_thaw(env, wharfd,
                                                                                  record_property):
    t0 = time.monotonic()
    env.start(wharfd, env.config(desired=DESIRED, lost_task_grace=LOST_GRACE, ping_interval=0.5,
                                 unreachable_after=2))
    tasks, _ = env.wait_steady(DESIRED, 60)
    frozen = "h2"
    others = ["h1", "h3"]
    on_frozen = [t for t in tasks if t.host == frozen]
    assert len(on_frozen) == 3, host_counts(tasks)
    load = TaskLoad(env.port, threads=2, prefix="freeze", pace=0.002).start()
    try:
        tf = time.time()
        env.fleet.freeze(frozen)
        new, took = env.wait_steady(DESIRED, 60, hosts=others, avoid=[t.addr for t in on_frozen])
        figure(record_property, "freeze: replaced on the others, as the test saw it (s)",
               round(time.time() - tf, 2))
        repl = [t for t in new if t.id not in {x.id for x in tasks}]
        assert len(repl) == 3 and {t.host for t in repl} <= set(others), repl
        first = min(t.created for t in repl)
        figure(record_property, "freeze: replacements created / all started after the freeze (s)",
               [round(first - tf, 2), round(max(t.started for t in repl) - tf, 2)])
        # not before the host was unreachable for lost_task_grace
        assert first >= tf + LOST_GRACE, first - tf
    finally:
        tt = time.time()
        env.fleet.thaw(frozen)
    try:
        final, _ = env.wait_steady(DESIRED, 60)
        figure(record_property, "freeze: steady at 6 after the thaw (s)", round(time.time() - tt, 2))
        # the returning host's tasks were the surplus: drained (already) and stopped
        wait_until(lambda: not env.tasks([frozen]), 30,
                   lambda: "the thawed host still holds %s" % env.tasks([frozen]))
        assert {t.id for t in final} == {t.id for t in new}
        assert len(running(env.tasks())) == DESIRED
    finally:
        load.stop()
    total = len(load.ok) + len(load.failed)
    figure(record_property, "freeze: requests in total", total)
    figure(record_property, "freeze: requests failed", len(load.failed))
    figure(record_property, "freeze: failures", [f[3] for f in load.failed][:10])
    figure(record_property, "freeze: per host after the thaw", host_counts(final))
    assert len(load.failed) <= total * 0.01, (len(load.failed), total, load.failed[:5])
    figure(record_property, "freeze: test duration (s)", round(time.monotonic() - t0, 2))


@pytest.mark.timeout(180)
def test_draining_host_empties_without_the_service_dropping_below_its_minimum(env, wharfd,
                                                                             record_property):
    t0 = time.monotonic()
    cfg = env.config(desired=DESIRED, min_healthy=100, max_percent=200)
    w = env.start(wharfd, cfg)
    tasks, _ = env.wait_steady(DESIRED, 60)
    drained = "h2"
    on_drained = [t for t in tasks if t.host == drained]
    assert len(on_drained) == 3, host_counts(tasks)
    minimum = DESIRED  # ceil(6 x 100%)
    write_config_atomically(w, render_config(env.config(desired=DESIRED, min_healthy=100, max_percent=200,
                                                        draining={drained})))
    samples = []
    td = time.time()
    os.kill(w.proc.pid, signal.SIGHUP)
    addrs = {t.addr for t in on_drained}

    def drained_done():
        tg = env.targets()
        healthy = [a for a, t in tg.items() if t["state"] == "healthy"]
        samples.append((round(time.time() - td, 3), len(healthy), len(set(tg) & addrs)))
        return len(healthy) == DESIRED and not set(tg) & addrs
    wait_until(drained_done, 60, lambda: "h2 never drained; last samples %s" % samples[-5:], interval=0.002)
    emptied, _ = env.wait_steady(DESIRED, 30)
    wait_until(lambda: not env.tasks([drained]), 30, lambda: "h2 still holds %s" % env.tasks([drained]))
    figure(record_property, "drain: h2 empty after (s)", round(time.time() - td, 2))
    assert {t.host for t in emptied} == {"h1", "h3"}, host_counts(emptied)
    healthy_seen = [s[1] for s in samples]
    figure(record_property, "drain: samples of GET /v1/target-groups", len(samples))
    figure(record_property, "drain: healthy count min/max while draining", [min(healthy_seen), max(healthy_seen)])
    changes = [s for i, s in enumerate(samples) if i == 0 or s[1:] != samples[i - 1][1:]]
    figure(record_property, "drain: (s, healthy, h2 targets) at each change", changes)
    assert min(healthy_seen) >= minimum, changes
    assert len(samples) >= 10, samples
    # each h2 task was stopped with SIGTERM after its target drained, never killed outright
    evs = fleet_events(env.fleet, env.cluster, td, time.time(), hosts=[drained])
    for t in on_drained:
        acts = [(e["action"], e["signal"]) for e in evs if e["id"] == t.id]
        assert acts[:2] == [("kill", "15"), ("die", None)] and ("destroy", None) in acts, (t.task, acts)
    figure(record_property, "drain: test duration (s)", round(time.monotonic() - t0, 2))
