"""cgroup hierarchy detection and the memory settings' v1/v2 mapping, on fake trees."""

import os

import pytest

from ansible.module_utils.oomguard_cgroup import (
    V1_MEMSW,
    cgroup_pids,
    compare_targets,
    detect_hierarchy,
    format_memory_value,
    memory_targets,
    page_rounded,
    parse_memory_events,
    parse_memory_value,
    parse_mountinfo_roots,
    read_hierarchy,
    read_memory_files,
    unit_memory_dir,
    v1_swap_accounting,
    write_memory_file,
)
from ansible.module_utils.oomguard_sizes import INFINITY

# /proc/self/mounts recorded on Debian 12 (unified), a Debian 12 build host (hybrid) and CentOS 7 (legacy).
UNIFIED = """proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate,memory_recursiveprot 0 0
"""
HYBRID = """tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""
LEGACY = """tmpfs /sys/fs/cgroup tmpfs ro,nosuid,nodev,noexec,mode=755 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,nosuid,nodev,noexec,relatime,xattr,name=systemd 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,nosuid,nodev,noexec,relatime,memory 0 0
"""
NO_MEMORY = """cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
"""


@pytest.mark.parametrize("text, mode, memory, memory_root, systemd_root", [
    (UNIFIED, "unified", "v2", "/sys/fs/cgroup", "/sys/fs/cgroup"),
    (HYBRID, "hybrid", "v1", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/systemd"),
    (LEGACY, "legacy", "v1", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/systemd"),
    (NO_MEMORY, "legacy", None, None, "/sys/fs/cgroup/systemd"),
    ("", None, None, None, None),
])
def test_detect_hierarchy(text, mode, memory, memory_root, systemd_root):
    info = detect_hierarchy(text)
    assert (info["mode"], info["memory"], info["memory_root"], info["systemd_root"]) == (
        mode, memory, memory_root, systemd_root)


def test_read_hierarchy_from_proc(tmp_path):
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "mounts").write_text(HYBRID)
    assert read_hierarchy(str(tmp_path))["memory"] == "v1"
    assert read_hierarchy(str(tmp_path / "missing"))["memory"] is None


def test_cgroup_pids_recursive(tmp_path):
    base = tmp_path / "system.slice" / "ssh.service"
    (base / "sub").mkdir(parents=True)
    (base / "cgroup.procs").write_text("812\n")
    (base / "sub" / "cgroup.procs").write_text("901\n902\n")
    assert cgroup_pids(str(tmp_path), "/system.slice/ssh.service") == [812, 901, 902]
    assert cgroup_pids(str(tmp_path), "/system.slice/ssh.service", recursive=False) == [812]
    assert cgroup_pids(str(tmp_path), "/nope") == []


@pytest.mark.parametrize("text, expected", [
    ("max\n", INFINITY), ("67108864\n", 67108864), ("0\n", 0), ("9223372036854771712\n", INFINITY),
    ("-1", INFINITY), ("garbage", None), (None, None),
])
def test_parse_memory_value(text, expected):
    assert parse_memory_value(text) == expected


@pytest.mark.parametrize("value, version, expected", [
    (INFINITY, "v2", "max"), (INFINITY, "v1", "-1"), (67108864, "v2", "67108864"), (67108864, "v1", "67108864"),
])
def test_format_memory_value(value, version, expected):
    assert format_memory_value(value, version) == expected


def test_page_rounded():
    assert page_rounded(5000) == 4096
    assert page_rounded(8192) == 8192
    assert page_rounded(INFINITY) == INFINITY


ALL = {"high": 48 << 20, "max": 64 << 20, "swap_max": 32 << 20, "low": 16 << 20, "min": 8 << 20}


def test_v2_maps_every_setting_through_systemd():
    targets, unsupported = memory_targets("v2", ALL)
    assert unsupported == []
    assert dict((t["setting"], t["file"]) for t in targets) == {
        "high": "memory.high", "max": "memory.max", "swap_max": "memory.swap.max",
        "low": "memory.low", "min": "memory.min"}
    assert all(t["via"] == "systemd" and t["exact"] and t["persistent"] for t in targets)


def test_v1_maps_what_exists():
    targets, unsupported = memory_targets("v1", ALL)
    by = dict((t["setting"], t) for t in targets)
    assert by["max"]["file"] == "memory.limit_in_bytes" and by["max"]["via"] == "systemd"
    assert by["swap_max"]["file"] == V1_MEMSW and by["swap_max"]["value"] == 96 << 20
    assert "max + swap_max" in by["swap_max"]["note"] and by["swap_max"]["persistent"] is False
    assert by["high"]["file"] == "memory.soft_limit_in_bytes" and by["high"]["exact"] is False
    assert sorted(u["setting"] for u in unsupported) == ["low", "min"]
    assert all("only in cgroup v2" in u["reason"] for u in unsupported)


@pytest.mark.parametrize("settings, accounting, expected_file, expected_value, unsupported_reason", [
    ({"swap_max": 32 << 20}, True, None, None, "without a finite max"),
    ({"max": INFINITY, "swap_max": 32 << 20}, True, "memory.limit_in_bytes", INFINITY, "without a finite max"),
    ({"max": 64 << 20, "swap_max": INFINITY}, True, V1_MEMSW, INFINITY, None),
    ({"max": 64 << 20, "swap_max": 0}, True, V1_MEMSW, 64 << 20, None),
    ({"max": 64 << 20, "swap_max": 0}, False, None, None, "swapaccount=0"),
])
def test_v1_swap_mapping(settings, accounting, expected_file, expected_value, unsupported_reason):
    targets, unsupported = memory_targets("v1", settings, swap_accounting=accounting)
    swap = [t for t in targets if t["setting"] == "swap_max"]
    if unsupported_reason:
        assert swap == [] and unsupported_reason in unsupported[0]["reason"]
    else:
        assert unsupported == [] and swap[0]["file"] == expected_file and swap[0]["value"] == expected_value


def test_no_memory_controller_means_everything_unsupported():
    targets, unsupported = memory_targets(None, {"max": 1, "low": 2})
    assert targets == [] and [u["setting"] for u in unsupported] == ["max", "low"]


def test_unrequested_settings_are_not_mapped():
    targets, unsupported = memory_targets("v1", {"max": 64 << 20, "low": None})
    assert [t["setting"] for t in targets] == ["max"] and unsupported == []


def test_v1_swap_accounting(tmp_path):
    assert v1_swap_accounting(str(tmp_path)) is False
    (tmp_path / V1_MEMSW).write_text("9223372036854771712\n")
    assert v1_swap_accounting(str(tmp_path)) is True
    assert v1_swap_accounting(None) is False


def test_read_write_and_compare(tmp_path):
    (tmp_path / "memory.max").write_text("max\n")
    write_memory_file(str(tmp_path), "memory.max", 64 * 1024 * 1024 + 100, "v2")
    assert (tmp_path / "memory.max").read_text() == "67108964"
    # The kernel would round down to whole pages; emulate what it reads back.
    (tmp_path / "memory.max").write_text("67108864\n")
    targets, _ = memory_targets("v2", {"max": 64 * 1024 * 1024 + 100, "high": 48 << 20})
    readback = read_memory_files(str(tmp_path), ["memory.max", "memory.high"])
    assert readback == {"memory.max": 64 << 20, "memory.high": None}
    applied, missing = compare_targets(targets, readback)
    assert [a["setting"] for a in applied] == ["max"]
    assert missing[0]["setting"] == "high" and "could not be read" in missing[0]["reason"]
    (tmp_path / "memory.high").write_text("max\n")
    applied, missing = compare_targets(targets, read_memory_files(str(tmp_path), ["memory.max", "memory.high"]))
    assert "reads back infinity, expected 50331648" in missing[0]["reason"]


def test_read_memory_files_without_directory():
    assert read_memory_files(None, ["memory.max"]) == {"memory.max": None}


def test_write_to_read_only_cgroup_raises(tmp_path):
    with pytest.raises(OSError):
        write_memory_file(str(tmp_path / "missing"), "memory.max", 1, "v2")


def test_parse_memory_events():
    text = "low 0\nhigh 12\nmax 40\noom 3\noom_kill 2\noom_group_kill 0\n"
    assert parse_memory_events(text)["oom_kill"] == 2
    v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 5\n"
    assert parse_memory_events(v1) == {"oom_kill_disable": 0, "under_oom": 0, "oom_kill": 5}
    assert parse_memory_events(None) == {}


# /proc/self/mountinfo recorded in a podman container (runc, no cgroup namespace) on a hybrid host.
CONTAINER_MOUNTINFO = """143 135 0:31 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,mode=755
147 143 0:32 /libpod_parent/libpod-4315f340 /sys/fs/cgroup/memory ro,nosuid,nodev,noexec,relatime - cgroup cgroup rw,memory
165 143 0:37 /libpod_parent/libpod-4315f340 /sys/fs/cgroup/systemd ro,nosuid,nodev,noexec,relatime - cgroup cgroup rw,name=systemd
166 165 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
"""
CONTAINER_MOUNTS = """cgroup /sys/fs/cgroup/memory cgroup ro,nosuid,nodev,noexec,relatime,memory 0 0
cgroup /sys/fs/cgroup/systemd cgroup ro,nosuid,nodev,noexec,relatime,name=systemd 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0
"""
HOST_MOUNTINFO = """35 25 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
"""


def test_parse_mountinfo_roots():
    roots = parse_mountinfo_roots(CONTAINER_MOUNTINFO)
    assert roots == {"/sys/fs/cgroup/memory": "/libpod_parent/libpod-4315f340", "/sys/fs/cgroup/systemd": "/"}


@pytest.mark.parametrize("mounts, mountinfo, group, expected", [
    (CONTAINER_MOUNTS, CONTAINER_MOUNTINFO, "/libpod_parent/libpod-4315f340/system.slice/cron.service",
     "/sys/fs/cgroup/memory/system.slice/cron.service"),
    (CONTAINER_MOUNTS, CONTAINER_MOUNTINFO, "/libpod_parent/libpod-4315f340", "/sys/fs/cgroup/memory/"),
    (UNIFIED, HOST_MOUNTINFO, "/system.slice/cron.service", "/sys/fs/cgroup/system.slice/cron.service"),
    (UNIFIED, "", "/system.slice/cron.service", "/sys/fs/cgroup/system.slice/cron.service"),
    (UNIFIED, HOST_MOUNTINFO, "", None),
    (NO_MEMORY, "", "/system.slice/cron.service", None),
])
def test_unit_memory_dir(tmp_path, mounts, mountinfo, group, expected):
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "mounts").write_text(mounts)
    if mountinfo:
        (tmp_path / "self" / "mountinfo").write_text(mountinfo)
    assert unit_memory_dir(read_hierarchy(str(tmp_path)), group) == expected
