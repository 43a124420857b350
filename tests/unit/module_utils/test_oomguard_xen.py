"""Unit tests for module_utils/oomguard_xen.py on recorded xl, meminfo, grub and xl.conf files."""

import os

import pytest

from ansible.module_utils import oomguard_xen as xen
from ansible.module_utils.oomguard_memstat import parse_meminfo

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "xen")
MIB = 1024 ** 2
GIB = 1024 ** 3
TOKEN_4G = "dom0_mem=4096M,max:4096M"
TOKEN_6G = "dom0_mem=6144M,max:6144M"


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


def non_xen_lines(text):
    return [line for line in text.splitlines() if "GRUB_CMDLINE_XEN_DEFAULT=" not in line]


# ----------------------------------------------------------------------------- detection / xl output


@pytest.mark.parametrize("name, expected", [
    ("capabilities-dom0", True),
    ("capabilities-domu", False),
])
def test_capabilities(name, expected):
    assert xen.is_dom0_capabilities(fixture(name)) is expected


@pytest.mark.parametrize("name, total_mib, free_mib, version, cmdline_has", [
    ("xl-info-debian12-pinned", 65373, 28461, "4.17.5-pre", TOKEN_4G),
    ("xl-info-debian12-ballooning", 32671, 412, "4.17.5-pre", "placeholder no-real-mode"),
    ("xl-info-qubes-minmax", 30439, 6644, "4.14.0", "dom0_mem=max:4096M"),
    ("xl-info-el6-virt-sig", 6141, 5030, "4.4.1-4.el6", "dom0_mem=1024M,max:1024M"),
])
def test_xl_info_memory(name, total_mib, free_mib, version, cmdline_has):
    info = xen.xl_info_memory(xen.parse_xl_info(fixture(name)))
    assert info["total_bytes"] == total_mib * MIB
    assert info["free_bytes"] == free_mib * MIB
    assert info["xen_version"] == version
    assert cmdline_has in info["xen_commandline"]


def test_xl_info_keeps_colons_in_values_and_empty_fields():
    info = xen.parse_xl_info(fixture("xl-info-el6-virt-sig"))
    assert info["xen_changeset"] == "Wed Oct 15 15:36:23 2014 +0100 git:9f49483-dirty"
    assert xen.parse_xl_info(fixture("xl-info-debian12-pinned"))["xen_changeset"] == ""


def test_xl_info_without_memory_fields():
    assert xen.xl_info_memory(xen.parse_xl_info("host : x\n"))["total_bytes"] is None


@pytest.mark.parametrize("name, dom0_mib, count, names", [
    ("xl-list-debian12-pinned", 4096, 4, ["Domain-0", "web01", "db01", "win2019-hvm"]),
    ("xl-list-debian12-ballooning", 3920, 6, ["Domain-0", "vm16", "vm24", "vm32", "vm40", "mail-hvm"]),
    ("xl-list-0-debian12-pinned", 4096, 1, ["Domain-0"]),
])
def test_parse_xl_list(name, dom0_mib, count, names):
    domains = xen.parse_xl_list(fixture(name))
    assert [d["name"] for d in domains] == names
    assert len(domains) == count
    dom0 = xen.dom0_entry(domains)
    assert dom0["mem_bytes"] == dom0_mib * MIB
    assert dom0["state"] == "r-----"


def test_parse_xl_list_fields_and_spaces_in_names():
    text = ("Name                                        ID   Mem VCPUs\tState\tTime(s)\n"
            "my guest                                    7   512     1     -b----      3.5\n")
    (domain,) = xen.parse_xl_list(text)
    assert domain == {"name": "my guest", "id": 7, "mem_bytes": 512 * MIB, "vcpus": 1,
                      "state": "-b----", "time": 3.5}
    assert xen.dom0_entry([domain]) is None


# ----------------------------------------------------------------------------- dom0_mem syntax


