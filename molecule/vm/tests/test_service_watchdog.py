"""service_watchdog on a real kernel: systemd holds the i6300esb watchdog with the
configured timeout, and the checker really runs at OOMScoreAdjust=-1000 / Nice=-10.

The scenario sets service_watchdog_runtime_watchdog_sec: 60s in its group_vars.
The destructive part (hang the guest, let the watchdog reset it) is the drill's last
stage (side_effect.yml, drill.py watchdog), asserted in tests/test_drill.py.
"""

import json
import time

RUNTIME_WATCHDOG = 60  # seconds, service_watchdog_runtime_watchdog_sec in molecule/vm/molecule.yml
DROPIN = "/etc/systemd/system.conf.d/50-oomguard-watchdog.conf"
STATE = "/var/lib/oomguard/watchdog-state.json"


def test_dropin_written(host):
    dropin = host.file(DROPIN)
    assert dropin.exists and dropin.mode == 0o644 and dropin.user == "root"
    content = dropin.content_string
    assert "Ansible managed" in content
    assert "RuntimeWatchdogSec=60s" in content
    assert "RebootWatchdogSec=" in content


def test_systemd_uses_the_runtime_watchdog(host):
    show = host.run("systemctl show -p RuntimeWatchdogUSec -p RebootWatchdogUSec").stdout
    assert "RuntimeWatchdogUSec=1min" in show, show


def test_kernel_watchdog_armed_with_the_timeout(host):
    base = "/sys/class/watchdog/watchdog0/"
    assert "i6300ESB" in host.file(base + "identity").content_string
    assert host.file(base + "state").content_string.strip() == "active"
    assert int(host.file(base + "timeout").content_string) == RUNTIME_WATCHDOG


def test_pid1_holds_the_device(host):
    fds = host.run("ls -l /proc/1/fd").stdout
    assert "/dev/watchdog" in fds, fds


def test_checker_really_protected(host):
    """On a real kernel systemd applies what the container refuses."""
    deadline = time.time() + 40
    while time.time() < deadline:
        state = json.loads(host.file(STATE).content_string)
        if "checker" in state:
            break
        time.sleep(2)
    assert state["checker"] == {"oom_score_adj": -1000, "nice": -10}, state.get("checker")
    assert state["hardware_watchdog"]["present"] is True
    assert state["hardware_watchdog"]["timeout"] == RUNTIME_WATCHDOG
    # a starved TCG guest can miss one banner deadline: wait for the ok that follows
    deadline = time.time() + 60
    while state["checks"]["ssh"]["status"] != "ok" and time.time() < deadline:
        time.sleep(5)
        state = json.loads(host.file(STATE).content_string)
    assert state["checks"]["ssh"]["status"] == "ok", state["checks"]["ssh"]


def test_checker_memory_limit_applied(host):
    # cgroup v2: the unit's limit is a kernel setting, not just a unit property
    out = host.run("systemctl show -p MemoryMax -p TasksMax oomguard-watchdog.service").stdout
    assert "MemoryMax=33554432" in out and "TasksMax=16" in out, out
    journal = host.run("journalctl -u oomguard-watchdog.service -n 50 --no-pager").stdout
    assert "Failed" not in journal and "oom-kill" not in journal, journal
