"""Unit tests for module_utils/oomguard_findings.py: one table per finding."""

import os

import pytest

from ansible.module_utils.oomguard_cgroup import compare_targets, memory_targets, read_memory_files
from ansible.module_utils.oomguard_findings import (
    available_memory_finding, critical_service_finding, cron_heartbeat_finding, early_engine_finding,
    early_kills_finding, early_settings_finding, expendable_finding,
    hardware_watchdog_finding, inherited_protection_finding, kernel_log_finding, memory_limit_finding,
    merge_thresholds, offending, oom_kill_allocating_task_finding, oom_kills_finding, oomguard_unit_finding,
    overcommit_finding, panic_on_oom_finding, psi_finding, report_lines, summarize, swap_finding,
    watchdog_timer_finding, xen_dom0_finding, DEFAULT_THRESHOLDS)
from ansible.module_utils.oomguard_memstat import memory_summary, parse_meminfo, parse_psi
from ansible.module_utils.oomguard_oomlog import parse_oom_events
from ansible.module_utils.oomguard_sizes import INFINITY

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "audit")
SSHD = {"name": "sshd", "oom_score_adj": -1000, "role": "listener", "processes": ["sshd"]}
TH = DEFAULT_THRESHOLDS


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


def proc(pid, adj, comm="sshd", ppid=1):
    return {"pid": pid, "ppid": ppid, "comm": comm, "oom_score_adj": adj}


LOADED = {"LoadState": "loaded", "ActiveState": "active"}


@pytest.mark.parametrize("mains, kwargs, severity, enforced, words", [
    ([proc(412, -1000)], {}, "ok", True, ["(pid 412) at -1000, policy -1000"]),
    ([proc(33, 0)], {"cap_sys_resource": False, "container": "podman"}, "fail", False,
     ["at 0, policy -1000", "CAP_SYS_RESOURCE", "container without CAP_SYS_RESOURCE: podman"]),
    ([proc(33, 0)], {"cap_sys_resource": True, "configured": -1000}, "fail", False,
     ["configured -1000 but live 0"]),
    ([proc(33, 0)], {"cap_sys_resource": True}, "fail", False, ["no oomguard policy applied"]),
    ([proc(33, 0)], {"cap_sys_resource": None, "container": "docker"}, "fail", False, ["container (docker)"]),
    ([proc(412, -1000), proc(413, 0)], {"cap_sys_resource": True}, "fail", False, ["(pid 412,413) at 0"]),
    ([proc(412, -1000)], {}, "ok", True, ["listener"]),
])
def test_critical_service_live_against_policy(mains, kwargs, severity, enforced, words):
    result = critical_service_finding(SSHD, mains, unit="ssh.service", unit_state=LOADED, **kwargs)
    assert result["id"] == "sshd.oom_score_adj"
    assert result["severity"] == severity
    assert result["evidence"]["enforced"] is enforced
    for word in words:
        assert word in result["message"]


def test_critical_service_more_protected_than_policy_warns():
    service = dict(SSHD, oom_score_adj=-900)
    result = critical_service_finding(service, [proc(412, -1000)], unit="ssh.service", unit_state=LOADED)
    assert result["severity"] == "warn"


@pytest.mark.parametrize("unit_state, severity, word", [
    ({"LoadState": "loaded", "ActiveState": "failed"}, "fail", "is failed"),
    ({"LoadState": "not-found", "ActiveState": "inactive"}, "info", "not present"),
    (None, "info", "not present"),
])
def test_critical_service_without_main_process(unit_state, severity, word):
    result = critical_service_finding(SSHD, [], unit="ssh.service", unit_state=unit_state)
    assert result["severity"] == severity
    assert word in result["message"]


