#!/usr/bin/env python3
"""Host side of the oomguard memory-exhaustion drill (Molecule scenario `drill`).

Drives the two VMs of the scenario over plain SSH (a NEW connection each time: no
multiplexing, so every command is also a login test) and measures what happens:

  drill.py storms   --instances FILE --output DIR --oomguard NAME --control NAME
      The storms, on both VMs at once (one thread each), one storm after another,
      with the guests' swap on (as real servers have it), then one without:
        a         one process allocating fast until a killer ends it (transient
                  unit with RuntimeMaxSec, no MemoryMax)
        b         a fork storm: app-worker.service (expendable on the oomguard VM)
                  forks 8 children of 160 MiB each
        c-cron    a leak started by a cron job (one-shot /etc/cron.d entry)
        c-session a leak started from a new SSH session (on a standard Debian
                  server: in user.slice/user-0.slice/session-N.scope)
        d-slow    a slow leak (about 20 MiB/s) in a service: the longest thrash
        a-noswap  storm a again with swap off: the kernel OOM killer's path
      First the idle login time (five new SSH logins in a row). During each storm:
      a new SSH login every 3 s (each attempt's latency), and on the guest a
      sampler (drill-hog watch, memory locked) that records available memory and
      whether the hog lives every second, so the storm's end and the moment memory
      ran out (MemAvailable below 5 % of RAM) are read on the guest's clock.
      Before/after each storm: PIDs of sshd, cron, journald, dbus and the agents;
      at the end: the kernel log (victims via module_utils/oomguard_oomlog), the
      early killer's kills (systemd-oomd's journal), cron's journal (heartbeat
      runs), the watchdog timer's runs, the alert agent's events and snapshots.
      Writes DIR/storms.json.
  drill.py watchdog --instances FILE --output DIR --instance NAME [--console LOG]
      Crash the kernel (sysrq c, kernel.panic=0: it hangs) with the hardware
      watchdog armed; time until the VM has rebooted and a new SSH login works.
      Writes DIR/watchdog.json.
  drill.py report   --output DIR --oomguard NAME --control NAME
      Merge storms.json, watchdog.json and the oomguard_check results
      (DIR/check-NAME.json) into DIR/results.json; print the summary table and
      write it to DIR/summary.txt.

Every wait has a hard limit; every hog has its own (SIGALRM, RuntimeMaxSec).
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "module_utils"))

from oomguard_earlykills import parse_oomd_message  # noqa: E402  (the one early-kill reader)
from oomguard_oomlog import parse_oom_events  # noqa: E402  (the one kernel-log reader)

LIB = "/usr/local/lib/oomguard-drill"
HOG = LIB + "/drill-hog"
STATE = "/run/oomguard-drill"
CRON_STORM = "/etc/cron.d/oomguard-drill-leak"
# The services the drill watches, by the name used in the results.
WATCHED = {"sshd": "ssh.service", "cron": "cron.service", "journald": "systemd-journald.service",
           "dbus": "dbus.service", "alertd": "oomguard-alertd.service"}
STORM_TIMEOUT = 150     # seconds a storm may last before the drill kills what is left
SLOW_STORM_TIMEOUT = 240  # the slow leak's (it needs minutes to fill RAM and swap unchecked)
# The control VM's storms are evidence of what happens without oomguard: one still going
# after this long is recorded as such (TIMED OUT) and ended, so the control, the slower of
# the two, does not set the drill's length (CI's time budget).
CONTROL_STORM_LIMIT = 90
LOGIN_TIMEOUT = 30      # seconds the drill keeps trying a new login after a storm
HEARTBEAT_WAIT = 130    # seconds to wait for a cron heartbeat after the last storm
IDLE_LOGINS = 5         # new logins in a row before the storms: the idle login time
LOGIN_EVERY = 3.0       # seconds between the starts of two login attempts during a storm
LOGIN_ATTEMPT_TIMEOUT = 45  # seconds one login attempt may take before it counts as failed
EXHAUSTED_PERCENT = 5.0  # memory has run out: MemAvailable below this share of MemTotal


def log(name, message):
    print("[drill %s %s] %s" % (time.strftime("%H:%M:%S"), name, message), flush=True)


class Guest:
    """One VM, reached by a new SSH connection for every command."""

    def __init__(self, instance):
        self.name = instance["instance"]
        self.port = int(instance["port"])
        self.key = instance["identity_file"]
        self.user = instance.get("user", "root")
        self.address = instance.get("address", "127.0.0.1")

    def argv(self, connect_timeout=10):
        return ["ssh", "-i", self.key, "-p", str(self.port), "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=%d" % connect_timeout,
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
                "-o", "ControlMaster=no", "-o", "ControlPath=none",
                "%s@%s" % (self.user, self.address)]

    def run(self, command, timeout=60, connect_timeout=10):
        """(rc, stdout, stderr); rc None when the command timed out."""
        try:
            done = subprocess.run(self.argv(connect_timeout) + [command], capture_output=True,
                                  text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return None, "", "timed out after %ss" % timeout
        return done.returncode, done.stdout, done.stderr

    def popen(self, command):
        return subprocess.Popen(self.argv() + [command], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)

    def json(self, command, timeout=60, patience=120):
        """Parsed JSON of a command's last output line, retried for `patience` seconds
        (under memory pressure a TCG guest may not even send its banner in time)."""
        error = None
        deadline = time.time() + patience
        while True:
            rc, out, err = self.run(command, timeout=timeout)
            if rc == 0 and out.strip():
                return json.loads(out.strip().splitlines()[-1])
            error = "rc %s: %s" % (rc, (err or out).strip()[-300:])
            if time.time() > deadline:
                raise RuntimeError("%s: %s failed: %s" % (self.name, command, error))
            time.sleep(1)

    def probe(self):
        sent = time.time()
        data = self.json(LIB + "/drill-probe")
        received = time.time()
        # Guest clock minus host clock (TCG guests drift): host times are converted.
        data["clock_offset"] = data["time"] - (sent + received) / 2
        return data

    def banner(self, timeout=3):
        try:
            with socket.create_connection((self.address, self.port), timeout=timeout) as sock:
                sock.settimeout(timeout)
                return sock.recv(64).startswith(b"SSH-2.0-")
        except OSError:
            return False

    def new_login(self, deadline_s=LOGIN_TIMEOUT):
        """Keep trying a brand-new SSH login; seconds until one worked (None: never)."""
        start = time.time()
        attempts = 0
        while time.time() - start < deadline_s:
            attempts += 1
            rc, out, _ = self.run("echo login-ok", timeout=15, connect_timeout=10)
            if rc == 0 and "login-ok" in out:
                return round(time.time() - start, 2), attempts
            time.sleep(0.5)
        return None, attempts


# --- logins during the storms ------------------------------------------------------

def login_attempt(guest):
    """One brand-new SSH login: its record {at, s, ok, error} (host clock)."""
    start = time.time()
    rc, out, err = guest.run("echo login-ok", timeout=LOGIN_ATTEMPT_TIMEOUT,
                             connect_timeout=LOGIN_ATTEMPT_TIMEOUT)
    ok = rc == 0 and "login-ok" in out
    return {"at": round(start, 2), "s": round(time.time() - start, 2), "ok": ok,
            "error": None if ok else ((err or out).strip()[-200:] or "rc %s" % rc)}


def idle_logins(guest):
    """IDLE_LOGINS new logins one after another on the quiet guest."""
    attempts = []
    for _ in range(IDLE_LOGINS):
        attempts.append(login_attempt(guest))
        time.sleep(0.5)
    return attempts


class LoginProber(threading.Thread):
    """A new SSH login every LOGIN_EVERY seconds (or right after a slower one) until stopped."""

    def __init__(self, guest):
        super().__init__(daemon=True)
        self.guest = guest
        self.attempts = []
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            attempt = login_attempt(self.guest)
            self.attempts.append(attempt)
            self.done.wait(max(0.0, LOGIN_EVERY - attempt["s"]))

    def stop(self):
        """Stop after the attempt in flight; its attempts."""
        self.done.set()
        self.join(LOGIN_ATTEMPT_TIMEOUT + 15)
        return list(self.attempts)


def start_watch(guest, storm, tag, timeout):
    """The guest-side sampler of this storm (memory locked, never an OOM victim)."""
    guest.run("systemd-run --quiet --unit=oomguard-drill-watch-%s -p OOMScoreAdjust=-1000 "
              "-p ManagedOOMPreference=omit %s watch %s --out %s/watch-%s.jsonl --max-seconds %d"
              % (storm, HOG, tag, STATE, storm, timeout + 60))


def read_jsonl(guest, path):
    """The JSON lines of a file on the guest (a missing file or a torn line: skipped)."""
    _, text, _ = guest.run("cat %s 2>/dev/null; true" % path, timeout=60)
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def read_watch(guest, storm):
    return read_jsonl(guest, "%s/watch-%s.jsonl" % (STATE, storm))


# --- storms -----------------------------------------------------------------------

def hog_status(guest, tag):
    """The hogs of this tag, or None when the guest did not answer in time."""
    try:
        return guest.json("%s status %s" % (HOG, tag), timeout=30, patience=0)
    except RuntimeError:
        return None


def wait_started(guest, tag, timeout):
    """Wait until a hog of this tag runs; its status (with oom_score_adj) or None."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = hog_status(guest, tag)
        if status and status["pids"]:  # running, or started and already gone
            return status
        time.sleep(1)
    return None


