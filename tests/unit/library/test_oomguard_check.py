"""Unit tests for library/oomguard_check.py (and the audit playbook's report filters).

Each test builds a whole fake host under tmp_path (/proc, /sys/fs/cgroup v1 or v2,
/etc drop-ins, state files, kernel log) from recorded content, and a fake `systemctl
show` that answers from recorded output exactly like systemctl does (one block per
unit argument, in order; aliases answer with the real unit's Id).
"""

import json
import os
import sys
import time

import pytest

import oomguard_check
from fakeproc import add_process

HERE = os.path.dirname(__file__)
FIXTURES = os.path.join(HERE, "..", "fixtures", "audit")
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "playbooks", "filter_plugins"))
import oomguard_audit  # noqa: E402  (the playbook-adjacent filter plugin)

CAP_WITHOUT_SYS_RESOURCE = "00000000800405fb"  # root in the podman test container (recorded)
CAP_FULL = "000001ffffffffff"
ALIASES = {"sshd.service": "ssh.service"}


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


def write(path, text):
    path = str(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)


class FakeSystemctl(object):
    """Answers `systemctl show` for any list of units from a recorded output."""

    def __init__(self, recorded):
        self.blocks = {}
        for block in fixture(recorded).strip().split("\n\n"):
            unit_id = [line for line in block.splitlines() if line.startswith("Id=")][0][3:]
            self.blocks[unit_id] = block
        self.calls = []

    def __call__(self, units):
        self.calls.append(list(units))
        out = []
        for unit in units:
            real = ALIASES.get(unit, unit)
            out.append(self.blocks.get(real, "Id=%s\nLoadState=not-found\nActiveState=inactive\nSubState=dead" % unit))
        return "\n\n".join(out) + "\n", None


def build_host(tmp_path, mounts, meminfo="meminfo_noswap.txt", vmstat="vmstat_zero.txt", psi="psi_idle.txt",
               kmsg=None, systemd=True):
    proc = tmp_path / "proc"
    cgroup = tmp_path / "sys" / "fs" / "cgroup"
    write(proc / "self" / "mounts", fixture(mounts).replace("/sys/fs/cgroup", str(cgroup)))
    write(proc / "meminfo", fixture(meminfo))
    write(proc / "vmstat", fixture(vmstat))
    if psi:
        write(proc / "pressure" / "memory", fixture(psi))
    for name, value in (("panic_on_oom", 0), ("oom_kill_allocating_task", 0), ("overcommit_memory", 0),
                        ("overcommit_ratio", 50)):
        write(proc / "sys" / "vm" / name, "%d\n" % value)
    if kmsg:
        write(tmp_path / "kmsg", fixture(kmsg))
    if systemd:
        os.makedirs(str(tmp_path / "run" / "systemd" / "system"))
    os.makedirs(str(tmp_path / "root"), exist_ok=True)
    os.makedirs(str(tmp_path / "dev"), exist_ok=True)
    return {
        "proc": str(proc), "sys": str(tmp_path / "sys"), "dev": str(tmp_path / "dev"), "etc": str(tmp_path / "etc"),
        "root": str(tmp_path / "root"), "systemd_runtime": str(tmp_path / "run" / "systemd" / "system"),
        "state": str(tmp_path / "var" / "lib" / "oomguard"),
        "snapshots": str(tmp_path / "var" / "log" / "oomguard" / "snapshots.jsonl"), "kmsg": str(tmp_path / "kmsg"),
    }


def set_caps(roots, pid, caps):
    with open(os.path.join(roots["proc"], str(pid), "status"), "a") as handle:
        handle.write("CapEff:\t%s\n" % caps)


def by_id(result):
    return dict((f["id"], f) for f in result["findings"])


def config(**params):
    return oomguard_check.build_config(dict({"checks": ["all"], "fail_on": "never", "max_examples": 5,
                                             "thresholds": {}, "expendable_services": [],
                                             "helper_processes": oomguard_check.DEFAULT_HELPERS}, **params))


# --- a protected Debian 12 VM: systemd, cgroup v2, oomguard installed ------------

