"""memory_limits on a real kernel (QEMU VM, 1 GiB, cgroup v2, 768 MiB swap).

1. What the converge applied (the scenario's group_vars: system.slice low 64M) reads back
   from the cgroup and the status says enforced: true.
2. A memory hog: a test unit whose main process (a small Python parent) forks, one after
   the other, two children that allocate memory gradually up to 160 MiB each. While it runs, the memory_limits
   role is applied again with `max: 64M` and `swap_max: 0` on that unit (ansible-playbook
   from this test, same inventory; without swap_max the guest's swap would take the
   hog's pages past the limit instead of the OOM killer taking the hog). The limit is applied live: the MainPID does not change, the unit's
   memory.events oom_kill count rises (the child is killed inside the unit's cgroup, the
   parent survives, OOMPolicy=continue), every OOM kill on the host during the test is
   in that cgroup, and sshd keeps its PID with no OOM kill in its cgroup.
The hog, its unit and its drop-in are removed at the end, so later tests see a quiet host.
"""

import base64
import json
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "module_utils"))
from oomguard_cgroup import parse_memory_events  # noqa: E402
from oomguard_memstat import parse_vmstat  # noqa: E402
from oomguard_systemd import parse_show  # noqa: E402

STATUS = "/var/lib/oomguard/memory_limits.json"
HOG_UNIT = "oomguard-test-hog.service"
HOG_CGROUP = "/sys/fs/cgroup/system.slice/%s" % HOG_UNIT
HOG_SCRIPT = "/usr/local/lib/oomguard-test-hog.py"
HOG_PY = '''import os, sys, time
# TEST ONLY (molecule vm): the parent stays small; each child allocates 4 MiB every
# 0.2 s (every page touched) up to 160 MiB and holds it. Two children in all, so a
# 64 MiB limit causes exactly two OOM kills; then the parent idles. The parent is
# exempt from the OOM killer (-1000), the children are not (0): under TCG the killed
# child's memory can still be charged when the cgroup's OOM killer runs again, and it
# then took the parent as well, ending the unit and its cgroup.
def set_adj(value):
    with open("/proc/self/oom_score_adj", "w") as adj:
        adj.write(str(value))
set_adj(-1000)
for attempt in range(2):
    pid = os.fork()
    if pid == 0:
        set_adj(0)
        chunks = []
        while len(chunks) < 40:
            chunks.append(b"\\x01" * (4 << 20))
            time.sleep(0.2)
        time.sleep(3600)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    print("hog child %d ended, wait status %d" % (pid, status), flush=True)
    time.sleep(1)
print("hog parent idle", flush=True)
while True:
    time.sleep(3600)
'''
HOG_SERVICE = """[Unit]
Description=oomguard TEST ONLY memory hog (molecule vm)

[Service]
ExecStart=/usr/bin/python3 %s
OOMPolicy=continue
Restart=no
""" % HOG_SCRIPT


def put(host, path, text):
    encoded = base64.b64encode(text.encode()).decode()
    host.run_test("echo %s | base64 -d > %s", encoded, path)


def show(host, unit, *props):
    args = " ".join("-p %s" % prop for prop in props)
    return parse_show(host.check_output("systemctl show %s %s" % (unit, args)))


def oom_kills(host, cgroup):
    return parse_memory_events(host.file(cgroup + "/memory.events").content_string).get("oom_kill", 0)


def oom_counters(host, cgroup):
    """(host-wide, cgroup) OOM kill counts read by one command, so no kill falls between them."""
    out = host.check_output("cat /proc/vmstat; echo ---; cat %s/memory.events" % cgroup)
    vmstat, _, events = out.partition("---")
    return parse_vmstat(vmstat)["oom_kill"], parse_memory_events(events).get("oom_kill", 0)


def memory_current(host, cgroup):
    return int(host.file(cgroup + "/memory.current").content_string.strip())


def wait_for(predicate, timeout, step=1.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def ssh_unit(host):
    return "ssh.service" if show(host, "ssh.service", "LoadState")["LoadState"] == "loaded" else "sshd.service"


APPLY_ROLE = ("---\n- name: memory_limits with the test hog\n  hosts: all\n  gather_facts: false\n"
              "  roles:\n    - role: memory_limits\n")


@pytest.fixture(scope="module")
def hog(host, request, ansible_playbook):
    """Start the hog, let it grow past 64 MiB, then apply max: 64M live through the role."""
    # Never start a memory hog on the machine running the tests.
    assert host.backend.NAME != "local", "this test needs the vm scenario's host, not the local machine"
    assert request.config.option.ansible_inventory, "needs the scenario's inventory (--ansible-inventory)"
    put(host, HOG_SCRIPT, HOG_PY)
    put(host, "/etc/systemd/system/%s" % HOG_UNIT, HOG_SERVICE)
    host.run_test("systemctl daemon-reload")
    host.run_test("systemctl start %s", HOG_UNIT)
    ssh = ssh_unit(host)
    ssh_cgroup = "/sys/fs/cgroup" + show(host, ssh, "ControlGroup")["ControlGroup"]
    try:
        grown = wait_for(lambda: memory_current(host, HOG_CGROUP) > 96 << 20, timeout=120)
        host_kills, kills = oom_counters(host, HOG_CGROUP)
        before = {
            "grown": grown,
            "oom_kill": kills,
            "host_oom_kill": host_kills,
            "main_pid": int(show(host, HOG_UNIT, "MainPID")["MainPID"]),
            "ssh_pid": int(show(host, ssh, "MainPID")["MainPID"]),
            "ssh_oom_kill": oom_kills(host, ssh_cgroup),
        }
        limits = [{"name": HOG_UNIT, "max": "64M", "swap_max": 0}]
        run = ansible_playbook(APPLY_ROLE, {"memory_limits_units": limits})
        # The first child is killed when the limit lands, the second when it reaches 64 MiB.
        wait_for(lambda: "hog parent idle" in host.run("journalctl -u %s --no-pager", HOG_UNIT).stdout,
                 timeout=180)
        host_kills, kills = oom_counters(host, HOG_CGROUP)
        after = {
            "run": run,
            "oom_kill": kills,
            "host_oom_kill": host_kills,
            "show": show(host, HOG_UNIT, "MainPID", "ActiveState", "NRestarts", "MemoryMax"),
            "memory_max": host.file(HOG_CGROUP + "/memory.max").content_string.strip(),
            "ssh": show(host, ssh, "MainPID", "ActiveState"),
            "ssh_oom_kill": oom_kills(host, ssh_cgroup),
            "status": json.loads(host.file(STATUS).content_string),
            "journal": host.run("journalctl -u %s -n 20 --no-pager", HOG_UNIT).stdout,
            # Who restarted sshd, should its PID have changed (evidence for the assertion).
            "ssh_journal": host.run("journalctl -u %s -u oomguard-watchdog.service -n 40 --no-pager",
                                    ssh).stdout,
        }
        yield before, after
    finally:
        host.run("systemctl stop %s", HOG_UNIT)
        host.run("rm -rf /etc/systemd/system/%s /etc/systemd/system/%s.d %s", HOG_UNIT, HOG_UNIT, HOG_SCRIPT)
        host.run("systemctl daemon-reload")
        host.run("systemctl reset-failed %s", HOG_UNIT)


def test_converged_slice_is_enforced(host):
    entry = json.loads(host.file(STATUS).content_string)["units"]["system.slice"]
    assert entry["hierarchy"]["memory"] == "v2"
    assert entry["enforced"] is True, entry
    assert host.file("/sys/fs/cgroup/system.slice/memory.low").content_string.strip() == str(64 << 20)
    dropin = host.file("/etc/systemd/system/system.slice.d/50-oomguard-memory.conf")
    assert "[Slice]" in dropin.content_string and "MemoryLow=64M" in dropin.content_string


def test_default_memory_accounting(host):
    assert show(host, "", "DefaultMemoryAccounting")["DefaultMemoryAccounting"] == "yes"


def test_hog_grew_past_the_limit_before(hog):
    before, _after = hog
    assert before["grown"], "the hog never grew past 96 MiB"
    assert before["oom_kill"] == 0


def test_role_applied_the_limit_live(hog):
    before, after = hog
    assert after["run"].returncode == 0, after["run"].stdout[-4000:] + after["run"].stderr[-2000:]
    assert after["show"]["MemoryMax"] == str(64 << 20)
    assert after["memory_max"] == str(64 << 20)
    entry = after["status"]["units"][HOG_UNIT]
    assert entry["enforced"] is True, entry
    # The guest has swap: swap_max 0 is applied too (ahead of max, so the reclaim of the new
    # max cannot push the hog into swap instead of OOM-killing it).
    assert sorted(item["setting"] for item in entry["applied"]) == ["max", "swap_max"]


def test_main_pid_unchanged(hog):
    before, after = hog
    assert int(after["show"]["MainPID"]) == before["main_pid"], after["journal"]
    assert after["show"]["ActiveState"] == "active", after["journal"]
    assert after["show"]["NRestarts"] == "0"


def test_hog_oom_killed_inside_its_cgroup(hog):
    before, after = hog
    assert after["oom_kill"] == before["oom_kill"] + 2, after["journal"]
    assert after["journal"].count("ended, wait status 9") == 2, after["journal"]  # SIGKILL, twice


def test_rest_of_host_untouched(hog):
    before, after = hog
    # Every OOM kill on the host during the test happened in the hog's cgroup.
    assert after["host_oom_kill"] - before["host_oom_kill"] == after["oom_kill"] - before["oom_kill"]
    assert int(after["ssh"]["MainPID"]) == before["ssh_pid"], after["ssh_journal"]
    assert after["ssh"]["ActiveState"] == "active"
    assert after["ssh_oom_kill"] == before["ssh_oom_kill"]


# The memory_limits role's default login path (defaults/main.yml); system.slice must hold
# their sum, because a child's memory.min is effective only up to its parent's.
LOGIN_PATH_MIN = {"ssh.service": 32 << 20, "systemd-logind.service": 16 << 20, "dbus.service": 16 << 20,
                  "systemd-journald.service": 64 << 20}


def test_login_path_reserved(host):
    """memory.min of the login path's units and of system.slice read back as planned (cgroup v2)."""
    assert ssh_unit(host) == "ssh.service"  # Debian: the role picks ssh.service by os_family
    status = json.loads(host.file(STATUS).content_string)["units"]
    readback = {}
    for unit in sorted(LOGIN_PATH_MIN) + ["system.slice"]:
        group = "/sys/fs/cgroup" + show(host, unit, "ControlGroup")["ControlGroup"]
        readback[unit] = {"min": int(host.file(group + "/memory.min").content_string.strip()),
                          "current": memory_current(host, group)}
    # The units' memory.current beside their reservation: the figures to size the defaults from.
    print("login path memory.min / memory.current: %s" % json.dumps(readback, sort_keys=True))
    for unit, wanted in LOGIN_PATH_MIN.items():
        assert readback[unit]["min"] == wanted, readback
        assert status[unit]["enforced"] is True, status[unit]
    assert readback["system.slice"]["min"] == sum(LOGIN_PATH_MIN.values()), readback
    # The scenario's own low on system.slice is kept beside the raised min.
    assert host.file("/sys/fs/cgroup/system.slice/memory.low").content_string.strip() == str(64 << 20)
    assert "MemoryMin=128M" in host.file("/etc/systemd/system/system.slice.d/50-oomguard-memory.conf").content_string
