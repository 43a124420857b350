"""oomguard_earlykills: earlyoom's hook file and systemd-oomd's journal lines."""

import json
import os

import pytest

from ansible.module_utils.oomguard_earlykills import (
    append_hook_record, describe_kill, hook_record_from_env, journal_argv, oomd_kills, parse_hook_line, parse_journal_line, parse_journal_text,
    parse_oomd_message, parse_pid1_message, read_hook_file, read_hook_new, split_lines, unit_active_marker)

# What /usr/lib/oomguard/early-kill-hook appends (one line a kill).
HOOK_LINES = (
    '{"time": 1733130001.25, "engine": "earlyoom", "pid": 812, "name": "hog", "uid": 1000}\n'
    '{"time": 1733130009.5, "engine": "earlyoom", "pid": 901, "name": "python3", "uid": 0}\n')

# systemd 252 on Debian 12 (journalctl -o json --output-fields=MESSAGE,SYSLOG_IDENTIFIER,_PID,UNIT,...).
CURSOR = "s=5b1e0c2a9f4d4b5e8e1f3c2a1b0d9e8f;i=%x;b=0c4f1e2d3a4b5c6d7e8f9a0b1c2d3e4f;m=1e8480;t=60f1a2b3c4d5e;x=9f8e7d6c5b4a3921"


def journal_line(usec, identifier, pid, message, unit=None, seq=0x2a1):
    entry = {"__CURSOR": CURSOR % seq, "__REALTIME_TIMESTAMP": str(usec), "__MONOTONIC_TIMESTAMP": "512345678",
             "_BOOT_ID": "0c4f1e2d3a4b5c6d7e8f9a0b1c2d3e4f", "SYSLOG_IDENTIFIER": identifier, "_PID": str(pid),
             "MESSAGE": message}
    if unit:
        entry["UNIT"] = unit
    return json.dumps(entry, separators=(",", ":"))  # journalctl -o json prints it compact


OOMD_PRESSURE = ("Killed /system.slice/app-worker.service due to memory pressure for /system.slice being "
                 "52.13% > 40.00% for > 20s with reclaim activity")
OOMD_SWAP_252 = ("Killed /system.slice/hog.service due to swap used (879345664) / total (1073737728) "
                 "being more than 80.00%")
OOMD_SWAP_253 = ("Killed /user.slice/user-1000.slice/session-3.scope due to memory used (987654321) / total "
                 "(1031798784) and swap used (966367641) / total (1073737728) being more than 90.00%")
PID1_WORKER = "app-worker.service: systemd-oomd killed 3 process(es) in this unit."
JOURNAL = "\n".join([
    journal_line(1733130100000000, "systemd", 1, "Started app-worker.service - Drill worker.", "app-worker.service"),
    journal_line(1733130160123456, "systemd-oomd", 412, OOMD_PRESSURE, seq=0x2a2),
    journal_line(1733130160130000, "systemd", 1, PID1_WORKER, "app-worker.service", seq=0x2a3),
    journal_line(1733130160140000, "systemd", 1, "app-worker.service: Failed with result 'oom-kill'.",
                 "app-worker.service", seq=0x2a4),
    journal_line(1733130300000000, "systemd-oomd", 412, OOMD_SWAP_252, seq=0x2a5),
    journal_line(1733130400000000, "systemd", 1, "cron-job.service: systemd-oomd killed some process(es) in this unit.",
                 "cron-job.service", seq=0x2a6),
]) + "\n"


def test_hook_lines_parse_and_bad_lines_are_skipped():
    record = parse_hook_line(HOOK_LINES.splitlines()[0])
    assert (record["engine"], record["pid"], record["name"], record["uid"], record["time"]) == (
        "earlyoom", 812, "hog", 1000, 1733130001.25)
    assert parse_hook_line("not json") is None and parse_hook_line("[1, 2]") is None and parse_hook_line("") is None
    assert parse_hook_line(b'{"pid": "x", "name": 5}')["pid"] is None


def test_read_hook_new_reads_only_appended_lines_and_waits_for_partial_ones(tmp_path):
    path = tmp_path / "early-kills.jsonl"
    uid = os.getuid()
    assert read_hook_new(str(path), None, owner_uid=uid) == ([], None, None)  # no kill yet this boot
    path.write_text(HOOK_LINES.splitlines(True)[0])
    path.chmod(0o644)
    records, position, error = read_hook_new(str(path), None, owner_uid=uid)
    assert error is None and [r["pid"] for r in records] == [812]
    assert read_hook_new(str(path), position, owner_uid=uid)[0] == []  # size unchanged: nothing read
    with open(str(path), "a") as handle:
        handle.write('{"time": 1733130009.5, "engine": "earlyoom", "pid": 901, "na')
    records, position, _ = read_hook_new(str(path), position, owner_uid=uid)
    assert records == []  # the hook is still writing that line
    with open(str(path), "a") as handle:
        handle.write('me": "python3", "uid": 0}\n')
    records, position, _ = read_hook_new(str(path), position, owner_uid=uid)
    assert [(r["pid"], r["name"]) for r in records] == [(901, "python3")]
    path.unlink()  # a new boot: a new, shorter file
    path.write_text(HOOK_LINES.splitlines(True)[0])
    path.chmod(0o644)
    records, _, _ = read_hook_new(str(path), position, owner_uid=uid)
    assert [r["pid"] for r in records] == [812]


