# -*- coding: utf-8 -*-
# Copyright: oomguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The service watchdog's formats and decisions, shared by its checker and the audit.

The checker (roles/service_watchdog/files/oomguard-watchdog) probes and acts; this
module owns everything another part reads back: the configuration it validates
(watchdog.json, also through `--check-config`), the state file it writes
(watchdog-state.json, read by oomguard_check), the cron heartbeat file and the
hardware watchdog's sysfs entries. The decisions (`decide`, the escalation gate,
deferral under memory pressure) are pure functions: the clock is an argument.

Standard library only, plus the shared readers beside it: imported as
ansible.module_utils.oomguard_watchdog by the modules and as plain oomguard_watchdog
from /usr/lib/oomguard/python by the checker.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import json
import os
import re

try:
    from ansible.module_utils.oomguard_files import move_aside, path_error, read_text, write_file_atomic
    from ansible.module_utils.oomguard_memstat import MEM_AVAILABLE_PERCENT, PSI_FULL_AVG10, PSI_SOME_AVG10
    from ansible.module_utils.oomguard_systemd import UnitNameError, normalize_unit_name
except ImportError:  # installed beside an agent, outside Ansible
    from oomguard_files import move_aside, path_error, read_text, write_file_atomic
    from oomguard_memstat import MEM_AVAILABLE_PERCENT, PSI_FULL_AVG10, PSI_SOME_AVG10
    from oomguard_systemd import UnitNameError, normalize_unit_name

DEFAULT_CONFIG = "/etc/oomguard/watchdog.json"
DEFAULT_STATE = "/var/lib/oomguard/watchdog-state.json"
DEFAULT_SINKS = "/etc/oomguard/sinks.json"
DEFAULT_PAUSE = "/run/oomguard/watchdog.pause"
HEARTBEAT_FILE = "/var/lib/oomguard/cron-heartbeat"  # written by oomguard-heartbeat from cron
WATCHDOG_SYSFS = "/sys/class/watchdog"
STATE_VERSION = 1

# sd-daemon(3) priority prefixes of the log actions decide() returns.
ERR, WARNING, NOTICE, INFO, DEBUG = 3, 4, 5, 6, 7

# A check's status in the state file; every one but "ok" means the check is failing.
STATUSES = ("ok", "failing", "restarted", "escalated")
FAILING_STATUSES = STATUSES[1:]
PROBE_TYPES = ("tcp", "heartbeat", "command", "active")
ESCALATIONS = ("log", "reboot")

CHECK_DEFAULTS = {
    "failures_before_restart": 1,
    "max_restarts": 3,
    "grace": 30,
    "require_active": True,
}
ESCALATION_DEFAULTS = {
    "action": "log",
    "min_interval": 3600,
    "grace": 900,
    "reboot_command": ["systemctl", "reboot"],
}

# Under memory pressure a live sshd can take longer than the probe's timeout to send
# its banner, and a cron job can start late: restarting it then kills the very
# listener oom_protect keeps alive (seen in the drill). Such failures are deferred,
# but never longer than this, so a really hung service is still restarted.
PRESSURE_PATIENCE = 180
# The levels of "starved" are in oomguard_memstat's table, beside the audit's and the agent's.
PRESSURE_PSI_SOME = PSI_SOME_AVG10["watchdog_defer"]
PRESSURE_PSI_FULL = PSI_FULL_AVG10["watchdog_defer"]
PRESSURE_AVAILABLE_PERCENT = MEM_AVAILABLE_PERCENT["fail"]
DEFERRED = "deferred under memory pressure"


# --------------------------------------------------------------------------
# Configuration (watchdog.json)
# --------------------------------------------------------------------------

class ConfigError(ValueError):
    pass


def _int(value, where, minimum=0):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError("%s: %r must be an integer >= %d" % (where, value, minimum))
    return value


