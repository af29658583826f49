"""Listener rules (as ALB's) through real wharfd processes and real
upstreams: rules are tried by priority (not file order), the first whose
conditions all match wins, else the default action; host (case-insensitive,
wildcards, port ignored), path (case-sensitive, wildcards, query excluded),
method, header, query and source_ip conditions; redirect actions with ALB's
#{...} placeholders and fixed responses, both answered by wharfd itself on a
connection that stays open, with no byte sent to any upstream; SIGHUP
reloads of the rules; `wharfd -t` errors as FILE:LINE.

Every upstream answers with JSON naming itself; one upstream per target
group, named like the group, so the upstream that answered names the action
that was taken."""

import os
import signal
import subprocess

import pytest

from harness.http_client import RawClient, curl, curl_upstream, get
from harness.http_message import REQUEST_ID_RE
from harness.polling import wait_until
from harness.ports import free_port
from harness.rules_config import cond, config, fwd, listener, rule, tg
from harness.upstreams import upstream_of
from harness.wharfd import write_config_atomically


def _groups(upstream, names):
    """One upstream per group, named like it: ({name: Upstream}, [groups])."""
    ups = {n: upstream(name=n) for n in names}
    return ups, [tg(n, [u]) for n, u in ups.items()]


def _route(port, method, target, headers=(), host="wharf.test"):
    with RawClient(port) as c:
        return upstream_of(c.request(method, target, headers=headers, host=host))


def _check_cases(port, cases, host="wharf.test"):
    """cases: (method, target, headers, expected group). Each on a fresh
    connection, then all again on one keep-alive connection (rules are
    evaluated per request, not per connection). Returns the mismatches."""
    bad = []
    for method, target, headers, want in cases:
        got = _route(port, method, target, headers, host)
        if got != want:
            bad.append("fresh connection: %s %s %s -> %s, expected %s" % (method, target, headers, got, want))
    with RawClient(port) as c:
        for method, target, headers, want in cases:
            got = upstream_of(c.request(method, target, headers=headers, host=host))
            if got != want:
                bad.append("keep-alive: %s %s %s -> %s, expected %s" % (method, target, headers, got, want))
    return bad


def _no_bytes(*ups):
    for u in ups:
        assert u.requests() == [] and u.total_bytes() == 0 and not u.connections(), (
            "an upstream received bytes for a request wharfd answers itself:\n%s" % u.describe())


# --------------------------------------------------------------------------
# matching


@pytest.mark.timeout(30)
def test_rules_tried_by_priority_not_file_order_all_conditions_must_match(upstream, wharfd):
    ups, groups = _groups(upstream, ["p5", "p10", "p20", "p30", "dflt"])
    port = free_port()
    rules = [  # file order deliberately unlike priority order
        rule(30, cond(path=["/api/*"]), forward=fwd("p30")),
        rule(20, cond(path=["/api/*"], method=["GET"]), forward=fwd("p20")),
        rule(10, cond(path=["/api/v1/*"]), forward=fwd("p10")),
        rule(5, cond(path=["/api/v1/*"], header={"name": "X-Canary", "values": ["yes"]}), forward=fwd("p5")),
    ]
    wharfd(config=config([listener("http", port, {"forward": fwd("dflt")}, rules)], groups), port=port)
    cases = [
        ("GET", "/api/v1/users", [], "p10"),                       # 30, 20, 10 match: lowest wins
        ("GET", "/api/v1/users", [("X-Canary", "yes")], "p5"),     # now 5 matches too
        ("POST", "/api/v1/users", [("X-Canary", "no")], "p10"),    # 5 needs both conditions
        ("GET", "/api/v2/users", [("X-Canary", "yes")], "p20"),    # 5 and 10: path does not match
        ("POST", "/api/v2/users", [], "p30"),                      # 20: method does not match
        ("GET", "/apiv2", [], "dflt"),
        ("GET", "/", [], "dflt"),
    ]
    bad = _check_cases(port, cases)
    assert not bad, "\n".join(bad)
    for name, u in ups.items():
        want = [t for _, t, _, g in cases if g == name] * 2
        assert sorted(r.target for r in u.requests()) == sorted(want), u.describe()


