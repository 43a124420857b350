"""oomguard_memory_limit against fake /proc, cgroup and drop-in trees and a fake systemctl.

The fake systemctl behaves like systemd where it matters here: `show` prints the unit's
properties, `daemon-reload` loads the drop-ins from disk, `set-property --runtime` sets
the properties and writes the cgroup files the way systemd does (all five on v2, only
memory.limit_in_bytes on v1, nothing where the memory cgroup is read-only).
"""

import os

import pytest

import oomguard_memory_limit as mod
from ansible.module_utils.oomguard_systemd import parse_unit_file

MEMINFO = """MemTotal:        1004032 kB
MemFree:          612340 kB
MemAvailable:     801220 kB
Buffers:           18212 kB
Cached:           214000 kB
SwapCached:            0 kB
SwapTotal:             0 kB
SwapFree:              0 kB
"""

V2_MOUNTS = """sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
cgroup2 {root} cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate,memory_recursiveprot 0 0
"""

# Recorded on a Debian 12 host booted with systemd.unified_cgroup_hierarchy=0 (hybrid).
V1_MOUNTS = """tmpfs /sys/fs/cgroup tmpfs ro,nosuid,nodev,noexec,size=4096k,nr_inodes=1024,mode=755 0 0
cgroup2 {root}/unified cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0
cgroup {root}/systemd cgroup rw,nosuid,nodev,noexec,relatime,xattr,name=systemd 0 0
cgroup {root}/cpu,cpuacct cgroup rw,nosuid,nodev,noexec,relatime,cpu,cpuacct 0 0
cgroup {root}/memory cgroup rw,nosuid,nodev,noexec,relatime,memory 0 0
cgroup {root}/pids cgroup rw,nosuid,nodev,noexec,relatime,pids 0 0
"""

V1_UNLIMITED = "9223372036854771712\n"
V2_DEFAULTS = {"memory.high": "max\n", "memory.max": "max\n", "memory.swap.max": "max\n",
               "memory.low": "0\n", "memory.min": "0\n",
               "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n"}
V1_DEFAULTS = {"memory.limit_in_bytes": V1_UNLIMITED, "memory.memsw.limit_in_bytes": V1_UNLIMITED,
               "memory.soft_limit_in_bytes": V1_UNLIMITED, "memory.usage_in_bytes": "5472256\n"}
PROPS = {"MemoryHigh": "high", "MemoryMax": "max", "MemorySwapMax": "swap_max", "MemoryLow": "low",
         "MemoryMin": "min"}
V2_FILES = {"MemoryHigh": "memory.high", "MemoryMax": "memory.max", "MemorySwapMax": "memory.swap.max",
            "MemoryLow": "memory.low", "MemoryMin": "memory.min"}


def _bytes(text):
    from ansible.module_utils.oomguard_sizes import parse_size
    value = parse_size(text)
    return value if value == "infinity" else str(value)


class FailJson(Exception):
    pass


class FakeSystemd:
    def __init__(self, tree, version, units, readonly=False):
        self.tree = tree
        self.version = version
        self.readonly = readonly
        self.units = units
        self.calls = []

    def unit_dir(self, unit):
        group = self.units[unit].get("ControlGroup")
        if not group:
            return None
        if self.version == "v2":
            return os.path.join(self.tree.cgroup, group.lstrip("/"))
        return os.path.join(self.tree.cgroup, "memory", group.lstrip("/"))

    def apply(self, unit, key, value, write_cgroup=True):
        props = self.units[unit]
        props[key] = _bytes(value) if key in PROPS else value
        directory = self.unit_dir(unit)
        if not write_cgroup:
            return  # modelled conservatively: a reload loads properties, set-property writes the cgroup
        directory = self.unit_dir(unit)
        if self.readonly or directory is None or not os.path.isdir(directory):
            return  # systemd only logs a warning when the cgroup write fails
        if self.version == "v2" and key in V2_FILES:
            text = "max" if props[key] == "infinity" else props[key]
            write(os.path.join(directory, V2_FILES[key]), text + "\n")
        if self.version == "v1" and key == "MemoryMax":
            text = V1_UNLIMITED if props[key] == "infinity" else props[key] + "\n"
            write(os.path.join(directory, "memory.limit_in_bytes"), text)

    def __call__(self, args, environ_update=None):
        assert isinstance(args, list) and args[0] == "/bin/systemctl"
        assert environ_update and environ_update.get("LANG") == "C"
        self.calls.append(args[1:])
        verb = args[1]
        if verb == "show":
            unit = args[2]
            props = self.units.get(unit, {"LoadState": "not-found", "ActiveState": "inactive"})
            wanted = [args[i + 1] for i, arg in enumerate(args) if arg == "-p"]
            return 0, "".join("%s=%s\n" % (key, props.get(key, "")) for key in wanted), ""
        if verb == "daemon-reload":
            for unit in self.units:
                path = os.path.join(self.tree.dropins, unit + ".d", "50-oomguard-memory.conf")
                if os.path.exists(path):
                    with open(path) as handle:
                        for _section, pairs in parse_unit_file(handle.read()).items():
                            for key, value in pairs:
                                self.apply(unit, key, value, write_cgroup=False)
            return 0, "", ""
        if verb == "set-property":
            assert args[2] == "--runtime"
            unit = args[3]
            for item in args[4:]:
                key, _, value = item.partition("=")
                self.apply(unit, key, value)
            return 0, "", ""
        raise AssertionError("unexpected systemctl call %r" % args)


