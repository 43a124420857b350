"""oomguard_oom_score: argument validation and run() against fake /proc, cgroup and systemd trees."""

import os
import subprocess

import pytest

import oomguard_oom_score as mod
from ansible.module_utils import oomguard_oomscore as oomscore
from ansible.module_utils import oomguard_procfs as procfs
from fakeproc import STAT_TEMPLATE, add_process

CGROUP_V2_MOUNTS = "cgroup2 {root} cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0\n"
# `systemctl show -p Id -p LoadState ... ssh.service` on Debian 12 (values recorded).
SHOW_SSH = ("Id=ssh.service\nLoadState=loaded\nActiveState=active\nMainPID=480\n"
            "ControlGroup=/system.slice/ssh.service\nOOMScoreAdjust=0\n")
SHOW_MISSING = ("Id=nosuch.service\nLoadState=not-found\nActiveState=inactive\nMainPID=0\nControlGroup=\n"
                "OOMScoreAdjust=0\n")


class Exit(Exception):
    pass


class Fail(Exception):
    pass


class FakeModule:
    """Stands in for AnsibleModule: fail_json raises, run_command answers systemctl."""

    def __init__(self, check_mode=False, show=SHOW_SSH):
        self.check_mode = check_mode
        self.show = show
        self.warnings = []
        self.commands = []

    def fail_json(self, **kwargs):
        raise Fail(kwargs)

    def warn(self, msg):
        self.warnings.append(msg)

    def get_bin_path(self, name, required=False):
        return "/usr/bin/" + name

    def run_command(self, argv, environ_update=None):
        self.commands.append(argv)
        assert environ_update and environ_update.get("LANG") == "C"
        if argv[1] == "show":
            return 0, self.show, ""
        return 0, "", ""


def params(**overrides):
    base = dict((name, spec.get("default")) for name, spec in mod.argument_spec().items())
    base.update(overrides)
    return base


def set_session(proc, pid, session):
    """Give a fake process its own session id (fakeproc uses sid = pid's own)."""
    path = os.path.join(str(proc), str(pid), "stat")
    with open(path) as handle:
        fields = handle.read().split(" ")
    fields[5] = str(session)
    with open(path, "w") as handle:
        handle.write(" ".join(fields))


@pytest.fixture
def host(tmp_path):
    """A Debian host: ssh.service with its listener and one SSH session in the unit's cgroup."""
    proc = tmp_path / "proc"
    cgroot = tmp_path / "cgroup"
    add_process(proc, 1, "systemd", ppid=0, cgroup_v2="/init.scope")
    add_process(proc, 480, "sshd", cgroup_v2="/system.slice/ssh.service")
    add_process(proc, 900, "sshd", ppid=480, cgroup_v2="/system.slice/ssh.service")
    add_process(proc, 906, "bash", ppid=900, cgroup_v2="/system.slice/ssh.service")
    set_session(proc, 906, 900)  # session shell in the session monitor's session
    os.makedirs(str(proc / "self"))
    (proc / "self" / "mounts").write_text(CGROUP_V2_MOUNTS.format(root=cgroot))
    (proc / "self" / "status").write_text("Name:\tpython3\nCapEff:\t000001ffffffffff\n")
    unit_cg = cgroot / "system.slice" / "ssh.service"
    os.makedirs(str(unit_cg))
    (unit_cg / "cgroup.procs").write_text("480\n900\n906\n")
    runtime = tmp_path / "run" / "systemd" / "system"
    os.makedirs(str(runtime))
    dropins = tmp_path / "etc" / "systemd" / "system"
    os.makedirs(str(dropins))
    return {"proc": str(proc), "dropin_dir": str(dropins), "systemd_runtime_dir": str(runtime)}


def adj(host, pid):
    return procfs.read_oom_score_adj(pid, host["proc"])


def run(host, module, **overrides):
    return mod.run(module, mod.validate_params(params(**overrides)), **host)


def test_argument_spec_matches_planner_choices():
    spec = mod.argument_spec()
    assert spec["live_scope"]["choices"] == list(oomscore.LIVE_SCOPES)
    assert spec["on_refusal"]["choices"] == list(oomscore.ON_REFUSAL)
    assert spec["persist"]["choices"] == list(oomscore.PERSIST_MODES)
    assert spec["dropin_name"]["default"] == "50-oomguard-oom.conf"


