# -*- coding: utf-8 -*-
# Copyright: oomguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit's judgements: one pure function per finding, plus summary and fail_on.

Standard library only, no I/O: every function takes facts already read by the
readers (oomguard_procfs, oomguard_cgroup, oomguard_systemd, oomguard_memstat,
oomguard_oomlog) and returns a finding dict:

  {"id": "sshd.oom_score_adj", "severity": "ok|info|warn|fail",
   "message": "one line", "evidence": {...}}

Severities: ok (protected as intended), info (not applicable or not measurable here,
never counts against the score), warn (weaker than it should be), fail (protection
is missing or defeated).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

try:
    from ansible.module_utils.oomguard_memstat import (
        MEM_AVAILABLE_PERCENT, PSI_FULL_AVG10, PSI_SOME_AVG10, SWAP_USED_PERCENT)
    from ansible.module_utils.oomguard_procfs import OOM_SCORE_ADJ_MIN, OOM_SCORE_ADJ_REFUSAL
    from ansible.module_utils.oomguard_sizes import INFINITY, human_size
    from ansible.module_utils.oomguard_watchdog import DEFAULT_STATE, failing_checks
except ImportError:  # installed beside an agent, outside Ansible
    from oomguard_memstat import MEM_AVAILABLE_PERCENT, PSI_FULL_AVG10, PSI_SOME_AVG10, SWAP_USED_PERCENT
    from oomguard_procfs import OOM_SCORE_ADJ_MIN, OOM_SCORE_ADJ_REFUSAL
    from oomguard_sizes import INFINITY, human_size
    from oomguard_watchdog import DEFAULT_STATE, failing_checks

SEVERITIES = ("ok", "info", "warn", "fail")
SEVERITY_RANK = {"ok": 0, "info": 1, "warn": 2, "fail": 3}
FAIL_ON_CHOICES = ("warn", "fail", "never")

# Memory levels from oomguard_memstat's table (why they differ from the agent's there).
DEFAULT_THRESHOLDS = {
    "swap_used_percent_warn": SWAP_USED_PERCENT["warn"],
    "swap_used_percent_fail": SWAP_USED_PERCENT["fail"],
    "mem_available_percent_warn": MEM_AVAILABLE_PERCENT["warn"],
    "mem_available_percent_fail": MEM_AVAILABLE_PERCENT["fail"],
    "psi_some_avg10_warn": PSI_SOME_AVG10["audit_warn"],
    "psi_full_avg10_warn": PSI_FULL_AVG10["audit_warn"],
    "psi_full_avg10_fail": PSI_FULL_AVG10["audit_fail"],
    "watchdog_state_max_age": 300,
    "heartbeat_max_age": 180,
}
# Pairs (warn, fail) where fail must be the stricter side.
_THRESHOLD_ORDER = (
    ("swap_used_percent_warn", "swap_used_percent_fail", "<="),
    ("psi_full_avg10_warn", "psi_full_avg10_fail", "<="),
    ("mem_available_percent_warn", "mem_available_percent_fail", ">="),
)
_PERCENT_KEYS = ("swap_used_percent_warn", "swap_used_percent_fail", "mem_available_percent_warn",
                 "mem_available_percent_fail", "psi_some_avg10_warn", "psi_full_avg10_warn",
                 "psi_full_avg10_fail")


def finding(fid, severity, message, evidence=None):
    if severity not in SEVERITY_RANK:
        raise ValueError("severity %r not in %s" % (severity, ", ".join(SEVERITIES)))
    return {"id": fid, "severity": severity, "message": message, "evidence": evidence or {}}


def merge_thresholds(user):
    """Defaults updated with the user's thresholds; raises ValueError naming the bad key."""
    merged = dict(DEFAULT_THRESHOLDS)
    for key, value in (user or {}).items():
        if key not in DEFAULT_THRESHOLDS:
            raise ValueError("thresholds: unknown key %r; allowed: %s" % (key, ", ".join(sorted(DEFAULT_THRESHOLDS))))
        if isinstance(value, bool):
            raise ValueError("thresholds.%s: %r is not a number" % (key, value))
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError("thresholds.%s: %r is not a number" % (key, value))
        if number < 0 or (key in _PERCENT_KEYS and number > 100):
            raise ValueError("thresholds.%s: %r is out of range; allowed: %s" % (
                key, value, "0-100 (percent)" if key in _PERCENT_KEYS else "a number of seconds >= 0"))
        merged[key] = number
    for warn, fail, relation in _THRESHOLD_ORDER:
        if (relation == "<=" and merged[warn] > merged[fail]) or (relation == ">=" and merged[warn] < merged[fail]):
            raise ValueError("thresholds: %s (%s) must be %s %s (%s)" % (warn, merged[warn], relation, fail, merged[fail]))
    return merged


