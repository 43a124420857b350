"""Unit tests for filter_plugins/oomguard_xen.py (the dom0 sizing rule as a Jinja filter).

Named test_oomguard_xen_filter.py, not test_oomguard_xen.py: pytest (rootdir import mode, no
__init__.py) needs unique basenames and tests/unit/module_utils/test_oomguard_xen.py exists.
"""

import pytest

from ansible.errors import AnsibleFilterError

import oomguard_xen as filters

GIB = 1024 ** 3


def test_registered():
    assert filters.FilterModule().filters() == {"oomguard_dom0_mem": filters.oomguard_dom0_mem}


@pytest.mark.parametrize("total, guests, hvm, expected", [
    (64 * GIB, 0, 0, "1024M"),
    (64 * GIB, 4, 0, "1152M"),
    (64 * GIB, 12, 3, "1792M"),
    ("64G", "12", "3", "1792M"),  # inventory values arrive as strings
    (str(256 * GIB), 60, 60, "10624M"),
])
def test_dom0_mem(total, guests, hvm, expected):
    assert filters.oomguard_dom0_mem(total, guests, hvm) == expected


@pytest.mark.parametrize("total, guests, hvm, message", [
    (2 * GIB, 12, 3, "more than half of the host's 2048M; set dom0_mem explicitly"),
    (64 * GIB, 1, 2, "hvm_guests (2) is more than guests (1)"),
    (64 * GIB, "many", 0, "guests must be an integer >= 0, got 'many'"),
    (64 * GIB, -3, 0, "guests: -3 is not a count"),
    (64 * GIB, True, 0, "guests must be an integer"),
    (None, 1, 0, "not a size"),
])
def test_dom0_mem_errors(total, guests, hvm, message):
    with pytest.raises(AnsibleFilterError) as err:
        filters.oomguard_dom0_mem(total, guests, hvm)
    assert message in str(err.value)


@pytest.mark.parametrize("total, guests, message", [
    (float("nan"), 0, "nan is not a size"),
    (float("inf"), 0, "inf is not a size"),
    (10 ** 400, 0, "beyond what systemd takes"),
    ([1], 0, "is not a size"),
    (64 * 1024 ** 3, 1.5, "guests must be an integer >= 0, got 1.5"),
    (64 * 1024 ** 3, float("inf"), "guests must be an integer >= 0, got inf"),
    (64 * 1024 ** 3, 10 ** 400, "guests must be an integer >= 0"),
])
def test_dom0_mem_hostile_arguments_are_filter_errors(total, guests, message):
    """Issue 15: NaN, infinity, 400-digit numbers and floats end in AnsibleFilterError."""
    with pytest.raises(AnsibleFilterError) as err:
        filters.oomguard_dom0_mem(total, guests)
    assert str(err.value).startswith("oomguard_dom0_mem: ") and message in str(err.value)