NEGATIVE = [
    proc(1, -1000, "systemd", 0),
    dict(proc(2, -1000, "kthreadd", 0), kernel_thread=True),
    proc(250, -1000, "systemd-journal"),
    proc(412, -1000, "sshd"),
    proc(455, -900, "python3"),
    proc(1200, -1000, "sshd", 412),
    proc(1203, -1000, "bash", 1200),
    proc(1300, -1000, "hog", 1203),
    proc(1400, -500, "backup.sh", 398),
]
COMMS = {412: "sshd", 1200: "sshd", 1203: "bash", 398: "cron"}


@pytest.mark.parametrize("negative, protected, max_examples, severity, count, unkillable", [
    (NEGATIVE, [412, 455], 5, "fail", 4, 3),
    (NEGATIVE, [412, 455], 2, "fail", 4, 3),
    ([p for p in NEGATIVE if p["pid"] not in (1200, 1203, 1300)], [412, 455], 5, "warn", 1, 0),
    ([p for p in NEGATIVE if p["pid"] < 1000], [412, 455], 5, "ok", 0, 0),
    ([p for p in NEGATIVE if p["pid"] < 1000], [412], 5, "warn", 1, 0),
    ([], [], 5, "ok", 0, 0),
])
def test_inherited_protection(negative, protected, max_examples, severity, count, unkillable):
    helpers = ["systemd", "systemd-journal"]
    result = inherited_protection_finding(negative, protected, helpers, COMMS, max_examples)
    assert result["severity"] == severity
    assert result["evidence"]["count"] == count
    assert result["evidence"]["unkillable"] == unkillable
    assert len(result["evidence"]["examples"]) == min(count, max_examples)
    if count:
        assert "%d processes inherit" % count in result["message"]


def test_inherited_protection_names_the_parent():
    result = inherited_protection_finding(NEGATIVE, [412, 455], ["systemd", "systemd-journal"], COMMS)
    bash = [e for e in result["evidence"]["examples"] if e["pid"] == 1203][0]
    assert bash["parent"] == "sshd"
    assert "bash[1203] from sshd" in result["message"]


@pytest.mark.parametrize("processes, severity", [
    ([proc(900, 500, "worker"), proc(901, 800, "worker")], "ok"),
    ([proc(900, 500, "worker"), proc(901, 0, "worker")], "warn"),
    ([], "info"),
])
def test_expendable(processes, severity):
    service = {"name": "worker", "oom_score_adj": 500}
    result = expendable_finding(service, processes, unit="worker.service")
    assert result["id"] == "worker.expendable"
    assert result["severity"] == severity


def _cgroup_files(tmp_path, files):
    directory = tmp_path / "system.slice" / "hog.service"
    directory.mkdir(parents=True)
    for name, value in files.items():
        (directory / name).write_text(value + "\n")
    return str(directory)


@pytest.mark.parametrize("version, configured, files, severity, words", [
    ("v2", {"max": 64 << 20, "high": 48 << 20}, {"memory.max": "67108864", "memory.high": "50331648"},
     "ok", ["max 64 MiB", "high 48 MiB"]),
    ("v2", {"max": 64 << 20}, {"memory.max": "max"}, "fail", ["max 64 MiB configured, infinity applied"]),
    ("v2", {"max": INFINITY}, {"memory.max": "max"}, "ok", ["max infinity applied"]),
    ("v2", {"max": 100000}, {"memory.max": "98304"}, "ok", ["applied"]),  # rounded down to pages
    ("v1", {"max": 64 << 20, "low": 16 << 20}, {"memory.limit_in_bytes": "67108864"}, "ok",
     ["low not expressible on cgroup v1"]),
    ("v1", {"max": 64 << 20}, {"memory.limit_in_bytes": "9223372036854771712"}, "fail",
     ["infinity applied"]),
    ("v1", {"min": 16 << 20}, {}, "warn", ["none of min"]),
])
def test_memory_limits_configured_against_applied(tmp_path, version, configured, files, severity, words):
    directory = _cgroup_files(tmp_path, files)
    targets, unsupported = memory_targets(version, configured, swap_accounting=False)
    applied, missing = compare_targets(targets, read_memory_files(directory, [t["file"] for t in targets]))
    result = memory_limit_finding("hog.service", configured, applied, missing, unsupported, version,
                                  unit_state=LOADED)
    assert result["severity"] == severity, result
    for word in words:
        assert word in result["message"]


