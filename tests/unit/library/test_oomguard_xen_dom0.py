"""Unit tests for library/oomguard_xen_dom0.py.

The module runs for real (AnsibleModule, run_command, atomic writes) against a fake
/proc and files under tmp_path. `xl` is tests/unit/fixtures/xen/xl-stub on PATH: it
answers from recorded `xl info`/`xl list` output, keeps dom0's memory across
`mem-set` and logs every call, so the tests see exactly which commands ran.
"""

import json
import os
import shutil
import stat

import pytest

from ansible.module_utils import _internal as ansible_internal
from ansible.module_utils.testing import patch_module_args

import oomguard_xen_dom0 as mod

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "xen")
MIB = 1024 ** 2
GIB = 1024 ** 3


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


class Host(object):
    """A fake dom0 (or not) under tmp_path."""

    def __init__(self, root, monkeypatch):
        self.root = root
        self.proc = root / "proc"
        self.etc = root / "etc"
        self.bin = root / "bin"
        self.stub = root / "xl-stub-state"
        for path in (self.proc, self.etc / "default", self.etc / "xen", self.bin, self.stub):
            path.mkdir(parents=True)
        self.grub = self.etc / "default" / "grub"
        self.xl_conf = self.etc / "xen" / "xl.conf"
        self.xend = self.etc / "xen" / "xend-config.sxp"
        monkeypatch.setenv("PATH", "%s:/usr/bin:/bin" % self.bin)
        monkeypatch.setenv("XL_STUB_DIR", str(self.stub))
        # Once a test imports controller code (filter tests do), module warnings go to the
        # controller's Display instead of the result; run the module as on a target.
        monkeypatch.setattr(ansible_internal, "is_controller", False)
        self.meminfo("meminfo-dom0-4096M")
        fake_update_grub = self.bin / "update-grub"
        fake_update_grub.write_text("#!/bin/sh\nexit 0\n")
        fake_update_grub.chmod(0o755)

    def meminfo(self, name):
        (self.proc / "meminfo").write_text(fixture(name))

    def capabilities(self, name):
        (self.proc / "xen").mkdir(exist_ok=True)
        (self.proc / "xen" / "capabilities").write_text(fixture(name))

    def xl(self, info="xl-info-debian12-ballooning", listing="xl-list-debian12-ballooning"):
        shutil.copy(os.path.join(FIXTURES, "xl-stub"), str(self.bin / "xl"))
        (self.bin / "xl").chmod(0o755)
        if info:
            (self.stub / "xl-info").write_text(fixture(info))
        (self.stub / "xl-list").write_text(fixture(listing))

    def files(self, grub="grub-quoted-no-dom0mem", xl_conf="xl.conf-debian12", xend=None):
        if grub:
            self.grub.write_text(fixture(grub))
        if xl_conf:
            self.xl_conf.write_text(fixture(xl_conf))
        if xend:
            self.xend.write_text(fixture(xend))

    def calls(self):
        log = self.stub / "calls.log"
        return log.read_text().splitlines() if log.exists() else []

    def snapshot(self):
        return dict((str(p), p.read_text()) for p in (self.grub, self.xl_conf, self.xend) if p.exists())

    def run(self, capsys, check=False, **params):
        args = dict(grub_default_file=str(self.grub), xl_conf_file=str(self.xl_conf),
                    xend_config_file=str(self.xend), _ansible_check_mode=check, _ansible_diff=True)
        args.update(params)
        with patch_module_args(args):
            module = mod.build_module()
            with pytest.raises(SystemExit) as exc:
                mod.run_module(module, proc=str(self.proc), etc=str(self.etc))
        result = json.loads(capsys.readouterr().out)
        result["_rc"] = exc.value.code
        # ansible-core 2.19 returns warnings as WarningSummary objects; older ones as strings.
        result["warnings"] = [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings", [])]
        return result


@pytest.fixture
def host(tmp_path, monkeypatch):
    return Host(tmp_path, monkeypatch)


# ----------------------------------------------------------------------------- argument spec


def test_argument_spec_defaults():
    spec = mod.argument_spec()
    assert spec["live"]["default"] is False
    assert spec["margin"]["default"] == "256M"
    assert spec["grub_default_file"]["default"] == "/etc/default/grub"
    assert spec["xl_conf_file"]["default"] == "/etc/xen/xl.conf"
    assert "required" not in spec["dom0_mem"]


# ----------------------------------------------------------------------------- detection


def test_not_xen_touches_nothing(host, capsys):
    host.files()
    before = host.snapshot()
    result = host.run(capsys, dom0_mem="4G", live=True)
    assert result["_rc"] == 0
    assert result["xen"] is False and result["changed"] is False
    assert result["reboot_required"] is False and result["grub_update_required"] is False
    assert host.snapshot() == before


def test_domu_never_runs_xl(host, capsys):
    host.capabilities("capabilities-domu")
    host.xl()
    host.files()
    before = host.snapshot()
    result = host.run(capsys, dom0_mem="4G")
    assert result["xen"] is False and result["changed"] is False
    assert host.calls() == []
    assert host.snapshot() == before


def test_xl_installed_without_hypervisor_is_not_xen(host, capsys):
    host.xl(info=None)
    host.files()
    result = host.run(capsys, dom0_mem="4G")
    assert result["xen"] is False and result["changed"] is False
    assert host.calls() == ["info"]


@pytest.mark.parametrize("capabilities, detected_by", [(None, "xl info"), ("capabilities-dom0", "capabilities")])
def test_detects_dom0(host, capsys, capabilities, detected_by):
    if capabilities:
        host.capabilities(capabilities)
    host.xl()
    result = host.run(capsys)  # facts only
    assert result["xen"] is True and result["detected_by"] == detected_by
    assert result["changed"] is False
    assert result["host_total_bytes"] == 32671 * MIB
    assert result["host_free_bytes"] == 412 * MIB
    assert result["dom0_current_bytes"] == 3920 * MIB
    assert result["dom0_used_bytes"] == (3995612 - 2871240) * 1024
    assert result["running_dom0_mem"] is None
    assert not host.grub.exists() and not host.xl_conf.exists()


def test_dom0_capabilities_without_xl_fails(host, capsys):
    host.capabilities("capabilities-dom0")
    result = host.run(capsys, dom0_mem="4G")
    assert result["_rc"] == 1 and result["failed"] is True
    assert "neither xl nor xm" in result["msg"]


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("params, message", [
    ({"dom0_mem": "abc"}, "dom0_mem: 'abc' is not a size"),
    ({"dom0_mem": "4G", "margin": "-256M"}, "margin: '-256M' is negative"),
    ({"dom0_mem": "100M"}, "below the 512M minimum"),
    ({"dom0_mem": "40G"}, "above the host's memory (32671M"),
    ({"dom0_mem": "4000000"}, "whole number of MiB"),
])
def test_bad_input_fails_with_nothing_changed(host, capsys, params, message):
    host.xl()
    host.files()
    before = host.snapshot()
    result = host.run(capsys, live=True, **params)
    assert result["_rc"] == 1 and result["changed"] is False
    assert message in result["msg"]
    assert host.snapshot() == before
    assert not any(call.startswith("mem-set") for call in host.calls())


def test_bad_input_fails_on_non_xen_hosts_too(host, capsys):
    result = host.run(capsys, dom0_mem="abc")
    assert result["_rc"] == 1 and "dom0_mem" in result["msg"]


# ----------------------------------------------------------------------------- files


def test_pins_grub_and_turns_ballooning_off_then_idempotent(host, capsys):
    host.xl()
    host.files()
    grub_before = host.grub.read_text()
    result = host.run(capsys, dom0_mem="6G")
    assert result["_rc"] == 0 and result["changed"] is True
    assert result["dom0_mem"] == "6144M,max:6144M" and result["dom0_mem_bytes"] == 6 * GIB
    assert result["files"]["grub_default"]["changed"] and result["files"]["xl_conf"]["changed"]
    assert result["files"]["xend_config"] == {"path": str(host.xend), "changed": False, "exists": False}
    assert result["grub_update_required"] is True
    assert result["grub_update_command"] == [str(host.bin / "update-grub")]
    assert result["live"]["action"] == "disabled"
    assert result["pin_active"] is False and result["reboot_required"] is True
    expected_grub = grub_before.replace(
        'GRUB_CMDLINE_XEN_DEFAULT="dom0_max_vcpus=1-4 ucode=scan console=com1,vga com1=115200,8n1"',
        'GRUB_CMDLINE_XEN_DEFAULT="dom0_max_vcpus=1-4 ucode=scan console=com1,vga com1=115200,8n1 '
        'dom0_mem=6144M,max:6144M"')
    assert expected_grub != grub_before
    assert host.grub.read_text() == expected_grub
    assert 'autoballoon="off"' in host.xl_conf.read_text().splitlines()
    assert [d["before_header"] for d in result["diff"]] == [str(host.grub), str(host.xl_conf)]
    assert result["diff"][0]["after"] == expected_grub
    for path in (host.grub, host.xl_conf):
        mode = stat.S_IMODE(os.stat(str(path)).st_mode)
        assert not mode & stat.S_IWOTH
    # Second run: nothing to do.
    again = host.run(capsys, dom0_mem="6144M")
    assert again["changed"] is False and again["grub_update_required"] is False
    assert again["diff"] == []
    assert host.calls().count("info") == 2


def test_check_mode_writes_nothing_and_reports_diff(host, capsys):
    host.xl()
    host.files()
    before = host.snapshot()
    result = host.run(capsys, check=True, dom0_mem="6G", live=True)
    assert result["changed"] is True
    assert result["live"]["action"] == "set" and result["live"]["applied"] is False
    assert [d["before_header"] for d in result["diff"]] == [str(host.grub), str(host.xl_conf),
                                                            "dom0 memory (xl list 0)"]
    assert result["diff"][2]["before"] == "3920M\n" and result["diff"][2]["after"] == "6144M\n"
    assert host.snapshot() == before
    assert not any(call.startswith("mem-set") for call in host.calls())


def test_existing_mode_kept_and_world_writable_bit_dropped(host, capsys):
    host.xl()
    host.files()
    host.grub.chmod(0o646)
    host.run(capsys, dom0_mem="6G")
    assert stat.S_IMODE(os.stat(str(host.grub)).st_mode) == 0o644


def test_creates_missing_grub_default_and_xl_conf(host, capsys):
    host.xl()
    result = host.run(capsys, dom0_mem="2G")
    assert result["changed"] is True
    assert host.grub.read_text() == 'GRUB_CMDLINE_XEN_DEFAULT="dom0_mem=2048M,max:2048M"\n'
    assert host.xl_conf.read_text().endswith('autoballoon="off"\n')
    assert stat.S_IMODE(os.stat(str(host.grub)).st_mode) == 0o644


def test_missing_xen_dir_is_a_warning(host, capsys):
    host.xl()
    host.files(xl_conf=None)
    shutil.rmtree(str(host.etc / "xen"))
    result = host.run(capsys, dom0_mem="2G")
    assert result["changed"] is True and not host.xl_conf.exists()
    assert any("ballooning left as it is" in w for w in result["warnings"])


def test_disable_ballooning_false_leaves_xl_conf(host, capsys):
    host.xl()
    host.files(xl_conf="xl.conf-autoballoon-on")
    result = host.run(capsys, dom0_mem="2G", disable_ballooning=False)
    assert "xl_conf" not in result["files"]
    assert host.xl_conf.read_text() == fixture("xl.conf-autoballoon-on")


def test_legacy_xend_config(host, capsys):
    host.xl()
    host.files(xend="xend-config.sxp-debian6")
    result = host.run(capsys, dom0_mem="3G")
    assert result["files"]["xend_config"]["changed"] is True
    text = host.xend.read_text()
    assert "(enable-dom0-ballooning no)" in text and "(dom0-min-mem 3072)" in text
    assert host.run(capsys, dom0_mem="3G")["changed"] is False


def test_pin_already_active(host, capsys):
    host.xl(info="xl-info-debian12-pinned", listing="xl-list-debian12-pinned")
    host.files(grub="grub-quoted-dom0mem", xl_conf="xl.conf-autoballoon-off")
    result = host.run(capsys, dom0_mem="4G")
    assert result["changed"] is False
    assert result["pin_active"] is True and result["reboot_required"] is False
    assert result["running_dom0_mem"]["max"] == 4 * GIB


def test_grub_dropin_override_warns(host, capsys):
    host.xl()
    host.files()
    (host.etc / "default" / "grub.d").mkdir()
    (host.etc / "default" / "grub.d" / "xen.cfg").write_text(
        fixture("grub.d-xen.cfg-debian12").replace('#GRUB_CMDLINE_XEN_DEFAULT=""', 'GRUB_CMDLINE_XEN_DEFAULT="smt=off"'))
    result = host.run(capsys, dom0_mem="2G")
    assert any("xen.cfg sets GRUB_CMDLINE_XEN_DEFAULT" in w for w in result["warnings"])


def test_unparseable_grub_fails_before_writing(host, capsys):
    host.xl()
    host.files()
    host.grub.write_text('GRUB_CMDLINE_XEN_DEFAULT="dom0_mem=1G\n smt=off"\n')
    before = host.snapshot()
    result = host.run(capsys, dom0_mem="2G")
    assert result["_rc"] == 1 and "no closing" in result["msg"]
    assert host.snapshot() == before


# ----------------------------------------------------------------------------- live


def test_live_grow_calls_mem_set_once(host, capsys):
    host.xl()  # ballooned to 3920M, no pin (seed 003)
    host.meminfo("meminfo-dom0-squeezed")
    host.files()
    result = host.run(capsys, dom0_mem="6G", live=True)
    assert result["_rc"] == 0 and result["changed"] is True
    assert result["live"]["action"] == "set" and result["live"]["applied"] is True
    assert result["live"]["command"] == [str(host.bin / "xl"), "mem-set", "0", "6144m"]
    assert result["live"]["dom0_after_bytes"] == 6 * GIB
    assert result["reboot_required"] is False
    again = host.run(capsys, dom0_mem="6G", live=True)
    assert again["changed"] is False and again["live"]["action"] == "none"
    assert [c for c in host.calls() if c.startswith("mem-set")] == ["mem-set 0 6144m"]


def test_live_shrink_below_use_is_refused(host, capsys):
    host.xl(info="xl-info-debian12-pinned", listing="xl-list-debian12-pinned")
    host.meminfo("meminfo-dom0-squeezed")  # uses about 3573M of 4096M
    host.files(grub="grub-quoted-dom0mem")
    before = host.snapshot()
    result = host.run(capsys, dom0_mem="2G", live=True)
    assert result["_rc"] == 1 and result["changed"] is False
    assert result["msg"] == ("refusing to shrink dom0 from 4096M to 2048M: dom0 uses 3573M (MemTotal - "
                             "MemAvailable) and the safety margin is 256M, so the target must be at least 3830M")
    assert result["dom0_used_bytes"] == (3864180 - 204812) * 1024
    assert host.snapshot() == before
    assert not any(call.startswith("mem-set") for call in host.calls())


def test_live_shrink_above_use_plus_margin(host, capsys):
    host.xl(info="xl-info-debian12-pinned", listing="xl-list-debian12-pinned")
    host.meminfo("meminfo-dom0-4096M")  # uses about 1098M
    host.files(grub="grub-quoted-dom0mem")
    result = host.run(capsys, dom0_mem="2G", live=True, margin="512M")
    assert result["live"]["action"] == "set"
    assert "shrinking dom0 from 4096M to 2048M" in result["live"]["reason"]
    assert [c for c in host.calls() if c.startswith("mem-set")] == ["mem-set 0 2048m"]
    assert 'GRUB_CMDLINE_XEN_DEFAULT="dom0_mem=2048M,max:2048M dom0_max_vcpus=4"' in host.grub.read_text()


def test_live_grow_above_running_max_is_blocked_not_failed(host, capsys):
    host.xl(info="xl-info-debian12-pinned", listing="xl-list-debian12-pinned")
    host.files(grub="grub-quoted-dom0mem")
    result = host.run(capsys, dom0_mem="8G", live=True)
    assert result["_rc"] == 0 and result["changed"] is True  # the grub pin changed
    assert result["live"]["action"] == "blocked" and result["live"]["applied"] is False
    assert result["reboot_required"] is True
    assert any("booted with max:4096M" in w for w in result["warnings"])
    assert not any(call.startswith("mem-set") for call in host.calls())


def test_live_mem_set_failure_is_reported(host, capsys):
    host.xl()
    host.files()
    # Make the stub's state file unwritable as a directory: mem-set then fails.
    (host.stub / "dom0-mem").mkdir()
    result = host.run(capsys, dom0_mem="6G", live=True)
    assert result["_rc"] == 1 and "mem-set 0 6144m` failed" in result["msg"]
    assert result["rc"] != 0


# ----------------------------------------------------------------------------- a file that is not what its option says (issue 15)

SHADOW = "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n"
PASSWD = "root:x:0:0:root:/root:/bin/bash\n"


@pytest.mark.parametrize("option, content, message", [
    ("grub_default_file", SHADOW, "line 1 is not a shell variable assignment"),
    ("grub_default_file", "LANG=C.UTF-8\nPATH=/usr/bin\n", "no GRUB_ assignment"),
    ("grub_default_file", "GRUB_TIMEOUT=5\n* * * * * root sh\n", "line 2 is not a shell variable assignment"),
    ("grub_default_file", "GRUB_TIMEOUT=5\x00\n", "not a text file"),
    ("xl_conf_file", PASSWD, "line 1 is not an xl.conf setting"),
    ("xl_conf_file", "autoballoon = [\n]]\n", "closes a ["),
    ("xend_config_file", PASSWD, "line 1 is not an s-expression"),
])
def test_a_file_that_is_not_what_its_option_says_is_refused(host, capsys, option, content, message):
    host.xl()
    host.files(xend="xend-config.sxp-debian6")
    target = host.root / "target"
    target.write_text(content)
    before = host.snapshot()
    result = host.run(capsys, dom0_mem="2G", **{option: str(target)})
    assert result["_rc"] == 1 and result["failed"]
    assert result["msg"].startswith("%s: refusing to edit %s: " % (option, target)) and message in result["msg"]
    assert "allowed:" in result["msg"]
    assert target.read_text() == content and host.snapshot() == before


def test_a_link_or_a_directory_is_refused(host, capsys):
    host.xl()
    host.files()
    shadow = host.root / "shadow"
    shadow.write_text("GRUB_TIMEOUT=5\n")  # even a link to a valid-looking file: the link would be replaced
    link = host.root / "grub-link"
    link.symlink_to(shadow)
    result = host.run(capsys, dom0_mem="2G", grub_default_file=str(link))
    assert "it is a symlink" in result["msg"] and shadow.read_text() == "GRUB_TIMEOUT=5\n" and link.is_symlink()
    result = host.run(capsys, dom0_mem="2G", xl_conf_file=str(host.etc))
    assert "xl_conf_file: refusing to edit" in result["msg"] and "not a regular file" in result["msg"]


def test_binary_file_is_refused_not_a_traceback(host, capsys):
    host.xl()
    host.files()
    binary = host.root / "binary"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\xff\xfe\x00")
    result = host.run(capsys, dom0_mem="2G", grub_default_file=str(binary))
    assert result["failed"] and "grub_default_file: refusing to edit" in result["msg"]
    assert binary.read_bytes() == b"\x7fELF\x02\x01\x01\xff\xfe\x00"


@pytest.mark.parametrize("option, name", [("grub_default_file", "cron.d-oomguard"), ("xl_conf_file", "passwd")])
def test_a_missing_file_is_created_only_under_its_own_name(host, capsys, option, name):
    host.xl()
    host.files()
    before = host.snapshot()
    result = host.run(capsys, dom0_mem="2G", **{option: str(host.etc / name)})
    assert result["failed"] and "is not named" in result["msg"] and not (host.etc / name).exists()
    assert host.snapshot() == before


@pytest.mark.parametrize("value, message", [
    ("/etc/default/../shadow", "not a normalised path"),
    ("etc/default/grub", "must be an absolute path"),
    ("/etc/default/grub\n", "control character"),
])
def test_path_options_are_normalised_before_the_host_is_inspected(host, capsys, value, message):
    result = host.run(capsys, dom0_mem="2G", grub_default_file=value)  # no xl: not even detected
    assert result["failed"] and result["msg"].startswith("grub_default_file: ") and message in result["msg"]


def test_every_recorded_file_reads_as_what_it_is():
    from ansible.module_utils import oomguard_xen as xen
    for name in sorted(os.listdir(FIXTURES)):
        option = ("grub_default_file" if name.startswith("grub-") else "xl_conf_file" if name.startswith("xl.conf")
                  else "xend_config_file" if name.startswith("xend") else None)
        if option:
            assert xen.config_file_error(option, "/x/" + name, fixture(name)) is None, name
    assert xen.grub_default_error('GRUB_CMDLINE_LINUX="quiet\n  splash"\nGRUB_TIMEOUT=5\n') is None
    assert xen.xl_conf_error('vif.default.script = "vif-bridge"\nlockfile = [ "a",\n "b" ]\n') is None
