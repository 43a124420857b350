#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: oomguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: oomguard_check
short_description: Read-only audit of a host's protection against memory exhaustion
description:
  - Reads, never writes, what protects the host from the OOM killer and what happened. One
    finding for each fact, each with an id, a severity (C(ok), C(info), C(warn), C(fail)), a
    one-line message and the evidence.
  - "Critical services (sshd, cron by default): the live C(oom_score_adj) of their main process
    (the sshd listener, the cron daemon) against the policy; C(enforced: false) with the likely
    reason when the kernel refused it (no C(CAP_SYS_RESOURCE), for example in a container)."
  - Inherited protection (sessions and jobs that carry a negative value), expendable services,
    memory limits of units with an oomguard drop-in (configured against the cgroup v1 or v2 files),
    swap, available memory, PSI, OOM kills since boot with the last victims from the kernel log and
    the latest oomguard snapshot, the oomguard watchdog timer and its last result, the cron heartbeat,
    the hardware watchdog, the oomguard units, Xen dom0 pinning and the kernel settings that defeat
    protection (C(vm.panic_on_oom), C(vm.oom_kill_allocating_task), overcommit).
  - "Early relief: which early killer is active (C(systemd-oomd.service), C(earlyoom.service)), whether
    its settings match the early_relief role's status (C(/var/lib/oomguard/early_relief.json): the
    drop-ins' content for systemd-oomd, the running earlyoom's command line for earlyoom), a warning
    when swap is on and nothing acts early, and the early kills since boot with their victims
    (earlyoom's hook file C(/run/oomguard/early-kills.jsonl), this boot's systemd-oomd journal lines)."
  - Fast on a fleet - one C(systemctl show) call for all units, one pass over C(/proc) reading two
    files per process, and one C(journalctl --boot) call only where systemd-oomd is installed. Works without systemd as PID 1 (services are then found
    by process name), without root (the kernel log is then reported unreadable) and without PSI.
  - Needs nothing but the Python 3 standard library on the target.
version_added: "0.1.0"
author: oomguard contributors
options:
  checks:
    description:
      - Which groups of checks to run.
    type: list
    elements: str
    default: [all]
    choices: [all, critical_services, inherited_protection, expendable_services, memory_limits, memory,
              oom_kills, early_relief, watchdog, oomguard_units, xen, kernel_settings]
  critical_services:
    description:
      - Services whose main process must carry a negative C(oom_score_adj). Defaults to sshd
        (units C(ssh.service), C(sshd.service); the listener) and cron (C(cron.service),
        C(crond.service); the daemon), both at -1000.
      - Without systemd the main process is the one named in I(processes) whose parent has
        another name (the sshd listener, not its per-connection children).
    type: list
    elements: dict
    suboptions:
      name:
        description: Name used in the finding id (C(<name>.oom_score_adj)).
        type: str
        required: true
      units:
        description: Candidate unit names, the first one loaded is used.
        type: list
        elements: str
        default: []
      processes:
        description: Process names (comm) of the main process.
        type: list
        elements: str
        default: []
      oom_score_adj:
        description: The policy, -1000..1000.
        type: int
        default: -1000
      role:
        description: How the main process is called in messages (listener, daemon).
        type: str
        default: main process
  expendable_services:
    description:
      - Services whose every process must carry at least a positive C(oom_score_adj), so the OOM
        killer chooses them first.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Name used in the finding id (C(<name>.expendable)).
        type: str
        required: true
      units:
        description: Candidate unit names; all processes of the unit's cgroup are checked.
        type: list
        elements: str
        default: []
      processes:
        description: Process names, used when no unit is loaded.
        type: list
        elements: str
        default: []
      oom_score_adj:
        description: The lowest acceptable value, 1..1000.
        type: int
        required: true
  helper_processes:
    description:
      - Process names allowed to carry a negative value without being counted as inherited
        protection (systemd itself, journald, udevd). Kernel threads are always allowed.
    type: list
    elements: str
    default: [systemd, init, systemd-journal, systemd-udevd, udevd, systemd-oomd]
  thresholds:
    description:
      - Overrides of the default thresholds. Keys C(swap_used_percent_warn) (50),
        C(swap_used_percent_fail) (80), C(mem_available_percent_warn) (10),
        C(mem_available_percent_fail) (5), C(psi_some_avg10_warn) (10), C(psi_full_avg10_warn) (5),
        C(psi_full_avg10_fail) (20), C(watchdog_state_max_age) (300 s), C(heartbeat_max_age) (180 s).
    type: dict
    default: {}
  fail_on:
    description:
      - Fail the task when a finding reaches this severity (the findings are still returned).
        C(never) only reports.
    type: str
    default: never
    choices: [warn, fail, never]
  max_examples:
    description: How many example processes and OOM victims to return.
    type: int
    default: 5
attributes:
  check_mode:
    support: full
    description: The module never changes anything; it runs the same in check mode.
  diff_mode:
    support: full
    description: Nothing changes, so the diff is always empty.
