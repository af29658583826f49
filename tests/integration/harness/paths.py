"""Where the programs under test are: the build directory ($WHARF_BUILD_DIR,
default build/plain of this checkout) and the binaries in it. Each path is
named in this one place."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
# Absolute: wharfd runs with its test's tmp_path as working directory, so a
# relative WHARF_BUILD_DIR ("build/plain") must be resolved here.
BUILD_DIR = Path(os.environ.get("WHARF_BUILD_DIR", str(REPO / "build" / "plain"))).resolve()

WHARFD = BUILD_DIR / "wharfd"
# The target registry and its health checker on a control loop, driven
# through stdin/stdout (test_health.py).
HEALTH_DRIVER = BUILD_DIR / "tests" / "drivers" / "wh-health-driver"
DOCKER_DRIVER = BUILD_DIR / "tests" / "drivers" / "wh-docker-driver"
FLEET_SH = REPO / "tests" / "fleet" / "fleet.sh"


def demo_app_path():
    """The static demo web app: $DEMO_APP, else the build directory's
    tests/app/demo-app (`make tests/app/demo-app`)."""
    env = os.environ.get("DEMO_APP")
    return Path(env) if env else BUILD_DIR / "tests" / "app" / "demo-app"
