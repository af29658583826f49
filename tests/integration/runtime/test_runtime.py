"""The runtime module (src/runtime/, Docker Engine API over libcurl-multi on
libevent) against real engines, driven through tests/drivers/wh-docker-driver.

Engines come from the `fleet` fixture (3 dockerd in network namespaces, TCP
with mutual TLS) and `local_engine` (a unix socket) in conftest.py. Every
command of the test program prints one JSON object on its last stdout line,
including "max_lag": the worst delay of a 10 ms timer on its event loop.

The figures README.md reports (create+start per container, unreachable
detection time, loop lag) are printed with a "FIGURE" prefix (pytest -s).
"""

import itertools
import json
import os
import select
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from harness.paths import DOCKER_DRIVER
from harness.polling import wait_until
from harness.processes import process_gone

TOOL = DOCKER_DRIVER
DOCKER = "/usr/bin/docker"
_seq = itertools.count(1)


def figure(name, value):
    print("FIGURE %s: %s" % (name, json.dumps(value)))


@pytest.fixture(scope="session")
def tool():
    if not os.access(TOOL, os.X_OK):
        pytest.fail("%s not built: `make tests/drivers/wh-docker-driver` in the build directory "
                    "(or set WHARF_BUILD_DIR)" % TOOL, pytrace=False)
    return str(TOOL)


def host_args(h, tls=None, host_id=None):
    """--host/--id/--tls for one fleet Host (tls: a (ca, cert, key) override)."""
    args = ["--host", h.docker, "--id", host_id or h.id]
    if h.tls:
        ca, cert, key = tls or (h.tls["ca"], h.tls["cert"], h.tls["key"])
        args += ["--tls", ca, cert, key]
    return args


def fleet_args(fleet, ids=None):
    args = []
    for h in fleet.hosts:
        if ids is None or h.id in ids:
            args += host_args(h)
    return args