notes:
  - Run it as root; without root the kernel log and other processes' capabilities are unreadable
    and the findings say so.
seealso:
  - name: proc(5) oom_score_adj
    description: The kernel's OOM score adjustment.
    link: https://man7.org/linux/man-pages/man5/proc.5.html
"""

EXAMPLES = r"""
- name: Audit one host and show the readable report
  oomguard_check:
  register: audit

- name: Fleet gate - fail every host with a failing finding
  oomguard_check:
    fail_on: fail

- name: Only the OOM protection checks, with a custom critical service
  oomguard_check:
    checks: [critical_services, inherited_protection]
    critical_services:
      - name: sshd
        units: [ssh.service, sshd.service]
        processes: [sshd]
        oom_score_adj: -1000
        role: listener
      - name: postgres
        units: [postgresql@15-main.service]
        processes: [postgres]
        oom_score_adj: -900

# Ad hoc, across a fleet:
#   ansible all -m oomguard_check -a fail_on=fail
"""

RETURN = r"""
summary:
  description: Score 0-100 (ok counts 1, warn 0.5, fail 0; info does not count), counts per severity, worst.
  returned: always
  type: dict
  sample: {"score": 71, "counts": {"ok": 9, "info": 4, "warn": 2, "fail": 1}, "worst": "fail", "total": 16}
findings:
  description: Every finding, worst first.
  returned: always
  type: list
  elements: dict
  sample:
    - id: sshd.oom_score_adj
      severity: fail
      message: "sshd listener (pid 412) at 0, policy -1000: the kernel refuses: lowering oom_score_adj below a
        process's oom_score_adj_min needs CAP_SYS_RESOURCE"
      evidence: {"unit": "ssh.service", "policy": -1000, "live": 0, "enforced": false}
report:
  description: One readable line per finding, worst first.
  returned: always
  type: list
  elements: str
  sample: ["FAIL sshd.oom_score_adj: sshd listener (pid 412) at 0, policy -1000: ...", "OK memory.swap: ..."]
host:
  description: What the host is (systemd as PID 1, cgroup layout, container, processes scanned).
  returned: always
  type: dict
  sample: {"systemd": true, "cgroup": "unified", "memory_cgroup": "v2", "container": null, "processes": 212}