@pytest.mark.timeout(30)
def test_rules_host_condition_case_insensitive_wildcards_port_ignored(upstream, wharfd):
    ups, groups = _groups(upstream, ["api", "web", "dflt"])
    port = free_port()
    rules = [rule(10, cond(host=["api.example.com", "*.svc.example.com"]), forward=fwd("api")),
             rule(20, cond(host=["w?b.example.org"]), forward=fwd("web"))]
    wharfd(config=config([listener("http", port, {"forward": fwd("dflt")}, rules)], groups), port=port)

    # curl --resolve: Host is NAME:PORT, the port must be ignored
    resolved = [("api.example.com", "api"), ("a.svc.example.com", "api"), ("x.y.svc.example.com", "api"),
                ("svc.example.com", "dflt"), ("web.example.org", "web"), ("wab.example.org", "web"),
                ("weeb.example.org", "dflt"), ("wb.example.org", "dflt"), ("api.example.com.evil.test", "dflt"),
                ("xapi.example.com", "dflt"), ("other.example.com", "dflt")]
    bad = []
    for name, want in resolved:
        got = curl_upstream(port, "/h", resolve=name)
        if got != want:
            bad.append("curl --resolve %s:%d -> %s, expected %s" % (name, port, got, want))
    # explicit Host headers: case, explicit ports, literal dots
    hosts = [("API.Example.COM", "api"), ("api.example.com:8443", "api"), ("A.SVC.EXAMPLE.COM:1", "api"),
             ("Web.Example.ORG", "web"), ("WAB.example.org:%d" % port, "web"), ("apiXexample.com", "dflt"),
             ("api.example.co", "dflt"), ("127.0.0.1:%d" % port, "dflt")]
    for host, want in hosts:
        got = curl_upstream(port, "/h", host=host)
        if got != want:
            bad.append("curl -H 'Host: %s' -> %s, expected %s" % (host, got, want))
        got = _route(port, "GET", "/h", host=host)
        if got != want:
            bad.append("raw socket Host: %s -> %s, expected %s" % (host, got, want))
    assert not bad, "\n".join(bad)
    n_api = sum(1 for _, g in resolved if g == "api") + 2 * sum(1 for _, g in hosts if g == "api")
    assert len(ups["api"].requests()) == n_api, ups["api"].describe()


@pytest.mark.timeout(30)
def test_rules_path_condition_case_sensitive_wildcards_query_excluded(upstream, wharfd):
    ups, groups = _groups(upstream, ["pth", "docs", "five", "dflt"])
    port = free_port()
    rules = [rule(10, cond(path=["/img/*.png", "/v?/status"]), forward=fwd("pth")),
             rule(20, cond(path=["/Docs/*"]), forward=fwd("docs")),
             rule(30, cond(path=["/f/1", "/f/2", "/f/3", "/f/4", "/f/5*"]), forward=fwd("five"))]
    wharfd(config=config([listener("http", port, {"forward": fwd("dflt")}, rules)], groups), port=port)
    cases = [
        ("GET", "/img/a.png", [], "pth"),
        ("GET", "/img/a/b/c.png", [], "pth"),
        ("GET", "/img/a.png?size=2", [], "pth"),
        ("GET", "/img/a.PNG", [], "dflt"),
        ("GET", "/IMG/a.png", [], "dflt"),
        ("GET", "/img/x?y=.png", [], "dflt"),           # the query is not part of the path
        ("GET", "/v1/status", [], "pth"),
        ("GET", "/v1/status?verbose=1", [], "pth"),
        ("GET", "/v10/status", [], "dflt"),              # ? is exactly one character
        ("GET", "/v/status", [], "dflt"),
        ("GET", "/v1/status/", [], "dflt"),              # the whole path must match
        ("GET", "/x/v1/status", [], "dflt"),
        ("GET", "/Docs/intro", [], "docs"),
        ("GET", "/docs/intro", [], "dflt"),
        ("GET", "/f/1", [], "five"),                     # any of 5 values, the last one too
        ("GET", "/f/55", [], "five"),
        ("GET", "/f/6", [], "dflt"),
    ]
    bad = _check_cases(port, cases)
    for path, want in [("/img/q.png?z=1", "pth"), ("/v2/status", "pth"), ("/DOCS/x", "dflt")]:
        got = curl_upstream(port, path, resolve="paths.example.com")
        if got != want:
            bad.append("curl %s -> %s, expected %s" % (path, got, want))
    assert not bad, "\n".join(bad)
    # the upstream gets the target as sent, query included
    targets = [r.target for r in ups["pth"].requests()]
    assert "/img/a.png?size=2" in targets and "/v1/status?verbose=1" in targets, targets


