"""Fixtures for tests against real Docker engines (tests/fleet/fleet.sh);
the Fleet, Host and Container they give are in harness/fleet.py.

Fixtures
  demo_app      session: path (str) of the static demo app binary
                (harness/demo_app.py, through tests/integration/conftest.py).
  fleet         session: a Fleet of 3 engines ("EC2 hosts" h1, h2, h3), each
                in its own network namespace, TCP + mutual TLS on ADDR:2376
                and a unix socket, images wharf-demo:v1/v2/bad/hc imported.
  local_engine  session: a Fleet of one engine ("local") in the root
                namespace on a unix socket only; published ports are reached
                at 127.0.0.1:PORT.

Each fleet is torn down with `fleet.sh down` when the session ends, also on
failure.
"""

import os
import signal

import pytest

from harness.fleet import start_fleet


@pytest.fixture(scope="session")
def _term_as_interrupt():
    """SIGTERM to pytest unwinds like Ctrl-C, so fixtures tear fleets down."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        def handler(signum, frame):
            raise KeyboardInterrupt("SIGTERM")
        signal.signal(signal.SIGTERM, handler)
    yield


@pytest.fixture(scope="session")
def _fleet_tmp(tmp_path_factory):
    return str(tmp_path_factory.mktemp("fleets"))


@pytest.fixture(scope="session")
def fleet(demo_app, _fleet_tmp, _term_as_interrupt):
    if os.geteuid() != 0:
        pytest.skip("the fleet needs root (network namespaces, dockerd)")
    f = None
    try:
        f = start_fleet(lambda d: ("up", 3, d), demo_app, _fleet_tmp)
        yield f
    finally:
        if f is not None:
            f.down()


@pytest.fixture(scope="session")
def local_engine(demo_app, _fleet_tmp, _term_as_interrupt):
    if os.geteuid() != 0:
        pytest.skip("the local engine needs root (dockerd)")
    f = None
    try:
        f = start_fleet(lambda d: ("local", d), demo_app, _fleet_tmp)
        yield f
    finally:
        if f is not None:
            f.down()