"""

import glob
import json
import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.oomguard_cgroup import (
    MEMORY_PROPERTIES, MEMORY_PROPERTY_ALIASES, MEMORY_SETTINGS, cgroup_pids, compare_targets, unit_memory_dir,
    memory_targets, read_hierarchy, read_memory_files, v1_swap_accounting)
from ansible.module_utils.oomguard_earlykills import (
    EARLYOOM_UNIT, HOOK_PATH, OOMD_UNIT, STATUS_PATH, compare_files, journal_argv, parse_journal_text,
    planned_from_status, read_hook_file)
from ansible.module_utils.oomguard_files import read_text
from ansible.module_utils.oomguard_findings import (
    FAIL_ON_CHOICES, available_memory_finding, critical_service_finding, cron_heartbeat_finding,
    early_engine_finding, early_kills_finding, early_settings_finding, expendable_finding, hardware_watchdog_finding,
    inherited_protection_finding, kernel_log_finding,
    memory_limit_finding, merge_thresholds, offending, oom_kill_allocating_task_finding, oom_kills_finding,
    oomguard_unit_finding, overcommit_finding, panic_on_oom_finding, psi_finding, report_lines, sort_findings,
    summarize, swap_finding, watchdog_timer_finding, xen_dom0_finding)
from ansible.module_utils.oomguard_memplan import DROPIN_NAME as MEMORY_DROPIN
from ansible.module_utils.oomguard_memstat import (
    memory_summary, read_meminfo, read_oom_sysctls, read_psi, read_vmstat)
from ansible.module_utils.oomguard_oomlog import parse_oom_events, read_kmsg
from ansible.module_utils.oomguard_oomscore import DEFAULT_DROPIN as OOM_DROPIN, status_problems, status_services
from ansible.module_utils.oomguard_procfs import (
    CAP_SYS_RESOURCE, container_marker, parse_capabilities, pid_namespace, read_process, scan_oom_scores)
from ansible.module_utils.oomguard_sizes import SizeError, parse_size
from ansible.module_utils.oomguard_xen import (
    AUTOBALLOON_OFF_VALUES, XenError, cmdline_dom0_mem, grub_xen_dom0_mem, is_dom0_capabilities, xl_autoballoon)
from ansible.module_utils.oomguard_systemd import (
    UnitNameError, dropin_value, normalize_unit_name, parse_show, read_dropin, systemd_booted)
from ansible.module_utils.oomguard_watchdog import (
    DEFAULT_STATE, HEARTBEAT_FILE, read_hardware_watchdog as read_watchdog_sysfs, read_heartbeat, read_state)

try:
    from ansible.module_utils.oomguard_snapshot import read_latest_snapshot
except ImportError:  # the alerting agent's reader is optional
    read_latest_snapshot = None

CHECKS = ("critical_services", "inherited_protection", "expendable_services", "memory_limits", "memory",
          "oom_kills", "early_relief", "watchdog", "oomguard_units", "xen", "kernel_settings")

DEFAULT_CRITICAL_SERVICES = [
    {"name": "sshd", "units": ["ssh.service", "sshd.service"], "processes": ["sshd"], "oom_score_adj": -1000,
     "role": "listener"},
    {"name": "cron", "units": ["cron.service", "crond.service"], "processes": ["cron", "crond"],
     "oom_score_adj": -1000, "role": "daemon"},
]
DEFAULT_HELPERS = ["systemd", "init", "systemd-journal", "systemd-udevd", "udevd", "systemd-oomd"]
OOMGUARD_UNITS = ("oomguard-alertd.service", "oomguard-watchdog.timer")
WATCHDOG_SERVICE = "oomguard-watchdog.service"
SHOW_PROPERTIES = ("Id", "LoadState", "ActiveState", "SubState", "Result", "MainPID", "ControlGroup",
                   "OOMScoreAdjust", "Environment")
# systemd's Memory*= settings as the memory modules name them, aliases first so that
# MemoryMax= wins over MemoryLimit= in the same drop-in.
DROPIN_MEMORY_KEYS = tuple(sorted(MEMORY_PROPERTY_ALIASES.items())) + tuple(
    (MEMORY_PROPERTIES[name], name) for name in MEMORY_SETTINGS)

ROOTS = {
    "proc": "/proc",
    "sys": "/sys",
    "dev": "/dev",
    "etc": "/etc",
    "root": "/",
    "systemd_runtime": "/run/systemd/system",
    "state": "/var/lib/oomguard",
    "snapshots": "/var/log/oomguard/snapshots.jsonl",
    "kmsg": "/dev/kmsg",
}
EARLY_UNITS = (OOMD_UNIT, EARLYOOM_UNIT)


def argument_spec():
    service = dict(
        name=dict(type="str", required=True),
        units=dict(type="list", elements="str", default=[]),
        processes=dict(type="list", elements="str", default=[]),
        oom_score_adj=dict(type="int", default=-1000),
        role=dict(type="str", default="main process"),
    )
    expendable = dict(
        name=dict(type="str", required=True),
        units=dict(type="list", elements="str", default=[]),
        processes=dict(type="list", elements="str", default=[]),
        oom_score_adj=dict(type="int", required=True),
    )
    return dict(
        checks=dict(type="list", elements="str", default=["all"], choices=["all"] + list(CHECKS)),
        critical_services=dict(type="list", elements="dict", options=service),
        expendable_services=dict(type="list", elements="dict", default=[], options=expendable),
        helper_processes=dict(type="list", elements="str", default=list(DEFAULT_HELPERS)),
        thresholds=dict(type="dict", default={}),
        fail_on=dict(type="str", default="never", choices=list(FAIL_ON_CHOICES)),
        max_examples=dict(type="int", default=5),
    )


# --- configuration ----------------------------------------------------------------

def _services(items, argument, low, high):
    result = []
    names = set()
    for index, item in enumerate(items):
        where = "%s[%d]" % (argument, index)
        name = item.get("name")
        if not name or not isinstance(name, str) or any(c.isspace() for c in name):
            raise ValueError("%s.name: %r must be a non-empty word" % (where, name))
        if name in names:
            raise ValueError("%s.name: %r appears twice in %s" % (where, name, argument))
        names.add(name)
        units = [normalize_unit_name(u, argument="%s.units" % where) for u in item.get("units") or []]
        processes = list(item.get("processes") or [])
        if not units and not processes:
            raise ValueError("%s: give units or processes (or both) to find %s" % (where, name))
        adj = item.get("oom_score_adj")
        if isinstance(adj, bool) or not isinstance(adj, int) or not low <= adj <= high:
            raise ValueError("%s.oom_score_adj: %r out of range; allowed: %d..%d" % (where, adj, low, high))
        entry = dict(item, name=name, units=units, processes=processes, oom_score_adj=adj)
        entry.setdefault("role", "main process")
        result.append(entry)
    return result


def build_config(params):
    """Validate the module's parameters; raises ValueError naming the argument."""
    checks = params.get("checks") or ["all"]
    unknown = [c for c in checks if c != "all" and c not in CHECKS]
    if unknown:
        raise ValueError("checks: %s unknown; allowed: all, %s" % (", ".join(unknown), ", ".join(CHECKS)))
    critical = params.get("critical_services")
    explicit = critical is not None
    if critical is None:
        critical = DEFAULT_CRITICAL_SERVICES
    max_examples = params.get("max_examples", 5)
    if max_examples is None or max_examples < 0:
        raise ValueError("max_examples: %r; allowed: an integer >= 0" % max_examples)
    fail_on = params.get("fail_on") or "never"
    if fail_on not in FAIL_ON_CHOICES:
        raise ValueError("fail_on: %r; allowed: %s" % (fail_on, ", ".join(FAIL_ON_CHOICES)))
    try:
        return {
            "checks": set(CHECKS) if "all" in checks else set(checks),
            "critical": _services(critical, "critical_services", -1000, 1000),
            "critical_explicit": explicit,
            "expendable": _services(params.get("expendable_services") or [], "expendable_services", 1, 1000),
            "helpers": list(params.get("helper_processes") or []),
            "thresholds": merge_thresholds(params.get("thresholds")),
            "fail_on": fail_on,
            "max_examples": max_examples,
        }
    except UnitNameError as exc:
        raise ValueError(str(exc))