class FakeModule:
    def __init__(self, params, systemd, check_mode=False):
        spec = mod.build_argument_spec()
        self.params = dict((key, value.get("default")) for key, value in spec.items())
        self.params.update(params)
        self.check_mode = check_mode
        self.systemd = systemd

    def fail_json(self, **kwargs):
        raise FailJson(kwargs)

    def get_bin_path(self, name, required=False):
        assert name == "systemctl"
        return "/bin/systemctl"

    def run_command(self, args, environ_update=None):
        return self.systemd(args, environ_update=environ_update)


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)


def read(path):
    with open(path) as handle:
        return handle.read()


class Tree:
    def __init__(self, tmp_path, version, memsw=True):
        self.proc = str(tmp_path / "proc")
        self.cgroup = str(tmp_path / "cgroup")
        self.dropins = str(tmp_path / "etc-systemd-system")
        write(os.path.join(self.proc, "meminfo"), MEMINFO)
        mounts = V2_MOUNTS if version == "v2" else V1_MOUNTS
        write(os.path.join(self.proc, "self", "mounts"), mounts.format(root=self.cgroup))
        self.version = version
        self.memsw = memsw
        if version == "v1":
            write(os.path.join(self.cgroup, "memory", "memory.limit_in_bytes"), V1_UNLIMITED)
            if memsw:
                write(os.path.join(self.cgroup, "memory", "memory.memsw.limit_in_bytes"), V1_UNLIMITED)

    def add_cgroup(self, group):
        base = os.path.join(self.cgroup, group.lstrip("/")) if self.version == "v2" else \
            os.path.join(self.cgroup, "memory", group.lstrip("/"))
        files = dict(V2_DEFAULTS if self.version == "v2" else V1_DEFAULTS)
        if self.version == "v1" and not self.memsw:
            files.pop("memory.memsw.limit_in_bytes")
        for name, text in files.items():
            write(os.path.join(base, name), text)
        return base


def unit_props(group="/system.slice/worker.service", pid="812", active="active"):
    return {"LoadState": "loaded", "ActiveState": active, "ControlGroup": group, "MainPID": pid,
            "MemoryAccounting": "no", "MemoryHigh": "infinity", "MemoryMax": "infinity",
            "MemorySwapMax": "infinity", "MemoryLow": "0", "MemoryMin": "0"}


def setup(tmp_path, version="v2", readonly=False, memsw=True, props=None):
    tree = Tree(tmp_path, version, memsw=memsw)
    props = props or unit_props()
    if props.get("ControlGroup"):
        tree.add_cgroup(props["ControlGroup"])
    systemd = FakeSystemd(tree, version, {"worker.service": props}, readonly=readonly)
    return tree, systemd


def run(tree, systemd, check_mode=False, **params):
    module = FakeModule(params, systemd, check_mode=check_mode)
    return mod.run(module, proc=tree.proc, dropin_dir=tree.dropins, page_size=4096)