def protected_vm(tmp_path):
    roots = build_host(tmp_path, "mounts_unified.txt", vmstat="vmstat_two_kills.txt", kmsg="kmsg_hog_killed.txt")
    proc = roots["proc"]
    v2 = lambda unit: "/system.slice/%s" % unit  # noqa: E731
    add_process(proc, 1, "systemd", ppid=0, cgroup_v2="/init.scope")
    add_process(proc, 2, "kthreadd", ppid=0, rss_kb=0, cmdline=[])
    add_process(proc, 250, "systemd-journal", adj=-250, cgroup_v2=v2("systemd-journald.service"))
    add_process(proc, 398, "cron", adj=-1000, cgroup_v2=v2("cron.service"))
    add_process(proc, 412, "sshd", adj=-1000, cgroup_v2=v2("ssh.service"))
    add_process(proc, 455, "python3", adj=-900, cgroup_v2=v2("oomguard-alertd.service"))
    add_process(proc, 900, "hog", cgroup_v2=v2("hog.service"))
    add_process(proc, 950, "worker", adj=500, cgroup_v2=v2("worker.service"))
    add_process(proc, 1200, "sshd", ppid=412, cgroup_v2="/user.slice/user-0.slice/session-3.scope")
    add_process(proc, 1203, "bash", ppid=1200, cgroup_v2="/user.slice/user-0.slice/session-3.scope")
    for pid in (398, 412):
        set_caps(roots, pid, CAP_FULL)
    write(os.path.join(roots["etc"], "systemd/system/hog.service.d/50-oomguard-memory.conf"),
          "# Managed by oomguard\n[Service]\nMemoryMax=64M\nMemoryHigh=48M\n")
    cgroup = os.path.join(str(tmp_path), "sys/fs/cgroup/system.slice/hog.service")
    write(os.path.join(cgroup, "memory.max"), "67108864\n")
    write(os.path.join(cgroup, "memory.high"), "50331648\n")
    write(os.path.join(cgroup, "cgroup.procs"), "900\n")
    state = json.loads(fixture("watchdog-state.json"))
    state["last_run"] = time.time() - 10
    write(os.path.join(roots["state"], "watchdog-state.json"), json.dumps(state))
    write(os.path.join(roots["state"], "cron-heartbeat"), "%d\n" % (time.time() - 30))
    os.makedirs(os.path.join(roots["dev"], "watchdog0"))
    write(os.path.join(roots["sys"], "class/watchdog/watchdog0/state"), "active\n")
    write(os.path.join(roots["sys"], "class/watchdog/watchdog0/timeout"), "15\n")
    write(os.path.join(roots["etc"], "systemd/system.conf.d/50-oomguard-watchdog.conf"),
          "[Manager]\nRuntimeWatchdogSec=15s\n")
    return roots


def test_protected_vm_reports_every_check(tmp_path):
    roots = protected_vm(tmp_path)
    systemctl = FakeSystemctl("systemctl_show_vm_protected.txt")
    cfg = config(expendable_services=[{"name": "worker", "units": [], "processes": ["worker"],
                                       "oom_score_adj": 500}])
    result, bad = oomguard_check.run_check(cfg, roots, systemctl)
    found = by_id(result)
    assert len(systemctl.calls) == 1, "one systemctl call for every unit"
    assert "hog.service" in systemctl.calls[0]
    expected = {
        "sshd.oom_score_adj": "ok", "cron.oom_score_adj": "ok", "inherited_protection": "ok",
        "worker.expendable": "ok", "memory_limits.hog.service": "ok", "memory.swap": "info",
        "memory.available": "ok", "memory.psi": "ok", "oom_kills": "warn", "kernel_log": "ok",
        "watchdog.timer": "ok", "cron.heartbeat": "ok", "watchdog.hardware": "ok",
        "units.oomguard-alertd": "ok", "xen.dom0": "info", "kernel.panic_on_oom": "ok",
        "kernel.oom_kill_allocating_task": "ok", "kernel.overcommit": "ok",
        "early_relief.engine": "info", "early_relief.settings": "info", "early_kills": "ok",
    }
    assert dict((k, found[k]["severity"]) for k in expected) == expected
    assert set(found) == set(expected)
    assert found["sshd.oom_score_adj"]["evidence"]["found_by"] == "systemd MainPID"
    assert found["sshd.oom_score_adj"]["evidence"]["configured"] == -1000  # SSHD_OOM_ADJUST in Environment
    assert found["sshd.oom_score_adj"]["evidence"]["enforced"] is True
    assert [v["comm"] for v in found["oom_kills"]["evidence"]["victims"]] == ["hog", "python3"]
    assert result["summary"]["worst"] == "warn"
    assert result["report"][0].startswith("WARN oom_kills: 2 OOM kills since boot")
    assert result["changed"] is False
    assert bad == []


