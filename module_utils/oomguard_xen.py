# -*- coding: utf-8 -*-
# Copyright: oomguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Xen dom0 memory: parsers and planners (pure functions, standard library only).

What lives here:
  * parsers for `xl info`, `xl list` (and the identical `xm` output) and for the
    hypervisor's `dom0_mem=` option;
  * editors that return new text for /etc/default/grub (GRUB_CMDLINE_XEN_DEFAULT),
    /etc/xen/xl.conf (autoballoon) and the legacy /etc/xen/xend-config.sxp,
    changing only what they own and keeping every other byte;
  * the dom0 sizing rule (dom0_mem_rule) used by the `oomguard_dom0_mem` filter;
  * the live `xl mem-set` decision (plan_live), which never shrinks dom0 below what
    it uses plus a safety margin.

Sizes are bytes. Xen reports MiB (`xl info`, `xl list`) and the hypervisor takes
kilobytes when a size has no suffix; everything is converted here, once.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

try:
    from ansible.module_utils.oomguard_sizes import SizeError, parse_size
    from ansible.module_utils.oomguard_memstat import memory_summary
except ImportError:  # installed beside an agent, outside Ansible
    from oomguard_sizes import SizeError, parse_size
    from oomguard_memstat import memory_summary

MIB = 1024 ** 2
GIB = 1024 ** 3

# The smallest dom0 we agree to pin: below this a Debian/EL dom0 running xenstored,
# xenconsoled and the backends has no room left for sshd and cron.
MIN_DOM0_BYTES = 512 * MIB

# The sizing rule (see dom0_mem_rule): Xen's best-practice starting point plus what
# each guest costs inside dom0.
RULE_BASE_BYTES = 1 * GIB
RULE_PER_GUEST_BYTES = 32 * MIB  # netback/blkback rings, grant maps, xenstore and console state
RULE_PER_HVM_GUEST_BYTES = 128 * MIB  # one QEMU device model process per HVM guest
RULE_MAX_HOST_FRACTION = 0.5  # a rule that wants more than half the host is a sizing error

GRUB_XEN_VAR = "GRUB_CMDLINE_XEN_DEFAULT"

AUTOBALLOON_OFF_VALUES = ("off", "0", "no", "false")


class XenError(ValueError):
    """Bad input or a file we cannot edit safely; the message says which and why."""


# --------------------------------------------------------------------------- detection


def is_dom0_capabilities(text):
    """/proc/xen/capabilities says `control_d` only in the control domain (dom0)."""
    return "control_d" in (text or "").split()


# --------------------------------------------------------------------------- xl output


def parse_xl_info(text):
    """`xl info` / `xm info` as {field: value} (strings, stripped)."""
    result = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep or not key or " " in key:
            continue
        result[key] = value.strip()
    return result


def _mib_field(info, key):
    value = info.get(key)
    if value is None or value == "":
        return None
    try:
        return int(value) * MIB
    except ValueError:
        return None


def xl_info_memory(info):
    """Host memory figures from parse_xl_info output, in bytes (None when absent)."""
    return {
        "total_bytes": _mib_field(info, "total_memory"),
        "free_bytes": _mib_field(info, "free_memory"),
        "xen_commandline": info.get("xen_commandline", ""),
        "xen_version": info.get("xen_version")
        or ("%s.%s%s" % (info["xen_major"], info["xen_minor"], info.get("xen_extra", ""))
            if "xen_major" in info and "xen_minor" in info else None),
    }


def parse_xl_list(text):
    """`xl list` as a list of {name, id, mem_bytes, vcpus, state, time}.

    Columns are `Name ID Mem VCPUs State Time(s)` separated by spaces or tabs; the
    name is everything before the last five columns (so it may contain spaces).
    """
    domains = []
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) < 6 or parts[0] == "Name":
            continue
        name_parts, rest = parts[:-5], parts[-5:]
        try:
            domid = int(rest[0])
            mem = int(rest[1])
            vcpus = int(rest[2])
        except ValueError:
            continue
        try:
            cpu_time = float(rest[4])
        except ValueError:
            cpu_time = None
        domains.append({
            "name": " ".join(name_parts),
            "id": domid,
            "mem_bytes": mem * MIB,
            "vcpus": vcpus,
            "state": rest[3],
            "time": cpu_time,
        })
    return domains


