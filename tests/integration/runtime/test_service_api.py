"""The controller's read-only admin views on a real fleet: GET /v1/services,
/v1/services/{name}, /v1/services/{name}/tasks, /v1/services/{name}/events,
/v1/hosts and the metrics wharf_hosts{state} and wharf_service_tasks, with
the field names and types of ../shared/API.md.

wharfd runs a service of 3 wharf-demo:v1 tasks on 2 of the `fleet`
fixture's engines (conftest.py: real dockerd in network namespaces, mutual
TLS), behind target group "web" with health checks. The test polls (a
deadline, never a fixed sleep) until running = healthy = 3 and the
deployment is COMPLETED, then checks every view against the engines
themselves (docker info, the published ports) and against GET
/v1/target-groups.

Each test gets its own `cluster` name, so the containers it makes are never
another test's: wharfd leaves its containers running when it exits (a
restart adopts them), so the `service_cluster` fixture removes them after
wharfd has stopped. Figures are printed with a "FIGURE" prefix (pytest -s).
"""

import json
import os
import re
import time
import urllib.request
from datetime import datetime, timezone

import pytest

from harness.admin_client import Admin, write_token
from harness.polling import wait_until
from harness.ports import free_port
from harness.prometheus import metric_value, parse_prometheus
from harness.wharfd import HC_FAST, targets_config

SERVICE = "web"
HOSTS = ("h1", "h2")
TASKS = 3
CPU = 256  # units per task
MEMORY = 64  # MiB per task
MiB = 1024 * 1024
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def figure(name, value):
    print("FIGURE %s: %s" % (name, json.dumps(value)))


def parse_time(text):
    assert isinstance(text, str) and RFC3339.match(text), "not an RFC 3339 UTC time: %r" % (text,)
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if "." in text else "%Y-%m-%dT%H:%M:%SZ"
    return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc).timestamp()


def cluster_containers(fleet, cluster):
    """{host id: [container ids]} of the containers labelled with cluster."""
    out = {}
    for hid in HOSTS:
        p = fleet.docker(hid, "ps", "-aq", "--filter", "label=wharf.cluster=" + cluster, check=False)
        out[hid] = p.stdout.split()
    return out


@pytest.fixture
def service_cluster(fleet):
    """A cluster name of this test; its containers are removed at teardown
    (after wharfd's: request this fixture before `wharfd`)."""
    cluster = "svcapi-%d-%d" % (os.getpid(), int(time.monotonic() * 1000) % 100000)
    yield cluster
    left = cluster_containers(fleet, cluster)
    for hid, ids in left.items():
        if ids:
            fleet.docker(hid, "rm", "-f", *ids, check=False)
    assert not any(cluster_containers(fleet, cluster).values()), "containers of %s left" % cluster


def engine_resources(fleet, hid):
    info = json.loads(fleet.docker(hid, "info", "--format", "{{json .}}").stdout)
    return info["NCPU"] * 1024, info["MemTotal"] // MiB


def fleet_config(fleet, cluster, port, admin_port, token_file):
    cfg = targets_config(port, admin_port, token_file, [], health_check=HC_FAST,
                         deregistration_delay=1)
    cfg["cluster"] = cluster
    cfg["hosts"] = [{"id": hid, "docker": fleet.host(hid).docker,
                     "tls": {"ca": fleet.tls["ca"], "cert": fleet.tls["cert"], "key": fleet.tls["key"]},
                     "attributes": {"az": fleet.host(hid).az}} for hid in HOSTS]
    cfg["services"] = [{"name": SERVICE, "target_group": "web", "desired_count": TASKS,
                        "task": {"image": "wharf-demo:v1", "container_port": 8080,
                                 "cpu": CPU, "memory": MEMORY, "stop_timeout": 2},
                        "placement": {"strategy": [{"type": "spread", "field": "instanceId"}]},
                        "health_check_grace_period": 10}]
    return cfg


def get(admin, path, status=200):
    r = admin.request("GET", path)
    assert r.status == status, "GET %s: %s" % (path, r)
    return r.json()


def assert_error(admin, path, status, code):
    body = get(admin, path, status)
    assert body["error"]["code"] == code and body["error"]["message"], body


def types_of(obj, spec, where):
    """Every key of spec is in obj with a value of spec's type(s)."""
    for key, types in spec.items():
        assert key in obj, "%s: no %r in %s" % (where, key, obj)
        ok = isinstance(obj[key], types) and not isinstance(obj[key], bool)  # JSON true is no number
        assert ok, "%s: %r is %r, not %s" % (where, key, obj[key], types)


NUM = (int, float)
SERVICE_FIELDS = {"name": str, "target_group": str, "revision": int, "task": dict,
                  "desired_count": int, "running_count": int, "pending_count": int,
                  "healthy_count": int, "deployment": dict, "placement": dict,
                  "health_check_grace_period": NUM, "deployments": list}