# --- reading facts ----------------------------------------------------------------

def parse_show_blocks(text, units):
    """`systemctl show unit1 unit2 ...` output: one block per unit, in argument order."""
    blocks = [parse_show(block) for block in (text or "").strip("\n").split("\n\n") if block.strip()]
    if len(blocks) == len(units):
        return dict(zip(units, blocks))
    by_id = dict((b.get("Id"), b) for b in blocks)
    return dict((u, by_id[u]) for u in units if u in by_id)


def memory_dropin_units(etc):
    pattern = os.path.join(etc, "systemd", "system", "*.d", MEMORY_DROPIN)
    return sorted(os.path.basename(os.path.dirname(path))[:-2] for path in glob.glob(pattern))


def _valid_unit(name):
    try:
        return bool(name) and normalize_unit_name(name) == name
    except UnitNameError:
        return False


def with_protect_status(config, state):
    """The config completed from oom_protect's status: its expendable services when none were
    given, and the units it protects on purpose (their main processes are not leaks)."""
    critical, expendable = status_services(state)
    config = dict(config)
    config["status_problems"] = ["oom_protect.json: %s" % p for p in status_problems(state)]
    config["protected_units"] = sorted(set(e["unit"] for e in critical if _valid_unit(e.get("unit"))))
    # Status files written before the pid-free format also name the protected pids.
    config["protected_pids"] = sorted(set(p["pid"] for e in critical for p in (e.get("live") or [])
                                          if isinstance(p, dict) and isinstance(p.get("pid"), int)))
    config["status_scores"] = dict((e["unit"], e["score"]) for e in critical if e.get("unit"))
    if not config["expendable"] and expendable:
        derived = []
        for index, entry in enumerate(expendable):
            unit = entry.get("unit") if _valid_unit(entry.get("unit")) else None
            target = entry.get("target") or unit
            if not target or entry["score"] < 1:
                continue
            derived.append({"name": "%s" % (unit or target).rsplit(".service", 1)[0].replace("/", "_"),
                            "units": [unit] if unit else [], "processes": [] if unit else [target],
                            "oom_score_adj": entry["score"], "role": "main process"})
        config["expendable"] = derived
    return config


def units_to_query(config, memory_units):
    units = []
    for service in config["critical"] + config["expendable"]:
        units.extend(service["units"])
    units.extend(memory_units)
    units.extend(config.get("protected_units", []))
    units.extend(OOMGUARD_UNITS)
    units.append(WATCHDOG_SERVICE)
    if "early_relief" in config["checks"]:
        units.extend(EARLY_UNITS)
    seen = set()
    return [u for u in units if not (u in seen or seen.add(u))]


def systemctl_show(module, units):
    """One `systemctl show` for every unit of interest: (text, error)."""
    systemctl = module.get_bin_path("systemctl")
    if not systemctl:
        return "", "systemctl not found"
    argv = [systemctl, "show", "--no-pager"]
    for prop in SHOW_PROPERTIES:
        argv.extend(["-p", prop])
    rc, out, err = module.run_command(argv + list(units), environ_update={"LANG": "C", "LC_ALL": "C"})
    if rc != 0:
        return out, "systemctl show failed (rc %d): %s" % (rc, err.strip())
    return out, None


def journal_oomd(module):
    """This boot's systemd-oomd lines (one journalctl call): (text, error)."""
    journalctl = module.get_bin_path("journalctl")
    if not journalctl:
        return "", "journalctl not found"
    rc, out, err = module.run_command(journal_argv(journalctl, follow=False, boot=True, pid1=False),
                                      environ_update={"LANG": "C", "LC_ALL": "C"})
    if rc != 0:
        return out, "journalctl failed (rc %d): %s" % (rc, err.strip())
    return out, None


def _read_json(path):
    text = read_text(path)
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return {"error": "%s is not valid JSON" % path}
    return data if isinstance(data, dict) else {"value": data}


