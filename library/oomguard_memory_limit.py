#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: oomguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: oomguard_memory_limit
short_description: Bound a systemd service's or slice's memory, persistently and live
version_added: "0.1.0"
description:
  - Writes C(/etc/systemd/system/<unit>.d/50-oomguard-memory.conf) with C(MemoryAccounting=yes) and the
    requested C(MemoryHigh=), C(MemoryMax=), C(MemorySwapMax=), C(MemoryLow=), C(MemoryMin=) (atomically,
    root:root 0644), reloads systemd, and applies the same settings to the running unit with
    C(systemctl set-property --runtime) so the unit is never restarted (its MainPID is kept).
  - Then reads the settings back from the unit's cgroup files and reports which are in effect
    (C(applied)), which this host cannot express (C(unsupported)) and which could not be enforced
    (C(not_enforceable)), each with a reason. The cgroup hierarchy is detected from the host's
    C(/proc/self/mounts), never from facts.
  - On cgroup v2 every setting has its own file (C(memory.high), C(memory.max), C(memory.swap.max),
    C(memory.low), C(memory.min)) and systemd writes them.
  - On cgroup v1 only C(max) is applied by systemd (C(memory.limit_in_bytes)). C(swap_max) is written by
    this module to C(memory.memsw.limit_in_bytes) as max + swap_max, because v1 limits memory and swap
    together; it needs a finite C(max) and swap accounting (the file is missing with C(swapaccount=0)).
    C(high) is written to C(memory.soft_limit_in_bytes) and reported as APPROXIMATE (C(exact=false))
    because a v1 soft limit is only a reclaim target under host-wide pressure and does not throttle like v2
    C(memory.high). systemd does not manage these two files on v1, so they are live-only
    (C(persistent=false)), so re-run the module after the unit restarts. C(low) and C(min) do not exist on
    v1 and are returned in C(unsupported). The drop-in still carries every setting, so the unit gets
    them all when the host moves to cgroup v2.
  - Where the memory cgroup is read-only (containers) the drop-in is still written and C(enforced=false)
    is returned with the reason.
  - Refuses plans that would hurt the host, before anything is written or systemd asked; see I(plan),
    I(reserve) and I(floors). Sizes are ASCII digits (fullwidth or other non-ASCII digits are refused) with an optional K/M/G/T unit, a
    whole number of bytes (a float such as C(1.5) is refused rather than truncated), or C(N%); at most
    systemd's uint64 range.
  - A setting left out is not managed (it is neither written to the drop-in nor changed live). To clear a
    limit use C(infinity) for high, max and swap_max, and C(0) for low and min.
author:
  - oomguard contributors
