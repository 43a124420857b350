"""Values the roles write into unit files are matched whole by their preflights (issue 15):
a newline in a size or path would start a unit setting of its own."""

import os
import re

import pytest
import yaml

ROLES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles")


def load(role, path):
    with open(os.path.join(ROLES, role, path)) as handle:
        return yaml.safe_load(handle)


SIZE_RES = [load("swap_alert", "vars/main.yml")["__swap_alert_unit_size_re"],
            load("service_watchdog", "vars/main.yml")["__service_watchdog_unit_size_re"]]
TIMESPAN_RE = load("service_watchdog", "vars/main.yml")["__service_watchdog_timespan_re"]


@pytest.mark.parametrize("pattern", SIZE_RES)
def test_sizes_matched_whole(pattern):
    defaults = load("swap_alert", "defaults/main.yml")
    for var in ("swap_alert_memory_max", "swap_alert_memory_low", "swap_alert_limit_memlock"):
        assert re.match(pattern, str(defaults[var])), var
    assert re.match(pattern, str(load("service_watchdog", "defaults/main.yml")["service_watchdog_memory_max"]))
    for good in ("32M", "1.5G", "1048576", "50%", "infinity"):
        assert re.match(pattern, good)
    for bad in ("32M\nExecStartPre=/bin/sh -c id", "32M\n", "\uff13\uff12M", "32M ", "-1", "32Q", ""):
        assert not re.match(pattern, bad), bad


def test_timespans_matched_whole():
    assert re.match(TIMESPAN_RE, "30s") and re.match(TIMESPAN_RE, "off")
    for bad in ("30s\n", "30s\nRebootWatchdogSec=0", "30 s"):
        assert not re.match(TIMESPAN_RE, bad), bad
