# -*- coding: utf-8 -*-
# Copyright: oomguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one reader of OOM-kill events from the kernel log.

Standard library only. The kernel prints, for each kill (since 4.19):

  oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,
      oom_memcg=/system.slice/hog.service,task_memcg=/system.slice/hog.service,task=hog,pid=812,uid=0
  Memory cgroup out of memory: Killed process 812 (hog) total-vm:70040kB, anon-rss:64812kB,
      file-rss:1100kB, shmem-rss:0kB, UID:0 pgtables:172kB oom_score_adj:0
  (or "Out of memory: Killed process ..." for a host-wide OOM)

and "<task> invoked oom-killer: gfp_mask=..., order=0, oom_score_adj=0" before them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import re

_KILLED_RE = re.compile(
    r"(?P<scope>Memory cgroup out of memory|Out of memory(?: \(oom_kill_allocating_task\))?): "
    r"Kill(?:ed)? process (?P<pid>\d+) \((?P<comm>.*?)\)"
    r"(?: total-vm:(?P<total_vm>\d+)kB, anon-rss:(?P<anon>\d+)kB, file-rss:(?P<file>\d+)kB, shmem-rss:(?P<shmem>\d+)kB)?"
    r"(?:,? UID:(?P<uid>\d+))?(?: pgtables:\d+kB)?(?: oom_score_adj:(?P<adj>-?\d+))?")
_OOMKILL_RE = re.compile(r"oom-kill:(?P<fields>\S+)")
_INVOKED_RE = re.compile(r"(?P<comm>.+?) invoked oom-killer: .*?oom_score_adj=(?P<adj>-?\d+)")
# /dev/kmsg record: "priority,sequence,timestamp_us,flags;message"
_KMSG_RE = re.compile(r"^(?P<prio>\d+),(?P<seq>\d+),(?P<usec>\d+),[^;]*;(?P<msg>.*)$")
# dmesg / journalctl -k -o short-monotonic: "[  123.456789] message"
_DMESG_RE = re.compile(r"^\[\s*(?P<sec>\d+\.\d+)\]\s?(?P<msg>.*)$")


def _split_line(line):
    """(seconds since boot or None, message) for kmsg, dmesg or plain lines."""
    match = _KMSG_RE.match(line)
    if match:
        return int(match.group("usec")) / 1e6, match.group("msg")
    match = _DMESG_RE.match(line)
    if match:
        return float(match.group("sec")), match.group("msg")
    return None, line


def parse_oom_events(text):
    """OOM kills in kernel-log text, oldest first.

    Each event: pid, comm, uid, rss_bytes (anon+file+shmem), anon_rss_bytes,
    oom_score_adj, scope ('memcg' or 'global'), constraint, oom_memcg, task_memcg,
    invoker (the task that triggered the OOM), uptime (seconds since boot or None).
    """
    events = []
    pending_detail = {}
    invoker = None
    for raw in (text or "").splitlines():
        uptime, msg = _split_line(raw.strip())
        match = _INVOKED_RE.search(msg)
        if match:
            invoker = match.group("comm").strip()
            continue
        match = _OOMKILL_RE.search(msg)
        if match:
            pending_detail = {}
            for item in match.group("fields").split(","):
                key, sep, value = item.partition("=")
                if sep:
                    pending_detail[key] = value
            continue
        match = _KILLED_RE.search(msg)
        if not match:
            continue
        kb = [int(match.group(k) or 0) for k in ("anon", "file", "shmem")]
        event = {
            "pid": int(match.group("pid")),
            "comm": match.group("comm"),
            "uid": int(match.group("uid")) if match.group("uid") else None,
            "rss_bytes": sum(kb) * 1024,
            "anon_rss_bytes": kb[0] * 1024,
            "oom_score_adj": int(match.group("adj")) if match.group("adj") else None,
            "scope": "memcg" if match.group("scope").startswith("Memory cgroup") else "global",
            "constraint": pending_detail.get("constraint"),
            "oom_memcg": pending_detail.get("oom_memcg"),
            "task_memcg": pending_detail.get("task_memcg"),
            "invoker": invoker,
            "uptime": uptime,
        }
        if pending_detail.get("pid") and pending_detail.get("pid") != str(event["pid"]):
            event["task_memcg"] = None
        events.append(event)
        pending_detail = {}
        invoker = None
    return events


def read_kmsg(path="/dev/kmsg", max_bytes=4 * 1024 * 1024):
    """Every record still in the kernel ring buffer, without blocking, as text (kmsg format).

    Returns None when the log cannot be read (not root, or no /dev/kmsg in a container).
    Reading /dev/kmsg consumes nothing: each opener gets its own cursor.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    chunks = []
    total = 0
    try:
        while total < max_bytes:
            try:
                record = os.read(fd, 8192)
            except OSError as exc:
                if exc.errno == errno.EAGAIN:
                    break
                if exc.errno == errno.EPIPE:  # record overwritten while reading: skip it
                    continue
                if exc.errno == errno.EINVAL:
                    break
                raise
            if not record:
                break
            chunks.append(record.decode("utf-8", "replace"))
            total += len(record)
    finally:
        os.close(fd)
    return "".join(chunks)
