"""Unit tests for module_utils/oomguard_watchdog.py: the service watchdog's formats and decisions.

The decision logic is tested as a state machine driven by a fake clock; the readers
against files in a temporary directory. The checker that runs them is tested in
tests/unit/roles/test_service_watchdog_checker.py.
"""

import json
import os

import pytest

from ansible.module_utils import oomguard_watchdog as wd
from fakeclock import FakeClock


def make_check(**over):
    raw = {"name": "ssh", "unit": "ssh.service",
           "probe": {"type": "tcp", "host": "127.0.0.1", "port": 22, "banner": "SSH-2.0-"},
           "failures_before_restart": 1, "max_restarts": 2, "grace": 20}
    raw.update(over)
    return wd.normalize_config({"checks": [raw]})["checks"][0]


ESC = {"action": "log", "min_interval": 3600, "grace": 600, "reboot_command": ["systemctl", "reboot"]}


def kinds(actions):
    return [a[0] for a in actions]


# ---------------------------------------------------------------- configuration

def test_config_defaults():
    cfg = wd.normalize_config({"checks": [{"name": "cron", "unit": "cron",
                                           "probe": {"type": "heartbeat", "path": "/var/lib/oomguard/cron-heartbeat"}}]})
    check = cfg["checks"][0]
    assert check["unit"] == "cron.service"
    assert check["probe"] == {"type": "heartbeat", "path": "/var/lib/oomguard/cron-heartbeat", "max_age": 150}
    assert check["failures_before_restart"] == 1 and check["require_active"] is True
    assert cfg["escalation"]["action"] == "log"
    assert cfg["state_file"] == "/var/lib/oomguard/watchdog-state.json"


@pytest.mark.parametrize("raw, message", [
    ({"interval": 0}, "interval: 0 must be an integer >= 1"),
    ({"escalation": {"action": "explode"}}, "escalation.action: 'explode'; allowed: log, reboot"),
    ({"escalation": {"min_interval": -5}}, "escalation.min_interval: -5"),
    ({"escalation": {"action": "reboot", "reboot_command": "reboot"}}, "escalation.reboot_command"),
    ({"checks": [{"name": "x", "unit": "x", "max_restarts": -1}]}, "checks[0].max_restarts: -1"),
    ({"checks": [{"name": "x", "unit": "x", "failures_before_restart": 0}]}, "failures_before_restart: 0"),
    ({"checks": [{"name": "x", "unit": "x", "grace": True}]}, "checks[0].grace: True"),
    ({"checks": [{"name": "x", "unit": "a b"}]}, "checks[0].unit: 'a b' is not a valid unit name"),
    ({"checks": [{"name": "x", "unit": "../x"}]}, "is not a valid unit name"),
    ({"checks": [{"name": "x y", "unit": "x"}]}, "checks[0].name: 'x y'"),
    ({"checks": [{"name": "x", "unit": "x"}, {"name": "x", "unit": "y"}]}, "checks[1].name: 'x' is used twice"),
    ({"checks": [{"name": "x", "unit": "x", "probe": {"type": "ping"}}]}, "probe.type: 'ping'; allowed: tcp"),
    ({"checks": [{"name": "x", "unit": "x", "probe": {"type": "tcp", "port": 70000}}]}, "port: 70000 must be 1-65535"),
    ({"checks": [{"name": "x", "unit": "x", "probe": {"type": "tcp"}}]}, "probe.port: None"),
    ({"checks": [{"name": "x", "unit": "x", "probe": {"type": "heartbeat", "path": "rel"}}]}, "absolute path"),
    ({"checks": [{"name": "x", "unit": "x", "probe": {"type": "heartbeat", "path": "/h", "max_age": 0}}]},
     "max_age: 0"),
    ({"checks": [{"name": "x", "unit": "x", "probe": {"type": "command", "argv": "true"}}]}, "argument vector"),
    ({"checks": [{"name": "x", "unit": "x", "probe": {"type": "command", "argv": ["true"], "timeout": 0}}]},
     "timeout: 0"),
    ({"state_file": "state.json"}, "state_file: 'state.json' must be an absolute path"),
    ([], "must be a JSON object"),
])
def test_config_rejects_bad_input(raw, message):
    with pytest.raises(wd.ConfigError) as err:
        wd.normalize_config(raw)
    assert message in str(err.value)


