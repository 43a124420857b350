# -*- coding: utf-8 -*-
# Copyright: oomguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one reader of the cgroup hierarchy, v1 (legacy/hybrid) and v2 (unified).

Standard library only. The hierarchy is detected from the host's mount table, never
from facts the user passes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

try:
    from ansible.module_utils.oomguard_files import read_text
    from ansible.module_utils.oomguard_sizes import INFINITY
except ImportError:  # installed beside an agent, outside Ansible
    from oomguard_files import read_text
    from oomguard_sizes import INFINITY


def parse_mounts(text):
    """(mountpoint, fstype, options list) for each cgroup/cgroup2 mount in a mounts file."""
    result = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4 or parts[2] not in ("cgroup", "cgroup2"):
            continue
        result.append((parts[1], parts[2], parts[3].split(",")))
    return result


def detect_hierarchy(mounts_text):
    """Describe the host's cgroup layout from /proc/self/mounts text.

    Returns a dict:
      mode:          'unified' (v2 only), 'hybrid' (v1 controllers + v2 for systemd) or 'legacy'
      memory:        'v2', 'v1' or None (no memory controller mounted)
      memory_root:   where the memory controller's tree is mounted
      systemd_root:  where systemd's own tree (cgroup.procs of units) is mounted
    """
    mounts = parse_mounts(mounts_text)
    v2_mounts = [m for m in mounts if m[1] == "cgroup2"]
    v1_memory = [m for m in mounts if m[1] == "cgroup" and "memory" in m[2]]
    v1_systemd = [m for m in mounts if m[1] == "cgroup" and "name=systemd" in m[2]]
    info = {"mode": None, "memory": None, "memory_root": None, "systemd_root": None}
    if v2_mounts and not [m for m in mounts if m[1] == "cgroup"]:
        info.update(mode="unified", memory="v2", memory_root=v2_mounts[0][0], systemd_root=v2_mounts[0][0])
        return info
    if mounts:
        info["mode"] = "hybrid" if v2_mounts else "legacy"
    if v1_memory:
        info.update(memory="v1", memory_root=v1_memory[0][0])
    if v1_systemd:
        info["systemd_root"] = v1_systemd[0][0]
    elif v2_mounts:
        info["systemd_root"] = v2_mounts[0][0]
    return info


def read_hierarchy(proc="/proc"):
    """detect_hierarchy() of this host, plus memory_mount_root from /proc/self/mountinfo.

    memory_mount_root is the cgroup path mounted at memory_root: '/' on a host, the
    container's own cgroup (e.g. /libpod_parent/libpod-<id>) inside a container that
    has no cgroup namespace, where systemd's ControlGroup paths still start with it.
    """
    info = detect_hierarchy(read_text(os.path.join(proc, "self", "mounts"), "") or "")
    roots = parse_mountinfo_roots(read_text(os.path.join(proc, "self", "mountinfo"), "") or "")
    info["memory_mount_root"] = roots.get(info["memory_root"], "/") if info["memory_root"] else None
    return info


def parse_mountinfo_roots(text):
    """{mountpoint: root} for cgroup/cgroup2 mounts in /proc/self/mountinfo (the last mount wins)."""
    result = {}
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right.split() or right.split()[0] not in ("cgroup", "cgroup2"):
            continue
        result[fields[4]] = fields[3]
    return result


def unit_memory_dir(hierarchy, control_group):
    """Directory of a unit's cgroup (systemd's ControlGroup) in the memory controller's tree.

    Strips the mount's own root, so a container's paths map onto what it has mounted.
    """
    if not hierarchy.get("memory_root") or not control_group:
        return None
    root = (hierarchy.get("memory_mount_root") or "/").rstrip("/")
    group = control_group
    if root and (group == root or group.startswith(root + "/")):
        group = group[len(root):] or "/"
    return cgroup_dir(hierarchy["memory_root"], group)


def cgroup_dir(root, control_group):
    """Directory of a cgroup (systemd's ControlGroup, e.g. /system.slice/ssh.service) under root."""
    if not root or control_group is None:
        return None
    return os.path.join(root, control_group.lstrip("/"))


