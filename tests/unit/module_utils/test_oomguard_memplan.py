"""Planning memory limits: settings, drop-in rendering, budget and safety floors."""

import pytest

from ansible.module_utils.oomguard_memplan import (
    DEFAULT_FLOORS,
    PlanError,
    budget_errors,
    desired_show,
    normalize_entries,
    parse_settings,
    property_differences,
    render_memory_dropin,
    section_for,
    set_property_args,
    unit_errors,
    validate_plan,
)
from ansible.module_utils.oomguard_sizes import INFINITY
from ansible.module_utils.oomguard_systemd import parse_unit_file

GIB = 1024 ** 3
MIB = 1024 ** 2
RAM = 4 * GIB


def test_parse_settings_resolves_forms():
    settings = parse_settings({"name": "w", "high": "25%", "max": "infinity", "low": "0", "min": 1048576}, RAM)
    assert settings == {"high": GIB, "max": INFINITY, "swap_max": None, "low": 0, "min": MIB}


@pytest.mark.parametrize("entry, message", [
    ({"low": "infinity"}, "use a size, or 0 to clear"),
    ({"min": "max"}, "use a size, or 0 to clear"),
    ({"max": "512Q"}, "w max: '512Q' is not a size"),
    ({"swap_max": "-1G"}, "w swap_max: '-1G' is not a size"),
    ({"high": "101%"}, "above 100% of RAM"),
    ({"hihg": "1G"}, "unknown setting(s) hihg"),
])
def test_parse_settings_rejects(entry, message):
    with pytest.raises(PlanError) as info:
        parse_settings(entry, RAM, where="w")
    assert message in str(info.value)


@pytest.mark.parametrize("unit, section", [("a.service", "Service"), ("user.slice", "Slice")])
def test_section_for(unit, section):
    assert section_for(unit) == section


def test_section_for_refuses_other_types():
    with pytest.raises(PlanError):
        section_for("a.timer")


def test_render_memory_dropin():
    settings = {"high": 48 * MIB, "max": 64 * MIB, "swap_max": 0, "low": None, "min": None}
    text = render_memory_dropin("worker.service", settings)
    assert text.startswith("# Managed by oomguard")
    assert parse_unit_file(text) == {"Service": [
        ("MemoryAccounting", "yes"), ("MemoryHigh", "48M"), ("MemoryMax", "64M"), ("MemorySwapMax", "0")]}
    slice_text = render_memory_dropin("user.slice", {"max": INFINITY})
    assert "[Slice]\nMemoryAccounting=yes\nMemoryMax=infinity\n" in slice_text


def test_systemd_property_comparison():
    settings = {"max": 64 * MIB, "high": INFINITY}
    assert set_property_args(settings) == ["MemoryAccounting=yes", "MemoryHigh=infinity", "MemoryMax=64M"]
    live = {"MemoryAccounting": "yes", "MemoryHigh": "infinity", "MemoryMax": str(64 * MIB)}
    assert desired_show(settings) == live
    assert property_differences(live, settings) == []
    assert property_differences(dict(live, MemoryMax="infinity"), settings) == ["max"]
    assert property_differences(dict(live, MemoryAccounting="no"), settings) == ["accounting"]


FLOORS = {"ssh.service": 128 * MIB, "system.slice": 512 * MIB}


@pytest.mark.parametrize("unit, settings, message", [
    ("w.service", {"high": 2 * GIB, "max": GIB}, "high 2 GiB (2147483648 bytes) is above max 1 GiB"),
    ("w.service", {"high": INFINITY, "max": GIB}, "high infinity is above max"),
    ("w.service", {"low": 2 * GIB, "max": GIB}, "low 2 GiB (2147483648 bytes) is above max"),
    ("w.service", {"min": 2 * GIB, "max": GIB}, "min 2 GiB"),
    ("ssh.service", {"max": 64 * MIB}, "ssh.service: max 64 MiB (67108864 bytes) is below the safe floor 128 MiB"),
    ("ssh.service", {"high": 100 * MIB}, "high 100 MiB"),
    ("system.slice", {"max": 256 * MIB}, "below the safe floor 512 MiB"),
])
def test_unit_errors(unit, settings, message):
    errors = unit_errors(unit, settings, FLOORS)
    assert any(message in error for error in errors), errors


