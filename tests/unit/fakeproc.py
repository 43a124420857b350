"""Build fake /proc trees under tmp_path from realistic recorded content."""

import os

STAT_TEMPLATE = ("{pid} ({comm}) {state} {ppid} {pid} {pid} 0 -1 4194560 1064 0 0 0 3 1 0 0 20 0 1 0 "
                 "{starttime} 15872000 {rss_pages} 18446744073709551615 1 1 0 0 0 0 0 4096 17923 0 0 0 17 1 0 0 0 0 0")

STATUS_TEMPLATE = """Name:\t{comm}
Umask:\t0022
State:\t{state} (sleeping)
Tgid:\t{pid}
Ngid:\t0
Pid:\t{pid}
PPid:\t{ppid}
TracerPid:\t0
Uid:\t{uid}\t{uid}\t{uid}\t{uid}
Gid:\t0\t0\t0\t0
VmPeak:\t   15500 kB
VmSize:\t   15500 kB
VmRSS:\t    {rss_kb} kB
RssAnon:\t    {rss_kb} kB
RssFile:\t       0 kB
RssShmem:\t       0 kB
VmSwap:\t    {swap_kb} kB
Threads:\t1
"""


def add_process(proc, pid, comm, ppid=1, adj=0, rss_kb=4096, swap_kb=0, uid=0, state="S",
                cmdline=None, cgroup_v2=None, cgroup_v1_systemd=None, oom_score=None):
    """Create /proc/<pid> with stat, status, oom_score_adj, oom_score, cmdline, comm, cgroup."""
    base = os.path.join(str(proc), str(pid))
    os.makedirs(base)
    files = {
        "stat": STAT_TEMPLATE.format(pid=pid, comm=comm, state=state, ppid=ppid, starttime=1000 + pid,
                                     rss_pages=rss_kb // 4),
        "status": STATUS_TEMPLATE.format(pid=pid, comm=comm, state=state, ppid=ppid, uid=uid, rss_kb=rss_kb,
                                         swap_kb=swap_kb),
        "oom_score_adj": "%d\n" % adj,
        "oom_score": "%d\n" % (oom_score if oom_score is not None else max(0, 10 + adj * 2 // 3)),
        "comm": comm[:15] + "\n",
        "cmdline": "\0".join(cmdline if cmdline is not None else [comm]) + ("\0" if cmdline != [] else ""),
    }
    lines = []
    if cgroup_v1_systemd is not None:
        lines.append("12:memory:%s" % cgroup_v1_systemd)
        lines.append("1:name=systemd:%s" % cgroup_v1_systemd)
    if cgroup_v2 is not None:
        lines.append("0::%s" % cgroup_v2)
    files["cgroup"] = "\n".join(lines) + "\n"
    for name, content in files.items():
        with open(os.path.join(base, name), "w") as handle:
            handle.write(content)
    return base
