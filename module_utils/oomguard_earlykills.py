# -*- coding: utf-8 -*-
# Copyright: oomguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one reader of early kills: earlyoom's hook file and systemd-oomd's journal lines.

Standard library only. Two sources, one record shape:

  {"time": epoch or None, "engine": "earlyoom" | "systemd-oomd", "pid": int or None,
   "name": process name or unit, "uid": int or None, "unit": unit or None,
   "cgroup": cgroup path or None, "reason": "memory pressure ..." or None,
   "processes": processes killed (systemd-oomd, from PID 1) or None}

earlyoom: the early_relief role runs it with `-N /usr/lib/oomguard/early-kill-hook`,
which appends one JSON object a kill to HOOK_PATH (under /run, so per boot):
  {"time": 1733130000.5, "engine": "earlyoom", "pid": 812, "name": "hog", "uid": 1000}

systemd-oomd (format strings of systemd 252, src/oom/oomd-manager.c; later releases
changed the swap text, both are read):
  Killed /system.slice/app-worker.service due to memory pressure for /system.slice
      being 52.13% > 40.00% for > 20s with reclaim activity
  Killed /system.slice/hog.service due to swap used (879345664) / total (1073737728)
      being more than 80.00%
  Killed ... due to memory used (...) / total (...) and swap used (...) / total (...)
      being more than 90.00%                                   (systemd >= 253)
and PID 1, once the unit's cgroup is empty:
  app-worker.service: systemd-oomd killed 3 process(es) in this unit.
  (or "killed some process(es)" when the count is unknown)
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import os
import re
import stat

try:
    from ansible.module_utils.oomguard_files import append_line
except ImportError:  # installed beside an agent, outside Ansible
    from oomguard_files import append_line

HOOK_PATH = "/run/oomguard/early-kills.jsonl"
ENGINES = ("earlyoom", "systemd-oomd")
OOMD_IDENTIFIER = "systemd-oomd"
OOMD_UNIT = "systemd-oomd.service"
EARLYOOM_UNIT = "earlyoom.service"
# systemd links this while a unit is active (src/core/unit.c unit_export_invocation_id):
# one lstat tells whether systemd-oomd runs, without a D-Bus or systemctl call.
INVOCATION_DIR = "/run/systemd/units"
# journalctl matches of the two kinds of lines (OR-ed with "+").
JOURNAL_MATCHES = ("SYSLOG_IDENTIFIER=%s" % OOMD_IDENTIFIER, "+", "_PID=1")
JOURNAL_FIELDS = "MESSAGE,SYSLOG_IDENTIFIER,_PID,UNIT,__REALTIME_TIMESTAMP"
# A PID 1 line and systemd-oomd's line about the same unit within this many seconds are one kill.
PAIR_WINDOW = 30.0
HOOK_MAX_BYTES = 1024 * 1024
RECORD_KEYS = ("time", "engine", "pid", "name", "uid", "unit", "cgroup", "reason", "processes")

_OOMD_KILLED_RE = re.compile(r"^Killed (?P<cgroup>/\S*) due to (?P<reason>.+?)\s*$")
_PRESSURE_RE = re.compile(
    r"^memory pressure for (?P<target>/\S*) being (?P<value>[\d.]+)% > (?P<limit>[\d.]+)% "
    r"for > (?P<duration>\S+) with reclaim activity$")
_SWAP_RE = re.compile(
    r"^(?:memory used \((?P<mem_used>\d+)\) / total \((?P<mem_total>\d+)\) and )?"
    r"swap used \((?P<swap_used>\d+)\) / total \((?P<swap_total>\d+)\) being more than (?P<limit>[\d.]+)%$")
_PID1_RE = re.compile(r"^(?P<unit>\S+): systemd-oomd killed (?P<count>\d+|some) process\(es\) in this unit\.?$")


def _number(value, kind=int):
    """value as kind (int or float), None when it is not a number (or a bool)."""
    if isinstance(value, bool):
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        return None