def test_hook_file_that_is_not_a_private_regular_file_is_refused(tmp_path):
    real = tmp_path / "real.jsonl"
    real.write_text(HOOK_LINES)
    real.chmod(0o644)
    link = tmp_path / "early-kills.jsonl"
    link.symlink_to(real)
    records, _, error = read_hook_new(str(link), None, owner_uid=os.getuid())
    assert records == [] and "symlink: refused" in error
    records, error = read_hook_file(str(real), owner_uid=os.getuid() + 1)
    assert records == [] and "not %d: refused" % (os.getuid() + 1) in error
    real.chmod(0o666)
    assert "writable by group or others" in read_hook_file(str(real), owner_uid=os.getuid())[1]
    fifo = tmp_path / "fifo"
    os.mkfifo(str(fifo))
    assert "not a regular file" in read_hook_file(str(fifo), owner_uid=os.getuid())[1]


def test_read_hook_file_keeps_the_newest_of_a_flood(tmp_path):
    path = tmp_path / "early-kills.jsonl"
    path.write_text("".join('{"pid": %d, "name": "w"}\n' % pid for pid in range(1000, 1400)))
    path.chmod(0o644)
    records, error = read_hook_file(str(path), owner_uid=os.getuid(), max_bytes=500)
    assert error is None and records[-1]["pid"] == 1399 and len(records) < 400


@pytest.mark.parametrize("message,expected", [
    (OOMD_PRESSURE, {"unit": "app-worker.service", "cgroup": "/system.slice/app-worker.service",
                     "kind": "memory_pressure", "target": "/system.slice", "pressure_percent": 52.13,
                     "limit_percent": 40.0, "duration": "20s"}),
    (OOMD_SWAP_252, {"unit": "hog.service", "kind": "swap", "swap_used_bytes": 879345664,
                     "swap_used_percent": 81.9, "limit_percent": 80.0}),
    (OOMD_SWAP_253, {"unit": "session-3.scope", "kind": "swap", "swap_total_bytes": 1073737728, "limit_percent": 90.0}),
])
def test_oomd_messages_of_systemd_252_and_later(message, expected):
    parsed = parse_oomd_message(message)
    assert dict((k, parsed[k]) for k in expected) == expected


def test_other_messages_are_not_kills():
    assert parse_oomd_message("Considered 12 cgroups for killing, top candidates were:") is None
    assert parse_oomd_message("Failed to kill any cgroup(s) based on swap: No such process") is None
    assert parse_pid1_message(PID1_WORKER) == {"unit": "app-worker.service", "processes": 3}
    assert parse_pid1_message("x.scope: systemd-oomd killed some process(es) in this unit.")["processes"] is None
    assert parse_pid1_message("app-worker.service: Failed with result 'oom-kill'.") is None
    assert parse_journal_line(journal_line(1, "systemd", 1, "Started cron.service.")) is None  # not parsed at all


def test_journal_text_pairs_pid1_lines_with_oomd_lines():
    kills = parse_journal_text(JOURNAL)
    assert [(k["unit"], k["processes"], k["reason"] is not None) for k in kills] == [
        ("app-worker.service", 3, True), ("hog.service", None, True), ("cron-job.service", None, False)]
    assert kills[0]["time"] == pytest.approx(1733130160.123456)
    assert kills[0]["cgroup"] == "/system.slice/app-worker.service" and kills[0]["engine"] == "systemd-oomd"
    assert describe_kill(kills[0]) == ("systemd-oomd killed app-worker.service (3 processes) due to memory pressure "
                                       "for /system.slice being 52.13% > 40.00% for > 20s with reclaim activity")


def test_lines_read_over_two_calls_are_one_kill_and_user_managers_alone_are_not_kills():
    recent = {}
    pid1_first = parse_journal_line(journal_line(1733130160000000, "systemd", 1, PID1_WORKER, "app-worker.service"))
    oomd_after = parse_journal_line(journal_line(1733130160200000, "systemd-oomd", 412, OOMD_PRESSURE))
    first = oomd_kills([pid1_first], recent)
    assert len(first) == 1 and first[0]["processes"] == 3
    assert oomd_kills([oomd_after], recent) == [] and first[0]["reason"].startswith("memory pressure")
    user = parse_journal_line(journal_line(1733130500000000, "systemd", 1565,
                                           "vte-spawn-1.scope: systemd-oomd killed 4 process(es) in this unit."))
    assert oomd_kills([user], recent) == []
    later = parse_journal_line(journal_line(1733130900000000, "systemd-oomd", 412, OOMD_PRESSURE))
    assert len(oomd_kills([later], recent)) == 1  # outside the pairing window: a new kill


