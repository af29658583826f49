"""Client traffic in background threads: keep-alive GET load (LoadGen), a
counted split over keep-alive connections (split_counts), and single slow
requests whose outcome is recorded (SlowRequest, slow_request_on)."""

import collections
import threading
import time

from .http_client import RawClient
from .polling import wait_until
from .upstreams import upstream_of


class LoadGen:
    """`threads` threads, each on one keep-alive connection, sending GETs
    until stop(). Every result is recorded: (t_start, t_end, thread, upstream
    name) for successes; failures keep the exception text. A connection
    wharfd closes cleanly after a response that said `Connection: close` is
    reopened; any other error is a failure (and the connection is reopened)."""

    def __init__(self, port, threads=4, path="/load"):
        self.port = port
        self.path = path
        self.ok = []
        self.failures = []
        self.reconnects = 0
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def start(self):
        for t in self._threads:
            t.start()
        return self

    def count(self):
        with self.lock:
            return len(self.ok)

    # What a subclass changes (tls.TlsLoad): the client, the request
    # and the shape of the records.
    def _connect(self):
        return RawClient(self.port, timeout=5.0)

    def _request(self, c, idx, n):
        return c.request("GET", "%s/%d/%d" % (self.path, idx, n))

    def _ok_entry(self, t0, t1, idx, r):
        return (t0, t1, idx, r.headers.get("x-upstream"))

    def _failure_entry(self, t0, t1, idx, e):
        return (t0, t1, idx, "%s: %s" % (type(e).__name__, e))

    def _run(self, idx):
        c = None
        n = 0
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                if c is None:
                    c = self._connect()
                r = self._request(c, idx, n)
                t1 = time.monotonic()
                n += 1
                if r.status != 200:
                    raise AssertionError("status %d: %r" % (r.status, r))
                with self.lock:
                    self.ok.append(self._ok_entry(t0, t1, idx, r))
                if "close" in (r.headers.get("connection") or "").lower():
                    c.close()
                    c = None
                    with self.lock:
                        self.reconnects += 1
            except Exception as e:
                with self.lock:
                    self.failures.append(self._failure_entry(t0, time.monotonic(), idx, e))
                if c is not None:
                    c.close()
                c = None
        if c is not None:
            c.close()

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)


def split_counts(port, n, threads=2, path="/split", headers=()):
    """n GETs spread over `threads` keep-alive connections (one per thread).
    Returns (Counter of upstream names, [Counter per connection], seconds).
    Every response must be a 200 from an upstream; the first failure
    (exception text) fails the caller's assertion via the returned errors."""
    per = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]
    results = [collections.Counter() for _ in range(threads)]
    errors = []

    def run(i):
        try:
            with RawClient(port, timeout=10) as c:
                for k in range(per[i]):
                    r = c.request("GET", "%s/%d/%d" % (path, i, k), headers=headers)
                    if r.status != 200:
                        raise AssertionError("request %d on connection %d: %r" % (k, i, r))
                    results[i][upstream_of(r)] += 1
                    if "close" in (r.headers.get("connection") or "").lower():
                        raise AssertionError("wharfd closed keep-alive connection %d after %d requests: %r"
                                             % (i, k + 1, r))
        except Exception as e:  # reported by the caller
            errors.append("connection %d: %s: %s" % (i, type(e).__name__, e))

    ts = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(threads)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=120)
    dt = time.monotonic() - t0
    assert not errors, errors[:5]
    assert not any(t.is_alive() for t in ts), "load threads still running after 120 s"
    total = collections.Counter()
    for c in results:
        total.update(c)
    assert sum(total.values()) == n, (n, total)
    return total, results, dt


class SlowRequest:
    """GET path on a fresh connection to wharfd in its own thread: .status,
    .upstream (X-Upstream), .error, .t_start / .t_end (monotonic)."""

    def __init__(self, port, path, timeout=15.0):
        self.port = port
        self.path = path
        self.timeout = timeout
        self.status = None
        self.upstream = None
        self.error = None
        self.t_start = self.t_end = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.t_start = time.monotonic()
        try:
            with RawClient(self.port, timeout=self.timeout) as c:
                r = c.request("GET", self.path)
            self.status = r.status
            self.upstream = r.headers.get("x-upstream")
        except Exception as e:
            self.error = "%s: %s" % (type(e).__name__, e)
        finally:
            self.t_end = time.monotonic()
            self.done.set()

    def wait(self, timeout):
        assert self.done.wait(timeout), "request %s did not finish within %.1fs" % (self.path, timeout)
        return self

    def describe(self):
        return "%s -> status %s from %s, error %s, %.3fs" % (
            self.path, self.status, self.upstream, self.error,
            (self.t_end or time.monotonic()) - self.t_start if self.t_start else -1)


def slow_request_on(port, server, others, ms=1500, attempts=30, tag="slow"):
    """Start slow requests until one is in flight on server (round robin puts
    them elsewhere too). Returns (the one on server, all started). Where one
    lands depends on how the load threads interleave with it, so the search
    gets enough tries that missing a third of the targets 30 times in a row
    (about 5 in a million) is never the reason a run fails."""
    started = []
    for k in range(attempts):
        req = SlowRequest(port, "/slow?ms=%d&%s=%d" % (ms, tag, k))
        started.append(req)
        # where did it land? (poll the origins' records for its unique path)
        path = req.path

        def landed():
            for s in [server] + list(others):
                with s.lock:
                    if path in s.slow_seen:
                        return s
            return req.done.is_set() and "done"
        where = wait_until(landed, 5, lambda: "slow request %s reached no origin: %s" % (path, req.describe()))
        if where is server:
            return req, started
    raise AssertionError("none of %d slow requests landed on %s" % (attempts, server.name))
