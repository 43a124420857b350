"""Process snapshots (oomguard_snapshot) against a fake /proc built from recorded files."""

import json
import os

import pytest

from ansible.module_utils.oomguard_snapshot import (
    append_snapshot, format_snapshot_line, read_latest_snapshot, read_snapshots, take_snapshot)

MEMINFO = """MemTotal:        1004300 kB
MemFree:           61232 kB
MemAvailable:     150644 kB
Buffers:            1024 kB
Cached:           101600 kB
SwapTotal:       1048572 kB
SwapFree:         524286 kB
"""
PSI = "some avg10=23.51 avg60=8.10 avg300=1.92 total=4873012\nfull avg10=12.00 avg60=3.40 avg300=0.71 total=2112233\n"

# pid, comm, ppid, cmdline, cgroup (v2), rss kB, swap kB, oom_score_adj, oom_score
PROCESSES = [
    (1, "systemd", 0, "/sbin/init", "/init.scope", 11200, 0, 0, 0),
    (2, "kthreadd", 0, "", "/", 0, 0, 0, 0),
    (45, "kworker/0:1", 2, "", "/", 0, 0, 0, 0),
    (412, "sshd", 1, "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups", "/system.slice/ssh.service",
     7800, 120, -1000, 0),
    (812, "python3", 611, "python3 -c bytearray(700 * 1024 * 1024)", "/user.slice/user-0.slice/session-3.scope",
     716800, 204800, 0, 912),
    (900, "postgres", 1, "postgres: 15/main: checkpointer", "/system.slice/postgresql@15-main.service",
     143000, 409600, -900, 1),
    (901, "java (app)", 1, "/usr/bin/java -Xmx2g -jar app.jar", "/system.slice/app.service", 512000, 0, 300, 800),
]


def stat_line(pid, comm, ppid, rss_pages):
    # Fields after "(comm)": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    # utime stime cutime cstime priority nice threads itrealvalue starttime vsize rss ...
    rest = ["S", ppid, pid, pid, 0, -1, 4194560, 100, 0, 0, 0, 5, 3, 0, 0, 20, 0, 1, 0, 1234, 10000000, rss_pages]
    rest += [0] * 30
    return "%d (%s) %s\n" % (pid, comm, " ".join(str(x) for x in rest))


