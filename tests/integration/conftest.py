"""Fixtures of the integration suite: real processes only. wharfd runs as a
subprocess with a generated config; origin servers run in this process
(threads with raw sockets on 127.0.0.1) or as their own processes, and
record what they receive, so a test can prove exactly what reached them.
The library code is the `harness` package next to this file (see
harness/__init__.py for its modules).

Fixtures
  wharf_binary    session: path of wharfd (harness.paths.WHARFD)
  wharfd          factory: wharfd(targets=(), config=None, port=None,
                  wait_ports=(), exit_expected=None, **build_config options)
                  -> a running harness.wharfd.Wharfd. Either targets (and
                  build_config options: groups=, workers=, limits=,
                  timeouts=, ...) on a free port or port=, or a whole config=
                  (dict or text) whose listener is port= (or "{port}" in it).
                  wait_ports: more ports (admin, other listeners) to wait for.
                  exit_expected: the exit status the test makes wharfd end
                  with; without it, wharfd must run until the end of the test
                  and exit 0 on SIGTERM. Teardown fails the test otherwise, on
                  a wharfd that outlives SIGTERM by 10 s, and on any sanitizer
                  report in its stderr.
  upstream        factory: upstream(handler=None, name=None) -> Upstream
  raw_upstream    factory: raw_upstream(handler, name=None) -> RawUpstream
  health_server   factory: health_server(name=None) -> HealthServer
  server_proc     factory: server_proc(name) -> ServerProc (a HealthServer in
                  its own process, which a test may SIGKILL)
  health_driver   factory: health_driver(config_text) -> HealthDriver (the
                  target registry's driver program)
  demo_app        session: path of the demo app binary
  demo_server     factory: demo_server(wait=True, **env) -> DemoApp
  refused_target  factory: refused_target() -> "127.0.0.1:PORT" with nothing listening
  blackhole       factory: blackhole() -> Blackhole, a loopback listener whose
                  accept queue is full, so a connect() to it hangs

Every server and process a fixture starts is stopped at teardown, also when
the test fails; what a fixture records for diagnostics (configs, stderr,
server state) is shown with a failed test's report. Only loopback is ever
addressed.
"""

import os

import pytest

from harness.demo_app import demo_app, demo_server  # noqa: F401  (fixtures)
from harness.health_driver import HealthDriver
from harness.health_server import HealthServer, ServerProc
from harness.paths import HEALTH_DRIVER, WHARFD
from harness.loopback_server import LOOPBACK
from harness.ports import free_port
from harness.reporting import add_diag, diagnostics_sections, serve_for_test
from harness.upstreams import Blackhole, RawUpstream, Upstream
from harness.wharfd import Wharfd, config_text


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed report carries the diagnostics the test's fixtures attached."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        rep.sections.extend(diagnostics_sections(item, rep.when))


@pytest.fixture(scope="session")
def wharf_binary():
    if not WHARFD.is_file() or not os.access(WHARFD, os.X_OK):
        pytest.fail("wharfd not found at %s: build it, or point WHARF_BUILD_DIR at a configured build "
                    "directory holding wharfd" % WHARFD, pytrace=False)
    return WHARFD


@pytest.fixture
def wharfd(request, tmp_path, wharf_binary):
    procs = []

    def start(targets=(), config=None, port=None, wait_ports=(), exit_expected=None, **build_options):
        text, port = config_text(targets, config, port, **build_options)
        w = Wharfd(wharf_binary, tmp_path, text, port, len(procs), wait_ports=wait_ports,
                   exit_expected=exit_expected)
        procs.append(w)
        add_diag(request, "wharfd #%d config" % w.index, lambda: w.config_path.read_text())
        add_diag(request, "wharfd #%d stderr" % w.index, w.stderr_text)
        w.start()
        return w

    yield start
    problems = []
    for w in procs:
        problems += w.stop()
    if problems:
        pytest.fail("; ".join(problems) + "\n" + "\n".join(w.stderr_text(8000) for w in procs), pytrace=False)


@pytest.fixture
def upstream(request):
    def new(i, handler=None, name=None):
        u = Upstream(handler, name or "up%d" % i)
        add_diag(request, "upstream %s" % u.name, u.describe)
        return u

    yield from serve_for_test(new, lambda u: u.handler_errors, "upstream handler errors (a test bug)")


@pytest.fixture
def raw_upstream(request):
    yield from serve_for_test(lambda i, handler, name=None: RawUpstream(handler, name or "raw%d" % i),
                              lambda u: u.errors, "raw upstream errors")


@pytest.fixture
def health_server(request):
    def new(i, name=None):
        s = HealthServer(name or "hs%d" % i)
        add_diag(request, "server %s" % s.name, s.describe)
        return s

    yield from serve_for_test(new, lambda s: s.errors, "origin server errors (a test bug)")


@pytest.fixture
def server_proc(request, tmp_path):
    made = []

    def make(name):
        p = ServerProc(name, tmp_path)
        made.append(p)
        add_diag(request, "server process %s log" % name, p.log_text)
        return p

    yield make
    for p in made:
        p.stop()


@pytest.fixture
def health_driver(tmp_path):
    if not HEALTH_DRIVER.is_file():
        pytest.fail("%s not found: build it (make) or set WHARF_BUILD_DIR" % HEALTH_DRIVER, pytrace=False)
    made = []

    def start(text):
        h = HealthDriver(tmp_path, text, len(made))
        made.append(h)
        return h

    yield start
    problems = [p for h in made for p in h.stop()]
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture
def refused_target():
    return lambda: "%s:%d" % (LOOPBACK, free_port())


@pytest.fixture
def blackhole():
    made = []

    def make():
        b = Blackhole()
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()
