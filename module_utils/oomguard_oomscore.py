# -*- coding: utf-8 -*-
# Copyright: oomguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Planning per-service oom_score_adj: which pids get which value, the drop-in, refusals.

Standard library only, pure functions: the module (library/oomguard_oom_score.py)
gathers the facts (systemctl show, /proc, the cgroup tree), asks these functions
what to do, then does it. The kernel rules encoded here (fs/proc/base.c
__set_oom_adj, proc(5)):

* anybody allowed to write /proc/<pid>/oom_score_adj may RAISE the value;
* LOWERING it below the process's oom_score_adj_min needs CAP_SYS_RESOURCE
  (EACCES otherwise). oom_score_adj_min is the last value a privileged writer set
  (inherited on fork; 0 for a process no privileged writer ever touched) and is not
  visible in /proc, so the lowest value an unprivileged writer can reach is found
  by trying (lowest_allowed_write);
* children inherit both values at fork.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import posixpath

try:
    from ansible.module_utils.oomguard_procfs import (
        OOM_SCORE_ADJ_MAX, OOM_SCORE_ADJ_MIN, OOM_SCORE_ADJ_REFUSAL, descendants_of)
    from ansible.module_utils.oomguard_systemd import PlanError, render_dropin
except ImportError:  # installed beside an agent, outside Ansible
    from oomguard_procfs import OOM_SCORE_ADJ_MAX, OOM_SCORE_ADJ_MIN, OOM_SCORE_ADJ_REFUSAL, descendants_of
    from oomguard_systemd import PlanError, render_dropin

DEFAULT_DROPIN = "50-oomguard-oom.conf"
LIVE_SCOPES = ("main", "cgroup", "all", "none")
PERSIST_MODES = ("oom_score_adjust", "sshd_env", "none")
ON_REFUSAL = ("clamp", "fail", "warn")
TARGET_KINDS = ("unit", "pidfile", "process_name", "cgroup_path")
DROPIN_COMMENT = ("Managed by oomguard (oomguard_oom_score): local changes are overwritten.\n"
                  "%s")
PERSIST_EXPLAINED = {
    "oom_score_adjust": "systemd applies OOMScoreAdjust= to every process of the unit when it starts.",
    "sshd_env": ("OpenSSH reads SSHD_OOM_ADJUST at start: the listener sets itself to this value and\n"
                 "restores every session to the value it started with (OOMScoreAdjust= would leak\n"
                 "into all sessions)."),
}


def validate_score(value, argument="score"):
    """The score as an int in -1000..1000, or PlanError."""
    if isinstance(value, bool):
        raise PlanError("%s: %r is not an integer; allowed: %d..%d" % (argument, value, OOM_SCORE_ADJ_MIN,
                                                                      OOM_SCORE_ADJ_MAX))
    try:
        score = int(str(value).strip())
    except (TypeError, ValueError):
        raise PlanError("%s: %r is not an integer; allowed: %d..%d" % (argument, value, OOM_SCORE_ADJ_MIN,
                                                                      OOM_SCORE_ADJ_MAX))
    if not OOM_SCORE_ADJ_MIN <= score <= OOM_SCORE_ADJ_MAX:
        raise PlanError("%s: %d is out of range; allowed: %d..%d" % (argument, score, OOM_SCORE_ADJ_MIN,
                                                                    OOM_SCORE_ADJ_MAX))
    return score


def validate_choice(value, choices, argument):
    if value not in choices:
        raise PlanError("%s: %r is not allowed; allowed: %s" % (argument, value, ", ".join(choices)))
    return value


def validate_cgroup_path(path, argument="cgroup_path"):
    """A cgroup path relative to the hierarchy root, e.g. /system.slice/foo.service."""
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path or "\n" in path:
        raise PlanError("%s: %r is not allowed; allowed: an absolute cgroup path such as "
                        "/system.slice/foo.service" % (argument, path))
    stripped = path.rstrip("/") or "/"
    if posixpath.normpath(stripped) != stripped or "//" in stripped:
        raise PlanError("%s: %r is not allowed; allowed: a normalised absolute path without '.' or '..'"
                        % (argument, path))
    if stripped == "/":
        raise PlanError("%s: '/' is the root cgroup, every process of the host; allowed: one service's or "
                        "slice's cgroup such as /system.slice/foo.service" % argument)
    return stripped


