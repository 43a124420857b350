#!/usr/bin/env python3
"""oomguard_check against setup on the same host over the same connection, in one run.

Runs `ansible localhost -m oomguard_check`, `-m setup` and `-m ping` (the cost of
starting Ansible and shipping a module: the floor under both) in turn, N rounds, and
prints the medians, the raw ratio and the ratio net of that floor (goal <= 0.5).
Prints figures only: it never fails on a time.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import REPO, interleaved, median, table, tool  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    ansible = tool("ansible")
    inventory = os.path.join(REPO, "inventory", "local.yml")
    base = [ansible, "-i", inventory, "localhost", "-m"]
    times = interleaved({"ping": base + ["ping"], "oomguard_check": base + ["oomguard_check"],
                         "setup": base + ["setup"]}, args.rounds)
    ping, check, setup = (median(times[k]) for k in ("ping", "oomguard_check", "setup"))
    rows = [(name, "%.3f" % median(values), "%.3f" % min(values), "%.3f" % max(values))
            for name, values in times.items()]
    print("oomguard_check vs setup: localhost, connection local, %d rounds (seconds)" % args.rounds)
    print(table(rows, ("module", "median", "min", "max")))
    print("ratio check/setup, whole command:          %.2f" % (check / setup))
    net_setup = setup - ping
    if net_setup > 0:
        print("ratio check/setup, net of the ping floor:  %.2f   (goal <= 0.5)" % (max(check - ping, 0.0) / net_setup))


if __name__ == "__main__":
    main()
