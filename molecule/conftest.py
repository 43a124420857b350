"""Testinfra settings shared by every Molecule scenario's tests.

Molecule runs Testinfra with ``--connection=ansible`` and its inventory. For
hosts that Ansible reaches over SSH (the ``vm`` scenario) Testinfra then talks
SSH itself, which is fast. For podman containers Testinfra's own ``podman://``
backend is faster still (no login per command), so for those hosts we switch to
it, keeping the host list from Molecule's inventory (so ``--platform-name`` and
skipped platforms still work).
"""

import json
import os
import subprocess
import tempfile

import pytest

# Figures tests measure (recovery times, latencies), printed after the results.
_MEASUREMENTS = []
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def _inventory_hosts(inventory):
    """Return {host: hostvars} from ``ansible-inventory --list``."""
    out = subprocess.run(
        ["ansible-inventory", "-i", inventory, "--list"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    data = json.loads(out)
    hostvars = data.get("_meta", {}).get("hostvars", {})
    hosts = set(hostvars)
    for group in data.values():
        if isinstance(group, dict):
            hosts.update(group.get("hosts", []))
    return {host: hostvars.get(host, {}) for host in sorted(hosts)}


@pytest.fixture
def measurement(request):
    """Record a line for the "measured" section printed at the end of the run."""
    where = getattr(getattr(request.node, "callspec", None), "id", "")
    return lambda line: _MEASUREMENTS.append("[%s] %s" % (where, line) if where else line)


@pytest.fixture(scope="session")
def ansible_playbook(request):
    """Run ansible-playbook against the scenario's inventory, as Molecule runs its playbooks.

    Returns a function(playbook, extra_vars=None, timeout=900) -> subprocess.CompletedProcess;
    ``playbook`` is a path relative to the repository or the text of a playbook.
    """
    inventory = request.config.option.ansible_inventory
    assert inventory, "needs the scenario's inventory (--ansible-inventory)"
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
               ANSIBLE_ROLES_PATH=os.path.join(REPO, "roles"), ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_NOCOLOR="1")

    def run(playbook, extra_vars=None, timeout=900):
        path, temp = os.path.join(REPO, playbook), None
        if not os.path.isfile(path):
            temp = tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False)
            with temp:
                temp.write(playbook)
            path = temp.name
        cmd = ["ansible-playbook", "-i", inventory, path]
        if extra_vars:
            cmd += ["-e", json.dumps(extra_vars)]
        try:
            return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        finally:
            if temp is not None:
                os.unlink(temp.name)
    return run


def pytest_terminal_summary(terminalreporter):
    if _MEASUREMENTS:
        terminalreporter.section("measured")
        for line in _MEASUREMENTS:
            terminalreporter.write_line(line)


def pytest_configure(config):
    config.addinivalue_line("markers", "reboots: the test reboots the instance (run last)")
    option = config.option
    inventory = getattr(option, "ansible_inventory", None)
    if getattr(option, "connection", None) != "ansible" or not inventory or option.hosts:
        return
    if os.environ.get("MOLECULE_DRIVER_NAME") != "podman":
        return
    # Every host of a podman scenario is a container of that name, whichever
    # connection Ansible uses to reach it (SSH, for pipelining).
    hosts = _inventory_hosts(inventory)
    if hosts:
        option.connection = "podman"
        option.hosts = ",".join("podman://" + name for name in hosts)
