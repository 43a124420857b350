# -*- coding: utf-8 -*-
# Copyright: oomguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure planning of the early killer (the early_relief role): oomguard's policy -> engine settings.

Standard library only, no I/O. The filter plugin (oomguard_early_relief_plan) calls plan(),
so the role's preflight refuses a policy by the same rules that build the files.

Engines:
  systemd-oomd  cgroup v2 only, systemd >= 248, package systemd-oomd (Debian 12). Files:
                /etc/systemd/oomd.conf.d/50-oomguard.conf (SwapUsedLimit=, pressure defaults),
                -.slice: ManagedOOMSwap=kill; each kill slice: ManagedOOMMemoryPressure=kill;
                each critical unit: ManagedOOMPreference=omit.
  earlyoom      cgroup v1 hosts or where systemd-oomd cannot run: -m/-s thresholds, --avoid the
                critical daemons' process names, --prefer the expendable ones (earlyoom also
                follows oom_score_adj, which oom_protect sets), through an earlyoom.service drop-in.
  none          nothing acts early; oomguard's drop-ins are removed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

try:
    from ansible.module_utils.oomguard_systemd import UNIT_SUFFIXES, PlanError as SystemdPlanError, is_unit_name, \
        render_dropin
except ImportError:  # installed beside an agent, outside Ansible
    from oomguard_systemd import UNIT_SUFFIXES, PlanError as SystemdPlanError, is_unit_name, render_dropin

ENGINES = ("auto", "systemd-oomd", "earlyoom", "none")
OOMD_MIN_SYSTEMD = 248
HEADER = "Managed by oomguard (early_relief)"
DROPIN_NAME = "50-oomguard-early-relief.conf"
DROPIN_DIR = "/etc/systemd/system"
OOMD_CONF = "/etc/systemd/oomd.conf.d/50-oomguard.conf"
ROOT_SLICE_DROPIN = "%s/-.slice.d/%s" % (DROPIN_DIR, DROPIN_NAME)
EARLYOOM_DROPIN = "%s/earlyoom.service.d/%s" % (DROPIN_DIR, DROPIN_NAME)
EARLYOOM_BIN = "/usr/bin/earlyoom"
# earlyoom's -N script: one JSON line a kill in /run/oomguard/early-kills.jsonl (oomguard_earlykills).
EARLYOOM_HOOK = "/usr/lib/oomguard/early-kill-hook"
EARLYOOM_REPORT_INTERVAL = 3600
COMM_LEN = 15  # TASK_COMM_LEN - 1: what /proc/<pid>/comm (and so earlyoom) sees
PACKAGES = {"systemd-oomd": "systemd-oomd", "earlyoom": "earlyoom"}
# Units that take ManagedOOMPreference= (systemd.resource-control(5)).
CRITICAL_SUFFIXES = ("service", "slice", "socket", "mount", "swap", "scope")
SERVICES = {"systemd-oomd": "systemd-oomd.service", "earlyoom": "earlyoom.service"}

# What keeps the host reachable and repairable: never a candidate of the early killer.
BASE_CRITICAL_UNITS = (
    "ssh.service", "sshd.service", "cron.service", "crond.service", "systemd-journald.service",
    "systemd-logind.service", "dbus.service", "oomguard-alertd.service", "oomguard-watchdog.service",
    "earlyoom.service", "systemd-oomd.service",
)
# Process names (comm, cut to 15 characters) of the units whose daemon we know.
KNOWN_COMMS = {
    "ssh.service": "sshd",
    "sshd.service": "sshd",
    "cron.service": "cron",
    "crond.service": "crond",
    "systemd-journald.service": "systemd-journal",
    "systemd-logind.service": "systemd-logind",
    "dbus.service": "dbus-daemon",
    "oomguard-alertd.service": "oomguard-alertd",
    "oomguard-watchdog.service": "oomguard-watchd",
    "earlyoom.service": "earlyoom",
    "systemd-oomd.service": "systemd-oomd",
}

# A process name as earlyoom matches it: printable, no whitespace.
_COMM_RE = re.compile(r"[!-~]{1,64}")
# POSIX extended regular expression metacharacters (earlyoom compiles --avoid/--prefer with regcomp).
_ERE_SPECIAL = re.compile(r"([.\[\]{}()\\*+?^$|])")
# Characters that need no quoting in an ExecStart= argument.
_EXEC_SAFE = re.compile(r"[A-Za-z0-9_./:=,+-]+")


