"""The fleet rollout (playbooks/site.yml) on three containers in the example inventory's groups.

Converge applied the example group policies through the umbrella role, in batches. Then
side_effect.yml re-ran site.yml with a new user.slice policy while fleet-web1 (the second batch,
after fleet-db1: Molecule's inventory lists hosts by name) was made to fail the post-check gate: the
run must fail, stop after that batch, leave fleet-web2 untouched and fleet-web1 still answering ssh.
"""

import json
import os
import re

import pytest

DROPINS = "/etc/systemd/system"
NEGATIVE = os.path.join(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent"), "fleet-negative")
# The side-effect run's policy for user.slice (molecule/fleet/side_effect.yml).
NEW_USER_SLICE = ["MemoryHigh=2G", "MemoryMax=3G"]


def hostname(host):
    return host.backend.get_hostname()


def in_group(host, group):
    return hostname(host).startswith("fleet-%s" % group)


def show(host, unit, prop):
    cmd = host.run("systemctl show --property=%s -- %s", prop, unit)
    assert cmd.rc == 0, cmd.stderr
    return cmd.stdout.strip().split("=", 1)[1]


def dropin_settings(host, unit, name):
    dropin = host.file("%s/%s.d/%s" % (DROPINS, unit, name))
    assert dropin.exists, "%s has no %s drop-in" % (unit, name)
    assert dropin.user == "root" and dropin.group == "root" and not dropin.mode & 0o002
    return [line for line in dropin.content_string.splitlines() if line and not line[0] in "#["]


def live_adj(host, unit):
    pid = int(show(host, unit, "MainPID"))
    assert pid > 0, "%s is not running" % unit
    return int(host.file("/proc/%d/oom_score_adj" % pid).content_string)


def negative_run():
    with open(os.path.join(NEGATIVE, "rc")) as handle:
        rc = int(handle.read())
    with open(os.path.join(NEGATIVE, "output.txt")) as handle:
        output = handle.read()
    recap = dict(re.findall(r"^(fleet-\S+)\s+:\s+(ok=.*)$", output, re.M))
    return rc, output, recap


# --- converge: the example inventory's policies, per group -------------------------------


@pytest.mark.parametrize("unit,score", [("php8.2-fpm.service", 500), ("app-worker.service", 800)])
def test_web_workers_expendable_live(host, unit, score):
    if not in_group(host, "web"):
        pytest.skip("web group policy")
    assert "OOMScoreAdjust=%d" % score in dropin_settings(host, unit, "50-oomguard-oom.conf")
    # Raising needs no privilege, so it takes even in a container.
    assert live_adj(host, unit) == score


def test_web_workers_capped(host):
    if not in_group(host, "web"):
        pytest.skip("web group policy")
    assert dropin_settings(host, "app-worker.service", "50-oomguard-memory.conf") == [
        "MemoryAccounting=yes", "MemoryHigh=1536M", "MemoryMax=2G"]
    php = dropin_settings(host, "php8.2-fpm.service", "50-oomguard-memory.conf")
    assert "MemorySwapMax=0" in php and any(s.startswith("MemoryMax=") for s in php)


def test_db_protected_and_reserved(host):
    if not in_group(host, "db"):
        pytest.skip("db group policy")
    assert "OOMScoreAdjust=-500" in dropin_settings(host, "postgresql@15-main.service", "50-oomguard-oom.conf")
    assert "OOMPolicy=continue" in dropin_settings(host, "postgresql@15-main.service", "50-oomguard-hardening.conf")
    assert "MemoryLow=4G" in dropin_settings(host, "postgresql@15-main.service", "50-oomguard-memory.conf")
    # system.slice: the side effect's new policy (memory_limits_slices by extra-vars, without
    # the db's system.slice low: 2G) reached this host, the first batch, after converge; the
    # login path's reservation (memory_limits_login_path: 32+16+16+64 MiB) stays on it.
    assert "MemoryMin=128M" in dropin_settings(host, "system.slice", "50-oomguard-memory.conf")
    # The db policy list replaces the default one: no web worker policy here.
    assert not host.file("%s/app-worker.service.d" % DROPINS).exists


@pytest.mark.parametrize("unit", ["ssh.service", "cron.service", "oomguard-alertd.service",
                                  "oomguard-watchdog.timer"])
def test_every_host_runs_the_common_parts(host, unit):
    assert host.service(unit).is_running


def test_ssh_listener_protection_persisted(host):
    assert dropin_settings(host, "ssh.service", "50-oomguard-oom.conf") == ["Environment=SSHD_OOM_ADJUST=-1000"]


# --- side effect: the gate stops the rollout at the failing host --------------------------


def test_negative_run_failed_at_the_gate():
    rc, output, recap = negative_run()
    assert rc != 0, output[-3000:]
    assert "post-check: sshd.oom_score_adj" in output or "post-check: cron.oom_score_adj" in output, output[-3000:]


def test_negative_run_stopped_before_the_last_batch():
    rc, output, recap = negative_run()
    # One play header per batch: fleet-db1 alone, then fleet-web1; fleet-web2's batch never started.
    assert output.count("PLAY [Apply oomguard in safe batches]") == 2, output[-3000:]
    assert set(recap) == {"fleet-db1", "fleet-web1"}, recap
    assert "failed=0" in recap["fleet-db1"] and "unreachable=0" in recap["fleet-db1"]
    assert "failed=1" in recap["fleet-web1"]


def test_negative_run_changed_only_the_hosts_it_reached(host):
    settings = dropin_settings(host, "user.slice", "50-oomguard-memory.conf")
    if hostname(host) == "fleet-web2":
        # Still the web group's policy from converge: the rollout never reached it.
        assert not set(NEW_USER_SLICE) & set(settings), settings
        assert any(s.startswith("MemoryMax=") for s in settings), settings
    else:
        assert set(NEW_USER_SLICE) <= set(settings), settings


def test_failed_host_still_answers_ssh(host):
    assert host.service("ssh.service").is_running
    banner = host.run(
        "python3 -c 'import socket; s = socket.create_connection((\"127.0.0.1\", 22), 10); "
        "print(s.recv(64).decode())'")
    assert banner.rc == 0 and banner.stdout.startswith("SSH-2.0-"), banner.stdout + banner.stderr


def test_failed_host_status_still_reports_refusal(host):
    if hostname(host) != "fleet-web1":
        pytest.skip("the host made to fail the gate")
    status = json.loads(host.file("/var/lib/oomguard/oom_protect.json").content_string)
    ssh = [s for s in status["services"] if s["unit"] in ("ssh.service", "ssh")]
    assert ssh and ssh[0]["enforced"] is False, status