def test_v2_writes_dropin_applies_live_and_is_idempotent(tmp_path):
    tree, systemd = setup(tmp_path)
    result = run(tree, systemd, name="worker", max="64M", high="48M")
    assert result["changed"] is True
    assert result["unit"] == "worker.service"
    content = read(result["dropin"])
    assert result["dropin"] == os.path.join(tree.dropins, "worker.service.d", "50-oomguard-memory.conf")
    assert parse_unit_file(content) == {"Service": [("MemoryAccounting", "yes"), ("MemoryHigh", "48M"),
                                                    ("MemoryMax", "64M")]}
    assert oct(os.stat(result["dropin"]).st_mode & 0o777) == "0o644"
    cg = os.path.join(tree.cgroup, "system.slice", "worker.service")
    assert read(os.path.join(cg, "memory.max")).strip() == str(64 << 20)
    assert result["enforced"] is True, result["reason"]
    assert sorted(a["setting"] for a in result["applied"]) == ["high", "max"]
    assert result["unsupported"] == [] and result["not_enforceable"] == []
    assert result["main_pid"] == {"before": 812, "after": 812}
    assert ["set-property", "--runtime", "worker.service", "MemoryAccounting=yes", "MemoryHigh=48M",
            "MemoryMax=64M"] in systemd.calls
    assert not any(call[0] in ("restart", "stop", "start") for call in systemd.calls)

    systemd.calls[:] = []
    again = run(tree, systemd, name="worker", max="64M", high="48M")
    assert again["changed"] is False
    assert again["enforced"] is True
    assert not any(call[0] in ("set-property", "daemon-reload") for call in systemd.calls)


def test_check_mode_writes_nothing_and_predicts_change(tmp_path):
    tree, systemd = setup(tmp_path)
    result = run(tree, systemd, check_mode=True, name="worker.service", max="64M")
    assert result["changed"] is True
    assert not os.path.exists(result["dropin"])
    assert [call[0] for call in systemd.calls] == ["show"]
    assert result["diff"][0]["before"] == ""
    assert "MemoryMax=64M" in result["diff"][0]["after"]
    assert "MemoryMax=infinity" in result["diff"][1]["before"]
    assert "MemoryMax=%d" % (64 << 20) in result["diff"][1]["after"]
    assert result["enforced"] is False


def test_check_mode_after_apply_reports_no_change(tmp_path):
    tree, systemd = setup(tmp_path)
    run(tree, systemd, name="worker", max="64M")
    result = run(tree, systemd, check_mode=True, name="worker", max="64M")
    assert result["changed"] is False
    assert result["enforced"] is True


def test_read_only_memory_cgroup_reports_not_enforced_and_stays_idempotent(tmp_path):
    tree, systemd = setup(tmp_path, readonly=True)
    result = run(tree, systemd, name="worker", max="64M")
    assert result["changed"] is True
    assert os.path.exists(result["dropin"])
    assert result["enforced"] is False
    assert [entry["setting"] for entry in result["not_enforceable"]] == ["max"]
    assert "reads back infinity" in result["reason"]
    again = run(tree, systemd, name="worker", max="64M")
    assert again["changed"] is False
    assert again["enforced"] is False


def test_container_without_unit_memory_cgroup(tmp_path):
    tree, systemd = setup(tmp_path, version="v1", props=unit_props(group="/system.slice/worker.service"))
    # The container cannot create the unit's directory in the read-only memory hierarchy.
    import shutil
    shutil.rmtree(os.path.join(tree.cgroup, "memory", "system.slice"))
    result = run(tree, systemd, name="worker", max="64M")
    assert result["enforced"] is False
    assert "read-only or not delegated" in result["not_enforceable"][0]["reason"]


def test_v1_maps_what_exists_and_reports_the_rest(tmp_path):
    tree, systemd = setup(tmp_path, version="v1")
    result = run(tree, systemd, name="worker", max="64M", swap_max="32M", high="48M", low="16M")
    cg = os.path.join(tree.cgroup, "memory", "system.slice", "worker.service")
    assert read(os.path.join(cg, "memory.limit_in_bytes")).strip() == str(64 << 20)
    assert read(os.path.join(cg, "memory.memsw.limit_in_bytes")).strip() == str(96 << 20)
    assert read(os.path.join(cg, "memory.soft_limit_in_bytes")).strip() == str(48 << 20)
    applied = dict((entry["setting"], entry) for entry in result["applied"])
    assert applied["max"]["via"] == "systemd" and applied["max"]["persistent"] is True
    assert applied["swap_max"]["value"] == 96 << 20 and applied["swap_max"]["persistent"] is False
    assert applied["high"]["exact"] is False and "APPROXIMATE" in applied["high"]["note"]
    assert [entry["setting"] for entry in result["unsupported"]] == ["low"]
    assert result["enforced"] is False
    assert "memory.low" in result["reason"]
    # The drop-in keeps every setting for the day the host runs cgroup v2.
    assert "MemoryLow=16M" in read(result["dropin"])
    again = run(tree, systemd, name="worker", max="64M", swap_max="32M", high="48M", low="16M")
    assert again["changed"] is False