# ---------------------------------------------------------------- state machine

def drive(check, steps, clock, esc_state=None, esc_cfg=ESC):
    """Feed (advance, ok) steps through decide(); return [(status, kinds)] per step."""
    cstate = wd.new_check_state(check["unit"])
    esc_state = esc_state if esc_state is not None else wd.new_state()["escalation"]
    trace = []
    for advance, ok in steps:
        clock.advance(advance)
        cstate, actions = wd.decide(check, cstate, ok, "evidence", clock(), esc_state, esc_cfg)
        for action in actions:
            if action[0] == "escalate":
                esc_state.update(last_time=clock(), last_action=action[1])
        trace.append((cstate["status"], kinds(actions)))
    return trace, cstate, esc_state


def test_healthy_stays_ok_and_silent():
    trace, cstate, _ = drive(make_check(), [(10, True)] * 3, FakeClock())
    assert trace == [("ok", [])] * 3
    assert cstate["consecutive_failures"] == 0 and cstate["last_ok"] is not None


def test_failing_before_restart_threshold():
    check = make_check(failures_before_restart=3)
    trace, cstate, _ = drive(check, [(10, False), (10, False), (10, False)], FakeClock())
    assert [t[0] for t in trace] == ["failing", "failing", "restarted"]
    assert trace[2][1] == ["log", "notify", "restart"]
    assert cstate["restart_attempts"] == 1


def test_restart_then_grace_then_recovery():
    clock = FakeClock()
    check = make_check(grace=25)
    trace, cstate, _ = drive(check, [(10, False), (10, False), (10, False), (10, True)], clock)
    # t+10 restart; t+20 in grace (no action); t+30 grace over (ends t+35): still grace; t+40 ok
    assert trace[0] == ("restarted", ["log", "notify", "restart"])
    assert trace[1] == ("restarted", ["log"])
    assert trace[2] == ("restarted", ["log"])
    assert trace[3] == ("ok", ["log", "notify"])
    assert cstate["restarts_total"] == 1 and cstate["restart_attempts"] == 0


def test_failed_restarts_escalate_once_then_keep_repairing():
    clock = FakeClock()
    check = make_check(max_restarts=2, grace=5)
    steps = [(10, False)] * 6
    trace, cstate, esc = drive(check, steps, clock)
    assert [t[0] for t in trace] == ["restarted", "restarted", "escalated", "escalated", "escalated", "escalated"]
    assert trace[2][1] == ["log", "notify", "escalate"]
    # after the escalation the unit is still restarted, max_restarts more times ...
    assert trace[3][1] == ["log", "notify", "restart"]
    assert trace[4][1] == ["log", "notify", "restart"]
    # ... then the gate (min_interval) suppresses a second escalation: restart quietly
    assert trace[5][1] == ["log", "restart"]
    assert esc["last_action"] == "log" and esc["last_time"] == clock() - 30


def test_escalation_gate_rate_limit_and_grace():
    cfg = dict(ESC, min_interval=3600, grace=600)
    assert wd.escalation_gate({"last_time": None}, cfg, 1000) == (True, None)
    allowed, reason = wd.escalation_gate({"last_time": 1000, "last_action": "reboot"}, cfg, 1300)
    assert not allowed and "grace period" in reason
    allowed, reason = wd.escalation_gate({"last_time": 1000, "last_action": "reboot"}, cfg, 2000)
    assert not allowed and "at most one escalation every 3600s" in reason
    assert wd.escalation_gate({"last_time": 1000}, cfg, 4600) == (True, None)
    # a grace period longer than the interval still wins
    cfg = dict(ESC, min_interval=60, grace=600)
    assert not wd.escalation_gate({"last_time": 1000}, cfg, 1100)[0]


