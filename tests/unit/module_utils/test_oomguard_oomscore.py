"""Planning per-service oom_score_adj: pid selection, drop-ins, refusals, clamping."""

import os

import pytest

from ansible.module_utils import oomguard_oomscore as oomscore
from ansible.module_utils import oomguard_procfs as procfs
from fakeproc import add_process

# A Debian minbase host as recorded with ps -eo pid,ppid,sid,comm,oom_score_adj: no
# libpam-systemd, so SSH sessions stay in ssh.service's cgroup; cron's job runs
# below an intermediate cron process.
HOST = [
    # pid, ppid, session, comm, adj
    (480, 1, 480, "sshd", -1000),       # listener (MainPID), setsid by systemd
    (900, 480, 900, "sshd", 0),         # session monitor: sshd calls setsid()
    (905, 900, 900, "sshd", 0),         # privsep child
    (906, 905, 906, "bash", 0),         # login shell: new session (pty)
    (907, 906, 906, "stress-ng", 0),    # the user's runaway process
    (520, 1, 520, "cron", -900),        # cron daemon (MainPID)
    (1500, 520, 1500, "cron", 0),       # cron's per-job child after setsid()
    (1501, 1500, 1500, "sh", 0),        # the job
    (610, 1, 610, "postgres", 0),       # postmaster
    (611, 610, 610, "postgres", 0),     # backend: same session
    (612, 610, 610, "postgres", 0),
]


def processes(rows=HOST, only=None):
    return [{"pid": pid, "ppid": ppid, "session": sid, "comm": comm, "oom_score_adj": adj}
            for pid, ppid, sid, comm, adj in rows if only is None or pid in only]


SSH = [480, 900, 905, 906, 907]
CRON = [520, 1500, 1501]
PG = [610, 611, 612]


@pytest.mark.parametrize("value,expected", [
    (-1000, -1000), (1000, 1000), (0, 0), ("-900", -900), (" 17 ", 17),
])
def test_validate_score_accepts(value, expected):
    assert oomscore.validate_score(value) == expected


@pytest.mark.parametrize("value", [-1001, 1001, 5000, "abc", None, True, "1.5"])
def test_validate_score_rejects_naming_argument_and_range(value):
    with pytest.raises(oomscore.PlanError) as err:
        oomscore.validate_score(value)
    assert str(err.value).startswith("score:")
    assert "-1000..1000" in str(err.value)


@pytest.mark.parametrize("path,expected", [
    ("/system.slice/exim4.service", "/system.slice/exim4.service"),
    ("/system.slice/exim4.service/", "/system.slice/exim4.service"),
])
def test_validate_cgroup_path_accepts(path, expected):
    assert oomscore.validate_cgroup_path(path) == expected


@pytest.mark.parametrize("path", ["system.slice/x", "/system.slice/../init.scope", "/a//b", "/a/./b", "", None,
                                  "/a\nb"])
def test_validate_cgroup_path_rejects(path):
    with pytest.raises(oomscore.PlanError, match="^cgroup_path:"):
        oomscore.validate_cgroup_path(path)


@pytest.mark.parametrize("persist,kind,expected", [
    (None, "unit", "oom_score_adjust"),
    (None, "pidfile", "none"),
    (None, "process_name", "none"),
    ("sshd_env", "unit", "sshd_env"),
    ("none", "unit", "none"),
    ("none", "cgroup_path", "none"),
])
def test_resolve_persist(persist, kind, expected):
    assert oomscore.resolve_persist(persist, kind) == expected


@pytest.mark.parametrize("persist,kind,message", [
    ("oom_score_adjust", "pidfile", "persist: 'oom_score_adjust' needs a systemd unit"),
    ("sshd_env", "process_name", "persist: 'sshd_env' needs a systemd unit"),
    ("bogus", "unit", "allowed: oom_score_adjust, sshd_env, none"),
])
def test_resolve_persist_rejects(persist, kind, message):
    with pytest.raises(oomscore.PlanError) as err:
        oomscore.resolve_persist(persist, kind)
    assert message in str(err.value)


