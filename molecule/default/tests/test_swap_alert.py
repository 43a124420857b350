"""swap_alert in containers: the service runs, the test hook drives one alert and one
recovery, snapshots and metrics are written and the metrics parse as Prometheus text.

The scenario sets swap_alert_test_input_path (TEST ONLY) and short hold times in its
group_vars; the container's /proc/pressure is read-only, so the agent polls.
"""

import json
import time

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

TEST_INPUT = "/run/oomguard-alertd-test.json"
EVENTS = "/var/log/oomguard/alerts.jsonl"
SNAPSHOTS = "/var/log/oomguard/snapshots.jsonl"
METRICS = "/var/lib/prometheus/node-exporter/oomguard.prom"
RULES = "/etc/oomguard/prometheus/oomguard-alerts.rules.yml"


def journal(host):
    return host.run("journalctl -u oomguard-alertd -n 40 --no-pager").stdout


def events(host):
    text = host.run("cat %s 2>/dev/null", EVENTS).stdout
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def wait_for(host, predicate, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.5)
    return predicate()


def test_service_active_and_enabled(host):
    service = host.service("oomguard-alertd")
    assert service.is_running, journal(host)
    assert service.is_enabled


def test_unit_self_protection(host):
    show = host.run("systemctl show -p OOMScoreAdjust -p MemoryMax -p Nice -p LimitMEMLOCK oomguard-alertd").stdout
    assert "OOMScoreAdjust=-900" in show
    assert "MemoryMax=33554432" in show
    assert "Nice=-5" in show


def test_unit_and_rules_carry_ansible_managed(host):
    assert "Ansible managed" in host.file("/etc/systemd/system/oomguard-alertd.service").content_string
    assert "Ansible managed" in host.file(RULES).content_string


def set_input(host, readings):
    cmd = host.run("printf %s %s > " + TEST_INPUT, "%s", json.dumps(readings))
    assert cmd.rc == 0, cmd.stderr


def test_agent_reports_how_it_waits(host):
    """Either a PSI trigger (podman here leaves /proc/pressure writable) or polling with
    the reason; the metric says the same as the journal."""
    log = journal(host)
    metrics = host.file(METRICS).content_string
    if "PSI trigger registered" in log:
        assert "oomguard_psi_trigger_active 1" in metrics
    else:
        assert "polling every" in log and ("PSI absent" in log or "PSI trigger unavailable" in log), log
        assert "oomguard_psi_trigger_active 0" in metrics


def test_memory_lock_outcome_logged(host):
    log = journal(host)
    assert "memory locked" in log or "memory not locked" in log, log


def test_prometheus_rules_have_for_and_keep_firing_for(host):
    rules = yaml.safe_load(host.file(RULES).content_string)["groups"][0]["rules"]
    names = {rule["alert"]: rule for rule in rules}
    assert {"OomguardAgentAlert", "OomguardOomKill", "OomguardMemoryAvailableLow"} <= set(names)
    assert names["OomguardAgentAlert"]["for"] and names["OomguardAgentAlert"]["keep_firing_for"]


def test_secret_and_config_permissions(host):
    config = host.file("/etc/oomguard/alertd.json")
    assert config.user == "root" and config.mode == 0o644
    assert json.loads(config.content_string)["test_input_path"] == TEST_INPUT


def test_test_hook_drives_one_alert_and_one_recovery(host):
    before = len(events(host))
    set_input(host, {"swap_used_percent": 95})
    fired = wait_for(host, lambda: [e for e in events(host)[before:] if e["severity"] == "warning"])
    assert fired, journal(host)
    assert fired[0]["kind"] == "swap_used" and fired[0]["details"]["value"] == 95
    snapshot = json.loads(host.run("tail -n 1 %s", SNAPSHOTS).stdout)
    assert snapshot["reason"].startswith("alert swap_used:warning")
    assert snapshot["top_rss"] and {"pid", "cmdline", "unit", "rss_bytes", "swap_bytes", "oom_score_adj",
                                    "oom_score"} <= set(snapshot["top_rss"][0])
    metrics = host.file(METRICS).content_string
    assert 'oomguard_alert_active{check="swap_used",level="warning"} 1' in metrics

    set_input(host, {"swap_used_percent": 0})
    recovered = wait_for(host, lambda: [e for e in events(host)[before:] if e["severity"] == "recovery"])
    assert recovered, journal(host)
    time.sleep(3)  # longer than clear_hold: nothing more may come
    new = events(host)[before:]
    host.run("rm -f %s", TEST_INPUT)
    assert [(e["severity"], e["kind"]) for e in new] == [("warning", "swap_used"), ("recovery", "swap_used")], new


def test_metrics_file_parses_as_prometheus_text(host):
    metrics = host.file(METRICS)
    assert metrics.exists and metrics.user == "root" and metrics.mode == 0o644
    families = {f.name: f for f in text_string_to_metric_families(metrics.content_string)}
    # the parser strips _total from counter family names
    for name in ("oomguard_swap_used_ratio", "oomguard_memory_available_bytes",
                 "oomguard_psi_memory_some_avg10_ratio", "oomguard_alert_active",
                 "oomguard_oom_kills", "oomguard_last_update_timestamp_seconds"):
        assert name in families, sorted(families)
    assert families["oomguard_oom_kills"].type == "counter"
    assert families["oomguard_alert_active"].type == "gauge"
    labels = {tuple(sorted(s.labels.items())) for s in families["oomguard_alert_active"].samples}
    assert (("check", "swap_used"), ("level", "warning")) in labels
    assert families["oomguard_last_snapshot_timestamp_seconds"].samples[0].value > 0
    assert families["oomguard_agent_resident_memory_bytes"].samples[0].value < 32 * 1024 * 1024


@pytest.mark.parametrize("path", ["/usr/lib/oomguard/python/oomguard_notify.py",
                                  "/usr/lib/oomguard/python/oomguard_snapshot.py",
                                  "/usr/lib/oomguard/python/oomguard_alerting.py"])
def test_shared_readers_installed(host, path):
    assert host.file(path).exists