def test_v1_without_swap_accounting(tmp_path):
    tree, systemd = setup(tmp_path, version="v1", memsw=False)
    result = run(tree, systemd, name="worker", max="64M", swap_max="0")
    assert [entry["setting"] for entry in result["unsupported"]] == ["swap_max"]
    assert "swapaccount=0" in result["unsupported"][0]["reason"]


def test_inactive_unit_gets_dropin_and_is_reported(tmp_path):
    tree, systemd = setup(tmp_path, props=unit_props(group="", pid="0", active="inactive"))
    result = run(tree, systemd, name="worker", max="64M")
    assert result["changed"] is True
    assert os.path.exists(result["dropin"])
    assert result["enforced"] is False
    assert "not running" in result["not_enforceable"][0]["reason"]


def test_live_false_only_writes_the_dropin(tmp_path):
    tree, systemd = setup(tmp_path)
    result = run(tree, systemd, name="worker", max="64M", live=False)
    assert os.path.exists(result["dropin"])
    assert not any(call[0] == "set-property" for call in systemd.calls)
    assert "live=false" in result["reason"]


def test_clearing_with_infinity(tmp_path):
    tree, systemd = setup(tmp_path)
    run(tree, systemd, name="worker", max="64M")
    result = run(tree, systemd, name="worker", max="infinity")
    assert result["changed"] is True
    assert "MemoryMax=infinity" in read(result["dropin"])
    cg = os.path.join(tree.cgroup, "system.slice", "worker.service")
    assert read(os.path.join(cg, "memory.max")).strip() == "max"
    assert result["enforced"] is True


@pytest.mark.parametrize("params, message", [
    ({"max": "512Q"}, "'512Q' is not a size"),
    ({"max": "-5M"}, "'-5M' is not a size"),
    ({"max": "150%"}, "above 100% of RAM"),
    ({"high": "1G", "max": "512M"}, "high 1 GiB (1073741824 bytes) is above max"),
    ({"low": "infinity"}, "use a size, or 0 to clear"),
    ({"min": "900M"}, "low/min protections sum to"),
    ({}, "at least one of high, max, swap_max, low, min"),
    ({"name": "bad unit;rm"}, "name: 'bad unit;rm' is not a valid unit name"),
    ({"name": "worker.timer"}, "allowed: service, slice"),
    ({"name": "missing.service", "max": "64M"}, "missing.service is not a unit systemd knows (LoadState=not-found)"),
    ({"max": "64M", "plan": [{"name": "db", "low": "600M"}]}, "db.service 600 MiB"),
    ({"max": "64M", "plan": [{"name": "db", "low": "1M", "bogus": 1}]}, "unknown setting(s) bogus"),
    ({"max": "64M", "reserve": "lots"}, "reserve: 'lots' is not a size"),
])
def test_bad_input_fails_before_touching_anything(tmp_path, params, message):
    tree, systemd = setup(tmp_path)
    params = dict(params)
    params.setdefault("name", "worker")
    with pytest.raises(FailJson) as info:
        run(tree, systemd, **params)
    assert message in info.value.args[0]["msg"]
    assert not os.path.exists(os.path.join(tree.dropins, "worker.service.d"))
    assert not any(call[0] in ("set-property", "daemon-reload") for call in systemd.calls)
    cg = os.path.join(tree.cgroup, "system.slice", "worker.service")
    assert read(os.path.join(cg, "memory.max")) == "max\n"


@pytest.mark.parametrize("unit, settings, message", [
    ("ssh", {"max": "32M"}, "ssh.service: max 32 MiB (33554432 bytes) is below the safe floor"),
    ("cron.service", {"high": "16M"}, "cron.service: high 16 MiB (16777216 bytes) is below the safe floor"),
    ("system.slice", {"max": "256M"}, "system.slice: max 256 MiB (268435456 bytes) is below the safe floor"),
])
def test_safety_floors_refuse_and_write_nothing(tmp_path, unit, settings, message):
    tree, systemd = setup(tmp_path)
    with pytest.raises(FailJson) as info:
        run(tree, systemd, name=unit, **settings)
    assert message in info.value.args[0]["msg"]
    assert not os.path.exists(tree.dropins)
    assert systemd.calls == []