def test_leaked_session_protection_is_found(tmp_path):
    roots = protected_vm(tmp_path)
    # OOMScoreAdjust=-1000 on ssh.service instead of SSHD_OOM_ADJUST: sessions inherit it.
    for pid in (1200, 1203):
        write(os.path.join(roots["proc"], str(pid), "oom_score_adj"), "-1000\n")
    result, _bad = oomguard_check.run_check(config(), roots, FakeSystemctl("systemctl_show_vm_protected.txt"))
    leak = by_id(result)["inherited_protection"]
    assert leak["severity"] == "fail"
    assert [e["pid"] for e in leak["evidence"]["examples"]] == [1200, 1203]
    assert leak["evidence"]["examples"][1]["parent"] == "sshd"


def test_memory_limit_not_applied_fails(tmp_path):
    roots = protected_vm(tmp_path)
    write(os.path.join(str(tmp_path), "sys/fs/cgroup/system.slice/hog.service/memory.max"), "max\n")
    result, _bad = oomguard_check.run_check(config(checks=["memory_limits"]), roots,
                                            FakeSystemctl("systemctl_show_vm_protected.txt"))
    assert [f["id"] for f in result["findings"]] == ["memory_limits.hog.service"]
    assert result["findings"][0]["severity"] == "fail"
    assert "max 64 MiB configured, infinity applied" in result["findings"][0]["message"]


def test_checks_select_groups(tmp_path):
    roots = protected_vm(tmp_path)
    result, _bad = oomguard_check.run_check(config(checks=["kernel_settings", "xen"]), roots,
                                            FakeSystemctl("systemctl_show_vm_protected.txt"))
    assert sorted(by_id(result)) == ["kernel.oom_kill_allocating_task", "kernel.overcommit",
                                     "kernel.panic_on_oom", "xen.dom0"]


def test_oom_kill_of_sshd_fails(tmp_path):
    roots = protected_vm(tmp_path)
    write(roots["kmsg"], fixture("kmsg_sshd_killed.txt"))
    result, bad = oomguard_check.run_check(config(fail_on="fail"), roots,
                                           FakeSystemctl("systemctl_show_vm_protected.txt"))
    assert by_id(result)["oom_kills"]["severity"] == "fail"
    assert [f["id"] for f in bad] == ["oom_kills"]


# --- the Molecule podman container: systemd PID 1, no CAP_SYS_RESOURCE, cgroup v1 ----

def podman_container(tmp_path):
    roots = build_host(tmp_path, "mounts_hybrid.txt", kmsg=None)
    proc = roots["proc"]
    cg = "/libpod_parent/libpod-5f33eddc1bf64eadf1eada5ffad3221647c0aaf8aab1ae3471b99252027b406a/system.slice/%s"
    add_process(proc, 1, "systemd", ppid=0, cgroup_v1_systemd="/init.scope")
    add_process(proc, 28, "cron", cgroup_v1_systemd=cg % "cron.service")
    add_process(proc, 33, "sshd", cgroup_v1_systemd=cg % "ssh.service")
    for pid in (1, 28, 33):
        set_caps(roots, pid, CAP_WITHOUT_SYS_RESOURCE)
    write(os.path.join(roots["root"], "run/.containerenv"), "engine=\"podman-4.3.1\"\n")
    return roots


def test_container_reports_kernel_refusal(tmp_path):
    roots = podman_container(tmp_path)
    write(os.path.join(roots["etc"], "systemd/system/cron.service.d/50-oomguard-oom.conf"),
          "[Service]\nOOMScoreAdjust=-1000\n")
    result, bad = oomguard_check.run_check(config(fail_on="fail"), roots,
                                           FakeSystemctl("systemctl_show_bookworm_container.txt"))
    found = by_id(result)
    for name, pid in (("sshd", 33), ("cron", 28)):
        item = found["%s.oom_score_adj" % name]
        assert item["severity"] == "fail"
        assert item["evidence"]["enforced"] is False
        assert item["evidence"]["cap_sys_resource"] is False
        assert item["evidence"]["processes"][0]["pid"] == pid
        assert "container without CAP_SYS_RESOURCE: podman" in item["message"]
    assert found["cron.oom_score_adj"]["evidence"]["configured"] == -1000
    assert found["kernel_log"]["severity"] == "info"
    assert found["watchdog.timer"]["severity"] == "warn"
    assert found["units.oomguard-alertd"]["severity"] == "warn"
    assert result["host"]["container"] == "podman"
    assert result["host"]["memory_cgroup"] == "v1"
    assert [f["id"] for f in bad] == ["cron.oom_score_adj", "sshd.oom_score_adj"]


# --- no systemd as PID 1 (this dev machine's shape), PSI disabled --------------------

