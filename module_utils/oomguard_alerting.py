# -*- coding: utf-8 -*-
# Copyright: oomguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Alerting logic of oomguard-alertd as pure functions: readings, hysteresis, metrics.

Standard library only. Nothing here reads a file or the clock: the agent passes
readings and `now` in, so every transition is testable from a table of samples.

Hysteresis, per (check, level), four states:

  ok --(value beyond raise)--> pending --(still beyond raise for `hold` s)--> firing
  firing --(value past clear)--> clearing --(still past clear for `clear_hold` s)--> ok

`firing` emits one alert event, the return to `ok` one recovery event. A value that
falls back before its hold time expires returns to the previous state silently, so
a reading oscillating around a threshold produces nothing, and one oscillating
between raise and clear stays firing. For checks where lower is worse (available
memory) "beyond" means below.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

try:
    from ansible.module_utils.oomguard_memstat import (
        MEM_AVAILABLE_PERCENT, PSI_FULL_AVG10, PSI_SOME_AVG10, SWAP_USED_PERCENT)
except ImportError:  # installed beside an agent, outside Ansible
    from oomguard_memstat import MEM_AVAILABLE_PERCENT, PSI_FULL_AVG10, PSI_SOME_AVG10, SWAP_USED_PERCENT

LEVELS = ("warning", "critical")
STATE_OK = "ok"
STATE_PENDING = "pending"
STATE_FIRING = "firing"
STATE_CLEARING = "clearing"

# check name -> (reading key, higher_is_worse, unit, description)
CHECKS = {
    "swap_used": ("swap_used_percent", True, "%", "swap used"),
    "memory_available": ("mem_available_percent", False, "%", "memory available"),
    "psi_some": ("psi_some_avg10", True, "%", "memory pressure (PSI some avg10)"),
    "psi_full": ("psi_full_avg10", True, "%", "memory pressure (PSI full avg10)"),
}
CHECK_ORDER = ("swap_used", "memory_available", "psi_some", "psi_full")

# The raise levels come from oomguard_memstat's table (why they differ from the audit's
# and the watchdog's there); clear and the hold times are the agent's own hysteresis.
DEFAULT_THRESHOLDS = {
    "swap_used": {
        "warning": {"raise": SWAP_USED_PERCENT["warn"], "clear": 40.0, "hold": 30.0, "clear_hold": 120.0},
        "critical": {"raise": SWAP_USED_PERCENT["fail"], "clear": 70.0, "hold": 10.0, "clear_hold": 120.0},
    },
    "memory_available": {
        "warning": {"raise": MEM_AVAILABLE_PERCENT["warn"], "clear": 15.0, "hold": 10.0, "clear_hold": 60.0},
        "critical": {"raise": MEM_AVAILABLE_PERCENT["fail"], "clear": 8.0, "hold": 2.0, "clear_hold": 60.0},
    },
    "psi_some": {
        "warning": {"raise": PSI_SOME_AVG10["alert_warning"], "clear": 10.0, "hold": 10.0, "clear_hold": 60.0},
        "critical": {"raise": PSI_SOME_AVG10["alert_critical"], "clear": 30.0, "hold": 5.0, "clear_hold": 60.0},
    },
    "psi_full": {
        "warning": {"raise": PSI_FULL_AVG10["alert_warning"], "clear": 5.0, "hold": 10.0, "clear_hold": 60.0},
        "critical": {"raise": PSI_FULL_AVG10["alert_critical"], "clear": 15.0, "hold": 5.0, "clear_hold": 60.0},
    },
}
THRESHOLD_KEYS = ("raise", "clear", "hold", "clear_hold")


def state_key(check, level):
    return "%s:%s" % (check, level)


def build_readings(summary, vmstat, psi, page_size=4096):
    """One flat dict of the figures the checks and metrics use.

    summary: oomguard_memstat.memory_summary(); vmstat: parse_vmstat(); psi:
    parse_psi() or None when the kernel has no PSI (readings then carry None).
    """
    psi = psi or {}
    some = psi.get("some") or {}
    full = psi.get("full") or {}
    readings = dict(summary)
    readings.update({
        "psi_available": bool(psi),
        "psi_some_avg10": some.get("avg10"),
        "psi_full_avg10": full.get("avg10"),
        "psi_some_total_us": some.get("total"),
        "psi_full_total_us": full.get("total"),
        "oom_kill": vmstat.get("oom_kill"),
        "swap_in_bytes": vmstat["pswpin"] * page_size if "pswpin" in vmstat else None,
        "swap_out_bytes": vmstat["pswpout"] * page_size if "pswpout" in vmstat else None,
    })
    return readings


