"""The demo web app (tests/app/demo-app.c) as a local process, and the two
fixtures every suite that runs it shares (tests/integration through its
conftest.py, tests/app/test_demo_app.py by importing them):

  demo_app     session: the binary's path (str); fails the test when the
               binary is missing
  demo_server  factory: demo_server(wait=True, **env) -> a running DemoApp
               on a free loopback port (env: DEMO_VERSION, DEMO_FAIL_HEALTH,
               DEMO_START_DELAY, DEMO_EXIT_AFTER, ...); wait=False returns
               before it listens. Stopped (SIGTERM, then SIGKILL) at teardown.
"""

import os
import socket
import subprocess
from pathlib import Path

import pytest

from .loopback_server import LOOPBACK
from .paths import demo_app_path
from .ports import free_port, wait_port_open
from .processes import stop_process
from .reporting import add_diag


class DemoApp:
    """One demo app process: PORT on all addresses (reached on loopback),
    a minimal environment (PATH and PORT) plus env, stdout and stderr into
    log_path."""

    def __init__(self, path, workdir, index, env=None, wait=True):
        self.port = free_port()
        self.addr = "%s:%d" % (LOOPBACK, self.port)
        self.log_path = Path(workdir) / ("demo-app-%d.log" % index)
        self._log = open(self.log_path, "wb")
        e = {"PORT": str(self.port), "PATH": "/usr/bin:/bin"}
        e.update({k: str(v) for k, v in (env or {}).items()})
        self.proc = subprocess.Popen([str(path)], env=e, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=self._log)
        if wait:
            self.wait_listening()

    def wait_listening(self, timeout=10):
        wait_port_open(self.port, timeout, "demo-app", alive=lambda: self.proc.poll() is None)

    def connect(self, timeout=5):
        return socket.create_connection((LOOPBACK, self.port), timeout=timeout)

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")[-8000:]
        except OSError:
            return "(no log)"

    def stop(self):
        stop_process(self.proc)
        self._log.close()


@pytest.fixture(scope="session")
def demo_app():
    path = demo_app_path()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail("demo app not found at %s: run `make tests/app/demo-app` in the build directory, "
                    "or point WHARF_BUILD_DIR (or DEMO_APP) at it" % path, pytrace=False)
    return str(path)


@pytest.fixture
def demo_server(request, tmp_path, demo_app):
    made = []

    def make(wait=True, **env):
        d = DemoApp(demo_app, tmp_path, len(made), env=env, wait=False)
        made.append(d)
        add_diag(request, "demo-app %d log" % (len(made) - 1), d.log_text)
        if wait:
            d.wait_listening()
        return d

    yield make
    for d in made:
        d.stop()
