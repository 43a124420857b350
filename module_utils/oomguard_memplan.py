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
    from ansible.module_utils.oomguard_cgroup import MEMORY_PROPERTIES as PROPERTIES, MEMORY_SETTINGS as SETTINGS
    from ansible.module_utils.oomguard_sizes import INFINITY, SizeError, format_size, human_size, parse_size
    from ansible.module_utils.oomguard_systemd import PlanError, UnitNameError, normalize_unit_name, render_dropin
except ImportError:  # installed beside an agent, outside Ansible
    from oomguard_cgroup import MEMORY_PROPERTIES as PROPERTIES, MEMORY_SETTINGS as SETTINGS
    from oomguard_sizes import INFINITY, SizeError, format_size, human_size, parse_size
    from oomguard_systemd import PlanError, UnitNameError, normalize_unit_name, render_dropin

LIMITS = ("high", "max", "swap_max")
PROTECTIONS = ("low", "min")
# Keys a plan entry may carry besides its settings (merge_login_path() sets them):
#   optional  the unit may be missing on the host: reported, not refused (login-path units)
#   origin    who added protection to the entry (named in the budget refusal)
META_KEYS = ("name", "optional", "origin")

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
# No unit's max or high below this, whatever the floors option says (the per-unit floors
# above come on top): 0 or a few bytes (MemoryMax=0 on dbus.service, a float 1.5 read as
# 1) leaves a unit that cannot even start, and takes down whatever depends on it.
MIN_LIMIT = "16M"
MIN_LIMIT_BYTES = 16 * 1024 * 1024
# RAM kept out of all low/min protections together (kernel, page cache, everything unprotected).
DEFAULT_RESERVE = "512M"


def section_for(unit):
    """[Service] for services, [Slice] for slices."""
    suffix = unit.rpartition(".")[2]
    if suffix not in SECTIONS:
        raise PlanError("%s: memory limits are managed for .service and .slice units only" % unit)
    return SECTIONS[suffix]


def parse_settings(entry, total_bytes, where="unit"):
    """{setting: bytes | INFINITY | None} from a dict of size strings; raises PlanError."""
    result = {}
    unknown = sorted(set(entry) - set(SETTINGS) - set(META_KEYS))
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
    for name in ("max", "high"):
        value = settings.get(name)
        if value is None or value == INFINITY:
            continue
        if floor is not None and floor > MIN_LIMIT_BYTES and value < floor:
            errors.append("%s: %s %s is below the safe floor %s for this unit (the floors option)"
                          % (unit, name, _show(value), _show(floor)))
        elif value < MIN_LIMIT_BYTES:
            errors.append("%s: %s %s is below the minimum %s for any unit (0 or a few bytes would leave it unable "
                          "to start); allowed: %s or more, or 'infinity'" % (unit, name, _show(value),
                                                                          _show(MIN_LIMIT_BYTES), MIN_LIMIT))
    return errors


def protection(settings):
    """Bytes one unit keeps from reclaim: the larger of min and low."""
    values = [settings.get(name) or 0 for name in PROTECTIONS]
    return max(values)


def budget_errors(plan, total_bytes, reserve_bytes, origins=None, reserve_argument="reserve"):
    """low/min summed across the whole plan must leave reserve_bytes of RAM unprotected.

    plan: [(unit, settings)]. Nested units (a service inside a protected slice) are
    counted as if disjoint: conservative, a plan is refused rather than over-committed.
    origins: {unit: who added protection to it}, named in the refusal so the user knows
    which variable to lower; reserve_argument: the reserve's name in the message.
    """
    total = sum(protection(settings) for _unit, settings in plan)
    budget = max(total_bytes - reserve_bytes, 0)
    if total <= budget:
        return []
    parts = ", ".join("%s %s" % (unit, human_size(protection(settings)))
                      for unit, settings in plan if protection(settings))
    message = ("low/min protections sum to %s (%s), over RAM %s minus %s %s = %s"
               % (_show(total), parts, _show(total_bytes), reserve_argument, _show(reserve_bytes), _show(budget)))
    added = {}
    for unit, settings in plan:
        origin = (origins or {}).get(unit)
        if origin and protection(settings):
            added.setdefault(origin, []).append("%s %s" % (unit, human_size(protection(settings))))
    for origin in sorted(added):
        message += ("; %s protects %s of it: lower those sizes or turn it off, or lower %s"
                    % (origin, ", ".join(added[origin]), reserve_argument))
    return [message]


def parse_floors(floors, total_bytes):
    if floors is not None and not isinstance(floors, dict):
        raise PlanError("floors: %r must be a mapping of unit name to size (e.g. {ssh.service: 128M}); "
                        "{} keeps only the minimum %s of every unit" % (floors, MIN_LIMIT))
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