def apply_overrides(readings, overrides):
    """Test hook: replace readings by the keys of a JSON object (unknown keys refused)."""
    if not overrides:
        return readings
    if not isinstance(overrides, dict):
        raise ValueError("test input must be a JSON object of readings, got %s" % type(overrides).__name__)
    unknown = sorted(set(overrides) - set(readings))
    if unknown:
        raise ValueError("test input has unknown readings %s; allowed: %s" % (", ".join(unknown), ", ".join(sorted(readings))))
    merged = dict(readings)
    merged.update(overrides)
    return merged


def validate_thresholds(thresholds):
    """Error messages (empty when valid) for a {check: {level: {raise, clear, hold, clear_hold}}} dict.

    Checks may be omitted (disabled) and so may levels.
    """
    errors = []
    if not isinstance(thresholds, dict):
        return ["thresholds: must be a mapping of check name to levels"]
    for check, levels in thresholds.items():
        if check not in CHECKS:
            errors.append("thresholds: unknown check %r; allowed: %s" % (check, ", ".join(CHECK_ORDER)))
            continue
        if not isinstance(levels, dict):
            errors.append("thresholds.%s: must be a mapping of level to thresholds" % check)
            continue
        higher_is_worse = CHECKS[check][1]
        for level, spec in levels.items():
            where = "thresholds.%s.%s" % (check, level)
            if level not in LEVELS:
                errors.append("%s: unknown level; allowed: %s" % (where, ", ".join(LEVELS)))
                continue
            if not isinstance(spec, dict) or sorted(spec) != sorted(THRESHOLD_KEYS):
                errors.append("%s: needs exactly the keys %s" % (where, ", ".join(THRESHOLD_KEYS)))
                continue
            bad = [k for k in THRESHOLD_KEYS if isinstance(spec[k], bool) or not isinstance(spec[k], (int, float))]
            if bad:
                errors.append("%s: %s must be numbers" % (where, ", ".join(bad)))
                continue
            if not 0 <= spec["raise"] <= 100 or not 0 <= spec["clear"] <= 100:
                errors.append("%s: raise and clear are percentages (0-100)" % where)
            if spec["hold"] < 0 or spec["clear_hold"] < 0:
                errors.append("%s: hold and clear_hold must be >= 0 seconds" % where)
            if higher_is_worse and not spec["raise"] > spec["clear"]:
                errors.append("%s: raise (%s) must be above clear (%s): higher is worse" % (where, spec["raise"], spec["clear"]))
            if not higher_is_worse and not spec["raise"] < spec["clear"]:
                errors.append("%s: raise (%s) must be below clear (%s): lower is worse" % (where, spec["raise"], spec["clear"]))
        if all(isinstance(levels.get(lv), dict) and "raise" in levels[lv] for lv in LEVELS):
            warn, crit = levels["warning"]["raise"], levels["critical"]["raise"]
            if (higher_is_worse and crit < warn) or (not higher_is_worse and crit > warn):
                errors.append("thresholds.%s: critical raise (%s) must be at least as bad as warning raise (%s)" % (check, crit, warn))
    return errors


def initial_states(thresholds):
    return dict((state_key(check, level), {"state": STATE_OK, "since": None})
                for check in CHECK_ORDER if check in thresholds
                for level in LEVELS if level in thresholds[check])


def _time(value):
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
            and abs(value) < 1e12)


def restore_states(saved, fresh):
    """The alert states to continue from after a restart: fresh (initial_states) with the
    firing/clearing ones of saved (the parsed state file) carried over, as an alert sent
    before the restart is still owed its recovery. Returns (states, error): error says why
    saved is damaged (wrong types: the caller moves the file aside and starts fresh)."""
    if not isinstance(saved, dict) or not isinstance(saved.get("states", {}), dict):
        return fresh, "not an object with a \"states\" object"
    states = dict(fresh)
    for key, entry in saved.get("states", {}).items():
        if key not in fresh:
            continue  # a check since disabled
        if not isinstance(entry, dict) or entry.get("state") not in (STATE_OK, STATE_PENDING, STATE_FIRING,
                                                                      STATE_CLEARING):
            return fresh, "%s: %r is not a state" % (key, entry)
        for field in ("since", "fired_at"):
            if entry.get(field) is not None and not _time(entry[field]):
                return fresh, "%s.%s: %r is not a time" % (key, field, entry[field])
        if entry["state"] in (STATE_FIRING, STATE_CLEARING):
            if entry.get("since") is None:
                return fresh, "%s: %s without a since time" % (key, entry["state"])
            states[key] = dict((k, entry[k]) for k in ("state", "since", "fired_at") if k in entry)
    return states, None


def _beyond(value, limit, higher_is_worse):
    return value >= limit if higher_is_worse else value <= limit