def configured_oom_score_adj(unit, unit_state, etc):
    """What systemd was asked for: OOMScoreAdjust=, SSHD_OOM_ADJUST= (show, else our drop-in)."""
    values = []
    if unit_state and unit_state.get("LoadState") == "loaded":
        adj = unit_state.get("OOMScoreAdjust")
        if adj and adj.lstrip("-").isdigit() and int(adj) != 0:
            values.append(int(adj))
        for item in (unit_state.get("Environment") or "").split():
            key, _, value = item.partition("=")
            if key == "SSHD_OOM_ADJUST" and value.lstrip("-").isdigit():
                values.append(int(value))
    if not values and unit:
        text = read_dropin(unit, OOM_DROPIN, os.path.join(etc, "systemd", "system"))
        if text:
            adj = dropin_value(text, "Service", "OOMScoreAdjust")
            if adj and adj.lstrip("-").isdigit():
                values.append(int(adj))
            for item in (dropin_value(text, "Service", "Environment") or "").split():
                key, _, value = item.partition("=")
                if key == "SSHD_OOM_ADJUST" and value.lstrip("-").isdigit():
                    values.append(int(value))
    return min(values) if values else None


def _pick_unit(service, show):
    for unit in service["units"]:
        state = show.get(unit)
        if state and state.get("LoadState") == "loaded":
            return unit, state
    return (service["units"][0] if service["units"] else None), None


def _by_name(names, processes, proc="/proc"):
    """Processes named in names whose parent has another name (the listener, not its children).

    Only processes of our own pid namespace: a container's sshd seen from the host is not
    the host's sshd (its ns link is unreadable without root: then it is kept).
    """
    wanted = set(names)
    found = [p for p in processes.values()
             if p["comm"] in wanted and processes.get(p["ppid"], {}).get("comm") not in wanted]
    ours = pid_namespace("self", proc)
    if ours is None:
        return found
    return [p for p in found if pid_namespace(p["pid"], proc) in (ours, None)]


def _proc_view(info):
    return {"pid": info["pid"], "ppid": info["ppid"], "comm": info["comm"], "oom_score_adj": info["oom_score_adj"]}


def _cap_sys_resource(pid, proc):
    mask = parse_capabilities(read_text(os.path.join(proc, str(pid), "status"), "") or "")
    return None if mask is None else bool(mask & (1 << CAP_SYS_RESOURCE))


def main_processes(service, show, processes, proc):
    """(unit, unit_state, [main process], found_by) of a critical or expendable service."""
    unit, state = _pick_unit(service, show)
    if state is not None:
        main_pid = int(state.get("MainPID") or 0)
        if main_pid and main_pid in processes:
            return unit, state, [processes[main_pid]], "systemd MainPID"
    found = _by_name(service["processes"], processes, proc)
    return unit, state, sorted(found, key=lambda p: p["pid"]), "process name"


def oom_lines(text):
    """Only the kernel-log lines an OOM kill writes (a cheap substring test before the regexes)."""
    return "\n".join(line for line in text.splitlines() if "oom" in line or "of memory" in line)


def read_dom0_mem(etc):
    """{'size', 'max', 'raw'} (bytes) pinned by GRUB_CMDLINE_XEN_DEFAULT's dom0_mem=, or None."""
    try:
        tokens = grub_xen_dom0_mem(read_text(os.path.join(etc, "default", "grub")) or "")
    except XenError as exc:
        return {"size": None, "max": None, "raw": None, "error": str(exc)}
    parsed = cmdline_dom0_mem(" ".join(tokens))
    if parsed is None:
        return None
    return {"size": parsed["initial"] or parsed["max"], "max": parsed["max"], "raw": parsed["raw"]}


def read_xl_autoballoon(etc):
    """xl.conf's autoballoon ('off' when the value means off, else as written; 'auto' unset)."""
    value = xl_autoballoon(read_text(os.path.join(etc, "xen", "xl.conf")) or "")
    return "off" if value in AUTOBALLOON_OFF_VALUES else value


def read_hardware_watchdog(roots):
    """(devices, sysfs, RuntimeWatchdogSec): the checker's sysfs reader, plus systemd's setting."""
    devices, sysfs = read_watchdog_sysfs(os.path.join(roots["sys"], "class", "watchdog"), roots["dev"])
    runtime = None
    conf_dir = os.path.join(roots["etc"], "systemd")
    for path in [os.path.join(conf_dir, "system.conf")] + sorted(glob.glob(os.path.join(conf_dir, "system.conf.d",
                                                                                      "*.conf"))):
        value = dropin_value(read_text(path) or "", "Manager", "RuntimeWatchdogSec")
        if value is not None:
            runtime = value
    return devices, sysfs, runtime


