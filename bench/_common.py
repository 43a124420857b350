"""Shared helpers for the benchmarks: timing commands from the repository root."""

import os
import statistics
import subprocess
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
VENV_BIN = os.path.join(REPO, ".venv", "bin")


def tool(name):
    """A tool from the project's venv, else from PATH."""
    path = os.path.join(VENV_BIN, name)
    return path if os.path.exists(path) else name


def timed(argv, env=None, cwd=REPO):
    """Wall seconds of one run; raises with the output when the command fails."""
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError("%s failed (rc %d):\n%s" % (" ".join(argv), proc.returncode,
                                                      proc.stdout.decode("utf-8", "replace")[-3000:]))
    return elapsed


def interleaved(commands, rounds, env=None):
    """{name: [seconds, ...]} running the commands in turn, `rounds` times (fair to each)."""
    times = dict((name, []) for name in commands)
    for _ in range(rounds):
        for name, argv in commands.items():
            times[name].append(timed(argv, env=env))
    return times


def median(values):
    return statistics.median(values)


def table(rows, headers):
    widths = [max(len(str(r[i])) for r in rows + [headers]) for i in range(len(headers))]
    line = "  ".join("%-*s" % (w, h) for w, h in zip(widths, headers))
    out = [line, "  ".join("-" * w for w in widths)]
    for row in rows:
        out.append("  ".join("%-*s" % (w, c) for w, c in zip(widths, row)))
    return "\n".join(out)