def no_systemd_host(tmp_path):
    roots = build_host(tmp_path, "mounts_hybrid.txt", psi=None, kmsg="kmsg_hog_killed.txt", systemd=False)
    proc = roots["proc"]
    add_process(proc, 1, "process_api", ppid=0)
    add_process(proc, 700, "sshd", adj=-1000)
    add_process(proc, 701, "sshd", ppid=700, adj=-1000)
    add_process(proc, 702, "bash", ppid=701, adj=-1000)
    add_process(proc, 710, "cron", adj=0)
    return roots


def refuse_systemctl(units):
    raise AssertionError("systemctl must not run without systemd: %s" % units)


def test_no_systemd_finds_services_by_name(tmp_path):
    roots = no_systemd_host(tmp_path)
    result, _bad = oomguard_check.run_check(config(), roots, refuse_systemctl)
    found = by_id(result)
    sshd = found["sshd.oom_score_adj"]
    assert (sshd["severity"], sshd["evidence"]["found_by"]) == ("ok", "process name")
    assert [p["pid"] for p in sshd["evidence"]["processes"]] == [700]
    assert found["cron.oom_score_adj"]["severity"] == "fail"
    assert "no oomguard policy applied" in found["cron.oom_score_adj"]["message"]
    assert found["inherited_protection"]["severity"] == "fail"
    assert found["inherited_protection"]["evidence"]["count"] == 2
    assert found["memory.psi"]["severity"] == "info"
    assert "PSI disabled" in found["memory.psi"]["message"]
    assert "systemd is not PID 1" in found["watchdog.timer"]["message"]
    assert found["units.oomguard-alertd"]["severity"] == "info"
    assert result["host"]["systemd"] is False


# --- parameters ------------------------------------------------------------------------

@pytest.mark.parametrize("params, error", [
    ({"checks": ["all", "bogus"]}, "checks: bogus unknown"),
    ({"critical_services": [{"name": "x", "units": ["a/b"], "processes": [], "oom_score_adj": -1000}]},
     "not a valid unit name"),
    ({"critical_services": [{"name": "x", "units": ["x.service"], "processes": [], "oom_score_adj": -1001}]},
     r"critical_services\[0\].oom_score_adj: -1001 out of range; allowed: -1000..1000"),
    ({"critical_services": [{"name": "x", "units": [], "processes": [], "oom_score_adj": -1000}]},
     "give units or processes"),
    ({"critical_services": [{"name": "x", "units": [], "processes": ["x"], "oom_score_adj": -1},
                            {"name": "x", "units": [], "processes": ["y"], "oom_score_adj": -1}]}, "appears twice"),
    ({"expendable_services": [{"name": "w", "units": [], "processes": ["w"], "oom_score_adj": 0}]},
     r"expendable_services\[0\].oom_score_adj: 0 out of range; allowed: 1..1000"),
    ({"thresholds": {"swap_used_percent_warn": 95}}, "must be <="),
    ({"fail_on": "always"}, "fail_on: 'always'; allowed: warn, fail, never"),
    ({"max_examples": -1}, "max_examples"),
])
def test_bad_parameters_fail_with_the_argument_named(params, error):
    with pytest.raises(ValueError, match=error):
        config(**params)


def test_unit_names_get_their_suffix():
    cfg = config(critical_services=[{"name": "pg", "units": ["postgresql"], "processes": [], "oom_score_adj": -900}])
    assert cfg["critical"][0]["units"] == ["postgresql.service"]


def test_parse_show_blocks_maps_aliases_by_position():
    systemctl = FakeSystemctl("systemctl_show_bookworm_container.txt")
    units = ["ssh.service", "sshd.service", "cron.service"]
    text, _error = systemctl(units)
    show = oomguard_check.parse_show_blocks(text, units)
    assert show["sshd.service"]["Id"] == "ssh.service"
    assert show["sshd.service"]["MainPID"] == "33"
    assert show["cron.service"]["MainPID"] == "28"


# --- main() with a fake AnsibleModule ------------------------------------------------

class ExitJson(Exception):
    pass


class FailJson(Exception):
    pass


def fake_module_class(params):
    class FakeModule(object):
        def __init__(self, argument_spec, supports_check_mode):
            assert supports_check_mode is True
            assert set(params) <= set(argument_spec)
            self.params = dict((k, v.get("default")) for k, v in argument_spec.items())
            self.params.update(params)

        def get_bin_path(self, name, required=False):
            return None

        def run_command(self, *args, **kwargs):
            raise AssertionError("no command expected")

        def exit_json(self, **kwargs):
            raise ExitJson(kwargs)

        def fail_json(self, **kwargs):
            raise FailJson(kwargs)
    return FakeModule