def test_second_check_cannot_escalate_inside_previous_grace():
    clock = FakeClock()
    esc = {"last_time": clock() - 100, "last_action": "reboot", "last_check": "cron", "count": 1}
    check = make_check(max_restarts=0)
    cstate, actions = wd.decide(check, wd.new_check_state("ssh.service"), False, "no banner", clock(), esc,
                                dict(ESC, action="reboot"))
    assert "escalate" not in kinds(actions)
    assert kinds(actions) == ["log", "restart"]
    assert "escalation suppressed: previous escalation (reboot, 100s ago)" in actions[0][2]
    assert cstate["status"] == "restarted"


def test_escalation_allowed_after_interval():
    clock = FakeClock()
    esc = {"last_time": clock() - 7200, "last_action": "reboot"}
    check = make_check(max_restarts=0)
    cstate, actions = wd.decide(check, wd.new_check_state("ssh.service"), False, "x", clock(), esc,
                                dict(ESC, action="reboot"))
    assert actions[-1] == ("escalate", "reboot", actions[0][2])
    assert cstate["status"] == "escalated" and cstate["escalated_at"] == clock()


def test_decide_does_not_mutate_inputs():
    check = make_check()
    cstate = wd.new_check_state("ssh.service")
    esc = wd.new_state()["escalation"]
    before = (json.dumps(cstate, sort_keys=True), json.dumps(esc, sort_keys=True))
    wd.decide(check, cstate, False, "x", 1000, esc, ESC)
    assert before == (json.dumps(cstate, sort_keys=True), json.dumps(esc, sort_keys=True))


@pytest.mark.parametrize("heartbeat, now, active_since, expected", [
    (1000, 1100, None, True),
    (1000, 1150, None, True),
    (1000, 1151, None, False),
    (None, 1151, None, False),
    # cron (re)started 30 s ago: it has not had its minute yet
    (1000, 1300, 1270, True),
    (None, 1300, 1270, True),
    # cron started long ago and its heartbeat is stale: alive but not running jobs
    (1000, 1300, 900, False),
])
def test_heartbeat_verdict(heartbeat, now, active_since, expected):
    ok, detail = wd.heartbeat_verdict(heartbeat, now, 150, active_since)
    assert ok is expected, detail


@pytest.mark.parametrize("text, mtime, expected", [
    ("1700000000\n", 5.0, 1700000000),
    ("garbage", 1699999999.7, 1699999999),
    ("", None, None),
    (None, None, None),
])
def test_parse_heartbeat(text, mtime, expected):
    assert wd.parse_heartbeat(text, mtime) == expected


@pytest.mark.parametrize("content", ["", "{not json", json.dumps({"version": 99, "checks": {}}), json.dumps([1])])
def test_load_state_falls_back_to_fresh(tmp_path, content):
    path = tmp_path / "state.json"
    path.write_text(content)
    assert wd.load_state(str(path)) == wd.new_state()


# --- memory pressure: a slow probe on a starved host is not a dead service ----------

@pytest.mark.parametrize("psi, summary, starved", [
    (None, {"mem_available_percent": 40.0}, False),
    ({"some": {"avg10": 35.0}, "full": {"avg10": 2.0}}, {"mem_available_percent": 40.0}, True),
    ({"some": {"avg10": 5.0}, "full": {"avg10": 12.0}}, {}, True),
    ({"some": {"avg10": 29.9}, "full": {"avg10": 9.9}}, {"mem_available_percent": 5.0}, False),
    (None, {"mem_available_percent": 3.2}, True),
])
def test_memory_pressure(psi, summary, starved):
    assert (wd.memory_pressure(psi, summary) is not None) is starved


