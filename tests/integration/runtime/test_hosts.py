"""The host inventory (src/hosts/) on the real fleet, through
tests/drivers/wh-hosts-driver: engines come up ACTIVE with the resources
their /info gives, a frozen engine (SIGSTOP of its dockerd) becomes
UNREACHABLE within ping_interval x (unreachable_after + 1) while the others
stay ACTIVE and the loop never blocks, and it is ACTIVE again after the thaw.

Uses only the `fleet` fixture (conftest.py: its .hosts, .host(id), .docker,
.freeze, .thaw). The driver prints one JSON object per line; this file
reads them with deadlines, never fixed sleeps. Figures are printed with a
"FIGURE" prefix (pytest -s).
"""

import json
import os
import select
import subprocess
import time
from pathlib import Path

import pytest

BUILD_DIR = Path(os.environ.get("WHARF_BUILD_DIR",
                               str(Path(__file__).resolve().parents[3] / "build" / "plain")))
DRIVER = BUILD_DIR / "tests" / "drivers" / "wh-hosts-driver"
PING_INTERVAL = 2.0  # the defaults of CONFIG.md
UNREACHABLE_AFTER = 3
CALL_TIMEOUT = 30.0  # far beyond the interval: the probe must not wait for it
MiB = 1024 * 1024


def figure(name, value):
    print("FIGURE %s: %s" % (name, json.dumps(value)))


