import pytest

from ansible.module_utils import oomguard_memstat as memstat

MEMINFO = """MemTotal:        1004036 kB
MemFree:           61240 kB
MemAvailable:     301520 kB
Buffers:            9940 kB
Cached:           252928 kB
SwapCached:            0 kB
SwapTotal:        524284 kB
SwapFree:         393212 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
"""


def test_parse_meminfo_bytes_and_counts():
    info = memstat.parse_meminfo(MEMINFO)
    assert info["MemTotal"] == 1004036 * 1024
    assert info["HugePages_Total"] == 0
    assert info["Hugepagesize"] == 2048 * 1024


def test_memory_summary():
    summary = memstat.memory_summary(memstat.parse_meminfo(MEMINFO))
    assert summary["mem_available_bytes"] == 301520 * 1024
    assert summary["mem_available_percent"] == pytest.approx(30.03, abs=0.01)
    assert summary["swap_used_bytes"] == (524284 - 393212) * 1024
    assert summary["swap_used_percent"] == pytest.approx(25.0, abs=0.01)


def test_memory_summary_no_swap_no_memavailable():
    summary = memstat.memory_summary(memstat.parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nCached: 50 kB\n"))
    assert summary["mem_available_bytes"] == 150 * 1024
    assert summary["swap_used_percent"] == 0.0


def test_parse_vmstat_selected_keys():
    text = "nr_free_pages 15310\npswpin 12\npswpout 40\noom_kill 3\npgmajfault 99\n"
    assert memstat.parse_vmstat(text) == {"pswpin": 12, "pswpout": 40, "oom_kill": 3, "pgmajfault": 99}
    assert memstat.parse_vmstat(text, keys=None)["nr_free_pages"] == 15310


def test_parse_psi():
    text = ("some avg10=1.53 avg60=0.87 avg300=0.21 total=3514891\n"
            "full avg10=0.50 avg60=0.20 avg300=0.05 total=1201009\n")
    psi = memstat.parse_psi(text)
    assert psi["some"] == {"avg10": 1.53, "avg60": 0.87, "avg300": 0.21, "total": 3514891}
    assert psi["full"]["avg10"] == 0.5


def test_readers_on_fake_proc(tmp_path):
    (tmp_path / "meminfo").write_text(MEMINFO)
    (tmp_path / "vmstat").write_text("oom_kill 7\n")
    (tmp_path / "sys" / "vm").mkdir(parents=True)
    (tmp_path / "sys" / "vm" / "panic_on_oom").write_text("1\n")
    (tmp_path / "sys" / "vm" / "overcommit_memory").write_text("2\n")
    assert memstat.read_meminfo(str(tmp_path))["MemTotal"] == 1004036 * 1024
    assert memstat.read_vmstat(str(tmp_path)) == {"oom_kill": 7}
    assert memstat.read_psi(str(tmp_path)) is None  # PSI disabled: no /proc/pressure
    assert memstat.read_oom_sysctls(str(tmp_path)) == {
        "panic_on_oom": 1, "oom_kill_allocating_task": None, "overcommit_memory": 2, "overcommit_ratio": None}
    (tmp_path / "pressure").mkdir()
    (tmp_path / "pressure" / "memory").write_text("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
    assert memstat.read_psi(str(tmp_path))["some"]["total"] == 0
