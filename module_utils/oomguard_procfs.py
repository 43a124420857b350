# -*- coding: utf-8 -*-
# Copyright: oomguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one reader of /proc/<pid>: processes, their oom_score_adj, memory and cgroup.

Standard library only. Every reader takes `proc` (default /proc) so tests point it at
a fake tree. Processes may vanish between listing and reading: readers return None
for a process that is gone instead of raising.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os

try:
    from ansible.module_utils.oomguard_files import read_int, read_text
except ImportError:  # installed beside an agent, outside Ansible
    from oomguard_files import read_int, read_text

OOM_SCORE_ADJ_MIN = -1000
OOM_SCORE_ADJ_MAX = 1000
# Why the kernel refuses a value: the one wording of a refusal in everything oomguard
# reports (this writer, oomguard_oom_score's result, oom_protect's status file, the audit).
OOM_SCORE_ADJ_REFUSAL = "lowering oom_score_adj below a process's oom_score_adj_min needs CAP_SYS_RESOURCE"


def list_pids(proc="/proc"):
    """All numeric entries of /proc, as ints, sorted (threads are not listed there)."""
    pids = []
    for name in os.listdir(proc):
        if name.isdigit():
            pids.append(int(name))
    pids.sort()
    return pids


def parse_stat(text):
    """Parse /proc/<pid>/stat: comm may contain spaces and parentheses."""
    open_paren = text.index("(")
    close_paren = text.rindex(")")
    comm = text[open_paren + 1:close_paren]
    fields = text[close_paren + 2:].split()
    # fields[0] is state (field 3 of proc(5)); ppid is field 4, rss (pages) field 24.
    return {
        "pid": int(text[:open_paren].strip()),
        "comm": comm,
        "state": fields[0],
        "ppid": int(fields[1]),
        "starttime": int(fields[19]),
        "rss_pages": int(fields[21]),
    }


def parse_status(text):
    """/proc/<pid>/status as a dict of the fields we use (sizes in bytes)."""
    result = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        value = value.strip()
        if key in ("VmRSS", "VmSwap", "RssAnon", "RssFile", "RssShmem"):
            parts = value.split()
            result[key] = int(parts[0]) * 1024 if parts else 0
        elif key in ("Uid", "Gid"):
            result[key] = int(value.split()[0])
        elif key in ("Name", "State", "PPid", "Tgid"):
            result[key] = value
    return result


def parse_cgroup(text):
    """/proc/<pid>/cgroup: {'unified': '/system.slice/ssh.service', 'memory': ..., 'name=systemd': ...}."""
    result = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _hid, controllers, path = parts
        if controllers == "":
            result["unified"] = path
        else:
            for controller in controllers.split(","):
                result[controller] = path
    return result


def unit_from_cgroup_path(path):
    """Innermost systemd unit (service/scope/socket) named in a cgroup path, or None."""
    if not path:
        return None
    for component in reversed(path.strip("/").split("/")):
        if component.endswith((".service", ".scope", ".socket", ".mount", ".swap")):
            return component
    return None


def systemd_cgroup_path(cgroups):
    """The path systemd manages for a process: name=systemd on v1/hybrid, else unified."""
    return cgroups.get("name=systemd") or cgroups.get("unified")


def read_oom_score_adj(pid, proc="/proc"):
    return read_int(os.path.join(proc, str(pid), "oom_score_adj"))


def write_oom_score_adj(pid, value, proc="/proc"):
    """Write the value; return (ok, reason). Never raises for a refused or vanished process."""
    path = os.path.join(proc, str(pid), "oom_score_adj")
    try:
        with open(path, "w") as handle:
            handle.write("%d\n" % value)
    except (IOError, OSError) as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            return False, "kernel refused oom_score_adj %d for pid %s (%s): %s" % (
                value, pid, os.strerror(exc.errno), OOM_SCORE_ADJ_REFUSAL)
        if exc.errno in (errno.ENOENT, errno.ESRCH):
            return False, "pid %s exited" % pid
        return False, "writing %s failed: %s" % (path, exc)
    return True, None


def read_process(pid, proc="/proc", with_cmdline=True):
    """Everything the audit, the snapshot and the planners need about one process.

    Returns None when the process is gone. Kernel threads have an empty cmdline and
    rss 0; they are returned with kernel_thread=True.
    """
    base = os.path.join(proc, str(pid))
    stat_text = read_text(os.path.join(base, "stat"))
    if stat_text is None:
        return None
    try:
        stat = parse_stat(stat_text)
    except (ValueError, IndexError):
        return None
    status = parse_status(read_text(os.path.join(base, "status"), "") or "")
    cgroups = parse_cgroup(read_text(os.path.join(base, "cgroup"), "") or "")
    cgroup_path = systemd_cgroup_path(cgroups)
    info = {
        "pid": stat["pid"],
        "ppid": stat["ppid"],
        "comm": stat["comm"],
        "state": stat["state"],
        "uid": status.get("Uid"),
        "rss_bytes": status.get("VmRSS", 0),
        "swap_bytes": status.get("VmSwap", 0),
        "oom_score_adj": read_oom_score_adj(pid, proc),
        "oom_score": read_int(os.path.join(base, "oom_score")),
        "cgroup": cgroup_path,
        "unit": unit_from_cgroup_path(cgroup_path),
        "kernel_thread": stat["ppid"] == 2 or stat["pid"] == 2,
    }
    if with_cmdline:
        raw = read_text(os.path.join(base, "cmdline"), "") or ""
        info["cmdline"] = raw.replace("\0", " ").strip()
        if not info["cmdline"]:
            info["kernel_thread"] = info["kernel_thread"] or info["rss_bytes"] == 0
    return info


