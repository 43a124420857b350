"""The oomguard Jinja filters: the shared size parser and plan checks, as templates see them."""

import pytest
from ansible.errors import AnsibleFilterError

import oomguard
from oomguard import oomguard_bytes, oomguard_human, oomguard_memory_plan_errors, oomguard_size

GIB = 1024 ** 3
RAM = 4 * GIB


def test_registered_filters():
    filters = oomguard.FilterModule().filters()
    assert set(filters) >= {"oomguard_bytes", "oomguard_human", "oomguard_size", "oomguard_memory_plan_errors"}
    assert filters["oomguard_bytes"] is oomguard_bytes


def test_filters_use_the_shared_parser():
    from ansible.module_utils import oomguard_sizes
    assert oomguard.parse_size is oomguard_sizes.parse_size


@pytest.mark.parametrize("value, total, expected", [
    ("512M", None, 512 * 1024 ** 2), ("25%", RAM, GIB), ("25%", str(RAM), GIB), (2048, None, 2048),
    ("infinity", None, "infinity"),
])
def test_oomguard_bytes(value, total, expected):
    assert oomguard_bytes(value, total) == expected


@pytest.mark.parametrize("value, total, message", [
    ("512Q", None, "not a size"), ("-5M", None, "not a size"), ("150%", RAM, "above 100%"),
    ("25%", None, "RAM is unknown"), ("1G", "lots", "total_bytes must be a number"),
])
def test_oomguard_bytes_errors(value, total, message):
    with pytest.raises(AnsibleFilterError, match=message):
        oomguard_bytes(value, total)


def test_oomguard_bytes_can_refuse_infinity():
    with pytest.raises(AnsibleFilterError, match="not allowed"):
        oomguard_bytes("infinity", allow_infinity=False)


@pytest.mark.parametrize("value, expected", [
    (536870912, "512 MiB"), ("1.5G", "1.5 GiB"), ("infinity", "infinity"), (100, "100 B"),
])
def test_oomguard_human(value, expected):
    assert oomguard_human(value) == expected


def test_oomguard_human_percent_and_errors():
    assert oomguard_human("50%", total_bytes=RAM) == "2 GiB"
    with pytest.raises(AnsibleFilterError):
        oomguard_human("512Q")


@pytest.mark.parametrize("value, total, expected", [
    ("0.5G", None, "512M"), (67108864, None, "64M"), ("25%", RAM, "1G"), ("max", None, "infinity"),
    ("1000", None, "1000"),
])
def test_oomguard_size(value, total, expected):
    assert oomguard_size(value, total) == expected


def test_oomguard_size_error():
    with pytest.raises(AnsibleFilterError, match="oomguard_size: '12X'"):
        oomguard_size("12X")


def test_plan_errors():
    assert oomguard_memory_plan_errors([{"name": "user.slice", "max": "50%"}], RAM) == []
    errors = oomguard_memory_plan_errors(
        [{"name": "ssh", "max": "32M"}, {"name": "db", "min": "3G"}, {"name": "bad unit"},
         {"name": "system.slice", "low": "1G"}], RAM, "512M")
    text = "\n".join(errors)
    assert "units[2].name" in text
    assert "ssh.service: max 32 MiB" in text
    assert "low/min protections sum to 4 GiB" in text
    assert oomguard_memory_plan_errors([{"name": "db", "min": "3G"}], RAM, "1.5G") != []
    assert oomguard_memory_plan_errors([{"name": "ssh", "max": "32M"}], RAM, floors={}) == []
