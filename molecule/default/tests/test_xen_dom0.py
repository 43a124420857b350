"""xen_dom0 in containers: one stub dom0 (oomguard-bookworm), two plain hosts.

Real Xen cannot run on these machines. molecule/default/prepare_xen_stub.yml makes
oomguard-bookworm look like a ballooning dom0 (seed 003): a stub `xl` on PATH that
answers from recorded output (dom0 at 3920M, host 32671M, no dom0_mem on the
hypervisor command line), keeps dom0's size across `mem-set` and logs every call;
a stub `update-grub` that logs too; Debian's /etc/default/grub with a Xen line and
Debian's xl.conf. The scenario's group_vars ask for xen_dom0_mem 20G with
xen_dom0_live true: a grow, so converge runs `xl mem-set 0 20480m` once, and the
idempotence and check steps must not run it again.

The refusal case (a shrink below dom0's use plus the margin) must fail and change
nothing, so it cannot be part of converge: test_live_shrink_below_use_is_refused
runs the module once more with `ansible` from the controller, against the same
container and inventory. That run is expected to change nothing, and the test
checks that it did not.
"""

import json
import os
import re
import subprocess

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
FIXTURES = os.path.join(REPO, "tests", "unit", "fixtures", "xen")
XEN_HOST = "oomguard-bookworm"
STUB_DIR = "/var/lib/oomguard-xl-stub"
TOKEN = "dom0_mem=20480M,max:20480M"


def host_name(host):
    return getattr(host.backend, "name", None) or host.backend.get_hostname()


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


def stub_calls(host):
    return host.file(STUB_DIR + "/calls.log").content_string.splitlines()


@pytest.fixture
def xen_host(host):
    if host_name(host) != XEN_HOST:
        pytest.skip("the Xen stub is on %s only" % XEN_HOST)
    assert host.file("/usr/local/sbin/xl").exists, "prepare_xen_stub.yml did not run on %s" % XEN_HOST
    return host


@pytest.fixture
def plain_host(host):
    if host_name(host) == XEN_HOST:
        pytest.skip("%s is the stub dom0" % XEN_HOST)
    return host


@pytest.fixture
def inventory(pytestconfig):
    path = getattr(pytestconfig.option, "ansible_inventory", None) or os.environ.get("MOLECULE_INVENTORY_FILE")
    assert path, "no Molecule inventory (--ansible-inventory / MOLECULE_INVENTORY_FILE): run through molecule verify"
    return path


def run_module(host, inventory, args, check=False):
    """Run oomguard_xen_dom0 on the container with `ansible`, as the role would; return its result."""
    # Molecule exports ANSIBLE_FORCE_COLOR, which beats NOCOLOR: turn it off too.
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
               ANSIBLE_CALLBACK_RESULT_FORMAT="json", ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    argv = ["ansible", host_name(host), "-i", inventory, "-m", "oomguard_xen_dom0", "-a", json.dumps(args)]
    if check:
        argv.append("--check")
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    # "<host> | FAILED! => {...}" / "| CHANGED =>" / "| SUCCESS =>"; the callback drops "diff".
    # Warnings may follow the JSON on the same stream: decode just the object.
    stdout = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout)
    match = re.search(r"\| (?P<status>[A-Z]+)!? => ", stdout)
    assert match, "no result in ansible output:\n%s\n%s" % (stdout, proc.stderr)
    result, _end = json.JSONDecoder().raw_decode(stdout[match.end():])
    result["_status"] = match.group("status")
    return proc.returncode, result


# ----------------------------------------------------------------------------- plain hosts


def test_plain_host_untouched(plain_host):
    assert not plain_host.file("/usr/local/sbin/xl").exists
    assert not plain_host.file("/etc/xen").exists
    assert not plain_host.file("/etc/default/grub").exists


# ----------------------------------------------------------------------------- the stub dom0