def test_render_dropin_oom_score_adjust():
    text = oomscore.render_oom_dropin(-900, "oom_score_adjust")
    assert text.endswith("\n[Service]\nOOMScoreAdjust=-900\n")
    assert text.startswith("# Managed by oomguard")


def test_render_dropin_sshd_env_never_sets_oomscoreadjust():
    text = oomscore.render_oom_dropin(-1000, "sshd_env")
    assert "\n[Service]\nEnvironment=SSHD_OOM_ADJUST=-1000\n" in text
    assert "OOMScoreAdjust=" not in text.replace("OOMScoreAdjust= would", "")
    for line in text.splitlines():
        assert line.startswith("#") or line in ("", "[Service]", "Environment=SSHD_OOM_ADJUST=-1000")


def test_render_dropin_none():
    assert oomscore.render_oom_dropin(-1000, "none") is None


@pytest.mark.parametrize("current,desired,action", [
    (None, "x\n", "write"),
    ("x\n", "x\n", "none"),
    ("old\n", "x\n", "write"),
    ("x\n", None, "remove"),
    (None, None, "none"),
])
def test_plan_dropin(current, desired, action):
    plan = oomscore.plan_dropin(current, desired)
    assert plan["action"] == action
    assert plan["changed"] == (action != "none")
    assert plan["before"] == (current or "")
    assert plan["after"] == (desired or "")


@pytest.mark.parametrize("group,scope,anchors,expected", [
    # sshd: only the listener; sessions (own sid) are never touched, even with cgroup.
    (SSH, "main", [480], [480]),
    (SSH, "cgroup", [480], [480]),
    (SSH, "all", [480], SSH),
    (SSH, "none", [480], []),
    # cron: daemon only; its job sessions keep their value.
    (CRON, "main", [520], [520]),
    (CRON, "cgroup", [520], [520]),
    # postgres backends stay in the postmaster's session: cgroup includes them.
    (PG, "main", [610], [610]),
    (PG, "cgroup", [610], PG),
    # no MainPID (cgroup_path target, or a dead main pid): the roots of the group.
    (SSH, "main", [], [480]),
    (PG, "cgroup", [9999], PG),
    (SSH + PG, "main", [], [480, 610]),
])
def test_select_pids(group, scope, anchors, expected):
    assert oomscore.select_pids(processes(only=group), scope, anchors) == expected


def test_select_pids_rejects_scope():
    with pytest.raises(oomscore.PlanError, match="^live_scope: 'tree' is not allowed; allowed: main, cgroup, all, none"):
        oomscore.select_pids(processes(), "tree", [])


def test_group_of_pidfile_root_and_descendants():
    group = oomscore.group_of(processes(), [900])
    assert sorted(p["pid"] for p in group) == [900, 905, 906, 907]


def test_plan_live_keep_and_write():
    plan = oomscore.plan_live(processes(), [480, 520, 610], -900)
    assert [(e["pid"], e["before"], e["action"]) for e in plan] == [
        (480, -1000, "write"), (520, -900, "keep"), (610, 0, "write")]


class FakeKernel:
    """fs/proc/base.c __set_oom_adj for a writer without CAP_SYS_RESOURCE.

    Not the code under test: the model it runs against. A value below the process's
    oom_score_adj_min is refused with EACCES; raising always works.
    """

    def __init__(self, values, mins, privileged=False):
        self.values = dict(values)
        self.mins = dict(mins)
        self.privileged = privileged
        self.writes = []

    def write(self, pid, value):
        self.writes.append((pid, value))
        if pid not in self.values:
            return False, "pid %s exited" % pid
        if value < self.mins.get(pid, 0) and not self.privileged:
            return False, "kernel refused"
        self.values[pid] = value
        if self.privileged:
            self.mins[pid] = value
        return True, None

    def read(self, pid):
        return self.values.get(pid)