class PlanError(SystemdPlanError):
    """A policy the early killer must not run with; str() names every variable at fault,
    errors lists them (the role's preflight shows each)."""

    def __init__(self, errors):
        self.errors = list(errors) if isinstance(errors, (list, tuple)) else [errors]
        super(PlanError, self).__init__("; ".join(self.errors))


def _int_in(value, low, high):
    """value as an int when it is one (or '60', '60%') within [low, high], else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        text = text[:-1] if text.endswith("%") else text
        if not re.fullmatch(r"[0-9]{1,6}", text):
            return None
        value = int(text)
    if not isinstance(value, int) or not low <= value <= high:
        return None
    return value


def unit_name_error(name, argument, suffixes=UNIT_SUFFIXES):
    """None when name is a valid systemd unit name with one of suffixes, else the message."""
    if is_unit_name(name) and name.rpartition(".")[2] in suffixes and name.rpartition(".")[0]:
        return None
    return ("%s: %r is not a valid systemd unit name; allowed: letters, digits and : - _ . \\ @ "
            "(no '/', whitespace or shell metacharacters), ending in %s"
            % (argument, name, " or ".join("." + s for s in suffixes)))


def choose_engine(requested, cgroup_v2, systemd_version, oomd_available, psi=True):
    """The engine to run and why: ('systemd-oomd' | 'earlyoom' | 'none', reason).

    auto picks systemd-oomd on a pure cgroup v2 host with systemd >= 248, pressure stall
    information (/proc/pressure/memory, which systemd-oomd reads) and the package available,
    else earlyoom. Asking for systemd-oomd where it cannot run is refused.
    """
    if requested not in ENGINES:
        raise PlanError("early_relief_engine: %r is not allowed; allowed: %s" % (requested, ", ".join(ENGINES)))
    if requested == "none":
        return "none", "early_relief_engine is none: nothing acts before the kernel OOM killer"
    if requested == "earlyoom":
        return "earlyoom", "early_relief_engine is earlyoom"
    try:
        version = int(systemd_version or 0)
    except (TypeError, ValueError):
        version = 0
    missing = []
    if not cgroup_v2:
        missing.append("the host is not on the pure cgroup v2 hierarchy")
    if version < OOMD_MIN_SYSTEMD:
        missing.append("systemd %s < %d" % (version or "unknown", OOMD_MIN_SYSTEMD))
    if not psi:
        missing.append("the kernel gives no pressure stall information (/proc/pressure/memory)")
    if not oomd_available:
        missing.append("package systemd-oomd is not available")
    if requested == "systemd-oomd":
        if missing:
            raise PlanError("early_relief_engine: systemd-oomd cannot run here (%s); allowed here: "
                            "auto, earlyoom, none" % ", ".join(missing))
        return "systemd-oomd", "early_relief_engine is systemd-oomd"
    if missing:
        return "earlyoom", "auto: earlyoom, because %s" % ", ".join(missing)
    return "systemd-oomd", "auto: systemd-oomd (cgroup v2, systemd %d, package available)" % version


def _entry_unit(entry):
    """The unit of an oom_protect entry ({unit: ...} or a name); no suffix means .service, as there."""
    unit = entry.get("unit") if isinstance(entry, dict) else entry
    if isinstance(unit, str) and unit and unit.rpartition(".")[2] not in UNIT_SUFFIXES:
        unit += ".service"
    return unit


def critical_units(critical_services=(), extra_units=()):
    """The critical set: the base units, then oom_protect's critical units, then the extras (no repeats)."""
    units = list(BASE_CRITICAL_UNITS)
    for entry in list(critical_services or []) + list(extra_units or []):
        unit = _entry_unit(entry)
        if unit and unit not in units:
            units.append(unit)
    return units


def _comm(unit):
    """The process name earlyoom sees for a unit's daemon: known, else the unit's stem."""
    return KNOWN_COMMS.get(unit, unit.rpartition(".")[0])[:COMM_LEN]


def avoid_names(units):
    names = []
    for unit in units:
        comm = _comm(unit)
        if comm and comm not in names:
            names.append(comm)
    return names


def prefer_names(expendable_services=()):
    """process: names and the known daemons of unit: entries of oom_protect_expendable_services."""
    names = []
    for entry in expendable_services or []:
        if not isinstance(entry, dict):
            continue
        if entry.get("process"):
            name = str(entry["process"])[:COMM_LEN]
        elif _entry_unit(entry) in KNOWN_COMMS:
            name = KNOWN_COMMS[_entry_unit(entry)]
        else:
            continue
        if name not in names:
            names.append(name)
    return names