# --- critical services ----------------------------------------------------------

def _refusal_reason(policy, live, configured, cap_sys_resource, container):
    if policy < 0 and cap_sys_resource is False:
        reason = "the kernel refuses: %s" % OOM_SCORE_ADJ_REFUSAL
        if container:
            reason += " (container without CAP_SYS_RESOURCE: %s)" % container
        return reason
    if configured is not None and configured <= policy:
        return "configured %d but live %d: the kernel refused it or the service was not restarted" % (configured, live)
    if container and policy < 0:
        return "not applied; this is a container (%s), which usually lacks CAP_SYS_RESOURCE" % container
    return "no oomguard policy applied (run the oom_protect role)"


def critical_service_finding(service, main_processes, unit=None, unit_state=None, configured=None,
                             cap_sys_resource=None, container=None, found_by="systemd"):
    """Live oom_score_adj of a critical service's main process(es) against its policy.

    service: {"name", "oom_score_adj" (policy), "role" (e.g. "listener")}
    main_processes: [{"pid", "comm", "oom_score_adj"}] (the listener/daemon, not children)
    unit_state: the unit's `systemctl show` dict, or None without systemd
    configured: the value asked for by drop-in/Environment/state file, or None
    cap_sys_resource: whether the service manager can lower values (None: unknown)
    """
    name = service["name"]
    policy = service["oom_score_adj"]
    role = service.get("role") or "main process"
    fid = "%s.oom_score_adj" % name
    evidence = {"unit": unit, "policy": policy, "configured": configured, "found_by": found_by,
                "processes": main_processes, "cap_sys_resource": cap_sys_resource, "container": container}
    if unit_state:
        evidence["active_state"] = unit_state.get("ActiveState")
    if not main_processes:
        if unit_state and unit_state.get("LoadState") == "loaded":
            evidence["enforced"] = False
            return finding(fid, "fail", "%s unit %s is %s: no %s to protect" % (
                name, unit, unit_state.get("ActiveState") or "not running", role), evidence)
        return finding(fid, "info", "%s not present on this host (no unit, no %s process)" % (
            name, "/".join(service.get("processes") or [name])), evidence)
    live = max(p["oom_score_adj"] for p in main_processes)
    pids = ",".join(str(p["pid"]) for p in main_processes)
    evidence["live"] = live
    if live == policy and all(p["oom_score_adj"] == policy for p in main_processes):
        evidence["enforced"] = True
        return finding(fid, "ok", "%s %s (pid %s) at %d, policy %d" % (name, role, pids, live, policy), evidence)
    if live > policy:
        reason = _refusal_reason(policy, live, configured, cap_sys_resource, container)
        evidence["enforced"] = False
        evidence["reason"] = reason
        return finding(fid, "fail", "%s %s (pid %s) at %d, policy %d: %s" % (name, role, pids, live, policy, reason),
                       evidence)
    evidence["enforced"] = True
    return finding(fid, "warn", "%s %s (pid %s) at %d, below policy %d: more protected than intended" % (
        name, role, pids, live, policy), evidence)


# --- inherited protection -------------------------------------------------------