def _argv(value, where):
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ConfigError("%s: %r must be a non-empty list of strings (an argument vector)" % (where, value))
    if not re.match(r"\A[!-~]+\Z", value[0]) or any("\x00" in v or "\n" in v for v in value):
        raise ConfigError("%s: %r: the program (first item) must hold no spaces or control characters and no "
                          "item a NUL or newline; allowed: an argument vector such as [\"systemctl\", \"reboot\"]"
                          % (where, value))
    return list(value)


def normalize_probe(probe, where):
    if not isinstance(probe, dict):
        raise ConfigError("%s: must be a mapping with a type" % where)
    kind = probe.get("type")
    if kind not in PROBE_TYPES:
        raise ConfigError("%s.type: %r; allowed: %s" % (where, kind, ", ".join(PROBE_TYPES)))
    out = {"type": kind}
    if kind in ("tcp", "command"):
        out["timeout"] = _int(probe.get("timeout", 5), where + ".timeout", 1)
    if kind == "tcp":
        host = probe.get("host", "127.0.0.1")
        if not isinstance(host, str) or not host:
            raise ConfigError("%s.host: %r must be a host name or address" % (where, host))
        out["host"] = host
        out["port"] = _int(probe.get("port"), where + ".port", 1)
        if out["port"] > 65535:
            raise ConfigError("%s.port: %r must be 1-65535" % (where, out["port"]))
        banner = probe.get("banner")
        if banner is not None and (not isinstance(banner, str) or not banner):
            raise ConfigError("%s.banner: %r must be a non-empty string (expected prefix)" % (where, banner))
        out["banner"] = banner
    elif kind == "heartbeat":
        path = probe.get("path")
        error = path_error(where + ".path", path, system_ok=True)
        if error:
            raise ConfigError(error)
        out["path"] = path
        out["max_age"] = _int(probe.get("max_age", 150), where + ".max_age", 1)
    elif kind == "command":
        out["argv"] = _argv(probe.get("argv"), where + ".argv")
    return out


def normalize_config(raw):
    """Validate a configuration dict and fill in defaults; raise ConfigError."""
    if not isinstance(raw, dict):
        raise ConfigError("configuration: must be a JSON object")
    cfg = {
        "state_file": raw.get("state_file", DEFAULT_STATE),
        "sinks_file": raw.get("sinks_file", DEFAULT_SINKS),
        "pause_file": raw.get("pause_file", DEFAULT_PAUSE),
        "interval": _int(raw.get("interval", 15), "interval", 1),
    }
    for key in ("state_file", "sinks_file", "pause_file"):
        error = path_error(key, cfg[key], system_ok=key != "state_file")  # the state file is written
        if error:
            raise ConfigError(error)
    esc = dict(ESCALATION_DEFAULTS)
    escalation = raw.get("escalation") or {}
    if not isinstance(escalation, dict):
        raise ConfigError("escalation: %r must be a mapping of %s" % (escalation, ", ".join(sorted(ESCALATION_DEFAULTS))))
    esc.update(escalation)
    if esc["action"] not in ESCALATIONS:
        raise ConfigError("escalation.action: %r; allowed: %s" % (esc["action"], ", ".join(ESCALATIONS)))
    esc["min_interval"] = _int(esc["min_interval"], "escalation.min_interval", 0)
    esc["grace"] = _int(esc["grace"], "escalation.grace", 0)
    esc["reboot_command"] = _argv(esc["reboot_command"], "escalation.reboot_command")
    cfg["escalation"] = esc
    checks = raw.get("checks", [])
    if not isinstance(checks, list):
        raise ConfigError("checks: must be a list")
    cfg["checks"] = []
    names = set()
    for index, check in enumerate(checks):
        where = "checks[%d]" % index
        if not isinstance(check, dict):
            raise ConfigError("%s: must be a mapping" % where)
        name = check.get("name")
        if not isinstance(name, str) or not re.match(r"\A[A-Za-z0-9_.@:-]{1,100}\Z", name):
            raise ConfigError("%s.name: %r; allowed: 1-100 letters, digits, _ . @ : -" % (where, name))
        if name in names:
            raise ConfigError("%s.name: %r is used twice" % (where, name))
        names.add(name)
        try:
            unit = normalize_unit_name(check.get("unit"), argument=where + ".unit")
        except UnitNameError as exc:
            raise ConfigError(str(exc))
        item = dict(CHECK_DEFAULTS)
        item.update({k: v for k, v in check.items() if k in CHECK_DEFAULTS})
        item["name"] = name
        item["unit"] = unit
        item["failures_before_restart"] = _int(item["failures_before_restart"], where + ".failures_before_restart", 1)
        item["max_restarts"] = _int(item["max_restarts"], where + ".max_restarts", 0)
        item["grace"] = _int(item["grace"], where + ".grace", 0)
        if not isinstance(item["require_active"], bool):
            raise ConfigError("%s.require_active: %r must be true or false" % (where, item["require_active"]))
        item["probe"] = normalize_probe(check.get("probe") or {"type": "active"}, where + ".probe")
        cfg["checks"].append(item)
    return cfg