def dom0_entry(domains):
    for domain in domains:
        if domain["id"] == 0:
            return domain
    return None


# --------------------------------------------------------------------------- dom0_mem syntax


_XEN_SIZE_RE = re.compile(r"\A(?P<number>[0-9]{1,20})(?P<unit>[bBkKmMgGtT]?)\Z")


def parse_xen_size(text):
    """A hypervisor <size>: integer with optional B/K/M/G/T suffix, kilobytes without one."""
    match = _XEN_SIZE_RE.match((text or "").strip())
    if not match:
        raise XenError("%r is not a Xen size (digits with an optional B/K/M/G/T suffix)" % (text,))
    number, unit = match.group("number"), match.group("unit")
    # parse_size is the one size parser; Xen only differs in its default unit.
    return parse_size(number + (unit or "K"), allow_infinity=False, name="dom0_mem")


def parse_dom0_mem_value(value):
    """The value of one `dom0_mem=` option: comma list of <size>, min:<size>, max:<size>.

    Returns {'initial': bytes|None, 'min': bytes|None, 'max': bytes|None, 'raw': value};
    forms we do not evaluate (negative "all but" sizes, percentages) are kept in 'raw'
    and give None.
    """
    result = {"initial": None, "min": None, "max": None, "raw": value}
    for item in value.split(","):
        key, sep, size = item.partition(":")
        if not sep:
            key, size = "initial", item
        if key not in ("initial", "min", "max"):
            continue
        try:
            result[key] = parse_xen_size(size)
        except (XenError, SizeError):
            result[key] = None
    return result


def cmdline_dom0_mem(cmdline):
    """dom0_mem settings on a hypervisor command line (`xl info` xen_commandline).

    Several `dom0_mem=` options combine in order (Qubes writes
    `dom0_mem=min:1024M dom0_mem=max:4096M`); later values win per key.
    Returns None when the command line has no dom0_mem at all.
    """
    merged = None
    for token in (cmdline or "").split():
        if not token.startswith("dom0_mem="):
            continue
        parsed = parse_dom0_mem_value(token[len("dom0_mem="):])
        if merged is None:
            merged = {"initial": None, "min": None, "max": None, "raw": []}
        for key in ("initial", "min", "max"):
            if parsed[key] is not None:
                merged[key] = parsed[key]
        merged["raw"].append(token)
    if merged is not None:
        merged["raw"] = " ".join(merged["raw"])
    return merged


def dom0_mem_option(size_bytes):
    """The value we pin: `<N>M,max:<N>M` (dom0 starts with N MiB and can never balloon above)."""
    mib = int(size_bytes) // MIB
    return "%dM,max:%dM" % (mib, mib)


def dom0_mem_token(size_bytes):
    return "dom0_mem=" + dom0_mem_option(size_bytes)