def collect(config, roots, show_runner, journal_runner=None):
    """Every fact the findings need, read once. show_runner(units) -> (text, error);
    journal_runner() -> (this boot's systemd-oomd journal as JSON lines, error)."""
    proc = roots["proc"]
    checks = config["checks"]
    facts = {"now": time.time()}
    facts["protect_state"] = _read_json(os.path.join(roots["state"], "oom_protect.json"))
    processes = {}
    for pid, ppid, comm, adj, rss_pages in scan_oom_scores(proc):
        processes[pid] = {"pid": pid, "ppid": ppid, "comm": comm, "oom_score_adj": adj, "rss_pages": rss_pages}
    facts["processes"] = processes
    facts["systemd"] = systemd_booted(roots["systemd_runtime"])
    facts["hierarchy"] = read_hierarchy(proc)
    facts["container"] = container_marker(roots["root"], proc)
    memory_units = memory_dropin_units(roots["etc"]) if "memory_limits" in checks else []
    facts["memory_units"] = memory_units
    facts["show"], facts["show_error"] = {}, None
    if facts["systemd"]:
        units = units_to_query(config, memory_units)
        text, error = show_runner(units)
        facts["show"] = parse_show_blocks(text, units)
        facts["show_error"] = error
    meminfo = read_meminfo(proc)
    facts["memory"] = memory_summary(meminfo)
    if "oom_kills" in checks:
        facts["vmstat"] = read_vmstat(proc)
        kmsg = read_kmsg(roots["kmsg"])
        facts["kernel_log_readable"] = kmsg is not None
        facts["oom_events"] = parse_oom_events(oom_lines(kmsg)) if kmsg else []
        facts["snapshot"] = None
        if read_latest_snapshot is not None:
            try:
                facts["snapshot"] = read_latest_snapshot(roots["snapshots"])
            except (IOError, OSError, ValueError):
                facts["snapshot"] = None
    if "memory" in checks:
        facts["psi"] = read_psi(proc)
    if "early_relief" in checks:
        facts["early_relief"] = _collect_early_relief(facts, roots, journal_runner)
    if "kernel_settings" in checks:
        facts["sysctls"] = read_oom_sysctls(proc)
    if "watchdog" in checks:
        facts["watchdog_state"] = read_state(os.path.join(roots["state"], os.path.basename(DEFAULT_STATE)))
        facts["heartbeat"] = read_heartbeat(os.path.join(roots["state"], os.path.basename(HEARTBEAT_FILE)))
        facts["hardware_watchdog"] = read_hardware_watchdog(roots)
    if "xen" in checks:
        facts["xen_dom0"] = is_dom0_capabilities(read_text(os.path.join(proc, "xen", "capabilities")))
        if facts["xen_dom0"]:
            facts["dom0_mem"] = read_dom0_mem(roots["etc"])
            facts["autoballoon"] = read_xl_autoballoon(roots["etc"])
    if "memory_limits" in checks:
        facts["memory_limits"] = _collect_memory_limits(memory_units, facts, roots, meminfo.get("MemTotal"))
    return facts


def earlyoom_args(pid, proc):
    """earlyoom's arguments (without the program) from /proc/<pid>/cmdline, or None."""
    try:
        with open(os.path.join(proc, str(pid), "cmdline"), "rb") as handle:
            raw = handle.read()
    except (IOError, OSError):
        return None
    words = [w.decode("utf-8", "replace") for w in raw.split(b"\0")]
    if words and words[-1] == "":
        words.pop()
    return words[1:] if words else None


def _collect_early_relief(facts, roots, journal_runner):
    show = facts["show"]
    status = _read_json(os.path.join(roots["state"], os.path.basename(STATUS_PATH)))
    planned = planned_from_status(status)
    states = dict((unit, show.get(unit)) for unit in EARLY_UNITS)
    active = [unit for unit in EARLY_UNITS if (states[unit] or {}).get("ActiveState") == "active"]
    running_args = None
    if EARLYOOM_UNIT in active:
        pid = int(states[EARLYOOM_UNIT].get("MainPID") or 0)
        if not pid:
            pid = min([p["pid"] for p in facts["processes"].values() if p["comm"] == "earlyoom"] or [0])
        running_args = earlyoom_args(pid, roots["proc"]) if pid else None

    def read_planned(path):
        return read_text(os.path.join(roots["root"], path.lstrip("/")))

    missing, differing = compare_files(planned["files"], read_planned)
    # The hook file is under /run: this boot's kills only. Owned by root (tests: the runner).
    kills, hook_error = read_hook_file(os.path.join(roots["root"], HOOK_PATH.lstrip("/")),
                                       owner_uid=roots.get("early_kills_uid", 0))
    journal_error = None
    if journal_runner is not None and (states[OOMD_UNIT] or {}).get("LoadState") == "loaded":
        text, journal_error = journal_runner()
        kills = kills + parse_journal_text(text)
    kills.sort(key=lambda r: r["time"] or 0)
    return {"status": status, "planned": planned, "states": states,
            "active": ("systemd-oomd" if OOMD_UNIT in active else "earlyoom") if len(active) == 1 else None,
            "running_args": running_args, "missing_files": missing, "differing_files": differing,
            "kills": kills, "hook_error": hook_error, "journal_error": journal_error}


