"""oom_protect on a real kernel: live values from /proc, no leaking to sessions and jobs.

Root may lower oom_score_adj here, so every protection must really be enforced. The
SSH session Testinfra itself uses is a NEW session opened after converge. The kill -9
test runs last in this file.
"""

import json
import time

import pytest

STATUS = "/var/lib/oomguard/oom_protect.json"
# Set in this scenario's group_vars (web): the worker pool stand-in that prepare.yml installs.
EXPENDABLE_UNIT = "app-worker.service"
EXPENDABLE_SCORE = 800
CRON_FILE = "/etc/cron.d/oomguard-test-oom-protect"
CRON_OUT = "/run/oomguard-test-oom-protect.adj"


def show(host, unit, *props):
    argv = ["systemctl", "show"] + ["--property=%s" % p for p in props] + ["--", unit]
    cmd = host.run(" ".join(["%s"] * len(argv)), *argv)
    assert cmd.rc == 0, cmd.stderr
    return dict(line.split("=", 1) for line in cmd.stdout.splitlines() if "=" in line)


def main_pid(host, unit):
    return int(show(host, unit, "MainPID")["MainPID"])


def proc_adj(host, pid):
    return int(host.file("/proc/%s/oom_score_adj" % pid).content_string)


def test_status_says_enforced(host):
    services = json.loads(host.file(STATUS).content_string)["services"]
    by_unit = dict((s["unit"], s) for s in services if s["found"])
    for unit in ("ssh.service", "cron.service", "systemd-journald.service", "dbus.service", EXPENDABLE_UNIT):
        assert by_unit[unit]["enforced"] is True, by_unit[unit]
        assert by_unit[unit]["reason"] is None


def test_sshd_listener_is_protected(host):
    assert proc_adj(host, main_pid(host, "ssh")) == -1000


def test_ssh_session_shell_is_not_protected(host):
    # This command runs in a shell of Testinfra's own SSH session, opened after converge.
    cmd = host.run("echo $(cat /proc/self/oom_score_adj) $(cat /proc/$$/oom_score_adj) $(cat /proc/$PPID/oom_score_adj)")
    assert cmd.stdout.split() == ["0", "0", "0"], cmd.stdout


def test_every_sshd_except_the_listener_is_at_the_default(host):
    listener = main_pid(host, "ssh")
    # One command: sessions of earlier commands come and go between two SSH calls.
    cmd = host.run("for p in $(pgrep -x sshd); do echo $p $(cat /proc/$p/oom_score_adj 2>/dev/null); done")
    values = dict(line.split() for line in cmd.stdout.splitlines() if len(line.split()) == 2)
    others = dict((pid, adj) for pid, adj in values.items() if int(pid) != listener)
    assert values.get(str(listener)) == "-1000", values
    assert others, "expected at least Testinfra's own session: %s" % values
    assert set(others.values()) == {"0"}, values


@pytest.mark.parametrize("unit,value", [("cron", -900), ("systemd-journald", -900), ("dbus", -900)])
def test_critical_daemons_are_protected(host, unit, value):
    assert proc_adj(host, main_pid(host, unit)) == value


def test_expendable_service_goes_first(host):
    assert proc_adj(host, main_pid(host, EXPENDABLE_UNIT)) == EXPENDABLE_SCORE


def test_cron_job_is_not_protected(host):
    """A real cron job records its own oom_score_adj while the daemon runs at -900."""
    assert proc_adj(host, main_pid(host, "cron")) == -900
    host.run("rm -f %s", CRON_OUT)
    line = "* * * * * root cat /proc/self/oom_score_adj > %s\n" % CRON_OUT
    assert host.run("printf '%%s' %s > %s && chmod 0644 %s", line, CRON_FILE, CRON_FILE).rc == 0
    try:
        deadline = time.time() + 130  # cron rereads /etc/cron.d each minute, then the next minute fires
        while time.time() < deadline and not host.file(CRON_OUT).exists:
            time.sleep(3)
        assert host.file(CRON_OUT).exists, host.run("journalctl -u cron -n 20 --no-pager").stdout
        assert host.file(CRON_OUT).content_string.strip() == "0"
    finally:
        host.run("rm -f %s %s", CRON_FILE, CRON_OUT)


def test_kill_9_sshd_and_cron_are_back_within_10s(host):
    before = dict((unit, main_pid(host, unit)) for unit in ("ssh", "cron"))
    # Kill both and note the moment on the VM's own monotonic clock (the TCG guest is
    # slow to answer over SSH; the restart latency is measured inside, by systemd).
    cmd = host.run("kill -9 %s %s && cat /proc/uptime", str(before["ssh"]), str(before["cron"]))
    assert cmd.rc == 0, cmd.stderr
    killed_at = float(cmd.stdout.split()[0])
    after = {}
    deadline = time.time() + 90
    while time.time() < deadline and len(after) < 2:
        for unit in ("ssh", "cron"):
            try:
                props = show(host, unit, "MainPID", "ActiveState", "ExecMainStartTimestampMonotonic")
            except RuntimeError:  # a new SSH connection while sshd restarts: try again
                continue
            pid = int(props["MainPID"])
            if pid and pid != before[unit] and props["ActiveState"] == "active":
                after[unit] = (pid, int(props["ExecMainStartTimestampMonotonic"]) / 1e6)
        time.sleep(1)
    assert sorted(after) == ["cron", "ssh"], host.run("journalctl -u ssh -u cron -n 30 --no-pager").stdout
    for unit, (pid, started) in after.items():
        assert started - killed_at < 10, (unit, started, killed_at)
    # The restarted daemons are protected again by the persisted form alone.
    assert proc_adj(host, after["ssh"][0]) == -1000
    assert proc_adj(host, after["cron"][0]) == -900
    assert host.run("echo $(cat /proc/self/oom_score_adj)").stdout.strip() == "0"
