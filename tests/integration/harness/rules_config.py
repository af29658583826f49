"""Config builders for listener rules and load balancing, in CONFIG.md's
shape: target groups (tg), weighted forwards (fwd), conditions (cond),
rules, listeners and the whole config."""

from .loopback_server import LOOPBACK
from .wharfd import Array


def addr_of(t):
    return t if isinstance(t, str) else t.addr


def tg(name, targets, **settings):
    """A target group: targets are upstreams/servers (.addr), "IP:port" or
    (target, weight) pairs (rendered as { address; weight; })."""
    g = {"name": name}
    g.update(settings)
    out = []
    for t in targets:
        if isinstance(t, tuple):
            out.append({"address": addr_of(t[0]), "weight": t[1]})
        else:
            out.append(addr_of(t))
    g["targets"] = out
    return g


def fwd(*groups):
    """forward = ( ... ): fwd("a") or fwd(("a", 90), ("b", 10))."""
    out = []
    for g in groups:
        if isinstance(g, tuple):
            out.append({"target_group": g[0], "weight": g[1]})
        else:
            out.append({"target_group": g})
    return out


def cond(**kw):
    """conditions = { ... }: list values become libconfig arrays; header and
    query stay blocks (their values too become arrays)."""
    out = {}
    for k, v in kw.items():
        if k in ("header", "query"):
            v = dict(v)
            v["values"] = Array(v["values"])
            out[k] = v
        else:
            out[k] = Array(v)
    return out


def rule(priority, conditions, **action):
    r = {"priority": priority, "conditions": conditions}
    r.update(action)
    return r


def listener(name, port, default_action, rules=None, **extra):
    lst = {"name": name, "bind": "%s:%d" % (LOOPBACK, port), "protocol": "http"}
    lst.update(extra)
    if rules is not None:
        lst["rules"] = list(rules)
    lst["default_action"] = default_action
    return lst


def config(listeners, groups, workers=2, log_level="info", admin=None, timeouts=None):
    t = {"shutdown_drain": 1}
    t.update(timeouts or {})
    cfg = {"workers": workers, "log": {"level": log_level}, "timeouts": t,
           "listeners": list(listeners), "target_groups": list(groups)}
    if admin is not None:
        cfg["admin"] = admin
    return cfg
