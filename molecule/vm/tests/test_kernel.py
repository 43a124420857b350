"""Kernel truths the VM test bed must give (the containers cannot).

If one of these fails, the VM image or QEMU flags are broken, not a role.
"""

import re

import pytest


def test_cgroup_v2_unified(host):
    assert host.file("/sys/fs/cgroup/cgroup.controllers").exists
    assert host.run("stat -f -c %T /sys/fs/cgroup").stdout.strip() == "cgroup2fs"


def test_memory_controller_available(host):
    controllers = host.file("/sys/fs/cgroup/cgroup.controllers").content_string.split()
    assert "memory" in controllers, controllers


def test_negative_oom_score_adj_allowed(host):
    cmd = host.run("sh -c 'echo -1000 > /proc/self/oom_score_adj && cat /proc/self/oom_score_adj'")
    assert cmd.rc == 0, cmd.stderr
    assert cmd.stdout.strip() == "-1000"


def test_pressure_stall_information(host):
    psi = host.file("/proc/pressure/memory")
    assert psi.exists
    assert psi.content_string.startswith("some avg10="), psi.content_string


def test_hardware_watchdog_i6300esb(host):
    kind = host.run("stat -c %F /dev/watchdog").stdout.strip()
    assert kind == "character special file", kind
    identity = host.file("/sys/class/watchdog/watchdog0/identity").content_string
    assert "i6300ESB" in identity, identity


def test_systemd_is_pid_1_and_booted(host):
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state in ("running", "degraded"), state


def test_sshd_and_cron_active(host):
    for unit in ("ssh", "cron"):
        assert host.service(unit).is_running, unit


def test_swap_file_active(host):
    """Real servers have swap: the guest has a swap file of at least half its RAM."""
    swaps = host.file("/proc/swaps").content_string
    assert "/swapfile" in swaps, swaps
    meminfo = dict(line.split(":", 1) for line in host.file("/proc/meminfo").content_string.splitlines())
    swap_kb = int(meminfo["SwapTotal"].split()[0])
    ram_kb = int(meminfo["MemTotal"].split()[0])
    assert swap_kb >= ram_kb // 2, (swap_kb, ram_kb)


@pytest.mark.parametrize("what, expected", [
    # The VM is a standard Debian 12 server: libpam-systemd puts a login in a session
    # scope; cron jobs stay in cron.service (pam_systemd is in the interactive stack only).
    ("login", r"^/user\.slice/user-0\.slice/session-\d+\.scope$"),
    ("cron", r"^/system\.slice/cron\.service$"),
])
def test_where_logins_and_cron_jobs_run(placement, what, expected):
    assert re.search(expected, placement[what]), (what, placement)