def load_config(path):
    """The normalized configuration in the JSON file at path; ConfigError says what is wrong."""
    try:
        text = read_text(path)
    except (IOError, OSError) as exc:  # a directory, a fifo, ...
        raise ConfigError("%s: cannot read the configuration: %s" % (path, exc.strerror or exc))
    if text is None:
        raise ConfigError("%s: cannot read the configuration" % path)
    return normalize_config(_parse_json(text, path))


def _parse_json(text, path):
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError("%s: not valid JSON: %s" % (path, exc))


# --------------------------------------------------------------------------
# State (watchdog-state.json): written by the checker, read by the audit
# --------------------------------------------------------------------------

def new_check_state(unit):
    return {
        "status": "ok",
        "unit": unit,
        "consecutive_failures": 0,
        "restart_attempts": 0,
        "restarts_total": 0,
        "last_restart": None,
        "grace_until": None,
        "escalated_at": None,
        "last_ok": None,
        "last_failure": None,
        "last_change": None,
        "last_result": None,
        "deferred_since": None,
    }


def new_state():
    return {
        "version": STATE_VERSION,
        "last_run": None,
        "checks": {},
        "escalation": {"last_time": None, "last_action": None, "last_check": None, "count": 0},
    }


def parse_state(text):
    """The saved state as written (a dict of this STATE_VERSION), or None for anything else."""
    if not text:
        return None
    try:
        saved = json.loads(text)
    except ValueError:
        return None
    if not isinstance(saved, dict) or saved.get("version") != STATE_VERSION:
        return None
    return saved


def read_state(path=DEFAULT_STATE):
    """parse_state() of the file at path (None when it is missing or unreadable)."""
    return parse_state(read_text(path))


_STATE_TIMES = ("last_restart", "grace_until", "escalated_at", "last_ok", "last_failure", "last_change",
                "deferred_since")
_STATE_COUNTS = ("consecutive_failures", "restart_attempts", "restarts_total")


def _number(value, integer=False):
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        return False
    return value == value and abs(value) < 1e12


