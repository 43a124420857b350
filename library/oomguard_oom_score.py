#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: oomguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: oomguard_oom_score
short_description: Set a service's oom_score_adj persistently and live, without leaking it to children
version_added: "0.1.0"
description:
  - Persists an C(oom_score_adj) for a systemd unit in a drop-in
    C(/etc/systemd/system/<unit>.d/<dropin_name>) written atomically, and applies it live
    by writing C(/proc/<pid>/oom_score_adj) of the processes that should carry it, so no
    restart is needed.
  - On hosts without systemd it targets processes by pid file, exact process name or
    cgroup path (live only, nothing is persisted).
  - Every value is read back after writing. Where the kernel refuses (lowering needs
    CAP_SYS_RESOURCE, which unprivileged containers lack; systemd's own
    C(OOMScoreAdjust=) then fails silently) the result says C(enforced=false) with the
    reason, and C(on_refusal) decides what happens. A value that did not take is never
    reported as C(changed).
  - Inheritance. Children inherit C(oom_score_adj) at fork. C(live_scope) chooses which
    processes get the value so a protected daemon does not hand its protection to the
    sessions and jobs it forks; C(persist=sshd_env) persists sshd's protection the way
    OpenSSH intends (listener only).
  - The module does not restart the unit. With I(daemon_reload=true) it runs
    C(systemctl daemon-reload) after changing a drop-in.
  - Never raises PID 1, sshd's listener or the cron daemon (an SSH session or a cron job may be raised),
    never gives C(ssh.service), C(sshd.service), C(cron.service) or C(crond.service) a positive score, and
    refuses the root cgroup C(/) as I(cgroup_path); such a plan fails whole, before anything is written,
    naming each process refused.
author:
  - oomguard contributors
options:
  unit:
    description:
      - The systemd unit, e.g. C(ssh.service) or C(cron) (C(.service) is added when no
        suffix is given). Letters, digits and the characters C(:-_.\@) only.
      - The unit must exist unless I(ignore_missing=true).
      - Mutually exclusive with I(pidfile), I(process_name) and I(cgroup_path).
    type: str
  pidfile:
    description:
      - A pid file naming the main process (hosts without systemd). Its descendants are
        the group I(live_scope) chooses from.
    type: path
  process_name:
    description:
      - Exact process name (C(comm), or argv[0]'s basename for names longer than 15
        characters). Every matching process is a main process.
    type: str
  cgroup_path:
    description:
      - A cgroup path relative to the systemd (or unified) hierarchy, e.g.
        C(/system.slice/exim4.service). Its root processes are the main processes.
    type: str
  score:
    description:
      - The oom_score_adj to set, -1000 (never kill) to 1000 (kill first).
      - Required with I(state=present).
    type: int
  state:
    description:
      - C(present) writes the drop-in and the live values.
      - C(absent) removes the drop-in (effective at the unit's next start) and leaves the
        live values alone.
    type: str
    choices: [present, absent]
    default: present
  persist:
    description:
      - How the value is persisted for a unit.
      - C(oom_score_adjust) writes C(OOMScoreAdjust=) (systemd applies it to every
        process of the unit at start, and they pass it on to what they fork).
      - C(sshd_env) writes C(Environment=SSHD_OOM_ADJUST=<score>) for OpenSSH's sshd,
        which sets its listener to that value and restores every session to the value
        sshd started with; use it for ssh.service instead of C(OOMScoreAdjust=), which
        leaks into every SSH session.
      - C(none) writes no drop-in (live only).
      - Defaults to C(oom_score_adjust) for I(unit) and C(none) otherwise (the only
        value allowed without a unit).
    type: str
    choices: [oom_score_adjust, sshd_env, none]
  dropin_name:
    description: File name of the drop-in inside C(/etc/systemd/system/<unit>.d/).
    type: str
    default: 50-oomguard-oom.conf
  live_scope:
    description:
      - Which running processes get the value now.
      - C(main) - the main processes only (systemd's MainPID, the pid file's pid, the
        processes matched by name); use it for daemons that fork sessions or jobs
        (sshd, cron).
      - C(cgroup) - the main processes and every process of the group that stays in a
        main process's session (daemon workers); processes that called setsid() (SSH
        sessions, cron jobs, login shells) and everything below them are left alone.
      - C(all) - every process of the group, as C(OOMScoreAdjust=) does at start (for
        expendable services).
      - C(none) - no live change.
    type: str
    choices: [main, cgroup, all, none]
    default: cgroup
  on_refusal:
    description:
      - What to do when the kernel refuses a value (EACCES when lowering without
        CAP_SYS_RESOURCE).
      - C(warn) - keep the current value, warn, return C(enforced=false).
      - C(clamp) - write the lowest value the kernel accepts, which is the process's
        hidden oom_score_adj_min (the last value a privileged writer set, 0 for a process
        none ever touched; found by bisection, at most 11 writes), warn, return
        C(enforced=false).
      - C(fail) - fail after processing every process (the drop-in is still written,
        it is the persisted policy).
    type: str
    choices: [clamp, fail, warn]
    default: warn
  ignore_missing:
    description:
      - When the unit does not exist (or no process matches), return C(found=false)
        without changing anything instead of failing.
    type: bool
    default: false
  daemon_reload:
    description: Run C(systemctl daemon-reload) when the drop-in changed.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: Nothing is written. Refusals are predicted from the module's own
      CAP_SYS_RESOURCE; without it the current value is assumed to be the lowest allowed.
  diff_mode:
    support: full
    description: Drop-in before/after and the live values before/after.