def cgroup_pids(root, control_group, recursive=True):
    """Pids in a cgroup (and its children: a unit's processes may sit in sub-cgroups)."""
    top = cgroup_dir(root, control_group)
    if top is None or not os.path.isdir(top):
        return []
    pids = []
    walker = os.walk(top) if recursive else [(top, [], [])]
    for dirpath, _dirs, _files in walker:
        text = read_text(os.path.join(dirpath, "cgroup.procs"), "") or ""
        for line in text.split():
            if line.isdigit():
                pids.append(int(line))
    return sorted(set(pids))


# ---------------------------------------------------------------------------
# Memory settings: where each of systemd's Memory*= settings lives in the cgroup.
#
# Settings are named as the modules name them: high, max, swap_max, low, min.
# Values are bytes (int) or INFINITY.

MEMORY_SETTINGS = ("high", "max", "swap_max", "low", "min")
# The systemd property (systemd.resource-control(5)) of each setting.
MEMORY_PROPERTIES = {
    "high": "MemoryHigh",
    "max": "MemoryMax",
    "swap_max": "MemorySwapMax",
    "low": "MemoryLow",
    "min": "MemoryMin",
}
# Older names a unit file may still use: MemoryLimit= is cgroup v1's MemoryMax=
# (when both are set, MemoryMax= wins).
MEMORY_PROPERTY_ALIASES = {"MemoryLimit": "max"}

# cgroup v2: one file for each setting, systemd writes all of them.
V2_MEMORY_FILES = {
    "high": "memory.high",
    "max": "memory.max",
    "swap_max": "memory.swap.max",
    "low": "memory.low",
    "min": "memory.min",
}

# cgroup v1: what exists. systemd (up to its last v1 release) writes only
# memory.limit_in_bytes (from MemoryMax=/MemoryLimit=); the other two files are not
# managed by systemd on v1 at all.
V1_LIMIT = "memory.limit_in_bytes"
V1_MEMSW = "memory.memsw.limit_in_bytes"
V1_SOFT = "memory.soft_limit_in_bytes"

# v1 reports "no limit" as PAGE_COUNTER_MAX * PAGE_SIZE (9223372036854771712 with 4 KiB
# pages); anything this large is unlimited.
V1_UNLIMITED_THRESHOLD = 1 << 62

V1_REASONS = {
    "low": "cgroup v1 has no memory.low (best-effort protection exists only in cgroup v2)",
    "min": "cgroup v1 has no memory.min (hard protection exists only in cgroup v2)",
    "swap_max_no_accounting": ("cgroup v1 without swap accounting: %s is missing "
                               "(kernel booted with swapaccount=0 or without CONFIG_MEMCG_SWAP)" % V1_MEMSW),
    "swap_max_no_max": ("cgroup v1 limits memory+swap together (%s); swap_max alone cannot be "
                        "expressed without a finite max" % V1_MEMSW),
}

V1_NOTES = {
    "max": "%s, applied by systemd from MemoryMax=" % V1_LIMIT,
    "swap_max": ("%s = max + swap_max (v1 limits memory+swap together); systemd does not manage "
                 "this file on v1: written directly, lost when the unit's cgroup is recreated" % V1_MEMSW),
    "high": ("APPROXIMATE: %s is only a reclaim target under host-wide memory pressure; it does not "
             "throttle the cgroup like v2 memory.high. Written directly, systemd does not manage it on v1, "
             "lost when the unit's cgroup is recreated" % V1_SOFT),
}


def parse_memory_value(text):
    """A cgroup memory file's value: bytes (int), INFINITY ('max', v1's huge number) or None."""
    if text is None:
        return None
    text = text.strip()
    if text == "max":
        return INFINITY
    try:
        value = int(text)
    except ValueError:
        return None
    if value < 0 or value >= V1_UNLIMITED_THRESHOLD:
        return INFINITY
    return value


def format_memory_value(value, version):
    """Text to write into a cgroup memory file (v2 'max', v1 '-1' for no limit)."""
    if value == INFINITY or value is None:
        return "max" if version == "v2" else "-1"
    return "%d" % int(value)


