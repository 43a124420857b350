"""Planning memory limits: settings, drop-in rendering, budget and safety floors."""

import pytest

from ansible.module_utils.oomguard_memplan import (
    DEFAULT_FLOORS,
    PlanError,
    budget_errors,
    merge_login_path,
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


# --- the login path -------------------------------------------------------------------

LOGIN = [{"name": "ssh.service", "min": "32M"}, {"name": "systemd-logind", "min": "16M"},
         {"name": "dbus.service", "min": "16M"}, {"name": "systemd-journald.service", "min": "64M"}]
ADDED = {"optional": True, "origin": "login_path"}


@pytest.mark.parametrize("units, slices, login, expected", [
    # disabled (empty login path): exactly units + slices
    ([{"name": "w", "max": "1G"}], [{"name": "user.slice", "max": "60%"}], [],
     [{"name": "w", "max": "1G"}, {"name": "user.slice", "max": "60%"}]),
    # no user entries: units added as optional, system.slice added with the sum
    ([], [], LOGIN,
     [dict(ADDED, name="ssh.service", min="32M"), dict(ADDED, name="systemd-logind.service", min="16M"),
      dict(ADDED, name="dbus.service", min="16M"), dict(ADDED, name="systemd-journald.service", min="64M"),
      {"name": "system.slice", "min": "128M", "origin": "login_path"}]),
    # the user lists ssh with a max: merged (not optional), the user's max kept
    ([{"name": "ssh", "max": "256M"}], [], LOGIN[:1],
     [{"name": "ssh", "max": "256M", "min": "32M", "origin": "login_path"},
      {"name": "system.slice", "min": "32M", "origin": "login_path"}]),
    # the user's own min wins, and the parent holds the user's value
    ([{"name": "ssh.service", "min": "48M"}], [], LOGIN[:1],
     [{"name": "ssh.service", "min": "48M"}, {"name": "system.slice", "min": "48M", "origin": "login_path"}]),
    # min: 0 in the user's entry drops the reservation: nothing to raise
    ([{"name": "ssh.service", "min": 0}], [], LOGIN[:1], [{"name": "ssh.service", "min": 0}]),
    # the user's system.slice is larger already: kept as written (a percentage too)
    ([], [{"name": "system.slice", "min": "5%", "low": "1G"}], LOGIN[:1],
     [dict(ADDED, name="ssh.service", min="32M"), {"name": "system.slice", "min": "5%", "low": "1G"}]),
    # the user's system.slice is smaller: raised, its other settings kept, in its place
    ([], [{"name": "system", "low": "64M", "min": "8M"}, {"name": "user.slice", "max": "60%"}], LOGIN,
     [dict(ADDED, name="ssh.service", min="32M"), dict(ADDED, name="systemd-logind.service", min="16M"),
      dict(ADDED, name="dbus.service", min="16M"), dict(ADDED, name="systemd-journald.service", min="64M"),
      {"name": "system", "low": "64M", "min": "128M", "origin": "login_path"},
      {"name": "user.slice", "max": "60%"}]),
    # low (best effort) entries raise system.slice's low, min entries its min
    ([], [{"name": "system.slice", "low": "16M"}], [{"name": "ssh", "low": "32M"}, {"name": "dbus", "min": "8M"}],
     [dict(ADDED, name="ssh.service", low="32M"), dict(ADDED, name="dbus.service", min="8M"),
      {"name": "system.slice", "low": "32M", "min": "8M", "origin": "login_path"}]),
    # a percentage in the sum (1% of 4 GiB = 40.96 MiB): plus 1 MiB, rounded up to whole MiB
    ([{"name": "ssh", "min": "1%"}], [], LOGIN[:1],
     [{"name": "ssh", "min": "1%"}, {"name": "system.slice", "min": "42M", "origin": "login_path"}]),
])
def test_merge_login_path(units, slices, login, expected):
    assert merge_login_path(units, slices, login, total_bytes=RAM) == expected


def test_merge_login_path_leaves_the_inputs_alone():
    units = [{"name": "ssh", "max": "256M"}]
    slices = [{"name": "system.slice", "low": "8M"}]
    merge_login_path(units, slices, LOGIN, total_bytes=RAM)
    assert units == [{"name": "ssh", "max": "256M"}] and slices == [{"name": "system.slice", "low": "8M"}]


@pytest.mark.parametrize("login, message", [
    ([{"name": "user.slice", "min": "8M"}], "login_path[0] (user.slice): the login path lists services"),
    ([{"name": "ssh", "max": "8M"}], "login_path[0] (ssh.service): max not allowed"),
    ([{"name": "ssh"}], "set min (hard protection) or low (best effort)"),
    ([{"name": "bad unit", "min": "8M"}], "login_path[0].name"),
    ([{"name": "ssh", "min": "lots"}], "ssh.service min: 'lots' is not a size"),
    ([{"name": "ssh", "min": "infinity"}], "is not allowed here"),
])
def test_merge_login_path_refuses(login, message):
    with pytest.raises(PlanError) as info:
        merge_login_path([], [], login, total_bytes=RAM)
    assert message in str(info.value)


@pytest.mark.parametrize("ram, reserve, refused", [
    (512 * MIB, "512M", True),     # the default reserve leaves nothing to protect
    (GIB, "512M", False),          # 2 x 128 MiB (unit and slice) of 512 MiB
    (768 * MIB, "512M", True),     # 256 MiB budget, 256 MiB + user.slice's 16 MiB
    (768 * MIB, "480M", False),
])
def test_login_path_budget(ram, reserve, refused):
    plan = merge_login_path([], [{"name": "user.slice", "low": "16M"}], LOGIN, total_bytes=ram,
                            argument="memory_limits_login_path")
    _parsed, errors = validate_plan(plan, ram, reserve, reserve_argument="memory_limits_reserve")
    assert bool(errors) is refused, errors
    if refused:
        assert "memory_limits_login_path protects ssh.service 32 MiB" in errors[0]
        assert "system.slice 128 MiB" in errors[0]
        assert "minus memory_limits_reserve 512 MiB" in errors[0] or "minus memory_limits_reserve 480" in errors[0]


def test_login_path_raise_above_the_users_max_is_refused():
    plan = merge_login_path([], [{"name": "system.slice", "max": "64M"}], LOGIN, total_bytes=RAM)
    _parsed, errors = validate_plan(plan, RAM, floors={})
    assert "system.slice: min 128 MiB (134217728 bytes) is above max 64 MiB" in "; ".join(errors)


def test_optional_and_origin_are_not_settings():
    settings = parse_settings(dict(ADDED, name="ssh.service", min="32M"), RAM)
    assert settings["min"] == 32 * MIB
