# -*- coding: utf-8 -*-
# Copyright: oomguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja filters for sizes and memory plans, so templates and modules agree.

Every filter calls the shared readers in module_utils/ (oomguard_sizes, oomguard_memplan):
one parser, no copies.

  '512M' | oomguard_bytes                      -> 536870912
  '25%'  | oomguard_bytes(total_bytes)         -> a quarter of total_bytes
  536870912 | oomguard_human                   -> '512 MiB'
  '0.5G' | oomguard_size                       -> '512M' (systemd's form)
  units | oomguard_memory_plan(slices, login_path, total_bytes) -> one plan (login path merged)
  plan | oomguard_memory_plan_errors(total_bytes, reserve, floors) -> [] or messages
  settings | oomguard_early_relief_plan(facts)  -> {engine, reason, files, earlyoom_args, errors, ...}
  path | oomguard_path_error(name, suffix, under) -> '' or why the path may not be written (oomguard_files)
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import sys

from ansible.errors import AnsibleFilterError

try:
    from ansible.module_utils.oomguard_memplan import (DEFAULT_RESERVE, PlanError, merge_login_path,
                                                       normalize_entries, validate_plan)
    from ansible.module_utils.oomguard_sizes import MAX_BYTES, SizeError, human_size, parse_size, systemd_size
except ImportError:  # the controller does not put the configured module_utils on ansible.module_utils
    _MODULE_UTILS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "module_utils")
    if _MODULE_UTILS not in sys.path:
        sys.path.insert(0, _MODULE_UTILS)
    from oomguard_memplan import DEFAULT_RESERVE, PlanError, merge_login_path, normalize_entries, validate_plan
    from oomguard_sizes import MAX_BYTES, SizeError, human_size, parse_size, systemd_size

try:
    from ansible.module_utils.oomguard_files import path_error
except ImportError:  # see above: module_utils/ is on sys.path by now
    from oomguard_files import path_error

try:
    from ansible.module_utils.oomguard_earlyrelief import PlanError as EarlyReliefPlanError
    from ansible.module_utils.oomguard_earlyrelief import plan as early_relief_plan
except ImportError:  # see above: module_utils/ is on sys.path by now
    from oomguard_earlyrelief import PlanError as EarlyReliefPlanError
    from oomguard_earlyrelief import plan as early_relief_plan


def _shown(value):
    """A value for an error message, short whatever it is (a 400-digit number included)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return "a %d-bit number" % value.bit_length()
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _total(total_bytes, filter_name="oomguard"):
    """The host's RAM in bytes: a whole number (int, or digits as text) in systemd's range."""
    if total_bytes in (None, ""):
        return None
    value = total_bytes
    if isinstance(value, str) and value.strip().isdigit() and value.strip().isascii() and len(value) <= 20:
        value = int(value.strip())
    elif isinstance(value, float) and value == value and value not in (float("inf"), float("-inf")) \
            and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_BYTES:
        raise AnsibleFilterError("%s: total_bytes must be a number of bytes, got %s; allowed: a whole number "
                                 "1..%d (the host's RAM, e.g. ansible_memtotal_mb * 1048576)"
                                 % (filter_name, _shown(total_bytes), MAX_BYTES))
    return value


def _precision(precision, filter_name):
    if isinstance(precision, bool) or not isinstance(precision, int) or not 0 <= precision <= 10:
        raise AnsibleFilterError("%s: precision %s is not allowed; allowed: a whole number of decimals 0..10"
                                 % (filter_name, _shown(precision)))
    return precision


def _list(value, filter_name, argument, allow_none=True, entries=True):
    if value is None and allow_none:
        return []
    if not isinstance(value, (list, tuple)):
        raise AnsibleFilterError("%s: %s %s is not a list; allowed: a list of {name, high, max, swap_max, low, "
                                 "min} mappings" % (filter_name, argument, _shown(value)))
    for index, entry in enumerate(value if entries else ()):
        if not isinstance(entry, dict):
            raise AnsibleFilterError("%s: %s[%d] %s is not a mapping; allowed: {name, high, max, swap_max, low, "
                                     "min}" % (filter_name, argument, index, _shown(entry)))
    return list(value)


def oomguard_bytes(value, total_bytes=None, allow_infinity=True):
    """A size (bytes, K/M/G/T, N% of total_bytes, infinity) as bytes (int) or 'infinity'."""
    try:
        return parse_size(value, total_bytes=_total(total_bytes, "oomguard_bytes"), allow_infinity=allow_infinity,
                          name="oomguard_bytes")
    except SizeError as exc:
        raise AnsibleFilterError(str(exc))


def oomguard_human(value, precision=1, total_bytes=None):
    """A size in any accepted form as a readable binary size: '1.5 GiB', '512 MiB'."""
    try:
        return human_size(parse_size(value, total_bytes=_total(total_bytes, "oomguard_human"), name="oomguard_human"),
                          _precision(precision, "oomguard_human"))
    except SizeError as exc:
        raise AnsibleFilterError(str(exc))


def oomguard_size(value, total_bytes=None):
    """A size in any accepted form as systemd writes it: '64M', '1073741824', 'infinity'."""
    try:
        return systemd_size(value, total_bytes=_total(total_bytes, "oomguard_size"), name="oomguard_size")
    except SizeError as exc:
        raise AnsibleFilterError(str(exc))


def oomguard_memory_plan(units, slices=None, login_path=None, total_bytes=None,
                         argument="memory_limits_login_path"):
    """The memory_limits role's one plan: units, then slices, with the login path merged in.

    An empty login_path gives units + slices unchanged. See
    oomguard_memplan.merge_login_path() for the rules (the user's settings win; the
    parent slice, system.slice, is raised to hold the login path's reservations).
    """
    name = "oomguard_memory_plan"
    units, slices = _list(units, name, "units"), _list(slices, name, "slices")
    login_path = _list(login_path or [], name, argument)
    try:
        return merge_login_path(units, slices, login_path, _total(total_bytes, name), argument=argument)
    except (PlanError, SizeError) as exc:
        raise AnsibleFilterError("%s: %s" % (name, exc))


def oomguard_memory_plan_errors(entries, total_bytes, reserve=DEFAULT_RESERVE, floors=None,
                                reserve_argument="memory_limits_reserve"):
    """Why a list of {name, high, max, swap_max, low, min} would hurt the host ([] when fine)."""
    name = "oomguard_memory_plan_errors"
    normalized, errors = normalize_entries(_list(entries, name, "plan", allow_none=False, entries=False),
                                           argument="units")
    if floors is not None and not isinstance(floors, dict):
        raise AnsibleFilterError("%s: floors %s is not a mapping; allowed: unit name to size, e.g. "
                                 "{ssh.service: 128M}" % (name, _shown(floors)))
    _parsed, plan_errors = validate_plan(normalized, _total(total_bytes, name), reserve, floors, reserve_argument)
    return errors + plan_errors


_EARLY_RELIEF_SETTINGS = ("engine", "kill_slices", "critical_services", "extra_critical_units", "avoid_units",
                          "expendable_services", "swap_used_limit", "memory_pressure_limit",
                          "memory_pressure_duration", "earlyoom_mem_percent", "earlyoom_swap_percent")
_EARLY_RELIEF_FACTS = ("cgroup_v2", "systemd_version", "oomd_available", "psi")


def _flag(value):
    """A fact that may arrive templated as text ('True', 'false') as a bool."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1")
    return bool(value)


