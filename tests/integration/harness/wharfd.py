"""wharfd under test: its config (rendered from dicts in CONFIG.md's shape)
and the process.

  render_config(cfg)       a dict -> libconfig text (Array for [ ... ])
  build_config(port, ...)  one http listener forwarding to target groups
  targets_config(...)      build_config plus an admin block and group
                           "web"'s health check, passive and drain settings
  config_text(...)         what the `wharfd` fixture starts: targets or a
                           whole config, and the listener port
  Wharfd                   one wharfd process: start (waits for its ports),
                           stop (returns what went wrong), client helpers

Only loopback is ever addressed."""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from .admin_client import admin_block
from .http_client import DEFAULT_IO_TIMEOUT, RawClient
from .loopback_server import LOOPBACK
from .ports import free_port, wait_port_open

# --------------------------------------------------------------------------
# configuration


class Array(list):
    """Rendered as a libconfig array [ ... ] instead of a list ( ... )."""


def render_config_value(value, indent=0):
    pad = "  " * indent
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        r = repr(value)
        return r if ("." in r or "e" in r) else r + ".0"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, Array):
        return "[ " + ", ".join(render_config_value(v, indent + 1) for v in value) + " ]"
    if isinstance(value, (list, tuple)):
        if not value:
            return "()"
        inner = (",\n" + pad + "  ").join(render_config_value(v, indent + 1) for v in value)
        return "(\n" + pad + "  " + inner + "\n" + pad + ")"
    if isinstance(value, dict):
        inner = "".join("%s  %s = %s;\n" % (pad, k, render_config_value(v, indent + 1)) for k, v in value.items())
        return "{\n" + inner + pad + "}"
    raise TypeError("cannot render %r in libconfig" % (value,))


def render_config(cfg):
    return "".join("%s = %s;\n" % (k, render_config_value(v)) for k, v in cfg.items())


def _target_addr(t):
    return t if isinstance(t, str) else t.addr


def build_config(port, targets=(), groups=None, default_group="web", workers=1, log_level="debug",
                 limits=None, timeouts=None, idle_timeout=None, listener_extra=None, extra=None):
    """A config dict in CONFIG.md's shape: one http listener on
    127.0.0.1:port forwarding to default_group; groups maps names to target
    lists (Upstream objects or "IP:port" strings; default {"web": targets})."""
    if groups is None:
        groups = {default_group: list(targets)}
    cfg = {"workers": workers, "log": {"level": log_level}}
    if limits:
        cfg["limits"] = dict(limits)
    t = {"shutdown_drain": 1}  # keep teardown fast; tests here do not test draining
    t.update(timeouts or {})
    cfg["timeouts"] = t
    listener = {"name": "http", "bind": "%s:%d" % (LOOPBACK, port), "protocol": "http"}
    if idle_timeout is not None:
        listener["idle_timeout"] = idle_timeout
    listener["default_action"] = {"forward": [{"target_group": default_group}]}
    if listener_extra:
        listener.update(listener_extra)
    cfg["listeners"] = [listener]
    cfg["target_groups"] = [{"name": name, "targets": [_target_addr(x) for x in tl]} for name, tl in groups.items()]
    if extra:
        cfg.update(extra)
    return cfg




HC_FAST = {"path": "/health", "interval": 1, "timeout": 0.5, "healthy_threshold": 2,
           "unhealthy_threshold": 2}


def targets_config(port, admin_port, token_file, targets, health_check=None, passive=None,
                   deregistration_delay=None, workers=2, more_groups=None, extra_listeners=(),
                   log_level="info", access_log=None):
    """build_config's shape plus the admin block and group "web"'s settings.
    targets: addresses, servers (.addr) or dicts {address, weight}.
    more_groups: {name: [targets]} (no checks). extra_listeners: (port, group)
    pairs, each a listener forwarding to that group. access_log: a path."""
    cfg = build_config(port, [], workers=workers, log_level=log_level,
                       timeouts={"shutdown_drain": 1, "upstream_connect": 1})
    if access_log:
        cfg["log"]["access_log"] = str(access_log)
    web = {"name": "web"}
    if deregistration_delay is not None:
        web["deregistration_delay"] = deregistration_delay
    if health_check is not None:
        web["health_check"] = dict(health_check)
    if passive is not None:
        web["passive"] = dict(passive)
    web["targets"] = [t if isinstance(t, (str, dict)) else t.addr for t in targets]
    cfg["target_groups"] = [web] + [{"name": n, "targets": [t if isinstance(t, (str, dict)) else t.addr for t in tl]}
                                    for n, tl in (more_groups or {}).items()]
    for i, (lport, group) in enumerate(extra_listeners):
        cfg["listeners"].append({"name": "http%d" % (i + 2), "bind": "%s:%d" % (LOOPBACK, lport),
                                 "protocol": "http",
                                 "default_action": {"forward": [{"target_group": group}]}})
    cfg["admin"] = admin_block(admin_port, token_file)
    return cfg


def write_config_atomically(w, cfg):
    """Replace w's config file in one rename (a reload never reads half a file)."""
    text = cfg if isinstance(cfg, str) else render_config(cfg)
    tmp = w.config_path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, w.config_path)
    return text


