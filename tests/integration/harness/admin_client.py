"""The admin API: its config block, its token file and a client for it
(JSON endpoints under /v1, /metrics)."""

import json
import time
import urllib.parse

from .http_client import RawClient
from .loopback_server import LOOPBACK
from .polling import wait_until
from .prometheus import parse_prometheus


def admin_block(admin_port, token_file):
    return {"bind": "%s:%d" % (LOOPBACK, admin_port), "token_file": str(token_file), "metrics_public": True}


def write_token(tmp_path, token="admin-test-token"):
    """Write the admin token file; returns (path, token)."""
    p = tmp_path / "admin.token"
    p.write_text(token + "\n")
    return p, token


class Admin:
    def __init__(self, port, token):
        self.port = port
        self.token = token

    def request(self, method, path, body=None, token=True, timeout=5.0):
        headers = []
        if token is True:
            headers.append(("Authorization", "Bearer %s" % self.token))
        elif token:
            headers.append(("Authorization", token))
        if body is not None:
            if not isinstance(body, (bytes, str)):
                body = json.dumps(body)
            headers.append(("Content-Type", "application/json"))
        with RawClient(self.port, timeout=timeout) as c:
            return c.request(method, path, headers=headers, body=body, host="%s:%d" % (LOOPBACK, self.port))

    def groups(self):
        r = self.request("GET", "/v1/target-groups")
        assert r.status == 200, r
        return r.json()

    def group(self, name="web"):
        for g in self.groups():
            if g["name"] == name:
                return g
        return None

    def targets(self, group="web"):
        """{address: target dict} of the group (draining ones included)."""
        g = self.group(group)
        assert g is not None, "no group %s in GET /v1/target-groups: %s" % (group, self.groups())
        return {t["address"]: t for t in g["targets"]}

    def target(self, addr, group="web"):
        return self.targets(group).get(addr)

    def state(self, addr, group="web"):
        t = self.target(addr, group)
        return t and t["state"]

    def wait_state(self, addr, states, timeout, group="web", interval=0.02):
        """Poll until addr's state is in states (None: gone); returns
        (target dict or None, seconds waited)."""
        if isinstance(states, str) or states is None:
            states = (states,)
        t0 = time.monotonic()
        got = wait_until(lambda: [self.target(addr, group)] if self.state(addr, group) in states else None,
                         timeout,
                         lambda: "target %s did not reach %s within %.1fs; now: %s"
                                 % (addr, states, timeout, self.target(addr, group)),
                         interval=interval)
        return got[0], time.monotonic() - t0

    def register(self, addr, group="web", weight=1, **kw):
        body = {"address": addr}
        if weight is not None:
            body["weight"] = weight
        return self.request("POST", "/v1/target-groups/%s/targets" % group, body=body, **kw)

    def deregister(self, addr, group="web", **kw):
        return self.request("DELETE", "/v1/target-groups/%s/targets/%s" % (group, urllib.parse.quote(addr, safe="")),
                            **kw)

    def metrics_text(self):
        r = self.request("GET", "/metrics", token=False)
        assert r.status == 200, r
        return r.body.decode()

    def metrics(self):
        return parse_prometheus(self.metrics_text())