def _collect_memory_limits(units, facts, roots, total):
    hierarchy = facts["hierarchy"]
    version = hierarchy.get("memory")
    root = hierarchy.get("memory_root")
    result = []
    for unit in units:
        text = read_dropin(unit, MEMORY_DROPIN, os.path.join(roots["etc"], "systemd", "system")) or ""
        configured = {}
        for key, setting in DROPIN_MEMORY_KEYS:
            value = dropin_value(text, "Service", key)
            if value is None:
                value = dropin_value(text, "Slice", key)
            if value is None or value == "":
                continue
            try:
                configured[setting] = parse_size(value, total_bytes=total)
            except SizeError:
                configured[setting] = value
        state = facts["show"].get(unit)
        control_group = (state or {}).get("ControlGroup") or None
        targets, unsupported = memory_targets(version, dict((k, v) for k, v in configured.items()
                                                            if not isinstance(v, str) or v == "infinity"),
                                              swap_accounting=v1_swap_accounting(root))
        # Inside a container systemd's ControlGroup includes the container's own
        # cgroup; unit_memory_dir maps it onto what the container has mounted.
        directory = unit_memory_dir(hierarchy, control_group)
        readback = read_memory_files(directory, [t["file"] for t in targets])
        applied, missing = compare_targets(targets, readback)
        result.append({"unit": unit, "configured": configured, "applied": applied, "missing": missing,
                       "unsupported": unsupported, "version": version, "state": state})
    return result


# --- judging ------------------------------------------------------------------------

def evaluate(config, facts, roots=None):
    """The findings, from facts read by collect() (roots: where /proc and /etc are)."""
    roots = roots or ROOTS
    proc = roots["proc"]
    checks = config["checks"]
    th = config["thresholds"]
    processes = facts["processes"]
    show = facts["show"]
    systemd = facts["systemd"]
    findings = []
    protected = set()
    critical_comms = set()
    running_comms = set()
    for service in config["critical"]:
        unit, state, mains, found_by = main_processes(service, show, processes, proc)
        protected.update(p["pid"] for p in mains)
        running_comms.update(p["comm"] for p in mains)
        critical_comms.update(service["processes"])
        if "critical_services" not in checks:
            continue
        configured = configured_oom_score_adj(unit, state, roots["etc"])
        if not config["critical_explicit"]:
            # The default policy yields to what oom_protect set (its status file, else the drop-in).
            policy = config.get("status_scores", {}).get(unit)
            if policy is None and configured is not None and configured < 0:
                policy = configured
            if policy is not None:
                service = dict(service, oom_score_adj=policy)
        caps = [_cap_sys_resource(p["pid"], proc) for p in mains]
        cap = None if not caps or None in caps else all(caps)
        findings.append(critical_service_finding(
            service, [_proc_view(p) for p in mains], unit=unit, unit_state=state if systemd else None,
            configured=configured, cap_sys_resource=cap, container=facts["container"], found_by=found_by))
    for unit in OOMGUARD_UNITS + (WATCHDOG_SERVICE,) + tuple(config.get("protected_units", [])):
        main_pid = int((show.get(unit) or {}).get("MainPID") or 0)
        if main_pid:
            protected.add(main_pid)
    protected.update(config.get("protected_pids", []))
    if "inherited_protection" in checks:
        negative = []
        for info in processes.values():
            if info["oom_score_adj"] >= 0:
                continue
            detail = read_process(info["pid"], proc, with_cmdline=False) or {}
            negative.append(dict(_proc_view(info), unit=detail.get("unit"),
                                 kernel_thread=detail.get("kernel_thread", False)))
        for unit in OOMGUARD_UNITS + (WATCHDOG_SERVICE,):
            protected.update(n["pid"] for n in negative if n["unit"] == unit)
        comm_of = dict((pid, info["comm"]) for pid, info in processes.items())
        findings.append(inherited_protection_finding(negative, protected, config["helpers"], comm_of,
                                                     config["max_examples"]))
    if "expendable_services" in checks:
        systemd_root = facts["hierarchy"].get("systemd_root")
        for service in config["expendable"]:
            unit, state = _pick_unit(service, show)
            members = []
            if state is not None and state.get("ControlGroup"):
                members = [processes[p] for p in cgroup_pids(systemd_root, state["ControlGroup"]) if p in processes]
            if not members:
                ours = pid_namespace("self", proc)
                wanted = set(service["processes"])
                members = [p for p in processes.values() if p["comm"] in wanted
                           and pid_namespace(p["pid"], proc) in (ours, None)]
            findings.append(expendable_finding(service, [_proc_view(p) for p in sorted(
                members, key=lambda p: p["pid"])], unit=unit, unit_state=state))
    if "memory_limits" in checks:
        for item in facts["memory_limits"]:
            findings.append(memory_limit_finding(
                item["unit"], item["configured"], item["applied"], item["missing"], item["unsupported"],
                item["version"], unit_state=item["state"] if systemd else None, systemd=systemd))
    if "memory" in checks:
        findings.append(swap_finding(facts["memory"], th))
        findings.append(available_memory_finding(facts["memory"], th))
        findings.append(psi_finding(facts["psi"], th))
    if "oom_kills" in checks:
        findings.append(oom_kills_finding(facts["vmstat"].get("oom_kill"), facts["oom_events"],
                                          facts["kernel_log_readable"], sorted(critical_comms),
                                          _snapshot_view(facts["snapshot"], config["max_examples"]),
                                          config["max_examples"]))
        findings.append(kernel_log_finding(facts["kernel_log_readable"]))
    if "early_relief" in checks:
        early = facts["early_relief"]
        findings.append(early_engine_finding(early["states"], early["planned"]["engine"], early["status"] is not None,
                                             facts["memory"].get("swap_total_bytes"), systemd))
        findings.append(early_settings_finding(early["planned"], early["active"], early["missing_files"],
                                               early["differing_files"], early["running_args"]))
        critical_names = set(critical_comms) | set(config.get("protected_units", []))
        for service in config["critical"]:
            critical_names.update(service["units"])
        findings.append(early_kills_finding(early["kills"], sorted(critical_names), early["hook_error"],
                                            early["journal_error"], config["max_examples"]))
    if "watchdog" in checks:
        findings.append(watchdog_timer_finding(systemd, show.get("oomguard-watchdog.timer"),
                                               show.get(WATCHDOG_SERVICE), facts["watchdog_state"], facts["now"],
                                               th["watchdog_state_max_age"]))
        cron_present = bool(running_comms & set(("cron", "crond"))) or any(
            (show.get(u) or {}).get("LoadState") == "loaded" for u in ("cron.service", "crond.service"))
        findings.append(cron_heartbeat_finding(facts["heartbeat"], facts["now"], th["heartbeat_max_age"],
                                               cron_present))
        findings.append(hardware_watchdog_finding(*facts["hardware_watchdog"]))
    if "oomguard_units" in checks:
        for unit in OOMGUARD_UNITS:
            if unit.endswith(".timer") and "watchdog" in checks:
                continue  # watchdog.timer already judges it
            findings.append(oomguard_unit_finding(unit, systemd, show.get(unit)))
    if "xen" in checks:
        findings.append(xen_dom0_finding(facts["xen_dom0"], facts.get("dom0_mem"), facts.get("autoballoon"),
                                         facts["memory"].get("mem_total_bytes")))
    if "kernel_settings" in checks:
        sysctls = facts["sysctls"]
        findings.append(panic_on_oom_finding(sysctls.get("panic_on_oom")))
        findings.append(oom_kill_allocating_task_finding(sysctls.get("oom_kill_allocating_task")))
        findings.append(overcommit_finding(sysctls.get("overcommit_memory"), sysctls.get("overcommit_ratio")))
    if facts.get("show_error"):
        findings.append({"id": "systemd.show", "severity": "warn", "message": facts["show_error"],
                         "evidence": {}})
    if config.get("status_problems"):
        # A status file oomguard wrote, damaged on the host: a finding, never a crash.
        findings.append({"id": "oomguard.status_files", "severity": "warn",
                         "message": "damaged status file entries were ignored: %s; re-run the role that writes it"
                                    % "; ".join(config["status_problems"][:5]),
                         "evidence": {"problems": config["status_problems"]}})
    return sort_findings(findings)


