"""wharfd's controller on the test fleet (harness/fleet.py): the config of a
service on fleet hosts, what runs on the engines, what the engines did, and
client load that records which task answered each request.

  service_config(...)       a config dict: listener, admin, target group
                            "web" with fast health checks, the fleet's hosts
                            (ping, draining) and one service "web"
  host_entries(fleet, ...)  the `hosts` list for wharfd from fleet.json
  cluster_containers(...)   the containers of one wharf cluster on some
                            hosts (docker inspect), as Task records
  docker_events(...)        what an engine did to a cluster's containers in
                            a time window; fleet_events(...) of several
  sweep_clusters(fleet)     remove every container a wharf cluster left
  service_targets(admin)    the targets a service registered in a group
  TaskLoad                  keep-alive GETs of / through wharfd in threads;
                            every request has its own X-Request-Id, and the
                            task that answered (demo app's JSON) is kept

Every wait is a poll with a deadline. The engines are reached with
/usr/bin/docker through Fleet.docker (mutual TLS); a frozen engine never
answers, so callers name the hosts they ask."""

import datetime
import json
import threading
import time
from dataclasses import dataclass

from .http_client import RawClient
from .loopback_server import LOOPBACK

# Fast health checks: a new target is healthy after one pass, an unhealthy
# one is seen within 2 x 0.5 s.
HC_SERVICE = {"path": "/health", "interval": 0.5, "timeout": 0.4, "healthy_threshold": 2,
              "unhealthy_threshold": 2}


def host_entries(fleet, draining=(), ping_interval=0.5, unreachable_after=2, call_timeout=5):
    """wharfd's `hosts` list for every fleet host (the same hosts, TLS files,
    addresses and az attributes as the fleet's hosts.conf), with the probe
    settings given; hosts whose id is in draining get draining = true."""
    out = []
    for h in fleet.hosts:
        e = {"id": h.id, "docker": h.docker}
        if h.tls:
            e["tls"] = {"ca": fleet.tls["ca"], "cert": fleet.tls["cert"], "key": fleet.tls["key"]}
        e["address"] = h.addr
        e["ping_interval"] = ping_interval
        e["unreachable_after"] = unreachable_after
        e["call_timeout"] = call_timeout
        if h.id in draining:
            e["draining"] = True
        # as fleet.sh writes them in hosts.conf
        e["attributes"] = {"az": h.az, "instance_id": "i-wh%s%s" % (fleet.run_id, h.id),
                           "instance_type": "fleet.small"}
        out.append(e)
    return out


def service_config(fleet, port, admin_port, token_file, cluster, desired=6, grace=0,
                   draining=(), min_healthy=100, max_percent=200, access_log=None,
                   reconcile_interval=1, lost_task_grace=2, ping_interval=0.5,
                   unreachable_after=2, deregistration_delay=5, stop_timeout=5, workers=2,
                   image="wharf-demo:v1", log_level="info"):
    """A whole wharfd config (dict for render_config): an http listener on
    127.0.0.1:port forwarding to group "web" (HC_SERVICE checks, no static
    target), the admin listener, the fleet's hosts and service "web" of
    `desired` tasks of image spread over attribute:az then instanceId."""
    log = {"level": log_level}
    if access_log:
        log["access_log"] = str(access_log)
    return {
        "workers": workers,
        "log": log,
        "timeouts": {"shutdown_drain": 1, "upstream_connect": 1},
        "listeners": [{"name": "http", "bind": "%s:%d" % (LOOPBACK, port), "protocol": "http",
                       "default_action": {"forward": [{"target_group": "web"}]}}],
        "target_groups": [{"name": "web", "deregistration_delay": deregistration_delay,
                           "health_check": dict(HC_SERVICE), "targets": []}],
        "cluster": cluster,
        "controller": {"reconcile_interval": reconcile_interval, "lost_task_grace": lost_task_grace,
                       "start_backoff_max": 5},
        "hosts": host_entries(fleet, draining, ping_interval, unreachable_after),
        "services": [{
            "name": "web",
            "target_group": "web",
            "desired_count": desired,
            "task": {"image": image, "container_port": 8080, "stop_timeout": stop_timeout},
            "deployment": {"minimum_healthy_percent": min_healthy, "maximum_percent": max_percent},
            "placement": {"strategy": [{"type": "spread", "field": "attribute:az"},
                                       {"type": "spread", "field": "instanceId"}]},
            "health_check_grace_period": grace,
        }],
        "admin": {"bind": "%s:%d" % (LOOPBACK, admin_port), "token_file": str(token_file),
                  "metrics_public": True},
    }


def docker_time(text):
    """Docker's RFC 3339 time (nanoseconds, Z) as Unix seconds; 0 for the
    zero time."""
    if not text or text.startswith("0001-"):
        return 0.0
    base, _, frac = text.rstrip("Z").partition(".")
    t = datetime.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return t.timestamp() + (float("0." + frac) if frac else 0.0)


@dataclass
class Task:
    """One container of a cluster, as its engine tells it."""
    host: str
    id: str  # container id (full)
    task: str  # label wharf.task
    service: str
    running: bool
    status: str  # State.Status: created, running, exited, ...
    port: int  # published IPv4 host port of the container port, 0 if none
    addr: str  # host-address:port, the target wharfd registers
    created: float  # Unix seconds
    started: float
    finished: float


