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
import time

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
    ``playbook`` is a path relative to the repository or the text of a playbook. When the
    scenario limits Testinfra to some hosts (verifier option ``hosts``), so is the playbook.
    """
    inventory = request.config.option.ansible_inventory
    assert inventory, "needs the scenario's inventory (--ansible-inventory)"
    limit = [h.split("://", 1)[-1] for h in (request.config.option.hosts or "").split(",") if h]
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
        if limit:
            cmd += ["--limit", ",".join(limit)]
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


# hostvars of the scenario's inventory, by host name (filled in pytest_configure).
_HOSTVARS = {}
CRON_CGROUP_FILE = "/var/lib/oomguard-testbed-cron-cgroup"


def _unified_cgroup(text):
    """The cgroup path a process is in: the v2 line ("0::/...") of /proc/PID/cgroup, or
    systemd's own v1 hierarchy ("N:name=systemd:/...") where the v2 line is empty."""
    paths = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            paths[parts[1]] = parts[2].strip()
    return paths.get("name=systemd") or paths.get("", "")


@pytest.fixture(scope="module")
def placement(host):
    """Where a NEW SSH login shell and a cron job run on this instance: their cgroups.

    The login is a real one from this machine (the test bed key, the port the
    inventory gives), not Testinfra's own connection (podman exec for containers).
    The cron job is the one-shot that molecule/shared/prepare.yml installs.
    """
    name = host.backend.get_hostname()
    hostvars = _HOSTVARS.get(name, {})
    cache = os.environ.get("OOMGUARD_CACHE") or "/var/cache/oomguard-testbed"
    key = hostvars.get("ansible_private_key_file") or os.path.join(cache, "ssh", "id_ed25519")
    argv = ["ssh", "-i", key, "-p", str(hostvars.get("ansible_port", 22)),
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "ControlMaster=no", "-o", "ControlPath=none",
            "-o", "ConnectTimeout=60",
            "%s@%s" % (hostvars.get("ansible_user", "root"), hostvars.get("ansible_host", "127.0.0.1")),
            "cat /proc/self/cgroup"]
    login = subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert login.returncode == 0, "no SSH login to %s: %s" % (name, login.stderr)
    cron = ""
    for _ in range(75):  # the job runs at the next full minute after prepare
        cron = host.run("cat %s", CRON_CGROUP_FILE).stdout
        if cron:
            break
        time.sleep(2)
    return {"login": _unified_cgroup(login.stdout), "cron": _unified_cgroup(cron)}


def pytest_configure(config):
    config.addinivalue_line("markers", "reboots: the test reboots the instance (run last)")
    option = config.option
    inventory = getattr(option, "ansible_inventory", None)
    if getattr(option, "connection", None) != "ansible" or not inventory:
        return
    hosts = _inventory_hosts(inventory)
    _HOSTVARS.update(hosts)
    if option.hosts or os.environ.get("MOLECULE_DRIVER_NAME") != "podman":
        return
    # Every host of a podman scenario is a container of that name, whichever
    # connection Ansible uses to reach it (SSH, for pipelining).
    if hosts:
        option.connection = "podman"
        option.hosts = ",".join("podman://" + name for name in hosts)
