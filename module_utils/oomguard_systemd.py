# -*- coding: utf-8 -*-
# Copyright: oomguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""systemd unit names, drop-in files and `systemctl show` output.

Standard library only: pure parsing and rendering. The modules run systemctl
themselves (module.run_command) and pass its text here.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

try:
    from ansible.module_utils.oomguard_files import read_text
except ImportError:  # installed beside an agent, outside Ansible
    from oomguard_files import read_text

UNIT_SUFFIXES = ("service", "socket", "slice", "scope", "target", "timer", "mount", "path", "swap")
# systemd.unit(5): ASCII letters, digits, ":", "-", "_", ".", "\" and "@" for templates.
# Matched whole (\Z, not $: "$" also matches before a final newline, and "cron.service\n"
# must never reach systemctl or a drop-in's name).
_UNIT_RE = re.compile(r"\A[A-Za-z0-9:_.\\@-]{1,250}\Z")
DROPIN_DIR = "/etc/systemd/system"
DROPIN_FILE_RE = re.compile(r"\A[A-Za-z0-9_.@-]{1,200}\.conf\Z")
SYSTEMD_RUNTIME_DIR = "/run/systemd/system"


class UnitNameError(ValueError):
    pass


class PlanError(ValueError):
    """A plan for oomguard's drop-ins that is malformed or would hurt the host.

    The message names the argument and what is allowed. One class for every planner
    (oomguard_memplan, oomguard_oomscore), so callers catch one thing."""


def is_unit_name(name):
    """True when name is a string of systemd.unit(5)'s characters, whole, without '/'."""
    return isinstance(name, str) and "/" not in name and bool(_UNIT_RE.match(name))


def normalize_unit_name(name, default_suffix="service", allowed_suffixes=UNIT_SUFFIXES, argument="unit"):
    """Validate a unit name and add the default suffix when it has none.

    Raises UnitNameError naming the argument and what is allowed: no '/', no shell
    metacharacters, no whitespace, a known suffix.
    """
    if not isinstance(name, str) or not name:
        raise UnitNameError("%s: a unit name is required" % argument)
    if not is_unit_name(name):
        raise UnitNameError(
            "%s: %r is not a valid unit name; allowed: letters, digits and : - _ . \\ @ "
            "(no '/', whitespace or shell metacharacters), with a suffix from %s"
            % (argument, name, ", ".join(allowed_suffixes)))
    base, dot, suffix = name.rpartition(".")
    if not dot or suffix not in UNIT_SUFFIXES:
        name = "%s.%s" % (name, default_suffix)
        suffix = default_suffix
    if suffix not in allowed_suffixes:
        raise UnitNameError("%s: %r has suffix .%s; allowed: %s" % (argument, name, suffix, ", ".join(allowed_suffixes)))
    return name


def validate_dropin_file_name(name, argument="dropin_name"):
    if not isinstance(name, str) or not DROPIN_FILE_RE.match(name):
        raise UnitNameError("%s: %r is not a valid drop-in file name; allowed: letters, digits, . _ @ - ending in .conf"
                            % (argument, name))
    return name


def dropin_path(unit, file_name, dropin_dir=DROPIN_DIR):
    return os.path.join(dropin_dir, "%s.d" % unit, file_name)


def render_dropin(sections, comment=None):
    """Render a drop-in from [(section, [(key, value), ...]), ...].

    Values are written as given; a value of None writes `Key=` (systemd's reset).
    """
    lines = []
    if comment:
        for line in comment.splitlines():
            lines.append("# %s" % line if line else "#")
    for index, (section, settings) in enumerate(sections):
        if index or lines:
            lines.append("")
        lines.append("[%s]" % section)
        for key, value in settings:
            lines.append("%s=%s" % (key, "" if value is None else value))
    return "\n".join(lines) + "\n"


def parse_unit_file(text):
    """Parse unit-file text into {section: [(key, value), ...]} (comments dropped)."""
    result = {}
    section = None
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            result.setdefault(section, [])
            continue
        if section is None or "=" not in line:
            continue
        key, _, value = line.partition("=")
        result[section].append((key.strip(), value.strip()))
    return result


def dropin_value(text, section, key):
    """Last value of key in section (later assignments win in systemd), or None."""
    value = None
    for item_key, item_value in parse_unit_file(text).get(section, []):
        if item_key == key:
            value = item_value
    return value


def read_dropin(unit, file_name, dropin_dir=DROPIN_DIR):
    return read_text(dropin_path(unit, file_name, dropin_dir))


def parse_show(text):
    """`systemctl show -p A -p B unit` output as a dict."""
    result = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            result[key] = value
    return result


def systemd_booted(runtime_dir=SYSTEMD_RUNTIME_DIR):
    """True when systemd is PID 1 (sd_booted(3) tests this directory)."""
    return os.path.isdir(runtime_dir)


def unit_loaded(show):
    """True when `systemctl show` says the unit exists (LoadState loaded)."""
    return show.get("LoadState") == "loaded"
