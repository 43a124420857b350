#!/usr/bin/env python3
"""Benchmark oomguard-alertd: alert latency, idle RSS and idle CPU.

Starts a private instance of the agent (its own config, files in a temp dir; the
installed service is not touched), then:

1. idle: lets it run --idle seconds and reads its VmRSS and utime+stime from /proc;
2. pressure, --runs times: a hog process allocates memory step by step until
   MemAvailable falls below the raise threshold (set --drop percentage points below
   the current level, hold 0). A sampler reads /proc/meminfo every 5 ms and notes
   when the reading crosses; the latency is the time from that crossing to the alert
   event's timestamp (the agent's own clock at the tick that fired). The hog then
   exits and the bench waits for the recovery.

Prints figures, never asserts. Run from the repository root:

  python3 bench/alert_latency.py                      # this machine, repo's agent
  python3 bench/alert_latency.py --poll-interval 1    # compare intervals

or on a target where the swap_alert role ran (e.g. the Molecule vm), copy this file:

  python3 alert_latency.py --agent /usr/lib/oomguard/oomguard-alertd \\
      --python-dir /usr/lib/oomguard/python --drop 20

Without --service-pid it also reports the installed service (systemctl MainPID of
oomguard-alertd) when there is one.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
HOG = r"""
import sys, time
step = int(sys.argv[1]); total = int(sys.argv[2]); chunks = []
while sum(len(c) for c in chunks) < total:
    chunks.append(b"\x01" * step)            # filled, so every page is really touched
    time.sleep(0.02)
