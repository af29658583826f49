"""Real Docker engines for the tests (tests/fleet/fleet.sh): a Fleet of
engines and the containers the tests run on them. The fixtures `fleet` and
`local_engine` (tests/integration/runtime/conftest.py) start them.

Fleet (see the class below): .dir, .run_id, .hosts_conf (path of a libconfig
`hosts = (...)` block for wharfd), .tls (dict ca/cert/key and
rogue_ca/rogue_cert/rogue_key: a client certificate from another CA),
.hosts (list of Host), .host("h2"), .data (fleet.json as a dict),
.up_seconds, and helpers: .docker(host_id, *args) runs /usr/bin/docker on
that engine (TLS for fleet hosts, unix socket for the local engine),
.run_demo(host_id, image, env=None, ...) -> Container, .restart(id),
.stop(id), .start(id), .freeze(id), .thaw(id).

Container: .host .id .port (published IPv4 port of 8080/tcp) .url, .get(path),
.answers(), .pid() (its main process), .inspect(), .remove().

Host: .id .addr .gateway .docker (tcp://ADDR:2376 or unix://...) .unix
(socket path) .netns .netns_path .pid (dockerd) .containerd_pid .az .tls
(dict ca/cert/key/server_cert/server_key) .cgroup_parent .log.

start_fleet() runs `fleet.sh up|local` with the pytest process as the
fleet's owner, so if pytest is killed the next `fleet.sh up` (or `fleet.sh
sweep`) removes what it left; Fleet.down() is `fleet.sh down`.
"""

import json
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .paths import FLEET_SH
from .polling import wait_until

DOCKER = "/usr/bin/docker"


def clean_env():
    """Our environment without DOCKER_* (docker is pointed at each engine explicitly)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    return env


def fleet_sh(*args, timeout=180, check=True):
    """Run tests/fleet/fleet.sh; returns CompletedProcess (text)."""
    p = subprocess.run([str(FLEET_SH), *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, env=clean_env())
    if check and p.returncode != 0:
        raise RuntimeError("fleet.sh %s failed (%d):\n%s%s" % (
            " ".join(map(str, args)), p.returncode, p.stdout, p.stderr))
    return p


@dataclass
class Host:
    id: str
    addr: str
    gateway: str
    docker: str
    unix: str
    netns: str
    netns_path: str
    pid: int
    containerd_pid: int
    az: str
    tls: dict
    cgroup_parent: str
    log: str
    raw: dict = field(repr=False, default_factory=dict)

    def docker_args(self, unix=False):
        """Global /usr/bin/docker arguments that reach this engine."""
        if unix or not self.tls:
            return ["-H", "unix://" + self.unix]
        return ["-H", self.docker, "--tlsverify", "--tlscacert", self.tls["ca"],
                "--tlscert", self.tls["cert"], "--tlskey", self.tls["key"]]


@dataclass
class Container:
    fleet: "Fleet"
    host: Host
    id: str
    port: int  # published IPv4 host port of 8080/tcp

    @property
    def url(self):
        return "http://%s:%d" % (self.host.addr, self.port)

    def get(self, path="/", timeout=5):
        """(status, body bytes) of GET url+path; HTTP errors are returned, not raised."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def answers(self):
        """True once GET / gets any HTTP answer (connection errors: False)."""
        try:
            self.get("/", timeout=1)
            return True
        except OSError:
            return False

    def pid(self):
        """The container's main process, as our PID namespace numbers it."""
        return self.inspect()["State"]["Pid"]

    def inspect(self):
        return json.loads(self.fleet.docker(self.host.id, "inspect", self.id).stdout)[0]

    def remove(self):
        self.fleet.docker(self.host.id, "rm", "-f", self.id, check=False)


