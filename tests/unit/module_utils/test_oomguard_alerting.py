"""Hysteresis state machine and metric rendering of oomguard_alerting."""

import pytest

from ansible.module_utils.oomguard_alerting import (
    DEFAULT_THRESHOLDS, active_alerts, apply_overrides, build_readings, describe_transition,
    evaluate, initial_states, render_metrics, validate_thresholds)
from ansible.module_utils.oomguard_memstat import memory_summary, parse_meminfo, parse_psi, parse_vmstat

SWAP = {"swap_used": {"warning": {"raise": 50, "clear": 40, "hold": 10, "clear_hold": 20},
                      "critical": {"raise": 80, "clear": 70, "hold": 5, "clear_hold": 20}}}
AVAIL = {"memory_available": {"warning": {"raise": 10, "clear": 15, "hold": 0, "clear_hold": 0}}}
PSI = {"psi_some": {"warning": {"raise": 20, "clear": 10, "hold": 4, "clear_hold": 10}}}


def run(thresholds, key, samples):
    """Feed (time, value) samples; return [(time, kind, level)] of every transition."""
    states = initial_states(thresholds)
    seen = []
    for now, value in samples:
        states, transitions = evaluate(states, {key: value}, now, thresholds)
        seen.extend((now, t["kind"], t["level"]) for t in transitions)
    return seen


@pytest.mark.parametrize("name,thresholds,key,samples,expected", [
    ("below raise: nothing", SWAP, "swap_used_percent",
     [(0, 10), (10, 45), (20, 49.9), (100, 30)], []),
    ("spike shorter than hold: nothing", SWAP, "swap_used_percent",
     [(0, 10), (1, 60), (5, 60), (9, 30), (12, 60), (21, 45)], []),
    ("held long enough: one alert, exactly at hold", SWAP, "swap_used_percent",
     [(0, 60), (5, 60), (10, 60), (11, 60), (50, 60)], [(10, "alert", "warning")]),
    ("flapping between raise and clear stays firing, no repeat", SWAP, "swap_used_percent",
     [(0, 60), (10, 60), (12, 45), (14, 55), (16, 41), (18, 60), (40, 42), (80, 55)],
     [(10, "alert", "warning")]),
    ("clear must hold clear_hold; a dip back restarts it", SWAP, "swap_used_percent",
     [(0, 60), (10, 60), (20, 30), (35, 30), (36, 45), (37, 30), (50, 30), (57, 30), (60, 30)],
     [(10, "alert", "warning"), (57, "recovery", "warning")]),
    ("critical and warning: alerts ordered warning first, recoveries critical first", SWAP, "swap_used_percent",
     [(0, 90), (5, 90), (10, 90), (20, 10), (40, 10)],
     [(5, "alert", "critical"), (10, "alert", "warning"), (40, "recovery", "critical"), (40, "recovery", "warning")]),
    ("raise exactly at threshold counts, clear exactly at threshold does not", SWAP, "swap_used_percent",
     [(0, 50), (10, 50), (20, 40), (100, 40), (101, 39.9), (121, 39.9)],
     [(10, "alert", "warning"), (121, "recovery", "warning")]),
    ("lower is worse: available memory, hold 0 fires at once", AVAIL, "mem_available_percent",
     [(0, 50), (1, 9), (2, 8), (3, 12), (4, 15), (5, 16), (6, 9)],
     [(1, "alert", "warning"), (5, "recovery", "warning"), (6, "alert", "warning")]),
    ("lower is worse: 14.9 between raise and clear keeps firing", AVAIL, "mem_available_percent",
     [(0, 10), (1, 14.9), (2, 11), (3, 14.9)], [(0, "alert", "warning")]),
    ("missing reading (no PSI) changes nothing, not even a pending hold", PSI, "psi_some_avg10",
     [(0, 30), (2, None), (3, None), (4, 30), (5, None), (20, 1), (29, None), (30, 1)],
     [(4, "alert", "warning"), (30, "recovery", "warning")]),
    ("seed 004: noisy swap around 50% produces one alert and one recovery", SWAP, "swap_used_percent",
     [(t, 52 if t % 4 else 48) for t in range(0, 12)] + [(t, 60) for t in range(12, 30)]
     + [(t, 45 if t % 2 else 39) for t in range(30, 60)] + [(t, 20) for t in range(60, 90)],
     [(19, "alert", "warning"), (80, "recovery", "warning")]),
])
def test_hysteresis_sequences(name, thresholds, key, samples, expected):
    assert run(thresholds, key, samples) == expected, name