@pytest.mark.parametrize("text, expected", [
    ("4096M", 4 * GIB),
    ("4G", 4 * GIB),
    ("524288", 512 * MIB),  # Xen's default unit is KiB
    ("1048576k", GIB),
    ("2t", 2 * 1024 * GIB),
])
def test_parse_xen_size(text, expected):
    assert xen.parse_xen_size(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "4GB", "-1G", "10%"])
def test_parse_xen_size_rejects(text):
    with pytest.raises(xen.XenError):
        xen.parse_xen_size(text)


@pytest.mark.parametrize("cmdline, initial, minimum, maximum", [
    ("placeholder dom0_mem=4096M,max:4096M dom0_max_vcpus=4", 4 * GIB, None, 4 * GIB),
    ("placeholder dom0_mem=min:1024M dom0_mem=max:4096M smt=off", None, GIB, 4 * GIB),
    ("com1=115200,8n1 guest_loglvl=all dom0_mem=750M console=com1", 750 * MIB, None, None),
    ("dom0_mem=1G dom0_mem=2G,max:3G", 2 * GIB, None, 3 * GIB),  # later wins per key
    ("dom0_mem=-1G,max:8G", None, None, 8 * GIB),  # "all but 1G" is kept raw only
])
def test_cmdline_dom0_mem(cmdline, initial, minimum, maximum):
    parsed = xen.cmdline_dom0_mem(cmdline)
    assert (parsed["initial"], parsed["min"], parsed["max"]) == (initial, minimum, maximum)
    assert parsed["raw"].startswith("dom0_mem=")


def test_cmdline_without_dom0_mem():
    assert xen.cmdline_dom0_mem("placeholder no-real-mode edd=off") is None
    assert xen.cmdline_dom0_mem("") is None


def test_token():
    assert xen.dom0_mem_token(4 * GIB) == TOKEN_4G
    assert xen.dom0_mem_option(1536 * MIB) == "1536M,max:1536M"


@pytest.mark.parametrize("value, total, expected", [
    ("4G", 64 * GIB, 4 * GIB),
    ("4096M", 64 * GIB, 4 * GIB),
    ("1.5G", 64 * GIB, 1536 * MIB),
    (str(2 * GIB), 64 * GIB, 2 * GIB),
    ("10%", 65373 * MIB, 6537 * MIB),  # rounded down to whole MiB
    ("64G", 64 * GIB, 64 * GIB),
    ("4G", None, 4 * GIB),
    ("10%", None, None),  # syntax only until the host's memory is known
])
def test_validate_dom0_mem(value, total, expected):
    assert xen.validate_dom0_mem(value, host_total_bytes=total) == expected


@pytest.mark.parametrize("value, total, message", [
    ("abc", None, "dom0_mem: 'abc' is not a size"),
    ("-4G", None, "is not a size"),
    ("", None, "is not a size"),
    ("1000000", None, "not a whole number of MiB"),
    ("256M", None, "below the 512M minimum"),
    ("65G", 64 * GIB, "above the host's memory (65536M"),
    ("150%", 64 * GIB, "above 100%"),
    ("infinity", None, "not allowed here"),
])
def test_validate_dom0_mem_rejects(value, total, message):
    with pytest.raises(xen.XenError) as err:
        xen.validate_dom0_mem(value, host_total_bytes=total)
    assert message in str(err.value)
    assert "dom0_mem" in str(err.value)


@pytest.mark.parametrize("value, expected", [("256M", 256 * MIB), ("0", 0), ("1G", GIB), (0, 0)])
def test_validate_margin(value, expected):
    assert xen.validate_margin(value) == expected


@pytest.mark.parametrize("value, message", [
    ("-256M", "negative"), ("-1", "negative"), ("abc", "not a size"), ("5%", "percentage"),
])
def test_validate_margin_rejects(value, message):
    with pytest.raises(xen.XenError) as err:
        xen.validate_margin(value)
    assert message in str(err.value) and "margin" in str(err.value)


# ----------------------------------------------------------------------------- sizing rule