def config_text(targets=(), config=None, port=None, **build_options):
    """(config text, listener port) of a wharfd the `wharfd` fixture starts.

    Without config: build_config(port, targets, **build_options), on a free
    port unless port is given. With config (a dict rendered by render_config,
    or text): that config as it is, and port is the listener wharfd must
    accept on; when port is None the config's "{port}" is replaced by a free
    port."""
    if config is None:
        port = free_port() if port is None else port
        return render_config(build_config(port, targets, **build_options)), port
    if targets or build_options:
        raise TypeError("config= is the whole config: no targets or build_config options with it")
    text = config if isinstance(config, str) else render_config(config)
    if port is None:
        if "{port}" not in text:
            raise TypeError("config= needs port= (the listener wharfd must accept on) or a {port} in the text")
        port = free_port()
        text = text.replace("{port}", str(port))
    return text, port


# --------------------------------------------------------------------------
# the process

# In wharfd's stderr, any of these fails the test (ASan, LSan, UBSan).
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "LeakSanitizer", "runtime error:")

# How long a wharfd may take to exit after SIGTERM at the end of a test.
TERM_TIMEOUT = 10.0


def describe_status(rc):
    """A Popen returncode in words."""
    if rc is None:
        return "still running"
    if rc < 0:
        try:
            return "killed by %s" % signal.Signals(-rc).name
        except ValueError:
            return "killed by signal %d" % -rc
    return "exit status %d" % rc


class Wharfd:
    """One wharfd process with its config file and stderr in workdir.

    start() returns once its listener (127.0.0.1:port) and every port in
    wait_ports accept connections. stop() ends it and returns the problems
    found, each of which fails the test at teardown:
      - with exit_expected None (the default) wharfd must still run when the
        test ends and exit 0 within TERM_TIMEOUT of SIGTERM;
      - a test that makes wharfd exit says with what: exit_expected is the
        Popen returncode it must end with (0, 1, -signal.SIGKILL, ...),
        whether it exits during the test or on the SIGTERM at the end;
      - a wharfd still running TERM_TIMEOUT after SIGTERM is killed and
        reported;
      - a sanitizer report (SANITIZER_MARKERS) in its stderr."""

    def __init__(self, binary, workdir, config_text, port, index, wait_ports=(), exit_expected=None):
        self.binary = binary
        self.workdir = Path(workdir)
        self.port = port
        self.wait_ports = list(wait_ports)
        self.index = index
        self.exit_expected = exit_expected
        self.config_path = self.workdir / ("wharfd-%d.conf" % index)
        self.stderr_path = self.workdir / ("wharfd-%d.stderr" % index)
        self.config_path.write_text(config_text)
        self.proc = None
        self._stderr_f = None
        self.start_failed = False

    @property
    def addr(self):
        return "%s:%d" % (LOOPBACK, self.port)

    def stderr_text(self, limit=30000):
        try:
            data = self.stderr_path.read_bytes()
        except OSError:
            return "(no stderr file)"
        text = data.decode("utf-8", "replace")
        if len(text) > limit:
            text = "...(%d bytes cut)...\n" % (len(text) - limit) + text[-limit:]
        return text

    def start(self, timeout=10.0):
        self._stderr_f = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([str(self.binary), "-c", str(self.config_path)], stdin=subprocess.DEVNULL,
                                     stdout=self._stderr_f, stderr=self._stderr_f, cwd=str(self.workdir))
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self.start_failed = True
                raise AssertionError("wharfd exited with status %s before its listener accepted connections.\n"
                                     "config:\n%s\nstderr:\n%s" % (rc, self.config_path.read_text(), self.stderr_text()))
            try:
                s = socket.create_connection((LOOPBACK, self.port), timeout=0.2)
                s.close()
                break
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise AssertionError("wharfd's listener %s did not accept within %.0fs.\nstderr:\n%s"
                                     % (self.addr, timeout, self.stderr_text()))
            time.sleep(0.01)  # poll interval of the wait for the listener
        for p in self.wait_ports:
            wait_port_open(p, timeout, "wharfd #%d" % self.index, alive=self.alive)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, term_timeout=TERM_TIMEOUT):
        """SIGTERM unless wharfd has exited already, SIGKILL after
        term_timeout. Returns the problems found (see the class)."""
        problems = []
        if self.proc is None:
            return problems
        who = "wharfd #%d" % self.index
        expected = 0 if self.exit_expected is None else self.exit_expected
        rc = self.proc.poll()
        if rc is not None:
            if self.start_failed:
                pass  # start() has failed the test with the status and stderr already
            elif self.exit_expected is None:
                problems.append("%s exited during the test (%s); a test that makes it exit says so with "
                                "exit_expected=STATUS" % (who, describe_status(rc)))
            elif rc != expected:
                problems.append("%s ended with %s, the test expected %s"
                                % (who, describe_status(rc), describe_status(expected)))
        else:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                rc = self.proc.wait(timeout=term_timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
                problems.append("%s did not exit within %.0f s of SIGTERM (killed with SIGKILL)"
                                % (who, term_timeout))
            else:
                if rc != expected:
                    problems.append("%s ended with %s after SIGTERM, expected %s"
                                    % (who, describe_status(rc), describe_status(expected)))
        if self._stderr_f:
            self._stderr_f.close()
        text = self.stderr_text(limit=10 ** 7)
        for marker in SANITIZER_MARKERS:
            if marker in text:
                problems.append("%s stderr holds a sanitizer report (%r)" % (who, marker))
                break
        return problems

    # -- client conveniences
    def client(self, timeout=DEFAULT_IO_TIMEOUT):
        return RawClient(self.port, timeout=timeout)

    def request(self, method="GET", target="/", headers=(), body=None, host="wharf.test", timeout=None):
        """One request on a fresh connection; returns the response."""
        with self.client() as c:
            return c.request(method, target, headers=headers, body=body, host=host, timeout=timeout)

    def get(self, target="/", **kw):
        return self.request("GET", target, **kw)
