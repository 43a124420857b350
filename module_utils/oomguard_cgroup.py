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
except ImportError:  # installed beside an agent, outside Ansible
    from oomguard_files import read_text


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
    return detect_hierarchy(read_text(os.path.join(proc, "self", "mounts"), "") or "")


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