def inherited_protection_finding(negative_processes, protected_pids, helper_comms, comm_of=None, max_examples=5):
    """Processes with a negative oom_score_adj that are neither protected services nor helpers.

    negative_processes: [{"pid", "ppid", "comm", "oom_score_adj", "unit"?}]
    protected_pids: pids that carry protection on purpose (critical main processes, agents)
    helper_comms: command names allowed to be protected (systemd, journald, udevd)
    comm_of: {pid: comm} to name parents in the examples
    """
    comm_of = comm_of or {}
    protected = set(protected_pids)
    helpers = set(helper_comms)
    leaked = [p for p in negative_processes
              if p["pid"] not in protected and p["comm"] not in helpers and not p.get("kernel_thread")
              and p["pid"] not in (1, 2) and p.get("ppid") != 2]
    leaked.sort(key=lambda p: (p["oom_score_adj"], p["pid"]))
    examples = [{"pid": p["pid"], "comm": p["comm"], "oom_score_adj": p["oom_score_adj"], "ppid": p.get("ppid"),
                 "parent": comm_of.get(p.get("ppid")), "unit": p.get("unit")} for p in leaked[:max_examples]]
    unkillable = len([p for p in leaked if p["oom_score_adj"] <= OOM_SCORE_ADJ_MIN])
    evidence = {"count": len(leaked), "unkillable": unkillable, "examples": examples,
                "negative_total": len(negative_processes)}
    if not leaked:
        return finding("inherited_protection", "ok", "no process inherits protection (%d protected on purpose)" % (
            len(negative_processes)), evidence)
    sample = ", ".join("%s[%d] from %s" % (e["comm"], e["pid"], e["parent"] or e["ppid"]) for e in examples[:3])
    severity = "fail" if unkillable else "warn"
    return finding("inherited_protection", severity,
                   "%d processes inherit a negative oom_score_adj (%d unkillable at -1000), e.g. %s" % (
                       len(leaked), unkillable, sample), evidence)


# --- expendable services --------------------------------------------------------

def expendable_finding(service, processes, unit=None, unit_state=None):
    """Every process of an expendable service at (at least) its positive value."""
    name = service["name"]
    wanted = service["oom_score_adj"]
    fid = "%s.expendable" % name
    evidence = {"unit": unit, "policy": wanted, "processes": processes[:10], "count": len(processes)}
    if not processes:
        state = (unit_state or {}).get("ActiveState")
        return finding(fid, "info", "%s not running%s" % (name, " (unit %s)" % state if state else ""), evidence)
    low = [p for p in processes if p["oom_score_adj"] < wanted]
    if low:
        evidence["below_policy"] = low[:10]
        return finding(fid, "warn", "%s: %d of %d processes below %d (lowest %d): not the OOM killer's first choice" % (
            name, len(low), len(processes), wanted, min(p["oom_score_adj"] for p in low)), evidence)
    return finding(fid, "ok", "%s: %d processes at >= %d" % (name, len(processes), wanted), evidence)


# --- memory limits --------------------------------------------------------------

def _show_limit(value):
    return human_size(value) if value not in (None, INFINITY) else (value or "unset")


def memory_limit_finding(unit, configured, applied, missing, unsupported, version, unit_state=None, systemd=True):
    """Memory settings from the unit's drop-in against the cgroup files.

    configured: {"max": bytes|INFINITY, "high": ..., ...} from 50-oomguard-memory.conf
    applied, missing: oomguard_cgroup.compare_targets() output for those settings
    unsupported: oomguard_cgroup.memory_targets() settings this cgroup version cannot express
    version: "v1", "v2" or None (no memory controller)
    """
    fid = "memory_limits.%s" % unit
    evidence = {"unit": unit, "cgroup": version, "configured": configured,
                "applied": dict((t["setting"], t["readback"]) for t in applied),
                "mismatched": [t["reason"] for t in missing],
                "not_expressible": [u["setting"] for u in unsupported]}
    if not systemd:
        return finding(fid, "info", "%s: drop-in present but systemd is not running: limits cannot apply" % unit,
                       evidence)
    if version is None:
        return finding(fid, "warn", "%s: no memory cgroup controller mounted: limits cannot apply" % unit, evidence)
    if unit_state is not None and unit_state.get("ActiveState") != "active":
        return finding(fid, "info", "%s is %s: limits apply when it starts" % (
            unit, unit_state.get("ActiveState") or "not loaded"), evidence)
    if missing:
        return finding(fid, "fail", "%s: %s" % (unit, "; ".join(
            "%s %s configured, %s applied" % (t["setting"], _show_limit(configured.get(t["setting"])),
                                              _show_limit(t["readback"])) for t in missing)), evidence)
    if not applied:
        return finding(fid, "warn", "%s: none of %s can be expressed on cgroup %s" % (
            unit, ", ".join(evidence["not_expressible"]) or "the settings", version), evidence)
    note = (" (%s not expressible on cgroup %s)" % (", ".join(evidence["not_expressible"]), version)
            if unsupported else "")
    return finding(fid, "ok", "%s: %s applied%s" % (unit, ", ".join(
        "%s %s" % (t["setting"], _show_limit(configured.get(t["setting"]))) for t in applied), note), evidence)


# --- host memory ----------------------------------------------------------------

