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