@pytest.mark.timeout(30)
def test_rules_method_header_query_and_source_ip_conditions(upstream, wharfd):
    ups, groups = _groups(upstream, ["meth", "hdr", "qry", "never", "src", "dflt"])
    port = free_port()
    rules = [
        rule(10, cond(method=["PUT", "DELETE"]), forward=fwd("meth")),
        rule(20, cond(header={"name": "X-Canary", "values": ["yes", "y*"]}), forward=fwd("hdr")),
        rule(30, cond(query={"key": "beta", "values": ["1"]}), forward=fwd("qry")),
        rule(40, cond(source_ip=["192.0.2.0/24"]), forward=fwd("never")),
        rule(50, cond(source_ip=["10.0.0.0/8", "127.0.0.0/8"], path=["/src/*"]), forward=fwd("src")),
    ]
    wharfd(config=config([listener("http", port, {"forward": fwd("dflt")}, rules)], groups), port=port)
    cases = [
        # method: exact, any of the values
        ("PUT", "/m", [], "meth"), ("DELETE", "/m", [], "meth"), ("GET", "/m", [], "dflt"),
        ("POST", "/m", [], "dflt"), ("put", "/m", [], "dflt"),
        ("PUT", "/q?beta=1", [("X-Canary", "yes")], "meth"),  # priority 10 before 20 and 30
        # header: name case-insensitive, any value, wildcard
        ("GET", "/h", [("x-canary", "yes")], "hdr"), ("GET", "/h", [("X-CANARY", "yup")], "hdr"),
        ("GET", "/h", [("X-Canary", "y")], "hdr"), ("GET", "/h", [("X-Canary", "no")], "dflt"),
        ("GET", "/h", [("X-Canary-Other", "yes")], "dflt"), ("GET", "/h", [], "dflt"),
        ("GET", "/h?beta=1", [("X-Canary", "yes")], "hdr"),
        # query: key=value pairs of the query string
        ("GET", "/q?beta=1", [], "qry"), ("GET", "/q?a=2&beta=1", [], "qry"), ("GET", "/q?beta=1&a=2", [], "qry"),
        ("GET", "/q?beta=2", [], "dflt"), ("GET", "/q?beta=10", [], "dflt"), ("GET", "/q?xbeta=1", [], "dflt"),
        ("GET", "/q?alpha=1", [], "dflt"), ("GET", "/beta=1", [], "dflt"), ("GET", "/q", [], "dflt"),
        # source_ip: the TCP peer (127.0.0.1), never X-Forwarded-For
        ("GET", "/src/a", [], "src"), ("GET", "/src/b", [("X-Forwarded-For", "192.0.2.7")], "src"),
        ("GET", "/other", [("X-Forwarded-For", "192.0.2.7")], "dflt"),
        ("GET", "/other", [("X-Real-IP", "192.0.2.8")], "dflt"),
    ]
    bad = _check_cases(port, cases)
    for hdrs, want in [([("X-Canary", "yes")], "hdr"), ([("X-Canary", "nope")], "dflt")]:
        got = curl_upstream(port, "/curl-h", resolve="hdr.example.com", headers=hdrs)
        if got != want:
            bad.append("curl %s -> %s, expected %s" % (hdrs, got, want))
    assert not bad, "\n".join(bad)
    _no_bytes(ups["never"])


# --------------------------------------------------------------------------
# actions answered by wharfd