def page_rounded(value, page_size=4096):
    """What the kernel reads back after a write: bytes rounded down to whole pages."""
    if value == INFINITY or value is None:
        return value
    return (int(value) // page_size) * page_size


def v1_swap_accounting(memory_root):
    """True when the v1 memory controller has memsw files (swap accounting on)."""
    return bool(memory_root) and os.path.exists(os.path.join(memory_root, V1_MEMSW))


def memory_targets(version, settings, swap_accounting=True):
    """Map requested settings onto cgroup files for the host's memory controller.

    settings: {setting: bytes | INFINITY | None}; None means not requested.
    Returns (targets, unsupported):
      targets:     [{setting, file, value, via: 'systemd'|'direct', exact, persistent, note}]
                   value is what the file must read back (before page rounding)
      unsupported: [{setting, reason}] for requested settings this host cannot express
    """
    requested = [name for name in MEMORY_SETTINGS if settings.get(name) is not None]
    targets = []
    unsupported = []
    if version == "v2":
        for name in requested:
            targets.append({"setting": name, "file": V2_MEMORY_FILES[name], "value": settings[name],
                            "via": "systemd", "exact": True, "persistent": True,
                            "note": "%s, applied by systemd" % V2_MEMORY_FILES[name]})
        return targets, unsupported
    if version != "v1":
        for name in requested:
            unsupported.append({"setting": name, "reason": "no memory cgroup controller is mounted on this host"})
        return targets, unsupported
    for name in requested:
        value = settings[name]
        if name in ("low", "min"):
            unsupported.append({"setting": name, "reason": V1_REASONS[name]})
        elif name == "max":
            targets.append({"setting": name, "file": V1_LIMIT, "value": value, "via": "systemd",
                            "exact": True, "persistent": True, "note": V1_NOTES["max"]})
        elif name == "swap_max":
            limit = settings.get("max")
            if not swap_accounting:
                unsupported.append({"setting": name, "reason": V1_REASONS["swap_max_no_accounting"]})
            elif value == INFINITY:
                targets.append({"setting": name, "file": V1_MEMSW, "value": INFINITY, "via": "direct",
                                "exact": True, "persistent": False, "note": V1_NOTES["swap_max"]})
            elif limit is None or limit == INFINITY:
                unsupported.append({"setting": name, "reason": V1_REASONS["swap_max_no_max"]})
            else:
                targets.append({"setting": name, "file": V1_MEMSW, "value": int(limit) + int(value),
                                "via": "direct", "exact": True, "persistent": False, "note": V1_NOTES["swap_max"]})
        elif name == "high":
            targets.append({"setting": name, "file": V1_SOFT, "value": value, "via": "direct",
                            "exact": False, "persistent": False, "note": V1_NOTES["high"]})
    return targets, unsupported


def read_memory_files(directory, files):
    """{file: parsed value or None (missing/unreadable)} for files in one cgroup directory."""
    result = {}
    for name in files:
        text = read_text(os.path.join(directory, name)) if directory else None
        result[name] = parse_memory_value(text)
    return result


def write_memory_file(directory, file_name, value, version):
    """Write one memory limit into a cgroup file (cgroupfs files are written in place).

    Raises OSError (EROFS in containers, EINVAL/EBUSY when the kernel refuses).
    """
    with open(os.path.join(directory, file_name), "w") as handle:
        handle.write(format_memory_value(value, version))


def compare_targets(targets, readback, page_size=4096):
    """Split targets into (applied, not_enforceable) from what the cgroup files read back.

    readback: {file: value or None}. A value is in effect when the file reads back the
    requested bytes rounded down to whole pages (or unlimited for INFINITY).
    """
    applied = []
    missing = []
    for target in targets:
        got = readback.get(target["file"])
        entry = dict(target, readback=got)
        if got is None:
            missing.append(dict(entry, reason="%s could not be read" % target["file"]))
        elif got == page_rounded(target["value"], page_size):
            applied.append(entry)
        else:
            missing.append(dict(entry, reason="%s reads back %s, expected %s" % (
                target["file"], got, page_rounded(target["value"], page_size))))
    return applied, missing


def parse_memory_events(text):
    """memory.events (v2) as {key: int}: low, high, max, oom, oom_kill, oom_group_kill."""
    result = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            result[parts[0]] = int(parts[1])
    return result