@pytest.mark.parametrize("overrides,message", [
    (dict(unit="ssh", score=-1001), "score: -1001 is out of range; allowed: -1000..1000"),
    (dict(unit="ssh", score=1001), "score: 1001 is out of range"),
    (dict(unit="ssh"), "score: required with state=present"),
    (dict(unit="../ssh", score=0), "unit: '../ssh' is not a valid unit name"),
    (dict(unit="system.slice/ssh.service", score=0), "no '/'"),
    (dict(unit="ssh;reboot", score=0), "shell metacharacters"),
    (dict(unit="$(id)", score=0), "shell metacharacters"),
    (dict(unit="ssh.socket", score=0), "allowed: service, scope"),
    (dict(unit="ssh", pidfile="/run/sshd.pid", score=0), "exactly one is allowed, got unit, pidfile"),
    (dict(score=0), "exactly one is allowed, got none"),
    (dict(pidfile="/run/x.pid", score=0, persist="sshd_env"), "persist: 'sshd_env' needs a systemd unit"),
    (dict(process_name="a/b", score=0), "process_name: 'a/b' is not allowed"),
    (dict(cgroup_path="/a/../b", score=0), "cgroup_path:"),
    (dict(unit="ssh", score=0, dropin_name="../x.conf"), "dropin_name:"),
    (dict(process_name="x", state="absent"), "state: absent removes a unit's drop-in and needs unit"),
])
def test_validate_params_rejects(overrides, message):
    with pytest.raises(oomscore.PlanError) as err:
        mod.validate_params(params(**overrides))
    assert message in str(err.value)


def test_validate_params_normalises():
    result = mod.validate_params(params(unit="cron", score="-900"))
    assert (result["unit"], result["score"], result["persist"], result["target_kind"]) == (
        "cron.service", -900, "oom_score_adjust", "unit")


def test_bad_input_touches_nothing(host):
    module = FakeModule()
    with pytest.raises(oomscore.PlanError):
        run(host, module, unit="ssh", score=-5000)
    assert module.commands == []
    assert os.listdir(host["dropin_dir"]) == []
    assert adj(host, 480) == 0


def test_sshd_listener_only_and_idempotent(host):
    module = FakeModule()
    result = run(host, module, unit="ssh", score=-1000, persist="sshd_env", live_scope="main")
    assert result["changed"] and result["enforced"] and result["dropin_changed"]
    text = open(os.path.join(host["dropin_dir"], "ssh.service.d", "50-oomguard-oom.conf")).read()
    assert "Environment=SSHD_OOM_ADJUST=-1000" in text
    assert [(adj(host, p)) for p in (480, 900, 906)] == [-1000, 0, 0]
    assert [cmd[1] for cmd in module.commands] == ["show", "daemon-reload"]
    again = run(host, FakeModule(), unit="ssh", score=-1000, persist="sshd_env", live_scope="main")
    assert not again["changed"] and again["enforced"]


def test_cgroup_scope_leaves_other_sessions_alone(host):
    result = run(host, FakeModule(), unit="ssh", score=-500, live_scope="cgroup")
    assert [r["pid"] for r in result["live"]] == [480]
    assert [(adj(host, p)) for p in (480, 900, 906)] == [-500, 0, 0]


def test_all_scope_reaches_every_process(host):
    result = run(host, FakeModule(), unit="ssh", score=-300, live_scope="all", persist="none")
    assert [r["pid"] for r in result["live"]] == [480, 900, 906]
    assert result["dropin"] is None
    assert os.listdir(host["dropin_dir"]) == []


def test_check_mode_writes_nothing_and_shows_diff(host):
    result = run(host, FakeModule(check_mode=True), unit="ssh", score=-1000, persist="sshd_env", live_scope="main")
    assert result["changed"]
    assert os.listdir(host["dropin_dir"]) == []
    assert adj(host, 480) == 0
    assert result["diff"][0]["after"].endswith("Environment=SSHD_OOM_ADJUST=-1000\n")
    assert result["diff"][1] == {"before_header": "live oom_score_adj", "after_header": "live oom_score_adj",
                                 "before": "480 sshd: 0\n", "after": "480 sshd: -1000\n"}