def test_main_fail_on_fails_and_still_returns_findings(tmp_path, monkeypatch):
    monkeypatch.setattr(oomguard_check, "ROOTS", no_systemd_host(tmp_path))
    monkeypatch.setattr(oomguard_check, "AnsibleModule", fake_module_class({"fail_on": "fail"}))
    with pytest.raises(FailJson) as raised:
        oomguard_check.main()
    result = raised.value.args[0]
    assert result["msg"].startswith("2 finding(s) at or above fail: ")
    assert "FAIL inherited_protection" in result["msg"] and "FAIL cron.oom_score_adj" in result["msg"]
    assert result["summary"]["counts"]["fail"] == 2
    assert result["findings"]


def test_main_never_exits_with_report(tmp_path, monkeypatch):
    monkeypatch.setattr(oomguard_check, "ROOTS", no_systemd_host(tmp_path))
    monkeypatch.setattr(oomguard_check, "AnsibleModule", fake_module_class({}))
    with pytest.raises(ExitJson) as raised:
        oomguard_check.main()
    result = raised.value.args[0]
    assert result["changed"] is False
    assert result["report"][0].startswith("FAIL ")
    assert result["diff"] == {"before": "", "after": ""}


def test_main_bad_parameter_fails_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(oomguard_check, "ROOTS", {})  # any read would raise KeyError
    monkeypatch.setattr(oomguard_check, "AnsibleModule", fake_module_class({"thresholds": {"nope": 1}}))
    with pytest.raises(FailJson) as raised:
        oomguard_check.main()
    assert "thresholds: unknown key 'nope'" in raised.value.args[0]["msg"]


# --- the audit playbook's report filters ------------------------------------------

def _result(tmp_path, builder, systemctl):
    result, _bad = oomguard_check.run_check(config(), builder(tmp_path), systemctl)
    return result


def test_audit_table_sorts_hosts_and_checks_worst_first(tmp_path):
    good = _result(tmp_path / "a", protected_vm, FakeSystemctl("systemctl_show_vm_protected.txt"))
    bad = _result(tmp_path / "b", podman_container, FakeSystemctl("systemctl_show_bookworm_container.txt"))
    hostvars = {"web1": {"__oomguard_audit": good}, "db1": {"__oomguard_audit": bad}, "gone": {}}
    table = oomguard_audit.audit_table(hostvars, ["web1", "db1", "gone"], generated="20260101T000000Z")
    assert [r["host"] for r in table["hosts"]] == ["gone", "db1", "web1"]
    assert table["hosts"][0]["status"] == "unreachable"
    assert table["checks"][0] in ("cron.oom_score_adj", "sshd.oom_score_adj")
    assert table["totals"]["fail"] == 1 and table["totals"]["warn"] == 1 and table["totals"]["unreachable"] == 1
    csv_text = oomguard_audit.audit_csv(table)
    lines = csv_text.splitlines()
    assert lines[0] == "host,score,host_worst,id,severity,message"
    assert lines[1].startswith("gone,,unreachable,,unreachable,")
    assert len(lines) == 1 + 1 + len(bad["findings"]) + len(good["findings"])
    summary = oomguard_audit.audit_summary_lines(table)
    assert summary[0].startswith("3 host(s)")
    assert summary[2].startswith("db1: score")


def test_oom_protect_status_sets_policies_and_on_purpose_protection(tmp_path):
    roots = protected_vm(tmp_path)
    # oom_protect protects cron at -900 and dbus at -900, and marks worker expendable at 500.
    write(os.path.join(roots["proc"], "398", "oom_score_adj"), "-900\n")
    add_process(roots["proc"], 300, "dbus-daemon", adj=-900, cgroup_v2="/system.slice/dbus.service")
    status = {"role": "oom_protect", "services": [
        {"kind": "critical", "unit": "ssh.service", "score": -1000, "enforced": True,
         "live": [{"pid": 412, "comm": "sshd", "value": -1000, "enforced": True}]},
        {"kind": "critical", "unit": "cron.service", "score": -900, "enforced": True,
         "live": [{"pid": 398, "comm": "cron", "value": -900, "enforced": True}]},
        {"kind": "critical", "unit": "dbus.service", "score": -900, "enforced": True,
         "live": [{"pid": 300, "comm": "dbus-daemon", "value": -900, "enforced": True}]},
        {"kind": "expendable", "unit": None, "target": "worker", "score": 500, "enforced": True, "live": []},
    ]}
    write(os.path.join(roots["state"], "oom_protect.json"), json.dumps(status))
    systemctl = FakeSystemctl("systemctl_show_vm_protected.txt")
    result, _bad = oomguard_check.run_check(config(), roots, systemctl)
    found = by_id(result)
    assert found["cron.oom_score_adj"]["severity"] == "ok"
    assert found["cron.oom_score_adj"]["evidence"]["policy"] == -900
    assert found["inherited_protection"]["severity"] == "ok", found["inherited_protection"]["message"]
    assert found["worker.expendable"]["severity"] == "ok"
    assert "dbus.service" in systemctl.calls[0]