def test_floors_can_be_lowered_explicitly(tmp_path):
    tree = Tree(tmp_path, "v2")
    tree.add_cgroup("/system.slice/ssh.service")
    systemd = FakeSystemd(tree, "v2", {"ssh.service": unit_props(group="/system.slice/ssh.service")})
    result = run(tree, systemd, name="ssh", max="96M", floors={"ssh.service": "64M"})
    assert result["enforced"] is True


def test_slice_gets_a_slice_section(tmp_path):
    tree = Tree(tmp_path, "v2")
    tree.add_cgroup("/user.slice")
    systemd = FakeSystemd(tree, "v2", {"user.slice": unit_props(group="/user.slice", pid="0")})
    result = run(tree, systemd, name="user.slice", max="50%")
    assert parse_unit_file(read(result["dropin"]))["Slice"][1] == ("MemoryMax", "502016K")
    assert result["enforced"] is True
    assert result["settings"]["max"] == 1004032 * 1024 // 2


def test_argument_spec_types():
    spec = mod.build_argument_spec()
    assert spec["name"]["required"] is True
    assert spec["plan"] == {"type": "list", "elements": "dict", "default": []}
    assert spec["live"] == {"type": "bool", "default": True}


@pytest.mark.parametrize("current, value, first", [
    (96 << 20, 160 << 20, True),       # raising memsw: before systemd raises memory.limit_in_bytes
    (160 << 20, 96 << 20, False),      # lowering memsw: after systemd lowered the limit
    ("infinity", 96 << 20, False),     # from unlimited is lowering
    (96 << 20, "infinity", True),      # to unlimited is raising
    (None, 96 << 20, False),           # unreadable: after
])
def test_v1_memsw_write_order(current, value, first):
    target = {"setting": "swap_max", "file": "memory.memsw.limit_in_bytes", "value": value}
    before, after = mod._direct_order([target], {"memory.memsw.limit_in_bytes": current})
    assert (before == [target]) is first and (after == [target]) is (not first)


# --- the login path (the memory_limits role's merged plan) ---------------------------------

LOGIN_PLAN = [
    {"name": "ssh.service", "min": "32M", "optional": True, "origin": "memory_limits_login_path"},
    {"name": "dbus.service", "min": "16M", "optional": True, "origin": "memory_limits_login_path"},
    {"name": "system.slice", "min": "48M", "origin": "memory_limits_login_path"},
]


@pytest.mark.parametrize("check_mode", [False, True])
def test_optional_unit_missing_is_reported_not_refused(tmp_path, check_mode):
    tree, systemd = setup(tmp_path)
    result = run(tree, systemd, check_mode=check_mode, name="dbus.service", min="16M", optional=True,
                 plan=LOGIN_PLAN)
    assert result["changed"] is False and result["found"] is False
    assert result["enforced"] is False
    assert "dbus.service is not on this host (LoadState=not-found): skipped" in result["reason"]
    assert [entry["setting"] for entry in result["not_enforceable"]] == ["min"]
    assert not os.path.exists(result["dropin"])
    assert [call[0] for call in systemd.calls] == ["show"]


def test_optional_is_ignored_for_a_unit_that_exists(tmp_path):
    tree, systemd = setup(tmp_path)
    result = run(tree, systemd, name="worker", min="16M", optional=True)
    assert result["found"] is True and result["enforced"] is True
    assert read(os.path.join(tree.cgroup, "system.slice", "worker.service", "memory.min")).strip() == str(16 << 20)


def test_v1_login_path_min_is_reported_unsupported(tmp_path):
    """cgroup v1 has no memory.min: the drop-in is written, the report stays honest."""
    tree, systemd = setup(tmp_path, version="v1")
    result = run(tree, systemd, name="worker", min="32M", optional=True, plan=LOGIN_PLAN)
    assert result["enforced"] is False
    assert [entry["setting"] for entry in result["unsupported"]] == ["min"]
    assert result["applied"] == [] and result["not_enforceable"] == []
    assert "memory.min" in result["reason"]
    assert "MemoryMin=32M" in read(result["dropin"])
    assert run(tree, systemd, name="worker", min="32M", optional=True, plan=LOGIN_PLAN)["changed"] is False