def test_grub_pin_keeps_other_options(xen_host):
    grub = xen_host.file("/etc/default/grub")
    assert grub.user == "root" and grub.group == "root" and grub.mode == 0o644
    before = fixture("grub-quoted-no-dom0mem")
    old_line = 'GRUB_CMDLINE_XEN_DEFAULT="dom0_max_vcpus=1-4 ucode=scan console=com1,vga com1=115200,8n1"'
    assert old_line in before
    expected = before.replace(old_line, old_line[:-1] + ' %s"' % TOKEN)
    assert grub.content_string == expected


def test_ballooning_off(xen_host):
    xl_conf = xen_host.file("/etc/xen/xl.conf")
    assert xl_conf.user == "root" and xl_conf.mode == 0o644
    expected = fixture("xl.conf-debian12").replace('#autoballoon="auto"\n', '#autoballoon="auto"\nautoballoon="off"\n')
    assert xl_conf.content_string == expected


def test_live_grow_ran_once_and_grub_regenerated_once(xen_host):
    calls = stub_calls(xen_host)
    # converge grew dom0; idempotence and check found it at the target.
    assert [c for c in calls if c.startswith("mem-set")] == ["mem-set 0 20480m"]
    assert [c for c in calls if c.startswith("update-grub")] == ["update-grub "]
    assert xen_host.file(STUB_DIR + "/dom0-mem").content_string.strip() == "20480"
    assert "Domain-0" in xen_host.check_output("/usr/local/sbin/xl list 0")


def test_live_shrink_below_use_is_refused(xen_host, inventory):
    grub_before = xen_host.file("/etc/default/grub").sha256sum
    xl_conf_before = xen_host.file("/etc/xen/xl.conf").sha256sum
    calls_before = stub_calls(xen_host)
    # 1G is below whatever this container uses plus a 32G margin: must be refused.
    rc, result = run_module(xen_host, inventory, {"dom0_mem": "1G", "live": True, "margin": "32G"})
    assert rc != 0 and result["_status"] == "FAILED"
    assert result["changed"] is False
    assert result["msg"].startswith("refusing to shrink dom0 from 20480M to 1024M: dom0 uses ")
    assert "the safety margin is 32768M" in result["msg"]
    assert result["dom0_used_bytes"] > 0
    after = stub_calls(xen_host)
    assert not any(c.startswith("mem-set") for c in after[len(calls_before):])
    assert xen_host.file("/etc/default/grub").sha256sum == grub_before
    assert xen_host.file("/etc/xen/xl.conf").sha256sum == xl_conf_before
    assert xen_host.file(STUB_DIR + "/dom0-mem").content_string.strip() == "20480"


def test_check_mode_reports_but_changes_nothing(xen_host, inventory):
    grub_before = xen_host.file("/etc/default/grub").sha256sum
    calls_before = stub_calls(xen_host)
    rc, result = run_module(xen_host, inventory, {"dom0_mem": "24G", "live": True}, check=True)
    assert rc == 0 and result["_status"] == "CHANGED" and result["changed"] is True
    assert result["live"]["action"] == "set" and result["live"]["applied"] is False
    assert result["live"]["reason"] == "growing dom0 from 20480M to 24576M"
    assert result["files"]["grub_default"]["changed"] is True
    assert result["files"]["xl_conf"]["changed"] is False
    assert xen_host.file("/etc/default/grub").sha256sum == grub_before
    assert not any(c.startswith("mem-set") for c in stub_calls(xen_host)[len(calls_before):])


def test_converged_state_reported_unchanged(xen_host, inventory):
    rc, result = run_module(xen_host, inventory, {"dom0_mem": "20G", "live": True})
    assert rc == 0 and result["_status"] == "SUCCESS" and result["changed"] is False
    assert result["xen"] is True and result["detected_by"] == "xl info"
    assert result["host_total_bytes"] == 32671 * 1024 ** 2
    assert result["live"]["action"] == "none"
    assert result["reboot_required"] is False and result["pin_active"] is False
