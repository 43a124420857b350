"""The one size parser: valid and invalid forms, percentages, systemd and human output."""

import pytest

from ansible.module_utils.oomguard_sizes import (
    INFINITY,
    SizeError,
    format_size,
    human_size,
    is_size,
    parse_size,
    systemd_size,
)

GIB = 1024 ** 3
RAM = 4 * GIB


@pytest.mark.parametrize("text, expected", [
    ("1048576", 1048576),
    (1048576, 1048576),
    ("0", 0),
    ("512K", 512 * 1024),
    ("512k", 512 * 1024),
    ("512KiB", 512 * 1024),
    ("64M", 64 << 20),
    ("64MB", 64 << 20),
    ("64mb", 64 << 20),
    (" 64M ", 64 << 20),
    ("2G", 2 * GIB),
    ("1.5G", 3 * GIB // 2),
    ("1T", 1024 ** 4),
    ("10 G", 10 * GIB),
    ("512B", 512),
    ("25%", RAM // 4),
    ("12.5%", RAM // 8),
    ("100%", RAM),
    ("0%", 0),
    ("infinity", INFINITY),
    ("max", INFINITY),
    ("unlimited", INFINITY),
    (12.0, 12),  # a whole float is exact; 12.9 is refused (issue 15)
    ("18446744073709551614", 2 ** 64 - 2),
    ("15.999999999999999999T", 16 * 1024 ** 4 - 1),
])
def test_valid_sizes(text, expected):
    assert parse_size(text, total_bytes=RAM) == expected


@pytest.mark.parametrize("text, message", [
    ("512Q", "is not a size"),
    ("-5M", "is not a size"),
    (-5, "is negative"),
    (-1.5, "is negative"),
    ("150%", "above 100% of RAM"),
    ("100.5%", "above 100% of RAM"),
    ("", "is not a size"),
    ("M", "is not a size"),
    ("512iB", "is not a size"),
    ("1e3", "is not a size"),
    ("0x10", "is not a size"),
    (".5G", "is not a size"),
    ("5 %%", "is not a size"),
    ("inf", "is not a size"),
    (None, "is not a size"),
    (True, "is not a size"),
    ("64M64", "is not a size"),
    # Issue 15: hostile and careless sizes are refused, never read as something else.
    (1.5, "fractional number of bytes"),
    (12.9, "fractional number of bytes"),
    (float("nan"), "is not a size"),
    (float("inf"), "is not a size"),
    ("\uff11G", "ASCII digits"),
    ("\u0661\u0662M", "ASCII digits"),
    ("64M\n", "is not a size"),
    ("64\nM", "is not a size"),
    ("64M\x00", "is not a size"),
    ("18446744073709551615", "beyond what systemd takes"),
    ("16E", "is not a size"),
    ("17179869184G", "beyond what systemd takes"),
    (2 ** 64, "beyond what systemd takes"),
    (10 ** 400, "beyond what systemd takes"),
    ("9" * 10000, "too long for a size"),
    ("1" * 60 + "G", "beyond what systemd takes"),
    ([64], "is not a size"),
    ({"size": "64M"}, "is not a size"),
])
def test_invalid_sizes(text, message):
    with pytest.raises(SizeError) as info:
        parse_size(text, total_bytes=RAM, name="max")
    assert message in str(info.value)
    assert str(info.value).startswith("max: ")
    assert not is_size(text, total_bytes=RAM)


def test_a_10000_digit_number_is_refused_without_overflow():
    with pytest.raises(SizeError, match="max: a 33220-bit number is beyond what systemd takes"):
        parse_size(10 ** 10000, name="max")


def test_percentage_needs_ram():
    with pytest.raises(SizeError, match="RAM is unknown"):
        parse_size("25%")


def test_infinity_can_be_refused():
    with pytest.raises(SizeError, match="not allowed here"):
        parse_size("infinity", allow_infinity=False, name="reserve")


@pytest.mark.parametrize("value, expected", [
    (64 << 20, "64M"), (3 * GIB // 2, "1536M"), (2 * GIB, "2G"), (1024 ** 4, "1T"), (1000, "1000"),
    (0, "0"), (INFINITY, "infinity"), (4096, "4K"),
])
def test_format_size(value, expected):
    assert format_size(value) == expected
    if value != INFINITY:
        assert parse_size(expected) == value


@pytest.mark.parametrize("text, expected", [("0.5G", "512M"), ("25%", "1G"), ("max", "infinity"), ("1023", "1023")])
def test_systemd_size(text, expected):
    assert systemd_size(text, total_bytes=RAM) == expected


@pytest.mark.parametrize("value, expected", [
    (100, "100 B"), (1536, "1.5 KiB"), (512 << 20, "512 MiB"), (3 * GIB // 2, "1.5 GiB"), (INFINITY, "infinity"),
])
def test_human_size(value, expected):
    assert human_size(value) == expected
