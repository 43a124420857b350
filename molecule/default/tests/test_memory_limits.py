"""memory_limits in containers: drop-ins, systemd's view, accounting, and the honest report.

The container's memory cgroup is read-only, so the limits cannot be enforced live here:
the drop-ins must be written, systemd must hold the properties, and the status file must
say enforced: false with a reason, never claim a setting that the cgroup does not show.
The scenario's group_vars set:
  memory_limits_units:  cron.service  high 192M, max 256M
  memory_limits_slices: user.slice    max 50%;  system.slice  low 64M
and the role's default login path (memory_limits_login_path) adds MemoryMin to ssh (32M),
systemd-logind (16M), dbus (16M) and journald (64M), and raises system.slice's min to their
sum (128M). cgroup v1 has no memory.min or memory.low: those are reported as unsupported.
"""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "module_utils"))
from oomguard_cgroup import cgroup_dir, detect_hierarchy, parse_memory_value  # noqa: E402
from oomguard_sizes import format_size  # noqa: E402
from oomguard_systemd import parse_show, parse_unit_file  # noqa: E402

STATUS = "/var/lib/oomguard/memory_limits.json"
MIB = 1024 * 1024


def mem_total(host):
    for line in host.file("/proc/meminfo").content_string.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal")


LOGIN_PATH = {"ssh.service": "32M", "systemd-logind.service": "16M", "dbus.service": "16M",
              "systemd-journald.service": "64M"}
UNITS = ["cron.service", "user.slice", "system.slice"] + sorted(LOGIN_PATH)


def expected(host):
    result = {
        "cron.service": ("Service", [("MemoryHigh", "192M"), ("MemoryMax", "256M")]),
        "user.slice": ("Slice", [("MemoryMax", format_size(mem_total(host) // 2))]),
        # The user's low kept, the min raised to the login path's sum (32+16+16+64 MiB).
        "system.slice": ("Slice", [("MemoryLow", "64M"), ("MemoryMin", "128M")]),
    }
    for unit, size in LOGIN_PATH.items():
        result[unit] = ("Service", [("MemoryMin", size)])
    return result


def status(host):
    return json.loads(host.file(STATUS).content_string)


def show(host, unit, *props):
    args = " ".join("-p %s" % prop for prop in props)
    return parse_show(host.check_output("systemctl show %s %s" % (unit, args)))


@pytest.mark.parametrize("unit", UNITS)
def test_dropin_written(host, unit):
    path = "/etc/systemd/system/%s.d/50-oomguard-memory.conf" % unit
    dropin = host.file(path)
    assert dropin.is_file
    assert (dropin.user, dropin.group, dropin.mode) == ("root", "root", 0o644)
    section, settings = expected(host)[unit]
    assert parse_unit_file(dropin.content_string) == {section: [("MemoryAccounting", "yes")] + settings}


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_holds_the_properties(host, unit):
    _section, settings = expected(host)[unit]
    props = show(host, unit, "MemoryAccounting", *[key for key, _ in settings])
    assert props["MemoryAccounting"] == "yes"
    from oomguard_sizes import parse_size
    for key, value in settings:
        assert props[key] == str(parse_size(value)), (key, props)


def test_default_memory_accounting(host):
    conf = host.file("/etc/systemd/system.conf.d/50-oomguard-accounting.conf")
    assert conf.is_file and conf.mode == 0o644
    assert conf.content_string.startswith("#")
    assert "Ansible managed" in conf.content_string
    assert "DefaultMemoryAccounting=yes" in conf.content_string
    assert show(host, "", "DefaultMemoryAccounting")["DefaultMemoryAccounting"] == "yes"


def test_status_reports_not_enforced_with_reasons(host):
    report = status(host)["units"]
    assert sorted(report) == ["cron.service", "dbus.service", "ssh.service", "system.slice",
                              "systemd-journald.service", "systemd-logind.service", "user.slice"]
    for unit, entry in report.items():
        assert entry["enforced"] is False, (unit, entry)
        assert entry["reason"], (unit, entry)
        requested = sorted(name for name, value in entry["settings"].items() if value is not None)
        reported = sorted(item["setting"] for item in entry["applied"] + entry["unsupported"]
                          + entry["not_enforceable"])
        assert reported == requested, (unit, entry)
        assert entry["not_enforceable"] or entry["unsupported"], (unit, entry)


def test_status_matches_the_hierarchy(host):
    hierarchy = detect_hierarchy(host.file("/proc/self/mounts").content_string)
    for unit, entry in status(host)["units"].items():
        assert entry["hierarchy"]["memory"] == hierarchy["memory"]
        if hierarchy["memory"] == "v1":
            # memory.low and memory.min do not exist on cgroup v1: reported, not pretended.
            if unit == "system.slice":
                assert [u["setting"] for u in entry["unsupported"]] == ["low", "min"]
                assert "memory.low" in entry["unsupported"][0]["reason"]
                assert "memory.min" in entry["unsupported"][1]["reason"]
            if unit in LOGIN_PATH:
                assert [u["setting"] for u in entry["unsupported"]] == ["min"], entry
                assert entry["applied"] == [] and entry["not_enforceable"] == [], entry


def test_nothing_claimed_that_the_cgroup_does_not_show(host):
    """Every setting reported as applied really reads back from the unit's cgroup."""
    hierarchy = detect_hierarchy(host.file("/proc/self/mounts").content_string)
    for unit, entry in status(host)["units"].items():
        group = show(host, unit, "ControlGroup")["ControlGroup"]
        for item in entry["applied"]:
            path = os.path.join(cgroup_dir(hierarchy["memory_root"], group), item["file"])
            value = parse_memory_value(host.file(path).content_string)
            assert value == item["readback"], (unit, item)


def test_cron_running_and_ssh_only_reserved(host):
    """ssh gets the login path's reservation and nothing that could limit it."""
    assert host.service("cron").is_running
    assert host.service("ssh").is_running
    props = show(host, "ssh.service", "MemoryMax", "MemoryHigh", "MemoryMin")
    assert props["MemoryMax"] == "infinity" and props["MemoryHigh"] == "infinity"
    assert props["MemoryMin"] == str(32 * MIB)