def _check_local_response(r, status, what):
    assert r.status == status, "%s: expected %d, got %r" % (what, status, r)
    assert "close" not in (r.headers.get("connection") or "").lower(), "%s: wharfd closes: %r" % (what, r)
    assert not r.close_delimited, "%s: close-delimited body: %r" % (what, r)


def _body_request_keeps_connection(port, host, method, target, body, check, up):
    """A request with a small body (sent with its head, in wharfd's buffer at
    once) that wharfd answers itself: check(r) the answer; the body is
    dropped, never forwarded, and the connection stays open: the next
    request on it is forwarded to `up`."""
    what = "%s %s with a %d-byte body" % (method, target, len(body))
    n_before = len(up.requests())
    with RawClient(port) as c:
        r = c.request(method, target, body=body, host=host)
        check(r, what)
        _check_local_response(r, r.status, what)
        r2 = c.request("GET", "/after-body", host=host)
        assert upstream_of(r2) == up.name, (what, r2)
    got = [q.target for q in up.requests()[n_before:]]
    assert got == ["/after-body"], "%s: the upstream received %s\n%s" % (what, got, up.describe())
    assert body not in bytes(b"".join(bytes(x.received) for x in up.connections())), up.describe()


@pytest.mark.timeout(30)
def test_redirect_action_location_placeholders_keepalive_and_no_upstream_bytes(upstream, wharfd):
    ups, groups = _groups(upstream, ["web"])
    port = free_port()
    rules = [
        rule(10, cond(path=["/old/*"]),
             redirect={"status": 301, "location": "https://#{host}/new/#{path}?#{query}"}),
        rule(20, cond(path=["/tmp/*"]),
             redirect={"status": 302, "location": "#{protocol}://#{host}:#{port}/moved/#{path}?#{query}"}),
        rule(30, cond(path=["/rel/*"]), redirect={"status": 302, "location": "/landing/#{path}"}),
    ]
    wharfd(config=config([listener("http", port, {"forward": fwd("web")}, rules)], groups), port=port)
    host = "www.example.com:%d" % port
    cases = [
        ("GET", "/old/a/b?x=1&y=2", None, 301, "https://www.example.com/new/old/a/b?x=1&y=2"),
        ("GET", "/old/a", None, 301, "https://www.example.com/new/old/a"),       # no query: no '?'
        ("GET", "/old/a?", None, 301, "https://www.example.com/new/old/a"),      # empty query: no '?'
        ("GET", "/old/", None, 301, "https://www.example.com/new/old/"),
        ("HEAD", "/old/h?k=v", None, 301, "https://www.example.com/new/old/h?k=v"),
        ("GET", "/tmp/z?q=1", None, 302, "http://www.example.com:%d/moved/tmp/z?q=1" % port),
        ("GET", "/tmp/z", None, 302, "http://www.example.com:%d/moved/tmp/z" % port),
        ("GET", "/rel/x?k=v", None, 302, "/landing/rel/x"),                       # relative: as is
    ]
    bad = []
    with RawClient(port) as c:  # one keep-alive connection for all of them
        for i, (method, target, body, status, location) in enumerate(cases):
            rid = "redir-%d" % i
            r = c.request(method, target, headers=[("X-Request-Id", rid)], body=body, host=host)
            what = "%s %s" % (method, target)
            _check_local_response(r, status, what)
            if r.headers.get_all("location") != [location]:
                bad.append("%s: Location %r, expected %r" % (what, r.headers.get_all("location"), location))
            if r.headers.get_all("content-length") != ["0"] or r.body != b"":
                bad.append("%s: Content-Length %r body %r, expected 0 and empty"
                           % (what, r.headers.get_all("content-length"), r.body))
            if r.headers.get_all("x-request-id") != [rid]:
                bad.append("%s: X-Request-Id %r, expected the client's %r" % (what, r.headers.get_all("x-request-id"), rid))
        # without a client id wharfd makes one
        r = c.request("GET", "/old/noid", host=host)
        _check_local_response(r, 301, "GET /old/noid")
        ids = r.headers.get_all("x-request-id")
        assert len(ids) == 1 and REQUEST_ID_RE.match(ids[0]), "redirect without a valid X-Request-Id: %r" % r
        assert not bad, "\n".join(bad)
        _no_bytes(ups["web"])
        # the same connection still carries a forwarded request
        r = c.request("GET", "/forwarded", host=host)
        assert upstream_of(r) == "web", r
    # curl, with --resolve and with an explicit Host
    status, hdrs, body = curl(port, "/old/p?q=1", resolve="www.example.com")
    assert (status, hdrs.get_all("location"), body) == (301, ["https://www.example.com/new/old/p?q=1"], b""), (
        status, list(hdrs), body)
    # #{host} drops the Host header's port, #{port} is the listener's (the
    # host's case may be kept or lowered: hosts are case-insensitive)
    status, hdrs, body = curl(port, "/tmp/a", host="Shop.example.net:8080")
    locs = hdrs.get_all("location")
    assert status == 302 and len(locs) == 1 and locs[0] in (
        "http://Shop.example.net:%d/moved/tmp/a" % port, "http://shop.example.net:%d/moved/tmp/a" % port), (
        status, list(hdrs))
    assert [r.target for r in ups["web"].requests()] == ["/forwarded"], ups["web"].describe()

    def redirected(r, what):
        assert r.status == 301 and r.headers.get_all("location") == ["https://www.example.com/new/old/form"], (
            what, r)
        assert r.headers.get_all("content-length") == ["0"] and r.body == b"", (what, r)
    _body_request_keeps_connection(port, host, "POST", "/old/form", b"field=value&x=1", redirected, ups["web"])


