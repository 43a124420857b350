"""The oomguard-alertd agent (roles/swap_alert/files/oomguard-alertd) on a fake /proc."""

import importlib.machinery
import importlib.util
import json
import os
import re
import select

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
AGENT = os.path.join(REPO, "roles", "swap_alert", "files", "oomguard-alertd")


def load_agent():
    os.environ["OOMGUARD_PYTHON_DIR"] = os.path.join(REPO, "module_utils")
    loader = importlib.machinery.SourceFileLoader("oomguard_alertd", AGENT)
    spec = importlib.util.spec_from_loader("oomguard_alertd", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


alertd = load_agent()

MEMINFO = """MemTotal:        1004300 kB
MemFree:          801232 kB
MemAvailable:     850644 kB
Buffers:            1024 kB
Cached:           101600 kB
SwapTotal:       1048572 kB
SwapFree:        1048572 kB
"""
VMSTAT = "nr_free_pages 15308\npswpin 0\npswpout 0\npgmajfault 77\noom_kill %d\n"
PSI = "some avg10=0.00 avg60=0.00 avg300=0.00 total=4873\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=2112\n"
# Recorded /dev/kmsg records of a memcg OOM kill (Debian 12, 6.1 kernel).
KMSG_OLD = (
    "4,700,5100000,-;python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0\n"
    "6,720,5100300,-;oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,"
    "global_oom,task_memcg=/user.slice,task=python3,pid=500,uid=0\n"
    "3,721,5100310,-;Out of memory: Killed process 500 (python3) total-vm:900000kB, anon-rss:700000kB, "
    "file-rss:1000kB, shmem-rss:0kB, UID:0 pgtables:1500kB oom_score_adj:0\n")
KMSG_NEW = (
    "4,800,9100000,-;stress invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0\n"
    "6,820,9100300,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,"
    "oom_memcg=/system.slice/hog.service,task_memcg=/system.slice/hog.service,task=hog,pid=812,uid=0\n"
    "3,821,9100310,-;Memory cgroup out of memory: Killed process 812 (hog) total-vm:70040kB, anon-rss:64812kB, "
    "file-rss:1100kB, shmem-rss:0kB, UID:0 pgtables:172kB oom_score_adj:0\n")


def write_proc(proc, oom_kill=0, psi=True):
    proc.mkdir(exist_ok=True)
    (proc / "meminfo").write_text(MEMINFO)
    (proc / "vmstat").write_text(VMSTAT % oom_kill)
    if psi:
        (proc / "pressure").mkdir(exist_ok=True)
        (proc / "pressure" / "memory").write_text(PSI)
    hog = proc / "812"
    hog.mkdir(exist_ok=True)
    rest = " ".join(str(x) for x in ["S", 1, 812, 812, 0, -1, 0, 0, 0, 0, 0, 5, 3, 0, 0, 20, 0, 1, 0, 99, 1, 175000] + [0] * 30)
    (hog / "stat").write_text("812 (hog) %s\n" % rest)
    (hog / "status").write_text("Name:\thog\nPPid:\t1\nUid:\t0\t0\t0\t0\nVmRSS:\t  700000 kB\nVmSwap:\t0 kB\n")
    (hog / "cgroup").write_text("0::/system.slice/hog.service\n")
    (hog / "cmdline").write_bytes(b"/usr/bin/python3\x00/opt/hog.py\x00--mb\x00700\x00")
    (hog / "oom_score_adj").write_text("0\n")
    (hog / "oom_score").write_text("700\n")


@pytest.fixture
def env(tmp_path):
    proc = tmp_path / "proc"
    write_proc(proc)
    (tmp_path / "kmsg").write_text(KMSG_OLD)
    raw = {
        "proc": str(proc),
        "thresholds": {"swap_used": {"warning": {"raise": 50, "clear": 40, "hold": 0, "clear_hold": 5},
                                     "critical": {"raise": 90, "clear": 80, "hold": 0, "clear_hold": 5}},
                       "memory_available": {"warning": {"raise": 10, "clear": 15, "hold": 2, "clear_hold": 0}}},
        "snapshot": {"path": str(tmp_path / "snapshots.jsonl"), "top_n": 5},
        "events": {"path": str(tmp_path / "alerts.jsonl")},
        "metrics": {"path": str(tmp_path / "oomguard.prom"), "interval": 60},
        "state_path": str(tmp_path / "state.json"),
        "sinks_path": str(tmp_path / "sinks.json"),
        "kmsg_path": str(tmp_path / "kmsg"),
        "journal_socket": "",
        "test_input_path": str(tmp_path / "test-input.json"),
        "early_kills": {"hook_path": str(tmp_path / "early-kills.jsonl"), "hook_owner_uid": os.getuid(),
                        "journal": "off", "invocation_dir": str(tmp_path / "units")},
    }
    (tmp_path / "alertd.json").write_text(json.dumps(raw))
    return tmp_path


def events_logged(tmp_path):
    path = tmp_path / "alerts.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def set_input(tmp_path, readings):
    (tmp_path / "test-input.json").write_text(json.dumps(readings))


def make_agent(tmp_path):
    return alertd.Agent(alertd.load_config(str(tmp_path / "alertd.json")), host="web1")


def test_test_hook_drives_one_alert_and_one_recovery(env, capsys):
    agent = make_agent(env)
    timeline = [(0, 10), (1, 95), (2, 95), (3, 60), (4, 45), (5, 35), (8, 35), (9, 55), (10, 35), (15, 35), (30, 35)]
    for now, swap in timeline:
        set_input(env, {"swap_used_percent": swap})
        agent.tick(now=1000.0 + now)
    seen = [(e["time"] - 1000.0, e["severity"], e["kind"]) for e in events_logged(env)]
    assert seen == [(1, "warning", "swap_used"), (1, "critical", "swap_used"),
                    (8, "recovery", "swap_used"), (15, "recovery", "swap_used")]
    # critical: past its clear (80) from t=3, held 5 s -> t=8. warning: past 40 from t=5,
    # back above at t=9 (stays firing, no new alert), past again from t=10 -> t=15.
    recoveries = [e for e in events_logged(env) if e["severity"] == "recovery"]
    assert [r["details"]["level"] for r in recoveries] == ["critical", "warning"]
    alert = events_logged(env)[0]
    assert alert["details"]["snapshot"]["top_rss"][0]["pid"] == 812
    assert alert["host"] == "web1" and alert["source"] == "oomguard-alertd"
    snapshots = [json.loads(line) for line in (env / "snapshots.jsonl").read_text().splitlines()]
    assert len(snapshots) == 1  # one snapshot for the tick with both alerts
    assert snapshots[0]["reason"] == "alert swap_used:warning, swap_used:critical"
    assert snapshots[0]["top_rss"][0]["cmdline"] == "/usr/bin/python3 /opt/hog.py --mb 700"
    assert snapshots[0]["top_rss"][0]["unit"] == "hog.service"
    err = capsys.readouterr().err
    assert "<4>WARNING swap_used" in err and "<2>CRITICAL swap_used" in err and "<5>RECOVERED warning" in err
    assert err.count("TEST INPUT") == 1  # said once, not every tick


def test_metrics_file_written_atomically_and_parseable(env):
    agent = make_agent(env)
    set_input(env, {"swap_used_percent": 95})
    agent.tick(now=50.0)
    text = (env / "oomguard.prom").read_text()
    assert 'oomguard_alert_active{check="swap_used",level="critical"} 1' in text
    assert 'oomguard_alerts_total{check="swap_used",level="warning"} 1' in text
    assert "oomguard_last_snapshot_timestamp_seconds 50.0" in text
    assert "# TYPE oomguard_oom_kills_total counter" in text
    assert "oomguard_swap_used_ratio 0.95" in text
    assert oct(os.stat(str(env / "oomguard.prom")).st_mode & 0o777) == "0o644"
    assert [n for n in os.listdir(str(env)) if n.startswith(".oomguard-")] == []


def test_hold_time_is_respected(env):
    agent = make_agent(env)
    for now, avail in [(0, 50), (1, 8), (2, 9), (3, 50), (4, 8), (5, 8), (6, 8), (7, 20)]:
        set_input(env, {"mem_available_percent": avail})
        agent.tick(now=float(now))
    assert [(e["time"], e["severity"]) for e in events_logged(env)] == [(6.0, "warning"), (7.0, "recovery")]


def test_alert_state_survives_restart_no_duplicate(env):
    agent = make_agent(env)
    set_input(env, {"swap_used_percent": 60})
    agent.tick(now=1.0)
    restarted = make_agent(env)
    restarted.tick(now=2.0)
    set_input(env, {"swap_used_percent": 10})
    restarted.tick(now=3.0)
    restarted.tick(now=9.0)
    assert [e["severity"] for e in events_logged(env)] == ["warning", "recovery"]


def test_oom_kill_rise_reports_new_victim_only(env):
    agent = make_agent(env)
    agent.tick(now=1.0)  # baseline: the old kill in the log is not reported
    write_proc(env / "proc", oom_kill=1)
    with open(str(env / "kmsg"), "a") as handle:
        handle.write(KMSG_NEW)
    events = agent.tick(now=2.0)
    assert [(e["severity"], e["kind"]) for e in events] == [("critical", "oom_kill")]
    victims = events[0]["details"]["victims"]
    assert [(v["pid"], v["comm"], v["scope"]) for v in victims] == [(812, "hog", "memcg")]
    assert "killed pid 812 (hog, memcg, 64 MiB)" in events[0]["message"]
    snapshot = json.loads((env / "snapshots.jsonl").read_text().splitlines()[-1])
    assert snapshot["reason"] == "oom_kill" and snapshot["oom_victims"][0]["pid"] == 812
    assert agent.tick(now=3.0) == []  # counter unchanged: nothing more


def test_oom_kill_without_readable_kernel_log(env, capsys):
    os.remove(str(env / "kmsg"))
    agent = make_agent(env)
    agent.tick(now=1.0)
    write_proc(env / "proc", oom_kill=3)
    events = agent.tick(now=2.0)
    assert events[0]["kind"] == "oom_kill" and events[0]["details"]["victims"] is None
    assert "unreadable" in events[0]["details"]["note"]
    snapshot = json.loads((env / "snapshots.jsonl").read_text().splitlines()[-1])
    assert snapshot["oom_victims"] is None and "snapshot without the victim" in snapshot["oom_victims_note"]
    assert "OOM killer ran 3 time(s); victim unknown" in events[0]["message"]


def test_psi_absent_falls_back_to_polling(env, capsys):
    import shutil
    shutil.rmtree(str(env / "proc" / "pressure"))
    agent = make_agent(env)
    assert agent.setup_psi() is False and agent.psi_fd is None
    assert "PSI absent" in capsys.readouterr().err
    readings = agent.collect()
    assert readings["psi_some_avg10"] is None and readings["psi_available"] is False


def test_psi_trigger_refused_falls_back(tmp_path):
    fd, used, reason = alertd.open_psi_trigger(str(tmp_path), "some", 150000, 1000000)
    assert fd is None and used is None and "cannot open" in reason


@pytest.mark.skipif(not os.path.exists("/proc/pressure/memory"), reason="kernel without PSI")
def test_psi_trigger_on_this_kernel():
    """Kernel truth: a 1 s window is refused without CAP_SYS_RESOURCE; the agent rounds to 2 s."""
    fd, used, reason = alertd.open_psi_trigger("/proc/pressure/memory", "some", 150000, 1000000)
    if fd is None:
        pytest.skip("PSI trigger not allowed here: %s" % reason)
    try:
        assert used[1] in (1000000, 2000000) and used[0] * 1000000 == 150000 * used[1]
        poller = select.poll()
        poller.register(fd, select.POLLPRI)
        assert poller.poll(10) == []  # an idle machine: no stall, no wake-up
    finally:
        os.close(fd)


@pytest.mark.parametrize("status,rlimit,ok,fragment", [
    ("CapEff:\t0000000000000000\n", (8388608, 8388608), False, "no CAP_IPC_LOCK and RLIMIT_MEMLOCK 8388608"),
    ("CapEff:\t00000000a80425fb\n", (65536, 65536), False, "no CAP_IPC_LOCK"),
])
def test_lock_memory_refuses_when_it_could_starve_the_agent(status, rlimit, ok, fragment):
    locked, message = alertd.lock_memory(status, rlimit)
    assert locked is ok and fragment in message


@pytest.mark.parametrize("patch,fragment", [
    ({"poll_interval": 0}, "poll_interval"),
    ({"psi_trigger": {"window_us": 100}}, "window_us"),
    ({"snapshot": {"max_bytes": 10}}, "max_bytes"),
    ({"thresholds": {"swap_used": {"warning": {"raise": 10, "clear": 20, "hold": 0, "clear_hold": 0}}}}, "above clear"),
    ({"colour": "red"}, "unknown key 'colour'"),
])
def test_config_validation(env, patch, fragment):
    with pytest.raises(alertd.ConfigError, match=fragment):
        alertd.validate_config(patch)


def test_main_check_config_and_once(env, capsys):
    config = str(env / "alertd.json")
    assert alertd.main(["--config", config, "--check-config"]) == 0
    assert "is valid" in capsys.readouterr().out
    set_input(env, {"swap_used_percent": 95})
    assert alertd.main(["--config", config, "--once"]) == 0
    assert [e["severity"] for e in events_logged(env)] == ["warning", "critical"]
    (env / "bad.json").write_text('{"poll_interval": "soon"}')
    assert alertd.main(["--config", str(env / "bad.json"), "--check-config"]) == 2
    assert alertd.main(["--bogus"]) == 2
    assert "poll_interval" in capsys.readouterr().err


def test_defaults_validate():
    config = alertd.validate_config({})
    assert config["test_input_path"] is None  # the test hook is off unless configured
    assert config["metrics"]["path"] == "/var/lib/prometheus/node-exporter/oomguard.prom"


# --- early kills -------------------------------------------------------------------

HOOK_OLD = '{"time": 1733130001.25, "engine": "earlyoom", "pid": 700, "name": "old", "uid": 0}\n'
HOOK_NEW = '{"time": 1733130009.5, "engine": "earlyoom", "pid": 812, "name": "hog", "uid": 1000}\n'
# systemd 252's lines as `journalctl -o json --output-fields=...` prints them.
JOURNAL_KILL = (
    '{"__CURSOR":"s=5b1e;i=2a2;b=0c4f;m=1e8480;t=60f1;x=9f8e","__REALTIME_TIMESTAMP":"1733130160123456",'
    '"SYSLOG_IDENTIFIER":"systemd-oomd","_PID":"412","MESSAGE":"Killed /system.slice/app-worker.service due to '
    'memory pressure for /system.slice being 52.13% > 40.00% for > 20s with reclaim activity"}\n'
    '{"__CURSOR":"s=5b1e;i=2a3;b=0c4f;m=1e8490;t=60f2;x=9f8f","__REALTIME_TIMESTAMP":"1733130160130000",'
    '"SYSLOG_IDENTIFIER":"systemd","_PID":"1","UNIT":"app-worker.service",'
    '"MESSAGE":"app-worker.service: systemd-oomd killed 3 process(es) in this unit."}\n')


def write_hook(env, text, mode=0o644):
    with open(str(env / "early-kills.jsonl"), "a") as handle:
        handle.write(text)
    os.chmod(str(env / "early-kills.jsonl"), mode)


def test_earlyoom_kill_from_the_hook_file_is_an_event_with_a_snapshot(env):
    write_hook(env, HOOK_OLD)
    agent = make_agent(env)
    assert agent.tick(now=1.0) == []  # a kill from before the agent started is not new
    write_hook(env, HOOK_NEW)
    events = agent.tick(now=2.0)
    assert [(e["severity"], e["kind"]) for e in events] == [("critical", "early_kill")]
    assert events[0]["message"] == "early kill: earlyoom killed pid 812 (hog, uid 1000)"
    assert events[0]["details"]["victims"][0]["pid"] == 812 and events[0]["details"]["engines"] == ["earlyoom"]
    assert events[0]["details"]["snapshot"]["top_rss"][0]["pid"] == 812
    snapshot = json.loads((env / "snapshots.jsonl").read_text().splitlines()[-1])
    assert snapshot["reason"] == "early_kill" and snapshot["early_kills"][0]["name"] == "hog"
    assert events_logged(env)[-1]["kind"] == "early_kill"
    assert 'oomguard_early_kills_total{engine="earlyoom"} 1' in (env / "oomguard.prom").read_text()
    assert 'oomguard_early_kills_total{engine="systemd-oomd"} 0' in (env / "oomguard.prom").read_text()
    assert agent.tick(now=3.0) == []


def test_hook_file_appearing_after_start_is_read_from_its_start(env):
    agent = make_agent(env)
    agent.tick(now=1.0)
    write_hook(env, HOOK_NEW)
    assert [e["kind"] for e in agent.tick(now=2.0)] == ["early_kill"]


def test_hook_file_that_is_a_symlink_is_refused_with_one_journal_line(env, capsys):
    (env / "elsewhere.jsonl").write_text(HOOK_NEW)
    os.symlink(str(env / "elsewhere.jsonl"), str(env / "early-kills.jsonl"))
    agent = make_agent(env)
    for now in (1.0, 2.0, 3.0):
        assert agent.tick(now=now) == []
    assert capsys.readouterr().err.count("is a symlink: refused") == 1


FAKE_JOURNALCTL = """#!/bin/sh
echo "$@" > "%(args)s"
cat "%(lines)s"
exec sleep 30
"""


@pytest.fixture
def fake_journalctl(env):
    (env / "journal.json").write_text(JOURNAL_KILL)
    script = env / "journalctl"
    script.write_text(FAKE_JOURNALCTL % {"args": env / "journalctl.args", "lines": env / "journal.json"})
    script.chmod(0o755)
    config = json.loads((env / "alertd.json").read_text())
    config["early_kills"].update(journal="auto", journalctl=str(script), check_interval=5)
    (env / "alertd.json").write_text(json.dumps(config))
    return script


def test_systemd_oomd_kill_from_the_journal_is_an_event_with_a_snapshot(env, fake_journalctl):
    agent = make_agent(env)
    try:
        assert agent.tick(now=1.0) == [] and agent.journal is None  # systemd-oomd not active: no child
        (env / "units").mkdir()
        os.symlink("6c1b", str(env / "units" / "invocation:systemd-oomd.service"))
        agent.tick(now=3.0)
        assert agent.journal is None  # checked again only every check_interval
        events = agent.tick(now=7.0)  # starts the child; its first lines may already be there
        assert agent.journal is not None and agent.journal.running
        for _ in range(50):
            agent.wait(0.1)
            events += agent.tick(now=8.0)
            if events:
                break
        assert [(e["severity"], e["kind"]) for e in events] == [("critical", "early_kill")]
        victim = events[0]["details"]["victims"][0]
        assert (victim["engine"], victim["unit"], victim["processes"]) == ("systemd-oomd", "app-worker.service", 3)
        assert events[0]["message"].startswith("early kill: systemd-oomd killed app-worker.service (3 processes)")
        snapshot = json.loads((env / "snapshots.jsonl").read_text().splitlines()[-1])
        assert snapshot["reason"] == "early_kill" and snapshot["early_kills"][0]["cgroup"] == "/system.slice/app-worker.service"
        args = (env / "journalctl.args").read_text().split()
        assert "--follow" in args and "--lines=0" in args and args[-3:] == ["SYSLOG_IDENTIFIER=systemd-oomd", "+", "_PID=1"]
        assert 'oomguard_early_kills_total{engine="systemd-oomd"} 1' in (env / "oomguard.prom").read_text()
        pid = agent.journal.pid
    finally:
        agent.close()
    assert agent.journal.pid is None
    with pytest.raises(OSError):
        os.kill(pid, 0)  # the child was stopped and reaped


def test_journal_child_that_exits_is_restarted_after_the_last_cursor(env, fake_journalctl, capsys):
    fake_journalctl.write_text("#!/bin/sh\necho \"$@\" >> \"%s\"\ncat \"%s\"\n" % (
        env / "journalctl.args", env / "journal.json"))
    config = json.loads((env / "alertd.json").read_text())
    config["early_kills"]["journal"] = "on"
    (env / "alertd.json").write_text(json.dumps(config))
    agent = make_agent(env)
    try:
        events = []
        for step in range(50):
            agent.wait(0.1)
            events += agent.tick(now=10.0 + step)
            if agent.journal is not None and agent.journal.cursor and not agent.journal.running:
                break
        assert len([e for e in events if e["kind"] == "early_kill"]) == 1
        agent.tick(now=100.0)  # restarted from the last kill line read
        for _ in range(50):
            agent.wait(0.1)
            agent.tick(now=101.0)
            if len((env / "journalctl.args").read_text().splitlines()) == 2:
                break
        assert "--after-cursor=s=5b1e;i=2a3;b=0c4f;m=1e8490;t=60f2;x=9f8f" in (env / "journalctl.args").read_text()
    finally:
        agent.close()
    assert "journalctl child exited" in capsys.readouterr().err


def test_missing_journalctl_is_said_once(env, capsys):
    config = json.loads((env / "alertd.json").read_text())
    config["early_kills"].update(journal="on", journalctl=str(env / "no-such-journalctl"), check_interval=1)
    (env / "alertd.json").write_text(json.dumps(config))
    agent = make_agent(env)
    for now in (1.0, 3.0, 5.0):
        agent.tick(now=now)
    assert capsys.readouterr().err.count("systemd-oomd's kills not followed") == 1


def test_early_kills_config_validation():
    with pytest.raises(alertd.ConfigError, match="early_kills.journal"):
        alertd.validate_config({"early_kills": {"journal": "sometimes"}})
    assert alertd.validate_config({})["early_kills"]["hook_path"] == "/run/oomguard/early-kills.jsonl"


# --- hostile configuration and planted links (issue 15) ---------------------------

@pytest.mark.parametrize("patch,fragment", [
    ({"metrics": {"path": "/var/lib/prometheus/node-exporter/../../../../etc/cron.d/oomguard.prom"}}, "metrics.path"),
    ({"metrics": {"path": "/etc/cron.d/oomguard.prom"}}, "under /etc"),
    ({"metrics": {"path": "/var/lib/node/oomguard.txt"}}, ".prom"),
    ({"snapshot": {"path": 5}}, "snapshot.path: 5 is not a path"),
    ({"snapshot": {"path": "/var/log/oomguard/s.jsonl\n"}}, "control character"),
    ({"events": {"path": "../alerts.jsonl"}}, "events.path"),
    ({"state_path": "/var/lib/oomguard/../../../etc/shadow"}, "state_path"),
    ({"snapshot": "big"}, "snapshot: \"big\" is not an object"),
    ({"snapshot": {"size": 1}}, "unknown key 'size'"),
    ({"metrics": {"interval": None}}, "metrics.interval: null is not a number"),
    ({"poll_interval": "2"}, "poll_interval: \"2\" is not a number"),
    ({"poll_interval": float("nan")}, "poll_interval: NaN is not a number"),
    ({"psi_trigger": {"window_us": 10 ** 400}}, "psi_trigger.window_us"),
    ({"snapshot": {"max_bytes": 4096.5}}, "snapshot.max_bytes: 4096.5 is not an integer"),
    ({"mlock": "yes"}, "mlock: \"yes\" is not a boolean"),
    ({"thresholds": []}, "thresholds"),
    ({"thresholds": {"swap_used": {"warning": "high"}}}, "thresholds.swap_used.warning"),
    ({"early_kills": {"hook_owner_uid": -1}}, "hook_owner_uid"),
])
def test_check_config_refuses_wrong_types_and_paths_with_the_key(tmp_path, capsys, patch, fragment):
    with pytest.raises(alertd.ConfigError, match=re.escape(fragment)):
        alertd.validate_config(patch)
    (tmp_path / "bad.json").write_text(json.dumps(patch))
    assert alertd.main(["--config", str(tmp_path / "bad.json"), "--check-config"]) == 2
    err = capsys.readouterr().err
    assert fragment.split(":")[0].split(".")[0] in err and "Traceback" not in err


def test_check_config_on_a_directory_exits_2(tmp_path, capsys):
    assert alertd.main(["--config", str(tmp_path), "--check-config"]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_agent_never_writes_through_planted_links(env, capsys):
    """Links planted at every file the agent writes: the targets are left as they were,
    each refusal is logged once, and the agent keeps running."""
    shadow = env / "shadow"
    shadow.write_text("secret\n")
    for name in ("snapshots.jsonl", "alerts.jsonl"):
        (env / name).symlink_to(shadow)
    agent = make_agent(env)
    for now in range(3):
        set_input(env, {"swap_used_percent": 95 if now < 2 else 10})
        agent.tick(now=1000.0 + now)
    assert shadow.read_text() == "secret\n"
    err = capsys.readouterr().err
    assert err.count("cannot write snapshot") == 1 and err.count("cannot append event") == 1


def test_agent_refuses_a_metrics_directory_others_may_write(env, capsys):
    open_dir = env / "textfile"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    config = alertd.load_config(str(env / "alertd.json"))
    config["metrics"]["path"] = str(open_dir / "oomguard.prom")
    agent = alertd.Agent(config, host="web1")
    agent.tick(now=1000.0)
    agent.tick(now=2000.0)
    assert os.listdir(str(open_dir)) == []
    assert capsys.readouterr().err.count("cannot write metrics") == 1


# --- a damaged state file never makes a crash loop (issue 15) -------------------------

@pytest.mark.parametrize("damaged", [
    '{"states": {"swap_used:warning": {"state": "firing", "since": "yesterday"}}}',
    '{"states": {"swap_used:warning": {"state": "firing", "since": null}}}',
    '{"states": {"swap_used:warning": {"state": "exploded", "since": 1}}}',
    '{"states": {"swap_used:warning": "firing"}}',
    '{"states": ["firing"]}',
    '{"states": {"swap_used:warning": {"state": "clearing", "since": 1, "fired_at": "x"}}}',
    '[1, 2]',
    '{"states": {',
    '\xff\xfe',
])
def test_damaged_state_is_moved_aside_and_the_agent_starts_fresh(env, capsys, damaged):
    state = env / "state.json"
    state.write_bytes(damaged.encode("latin-1"))
    agent = make_agent(env)
    assert all(s["state"] == "ok" for s in agent.states.values())
    assert (env / "state.json.damaged").read_bytes() == damaged.encode("latin-1")
    err = capsys.readouterr().err
    assert err.count("is damaged") == 1 and "starting with fresh alert states" in err
    for now in range(3):  # and it runs: no TypeError on the first tick
        set_input(env, {"swap_used_percent": 95})
        agent.tick(now=1000.0 + now)
    assert json.loads(state.read_text())["states"]["swap_used:critical"]["state"] == "firing"
    assert make_agent(env).states["swap_used:critical"]["state"] == "firing"  # the new file restores


def test_the_unit_stops_on_a_configuration_error_instead_of_looping():
    text = open(os.path.join(REPO, "roles", "swap_alert", "templates", "oomguard-alertd.service.j2")).read()
    assert "Restart=always" in text and "RestartPreventExitStatus=2" in text