def swap_finding(summary, thresholds):
    total = summary.get("swap_total_bytes", 0)
    used_pct = summary.get("swap_used_percent", 0.0)
    evidence = {"swap_total_bytes": total, "swap_used_bytes": summary.get("swap_used_bytes", 0),
                "swap_used_percent": used_pct}
    if not total:
        return finding("memory.swap", "info", "no swap configured", evidence)
    text = "swap %.1f%% used (%s of %s)" % (used_pct, human_size(summary.get("swap_used_bytes", 0)), human_size(total))
    if used_pct >= thresholds["swap_used_percent_fail"]:
        return finding("memory.swap", "fail", text, evidence)
    if used_pct >= thresholds["swap_used_percent_warn"]:
        return finding("memory.swap", "warn", text, evidence)
    return finding("memory.swap", "ok", text, evidence)


def available_memory_finding(summary, thresholds):
    pct = summary.get("mem_available_percent")
    evidence = {"mem_total_bytes": summary.get("mem_total_bytes"),
                "mem_available_bytes": summary.get("mem_available_bytes"), "mem_available_percent": pct}
    if pct is None:
        return finding("memory.available", "info", "MemTotal unreadable", evidence)
    text = "%.1f%% available (%s of %s)" % (pct, human_size(summary.get("mem_available_bytes") or 0),
                                           human_size(summary.get("mem_total_bytes") or 0))
    if pct <= thresholds["mem_available_percent_fail"]:
        return finding("memory.available", "fail", text, evidence)
    if pct <= thresholds["mem_available_percent_warn"]:
        return finding("memory.available", "warn", text, evidence)
    return finding("memory.available", "ok", text, evidence)


def psi_finding(psi, thresholds):
    if not psi:
        return finding("memory.psi", "info", "PSI disabled (no /proc/pressure/memory): pressure not measurable",
                       {"psi": None})
    some = psi.get("some", {})
    full = psi.get("full", {})
    evidence = {"some": some, "full": full}
    text = "PSI memory some avg10=%.2f avg60=%.2f, full avg10=%.2f avg60=%.2f" % (
        some.get("avg10", 0.0), some.get("avg60", 0.0), full.get("avg10", 0.0), full.get("avg60", 0.0))
    if full.get("avg10", 0.0) >= thresholds["psi_full_avg10_fail"]:
        return finding("memory.psi", "fail", text, evidence)
    if (full.get("avg10", 0.0) >= thresholds["psi_full_avg10_warn"]
            or some.get("avg10", 0.0) >= thresholds["psi_some_avg10_warn"]):
        return finding("memory.psi", "warn", text, evidence)
    return finding("memory.psi", "ok", text, evidence)


# --- OOM kills ------------------------------------------------------------------

def oom_kills_finding(oom_kill_count, events, kernel_log_readable, critical_comms=(), snapshot=None,
                      max_examples=5):
    """The vmstat oom_kill counter since boot, the last victims from the kernel log, the last snapshot."""
    victims = [{"pid": e.get("pid"), "comm": e.get("comm"), "rss_bytes": e.get("rss_bytes"),
                "oom_score_adj": e.get("oom_score_adj"), "scope": e.get("scope"),
                "memcg": e.get("oom_memcg") or e.get("task_memcg"), "uptime": e.get("uptime"),
                "invoker": e.get("invoker")} for e in (events or [])][-max_examples:]
    evidence = {"oom_kill": oom_kill_count, "victims": victims, "kernel_log_readable": kernel_log_readable}
    if snapshot:
        evidence["snapshot"] = snapshot
    count = oom_kill_count
    if count is None:
        count = len(events or []) if kernel_log_readable else None
    if count is None:
        return finding("oom_kills", "info", "no oom_kill counter (kernel < 4.13) and kernel log unreadable", evidence)
    if count == 0 and not victims:
        return finding("oom_kills", "ok", "no OOM kill since boot", evidence)
    if victims:
        last = victims[-1]
        detail = "last: %s (pid %s, %s, %s%s)" % (
            last["comm"], last["pid"], human_size(last["rss_bytes"] or 0),
            "memcg %s" % last["memcg"] if last["scope"] == "memcg" else "host-wide",
            ", oom_score_adj %s" % last["oom_score_adj"] if last["oom_score_adj"] is not None else "")
    elif not kernel_log_readable:
        detail = "victims unknown: kernel log unreadable"
    else:
        detail = "victims no longer in the kernel log"
    critical_hit = [v for v in victims if v["comm"] in set(critical_comms)]
    evidence["critical_victims"] = critical_hit
    message = "%d OOM kill%s since boot; %s" % (count, "" if count == 1 else "s", detail)
    if snapshot:
        message += "; snapshot at %s" % snapshot.get("time", "?")
    if critical_hit:
        return finding("oom_kills", "fail", message + "; critical service killed: %s" % ", ".join(
            sorted(set(v["comm"] for v in critical_hit))), evidence)
    return finding("oom_kills", "warn", message, evidence)