def state_errors(saved):
    """Why a saved state (parsed JSON of this STATE_VERSION) is damaged: wrong types where
    the decisions do arithmetic. [] when it may be continued from."""
    errors = []
    checks = saved.get("checks", {})
    if not isinstance(checks, dict):
        return ["checks: %r is not an object" % (checks,)]
    for name, check in checks.items():
        if not isinstance(check, dict):
            errors.append("checks.%s: %r is not an object" % (name, check))
            continue
        errors += ["checks.%s.%s: %r is not a count" % (name, k, check[k])
                   for k in _STATE_COUNTS if k in check and not (_number(check[k], True) and check[k] >= 0)]
        errors += ["checks.%s.%s: %r is not a time" % (name, k, check[k])
                   for k in _STATE_TIMES if check.get(k) is not None and not _number(check[k])]
        if "status" in check and not isinstance(check["status"], str):
            errors.append("checks.%s.status: %r is not a status" % (name, check["status"]))
    escalation = saved.get("escalation", {})
    if not isinstance(escalation, dict):
        errors.append("escalation: %r is not an object" % (escalation,))
    else:
        if escalation.get("last_time") is not None and not _number(escalation["last_time"]):
            errors.append("escalation.last_time: %r is not a time" % (escalation["last_time"],))
        if "count" in escalation and not _number(escalation["count"], True):
            errors.append("escalation.count: %r is not a count" % (escalation["count"],))
    if saved.get("last_run") is not None and not _number(saved["last_run"]):
        errors.append("last_run: %r is not a time" % (saved["last_run"],))
    return errors


def load_state(path, on_damaged=None):
    """The state the checker continues from: the saved one, or a fresh one when the
    file is missing or unreadable. Only the schema's parts are carried over (what the
    checker records about the host is read again each run).

    A damaged file (not JSON, not an object, wrong types) is moved aside (path.damaged,
    kept for the post-mortem) and a fresh state returned, so it never stops every run;
    on_damaged(message) is told, once, when given."""
    state = new_state()
    try:
        text = read_text(path)
    except (IOError, OSError, ValueError) as exc:  # a directory, not UTF-8
        text, problem = None, [str(exc)]
    else:
        problem = []
    saved = parse_state(text)
    if text and saved is None and not problem:
        try:
            data = json.loads(text)
            if isinstance(data, dict) and "version" in data and data["version"] != STATE_VERSION:
                return state  # another version's state: started afresh, as always
            problem = ["not a JSON object"]
        except ValueError as exc:
            problem = ["not valid JSON: %s" % exc]
    if saved is not None:
        problem = state_errors(saved)
    if problem:
        moved = move_aside(path)
        if on_damaged is not None:
            on_damaged("state file %s is damaged (%s): %s; starting with a fresh state" % (
                path, "; ".join(problem), "moved to %s" % moved if moved else "it will be replaced"))
        return state
    if saved is None:
        return state
    if isinstance(saved.get("checks"), dict):
        state["checks"] = {k: v for k, v in saved["checks"].items() if isinstance(v, dict)}
    if isinstance(saved.get("escalation"), dict):
        state["escalation"].update(saved["escalation"])
    state["last_run"] = saved.get("last_run")
    return state


def save_state(path, state):
    write_file_atomic(path, json.dumps(state, indent=2, sort_keys=True) + "\n", mode=0o644)


def failing_checks(state):
    """Names of the checks whose saved status is a failing one, in the state's order."""
    checks = (state or {}).get("checks")
    if not isinstance(checks, dict):
        return []
    return [name for name, check in checks.items()
            if isinstance(check, dict) and check.get("status") in FAILING_STATUSES]


# --------------------------------------------------------------------------
# Decisions: pure functions, the clock is an argument
# --------------------------------------------------------------------------

def escalation_gate(escalation_state, esc_cfg, now):
    """(allowed, reason): whether an escalation may run now.

    Never within a previous escalation's grace period, never more than once per
    min_interval (both measured from the previous escalation's time).
    """
    last = escalation_state.get("last_time")
    if last is None:
        return True, None
    elapsed = now - last
    if elapsed < esc_cfg["grace"]:
        return False, "previous escalation (%s, %ds ago) is in its %ds grace period" % (
            escalation_state.get("last_action"), elapsed, esc_cfg["grace"])
    if elapsed < esc_cfg["min_interval"]:
        return False, "at most one escalation every %ds; the last was %ds ago" % (esc_cfg["min_interval"], elapsed)
    return True, None