notes:
  - Writing C(/proc/<pid>/oom_score_adj) needs root. Raising a value always works;
    lowering below the process's oom_score_adj_min needs CAP_SYS_RESOURCE.
  - systemd applies C(OOMScoreAdjust=) only when it starts a process; the live write is
    what makes the value effective now.
seealso:
  - name: proc(5) oom_score_adj
    description: The kernel interface.
    link: https://man7.org/linux/man-pages/man5/proc.5.html
  - name: systemd.exec(5) OOMScoreAdjust=
    description: The persisted form for units.
    link: https://www.freedesktop.org/software/systemd/man/latest/systemd.exec.html
"""

EXAMPLES = r"""
- name: Protect the sshd listener only; sessions keep the host default
  oomguard_oom_score:
    unit: ssh.service
    score: -1000
    persist: sshd_env
    live_scope: main
    on_refusal: clamp

- name: Protect cron's daemon (jobs are reset by the oom_protect role's PAM hook)
  oomguard_oom_score:
    unit: cron.service
    score: -900
    live_scope: main

- name: Make a batch service the kernel's first choice
  oomguard_oom_score:
    unit: exim4.service
    score: 800
    live_scope: all
    ignore_missing: true

- name: A daemon without systemd, by pid file
  oomguard_oom_score:
    pidfile: /run/mydaemon.pid
    score: -500
    live_scope: main

- name: Drop the persisted value again
  oomguard_oom_score:
    unit: cron.service
    state: absent
"""

RETURN = r"""
found:
  description: Whether the target exists (false only with I(ignore_missing=true)).
  returned: always
  type: bool
enforced:
  description: Every selected running process carries I(score) (true when none runs).
  returned: always
  type: bool
reason:
  description: Why the value is not enforced (each refused process), or null.
  returned: always
  type: str
unit:
  description: The normalised unit name, or null for other targets.
  returned: always
  type: str
  sample: ssh.service
score:
  description: The requested value.
  returned: always
  type: int
persist:
  description: The persistence used (oom_score_adjust, sshd_env or none).
  returned: always
  type: str
dropin:
  description: Path of the drop-in, or null when nothing is persisted.
  returned: always
  type: str
  sample: /etc/systemd/system/ssh.service.d/50-oomguard-oom.conf
dropin_changed:
  description: Whether the drop-in was (or in check mode would be) written or removed.
  returned: always
  type: bool
live_changed:
  description: Whether a running process's value really moved (read back).
  returned: always
  type: bool