def validate_dom0_mem(value, host_total_bytes=None):
    """Parse the requested dom0 size; raise XenError naming `dom0_mem` and the allowed forms.

    Allowed: a size with K/M/G/T suffix or bytes (see oomguard_sizes), or N% of the
    host's memory (Xen's total, not dom0's; rounded down to MiB), a whole number of
    MiB, at least 512M and not above the host's memory. Without host_total_bytes only
    the syntax of a percentage can be checked and None is returned.
    """
    percent = str(value).strip().endswith("%")
    try:
        if percent and host_total_bytes is None:
            # Syntax only: the host's memory is known once Xen is detected.
            parse_size(value, total_bytes=GIB, allow_infinity=False, name="dom0_mem")
            return None
        size = parse_size(value, total_bytes=host_total_bytes, allow_infinity=False, name="dom0_mem")
    except SizeError as exc:
        raise XenError(str(exc))
    if percent:
        size -= size % MIB  # a share of the host, rounded down to whole MiB
    if size % MIB:
        raise XenError("dom0_mem: %r is not a whole number of MiB (Xen takes dom0_mem=<N>M); "
                       "use e.g. 4096M or 4G" % (value,))
    if size < MIN_DOM0_BYTES:
        raise XenError("dom0_mem: %r is below the %dM minimum for a dom0" % (value, MIN_DOM0_BYTES // MIB))
    if host_total_bytes is not None and size > host_total_bytes:
        raise XenError("dom0_mem: %r (%dM) is above the host's memory (%dM, xl info total_memory)"
                       % (value, size // MIB, host_total_bytes // MIB))
    return size


def validate_margin(value):
    """The live-apply safety margin: a size >= 0 (bytes or K/M/G/T suffix, no percentage)."""
    text = str(value).strip()
    if text.startswith("-"):
        raise XenError("margin: %r is negative; allowed: a size >= 0 such as 256M or 1G" % (value,))
    if text.endswith("%"):
        raise XenError("margin: %r is a percentage; allowed: a size >= 0 such as 256M or 1G" % (value,))
    try:
        return parse_size(value, allow_infinity=False, name="margin")
    except SizeError as exc:
        raise XenError(str(exc))


# --------------------------------------------------------------------------- sizing rule


def dom0_mem_rule(total_bytes, guests=0, hvm_guests=0):
    """The documented dom0 sizing rule, in bytes (a whole number of MiB).

        dom0 = 1 GiB                      Xen best practice starting point
             + 32 MiB  x guests           backend rings, grant maps, xenstore/console per domU
             + 128 MiB x hvm_guests       one QEMU device model per HVM guest (runs in dom0)

    `guests` counts every domU (PV, PVH and HVM); `hvm_guests` is how many of them
    are HVM guests whose device model runs in dom0 (so hvm_guests <= guests).
    The rule refuses (XenError) when the result is more than half of the host's
    memory: such a host needs a deliberate, explicit dom0_mem.
    """
    for name, value in (("guests", guests), ("hvm_guests", hvm_guests)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise XenError("%s: %r is not a count; allowed: an integer >= 0" % (name, value))
    if hvm_guests > guests:
        raise XenError("hvm_guests (%d) is more than guests (%d): HVM guests are counted in guests"
                       % (hvm_guests, guests))
    try:
        total = parse_size(total_bytes, allow_infinity=False, name="total_bytes")
    except SizeError as exc:
        raise XenError(str(exc))
    size = RULE_BASE_BYTES + guests * RULE_PER_GUEST_BYTES + hvm_guests * RULE_PER_HVM_GUEST_BYTES
    if size > total * RULE_MAX_HOST_FRACTION:
        raise XenError("the dom0 sizing rule gives %dM for %d guests (%d HVM) but that is more than half "
                       "of the host's %dM; set dom0_mem explicitly"
                       % (size // MIB, guests, hvm_guests, total // MIB))
    return size


# --------------------------------------------------------------------------- file editing helpers


def _split_lines(text):
    return (text or "").splitlines(True)


def _ensure_trailing_newline(lines):
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return lines


def _set_directive(text, active_re, commented_re, desired_line, is_ok):
    """Make every active line matching active_re satisfy is_ok(match) by replacing it
    with desired_line; when there is no active line, insert desired_line after the
    last commented example (commented_re) or append it. Returns the new text."""
    lines = _split_lines(text)
    active = [(i, active_re.match(line)) for i, line in enumerate(lines)]
    active = [(i, m) for i, m in active if m]
    if active:
        for i, match in active:
            if not is_ok(match):
                ending = "\n" if lines[i].endswith("\n") else ""
                lines[i] = desired_line + ending
        return "".join(lines)
    commented = [i for i, line in enumerate(lines) if commented_re.match(line)]
    _ensure_trailing_newline(lines)
    if commented:
        lines.insert(commented[-1] + 1, desired_line + "\n")
    else:
        lines.append(desired_line + "\n")
    return "".join(lines)


# --------------------------------------------------------------------------- /etc/default/grub


_GRUB_LINE_RE = re.compile(r"^(?P<head>\s*(?:export\s+)?" + GRUB_XEN_VAR + r"=)(?P<rest>.*?)(?P<eol>\r?\n?)$")


def _parse_shell_value(rest, lineno):
    """(quote, value, tail) of the right-hand side of a shell assignment."""
    if rest[:1] in ('"', "'"):
        quote = rest[0]
        pos = 1
        while True:
            end = rest.find(quote, pos)
            if end < 0:
                raise XenError("line %d: %s value has no closing %s quote on the same line; "
                               "edit it by hand" % (lineno, GRUB_XEN_VAR, quote))
            if quote == '"' and end > 0 and rest[end - 1] == "\\":
                pos = end + 1
                continue
            return quote, rest[1:end], rest[end + 1:]
    match = re.match(r"^(?P<value>\S*)(?P<tail>.*)$", rest)
    return "", match.group("value"), match.group("tail")


def grub_xen_assignments(text):
    """Every active GRUB_CMDLINE_XEN_DEFAULT assignment: list of dicts
    {index, head, quote, value, tail, eol, tokens} (index is the 0-based line)."""
    found = []
    for index, line in enumerate(_split_lines(text)):
        match = _GRUB_LINE_RE.match(line)
        if not match:
            continue
        quote, value, tail = _parse_shell_value(match.group("rest"), index + 1)
        found.append({
            "index": index,
            "head": match.group("head"),
            "quote": quote,
            "value": value,
            "tail": tail,
            "eol": match.group("eol"),
            "tokens": value.split(),
        })
    return found


def grub_xen_dom0_mem(text):
    """The dom0_mem tokens the grub default file currently sets (list, in order)."""
    tokens = []
    for assignment in grub_xen_assignments(text):
        tokens.extend(t for t in assignment["tokens"] if t.startswith("dom0_mem="))
    return tokens


def _render_assignment(assignment, tokens):
    value = " ".join(tokens)
    quote = assignment["quote"]
    if not quote and (len(tokens) != 1 or re.search(r"[\s'\"$`\\;&|<>()]", value)):
        quote = '"'
    return "%s%s%s%s%s%s" % (assignment["head"], quote, value, quote, assignment["tail"], assignment["eol"])


def set_grub_xen_dom0_mem(text, token):
    """New text of /etc/default/grub with exactly one dom0_mem token, `token`.

    Only GRUB_CMDLINE_XEN_DEFAULT is edited and only its dom0_mem option: every other
    option keeps its place, quoting style is kept (an unquoted value that now has
    several options gets double quotes), commented lines and other variables are left
    alone. With several active assignments (the last one wins in shell, and may extend
    an earlier one with "$GRUB_CMDLINE_XEN_DEFAULT ..."), dom0_mem is removed from the
    earlier ones and set in the last one. Without an active assignment a new line is
    appended.
    """
    lines = _split_lines(text)
    assignments = grub_xen_assignments(text)
    if not assignments:
        _ensure_trailing_newline(lines)
        lines.append('%s="%s"\n' % (GRUB_XEN_VAR, token))
        return "".join(lines)
    last = assignments[-1]
    for assignment in assignments:
        tokens = assignment["tokens"]
        if assignment is last:
            new_tokens = []
            placed = False
            for item in tokens:
                if item.startswith("dom0_mem="):
                    if not placed:
                        new_tokens.append(token)
                        placed = True
                    continue
                new_tokens.append(item)
            if not placed:
                new_tokens.append(token)
        else:
            new_tokens = [t for t in tokens if not t.startswith("dom0_mem=")]
        if new_tokens != tokens:
            lines[assignment["index"]] = _render_assignment(assignment, new_tokens)
    return "".join(lines)


_GRUB_XEN_OTHER_RE = re.compile(r"^\s*(?:export\s+)?GRUB_CMDLINE_XEN=(?P<rest>.*)$")


def grub_other_dom0_mem_warnings(text, path):
    """Warnings about dom0_mem set elsewhere: GRUB_CMDLINE_XEN also reaches the
    hypervisor (before the _DEFAULT options, in every menu entry)."""
    warnings = []
    for index, line in enumerate(_split_lines(text)):
        match = _GRUB_XEN_OTHER_RE.match(line)
        if match and "dom0_mem=" in match.group("rest"):
            warnings.append("%s line %d: GRUB_CMDLINE_XEN also sets dom0_mem (%s); it applies to every "
                            "Xen menu entry, so remove it by hand" % (path, index + 1, line.strip()))
    return warnings


def grub_dropin_override_warning(text, path):
    """A file in /etc/default/grub.d/ that sets GRUB_CMDLINE_XEN_DEFAULT wins over
    /etc/default/grub (Debian's xen.cfg ships that line commented out)."""
    if grub_xen_assignments(text):
        return ("%s sets %s and is read after /etc/default/grub, so it overrides the pin; "
                "remove that line or make it extend the variable" % (path, GRUB_XEN_VAR))
    return None


def grub_update_command(have, etc="/etc", resolve=None):
    """The argv that regenerates grub.cfg, from the tools present.

    have: {tool: path or None} for update-grub, grub2-mkconfig, grub-mkconfig.
    resolve: callable(path) -> the file a symlink points at, or None.
    Debian/Ubuntu: update-grub. EL: grub2-mkconfig -o <the file /etc/grub2.cfg points
    at>, /boot/grub2/grub.cfg by default (EL 9 uses it for BIOS and UEFI alike).
    """
    if have.get("update-grub"):
        return [have["update-grub"]]
    if have.get("grub2-mkconfig"):
        target = None
        if resolve is not None:
            target = resolve(etc.rstrip("/") + "/grub2.cfg")
        return [have["grub2-mkconfig"], "-o", target or "/boot/grub2/grub.cfg"]
    if have.get("grub-mkconfig"):
        return [have["grub-mkconfig"], "-o", "/boot/grub/grub.cfg"]
    return []


# --------------------------------------------------------------------------- /etc/xen/xl.conf


_AUTOBALLOON_RE = re.compile(r"^\s*autoballoon\s*=\s*(?P<value>[^#\n]*?)\s*(?:#.*)?\r?\n?$")
_AUTOBALLOON_COMMENTED_RE = re.compile(r"^\s*#\s*autoballoon\s*=")
AUTOBALLOON_OFF_LINE = 'autoballoon="off"'


def _unquote(value):
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def xl_autoballoon(text):
    """The active autoballoon setting of xl.conf ('auto' when unset, xl's default)."""
    value = "auto"
    for line in _split_lines(text):
        match = _AUTOBALLOON_RE.match(line)
        if match:
            value = _unquote(match.group("value")).lower()
    return value


def set_xl_autoballoon_off(text):
    """xl.conf text with ballooning of dom0 off. Lines that already say off (any of
    "off", 0) are kept as they are; others become autoballoon="off"; without an active
    line one is added after the commented example (or at the end)."""
    return _set_directive(
        text, _AUTOBALLOON_RE, _AUTOBALLOON_COMMENTED_RE, AUTOBALLOON_OFF_LINE,
        lambda match: _unquote(match.group("value")).lower() in AUTOBALLOON_OFF_VALUES)


# --------------------------------------------------------------------------- xend-config.sxp


def _sxp_res(name):
    active = re.compile(r"^\s*\(\s*" + re.escape(name) + r"\s+(?P<value>[^)\s]+)\s*\)")
    commented = re.compile(r"^\s*#\s*\(\s*" + re.escape(name) + r"[\s)]")
    return active, commented


def set_xend_dom0_memory(text, min_mem_mib):
    """xend-config.sxp text with `(enable-dom0-ballooning no)` and `(dom0-min-mem N)`
    (N in MiB, xend's unit): legacy xm/xend hosts never balloon dom0 and refuse
    `xm mem-set` below the pin."""
    active, commented = _sxp_res("enable-dom0-ballooning")
    text = _set_directive(text, active, commented, "(enable-dom0-ballooning no)",
                          lambda match: match.group("value").lower() in ("no", "0", "false"))
    active, commented = _sxp_res("dom0-min-mem")
    text = _set_directive(text, active, commented, "(dom0-min-mem %d)" % min_mem_mib,
                          lambda match: match.group("value") == str(min_mem_mib))
    return text


# --------------------------------------------------------------------------- what a file is

# The file names a missing file may be created under (grub_default_file, xl_conf_file):
# a path such as /etc/cron.d/x never gets a GRUB_ or autoballoon line.
CREATABLE_NAMES = {"grub_default_file": ("grub",), "xl_conf_file": ("xl.conf",)}
_SHELL_ASSIGN_RE = re.compile(r"\A[ \t]*(?:export[ \t]+)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)\Z")
_XL_KEY_RE = re.compile(r"\A[ \t]*(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)[ \t]*=[ \t]*(?P<value>\S.*)\Z")


def _open_quote(value, quote=None):
    """The quote (or backslash) a shell value leaves open at the end of its line, or None;
    quote: the one still open from the previous line."""
    escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote is None and char in "\"'`":
            quote = char
        elif char == quote:
            quote = None
        elif quote is None and char == "#":
            break
    if escaped and quote is None:
        return "\\"
    return quote


def _active_lines(text):
    for lineno, line in enumerate(text.split("\n"), 1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            yield lineno, line


def _control_error(text):
    bad = [c for c in text if (ord(c) < 32 and c not in "\t\n\r") or 0xD800 <= ord(c) <= 0xDFFF]
    if bad:
        return "it is not a text file (it holds %r)" % bad[0]
    return None


def grub_default_error(text):
    """None when text is what grub_default_file must be: a shell-variable file of
    assignments (comments and blank lines aside) with at least one GRUB_ key; else why not."""
    error = _control_error(text)
    if error:
        return error
    names = []
    quote = None
    for lineno, line in enumerate(text.split("\n"), 1):
        if quote is not None:  # inside a value that spans lines
            quote = _open_quote(line, None if quote == "\\" else quote)
            continue
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _SHELL_ASSIGN_RE.match(line)
        if not match:
            return "line %d is not a shell variable assignment (NAME=value): %r" % (lineno, line[:60])
        names.append(match.group("name"))
        quote = _open_quote(match.group("value"))
    if not any(name.startswith("GRUB_") for name in names):
        return "it has no GRUB_ assignment, so it is not a grub defaults file"
    return None


def _nested_error(text, opener, closer, top_level, what):
    """Why text is not lines of `what` (None when it is): every line at depth 0 must
    satisfy top_level (returning the rest of the line, or None); opener/closer nest."""
    error = _control_error(text)
    if error:
        return error
    depth = 0
    for lineno, line in _active_lines(text):
        if depth == 0:
            line = top_level(line)
            if line is None:
                return "line %d is not %s" % (lineno, what)
        depth += line.count(opener) - line.count(closer)
        if depth < 0:
            return "line %d closes a %s that was not opened" % (lineno, opener)
    return None


def _xl_setting(line):
    match = _XL_KEY_RE.match(line)
    return match.group("value") if match else None


def xl_conf_error(text):
    """None when text parses as xl.conf (key = value lines, lists may span lines); else why not."""
    return _nested_error(text, "[", "]", _xl_setting, "an xl.conf setting (key = value)")


def xend_config_error(text):
    """None when text reads as xend-config.sxp (s-expressions: every top-level line opens one)."""
    return _nested_error(text, "(", ")", lambda line: line if line.strip().startswith("(") else None,
                         "an s-expression")


FILE_CHECKS = {
    "grub_default_file": (grub_default_error, "a grub defaults file (shell-variable assignments with GRUB_ keys)"),
    "xl_conf_file": (xl_conf_error, "an xl.conf (key = value settings)"),
    "xend_config_file": (xend_config_error, "a xend-config.sxp (s-expressions)"),
}


def config_file_error(option, path, text):
    """None when the file at path (text: its content, None when missing) is what option
    says it is; else the error naming the option, the path, why, and what is allowed."""
    check, what = FILE_CHECKS[option]
    if text is None:
        names = CREATABLE_NAMES.get(option)
        if names is not None and path.rsplit("/", 1)[-1] not in names:
            return ("%s: %s does not exist and is not named %s, so it is not created; allowed: %s"
                    % (option, path, " or ".join(names), what))
        return None
    reason = check(text)
    if reason:
        return "%s: refusing to edit %s: %s; allowed: %s" % (option, path, reason, what)
    return None


# --------------------------------------------------------------------------- live apply


def dom0_used_bytes(meminfo):
    """What dom0 really uses: MemTotal - MemAvailable (reclaimable cache is not use)."""
    summary = memory_summary(meminfo)
    if not summary["mem_total_bytes"]:
        return None
    return max(summary["mem_total_bytes"] - summary["mem_available_bytes"], 0)


def _mib(value, up=False):
    if value is None:
        return "unknown"
    value = int(value)
    return "%dM" % (-(-value // MIB) if up else value // MIB)


def plan_live(target, current, used, margin, host_total=None, host_free=None, running_max=None):
    """Decide whether `xl mem-set 0 <target>` may run.

    Returns {'action': 'none'|'set'|'refuse'|'blocked', 'reason': str, 'warnings': [..]}:
      none     dom0 already has the target (xl list granularity is 1 MiB)
      set      grow (always allowed within the host and the running max:), or shrink
               to a target >= used + margin
      refuse   a shrink below used + margin: never done, the caller fails
      blocked  a grow above the running hypervisor's max: (possible only after reboot)
    """
    warnings = []
    if current is None:
        return {"action": "refuse", "warnings": warnings,
                "reason": "cannot read dom0's current memory from `xl list 0`"}
    if target // MIB == current // MIB:
        return {"action": "none", "warnings": warnings,
                "reason": "dom0 already has %s" % _mib(current)}
    if target > current:
        if host_total is not None and target > host_total:
            return {"action": "refuse", "warnings": warnings,
                    "reason": "target %s is above the host's %s" % (_mib(target), _mib(host_total))}
        if running_max is not None and target > running_max:
            return {"action": "blocked", "warnings": warnings,
                    "reason": "cannot grow dom0 from %s to %s live: the running hypervisor was booted "
                              "with max:%s; the new pin applies at the next boot"
                              % (_mib(current), _mib(target), _mib(running_max))}
        if host_free is not None and target - current > host_free:
            warnings.append("growing dom0 by %s but Xen has only %s free; dom0 reaches the target "
                            "only when guests release memory" % (_mib(target - current), _mib(host_free)))
        return {"action": "set", "warnings": warnings,
                "reason": "growing dom0 from %s to %s" % (_mib(current), _mib(target))}
    if used is None:
        return {"action": "refuse", "warnings": warnings,
                "reason": "refusing to shrink dom0 from %s to %s: cannot read its use from /proc/meminfo"
                          % (_mib(current), _mib(target))}
    needed = used + margin
    if target < needed:
        return {"action": "refuse", "warnings": warnings,
                "reason": "refusing to shrink dom0 from %s to %s: dom0 uses %s (MemTotal - MemAvailable) "
                          "and the safety margin is %s, so the target must be at least %s"
                          % (_mib(current), _mib(target), _mib(used), _mib(margin), _mib(needed, up=True))}
    return {"action": "set", "warnings": warnings,
            "reason": "shrinking dom0 from %s to %s (uses %s, margin %s)"
                      % (_mib(current), _mib(target), _mib(used), _mib(margin))}


def mem_set_argv(tool, target):
    """`xl mem-set 0 <N>m`: xl's default unit is kilobytes, so the suffix is explicit."""
    return [tool, "mem-set", "0", "%dm" % (int(target) // MIB)]
