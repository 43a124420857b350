"""service_watchdog in containers: the checker's timer runs it, and it repairs what it proves broken.

The scenario sets a 10 s interval, a 90 s heartbeat threshold and a 70 s cron grace in
its group_vars so the repairs happen within a test's patience. Containers have no
/dev/watchdog: the role reports it and the state file records it.
"""

import json
import time

import pytest

INTERVAL = 10  # service_watchdog_interval in molecule/default/molecule.yml
STATE = "/var/lib/oomguard/watchdog-state.json"
HEARTBEAT = "/var/lib/oomguard/cron-heartbeat"
CRON_MAX_AGE = 90  # service_watchdog_cron_max_age in the scenario


def journal(host, lines=40):
    return host.run("journalctl -u oomguard-watchdog.service -n %s --no-pager", str(lines)).stdout


def wait_for(predicate, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(1)
    return predicate()


def ssh_banner(host):
    """The first line sshd sends on 127.0.0.1:22 inside the container, or ''."""
    script = ("import socket\n"
              "try:\n"
              "    s = socket.create_connection(('127.0.0.1', 22), timeout=3)\n"
              "    print(s.recv(256).decode('ascii', 'replace').splitlines()[0])\n"
              "except Exception as exc:\n"
              "    print('ERROR', exc)\n")
    return host.run("python3 -c %s", script).stdout.strip()


def state(host):
    return json.loads(host.file(STATE).content_string)


def watchdog_lines(host, since):
    return host.run("journalctl -t oomguard-watchdog --since @%s --no-pager -o cat", str(int(since))).stdout


def host_now(host):
    return int(host.run("date +%s").stdout)


def test_timer_enabled_active_and_runs_the_service(host):
    timer = host.service("oomguard-watchdog.timer")
    assert timer.is_enabled and timer.is_running, journal(host)
    show = host.run("systemctl show -p Result -p ExecMainStatus -p NRestarts oomguard-watchdog.service").stdout
    assert "Result=success" in show, show + journal(host)
    # it ran within the last two intervals
    assert wait_for(lambda: host_now(host) - state(host)["last_run"] <= 2 * INTERVAL, 2 * INTERVAL)


def test_timer_period(host):
    show = host.run("systemctl show -p TimersMonotonic -p AccuracyUSec oomguard-watchdog.timer").stdout
    assert "OnUnitActiveUSec=10s" in show and "OnBootUSec=10s" in show, show
    assert "AccuracyUSec=1s" in show


@pytest.mark.parametrize("prop, value", [
    ("Type", "oneshot"),
    ("OOMScoreAdjust", "-1000"),
    ("MemoryMax", str(32 * 1024 * 1024)),
    ("TasksMax", "16"),
    ("Nice", "-10"),
    ("SyslogIdentifier", "oomguard-watchdog"),
    ("TimeoutStartUSec", "30s"),
    ("TimeoutStopUSec", "5s"),
])
def test_service_self_protection(host, prop, value):
    out = host.run("systemctl show -p %s oomguard-watchdog.service", prop).stdout.strip()
    assert out == "%s=%s" % (prop, value)


def test_io_priority(host):
    show = host.run("systemctl show -p IOSchedulingClass -p IOSchedulingPriority oomguard-watchdog.service").stdout
    # systemd 247 prints the number (2), newer ones the name
    assert "IOSchedulingClass=2" in show or "IOSchedulingClass=best-effort" in show, show
    assert "IOSchedulingPriority=0" in show


def test_no_cron_in_the_watchdog_path(host):
    unit = host.file("/etc/systemd/system/oomguard-watchdog.service").content_string
    assert "cron" not in host.file("/etc/systemd/system/oomguard-watchdog.timer").content_string.lower()
    assert "Ansible managed" in unit
    assert "oomguard-watchdog" not in host.run("grep -rl oomguard-watchdog /etc/cron* || true").stdout


def test_files_and_modes(host):
    program = host.file("/usr/lib/oomguard/oomguard-watchdog")
    assert program.user == "root" and program.group == "root" and program.mode == 0o755
    config = host.file("/etc/oomguard/watchdog.json")
    assert config.mode == 0o644 and config.user == "root"
    cfg = json.loads(config.content_string)
    assert cfg["_comment"].startswith("Ansible managed")
    assert [c["name"] for c in cfg["checks"]] == ["ssh", "cron"]
    assert cfg["escalation"]["action"] == "log"
    assert host.run("python3 -I /usr/lib/oomguard/oomguard-watchdog --check-config /etc/oomguard/watchdog.json").rc == 0


def test_cron_heartbeat_job_and_fresh_heartbeat(host):
    cron = host.file("/etc/cron.d/oomguard-heartbeat")
    assert cron.mode == 0o644 and cron.user == "root"
    assert "* * * * * root /usr/lib/oomguard/oomguard-heartbeat" in cron.content_string
    beat = host.file(HEARTBEAT)
    assert beat.mode == 0o644
    assert host_now(host) - int(beat.content_string) <= 90


def test_state_schema_for_the_audit(host):
    st = state(host)
    assert isinstance(st["last_run"], int)
    assert set(st["checks"]) == {"ssh", "cron"}
    for name, check in st["checks"].items():
        assert check["status"] in ("ok", "failing", "restarted", "escalated"), name
        for key in ("consecutive_failures", "restart_attempts", "last_result", "unit"):
            assert key in check, (name, key)
    assert st["hardware_watchdog"] == {"present": False}
    # what the run really got: containers refuse -1000 (documented limit of this test bed)
    assert isinstance(st["checker"]["oom_score_adj"], int) and st["checker"]["oom_score_adj"] > -1000
    assert host.file(STATE).mode == 0o644


def test_no_watchdog_device_no_dropin(host):
    assert not host.file("/dev/watchdog").exists
    assert not host.file("/etc/systemd/system.conf.d/50-oomguard-watchdog.conf").exists


FROZEN_MARKER = "/run/oomguard-test-frozen-cron.json"


def freeze_cron_until_restarted(host, measurement=print):
    """Alive but not running jobs: SIGSTOP cron and age its heartbeat; wait for the restart.

    Returns (and leaves on the host, for the follow-up test) {since, restarted}.
    """
    pid = host.run("systemctl show -p MainPID --value cron.service").stdout.strip()
    # A cron started less than the threshold ago is not blamed for an old heartbeat yet.
    uptime = int(host.run("ps -o etimes= -p %s", pid).stdout.strip() or 0)
    patience = max(0, CRON_MAX_AGE - uptime) + 2 * INTERVAL + 5
    since = host_now(host)
    restarts_before = state(host)["checks"]["cron"].get("restarts_total", 0)
    assert host.run("systemctl kill -s STOP cron.service").rc == 0
    # A heartbeat from 10 minutes ago, written the way the job writes it.
    host.run("sh -c 'echo $(( $(date +%%s) - 600 )) > %s.tmp && mv %s.tmp %s'", HEARTBEAT, HEARTBEAT, HEARTBEAT)
    start = time.time()

    def new_pid():
        now = host.run("systemctl show -p MainPID --value cron.service").stdout.strip()
        return now not in (pid, "0", "") and now
    assert wait_for(new_pid, patience), watchdog_lines(host, since)
    measurement("frozen cron restarted %.1fs after its heartbeat went stale" % (time.time() - start))
    assert "cron: failing (heartbeat" in watchdog_lines(host, since)
    marker = {"since": since, "restarted": host_now(host), "restarts_total": restarts_before}
    assert host.run("printf %s > %s", json.dumps(marker), FROZEN_MARKER).rc == 0
    return marker


def test_frozen_cron_with_stale_heartbeat_is_restarted(host, measurement):
    freeze_cron_until_restarted(host, measurement)


def test_ssh_killed_answers_again_within_two_intervals(host, measurement):
    assert ssh_banner(host).startswith("SSH-2.0-")
    start = time.time()
    assert host.run("systemctl kill -s KILL ssh.service").rc == 0
    banner = wait_for(lambda: ssh_banner(host).startswith("SSH-2.0-") and ssh_banner(host), 2 * INTERVAL + 5)
    assert banner, "no SSH-2.0 banner %ds after the kill\n%s" % (time.time() - start, journal(host))
    measurement("ssh answered again %.1fs after SIGKILL: %s" % (time.time() - start, banner))
    assert time.time() - start <= 2 * INTERVAL + 5


def test_ssh_stopped_is_restarted_by_the_checker(host, measurement):
    # A clean stop: systemd's Restart= does not apply, only the checker brings it back.
    since = host_now(host)
    assert host.run("systemctl stop ssh.service").rc == 0
    start = time.time()
    banner = wait_for(lambda: ssh_banner(host).startswith("SSH-2.0-"), 3 * INTERVAL + 10)
    log = watchdog_lines(host, since)
    assert banner, log + journal(host)
    measurement("ssh restarted by the checker %.1fs after the stop" % (time.time() - start))
    assert "restarting ssh.service" in log, log
    assert wait_for(lambda: state(host)["checks"]["ssh"]["status"] == "ok", 2 * INTERVAL)
    assert state(host)["checks"]["ssh"]["restarts_total"] >= 1


def test_restarted_cron_writes_heartbeat_again_without_restart_loop(host):
    """After the restart cron needs up to a minute to write the heartbeat again; the
    grace period keeps the checker from restarting it a second time meanwhile.
    (Runs after the ssh tests so the minute has mostly passed, on every host at once.)"""
    found = host.file(FROZEN_MARKER)
    marker = json.loads(found.content_string) if found.exists else freeze_cron_until_restarted(host)
    fresh = wait_for(lambda: int(host.file(HEARTBEAT).content_string) >= marker["restarted"] - 5,
                     max(0, marker["restarted"] + 75 - host_now(host)))
    assert fresh, watchdog_lines(host, marker["since"])
    time.sleep(INTERVAL + 1)  # one more run sees the fresh heartbeat
    log = watchdog_lines(host, marker["since"])
    # count from the state: with alert sinks, each message is in the journal twice
    assert state(host)["checks"]["cron"]["restarts_total"] - marker["restarts_total"] == 1, log
    assert state(host)["checks"]["cron"]["status"] == "ok", log
    host.run("rm -f %s", FROZEN_MARKER)


def test_cron_stopped_is_restarted(host):
    since = host_now(host)
    assert host.run("systemctl stop cron.service").rc == 0
    assert wait_for(lambda: host.service("cron").is_running, 2 * INTERVAL + 5), journal(host)
    assert "restarting cron.service" in watchdog_lines(host, since)


def test_watchdog_lines_carry_priorities(host):
    # restarts are logged at warning (4) and the journal keeps that priority
    out = host.run("journalctl -t oomguard-watchdog -p warning --no-pager -o cat").stdout
    assert "restarting" in out