def oomguard_early_relief_plan(settings, facts=None):
    """The early_relief role's plan from its settings and the host's facts.

    settings: engine, kill_slices, critical_services, extra_critical_units, avoid_units, expendable_services,
    swap_used_limit, memory_pressure_limit, memory_pressure_duration, earlyoom_mem_percent,
    earlyoom_swap_percent (the role's variables without the early_relief_ prefix).
    facts: cgroup_v2, systemd_version, oomd_available, psi (default true).
    Returns oomguard_earlyrelief.plan()'s dict plus errors: [] when the policy is accepted, else
    every refusal (then engine none and no files), for the preflight's assert. Malformed
    arguments (not dicts, unknown keys) raise AnsibleFilterError.
    """
    facts = facts or {}
    if not isinstance(settings, dict) or not isinstance(facts, dict):
        raise AnsibleFilterError("oomguard_early_relief_plan: settings and facts must be dicts")
    unknown = sorted(set(settings) - set(_EARLY_RELIEF_SETTINGS)) + sorted(set(facts) - set(_EARLY_RELIEF_FACTS))
    if unknown:
        raise AnsibleFilterError("oomguard_early_relief_plan: unknown keys %s; allowed: %s"
                                 % (", ".join(unknown), ", ".join(_EARLY_RELIEF_SETTINGS + _EARLY_RELIEF_FACTS)))
    arguments = dict(
        requested=settings.get("engine", "auto"),
        cgroup_v2=_flag(facts.get("cgroup_v2", False)),
        systemd_version=facts.get("systemd_version", 0),
        oomd_available=_flag(facts.get("oomd_available", False)),
        psi=_flag(facts.get("psi", True)),
        kill_slices=settings.get("kill_slices", []),
        critical_services=settings.get("critical_services") or [],
        extra_critical_units=settings.get("extra_critical_units") or [],
        avoid_units=settings.get("avoid_units") or [],
        expendable_services=settings.get("expendable_services") or [],
        swap_used_limit=settings.get("swap_used_limit", 60),
        pressure_limit=settings.get("memory_pressure_limit", 40),
        pressure_duration_s=settings.get("memory_pressure_duration", 10),
        mem_percent=settings.get("earlyoom_mem_percent", 10),
        swap_percent=settings.get("earlyoom_swap_percent", 40),
    )
    try:
        result = early_relief_plan(**arguments)
    except EarlyReliefPlanError as exc:
        return {"engine": "none", "reason": "refused", "package": None, "service": None, "files": {},
                "earlyoom_args": [], "critical_units": [], "avoid_units": [], "candidates": {},
                "errors": exc.errors}
    result["errors"] = []
    return result


def oomguard_path_error(value, name, suffix=None, under=None):
    """'' when value is a path oomguard may write for the option name, else the error
    (the same rule as the agents' --check-config: absolute, normalised, no control
    characters, outside the system trees, inside `under` when given)."""
    if under is not None and (isinstance(under, str) or not isinstance(under, (list, tuple))):
        raise AnsibleFilterError("oomguard_path_error: under must be a list of directories, got %r" % (under,))
    return path_error(name, value, suffix=suffix, under=tuple(under) if under else None) or ""


class FilterModule(object):
    def filters(self):
        return {
            "oomguard_bytes": oomguard_bytes,
            "oomguard_human": oomguard_human,
            "oomguard_size": oomguard_size,
            "oomguard_memory_plan": oomguard_memory_plan,
            "oomguard_memory_plan_errors": oomguard_memory_plan_errors,
            "oomguard_early_relief_plan": oomguard_early_relief_plan,
            "oomguard_path_error": oomguard_path_error,
        }