def test_check_mode_predicts_refusal_without_cap_sys_resource(host):
    with open(os.path.join(host["proc"], "self", "status"), "w") as handle:
        handle.write("Name:\tpython3\nCapEff:\t00000000a80425fb\n")
    module = FakeModule(check_mode=True)
    result = run(host, module, unit="ssh", score=-1000, persist="sshd_env", live_scope="main", on_refusal="clamp")
    assert result["enforced"] is False
    assert result["live_changed"] is False
    assert result["changed"] is True  # the drop-in would still be written
    assert "kernel refused oom_score_adj -1000 for pid 480 (sshd)" in result["reason"]
    assert module.warnings == [result["reason"]]


def test_on_refusal_fail_in_check_mode_marks_failed(host):
    with open(os.path.join(host["proc"], "self", "status"), "w") as handle:
        handle.write("CapEff:\t0000000000000000\n")
    result = run(host, FakeModule(check_mode=True), unit="ssh", score=-1, on_refusal="fail")
    assert result["failed"] and result["msg"].startswith("on_refusal=fail: kernel refused")


def test_missing_unit_fails_or_is_ignored(host):
    with pytest.raises(Fail) as err:
        run(host, FakeModule(show=SHOW_MISSING), unit="nosuch", score=-900)
    assert "unit: nosuch.service does not exist" in err.value.args[0]["msg"]
    result = run(host, FakeModule(show=SHOW_MISSING), unit="nosuch", score=-900, ignore_missing=True)
    assert result["found"] is False and result["changed"] is False
    assert os.listdir(host["dropin_dir"]) == []


def test_no_systemd_fails_for_unit(host, tmp_path):
    host = dict(host, systemd_runtime_dir=str(tmp_path / "nowhere"))
    with pytest.raises(Fail) as err:
        run(host, FakeModule(), unit="ssh", score=-900)
    assert err.value.args[0]["msg"].startswith("unit: systemd is not running")


def test_state_absent_removes_dropin(host):
    run(host, FakeModule(), unit="cron", score=-900, live_scope="none")
    path = os.path.join(host["dropin_dir"], "cron.service.d", "50-oomguard-oom.conf")
    assert os.path.exists(path)
    result = run(host, FakeModule(), unit="cron", state="absent")
    assert result["changed"] and not os.path.exists(path)
    assert not run(host, FakeModule(), unit="cron", state="absent")["changed"]


def test_sshd_env_warns_about_unit_wide_oomscoreadjust(host):
    module = FakeModule(show=SHOW_SSH.replace("OOMScoreAdjust=0", "OOMScoreAdjust=-1000"))
    run(host, module, unit="ssh", score=-1000, persist="sshd_env", live_scope="main")
    assert any("every SSH session inherits it" in w for w in module.warnings)


def test_pidfile_target_with_descendants(host, tmp_path):
    pidfile = tmp_path / "daemon.pid"
    pidfile.write_text("900\n")
    result = run(host, FakeModule(), pidfile=str(pidfile), score=250, live_scope="all")
    assert [r["pid"] for r in result["live"]] == [900, 906]
    assert result["persist"] == "none" and result["dropin"] is None


def test_process_name_target_missing(host):
    with pytest.raises(Fail) as err:
        run(host, FakeModule(), process_name="exim4", score=800)
    assert "no running process matches 'exim4'" in err.value.args[0]["msg"]
    assert run(host, FakeModule(), process_name="exim4", score=800, ignore_missing=True)["found"] is False


def test_cgroup_path_target_without_hierarchy_falls_back_to_proc(host):
    with open(os.path.join(host["proc"], "self", "mounts"), "w") as handle:
        handle.write("")
    result = run(host, FakeModule(), cgroup_path="/system.slice/ssh.service", score=-100, live_scope="main")
    assert [r["pid"] for r in result["live"]] == [480]
    assert adj(host, 480) == -100


def test_stat_template_session_field_is_where_set_session_writes():
    # Guards the helper above against a change of fakeproc's template.
    assert STAT_TEMPLATE.split(" ")[5] == "{pid}"