def _json_object(line):
    """A JSON line (str or bytes) as a dict, or None."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", "replace")
    try:
        data = json.loads(line)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def new_record(engine, **fields):
    record = dict((key, None) for key in RECORD_KEYS)
    record.update(fields)
    record["engine"] = engine
    return record


def split_lines(buffer, chunk):
    """(complete lines, rest) after appending chunk (bytes) to buffer (bytes)."""
    data = buffer + chunk
    if b"\n" not in data:
        return [], data
    head, _, rest = data.rpartition(b"\n")
    return head.split(b"\n"), rest


# --- earlyoom's hook file -------------------------------------------------------

def parse_hook_line(line):
    """One line of the hook file as a record, or None when it is not a JSON object."""
    data = _json_object(line) if line.strip() else None
    if data is None:
        return None
    engine = data.get("engine") if data.get("engine") in ENGINES else "earlyoom"
    name = data.get("name")
    return new_record(engine, time=_number(data.get("time"), float), pid=_number(data.get("pid")),
                      name=name if isinstance(name, str) else None, uid=_number(data.get("uid")))


def parse_hook_lines(lines):
    records = [parse_hook_line(line) for line in lines]
    return [r for r in records if r is not None]


def open_hook_file(path, owner_uid=0):
    """(fd, fstat, None) or (None, None, reason). Never follows a symlink; refuses anything
    but a regular file owned by owner_uid that nobody else may write; (None, None, None)
    when the file does not exist (no kill yet this boot)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None, None, None
        if exc.errno == errno.ELOOP:
            return None, None, "%s is a symlink: refused" % path
        return None, None, "cannot open %s: %s" % (path, exc.strerror)
    info = os.fstat(fd)
    reason = None
    if not stat.S_ISREG(info.st_mode):
        reason = "%s is not a regular file: refused" % path
    elif info.st_uid != owner_uid:
        reason = "%s is owned by uid %d, not %d: refused" % (path, info.st_uid, owner_uid)
    elif info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        reason = "%s is writable by group or others (mode %o): refused" % (path, info.st_mode & 0o777)
    if reason:
        os.close(fd)
        return None, None, reason
    return fd, info, None