live:
  description: One entry a selected process.
  returned: always
  type: list
  elements: dict
  contains:
    pid: {description: Process id., type: int}
    comm: {description: Process name., type: str}
    before: {description: Value before., type: int}
    wanted: {description: The requested value., type: int}
    after: {description: Value read back after writing (null when the process exited)., type: int}
    enforced: {description: after equals wanted (or the process exited)., type: bool}
    refused: {description: The kernel refused wanted., type: bool}
    gone: {description: The process exited meanwhile., type: bool}
status:
  description:
    - What the oom_protect role's status file records for this target, pid-free so that it only changes
      with the policy or its enforcement. I(reason) is one sentence for the whole target.
  returned: always
  type: dict
  sample:
    target: ssh.service
    unit: ssh.service
    found: true
    score: -1000
    persist: sshd_env
    dropin: /etc/systemd/system/ssh.service.d/50-oomguard-oom.conf
    enforced: false
    values: [0]
    reason: "kernel refused oom_score_adj -1000: lowering oom_score_adj below a process's oom_score_adj_min needs
      CAP_SYS_RESOURCE (unprivileged container?); the processes keep 0"
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.oomguard_cgroup import cgroup_pids, read_hierarchy
from ansible.module_utils.oomguard_files import UnsafePathError, ensure_dir, read_text, remove_file, write_file_atomic
from ansible.module_utils.oomguard_oomscore import (
    DEFAULT_DROPIN, LIVE_SCOPES, ON_REFUSAL, PERSIST_MODES, PlanError, apply_live, group_of, live_diff_text,
    plan_dropin, plan_live, protected_refusals, render_oom_dropin, resolve_persist, select_pids, status_entry, summarize,
    validate_cgroup_path, validate_score)
from ansible.module_utils.oomguard_procfs import (
    CAP_SYS_RESOURCE, has_capability, list_pids, parse_cgroup, pids_by_name, read_oom_score_adj, read_pidfile,
    read_stat_ids, systemd_cgroup_path, write_oom_score_adj)
from ansible.module_utils.oomguard_systemd import (
    DROPIN_DIR, SYSTEMD_RUNTIME_DIR, UnitNameError, dropin_path, normalize_unit_name, parse_show, systemd_booted, unit_loaded,
    validate_dropin_file_name)

SHOW_PROPERTIES = ("Id", "LoadState", "ActiveState", "MainPID", "ControlGroup", "OOMScoreAdjust")


def argument_spec():
    return dict(
        unit=dict(type="str"),
        pidfile=dict(type="path"),
        process_name=dict(type="str"),
        cgroup_path=dict(type="str"),
        score=dict(type="int"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        persist=dict(type="str", choices=list(PERSIST_MODES)),
        dropin_name=dict(type="str", default=DEFAULT_DROPIN),
        live_scope=dict(type="str", choices=list(LIVE_SCOPES), default="cgroup"),
        on_refusal=dict(type="str", choices=list(ON_REFUSAL), default="warn"),
        ignore_missing=dict(type="bool", default=False),
        daemon_reload=dict(type="bool", default=True),
    )


def build_module():
    targets = ["unit", "pidfile", "process_name", "cgroup_path"]
    return AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[targets],
        required_one_of=[targets],
        required_if=[("state", "present", ["score"])],
        supports_check_mode=True,
    )


def validate_params(params):
    """Normalised parameters, or PlanError naming the argument and the allowed values."""
    result = dict(params)
    kinds = [k for k in ("unit", "pidfile", "process_name", "cgroup_path") if params.get(k) is not None]
    if len(kinds) != 1:
        raise PlanError("unit, pidfile, process_name, cgroup_path: exactly one is allowed, got %s"
                        % (", ".join(kinds) or "none"))
    result["target_kind"] = kind = kinds[0]
    if params.get("state", "present") == "present" or params.get("score") is not None:
        if params.get("score") is None:
            raise PlanError("score: required with state=present; allowed: -1000..1000")
        result["score"] = validate_score(params["score"])
    try:
        if kind == "unit":
            result["unit"] = normalize_unit_name(params["unit"], allowed_suffixes=("service", "scope"))
        validate_dropin_file_name(params.get("dropin_name") or DEFAULT_DROPIN)
    except UnitNameError as exc:
        raise PlanError(str(exc))
    if kind == "cgroup_path":
        result["cgroup_path"] = validate_cgroup_path(params["cgroup_path"])
    if kind == "process_name":
        name = params["process_name"]
        if not name or "/" in name or "\0" in name or "\n" in name:
            raise PlanError("process_name: %r is not allowed; allowed: an exact process name without '/'" % name)
    result["persist"] = resolve_persist(params.get("persist"), kind)
    if params.get("state") == "absent" and kind != "unit":
        raise PlanError("state: absent removes a unit's drop-in and needs unit; allowed with %s: present" % kind)
    return result