def live_plan(pid=610, before=0, wanted=-900):
    return [{"pid": pid, "comm": "x", "before": before, "wanted": wanted,
             "action": "keep" if before == wanted else "write"}]


@pytest.mark.parametrize("floor,before,wanted,expected", [
    (0, 0, -900, 0),          # container: nothing below 0 is accepted
    (-300, 0, -900, -300),    # a privileged writer once set -300: that is the floor
    (-900, -100, -1000, -900),
    (0, 500, -1000, 0),       # an expendable process can come back down to 0
    (-999, 0, -1000, -999),
    (200, 700, 100, 200),
])
def test_clamp_finds_the_kernels_floor(floor, before, wanted, expected):
    kernel = FakeKernel({610: before}, {610: floor})
    results = oomscore.apply_live(live_plan(before=before, wanted=wanted), "clamp", kernel.write, kernel.read)
    assert results[0]["after"] == expected == kernel.values[610]
    assert results[0]["refused"] and not results[0]["enforced"]
    assert len(kernel.writes) <= 12


def test_clamp_is_idempotent_once_at_the_floor():
    kernel = FakeKernel({610: 0}, {610: 0})
    results = oomscore.apply_live(live_plan(before=0, wanted=-1000), "clamp", kernel.write, kernel.read)
    summary = oomscore.summarize(results, oomscore.plan_dropin("x", "x"), "clamp")
    assert summary["changed"] is False
    assert summary["enforced"] is False
    assert "kernel refused oom_score_adj -1000 for pid 610" in summary["reason"]
    assert "it stays at 0" in summary["reason"]


@pytest.mark.parametrize("on_refusal", ["warn", "fail"])
def test_warn_and_fail_keep_the_value_and_never_report_changed(on_refusal):
    kernel = FakeKernel({610: 300}, {610: 0})
    results = oomscore.apply_live(live_plan(before=300, wanted=-500), on_refusal, kernel.write, kernel.read)
    assert kernel.values[610] == 300
    assert kernel.writes == [(610, -500)]
    summary = oomscore.summarize(results, None, on_refusal)
    assert summary["changed"] is False
    assert summary["enforced"] is False
    assert summary["failed"] is (on_refusal == "fail")


def test_refused_value_but_dropin_written_reports_changed_for_the_dropin_only():
    kernel = FakeKernel({480: 0}, {480: 0})
    results = oomscore.apply_live(live_plan(pid=480, before=0, wanted=-1000), "warn", kernel.write, kernel.read)
    summary = oomscore.summarize(results, oomscore.plan_dropin(None, "[Service]\n"), "warn")
    assert summary["changed"] is True
    assert summary["live_changed"] is False
    assert summary["enforced"] is False


def test_privileged_write_enforces():
    kernel = FakeKernel({480: 0}, {480: 0}, privileged=True)
    results = oomscore.apply_live(live_plan(pid=480, before=0, wanted=-1000), "clamp", kernel.write, kernel.read)
    summary = oomscore.summarize(results, None, "clamp")
    assert results[0]["after"] == -1000
    assert summary == {"changed": True, "live_changed": True, "enforced": True, "refused": False, "reason": None,
                       "failed": False}


def test_raising_always_works_unprivileged():
    kernel = FakeKernel({700: 0}, {700: 0})
    results = oomscore.apply_live(live_plan(pid=700, before=0, wanted=800), "fail", kernel.write, kernel.read)
    assert results[0]["enforced"] and kernel.values[700] == 800


def test_exited_process_is_not_a_refusal():
    kernel = FakeKernel({}, {})
    results = oomscore.apply_live(live_plan(pid=4242, before=0, wanted=-900), "fail", kernel.write, kernel.read)
    assert results[0]["gone"] and results[0]["enforced"] and not results[0]["refused"]
    assert oomscore.summarize(results, None, "fail")["changed"] is False