def kernel_log_finding(readable, source="/dev/kmsg"):
    if readable:
        return finding("kernel_log", "ok", "kernel log readable (%s)" % source, {"source": source})
    return finding("kernel_log", "info", "kernel log unreadable (%s: not root, or a container without /dev/kmsg):"
                   " OOM victims unknown" % source, {"source": source})


# --- early relief (systemd-oomd, earlyoom) -------------------------------------

EARLY_ENGINE_UNITS = (("systemd-oomd", "systemd-oomd.service"), ("earlyoom", "earlyoom.service"))
EARLY_RELIEF_HINT = "apply the early_relief role (oomguard_early_relief_enabled in the oomguard role)"


def _active(unit_state):
    return bool(unit_state) and unit_state.get("ActiveState") == "active"


def early_engine_finding(unit_states, planned_engine, status_present, swap_total_bytes, systemd=True):
    """Which early killer acts before the kernel OOM killer, against what early_relief planned.

    unit_states: {"systemd-oomd.service": show dict, "earlyoom.service": show dict};
    planned_engine: the status file's engine or None; swap_total_bytes: SwapTotal.
    """
    active = [engine for engine, unit in EARLY_ENGINE_UNITS if _active(unit_states.get(unit))]
    evidence = {"active": active, "planned": planned_engine, "status_file": status_present,
                "swap_total_bytes": swap_total_bytes,
                "units": dict((unit, (unit_states.get(unit) or {}).get("ActiveState")) for _, unit in EARLY_ENGINE_UNITS)}
    fid = "early_relief.engine"
    if not systemd:
        return finding(fid, "info", "systemd is not PID 1: early killers' units cannot be checked", evidence)
    if len(active) > 1:
        return finding(fid, "warn", "both systemd-oomd and earlyoom are active and race each other: stop the one "
                       "early_relief did not choose (%s)" % (planned_engine or "re-run the early_relief role"), evidence)
    if planned_engine and planned_engine not in active:
        unit = dict(EARLY_ENGINE_UNITS)[planned_engine]
        return finding(fid, "warn", "early_relief planned %s but %s is %s: re-run the early_relief role or "
                       "start %s" % (planned_engine, unit, evidence["units"][unit] or "not installed", unit), evidence)
    if active:
        if planned_engine:
            return finding(fid, "ok", "%s active, as early_relief planned" % active[0], evidence)
        return finding(fid, "info", "%s active but not configured by oomguard (no early_relief status): its "
                       "policy may not spare the critical units; %s" % (active[0], EARLY_RELIEF_HINT), evidence)
    if swap_total_bytes:
        return finding(fid, "warn", "swap is on (%s) and no early killer is active: the host can thrash for minutes "
                       "before the kernel OOM killer acts; %s" % (human_size(swap_total_bytes), EARLY_RELIEF_HINT),
                       evidence)
    return finding(fid, "info", "no early killer active; without swap the kernel OOM killer acts without a long "
                   "thrash", evidence)


