import os
import stat

import pytest

from ansible.module_utils import oomguard_files as files


def test_write_file_atomic_creates_with_mode(tmp_path):
    path = str(tmp_path / "a.conf")
    files.write_file_atomic(path, "hello\n", mode=0o640)
    assert files.read_text(path) == "hello\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert [p for p in os.listdir(str(tmp_path)) if p.startswith(".oomguard-")] == []


def test_write_file_atomic_replaces(tmp_path):
    path = str(tmp_path / "a.conf")
    files.write_file_atomic(path, "one")
    inode = os.stat(path).st_ino
    files.write_file_atomic(path, b"two")
    assert files.read_text(path) == "two"
    assert os.stat(path).st_ino != inode  # a rename, never an in-place rewrite


def test_write_file_atomic_refuses_world_writable(tmp_path):
    with pytest.raises(ValueError):
        files.write_file_atomic(str(tmp_path / "x"), "x", mode=0o666)
    assert not (tmp_path / "x").exists()


def test_write_file_atomic_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(OSError):
        files.write_file_atomic(str(tmp_path / "missing-dir" / "x"), "x")
    assert os.listdir(str(tmp_path)) == []


def test_readers(tmp_path):
    (tmp_path / "n").write_text("42\nrest\n")
    (tmp_path / "bad").write_text("x\n")
    assert files.read_int(str(tmp_path / "n")) == 42
    assert files.read_first_line(str(tmp_path / "n")) == "42"
    assert files.read_int(str(tmp_path / "bad"), default=-1) == -1
    assert files.read_text(str(tmp_path / "none"), default="d") == "d"


def test_ensure_dir_and_remove(tmp_path):
    target = str(tmp_path / "a" / "b")
    assert files.ensure_dir(target, mode=0o750) is True
    assert files.ensure_dir(target) is False
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o750
    path = os.path.join(target, "f")
    files.write_file_atomic(path, "x")
    assert files.remove_file(path) is True
    assert files.remove_file(path) is False


# --- hostile paths: nothing is written outside oomguard's own files (issue 15) ---------

def test_write_file_atomic_replaces_a_planted_link_never_its_target(tmp_path):
    target = tmp_path / "shadow"
    target.write_text("secret\n")
    link = tmp_path / "oomguard.prom"
    link.symlink_to(target)
    files.write_file_atomic(str(link), "metrics\n")
    assert target.read_text() == "secret\n"
    assert not link.is_symlink() and link.read_text() == "metrics\n"


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757])
def test_writers_refuse_a_directory_others_may_write(tmp_path, mode):
    place = tmp_path / "open"
    place.mkdir()
    place.chmod(mode)
    with pytest.raises(files.UnsafePathError, match="writable by group or others"):
        files.write_file_atomic(str(place / "state.json"), "{}")
    assert "refused" in files.append_line(str(place / "a.jsonl"), "x\n")
    assert os.listdir(str(place)) == []


def test_writers_refuse_a_directory_reached_through_an_open_one(tmp_path):
    """A link to a safe directory, planted in a directory others may write: refused."""
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    safe = tmp_path / "etc"
    safe.mkdir()
    (open_dir / "log").symlink_to(safe)
    with pytest.raises(files.UnsafePathError):
        files.write_file_atomic(str(open_dir / "log" / "cron"), "* * * * * root sh\n")
    assert "refused" in files.append_line(str(open_dir / "log" / "a.jsonl"), "x\n")
    assert os.listdir(str(safe)) == []


def test_append_line_never_follows_a_link(tmp_path):
    target = tmp_path / "shadow"
    target.write_text("secret\n")
    (tmp_path / "snapshots.jsonl").symlink_to(target)
    (tmp_path / "dangling.jsonl").symlink_to(tmp_path / "created-by-the-link")
    assert "symlink: refused" in files.append_line(str(tmp_path / "snapshots.jsonl"), "{}\n")
    assert "symlink: refused" in files.append_line(str(tmp_path / "dangling.jsonl"), "{}\n")
    assert target.read_text() == "secret\n"
    assert not (tmp_path / "created-by-the-link").exists()


def test_append_line_refuses_a_fifo_and_a_file_others_may_write(tmp_path):
    os.mkfifo(str(tmp_path / "fifo"))
    error = files.append_line(str(tmp_path / "fifo"), "x\n")  # never blocks on a fifo with no reader
    assert "regular file" in error or "cannot open" in error
    shared = tmp_path / "shared.jsonl"
    shared.write_text("")
    shared.chmod(0o666)
    assert "regular file" in files.append_line(str(shared), "x\n")
    assert shared.read_text() == ""


def test_append_line_appends(tmp_path):
    path = str(tmp_path / "a.jsonl")
    assert files.append_line(path, "one\n", mode=0o640) is None
    assert files.append_line(path, b"two\n") is None
    assert files.read_text(path) == "one\ntwo\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


@pytest.mark.parametrize("value,fragment", [
    ("/var/lib/prometheus/node-exporter/../../../../etc/cron.d/oomguard.prom", "normalised"),
    ("/var/lib/prometheus/./oomguard.prom", "normalised"),
    ("/var/lib//oomguard.prom", "normalised"),
    ("/var/lib/oomguard/", "normalised"),
    ("relative/oomguard.prom", "absolute"),
    ("/var/lib/oomguard.prom\n", "control character"),
    ("/var/lib/oom\x00guard.prom", "control character"),
    ("/etc/cron.d/oomguard.prom", "under /etc"),
    ("/usr/lib/x.prom", "under /usr"),
    ("/var/lib/node/oomguard.txt", "with .prom"),
    ("/var/lib/node/.prom", "with .prom"),
    ("/", "normalised"),
    (5, "not a path"),
    (None, "not a path"),
    (["/var/lib/x.prom"], "not a path"),
])
def test_path_error_names_the_option_and_what_is_allowed(value, fragment):
    error = files.path_error("metrics.path", value, suffix=".prom")
    assert error.startswith("metrics.path: ") and fragment in error and "allowed:" in error


def test_path_error_accepts_normal_paths_and_applies_under():
    assert files.path_error("metrics.path", "/var/lib/prometheus/node-exporter/oomguard.prom", suffix=".prom") is None
    assert files.path_error("x", "/var/log/oomguard/snapshots.jsonl", under=("/var/log",)) is None
    assert "outside /var/log" in files.path_error("x", "/var/lib/snapshots.jsonl", under=("/var/log",))
    assert "outside /var/log" in files.path_error("x", "/var/logs/a", under=("/var/log",))
    assert files.path_error("x", "", allow_empty=True) is None
    assert files.path_error("kmsg_path", "/dev/kmsg", system_ok=True) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_a_system_account_may_own_a_directory_on_the_way_not_a_login_user(tmp_path):
    """Debian's node exporter: /var/lib/prometheus is prometheus's, node-exporter/ below is root's."""
    parent = tmp_path / "prometheus"
    leaf = parent / "node-exporter"
    leaf.mkdir(parents=True)
    os.chown(str(parent), 998, 998)
    assert files.untrusted_dir_reason(str(leaf)) is None
    files.write_file_atomic(str(leaf / "oomguard.prom"), "x 1\n")
    os.chown(str(parent), 1500, 1500)
    assert "not root or a system account" in files.untrusted_dir_reason(str(leaf))
    os.chown(str(parent), 0, 0)
    os.chown(str(leaf), 998, 998)
    assert "not root" in files.untrusted_dir_reason(str(leaf))
