"""README's role-variable tables are generated from the argument specs and must match them."""

import os
import subprocess
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def test_readme_tables_match_argument_specs():
    result = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "gen-role-docs"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_public_default_is_in_the_spec():
    """A role default that the spec does not declare would go unvalidated and undocumented."""
    import yaml
    roles_dir = os.path.join(REPO, "roles")
    missing = []
    for role in sorted(os.listdir(roles_dir)):
        defaults = os.path.join(roles_dir, role, "defaults", "main.yml")
        spec_path = os.path.join(roles_dir, role, "meta", "argument_specs.yml")
        if not os.path.exists(defaults):
            continue
        with open(defaults) as handle:
            names = set((yaml.safe_load(handle) or {}).keys())
        with open(spec_path) as handle:
            options = set(yaml.safe_load(handle)["argument_specs"]["main"].get("options", {}).keys())
        missing += ["%s: %s" % (role, n) for n in sorted(names - options)]
        missing += ["%s: %s (spec only)" % (role, n) for n in sorted(options - names)]
    assert missing == []