def validate_plan(entries, total_bytes, reserve=DEFAULT_RESERVE, floors=None, reserve_argument="reserve"):
    """Check a whole plan (every unit and slice managed together).

    entries: [{name, high, max, swap_max, low, min}] with unit names already normalised
    (and optionally the META_KEYS optional and origin).
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
    origins = {}
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
        if entry.get("origin"):
            origins[name] = entry["origin"]
    errors.extend(budget_errors(parsed, total_bytes, reserve_bytes, origins, reserve_argument))
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


# --- the login path: reservations for what a login needs, merged into the plan -----------

# Where the login path's services run: the slice whose own protection caps theirs.
LOGIN_PATH_PARENT = "system.slice"
_MIB = 1024 * 1024


def _unit_name(entry, default_suffix):
    """The entry's unit name with its suffix, or None when it is not valid (refused elsewhere)."""
    if not isinstance(entry, dict):
        return None
    try:
        return normalize_unit_name(entry.get("name"), default_suffix=default_suffix, allowed_suffixes=tuple(SECTIONS))
    except UnitNameError:
        return None


def _protection_bytes(entry, name, total_bytes, where):
    """(bytes, is_percent) of a low/min value; (0, False) when not set."""
    value = entry.get(name)
    if value is None:
        return 0, False
    try:
        size = parse_size(value, total_bytes=total_bytes, allow_infinity=False, name="%s %s" % (where, name))
    except SizeError as exc:
        raise PlanError(str(exc))
    return size, str(value).strip().endswith("%")


def _login_entries(login_path, argument):
    """The login path's entries, validated: services with min and/or low only."""
    entries, errors = normalize_entries(login_path, argument=argument)
    for index, entry in enumerate(entries):
        where = "%s[%d] (%s)" % (argument, index, entry["name"])
        if section_for(entry["name"]) != "Service":
            errors.append("%s: the login path lists services; slices go in the slices list" % where)
        extra = sorted(set(entry) - {"name"} - set(PROTECTIONS))
        if extra:
            errors.append("%s: %s not allowed; a login-path entry reserves memory with min and/or low only"
                          % (where, ", ".join(extra)))
        if all(entry.get(name) is None for name in PROTECTIONS):
            errors.append("%s: set min (hard protection) or low (best effort)" % where)
    if errors:
        raise PlanError("; ".join(errors))
    return entries


def merge_login_path(units, slices, login_path=(), total_bytes=None, parent=LOGIN_PATH_PARENT,
                     argument="login_path"):
    """One plan from the user's units and slices and the login path's reservations.

    units, slices: the user's entries ({name, high, max, swap_max, low, min}).
    login_path: [{name, min and/or low}], the services a login needs.
    An empty login_path returns units + slices unchanged (the plan without the login path).
    Otherwise:
      - a login-path unit the user also lists in units is merged into the user's entry,
        the user's own setting winning (min: 0 there clears that reservation);
      - every other login-path unit is added after the user's units, with optional: True
        (a host without it reports it as not enforced instead of refusing the plan);
      - parent (system.slice, where these services run) gets a min at least the sum of
        the login-path units' min and a low at least the sum of their low: in cgroup v2 a
        child's memory.min/low is effective only up to its parent's effective protection.
        The user's own parent entry keeps a value already as large, is raised otherwise;
        without one the parent is added after the slices. A unit moved to another slice
        with Slice= is not followed.
    Entries that got protection from the login path carry origin: argument, named by the
    budget refusal. total_bytes resolves N% sizes; a sum with percentages is rounded up to
    whole MiB plus 1 MiB for each (the controller may know the RAM only to the MiB).
    Raises PlanError for a malformed login-path entry.
    """
    units = [dict(entry) if isinstance(entry, dict) else entry for entry in units or []]
    slices = [dict(entry) if isinstance(entry, dict) else entry for entry in slices or []]
    if not login_path:
        return units + slices
    index_of = {}
    for index, entry in enumerate(units):
        index_of.setdefault(_unit_name(entry, "service"), index)
    added = []
    final = []
    for entry in _login_entries(login_path, argument):
        reserve = dict((name, entry[name]) for name in PROTECTIONS if entry.get(name) is not None)
        index = index_of.get(entry["name"])
        if index is None:
            merged = dict(reserve, name=entry["name"], optional=True, origin=argument)
            added.append(merged)
        else:
            user = units[index]
            merged = dict(reserve)
            merged.update(user)
            if any(name not in user for name in reserve):
                merged["origin"] = argument
            units[index] = merged
        final.append(merged)
    need = {}
    for name in PROTECTIONS:
        sizes = [_protection_bytes(entry, name, total_bytes, entry["name"]) for entry in final]
        total = sum(size for size, _percent in sizes)
        percents = len([1 for _size, percent in sizes if percent])
        if percents:
            total = -(-(total + percents * _MIB) // _MIB) * _MIB
        need[name] = total
    slices = _raise_parent(slices, parent, need, total_bytes, argument)
    return units + added + slices


def _raise_parent(slices, parent, need, total_bytes, argument):
    """slices with parent's min/low raised to need (bytes), or parent added with them."""
    wanted = dict((name, value) for name, value in need.items() if value)
    if not wanted:
        return slices
    for index, entry in enumerate(slices):
        if _unit_name(entry, "slice") != parent:
            continue
        raised = dict(entry)
        for name, value in sorted(wanted.items()):
            if _protection_bytes(entry, name, total_bytes, parent)[0] < value:
                raised[name] = format_size(value)
                raised["origin"] = argument
        return slices[:index] + [raised] + slices[index + 1:]
    entry = dict((name, format_size(value)) for name, value in wanted.items())
    return slices + [dict(entry, name=parent, origin=argument)]