@pytest.mark.parametrize("kwargs, severity", [
    ({"systemd": False}, "info"),
    ({"unit_state": {"LoadState": "loaded", "ActiveState": "inactive"}}, "info"),
])
def test_memory_limits_not_applicable(kwargs, severity):
    result = memory_limit_finding("hog.service", {"max": 1 << 20}, [], [], [], "v2", **kwargs)
    assert result["severity"] == severity


def test_memory_limits_without_memory_controller_warns():
    result = memory_limit_finding("hog.service", {"max": 1 << 20}, [], [], [], None, unit_state=LOADED)
    assert result["severity"] == "warn"


@pytest.mark.parametrize("meminfo, swap, available", [
    ("meminfo_noswap.txt", "info", "ok"),
    ("meminfo_swap90_lowmem.txt", "fail", "fail"),
])
def test_swap_and_available_from_recorded_meminfo(meminfo, swap, available):
    summary = memory_summary(parse_meminfo(fixture(meminfo)))
    assert swap_finding(summary, TH)["severity"] == swap
    assert available_memory_finding(summary, TH)["severity"] == available


@pytest.mark.parametrize("used_percent, available_percent, swap, available", [
    (49.9, 10.1, "ok", "ok"),
    (50.0, 10.0, "warn", "warn"),
    (80.0, 5.0, "fail", "fail"),
])
def test_swap_and_available_thresholds(used_percent, available_percent, swap, available):
    summary = {"swap_total_bytes": 1 << 30, "swap_used_bytes": 1, "swap_used_percent": used_percent,
               "mem_total_bytes": 1 << 30, "mem_available_bytes": 1, "mem_available_percent": available_percent}
    assert swap_finding(summary, TH)["severity"] == swap
    assert available_memory_finding(summary, TH)["severity"] == available


@pytest.mark.parametrize("text, severity, word", [
    (None, "info", "PSI disabled"),
    ("psi_idle.txt", "ok", "some avg10=0.00"),
    ("psi_thrashing.txt", "fail", "full avg10=31.07"),
])
def test_psi(text, severity, word):
    psi = parse_psi(fixture(text)) if text else None
    result = psi_finding(psi, TH)
    assert result["severity"] == severity
    assert word in result["message"]


def test_psi_some_pressure_warns():
    psi = {"some": {"avg10": 12.0, "avg60": 3.0}, "full": {"avg10": 0.5, "avg60": 0.1}}
    assert psi_finding(psi, TH)["severity"] == "warn"


@pytest.mark.parametrize("count, kmsg, readable, severity, words", [
    (0, None, True, "ok", ["no OOM kill since boot"]),
    (2, "kmsg_hog_killed.txt", True, "warn", ["2 OOM kills since boot", "last: python3 (pid 1377", "host-wide"]),
    (1, "kmsg_sshd_killed.txt", True, "fail", ["critical service killed: sshd"]),
    (3, None, False, "warn", ["victims unknown: kernel log unreadable"]),
    (None, None, False, "info", ["kernel log unreadable"]),
])
def test_oom_kills(count, kmsg, readable, severity, words):
    events = parse_oom_events(fixture(kmsg)) if kmsg else []
    result = oom_kills_finding(count, events, readable, critical_comms=["sshd", "cron"])
    assert result["severity"] == severity
    for word in words:
        assert word in result["message"]


def test_oom_kills_lists_memcg_victim_and_snapshot():
    events = parse_oom_events(fixture("kmsg_hog_killed.txt"))
    result = oom_kills_finding(2, events, True, snapshot={"time": 1700000000.5, "top_rss": []}, max_examples=5)
    hog = result["evidence"]["victims"][0]
    assert (hog["comm"], hog["pid"], hog["memcg"], hog["scope"]) == ("hog", 812, "/system.slice/hog.service", "memcg")
    assert "snapshot at 1700000000.5" in result["message"]


