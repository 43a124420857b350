"""swap_alert role data: defaults, argument specs and the agent agree."""

import os

import pytest
import yaml

from test_swap_alert_oomguard_alertd import alertd  # noqa: F401 (the agent, loaded once)

ROLE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles", "swap_alert")


def load(path):
    with open(os.path.join(ROLE, path)) as handle:
        return yaml.safe_load(handle)


DEFAULTS = load("defaults/main.yml")
SPEC = load("meta/argument_specs.yml")["argument_specs"]["main"]["options"]
CHECK_VARS = {c["name"]: c["var"] for c in load("vars/main.yml")["__swap_alert_checks"]}


def test_every_default_is_specified_and_vice_versa():
    assert sorted(DEFAULTS) == sorted(SPEC)
    for name, value in DEFAULTS.items():
        assert SPEC[name]["default"] == value, name
        assert SPEC[name]["description"], name
        assert name.startswith("swap_alert_")


def test_secret_is_no_log_and_test_hook_off_by_default():
    assert SPEC["swap_alert_webhook_secret"]["no_log"] is True
    assert DEFAULTS["swap_alert_test_input_path"] == ""


def test_default_thresholds_are_valid_for_the_agent():
    thresholds = {}
    for check, var in CHECK_VARS.items():
        spec = dict(DEFAULTS[var])
        assert spec.pop("enabled") is True
        thresholds[check] = spec
    assert alertd.alerting.validate_thresholds(thresholds) == []
    assert thresholds == alertd.alerting.DEFAULT_THRESHOLDS


@pytest.mark.parametrize("check", sorted(CHECK_VARS))
def test_checks_known_to_the_agent(check):
    assert check in alertd.alerting.CHECKS