def early_settings_finding(planned, active_engine, missing_files, differing_files, running_args):
    """Whether the running early killer uses early_relief's settings.

    planned: planned_from_status(); active_engine: the engine running or None;
    missing_files/differing_files: planned drop-ins absent or changed (systemd-oomd);
    running_args: earlyoom's arguments from /proc/<pid>/cmdline (without the program) or None.
    """
    fid = "early_relief.settings"
    evidence = {"planned_engine": planned.get("engine"), "active": active_engine, "missing_files": missing_files,
                "differing_files": differing_files, "planned_args": planned.get("earlyoom_args"),
                "running_args": running_args}
    engine = planned.get("engine")
    if not engine:
        return finding(fid, "info", "no early_relief status file: nothing to compare; %s" % EARLY_RELIEF_HINT, evidence)
    if active_engine != engine:
        return finding(fid, "info", "%s is not running: its settings cannot be compared (see early_relief.engine)"
                       % engine, evidence)
    if engine == "systemd-oomd":
        if not planned.get("files"):
            return finding(fid, "info", "early_relief's status lists no drop-in contents to compare", evidence)
        if missing_files or differing_files:
            return finding(fid, "warn", "systemd-oomd's drop-ins differ from early_relief's plan (missing: %s; "
                           "changed: %s): re-run the early_relief role, then systemctl daemon-reload" % (
                               ", ".join(missing_files) or "none", ", ".join(differing_files) or "none"), evidence)
        return finding(fid, "ok", "systemd-oomd's %d drop-in(s) match early_relief's plan" % len(planned["files"]),
                       evidence)
    planned_args = planned.get("earlyoom_args")
    if planned_args is None:
        return finding(fid, "info", "early_relief's status lists no earlyoom arguments to compare", evidence)
    if running_args is None:
        return finding(fid, "info", "earlyoom's command line is unreadable (not root?)", evidence)
    if running_args != planned_args:
        return finding(fid, "warn", "running earlyoom has %s, early_relief planned %s: restart earlyoom.service "
                       "(or re-run the early_relief role)" % (" ".join(running_args) or "no arguments",
                                                              " ".join(planned_args)), evidence)
    return finding(fid, "ok", "running earlyoom uses early_relief's arguments", evidence)


def early_kills_finding(kills, critical_names=(), hook_error=None, journal_error=None, max_examples=5):
    """Early kills since boot (earlyoom's hook file under /run, this boot's systemd-oomd journal).

    kills: records of oomguard_earlykills; critical_names: process names and units that
    must never be a victim (a kill of one is a fail).
    """
    critical = set(critical_names)
    victims = [dict((k, r.get(k)) for k in ("time", "engine", "pid", "name", "uid", "unit", "reason", "processes"))
               for r in kills]
    hit = [v for v in victims if v["name"] in critical or v["unit"] in critical]
    evidence = {"count": len(kills), "victims": victims[-max_examples:] if max_examples else [],
                "critical_victims": hit, "hook_error": hook_error, "journal_error": journal_error}
    notes = [n for n in (hook_error, journal_error) if n]
    suffix = ("; " + "; ".join(notes)) if notes else ""
    if not kills:
        return finding("early_kills", "warn" if hook_error else "ok",
                       "no early kill since boot" + suffix, evidence)
    by_engine = {}
    for record in kills:
        by_engine[record["engine"]] = by_engine.get(record["engine"], 0) + 1
    last = victims[-1]
    what = ("pid %s (%s)" % (last["pid"], last["name"]) if last["engine"] == "earlyoom"
            else "%s" % (last["unit"] or last["name"]))
    message = "%d early kill%s since boot (%s); last: %s by %s" % (
        len(kills), "" if len(kills) == 1 else "s",
        ", ".join("%s %d" % (e, n) for e, n in sorted(by_engine.items())), what, last["engine"])
    if hit:
        return finding("early_kills", "fail", message + "; critical service killed: %s: add it to oom_protect's "
                       "critical services and re-run early_relief so it is never a candidate" % ", ".join(
                           sorted(set(v["unit"] or v["name"] for v in hit))) + suffix, evidence)
    return finding("early_kills", "warn", message + "; see the early_kill snapshots in /var/log/oomguard" + suffix,
                   evidence)


# --- watchdogs ------------------------------------------------------------------

def watchdog_timer_finding(systemd, timer_state, service_state, state, now, max_age):
    """oomguard-watchdog.timer active, and the checker's last result from its state file.

    state: the saved state as oomguard_watchdog.read_state() returns it (None: no result)."""
    evidence = {"timer": timer_state, "service_result": (service_state or {}).get("Result"), "state": state}
    if not systemd:
        return finding("watchdog.timer", "warn", "systemd is not PID 1: the oomguard watchdog timer cannot run",
                       evidence)
    if not timer_state or timer_state.get("LoadState") != "loaded":
        return finding("watchdog.timer", "warn", "oomguard-watchdog.timer not installed (service_watchdog role)",
                       evidence)
    if timer_state.get("ActiveState") != "active":
        return finding("watchdog.timer", "fail", "oomguard-watchdog.timer is %s" % timer_state.get("ActiveState"),
                       evidence)
    if not state:
        return finding("watchdog.timer", "warn", "oomguard-watchdog.timer active but no result yet "
                       "(no %s)" % DEFAULT_STATE, evidence)
    last_run = state.get("last_run")
    age = None
    try:
        age = now - float(last_run)
    except (TypeError, ValueError):
        pass
    evidence["age_seconds"] = age
    failing = failing_checks(state)
    evidence["failing_checks"] = failing
    if age is None or age > max_age:
        return finding("watchdog.timer", "warn", "oomguard-watchdog.timer active but last result is stale (%s)" % (
            "%d s old" % age if age is not None else "no last_run"), evidence)
    if failing:
        return finding("watchdog.timer", "warn", "watchdog ran %d s ago; failing checks: %s" % (
            age, ", ".join(failing)), evidence)
    return finding("watchdog.timer", "ok", "watchdog timer active, last run %d s ago, all checks healthy" % age,
                   evidence)