options:
  name:
    description:
      - The unit, a C(.service) or a C(.slice). A name without a suffix gets C(.service).
      - It must be known to systemd (C(LoadState=loaded)); unknown units are refused.
    type: str
    required: true
    aliases: [unit]
  high:
    description:
      - C(MemoryHigh=), above it the unit is throttled and reclaimed hard. Bytes, a size with a binary
        C(K)/C(M)/C(G)/C(T) suffix, C(N%) of the host's physical RAM, or C(infinity).
      - Must not be above I(max).
    type: raw
  max:
    description:
      - C(MemoryMax=), the hard limit; above it the kernel OOM-kills inside the unit's cgroup.
        Same forms as I(high).
    type: raw
  swap_max:
    description:
      - C(MemorySwapMax=), swap the unit may use. Same forms as I(high). A host without swap is fine.
    type: raw
  low:
    description:
      - C(MemoryLow=), best-effort protection from reclaim. Bytes, K/M/G/T, or C(N%); C(0) clears it.
        C(infinity) is refused.
    type: raw
  min:
    description:
      - C(MemoryMin=), hard protection from reclaim. Same forms as I(low).
    type: raw
  plan:
    description:
      - Every other unit and slice managed together with this one (the memory_limits role passes its whole
        list), each a dict with C(name) and any of the five settings.
      - The low/min protections of the whole plan (this unit included) are summed and must not exceed the
        host's RAM minus I(reserve). Nested units are counted as if disjoint (conservative).
      - Only this module's I(name) is changed; the others are only checked.
      - Entries may also carry C(optional) and C(origin) (set by the memory_limits role for the login
        path's reservations); C(origin) is named in a budget refusal, both are otherwise ignored here.
    type: list
    elements: dict
    default: []
  reserve:
    description:
      - RAM that all low/min protections together must leave unprotected. Same forms as I(low).
    type: raw
    default: 512M
  floors:
    description:
      - Lowest allowed I(max) and I(high) for units that must stay reachable, a dict of unit name to size.
      - When not given, C(ssh.service) and C(sshd.service) 128M, C(cron.service) and C(crond.service)
        64M, C(system.slice) 512M. An empty dict disables these floors.
      - Whatever this says, no unit's I(max) or I(high) may be below 16M (C(0) or a few bytes would leave
        the unit unable to start).
    type: dict
  live:
    description:
      - Apply to the running unit with C(systemctl set-property --runtime) and read the cgroup back.
        When false only the drop-in is written (systemd applies it at the next start).
    type: bool
    default: true
  optional:
    description:
      - When the unit is not on this host (C(LoadState) not C(loaded)), report it (C(found=false),
        C(enforced=false), every setting in C(not_enforceable) with the reason) and write nothing,
        instead of failing. The plan is still checked as a whole.
    type: bool
    default: false
notes:
  - C(set-property --runtime) also writes systemd's own runtime drop-ins under
    C(/run/systemd/system.control/), which take precedence over C(/etc) until reboot; the module keeps
    them equal to its drop-in on every run.
  - Values read back from the cgroup are compared after rounding down to whole pages, as the kernel does.
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
requirements:
  - systemd as PID 1
"""

EXAMPLES = r"""
- name: Cap a leaking worker; keep it throttled before the hard limit
  oomguard_memory_limit:
    name: worker.service
    high: 768M
    max: 1G
    swap_max: 0

- name: Keep interactive users from starving system services
  oomguard_memory_limit:
    name: user.slice
    max: 60%

- name: Reserve memory for system services (checked against the whole plan)
  oomguard_memory_limit:
    name: system.slice
    low: 1G
    plan:
      - {name: postgresql.service, min: 2G}

- name: Reserve memory for journald where it exists (a login-path unit)
  oomguard_memory_limit:
    name: systemd-journald.service
    min: 64M
    optional: true

- name: Clear a limit
  oomguard_memory_limit:
    name: worker.service
    max: infinity
"""

RETURN = r"""
unit:
  description: The unit name, with its suffix.
  returned: always
  type: str
  sample: worker.service
found:
  description: False when an I(optional) unit is not on this host (nothing was written).
  returned: always
  type: bool
dropin:
  description: Path of the drop-in.
  returned: always
  type: str
  sample: /etc/systemd/system/worker.service.d/50-oomguard-memory.conf
settings:
  description: The requested settings in bytes (C(infinity) for no limit; null when not managed).
  returned: always
  type: dict
  sample: {high: null, max: 67108864, swap_max: null, low: null, min: null}
hierarchy:
  description: The host's cgroup layout (C(mode) unified/hybrid/legacy, C(memory) v2/v1/null).
  returned: always
  type: dict
  sample: {mode: unified, memory: v2}
cgroup:
  description: The unit's directory in the memory controller's hierarchy (null when it has no cgroup).
  returned: always
  type: str
  sample: /sys/fs/cgroup/system.slice/worker.service
applied:
  description:
    - Settings read back from the cgroup as requested. Each has C(setting), C(file), C(value), C(readback),
      C(via) (systemd or direct), C(exact) (false for v1 high), C(persistent) and C(note).
  returned: always
  type: list
  elements: dict
unsupported:
  description: Requested settings this host's cgroup version cannot express, with C(reason).
  returned: always
  type: list
  elements: dict
  sample: [{setting: low, reason: "cgroup v1 has no memory.low (...)"}]