def wait_ended(guest, tag, timeout=STORM_TIMEOUT):
    """Wait until every hog of this tag has ended; (status, timed_out)."""
    deadline = time.time() + timeout
    status = hog_status(guest, tag)
    while time.time() < deadline:
        if status and status["pids"] and not status["alive"]:
            return status, False
        time.sleep(1)
        status = hog_status(guest, tag)
    # Past the hard limit: end what is left, say so.
    if status and status["alive"]:
        guest.run("kill -9 %s" % " ".join(str(p) for p in status["alive"]))
    return hog_status(guest, tag) or {"pids": [], "alive": []}, True


def storm_a(guest, ctx, tag="a"):
    rc, _, err = guest.run("systemd-run --quiet --unit=oomguard-drill-%s -p RuntimeMaxSec=120 "
                           "%s run --tag %s --max-seconds 110" % (tag, HOG, tag))
    if rc != 0:
        raise RuntimeError("%s: storm %s did not start: %s" % (guest.name, tag, err))
    return wait_started(guest, tag, 30)


def storm_a_noswap(guest, ctx):
    """Storm a with the swap off: the kernel OOM killer's own path (swap back on after)."""
    rc, _, err = guest.run("swapoff -a", timeout=180)
    if rc != 0:
        raise RuntimeError("%s: swapoff failed: %s" % (guest.name, err))
    ctx["after"] = "swapon -a"
    return storm_a(guest, ctx, tag="a0")