@pytest.mark.parametrize("before,wanted,can_lower,after,refused", [
    (0, -1000, False, 0, True),
    (0, -1000, True, -1000, False),
    (0, 500, False, 500, False),
    (-900, -900, False, -900, False),
])
def test_check_mode_predicts_without_writing(before, wanted, can_lower, after, refused):
    kernel = FakeKernel({610: before}, {610: 0})
    results = oomscore.apply_live(live_plan(before=before, wanted=wanted), "clamp", kernel.write, kernel.read,
                                  check_mode=True, can_lower=can_lower)
    assert kernel.writes == []
    assert (results[0]["after"], results[0]["refused"]) == (after, refused)


def test_apply_live_on_a_fake_proc_tree(tmp_path):
    proc = tmp_path / "proc"
    add_process(proc, 610, "postgres", adj=0)
    add_process(proc, 611, "postgres", ppid=610, adj=0)
    plan = oomscore.plan_live(processes(only=PG), [610, 611], 800)
    results = oomscore.apply_live(plan, "warn", lambda pid, v: procfs.write_oom_score_adj(pid, v, str(proc)),
                                  lambda pid: procfs.read_oom_score_adj(pid, str(proc)))
    assert [r["after"] for r in results] == [800, 800]
    assert (proc / "611" / "oom_score_adj").read_text() == "800\n"
    # 612 has no /proc entry: it exited between planning and writing.
    gone = oomscore.apply_live(oomscore.plan_live(processes(only=PG), [612], 800), "warn",
                               lambda pid, v: procfs.write_oom_score_adj(pid, v, str(proc)),
                               lambda pid: procfs.read_oom_score_adj(pid, str(proc)))
    assert gone[0]["gone"]


def test_live_diff_text():
    results = [{"pid": 1, "comm": "a", "before": 0, "after": -5}, {"pid": 2, "comm": "b", "before": 3, "after": None}]
    assert oomscore.live_diff_text(results, "before") == "1 a: 0\n2 b: 3\n"
    assert oomscore.live_diff_text(results, "after") == "1 a: -5\n2 b: gone\n"
    assert oomscore.live_diff_text([], "after") == ""


# Readers added to oomguard_procfs for this planner.

@pytest.mark.parametrize("text,expected", [
    ("906 (bash) S 905 906 906 34816 906 4194560 1 0", (905, 906, 906)),
    ("77 (tmux: server (1)) S 1 77 77 0 -1 4194560", (1, 77, 77)),
])
def test_parse_stat_ids(text, expected):
    assert procfs.parse_stat_ids(text) == expected


def test_read_stat_ids_and_gone(tmp_path):
    proc = tmp_path / "proc"
    add_process(proc, 480, "sshd", ppid=1)
    assert procfs.read_stat_ids(480, str(proc)) == {"pid": 480, "ppid": 1, "pgrp": 480, "session": 480, "comm": "sshd"}
    assert procfs.read_stat_ids(481, str(proc)) is None


@pytest.mark.parametrize("cap_eff,cap,expected", [
    ("000001ffffffffff", procfs.CAP_SYS_RESOURCE, True),     # full root
    ("00000000a80425fb", procfs.CAP_SYS_RESOURCE, False),    # podman default set
    ("00000000800405fb", 21, False),
    ("0000000001000000", procfs.CAP_SYS_RESOURCE, True),
])
def test_has_capability(tmp_path, cap_eff, cap, expected):
    proc = tmp_path / "proc"
    os.makedirs(str(proc / "self"))
    (proc / "self" / "status").write_text("Name:\tpython3\nCapInh:\t0000000000000000\nCapEff:\t%s\n" % cap_eff)
    assert procfs.has_capability(cap, proc=str(proc)) is expected


def test_descendants_of():
    assert procfs.descendants_of(processes(), [480]) == [900, 905, 906, 907]
    assert procfs.descendants_of(processes(), [1501]) == []


@pytest.mark.parametrize("path", ["/", "//", "///"])
def test_the_root_cgroup_is_refused(path):
    """Issue 15: cgroup_path / was accepted, every process of the host."""
    with pytest.raises(oomscore.PlanError, match="root cgroup"):
        oomscore.validate_cgroup_path(path)