sys.stdout.write("full\n"); sys.stdout.flush()
sys.stdin.read()                             # hold until the bench closes stdin
"""


def meminfo():
    values = {}
    with open("/proc/meminfo") as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            values[key] = int(rest.split()[0]) * 1024
    return values


def available_percent():
    info = meminfo()
    return 100.0 * info["MemAvailable"] / info["MemTotal"]


def proc_usage(pid):
    with open("/proc/%d/status" % pid) as handle:
        rss = [int(line.split()[1]) * 1024 for line in handle if line.startswith("VmRSS:")][0]
    with open("/proc/%d/stat" % pid) as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return rss, ticks / os.sysconf("SC_CLK_TCK")


def idle_figures(pid, seconds):
    rss0, cpu0 = proc_usage(pid)
    start = time.monotonic()
    time.sleep(seconds)
    rss1, cpu1 = proc_usage(pid)
    wall = time.monotonic() - start
    return rss1, 100.0 * (cpu1 - cpu0) / wall


def read_events(path):
    try:
        with open(path) as handle:
            return [json.loads(line) for line in handle if line.strip()]
    except IOError:
        return []


def wait_event(path, count, severity, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        events = read_events(path)
        if len(events) > count and events[-1]["severity"] == severity:
            return events[-1], len(events)
        time.sleep(0.01)
    return None, len(read_events(path))


def one_run(events_path, raise_percent, drop, count):
    info = meminfo()
    target = info["MemAvailable"] - raise_percent / 100.0 * info["MemTotal"] + 0.02 * info["MemTotal"]
    crossing = {}

    def sample():
        while "time" not in crossing and not crossing.get("stop"):
            if available_percent() <= raise_percent:
                crossing["time"] = time.time()
                return
            time.sleep(0.005)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    hog = subprocess.Popen([sys.executable, "-c", HOG, str(16 * 1024 * 1024), str(int(target))],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    alert, count = wait_event(events_path, count, "warning", 60)
    crossing["stop"] = True
    hog.stdin.close()
    hog.wait()
    recovery, count = wait_event(events_path, count, "recovery", 60)
    if alert is None or "time" not in crossing:
        return None, count
    return alert["time"] - crossing["time"], count


def service_pid():
    try:
        out = subprocess.run(["systemctl", "show", "-p", "MainPID", "--value", "oomguard-alertd"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False).stdout.decode().strip()
        return int(out) if out and out != "0" else None
    except (OSError, ValueError):
        return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agent", default=os.path.join(REPO, "roles", "swap_alert", "files", "oomguard-alertd"))
    parser.add_argument("--python-dir", default=os.path.join(REPO, "module_utils"))
    parser.add_argument("--python", default="/usr/bin/python3", help="interpreter for the agent (the targets' one)")
    parser.add_argument("--poll-interval", type=float, default=2.0, help="agent poll interval (role default 2.0)")
    parser.add_argument("--drop", type=float, default=4.0, help="raise threshold: this many points below current MemAvailable%%")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle measurement")
    parser.add_argument("--service-pid", type=int, default=None)
    parser.add_argument("--early-kills-journal", choices=("off", "on"), default="off",
                        help="on: the agent follows systemd-oomd's kills with a journalctl child (measured too)")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="oomguard-bench-")
    current = available_percent()
    raise_percent = round(current - args.drop, 2)
    events_path = os.path.join(workdir, "alerts.jsonl")
    config = {
        "poll_interval": args.poll_interval,
        "thresholds": {"memory_available": {"warning": {"raise": raise_percent, "clear": min(raise_percent + args.drop / 2, 100),
                                                        "hold": 0, "clear_hold": 0}}},
        "snapshot": {"path": os.path.join(workdir, "snapshots.jsonl")},
        "events": {"path": events_path},
        "metrics": {"path": os.path.join(workdir, "oomguard.prom")},
        "state_path": os.path.join(workdir, "state.json"),
        "sinks_path": os.path.join(workdir, "sinks.json"),
        "journal_socket": "",
        "mlock": True,
        "early_kills": {"journal": args.early_kills_journal, "hook_path": os.path.join(workdir, "early-kills.jsonl"),
                        "hook_owner_uid": os.getuid()},
    }
    config_path = os.path.join(workdir, "alertd.json")
    with open(config_path, "w") as handle:
        json.dump(config, handle)
    env = dict(os.environ, OOMGUARD_PYTHON_DIR=args.python_dir)
    log = open(os.path.join(workdir, "agent.log"), "w")
    agent = subprocess.Popen([args.python, "-s", args.agent, "--config", config_path], env=env, stderr=log)
    try:
        time.sleep(2)
        if agent.poll() is not None:
            sys.exit("agent exited rc=%s, see %s" % (agent.returncode, log.name))
        rss, cpu = idle_figures(agent.pid, args.idle)
        print("host: %s, kernel %s, MemTotal %.1f GiB, MemAvailable %.1f%%" % (
            os.uname().nodename, os.uname().release, meminfo()["MemTotal"] / 2 ** 30, current))
        print("agent: %s (python %s), poll interval %.2fs" % (args.agent, args.python, args.poll_interval))
        with open(log.name) as handle:
            mode = [line.strip() for line in handle if "PSI" in line or "memory" in line]
        for line in mode:
            print("agent said: %s" % line)
        print("idle over %.0fs: RSS %.1f MiB, CPU %.3f%%" % (args.idle, rss / 2 ** 20, cpu))
        with open("/proc/%d/task/%d/children" % (agent.pid, agent.pid)) as handle:
            for child in [int(c) for c in handle.read().split()]:
                child_rss, child_cpu = proc_usage(child)
                print("agent's child pid %d (journalctl): RSS %.1f MiB, CPU %.2f s since start" % (
                    child, child_rss / 2 ** 20, child_cpu))
        latencies = []
        count = 0
        for index in range(args.runs):
            latency, count = one_run(events_path, raise_percent, args.drop, count)
            if latency is None:
                print("run %d: no alert within 60 s" % (index + 1))
                continue
            latencies.append(latency)
            print("run %d: crossing -> alert %.3f s" % (index + 1, latency))
        if latencies:
            latencies.sort()
            print("latency over %d runs: min %.3f s, median %.3f s, max %.3f s (threshold MemAvailable <= %.2f%%)" % (
                len(latencies), latencies[0], latencies[len(latencies) // 2], latencies[-1], raise_percent))
        rss, _ = proc_usage(agent.pid)
        print("agent RSS after the runs: %.1f MiB" % (rss / 2 ** 20))
        pid = args.service_pid or service_pid()
        if pid:
            rss, cpu = idle_figures(pid, min(args.idle, 10))
            print("installed service pid %d: RSS %.1f MiB, CPU %.3f%% over %.0fs" % (pid, rss / 2 ** 20, cpu, min(args.idle, 10)))
    finally:
        agent.terminate()
        agent.wait()
        log.close()
    print("files: %s" % workdir)


if __name__ == "__main__":
    main()