@pytest.mark.parametrize("unit, settings", [
    ("w.service", {"high": GIB, "max": GIB}),
    ("w.service", {"high": GIB, "max": INFINITY}),
    ("w.service", {"max": 16 * MIB}),
    ("ssh.service", {"max": 128 * MIB}),
    ("ssh.service", {"max": INFINITY}),
    ("system.slice", {"low": GIB}),
    ("w.service", {"swap_max": GIB}),  # swap limits on a host without swap are fine
])
def test_unit_errors_accept(unit, settings):
    assert unit_errors(unit, settings, FLOORS) == []


def test_budget_sums_across_units():
    plan = [("a.service", {"low": GIB}), ("b.service", {"min": GIB, "low": 512 * MIB}), ("system.slice", {"low": GIB})]
    assert budget_errors(plan, RAM, 512 * MIB) == []
    plan.append(("c.service", {"min": 600 * MIB}))
    errors = budget_errors(plan, RAM, 512 * MIB)
    assert len(errors) == 1
    assert "sum to 3.6 GiB" in errors[0] and "c.service 600 MiB" in errors[0]
    assert "minus reserve 512 MiB (536870912 bytes) = 3.5 GiB" in errors[0]


def test_validate_plan_collects_every_error():
    entries = [
        {"name": "a.service", "low": "2G"},
        {"name": "b.service", "min": "2G"},
        {"name": "ssh.service", "max": "32M"},
        {"name": "c.service", "max": "512Q"},
        {"name": "a.service", "low": "1M"},
        {"max": "1G"},
    ]
    parsed, errors = validate_plan(entries, RAM)
    assert [name for name, _ in parsed] == ["a.service", "b.service", "ssh.service"]
    text = "\n".join(errors)
    assert "below the safe floor" in text
    assert "'512Q' is not a size" in text
    assert "a.service is listed more than once" in text
    assert "every entry needs a name" in text
    assert "low/min protections sum to 4 GiB" in text


def test_validate_plan_accepts_sane_plan_and_custom_floors():
    entries = [{"name": "ssh.service", "max": "96M"}, {"name": "user.slice", "max": "50%"},
               {"name": "system.slice", "low": "25%"}]
    assert validate_plan(entries, RAM)[1] != []
    parsed, errors = validate_plan(entries, RAM, reserve="10%", floors={"ssh.service": "64M"})
    assert errors == []
    assert dict(parsed)["user.slice"]["max"] == 2 * GIB


@pytest.mark.parametrize("total, reserve, floors, message", [
    (None, "512M", None, "RAM is unknown"),
    (RAM, "lots", None, "reserve: 'lots' is not a size"),
    (RAM, "infinity", None, "not allowed here"),
    (RAM, "512M", {"ssh.service": "tiny"}, "floors[ssh.service]"),
])
def test_validate_plan_bad_parameters(total, reserve, floors, message):
    _parsed, errors = validate_plan([{"name": "a.service", "max": "1G"}], total, reserve, floors)
    assert message in errors[0]


def test_default_floors_cover_ssh_cron_and_system_slice():
    assert set(DEFAULT_FLOORS) >= {"ssh.service", "sshd.service", "cron.service", "crond.service", "system.slice"}


def test_normalize_entries():
    entries, errors = normalize_entries([{"name": "ssh", "max": "1G"}, {"name": "user.slice"}, {"name": "x;y"},
                                         "oops", {"name": "a.timer"}], argument="units")
    assert [entry["name"] for entry in entries] == ["ssh.service", "user.slice"]
    assert entries[0]["max"] == "1G"
    assert len(errors) == 3 and errors[0].startswith("units[2].name")