def test_state_survives_json_and_fired_at_reported_on_recovery():
    import json
    states = initial_states(AVAIL)
    states, transitions = evaluate(states, {"mem_available_percent": 5}, 100, AVAIL)
    assert [t["kind"] for t in transitions] == ["alert"]
    assert active_alerts(states) == [("memory_available", "warning")]
    states = json.loads(json.dumps(states))
    states, transitions = evaluate(states, {"mem_available_percent": 50}, 130, AVAIL)
    assert transitions[0]["kind"] == "recovery" and transitions[0]["fired_at"] == 100
    assert active_alerts(states) == []


@pytest.mark.parametrize("thresholds,fragment", [
    ({"swap_used": {"warning": {"raise": 40, "clear": 50, "hold": 0, "clear_hold": 0}}}, "must be above clear"),
    ({"memory_available": {"warning": {"raise": 20, "clear": 10, "hold": 0, "clear_hold": 0}}}, "must be below clear"),
    ({"swap_used": {"warning": {"raise": 50, "clear": 40, "hold": -1, "clear_hold": 0}}}, ">= 0 seconds"),
    ({"swap_used": {"warning": {"raise": 150, "clear": 40, "hold": 1, "clear_hold": 0}}}, "percentages"),
    ({"swap_used": {"warning": {"raise": 50, "clear": 40}}}, "needs exactly the keys"),
    ({"swap_used": {"warning": {"raise": "50", "clear": 40, "hold": 1, "clear_hold": 1}}}, "must be numbers"),
    ({"swap_used": {"fatal": {"raise": 50, "clear": 40, "hold": 1, "clear_hold": 1}}}, "unknown level"),
    ({"disk": {}}, "unknown check"),
    ({"swap_used": {"warning": {"raise": 80, "clear": 40, "hold": 1, "clear_hold": 1},
                    "critical": {"raise": 60, "clear": 50, "hold": 1, "clear_hold": 1}}}, "at least as bad"),
])
def test_validate_thresholds_rejects(thresholds, fragment):
    errors = validate_thresholds(thresholds)
    assert errors and any(fragment in e for e in errors), errors


def test_defaults_are_valid():
    assert validate_thresholds(DEFAULT_THRESHOLDS) == []


MEMINFO = """MemTotal:        1004300 kB
MemFree:           61232 kB
MemAvailable:     150644 kB
Buffers:            1024 kB
Cached:           101600 kB
SwapTotal:       1048572 kB
SwapFree:         524286 kB
"""
VMSTAT = "nr_free_pages 15308\npswpin 1200\npswpout 3400\npgmajfault 77\noom_kill 2\n"
PSI_TEXT = "some avg10=23.51 avg60=8.10 avg300=1.92 total=4873012\nfull avg10=12.00 avg60=3.40 avg300=0.71 total=2112233\n"


def recorded_readings():
    return build_readings(memory_summary(parse_meminfo(MEMINFO)), parse_vmstat(VMSTAT), parse_psi(PSI_TEXT), 4096)


def test_build_readings_from_recorded_files():
    r = recorded_readings()
    assert r["mem_available_percent"] == 15.0
    assert r["swap_used_percent"] == 50.0
    assert r["psi_some_avg10"] == 23.51 and r["psi_full_avg10"] == 12.0
    assert r["oom_kill"] == 2 and r["swap_in_bytes"] == 1200 * 4096 and r["swap_out_bytes"] == 3400 * 4096
    assert r["psi_available"] is True
    no_psi = build_readings(memory_summary(parse_meminfo(MEMINFO)), {}, None)
    assert no_psi["psi_some_avg10"] is None and no_psi["psi_available"] is False and no_psi["oom_kill"] is None


def test_apply_overrides_test_hook():
    r = recorded_readings()
    assert apply_overrides(r, {"swap_used_percent": 95})["swap_used_percent"] == 95
    assert apply_overrides(r, None) is r
    with pytest.raises(ValueError, match="unknown readings swap_percent"):
        apply_overrides(r, {"swap_percent": 95})
    with pytest.raises(ValueError, match="JSON object"):
        apply_overrides(r, [1])