# Never raised by this module, whatever the target (issue 15: process_name systemd with
# live_scope all raised every process of the host, sshd and cron included): PID 1, and
# the daemons an operator needs to reach and repair the host (their listener/daemon
# process: an SSH session or a cron job is not protected).
PROTECTED_DAEMONS = ("sshd", "cron", "crond")
PROTECTED_UNITS = ("ssh.service", "sshd.service", "cron.service", "crond.service")


def protected_reason(info, by_pid):
    """Why this process must not be raised, or None."""
    if info["pid"] == 1:
        return "PID 1 (%s), the init system" % info.get("comm")
    comm = info.get("comm")
    parent = by_pid.get(info.get("ppid"))
    # The daemon itself: started by PID 1 (or a container's init), or forked by another
    # program; a child of a process of its own name (an SSH session) is not it.
    daemon = (info.get("ppid") or 0) <= 1 or (parent is not None and parent.get("comm") != comm)
    if comm in PROTECTED_DAEMONS and daemon:
        return "pid %d (%s), the %s daemon an operator needs to reach the host" % (info["pid"], comm, comm)
    return None


def protected_refusals(processes, plan, unit=None, score=None):
    """Messages for every raise of a protected process (or persisted raise of a protected
    unit) in plan; [] when the plan may be applied. A raise: wanted above before."""
    by_pid = dict((p["pid"], p) for p in processes)
    refusals = []
    if unit in PROTECTED_UNITS and score is not None and score > 0:
        refusals.append("%s: a positive score %d would make it a preferred OOM victim" % (unit, score))
    for entry in plan:
        before = entry.get("before")
        if before is not None and entry["wanted"] <= before:
            continue
        reason = protected_reason(by_pid[entry["pid"]], by_pid)
        if reason:
            refusals.append("%s: raising it to %d is refused" % (reason, entry["wanted"]))
    return refusals


def resolve_persist(persist, target_kind):
    """Default and check the persistence: drop-ins exist only for systemd units."""
    if persist is None:
        return "oom_score_adjust" if target_kind == "unit" else "none"
    validate_choice(persist, PERSIST_MODES, "persist")
    if persist != "none" and target_kind != "unit":
        raise PlanError("persist: %r needs a systemd unit (argument unit); allowed with %s: none"
                        % (persist, target_kind))
    return persist


def render_oom_dropin(score, persist):
    """The drop-in text that persists score, or None for persist=none."""
    if persist == "none":
        return None
    if persist == "oom_score_adjust":
        settings = [("OOMScoreAdjust", "%d" % score)]
    elif persist == "sshd_env":
        settings = [("Environment", "SSHD_OOM_ADJUST=%d" % score)]
    else:
        raise PlanError("persist: %r is not allowed; allowed: %s" % (persist, ", ".join(PERSIST_MODES)))
    return render_dropin([("Service", settings)], comment=DROPIN_COMMENT % PERSIST_EXPLAINED[persist])


def plan_dropin(current, desired):
    """What to do with the drop-in file: {'action': write|remove|none, 'before', 'after'}."""
    before = current or ""
    after = desired or ""
    if desired is None:
        action = "remove" if current is not None else "none"
    else:
        action = "write" if current != desired else "none"
    return {"action": action, "changed": action != "none", "before": before, "after": after}