class Fleet:
    def __init__(self, directory, up_seconds):
        self.dir = Path(directory)
        self.up_seconds = up_seconds
        self.reload()

    def reload(self):
        self.data = json.loads((self.dir / "fleet.json").read_text())
        self.run_id = self.data["run_id"]
        self.kind = self.data["kind"]
        self.hosts_conf = self.data["hosts_conf"]
        self.tls = self.data["tls"]
        self.images = self.data["images"]
        self.hosts = []
        for h in self.data["hosts"]:
            self.hosts.append(Host(
                id=h["id"], addr=h["addr"], gateway=h["gateway"], docker=h["docker"],
                unix=h["unix"], netns=h["netns"], netns_path=h["netns_path"], pid=h["pid"],
                containerd_pid=h["containerd_pid"], az=h["az"], tls=h.get("tls"),
                cgroup_parent=h["cgroup_parent"], log=h["log"], raw=h))

    def host(self, host_id):
        for h in self.hosts:
            if h.id == host_id:
                return h
        raise KeyError(host_id)

    def docker(self, host_id, *args, check=True, timeout=60, unix=False, input=None):
        """Run /usr/bin/docker on that engine; CompletedProcess (text)."""
        h = self.host(host_id)
        p = subprocess.run([DOCKER, *h.docker_args(unix=unix), *map(str, args)],
                           capture_output=True, text=True, timeout=timeout, env=clean_env(),
                           input=input)
        if check and p.returncode != 0:
            raise RuntimeError("docker %s on %s failed (%d): %s" % (
                " ".join(map(str, args)), host_id, p.returncode, p.stderr.strip()))
        return p

    def run_demo(self, host_id, image="wharf-demo:v1", env=None, labels=None, name=None,
                 extra=(), wait=True, timeout=10):
        """docker run -d -p 0.0.0.0::8080 IMAGE on host_id; returns a Container
        whose .port is the IPv4 published port (read back from inspect).
        wait: until GET / answers."""
        args = ["run", "-d", "-p", "0.0.0.0::8080"]
        for k, v in (env or {}).items():
            args += ["-e", "%s=%s" % (k, v)]
        for k, v in (labels or {}).items():
            args += ["--label", "%s=%s" % (k, v)]
        if name:
            args += ["--name", name]
        args += [*extra, image]
        cid = self.docker(host_id, *args).stdout.strip()
        c = Container(self, self.host(host_id), cid, 0)
        ports = c.inspect()["NetworkSettings"]["Ports"]["8080/tcp"]
        c.port = int(next(b["HostPort"] for b in ports if b["HostIp"] == "0.0.0.0"))
        if wait:
            wait_until(c.answers, timeout, lambda: "container %s on %s never answered GET / on %s within %ss"
                       % (cid[:12], host_id, c.url, timeout), interval=0.05)
        return c

    def _engine(self, what, host_id, timeout=60):
        fleet_sh(what, self.dir, host_id, timeout=timeout)
        self.reload()

    def restart(self, host_id):
        self._engine("restart", host_id)

    def stop(self, host_id):
        self._engine("stop", host_id)

    def start(self, host_id):
        self._engine("start", host_id)

    def freeze(self, host_id):
        self._engine("freeze", host_id)

    def thaw(self, host_id):
        self._engine("thaw", host_id)

    def down(self):
        fleet_sh("down", self.dir, timeout=120, check=False)


def start_fleet(kind_args, demo_app, tmp_root):
    """Run `fleet.sh KIND_ARGS(dir) --app DEMO_APP --owner PID` in a new
    directory under tmp_root; returns the Fleet (torn down again if the
    start fails)."""
    d = tempfile.mkdtemp(prefix="fleet-", dir=tmp_root)
    t0 = time.monotonic()
    try:
        fleet_sh(*kind_args(d), "--app", demo_app, "--owner", os.getpid(), timeout=240)
        return Fleet(d, time.monotonic() - t0)
    except BaseException:
        # fleet.sh tears down after its own failures, not after being killed
        fleet_sh("down", d, timeout=120, check=False)
        raise