def test_kernel_log_finding():
    assert kernel_log_finding(True)["severity"] == "ok"
    assert kernel_log_finding(False)["severity"] == "info"


STATE = {"last_run": 1000.0, "checks": {"sshd": {"status": "ok"}, "cron": {"status": "ok"}}}
TIMER = {"LoadState": "loaded", "ActiveState": "active"}


@pytest.mark.parametrize("systemd, timer, state, now, severity, word", [
    (False, None, None, 1000, "warn", "systemd is not PID 1"),
    (True, {"LoadState": "not-found"}, None, 1000, "warn", "not installed"),
    (True, {"LoadState": "loaded", "ActiveState": "inactive"}, STATE, 1000, "fail", "inactive"),
    (True, TIMER, None, 1000, "warn", "no result yet"),
    (True, TIMER, STATE, 1400, "warn", "stale"),
    (True, TIMER, dict(STATE, checks={"sshd": {"status": "restarted"}, "cron": {"status": "ok"}}), 1010,
     "warn", "failing checks: sshd"),
    (True, TIMER, STATE, 1010, "ok", "all checks healthy"),
])
def test_watchdog_timer(systemd, timer, state, now, severity, word):
    result = watchdog_timer_finding(systemd, timer, None, state, now, 300)
    assert result["severity"] == severity
    assert word in result["message"]


def test_watchdog_timer_reads_recorded_state_file():
    import json
    state = json.loads(fixture("watchdog-state.json"))
    result = watchdog_timer_finding(True, TIMER, None, state, 1700000100, 300)
    assert result["severity"] == "ok"
    assert result["evidence"]["age_seconds"] == 10


@pytest.mark.parametrize("heartbeat, now, present, severity", [
    (None, 1000, True, "info"),
    (900.0, 1000, True, "ok"),
    (700.0, 1000, True, "warn"),
    (None, 1000, False, "info"),
])
def test_cron_heartbeat(heartbeat, now, present, severity):
    assert cron_heartbeat_finding(heartbeat, now, 180, present)["severity"] == severity


@pytest.mark.parametrize("devices, sysfs, runtime, severity", [
    ([], {}, None, "info"),
    (["watchdog", "watchdog0"], {"watchdog0": {"state": "active", "timeout": "15"}}, "15s", "ok"),
    (["watchdog", "watchdog0"], {"watchdog0": {"state": "inactive", "timeout": "30"}}, None, "warn"),
    (["watchdog", "watchdog0"], {"watchdog0": {"state": "inactive"}}, "15s", "warn"),
    (["watchdog"], {}, "30s", "ok"),
])
def test_hardware_watchdog(devices, sysfs, runtime, severity):
    assert hardware_watchdog_finding(devices, sysfs, runtime)["severity"] == severity


@pytest.mark.parametrize("systemd, state, severity", [
    (False, None, "info"),
    (True, {"LoadState": "not-found"}, "warn"),
    (True, {"LoadState": "loaded", "ActiveState": "failed", "Result": "oom-kill"}, "fail"),
    (True, {"LoadState": "loaded", "ActiveState": "active", "SubState": "running"}, "ok"),
])
def test_oomguard_unit(systemd, state, severity):
    result = oomguard_unit_finding("oomguard-alertd.service", systemd, state)
    assert result["id"] == "units.oomguard-alertd"
    assert result["severity"] == severity


GIB = 1 << 30