@pytest.mark.timeout(30)
def test_fixed_response_action_exact_status_type_body_and_keepalive(upstream, wharfd):
    ups, groups = _groups(upstream, ["web"])
    port = free_port()
    teapot = '{"short": "and stout"}'
    rules = [
        rule(10, cond(path=["/maintenance"]),
             fixed_response={"status": 503, "content_type": "text/plain", "body": "back soon\n"}),
        rule(20, cond(path=["/teapot/*"]),
             fixed_response={"status": 418, "content_type": "application/json", "body": teapot}),
    ]
    wharfd(config=config([listener("http", port, {"forward": fwd("web")}, rules)], groups), port=port)
    cases = [("GET", "/maintenance", None, 503, "text/plain", b"back soon\n"),
             ("GET", "/maintenance?x=1", None, 503, "text/plain", b"back soon\n"),
             ("GET", "/teapot/pot", None, 418, "application/json", teapot.encode()),
             ("DELETE", "/teapot/x?y=z", None, 418, "application/json", teapot.encode())]
    with RawClient(port) as c:
        for _ in range(2):
            for method, target, body, status, ctype, want in cases:
                r = c.request(method, target, body=body)
                what = "%s %s" % (method, target)
                _check_local_response(r, status, what)
                assert r.headers.get_all("content-type") == [ctype], (what, r)
                assert r.headers.get_all("content-length") == [str(len(want))], (what, r)
                assert r.body == want, (what, r)
        _no_bytes(ups["web"])
        assert upstream_of(c.request("GET", "/maintenance/not-exactly")) == "web"
    status, hdrs, body = curl(port, "/maintenance", resolve="status.example.com")
    assert (status, hdrs.get_all("content-type"), hdrs.get_all("content-length"), body) == (
        503, ["text/plain"], ["10"], b"back soon\n"), (status, list(hdrs), body)
    assert [r.target for r in ups["web"].requests()] == ["/maintenance/not-exactly"], ups["web"].describe()

    def fixed(r, what):
        assert (r.status, r.headers.get_all("content-type"), r.headers.get_all("content-length"), r.body) == (
            503, ["text/plain"], ["10"], b"back soon\n"), (what, r)
    _body_request_keeps_connection(port, "wharf.test", "POST", "/maintenance", b"a=1&b=2", fixed, ups["web"])