def read_hook_new(path, position=None, owner_uid=0, max_bytes=HOOK_MAX_BYTES):
    """The kills appended to the hook file since position.

    position: {"dev", "ino", "offset"} from the previous call, or None. Returns
    (records, position, error). The file is only opened when its size or inode moved
    (one stat a tick otherwise); a new inode or a shorter file (a new boot, a rotation)
    is read from its start; a partial last line waits for the next call.
    """
    try:
        info = os.lstat(path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return [], None, None
        return [], position, "cannot stat %s: %s" % (path, exc.strerror)
    same = position is not None and (info.st_dev, info.st_ino) == (position["dev"], position["ino"])
    if same and info.st_size == position["offset"]:
        return [], position, None
    fd, info, error = open_hook_file(path, owner_uid)
    if fd is None:
        return [], position, error
    try:
        offset = position["offset"] if same and info.st_size >= position["offset"] else 0
        if info.st_size - offset > max_bytes:
            offset = info.st_size - max_bytes  # a flood: keep the newest, the first line is cut
        os.lseek(fd, offset, os.SEEK_SET)
        chunks = []
        remaining = info.st_size - offset
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    finally:
        os.close(fd)
    lines, rest = split_lines(b"", b"".join(chunks))
    consumed = sum(len(chunk) for chunk in chunks) - len(rest)
    return (parse_hook_lines(lines), {"dev": info.st_dev, "ino": info.st_ino, "offset": offset + consumed}, None)


def hook_record_from_env(environ, now):
    """The record earlyoom's -N hook appends, from the variables earlyoom sets
    (EARLYOOM_PID, EARLYOOM_UID, EARLYOOM_NAME) and the time of the call."""
    name = environ.get("EARLYOOM_NAME")
    return {"time": round(float(now), 3), "engine": "earlyoom", "pid": _number(environ.get("EARLYOOM_PID")),
            "name": name[:64] if isinstance(name, str) and name else None,
            "uid": _number(environ.get("EARLYOOM_UID"))}


def append_hook_record(record, path=HOOK_PATH, max_bytes=HOOK_MAX_BYTES, owner_uid=0):
    """Append one record as a JSON line to the hook file; None, or why nothing was written.

    The directory must be root's (owner_uid: tests) and writable by nobody else (it is created, mode 0755, when
    missing); the file is never followed through a symlink, must be a regular file of root's
    that nobody else may write, and stops growing at max_bytes (a kill loop cannot fill /run).
    One write() of O_APPEND: concurrent hooks never interleave a line.
    """
    directory = os.path.dirname(path)
    try:
        os.mkdir(directory, 0o755)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            return "cannot create %s: %s" % (directory, exc.strerror)
    return append_line(path, json.dumps(record, sort_keys=True) + "\n", max_bytes=max_bytes, mode=0o644,
                       owner_uid=owner_uid)


def read_hook_file(path=HOOK_PATH, owner_uid=0, max_bytes=HOOK_MAX_BYTES):
    """Every kill in the hook file (this boot's): (records, error)."""
    records, _position, error = read_hook_new(path, None, owner_uid, max_bytes)
    return records, error


# --- systemd-oomd in the journal ------------------------------------------------

def parse_oomd_message(message):
    """systemd-oomd's "Killed ..." line as {cgroup, unit, reason, kind, ...}, or None."""
    match = _OOMD_KILLED_RE.match((message or "").strip())
    if not match:
        return None
    cgroup = match.group("cgroup")
    reason = match.group("reason")
    result = {"cgroup": cgroup, "unit": cgroup.rstrip("/").rsplit("/", 1)[-1] or None, "reason": reason,
              "kind": None}
    pressure = _PRESSURE_RE.match(reason)
    if pressure:
        result.update(kind="memory_pressure", target=pressure.group("target"),
                      pressure_percent=float(pressure.group("value")), limit_percent=float(pressure.group("limit")),
                      duration=pressure.group("duration"))
        return result
    swap = _SWAP_RE.match(reason)
    if swap:
        used, total = int(swap.group("swap_used")), int(swap.group("swap_total"))
        result.update(kind="swap", swap_used_bytes=used, swap_total_bytes=total,
                      swap_used_percent=round(100.0 * used / total, 2) if total else None,
                      limit_percent=float(swap.group("limit")))
    return result


def parse_pid1_message(message):
    """PID 1's "<unit>: systemd-oomd killed N process(es) in this unit." as {unit, processes}, or None."""
    match = _PID1_RE.match((message or "").strip())
    if not match:
        return None
    count = match.group("count")
    return {"unit": match.group("unit"), "processes": None if count == "some" else int(count)}


def _journal_message(value):
    if isinstance(value, list):  # journalctl -o json prints non-UTF-8 messages as byte arrays
        try:
            return bytes(bytearray(value)).decode("utf-8", "replace")
        except (TypeError, ValueError):
            return ""
    return value if isinstance(value, str) else ""


def parse_journal_line(line):
    """One `journalctl -o json` line as an entry dict, or None (cheap test before json:
    only lines that may be kills are parsed; a non-UTF-8 MESSAGE is a byte array)."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", "replace")
    if ("Killed" not in line and "systemd-oomd killed" not in line and '"MESSAGE":[' not in line
            and '"MESSAGE" : [' not in line):
        return None
    data = _json_object(line)
    if data is None:
        return None
    usec = _number(data.get("__REALTIME_TIMESTAMP"))
    return {"message": _journal_message(data.get("MESSAGE")), "identifier": data.get("SYSLOG_IDENTIFIER"),
            "pid": _number(data.get("_PID")), "unit": data.get("UNIT"),
            "time": usec / 1e6 if usec is not None else None, "cursor": data.get("__CURSOR")}


def oomd_kills(entries, recent=None, window=PAIR_WINDOW):
    """Early kills of systemd-oomd in journal entries (parse_journal_line), oldest first.

    systemd-oomd's "Killed" line is the kill; PID 1's line about the same unit within
    `window` seconds adds the process count and is not another kill. A PID 1 line alone
    (systemd-oomd's line lost or not yet read) is a kill too. recent: {unit: {"time",
    "record"}} carried between calls (the agent reads as lines come); updated in place.
    Returns the new records.
    """
    recent = {} if recent is None else recent
    kills = []
    for entry in entries:
        if entry is None:
            continue
        when = entry.get("time")
        for unit in [u for u, seen in recent.items()
                     if when is not None and seen["time"] is not None and when - seen["time"] > window]:
            del recent[unit]
        if entry.get("identifier") == OOMD_IDENTIFIER:
            parsed = parse_oomd_message(entry["message"])
            if not parsed:
                continue
            seen = recent.get(parsed["unit"])
            if seen and seen["record"]["reason"] is None:  # PID 1 spoke first: same kill
                seen["record"].update(cgroup=parsed["cgroup"], reason=parsed["reason"])
                continue
            record = new_record("systemd-oomd", time=when, name=parsed["unit"], unit=parsed["unit"],
                                cgroup=parsed["cgroup"], reason=parsed["reason"])
            recent[parsed["unit"]] = {"time": when, "record": record}
            kills.append(record)
        elif entry.get("pid") == 1:
            parsed = parse_pid1_message(entry["message"])
            if not parsed:
                continue
            seen = recent.get(parsed["unit"])
            if seen and seen["record"]["processes"] is None:
                seen["record"]["processes"] = parsed["processes"]
                continue
            record = new_record("systemd-oomd", time=when, name=parsed["unit"], unit=parsed["unit"],
                                processes=parsed["processes"])
            recent[parsed["unit"]] = {"time": when, "record": record}
            kills.append(record)
    return kills


def parse_journal_text(text):
    """Every early kill in `journalctl -o json` output (the audit's one call)."""
    return oomd_kills([parse_journal_line(line) for line in (text or "").splitlines()])


def journal_argv(journalctl, follow=True, cursor=None, boot=False, pid1=True):
    """journalctl's arguments for the kill lines: followed by the agent, this boot's for the audit
    (pid1=False: systemd-oomd's own lines only, the cheap query on a long-running host)."""
    argv = [journalctl, "--quiet", "--no-pager", "-o", "json", "--output-fields=" + JOURNAL_FIELDS]
    if follow:
        argv += ["--follow"] + (["--after-cursor=" + cursor] if cursor else ["--lines=0"])
    if boot:
        argv.append("--boot")
    return argv + list(JOURNAL_MATCHES if pid1 else JOURNAL_MATCHES[:1])


def unit_active_marker(unit, invocation_dir=INVOCATION_DIR):
    """True while systemd has unit active (its invocation link exists)."""
    return os.path.lexists(os.path.join(invocation_dir, "invocation:" + unit))


# --- describing -----------------------------------------------------------------

def describe_kill(record):
    """One short phrase for a record: "earlyoom killed pid 812 (hog, uid 1000)"."""
    if record["engine"] == "earlyoom":
        text = "earlyoom killed pid %s (%s%s)" % (
            record["pid"] if record["pid"] is not None else "?", record["name"] or "?",
            ", uid %d" % record["uid"] if record["uid"] is not None else "")
    else:
        text = "systemd-oomd killed %s" % (record["unit"] or record["cgroup"] or "?")
        if record["processes"] is not None:
            text += " (%d process%s)" % (record["processes"], "" if record["processes"] == 1 else "es")
    if record.get("reason"):
        text += " due to %s" % record["reason"]
    return text


# --- the early_relief role's status file, as the audit reads it -----------------

STATUS_PATH = "/var/lib/oomguard/early_relief.json"


def _string_list(value):
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def planned_from_status(status):
    """What early_relief planned, from its status file: {"engine", "files", "earlyoom_args"}.

    engine: "systemd-oomd", "earlyoom" or None; files: {path: content} of the drop-ins and
    oomd.conf.d file it wrote (status "files" as a list of {path, content} or a mapping,
    at the top or under "settings"); earlyoom_args: earlyoom's arguments without the
    program (status "earlyoom_args", or "args" at the top, under "settings" or "earlyoom").
    """
    status = status if isinstance(status, dict) else {}
    settings = status.get("settings") if isinstance(status.get("settings"), dict) else {}
    engine = status.get("engine")
    if isinstance(engine, dict):
        engine = engine.get("name") or engine.get("chosen")
    engine = engine if engine in ENGINES else None
    files = {}
    raw = status.get("files", settings.get("files"))
    if isinstance(raw, dict):
        files = dict((p, c) for p, c in raw.items() if isinstance(p, str) and isinstance(c, str))
    elif isinstance(raw, list):
        files = dict((f["path"], f["content"]) for f in raw if isinstance(f, dict)
                     and isinstance(f.get("path"), str) and isinstance(f.get("content"), str))
    args = None
    earlyoom = status.get("earlyoom") if isinstance(status.get("earlyoom"), dict) else {}
    for candidate in (status.get("earlyoom_args"), earlyoom.get("args"), settings.get("args"), status.get("args")):
        args = _string_list(candidate)
        if args is not None:
            break
    return {"engine": engine, "files": files, "earlyoom_args": args}


def compare_files(planned, read):
    """(missing paths, differing paths) of planned {path: content}; read(path) -> text or None."""
    missing, differing = [], []
    for path in sorted(planned):
        text = read(path)
        if text is None:
            missing.append(path)
        elif text.strip() != planned[path].strip():
            differing.append(path)
    return missing, differing
