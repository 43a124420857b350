# -*- coding: utf-8 -*-
# Copyright: oomguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one reader of host-wide memory state: /proc/meminfo, /proc/vmstat, PSI, sysctls.

Standard library only. All sizes are returned in bytes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

try:
    from ansible.module_utils.oomguard_files import read_text
except ImportError:  # installed beside an agent, outside Ansible
    from oomguard_files import read_text

VMSTAT_KEYS = ("oom_kill", "pswpin", "pswpout", "pgmajfault")
OOM_SYSCTLS = ("panic_on_oom", "oom_kill_allocating_task", "overcommit_memory", "overcommit_ratio")

# Memory-pressure levels: the one table of the numbers the audit (oomguard_findings),
# the alert agent (oomguard_alerting) and the service watchdog (oomguard_watchdog) act
# on. They differ on purpose, because each answers another question:
#   audit     one reading, taken whenever someone runs the audit: it warns early.
#   alert     a level held for `hold` seconds, with hysteresis, that pages someone: a
#             brief stall during a deploy must not, so it starts above the audit's warn.
#   watchdog  whether the host is too starved for a slow probe to prove a service dead:
#             only a host already in trouble (between the alert's warning and critical)
#             defers a restart, and never longer than the watchdog's PRESSURE_PATIENCE.
PSI_SOME_AVG10 = {"audit_warn": 10.0, "alert_warning": 20.0, "alert_critical": 50.0, "watchdog_defer": 30.0}
PSI_FULL_AVG10 = {"audit_warn": 5.0, "audit_fail": 20.0, "alert_warning": 10.0, "alert_critical": 30.0,
                  "watchdog_defer": 10.0}
# Swap and available memory mean the same to all of them: warn (alert warning) and fail
# (alert critical); the watchdog defers below the fail level of available memory.
SWAP_USED_PERCENT = {"warn": 50.0, "fail": 80.0}
MEM_AVAILABLE_PERCENT = {"warn": 10.0, "fail": 5.0}


def parse_meminfo(text):
    """/proc/meminfo as {key: bytes} (HugePages_* counts stay counts)."""
    result = {}
    for line in (text or "").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if not parts:
            continue
        try:
            value = int(parts[0])
        except ValueError:
            continue
        if len(parts) > 1 and parts[1] == "kB":
            value *= 1024
        result[key.strip()] = value
    return result


def memory_summary(meminfo):
    """The derived figures alerts and audits use, from parse_meminfo output."""
    total = meminfo.get("MemTotal", 0)
    available = meminfo.get("MemAvailable")
    if available is None:  # kernels before 3.14
        available = meminfo.get("MemFree", 0) + meminfo.get("Cached", 0) + meminfo.get("Buffers", 0)
    swap_total = meminfo.get("SwapTotal", 0)
    swap_free = meminfo.get("SwapFree", 0)
    swap_used = max(swap_total - swap_free, 0)
    return {
        "mem_total_bytes": total,
        "mem_available_bytes": available,
        "mem_available_percent": round(100.0 * available / total, 2) if total else None,
        "swap_total_bytes": swap_total,
        "swap_used_bytes": swap_used,
        "swap_used_percent": round(100.0 * swap_used / swap_total, 2) if swap_total else 0.0,
    }


def parse_vmstat(text, keys=VMSTAT_KEYS):
    result = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and (keys is None or parts[0] in keys):
            try:
                result[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return result


def parse_psi(text):
    """/proc/pressure/memory as {'some': {'avg10': .., 'avg60': .., 'avg300': .., 'total': ..}, 'full': {...}}."""
    result = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if not parts or parts[0] not in ("some", "full"):
            continue
        values = {}
        for item in parts[1:]:
            key, _, value = item.partition("=")
            try:
                values[key] = int(value) if key == "total" else float(value)
            except ValueError:
                continue
        result[parts[0]] = values
    return result


def read_meminfo(proc="/proc"):
    return parse_meminfo(read_text(os.path.join(proc, "meminfo"), ""))


def read_vmstat(proc="/proc", keys=VMSTAT_KEYS):
    return parse_vmstat(read_text(os.path.join(proc, "vmstat"), ""), keys)


def read_psi(proc="/proc", resource="memory"):
    """PSI figures, or None when the kernel has PSI disabled (no file, or EOPNOTSUPP)."""
    try:
        text = read_text(os.path.join(proc, "pressure", resource))
    except (IOError, OSError):
        return None
    if text is None:
        return None
    return parse_psi(text) or None


def read_oom_sysctls(proc="/proc"):
    """vm.panic_on_oom, vm.oom_kill_allocating_task, vm.overcommit_* as ints (None when absent)."""
    result = {}
    for name in OOM_SYSCTLS:
        text = read_text(os.path.join(proc, "sys", "vm", name))
        try:
            result[name] = int(text.strip()) if text is not None else None
        except ValueError:
            result[name] = None
    return result