def decide(check, cstate, ok, detail, now, escalation_state, esc_cfg):
    """Advance one check's state machine with one probe result.

    check: the normalized check config; cstate: its saved state (not modified);
    ok/detail: the probe's verdict and its human-readable evidence; now: epoch seconds.
    Returns (new_state, actions) where actions is a list of tuples:
      ("log", priority, message)
      ("notify", severity, kind, message)
      ("restart", unit)
      ("escalate", action, message)        # the caller records it in escalation_state
    """
    st = dict(cstate)
    st["unit"] = check["unit"]
    st["last_result"] = detail
    name, unit = check["name"], check["unit"]
    previous = st.get("status", "ok")
    actions = []

    if ok:
        st["last_ok"] = now
        if previous != "ok":
            msg = "%s: recovered (%s) after %s" % (name, detail, previous)
            actions.append(("log", NOTICE, msg))
            if previous in ("restarted", "escalated"):
                actions.append(("notify", "recovery", "service_recovered", msg))
            st["last_change"] = now
        st.update(status="ok", consecutive_failures=0, restart_attempts=0, grace_until=None)
        return st, actions

    st["last_failure"] = now
    grace_until = st.get("grace_until")
    if previous == "restarted" and grace_until is not None and now < grace_until:
        actions.append(("log", INFO, "%s: still failing (%s), %ds left of the grace period after restarting %s"
                        % (name, detail, grace_until - now, unit)))
        return st, actions

    st["consecutive_failures"] = st.get("consecutive_failures", 0) + 1
    failures = st["consecutive_failures"]
    if failures < check["failures_before_restart"]:
        if previous != "failing":
            st["last_change"] = now
        st["status"] = "failing"
        actions.append(("log", WARNING, "%s: failing (%s), %d/%d failures before a restart"
                        % (name, detail, failures, check["failures_before_restart"])))
        return st, actions

    attempts = st.get("restart_attempts", 0)
    if attempts >= check["max_restarts"]:
        allowed, reason = escalation_gate(escalation_state, esc_cfg, now)
        if allowed:
            msg = "%s: %s still failing (%s) after %d restart(s): escalating (%s)" % (
                name, unit, detail, attempts, esc_cfg["action"])
            actions.append(("log", ERR, msg))
            actions.append(("notify", "critical", "watchdog_escalation", msg))
            actions.append(("escalate", esc_cfg["action"], msg))
            st.update(status="escalated", escalated_at=now, restart_attempts=0, last_change=now)
            return st, actions
        if previous == "escalated":
            # Already escalated for this check: keep repairing, quietly about the gate.
            actions.append(("log", WARNING, "%s: still failing (%s) after escalation; restarting %s again"
                            % (name, detail, unit)))
        else:
            actions.append(("log", ERR, "%s: %s still failing (%s) after %d restart(s); escalation suppressed: %s"
                            % (name, unit, detail, attempts, reason)))
        actions.append(("restart", unit))
        st.update(last_restart=now, grace_until=now + check["grace"],
                  restarts_total=st.get("restarts_total", 0) + 1)
        if previous != "escalated":
            st.update(status="restarted", last_change=now)
        return st, actions

    msg = "%s: failing (%s): restarting %s (attempt %d/%d)" % (
        name, detail, unit, attempts + 1, check["max_restarts"])
    actions.append(("log", WARNING, msg))
    actions.append(("notify", "warning", "service_restart", msg))
    actions.append(("restart", unit))
    status = "escalated" if previous == "escalated" else "restarted"
    st.update(status=status, restart_attempts=attempts + 1, last_restart=now,
              grace_until=now + check["grace"], restarts_total=st.get("restarts_total", 0) + 1)
    if status != previous:
        st["last_change"] = now
    return st, actions


# --------------------------------------------------------------------------
# Cron heartbeat (epoch seconds written by oomguard-heartbeat each minute)
# --------------------------------------------------------------------------