def _snapshot_view(snapshot, limit):
    if not snapshot:
        return None
    return {"time": snapshot.get("time"), "reason": snapshot.get("reason"),
            "top_rss": (snapshot.get("top_rss") or [])[:limit], "oom_victims": snapshot.get("oom_victims")}


def run_check(config, roots, show_runner, journal_runner=None):
    """(result dict, offending findings) for a validated config."""
    config = with_protect_status(config, _read_json(os.path.join(roots["state"], "oom_protect.json")))
    facts = collect(config, roots, show_runner, journal_runner)
    findings = evaluate(config, facts, roots)
    hierarchy = facts["hierarchy"]
    result = {
        "changed": False,
        "summary": summarize(findings),
        "findings": findings,
        "report": report_lines(findings),
        "host": {"systemd": facts["systemd"], "cgroup": hierarchy.get("mode"),
                 "memory_cgroup": hierarchy.get("memory"), "container": facts["container"],
                 "processes": len(facts["processes"]), "kernel_log_readable": facts.get("kernel_log_readable")},
        "diff": {"before": "", "after": ""},
    }
    return result, offending(findings, config["fail_on"])


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        config = build_config(module.params)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    result, bad = run_check(config, ROOTS, lambda units: systemctl_show(module, units), lambda: journal_oomd(module))
    if bad:
        module.fail_json(msg="%d finding(s) at or above %s: %s" % (len(bad), config["fail_on"], "; ".join(
            "%s %s" % (f["severity"].upper(), f["id"]) for f in bad)), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