def cluster_containers(fleet, cluster, host_ids=None, container_port=8080):
    """[Task] of every container labelled wharf.cluster=cluster on the hosts
    host_ids (default: all), running or not."""
    out = []
    for hid in host_ids or [h.id for h in fleet.hosts]:
        ids = fleet.docker(hid, "ps", "-aq", "--no-trunc", "--filter",
                           "label=wharf.cluster=%s" % cluster).stdout.split()
        if not ids:
            continue
        p = fleet.docker(hid, "inspect", *ids, check=False)
        # a container removed between ps and inspect is simply not there
        for c in json.loads(p.stdout or "[]"):
            labels = c["Config"]["Labels"] or {}
            port = 0
            for b in (c["NetworkSettings"]["Ports"] or {}).get("%d/tcp" % container_port) or []:
                if b.get("HostIp") == "0.0.0.0":
                    port = int(b["HostPort"])
            addr = "%s:%d" % (fleet.host(hid).addr, port) if port else ""
            st = c["State"]
            out.append(Task(host=hid, id=c["Id"], task=labels.get("wharf.task", ""),
                            service=labels.get("wharf.service", ""), running=bool(st["Running"]),
                            status=st["Status"], port=port, addr=addr,
                            created=docker_time(c["Created"]), started=docker_time(st["StartedAt"]),
                            finished=docker_time(st["FinishedAt"])))
    return out


def running(tasks):
    return [t for t in tasks if t.running]


def docker_events(fleet, host_id, cluster, since, until):
    """[{time (Unix seconds), host, action, id (container), task (label
    wharf.task), signal (of a kill, else None)}] the engine host_id reported
    for containers of cluster between since and until (Unix seconds)."""
    p = fleet.docker(host_id, "events", "--since", "%.6f" % since, "--until", "%.6f" % until,
                     "--filter", "label=wharf.cluster=%s" % cluster, "--filter", "type=container",
                     "--format", "{{json .}}")
    out = []
    for line in p.stdout.splitlines():
        if line.strip():
            e = json.loads(line)
            attrs = (e.get("Actor") or {}).get("Attributes") or {}
            out.append({"time": e["timeNano"] / 1e9, "host": host_id,
                        "action": e.get("Action") or e.get("status"), "id": e.get("id", ""),
                        "task": attrs.get("wharf.task", ""), "signal": attrs.get("signal")})
    return out


def fleet_events(fleet, cluster, since, until, hosts=None):
    """docker_events of every host (default all), in time order."""
    evs = []
    for hid in hosts or [h.id for h in fleet.hosts]:
        evs += docker_events(fleet, hid, cluster, since, until)
    return sorted(evs, key=lambda e: e["time"])


def sweep_clusters(fleet, host_ids=None):
    """Remove every container carrying a wharf.cluster label on those hosts
    (wharfd leaves its tasks running when it exits, by design)."""
    for hid in host_ids or [h.id for h in fleet.hosts]:
        ids = fleet.docker(hid, "ps", "-aq", "--filter", "label=wharf.cluster", check=False).stdout.split()
        if ids:
            fleet.docker(hid, "rm", "-f", *ids, check=False, timeout=120)


def service_targets(admin, service="web", group="web"):
    """{address: target dict} of the targets service registered in group."""
    return {a: t for a, t in admin.targets(group).items() if t.get("source") == "service:" + service}


def healthy_addrs(admin, service="web", group="web"):
    return sorted(a for a, t in service_targets(admin, service, group).items() if t["state"] == "healthy")


class TaskLoad:
    """`threads` threads, each on one keep-alive connection to wharfd on
    127.0.0.1:port, sending GET / until stop(). Each request carries
    X-Request-Id "<prefix>-<thread>-<n>" so the access log names the target
    it went to. .ok: (t0, t1, rid, task) with the task the demo app named;
    .failed: (t0, t1, rid, what) for a non-200 answer or a broken connection
    (reopened for the next request). Times are time.time(). pace: seconds
    each thread waits between its requests (0: back to back), to keep the
    load's CPU below what the engines and wharfd need on a small machine."""

    def __init__(self, port, threads=4, prefix="L", pace=0.0):
        self.port = port
        self.prefix = prefix
        self.pace = pace
        self.ok = []
        self.failed = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def start(self):
        for t in self._threads:
            t.start()
        return self

    def count(self):
        with self.lock:
            return len(self.ok) + len(self.failed)

    def tasks_since(self, t):
        """Counter-like dict {task: responses} of the answers started at or after t."""
        out = {}
        with self.lock:
            for t0, _, _, task in self.ok:
                if t0 >= t:
                    out[task] = out.get(task, 0) + 1
        return out

    def _run(self, idx):
        c = None
        n = 0
        while not self._stop.is_set():
            rid = "%s-%d-%d" % (self.prefix, idx, n)
            n += 1
            t0 = time.time()
            try:
                if c is None:
                    c = RawClient(self.port, timeout=10.0)
                r = c.request("GET", "/", headers=[("X-Request-Id", rid)])
                t1 = time.time()
                if r.status != 200:
                    with self.lock:
                        self.failed.append((t0, t1, rid, "status %d" % r.status))
                else:
                    with self.lock:
                        self.ok.append((t0, t1, rid, r.json().get("task")))
                if "close" in (r.headers.get("connection") or "").lower():
                    c.close()
                    c = None
            except Exception as e:
                with self.lock:
                    self.failed.append((t0, time.time(), rid, "%s: %s" % (type(e).__name__, e)))
                if c is not None:
                    c.close()
                c = None
            if self.pace:
                self._stop.wait(self.pace)  # pacing of the load, not a wait for a condition
        if c is not None:
            c.close()

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)


def read_access_log(path):
    """{request_id: record} of a JSON-lines access log (a request id seen
    twice keeps its last record)."""
    out = {}
    try:
        text = open(path, encoding="utf-8", errors="replace").read()
    except OSError:
        return out
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("request_id"):
            out[rec["request_id"]] = rec
    return out