@pytest.mark.parametrize("total, guests, hvm, expected_mib", [
    (64 * GIB, 0, 0, 1024),
    (64 * GIB, 4, 1, 1024 + 4 * 32 + 128),
    (64 * GIB, 12, 3, 1024 + 12 * 32 + 3 * 128),
    (256 * GIB, 60, 60, 1024 + 60 * 32 + 60 * 128),
    ("64G", 10, 0, 1024 + 320),
    (2 * GIB, 0, 0, 1024),  # exactly half is allowed
])
def test_dom0_mem_rule(total, guests, hvm, expected_mib):
    assert xen.dom0_mem_rule(total, guests, hvm) == expected_mib * MIB


@pytest.mark.parametrize("total, guests, hvm, message", [
    (4 * GIB, 20, 10, "more than half of the host's 4096M"),
    (64 * GIB, 2, 3, "hvm_guests (3) is more than guests (2)"),
    (64 * GIB, -1, 0, "guests: -1 is not a count"),
    (64 * GIB, True, 0, "guests: True is not a count"),
    ("lots", 1, 0, "not a size"),
])
def test_dom0_mem_rule_rejects(total, guests, hvm, message):
    with pytest.raises(xen.XenError) as err:
        xen.dom0_mem_rule(total, guests, hvm)
    assert message in str(err.value)


# ----------------------------------------------------------------------------- /etc/default/grub


@pytest.mark.parametrize("name, token, expected_line", [
    ("grub-quoted-dom0mem", TOKEN_6G, 'GRUB_CMDLINE_XEN_DEFAULT="%s dom0_max_vcpus=4"' % TOKEN_6G),
    ("grub-quoted-no-dom0mem", TOKEN_6G,
     'GRUB_CMDLINE_XEN_DEFAULT="dom0_max_vcpus=1-4 ucode=scan console=com1,vga com1=115200,8n1 %s"' % TOKEN_6G),
    ("grub-unquoted-dom0mem", TOKEN_6G, "GRUB_CMDLINE_XEN_DEFAULT=%s" % TOKEN_6G),
    ("grub-single-quoted-dom0mem", TOKEN_6G,
     "GRUB_CMDLINE_XEN_DEFAULT='%s loglvl=all guest_loglvl=all'" % TOKEN_6G),
    ("grub-commented", TOKEN_6G, 'GRUB_CMDLINE_XEN_DEFAULT="%s"' % TOKEN_6G),
    ("grub-debian12-stock", TOKEN_6G, 'GRUB_CMDLINE_XEN_DEFAULT="%s"' % TOKEN_6G),
])
def test_set_grub_keeps_everything_else(name, token, expected_line):
    before = fixture(name)
    after = xen.set_grub_xen_dom0_mem(before, token)
    active = [line for line in after.splitlines() if line.startswith("GRUB_CMDLINE_XEN_DEFAULT=")]
    assert active == [expected_line]
    # Every other line is kept byte for byte, in order (a new line is only appended).
    assert non_xen_lines(after) == non_xen_lines(before)
    assert xen.grub_xen_dom0_mem(after) == [token]
    assert after.endswith("\n")
    # Idempotent.
    assert xen.set_grub_xen_dom0_mem(after, token) == after


def test_set_grub_commented_line_stays_commented():
    after = xen.set_grub_xen_dom0_mem(fixture("grub-commented"), TOKEN_6G)
    assert '#GRUB_CMDLINE_XEN_DEFAULT="dom0_mem=512M"\n' in after
    assert after.endswith('GRUB_CMDLINE_XEN_DEFAULT="%s"\n' % TOKEN_6G)


def test_set_grub_unchanged_when_already_pinned():
    before = fixture("grub-quoted-dom0mem")
    assert xen.set_grub_xen_dom0_mem(before, TOKEN_4G) == before


def test_set_grub_unquoted_value_gains_quotes_when_it_grows():
    before = "GRUB_CMDLINE_XEN_DEFAULT=smt=off\n"
    assert xen.set_grub_xen_dom0_mem(before, TOKEN_4G) == 'GRUB_CMDLINE_XEN_DEFAULT="smt=off %s"\n' % TOKEN_4G