TASK_DEF_FIELDS = {"image": str, "container_port": int, "cpu": int, "memory": int}
DEPLOYMENT_FIELDS = {"id": str, "status": str, "rollout_state": str, "rollout_state_reason": str,
                     "revision": int, "desired_count": int, "pending_count": int,
                     "running_count": int, "healthy_count": int, "failed_tasks": int,
                     "created_at": str, "updated_at": str}
TASK_FIELDS = {"id": str, "host": str, "revision": int, "state": str, "host_port": int,
               "target": str, "health": str, "started_at": str,
               "stopped_reason": (str, type(None))}
HOST_FIELDS = {"id": str, "state": str, "source": str, "address": str, "attributes": dict,
               "cpu": dict, "memory": dict, "running_tasks": int}
EVENT_FIELDS = {"id": str, "created_at": str, "message": str}


@pytest.mark.timeout(150)
def test_service_of_3_on_2_hosts_views_and_metrics(service_cluster, fleet, wharfd, tmp_path):
    t0 = time.monotonic()
    port, admin_port = free_port(), free_port()
    token_file, token = write_token(tmp_path)
    w = wharfd(config=fleet_config(fleet, service_cluster, port, admin_port, token_file),
               port=port, wait_ports=[admin_port])
    admin = Admin(admin_port, token)

    # ---- until the service is steady: 3 running, 3 healthy, COMPLETED
    def steady():
        s = get(admin, "/v1/services/" + SERVICE)
        done = (s["running_count"] == s["healthy_count"] == TASKS
                and s["deployments"][0]["rollout_state"] == "COMPLETED")
        return s if done else None

    svc = wait_until(steady, 90, lambda: "service %s never steady at %d: %s" % (
        SERVICE, TASKS, get(admin, "/v1/services/" + SERVICE)), interval=0.25)
    figure("seconds_until_steady", round(time.monotonic() - t0, 2))

    # ---- the service, as one object and in the list
    types_of(svc, dict(SERVICE_FIELDS, events=list), "service")
    assert svc["name"] == SERVICE and svc["target_group"] == "web" and svc["revision"] >= 1
    assert svc["desired_count"] == TASKS and svc["pending_count"] == 0
    types_of(svc["task"], TASK_DEF_FIELDS, "service.task")
    assert svc["task"]["image"] == "wharf-demo:v1" and svc["task"]["container_port"] == 8080
    assert (svc["task"]["cpu"], svc["task"]["memory"]) == (CPU, MEMORY)
    types_of(svc["deployment"], {"minimum_healthy_percent": int, "maximum_percent": int}, "deployment")
    assert svc["placement"]["strategy"] == [{"type": "spread", "field": "instanceId"}], svc["placement"]
    assert svc["health_check_grace_period"] == 10
    assert len(svc["deployments"]) == 1
    dep = svc["deployments"][0]
    types_of(dep, DEPLOYMENT_FIELDS, "deployment")
    assert dep["status"] == "PRIMARY" and dep["revision"] == svc["revision"], dep
    assert (dep["desired_count"], dep["running_count"], dep["healthy_count"], dep["pending_count"]) \
        == (TASKS, TASKS, TASKS, 0), dep
    assert parse_time(dep["created_at"]) <= parse_time(dep["updated_at"]) <= time.time() + 1, dep

    listed = get(admin, "/v1/services")
    assert isinstance(listed, list) and [s["name"] for s in listed] == [SERVICE], listed
    assert "events" not in listed[0], "the list leaves events out: %s" % listed[0]
    types_of(listed[0], SERVICE_FIELDS, "listed service")

    # ---- the tasks: 3 RUNNING, healthy, each target also in the target group
    tasks = get(admin, "/v1/services/%s/tasks" % SERVICE)
    assert isinstance(tasks, list) and len(tasks) == TASKS, tasks
    group = {t["address"]: t for t in admin.group("web")["targets"]}
    for t in tasks:
        types_of(t, TASK_FIELDS, "task")
        assert t["host"] in HOSTS and t["state"] == "RUNNING" and t["health"] == "healthy", t
        assert t["stopped_reason"] is None and t["revision"] == svc["revision"], t
        assert t["target"] == "%s:%d" % (fleet.host(t["host"]).addr, t["host_port"]), t
        assert t["target"] in group, "task target %s not in the group: %s" % (t["target"], group)
        assert group[t["target"]]["source"] == "service:" + SERVICE, group[t["target"]]
        assert group[t["target"]]["state"] == "healthy", group[t["target"]]
        assert time.time() - 120 < parse_time(t["started_at"]) <= time.time() + 1, t
        with urllib.request.urlopen("http://%s/health" % t["target"], timeout=5) as r:
            assert r.status == 200
    assert len({t["id"] for t in tasks}) == TASKS
    assert {a for a, g in group.items() if g["source"] == "service:" + SERVICE} \
        == {t["target"] for t in tasks}, group
    per_host = {hid: [t for t in tasks if t["host"] == hid] for hid in HOSTS}
    assert sorted(len(v) for v in per_host.values()) == [1, 2], "spread 2/1: %s" % per_host
    # and the service is served through the proxy
    assert w.get("/health").status == 200

    # ---- the hosts: 2 ACTIVE, resources from the engines, reservations from the tasks
    hosts = get(admin, "/v1/hosts")
    assert isinstance(hosts, list) and [h["id"] for h in hosts] == list(HOSTS), hosts
    for h in hosts:
        types_of(h, HOST_FIELDS, "host")
        cpu_total, mem_total = engine_resources(fleet, h["id"])
        mine = per_host[h["id"]]
        assert h["state"] == "ACTIVE" and h["source"] == "config", h
        assert h["address"] == fleet.host(h["id"]).addr, h
        assert h["attributes"] == {"az": fleet.host(h["id"]).az}, h
        assert h["cpu"]["total"] == cpu_total > 0, h
        assert h["cpu"]["reserved"] == CPU * len(mine), h
        assert h["memory"]["total"] == mem_total > 0, h
        assert h["memory"]["reserved"] == MEMORY * len(mine), h
        assert h["running_tasks"] == len(mine), h
    assert get(admin, "/v1/hosts/h1")["id"] == "h1"

    # ---- the events, newest first
    events = get(admin, "/v1/services/%s/events" % SERVICE)
    assert isinstance(events, list) and events, events
    for e in events:
        types_of(e, EVENT_FIELDS, "event")
    times = [parse_time(e["created_at"]) for e in events]
    assert times == sorted(times, reverse=True), "not newest first: %s" % events
    messages = [e["message"] for e in events]
    started = [i for i, m in enumerate(messages)
               if m.startswith("(service %s) has started %d tasks:" % (SERVICE, TASKS))]
    steady_at = [i for i, m in enumerate(messages)
                 if m == "(service %s) has reached a steady state." % SERVICE]
    assert started and steady_at, messages
    assert steady_at[0] < started[-1], "steady state must come after (above) the start: %s" % messages
    for t in tasks:
        assert "(task %s)" % t["id"] in messages[started[-1]], (t["id"], messages[started[-1]])
    # the detail's events: the same, plus any newer ones on top
    detail_ids = [e["id"] for e in get(admin, "/v1/services/" + SERVICE)["events"]]
    assert detail_ids[len(detail_ids) - len(events):] == [e["id"] for e in events], detail_ids

    # ---- errors
    assert_error(admin, "/v1/services/nope", 404, "ServiceNotFound")
    assert_error(admin, "/v1/services/nope/tasks", 404, "ServiceNotFound")
    assert_error(admin, "/v1/services/nope/events", 404, "ServiceNotFound")
    assert_error(admin, "/v1/services/%s/nothing" % SERVICE, 404, "NotFound")
    assert_error(admin, "/v1/hosts/nope", 404, "HostNotFound")
    assert_error(admin, "/v1/services/%s/events?follow=1" % SERVICE, 400, "InvalidParameter")
    r = admin.request("DELETE", "/v1/services/" + SERVICE)
    assert r.status == 405 and r.json()["error"]["code"] == "MethodNotAllowed", r

    # ---- metrics
    text = admin.metrics_text()
    samples, types = parse_prometheus(text)
    assert types.get("wharf_hosts") == "gauge" and types.get("wharf_service_tasks") == "gauge"
    assert metric_value(samples, "wharf_hosts", state="ACTIVE") == 2, text
    for state in ("UNREACHABLE", "DRAINING", "REGISTERING"):
        assert metric_value(samples, "wharf_hosts", state=state) == 0, text
    for state in ("desired", "running", "healthy"):
        assert metric_value(samples, "wharf_service_tasks", service=SERVICE, state=state) == TASKS, text
    assert metric_value(samples, "wharf_service_tasks", service=SERVICE, state="pending") == 0, text

    # the containers are the engines' own: 3 of this cluster, running
    running = {hid: fleet.docker(hid, "ps", "-q", "--filter", "label=wharf.cluster=" + service_cluster)
               .stdout.split() for hid in HOSTS}
    assert sum(len(v) for v in running.values()) == TASKS, running
    figure("example_service", dict(svc, events=svc["events"][:2]))
    figure("example_task", tasks[0])
    figure("example_host", hosts[0])
    figure("test_seconds", round(time.monotonic() - t0, 2))


@pytest.mark.timeout(30)
def test_without_hosts_or_services_lists_are_empty(wharfd, tmp_path):
    port, admin_port = free_port(), free_port()
    token_file, token = write_token(tmp_path)
    wharfd(config=targets_config(port, admin_port, token_file, []), port=port,
           wait_ports=[admin_port])
    admin = Admin(admin_port, token)
    assert get(admin, "/v1/services") == []
    assert get(admin, "/v1/hosts") == []
    assert_error(admin, "/v1/services/web", 404, "ServiceNotFound")
    samples, _ = parse_prometheus(admin.metrics_text())
    assert metric_value(samples, "wharf_hosts", state="ACTIVE") == 0
    assert "wharf_service_tasks" not in samples