def run_tool(tool, args, timeout=60, check=True):
    p = subprocess.run([tool, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    lines = p.stdout.strip().splitlines()
    if not lines:
        raise AssertionError("no output from %s (rc %d): %s" % (args, p.returncode, p.stderr))
    out = json.loads(lines[-1])
    if check and p.returncode != 0:
        raise AssertionError("wh-docker-driver %s failed: %s\n%s" % (
            " ".join(map(str, args)), json.dumps(out, indent=1), p.stderr))
    return out


def name(fleet, what):
    return "rt-%s-%s-%d" % (fleet.run_id, what, next(_seq))


def http_get(addr, port, path="/", timeout=5):
    with urllib.request.urlopen("http://%s:%d%s" % (addr, port, path), timeout=timeout) as r:
        return r.status, r.read()


class EventStream:
    """wh-docker-driver events in the background; lines parsed as they come."""

    def __init__(self, tool, hosts, opts, seconds=120):
        self.p = subprocess.Popen([tool, *hosts, "events", str(seconds), *opts],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.events = []
        self.buf = b""

    def wait_for(self, pred, timeout):
        """The first event (old or new) matching pred, else None after timeout."""
        for e in self.events:
            if pred(e):
                return e
        deadline = time.monotonic() + timeout
        fd = self.p.stdout.fileno()
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], max(0, deadline - time.monotonic()))
            if not r:
                break
            data = os.read(fd, 65536)
            if not data:
                break
            self.buf += data
            found = None
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                e = json.loads(line)
                self.events.append(e)
                if found is None and pred(e):
                    found = e
            if found is not None:
                return found
        return None

    def stop(self):
        """SIGTERM: the tool prints its summary; returns it."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            out, _ = self.p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            out, _ = self.p.communicate()
        lines = (self.buf + out).decode().strip().splitlines()
        for line in lines[:-1]:
            self.events.append(json.loads(line))
        return json.loads(lines[-1]) if lines else None


def is_ctr(action, cid=None, synthetic=None):
    def pred(e):
        return (e["kind"] == "container" and e["action"] == action and
                (cid is None or e["id"] == cid) and
                (synthetic is None or e["synthetic"] == synthetic))
    return pred


# ---- basic calls -------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_ping_and_info_negotiate_api_1_41(tool, fleet):
    out = run_tool(tool, [*fleet_args(fleet), "info"])
    assert [h["id"] for h in out["hosts"]] == ["h1", "h2", "h3"]
    for h in out["hosts"]:
        assert h["ok"], h
        assert h["ncpu"] >= 1 and h["mem_total"] > 0
        assert h["server_version"].startswith("20.10")
        assert h["api_version"] == "1.41"
    out = run_tool(tool, [*fleet_args(fleet), "ping"])
    assert all(h["ok"] for h in out["hosts"])


@pytest.mark.timeout(90)
def test_container_lifecycle_and_published_port(tool, fleet):
    h = fleet.host("h1")
    n = name(fleet, "life")
    out = run_tool(tool, [*host_args(h), "run", "wharf-demo:v1", "--name", n, "--port", 8080,
                          "--label", "wharf.service=rt-life", "--label", "wharf.task=" + n,
                          "--env", "DEMO_VERSION=life", "--memory", 64, "--cpu", 128,
                          "--stop-timeout", 5, "--stop-signal", "SIGTERM"])
    c = out["container"]
    cid = out["id"]
    try:
        assert c["running"] and c["state"] == "running"
        assert c["name"] == n and c["started_at"]
        assert c["container_port"] == 8080 and c["host_port"] > 0
        assert c["labels"]["wharf.task"] == n
        figure("create+start single container (s)", round(out["create_start_s"], 3))
        # reachable from the root namespace at the host's address
        deadline = time.monotonic() + 10
        while True:
            try:
                status, body = http_get(h.addr, c["host_port"])
                break
            except OSError:
                assert time.monotonic() < deadline, "published port never answered"
                time.sleep(0.05)  # poll interval
        assert status == 200 and json.loads(body)["version"] == "life"
        cfg = json.loads(fleet.docker("h1", "inspect", cid).stdout)[0]
        assert cfg["HostConfig"]["Memory"] == 64 * 1048576
        assert cfg["HostConfig"]["CpuShares"] == 128
        assert cfg["Config"]["StopTimeout"] == 5
        # stop: the demo app exits 0 on SIGTERM
        out = run_tool(tool, [*host_args(h), "stop", cid, "--timeout", 5])
        out = run_tool(tool, [*host_args(h), "inspect", cid])
        assert out["container"]["state"] == "exited"
        assert out["container"]["exit_code"] == 0
        assert not out["container"]["running"]
        assert out["container"]["finished_at"]
        # stopping a stopped container is not an error; start again, kill
        run_tool(tool, [*host_args(h), "stop", cid, "--timeout", 1])
        run_tool(tool, [*host_args(h), "start", cid])
        run_tool(tool, [*host_args(h), "kill", cid, "--signal", "SIGKILL"])
        out = run_tool(tool, [*host_args(h), "inspect", cid])
        assert out["container"]["exit_code"] == 137
    finally:
        run_tool(tool, [*host_args(h), "rm", cid], check=False)
    out = run_tool(tool, [*host_args(h), "inspect", cid], check=False)
    assert not out["ok"]
    assert out["error"]["kind"] == "http" and out["error"]["http_status"] == 404
    assert "No such container" in out["error"]["message"]
    assert not out["error"]["unreachable"]


@pytest.mark.timeout(90)
def test_lifecycle_timings(tool, fleet):
    h = fleet.host("h2")
    out = run_tool(tool, [*host_args(h), "lifecycle", "wharf-demo:v1", "--port", 8080,
                          "--name", name(fleet, "lc"), "--label", "wharf.service=rt-lc",
                          "--timeout", 5])
    assert out["ok"] and out["container"]["host_port"] > 0
    figure("lifecycle step times (s)", {k: round(out[k], 3) for k in (
        "create_s", "start_s", "inspect_s", "stop_s", "remove_s")})
    assert out["max_lag"] < 0.05


@pytest.mark.timeout(60)
def test_create_errors_carry_the_engine_message(tool, fleet):
    h = fleet.host("h1")
    out = run_tool(tool, [*host_args(h), "run", "no-such-image:v9"], check=False)
    assert not out["ok"] and out["failed_step"] == "create"
    assert out["error"]["http_status"] == 404
    assert "no-such-image" in out["error"]["message"]
    n = name(fleet, "dup")
    first = run_tool(tool, [*host_args(h), "run", "wharf-demo:v1", "--name", n])
    try:
        out = run_tool(tool, [*host_args(h), "run", "wharf-demo:v1", "--name", n], check=False)
        assert out["error"]["http_status"] == 409 and "already in use" in out["error"]["message"]
    finally:
        run_tool(tool, [*host_args(h), "rm", first["id"]], check=False)


@pytest.mark.timeout(90)
def test_list_by_label(tool, fleet):
    h = fleet.host("h3")
    svc = name(fleet, "list")
    ids = []
    try:
        for label in (svc, svc, svc + "-other"):
            out = run_tool(tool, [*host_args(h), "run", "wharf-demo:v1", "--port", 8080,
                                  "--label", "wharf.service=" + label])
            ids.append(out["id"])
        run_tool(tool, [*host_args(h), "stop", ids[1], "--timeout", 5])
        out = run_tool(tool, [*host_args(h), "list", "--label", "wharf.service=" + svc])
        got = {c["id"]: c for c in out["containers"]}
        assert set(got) == set(ids[:2])  # all=true: the stopped one too
        assert got[ids[0]]["running"] and got[ids[0]]["host_port"] > 0
        assert not got[ids[1]]["running"] and got[ids[1]]["exit_code"] == 0
        out = run_tool(tool, [*host_args(h), "list", "--label", "wharf.service"])
        assert set(ids) <= {c["id"] for c in out["containers"]}
    finally:
        for cid in ids:
            run_tool(tool, [*host_args(h), "rm", cid], check=False)


# ---- events ------------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_events_start_and_die(tool, fleet):
    h = fleet.host("h2")
    svc = name(fleet, "ev")
    ev = EventStream(tool, host_args(h), ["--label", "wharf.service=" + svc])
    cid = None
    try:
        assert ev.wait_for(lambda e: e["kind"] == "connected", 10), "stream never connected"
        out = run_tool(tool, [*host_args(h), "run", "wharf-demo:v1", "--label",
                              "wharf.service=" + svc])
        cid = out["id"]
        start = ev.wait_for(is_ctr("start", cid), 10)
        assert start and not start["synthetic"]
        assert start["labels"]["wharf.service"] == svc
        run_tool(tool, [*host_args(h), "kill", cid])
        die = ev.wait_for(is_ctr("die", cid), 10)
        assert die and die["exit_code"] == 137 and not die["synthetic"]
        # other services' containers are filtered out by the engine
        other = run_tool(tool, [*host_args(h), "run", "wharf-demo:v1", "--label",
                                "wharf.service=" + svc + "-not"])
        run_tool(tool, [*host_args(h), "rm", other["id"]])
        run_tool(tool, [*host_args(h), "rm", cid])
        assert ev.wait_for(is_ctr("destroy", cid), 10)
        assert not any(e.get("id") == other["id"] for e in ev.events)
    finally:
        summary = ev.stop()
        if cid:
            run_tool(tool, [*host_args(h), "rm", cid], check=False)
    assert summary["max_lag"] < 0.05, summary


@pytest.mark.timeout(150)
def test_deaths_while_disconnected_arrive_as_synthetic_events(tool, fleet):
    """dockerd killed (containers keep running under their own containerd), a
    container killed while no engine watches, dockerd started again: the
    re-list after the reconnect reports the death."""
    hid = "h3"
    svc = name(fleet, "resync")
    h = fleet.host(hid)
    ev = EventStream(tool, host_args(h), ["--label", "wharf.service=" + svc])
    ids = []
    try:
        for _ in range(2):
            ids.append(run_tool(tool, [*host_args(h), "run", "wharf-demo:v1", "--label",
                                       "wharf.service=" + svc])["id"])
        pid = run_tool(tool, [*host_args(h), "inspect", ids[0]])["container"]["pid"]
        assert pid > 0
        assert ev.wait_for(lambda e: e["kind"] == "connected", 10)
        os.kill(h.pid, signal.SIGKILL)
        assert ev.wait_for(lambda e: e["kind"] == "disconnected", 10), "loss not reported"
        os.kill(pid, signal.SIGKILL)
        # dead and reaped (by its shim) before an engine can see it again
        wait_until(lambda: process_gone(pid), 10, "container process %d still there after SIGKILL" % pid)
        # A SIGKILLed dockerd can stay a zombie (its parent is gone and PID 1
        # may not reap) and its pid file then makes the next dockerd refuse
        # to start: remove it.
        Path(h.unix).parent.joinpath("dockerd.pid").unlink(missing_ok=True)
        t0 = time.monotonic()
        fleet.start(hid)
        die = ev.wait_for(is_ctr("die", ids[0]), 30)
        assert die, "the death while disconnected was never reported: %s" % ev.events
        assert die["synthetic"] and die["exit_code"] == 137
        assert die["labels"]["wharf.service"] == svc
        assert ev.wait_for(lambda e: e["kind"] == "connected" and e["t"] > die["t"] - 1, 10)
        figure("engine start to synthetic die delivered (s)", round(time.monotonic() - t0, 2))
    finally:
        ev.stop()
        if run_tool(tool, [*host_args(h), "ping"], check=False)["hosts"][0]["ok"] is False:
            Path(h.unix).parent.joinpath("dockerd.pid").unlink(missing_ok=True)
            fleet.start(hid)
        for cid in ids:
            run_tool(tool, [*host_args(fleet.host(hid)), "rm", cid], check=False)


# ---- TLS ---------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_wrong_client_certificate_refused_clearly(tool, fleet):
    h = fleet.host("h1")
    t = fleet.tls
    out = run_tool(tool, [*host_args(h, tls=(t["ca"], t["rogue_cert"], t["rogue_key"])), "ping"],
                   check=False)
    err = out["hosts"][0]["error"]
    assert err["kind"] == "tls" and err["unreachable"]
    assert "client certificate" in err["message"], err
    # an engine we can't verify: the other way round
    out = run_tool(tool, [*host_args(h, tls=(t["rogue_ca"], t["cert"], t["key"])), "info"],
                   check=False)
    err = out["hosts"][0]["error"]
    assert err["kind"] == "tls" and "not trusted" in err["message"], err


@pytest.mark.timeout(60)
def test_connection_refused_reported(tool, fleet):
    h = fleet.host("h1")
    args = ["--host", "tcp://%s:1" % h.addr, "--id", "dead",
            "--tls", h.tls["ca"], h.tls["cert"], h.tls["key"]]
    out = run_tool(tool, [*args, "info"], check=False)
    err = out["hosts"][0]["error"]
    assert err["kind"] == "connect" and err["unreachable"], err


# ---- unreachable hosts don't hold the others back ---------------------------------------


@pytest.mark.timeout(90)
def test_frozen_engine_reported_unreachable_others_proceed(tool, fleet):
    call_timeout = 2.0
    probe_s = 8.0
    freeze_at = 2.0
    p = subprocess.Popen([tool, *fleet_args(fleet), "--call-timeout", str(call_timeout),
                          "probe", str(probe_s), "--interval", "0.2"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    try:
        # the behaviour under test: the probe runs freeze_at seconds against
        # three answering engines before one of them freezes
        time.sleep(freeze_at)
        fleet.freeze("h2")
        frozen_at = time.monotonic() - t0
        out, err = p.communicate(timeout=probe_s + 30)
    finally:
        fleet.thaw("h2")
        if p.poll() is None:
            p.kill()
    res = json.loads(out.strip().splitlines()[-1])
    hosts = {h["id"]: h for h in res["hosts"]}
    errs = hosts["h2"]["errors"]
    assert errs, "the frozen engine was never reported"
    assert all(e["unreachable"] and e["kind"] == "timeout" for e in errs), errs
    # reported within the call timeout of the first call that hit the freeze
    first_report = min(e["at"] + e["elapsed"] for e in errs)
    detection = first_report - frozen_at
    assert detection <= call_timeout + 0.5, (detection, errs[:3])
    for hid in ("h1", "h3"):
        assert not hosts[hid]["errors"], hosts[hid]
        assert hosts[hid]["ok"] >= int(probe_s / 0.2) - 2
        assert hosts[hid]["max_ok_latency"] < 0.5, hosts[hid]
    figure("frozen engine: first unreachable report after freeze (s)", round(detection, 2))
    figure("frozen engine: max loop lag (s)", round(res["max_lag"], 4))
    figure("frozen engine: other hosts' worst call latency (s)",
           round(max(hosts[h]["max_ok_latency"] for h in ("h1", "h3")), 3))
    assert res["max_lag"] < 0.05, res["max_lag"]
    # after the thaw the engine answers again
    out = run_tool(tool, [*fleet_args(fleet, ["h2"]), "ping"])
    assert out["hosts"][0]["ok"]


@pytest.mark.timeout(240)
def test_50_containers_concurrently_across_3_hosts(tool, fleet):
    svc = name(fleet, "conc")
    out = run_tool(tool, [*fleet_args(fleet), "concurrent", 50, "wharf-demo:v1", "--port", 8080,
                          "--label", "wharf.service=" + svc, "--name", svc, "--rm"],
                   timeout=200)
    cs = out["containers"]
    assert len(cs) == 50 and all(c["ok"] for c in cs), [c for c in cs if not c["ok"]][:3]
    assert {c["host"] for c in cs} == {"h1", "h2", "h3"}
    assert all(c["container"]["running"] and c["container"]["host_port"] > 0 for c in cs)
    # every published port distinct per host
    for hid in ("h1", "h2", "h3"):
        ports = [c["container"]["host_port"] for c in cs if c["host"] == hid]
        assert len(ports) == len(set(ports))
    figure("50 containers: create+start per container (s)",
           {k: round(v, 3) for k, v in out["create_start"].items()})
    figure("50 containers: wall time (s)", round(out["wall_s"], 2))
    figure("50 containers: max loop lag (s), CPU used in that interval",
           [round(out["max_lag"], 4), round(out["max_lag_cpu"], 4)])
    assert out["create_start"]["max"] < 60
    # --rm removed them
    for hid in ("h1", "h2", "h3"):
        left = run_tool(tool, [*fleet_args(fleet, [hid]), "list",
                               "--label", "wharf.service=" + svc])
        assert left["containers"] == []


@pytest.mark.timeout(90)
def test_call_limit_queues_fifo(tool, fleet):
    """max_concurrent_calls=1: every call still completes, one at a time."""
    svc = name(fleet, "lim")
    out = run_tool(tool, [*fleet_args(fleet, ["h1"]), "--max-calls", 1, "concurrent", 4,
                          "wharf-demo:v1", "--label", "wharf.service=" + svc, "--rm"])
    assert all(c["ok"] for c in out["containers"])
    creates = sorted(c["create_s"] for c in out["containers"])
    # queued behind each other: the last create waited for the others' calls
    assert creates[-1] > creates[0]


# ---- pulls -------------------------------------------------------------------------------


def _free_port(addr):
    s = socket.socket()
    s.bind((addr, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _wait_port(addr, port, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((addr, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)  # poll interval
    raise AssertionError("registry on %s:%d never listened" % (addr, port))


@pytest.fixture(scope="module")
def registries(fleet):
    """Two docker-registry instances on h1's root-side veth address (the
    engines run with --insecure-registry for it): one open, one with htpasswd
    auth (alice / s3cret). wharf-demo:v1 is pushed to both from h1."""
    h1 = fleet.host("h1")
    d = Path(tempfile.mkdtemp(prefix="rt-registry-"))
    procs = []
    subprocess.run(["htpasswd", "-Bbc", str(d / "htpasswd"), "alice", "s3cret"], check=True,
                   capture_output=True)
    regs = {}
    try:
        for kind in ("open", "auth"):
            port = _free_port(h1.gateway)
            conf = d / ("%s.yml" % kind)
            text = ("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                    "    rootdirectory: %s\nhttp:\n  addr: %s:%d\n  secret: test\n"
                    % (d / kind, h1.gateway, port))
            if kind == "auth":
                text += "auth:\n  htpasswd:\n    realm: wharf-test\n    path: %s\n" % (
                    d / "htpasswd")
            conf.write_text(text)
            log = open(d / ("%s.log" % kind), "w")
            procs.append(subprocess.Popen(["docker-registry", "serve", str(conf)], stdout=log,
                                          stderr=subprocess.STDOUT))
            _wait_port(h1.gateway, port)
            regs[kind] = "%s:%d" % (h1.gateway, port)
        cli = ["--config", str(d / "cli"), *h1.docker_args(unix=True)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        subprocess.run([DOCKER, *cli, "login", "-u", "alice", "--password-stdin", regs["auth"]],
                       input="s3cret", check=True, capture_output=True, text=True, env=env)
        for kind, reg in regs.items():
            ref = "%s/wharf-demo:pulltest" % reg
            subprocess.run([DOCKER, *cli, "tag", "wharf-demo:v1", ref], check=True,
                           capture_output=True, env=env)
            subprocess.run([DOCKER, *cli, "push", ref], check=True, capture_output=True,
                           env=env, timeout=60)
        yield regs
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run(["rm", "-rf", str(d)])


def _has_image(fleet, hid, ref):
    return fleet.docker(hid, "image", "inspect", ref, check=False).returncode == 0


@pytest.mark.timeout(120)
def test_pull_policies_from_open_registry(tool, fleet, registries):
    hid = "h2"
    ref = "%s/wharf-demo:pulltest" % registries["open"]
    fleet.docker(hid, "rmi", ref, check=False)
    h = fleet.host(hid)
    out = run_tool(tool, [*host_args(h), "pull", ref, "--policy", "never"], check=False)
    assert out["error"]["kind"] == "image_missing" and "never" in out["error"]["message"]
    out = run_tool(tool, [*host_args(h), "pull", ref, "--policy", "if-not-present"])
    assert _has_image(fleet, hid, ref)
    figure("pull from the local registry (s)", round(out["wall_s"], 3))
    run_tool(tool, [*host_args(h), "pull", ref, "--policy", "never"])
    run_tool(tool, [*host_args(h), "pull", ref, "--policy", "always"])
    # a tag the registry doesn't have: the engine's message comes through
    out = run_tool(tool, [*host_args(h), "pull", ref + "-nope", "--policy", "always"],
                   check=False)
    assert not out["ok"] and "not found" in out["error"]["message"], out
    # and run what was pulled
    out = run_tool(tool, [*host_args(h), "run", ref, "--port", 8080, "--pull", "never"])
    try:
        assert out["container"]["running"]
    finally:
        run_tool(tool, [*host_args(h), "rm", out["id"]], check=False)


@pytest.mark.timeout(120)
def test_pull_with_registry_credentials(tool, fleet, registries):
    hid = "h3"
    ref = "%s/wharf-demo:pulltest" % registries["auth"]
    fleet.docker(hid, "rmi", ref, check=False)
    h = fleet.host(hid)
    out = run_tool(tool, [*host_args(h), "pull", ref, "--policy", "always"], check=False)
    assert not out["ok"]
    assert "auth" in out["error"]["message"] or "unauthorized" in out["error"]["message"], out
    out = run_tool(tool, [*host_args(h), "pull", ref, "--policy", "always", "--user", "alice",
                          "--password", "wrong"], check=False)
    assert not out["ok"] and "unauthorized" in out["error"]["message"], out
    assert not _has_image(fleet, hid, ref)
    run_tool(tool, [*host_args(h), "pull", ref, "--policy", "always", "--user", "alice",
                    "--password", "s3cret"])
    assert _has_image(fleet, hid, ref)


# ---- the local engine on a unix socket ---------------------------------------------------


@pytest.mark.timeout(120)
def test_unix_socket_engine(tool, local_engine):
    h = local_engine.hosts[0]
    args = ["--host", "unix://" + h.unix, "--id", h.id]
    out = run_tool(tool, [*args, "info"])
    assert out["hosts"][0]["api_version"] == "1.41"
    out = run_tool(tool, [*args, "run", "wharf-demo:v1", "--port", 8080,
                          "--label", "wharf.service=rt-local"])
    try:
        port = out["container"]["host_port"]
        deadline = time.monotonic() + 10
        while True:
            try:
                status, _ = http_get("127.0.0.1", port)
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)  # poll interval
        assert status == 200
    finally:
        run_tool(tool, [*args, "rm", out["id"]], check=False)
