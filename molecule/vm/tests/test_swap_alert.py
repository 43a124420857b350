"""swap_alert on a real kernel (QEMU VM, 1 GiB, cgroup v2, PSI): a real memory hog
makes available memory collapse; the agent alerts, its snapshot names the hog's pid
and command, and after the hog ends exactly one recovery per alert follows.

The scenario's group_vars set memory_available thresholds the 700 MB hog crosses
(warning raise 40 / clear 50, critical raise 25 / clear 35, hold 0, clear_hold 5).
"""

import json
import time

import pytest

EVENTS = "/var/log/oomguard/alerts.jsonl"
SNAPSHOTS = "/var/log/oomguard/snapshots.jsonl"
HOG = """import sys, time
data = b"\\x01" * (int(sys.argv[1]) * 1024 * 1024)   # every page touched
time.sleep(int(sys.argv[2]))
"""


def journal(host):
    return host.run("journalctl -u oomguard-alertd -n 60 --no-pager").stdout


def main_pid(host):
    return int(host.run("systemctl show -p MainPID --value oomguard-alertd").stdout.strip())


def events(host):
    text = host.run("cat %s 2>/dev/null", EVENTS).stdout
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def wait_for(predicate, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(1)
    return predicate()


def test_agent_protected_for_real(host):
    pid = main_pid(host)
    assert pid > 0, journal(host)
    assert host.file("/proc/%d/oom_score_adj" % pid).content_string.strip() == "-900"
    show = host.run("systemctl show -p MemoryMax -p MemoryLow oomguard-alertd").stdout
    assert "MemoryMax=33554432" in show
    cgroup = host.run("cat /sys/fs/cgroup/system.slice/oomguard-alertd.service/memory.max").stdout.strip()
    assert cgroup == "33554432"


def test_agent_rss_below_15_mib(host):
    """Functional requirement (issue 6): the agent's resident memory stays under 15 MiB."""
    status = host.file("/proc/%d/status" % main_pid(host)).content_string
    rss_kb = [int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")][0]
    assert rss_kb < 15 * 1024, status


def test_agent_uses_psi_trigger_and_locked_memory(host):
    log = journal(host)
    assert "PSI trigger registered" in log, log
    assert "memory locked" in log, log


def test_real_hog_alert_snapshot_and_one_recovery(host):
    before = len(events(host))
    host.run("printf %s %s > /root/oomguard_hog.py", "%s", HOG)
    start = host.run("systemd-run --unit=oomguard-test-hog --collect /usr/bin/python3 /root/oomguard_hog.py 700 25")
    assert start.rc == 0, start.stderr
    hog_pid = int(host.run("systemctl show -p MainPID --value oomguard-test-hog").stdout.strip())
    assert hog_pid > 0
    alerts = wait_for(lambda: [e for e in events(host)[before:] if e["kind"] == "memory_available"
                               and e["severity"] in ("warning", "critical")], 40)
    assert alerts, journal(host)
    snapshot = None
    for line in reversed(host.run("cat %s", SNAPSHOTS).stdout.splitlines()):
        record = json.loads(line)
        if record["reason"] and record["reason"].startswith("alert"):
            snapshot = record
            break
    assert snapshot is not None
    top = snapshot["top_rss"][0]
    assert top["pid"] == hog_pid, snapshot["top_rss"][:3]
    assert "oomguard_hog.py" in top["cmdline"] and top["unit"] == "oomguard-test-hog.service"
    # The snapshot is taken when the alert fires, while the hog (700 MiB) is still growing:
    # in this 1 GiB VM the warning (40 % available) comes at roughly 450-600 MiB.
    assert top["rss_bytes"] > 400 * 1024 * 1024

    host.run("systemctl stop oomguard-test-hog")
    fired = {(e["kind"], e["details"]["level"]) for e in events(host)[before:] if e["severity"] in ("warning", "critical")
             and e["kind"] != "oom_kill"}
    recovered = wait_for(lambda: len([e for e in events(host)[before:] if e["severity"] == "recovery"]) >= len(fired)
                         and [e for e in events(host)[before:] if e["severity"] == "recovery"], 60)
    assert recovered, journal(host)
    time.sleep(8)  # longer than clear_hold: no second recovery, no new alert
    new = [e for e in events(host)[before:] if e["kind"] != "oom_kill"]
    recoveries = [(e["kind"], e["details"]["level"]) for e in new if e["severity"] == "recovery"]
    assert sorted(recoveries) == sorted(fired), new
    assert len(recoveries) == len(set(recoveries))
    alerts = [(e["kind"], e["details"]["level"]) for e in new if e["severity"] != "recovery"]
    assert len(alerts) == len(set(alerts)), new  # one alert per raise, no flapping


@pytest.mark.parametrize("metric", ["oomguard_memory_available_bytes", "oomguard_psi_memory_some_avg10_ratio",
                                    "oomguard_psi_trigger_active 1"])
def test_metrics_present(host, metric):
    assert metric in host.file("/var/lib/prometheus/node-exporter/oomguard.prom").content_string