def select_pids(processes, scope, anchors):
    """The pids that must carry the value.

    processes: dicts with pid, ppid and session (oomguard_procfs.read_stat_ids) of
    every candidate (the unit's cgroup, a pid file's process and its descendants, ...).
    anchors: the pids that define the service (systemd's MainPID, the pid file's pid,
    the processes matched by name); when empty or none of them is a candidate, the
    candidates whose parent is not a candidate (the roots of the group) are used.

    scope:
      main   - the anchors only (sshd's listener, cron's daemon): nothing they fork.
      cgroup - the anchors and every candidate in an anchor's session: workers that
               stay in the daemon's session (postgres backends, dbus helpers) get the
               value; processes that started a session of their own with setsid()
               (SSH sessions, cron jobs, su/login shells) and everything under them
               keep theirs.
      all    - every candidate, as OOMScoreAdjust= would at start (for expendable units).
      none   - no live change.
    """
    validate_choice(scope, LIVE_SCOPES, "live_scope")
    if scope == "none":
        return []
    by_pid = dict((p["pid"], p) for p in processes)
    chosen = [pid for pid in (anchors or []) if pid in by_pid]
    if not chosen:
        chosen = [p["pid"] for p in processes if p["ppid"] not in by_pid]
    if scope == "main":
        return sorted(set(chosen))
    if scope == "all":
        return sorted(by_pid)
    sessions = set(by_pid[pid]["session"] for pid in chosen)
    return sorted(set(chosen) | set(p["pid"] for p in processes if p["session"] in sessions))


def group_of(processes, roots):
    """Candidates for a pid file / process name target: the roots and their descendants."""
    members = set(roots) | set(descendants_of(processes, roots))
    return [p for p in processes if p["pid"] in members]


def plan_live(processes, pids, score):
    """One entry per selected pid: {pid, comm, before, wanted, action: write|keep}."""
    by_pid = dict((p["pid"], p) for p in processes)
    plan = []
    for pid in pids:
        info = by_pid[pid]
        before = info.get("oom_score_adj")
        plan.append({
            "pid": pid,
            "comm": info.get("comm"),
            "before": before,
            "wanted": score,
            "action": "keep" if before == score else "write",
        })
    return plan


def predict_refused(before, wanted, can_lower):
    """Whether the kernel will refuse: lowering without CAP_SYS_RESOURCE.

    Without the capability the true floor (oom_score_adj_min) is unknown; assume the
    current value is the floor, which is what a previous clamping run leaves behind.
    """
    return before is not None and wanted < before and not can_lower


def lowest_allowed_write(pid, wanted, current, write):
    """Clamp: write the lowest value >= wanted the kernel accepts for pid.

    write(pid, value) returns (ok, reason). The current value is always accepted
    (oom_score_adj_min <= current), so bisect between wanted (refused) and current.
    At most 11 writes for the whole range. Returns the last value written or current.
    """
    low, high = wanted, current
    while high - low > 1:
        middle = (low + high) // 2
        ok, reason = write(pid, middle)
        if ok:
            high = middle
        elif reason and "exited" in reason:
            return None
        else:
            low = middle
    return high


def refusal_reason(pid, comm, before, wanted, after):
    """One deterministic sentence, the same in check mode and for real."""
    return ("kernel refused oom_score_adj %d for pid %s (%s): %s (unprivileged container?); it stays at %s"
            % (wanted, pid, comm, OOM_SCORE_ADJ_REFUSAL, "unknown" if after is None else after))


def apply_live(plan, on_refusal, write, read, check_mode=False, can_lower=True):
    """Carry out plan_live's plan; return per-pid results with what really took.

    write(pid, value) -> (ok, reason); read(pid) -> int or None (gone). In check mode
    nothing is written and refusals are predicted (predict_refused).
    Each result: pid, comm, before, wanted, after, enforced, refused, gone.
    """
    validate_choice(on_refusal, ON_REFUSAL, "on_refusal")
    results = []
    for entry in plan:
        pid, before, wanted = entry["pid"], entry["before"], entry["wanted"]
        result = dict(entry, after=before, enforced=before == wanted, refused=False, gone=False)
        if entry["action"] == "keep":
            results.append(result)
            continue
        if check_mode:
            if predict_refused(before, wanted, can_lower):
                result["refused"] = True
            else:
                result.update(after=wanted, enforced=True)
            results.append(result)
            continue
        ok, reason = write(pid, wanted)
        if not ok and reason and "exited" in reason:
            result.update(gone=True, after=None, enforced=True)
            results.append(result)
            continue
        if not ok:
            result["refused"] = True
            if on_refusal == "clamp" and before is not None and before > wanted:
                lowest_allowed_write(pid, wanted, before, write)
        after = read(pid)
        if after is None:
            result.update(gone=True, after=None, enforced=True)
        else:
            result.update(after=after, enforced=after == wanted)
        results.append(result)
    return results


