import pytest

from ansible.module_utils import oomguard_systemd as systemd


@pytest.mark.parametrize("name,expected", [
    ("ssh", "ssh.service"),
    ("ssh.service", "ssh.service"),
    ("system.slice", "system.slice"),
    ("getty@tty1.service", "getty@tty1.service"),
    ("systemd-journald", "systemd-journald.service"),
    ("dev-disk-by\\x2dlabel.swap", "dev-disk-by\\x2dlabel.swap"),
    ("nginx.v2", "nginx.v2.service"),  # an unknown suffix is part of the name
])
def test_normalize_unit_name(name, expected):
    assert systemd.normalize_unit_name(name) == expected


@pytest.mark.parametrize("name", [
    "", "../ssh", "ssh/../../etc", "ssh;reboot", "ssh service", "$(id)", "a`b`", "ssh|cat", "ssh&", None, 5,
])
def test_normalize_unit_name_rejects(name):
    with pytest.raises(systemd.UnitNameError) as err:
        systemd.normalize_unit_name(name, argument="unit")
    assert "unit" in str(err.value)


def test_normalize_unit_name_restricts_suffix():
    with pytest.raises(systemd.UnitNameError) as err:
        systemd.normalize_unit_name("foo.timer", allowed_suffixes=("service", "slice"), argument="name")
    assert "service, slice" in str(err.value)


@pytest.mark.parametrize("name,ok", [
    ("50-oomguard-oom.conf", True), ("override.conf", True), ("x", False), ("../x.conf", False), ("a b.conf", False),
])
def test_validate_dropin_file_name(name, ok):
    if ok:
        assert systemd.validate_dropin_file_name(name) == name
    else:
        with pytest.raises(systemd.UnitNameError):
            systemd.validate_dropin_file_name(name)


def test_render_dropin_round_trips():
    text = systemd.render_dropin(
        [("Unit", [("StartLimitIntervalSec", "0")]), ("Service", [("OOMPolicy", "continue"), ("Restart", "always")])],
        comment="Managed by oomguard\nDo not edit")
    assert text == ("# Managed by oomguard\n# Do not edit\n\n[Unit]\nStartLimitIntervalSec=0\n\n"
                    "[Service]\nOOMPolicy=continue\nRestart=always\n")
    parsed = systemd.parse_unit_file(text)
    assert parsed == {"Unit": [("StartLimitIntervalSec", "0")],
                      "Service": [("OOMPolicy", "continue"), ("Restart", "always")]}


def test_dropin_value_last_assignment_wins():
    text = "[Service]\nEnvironment=A=1\n; comment\nOOMScoreAdjust=-500\n[Install]\nOOMScoreAdjust=1\n[Service]\nOOMScoreAdjust=-900\n"
    assert systemd.dropin_value(text, "Service", "OOMScoreAdjust") == "-900"
    assert systemd.dropin_value(text, "Service", "Missing") is None
    assert systemd.dropin_value(None, "Service", "OOMScoreAdjust") is None


def test_read_dropin(tmp_path):
    path = tmp_path / "ssh.service.d"
    path.mkdir()
    (path / "50-oomguard-oom.conf").write_text("[Service]\nEnvironment=SSHD_OOM_ADJUST=-1000\n")
    assert systemd.dropin_path("ssh.service", "50-oomguard-oom.conf", str(tmp_path)) == str(path / "50-oomguard-oom.conf")
    assert "SSHD_OOM_ADJUST" in systemd.read_dropin("ssh.service", "50-oomguard-oom.conf", str(tmp_path))
    assert systemd.read_dropin("cron.service", "50-oomguard-oom.conf", str(tmp_path)) is None


def test_parse_show_and_loaded():
    show = systemd.parse_show("Id=ssh.service\nMainPID=480\nLoadState=loaded\nEnvironment=A=1 B=2\n")
    assert show == {"Id": "ssh.service", "MainPID": "480", "LoadState": "loaded", "Environment": "A=1 B=2"}
    assert systemd.unit_loaded(show)
    assert not systemd.unit_loaded(systemd.parse_show("Id=nope.service\nLoadState=not-found\n"))


def test_systemd_booted(tmp_path):
    assert not systemd.systemd_booted(str(tmp_path / "run" / "systemd" / "system"))
    (tmp_path / "system").mkdir()
    assert systemd.systemd_booted(str(tmp_path / "system"))


# --- names are matched whole (issue 15): "$" also matches before a final newline ------

@pytest.mark.parametrize("name", ["cron.service\n", "cron\n", "cron.service\r", "cron.service\x00", "\ncron.service",
                                  "cr\u0131n.service"])
def test_unit_names_with_a_newline_or_nul_are_refused(name):
    with pytest.raises(systemd.UnitNameError):
        systemd.normalize_unit_name(name)


@pytest.mark.parametrize("name", ["50-x.conf\n", "50-x.conf\r\n", "50-x.conf\x00", "50-x.conf\n.conf"])
def test_dropin_names_with_a_newline_are_refused(name):
    with pytest.raises(systemd.UnitNameError):
        systemd.validate_dropin_file_name(name)
