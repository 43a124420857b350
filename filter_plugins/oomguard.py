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
  units | oomguard_memory_plan_errors(total_bytes, reserve, floors) -> [] or messages
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import sys

from ansible.errors import AnsibleFilterError

try:
    from ansible.module_utils.oomguard_memplan import DEFAULT_RESERVE, normalize_entries, validate_plan
    from ansible.module_utils.oomguard_sizes import SizeError, human_size, parse_size, systemd_size
except ImportError:  # the controller does not put the configured module_utils on ansible.module_utils
    _MODULE_UTILS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "module_utils")
    if _MODULE_UTILS not in sys.path:
        sys.path.insert(0, _MODULE_UTILS)
    from oomguard_memplan import DEFAULT_RESERVE, normalize_entries, validate_plan
    from oomguard_sizes import SizeError, human_size, parse_size, systemd_size


def _total(total_bytes):
    if total_bytes in (None, ""):
        return None
    try:
        return int(total_bytes)
    except (TypeError, ValueError):
        raise AnsibleFilterError("total_bytes must be a number of bytes, got %r" % (total_bytes,))


def oomguard_bytes(value, total_bytes=None, allow_infinity=True):
    """A size (bytes, K/M/G/T, N% of total_bytes, infinity) as bytes (int) or 'infinity'."""
    try:
        return parse_size(value, total_bytes=_total(total_bytes), allow_infinity=allow_infinity, name="oomguard_bytes")
    except SizeError as exc:
        raise AnsibleFilterError(str(exc))


def oomguard_human(value, precision=1, total_bytes=None):
    """A size in any accepted form as a readable binary size: '1.5 GiB', '512 MiB'."""
    try:
        return human_size(parse_size(value, total_bytes=_total(total_bytes), name="oomguard_human"), precision)
    except SizeError as exc:
        raise AnsibleFilterError(str(exc))


def oomguard_size(value, total_bytes=None):
    """A size in any accepted form as systemd writes it: '64M', '1073741824', 'infinity'."""
    try:
        return systemd_size(value, total_bytes=_total(total_bytes), name="oomguard_size")
    except SizeError as exc:
        raise AnsibleFilterError(str(exc))


def oomguard_memory_plan_errors(entries, total_bytes, reserve=DEFAULT_RESERVE, floors=None):
    """Why a list of {name, high, max, swap_max, low, min} would hurt the host ([] when fine)."""
    normalized, errors = normalize_entries(entries, argument="units")
    _parsed, plan_errors = validate_plan(normalized, _total(total_bytes), reserve, floors)
    return errors + plan_errors


class FilterModule(object):
    def filters(self):
        return {
            "oomguard_bytes": oomguard_bytes,
            "oomguard_human": oomguard_human,
            "oomguard_size": oomguard_size,
            "oomguard_memory_plan_errors": oomguard_memory_plan_errors,
        }