def test_set_grub_multiple_assignments():
    before = fixture("grub-multiple")
    after = xen.set_grub_xen_dom0_mem(before, TOKEN_6G)
    lines = after.splitlines()
    assert 'GRUB_CMDLINE_XEN_DEFAULT="dom0_max_vcpus=4"' in lines
    assert 'GRUB_CMDLINE_XEN_DEFAULT="$GRUB_CMDLINE_XEN_DEFAULT %s smt=off"' % TOKEN_6G in lines
    assert 'GRUB_CMDLINE_XEN="com1=115200,8n1 console=com1"' in lines
    assert xen.grub_xen_dom0_mem(after) == [TOKEN_6G]
    assert xen.set_grub_xen_dom0_mem(after, TOKEN_6G) == after


@pytest.mark.parametrize("before, expected", [
    ('export GRUB_CMDLINE_XEN_DEFAULT="dom0_mem=1G"  # pinned\n',
     'export GRUB_CMDLINE_XEN_DEFAULT="%s"  # pinned\n' % TOKEN_4G),
    ('  GRUB_CMDLINE_XEN_DEFAULT=""\n', '  GRUB_CMDLINE_XEN_DEFAULT="%s"\n' % TOKEN_4G),
    ('GRUB_CMDLINE_XEN_DEFAULT=\n', 'GRUB_CMDLINE_XEN_DEFAULT=%s\n' % TOKEN_4G),
    ('GRUB_CMDLINE_XEN_DEFAULT="a dom0_mem=1G b dom0_mem=max:2G c"\n',
     'GRUB_CMDLINE_XEN_DEFAULT="a %s b c"\n' % TOKEN_4G),
    ('GRUB_TIMEOUT=5', 'GRUB_TIMEOUT=5\nGRUB_CMDLINE_XEN_DEFAULT="%s"\n' % TOKEN_4G),
    (None, 'GRUB_CMDLINE_XEN_DEFAULT="%s"\n' % TOKEN_4G),
    ('GRUB_CMDLINE_XEN_DEFAULT="x"\r\n', 'GRUB_CMDLINE_XEN_DEFAULT="x %s"\r\n' % TOKEN_4G),
])
def test_set_grub_forms(before, expected):
    assert xen.set_grub_xen_dom0_mem(before, TOKEN_4G) == expected


def test_set_grub_refuses_multiline_value():
    with pytest.raises(xen.XenError) as err:
        xen.set_grub_xen_dom0_mem('GRUB_CMDLINE_XEN_DEFAULT="dom0_mem=1G\n  smt=off"\n', TOKEN_4G)
    assert "line 1" in str(err.value) and "closing" in str(err.value)


def test_grub_other_warnings():
    warnings = xen.grub_other_dom0_mem_warnings(
        'GRUB_CMDLINE_XEN="dom0_mem=2G com1=115200"\nGRUB_CMDLINE_XEN_DEFAULT="dom0_mem=4G"\n', "/etc/default/grub")
    assert len(warnings) == 1 and "line 1" in warnings[0]
    assert xen.grub_other_dom0_mem_warnings(fixture("grub-multiple"), "g") == []


def test_grub_dropin_override():
    # Debian's stock xen.cfg only has the variable commented out.
    assert xen.grub_dropin_override_warning(fixture("grub.d-xen.cfg-debian12"), "xen.cfg") is None
    text = fixture("grub.d-xen.cfg-debian12").replace('#GRUB_CMDLINE_XEN_DEFAULT=""',
                                                      'GRUB_CMDLINE_XEN_DEFAULT="dom0_mem=2G"')
    assert "overrides the pin" in xen.grub_dropin_override_warning(text, "xen.cfg")


