"""roles/oom_protect/files/oom-score-reset: the cron PAM session hook, run for real.

pam_exec.so runs the hook as a child of the process that opened the PAM session; the
hook raises that parent ($PPID). Here a shell plays cron's per-job process: it sets its
own value, runs the hook as its child (exactly as pam_exec does) and prints its value.
Only raising is exercised with non-negative values, which needs no privilege.
"""

import os
import subprocess

import pytest

HOOK = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles", "oom_protect", "files", "oom-score-reset")


def run_as_parent(start, args, pam_type="open_session"):
    """Value of the hook's parent after the hook ran."""
    env = {"PATH": "/usr/bin:/bin"}
    if pam_type is not None:
        env["PAM_TYPE"] = pam_type
    script = 'echo %d > /proc/self/oom_score_adj && "$0" "$@"; rc=$?; echo "$rc $(cat /proc/self/oom_score_adj)"' % start
    out = subprocess.run(["sh", "-c", script, os.path.abspath(HOOK)] + args, env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    return int(out[0]), int(out[1])


@pytest.mark.parametrize("start,args,pam_type,expected", [
    (100, ["500"], "open_session", 500),    # raised to the target
    (100, [], "open_session", 100),         # default target 0: never lowers
    (600, ["500"], "open_session", 600),    # never lowers
    (100, ["500"], "close_session", 100),   # only when the session opens
    (100, ["500"], None, 100),              # not run by pam_exec
    (100, ["5x"], "open_session", 100),     # garbage target: do nothing
    (100, ["5-0"], "open_session", 100),
    (0, ["1000"], "open_session", 1000),
])
def test_hook_raises_its_parent_only(start, args, pam_type, expected):
    rc, value = run_as_parent(start, args, pam_type)
    assert rc == 0
    assert value == expected


def test_hook_is_executable_posix_sh():
    assert os.access(HOOK, os.X_OK)
    with open(HOOK) as handle:
        assert handle.readline().strip() == "#!/bin/sh"
    subprocess.run(["sh", "-n", HOOK], check=True)