def test_explicit_policy_wins_over_oom_protect_status(tmp_path):
    roots = protected_vm(tmp_path)
    write(os.path.join(roots["proc"], "398", "oom_score_adj"), "-900\n")
    write(os.path.join(roots["state"], "oom_protect.json"), json.dumps({"services": [
        {"kind": "critical", "unit": "cron.service", "score": -900, "live": []}]}))
    cfg = config(critical_services=[{"name": "cron", "units": ["cron.service"], "processes": ["cron"],
                                     "oom_score_adj": -1000, "role": "daemon"}])
    result, _bad = oomguard_check.run_check(cfg, roots, FakeSystemctl("systemctl_show_vm_protected.txt"))
    assert by_id(result)["cron.oom_score_adj"]["severity"] == "fail"


# --- early relief: systemd-oomd on the VM, earlyoom in a container ------------------

OOMD_CONF = "/etc/systemd/oomd.conf.d/50-oomguard.conf"
SLICE_DROPIN = "/etc/systemd/system/system.slice.d/50-oomguard-oomd.conf"
PLANNED_FILES = {
    OOMD_CONF: "# Managed by oomguard\n[OOM]\nSwapUsedLimit=80%\nDefaultMemoryPressureDurationSec=20s\n",
    SLICE_DROPIN: "# Managed by oomguard\n[Slice]\nManagedOOMSwap=kill\nManagedOOMMemoryPressure=kill\n"
                  "ManagedOOMMemoryPressureLimit=40%\n",
}
EARLYOOM_ARGS = ["-m", "10", "-s", "20", "-r", "3600", "--avoid", "^(sshd|cron|systemd-journal)$",
                 "--prefer", "^(worker)$", "-N", "/usr/lib/oomguard/early-kill-hook"]
# systemd 252's lines as `journalctl --boot -o json --output-fields=... SYSLOG_IDENTIFIER=systemd-oomd` prints them.
OOMD_JOURNAL = (
    '{"__CURSOR":"s=5b1e;i=2a2","__REALTIME_TIMESTAMP":"1733130160123456","SYSLOG_IDENTIFIER":"systemd-oomd",'
    '"_PID":"412","MESSAGE":"Killed /system.slice/app-worker.service due to memory pressure for /system.slice '
    'being 52.13% > 40.00% for > 20s with reclaim activity"}\n'
    '{"__CURSOR":"s=5b1e;i=2a9","__REALTIME_TIMESTAMP":"1733130170000000","SYSLOG_IDENTIFIER":"systemd-oomd",'
    '"_PID":"412","MESSAGE":"Considered 3 cgroups for killing, top candidates were:"}\n'
    '{"__CURSOR":"s=5b1e;i=2b0","__REALTIME_TIMESTAMP":"1733130300000000","SYSLOG_IDENTIFIER":"systemd-oomd",'
    '"_PID":"412","MESSAGE":"Killed /system.slice/hog.service due to swap used (879345664) / total (1073737728) '
    'being more than 80.00%"}\n')


def unit_block(unit, active=True, main_pid=0):
    return "Id=%s\nLoadState=loaded\nActiveState=%s\nSubState=%s\nResult=success\nMainPID=%d" % (
        unit, "active" if active else "inactive", "running" if active else "dead", main_pid if active else 0)


class FakeJournal(object):
    def __init__(self, text, error=None):
        self.text, self.error, self.calls = text, error, 0

    def __call__(self):
        self.calls += 1
        return self.text, self.error


def oomd_vm(tmp_path, files=PLANNED_FILES):
    roots = protected_vm(tmp_path)
    write(os.path.join(roots["proc"], "meminfo"), fixture("meminfo_swap90_lowmem.txt"))
    write(os.path.join(roots["state"], "early_relief.json"), json.dumps({
        "engine": "systemd-oomd", "reason": "cgroup v2 and systemd-oomd installed",
        "files": [{"path": p, "content": c} for p, c in sorted(PLANNED_FILES.items())]}))
    for path, content in files.items():
        write(os.path.join(roots["root"], path.lstrip("/")), content)
    systemctl = FakeSystemctl("systemctl_show_vm_protected.txt")
    systemctl.blocks["systemd-oomd.service"] = unit_block("systemd-oomd.service", main_pid=412)
    return roots, systemctl