def storm_d_slow(guest, ctx):
    """A service that leaks slowly (2 MiB every 0.1 s): the longest thrash before a kill."""
    rc, _, err = guest.run("systemd-run --quiet --unit=oomguard-drill-slow -p RuntimeMaxSec=%d "
                           "%s run --tag slow --step-mb 2 --pause 0.1 --max-seconds %d"
                           % (SLOW_STORM_TIMEOUT, HOG, SLOW_STORM_TIMEOUT - 10))
    if rc != 0:
        raise RuntimeError("%s: storm d-slow did not start: %s" % (guest.name, err))
    return wait_started(guest, "slow", 30)


def storm_b(guest, ctx):
    guest.run("rm -f %s/worker.done" % STATE)
    rc, _, err = guest.run("systemctl kill --kill-whom=main -s SIGUSR1 app-worker.service")
    if rc != 0:
        raise RuntimeError("%s: storm b did not start: %s" % (guest.name, err))
    return wait_started(guest, "worker", 30)


def install_cron_storm(guest):
    """A one-shot cron job: it removes its entry, then waits for the go file and leaks."""
    line = ("* * * * * root rm -f %s; exec %s run --tag cron --wait-for %s/go-cron --max-seconds 600"
            % (CRON_STORM, HOG, STATE))
    rc, _, err = guest.run("printf '%%s\\n' 'SHELL=/bin/sh' '%s' > %s.tmp && chmod 0644 %s.tmp && mv %s.tmp %s"
                           % (line, CRON_STORM, CRON_STORM, CRON_STORM, CRON_STORM))
    if rc != 0:
        raise RuntimeError("%s: cannot install the cron storm: %s" % (guest.name, err))


def storm_c_cron(guest, ctx):
    started = wait_started(guest, "cron", 130)  # cron starts it at the next full minute
    if started is None:
        raise RuntimeError("%s: cron never started the storm job (%s)" % (guest.name, CRON_STORM))
    guest.run("touch %s/go-cron" % STATE)
    return started


def storm_c_session(guest, ctx):
    ctx["session"] = guest.popen("exec %s run --tag session --max-seconds 110" % HOG)
    return wait_started(guest, "session", 30)


# (name, what, hog tag, starter, hard time limit)
STORMS = [
    ("a", "one process allocating fast until killed (transient unit)", "a", storm_a, STORM_TIMEOUT),
    ("b", "fork storm of 8 x 160 MiB from app-worker.service", "worker", storm_b, STORM_TIMEOUT),
    ("c-cron", "leak started by a cron job", "cron", storm_c_cron, STORM_TIMEOUT),
    ("c-session", "leak started from a new SSH session", "session", storm_c_session, STORM_TIMEOUT),
    ("d-slow", "slow leak (~20 MiB/s) in a service", "slow", storm_d_slow, SLOW_STORM_TIMEOUT),
    ("a-noswap", "storm a with swap off (kernel OOM killer)", "a0", storm_a_noswap, STORM_TIMEOUT),
]


