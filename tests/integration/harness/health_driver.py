"""The target registry's driver program (paths.HEALTH_DRIVER): the registry
and its health checker on a control loop that prints every state change and
every published snapshot as JSON lines and takes commands on stdin
(register, deregister, reload, hold/release a worker's request, passive
counters, stats with loop lag and CPU time). The `health_driver` fixture
starts one per config."""

import json
import subprocess
import threading
import time

from .paths import HEALTH_DRIVER


class HealthDriver:
    """The driver program (HEALTH_DRIVER) running one config: its output
    objects as they arrive, commands on its stdin."""
    def __init__(self, workdir, text, index):
        self.workdir = workdir
        self.config_path = workdir / ("health-%d.conf" % index)
        self.config_path.write_text(text)
        self.lines = []
        self.stderr = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen([str(HEALTH_DRIVER), "-c", str(self.config_path)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self._threads = [threading.Thread(target=self._read_out, daemon=True),
                         threading.Thread(target=self._read_err, daemon=True)]
        for t in self._threads:
            t.start()
        self.ready = self.wait_for(lambda o: o["type"] == "ready", 10, "%s never got ready" % HEALTH_DRIVER.name)

    def _read_out(self):
        for line in self.proc.stdout:
            obj = json.loads(line)
            with self.cond:
                self.lines.append(obj)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def _read_err(self):
        for line in self.proc.stderr:
            if len(self.stderr) < 2000:
                self.stderr.append(line)

    def describe(self, last=40):
        with self.cond:
            tail = self.lines[-last:]
        return "last output:\n%s\nstderr:\n%s" % ("\n".join(json.dumps(o) for o in tail),
                                                   "".join(self.stderr[-40:]))

    def wait_for(self, pred, timeout, message, start=0):
        """The first output object from index start on that satisfies pred."""
        deadline = time.monotonic() + timeout
        with self.cond:
            i = start
            while True:
                while i < len(self.lines):
                    if pred(self.lines[i]):
                        return self.lines[i]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    break
                self.cond.wait(min(left, 0.1))
        raise AssertionError("%s (within %.1fs)\n%s" % (message, timeout, self.describe()))

    def mark(self):
        with self.cond:
            return len(self.lines)

    def send(self, command, timeout=10):
        start = self.mark()
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        word = command.split()[0]
        return self.wait_for(lambda o: o["type"] == "reply" and o["cmd"] == word, timeout,
                             "no reply to %r" % command, start)

    def event(self, address, new, start=0, timeout=10, reason=None):
        return self.wait_for(lambda o: o["type"] == "event" and o["address"] == address and o["new"] == new
                             and (reason is None or o["reason"] == reason), timeout,
                             "%s never became %s%s" % (address, new, " (%s)" % reason if reason else ""), start)

    def publish(self, pred, start=0, timeout=10, message="no such snapshot published", group="web"):
        return self.wait_for(lambda o: o["type"] == "publish" and o["group"] == group and pred(o), timeout,
                             message, start)

    def events_of(self, address):
        with self.cond:
            return [o for o in self.lines if o["type"] == "event" and o["address"] == address]

    def stop(self):
        problems = []
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                problems.append("%s did not quit within 10 s" % HEALTH_DRIVER.name)
        for t in self._threads:
            t.join(timeout=5)
        if self.proc.returncode != 0:
            problems.append("%s exited with %s" % (HEALTH_DRIVER.name, self.proc.returncode))
        if any("Sanitizer" in line for line in self.stderr):
            problems.append("sanitizer report:\n" + "".join(self.stderr[-60:]))
        return problems