def test_oomd_vm_reports_engine_settings_and_kills_from_one_journal_call(tmp_path):
    roots, systemctl = oomd_vm(tmp_path)
    journal = FakeJournal(OOMD_JOURNAL)
    result, _ = oomguard_check.run_check(config(), roots, systemctl, journal)
    found = by_id(result)
    assert journal.calls == 1 and len(systemctl.calls) == 1
    assert "systemd-oomd.service" in systemctl.calls[0] and "earlyoom.service" in systemctl.calls[0]
    assert (found["early_relief.engine"]["severity"], found["early_relief.engine"]["message"]) == (
        "ok", "systemd-oomd active, as early_relief planned")
    assert found["early_relief.settings"]["severity"] == "ok"
    kills = found["early_kills"]
    assert kills["severity"] == "warn"
    assert kills["message"].startswith("2 early kills since boot (systemd-oomd 2); last: hog.service by systemd-oomd")
    assert [v["unit"] for v in kills["evidence"]["victims"]] == ["app-worker.service", "hog.service"]


def test_oomd_dropin_changed_by_hand_is_a_warning_naming_the_role(tmp_path):
    changed = dict(PLANNED_FILES, **{SLICE_DROPIN: "[Slice]\nManagedOOMSwap=auto\n"})
    del changed[OOMD_CONF]
    roots, systemctl = oomd_vm(tmp_path, files=changed)
    result, _ = oomguard_check.run_check(config(), roots, systemctl, FakeJournal(""))
    settings = by_id(result)["early_relief.settings"]
    assert settings["severity"] == "warn"
    assert settings["evidence"]["missing_files"] == [OOMD_CONF]
    assert settings["evidence"]["differing_files"] == [SLICE_DROPIN]
    assert "re-run the early_relief role" in settings["message"]
    assert by_id(result)["early_kills"]["severity"] == "ok"


def test_early_kill_of_a_critical_unit_fails(tmp_path):
    roots, systemctl = oomd_vm(tmp_path)
    journal = FakeJournal(OOMD_JOURNAL.replace("/system.slice/hog.service", "/system.slice/ssh.service"))
    result, _ = oomguard_check.run_check(config(), roots, systemctl, journal)
    kills = by_id(result)["early_kills"]
    assert kills["severity"] == "fail" and "critical service killed: ssh.service" in kills["message"]


def test_journal_error_is_reported_not_fatal(tmp_path):
    roots, systemctl = oomd_vm(tmp_path)
    result, _ = oomguard_check.run_check(config(), roots, systemctl, FakeJournal("", "journalctl not found"))
    assert "journalctl not found" in by_id(result)["early_kills"]["message"]


def test_swap_on_and_no_early_killer_warns(tmp_path):
    roots = protected_vm(tmp_path)
    write(os.path.join(roots["proc"], "meminfo"), fixture("meminfo_swap90_lowmem.txt"))
    journal = FakeJournal(OOMD_JOURNAL)
    result, _ = oomguard_check.run_check(config(checks=["early_relief"]), roots,
                                         FakeSystemctl("systemctl_show_vm_protected.txt"), journal)
    found = by_id(result)
    assert found["early_relief.engine"]["severity"] == "warn"
    assert "swap is on" in found["early_relief.engine"]["message"]
    assert "early_relief role" in found["early_relief.engine"]["message"]
    assert journal.calls == 0  # systemd-oomd not installed: no journal query
    assert set(found) == set(["early_relief.engine", "early_relief.settings", "early_kills"])


def earlyoom_host(tmp_path, running_args):
    roots = protected_vm(tmp_path)
    write(os.path.join(roots["proc"], "meminfo"), fixture("meminfo_swap90_lowmem.txt"))
    add_process(roots["proc"], 377, "earlyoom", adj=-100, cmdline=["/usr/bin/earlyoom"] + running_args,
                cgroup_v2="/system.slice/earlyoom.service")
    write(os.path.join(roots["state"], "early_relief.json"), json.dumps(
        {"engine": "earlyoom", "reason": "cgroup v1: systemd-oomd cannot run", "earlyoom_args": EARLYOOM_ARGS}))
    hook = os.path.join(roots["root"], "run/oomguard/early-kills.jsonl")
    write(hook, '{"time": 1733130001.25, "engine": "earlyoom", "pid": 950, "name": "worker", "uid": 33}\n'
                '{"time": 1733130009.5, "engine": "earlyoom", "pid": 900, "name": "hog", "uid": 0}\n')
    os.chmod(hook, 0o644)
    roots["early_kills_uid"] = os.getuid()
    systemctl = FakeSystemctl("systemctl_show_vm_protected.txt")
    systemctl.blocks["earlyoom.service"] = unit_block("earlyoom.service", main_pid=377)
    return roots, systemctl


