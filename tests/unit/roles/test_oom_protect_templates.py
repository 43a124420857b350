"""oom_protect's hardening drop-in and per-family names, rendered with Ansible's own templar.

RHEL-family naming can only be checked here: no RPM distribution can be built on our
test machines.
"""

import os

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROLE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles", "oom_protect")


def load(path):
    with open(os.path.join(ROLE, path)) as handle:
        return yaml.safe_load(handle)


def trusted(value):
    """Role files are trusted templates, as Ansible treats them when it loads the role."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, list):
        return [trusted(item) for item in value]
    if isinstance(value, dict):
        return dict((key, trusted(item)) for key, item in value.items())
    return value


def render(template, **variables):
    base = trusted(load("defaults/main.yml"))
    base.update(trusted(load("vars/main.yml")))
    base["ansible_managed"] = "Ansible managed"
    base.update(variables)
    with open(os.path.join(ROLE, "templates", template)) as handle:
        text = handle.read()
    return Templar(loader=DataLoader(), variables=base).template(trust_as_template(text))


def settings(text):
    return [line for line in text.splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize("version,oompolicy", [(252, True), (247, True), (243, True), (239, False), (0, True)])
def test_hardening_dropin(version, oompolicy):
    facts = {"systemd": {"version": version}} if version else {}
    text = render("hardening.conf.j2", ansible_facts=facts)
    assert text.startswith("#\n# Ansible managed\n#\n")
    expected = ["[Unit]", "StartLimitIntervalSec=0", "[Service]"]
    if oompolicy:
        expected.append("OOMPolicy=continue")
    expected += ["Restart=always", "RestartSec=1s"]
    assert settings(text) == expected


def test_hardening_restart_sec_is_configurable():
    text = render("hardening.conf.j2", ansible_facts={"systemd": {"version": 252}}, oom_protect_restart_sec="500ms")
    assert "RestartSec=500ms" in settings(text)


@pytest.mark.parametrize("family,ssh,cron,pam", [
    ("Debian", "ssh.service", "cron.service", "/etc/pam.d/cron"),
    ("RedHat", "sshd.service", "crond.service", "/etc/pam.d/crond"),
    ("default", "ssh.service", "cron.service", "/etc/pam.d/cron"),
])
def test_family_names(family, ssh, cron, pam):
    names = load("vars/%s.yml" % family)
    assert (names["__oom_protect_ssh_unit"], names["__oom_protect_cron_unit"],
            names["__oom_protect_cron_pam_file"]) == (ssh, cron, pam)


def test_every_default_is_in_the_argument_spec():
    defaults = load("defaults/main.yml")
    options = load("meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(defaults) == sorted(options)
    for name, value in defaults.items():
        assert options[name].get("default") == value, name


def test_status_file_copies_the_module_status():
    """The status file is the module's status fields, plus kind and hardened: nothing reworded."""
    import json

    from ansible.module_utils.oomguard_oomscore import status_entry

    refused = {"unit": "ssh.service", "found": True, "score": -1000, "persist": "sshd_env",
               "dropin": "/etc/systemd/system/ssh.service.d/50-oomguard-oom.conf", "enforced": False,
               "reason": "kernel refused oom_score_adj -1000 for pid 33 (sshd): ...",
               "live": [{"pid": 33, "after": 0, "refused": True}, {"pid": 34, "after": 0, "refused": True}]}
    missing = {"unit": None, "found": False, "score": 800, "persist": "none", "dropin": None, "enforced": True,
               "reason": None, "live": []}
    critical = dict(refused, status=status_entry(refused, "ssh.service"))
    expendable = dict(missing, status=status_entry(missing, "backup-agent"))
    text = render("oom_protect.json.j2", __oom_protect_critical_results={"results": [critical]},
                  __oom_protect_expendable_results={"results": [expendable]}, __oom_protect_hardened=["ssh.service"])
    services = json.loads(text)["services"]
    assert services[0] == dict(critical["status"], kind="critical", hardened=True)
    assert services[0]["values"] == [0] and "pid" not in json.dumps(services[0])
    assert "CAP_SYS_RESOURCE" in services[0]["reason"] and "keep 0" in services[0]["reason"]
    assert services[1] == dict(expendable["status"], kind="expendable", hardened=False)
    assert services[1]["target"] == "backup-agent" and services[1]["reason"] is None