@pytest.mark.parametrize("ok, detail, pressure, since, now, expect_ok, expect_since", [
    (False, "127.0.0.1:22: no banner within 5s", "PSI", None, 1000, None, 1000),          # first deferral
    (False, "127.0.0.1:22: no banner within 5s", "PSI", 900, 1000, None, 900),            # still patient
    (False, "127.0.0.1:22: no banner within 5s", "PSI", 800, 1000, False, 800),           # patience spent
    (False, "connect 127.0.0.1:22: Connection refused", "PSI", None, 1000, False, None),  # dead listener
    (False, "ssh.service is inactive (dead)", "PSI", None, 1000, False, None),            # unit down
    (False, "127.0.0.1:22: no banner within 5s", None, 900, 1000, False, None),           # no pressure
    (True, "banner 'SSH-2.0-OpenSSH_9.2' in 0.01s", "PSI", 900, 1000, True, None),        # recovered
])
def test_defer_for_pressure(ok, detail, pressure, since, now, expect_ok, expect_since):
    got_ok, got_detail, got_since = wd.defer_for_pressure(ok, detail, pressure, {"deferred_since": since}, now)
    assert (got_ok, got_since) == (expect_ok, expect_since)
    if expect_ok is None:
        assert wd.DEFERRED in got_detail


# --- what the audit reads back ----------------------------------------------------

def test_failing_checks_follow_the_schema():
    state = wd.new_state()
    for name, status in zip(("a", "b", "c", "d"), wd.STATUSES):
        state["checks"][name] = dict(wd.new_check_state("%s.service" % name), status=status)
    assert wd.failing_checks(state) == ["b", "c", "d"]
    assert wd.failing_checks(None) == [] and wd.failing_checks({"checks": ["a"]}) == []


def test_saved_state_reads_back(tmp_path):
    path = str(tmp_path / "state.json")
    state = dict(wd.new_state(), last_run=1700000000, hardware_watchdog={"present": False})
    state["checks"]["ssh"] = dict(wd.new_check_state("ssh.service"), status="restarted")
    wd.save_state(path, state)
    assert wd.read_state(path) == state  # the audit sees everything the checker wrote
    assert wd.load_state(path)["checks"] == state["checks"]
    assert "hardware_watchdog" not in wd.load_state(path)  # read again each run
    assert wd.read_state(str(tmp_path / "absent.json")) is None
    assert wd.parse_state(json.dumps({"version": wd.STATE_VERSION + 1})) is None


def test_read_heartbeat_falls_back_to_mtime(tmp_path):
    path = tmp_path / "cron-heartbeat"
    assert wd.read_heartbeat(str(path)) is None
    path.write_text("1700000000\n")
    assert wd.read_heartbeat(str(path)) == 1700000000
    path.write_text("garbage")
    os.utime(str(path), (1699999999, 1699999999))
    assert wd.read_heartbeat(str(path)) == 1699999999


def test_read_hardware_watchdog(tmp_path):
    sys_class = tmp_path / "sys"
    (sys_class / "watchdog0").mkdir(parents=True)
    (sys_class / "watchdog0" / "timeout").write_text("15\n")
    (sys_class / "watchdog0" / "state").write_text("active\n")
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "watchdog").write_text("")
    (dev / "watchdog0").write_text("")
    devices, sysfs = wd.read_hardware_watchdog(str(sys_class), str(dev))
    assert devices == ["watchdog", "watchdog0"]
    assert sysfs == {"watchdog0": {"state": "active", "timeout": "15", "identity": None}}
    assert wd.hardware_watchdog_summary(devices, sysfs) == {"present": True, "timeout": 15, "state": "active"}


@pytest.mark.parametrize("command", [["systemctl reboot"], ["systemctl", "reboot\n"], ["/sbin/reboot\x00"],
                                     "systemctl reboot", list("systemctl")[:0]])
def test_reboot_command_must_be_an_argument_vector(command):
    """Issue 15: a string where a list belongs could never run; refused by --check-config."""
    with pytest.raises(wd.ConfigError, match="escalation.reboot_command"):
        wd.normalize_config({"escalation": {"action": "reboot", "reboot_command": command}})


@pytest.mark.parametrize("name", ["cron\n", "cron\x00"])
def test_check_names_are_matched_whole(name):
    with pytest.raises(wd.ConfigError, match="allowed"):
        wd.normalize_config({"checks": [{"name": name, "unit": "cron.service"}]})