def test_earlyoom_with_the_planned_arguments_and_its_hook_kills(tmp_path):
    roots, systemctl = earlyoom_host(tmp_path, EARLYOOM_ARGS)
    journal = FakeJournal(OOMD_JOURNAL)
    result, _ = oomguard_check.run_check(config(), roots, systemctl, journal)
    found = by_id(result)
    assert journal.calls == 0
    assert found["early_relief.engine"]["message"] == "earlyoom active, as early_relief planned"
    assert found["early_relief.settings"]["severity"] == "ok"
    kills = found["early_kills"]
    assert kills["severity"] == "warn" and kills["evidence"]["count"] == 2
    assert kills["message"].startswith("2 early kills since boot (earlyoom 2); last: pid 900 (hog) by earlyoom")


def test_earlyoom_started_by_hand_with_other_arguments_warns(tmp_path):
    roots, systemctl = earlyoom_host(tmp_path, ["-m", "5"])
    result, _ = oomguard_check.run_check(config(), roots, systemctl)
    settings = by_id(result)["early_relief.settings"]
    assert settings["severity"] == "warn" and settings["evidence"]["running_args"] == ["-m", "5"]
    assert "restart earlyoom.service" in settings["message"]


def test_hook_file_that_is_a_symlink_is_refused_by_the_audit(tmp_path):
    roots, systemctl = earlyoom_host(tmp_path, EARLYOOM_ARGS)
    hook = os.path.join(roots["root"], "run/oomguard/early-kills.jsonl")
    os.rename(hook, hook + ".real")
    os.symlink(hook + ".real", hook)
    result, _ = oomguard_check.run_check(config(), roots, systemctl)
    kills = by_id(result)["early_kills"]
    assert kills["severity"] == "warn" and "symlink: refused" in kills["message"]


def test_both_engines_active_warns(tmp_path):
    roots, systemctl = earlyoom_host(tmp_path, EARLYOOM_ARGS)
    systemctl.blocks["systemd-oomd.service"] = unit_block("systemd-oomd.service", main_pid=412)
    result, _ = oomguard_check.run_check(config(), roots, systemctl, FakeJournal(""))
    engine = by_id(result)["early_relief.engine"]
    assert engine["severity"] == "warn" and "race each other" in engine["message"]


# --- a damaged status file is a finding, never a crash (issue 15) -----------------------

@pytest.mark.parametrize("status_text, fragment", [
    (json.dumps({"services": [{"kind": "critical", "unit": ["ssh.service"], "score": -1000}]}),
     "services[0]: unit ['ssh.service'] is not a string"),
    (json.dumps({"services": [{"kind": "expendable", "target": {"x": 1}, "score": 500}]}), "target"),
    (json.dumps({"services": [{"kind": ["critical"], "unit": "cron.service", "score": -900}]}), "kind"),
    (json.dumps({"services": [{"kind": "critical", "unit": "cron.service", "score": "-900"}]}), "score"),
    (json.dumps({"services": [{"kind": "critical", "unit": "cron.service", "score": -900, "live": 5}]}), "live"),
    (json.dumps({"services": ["cron.service"]}), "is not an object"),
    (json.dumps({"services": {"cron": -900}}), "services {'cron': -900} is not a list"),
    (json.dumps(["ssh.service"]), "not a JSON object"),
    ("{truncated", "is not valid JSON"),
])
def test_damaged_oom_protect_status_is_a_finding(tmp_path, status_text, fragment):
    roots = protected_vm(tmp_path)
    write(os.path.join(roots["state"], "oom_protect.json"), status_text)
    result, _bad = oomguard_check.run_check(config(), roots, FakeSystemctl("systemctl_show_vm_protected.txt"))
    found = by_id(result)["oomguard.status_files"]
    assert found["severity"] == "warn" and fragment in found["message"]


def test_a_sound_status_file_gives_no_status_finding(tmp_path):
    roots = protected_vm(tmp_path)
    write(os.path.join(roots["state"], "oom_protect.json"), json.dumps({"services": [
        {"kind": "critical", "unit": "cron.service", "score": -900, "live": []}]}))
    result, _bad = oomguard_check.run_check(config(), roots, FakeSystemctl("systemctl_show_vm_protected.txt"))
    assert "oomguard.status_files" not in by_id(result)