def run_storms(guest, oomguard, out):
    out.update(instance=guest.name, oomguard=oomguard, storms=[], error=None)
    start = time.time()
    try:
        # A clean start: no hog left over by an interrupted run (inside the test VM only).
        guest.run("pkill -KILL -x drill-hog; rm -rf %s %s; mkdir -p %s; "
                  "systemctl reset-failed 'oomguard-drill-*' 2>/dev/null; true" % (STATE, CRON_STORM, STATE))
        install_cron_storm(guest)
        out["probe_start"] = guest.probe()
        out["idle_logins"] = idle_logins(guest)
        log(guest.name, "idle logins: %s s" % ", ".join(str(a["s"]) for a in out["idle_logins"]))
        for name, what, tag, start_storm, timeout in STORMS:
            log(guest.name, "storm %s: %s" % (name, what))
            ctx = {}
            before = guest.probe()
            if not oomguard:
                timeout = min(timeout, CONTROL_STORM_LIMIT)
            start_watch(guest, name, tag, timeout)
            prober = LoginProber(guest)
            t_start = time.time()
            prober.start()
            started = start_storm(guest, ctx)
            status, timed_out = wait_ended(guest, tag, timeout)
            t_end = time.time()
            storm_logins = prober.stop()
            latency, attempts = guest.new_login()
            if ctx.get("after"):
                guest.run(ctx["after"], timeout=120)
            after = guest.probe()
            samples = read_watch(guest, name)
            session_rc = None
            if "session" in ctx:
                try:
                    session_rc = ctx["session"].wait(timeout=15)
                except subprocess.TimeoutExpired:
                    ctx["session"].kill()
            guest.run("systemctl reset-failed 'oomguard-drill-*' 2>/dev/null; true")
            record = {
                "storm": name, "what": what, "tag": tag,
                "start": t_start, "end": t_end, "duration_s": round(t_end - t_start, 1),
                "timed_out": timed_out, "hog_pids": status["pids"],
                # What each hog recorded for itself at its start (status after the storm
                # covers every hog, also those killed before the drill first looked).
                "hog_oom_score_adj": dict((started or {}).get("oom_score_adj", {}), **status.get("oom_score_adj", {})),
                "hog_cgroups": dict((started or {}).get("cgroups", {}), **status.get("cgroups", {})),
                "login_s": latency, "login_attempts": attempts, "session_ssh_rc": session_rc,
                "storm_logins": storm_logins, "samples": samples,
                "before": before, "after": after,
            }
            out["storms"].append(record)
            worst = max((a["s"] for a in storm_logins), default=None)
            log(guest.name, "storm %s over in %.1f s%s; %d logins during it (%d failed, slowest %s s); "
                "new login after %s s" % (name, t_end - t_start, " (TIMED OUT)" if timed_out else "",
                                          len(storm_logins), sum(1 for a in storm_logins if not a["ok"]),
                                          worst, latency))
        wait_heartbeat(guest, out)
        collect_logs(guest, out)
    except Exception as exc:  # recorded and reported: the tests fail on it
        out["error"] = "%s: %s" % (type(exc).__name__, exc)
        log(guest.name, "ERROR " + out["error"])
    out["wall_s"] = round(time.time() - start, 1)


def heartbeat_runs(guest):
    """Guest epoch times at which cron ran a heartbeat job (cron's own log lines)."""
    rc, text, _ = guest.run("journalctl -b 0 -t CRON -o short-unix --no-pager | grep heartbeat; true")
    times = []
    for line in text.splitlines():
        try:
            times.append(float(line.split()[0]))
        except (ValueError, IndexError):
            continue
    return times


def wait_heartbeat(guest, out):
    """Wait (bounded) until cron has run a heartbeat after the last storm."""
    last_end = out["storms"][-1]["end"] + out["storms"][-1]["after"]["clock_offset"]
    deadline = time.time() + HEARTBEAT_WAIT
    while time.time() < deadline:
        if any(t > last_end for t in heartbeat_runs(guest)):
            return
        time.sleep(5)


def collect_logs(guest, out):
    out["probe_end"] = guest.probe()
    _, kernel, _ = guest.run("journalctl -k -b 0 -o short-monotonic --no-pager", timeout=120)
    _, dmesg, _ = guest.run("dmesg", timeout=60)
    events_journal = parse_oom_events(kernel)
    events_dmesg = parse_oom_events(dmesg)
    out["kernel_log_source"] = "journalctl -k" if len(events_journal) >= len(events_dmesg) else "dmesg"
    out["oom_events"] = events_journal if len(events_journal) >= len(events_dmesg) else events_dmesg
    # The early killer's kills (systemd-oomd on this cgroup v2 guest), from its journal.
    _, oomd, _ = guest.run("journalctl -b 0 -u systemd-oomd.service -o short-unix --no-pager; true", timeout=60)
    out["early_kills"] = parse_early_kills(oomd)
    out["heartbeat_runs"] = heartbeat_runs(guest)
    _, timer, _ = guest.run("journalctl -b 0 -u oomguard-watchdog.service -o short-unix --no-pager"
                            " | grep -E 'Starting |Started ' ; true")
    out["watchdog_runs"] = sorted(float(line.split()[0]) for line in timer.splitlines()
                                  if line.split() and line.split()[0].replace(".", "", 1).isdigit())
    # Who restarted what (the journal is volatile: the watchdog stage's reset wipes it).
    _, restarts, _ = guest.run("journalctl -b 0 -o short-unix --no-pager -u oomguard-watchdog.service"
                               " -u ssh.service -u cron.service | grep -iE 'restart|Stopping|Started|failing'"
                               " | tail -n 200; true", timeout=60)
    out["service_log"] = restarts.splitlines()
    for key, path in (("alerts", "/var/log/oomguard/alerts.jsonl"), ("snapshots", "/var/log/oomguard/snapshots.jsonl")):
        out[key] = read_jsonl(guest, path)


