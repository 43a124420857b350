#!/usr/bin/env python3
"""Host side of the oomguard memory-exhaustion drill (Molecule scenario `drill`).

Drives the two VMs of the scenario over plain SSH (a NEW connection each time: no
multiplexing, so every command is also a login test) and measures what happens:

  drill.py storms   --instances FILE --output DIR --oomguard NAME --control NAME
      The storms, on both VMs at once (one thread each), one storm after another:
        a         one process allocating until the OOM killer ends it (global OOM,
                  transient unit with RuntimeMaxSec, no MemoryMax)
        b         a fork storm: app-worker.service (expendable on the oomguard VM)
                  forks 8 children of 160 MiB each
        c-cron    a leak started by a cron job (one-shot /etc/cron.d entry)
        c-session a leak started from a new SSH session
      Before/after each storm: PIDs of sshd, cron, journald, dbus and the agents;
      after it: how long until a new SSH login works; at the end: the kernel log
      (victims via module_utils/oomguard_oomlog.parse_oom_events), cron's journal
      (heartbeat runs), the watchdog timer's runs, the alert agent's events and
      snapshots. Writes DIR/storms.json.
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

from oomguard_oomlog import parse_oom_events  # noqa: E402  (the one kernel-log reader)

LIB = "/usr/local/lib/oomguard-drill"
HOG = LIB + "/drill-hog"
STATE = "/run/oomguard-drill"
CRON_STORM = "/etc/cron.d/oomguard-drill-leak"
# The services the drill watches, by the name used in the results.
WATCHED = {"sshd": "ssh.service", "cron": "cron.service", "journald": "systemd-journald.service",
           "dbus": "dbus.service", "alertd": "oomguard-alertd.service"}
STORM_TIMEOUT = 150     # seconds a storm may last before the drill kills what is left
LOGIN_TIMEOUT = 30      # seconds the drill keeps trying a new login after a storm
HEARTBEAT_WAIT = 130    # seconds to wait for a cron heartbeat after the last storm


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


def storm_a(guest, ctx):
    rc, _, err = guest.run(
        "systemd-run --quiet --unit=oomguard-drill-a -p RuntimeMaxSec=120 %s run --tag a --max-seconds 110" % HOG)
    if rc != 0:
        raise RuntimeError("%s: storm a did not start: %s" % (guest.name, err))
    return wait_started(guest, "a", 30)


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


STORMS = [
    ("a", "one process allocating until OOM (global, transient unit)", "a", storm_a),
    ("b", "fork storm of 8 x 160 MiB from app-worker.service", "worker", storm_b),
    ("c-cron", "leak started by a cron job", "cron", storm_c_cron),
    ("c-session", "leak started from a new SSH session", "session", storm_c_session),
]


def run_storms(guest, oomguard, out):
    out.update(instance=guest.name, oomguard=oomguard, storms=[], error=None)
    start = time.time()
    try:
        # A clean start: no hog left over by an interrupted run (inside the test VM only).
        guest.run("pkill -KILL -x drill-hog; rm -rf %s %s; mkdir -p %s; "
                  "systemctl reset-failed oomguard-drill-a 2>/dev/null; true" % (STATE, CRON_STORM, STATE))
        install_cron_storm(guest)
        out["probe_start"] = guest.probe()
        for name, what, tag, start_storm in STORMS:
            log(guest.name, "storm %s: %s" % (name, what))
            ctx = {}
            before = guest.probe()
            t_start = time.time()
            started = start_storm(guest, ctx)
            status, timed_out = wait_ended(guest, tag)
            t_end = time.time()
            latency, attempts = guest.new_login()
            after = guest.probe()
            session_rc = None
            if "session" in ctx:
                try:
                    session_rc = ctx["session"].wait(timeout=15)
                except subprocess.TimeoutExpired:
                    ctx["session"].kill()
            if name == "a":
                guest.run("systemctl reset-failed oomguard-drill-a 2>/dev/null; true")
            record = {
                "storm": name, "what": what, "tag": tag,
                "start": t_start, "end": t_end, "duration_s": round(t_end - t_start, 1),
                "timed_out": timed_out, "hog_pids": status["pids"],
                "hog_oom_score_adj": (started or {}).get("oom_score_adj", {}),
                "login_s": latency, "login_attempts": attempts, "session_ssh_rc": session_rc,
                "before": before, "after": after,
            }
            out["storms"].append(record)
            log(guest.name, "storm %s over in %.1f s%s; new login after %s s" % (
                name, t_end - t_start, " (TIMED OUT)" if timed_out else "", latency))
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
        _, text, _ = guest.run("cat %s 2>/dev/null; true" % path, timeout=60)
        records = []
        for line in text.splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        out[key] = records


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
    for index, storm in enumerate(run.get("storms", [])):
        offset = storm["after"]["clock_offset"]
        start_g, end_g = storm["start"] + offset - 1, storm["end"] + offset
        nxt = run["storms"][index + 1]["start"] + offset if index + 1 < len(run["storms"]) else end_g + 30
        victims = [e for e in events if start_g <= e["epoch"] <= min(end_g + 5, nxt)]
        hog_pids = set(storm["hog_pids"])
        protected = {name: storm["before"]["units"].get(unit, {}).get("pid", 0) for name, unit in WATCHED.items()}
        protected_pids = {pid: name for name, pid in protected.items() if pid} | {1: "systemd"}
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
        first_kill = min((v["epoch"] for v in victims), default=None)
        hb_after = [t for t in heartbeats if t > end_g]
        window_alerts = [a for a in alerts if start_g <= float(a.get("time", 0)) <= min(end_g + 30, nxt + 5)]
        oom_alerts = [a for a in window_alerts if a.get("kind") == "oom_kill"]
        alert_hog = [a for a in oom_alerts
                     if hog_pids & {v.get("pid") for v in (a.get("details", {}).get("victims") or [])}]
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
            "hog_killed": any(v["pid"] in hog_pids for v in victims),
            "protected_killed": [{"pid": v["pid"], "comm": v["comm"], "service": protected_pids[v["pid"]]}
                                 for v in victims if v["pid"] in protected_pids],
            "services": services,
            "login_s": storm["login_s"],
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


def cell(value, unit=""):
    return "-" if value is None else "%s%s" % (value, unit)


def table(results):
    lines = []
    header = "%-9s %-11s %-34s %-5s %-9s %-28s %-7s %-9s %-7s" % (
        "storm", "run", "victims (comm/pid/adj)", "hog", "protkill", "sshd/cron/journald/alertd", "login", "heartbt", "alert")
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
                lines.append("%-9s %-11s (not run)" % (storm, label))
                continue
            s = found[0]
            victims = ", ".join("%s/%s/%s" % (v["comm"], v["pid"], v["oom_score_adj"]) for v in s["victims"][:3])
            if len(s["victims"]) > 3:
                victims += " +%d" % (len(s["victims"]) - 3)
            svc = "/".join({"kept": "kept", "changed": "NEW"}.get(s["services"].get(k, {}).get("state"), "-")
                           for k in ("sshd", "cron", "journald", "alertd"))
            lines.append("%-9s %-11s %-34s %-5s %-9s %-28s %-7s %-9s %-7s" % (
                storm, label, victims or "(none)", "yes" if s["hog_killed"] else "NO", len(s["protected_killed"]),
                svc, cell(s["login_s"], "s"), cell(s["heartbeat_delay_s"], "s"), cell(s["alert_latency_s"], "s")))
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