@pytest.mark.skipif(procfs.has_capability(procfs.CAP_SYS_RESOURCE), reason="needs a host without CAP_SYS_RESOURCE")
def test_real_kernel_refusal_is_reported_and_clamped(tmp_path):
    """On this machine nobody may lower oom_score_adj below 0: the real kernel refuses."""
    child = subprocess.Popen(["sleep", "60"])
    try:
        with open("/proc/%d/oom_score_adj" % child.pid, "w") as handle:
            handle.write("400\n")
        pidfile = tmp_path / "sleep.pid"
        pidfile.write_text("%d\n" % child.pid)
        host = {"proc": "/proc", "dropin_dir": str(tmp_path), "systemd_runtime_dir": str(tmp_path)}
        module = FakeModule()
        result = run(host, module, pidfile=str(pidfile), score=-300, on_refusal="clamp", live_scope="main")
        assert result["enforced"] is False and result["changed"] is True
        assert result["live"][0]["after"] == procfs.read_oom_score_adj(child.pid) <= 0
        assert "CAP_SYS_RESOURCE" in result["reason"] and module.warnings
        again = run(host, FakeModule(), pidfile=str(pidfile), score=-300, on_refusal="clamp", live_scope="main")
        assert again["changed"] is False and again["enforced"] is False
        warned = run(host, FakeModule(), pidfile=str(pidfile), score=-300, on_refusal="warn", live_scope="main")
        assert warned["changed"] is False
    finally:
        child.kill()
        child.wait()


def test_dropin_directory_others_may_write_is_refused_not_a_traceback(host):
    """Issue 15: a module writes only into directories of root's that nobody else may write."""
    os.chmod(host["dropin_dir"], 0o777)
    module = FakeModule()
    with pytest.raises(Fail) as failed:
        run(host, module, unit="ssh", score=-1000, persist="sshd_env", live_scope="main")
    assert "writable by group or others" in failed.value.args[0]["msg"]
    assert os.listdir(host["dropin_dir"]) == []


# --- protected processes are never raised (issue 15) ----------------------------------

def add_cron(host):
    proc = host["proc"]
    add_process(proc, 300, "cron", cgroup_v2="/system.slice/cron.service")
    add_process(proc, 301, "cron", ppid=300, cgroup_v2="/system.slice/cron.service")  # a job's cron child
    add_process(proc, 302, "backup", ppid=301, cgroup_v2="/system.slice/cron.service")


@pytest.mark.parametrize("target, fragment", [
    (dict(pidfile="PIDFILE-1", score=1000), "PID 1 (systemd), the init system"),
    (dict(process_name="systemd", score=1000, live_scope="all"), "PID 1 (systemd)"),
    (dict(process_name="systemd", score=1000, live_scope="all"), "pid 480 (sshd)"),
    (dict(process_name="systemd", score=1000, live_scope="all"), "pid 300 (cron)"),
    (dict(process_name="sshd", score=500, live_scope="main"), "pid 480 (sshd)"),
    (dict(unit="cron", score=500, live_scope="all", persist="none"), "pid 300 (cron)"),
    (dict(unit="cron", score=500, live_scope="none"), "cron.service: a positive score 500"),
])
def test_raising_a_protected_process_is_refused_and_nothing_changes(host, tmp_path, target, fragment):
    add_cron(host)
    (tmp_path / "PIDFILE-1").write_text("1\n")
    target = dict((k, str(tmp_path / v) if k == "pidfile" else v) for k, v in target.items())
    before = dict((pid, adj(host, pid)) for pid in (1, 300, 301, 302, 480, 900, 906))
    module = FakeModule(show=SHOW_SSH.replace("ssh.service", "cron.service").replace("MainPID=480", "MainPID=300"))
    with pytest.raises(Fail) as failed:
        run(host, module, **target)
    assert "refusing to raise a protected process" in failed.value.args[0]["msg"]
    assert any(fragment in reason for reason in failed.value.args[0]["refused"])
    assert dict((pid, adj(host, pid)) for pid in before) == before
    assert os.listdir(host["dropin_dir"]) == []
    assert not any(cmd[1] == "daemon-reload" for cmd in module.commands)


def test_sessions_and_jobs_may_still_be_raised(host):
    """An SSH session or a cron job is not the daemon: raising them stays allowed."""
    add_cron(host)
    result = run(host, FakeModule(), process_name="backup", score=800, live_scope="all")
    assert [r["pid"] for r in result["live"]] == [302] and adj(host, 302) == 800
    lowered = run(host, FakeModule(), process_name="systemd", score=-1, live_scope="main")
    assert [r["pid"] for r in lowered["live"]] == [1]  # lowering PID 1 is not a raise
