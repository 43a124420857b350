import os

from ansible.module_utils import oomguard_oomlog as oomlog

# Recorded from a Debian 12 VM (6.1 kernel): a MemoryMax=64M unit, then a global OOM.
KMSG = """4,1801,65210332,-;python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0
4,1802,65210350,-;CPU: 1 PID: 812 Comm: python3 Not tainted 6.1.0-27-amd64 #1  Debian 6.1.115-1
6,1840,65210999,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/system.slice/oomguard-test-hog.service,task_memcg=/system.slice/oomguard-test-hog.service,task=python3,pid=812,uid=0
3,1841,65211020,-;Memory cgroup out of memory: Killed process 812 (python3) total-vm:80972kB, anon-rss:64540kB, file-rss:5120kB, shmem-rss:0kB, UID:0 pgtables:200kB oom_score_adj:0
4,1900,90000000,-;stress invoked oom-killer: gfp_mask=0x140dca(GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_ZERO), order=0, oom_score_adj=500
6,1950,90000100,-;oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/user.slice/user-0.slice/session-1.scope,task=stress,pid=1234,uid=0
3,1951,90000120,-;Out of memory: Killed process 1234 (stress) total-vm:900000kB, anon-rss:850000kB, file-rss:4kB, shmem-rss:0kB, UID:0 pgtables:1800kB oom_score_adj:500
"""


def test_parse_oom_events_kmsg():
    events = oomlog.parse_oom_events(KMSG)
    assert [(e["pid"], e["comm"], e["scope"]) for e in events] == [(812, "python3", "memcg"), (1234, "stress", "global")]
    first, second = events
    assert first["task_memcg"] == "/system.slice/oomguard-test-hog.service"
    assert first["rss_bytes"] == (64540 + 5120) * 1024
    assert first["uptime"] == 65.211020
    assert first["invoker"] == "python3"
    assert second["oom_score_adj"] == 500
    assert second["constraint"] == "CONSTRAINT_NONE"
    assert second["task_memcg"] == "/user.slice/user-0.slice/session-1.scope"


def test_parse_oom_events_dmesg_and_old_kernels():
    text = ("[ 1234.567890] Out of memory: Kill process 99 (java) score 900 or sacrifice child\n"
            "[ 1300.000001] Killed process 5 (x)\n")
    events = oomlog.parse_oom_events(text)
    assert [(e["pid"], e["comm"], e["uptime"]) for e in events] == [(99, "java", 1234.56789)]


def test_parse_oom_events_nothing():
    assert oomlog.parse_oom_events("6,1,1,-;usb 1-1: new device\n") == []
    assert oomlog.parse_oom_events(None) == []


def test_read_kmsg_real_or_unavailable():
    text = oomlog.read_kmsg()
    if os.geteuid() == 0 and os.path.exists("/dev/kmsg"):
        assert text is not None and ";" in text.splitlines()[0]
    assert oomlog.read_kmsg("/nonexistent/kmsg") is None