def scan_processes(proc="/proc", with_cmdline=False):
    """read_process for every pid; vanished processes are skipped."""
    result = []
    for pid in list_pids(proc):
        info = read_process(pid, proc, with_cmdline=with_cmdline)
        if info is not None:
            result.append(info)
    return result


def scan_oom_scores(proc="/proc"):
    """Fast scan for the audit: (pid, ppid, comm, oom_score_adj, rss_pages) per process.

    Reads two small files per process (stat and oom_score_adj), fewer than ps does.
    """
    result = []
    join = os.path.join
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        try:
            with open(join(proc, name, "stat")) as handle:
                stat_text = handle.read()
            with open(join(proc, name, "oom_score_adj")) as handle:
                adj = int(handle.read())
        except (IOError, OSError, ValueError):
            continue
        close_paren = stat_text.rindex(")")
        fields = stat_text[close_paren + 2:].split(None, 23)
        result.append((int(name), int(fields[1]), stat_text[stat_text.index("(") + 1:close_paren], adj, int(fields[21])))
    return result


def children_of(processes, pid):
    """Pids whose parent is pid, from a scan_processes/scan_oom_scores list of dicts."""
    return [p["pid"] for p in processes if p["ppid"] == pid]


def read_pidfile(path):
    """The pid named in a pid file, or None when missing or malformed."""
    text = read_text(path)
    if text is None:
        return None
    text = text.strip().split()[0] if text.strip() else ""
    return int(text) if text.isdigit() else None


def pids_by_name(name, proc="/proc"):
    """Processes whose comm (or argv[0] basename, for names over 15 chars) equals name."""
    found = []
    for pid in list_pids(proc):
        base = os.path.join(proc, str(pid))
        comm = read_text(os.path.join(base, "comm"))
        if comm is None:
            continue
        comm = comm.strip()
        if comm == name:
            found.append(pid)
            continue
        if len(name) > 15 and name.startswith(comm):
            argv = (read_text(os.path.join(base, "cmdline"), "") or "").split("\0")
            if argv and os.path.basename(argv[0]) == name:
                found.append(pid)
    return found


# CAP_SYS_RESOURCE (linux/capability.h): needed to LOWER oom_score_adj below the
# process's oom_score_adj_min (see proc(5) and fs/proc/base.c __set_oom_adj).
CAP_SYS_RESOURCE = 24


def parse_stat_ids(text):
    """(ppid, pgrp, session) from /proc/<pid>/stat text (fields 4, 5 and 6 of proc(5))."""
    fields = text[text.rindex(")") + 2:].split(None, 4)
    return int(fields[1]), int(fields[2]), int(fields[3])


def read_stat_ids(pid, proc="/proc"):
    """{'pid', 'ppid', 'pgrp', 'session', 'comm'} of a process, or None when it is gone."""
    text = read_text(os.path.join(proc, str(pid), "stat"))
    if text is None:
        return None
    try:
        ppid, pgrp, session = parse_stat_ids(text)
        comm = text[text.index("(") + 1:text.rindex(")")]
    except (ValueError, IndexError):
        return None
    return {"pid": int(pid), "ppid": ppid, "pgrp": pgrp, "session": session, "comm": comm}


def parse_capabilities(status_text, field="CapEff"):
    """The capability mask (int) of a /proc/<pid>/status field, or None when absent."""
    for line in (status_text or "").splitlines():
        key, _, value = line.partition(":")
        if key == field:
            try:
                return int(value.strip(), 16)
            except ValueError:
                return None
    return None


def has_capability(cap, pid="self", proc="/proc"):
    """True when the process's effective set holds capability number cap."""
    mask = parse_capabilities(read_text(os.path.join(proc, str(pid), "status"), "") or "")
    return bool(mask is not None and mask & (1 << cap))


def descendants_of(processes, roots):
    """Pids of every descendant of the pids in roots (not the roots), from dicts with pid/ppid."""
    children = {}
    for info in processes:
        children.setdefault(info["ppid"], []).append(info["pid"])
    found = set()
    stack = list(roots)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return sorted(found - set(roots))


# Markers container engines leave (systemd-detect-virt --container looks at the same).
CONTAINER_MARKERS = (("/run/.containerenv", "podman"), ("/.dockerenv", "docker"))


def container_marker(root="/", proc="/proc"):
    """Name of the container engine this host runs in ('podman', 'docker', 'lxc', ...) or None.

    Reads /run/systemd/container (written by systemd in a container), the engines' marker
    files, then PID 1's `container=` environment variable (readable by root only).
    """
    text = read_text(os.path.join(root, "run/systemd/container"))
    if text and text.strip():
        return text.strip()
    for path, name in CONTAINER_MARKERS:
        if os.path.exists(os.path.join(root, path.lstrip("/"))):
            return name
    try:
        environ = read_text(os.path.join(proc, "1", "environ")) or ""
    except ValueError:  # undecodable bytes in someone's environment
        environ = ""
    for item in environ.split("\0"):
        if item.startswith("container=") and item[len("container="):]:
            return item[len("container="):]
    return None


def pid_namespace(pid="self", proc="/proc"):
    """The pid namespace of a process ('pid:[4026531836]'), or None when unreadable."""
    try:
        return os.readlink(os.path.join(proc, str(pid), "ns", "pid"))
    except OSError:
        return None