class Driver:
    """wh-hosts-driver on some fleet hosts; .lines holds every JSON line read."""

    def __init__(self, fleet, ids, extra=()):
        if not os.access(DRIVER, os.X_OK):
            pytest.fail("%s not built: `make tests/drivers/wh-hosts-driver` in the build "
                        "directory (or set WHARF_BUILD_DIR)" % DRIVER, pytrace=False)
        args = [str(DRIVER), "--ping-interval", str(PING_INTERVAL),
                "--unreachable-after", str(UNREACHABLE_AFTER), "--call-timeout", str(CALL_TIMEOUT)]
        for hid in ids:
            h = fleet.host(hid)
            args += ["--host", h.id, h.docker, "--attr", "az=" + h.az]
            if h.tls:
                args += ["--tls", h.tls["ca"], h.tls["cert"], h.tls["key"]]
        self.p = subprocess.Popen([*args, *extra], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines = []
        self._buf = b""

    def _read(self, until):
        left = until - time.monotonic()
        if left <= 0:
            return
        ready, _, _ = select.select([self.p.stdout], [], [], left)
        if not ready:
            return
        chunk = os.read(self.p.stdout.fileno(), 65536)
        if not chunk:
            raise AssertionError("wh-hosts-driver exited (rc %s): %s" % (
                self.p.poll(), self.p.stderr.read().decode(errors="replace")[-2000:]))
        self._buf += chunk
        *done, self._buf = self._buf.split(b"\n")
        self.lines += [json.loads(line) for line in done if line.strip()]

    def wait(self, pred, timeout, what, since=0):
        """The first line from index since on that pred accepts, within timeout s."""
        until = time.monotonic() + timeout
        i = since
        while True:
            while i < len(self.lines):
                if pred(self.lines[i]):
                    return self.lines[i]
                i += 1
            if time.monotonic() >= until:
                raise AssertionError("no %s within %.1f s; last lines: %s" % (
                    what, timeout, json.dumps(self.lines[-4:])))
            self._read(until)

    def wait_state(self, host, new, timeout, since=0):
        return self.wait(lambda e: e["type"] == "state" and e["host"] == host
                         and e["new"] == new, timeout, "%s %s" % (host, new), since)

    def states(self, host, since=0):
        return [e for e in self.lines[since:] if e["type"] == "state" and e["host"] == host]

    def send(self, line):
        self.p.stdin.write((line + "\n").encode())
        self.p.stdin.flush()

    def status(self):
        n = len(self.lines)
        self.send("status")
        return self.wait(lambda e: e["type"] == "status", 5, "status", since=n)

    def close(self, timeout=10):
        """Quit (EOF on stdin); returns (rc, stderr text). rc None: it had to be killed."""
        rc = self.p.poll()
        if rc is None:
            try:
                self.p.stdin.close()
                rc = self.p.wait(timeout=timeout)
            except (OSError, subprocess.TimeoutExpired):
                self.p.kill()
                self.p.wait()
        err = self.p.stderr.read().decode(errors="replace")
        self.p.stdout.close()
        self.p.stderr.close()
        return rc, err


@pytest.fixture
def driver_on(fleet):
    made = []

    def start(ids, extra=()):
        d = Driver(fleet, ids, extra)
        made.append(d)
        return d

    yield start
    for d in made:
        if d.p.poll() is None or not d.p.stdout.closed:
            rc, err = d.close()
            # a sanitizer build reports leaks and errors at exit
            assert rc == 0 and "Sanitizer" not in err, (rc, err[-3000:])


def engine_info(fleet, hid):
    out = fleet.docker(hid, "info", "--format", "{{json .}}").stdout
    info = json.loads(out)
    return info["NCPU"], info["MemTotal"]


@pytest.mark.timeout(60)
def test_hosts_come_up_active_with_their_resources(fleet, driver_on):
    d = driver_on(["h1", "h2"])
    t0 = time.monotonic()
    for hid in ("h1", "h2"):
        ev = d.wait_state(hid, "ACTIVE", timeout=10)
        assert ev["old"] == "REGISTERING", ev
        ncpu, mem = engine_info(fleet, hid)
        assert ev["cpu"] == {"total": ncpu * 1024, "reserved": 0}, ev
        assert ev["memory"] == {"total": mem // MiB, "reserved": 0}, ev
        assert ev["attributes"] == {"az": fleet.host(hid).az}
        assert ev["address"] == fleet.host(hid).addr and ev["source"] == "config"
        assert ev["last_error"] == "" and ev["missed"] == 0
    figure("hosts: both ACTIVE after start (s)", round(time.monotonic() - t0, 2))
    # draining on and off, reservations, as the API and the controller will use them
    n = len(d.lines)
    d.send("drain h1")
    assert d.wait_state("h1", "DRAINING", 5, since=n)["old"] == "ACTIVE"
    d.send("activate h1")
    d.wait_state("h1", "ACTIVE", 5, since=n)
    d.send("reserve h2 512 128")
    st = {h["id"]: h for h in d.status()["hosts"]}
    assert st["h2"]["cpu"]["reserved"] == 512 and st["h2"]["memory"]["reserved"] == 128
    assert st["h1"]["state"] == "ACTIVE" and st["h2"]["state"] == "ACTIVE"


@pytest.mark.timeout(120)
def test_frozen_engine_unreachable_then_active_others_unaffected(fleet, driver_on):
    d = driver_on(["h1", "h2"])
    for hid in ("h1", "h2"):
        d.wait_state(hid, "ACTIVE", timeout=10)
    n = len(d.lines)
    bound = PING_INTERVAL * (UNREACHABLE_AFTER + 1)
    before = time.monotonic()
    try:
        fleet.freeze("h2")
        after = time.monotonic()
        ev = d.wait_state("h2", "UNREACHABLE", timeout=bound + 5, since=n)
        # the freeze happened between before and after
        latest, earliest = ev["mono"] - before, ev["mono"] - after
        figure("hosts: frozen engine UNREACHABLE after (s)", [round(earliest, 2),
                                                             round(latest, 2)])
        assert latest <= bound + 2.0, ev
        # not before unreachable_after rounds could have been missed
        assert earliest >= PING_INTERVAL * UNREACHABLE_AFTER - 0.5, ev
        assert ev["old"] == "ACTIVE" and ev["missed"] == UNREACHABLE_AFTER, ev
        assert ev["last_error"], ev
        # a few more rounds: the other host is untouched, the loop never blocked
        st = d.wait(lambda e: e["type"] == "status" and e["mono"] > ev["mono"] + PING_INTERVAL,
                    PING_INTERVAL + 3, "status", since=n)
        hosts = {h["id"]: h for h in st["hosts"]}
        assert hosts["h2"]["state"] == "UNREACHABLE"
        assert hosts["h1"]["state"] == "ACTIVE" and hosts["h1"]["missed"] == 0, hosts["h1"]
        assert d.states("h1", since=n) == []
        figure("hosts: max loop lag with a frozen engine (s)", round(st["max_lag"], 4))
        assert st["max_lag"] < 0.05, st
    finally:
        thawed = time.monotonic()
        fleet.thaw("h2")
    n = len(d.lines)
    ev = d.wait_state("h2", "ACTIVE", timeout=2 * PING_INTERVAL + 5, since=n)
    figure("hosts: thawed engine ACTIVE after (s)", round(ev["mono"] - thawed, 2))
    assert ev["old"] == "UNREACHABLE" and "missed round" in ev["reason"], ev
    ncpu, mem = engine_info(fleet, "h2")  # re-read at the return
    assert ev["cpu"]["total"] == ncpu * 1024 and ev["memory"]["total"] == mem // MiB
    assert ev["missed"] == 0 and ev["last_error"] == ""
    # h1 changed once in the whole run: when it came up
    assert [e["new"] for e in d.states("h1")] == ["ACTIVE"]


@pytest.mark.timeout(90)
def test_remove_forget_and_quit_with_calls_in_flight(fleet, driver_on):
    d = driver_on(["h1", "h2", "h3"])
    for hid in ("h1", "h2", "h3"):
        d.wait_state(hid, "ACTIVE", timeout=10)
    n = len(d.lines)
    d.send("remove h1")
    ev = d.wait_state("h1", "DRAINING", 5, since=n)
    assert ev["removing"] and ev["old"] == "ACTIVE", ev
    try:
        fleet.freeze("h2")
        fleet.freeze("h3")
        # wait until both have a round missed: their pings hang on frozen engines
        d.wait(lambda e: e["type"] == "status" and all(
            h["missed"] >= 1 for h in e["hosts"] if h["id"] in ("h2", "h3")),
            2 * PING_INTERVAL + 3, "missed rounds", since=n)
        d.send("forget h2")  # forgotten with its ping in flight
        st = d.status()
        assert sorted(h["id"] for h in st["hosts"]) == ["h1", "h3"], st
        # quit with h3's calls still hanging: freed at once, cleanly
        t0 = time.monotonic()
        rc, err = d.close(timeout=5)
        figure("hosts: quit with calls in flight (s)", round(time.monotonic() - t0, 3))
        assert rc == 0 and "Sanitizer" not in err, (rc, err[-3000:])
    finally:
        fleet.thaw("h2")
        fleet.thaw("h3")