def cron_heartbeat_finding(heartbeat, now, max_age, cron_present=True):
    evidence = {"heartbeat": heartbeat, "max_age": max_age}
    if not cron_present:
        return finding("cron.heartbeat", "info", "cron not present: no heartbeat expected", evidence)
    if heartbeat is None:
        return finding("cron.heartbeat", "info", "no cron heartbeat file (service_watchdog not installed)", evidence)
    age = now - heartbeat
    evidence["age_seconds"] = age
    if age > max_age:
        return finding("cron.heartbeat", "warn", "cron heartbeat %d s old (> %d s): cron is not running jobs" % (
            age, max_age), evidence)
    return finding("cron.heartbeat", "ok", "cron heartbeat %d s old" % age, evidence)


def hardware_watchdog_finding(devices, sysfs, runtime_watchdog_sec):
    """devices: existing /dev/watchdog*; sysfs: {name: {"state", "timeout", "identity"}};
    runtime_watchdog_sec: systemd's configured RuntimeWatchdogSec (string) or None."""
    evidence = {"devices": devices, "sysfs": sysfs, "RuntimeWatchdogSec": runtime_watchdog_sec}
    if not devices and not sysfs:
        return finding("watchdog.hardware", "info", "no hardware watchdog (/dev/watchdog absent)", evidence)
    active = [name for name, info in sorted(sysfs.items()) if (info or {}).get("state") == "active"]
    configured = runtime_watchdog_sec not in (None, "", "0", "off", "0s")
    names = ", ".join(sorted(sysfs) or devices)
    if active:
        timeout = sysfs[active[0]].get("timeout")
        return finding("watchdog.hardware", "ok", "hardware watchdog %s armed%s" % (
            ", ".join(active), " (timeout %s s)" % timeout if timeout else ""), evidence)
    if configured and not sysfs:
        return finding("watchdog.hardware", "ok", "hardware watchdog %s, RuntimeWatchdogSec=%s" % (
            names, runtime_watchdog_sec), evidence)
    if configured:
        return finding("watchdog.hardware", "warn", "RuntimeWatchdogSec=%s configured but %s not armed "
                       "(reboot or daemon-reexec pending?)" % (runtime_watchdog_sec, names), evidence)
    return finding("watchdog.hardware", "warn", "hardware watchdog %s present but not armed (set RuntimeWatchdogSec)"
                   % names, evidence)


def oomguard_unit_finding(unit, systemd, unit_state):
    fid = "units.%s" % unit.rsplit(".", 1)[0]
    evidence = {"unit": unit, "state": unit_state}
    if not systemd:
        return finding(fid, "info", "%s: systemd is not PID 1, unit cannot run" % unit, evidence)
    if not unit_state or unit_state.get("LoadState") != "loaded":
        return finding(fid, "warn", "%s not installed" % unit, evidence)
    if unit_state.get("ActiveState") == "active":
        return finding(fid, "ok", "%s active (%s)" % (unit, unit_state.get("SubState")), evidence)
    return finding(fid, "fail", "%s is %s (%s)" % (unit, unit_state.get("ActiveState"),
                                                   unit_state.get("Result") or unit_state.get("SubState")), evidence)


# --- Xen dom0 -------------------------------------------------------------------