@pytest.mark.timeout(30)
def test_default_action_may_be_fixed_response_or_redirect(upstream, wharfd):
    ups, groups = _groups(upstream, ["web"])
    p_fixed, p_redir = free_port(), free_port()
    app = [rule(10, cond(path=["/app/*"]), forward=fwd("web"))]
    listeners = [
        listener("fixed", p_fixed, {"fixed_response": {"status": 404, "content_type": "text/plain",
                                                       "body": "no route\n"}}, app),
        listener("redir", p_redir, {"redirect": {"status": 301, "location": "https://#{host}:443/#{path}?#{query}"}},
                 app),
    ]
    wharfd(config=config(listeners, groups), port=p_fixed, wait_ports=[p_redir])
    with RawClient(p_fixed) as c:
        for target in ("/", "/nothing?x=1", "/apps/1"):
            r = c.request("GET", target)
            _check_local_response(r, 404, target)
            assert (r.headers.get_all("content-type"), r.body) == (["text/plain"], b"no route\n"), r
    with RawClient(p_redir) as c:
        for target, location in (("/", "https://h.example:443/"), ("/x/y?z=1", "https://h.example:443/x/y?z=1")):
            r = c.request("GET", target, host="h.example:%d" % p_redir)
            _check_local_response(r, 301, target)
            assert r.headers.get_all("location") == [location], r
            assert r.body == b"" and r.headers.get_all("content-length") == ["0"], r
    _no_bytes(ups["web"])
    assert _route(p_fixed, "GET", "/app/1") == "web"
    assert _route(p_redir, "GET", "/app/2") == "web"
    assert [r.target for r in ups["web"].requests()] == ["/app/1", "/app/2"], ups["web"].describe()


# --------------------------------------------------------------------------
# reload and config check


@pytest.mark.timeout(30)
def test_sighup_reload_changes_rules_for_new_requests(upstream, wharfd):
    ups, groups = _groups(upstream, ["a", "b"])
    port = free_port()
    old_rules = [rule(10, cond(path=["/x/*"]),
                      fixed_response={"status": 503, "content_type": "text/plain", "body": "old rules\n"})]
    new_rules = [rule(10, cond(path=["/x/*"]), forward=fwd("b")),
                 rule(5, cond(path=["/new"]), redirect={"status": 302, "location": "/elsewhere"})]

    def cfg(rules):
        return config([listener("http", port, {"forward": fwd("a")}, rules)], groups)

    w = wharfd(config=cfg(old_rules), port=port)
    r = get(port, "/x/0")
    assert (r.status, r.body) == (503, b"old rules\n"), r
    assert upstream_of(get(port, "/new")) == "a"

    def reload_until(rules, target, done, what):
        text = write_config_atomically(w, cfg(rules))
        os.kill(w.proc.pid, signal.SIGHUP)
        seen = []

        def probe():
            r = get(port, target)
            seen.append((r.status, r.headers.get("x-upstream"), r.body[:60]))
            return done(r)
        wait_until(probe, 5, lambda: "%s: not in effect 5 s after SIGHUP; answers: %s\nconfig:\n%s\nstderr:\n%s"
                   % (what, seen[-10:], text, w.stderr_text()[-3000:]), interval=0.02)
        return seen

    seen = reload_until(new_rules, "/x/1", lambda r: r.status == 200 and upstream_of(r) == "b", "reload 1")
    odd = [s for s in seen if s[0] not in (200, 503) or (s[0] == 503 and s[2] != b"old rules\n")]
    assert not odd, "answers that are neither the old nor the new rules during the reload: %s" % odd
    for k in range(6):
        assert _route(port, "GET", "/x/k%d" % k) == "b"
        r = get(port, "/new")
        assert r.status == 302 and r.headers.get_all("location") == ["/elsewhere"], r
        assert _route(port, "GET", "/other") == "a"

    # rules removed: everything to the default action
    reload_until(None, "/x/2", lambda r: r.status == 200 and upstream_of(r) == "a", "reload 2")
    assert _route(port, "GET", "/new") == "a"

    # a bad file (rule naming an unknown group) keeps the rules in force
    before = w.stderr_text(limit=10 ** 7).count("reload failed")
    write_config_atomically(w, cfg([rule(10, cond(path=["/x/*"]), forward=fwd("missing"))]))
    os.kill(w.proc.pid, signal.SIGHUP)
    wait_until(lambda: w.stderr_text(limit=10 ** 7).count("reload failed") > before, 5,
               lambda: "no 'reload failed' for a rule naming an unknown group:\n%s" % w.stderr_text()[-3000:])
    for k in range(6):
        assert _route(port, "GET", "/x/after-bad-%d" % k) == "a"