def test_non_utf8_message_as_byte_array():
    line = json.dumps({"SYSLOG_IDENTIFIER": "systemd-oomd", "_PID": "412", "__REALTIME_TIMESTAMP": "1",
                       "MESSAGE": list(OOMD_SWAP_252.encode("utf-8"))}, separators=(",", ":"))
    entry = parse_journal_line(line)
    assert parse_oomd_message(entry["message"])["unit"] == "hog.service"


def test_split_lines_and_journal_argv(tmp_path):
    assert split_lines(b"", b"a\nb") == ([b"a"], b"b")
    assert split_lines(b"b", b"c\n") == ([b"bc"], b"")
    argv = journal_argv("/usr/bin/journalctl")
    assert argv[:2] == ["/usr/bin/journalctl", "--quiet"] and "--follow" in argv and "--lines=0" in argv
    assert argv[-3:] == ["SYSLOG_IDENTIFIER=systemd-oomd", "+", "_PID=1"]
    assert "--after-cursor=c1" in journal_argv("journalctl", cursor="c1")
    boot = journal_argv("journalctl", follow=False, boot=True)
    assert "--boot" in boot and "--follow" not in boot
    assert unit_active_marker("systemd-oomd.service", str(tmp_path)) is False
    os.symlink("0123abcd", str(tmp_path / "invocation:systemd-oomd.service"))
    assert unit_active_marker("systemd-oomd.service", str(tmp_path)) is True


def test_describe_earlyoom_kill():
    assert describe_kill(parse_hook_line(HOOK_LINES.splitlines()[0])) == "earlyoom killed pid 812 (hog, uid 1000)"


def test_planned_from_status_reads_the_shapes_early_relief_may_write():
    from ansible.module_utils.oomguard_earlykills import compare_files, planned_from_status
    oomd = planned_from_status({"engine": "systemd-oomd", "files": [{"path": "/etc/a.conf", "content": "[OOM]\n"}]})
    assert oomd == {"engine": "systemd-oomd", "files": {"/etc/a.conf": "[OOM]\n"}, "earlyoom_args": None}
    early = planned_from_status({"engine": {"name": "earlyoom"}, "settings": {"args": ["-m", "10"]}})
    assert early["engine"] == "earlyoom" and early["earlyoom_args"] == ["-m", "10"]
    assert planned_from_status(None) == {"engine": None, "files": {}, "earlyoom_args": None}
    assert planned_from_status({"engine": "none"})["engine"] is None
    files = {"/a": "x\n", "/b": "y\n", "/c": "z\n"}
    assert compare_files(files, {"/a": "x", "/b": "changed\n"}.get) == (["/c"], ["/b"])


def test_hook_record_from_earlyoom_environment():
    record = hook_record_from_env({"EARLYOOM_PID": "812", "EARLYOOM_UID": "1000", "EARLYOOM_NAME": "hog"}, 1733130001.25)
    assert record == {"time": 1733130001.25, "engine": "earlyoom", "pid": 812, "name": "hog", "uid": 1000}
    assert hook_record_from_env({"EARLYOOM_PID": "x"}, 1) == {"time": 1, "engine": "earlyoom", "pid": None,
                                                              "name": None, "uid": None}


def test_appended_records_are_read_back_and_the_file_is_private(tmp_path):
    path = str(tmp_path / "oomguard" / "early-kills.jsonl")
    uid = os.getuid()
    for pid, name in ((812, "hog"), (901, 'we"ird\nname')):
        record = hook_record_from_env({"EARLYOOM_PID": str(pid), "EARLYOOM_UID": "0", "EARLYOOM_NAME": name}, 5.0)
        assert append_hook_record(record, path, owner_uid=uid) is None
    records, error = read_hook_file(path, owner_uid=uid)
    assert error is None
    assert [(r["pid"], r["name"]) for r in records] == [(812, "hog"), (901, 'we"ird\nname')]
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    assert oct(os.stat(os.path.dirname(path)).st_mode & 0o777) == "0o755"


def test_append_refuses_links_foreign_directories_and_a_full_file(tmp_path):
    uid = os.getuid()
    record = hook_record_from_env({"EARLYOOM_PID": "1", "EARLYOOM_NAME": "hog"}, 1.0)
    target = tmp_path / "shadow"
    target.write_text("secret\n")
    link = tmp_path / "early-kills.jsonl"
    link.symlink_to(target)
    assert "symlink: refused" in append_hook_record(record, str(link), owner_uid=uid)
    assert target.read_text() == "secret\n"
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    assert "refused" in append_hook_record(record, str(open_dir / "k.jsonl"), owner_uid=uid)
    assert not (open_dir / "k.jsonl").exists()
    assert "refused" in append_hook_record(record, str(tmp_path / "k.jsonl"), owner_uid=uid + 1)
    full = tmp_path / "full.jsonl"
    full.write_text("x" * 100)
    full.chmod(0o644)
    assert "record dropped" in append_hook_record(record, str(full), max_bytes=100, owner_uid=uid)
    assert full.stat().st_size == 100
