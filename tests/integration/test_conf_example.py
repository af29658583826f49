"""conf/wharfd.conf, the example of CONFIG.md, passes `wharfd -t`: exit 0
and "configuration ok", with the controller's blocks built (no "not built
yet" warning for cluster, controller, hosts, registries or services; the
blocks of later issues, discovery and state, may still warn, and so may
the deployment keys of the rolling-deployments issue)."""

import re
import subprocess
import time

import pytest

from harness.paths import REPO

BUILT = ("cluster", "controller", "hosts", "registries", "services")


@pytest.mark.timeout(30)
def test_wharfd_check_accepts_conf_example(wharf_binary, record_property):
    t0 = time.monotonic()
    # as the README says: from the top of the checkout, with the relative path
    p = subprocess.run([str(wharf_binary), "-t", "-c", "conf/wharfd.conf"], cwd=str(REPO),
                       capture_output=True, text=True, timeout=20)
    out = p.stdout + p.stderr
    assert p.returncode == 0, "wharfd -t -c conf/wharfd.conf: exit %d\n%s" % (p.returncode, out)
    assert "configuration ok" in out, out
    # a whole block not built warns "FILE:LINE: BLOCK: not built yet ..."
    not_built = [line for line in out.splitlines()
                 if re.search(r":\d+: (%s): not built yet" % "|".join(BUILT), line)]
    assert not not_built, not_built
    record_property("duration_s", round(time.monotonic() - t0, 3))
    print("FIGURE conf check (s): %.3f" % (time.monotonic() - t0))