CHECK_TEMPLATE = """\
workers = 1;
listeners = (
  { name = "http"; bind = "127.0.0.1:%(port)d"; protocol = "http";
    rules = (
      { priority = 10; conditions = { path = [ %(paths)s ]; }; forward = ( { target_group = "%(g1)s"; } ); },
      { priority = 20; conditions = { path = [ "/b/*" ]; }; fixed_response = { status = 503; content_type = "text/plain"; body = "b"; }; },
      { priority = %(p3)d; conditions = { host = [ "x.example.com" ]; }; redirect = { status = 301; location = "https://#{host}/#{path}"; }; },
      { priority = 40; conditions = { path = [ "/c/*" ]; }; forward = ( { target_group = "web"; weight = 90; }, { target_group = "%(g4)s"; weight = 10; } ); }
    );
    default_action = { forward = ( { target_group = "web"; } ); };
  }
);
target_groups = ( { name = "web"; targets = ( "127.0.0.1:9" ); },
                  { name = "canary"; targets = ( "127.0.0.1:10" ); } );
"""


def _line_of(text, needle):
    lines = [i + 1 for i, s in enumerate(text.split("\n")) if needle in s]
    assert len(lines) == 1, (needle, lines)
    return lines[0]


@pytest.mark.timeout(30)
def test_config_check_names_file_line_of_duplicate_priority_and_unknown_group(wharf_binary, tmp_path):
    port = free_port()

    def check(name, **kw):
        vals = {"port": port, "g1": "web", "p3": 30, "g4": "canary", "paths": '"/a/*"'}
        vals.update(kw)
        text = CHECK_TEMPLATE % vals
        path = tmp_path / name
        path.write_text(text)
        p = subprocess.run([str(wharf_binary), "-t", "-c", str(path)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=10)
        return p.returncode, p.stdout.decode(errors="replace"), str(path), text

    rc, out, path, text = check("good.conf")
    assert rc == 0 and "configuration ok" in out, "a valid file with every rule kind: rc %d\n%s" % (rc, out)

    def error_lines(out, path, line):
        return [s for s in out.splitlines() if s.startswith("%s:%d:" % (path, line))]

    # duplicate priority: the error names either rule's line and the key
    rc, out, path, text = check("dup.conf", p3=10)
    l1, l3 = _line_of(text, '"/a/*"'), _line_of(text, '"x.example.com"')
    hits = [s for s in error_lines(out, path, l1) + error_lines(out, path, l3) if "priority" in s]
    assert rc == 1 and hits, "duplicate priority 10 (lines %d and %d): rc %d, output:\n%s" % (l1, l3, rc, out)

    # unknown target group: in a single forward and in a weighted one
    for name, kw, needle in (("unknown1.conf", {"g1": "nope"}, '"/a/*"'),
                             ("unknown4.conf", {"g4": "canery"}, '"/c/*"')):
        rc, out, path, text = check(name, **kw)
        line = _line_of(text, needle)
        group = list(kw.values())[0]
        hits = [s for s in error_lines(out, path, line) if group in s]
        assert rc == 1 and hits, "unknown group %r on line %d: rc %d, output:\n%s" % (group, line, rc, out)

    # a condition holds at most 5 values
    rc, out, path, text = check("six.conf", paths='"/1", "/2", "/3", "/4", "/5", "/6"')
    line = _line_of(text, '"/6"')
    hits = [s for s in error_lines(out, path, line) if "path" in s]
    assert rc == 1 and hits, "6 path values on line %d: rc %d, output:\n%s" % (line, rc, out)
    rc, out, path, text = check("five.conf", paths='"/1", "/2", "/3", "/4", "/a/*"')
    assert rc == 0 and "configuration ok" in out, "5 path values: rc %d\n%s" % (rc, out)
