#!/usr/bin/env python3
"""The audit's /proc scan in-process against `ps -eo pid,oom_score_adj,rss,comm`, with 10 000 processes.

Starts N extra sleeping processes (a spawner in its own session forks them; each child
just pause()s), times oomguard_procfs.scan_oom_scores() in this process against ps over
the same table, prints both and the ratio (goal <= 1.0), then kills every process it
started: on normal exit, on Ctrl-C/SIGTERM, and through PR_SET_PDEATHSIG if this
process itself is killed. Prints figures only: it never fails on a time.
"""

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "module_utils"))
from _common import median, table  # noqa: E402
from oomguard_procfs import scan_oom_scores  # noqa: E402

PR_SET_PDEATHSIG = 1

# Runs as a separate process: forks `count` children that pause() until killed, then
# reports "ready" on stdout and pauses itself. Every child dies with its parent.
SPAWNER = r"""
import ctypes, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(1, signal.SIGKILL)
count = int(sys.argv[1])
for _ in range(count):
    pid = os.fork()
    if pid == 0:
        libc.prctl(1, signal.SIGKILL)
        if os.getppid() == 1:
            os._exit(0)
        while True:
            signal.pause()
sys.stdout.write("ready\n")
sys.stdout.flush()
while True:
    signal.pause()
"""


def _pdeathsig():
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Sleepers(object):
    """Context manager: `count` sleeping processes, all killed on the way out."""

    def __init__(self, count):
        self.count = count
        self.spawner = None

    def __enter__(self):
        if self.count <= 0:
            return self
        self.spawner = subprocess.Popen([sys.executable, "-c", SPAWNER, str(self.count)], stdout=subprocess.PIPE,
                                        start_new_session=True, preexec_fn=_pdeathsig)
        line = self.spawner.stdout.readline()
        if line.strip() != b"ready":
            self.__exit__(None, None, None)
            raise RuntimeError("the spawner could not start %d processes (pids.max or ulimit -u?)" % self.count)
        return self

    def __exit__(self, *exc):
        if self.spawner is None:
            return False
        try:
            os.killpg(self.spawner.pid, signal.SIGKILL)  # the spawner and every child share its group
        except ProcessLookupError:
            pass
        self.spawner.wait()
        # Children are reaped by init once their parent is gone; wait until they have left /proc.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _group_alive(self.spawner.pid):
            time.sleep(0.2)
        self.spawner = None
        return False


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def ps_argv():
    """ps with the oom_score_adj column under whichever name this procps knows."""
    for column in ("oom_score_adj", "oomadj"):
        argv = ["ps", "-eo", "pid,%s,rss,comm" % column]
        if subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
            return argv
    raise RuntimeError("ps knows neither oom_score_adj nor oomadj")


def time_scan(rounds):
    times, count = [], 0
    for _ in range(rounds):
        start = time.monotonic()
        count = len(scan_oom_scores())
        times.append(time.monotonic() - start)
    return times, count


def time_ps(argv, rounds):
    times, count = [], 0
    for _ in range(rounds):
        start = time.monotonic()
        out = subprocess.run(argv, stdout=subprocess.PIPE, check=True).stdout
        times.append(time.monotonic() - start)
        count = out.count(b"\n") - 1
    return times, count


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=10000, help="extra sleeping processes to start")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))  # unwind through __exit__
    argv = ps_argv()
    start = time.monotonic()
    with Sleepers(args.processes):
        spawn = time.monotonic() - start
        scan, scan_count = time_scan(args.rounds)
        ps, ps_count = time_ps(argv, args.rounds)
    print("/proc scan with %d extra sleeping processes (started in %.1f s, all killed): %d rounds (seconds)" % (
        args.processes, spawn, args.rounds))
    rows = [("scan_oom_scores (in-process)", scan_count, "%.3f" % median(scan), "%.3f" % min(scan)),
            (" ".join(argv), ps_count, "%.3f" % median(ps), "%.3f" % min(ps))]
    print(table(rows, ("reader", "processes", "median", "min")))
    print("ratio scan/ps: %.2f   (goal <= 1.0)" % (median(scan) / median(ps)))


if __name__ == "__main__":
    main()
