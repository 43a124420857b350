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
