"""oomguard_check in the podman containers (systemd PID 1, no CAP_SYS_RESOURCE, read-only memory cgroup).

The audit runs on each container before converge and after it (molecule/shared/audit_snapshot.yml,
wired into prepare and side_effect) and leaves its result in /var/lib/oomguard/audit-<phase>.json.
Here no negative oom_score_adj can take, so after converge the critical findings stay `fail` with
`enforced: false` and the container named as the reason: the audit must say so, not pretend.
"""

import json

import pytest

WIRING = ("missing: molecule/shared/audit_snapshot.yml must run in prepare (phase before) "
          "and as side_effect (phase after)")


def snapshot(host, phase):
    path = "/var/lib/oomguard/audit-%s.json" % phase
    assert host.file(path).exists, "%s %s" % (path, WIRING)
    return json.loads(host.file(path).content_string)


def findings(host, phase):
    return dict((f["id"], f) for f in snapshot(host, phase)["result"]["findings"])


@pytest.mark.parametrize("phase", ["before", "after"])
def test_audit_ran_and_is_complete(host, phase):
    data = snapshot(host, phase)
    result = data["result"]
    assert result["host"]["systemd"] is True
    assert result["host"]["container"]
    assert 0 <= result["summary"]["score"] <= 100
    assert len(result["report"]) == len(result["findings"]) == result["summary"]["total"]
    for fid in ("sshd.oom_score_adj", "cron.oom_score_adj", "inherited_protection", "memory.available",
                "oom_kills", "watchdog.timer", "kernel.panic_on_oom"):
        assert fid in findings(host, phase)


def test_before_converge_critical_findings_fail(host):
    data = snapshot(host, "before")
    found = findings(host, "before")
    assert data["result"]["summary"]["worst"] == "fail"
    for name in ("sshd", "cron"):
        item = found["%s.oom_score_adj" % name]
        assert item["severity"] == "fail", item
        assert item["evidence"]["enforced"] is False
        assert item["evidence"]["found_by"] == "systemd MainPID"


def test_before_converge_no_oomguard_units(host):
    found = findings(host, "before")
    assert found["units.oomguard-alertd"]["severity"] == "warn"
    assert "not installed" in found["units.oomguard-alertd"]["message"]


@pytest.mark.parametrize("name", ["sshd", "cron"])
def test_after_converge_refusal_is_reported_not_hidden(host, name):
    data = snapshot(host, "after")
    if "oom_protect" not in data["roles"]:
        pytest.skip("oom_protect is not in this scenario's oomguard_molecule_roles")
    item = findings(host, "after")["%s.oom_score_adj" % name]
    assert item["severity"] == "fail"
    assert item["evidence"]["enforced"] is False
    assert item["evidence"]["configured"] is not None and item["evidence"]["configured"] < 0
    assert "CAP_SYS_RESOURCE" in item["message"]


def test_after_converge_alert_agent_active(host):
    data = snapshot(host, "after")
    if "swap_alert" not in data["roles"]:
        pytest.skip("swap_alert is not in this scenario's oomguard_molecule_roles")
    assert findings(host, "after")["units.oomguard-alertd"]["severity"] == "ok"


def test_after_converge_watchdog_timer_active(host):
    data = snapshot(host, "after")
    if "service_watchdog" not in data["roles"]:
        pytest.skip("service_watchdog is not in this scenario's oomguard_molecule_roles")
    assert findings(host, "after")["watchdog.timer"]["severity"] in ("ok", "warn")
    assert "not installed" not in findings(host, "after")["watchdog.timer"]["message"]


def test_after_converge_memory_limits_compared(host):
    data = snapshot(host, "after")
    if "memory_limits" not in data["roles"]:
        pytest.skip("memory_limits is not in this scenario's oomguard_molecule_roles")
    limits = [f for fid, f in findings(host, "after").items() if fid.startswith("memory_limits.")]
    assert limits, "a memory_limits.<unit> finding for every 50-oomguard-memory.conf drop-in"
    for item in limits:
        assert item["evidence"]["configured"]


def test_no_session_inherits_protection(host):
    assert findings(host, "after")["inherited_protection"]["severity"] in ("ok", "warn")
