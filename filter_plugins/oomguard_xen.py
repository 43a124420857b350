# -*- coding: utf-8 -*-
# Copyright: oomguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja filters for Xen dom0 sizing. The rule itself lives in module_utils/oomguard_xen.py.

    {{ host_total_bytes | oomguard_dom0_mem(guests, hvm_guests) }}  ->  "1344M"

The rule (oomguard_xen.dom0_mem_rule), explicit so it can be reviewed and argued with:

    dom0 = 1 GiB                  Xen's best-practice starting point for a dedicated dom0
         + 32 MiB  x guests       per domU: netback/blkback rings, grant mappings,
                                  xenstored and xenconsoled state
         + 128 MiB x hvm_guests   per HVM guest whose QEMU device model runs in dom0

`guests` counts every domU (PV, PVH and HVM); `hvm_guests` is the subset with a device
model in dom0. A result above half of the host's memory is an error: such a host needs
a deliberate, explicit size.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import sys

from ansible.errors import AnsibleFilterError

try:
    from ansible.module_utils.oomguard_xen import MIB, XenError, dom0_mem_rule
except ImportError:  # module_utils/ is not on ansible.module_utils' path on the controller
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "module_utils"))
    from oomguard_xen import MIB, XenError, dom0_mem_rule


def _count(value, name):
    """A count of guests: a whole number 0..10000 (int, or ASCII digits as text); never a float."""
    if isinstance(value, str) and value.strip().isdigit() and value.strip().isascii() and len(value) <= 6:
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value > 10000:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise AnsibleFilterError("oomguard_dom0_mem: %s must be an integer >= 0, got %s; allowed: a whole "
                                 "number 0..10000" % (name, shown))
    return value  # a negative count is refused by dom0_mem_rule, with its own words


def oomguard_dom0_mem(total_bytes, guests=0, hvm_guests=0):
    """dom0's size for a host of total_bytes (int or size string) running guests domUs,
    hvm_guests of them HVM, as a Xen/oomguard size string "<N>M"."""
    try:
        size = dom0_mem_rule(total_bytes, _count(guests, "guests"), _count(hvm_guests, "hvm_guests"))
    except (XenError, TypeError, ValueError, OverflowError) as exc:
        raise AnsibleFilterError("oomguard_dom0_mem: %s" % exc)
    return "%dM" % (size // MIB)


class FilterModule(object):
    def filters(self):
        return {"oomguard_dom0_mem": oomguard_dom0_mem}