@pytest.fixture
def fake_proc(tmp_path):
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "meminfo").write_text(MEMINFO)
    (proc / "pressure").mkdir()
    (proc / "pressure" / "memory").write_text(PSI)
    for pid, comm, ppid, cmdline, cgroup, rss_kb, swap_kb, adj, score in PROCESSES:
        base = proc / str(pid)
        base.mkdir()
        (base / "stat").write_text(stat_line(pid, comm, ppid, rss_kb // 4))
        (base / "status").write_text(
            "Name:\t%s\nState:\tS (sleeping)\nTgid:\t%d\nPPid:\t%d\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n"
            "VmRSS:\t%8d kB\nRssAnon:\t%8d kB\nVmSwap:\t%8d kB\n" % (comm, pid, ppid, rss_kb, rss_kb, swap_kb))
        (base / "cgroup").write_text("0::%s\n" % cgroup)
        (base / "cmdline").write_bytes(cmdline.replace(" ", "\0").encode() + (b"\0" if cmdline else b""))
        (base / "oom_score_adj").write_text("%d\n" % adj)
        (base / "oom_score").write_text("%d\n" % score)
    return str(proc)


def test_take_snapshot_orders_by_rss_and_swap(fake_proc):
    record = take_snapshot(fake_proc, top_n=3, reason="alert memory_available:critical", now=1700000000.12345, host="web1")
    assert [p["pid"] for p in record["top_rss"]] == [812, 901, 900]
    assert [p["pid"] for p in record["top_swap"]] == [900, 812, 412]
    hog = record["top_rss"][0]
    assert hog == {"pid": 812, "comm": "python3", "cmdline": "python3 -c bytearray(700 * 1024 * 1024)",
                   "unit": "session-3.scope", "cgroup": "/user.slice/user-0.slice/session-3.scope",
                   "rss_bytes": 716800 * 1024, "swap_bytes": 204800 * 1024, "oom_score_adj": 0, "oom_score": 912}
    assert record["top_swap"][0]["unit"] == "postgresql@15-main.service"
    assert record["top_swap"][0]["oom_score_adj"] == -900
    assert record["time"] == 1700000000.123 and record["host"] == "web1"
    assert record["reason"] == "alert memory_available:critical"
    assert record["memory"]["mem_available_percent"] == 15.0 and record["memory"]["swap_used_percent"] == 50.0
    assert record["psi"]["some"]["avg10"] == 23.51
    assert record["processes_seen"] == 7


def test_snapshot_skips_kernel_threads_and_zero_swap(fake_proc):
    record = take_snapshot(fake_proc, top_n=50)
    pids = [p["pid"] for p in record["top_rss"]]
    assert 2 not in pids and 45 not in pids
    assert [p["pid"] for p in record["top_swap"]] == [900, 812, 412]


def test_snapshot_survives_vanishing_process(fake_proc):
    os.remove(os.path.join(fake_proc, "901", "stat"))
    record = take_snapshot(fake_proc, top_n=2)
    assert [p["pid"] for p in record["top_rss"]] == [812, 900]


def test_format_line_is_one_compact_sorted_json_line():
    line = format_snapshot_line({"b": 1, "a": "x\ny"})
    assert line == '{"a":"x\\ny","b":1}\n'
    assert line.count("\n") == 1


def test_append_rotates_and_bounds_disk_use(tmp_path):
    path = str(tmp_path / "snapshots.jsonl")
    max_bytes, keep = 1000, 2
    for index in range(60):
        append_snapshot(path, {"index": index, "pad": "x" * 80}, max_bytes, keep)
    files = sorted(os.listdir(str(tmp_path)))
    assert files == ["snapshots.jsonl", "snapshots.jsonl.1", "snapshots.jsonl.2"]
    total = sum(os.path.getsize(str(tmp_path / name)) for name in files)
    assert total <= max_bytes * (keep + 1)
    for name in files:
        assert os.path.getsize(str(tmp_path / name)) <= max_bytes
    newest = read_snapshots(path)
    older = read_snapshots(path + ".1")
    assert newest[-1]["index"] == 59
    assert older[-1]["index"] == newest[0]["index"] - 1
    assert oct(os.stat(path).st_mode & 0o777) == "0o640"


def test_read_latest_snapshot(tmp_path, fake_proc):
    path = str(tmp_path / "snapshots.jsonl")
    assert read_latest_snapshot(path) is None
    first = take_snapshot(fake_proc, top_n=2, reason="one", now=1.0, host="h")
    second = take_snapshot(fake_proc, top_n=2, reason="two", now=2.0, host="h")
    append_snapshot(path, first, 10 ** 6, 3)
    append_snapshot(path, second, 10 ** 6, 3)
    assert read_latest_snapshot(path) == json.loads(json.dumps(second))
    # a crash mid-write leaves a partial line: fall back to the rotated file
    os.rename(path, path + ".1")
    with open(path, "w") as handle:
        handle.write('{"reason": "tru')
    assert read_latest_snapshot(path)["reason"] == "two"


def test_append_refuses_nonsense_bounds(tmp_path):
    with pytest.raises(ValueError, match="max_bytes"):
        append_snapshot(str(tmp_path / "x"), {}, 0, 1)


def test_append_snapshot_never_follows_a_planted_link(tmp_path):
    """Issue 15: a link at snapshots.jsonl made the agent append to /etc/shadow."""
    shadow = tmp_path / "shadow"
    shadow.write_text("root:*:19000:0:99999:7:::\n")
    path = tmp_path / "snapshots.jsonl"
    path.symlink_to(shadow)
    with pytest.raises(OSError, match="symlink: refused"):
        append_snapshot(str(path), {"time": 1.0}, 4096, 2)
    assert shadow.read_text() == "root:*:19000:0:99999:7:::\n"


def test_rotation_moves_links_never_their_targets(tmp_path):
    shadow = tmp_path / "shadow"
    shadow.write_text("secret\n")
    path = tmp_path / "alerts.jsonl"
    path.write_text("x" * 5000 + "\n")
    (tmp_path / "alerts.jsonl.2").symlink_to(shadow)
    append_snapshot(str(path), {"time": 1.0}, 4096, 2)
    assert shadow.read_text() == "secret\n"
    assert (tmp_path / "alerts.jsonl.1").stat().st_size == 5001
    assert json.loads(path.read_text()) == {"time": 1.0}


def test_append_snapshot_refuses_a_directory_others_may_write(tmp_path):
    place = tmp_path / "log"
    place.mkdir()
    place.chmod(0o1777)
    with pytest.raises(OSError, match="writable by group or others"):
        append_snapshot(str(place / "snapshots.jsonl"), {"time": 1.0}, 4096, 2)
    assert os.listdir(str(place)) == []