def summarize(results, dropin_plan, on_refusal):
    """changed/enforced/reason for the module result from apply_live's results.

    changed: the drop-in changed or a live value really moved (read back). A refused
    value never counts; a clamped value that did move does (the host changed).
    """
    live_changed = any(r["after"] is not None and r["after"] != r["before"] for r in results)
    refused = [r for r in results if r["refused"]]
    reasons = [refusal_reason(r["pid"], r["comm"], r["before"], r["wanted"], r["after"]) for r in refused]
    return {
        "changed": bool(dropin_plan and dropin_plan["changed"]) or live_changed,
        "live_changed": live_changed,
        "enforced": all(r["enforced"] for r in results),
        "refused": bool(refused),
        "reason": "; ".join(reasons) if reasons else None,
        "failed": bool(refused) and on_refusal == "fail",
    }


def status_entry(result, target):
    """What oom_protect's status file records for one target, from the module's result.

    The role's template copies these fields (adding kind and hardened) and the audit
    reads them back (status_services). Pids are left out: they change on every restart,
    and the file must only change when the policy or its enforcement does.
    """
    values = sorted(set(r["after"] for r in result["live"] if r["after"] is not None))
    reason = None
    if result["reason"]:
        reason = "kernel refused oom_score_adj %d: %s (unprivileged container?); the processes keep %s" % (
            result["score"], OOM_SCORE_ADJ_REFUSAL, ", ".join(str(v) for v in values))
    entry = dict((key, result[key]) for key in ("unit", "found", "score", "persist", "dropin", "enforced"))
    entry.update(target=result["unit"] or target or "", values=values, reason=reason)
    return entry


def status_services(status):
    """(critical entries, expendable entries) of oom_protect's status file, as parsed JSON.

    Only entries with an integer score count. Status files written before the pid-free
    format may still carry `live` (pids and values) until the role runs again.
    """
    services = status.get("services") if isinstance(status, dict) else None
    if not isinstance(services, list):
        return [], []
    entries = [s for s in services if not _status_entry_problem(s)]
    return ([e for e in entries if e.get("kind") == "critical"],
            [e for e in entries if e.get("kind") == "expendable"])


def _status_entry_problem(entry):
    """Why one entry of the status file cannot be used (None when it can)."""
    if not isinstance(entry, dict):
        return "%r is not an object" % (entry,)
    if isinstance(entry.get("score"), bool) or not isinstance(entry.get("score"), int):
        return "score %r is not an integer" % (entry.get("score"),)
    for key in ("unit", "target", "kind", "persist", "dropin", "reason"):
        if entry.get(key) is not None and not isinstance(entry[key], str):
            return "%s %r is not a string" % (key, entry[key])
    if entry.get("live") is not None and not isinstance(entry["live"], list):
        return "live %r is not a list" % (entry["live"],)
    return None


def status_problems(status):
    """What is damaged in oom_protect's status file (parsed JSON, or None when absent):
    [] when every entry is usable. The audit reports these, it never crashes on them."""
    if status is None:
        return []
    if not isinstance(status, dict) or "error" in status or "value" in status:
        return ["%s" % status.get("error") if isinstance(status, dict) and status.get("error")
                else "not a JSON object"]
    services = status.get("services")
    if services is None:
        return []
    if not isinstance(services, list):
        return ["services %r is not a list" % (services,)]
    problems = []
    for index, entry in enumerate(services):
        problem = _status_entry_problem(entry)
        if problem:
            problems.append("services[%d]: %s" % (index, problem))
    return problems


def live_diff_text(results, key):
    """'pid comm: value' lines for the diff of live values (key 'before' or 'after')."""
    lines = []
    for r in results:
        value = r[key]
        lines.append("%s %s: %s" % (r["pid"], r["comm"], "gone" if value is None else value))
    return "\n".join(lines) + ("\n" if lines else "")