def validate(engine, critical, kill_slices, expendable_services=(), swap_used_limit=60, pressure_limit=40,
             pressure_duration_s=10, mem_percent=10, swap_percent=40):
    """Raise PlanError listing every refusal (each naming its variable and what is allowed)."""
    errors = []
    for argument, value in (("early_relief_swap_used_limit", swap_used_limit),
                            ("early_relief_memory_pressure_limit", pressure_limit),
                            ("early_relief_earlyoom_mem_percent", mem_percent),
                            ("early_relief_earlyoom_swap_percent", swap_percent)):
        if _int_in(value, 1, 99) is None:
            errors.append("%s: %r is out of range; allowed: a percentage from 1 to 99" % (argument, value))
    if _int_in(pressure_duration_s, 1, 3600) is None:
        errors.append("early_relief_memory_pressure_duration: %r is out of range; allowed: 1 to 3600 seconds"
                      % (pressure_duration_s,))
    for unit in critical:
        error = unit_name_error(unit, "early_relief_extra_critical_units (or oom_protect_critical_services)",
                                suffixes=CRITICAL_SUFFIXES)
        if error:
            errors.append(error)
    if not isinstance(kill_slices, (list, tuple)):
        errors.append("early_relief_kill_slices: %r is not a list of slices" % (kill_slices,))
        kill_slices = []
    for name in kill_slices:
        error = unit_name_error(name, "early_relief_kill_slices", suffixes=("slice",))
        if error:
            errors.append(error)
        elif name in critical:
            errors.append("early_relief_kill_slices: %s is critical (early_relief_extra_critical_units or "
                          "oom_protect_critical_services) and cannot be a kill candidate; allowed: slices not "
                          "in the critical set" % name)
    if engine != "none" and not kill_slices:
        errors.append("early_relief_kill_slices: no candidate slice at all; allowed: at least one slice where "
                      "expendable work and sessions run (e.g. system.slice, user.slice), or early_relief_engine: none")
    critical_comms = set(avoid_names(critical))
    for entry in expendable_services or []:
        unit = _entry_unit(entry)
        process = entry.get("process") if isinstance(entry, dict) else None
        if unit and unit in critical:
            errors.append("oom_protect_expendable_services: %s is critical and cannot be an early-kill candidate; "
                          "allowed: units outside the critical set" % unit)
        if process is not None and (not isinstance(process, str) or not _COMM_RE.fullmatch(process)):
            errors.append("oom_protect_expendable_services: process %r is not a process name; allowed: "
                          "printable characters without whitespace" % (process,))
        elif process and process[:COMM_LEN] in critical_comms:
            errors.append("oom_protect_expendable_services: process %s is a critical daemon (%s) and cannot be "
                          "preferred; allowed: processes outside the critical set"
                          % (process, ", ".join(sorted(critical_comms))))
    if errors:
        raise PlanError(errors)


def _percent(value):
    return "%d%%" % _int_in(value, 1, 99)


def plan_oomd(critical_units, kill_slices, swap_used_limit, pressure_limit, pressure_duration_s, avoid_units=()):
    """{path: content} of systemd-oomd's configuration and the ManagedOOM* drop-ins.

    avoid_units: ManagedOOMPreference=avoid (taken only when no other candidate is left)."""
    comment = HEADER
    files = {
        OOMD_CONF: render_dropin([("OOM", [
            ("SwapUsedLimit", _percent(swap_used_limit)),
            ("DefaultMemoryPressureLimit", _percent(pressure_limit)),
            ("DefaultMemoryPressureDurationSec", "%ds" % _int_in(pressure_duration_s, 1, 3600)),
        ])], comment=comment),
        ROOT_SLICE_DROPIN: render_dropin([("Slice", [("ManagedOOMSwap", "kill")])], comment=comment),
    }
    for name in kill_slices:
        files["%s/%s.d/%s" % (DROPIN_DIR, name, DROPIN_NAME)] = render_dropin([("Slice", [
            ("ManagedOOMMemoryPressure", "kill"),
            ("ManagedOOMMemoryPressureLimit", _percent(pressure_limit)),
        ])], comment=comment)
    preferences = [(unit, "omit") for unit in critical_units]
    preferences += [(unit, "avoid") for unit in avoid_units or () if unit not in critical_units]
    for unit, preference in preferences:
        section = unit.rpartition(".")[2].capitalize()
        files["%s/%s.d/%s" % (DROPIN_DIR, unit, DROPIN_NAME)] = render_dropin(
            [(section, [("ManagedOOMPreference", preference)])], comment=comment)
    return files


