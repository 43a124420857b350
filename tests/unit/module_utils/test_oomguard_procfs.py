import os

import pytest

from ansible.module_utils import oomguard_procfs as procfs
from fakeproc import add_process


@pytest.fixture
def proc(tmp_path):
    root = tmp_path / "proc"
    root.mkdir()
    add_process(root, 1, "systemd", ppid=0, cgroup_v2="/init.scope")
    add_process(root, 2, "kthreadd", ppid=0, rss_kb=0, cmdline=[])
    add_process(root, 480, "sshd", adj=-1000, cmdline=["sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups"],
                cgroup_v2="/system.slice/ssh.service")
    add_process(root, 900, "sshd", ppid=480, cgroup_v2="/system.slice/ssh.service")
    add_process(root, 901, "bash", ppid=900, rss_kb=5000, swap_kb=1200, cgroup_v2="/system.slice/ssh.service")
    add_process(root, 1200, "tmux: server (1)", ppid=1, cgroup_v1_systemd="/user.slice/user-0.slice/session-3.scope")
    add_process(root, 1300, "python3", ppid=1, cmdline=["/usr/bin/python3", "/usr/local/bin/a-very-long-agent-name"])
    (root / "self").mkdir()
    return str(root)


def test_list_pids_numeric_only(proc):
    assert procfs.list_pids(proc) == [1, 2, 480, 900, 901, 1200, 1300]


@pytest.mark.parametrize("text,expected", [
    ("480 (sshd) S 1 480 480 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 700 15872000 1500 18446744073709551615",
     {"pid": 480, "comm": "sshd", "ppid": 1, "state": "S", "rss_pages": 1500, "starttime": 700}),
    # comm with spaces and parentheses: the last ')' ends it
    ("77 (tmux: server (1)) R 1 77 77 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 9 1 2 3",
     {"pid": 77, "comm": "tmux: server (1)", "ppid": 1, "state": "R", "rss_pages": 2, "starttime": 9}),
])
def test_parse_stat(text, expected):
    assert procfs.parse_stat(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("0::/system.slice/ssh.service\n", {"unified": "/system.slice/ssh.service"}),
    ("12:memory:/system.slice/cron.service\n4:cpu,cpuacct:/system.slice/cron.service\n"
     "1:name=systemd:/system.slice/cron.service\n0::/system.slice/cron.service\n",
     {"memory": "/system.slice/cron.service", "cpu": "/system.slice/cron.service",
      "cpuacct": "/system.slice/cron.service", "name=systemd": "/system.slice/cron.service",
      "unified": "/system.slice/cron.service"}),
    ("", {}),
])
def test_parse_cgroup(text, expected):
    assert procfs.parse_cgroup(text) == expected


@pytest.mark.parametrize("path,unit", [
    ("/system.slice/ssh.service", "ssh.service"),
    ("/user.slice/user-0.slice/session-3.scope", "session-3.scope"),
    ("/system.slice/docker-1.scope/payload", "docker-1.scope"),
    ("/", None),
    (None, None),
    ("/user.slice", None),
])
def test_unit_from_cgroup_path(path, unit):
    assert procfs.unit_from_cgroup_path(path) == unit


def test_read_process_fields(proc):
    info = procfs.read_process(901, proc)
    assert info["comm"] == "bash"
    assert info["ppid"] == 900
    assert info["rss_bytes"] == 5000 * 1024
    assert info["swap_bytes"] == 1200 * 1024
    assert info["unit"] == "ssh.service"
    assert info["oom_score_adj"] == 0
    assert info["kernel_thread"] is False


def test_read_process_prefers_v1_systemd_hierarchy(proc):
    assert procfs.read_process(1200, proc)["unit"] == "session-3.scope"


def test_read_process_kernel_thread(proc):
    assert procfs.read_process(2, proc)["kernel_thread"] is True


def test_read_process_vanished(proc):
    assert procfs.read_process(4242, proc) is None


def test_scan_oom_scores_matches_read_process(proc):
    rows = {row[0]: row for row in procfs.scan_oom_scores(proc)}
    assert rows[480] == (480, 1, "sshd", -1000, 1024)
    assert rows[1200][2] == "tmux: server (1)"
    assert set(rows) == {1, 2, 480, 900, 901, 1200, 1300}


def test_write_then_read_oom_score_adj(proc):
    assert procfs.write_oom_score_adj(901, 500, proc) == (True, None)
    assert procfs.read_oom_score_adj(901, proc) == 500


def test_write_oom_score_adj_vanished_process(proc):
    ok, reason = procfs.write_oom_score_adj(4242, 0, proc)
    assert not ok and "exited" in reason


def test_write_oom_score_adj_against_the_real_kernel():
    """Lowering needs CAP_SYS_RESOURCE: either it takes, or it is refused and reported, never half-done."""
    import subprocess
    child = subprocess.Popen(["sleep", "30"])
    try:
        ok, reason = procfs.write_oom_score_adj(child.pid, -500)
        value = procfs.read_oom_score_adj(child.pid)
        if ok:
            assert reason is None and value == -500
        else:
            assert "refused" in reason and "CAP_SYS_RESOURCE" in reason and value == 0
        # Raising needs no privilege and always takes.
        assert procfs.write_oom_score_adj(child.pid, 300) == (True, None)
        assert procfs.read_oom_score_adj(child.pid) == 300
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("name,pids", [
    ("sshd", [480, 900]),
    ("bash", [901]),
    ("a-very-long-agent-name", []),  # comm is python3, argv[0] is python3
    ("python3", [1300]),
    ("nope", []),
])
def test_pids_by_name(proc, name, pids):
    assert procfs.pids_by_name(name, proc) == pids


def test_pids_by_name_long_comm(tmp_path):
    root = tmp_path / "proc"
    root.mkdir()
    add_process(root, 10, "systemd-journald", cmdline=["/lib/systemd/systemd-journald"])
    assert procfs.pids_by_name("systemd-journald", str(root)) == [10]


@pytest.mark.parametrize("content,pid", [("480\n", 480), ("  77  \n", 77), ("", None), ("abc", None)])
def test_read_pidfile(tmp_path, content, pid):
    path = tmp_path / "x.pid"
    path.write_text(content)
    assert procfs.read_pidfile(str(path)) == pid


def test_read_pidfile_missing(tmp_path):
    assert procfs.read_pidfile(str(tmp_path / "none.pid")) is None


def test_children_of():
    procs = [{"pid": 1, "ppid": 0}, {"pid": 5, "ppid": 1}, {"pid": 6, "ppid": 5}, {"pid": 7, "ppid": 1}]
    assert procfs.children_of(procs, 1) == [5, 7]
