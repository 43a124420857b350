"""early_relief in the podman containers: earlyoom, configured from oomguard's policy.

The containers see the build machine's cgroup v1 hierarchy, so `auto` picks earlyoom (the
VM scenario proves systemd-oomd). What the role planned is in its status file; here the
running daemon is checked against it: the unit active as root with the planned arguments,
the critical daemons in --avoid, the kill hook installed. A real early kill needs the
host's memory to run out (earlyoom reads the machine-wide /proc/meminfo), so the hook is
called as earlyoom calls it (EARLYOOM_* in its environment) and the kill must reach the
alert agent and the audit; the test's record is removed at the end.
"""

import json
import re
import time

import pytest

STATUS = "/var/lib/oomguard/early_relief.json"
HOOK = "/usr/lib/oomguard/early-kill-hook"
KILLS = "/run/oomguard/early-kills.jsonl"
EVENTS = "/var/log/oomguard/alerts.jsonl"
CHECK = """
- name: Audit the early killer
  hosts: all
  gather_facts: false
  tasks:
    - name: Run oomguard_check
      oomguard_check:
        checks: [early_relief]
      register: audit
    - name: Keep the result for the test
      ansible.builtin.copy:
        content: "{{ audit.findings | to_json }}"
        dest: /run/oomguard-test-early-check.json
        mode: "0600"
"""


@pytest.fixture(scope="module")
def status(host):
    return json.loads(host.file(STATUS).content_string)


def earlyoom_cmdline(host):
    pid = host.run("systemctl show -p MainPID --value earlyoom.service").stdout.strip()
    assert pid not in ("", "0"), "earlyoom.service has no main process"
    raw = host.run("cat /proc/%s/cmdline | tr '\\0' '\\n'" % pid).stdout
    return pid, raw.splitlines()


def test_status_says_earlyoom_and_why(status):
    assert status["engine"] == "earlyoom", status
    assert "cgroup v2" in status["reason"], status["reason"]
    assert status["host"]["cgroup_v2"] in (False, "False", "false")


def test_earlyoom_runs_with_the_planned_arguments(host, status):
    assert host.service("earlyoom.service").is_running
    assert host.service("earlyoom.service").is_enabled
    _pid, argv = earlyoom_cmdline(host)
    assert argv[0] == "/usr/bin/earlyoom"
    assert argv[1:] == status["earlyoom_args"]
    avoid = re.compile(argv[argv.index("--avoid") + 1])
    for daemon in ("sshd", "cron", "systemd-journal", "dbus-daemon", "oomguard-alertd", "earlyoom"):
        assert avoid.search(daemon), daemon
    assert not avoid.search("drill-hog") and not avoid.search("sshd-session")
    assert argv[argv.index("-N") + 1] == HOOK


def test_earlyoom_runs_as_root_so_its_hook_can_write_the_kill_file(host):
    pid, _ = earlyoom_cmdline(host)
    assert host.run("stat -c %%u /proc/%s" % pid).stdout.strip() == "0"
    hook = host.file(HOOK)
    assert hook.user == "root" and hook.group == "root" and hook.mode == 0o755


def test_no_other_early_killer(host):
    assert host.run("systemctl is-active systemd-oomd.service").stdout.strip() != "active"


def test_a_kill_reaches_the_alert_agent_and_the_audit(host, ansible_playbook):
    before = host.run("wc -l < %s 2>/dev/null || echo 0" % EVENTS).stdout.strip() or "0"
    try:
        run = host.run("env EARLYOOM_PID=4242 EARLYOOM_UID=0 EARLYOOM_NAME=test-hog %s" % HOOK)
        assert run.rc == 0 and run.stderr == "", run.stderr
        line = json.loads(host.file(KILLS).content_string.splitlines()[-1])
        assert (line["engine"], line["pid"], line["name"], line["uid"]) == ("earlyoom", 4242, "test-hog", 0)
        kill_file = host.file(KILLS)
        assert kill_file.user == "root" and kill_file.mode == 0o644
        event = None
        for _ in range(30):
            lines = host.run("tail -n +%d %s" % (int(before) + 1, EVENTS)).stdout.splitlines()
            found = [json.loads(x) for x in lines if x.strip() and '"early_kill"' in x]
            if found:
                event = found[-1]
                break
            time.sleep(2)
        assert event is not None, "oomguard-alertd wrote no early_kill event"
        assert "test-hog" in json.dumps(event)
        audit = ansible_playbook(CHECK)
        assert audit.returncode == 0, audit.stdout[-3000:]
        findings = {f["id"]: f for f in json.loads(host.file("/run/oomguard-test-early-check.json").content_string)}
        assert findings["early_relief.engine"]["severity"] == "ok", findings["early_relief.engine"]
        assert findings["early_relief.settings"]["severity"] == "ok", findings["early_relief.settings"]
        kills = findings["early_kills"]
        assert kills["severity"] == "warn" and kills["evidence"]["count"] == 1, kills
        assert kills["evidence"]["victims"][0]["name"] == "test-hog"
    finally:
        host.run("rm -f %s /run/oomguard-test-early-check.json" % KILLS)
