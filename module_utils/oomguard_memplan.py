# -*- coding: utf-8 -*-
# Copyright: oomguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure planning of per-unit memory limits: settings -> drop-in, budget and safety checks.

Standard library only, no I/O. Used by the oomguard_memory_limit module and by the
oomguard filter plugin (the memory_limits role's preflight), so a plan is refused by the
same rules on the controller and on the target.

Settings (systemd.resource-control(5)):
  high      MemoryHigh=     throttle and reclaim above this
  max       MemoryMax=      hard limit: the OOM killer acts inside the cgroup above it
  swap_max  MemorySwapMax=  swap the cgroup may use
  low       MemoryLow=      best-effort protection from reclaim
  min       MemoryMin=      hard protection from reclaim
high/max/swap_max are cleared with 'infinity'; low/min are cleared with 0 ('infinity'
would protect all of the unit's memory from reclaim, which is refused).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

try:
    from ansible.module_utils.oomguard_sizes import INFINITY, SizeError, format_size, human_size, parse_size
    from ansible.module_utils.oomguard_systemd import UnitNameError, normalize_unit_name, render_dropin
except ImportError:  # installed beside an agent, outside Ansible
    from oomguard_sizes import INFINITY, SizeError, format_size, human_size, parse_size
    from oomguard_systemd import UnitNameError, normalize_unit_name, render_dropin

SETTINGS = ("high", "max", "swap_max", "low", "min")
PROPERTIES = {
    "high": "MemoryHigh",
    "max": "MemoryMax",
    "swap_max": "MemorySwapMax",
    "low": "MemoryLow",
    "min": "MemoryMin",
}
LIMITS = ("high", "max", "swap_max")
PROTECTIONS = ("low", "min")

DROPIN_NAME = "50-oomguard-memory.conf"
SECTIONS = {"service": "Service", "slice": "Slice"}

# A max (or high) below these starves what an operator needs to reach and repair the
# host: the ssh daemon and its sessions, cron, and system.slice where both live.
DEFAULT_FLOORS = {
    "ssh.service": "128M",
    "sshd.service": "128M",
    "cron.service": "64M",
    "crond.service": "64M",
    "system.slice": "512M",
}
# RAM kept out of all low/min protections together (kernel, page cache, everything unprotected).
DEFAULT_RESERVE = "512M"


class PlanError(ValueError):
    """A plan that is malformed or would hurt the host."""


def section_for(unit):
    """[Service] for services, [Slice] for slices."""
    suffix = unit.rpartition(".")[2]
    if suffix not in SECTIONS:
        raise PlanError("%s: memory limits are managed for .service and .slice units only" % unit)
    return SECTIONS[suffix]


def parse_settings(entry, total_bytes, where="unit"):
    """{setting: bytes | INFINITY | None} from a dict of size strings; raises PlanError."""
    result = {}
    unknown = sorted(set(entry) - set(SETTINGS) - {"name"})
    if unknown:
        raise PlanError("%s: unknown setting(s) %s; allowed: %s" % (where, ", ".join(unknown), ", ".join(SETTINGS)))
    for name in SETTINGS:
        value = entry.get(name)
        if value is None:
            result[name] = None
            continue
        try:
            result[name] = parse_size(value, total_bytes=total_bytes, allow_infinity=name in LIMITS,
                                      name="%s %s" % (where, name))
        except SizeError as exc:
            if name in PROTECTIONS and str(value).strip().lower() in ("infinity", "max", "unlimited"):
                raise PlanError("%s %s: 'infinity' would protect all of the unit's memory from reclaim; "
                                "use a size, or 0 to clear" % (where, name))
            raise PlanError(str(exc))
    return result


def requested(settings):
    return [name for name in SETTINGS if settings.get(name) is not None]


def _bigger(a, b):
    """a > b with INFINITY above every number."""
    if a == INFINITY:
        return b != INFINITY
    if b == INFINITY:
        return False
    return a > b


def _show(value):
    return INFINITY if value == INFINITY else "%s (%d bytes)" % (human_size(value), value)


def unit_errors(unit, settings, floors_bytes):
    """Contradictions and unsafe limits within one unit's settings (list of messages)."""
    errors = []
    limit = settings.get("max")
    if limit is not None:
        for name in ("high", "low", "min"):
            value = settings.get(name)
            if value is not None and _bigger(value, limit):
                errors.append("%s: %s %s is above max %s" % (unit, name, _show(value), _show(limit)))
    floor = floors_bytes.get(unit)
    if floor is not None:
        for name in ("max", "high"):
            value = settings.get(name)
            if value is not None and value != INFINITY and value < floor:
                errors.append("%s: %s %s is below the safe floor %s for this unit (the floors option)"
                              % (unit, name, _show(value), _show(floor)))
    return errors


def protection(settings):
    """Bytes one unit keeps from reclaim: the larger of min and low."""
    values = [settings.get(name) or 0 for name in PROTECTIONS]
    return max(values)


def budget_errors(plan, total_bytes, reserve_bytes):
    """low/min summed across the whole plan must leave reserve_bytes of RAM unprotected.

    plan: [(unit, settings)]. Nested units (a service inside a protected slice) are
    counted as if disjoint: conservative, a plan is refused rather than over-committed.
    """
    total = sum(protection(settings) for _unit, settings in plan)
    budget = max(total_bytes - reserve_bytes, 0)
    if total > budget:
        parts = ", ".join("%s %s" % (unit, human_size(protection(settings)))
                          for unit, settings in plan if protection(settings))
        return ["low/min protections sum to %s (%s), over RAM %s minus reserve %s = %s"
                % (_show(total), parts, _show(total_bytes), _show(reserve_bytes), _show(budget))]
    return []


def parse_floors(floors, total_bytes):
    result = {}
    for unit, value in (floors or {}).items():
        try:
            result[unit] = parse_size(value, total_bytes=total_bytes, allow_infinity=False,
                                      name="floors[%s]" % unit)
        except SizeError as exc:
            raise PlanError(str(exc))
    return result


def normalize_entries(entries, default_suffix="service", argument="name"):
    """Entries with their unit names validated and suffixed (ssh -> ssh.service).

    Returns (entries, errors); entries that fail validation are dropped.
    """
    result = []
    errors = []
    for index, entry in enumerate(entries or []):
        if not isinstance(entry, dict):
            errors.append("%s[%d]: each entry must be a dict with name and settings, got %r" % (argument, index, entry))
            continue
        try:
            name = normalize_unit_name(entry.get("name"), default_suffix=default_suffix,
                                       allowed_suffixes=tuple(SECTIONS), argument="%s[%d].name" % (argument, index))
        except UnitNameError as exc:
            errors.append(str(exc))
            continue
        result.append(dict(entry, name=name))
    return result, errors


def validate_plan(entries, total_bytes, reserve=DEFAULT_RESERVE, floors=None):
    """Check a whole plan (every unit and slice managed together).

    entries: [{name, high, max, swap_max, low, min}] with unit names already normalised.
    Returns (parsed, errors): parsed is [(name, settings)] for the entries that parsed,
    errors a list of messages; a plan with errors must not be applied at all.
    """
    errors = []
    if not total_bytes:
        return [], ["the host's RAM is unknown: cannot check the plan"]
    floors = DEFAULT_FLOORS if floors is None else floors
    try:
        floors_bytes = parse_floors(floors, total_bytes)
        reserve_bytes = parse_size(reserve, total_bytes=total_bytes, allow_infinity=False, name="reserve")
    except (PlanError, SizeError) as exc:
        return [], [str(exc)]
    parsed = []
    seen = set()
    for entry in entries:
        name = entry.get("name")
        if not name:
            errors.append("every entry needs a name: %r" % (entry,))
            continue
        if name in seen:
            errors.append("%s is listed more than once" % name)
            continue
        seen.add(name)
        try:
            settings = parse_settings(entry, total_bytes, where=name)
        except PlanError as exc:
            errors.append(str(exc))
            continue
        errors.extend(unit_errors(name, settings, floors_bytes))
        parsed.append((name, settings))
    errors.extend(budget_errors(parsed, total_bytes, reserve_bytes))
    return parsed, errors


def systemd_value(value):
    """A setting as written in a drop-in or to set-property: 64M, 1073741824, infinity."""
    return format_size(value)


def render_memory_dropin(unit, settings):
    """The 50-oomguard-memory.conf drop-in for a unit: MemoryAccounting=yes and the settings."""
    lines = [("MemoryAccounting", "yes")]
    for name in requested(settings):
        lines.append((PROPERTIES[name], systemd_value(settings[name])))
    comment = ("Managed by oomguard (oomguard_memory_limit): memory limits for %s.\n"
               "Local changes are overwritten." % unit)
    return render_dropin([(section_for(unit), lines)], comment=comment)


def show_properties():
    """The `systemctl show -p` properties needed to plan and report."""
    return ["MemoryAccounting"] + [PROPERTIES[name] for name in SETTINGS]


def show_value(value):
    """How `systemctl show` prints a setting: bytes, or 'infinity'."""
    return INFINITY if value == INFINITY else "%d" % int(value)


def property_differences(show, settings):
    """Settings whose live systemd property (from `systemctl show`) differs from the plan."""
    diffs = [name for name in requested(settings)
             if show.get(PROPERTIES[name]) != show_value(settings[name])]
    if requested(settings) and show.get("MemoryAccounting") != "yes":
        diffs.insert(0, "accounting")
    return diffs


def set_property_args(settings):
    """Arguments after `systemctl set-property --runtime UNIT`."""
    args = ["MemoryAccounting=yes"]
    for name in requested(settings):
        args.append("%s=%s" % (PROPERTIES[name], systemd_value(settings[name])))
    return args


def properties_text(show, settings):
    """Property lines for the diff's before/after (only the managed ones)."""
    keys = ["MemoryAccounting"] + [PROPERTIES[name] for name in requested(settings)]
    return "".join("%s=%s\n" % (key, show.get(key, "")) for key in keys)


def desired_show(settings):
    """What `systemctl show` should print once the plan is live."""
    result = {"MemoryAccounting": "yes"}
    for name in requested(settings):
        result[PROPERTIES[name]] = show_value(settings[name])
    return result