def _past_clear(value, limit, higher_is_worse):
    return value < limit if higher_is_worse else value > limit


def evaluate(states, readings, now, thresholds):
    """Advance every (check, level) machine by one sample.

    Returns (new_states, transitions) where transitions is a list of dicts
    {check, level, kind: 'alert'|'recovery', value, raise, clear, since}, in check order
    then warning before critical for alerts, critical before warning for recoveries.
    A reading of None (no swap, no PSI) changes nothing.
    """
    new_states = {}
    alerts = []
    recoveries = []
    for check in CHECK_ORDER:
        if check not in thresholds:
            continue
        reading_key, higher_is_worse = CHECKS[check][0], CHECKS[check][1]
        value = readings.get(reading_key)
        for level in LEVELS:
            spec = thresholds[check].get(level)
            if spec is None:
                continue
            key = state_key(check, level)
            current = states.get(key) or {"state": STATE_OK, "since": None}
            state, since = current["state"], current["since"]
            if value is None:
                new_states[key] = dict(current)
                continue
            beyond = _beyond(value, spec["raise"], higher_is_worse)
            cleared = _past_clear(value, spec["clear"], higher_is_worse)
            event = None
            if state == STATE_OK:
                if beyond:
                    state, since = STATE_PENDING, now
            elif state == STATE_PENDING:
                if not beyond:
                    state, since = STATE_OK, None
            elif state == STATE_FIRING:
                if cleared:
                    state, since = STATE_CLEARING, now
            elif state == STATE_CLEARING:
                if not cleared:
                    state, since = STATE_FIRING, current.get("fired_at", since)
            # Hold times are checked after the move so that hold 0 acts at once.
            fired_at = current.get("fired_at")
            if state == STATE_PENDING and now - since >= spec["hold"]:
                state, fired_at, event = STATE_FIRING, now, "alert"
                since = now
            elif state == STATE_CLEARING and now - since >= spec["clear_hold"]:
                event = "recovery"
                state, since, fired_at = STATE_OK, None, None
            new_state = {"state": state, "since": since}
            if fired_at is not None and state in (STATE_FIRING, STATE_CLEARING):
                new_state["fired_at"] = fired_at
            new_states[key] = new_state
            if event:
                transition = {"check": check, "level": level, "kind": event, "value": value,
                              "raise": spec["raise"], "clear": spec["clear"], "time": now}
                if event == "recovery":
                    transition["fired_at"] = current.get("fired_at")
                    recoveries.append(transition)
                else:
                    alerts.append(transition)
    recoveries.sort(key=lambda t: (CHECK_ORDER.index(t["check"]), -LEVELS.index(t["level"])))
    return new_states, alerts + recoveries


def active_alerts(states):
    """[(check, level)] currently firing (including clearing: not yet recovered)."""
    result = []
    for key in sorted(states):
        if states[key]["state"] in (STATE_FIRING, STATE_CLEARING):
            check, _, level = key.partition(":")
            result.append((check, level))
    return result


def describe_transition(transition, host):
    """The notify() event for a transition (oomguard_notify's event contract)."""
    check = transition["check"]
    unit, what = CHECKS[check][2], CHECKS[check][3]
    value = transition["value"]
    if transition["kind"] == "alert":
        severity = transition["level"]
        comparison = "above" if CHECKS[check][1] else "below"
        message = "%s %s: %s is %.1f%s (%s raise threshold %s%s)" % (
            transition["level"].upper(), check, what, value, unit, comparison, transition["raise"], unit)
    else:
        severity = "recovery"
        message = "RECOVERED %s %s: %s is %.1f%s (past clear threshold %s%s)" % (
            transition["level"], check, what, value, unit, transition["clear"], unit)
    return {
        "source": "oomguard-alertd",
        "severity": severity,
        "kind": check,
        "message": message,
        "host": host,
        "time": transition["time"],
        "details": dict((k, transition[k]) for k in transition if k not in ("kind",)),
    }


# --- Prometheus text format (node_exporter textfile collector) -------------------

