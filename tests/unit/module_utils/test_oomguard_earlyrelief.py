"""The early killer's planner: oomguard's policy -> systemd-oomd or earlyoom settings, and the refusals."""

import re

import pytest

from ansible.module_utils import oomguard_earlyrelief as er
from ansible.module_utils.oomguard_earlyrelief import (PlanError, choose_engine, plan, plan_earlyoom, plan_oomd,
                                                       validate)
from ansible.module_utils.oomguard_systemd import parse_unit_file

DROPIN = "50-oomguard-early-relief.conf"
BASE = list(er.BASE_CRITICAL_UNITS)
HOOK = "/usr/lib/oomguard/early-kill-hook"


@pytest.mark.parametrize("requested, v2, version, available, engine, reason", [
    ("auto", True, 252, True, "systemd-oomd", "auto: systemd-oomd"),
    ("auto", True, "252", True, "systemd-oomd", "systemd 252"),
    ("auto", True, 248, True, "systemd-oomd", "auto: systemd-oomd"),
    ("auto", False, 252, True, "earlyoom", "not on the pure cgroup v2"),
    ("auto", True, 247, True, "earlyoom", "systemd 247 < 248"),
    ("auto", True, None, True, "earlyoom", "systemd unknown < 248"),
    ("auto", True, "garbage", True, "earlyoom", "systemd unknown"),
    ("auto", True, 252, False, "earlyoom", "package systemd-oomd is not available"),
    ("systemd-oomd", True, 252, True, "systemd-oomd", "is systemd-oomd"),
    ("earlyoom", True, 252, True, "earlyoom", "is earlyoom"),
    ("none", True, 252, True, "none", "nothing acts"),
])
def test_choose_engine(requested, v2, version, available, engine, reason):
    chosen, why = choose_engine(requested, v2, version, available)
    assert chosen == engine
    assert reason in why


@pytest.mark.parametrize("requested, v2, version, available, message", [
    ("systemd-oomd", False, 252, True, "not on the pure cgroup v2"),
    ("systemd-oomd", True, 245, True, "systemd 245 < 248"),
    ("systemd-oomd", True, 252, False, "not available"),
    ("oomd", True, 252, True, "'oomd' is not allowed; allowed: auto, systemd-oomd, earlyoom, none"),
    (None, True, 252, True, "early_relief_engine: None is not allowed"),
])
def test_choose_engine_refuses(requested, v2, version, available, message):
    with pytest.raises(PlanError, match=re.escape(message)) as info:
        choose_engine(requested, v2, version, available)
    assert str(info.value).startswith("early_relief_engine:")


def test_plan_oomd_files():
    files = plan_oomd(BASE + ["app.service"], ["system.slice", "user.slice"], 60, 40, 10)
    assert set(files) == (
        {"/etc/systemd/oomd.conf.d/50-oomguard.conf", "/etc/systemd/system/-.slice.d/" + DROPIN,
         "/etc/systemd/system/system.slice.d/" + DROPIN, "/etc/systemd/system/user.slice.d/" + DROPIN}
        | {"/etc/systemd/system/%s.d/%s" % (unit, DROPIN) for unit in BASE + ["app.service"]})
    for content in files.values():
        assert content.startswith("# Managed by oomguard (early_relief)\n")
    assert parse_unit_file(files["/etc/systemd/oomd.conf.d/50-oomguard.conf"]) == {
        "OOM": [("SwapUsedLimit", "60%"), ("DefaultMemoryPressureLimit", "40%"),
                ("DefaultMemoryPressureDurationSec", "10s")]}
    assert parse_unit_file(files["/etc/systemd/system/-.slice.d/" + DROPIN]) == {
        "Slice": [("ManagedOOMSwap", "kill")]}
    assert parse_unit_file(files["/etc/systemd/system/user.slice.d/" + DROPIN]) == {
        "Slice": [("ManagedOOMMemoryPressure", "kill"), ("ManagedOOMMemoryPressureLimit", "40%")]}
    for unit in ("ssh.service", "systemd-journald.service", "oomguard-watchdog.service", "app.service"):
        assert parse_unit_file(files["/etc/systemd/system/%s.d/%s" % (unit, DROPIN)]) == {
            "Service": [("ManagedOOMPreference", "omit")]}


def test_plan_oomd_accepts_percent_text_and_uses_the_section_of_the_unit_type():
    files = plan_oomd(["critical.slice"], ["batch.slice"], "75%", "30", "20")
    assert "SwapUsedLimit=75%\n" in files["/etc/systemd/oomd.conf.d/50-oomguard.conf"]
    assert "DefaultMemoryPressureDurationSec=20s\n" in files["/etc/systemd/oomd.conf.d/50-oomguard.conf"]
    assert "[Slice]\nManagedOOMPreference=omit\n" in files["/etc/systemd/system/critical.slice.d/" + DROPIN]


@pytest.mark.parametrize("avoid, prefer, expected", [
    (["sshd", "cron"], ["hog"], ["-m", "5", "-s", "10", "--avoid", "^(sshd|cron)$", "--prefer", "^(hog)$",
                                 "-r", "3600", "-N", HOOK]),
    (["sshd"], [], ["-m", "5", "-s", "10", "--avoid", "^(sshd)$", "-r", "3600", "-N", HOOK]),
    # regular-expression metacharacters are escaped, names cut to the kernel's 15-character comm
    (["a.b"], ["x+y", "averyveryverylongname"], ["-m", "5", "-s", "10", "--avoid", r"^(a\.b)$",
                                                 "--prefer", r"^(x\+y|averyveryverylo)$", "-r", "3600",
                                                 "-N", HOOK]),
])
def test_plan_earlyoom_args(avoid, prefer, expected):
    args, _dropin = plan_earlyoom(avoid, prefer, 5, 10)
    assert args == expected


def test_plan_earlyoom_args_match_exactly_the_names():
    args, _ = plan_earlyoom(["systemd-journal", "a.b"], ["x(y)"], 5, 10)
    avoid = re.compile(args[args.index("--avoid") + 1])
    assert avoid.fullmatch("systemd-journal") and avoid.fullmatch("a.b")
    assert not avoid.fullmatch("axb") and not avoid.fullmatch("systemd-journald2")
    assert re.compile(args[args.index("--prefer") + 1]).fullmatch("x(y)")


def test_plan_earlyoom_dropin_quotes_for_systemd():
    args, dropin = plan_earlyoom(["sshd", "cron"], ['we"ird%', "back\\slash"], 7, 15)
    assert dropin.startswith("# Managed by oomguard (early_relief)\n")
    section = parse_unit_file(dropin)["Service"]
    assert section[0] == ("ExecStart", "")  # resets the packaged command
    assert section[1][0] == "ExecStart"
    assert section[1][1] == (
        '/usr/bin/earlyoom -m 7 -s 15 --avoid "^(sshd|cron)$$" '
        '--prefer "^(we\\"ird%%|back\\\\\\\\slash)$$" -r 3600 -N /usr/lib/oomguard/early-kill-hook')
    assert args[:4] == ["-m", "7", "-s", "15"]
    # root (the hook writes root's /run/oomguard), the rest of Debian's sandbox kept
    assert section[2:] == [("DynamicUser", "no"), ("RuntimeDirectory", "oomguard"), ("RuntimeDirectoryMode", "0755"),
                           ("RuntimeDirectoryPreserve", "yes")]


@pytest.mark.parametrize("arg, quoted", [
    ("-m", "-m"), ("3600", "3600"), ("^(a|b)$", '"^(a|b)$$"'), ("50%", '"50%%"'),
    ('say "hi"', '"say \\"hi\\""'), ("a\\.b", '"a\\\\.b"'),
])
def test_exec_quote(arg, quoted):
    assert er.exec_quote(arg) == quoted


def test_critical_set_from_oom_protect_and_extras():
    units = er.critical_units([{"unit": "postgresql.service", "score": -900}, {"unit": "ssh.service"}, "redis"],
                              ["mon.service"])
    assert units == BASE + ["postgresql.service", "redis.service", "mon.service"]
    assert er.avoid_names(units)[:10] == ["sshd", "cron", "crond", "systemd-journal", "systemd-logind",
                                          "dbus-daemon", "oomguard-alertd", "oomguard-watchd", "earlyoom",
                                          "systemd-oomd"]
    assert er.avoid_names(units)[10:] == ["postgresql", "redis", "mon"]


def test_prefer_names_from_expendable_services():
    assert er.prefer_names([{"process": "hog"}, {"process": "averyveryverylongname"}, {"unit": "batch.service"},
                            {"cgroup_path": "/x"}, {"process": "hog"}]) == ["hog", "averyveryverylo"]


def test_plan_systemd_oomd():
    result = plan("auto", True, 252, True, ["system.slice", "user.slice"], [{"unit": "db.service"}], [], [])
    assert result["engine"] == "systemd-oomd"
    assert result["package"] == "systemd-oomd" and result["service"] == "systemd-oomd.service"
    assert "/etc/systemd/system/db.service.d/" + DROPIN in result["files"]
    assert result["earlyoom_args"] == []
    assert result["candidates"] == {"slices": ["system.slice", "user.slice"], "swap": ["-.slice"]}


def test_plan_earlyoom():
    result = plan("auto", False, 252, True, ["system.slice"], [], [], [{"process": "hog"}])
    assert result["engine"] == "earlyoom" and result["service"] == "earlyoom.service"
    assert list(result["files"]) == ["/etc/systemd/system/earlyoom.service.d/" + DROPIN]
    assert result["candidates"]["prefer"] == ["hog"]
    assert "--prefer" in result["earlyoom_args"]


def test_plan_none_writes_nothing_and_needs_no_candidate():
    result = plan("none", True, 252, True, [], [], [], [])
    assert (result["engine"], result["files"], result["package"], result["service"]) == ("none", {}, None, None)


GOOD = dict(engine="systemd-oomd", critical=BASE, kill_slices=["system.slice", "user.slice"], expendable_services=[],
            swap_used_limit=60, pressure_limit=40, pressure_duration_s=10, mem_percent=5, swap_percent=10)


@pytest.mark.parametrize("change, message", [
    # a critical unit among the candidates
    ({"kill_slices": ["system.slice", "oomguard.slice"], "critical": BASE + ["oomguard.slice"]},
     "early_relief_kill_slices: oomguard.slice is critical"),
    ({"expendable_services": [{"unit": "ssh.service"}]},
     "oom_protect_expendable_services: ssh.service is critical"),
    ({"expendable_services": [{"unit": "dbus"}]}, "oom_protect_expendable_services: dbus.service is critical"),
    ({"expendable_services": [{"process": "sshd"}]},
     "oom_protect_expendable_services: process sshd is a critical daemon"),
    ({"expendable_services": [{"process": "oomguard-watchdog"}]}, "process oomguard-watchdog is a critical daemon"),
    ({"expendable_services": [{"process": "two words"}]}, "process 'two words' is not a process name"),
    # no candidate at all
    ({"kill_slices": []}, "early_relief_kill_slices: no candidate slice at all"),
    ({"kill_slices": "system.slice"}, "early_relief_kill_slices: 'system.slice' is not a list"),
    # thresholds out of range
    ({"swap_used_limit": 0}, "early_relief_swap_used_limit: 0 is out of range; allowed: a percentage from 1 to 99"),
    ({"swap_used_limit": 100}, "early_relief_swap_used_limit: 100 is out of range"),
    ({"pressure_limit": "x"}, "early_relief_memory_pressure_limit: 'x' is out of range"),
    ({"mem_percent": True}, "early_relief_earlyoom_mem_percent: True is out of range"),
    ({"swap_percent": -1}, "early_relief_earlyoom_swap_percent: -1 is out of range"),
    ({"pressure_duration_s": 0}, "early_relief_memory_pressure_duration: 0 is out of range; allowed: 1 to 3600"),
    ({"pressure_duration_s": 3601}, "early_relief_memory_pressure_duration: 3601 is out of range"),
    # names that are not systemd unit names (the whole string)
    ({"kill_slices": ["system.slice\n"]}, "early_relief_kill_slices: 'system.slice\\n' is not a valid"),
    ({"kill_slices": ["user"]}, "early_relief_kill_slices: 'user' is not a valid systemd unit name"),
    ({"kill_slices": ["../x.slice"]}, "is not a valid systemd unit name"),
    ({"kill_slices": ["a;b.slice"]}, "is not a valid systemd unit name"),
    ({"critical": BASE + ["bad name.service"]}, "early_relief_extra_critical_units (or oom_protect_critical_services):"
                                                " 'bad name.service' is not a valid"),
    ({"critical": BASE + ["nightly.timer"]}, "'nightly.timer' is not a valid systemd unit name"),
])
def test_validate_refuses(change, message):
    with pytest.raises(PlanError) as info:
        validate(**dict(GOOD, **change))
    assert message in str(info.value)


def test_validate_accepts_the_defaults():
    validate(**GOOD)
    validate(**dict(GOOD, swap_used_limit="60%", pressure_limit="40", pressure_duration_s=3600, mem_percent=1,
                    swap_percent=99, expendable_services=[{"process": "hog"}, {"unit": "batch.service"}]))


def test_plan_reports_every_refusal_at_once():
    with pytest.raises(PlanError) as info:
        plan("systemd-oomd", False, 252, True, [], [], ["bad name"], [{"unit": "cron.service"}], 0)
    assert len(info.value.errors) == 4
    assert [e.split(":")[0] for e in info.value.errors] == [
        "early_relief_engine", "early_relief_swap_used_limit", "early_relief_extra_critical_units (or "
        "oom_protect_critical_services)", "oom_protect_expendable_services"]


def test_auto_without_pressure_stall_information_runs_earlyoom():
    engine, why = choose_engine("auto", True, 252, True, psi=False)
    assert engine == "earlyoom" and "/proc/pressure/memory" in why
    with pytest.raises(PlanError, match="pressure stall"):
        choose_engine("systemd-oomd", True, 252, True, psi=False)


def test_avoid_units_get_avoid_not_omit_and_join_earlyoom_avoid():
    result = plan("systemd-oomd", True, 252, True, ["system.slice"], avoid_units=["postgresql.service", "ssh.service"])
    files = result["files"]
    assert result["avoid_units"] == ["postgresql.service"]  # ssh is critical: omit wins
    assert parse_unit_file(files["/etc/systemd/system/postgresql.service.d/" + DROPIN]) == {
        "Service": [("ManagedOOMPreference", "avoid")]}
    assert parse_unit_file(files["/etc/systemd/system/ssh.service.d/" + DROPIN]) == {
        "Service": [("ManagedOOMPreference", "omit")]}
    early = plan("earlyoom", False, 247, False, ["system.slice"], avoid_units=["postgresql.service"])
    avoid = re.compile(early["earlyoom_args"][early["earlyoom_args"].index("--avoid") + 1])
    assert avoid.fullmatch("postgresql") and avoid.fullmatch("sshd")


@pytest.mark.parametrize("units, message", [
    (["a b.service"], "early_relief_avoid_units: 'a b.service' is not a valid systemd unit name"),
    (["system.slice"], "early_relief_avoid_units: system.slice is also a kill slice"),
])
def test_bad_avoid_units_are_refused(units, message):
    with pytest.raises(PlanError) as caught:
        plan("systemd-oomd", True, 252, True, ["system.slice"], avoid_units=units)
    assert message in str(caught.value)


@pytest.mark.parametrize("name", ["cron.service\n", "a/b.service", "x y.slice", ".service", 5])
def test_unit_names_are_checked_whole_by_the_shared_rule(name):
    assert er.unit_name_error(name, "early_relief_extra_critical_units") is not None
    assert issubclass(PlanError, ValueError)