def ere_alternation(names):
    """'^(a|b)$' matching exactly these names (cut to 15 characters), metacharacters escaped."""
    return "^(%s)$" % "|".join(_ERE_SPECIAL.sub(r"\\\1", name[:COMM_LEN]) for name in names)


def exec_quote(arg):
    """One ExecStart= argument: double-quoted with \\ and \" escaped when needed; $ and % doubled."""
    if not _EXEC_SAFE.fullmatch(arg):
        arg = '"%s"' % arg.replace("\\", "\\\\").replace('"', '\\"')
    return arg.replace("%", "%%").replace("$", "$$")


def plan_earlyoom(avoid, prefer, mem_percent, swap_percent):
    """(earlyoom's argument list, the earlyoom.service drop-in that runs it with them).

    Debian's unit runs earlyoom as a dynamic user with a read-only file system; the drop-in
    runs it as root (the hook must write root's /run/oomguard, which RuntimeDirectory= keeps
    writable and in place) and keeps the rest of the unit's sandbox.
    """
    args = ["-m", str(_int_in(mem_percent, 1, 99)), "-s", str(_int_in(swap_percent, 1, 99))]
    if avoid:
        args += ["--avoid", ere_alternation(avoid)]
    if prefer:
        args += ["--prefer", ere_alternation(prefer)]
    args += ["-r", str(EARLYOOM_REPORT_INTERVAL), "-N", EARLYOOM_HOOK]
    command = " ".join(exec_quote(a) for a in [EARLYOOM_BIN] + args)
    dropin = render_dropin([("Service", [
        ("ExecStart", None), ("ExecStart", command),
        ("DynamicUser", "no"),
        ("RuntimeDirectory", "oomguard"),
        ("RuntimeDirectoryMode", "0755"),
        ("RuntimeDirectoryPreserve", "yes"),
    ])], comment=HEADER)
    return args, dropin


def plan(requested="auto", cgroup_v2=False, systemd_version=0, oomd_available=False, kill_slices=(),
         critical_services=(), extra_critical_units=(), expendable_services=(), swap_used_limit=60,
         pressure_limit=40, pressure_duration_s=10, mem_percent=10, swap_percent=40, psi=True,
         avoid_units=()):
    """The whole plan: {engine, reason, package, service, files, earlyoom_args, critical_units,
    avoid_units, candidates}; raises PlanError with every refusal.

    avoid_units: units the user wants spared while anything else is left (systemd-oomd
    ManagedOOMPreference=avoid; earlyoom --avoid of their daemons' names)."""
    errors = []
    try:
        engine, reason = choose_engine(requested, cgroup_v2, systemd_version, oomd_available, psi)
    except PlanError as exc:
        errors += exc.errors
        engine, reason = "none", str(exc)
    critical = critical_units(critical_services, extra_critical_units)
    try:
        validate(engine, critical, kill_slices, expendable_services, swap_used_limit, pressure_limit,
                 pressure_duration_s, mem_percent, swap_percent)
    except PlanError as exc:
        errors += exc.errors
    avoid_units = list(avoid_units or [])
    for unit in avoid_units:
        error = unit_name_error(unit, "early_relief_avoid_units", suffixes=CRITICAL_SUFFIXES)
        if error:
            errors.append(error)
        elif isinstance(kill_slices, (list, tuple)) and unit in kill_slices:
            errors.append("early_relief_avoid_units: %s is also a kill slice; allowed: units that are not in "
                          "early_relief_kill_slices" % unit)
    if errors:
        raise PlanError(errors)
    avoid_units = [u for i, u in enumerate(avoid_units) if u not in critical and u not in avoid_units[:i]]
    files, args, candidates = {}, [], {}
    if engine == "systemd-oomd":
        files = plan_oomd(critical, kill_slices, swap_used_limit, pressure_limit, pressure_duration_s,
                          avoid_units)
        candidates = {"slices": list(kill_slices), "swap": ["-.slice"]}
    elif engine == "earlyoom":
        avoid, prefer = avoid_names(critical + avoid_units), prefer_names(expendable_services)
        args, files[EARLYOOM_DROPIN] = plan_earlyoom(avoid, prefer, mem_percent, swap_percent)
        candidates = {"avoid": avoid, "prefer": prefer}
    return {
        "engine": engine,
        "reason": reason,
        "package": PACKAGES.get(engine),
        "service": SERVICES.get(engine),
        "files": files,
        "earlyoom_args": args,
        "critical_units": critical,
        "avoid_units": avoid_units,
        "candidates": candidates,
    }
