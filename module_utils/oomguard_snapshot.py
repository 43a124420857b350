# -*- coding: utf-8 -*-
# Copyright: oomguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Process snapshots: who held the memory when an alert fired or the OOM killer ran.

Standard library only. A snapshot is one JSON object on one line of
/var/log/oomguard/snapshots.jsonl:

  {"time": 1700000000.1, "reason": "alert memory_available:critical", "host": "web1",
   "memory": {memory_summary()}, "psi": {...} or null,
   "top_rss": [{pid, comm, cmdline, unit, cgroup, rss_bytes, swap_bytes, oom_score_adj, oom_score}, ...],
   "top_swap": [...same, only processes with swap in use...],
   "processes_seen": 212, "oom_victims": [...] (after an OOM kill) }

append_snapshot() keeps disk use bounded: when the file would grow past max_bytes it
is rotated to .1 (.1 to .2, ...), keeping `keep` old files, so the total stays under
max_bytes * (keep + 1).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import os
import socket
import time

try:
    from ansible.module_utils.oomguard_files import UnsafePathError, append_line, check_write_dir
    from ansible.module_utils.oomguard_memstat import memory_summary, read_meminfo, read_psi
    from ansible.module_utils.oomguard_procfs import read_process, scan_processes
except ImportError:  # installed beside an agent, outside Ansible
    from oomguard_files import UnsafePathError, append_line, check_write_dir
    from oomguard_memstat import memory_summary, read_meminfo, read_psi
    from oomguard_procfs import read_process, scan_processes

SNAPSHOT_PATH = "/var/log/oomguard/snapshots.jsonl"
DEFAULT_TOP_N = 10
ENTRY_KEYS = ("pid", "comm", "cmdline", "unit", "cgroup", "rss_bytes", "swap_bytes", "oom_score_adj", "oom_score")
CMDLINE_MAX = 512


def _entry(info):
    entry = dict((key, info.get(key)) for key in ENTRY_KEYS)
    if entry["cmdline"] and len(entry["cmdline"]) > CMDLINE_MAX:
        entry["cmdline"] = entry["cmdline"][:CMDLINE_MAX] + "..."
    return entry


def top_processes(processes, key, top_n):
    """The top_n user-space processes by key (rss_bytes or swap_bytes), biggest first; zeros left out."""
    candidates = [p for p in processes if not p.get("kernel_thread") and (p.get(key) or 0) > 0]
    candidates.sort(key=lambda p: (-(p.get(key) or 0), p["pid"]))
    return candidates[:top_n]


def take_snapshot(proc="/proc", top_n=DEFAULT_TOP_N, reason=None, now=None, host=None):
    """Read every process once and return the snapshot record (see module docstring)."""
    processes = scan_processes(proc, with_cmdline=False)
    record = {
        "time": round(time.time() if now is None else now, 3),
        "reason": reason,
        "host": host if host is not None else socket.gethostname(),
        "memory": memory_summary(read_meminfo(proc)),
        "psi": read_psi(proc),
        "processes_seen": len(processes),
    }
    for list_name, key in (("top_rss", "rss_bytes"), ("top_swap", "swap_bytes")):
        entries = []
        for info in top_processes(processes, key, top_n):
            # cmdline only for the few listed: one more read each, not one per process.
            full = read_process(info["pid"], proc, with_cmdline=True) or dict(info, cmdline=None)
            entries.append(_entry(full))
        record[list_name] = entries
    return record


def format_snapshot_line(record):
    """One compact, key-sorted JSON line (with the newline)."""
    return json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"


def rotate(path, keep):
    """path -> path.1 -> ... -> path.<keep>; the oldest beyond keep is removed."""
    # lexists, unlink and rename act on a link itself, never on what it points to.
    oldest = "%s.%d" % (path, keep)
    if os.path.lexists(oldest):
        os.unlink(oldest)
    for index in range(keep - 1, 0, -1):
        source = "%s.%d" % (path, index)
        if os.path.lexists(source):
            os.rename(source, "%s.%d" % (path, index + 1))
    if os.path.lexists(path):
        os.rename(path, "%s.1" % path)


def append_snapshot(path, record, max_bytes, keep, mode=0o640):
    """Append record as a JSON line to path, rotating first when it would pass max_bytes.

    A single record larger than max_bytes is still written (alone in a fresh file).
    Returns the number of bytes written. Used for the snapshot and the alert-event logs.
    """
    if max_bytes <= 0 or keep < 1:
        raise ValueError("append_snapshot: max_bytes must be > 0 and keep >= 1 (got %r, %r)" % (max_bytes, keep))
    data = format_snapshot_line(record).encode("utf-8")
    check_write_dir(path)  # before the rotation too: its renames stay in a safe directory
    try:
        size = os.lstat(path).st_size  # a link is never followed, here or below
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
        size = 0
    if size and size + len(data) > max_bytes:
        rotate(path, keep)
    reason = append_line(path, data, mode=mode)
    if reason:
        raise UnsafePathError(reason)
    return len(data)


def _last_line(path, chunk=65536):
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            end = handle.tell()
            data = b""
            position = end
            while position > 0:
                step = min(chunk, position)
                position -= step
                handle.seek(position)
                data = handle.read(step) + data
                stripped = data.rstrip(b"\n")
                if b"\n" in stripped:
                    return stripped.rsplit(b"\n", 1)[1]
            return data.rstrip(b"\n") or None
    except (IOError, OSError) as exc:
        if exc.errno in (errno.ENOENT, errno.EACCES):
            return None
        raise


def read_latest_snapshot(path=SNAPSHOT_PATH):
    """The newest snapshot record (dict), or None when there is none.

    Looks in path, then path.1 (right after a rotation the live file may be empty). A
    truncated last line (crash mid-write) is skipped in favour of the previous file.
    """
    for candidate in (path, "%s.1" % path):
        line = _last_line(candidate)
        if not line:
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except ValueError:
            continue
        if isinstance(record, dict):
            return record
    return None


def read_snapshots(path=SNAPSHOT_PATH):
    """Every record of path (not the rotated files), oldest first; bad lines skipped."""
    records = []
    try:
        with open(path, "r") as handle:
            for line in handle:
                line = line.strip()
                if not line:
                    continue
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
    except (IOError, OSError) as exc:
        if exc.errno in (errno.ENOENT, errno.EACCES):
            return []
        raise
    return records
