# -*- coding: utf-8 -*-
# Copyright: oomguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one size parser: modules, filters and templates all agree through it.

Accepted forms (binary multiples, as systemd and the kernel use them):
  1048576        bytes
  512K 512M 2G 1T (also KiB/MiB/GiB/TiB and lowercase; B suffix allowed)
  1.5G           fractional, rounded down to whole bytes
  25%            of the host's physical RAM (needs total_bytes)
  infinity       no limit (where the caller allows it)

Refused (issue 15): digits other than ASCII 0-9 ("１G"), a float number that is not
whole (1.5 would silently become 1: write "1.5G" or bytes), NaN and infinities as
numbers, text longer than MAX_TEXT characters, and sizes beyond systemd's range
(uint64, UINT64_MAX itself meaning infinity).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

INFINITY = "infinity"

_MULTIPLIERS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "m": 1024 ** 2,
    "g": 1024 ** 3,
    "t": 1024 ** 4,
}

# "iB" only after a unit letter: "512KiB" is a size, "512iB" is not. ASCII digits only,
# matched whole (\Z: "$" would also match before a final newline).
_SIZE_RE = re.compile(r"\A(?P<int>[0-9]+)(?:\.(?P<frac>[0-9]+))?[ ]*(?:(?P<unit>[kKmMgGtT])i?)?[bB]?\Z", re.ASCII)
_PERCENT_RE = re.compile(r"\A(?P<number>[0-9]+(?:\.[0-9]+)?)[ ]*%\Z", re.ASCII)
# systemd parses sizes into a uint64 and reads UINT64_MAX as infinity.
MAX_BYTES = 2 ** 64 - 2
MAX_TEXT = 64

ALLOWED_FORMS = "bytes (e.g. 1048576), a size with K/M/G/T suffix (binary, e.g. 512M, 1.5G), N% of RAM (0-100%)"


class SizeError(ValueError):
    """A size string that is not one of the allowed forms."""


def parse_size(value, total_bytes=None, allow_infinity=True, name="size"):
    """Return the size in bytes (int), or INFINITY.

    Raises SizeError with a message naming `name` and the allowed forms.
    """
    forms = ALLOWED_FORMS + (", or 'infinity'" if allow_infinity else "")
    if isinstance(value, bool) or value is None:
        raise SizeError("%s: %r is not a size; allowed: %s" % (name, value, forms))
    if isinstance(value, int):
        if value < 0:
            raise SizeError("%s: %d is negative; allowed: %s" % (name, value, forms))
        return _in_range(value, value, name, forms)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise SizeError("%s: %r is not a size; allowed: %s" % (name, value, forms))
        if value < 0:
            raise SizeError("%s: %r is negative; allowed: %s" % (name, value, forms))
        if not value.is_integer():
            raise SizeError("%s: %r is a fractional number of bytes (it would be truncated); write it as a "
                            "string with a unit (e.g. '1.5G') or as whole bytes; allowed: %s" % (name, value, forms))
        return _in_range(int(value), value, name, forms)
    if not isinstance(value, str):
        raise SizeError("%s: %r is not a size; allowed: %s" % (name, value, forms))
    if len(value) > MAX_TEXT:
        raise SizeError("%s: %r... is too long for a size (%d characters); allowed: %s"
                        % (name, value[:20], len(value), forms))
    text = value.strip(" \t")
    if text.lower() in ("infinity", "max", "unlimited"):
        if allow_infinity:
            return INFINITY
        raise SizeError("%s: %r is not allowed here; allowed: %s" % (name, value, ALLOWED_FORMS))
    match = _PERCENT_RE.match(text)
    if match:
        percent = float(match.group("number"))
        if percent > 100:
            raise SizeError("%s: %r is above 100%% of RAM; allowed: %s" % (name, value, forms))
        if not total_bytes:
            raise SizeError("%s: %r is a percentage but the host's RAM is unknown" % (name, value))
        return int(total_bytes * percent / 100)
    match = _SIZE_RE.match(text)
    if not match:
        raise SizeError("%s: %r is not a size (ASCII digits and a unit); allowed: %s" % (name, value, forms))
    multiplier = _MULTIPLIERS[(match.group("unit") or "").lower()]
    frac = match.group("frac") or ""
    # Whole-number arithmetic: exact, and no float overflow on a long number.
    result = int(match.group("int")) * multiplier + (int(frac) * multiplier // 10 ** len(frac) if frac else 0)
    return _in_range(result, value, name, forms)


def _in_range(result, value, name, forms):
    if result > MAX_BYTES:
        if isinstance(value, int):  # never str() a huge int: Python refuses beyond 4300 digits
            shown = str(value) if value.bit_length() <= 128 else "a %d-bit number" % value.bit_length()
        else:
            shown = repr(value) if len(repr(value)) <= 40 else "%s..." % repr(value)[:20]
        raise SizeError("%s: %s is beyond what systemd takes (at most %d bytes, or 'infinity'); allowed: %s"
                        % (name, shown, MAX_BYTES, forms))
    return result


def is_size(value, total_bytes=None, allow_infinity=True):
    try:
        parse_size(value, total_bytes=total_bytes, allow_infinity=allow_infinity)
    except SizeError:
        return False
    return True


def format_size(value):
    """Shortest exact K/M/G/T form of a byte count (systemd and kernel accept it)."""
    if value == INFINITY or value is None:
        return INFINITY
    value = int(value)
    for suffix, mult in (("T", 1024 ** 4), ("G", 1024 ** 3), ("M", 1024 ** 2), ("K", 1024)):
        if value and value % mult == 0:
            return "%d%s" % (value // mult, suffix)
    return str(value)


def systemd_size(value, total_bytes=None, allow_infinity=True, name="size"):
    """Any accepted size form as systemd writes it (bytes resolved, e.g. 64M, infinity)."""
    return format_size(parse_size(value, total_bytes=total_bytes, allow_infinity=allow_infinity, name=name))


def human_size(value, precision=1):
    """Readable binary size for reports: 1.5 GiB, 512 MiB, 100 B."""
    if value == INFINITY or value is None:
        return INFINITY
    value = float(value)
    for suffix, mult in (("TiB", 1024 ** 4), ("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if abs(value) >= mult:
            text = ("%." + str(precision) + "f") % (value / mult)
            if "." in text:
                text = text.rstrip("0").rstrip(".")
            return "%s %s" % (text, suffix)
    return "%d B" % value