def test_refusal_names_the_login_path(tmp_path):
    tree, systemd = setup(tmp_path)
    plan = [dict(entry, min="200M") for entry in LOGIN_PLAN]
    with pytest.raises(FailJson) as info:
        run(tree, systemd, name="worker", max="64M", plan=plan)
    assert "memory_limits_login_path protects ssh.service 200 MiB" in info.value.args[0]["msg"]


# --- values that would hurt the host (issue 15) --------------------------------------

@pytest.mark.parametrize("settings, message", [
    ({"max": 0}, "max 0 B (0 bytes) is below the minimum 16 MiB (16777216 bytes) for any unit"),
    ({"max": "0"}, "below the minimum 16 MiB"),
    ({"high": "1K"}, "high 1 KiB (1024 bytes) is below the minimum"),
    ({"max": 1.5}, "max: 1.5 is a fractional number of bytes"),
    ({"max": "\uff11G"}, "ASCII digits"),
    ({"max": "64M\n"}, "is not a size"),
    ({"max": "18446744073709551615"}, "beyond what systemd takes"),
    ({"max": "9" * 10000}, "too long for a size"),
    ({"max": 10 ** 10000}, "beyond what systemd takes"),
    ({"max": [64]}, "is not a size"),
    ({"max": "64M", "floors": "none"}, "floors: 'none' must be a mapping"),
    ({"max": "64M", "floors": {"worker.service": "1.5"}}, None),
])
def test_values_that_hurt_the_host_are_refused_before_systemd_is_asked(tmp_path, settings, message):
    """A zero, a float, a non-ASCII digit or an overflow needs no fact of the host: refused
    before any systemctl call (a host without systemd fails on the value, not on systemctl)."""
    tree, systemd = setup(tmp_path)
    if message is None:  # a floor below the minimum does not lower the minimum
        result = run(tree, systemd, name="worker", **settings)
        assert result["changed"]
        return
    with pytest.raises(FailJson) as info:
        run(tree, systemd, name="dbus", **settings)
    assert message in info.value.args[0]["msg"]
    assert systemd.calls == []
    assert not os.path.exists(tree.dropins)


def test_the_minimum_applies_with_the_floors_disabled(tmp_path):
    tree, systemd = setup(tmp_path)
    with pytest.raises(FailJson) as info:
        run(tree, systemd, name="worker", max="8M", floors={})
    assert "below the minimum 16 MiB" in info.value.args[0]["msg"]
    assert run(tree, systemd, name="worker", max="16M", floors={})["changed"]


@pytest.mark.parametrize("current, value, first", [
    ("infinity", 0, True),             # from unlimited to none: lowered, written first
    (256 << 20, 64 << 20, True),       # lowered
    (0, 64 << 20, False),              # raised: systemd's own order is right
    ("infinity", "infinity", False),   # cleared
    (None, 0, False),                  # unreadable: left to systemd
])
def test_v2_swap_max_lowered_goes_first(current, value, first):
    target = {"setting": "swap_max", "file": "memory.swap.max", "value": value}
    other = {"setting": "max", "file": "memory.max", "value": 64 << 20}
    assert mod._swap_lowered_first([other, target], {"memory.swap.max": current}) == ([target] if first else [])


def test_v2_swap_max_is_written_before_systemd_lowers_max(tmp_path, monkeypatch):
    """A unit over its new max must not be reclaimed into swap that swap_max forbids."""
    tree, systemd = setup(tmp_path)
    events = []
    real_write = mod.write_memory_file

    def spy(directory, name, value, version):
        events.append(("direct", name, len(systemd.calls)))
        return real_write(directory, name, value, version)

    monkeypatch.setattr(mod, "write_memory_file", spy)
    result = run(tree, systemd, name="worker", max="64M", swap_max="0")
    assert result["enforced"] is True, result["reason"]
    assert events and events[0][:2] == ("direct", "memory.swap.max")
    before = [call[0] for call in systemd.calls[:events[0][2]]]
    assert "daemon-reload" not in before and "set-property" not in before, systemd.calls
    cg = os.path.join(tree.cgroup, "system.slice", "worker.service")
    assert read(os.path.join(cg, "memory.swap.max")).strip() == "0"
    assert read(os.path.join(cg, "memory.max")).strip() == str(64 << 20)
