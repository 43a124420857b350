#!/usr/bin/env python3
"""A simulated fleet: 200 inventory hosts (all local connection), forks 50.

Wall time of `ansible all -m oomguard_check` and of the audit playbook (reports written
to a temporary directory) against `ansible all -m ping` on the same fleet (goal <= 1.5x).
Prints figures only: it never fails on a time.
"""

import argparse
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import REPO, interleaved, median, table, tool  # noqa: E402


def write_inventory(directory, hosts):
    path = os.path.join(directory, "fleet.yml")
    with open(path, "w") as handle:
        handle.write("---\nall:\n  vars:\n    ansible_connection: local\n"
                     "    ansible_python_interpreter: \"{{ ansible_playbook_python }}\"\n  hosts:\n")
        for index in range(1, hosts + 1):
            handle.write("    host%03d:\n" % index)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--forks", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="oomguard-bench-fleet-")
    try:
        inventory = write_inventory(work, args.hosts)
        adhoc = [tool("ansible"), "all", "-i", inventory, "-f", str(args.forks), "-m"]
        playbook = [tool("ansible-playbook"), "-i", inventory, "-f", str(args.forks),
                    os.path.join(REPO, "playbooks", "audit.yml"), "-e", "oomguard_audit_report_dir=%s" % work]
        env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"))
        times = interleaved({"ansible -m ping": adhoc + ["ping"], "ansible -m oomguard_check": adhoc + ["oomguard_check"],
                             "ansible-playbook playbooks/audit.yml": playbook}, args.rounds, env=env)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ping = median(times["ansible -m ping"])
    print("simulated fleet: %d hosts, connection local, forks %d, %d round(s) (seconds)" % (
        args.hosts, args.forks, args.rounds))
    rows = [(name, "%.1f" % median(values), "%.2fx" % (median(values) / ping)) for name, values in times.items()]
    print(table(rows, ("command", "wall", "vs ping")))
    print("goal: oomguard_check <= 1.5x ping")


if __name__ == "__main__":
    main()