not_enforceable:
  description: Requested settings not in effect in the running cgroup, with C(reason) (read-only cgroup,
    unit not running, the kernel refused the value, live disabled).
  returned: always
  type: list
  elements: dict
enforced:
  description: True when every requested setting reads back from the unit's cgroup as requested.
  returned: always
  type: bool
reason:
  description: Why C(enforced) is false (or where the settings were read back).
  returned: always
  type: str
main_pid:
  description: The service's MainPID before and after (the module never restarts the unit).
  returned: always
  type: dict
  sample: {before: 812, after: 812}
errors:
  description: Why the plan was refused (on failure only).
  returned: failed
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.oomguard_cgroup import (
    compare_targets,
    memory_targets,
    page_rounded,
    read_hierarchy,
    read_memory_files,
    unit_memory_dir,
    v1_swap_accounting,
    write_memory_file,
)
from ansible.module_utils.oomguard_files import UnsafePathError, ensure_dir, read_text, write_file_atomic
from ansible.module_utils.oomguard_memplan import (
    DEFAULT_RESERVE,
    DROPIN_NAME,
    SETTINGS,
    desired_show,
    normalize_entries,
    properties_text,
    property_differences,
    render_memory_dropin,
    set_property_args,
    show_properties,
    validate_plan,
)
from ansible.module_utils.oomguard_memstat import read_meminfo
from ansible.module_utils.oomguard_sizes import INFINITY
from ansible.module_utils.oomguard_systemd import (
    DROPIN_DIR,
    UnitNameError,
    dropin_path,
    normalize_unit_name,
    parse_show,
)

ENV = {"LANG": "C", "LC_ALL": "C"}


def build_argument_spec():
    size = dict(type="raw")
    return dict(
        name=dict(type="str", required=True, aliases=["unit"]),
        high=dict(size),
        max=dict(size),
        swap_max=dict(size),
        low=dict(size),
        min=dict(size),
        plan=dict(type="list", elements="dict", default=[]),
        reserve=dict(type="raw", default=DEFAULT_RESERVE),
        floors=dict(type="dict"),
        live=dict(type="bool", default=True),
        optional=dict(type="bool", default=False),
    )


def build_module():
    return AnsibleModule(argument_spec=build_argument_spec(), supports_check_mode=True)


class Systemctl:
    """The few systemctl calls the module makes, as argument lists with LANG=C."""

    def __init__(self, module):
        self.module = module
        self.path = module.get_bin_path("systemctl", required=True)

    def run(self, args):
        return self.module.run_command([self.path] + args, environ_update=ENV)

    def must(self, args):
        rc, out, err = self.run(args)
        if rc != 0:
            self.module.fail_json(msg="systemctl %s failed" % " ".join(args), rc=rc, stdout=out, stderr=err)
        return out

    def show(self, unit):
        props = ["LoadState", "ActiveState", "ControlGroup", "MainPID"] + show_properties()
        args = ["show", unit]
        for prop in props:
            args.extend(["-p", prop])
        return parse_show(self.must(args))


def plan_from_params(params):
    """(unit, entries) with the unit's name validated; entries = plan with this unit last."""
    unit = normalize_unit_name(params["name"], allowed_suffixes=("service", "slice"), argument="name")
    this = dict((key, params[key]) for key in SETTINGS)
    this["name"] = unit
    others, errors = normalize_entries(params["plan"], argument="plan")
    if errors:
        raise UnitNameError("; ".join(errors))
    # Who added protection to this unit (the role's login path), for the budget refusal.
    origins = [entry["origin"] for entry in others if entry["name"] == unit and entry.get("origin")]
    if origins:
        this["origin"] = origins[0]
    entries = [entry for entry in others if entry["name"] != unit] + [this]
    return unit, entries


def _direct_order(direct, current):
    """v1 files written directly: those raised go before set-property, lowered ones after.

    The kernel keeps memory.memsw.limit_in_bytes >= memory.limit_in_bytes, so memsw is
    raised before systemd raises the limit and lowered after systemd lowers it.
    """
    before, after = [], []
    for target in direct:
        now = current.get(target["file"])
        raising = now is not None and now != INFINITY and (target["value"] == INFINITY or target["value"] > now)
        (before if raising else after).append(target)
    return before, after