def _fmt(value):
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def _escape_label(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _ratio(percent):
    return None if percent is None else round(percent / 100.0, 6)


def render_metrics(readings, states, counters, now):
    """The textfile for node_exporter: HELP/TYPE lines, base units, oomguard_ prefix.

    counters: {'alerts_total': {(check, level): n}, 'last_snapshot_time': epoch or None,
    'psi_trigger': bool, 'agent_rss_bytes': int or None, 'oom_kills_seen': int,
    'early_kills_total': {engine: n}}.
    Metrics whose value is unknown (None) are left out, so no NaN reaches Prometheus.
    """
    families = [
        ("oomguard_memory_total_bytes", "gauge", "Physical memory (MemTotal).",
         [({}, readings.get("mem_total_bytes"))]),
        ("oomguard_memory_available_bytes", "gauge", "Memory available for new work (MemAvailable).",
         [({}, readings.get("mem_available_bytes"))]),
        ("oomguard_memory_available_ratio", "gauge", "MemAvailable / MemTotal (0-1).",
         [({}, _ratio(readings.get("mem_available_percent")))]),
        ("oomguard_swap_total_bytes", "gauge", "Swap configured (SwapTotal).",
         [({}, readings.get("swap_total_bytes"))]),
        ("oomguard_swap_used_bytes", "gauge", "Swap in use (SwapTotal - SwapFree).",
         [({}, readings.get("swap_used_bytes"))]),
        ("oomguard_swap_used_ratio", "gauge", "Swap used / swap total (0-1; 0 without swap).",
         [({}, _ratio(readings.get("swap_used_percent")))]),
        ("oomguard_swap_in_bytes_total", "counter", "Bytes swapped in since boot (pswpin).",
         [({}, readings.get("swap_in_bytes"))]),
        ("oomguard_swap_out_bytes_total", "counter", "Bytes swapped out since boot (pswpout).",
         [({}, readings.get("swap_out_bytes"))]),
        ("oomguard_psi_available", "gauge", "1 when the kernel reports memory PSI.",
         [({}, bool(readings.get("psi_available")))]),
        ("oomguard_psi_trigger_active", "gauge", "1 when the agent waits on a PSI trigger, 0 when it polls.",
         [({}, bool(counters.get("psi_trigger")))]),
        ("oomguard_psi_memory_some_avg10_ratio", "gauge", "Share of the last 10 s some task stalled on memory (0-1).",
         [({}, _ratio(readings.get("psi_some_avg10")))]),
        ("oomguard_psi_memory_full_avg10_ratio", "gauge", "Share of the last 10 s all tasks stalled on memory (0-1).",
         [({}, _ratio(readings.get("psi_full_avg10")))]),
        ("oomguard_psi_memory_some_seconds_total", "counter", "Total time some task stalled on memory.",
         [({}, None if readings.get("psi_some_total_us") is None else readings["psi_some_total_us"] / 1e6)]),
        ("oomguard_psi_memory_full_seconds_total", "counter", "Total time all tasks stalled on memory.",
         [({}, None if readings.get("psi_full_total_us") is None else readings["psi_full_total_us"] / 1e6)]),
        ("oomguard_oom_kills_total", "counter", "OOM kills since boot (vmstat oom_kill).",
         [({}, readings.get("oom_kill"))]),
    ]
    active = []
    totals = []
    alerts_total = counters.get("alerts_total") or {}
    for key in sorted(states, key=lambda k: (CHECK_ORDER.index(k.split(":")[0]), LEVELS.index(k.split(":")[1]))):
        check, _, level = key.partition(":")
        labels = {"check": check, "level": level}
        active.append((labels, states[key]["state"] in (STATE_FIRING, STATE_CLEARING)))
        totals.append((labels, int(alerts_total.get(key, 0))))
    families.append(("oomguard_alert_active", "gauge", "1 while the agent's alert for check and level is firing.", active))
    families.append(("oomguard_alerts_total", "counter", "Alerts raised by the agent since it started.", totals))
    early = counters.get("early_kills_total") or {}
    families.append(("oomguard_early_kills_total", "counter",
                     "Kills by the early killer (earlyoom, systemd-oomd) the agent saw since it started.",
                     [({"engine": engine}, int(early[engine])) for engine in sorted(early)]))
    families.append(("oomguard_last_snapshot_timestamp_seconds", "gauge", "When the last process snapshot was written.",
                     [({}, counters.get("last_snapshot_time"))]))
    families.append(("oomguard_agent_resident_memory_bytes", "gauge", "The agent's own resident memory.",
                     [({}, counters.get("agent_rss_bytes"))]))
    families.append(("oomguard_last_update_timestamp_seconds", "gauge", "When the agent last wrote this file.",
                     [({}, now)]))
    lines = []
    for name, mtype, help_text, samples in families:
        rendered = []
        for labels, value in samples:
            text = _fmt(value)
            if text is None:
                continue
            if labels:
                label_text = ",".join('%s="%s"' % (k, _escape_label(labels[k])) for k in sorted(labels))
                rendered.append("%s{%s} %s" % (name, label_text, text))
            else:
                rendered.append("%s %s" % (name, text))
        if not rendered:
            continue
        lines.append("# HELP %s %s" % (name, help_text))
        lines.append("# TYPE %s %s" % (name, mtype))
        lines.extend(rendered)
    return "\n".join(lines) + "\n"