def xen_dom0_finding(is_dom0, dom0_mem, autoballoon, current_bytes):
    """dom0_mem: {"size": bytes, "max": bytes} from the grub command line or None;
    autoballoon: xl.conf value ("off", "on", "auto") or None; current_bytes: dom0's MemTotal."""
    evidence = {"dom0": is_dom0, "dom0_mem": dom0_mem, "autoballoon": autoballoon, "current_bytes": current_bytes}
    if not is_dom0:
        return finding("xen.dom0", "info", "not a Xen dom0", evidence)
    problems = []
    if not dom0_mem or not dom0_mem.get("size"):
        problems.append("dom0_mem not pinned at boot")
    elif not dom0_mem.get("max"):
        problems.append("dom0_mem has no max: (dom0 may grow/shrink)")
    if autoballoon != "off":
        problems.append("ballooning not off (autoballoon=%s)" % (autoballoon or "default auto"))
    pinned = (dom0_mem or {}).get("size")
    if pinned and current_bytes and current_bytes < pinned * 0.9:
        problems.append("current %s below pinned %s (ballooned, or pin pending reboot)" % (
            human_size(current_bytes), human_size(pinned)))
    if problems:
        return finding("xen.dom0", "warn", "Xen dom0: " + "; ".join(problems), evidence)
    return finding("xen.dom0", "ok", "Xen dom0 pinned at %s, ballooning off, current %s" % (
        human_size(pinned), human_size(current_bytes or 0)), evidence)


# --- kernel settings ------------------------------------------------------------

def panic_on_oom_finding(value):
    evidence = {"vm.panic_on_oom": value}
    if value is None:
        return finding("kernel.panic_on_oom", "info", "vm.panic_on_oom unreadable", evidence)
    if value:
        return finding("kernel.panic_on_oom", "fail", "vm.panic_on_oom=%d: the kernel panics instead of killing a "
                       "process; oom_score_adj protection is moot" % value, evidence)
    return finding("kernel.panic_on_oom", "ok", "vm.panic_on_oom=0", evidence)


def oom_kill_allocating_task_finding(value):
    evidence = {"vm.oom_kill_allocating_task": value}
    if value is None:
        return finding("kernel.oom_kill_allocating_task", "info", "vm.oom_kill_allocating_task unreadable", evidence)
    if value:
        return finding("kernel.oom_kill_allocating_task", "warn", "vm.oom_kill_allocating_task=%d: the task that "
                       "allocates is killed, not the most expendable one" % value, evidence)
    return finding("kernel.oom_kill_allocating_task", "ok", "vm.oom_kill_allocating_task=0", evidence)


def overcommit_finding(mode, ratio=None):
    evidence = {"vm.overcommit_memory": mode, "vm.overcommit_ratio": ratio}
    if mode is None:
        return finding("kernel.overcommit", "info", "vm.overcommit_memory unreadable", evidence)
    if mode == 1:
        return finding("kernel.overcommit", "warn", "vm.overcommit_memory=1 (always): no allocation is refused, "
                       "the OOM killer is the only brake", evidence)
    if mode == 2:
        return finding("kernel.overcommit", "info", "vm.overcommit_memory=2 (strict, ratio %s): allocations fail "
                       "instead of OOM kills" % ratio, evidence)
    return finding("kernel.overcommit", "ok", "vm.overcommit_memory=%d (heuristic)" % mode, evidence)


# --- summary, report, fail_on ---------------------------------------------------

def worst_severity(findings):
    worst = "ok"
    for item in findings:
        if SEVERITY_RANK[item["severity"]] > SEVERITY_RANK[worst]:
            worst = item["severity"]
    return worst


def summarize(findings):
    """score 0-100 (ok = 1, warn = 0.5, fail = 0; info does not count), counts, worst."""
    counts = dict((s, 0) for s in SEVERITIES)
    for item in findings:
        counts[item["severity"]] += 1
    judged = counts["ok"] + counts["warn"] + counts["fail"]
    score = 100 if not judged else int(round(100.0 * (counts["ok"] + 0.5 * counts["warn"]) / judged))
    return {"score": score, "counts": counts, "worst": worst_severity(findings), "total": len(findings)}


def sort_findings(findings):
    """Worst first, then by id (stable for equal ids)."""
    return sorted(findings, key=lambda f: (-SEVERITY_RANK[f["severity"]], f["id"]))


def report_lines(findings):
    return ["%s %s: %s" % (f["severity"].upper(), f["id"], f["message"]) for f in sort_findings(findings)]


def offending(findings, fail_on):
    """Findings at or above fail_on ('warn', 'fail'); none for 'never'."""
    if fail_on not in FAIL_ON_CHOICES:
        raise ValueError("fail_on: %r; allowed: %s" % (fail_on, ", ".join(FAIL_ON_CHOICES)))
    if fail_on == "never":
        return []
    level = SEVERITY_RANK[fail_on]
    return [f for f in sort_findings(findings) if SEVERITY_RANK[f["severity"]] >= level]