@pytest.mark.parametrize("dom0, dom0_mem, autoballoon, current, severity, word", [
    (False, None, None, 8 * GIB, "info", "not a Xen dom0"),
    (True, {"size": 4 * GIB, "max": 4 * GIB}, "off", 4 * GIB - (60 << 20), "ok", "pinned at 4 GiB"),
    (True, None, "off", 4 * GIB, "warn", "not pinned"),
    (True, {"size": 4 * GIB, "max": None}, "off", 4 * GIB, "warn", "no max:"),
    (True, {"size": 4 * GIB, "max": 4 * GIB}, "auto", 4 * GIB, "warn", "ballooning not off"),
    (True, {"size": 4 * GIB, "max": 4 * GIB}, "off", 2 * GIB, "warn", "below pinned"),
])
def test_xen_dom0(dom0, dom0_mem, autoballoon, current, severity, word):
    result = xen_dom0_finding(dom0, dom0_mem, autoballoon, current)
    assert result["severity"] == severity
    assert word in result["message"]


@pytest.mark.parametrize("func, value, severity", [
    (panic_on_oom_finding, 0, "ok"),
    (panic_on_oom_finding, 1, "fail"),
    (panic_on_oom_finding, 2, "fail"),
    (panic_on_oom_finding, None, "info"),
    (oom_kill_allocating_task_finding, 0, "ok"),
    (oom_kill_allocating_task_finding, 1, "warn"),
    (overcommit_finding, 0, "ok"),
    (overcommit_finding, 1, "warn"),
    (overcommit_finding, 2, "info"),
])
def test_kernel_settings(func, value, severity):
    assert func(value)["severity"] == severity


def _f(severity, fid="x"):
    return {"id": fid, "severity": severity, "message": "m", "evidence": {}}


@pytest.mark.parametrize("severities, score, worst", [
    ([], 100, "ok"),
    (["ok", "ok", "info"], 100, "info"),
    (["ok", "warn"], 75, "warn"),
    (["ok", "fail", "info", "info"], 50, "fail"),
    (["fail"], 0, "fail"),
])
def test_summarize(severities, score, worst):
    summary = summarize([_f(s) for s in severities])
    assert summary["score"] == score
    assert summary["worst"] == worst
    assert sum(summary["counts"].values()) == len(severities)


@pytest.mark.parametrize("fail_on, expected", [
    ("never", []),
    ("fail", ["b"]),
    ("warn", ["b", "c"]),
])
def test_offending(fail_on, expected):
    findings = [_f("ok", "a"), _f("fail", "b"), _f("warn", "c"), _f("info", "d")]
    assert [f["id"] for f in offending(findings, fail_on)] == expected


def test_offending_rejects_unknown_level():
    with pytest.raises(ValueError, match="allowed: warn, fail, never"):
        offending([], "sometimes")


def test_report_lines_worst_first():
    lines = report_lines([_f("ok", "a"), _f("fail", "b"), _f("info", "c")])
    assert lines == ["FAIL b: m", "INFO c: m", "OK a: m"]


@pytest.mark.parametrize("user, error", [
    ({"swap_used_percent_warn": 90}, "must be <="),
    ({"mem_available_percent_warn": 2}, "must be >="),
    ({"swap_used": 10}, "unknown key 'swap_used'"),
    ({"psi_full_avg10_fail": 150}, "out of range"),
    ({"heartbeat_max_age": "soon"}, "not a number"),
    ({"heartbeat_max_age": True}, "not a number"),
])
def test_merge_thresholds_rejects(user, error):
    with pytest.raises(ValueError, match=error):
        merge_thresholds(user)


def test_merge_thresholds_accepts():
    merged = merge_thresholds({"swap_used_percent_warn": 20, "heartbeat_max_age": 600})
    assert merged["swap_used_percent_warn"] == 20
    assert merged["heartbeat_max_age"] == 600
    assert merged["swap_used_percent_fail"] == TH["swap_used_percent_fail"]


# --- early relief ------------------------------------------------------------------

ACTIVE = {"LoadState": "loaded", "ActiveState": "active"}
INACTIVE = {"LoadState": "loaded", "ActiveState": "inactive"}
GIB = 1024 ** 3


