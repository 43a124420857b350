"""oom_protect in unprivileged containers: drop-ins, hardening, honest refusal.

Nobody here may LOWER oom_score_adj (no CAP_SYS_RESOURCE), so the role must persist the
policy in drop-ins, report enforced: false with the reason for the protected services,
and still raise the expendable service (raising always works).
"""

import json

import pytest

STATUS = "/var/lib/oomguard/oom_protect.json"
DROPIN_DIR = "/etc/systemd/system"
# Set in this scenario's group_vars: an always-running unit of the image.
EXPENDABLE_UNIT = "systemd-logind.service"
EXPENDABLE_SCORE = 300


def status(host):
    return json.loads(host.file(STATUS).content_string)


def service(host, unit):
    entries = [s for s in status(host)["services"] if s["unit"] == unit]
    assert len(entries) == 1, status(host)
    return entries[0]


def show(host, unit, *props):
    argv = ["systemctl", "show"] + ["--property=%s" % p for p in props] + ["--", unit]
    cmd = host.run(" ".join(["%s"] * len(argv)), *argv)
    assert cmd.rc == 0, cmd.stderr
    return dict(line.split("=", 1) for line in cmd.stdout.splitlines() if "=" in line)


def main_pid(host, unit):
    return int(show(host, unit, "MainPID")["MainPID"])


def proc_adj(host, pid):
    return int(host.file("/proc/%d/oom_score_adj" % pid).content_string)


def test_ssh_dropin_uses_sshd_oom_adjust_not_oomscoreadjust(host):
    dropin = host.file(DROPIN_DIR + "/ssh.service.d/50-oomguard-oom.conf")
    assert dropin.user == "root" and dropin.group == "root" and dropin.mode == 0o644
    settings = [line for line in dropin.content_string.splitlines() if line and not line.startswith("#")]
    assert settings == ["[Service]", "Environment=SSHD_OOM_ADJUST=-1000"]
    assert "SSHD_OOM_ADJUST=-1000" in show(host, "ssh", "Environment")["Environment"]
    # Neither Debian's unit nor anything else makes systemd apply a unit-wide value.
    assert show(host, "ssh", "OOMScoreAdjust")["OOMScoreAdjust"] == "0"


@pytest.mark.parametrize("unit,value", [("cron", -900), ("systemd-journald", -900), ("dbus", -900)])
def test_critical_dropin_oomscoreadjust(host, unit, value):
    dropin = host.file("%s/%s.service.d/50-oomguard-oom.conf" % (DROPIN_DIR, unit))
    assert "\nOOMScoreAdjust=%d\n" % value in dropin.content_string
    assert show(host, unit, "OOMScoreAdjust")["OOMScoreAdjust"] == str(value)


@pytest.mark.parametrize("unit", ["ssh", "cron"])
def test_hardening_loaded(host, unit):
    dropin = host.file("%s/%s.service.d/50-oomguard-hardening.conf" % (DROPIN_DIR, unit))
    assert dropin.content_string.startswith("#\n# Ansible managed\n#\n")
    assert dropin.mode == 0o644
    props = show(host, unit, "Restart", "RestartUSec", "StartLimitIntervalUSec", "OOMPolicy", "NeedDaemonReload")
    assert props["Restart"] == "always"
    assert props["RestartUSec"] == "1s"
    assert props["StartLimitIntervalUSec"] == "0"
    assert props["OOMPolicy"] == "continue"
    assert props["NeedDaemonReload"] == "no"


@pytest.mark.parametrize("unit", ["systemd-journald", "dbus"])
def test_not_hardened_unless_asked(host, unit):
    assert not host.file("%s/%s.service.d/50-oomguard-hardening.conf" % (DROPIN_DIR, unit)).exists


@pytest.mark.parametrize("unit", ["ssh.service", "cron.service"])
def test_refusal_reported_not_hidden(host, unit):
    entry = service(host, unit)
    assert entry["found"] is True
    assert entry["enforced"] is False
    assert "CAP_SYS_RESOURCE" in entry["reason"]
    # clamp: the lowest value the kernel accepts here is 0; nothing claims -1000.
    assert entry["values"] == [0]
    assert proc_adj(host, main_pid(host, unit)) == 0


def test_optional_units_reported_as_systemd_sees_them(host):
    """An optional unit that is missing is reported (found false, nothing applied), not failed."""
    for unit in ("systemd-journald.service", "dbus.service", "oomguard-alertd.service"):
        entry = service(host, unit)
        loaded = show(host, unit, "LoadState")["LoadState"] == "loaded"
        assert entry["found"] is loaded, (unit, entry)
        if not loaded:
            assert entry["values"] == []


def test_expendable_raised_live_even_in_a_container(host):
    entry = service(host, EXPENDABLE_UNIT)
    assert entry["kind"] == "expendable" and entry["enforced"] is True and entry["reason"] is None
    assert proc_adj(host, main_pid(host, EXPENDABLE_UNIT)) == EXPENDABLE_SCORE
    assert show(host, EXPENDABLE_UNIT, "OOMScoreAdjust")["OOMScoreAdjust"] == str(EXPENDABLE_SCORE)


def test_cron_pam_hook(host):
    hook = host.file("/usr/lib/oomguard/oom-score-reset")
    assert hook.user == "root" and hook.mode == 0o755
    pam = host.file("/etc/pam.d/cron").content_string
    line = "session optional pam_exec.so quiet /usr/lib/oomguard/oom-score-reset 0"
    assert pam.count(line) == 1
    assert "# BEGIN oomguard oom_protect" in pam and "# END oomguard oom_protect" in pam


@pytest.mark.parametrize("unit", ["ssh", "cron", "systemd-journald", "dbus", "systemd-logind"])
def test_services_still_running(host, unit):
    assert host.service(unit).is_running, host.run("journalctl -u %s -n 30 --no-pager", unit).stdout


def test_status_file_is_root_owned_json(host):
    file = host.file(STATUS)
    assert file.user == "root" and file.mode == 0o644
    assert status(host)["role"] == "oom_protect"