def _swap_lowered_first(targets, current):
    """cgroup v2: the memory.swap.max target when it is being lowered, else [].

    systemd writes memory.max before memory.swap.max: a unit over its new max would first be
    reclaimed into swap, and stay there, instead of being OOM-killed inside its cgroup as
    swap_max asks. Written ahead, the reclaim of the new max cannot use swap.
    """
    for target in targets:
        if target["file"] != "memory.swap.max":
            continue
        now = current.get(target["file"])
        if now is not None and target["value"] != INFINITY and (now == INFINITY or target["value"] < now):
            return [target]
    return []


def _write_direct(targets, directory, version, failures):
    for target in targets:
        try:
            write_memory_file(directory, target["file"], target["value"], version)
        except (IOError, OSError) as exc:
            failures[target["file"]] = "writing %s failed: %s" % (target["file"], exc)


def run(module, proc="/proc", dropin_dir=DROPIN_DIR, page_size=None):
    params = module.params
    page_size = page_size or os.sysconf("SC_PAGE_SIZE")
    try:
        unit, entries = plan_from_params(params)
    except UnitNameError as exc:
        module.fail_json(msg=str(exc))
    if all(params[key] is None for key in SETTINGS):
        module.fail_json(msg="at least one of %s is required ('infinity' clears high/max/swap_max, 0 clears low/min)"
                         % ", ".join(SETTINGS))
    total = read_meminfo(proc).get("MemTotal")
    parsed, errors = validate_plan(entries, total, params["reserve"], params["floors"])
    if errors:
        module.fail_json(msg="refusing the memory plan, nothing was changed: %s" % "; ".join(errors), errors=errors)
    settings = dict(parsed)[unit]

    systemctl = Systemctl(module)
    before_show = systemctl.show(unit)
    path = dropin_path(unit, DROPIN_NAME, dropin_dir)
    if before_show.get("LoadState") != "loaded" and params["optional"]:
        return _absent(unit, path, settings, read_hierarchy(proc), before_show.get("LoadState"))
    if before_show.get("LoadState") != "loaded":
        module.fail_json(msg="name: %s is not a unit systemd knows (LoadState=%s); allowed: an existing "
                             ".service or .slice" % (unit, before_show.get("LoadState") or "unknown"),
                         unit=unit)

    old = read_text(path)
    new = render_memory_dropin(unit, settings)
    dropin_changed = old != new
    live = params["live"]

    hierarchy = read_hierarchy(proc)
    version = hierarchy["memory"]
    accounting = v1_swap_accounting(hierarchy["memory_root"]) if version == "v1" else True
    targets, unsupported = memory_targets(version, settings, swap_accounting=accounting)
    direct = [target for target in targets if target["via"] == "direct"]

    result = dict(changed=False, found=True, unit=unit, dropin=path, hierarchy=dict(mode=hierarchy["mode"], memory=version),
                  settings=settings, unsupported=unsupported)
    result["diff"] = [
        dict(before_header=path, after_header=path, before=old or "", after=new),
        dict(before_header="%s (live systemd properties)" % unit, after_header="%s (live systemd properties)" % unit,
             before=properties_text(before_show, settings),
             after=properties_text(desired_show(settings) if live else before_show, settings)),
    ]

    def memory_dir(show):
        return unit_memory_dir(hierarchy, show.get("ControlGroup"))

    files = [t["file"] for t in targets]
    directory = memory_dir(before_show)
    readback_before = read_memory_files(directory, files)
    failures = {}

    def mismatched(readback, wanted):
        return [t for t in wanted if readback.get(t["file"]) != page_rounded(t["value"], page_size)]

    if module.check_mode:
        props_changed = live and bool(property_differences(before_show, settings))
        readback_changed = live and directory is not None and any(
            readback_before.get(t["file"]) is not None and os.access(os.path.join(directory, t["file"]), os.W_OK)
            for t in mismatched(readback_before, targets))
        after_show = before_show
        readback = readback_before
    else:
        if live and version == "v2" and directory:
            # Best effort: systemd writes the same value right after; its result is what counts.
            _write_direct(_swap_lowered_first(targets, readback_before), directory, version, {})
        if dropin_changed:
            try:
                ensure_dir(os.path.dirname(path))
                write_file_atomic(path, new, mode=0o644)
            except UnsafePathError as exc:
                module.fail_json(msg=str(exc), unit=unit, changed=False)
            systemctl.must(["daemon-reload"])
        mid_show = systemctl.show(unit) if dropin_changed else before_show
        if live:
            directory = memory_dir(mid_show)
            current = read_memory_files(directory, files)
            raise_first, lower_after = _direct_order(mismatched(current, direct), current)
            if directory:
                _write_direct(raise_first, directory, version, failures)
            via_systemd = [t for t in targets if t["via"] == "systemd"]
            # daemon-reload loads the properties but need not write the cgroup: set them whenever
            # systemd's view or the cgroup differs from the plan.
            if property_differences(mid_show, settings) or (directory and mismatched(current, via_systemd)):
                rc, out, err = systemctl.run(["set-property", "--runtime", unit] + set_property_args(settings))
                if rc != 0:
                    failures["set-property"] = "systemctl set-property --runtime failed (rc=%d): %s" % (
                        rc, (err or out).strip())
            if directory:
                _write_direct(lower_after, directory, version, failures)
        after_show = systemctl.show(unit)
        directory = memory_dir(after_show)
        props_changed = properties_text(before_show, settings) != properties_text(after_show, settings)
        readback = read_memory_files(directory, files)
        readback_changed = readback != readback_before

    applied, not_enforceable = compare_targets(targets, readback, page_size)
    if not live:
        not_enforceable = [dict(t, reason="live=false: only the drop-in is managed") for t in not_enforceable]
    elif directory is None:
        not_enforceable = [dict(t, reason="%s is not running (ActiveState=%s, no cgroup): systemd applies the "
                                          "drop-in when it starts%s" % (
                                              unit, after_show.get("ActiveState"),
                                              "" if t["via"] == "systemd" else
                                              "; this v1 file is written directly, re-run after the start"))
                           for t in not_enforceable]
    elif not os.path.isdir(directory):
        not_enforceable = [dict(t, reason="no memory cgroup %s for the unit: the memory controller is read-only "
                                          "or not delegated here (container?)" % directory)
                           for t in not_enforceable]
    else:
        for entry in not_enforceable:
            extra = failures.get(entry["file"]) or failures.get("set-property")
            if extra:
                entry["reason"] = "%s; %s" % (entry["reason"], extra)

    reasons = ["%s: %s" % (t["setting"], t["reason"]) for t in unsupported + not_enforceable]
    enforced = not reasons and bool(targets)
    result.update(
        changed=bool(dropin_changed or props_changed or readback_changed),
        cgroup=directory,
        applied=applied,
        not_enforceable=not_enforceable,
        enforced=enforced,
        reason=("every setting reads back from %s" % directory) if enforced else "; ".join(reasons),
        main_pid=dict(before=_int(before_show.get("MainPID")), after=_int(after_show.get("MainPID"))),
    )
    return result


def _absent(unit, path, settings, hierarchy, load_state):
    """The report for an optional unit this host does not have: nothing written, nothing enforced."""
    reason = "%s is not on this host (LoadState=%s): skipped, nothing written (optional)" % (
        unit, load_state or "unknown")
    return dict(changed=False, found=False, unit=unit, dropin=path, settings=settings,
                hierarchy=dict(mode=hierarchy["mode"], memory=hierarchy["memory"]), cgroup=None, applied=[],
                unsupported=[], not_enforceable=[dict(setting=name, reason=reason) for name in SETTINGS
                                                 if settings.get(name) is not None],
                enforced=False, reason=reason, main_pid=dict(before=None, after=None), diff=[])


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def main():
    module = build_module()
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