def parse_early_kills(text):
    """systemd-oomd's kills in `journalctl -o short-unix` text: [{epoch, cgroup, kind, reason}]."""
    kills = []
    for line in text.splitlines():
        stamp, _, rest = line.partition(" ")
        message = rest.split("]: ", 1)[-1] if "]: " in rest else rest.split(": ", 1)[-1]
        kill = parse_oomd_message(message)
        if kill is None:
            continue
        try:
            kill["epoch"] = float(stamp)
        except ValueError:
            continue
        kills.append(kill)
    return kills


def cmd_storms(args):
    instances = load_instances(args.instances)
    results = {}
    threads = []
    for name, oomguard in ((args.oomguard, True), (args.control, False)):
        results[name] = {}
        thread = threading.Thread(target=run_storms, args=(Guest(instances[name]), oomguard, results[name]))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    write_json(os.path.join(args.output, "storms.json"), results)
    return 0 if not results[args.oomguard].get("error") else 1


# --- watchdog stage -------------------------------------------------------------

def cmd_watchdog(args):
    guest = Guest(load_instances(args.instances)[args.instance])
    out = {"instance": guest.name}
    before = guest.probe()
    out["runtime_watchdog"] = before["runtime_watchdog"]
    out["boot_id_before"] = before["boot_id"]
    log(guest.name, "watchdog stage: RuntimeWatchdogSec=%s; crashing the kernel (sysrq c, panic=0)"
        % before["runtime_watchdog"])
    rc, _, err = guest.run("sysctl -q -w kernel.panic=0 && sync && "
                           "systemd-run --quiet --on-active=2 --unit=oomguard-drill-crash "
                           "/bin/sh -c 'echo c > /proc/sysrq-trigger'")
    if rc != 0:
        out["error"] = "could not schedule the crash: %s" % err
        write_json(os.path.join(args.output, "watchdog.json"), out)
        return 1
    t_crash = time.time() + 2
    deadline = t_crash + args.timeout
    banner_lost = banner_back = None
    boot_id = before["boot_id"]
    time.sleep(3)
    while time.time() < deadline:
        up = guest.banner()
        if not up and banner_lost is None:
            banner_lost = time.time()
        if up and banner_lost is not None and banner_back is None:
            banner_back = time.time()
        if banner_back is not None:
            rc, text, _ = guest.run("cat /proc/sys/kernel/random/boot_id", timeout=20)
            if rc == 0 and text.strip() and text.strip() != before["boot_id"]:
                boot_id = text.strip()
                break
        time.sleep(1)
    t_login = time.time()
    out["boot_id_after"] = boot_id
    out["reset"] = boot_id != before["boot_id"]
    out["banner_lost_s"] = round(banner_lost - t_crash, 1) if banner_lost else None
    out["ssh_banner_s"] = round(banner_back - t_crash, 1) if banner_back else None
    out["recovery_s"] = round(t_login - t_crash, 1) if out["reset"] else None
    if args.console and os.path.exists(args.console):
        with open(args.console, errors="replace") as handle:
            console = handle.read()
        out["console_crash_seen"] = "sysrq: Trigger a crash" in console or "Kernel panic" in console
    log(guest.name, "watchdog stage: reset=%s, sshd banner after %s s, new login after %s s" % (
        out["reset"], out["ssh_banner_s"], out["recovery_s"]))
    write_json(os.path.join(args.output, "watchdog.json"), out)
    return 0 if out["reset"] else 1


# --- analysis and report ----------------------------------------------------------