def parse_textfile(text):
    """A strict reading of the text format: HELP then TYPE before samples, no duplicates."""
    families = {}
    current = None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert name not in families, "duplicate family %s" % name
            families[name] = {"type": None, "samples": {}}
            current = name
        elif line.startswith("# TYPE "):
            _, _, name, mtype = line.split()
            assert name == current and mtype in ("gauge", "counter")
            families[name]["type"] = mtype
        else:
            series, value = line.rsplit(" ", 1)
            name = series.split("{")[0]
            assert name == current, line
            assert series not in families[name]["samples"]
            families[name]["samples"][series] = float(value)
    return families


def test_render_metrics_names_units_and_labels():
    states = initial_states(DEFAULT_THRESHOLDS)
    states["memory_available:critical"] = {"state": "firing", "since": 1, "fired_at": 1}
    text = render_metrics(recorded_readings(), states,
                          {"alerts_total": {"memory_available:critical": 3}, "last_snapshot_time": 1700000000.5,
                           "psi_trigger": True, "agent_rss_bytes": 12345678}, 1700000001.0)
    fams = parse_textfile(text)
    assert fams["oomguard_swap_used_ratio"]["samples"]["oomguard_swap_used_ratio"] == 0.5
    assert fams["oomguard_memory_available_bytes"]["samples"]["oomguard_memory_available_bytes"] == 150644 * 1024
    assert fams["oomguard_psi_memory_some_avg10_ratio"]["samples"]["oomguard_psi_memory_some_avg10_ratio"] == 0.2351
    assert fams["oomguard_psi_memory_some_seconds_total"]["type"] == "counter"
    assert fams["oomguard_oom_kills_total"]["samples"]["oomguard_oom_kills_total"] == 2
    assert fams["oomguard_oom_kills_total"]["type"] == "counter"
    active = fams["oomguard_alert_active"]["samples"]
    assert active['oomguard_alert_active{check="memory_available",level="critical"}'] == 1
    assert active['oomguard_alert_active{check="swap_used",level="warning"}'] == 0
    assert len(active) == 8
    assert fams["oomguard_alerts_total"]["samples"]['oomguard_alerts_total{check="memory_available",level="critical"}'] == 3
    assert fams["oomguard_last_snapshot_timestamp_seconds"]["samples"]["oomguard_last_snapshot_timestamp_seconds"] == 1700000000.5
    assert fams["oomguard_psi_trigger_active"]["samples"]["oomguard_psi_trigger_active"] == 1
    assert all(name.startswith("oomguard_") for name in fams)
    assert text.endswith("\n")


def test_render_metrics_leaves_out_unknown_values():
    readings = build_readings(memory_summary(parse_meminfo(MEMINFO)), {}, None)
    fams = parse_textfile(render_metrics(readings, {}, {}, 5.0))
    assert "oomguard_psi_memory_some_avg10_ratio" not in fams
    assert "oomguard_oom_kills_total" not in fams
    assert "oomguard_last_snapshot_timestamp_seconds" not in fams
    assert fams["oomguard_psi_available"]["samples"]["oomguard_psi_available"] == 0
    assert "NaN" not in render_metrics(readings, {}, {}, 5.0)


def test_render_metrics_early_kills_counter_per_engine():
    readings = build_readings(memory_summary(parse_meminfo(MEMINFO)), {}, None)
    text = render_metrics(readings, {}, {"early_kills_total": {"systemd-oomd": 2, "earlyoom": 0}}, 5.0)
    fams = parse_textfile(text)
    assert fams["oomguard_early_kills_total"]["type"] == "counter"
    assert fams["oomguard_early_kills_total"]["samples"] == {
        'oomguard_early_kills_total{engine="earlyoom"}': 0, 'oomguard_early_kills_total{engine="systemd-oomd"}': 2}
    assert "oomguard_early_kills_total" not in parse_textfile(render_metrics(readings, {}, {}, 5.0))


@pytest.mark.parametrize("kind,level,value,severity,fragment", [
    ("alert", "critical", 3.2, "critical", "CRITICAL memory_available: memory available is 3.2% (below raise threshold 5%)"),
    ("recovery", "warning", 20.0, "recovery", "RECOVERED warning memory_available"),
])
def test_describe_transition(kind, level, value, severity, fragment):
    event = describe_transition({"check": "memory_available", "level": level, "kind": kind, "value": value,
                                 "raise": 5, "clear": 8, "time": 10.0}, "web1")
    assert event["severity"] == severity and event["kind"] == "memory_available"
    assert fragment in event["message"]
    assert event["host"] == "web1" and event["source"] == "oomguard-alertd" and event["time"] == 10.0
    assert event["details"]["level"] == level