def read_processes(pids, proc="/proc"):
    """Identity (pid, ppid, session, comm) and oom_score_adj of each pid still alive."""
    processes = []
    for pid in pids:
        info = read_stat_ids(pid, proc)
        if info is None:
            continue
        info["oom_score_adj"] = read_oom_score_adj(pid, proc)
        if info["oom_score_adj"] is None:
            continue
        processes.append(info)
    return processes


def _matches_cgroup(path, control_group):
    if not path or not control_group:
        return False
    return (path == control_group or path.startswith(control_group + "/") or path.endswith(control_group)
            or (control_group + "/") in path)


def pids_in_cgroup(control_group, proc="/proc"):
    """Pids of a cgroup and its children: from the hierarchy, else from every /proc/<pid>/cgroup.

    The fallback covers containers whose view of the cgroup mount differs from the
    paths systemd reports.
    """
    hierarchy = read_hierarchy(proc)
    pids = cgroup_pids(hierarchy.get("systemd_root"), control_group)
    if pids:
        return pids
    found = []
    for pid in list_pids(proc):
        text = read_text(os.path.join(proc, str(pid), "cgroup"))
        if text and _matches_cgroup(systemd_cgroup_path(parse_cgroup(text)), control_group):
            found.append(pid)
    return found


def gather_unit(module, unit):
    """systemctl show for unit: (found, show dict)."""
    systemctl = module.get_bin_path("systemctl", required=True)
    argv = [systemctl, "show"]
    for prop in SHOW_PROPERTIES:
        argv.extend(["-p", prop])
    argv.extend(["--", unit])
    rc, out, err = module.run_command(argv, environ_update={"LANG": "C", "LC_ALL": "C"})
    if rc != 0:
        module.fail_json(msg="systemctl show %s failed" % unit, rc=rc, stdout=out, stderr=err)
    show = parse_show(out)
    return unit_loaded(show), show


def gather_targets(params, show=None, proc="/proc"):
    """(processes, anchors) for the target: the candidates and the main processes."""
    kind = params["target_kind"]
    if kind == "unit":
        main_pid = int(show.get("MainPID") or 0)
        pids = pids_in_cgroup(show.get("ControlGroup"), proc) if show.get("ControlGroup") else []
        if main_pid and main_pid not in pids:
            pids.append(main_pid)
        return read_processes(pids, proc), [main_pid] if main_pid else []
    if kind == "cgroup_path":
        return read_processes(pids_in_cgroup(params["cgroup_path"], proc), proc), []
    if kind == "pidfile":
        pid = read_pidfile(params["pidfile"])
        roots = [pid] if pid and os.path.isdir(os.path.join(proc, str(pid))) else []
    else:
        roots = pids_by_name(params["process_name"], proc)
    if not roots:
        return [], []
    everybody = read_processes(list_pids(proc), proc)
    return group_of(everybody, roots), roots


