"""Build the oomguard.oomguard collection, install the tarball into a temporary
collections path and use it from outside the repository, as a user would."""

import glob
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    subprocess.run([sys.executable, os.path.join(REPO, "scripts", "build-collection")], check=True, cwd=REPO)
    tarballs = sorted(glob.glob(os.path.join(REPO, "build", "oomguard-oomguard-*.tar.gz")))
    assert tarballs, "the build produced no tarball"
    target = tmp_path_factory.mktemp("collections")
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--offline", "--force", "-p", str(target),
                    tarballs[-1]], check=True, cwd=str(target))
    workdir = tmp_path_factory.mktemp("elsewhere")
    # An empty config outside the repo: nothing of the repo's ansible.cfg applies.
    (workdir / "ansible.cfg").write_text("[defaults]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(target), ANSIBLE_CONFIG=str(workdir / "ansible.cfg"), ANSIBLE_LOCALHOST_WARNING="False",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="False", ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    return {"path": target, "cwd": str(workdir), "env": env}


def _ansible(installed, *args):
    return subprocess.run([os.path.join(BIN, "ansible"), "localhost", "-c", "local", "-o"] + list(args),
                          cwd=installed["cwd"], env=installed["env"], capture_output=True, text=True)


def test_tarball_lays_out_a_collection(installed):
    root = installed["path"] / "ansible_collections" / "oomguard" / "oomguard"
    assert (root / "plugins" / "modules" / "oomguard_check.py").is_file()
    assert (root / "plugins" / "module_utils" / "oomguard_procfs.py").is_file()
    assert (root / "roles" / "oom_protect" / "tasks" / "main.yml").is_file()
    # Symlinked sources are resolved, and modules import the collection's own module_utils.
    assert (root / "roles" / "oomguard_common" / "files" / "python" / "oomguard_procfs.py").is_file()
    text = (root / "plugins" / "modules" / "oomguard_check.py").read_text()
    assert "ansible_collections.oomguard.oomguard.plugins.module_utils.oomguard_" in text
    assert "from ansible.module_utils.oomguard_" not in text


def test_check_module_runs_from_the_installed_collection(installed):
    result = _ansible(installed, "-m", "oomguard.oomguard.oomguard_check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    payload = json.loads(result.stdout.split("=>", 1)[1])
    assert "summary" in payload and payload["findings"]


def test_filters_run_from_the_installed_collection(installed):
    result = _ansible(installed, "-m", "ansible.builtin.debug",
                      "-a", "msg={{ '1.5G' | oomguard.oomguard.oomguard_bytes }}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1610612736" in result.stdout