@pytest.mark.parametrize("have, links, expected", [
    ({"update-grub": "/usr/sbin/update-grub", "grub-mkconfig": "/usr/sbin/grub-mkconfig"}, {},
     ["/usr/sbin/update-grub"]),
    ({"grub2-mkconfig": "/usr/sbin/grub2-mkconfig"}, {"/etc/grub2.cfg": "/boot/grub2/grub.cfg"},
     ["/usr/sbin/grub2-mkconfig", "-o", "/boot/grub2/grub.cfg"]),
    ({"grub2-mkconfig": "/usr/sbin/grub2-mkconfig"}, {}, ["/usr/sbin/grub2-mkconfig", "-o", "/boot/grub2/grub.cfg"]),
    ({"grub2-mkconfig": "/usr/sbin/grub2-mkconfig"}, {"/etc/grub2.cfg": "/boot/efi/EFI/centos/grub.cfg"},
     ["/usr/sbin/grub2-mkconfig", "-o", "/boot/efi/EFI/centos/grub.cfg"]),
    ({"grub-mkconfig": "/usr/sbin/grub-mkconfig"}, {}, ["/usr/sbin/grub-mkconfig", "-o", "/boot/grub/grub.cfg"]),
    ({}, {}, []),
])
def test_grub_update_command(have, links, expected):
    assert xen.grub_update_command(have, resolve=links.get) == expected


# ----------------------------------------------------------------------------- xl.conf


@pytest.mark.parametrize("name, value_before, line_after", [
    ("xl.conf-debian12", "auto", 'autoballoon="off"'),
    ("xl.conf-autoballoon-1", "1", 'autoballoon="off"'),
    ("xl.conf-autoballoon-on", "on", 'autoballoon="off"'),
    ("xl.conf-autoballoon-off", "off", 'autoballoon="off"'),
    ("xl.conf-autoballoon-0", "0", "autoballoon = 0  # dom0 pinned with dom0_mem"),
])
def test_xl_autoballoon_off(name, value_before, line_after):
    before = fixture(name)
    assert xen.xl_autoballoon(before) == value_before
    after = xen.set_xl_autoballoon_off(before)
    assert xen.xl_autoballoon(after) in xen.AUTOBALLOON_OFF_VALUES
    active = [line for line in after.splitlines() if line.startswith("autoballoon")]
    assert active == [line_after]
    others_before = [line for line in before.splitlines() if not line.startswith("autoballoon")]
    others_after = [line for line in after.splitlines() if not line.startswith("autoballoon")]
    assert others_after == others_before
    assert xen.set_xl_autoballoon_off(after) == after


def test_xl_autoballoon_inserted_after_commented_example():
    after = xen.set_xl_autoballoon_off(fixture("xl.conf-debian12")).splitlines()
    index = after.index('#autoballoon="auto"')
    assert after[index + 1] == 'autoballoon="off"'


def test_xl_autoballoon_unchanged_files():
    for name in ("xl.conf-autoballoon-off", "xl.conf-autoballoon-0"):
        assert xen.set_xl_autoballoon_off(fixture(name)) == fixture(name)


@pytest.mark.parametrize("before, expected", [
    ("", 'autoballoon="off"\n'),
    (None, 'autoballoon="off"\n'),
    ('lockfile="/var/lock/xl"', 'lockfile="/var/lock/xl"\nautoballoon="off"\n'),
    ('autoballoon="off"\nautoballoon="auto"\n', 'autoballoon="off"\nautoballoon="off"\n'),
    ("  autoballoon = 'on'   # comment\n", 'autoballoon="off"\n'),
])
def test_xl_autoballoon_forms(before, expected):
    assert xen.set_xl_autoballoon_off(before) == expected


# ----------------------------------------------------------------------------- xend-config.sxp


def test_xend_config():
    before = fixture("xend-config.sxp-debian6")
    after = xen.set_xend_dom0_memory(before, 4096)
    assert "(enable-dom0-ballooning no)\n" in after and "(enable-dom0-ballooning yes)" not in after
    assert "(dom0-min-mem 4096)\n" in after and "(dom0-min-mem 196)" not in after
    # Only those two lines differ.
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert changed == [("(dom0-min-mem 196)", "(dom0-min-mem 4096)"),
                       ("(enable-dom0-ballooning yes)", "(enable-dom0-ballooning no)")]
    assert xen.set_xend_dom0_memory(after, 4096) == after