def run(module, params, proc="/proc", dropin_dir=DROPIN_DIR, systemd_runtime_dir=SYSTEMD_RUNTIME_DIR):
    """Plan and apply; returns the result dict (the caller exits or fails with it)."""
    kind = params["target_kind"]
    result = dict(changed=False, found=True, enforced=True, reason=None, unit=params.get("unit"),
                  score=params.get("score"), persist=params["persist"], dropin=None, dropin_changed=False,
                  live_changed=False, live=[], diff=[])
    show = None
    if kind == "unit":
        if not systemd_booted(systemd_runtime_dir):
            module.fail_json(msg="unit: systemd is not running on this host; allowed here: pidfile, "
                                 "process_name or cgroup_path")
        found, show = gather_unit(module, params["unit"])
        if not found:
            if params["ignore_missing"]:
                result.update(found=False)
                return result
            module.fail_json(msg="unit: %s does not exist (LoadState=%s); allowed: an installed unit, or "
                                 "ignore_missing=true" % (params["unit"], show.get("LoadState")))
        if params["persist"] == "sshd_env" and show.get("OOMScoreAdjust") not in (None, "", "0"):
            module.warn("%s sets OOMScoreAdjust=%s elsewhere: every SSH session inherits it; remove it and "
                        "rely on SSHD_OOM_ADJUST" % (params["unit"], show.get("OOMScoreAdjust")))

    # What the live change would touch, before anything is written: a plan that raises a
    # protected process (PID 1, sshd's listener, cron) is refused whole.
    if params["state"] == "present":
        processes, anchors = gather_targets(params, show, proc)
        plan = plan_live(processes, select_pids(processes, params["live_scope"], anchors), params["score"])
        refusals = protected_refusals(processes, plan, params.get("unit"), params["score"])
        if refusals:
            module.fail_json(msg="refusing to raise a protected process, nothing was changed: %s; allowed: a "
                                 "target that leaves them out (live_scope main or cgroup, a narrower "
                                 "process_name or cgroup_path)" % "; ".join(refusals), refused=refusals)

    # Persisted policy.
    dropin_plan = None
    if kind == "unit" and (params["persist"] != "none" or params["state"] == "absent"):
        path = dropin_path(params["unit"], params["dropin_name"], dropin_dir)
        desired = None if params["state"] == "absent" else render_oom_dropin(params["score"], params["persist"])
        dropin_plan = plan_dropin(read_text(path), desired)
        result.update(dropin=path, dropin_changed=dropin_plan["changed"])
        result["diff"].append(dict(before_header=path, after_header=path, before=dropin_plan["before"],
                                   after=dropin_plan["after"]))
        if dropin_plan["changed"] and not module.check_mode:
            if dropin_plan["action"] == "write":
                try:
                    ensure_dir(os.path.dirname(path))
                    write_file_atomic(path, dropin_plan["after"], mode=0o644)
                except UnsafePathError as exc:
                    module.fail_json(msg=str(exc), changed=False)
            else:
                remove_file(path)
            if params["daemon_reload"]:
                systemctl = module.get_bin_path("systemctl", required=True)
                rc, out, err = module.run_command([systemctl, "daemon-reload"],
                                                  environ_update={"LANG": "C", "LC_ALL": "C"})
                if rc != 0:
                    module.fail_json(msg="systemctl daemon-reload failed", rc=rc, stdout=out, stderr=err,
                                     changed=True)

    # Live values.
    results = []
    if params["state"] == "present":
        if kind != "unit" and not processes:
            if params["ignore_missing"]:
                result.update(found=False)
                return result
            module.fail_json(msg="%s: no running process matches %r; allowed: a running target, or "
                                 "ignore_missing=true" % (kind, params[kind]))
        results = apply_live(
            plan, params["on_refusal"],
            write=lambda pid, value: write_oom_score_adj(pid, value, proc),
            read=lambda pid: read_oom_score_adj(pid, proc),
            check_mode=module.check_mode,
            can_lower=has_capability(CAP_SYS_RESOURCE, proc=proc))
        result["diff"].append(dict(before_header="live oom_score_adj", after_header="live oom_score_adj",
                                   before=live_diff_text(results, "before"), after=live_diff_text(results, "after")))

    summary = summarize(results, dropin_plan, params["on_refusal"])
    result.update(changed=summary["changed"], enforced=summary["enforced"], reason=summary["reason"],
                  live_changed=summary["live_changed"], live=results)
    if summary["refused"] and params["on_refusal"] != "fail":
        module.warn(summary["reason"])
    if summary["failed"]:
        result["failed"] = True
        result["msg"] = "on_refusal=fail: %s" % summary["reason"]
    return result


def main():
    module = build_module()
    try:
        params = validate_params(module.params)
    except PlanError as exc:
        module.fail_json(msg=str(exc))
    result = run(module, params)
    result["status"] = status_entry(result, params.get(params["target_kind"]))
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