@pytest.mark.parametrize("states,planned,swap,severity,fragment", [
    ({"systemd-oomd.service": ACTIVE}, "systemd-oomd", GIB, "ok", "systemd-oomd active, as early_relief planned"),
    ({"earlyoom.service": ACTIVE}, None, GIB, "info", "not configured by oomguard"),
    ({"earlyoom.service": INACTIVE}, "earlyoom", 0, "warn", "early_relief planned earlyoom but earlyoom.service is inactive"),
    ({"earlyoom.service": ACTIVE, "systemd-oomd.service": ACTIVE}, "earlyoom", GIB, "warn", "race each other"),
    ({}, None, GIB, "warn", "swap is on (1 GiB) and no early killer is active"),
    ({}, None, 0, "info", "without swap"),
])
def test_early_engine_finding(states, planned, swap, severity, fragment):
    result = early_engine_finding(states, planned, planned is not None, swap)
    assert result["id"] == "early_relief.engine" and result["severity"] == severity
    assert fragment in result["message"]


def test_early_engine_finding_without_systemd():
    assert early_engine_finding({}, None, False, GIB, systemd=False)["severity"] == "info"


@pytest.mark.parametrize("planned,active,missing,differing,running,severity,fragment", [
    ({"engine": None}, None, [], [], None, "info", "no early_relief status file"),
    ({"engine": "earlyoom", "earlyoom_args": ["-m", "10"]}, None, [], [], None, "info", "not running"),
    ({"engine": "earlyoom", "earlyoom_args": ["-m", "10"]}, "earlyoom", [], [], ["-m", "10"], "ok", "arguments"),
    ({"engine": "earlyoom", "earlyoom_args": ["-m", "10"]}, "earlyoom", [], [], ["-m", "5"], "warn",
     "running earlyoom has -m 5, early_relief planned -m 10"),
    ({"engine": "earlyoom", "earlyoom_args": ["-m", "10"]}, "earlyoom", [], [], None, "info", "unreadable"),
    ({"engine": "systemd-oomd", "files": {"/a": "x"}}, "systemd-oomd", [], [], None, "ok", "1 drop-in(s) match"),
    ({"engine": "systemd-oomd", "files": {"/a": "x"}}, "systemd-oomd", ["/a"], [], None, "warn", "missing: /a"),
    ({"engine": "systemd-oomd", "files": {}}, "systemd-oomd", [], [], None, "info", "no drop-in contents"),
])
def test_early_settings_finding(planned, active, missing, differing, running, severity, fragment):
    result = early_settings_finding(planned, active, missing, differing, running)
    assert (result["id"], result["severity"]) == ("early_relief.settings", severity)
    assert fragment in result["message"]


def test_early_kills_finding_counts_victims_and_fails_on_a_critical_one():
    kills = [{"time": 1.0, "engine": "earlyoom", "pid": 900, "name": "hog", "uid": 0, "unit": None},
             {"time": 2.0, "engine": "systemd-oomd", "pid": None, "name": "app-worker.service",
              "unit": "app-worker.service", "reason": "memory pressure ...", "processes": 3}]
    result = early_kills_finding(kills, ["sshd", "ssh.service"], max_examples=1)
    assert result["severity"] == "warn" and result["evidence"]["count"] == 2
    assert result["message"].startswith("2 early kills since boot (earlyoom 1, systemd-oomd 1); last: "
                                        "app-worker.service by systemd-oomd")
    assert [v["unit"] for v in result["evidence"]["victims"]] == ["app-worker.service"]
    failed = early_kills_finding(kills + [dict(kills[0], pid=412, name="sshd")], ["sshd"])
    assert failed["severity"] == "fail" and "critical service killed: sshd" in failed["message"]
    assert early_kills_finding([], [])["message"] == "no early kill since boot"
    refused = early_kills_finding([], [], hook_error="/run/oomguard/early-kills.jsonl is a symlink: refused")
    assert refused["severity"] == "warn" and "symlink" in refused["message"]
