# -*- coding: utf-8 -*-
# Copyright: oomguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading and atomically writing small files.

Standard library only: used by the modules (through Ansiballz) and by the agents
installed on targets. Every file oomguard writes goes through write_file_atomic so
a crash never leaves a half-written drop-in, grub default or metrics file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import stat


def read_text(path, default=None):
    """Return the file's text, or default when it does not exist or is unreadable."""
    try:
        with open(path, "r") as handle:
            return handle.read()
    except (IOError, OSError) as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.ESRCH, errno.EINVAL):
            return default
        raise


def read_first_line(path, default=None):
    text = read_text(path)
    if text is None:
        return default
    return text.split("\n", 1)[0].strip()


def read_int(path, default=None):
    line = read_first_line(path)
    if line is None:
        return default
    try:
        return int(line)
    except ValueError:
        return default


def ensure_dir(path, mode=0o755, uid=0, gid=0):
    """Create path (and parents) owned by uid:gid; returns True when it created it."""
    if os.path.isdir(path):
        return False
    parent = os.path.dirname(path.rstrip("/"))
    if parent and not os.path.isdir(parent):
        ensure_dir(parent, mode, uid, gid)
    os.mkdir(path, mode)
    os.chmod(path, mode)
    _chown_if_root(path, uid, gid)
    return True


def _chown_if_root(path, uid, gid):
    # Only root can give files away; unit tests run unprivileged on tmp trees.
    if os.geteuid() == 0 and uid is not None:
        os.chown(path, uid, gid)


def write_file_atomic(path, content, mode=0o644, uid=0, gid=0):
    """Write content to path atomically: temp file in the same directory, fsync, rename.

    The file ends up owned by uid:gid (when running as root) with mode, and never
    world-writable whatever mode is asked for.
    """
    if mode & stat.S_IWOTH:
        raise ValueError("refusing to write world-writable file %s (mode %o)" % (path, mode))
    # Imported here: tempfile pulls in random and shutil (about 2 MiB of RSS), which
    # the long-running agents only need when they write.
    import tempfile

    directory = os.path.dirname(path) or "."
    if isinstance(content, str):
        content = content.encode("utf-8")
    fd, tmp_path = tempfile.mkstemp(prefix=".oomguard-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_path, mode)
        _chown_if_root(tmp_path, uid, gid)
        os.rename(tmp_path, path)
    except BaseException:
        try:
            os.unlink(tmp_path)
        except OSError:
            pass
        raise
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def remove_file(path):
    """Remove path; True when something was removed."""
    try:
        os.unlink(path)
        return True
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise
