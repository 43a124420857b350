"""The oomguard Jinja filters: the shared size parser and plan checks, as templates see them."""

import pytest
from ansible.errors import AnsibleFilterError

import oomguard
from oomguard import (oomguard_bytes, oomguard_human, oomguard_memory_plan, oomguard_memory_plan_errors,
                      oomguard_size)

GIB = 1024 ** 3
RAM = 4 * GIB


def test_registered_filters():
    filters = oomguard.FilterModule().filters()
    assert set(filters) >= {"oomguard_bytes", "oomguard_human", "oomguard_size", "oomguard_memory_plan",
                            "oomguard_memory_plan_errors"}
    assert filters["oomguard_bytes"] is oomguard_bytes


def test_filters_use_the_shared_parser():
    from ansible.module_utils import oomguard_sizes
    assert oomguard.parse_size is oomguard_sizes.parse_size


@pytest.mark.parametrize("value, total, expected", [
    ("512M", None, 512 * 1024 ** 2), ("25%", RAM, GIB), ("25%", str(RAM), GIB), (2048, None, 2048),
    ("infinity", None, "infinity"),
])
def test_oomguard_bytes(value, total, expected):
    assert oomguard_bytes(value, total) == expected


@pytest.mark.parametrize("value, total, message", [
    ("512Q", None, "not a size"), ("-5M", None, "not a size"), ("150%", RAM, "above 100%"),
    ("25%", None, "RAM is unknown"), ("1G", "lots", "total_bytes must be a number"),
])
def test_oomguard_bytes_errors(value, total, message):
    with pytest.raises(AnsibleFilterError, match=message):
        oomguard_bytes(value, total)


def test_oomguard_bytes_can_refuse_infinity():
    with pytest.raises(AnsibleFilterError, match="not allowed"):
        oomguard_bytes("infinity", allow_infinity=False)


@pytest.mark.parametrize("value, expected", [
    (536870912, "512 MiB"), ("1.5G", "1.5 GiB"), ("infinity", "infinity"), (100, "100 B"),
])
def test_oomguard_human(value, expected):
    assert oomguard_human(value) == expected


def test_oomguard_human_percent_and_errors():
    assert oomguard_human("50%", total_bytes=RAM) == "2 GiB"
    with pytest.raises(AnsibleFilterError):
        oomguard_human("512Q")


@pytest.mark.parametrize("value, total, expected", [
    ("0.5G", None, "512M"), (67108864, None, "64M"), ("25%", RAM, "1G"), ("max", None, "infinity"),
    ("1000", None, "1000"),
])
def test_oomguard_size(value, total, expected):
    assert oomguard_size(value, total) == expected


def test_oomguard_size_error():
    with pytest.raises(AnsibleFilterError, match="oomguard_size: '12X'"):
        oomguard_size("12X")


def test_plan_errors():
    assert oomguard_memory_plan_errors([{"name": "user.slice", "max": "50%"}], RAM) == []
    errors = oomguard_memory_plan_errors(
        [{"name": "ssh", "max": "32M"}, {"name": "db", "min": "3G"}, {"name": "bad unit"},
         {"name": "system.slice", "low": "1G"}], RAM, "512M")
    text = "\n".join(errors)
    assert "units[2].name" in text
    assert "ssh.service: max 32 MiB" in text
    assert "low/min protections sum to 4 GiB" in text
    assert oomguard_memory_plan_errors([{"name": "db", "min": "3G"}], RAM, "1.5G") != []
    assert oomguard_memory_plan_errors([{"name": "ssh", "max": "32M"}], RAM, floors={}) == []


# The memory_limits role's defaults (defaults/main.yml), ssh by os_family resolved.
LOGIN = [{"name": "ssh.service", "min": "32M"}, {"name": "systemd-logind.service", "min": "16M"},
         {"name": "dbus.service", "min": "16M"}, {"name": "systemd-journald.service", "min": "64M"}]
MIB = 1024 ** 2
UNITS = [{"name": "app-worker.service", "max": "320M", "swap_max": 0}]
SLICES = [{"name": "user.slice", "max": "60%", "swap_max": 0}, {"name": "system.slice", "low": "64M"}]


@pytest.mark.parametrize("login, expected_names, system_slice", [
    # disabled: the old plan exactly
    ([], ["app-worker.service", "user.slice", "system.slice"], {"name": "system.slice", "low": "64M"}),
    # enabled: four optional units, system.slice's low kept and its min raised to the sum
    (LOGIN, ["app-worker.service", "ssh.service", "systemd-logind.service", "dbus.service",
             "systemd-journald.service", "user.slice", "system.slice"],
     {"name": "system.slice", "low": "64M", "min": "128M", "origin": "memory_limits_login_path"}),
])
def test_memory_plan(login, expected_names, system_slice):
    plan = oomguard_memory_plan(UNITS, SLICES, login, RAM)
    assert [entry["name"] for entry in plan] == expected_names
    assert plan[-1] == system_slice
    if not login:
        assert plan == UNITS + SLICES


def test_memory_plan_without_login_path_argument():
    assert oomguard_memory_plan(UNITS, SLICES) == UNITS + SLICES


def test_memory_plan_bad_login_path():
    with pytest.raises(AnsibleFilterError, match=r"memory_limits_login_path\[0\] \(ssh.service\): max not allowed"):
        oomguard_memory_plan([], [], [{"name": "ssh", "max": "1G"}], RAM)


@pytest.mark.parametrize("ram, refused", [(512 * MIB, True), (1024 * MIB, False), (RAM, False)])
def test_login_path_checked_against_the_hosts_ram(ram, refused):
    plan = oomguard_memory_plan(UNITS, SLICES, LOGIN, ram)
    errors = oomguard_memory_plan_errors(plan, ram, "512M")
    assert bool(errors) is refused, errors
    if refused:
        assert "memory_limits_login_path" in errors[0]
        assert "memory_limits_reserve" in errors[0]
    # disabled, the same small host passes as before
    assert oomguard_memory_plan_errors(oomguard_memory_plan(UNITS, SLICES, [], ram), ram, "256M") == []


# --- oomguard_early_relief_plan: the early_relief role's plan and refusals ---

from oomguard import oomguard_early_relief_plan  # noqa: E402

EARLY_RELIEF = {"engine": "auto", "kill_slices": ["system.slice", "user.slice"], "critical_services": [],
                "extra_critical_units": [], "expendable_services": [], "swap_used_limit": 60,
                "memory_pressure_limit": 40, "memory_pressure_duration": 10, "earlyoom_mem_percent": 5,
                "earlyoom_swap_percent": 10}


def test_early_relief_plan_is_registered_and_uses_the_shared_planner():
    from ansible.module_utils import oomguard_earlyrelief
    assert oomguard.FilterModule().filters()["oomguard_early_relief_plan"] is oomguard_early_relief_plan
    assert oomguard.early_relief_plan is oomguard_earlyrelief.plan


@pytest.mark.parametrize("facts, engine", [
    ({"cgroup_v2": True, "systemd_version": 252, "oomd_available": True}, "systemd-oomd"),
    # facts as a template may deliver them, as text
    ({"cgroup_v2": "True", "systemd_version": "252", "oomd_available": "true"}, "systemd-oomd"),
    ({"cgroup_v2": "False", "systemd_version": "252", "oomd_available": "True"}, "earlyoom"),
    ({"cgroup_v2": True, "systemd_version": 247, "oomd_available": True}, "earlyoom"),
    (None, "earlyoom"),
])
def test_early_relief_plan_engine(facts, engine):
    result = oomguard_early_relief_plan(EARLY_RELIEF, facts)
    assert result["engine"] == engine
    assert result["errors"] == []
    assert set(result) >= {"engine", "reason", "files", "earlyoom_args"}
    assert all(content.startswith("# Managed by oomguard (early_relief)") for content in result["files"].values())


def test_early_relief_plan_follows_oom_protect():
    settings = dict(EARLY_RELIEF, critical_services=[{"unit": "postgresql.service", "score": -900}],
                    expendable_services=[{"process": "batch-runner"}])
    oomd = oomguard_early_relief_plan(settings, {"cgroup_v2": True, "systemd_version": 252, "oomd_available": True})
    assert "/etc/systemd/system/postgresql.service.d/50-oomguard-early-relief.conf" in oomd["files"]
    early = oomguard_early_relief_plan(dict(settings, engine="earlyoom"))
    assert early["earlyoom_args"][early["earlyoom_args"].index("--prefer") + 1] == "^(batch-runner)$"
    assert "postgresql" in early["earlyoom_args"][early["earlyoom_args"].index("--avoid") + 1]


@pytest.mark.parametrize("change, message", [
    ({"engine": "fast"}, "early_relief_engine: 'fast' is not allowed"),
    ({"kill_slices": []}, "early_relief_kill_slices: no candidate slice at all"),
    ({"expendable_services": [{"unit": "cron.service"}]}, "cron.service is critical"),
    ({"memory_pressure_duration": 0}, "early_relief_memory_pressure_duration: 0 is out of range"),
])
def test_early_relief_plan_returns_the_refusals(change, message):
    result = oomguard_early_relief_plan(dict(EARLY_RELIEF, **change))
    assert result["engine"] == "none" and result["files"] == {}
    assert any(message in error for error in result["errors"])


@pytest.mark.parametrize("settings, facts, message", [
    ("auto", None, "settings and facts must be dicts"),
    ({"engin": "auto"}, None, "unknown keys engin"),
    (EARLY_RELIEF, {"cgroup": True}, "unknown keys cgroup"),
])
def test_early_relief_plan_malformed_arguments(settings, facts, message):
    with pytest.raises(AnsibleFilterError, match=message):
        oomguard_early_relief_plan(settings, facts)


def test_path_error_filter_for_the_roles_preflight():
    """Issue 15: the role's preflight refuses what the agent's --check-config refuses."""
    assert oomguard.oomguard_path_error("/var/log/oomguard/snapshots.jsonl", "swap_alert_snapshot_path",
                                        under=["/var/log"]) == ""
    error = oomguard.oomguard_path_error("/var/lib/prometheus/node-exporter/../../../../etc/cron.d",
                                         "swap_alert_metrics_textfile_dir", under=["/var", "/run"])
    assert error.startswith("swap_alert_metrics_textfile_dir: ") and "normalised" in error
    assert "outside /var/log" in oomguard.oomguard_path_error("/home/x.jsonl", "swap_alert_events_path",
                                                              under=["/var/log"])
    with pytest.raises(AnsibleFilterError, match="under must be a list"):
        oomguard.oomguard_path_error("/var/log/x", "x", under="/var/log")


# --- a clear AnsibleFilterError, never a traceback (issue 15) --------------------------

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("call, fragment", [
    (lambda: oomguard.oomguard_human(5, 1.5), "oomguard_human: precision 1.5"),
    (lambda: oomguard.oomguard_human(5, -1), "oomguard_human: precision -1"),
    (lambda: oomguard.oomguard_human(5, "2"), "oomguard_human: precision '2'"),
    (lambda: oomguard.oomguard_human(NAN), "oomguard_human: nan is not a size"),
    (lambda: oomguard.oomguard_human(INF), "oomguard_human: inf is not a size"),
    (lambda: oomguard.oomguard_human(10 ** 400), "beyond what systemd takes"),
    (lambda: oomguard.oomguard_bytes("25%", NAN), "oomguard_bytes: total_bytes must be a number"),
    (lambda: oomguard.oomguard_bytes("25%", INF), "oomguard_bytes: total_bytes must be a number"),
    (lambda: oomguard.oomguard_bytes("25%", 10 ** 400), "got a 1329-bit number"),
    (lambda: oomguard.oomguard_bytes("25%", -5), "oomguard_bytes: total_bytes must be a number"),
    (lambda: oomguard.oomguard_size(1.5), "fractional number of bytes"),
    (lambda: oomguard.oomguard_size("\uff11G"), "ASCII digits"),
    (lambda: oomguard.oomguard_memory_plan_errors("ssh", 2 ** 32), "plan 'ssh' is not a list"),
    (lambda: oomguard.oomguard_memory_plan_errors({"name": "ssh"}, 2 ** 32), "is not a list"),
    (lambda: oomguard.oomguard_memory_plan_errors([], 2 ** 32, "512M", ["ssh"]), "floors ['ssh'] is not a mapping"),
    (lambda: oomguard.oomguard_memory_plan_errors([], 2 ** 32, "512M", "none"), "floors 'none' is not a mapping"),
    (lambda: oomguard.oomguard_memory_plan("x"), "oomguard_memory_plan: units 'x' is not a list"),
    (lambda: oomguard.oomguard_memory_plan([5]), "units[0] 5 is not a mapping"),
    (lambda: oomguard.oomguard_memory_plan([], {"a": 1}), "slices {'a': 1} is not a list"),
    (lambda: oomguard.oomguard_memory_plan([], [], "ssh", 2 ** 32), "memory_limits_login_path 'ssh' is not a list"),
    (lambda: oomguard.oomguard_memory_plan([], [], [{"name": "ssh", "min": "\uff11G"}], 2 ** 32), "ASCII digits"),
])
def test_filters_refuse_hostile_arguments_with_a_filter_error(call, fragment):
    with pytest.raises(AnsibleFilterError) as err:
        call()
    assert fragment in str(err.value)


def test_plan_errors_still_lists_malformed_entries():
    errors = oomguard.oomguard_memory_plan_errors([5, {"name": "x", "max": "0"}], 2 ** 32)
    assert any("must be a dict" in e for e in errors) and any("below the minimum" in e for e in errors)
