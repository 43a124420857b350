# -*- coding: utf-8 -*-
# Copyright: oomguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading and atomically writing small files.

Standard library only: used by the modules (through Ansiballz) and by the agents
installed on targets. Every file oomguard writes goes through one of the two writers
here, and nothing else opens a file for writing:

  write_file_atomic  temp file, fsync, rename (a drop-in, grub default, metrics, state,
                     status JSON): a crash never leaves a half-written file, and a link
                     planted at the path is replaced, never followed.
  append_line        O_APPEND|O_NOFOLLOW (the event, snapshot and early-kill logs).

Both refuse (UnsafePathError, an OSError) to write unless the file's directory, and
every directory leading to it, is owned by root (or, unprivileged, by the caller: the
unit tests' tmp trees) and writable by nobody else (a sticky /tmp on the way is fine);
a symlink planted by another user therefore cannot send a write out of oomguard's place.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import stat


class UnsafePathError(OSError):
    """A write refused because the path could lead outside oomguard's own files."""

    def __init__(self, reason):
        OSError.__init__(self, errno.EPERM, reason)

    def __str__(self):
        return self.strerror


# Trees no file of oomguard's lives in (configuration, programs, kernel interfaces):
# a path option that points into one is refused whatever its directory's owner.
SYSTEM_TREES = ("/etc", "/boot", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/sys",
                "/dev", "/root")
PATH_RULE = ("an absolute, normalised path (no '.', '..', '//' or trailing '/'; no control characters), "
             "not under %s" % ", ".join(SYSTEM_TREES))


def path_error(name, value, suffix=None, under=None, allow_empty=False, system_ok=False):
    """None when value is a path oomguard may write to for option `name`, else the error
    (naming the option, the value and what is allowed). No fact of the host is needed.

    suffix: the file name must end with it (".prom"); under: a tuple of directories the
    path must lie strictly inside; allow_empty: None or "" means "not written".
    """
    if allow_empty and value in (None, ""):
        return None
    allowed = PATH_RULE if not system_ok else PATH_RULE.split(", not under")[0]
    if suffix:
        allowed += ", ending in %s" % suffix
    if under:
        allowed += ", inside %s" % " or ".join(under)
    if not isinstance(value, str) or not value:
        return "%s: %r is not a path; allowed: %s" % (name, value, allowed)
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "%s: %r contains a control character (newline, NUL, ...); allowed: %s" % (name, value, allowed)
    if not value.startswith("/"):
        return "%s: %r must be an absolute path; allowed: %s" % (name, value, allowed)
    if value == "/" or os.path.normpath(value) != value or "/../" in value + "/" or "/./" in value + "/":
        return "%s: %r is not a normalised path (it would leave its place); allowed: %s" % (name, value, allowed)
    if suffix and (not value.endswith(suffix) or value.rsplit("/", 1)[1] == suffix):
        return "%s: %r does not end in a file name with %s; allowed: %s" % (name, value, suffix, allowed)
    if not system_ok:
        for tree in SYSTEM_TREES:
            if value == tree or value.startswith(tree + "/"):
                return "%s: %r is under %s, where no file of oomguard's belongs; allowed: %s" % (
                    name, value, tree, allowed)
    if under and not any(value.startswith(root.rstrip("/") + "/") for root in under):
        return "%s: %r is outside %s; allowed: %s" % (name, value, " or ".join(under), allowed)
    return None


def _owners(owner_uid=None):
    """The uids trusted to own the directories written into: root, plus the caller
    when it is not root (tests on tmp trees), plus owner_uid when given."""
    owners = set([0, os.geteuid()])
    if owner_uid is not None:
        owners.add(owner_uid)
    return owners


# Below this uid an account is a system account (Debian's and Red Hat's SYS_UID_MAX is 999).
SYSTEM_UID_LIMIT = 1000


def _dir_error(directory, info, owners, final):
    """Why directory is no place to write in, or None.

    The directory written into must be root's. A directory on the way may also belong to a
    system account, never to a login user: distributions do that (Debian's node exporter
    gives /var/lib/prometheus to the prometheus account, its textfile directory below it
    stays root's), and refusing it would stop oomguard's metrics on such hosts.
    """
    if not stat.S_ISDIR(info.st_mode):
        return "%s is not a directory" % directory
    if info.st_uid not in owners and (final or info.st_uid >= SYSTEM_UID_LIMIT):
        return "%s is owned by uid %d, not root%s" % (
            directory, info.st_uid, "" if final else " or a system account")
    writable = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if writable and (final or not info.st_mode & stat.S_ISVTX):
        return "%s is writable by group or others (mode %o)" % (directory, stat.S_IMODE(info.st_mode))
    return None


def untrusted_dir_reason(directory, owner_uid=None):
    """None when directory is a safe place to write in, else why not.

    Safe: the directory and every directory on the way to it (as written and as
    resolved through links) exist, are owned by root (see _owners) and are writable
    by nobody else; an ancestor may be world-writable only with the sticky bit (/tmp).
    owner_uid, when given, must own the directory itself.
    """
    if not directory or not os.path.isabs(directory):
        return "%r is not an absolute directory" % (directory,)
    owners = _owners()
    seen = []
    prefixes = []
    parts = [p for p in directory.split("/") if p]
    for index in range(len(parts) + 1):
        prefixes.append("/" + "/".join(parts[:index]))
    real = os.path.realpath(directory)
    real_parts = [p for p in real.split("/") if p]
    for index in range(len(real_parts) + 1):
        prefixes.append("/" + "/".join(real_parts[:index]))
    for prefix in prefixes:
        resolved = os.path.realpath(prefix)
        if resolved in seen:
            continue
        seen.append(resolved)
        try:
            info = os.stat(resolved)
        except OSError as exc:
            return "cannot stat %s: %s" % (resolved, exc.strerror)
        error = _dir_error(resolved, info, owners, final=resolved == real)
        if error:
            return error
    if owner_uid is not None:
        info = os.stat(real)
        if info.st_uid != owner_uid:
            return "%s is owned by uid %d, not %d" % (real, info.st_uid, owner_uid)
    return None


def check_write_dir(path, owner_uid=None):
    """Raise UnsafePathError unless path's directory is a safe place to write in."""
    directory = os.path.dirname(path) or "."
    reason = untrusted_dir_reason(os.path.abspath(directory), owner_uid)
    if reason:
        raise UnsafePathError("refusing to write %s: %s" % (path, reason))


def append_line(path, data, max_bytes=None, mode=0o640, owner_uid=None):
    """Append data (bytes or str) to path in one write() of O_APPEND; None, or why nothing
    was written (the caller logs it, once).

    Never follows a link at path (O_NOFOLLOW), writes only into a safe directory (see
    untrusted_dir_reason) and only to a regular file of the owner's that nobody else may
    write; max_bytes: a file that has reached it is left as it is.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    directory = os.path.dirname(path)
    reason = untrusted_dir_reason(directory, owner_uid)
    if reason:
        return "%s: %s: refused" % (path, reason)
    owners = _owners() if owner_uid is None else set([owner_uid])
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                     | getattr(os, "O_CLOEXEC", 0), mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "%s is a symlink: refused" % path
        return "cannot open %s: %s" % (path, exc.strerror)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid not in owners \
                or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return "%s is not a regular file of root's that only root may write: refused" % path
        if max_bytes is not None and info.st_size >= max_bytes:
            return "%s has reached %d bytes: record dropped" % (path, max_bytes)
        os.write(fd, data)
    finally:
        os.close(fd)
    return None


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
    check_write_dir(path.rstrip("/"))  # never create inside a directory others may write
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
    check_write_dir(path)
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


def move_aside(path, suffix=".damaged"):
    """Rename a damaged file (a state file that no longer parses) to path + suffix, kept
    for the post-mortem (one copy: a damaged file a start cannot fill the disk); returns
    the new path, or None when it could not be moved (then the caller starts fresh anyway
    and its next save replaces the file)."""
    target = path + suffix
    try:
        check_write_dir(path)
        os.rename(path, target)
    except OSError:
        return None
    return target


def remove_file(path):
    """Remove path; True when something was removed."""
    try:
        os.unlink(path)
        return True
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise
