"""Unit tests for roles/service_watchdog/files/oomguard-watchdog (the health checker).

Whole runs are driven by a fake clock (the decision logic itself is tested in
tests/unit/module_utils/test_oomguard_watchdog.py); probes run against real local
sockets and files; systemctl is a small fake executable that keeps
unit states in a directory (the boundary, not the thing under test).
"""

import io
import json
import subprocess
import os
import socket
import sys
import textwrap
import threading
import types
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader

import pytest

from fakeclock import FakeClock

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CHECKER = os.path.join(REPO, "roles", "service_watchdog", "files", "oomguard-watchdog")
sys.path.insert(0, os.path.join(REPO, "module_utils"))  # what /usr/lib/oomguard/python holds


def _load():
    # Not named oomguard_watchdog: that is the module_utils file the checker imports.
    loader = SourceFileLoader("oomguard_watchdog_checker", CHECKER)
    module = module_from_spec(spec_from_loader("oomguard_watchdog_checker", loader))
    loader.exec_module(module)
    return module


wd = _load()
import oomguard_watchdog as wdlib  # noqa: E402  the checker's shared logic, as installed on targets


# ---------------------------------------------------------------- configuration

def test_check_config_cli(tmp_path, capsys):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"interval": 15, "checks": [{"name": "ssh", "unit": "ssh.service"}]}))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"interval": 15, "escalation": {"action": "nuke"}}))
    assert wd.main(["--check-config", str(good)]) == 0
    assert wd.main(["--check-config", str(bad)]) == 2
    assert "escalation.action: 'nuke'" in capsys.readouterr().err
    assert wd.main(["--check-config", str(tmp_path / "missing.json")]) == 2


# ---------------------------------------------------------------- probes

class Server:
    """A real TCP server on 127.0.0.1 sending `greeting` (or nothing) to each client."""

    def __init__(self, greeting):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.greeting = greeting
        self.received = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            if self.greeting:
                conn.sendall(self.greeting)
            conn.settimeout(2)
            try:
                self.received = conn.recv(100)
            except OSError:
                pass

    def close(self):
        self.sock.close()
        self.thread.join(3)


@pytest.mark.parametrize("greeting, banner, ok, evidence", [
    (b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n", "SSH-2.0-", True, "banner 'SSH-2.0-OpenSSH_9.2p1"),
    (b"SSH-2.0-OpenSSH_8.4p1", "SSH-2.0-", True, "banner"),  # no newline yet: read until timeout
    (b"HTTP/1.1 400 Bad Request\r\n", "SSH-2.0-", False, "does not start with 'SSH-2.0-'"),
    (None, "SSH-2.0-", False, "no banner within 1s"),
    (None, None, True, "connect 127.0.0.1"),
])
def test_probe_tcp(greeting, banner, ok, evidence):
    server = Server(greeting)
    try:
        result, detail = wd.probe_tcp("127.0.0.1", server.port, 1, banner)
    finally:
        server.close()
    assert result is ok, detail
    assert evidence in detail
    if ok and banner:
        assert server.received.startswith(b"SSH-2.0-oomguard_watchdog")


def test_probe_tcp_refused():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    ok, detail = wd.probe_tcp("127.0.0.1", port, 1, "SSH-2.0-")
    assert not ok and "connect 127.0.0.1:%d" % port in detail


@pytest.mark.parametrize("argv, ok, evidence", [
    (["true"], True, "ok"),
    (["sh", "-c", "echo broken; exit 3"], False, "exited 3 broken"),
    (["sleep", "5"], False, "timed out after 1s"),
    (["/nonexistent/probe"], False, "No such file"),
])
def test_probe_command(argv, ok, evidence):
    result, detail = wd.probe_command(argv, 1)
    assert result is ok and evidence in detail, detail


def test_read_hw_watchdog(tmp_path):
    sys_class = tmp_path / "sys"
    (sys_class / "watchdog0").mkdir(parents=True)
    (sys_class / "watchdog0" / "identity").write_text("i6300ESB timer\n")
    (sys_class / "watchdog0" / "timeout").write_text("10\n")
    (sys_class / "watchdog0" / "state").write_text("active\n")
    dev = tmp_path / "dev"
    dev.mkdir()
    assert wd.read_hw_watchdog(str(sys_class), str(dev)) == {
        "present": False, "identity": "i6300ESB timer", "timeout": 10, "state": "active"}
    (dev / "watchdog").write_text("")
    assert wd.read_hw_watchdog(str(tmp_path / "none"), str(dev)) == {"present": True}


# ---------------------------------------------------------------- whole runs with a fake systemctl

FAKE_SYSTEMCTL = textwrap.dedent("""\
    #!{python}
    # Fake systemctl: unit states live in $FAKE_SYSTEMD/<unit> as "ActiveState MonotonicUsec".
    import os, sys, time
    root = os.environ["FAKE_SYSTEMD"]
    args = [a for a in sys.argv[1:] if a != "--no-block"]
    with open(os.path.join(root, "calls.log"), "a") as log:
        log.write(" ".join(sys.argv[1:]) + "\\n")
    unit = args[-1]
    path = os.path.join(root, unit)
    if args[0] == "show":
        if os.path.exists(path) and open(path).read().startswith("hang"):
            time.sleep(5)  # PID 1 too busy to answer
        if not os.path.exists(path):
            print("LoadState=not-found\\nActiveState=inactive\\nSubState=dead\\nActiveEnterTimestampMonotonic=0")
        else:
            state, usec = open(path).read().split()
            print("LoadState=loaded\\nActiveState=%s\\nSubState=running\\nActiveEnterTimestampMonotonic=%s"
                  % (state, usec))
    elif args[0] == "is-system-running":
        state = os.path.join(root, "system-state")
        print(open(state).read().strip() if os.path.exists(state) else "running")
    elif args[0] == "restart":
        if not os.path.exists(path):
            sys.stderr.write("Failed to restart %s: Unit %s not found.\\n" % (unit, unit))
            sys.exit(5)
        open(path, "w").write("active %d" % int(time.monotonic() * 1e6))
    """)


@pytest.fixture
def fake_systemd(tmp_path, monkeypatch):
    root = tmp_path / "systemd"
    root.mkdir()
    script = tmp_path / "systemctl"
    script.write_text(FAKE_SYSTEMCTL.format(python=sys.executable))
    script.chmod(0o755)
    monkeypatch.setenv("FAKE_SYSTEMD", str(root))
    return root, str(script)


def write_config(tmp_path, checks, **over):
    raw = {"interval": 10, "state_file": str(tmp_path / "state.json"),
           "sinks_file": str(tmp_path / "sinks.json"), "pause_file": str(tmp_path / "pause"),
           "checks": checks}
    raw.update(over)
    path = tmp_path / "watchdog.json"
    path.write_text(json.dumps(raw))
    return str(path)


def calls(root):
    log = root / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def test_run_once_restarts_stopped_cron_and_keeps_grace(tmp_path, fake_systemd):
    root, systemctl = fake_systemd
    heartbeat = tmp_path / "cron-heartbeat"
    clock = FakeClock()
    heartbeat.write_text("%d\n" % (clock() - 20))
    (root / "cron.service").write_text("inactive 0")
    cfg = wd.load_config(write_config(tmp_path, [{
        "name": "cron", "unit": "cron.service", "grace": 90,
        "probe": {"type": "heartbeat", "path": str(heartbeat), "max_age": 150}}]))
    out = io.StringIO()
    state = wd.run_once(cfg, wd.new_state(), wd.Systemd(systemctl), wd.Output(out), clock=clock)
    assert state["checks"]["cron"]["status"] == "restarted"
    assert calls(root)[-2:] == ["reset-failed cron.service", "--no-block restart cron.service"]
    assert "<4>cron: failing (cron.service is inactive (running)): restarting cron.service (attempt 1/3)" \
        in out.getvalue()
    # The restarted cron has not written yet and the old heartbeat ages past the threshold:
    # the unit's fresh start time (and the grace) keep the checker from a restart loop.
    for _ in range(9):
        clock.advance(15)
        state = wd.run_once(cfg, state, wd.Systemd(systemctl), wd.Output(io.StringIO()), clock=clock)
    assert sum(1 for c in calls(root) if "restart cron" in c) == 1
    heartbeat.write_text("%d\n" % clock())
    state = wd.run_once(cfg, state, wd.Systemd(systemctl), wd.Output(out), clock=clock)
    assert state["checks"]["cron"]["status"] == "ok"


def test_main_writes_state_schema_and_notifies(tmp_path, fake_systemd, monkeypatch, capsys):
    root, systemctl = fake_systemd
    (root / "ssh.service").write_text("active 1")
    (root / "app.service").write_text("failed 0")
    server = Server(b"SSH-2.0-OpenSSH_9.2p1\r\n")
    notify_dir = tmp_path / "notify"
    notify_dir.mkdir()
    # A stand-in for the alerting engineer's module (another component, not under test).
    (notify_dir / "oomguard_notify.py").write_text(textwrap.dedent("""\
        import json
        SENT = []
        def load_sinks(path):
            return json.load(open(path))
        def notify(event, sinks):
            with open(sinks["out"], "a") as handle:
                handle.write(json.dumps(event) + "\\n")
        """))
    monkeypatch.syspath_prepend(str(notify_dir))
    # Other tests may have imported the real oomguard_notify: make the import find ours.
    monkeypatch.delitem(sys.modules, "oomguard_notify", raising=False)
    sent = tmp_path / "sent.jsonl"
    (tmp_path / "sinks.json").write_text(json.dumps({"out": str(sent)}))
    config = write_config(tmp_path, [
        {"name": "ssh", "unit": "ssh.service", "require_active": False,
         "probe": {"type": "tcp", "host": "127.0.0.1", "port": server.port, "banner": "SSH-2.0-", "timeout": 2}},
        {"name": "app", "unit": "app.service", "max_restarts": 0,
         "probe": {"type": "command", "argv": ["true"], "timeout": 2}},
    ])
    try:
        assert wd.main(["--config", config, "--systemctl", systemctl]) == 0
    finally:
        server.close()
    state = json.loads((tmp_path / "state.json").read_text())
    assert isinstance(state["last_run"], int)
    assert state["checks"]["ssh"]["status"] == "ok"
    assert state["checks"]["app"]["status"] == "escalated"
    assert state["escalation"]["last_check"] == "app" and state["escalation"]["last_action"] == "log"
    assert set(state["checks"]["app"]) >= {"status", "unit", "consecutive_failures", "restart_attempts",
                                           "last_restart", "grace_until", "last_result"}
    assert "hardware_watchdog" in state
    assert state["checker"] == {"oom_score_adj": int(open("/proc/self/oom_score_adj").read()), "nice": os.nice(0)}
    assert oct(os.stat(tmp_path / "state.json").st_mode & 0o777) == "0o644"
    events = [json.loads(line) for line in sent.read_text().splitlines()]
    assert [(e["severity"], e["kind"]) for e in events] == [("critical", "watchdog_escalation")]
    assert events[0]["source"] == "oomguard-watchdog" and events[0]["details"]["unit"] == "app.service"
    assert "<3>app: app.service still failing (app.service is failed (running)) after 0 restart(s): escalating (log)" \
        in capsys.readouterr().out
    assert not any("restart" in c for c in calls(root))


def test_reboot_escalation_saves_state_first_and_runs_once(tmp_path, fake_systemd):
    root, systemctl = fake_systemd
    marker = tmp_path / "rebooted"
    cfg = wd.load_config(write_config(
        tmp_path, [{"name": "gone", "unit": "gone.service", "max_restarts": 1, "grace": 0}],
        escalation={"action": "reboot", "min_interval": 3600, "grace": 600,
                    "reboot_command": ["sh", "-c", "cat %s > %s" % (tmp_path / "state.json", marker)]}))
    clock = FakeClock()
    state = wd.new_state()
    out = io.StringIO()
    for _ in range(6):
        state = wd.run_once(cfg, state, wd.Systemd(systemctl), wd.Output(out), clock=clock,
                            escalate=wd.reboot_escalation(cfg, wd.Output(out)))
        clock.advance(10)
    saved = json.loads(marker.read_text())  # what the state file held when "reboot" ran
    assert saved["escalation"]["last_action"] == "reboot" and saved["escalation"]["count"] == 1
    assert state["escalation"]["count"] == 1
    assert "restart of gone.service failed (rc 5): Failed to restart gone.service" in out.getvalue()
    assert "escalation suppressed: previous escalation (reboot" not in out.getvalue()  # quiet after escalation


def test_pause_file_probes_only(tmp_path, fake_systemd):
    root, systemctl = fake_systemd
    (root / "cron.service").write_text("inactive 0")
    cfg = wd.load_config(write_config(tmp_path, [{"name": "cron", "unit": "cron.service"}]))
    (tmp_path / "pause").write_text("")
    out = io.StringIO()
    state = wd.run_once(cfg, wd.new_state(), wd.Systemd(systemctl), wd.Output(out), clock=FakeClock())
    assert not any("restart" in c for c in calls(root))
    assert state["checks"]["cron"]["status"] == "ok"  # nothing decided while paused
    assert "probing only" in out.getvalue()


def test_load_notifier_without_module_logs_journal_only(tmp_path, monkeypatch):
    (tmp_path / "sinks.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "oomguard_notify", None)  # import fails
    out = io.StringIO()
    assert wd.load_notifier(str(tmp_path / "sinks.json"), wd.Output(out)) is None
    assert "oomguard_notify is not installed: journal only" in out.getvalue()
    assert wd.load_notifier(str(tmp_path / "absent.json"), wd.Output(out)) is None


def test_broken_notifier_never_stops_the_watchdog(tmp_path, monkeypatch):
    (tmp_path / "sinks.json").write_text("{}")
    broken = types.ModuleType("oomguard_notify")
    broken.load_sinks = lambda path: {}

    def notify(event, sinks):
        raise RuntimeError("smtp down")
    broken.notify = notify
    monkeypatch.setitem(sys.modules, "oomguard_notify", broken)
    out = io.StringIO()
    send = wd.load_notifier(str(tmp_path / "sinks.json"), wd.Output(out))
    send({"kind": "x"})
    assert "<3>alert delivery failed: smtp down" in out.getvalue()


def test_deliver_abandons_slow_sinks():
    import time
    sent = []

    def slow(event):
        time.sleep(3)
        sent.append(event)
    events = [{"kind": "a"}]
    start = time.monotonic()
    assert wd.deliver(slow, events, timeout=0.2) is False
    assert time.monotonic() - start < 1.5 and events == [] and sent == []
    fast = []
    assert wd.deliver(fast.append, [{"kind": "b"}], timeout=2) is True and fast == [{"kind": "b"}]


def test_unanswered_systemctl_is_inconclusive_not_a_failure(tmp_path, fake_systemd):
    root, systemctl = fake_systemd
    (root / "cron.service").write_text("hang")
    cfg = wd.load_config(write_config(tmp_path, [{"name": "cron", "unit": "cron.service"}]))
    out = io.StringIO()
    before = wd.new_state()
    before["checks"]["cron"] = dict(wd.new_check_state("cron.service"), status="failing", consecutive_failures=1)
    state = wd.run_once(cfg, before, wd.Systemd(systemctl, timeout=1), wd.Output(out), clock=FakeClock())
    assert not any("restart" in c for c in calls(root))
    assert state["checks"]["cron"]["status"] == "failing" and state["checks"]["cron"]["consecutive_failures"] == 1
    assert "<4>cron: inconclusive (systemctl show cron.service did not answer)" in out.getvalue()


@pytest.mark.parametrize("uptime, decides", [("35.20 40.10\n", False), ("900.00 1500.00\n", True)])
def test_no_decision_while_the_system_boots(tmp_path, fake_systemd, uptime, decides):
    root, systemctl = fake_systemd
    (root / "ssh.service").write_text("inactive 0")
    (root / "system-state").write_text("starting")
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "uptime").write_text(uptime)
    cfg = wd.load_config(write_config(tmp_path, [{"name": "ssh", "unit": "ssh.service"}]))
    out = io.StringIO()
    state = wd.run_once(cfg, wd.new_state(), wd.Systemd(systemctl), wd.Output(out), clock=FakeClock(),
                        proc=str(proc))
    restarted = any("restart ssh.service" in c for c in calls(root))
    # booting: a refused connection is a unit not started yet; a boot "starting" for
    # longer than BOOT_PATIENCE is a failure to act on
    assert restarted is decides
    assert ("still booting" in out.getvalue()) is not decides
    (root / "system-state").write_text("running")
    wd.run_once(cfg, state, wd.Systemd(systemctl), wd.Output(io.StringIO()), clock=FakeClock(), proc=str(proc))
    assert any("restart ssh.service" in c for c in calls(root))


def test_run_once_defers_a_silent_listener_under_pressure_then_restarts(tmp_path, fake_systemd):
    import socket
    root, systemctl = fake_systemd
    (root / "ssh.service").write_text("active 0")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts, never sends a banner: a starved sshd
    port = listener.getsockname()[1]
    proc = tmp_path / "proc"
    (proc / "pressure").mkdir(parents=True)
    (proc / "pressure" / "memory").write_text("some avg10=62.00 avg60=20.00 avg300=5.00 total=1\n"
                                              "full avg10=31.00 avg60=9.00 avg300=2.00 total=1\n")
    (proc / "meminfo").write_text("MemTotal: 1000000 kB\nMemAvailable: 30000 kB\n")
    (proc / "uptime").write_text("5000.0 1.0\n")
    cfg = wd.load_config(write_config(tmp_path, [{
        "name": "ssh", "unit": "ssh.service",
        "probe": {"type": "tcp", "host": "127.0.0.1", "port": port, "banner": "SSH-2.0-", "timeout": 1}}]))
    clock = FakeClock()
    try:
        state = wd.run_once(cfg, wd.new_state(), wd.Systemd(systemctl), wd.Output(io.StringIO()), clock=clock,
                            proc=str(proc))
        assert not any("restart" in c for c in calls(root))
        assert state["checks"]["ssh"]["deferred_since"] == int(clock())
        clock.advance(wdlib.PRESSURE_PATIENCE + 1)
        wd.run_once(cfg, state, wd.Systemd(systemctl), wd.Output(io.StringIO()), clock=clock, proc=str(proc))
        assert any("restart ssh.service" in c for c in calls(root))
    finally:
        listener.close()


# --- a damaged state file never stops every run (issue 15) ---------------------------

@pytest.mark.parametrize("damaged", [
    {"version": 1, "checks": {"cron": {"status": "failing", "consecutive_failures": "3"}}},
    {"version": 1, "checks": {"cron": {"last_restart": "yesterday"}}},
    {"version": 1, "checks": ["cron"]},
    {"version": 1, "checks": {"cron": "ok"}},
    {"version": 1, "escalation": {"last_time": "soon"}},
    {"version": 1, "escalation": "reboot"},
    {"version": 1, "last_run": [1]},
    "{not json",
    "[1, 2]",
])
def test_damaged_state_is_moved_aside_and_the_run_goes_on(tmp_path, fake_systemd, capsys, damaged):
    root, systemctl = fake_systemd
    (root / "cron.service").write_text("active 1")
    config = write_config(tmp_path, [{"name": "cron", "unit": "cron.service"}])
    state = tmp_path / "state.json"
    text = damaged if isinstance(damaged, str) else json.dumps(damaged).replace('"version": 1',
                                                                                '"version": %d' % wd.STATE_VERSION)
    state.write_text(text)
    assert wd.main(["--config", config, "--systemctl", systemctl]) == 0
    assert (tmp_path / "state.json.damaged").read_text() == text  # kept for the post-mortem
    assert json.loads(state.read_text())["checks"]["cron"]["status"] == "ok"  # rewritten, fresh
    out = capsys.readouterr().out
    assert out.count("is damaged") == 1 and "moved to %s.damaged" % state in out
    assert wd.main(["--config", config, "--systemctl", systemctl]) == 0  # the next run continues normally
    assert "is damaged" not in capsys.readouterr().out


@pytest.mark.parametrize("raw, fragment", [
    ({"state_file": "/var/lib/oomguard/../../etc/cron.d/x"}, "state_file"),
    ({"state_file": "/etc/shadow"}, "under /etc"),
    ({"escalation": "reboot"}, "escalation"),
    ({"escalation": {"reboot_command": "systemctl reboot"}}, "reboot_command"),
    ({"interval": None}, "interval"),
    ({"checks": {"cron": "cron.service"}}, "checks"),
])
def test_check_config_wrong_types_exit_2_with_the_key(tmp_path, capsys, raw, fragment):
    raw = dict(raw)
    config = write_config(tmp_path, raw.pop("checks", [{"name": "cron", "unit": "cron.service"}]), **raw)
    assert wd.main(["--check-config", config]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err
    assert wd.main(["--check-config", str(tmp_path)]) == 2  # a directory as config


# --- the cron heartbeat writes only into a safe directory (issue 15) -------------------

HEARTBEAT = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles", "service_watchdog", "files",
                         "oomguard-heartbeat")


def run_heartbeat(tmp_path, directory):
    env = dict(os.environ, OOMGUARD_HEARTBEAT_DIR=str(directory), OOMGUARD_HEARTBEAT_MARKER=str(tmp_path / "marker"))
    return subprocess.run(["sh", HEARTBEAT], env=env, capture_output=True, text=True, timeout=30)


def test_heartbeat_writes_atomically_into_its_directory(tmp_path):
    place = tmp_path / "lib"
    place.mkdir()
    place.chmod(0o755)
    assert run_heartbeat(tmp_path, place).returncode == 0
    assert (place / "cron-heartbeat").read_text().strip().isdigit()
    assert [p.name for p in place.iterdir()] == ["cron-heartbeat"]


@pytest.mark.parametrize("kind", ["world-writable", "group-writable", "link", "missing"])
def test_heartbeat_refuses_an_unsafe_directory(tmp_path, kind):
    place = tmp_path / "lib"
    target = tmp_path / "elsewhere"
    target.mkdir()
    if kind == "link":
        place.symlink_to(target)
    elif kind != "missing":
        place.mkdir()
        place.chmod(0o777 if kind == "world-writable" else 0o775)
    done = run_heartbeat(tmp_path, place)
    assert done.returncode == 1 and "refusing to write" in done.stderr
    assert list(target.iterdir()) == [] and (kind in ("link", "missing") or list(place.iterdir()) == [])
    assert (tmp_path / "marker").exists()  # the journal is told once