def analyse(run):
    """Per storm: victims, protected processes killed, PIDs kept, latencies."""
    boot = run.get("probe_end", run.get("probe_start", {})).get("boot_epoch", 0)
    events = [dict(e, epoch=boot + e["uptime"]) for e in run.get("oom_events", []) if e.get("uptime") is not None]
    heartbeats = run.get("heartbeat_runs", [])
    alerts = run.get("alerts", [])
    snapshots = run.get("snapshots", [])
    storms = []
    early = run.get("early_kills", [])
    idle = sorted(a["s"] for a in run.get("idle_logins", []) if a.get("ok"))
    idle_login_s = idle[len(idle) // 2] if idle else None
    for index, storm in enumerate(run.get("storms", [])):
        offset = storm["after"]["clock_offset"]
        start_g, end_g = storm["start"] + offset - 1, storm["end"] + offset
        nxt = run["storms"][index + 1]["start"] + offset if index + 1 < len(run["storms"]) else end_g + 30
        victims = [e for e in events if start_g <= e["epoch"] <= min(end_g + 5, nxt)]
        early_kills = [k for k in early if start_g <= k["epoch"] <= min(end_g + 5, nxt)]
        hog_pids = set(storm["hog_pids"])
        hog_cgroups = set(c for c in storm.get("hog_cgroups", {}).values() if c)
        protected = {name: storm["before"]["units"].get(unit, {}).get("pid", 0) for name, unit in WATCHED.items()}
        protected_pids = {pid: name for name, pid in protected.items() if pid} | {1: "systemd"}
        protected_units = {unit: name for name, unit in WATCHED.items()}
        timing = storm_timing(storm.get("samples", []), start_g + 1, end_g)
        logins = storm.get("storm_logins", [])
        services = {}
        for name, unit in WATCHED.items():
            b = storm["before"]["units"].get(unit, {})
            a = storm["after"]["units"].get(unit, {})
            if b.get("load") != "loaded":
                continue
            state = "kept" if a.get("pid") == b.get("pid") and a.get("active") == "active" else "changed"
            back_s = None
            if state == "changed" and a.get("active") == "active":
                back_s = round(a["active_enter_uptime"] + storm["after"]["boot_epoch"] - (storm["start"] + offset), 1)
            services[name] = {"before": b.get("pid"), "after": a.get("pid"), "state": state,
                              "active_after": a.get("active"), "restarts": a.get("restarts", 0) - b.get("restarts", 0),
                              "back_after_s": back_s}
        first_kill = min([v["epoch"] for v in victims] + [k["epoch"] for k in early_kills], default=None)
        early_hog = [k for k in early_kills
                     if any(c == k["cgroup"] or c.startswith(k["cgroup"].rstrip("/") + "/") for c in hog_cgroups)]
        hb_after = [t for t in heartbeats if t > end_g]
        window_alerts = [a for a in alerts if start_g <= float(a.get("time", 0)) <= min(end_g + 30, nxt + 5)]
        oom_alerts = [a for a in window_alerts if a.get("kind") in ("oom_kill", "early_kill")]
        alert_hog = [a for a in oom_alerts
                     if hog_pids & {v.get("pid") for v in (a.get("details", {}).get("victims") or [])}
                     or names_hog_cgroup(json.dumps(a.get("details", {})), hog_cgroups)]
        snaps = [s for s in snapshots if start_g <= float(s.get("time", 0)) <= min(end_g + 30, nxt + 5)]
        snap_hog = [s for s in snaps
                    if hog_pids & ({v.get("pid") for v in s.get("oom_victims") or []}
                                   | {p.get("pid") for p in s.get("top_rss") or []})]
        storms.append({
            "storm": storm["storm"], "what": storm["what"], "duration_s": storm["duration_s"],
            "timed_out": storm["timed_out"],
            "victims": [{"pid": v["pid"], "comm": v["comm"], "oom_score_adj": v["oom_score_adj"],
                         "scope": v["scope"], "memcg": v.get("oom_memcg") or v.get("task_memcg"),
                         "hog": v["pid"] in hog_pids} for v in victims],
            "hog_pids": sorted(hog_pids),
            "hog_oom_score_adj": storm["hog_oom_score_adj"],
            "early_kills": [{"cgroup": k["cgroup"], "kind": k.get("kind"), "hog": k in early_hog}
                            for k in early_kills],
            "hog_cgroups": sorted(hog_cgroups),
            "hog_killed": any(v["pid"] in hog_pids for v in victims) or bool(early_hog),
            "killed_by": sorted({"kernel" for v in victims if v["pid"] in hog_pids}
                                | {"early" for _ in early_hog}),
            "protected_killed": [{"pid": v["pid"], "comm": v["comm"], "service": protected_pids[v["pid"]]}
                                 for v in victims if v["pid"] in protected_pids]
                                + [{"pid": None, "comm": None, "service": protected_units[k["unit"]]}
                                   for k in early_kills if k.get("unit") in protected_units],
            "services": services,
            "login_s": storm["login_s"],
            "idle_login_s": idle_login_s,
            "storm_logins": len(logins),
            "storm_logins_failed": sum(1 for a in logins if not a["ok"]),
            "storm_login_max_s": max((a["s"] for a in logins), default=None),
            "exhausted_after_s": timing["exhausted_after_s"],
            "over_after_exhaustion_s": timing["over_after_exhaustion_s"],
            "min_available_percent": timing["min_available_percent"],
            "max_swap_used_percent": timing["max_swap_used_percent"],
            "samples": timing["samples"],
            "heartbeat_delay_s": round(hb_after[0] - end_g, 1) if hb_after else None,
            "alert_latency_s": round(float(oom_alerts[0]["time"]) - first_kill, 1) if oom_alerts and first_kill else None,
            "alert_names_hog": bool(alert_hog),
            "snapshot_names_hog": bool(snap_hog),
            "alert_kinds": sorted({"%s:%s" % (a.get("kind"), a.get("severity")) for a in window_alerts}),
        })
    runs = run.get("watchdog_runs", [])
    window = [t for t in runs if run.get("storms") and
              run["storms"][0]["start"] + run["storms"][0]["after"]["clock_offset"] - 60 <= t]
    gaps = [round(b - a, 1) for a, b in zip(window, window[1:])]
    return {"storms": storms, "watchdog_timer_runs": len(window), "watchdog_timer_max_gap_s": max(gaps) if gaps else None,
            "heartbeat": (run.get("probe_end") or {}).get("heartbeat")}


def names_hog_cgroup(text, hog_cgroups):
    """Whether an event's text names a hog's cgroup, or only its unit: an early kill that
    only PID 1's line reported carries the unit name, no cgroup."""
    return any(c and (c in text or '"%s"' % c.rsplit("/", 1)[-1] in text) for c in hog_cgroups)


def storm_timing(samples, start, end_fallback):
    """From the guest's samples (guest clock): when memory ran out (MemAvailable below
    EXHAUSTED_PERCENT of RAM) after the storm's start, and how long after that the last
    hog was gone. Never exhausted: over_after_exhaustion_s is 0 (a killer acted first)."""
    out = {"samples": len(samples), "exhausted_after_s": None, "over_after_exhaustion_s": None,
           "min_available_percent": None, "max_swap_used_percent": None}
    if not samples:
        return out
    total = samples[0].get("MemTotal") or 1
    available = [100.0 * s.get("MemAvailable", 0) / total for s in samples]
    out["min_available_percent"] = round(min(available), 1)
    swap = [100.0 * (s["SwapTotal"] - s["SwapFree"]) / s["SwapTotal"] for s in samples if s.get("SwapTotal")]
    out["max_swap_used_percent"] = round(max(swap), 1) if swap else None
    started = [i for i, s in enumerate(samples) if s.get("alive")]
    end = end_fallback
    if started:
        gone = [s["t"] for s in samples[started[0]:] if not s.get("alive")]
        end = gone[0] if gone else end_fallback
    exhausted = [s["t"] for s, pct in zip(samples, available) if pct < EXHAUSTED_PERCENT and s["t"] <= end]
    if exhausted:
        out["exhausted_after_s"] = round(exhausted[0] - start, 1)
        out["over_after_exhaustion_s"] = round(max(0.0, end - exhausted[0]), 1)
    else:
        out["over_after_exhaustion_s"] = 0.0
    return out


def cell(value, unit=""):
    return "-" if value is None else "%s%s" % (value, unit)


def table(results):
    lines = []
    header = "%-9s %-8s %-30s %-6s %-5s %-15s %-18s %-13s %-6s %-7s %-7s" % (
        "storm", "run", "victims (comm/pid/adj | cgroup)", "by", "prot", "sshd/cron/jrnl/al",
        "logins during n/f/max", "out->over", "lasted", "heartbt", "alert")
    lines.append(header)
    lines.append("-" * len(header))
    names = [n for n in (results.get("oomguard_instance"), results.get("control_instance")) if n in results["runs"]]
    if not names:
        return "no drill results"
    storms = [s["storm"] for s in results["runs"].get(names[0], {}).get("analysis", {}).get("storms", [])]
    for storm in storms:
        for name in names:
            run = results["runs"][name]
            found = [s for s in run.get("analysis", {}).get("storms", []) if s["storm"] == storm]
            label = "oomguard" if run.get("oomguard") else "control"
            if not found:
                lines.append("%-9s %-8s (not run)" % (storm, label))
                continue
            s = found[0]
            victims = ["%s/%s/%s" % (v["comm"], v["pid"], v["oom_score_adj"]) for v in s["victims"][:2]]
            victims += [k["cgroup"].rsplit("/", 1)[-1] for k in s.get("early_kills", [])[:2]]
            shown = ", ".join(victims) or "(none)"
            svc = "/".join({"kept": "kept", "changed": "NEW"}.get(s["services"].get(k, {}).get("state"), "-")
                           for k in ("sshd", "cron", "journald", "alertd"))
            logins = "%s/%s/%s" % (s.get("storm_logins"), s.get("storm_logins_failed"),
                                   cell(s.get("storm_login_max_s"), "s"))
            timing = "%s->%s" % (cell(s.get("exhausted_after_s"), "s"), cell(s.get("over_after_exhaustion_s"), "s"))
            lines.append("%-9s %-8s %-30s %-6s %-5s %-15s %-18s %-13s %-6s %-7s %-7s" % (
                storm, label, shown[:30], "+".join(s.get("killed_by", [])) or "NONE", len(s["protected_killed"]),
                svc.replace("kept", "ok"), logins, timing, cell(s["duration_s"], "s"),
                cell(s["heartbeat_delay_s"], "s"), cell(s["alert_latency_s"], "s")))
    lines.append("")
    lines.append("by: who killed the hog (kernel OOM killer, early killer); logins during: new SSH logins "
                 "tried every %.0f s during the storm, failed, slowest; out->over: seconds from the storm's "
                 "start until MemAvailable < %.0f %% of RAM, and from then until the hog was gone "
                 "(-> 0: gone before memory ran out)" % (LOGIN_EVERY, EXHAUSTED_PERCENT))
    for name in names:
        run = results["runs"][name]
        a = run.get("analysis", {})
        idle = [x["idle_login_s"] for x in a.get("storms", []) if x.get("idle_login_s") is not None]
        lines.append("%s: idle login %s s (median of %d); where each storm's hog ran: %s" % (
            name, idle[0] if idle else "-", IDLE_LOGINS,
            "; ".join("%s %s" % (x["storm"], ",".join(x.get("hog_cgroups") or ["?"])) for x in a.get("storms", []))))
    wd = results.get("watchdog") or {}
    lines.append("")
    lines.append("watchdog stage (oomguard VM, RuntimeWatchdogSec=%s): reset=%s, sshd banner after %s s, "
                 "new login after %s s; control VM: not armed without oomguard, not run" % (
                     wd.get("runtime_watchdog"), wd.get("reset"), wd.get("ssh_banner_s"), wd.get("recovery_s")))
    for name in names:
        run = results["runs"][name]
        a = run.get("analysis", {})
        lines.append("%s: watchdog timer runs during the storms %s (max gap %s s); storms wall %s s%s" % (
            name, a.get("watchdog_timer_runs"), a.get("watchdog_timer_max_gap_s"), run.get("wall_s"),
            "; ERROR " + run["error"] if run.get("error") else ""))
        check = results.get("check", {}).get(name)
        if check:
            lines.append("%s: oomguard_check score %s, fail: %s, oom_kills: %s" % (
                name, check.get("summary", {}).get("score"),
                ", ".join(f["id"] for f in check.get("findings", []) if f["severity"] == "fail") or "none",
                next((f["message"] for f in check.get("findings", []) if f["id"] == "oom_kills"), "-")))
    return "\n".join(lines)


def cmd_report(args):
    storms = read_json(os.path.join(args.output, "storms.json")) or {}
    results = {"oomguard_instance": args.oomguard, "control_instance": args.control, "generated": time.time(),
               "runs": {}, "watchdog": read_json(os.path.join(args.output, "watchdog.json")), "check": {}}
    for name, run in storms.items():
        run = dict(run)
        run["analysis"] = analyse(run)
        results["runs"][name] = run
        check = read_json(os.path.join(args.output, "check-%s.json" % name))
        if check is not None:
            results["check"][name] = check
    text = table(results)
    # The raw logs stay in storms.json; results.json keeps what is compared run to run.
    slim = dict(results, runs={n: {k: v for k, v in r.items()
                                   if k not in ("oom_events", "alerts", "snapshots", "storms")}
                               for n, r in results["runs"].items()})
    write_json(os.path.join(args.output, "results.json"), slim)
    with open(os.path.join(args.output, "summary.txt"), "w") as handle:
        handle.write(text + "\n")
    print(text)
    return 0


# --- helpers ----------------------------------------------------------------------

def load_instances(path):
    """Molecule's instance config (a YAML list of flat mappings, as create.yml writes it)."""
    with open(path) as handle:
        text = handle.read()
    try:
        import yaml
        data = yaml.safe_load(text) or []
    except ImportError:  # pragma: no cover - the venv has PyYAML (Ansible needs it)
        raise
    return {item["instance"]: item for item in data}


def read_json(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def write_json(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("storms")
    s.add_argument("--instances", required=True)
    s.add_argument("--output", required=True)
    s.add_argument("--oomguard", required=True)
    s.add_argument("--control", required=True)
    w = sub.add_parser("watchdog")
    w.add_argument("--instances", required=True)
    w.add_argument("--output", required=True)
    w.add_argument("--instance", required=True)
    w.add_argument("--console", default="")
    w.add_argument("--timeout", type=float, default=300)
    r = sub.add_parser("report")
    r.add_argument("--output", required=True)
    r.add_argument("--oomguard", required=True)
    r.add_argument("--control", required=True)
    args = parser.parse_args(argv)
    return {"storms": cmd_storms, "watchdog": cmd_watchdog, "report": cmd_report}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
