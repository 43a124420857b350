"""service_watchdog, destructive: a hung guest is reset by the hardware watchdog.

This REBOOTS the VM, so it must be the last test of the vm scenario: the file name
sorts after every other test file (pytest collects files in name order), and the test
carries the `reboots` mark. It waits until sshd answers logins again before returning,
so the following destroy step finds a working VM.

How: kernel.panic=0 (the kernel never reboots by itself after a panic), then a sysrq
crash. The kernel is dead, nothing feeds /dev/watchdog any more, and only the i6300esb
(QEMU `-action watchdog=reset`) can bring the guest back.
"""

import socket
import subprocess
import time

import pytest

RUNTIME_WATCHDOG = 30  # service_watchdog_runtime_watchdog_sec in molecule/vm/molecule.yml


def ssh_target(host):
    v = host.ansible.get_variables()
    return {
        "address": v.get("ansible_host", "127.0.0.1"),
        "port": int(v.get("ansible_port", 22)),
        "user": v.get("ansible_user", "root"),
        "key": v.get("ansible_private_key_file") or v.get("ansible_ssh_private_key_file"),
    }


def ssh(target, command, timeout=30):
    """A fresh SSH login (no connection sharing: the old master dies with the guest)."""
    argv = ["ssh", "-p", str(target["port"]), "-o", "BatchMode=yes", "-o", "ControlPath=none",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"]
    if target["key"]:
        argv += ["-i", target["key"]]
    argv += ["%s@%s" % (target["user"], target["address"]), command]
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None


def banner(target, timeout=3):
    """sshd's banner on the forwarded port, or '' (QEMU accepts even when the guest is dead)."""
    try:
        with socket.create_connection((target["address"], target["port"]), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(256).decode("ascii", "replace")
    except OSError:
        return ""


def wait(predicate, timeout, step=1.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


@pytest.mark.reboots
def test_hung_guest_is_reset_by_the_watchdog_and_ssh_returns(host, measurement):
    target = ssh_target(host)
    assert host.file("/sys/class/watchdog/watchdog0/state").content_string.strip() == "active"
    before = ssh(target, "cat /proc/sys/kernel/random/boot_id")
    assert before is not None and before.returncode == 0, before
    boot_before = before.stdout.strip()

    cmd = ssh(target, "sysctl -w kernel.panic=0 >/dev/null && cat /proc/sys/kernel/panic")
    assert cmd is not None and cmd.stdout.strip() == "0", cmd
    # Crash in 2 s from a transient timer, so this SSH session returns first.
    cmd = ssh(target, "systemd-run --quiet --on-active=2 --unit=oomguard-test-crash "
                      "/bin/sh -c 'echo c > /proc/sysrq-trigger'")
    assert cmd is not None and cmd.returncode == 0, cmd and cmd.stderr
    crash = time.time() + 2

    assert wait(lambda: not banner(target).startswith("SSH-2.0-"), 60), "the guest did not go down"
    down = time.time()
    # Timer-driven: TCG boot to SSH took about 20-60 s here; allow for a loaded machine.
    back = wait(lambda: banner(target).startswith("SSH-2.0-"), 600, step=2)
    up = time.time()
    assert back, "sshd did not come back within 600 s after the crash"
    login = None
    for _ in range(30):
        login = ssh(target, "cat /proc/sys/kernel/random/boot_id /proc/uptime "
                            "/sys/class/watchdog/watchdog0/state")
        if login is not None and login.returncode == 0:
            break
        time.sleep(2)
    assert login is not None and login.returncode == 0, login
    boot_after, uptime, wd_state = login.stdout.split("\n")[:3]
    done = time.time()
    measurement("watchdog reset (RuntimeWatchdogSec=%ds): guest down %.0fs after the crash; "
                "SSH banner back %.0fs after the crash; login works %.0fs after the crash (guest uptime %ss)"
                % (RUNTIME_WATCHDOG, down - crash, up - crash, done - crash, uptime.split()[0]))
    assert boot_after.strip() != boot_before, "same boot id: the guest was not reset"
    # kernel.panic=0: the kernel never rebooted by itself; the watchdog did
    assert float(uptime.split()[0]) < done - crash + 5
    # and after the reset systemd armed the watchdog again from the drop-in
    assert wd_state.strip() == "active"