def heartbeat_verdict(heartbeat, now, max_age, active_since=None):
    """(ok, detail) for a heartbeat written at epoch `heartbeat` (None: missing).

    active_since is when the writer's daemon last started (epoch seconds, None when
    unknown): a daemon started less than max_age ago has not had the time to write
    yet, so an old or missing heartbeat is not held against it.
    """
    if heartbeat is not None:
        age = now - heartbeat
        if age <= max_age:
            return True, "heartbeat %ds old" % age
        detail = "heartbeat %ds old, threshold %ds" % (age, max_age)
    else:
        detail = "no heartbeat"
    if active_since is not None and now - active_since <= max_age:
        return True, "%s, but the unit started %ds ago" % (detail, now - active_since)
    return False, detail


def parse_heartbeat(text, mtime=None):
    """Epoch seconds from the heartbeat file's text, else its mtime, else None."""
    if text is not None:
        try:
            return int(text.strip().split()[0])
        except (ValueError, IndexError):
            pass
    return int(mtime) if mtime is not None else None


def read_heartbeat(path=HEARTBEAT_FILE):
    """The heartbeat's epoch seconds (parse_heartbeat), None when the file is missing."""
    text = read_text(path)
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        mtime = None
    return parse_heartbeat(text, mtime)


# --------------------------------------------------------------------------
# Hardware watchdog (sysfs)
# --------------------------------------------------------------------------

def read_hardware_watchdog(sys_class=WATCHDOG_SYSFS, dev="/dev"):
    """(devices, sysfs): the /dev/watchdog* names, and per sys_class/watchdogN its
    state, timeout and identity as stripped text (None when unreadable or empty)."""
    devices = sorted(os.path.basename(p) for p in glob.glob(os.path.join(dev, "watchdog*")))
    sysfs = {}
    for path in sorted(glob.glob(os.path.join(sys_class, "watchdog*"))):
        info = {}
        for name in ("state", "timeout", "identity"):
            text = read_text(os.path.join(path, name))
            info[name] = text.strip() if text else None
        sysfs[os.path.basename(path)] = info
    return devices, sysfs


def hardware_watchdog_summary(devices, sysfs):
    """What the checker records in its state: whether /dev/watchdog exists, and the
    first watchdog's identity, timeout (an int) and state."""
    info = {"present": "watchdog" in devices}
    for key, value in sorted((sysfs.get("watchdog0") or {}).items()):
        if value is not None:
            info[key] = int(value) if value.isdigit() else value
    return info


# --------------------------------------------------------------------------
# Memory pressure: a slow probe on a starved host is not a dead service
# --------------------------------------------------------------------------

def memory_pressure(psi, summary):
    """Why the host is too starved for a slow probe to prove anything, or None."""
    if psi:
        some = (psi.get("some") or {}).get("avg10", 0.0)
        full = (psi.get("full") or {}).get("avg10", 0.0)
        if some >= PRESSURE_PSI_SOME or full >= PRESSURE_PSI_FULL:
            return "PSI memory some avg10 %.1f%%, full avg10 %.1f%%" % (some, full)
    available = (summary or {}).get("mem_available_percent")
    if available is not None and available < PRESSURE_AVAILABLE_PERCENT:
        return "%.1f%% of memory available" % available
    return None


def defer_for_pressure(ok, detail, pressure, cstate, now):
    """(ok, detail, deferred_since) after weighing a failed probe against memory pressure.

    A refused connection is a dead listener whatever the pressure: never deferred.
    A failure is deferred (inconclusive) while the host is starved, for at most
    PRESSURE_PATIENCE seconds from the first deferral; then it counts again.
    """
    if ok is not False or not pressure or "refused" in detail.lower() or " is " in detail:
        return ok, detail, None
    since = cstate.get("deferred_since") or now
    if now - since >= PRESSURE_PATIENCE:
        return False, "%s (still failing after %ds of memory pressure)" % (detail, now - since), since
    return None, "%s: %s (%s)" % (detail, DEFERRED, pressure), since