def test_xend_config_commented_defaults():
    before = "#(dom0-min-mem 196)\n# (enable-dom0-ballooning yes)\n(dom0-cpus 0)\n"
    after = xen.set_xend_dom0_memory(before, 2048)
    assert after == ("#(dom0-min-mem 196)\n(dom0-min-mem 2048)\n# (enable-dom0-ballooning yes)\n"
                     "(enable-dom0-ballooning no)\n(dom0-cpus 0)\n")


# ----------------------------------------------------------------------------- live apply


@pytest.mark.parametrize("name, used_kib", [
    ("meminfo-dom0-4096M", 3995612 - 2871240),
    ("meminfo-dom0-squeezed", 3864180 - 204812),
])
def test_dom0_used_bytes_excludes_reclaimable_cache(name, used_kib):
    meminfo = parse_meminfo(fixture(name))
    assert xen.dom0_used_bytes(meminfo) == used_kib * 1024
    # Not MemTotal - MemFree: the page cache would count as use.
    assert xen.dom0_used_bytes(meminfo) < meminfo["MemTotal"] - meminfo["MemFree"]


def test_dom0_used_bytes_empty():
    assert xen.dom0_used_bytes({}) is None


USED_SQUEEZED = (3864180 - 204812) * 1024  # about 3573.6M


@pytest.mark.parametrize("target, current, used, margin, kwargs, action, reason", [
    (4 * GIB, 4 * GIB, USED_SQUEEZED, 256 * MIB, {}, "none", "already has 4096M"),
    (6 * GIB, 3920 * MIB, USED_SQUEEZED, 256 * MIB, {"host_total": 32 * GIB}, "set", "growing dom0 from 3920M to 6144M"),
    # Growing is allowed even when dom0 is squeezed below use + margin today.
    (3968 * MIB, 3920 * MIB, USED_SQUEEZED, 1 * GIB, {}, "set", "growing"),
    (2 * GIB, 3920 * MIB, USED_SQUEEZED, 256 * MIB, {}, "refuse",
     "refusing to shrink dom0 from 3920M to 2048M: dom0 uses 3573M (MemTotal - MemAvailable) and the safety "
     "margin is 256M, so the target must be at least 3830M"),
    (3584 * MIB, 3920 * MIB, USED_SQUEEZED, 256 * MIB, {}, "refuse", "at least 3830M"),
    (3840 * MIB, 3920 * MIB, USED_SQUEEZED, 256 * MIB, {}, "set", "shrinking dom0 from 3920M to 3840M"),
    (3580 * MIB, 3920 * MIB, USED_SQUEEZED, 0, {}, "set", "shrinking"),
    (2 * GIB, 4 * GIB, None, 0, {}, "refuse", "cannot read its use"),
    (2 * GIB, None, GIB, 0, {}, "refuse", "cannot read dom0's current memory"),
    (8 * GIB, 4 * GIB, GIB, 0, {"running_max": 4 * GIB}, "blocked", "booted with max:4096M"),
    (40 * GIB, 4 * GIB, GIB, 0, {"host_total": 32 * GIB}, "refuse", "above the host's 32768M"),
])
def test_plan_live(target, current, used, margin, kwargs, action, reason):
    plan = xen.plan_live(target, current, used, margin, **kwargs)
    assert plan["action"] == action
    assert reason in plan["reason"]


def test_plan_live_warns_when_xen_has_too_little_free():
    plan = xen.plan_live(8 * GIB, 3920 * MIB, GIB, 0, host_total=32 * GIB, host_free=412 * MIB)
    assert plan["action"] == "set"
    assert "only 412M free" in plan["warnings"][0]


def test_mem_set_argv():
    assert xen.mem_set_argv("/usr/sbin/xl", 6 * GIB) == ["/usr/sbin/xl", "mem-set", "0", "6144m"]
