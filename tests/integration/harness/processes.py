"""Other processes as the tests see them: /proc figures, builds, stopping,
and the TCP connections a server has taken a request in on."""

import os
import re
import signal
import subprocess


def sanitizer_build(binary):
    """True when binary was built with ASan (its peak RSS means nothing)."""
    with open(binary, "rb") as f:
        return b"__asan_init" in f.read()


def proc_status_kib(pid, key):
    """A `key:  N kB` field of /proc/PID/status (VmHWM, VmRSS), in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc/%d/status" % (key, pid))


def stop_process(proc, grace=5):
    """SIGTERM, then SIGKILL after grace seconds; waits for the exit."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def process_gone(pid):
    """True once pid is no process at all (exited and reaped by its parent)."""
    return not os.path.exists("/proc/%d" % pid)


def catches_signal(pid, signum):
    """True when process pid has a handler for signum installed, or blocks
    it (a signalfd reader does): from then on the signal no longer kills it
    by its default action."""
    masks = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("SigCgt", "SigBlk"):
                masks[key] = int(value.strip(), 16)
    bit = 1 << (signum - 1)
    return bool((masks.get("SigCgt", 0) | masks.get("SigBlk", 0)) & bit)


_SS_COUNTER = re.compile(r"\b(bytes_received|bytes_sent|data_segs_out):([0-9]+)")


def requests_awaiting_answer(port, netns_of_pid=None):
    """The established TCP connections on local port `port` on which the
    server has read every byte it received (Recv-Q 0, some bytes received)
    and sent nothing back: requests it has taken in and not answered yet.
    Read with `ss -ti` in the network namespace of process netns_of_pid
    (default: ours). Returns [(local, peer, bytes_received)]."""
    cmd = ["ss", "-tinH", "state", "established", "( sport = :%d )" % port]
    if netns_of_pid is not None:
        cmd = ["nsenter", "--net=/proc/%d/ns/net" % netns_of_pid] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=True).stdout
    found = []
    current = None
    for line in out.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():  # "Recv-Q Send-Q local peer" (no state column under a state filter)
            recv_q, _send_q, local, peer = line.split()[:4]
            current = (int(recv_q), local, peer)
            continue
        if current is None:
            continue
        counters = {k: int(v) for k, v in _SS_COUNTER.findall(line)}
        recv_q, local, peer = current
        current = None
        received = counters.get("bytes_received", 0)
        if recv_q == 0 and received > 0 and not counters.get("bytes_sent") and not counters.get("data_segs_out"):
            found.append((local, peer, received))
    return found
