"""Writing a file so that readers see the old content or the new, never half of it.

Used for everything gradlint writes that someone else may read at the same time or that the user
owns: fixed source files, cache entries, baselines, per-rank runtime reports.

Two entry points:

- `write_atomic(path, data, mode)`: gradlint's own files (cache entries, baselines, rank
  reports): temp file in the same folder, then `os.replace`.
- `write_source(path, data, expected_sha256)`: a user's source file (`--fix`, `--add-noqa`).
  Writes only if the file still holds exactly the bytes the edit was computed from, keeps what
  makes the file the user's (hard links, owner, group, mode, extended attributes, symlinks), and
  refuses read-only files. See its docstring for the contract.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tempfile
from typing import Optional

try:  # POSIX: serialise concurrent gradlint writers of one file (advisory; editors do not lock)
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]


class SourceWriteRefused(Exception):
    """A source file was deliberately left unwritten. The message is one line without the path
    (callers print `PATH: message`, as the CLI does for every per-file problem)."""


class SourceChanged(SourceWriteRefused, ValueError):
    """The file no longer holds the bytes the edit was computed from (another process, an editor
    save, or a second path to the same file that was already rewritten in this run)."""


class ReadOnlySource(SourceWriteRefused, PermissionError):
    """The file is read-only (no write permission bit, or not writable by this user)."""

    def __init__(self, message: str) -> None:
        PermissionError.__init__(self, errno.EACCES, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def sha256(data: bytes) -> str:
    """The hex SHA-256 of `data`: the digest `write_source` expects."""
    return hashlib.sha256(data).hexdigest()


def write_atomic(path: str, data: bytes, mode: Optional[int] = 0o644) -> None:
    """Write `data` to a temp file in `path`'s folder, then os.replace it over `path`.

    `mode` is applied to the temp file before the swap (mkstemp creates it 0600; a cache or
    baseline may be shared). An existing `path` without any write permission bit is refused
    with `ReadOnlySource` (os.replace would silently replace it, even as root). On any failure
    the temp file is removed and the exception propagates; `path` is untouched. For users'
    source files use `write_source` instead.
    """
    try:
        existing = os.stat(path)
    except OSError:
        existing = None
    if existing is not None and stat.S_ISREG(existing.st_mode) and not existing.st_mode & 0o222:
        raise ReadOnlySource("read-only file; not modified")
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".gradlint-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def write_source(path: str, data: bytes, expected_sha256: str) -> None:
    """Replace the content of the user's source file `path` with `data`, but only if the file
    still holds exactly the bytes whose SHA-256 is `expected_sha256` (use `sha256(bytes)` on the
    bytes the edit was computed from, read before decoding).

    Contract (what the fix / noqa code can rely on):
    - Symlinks are followed: the link's target is rewritten, the link stays a link.
    - Returns normally only when `data` was written.
    - Raises `SourceChanged` (a ValueError) when the file's current bytes do not match the
      digest: nothing is written; recompute the edit or skip the file with the message.
      The check is made under an advisory lock (POSIX) right before the swap, so two gradlint
      runs fixing one file (or two paths to it) never apply an edit to the wrong bytes.
    - Raises `ReadOnlySource` (a PermissionError) when the file has no write permission bit or
      the user may not write it: nothing is written (even as root).
    - Raises OSError on other I/O failures: nothing is written, no temp file is left.
    - A file with one link is replaced atomically (temp file in the same folder, fsync,
      os.replace) after giving the temp file the original's mode, owner, group and extended
      attributes. If any of those cannot be carried over (another user's file in a folder we may
      write, an xattr we may not set), or the file has several hard links, or the folder is not
      writable, the file is instead rewritten in place (same inode: links, owner and attributes
      survive; a crash mid-write could leave it partial, which is why it is not the default).
    """
    target = os.path.realpath(path)
    before = os.stat(target)
    if not stat.S_ISREG(before.st_mode):
        raise SourceChanged("not a regular file; not modified")
    if not (before.st_mode & 0o222) or not os.access(target, os.W_OK):
        raise ReadOnlySource("read-only file; not modified")
    with _Locked(target) as handle:
        current = handle.read()
        if sha256(current) != expected_sha256:
            raise SourceChanged("changed since it was linted; not modified")
        st = os.fstat(handle.fileno())
        if st.st_nlink > 1 or not _replace_keeping_metadata(target, data, st):
            _write_in_place(handle, data)


class _Locked:
    """Open `target` for reading and writing, holding an exclusive advisory lock on the inode
    that is at `target` now (retrying if it was replaced while we waited for the lock)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.handle = None

    def __enter__(self):
        for _ in range(50):
            handle = open(self.target, "r+b")
            if fcntl is None:
                self.handle = handle
                return handle
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                now = os.stat(self.target)
                held = os.fstat(handle.fileno())
            except BaseException:
                handle.close()
                raise
            if (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
                self.handle = handle
                return handle
            handle.close()  # replaced by another writer while we waited: lock the new one
        raise SourceChanged("keeps changing while being written; not modified")

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            self.handle.close()  # releases the lock


def _replace_keeping_metadata(target: str, data: bytes, st: os.stat_result) -> bool:
    """Atomic swap with a temp file that carries `st`'s mode, owner and xattrs. False (nothing
    changed, temp file removed) when the folder is not writable or metadata cannot be kept."""
    folder = os.path.dirname(target) or "."
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".gradlint-", suffix=".tmp")
    except OSError:
        return False
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
            if not _copy_metadata(out.fileno(), target, st):
                _unlink_quietly(tmp)
                return False
        os.replace(tmp, target)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return True


def _copy_metadata(fd: int, source: str, st: os.stat_result) -> bool:
    try:
        if hasattr(os, "fchown") and (os.fstat(fd).st_uid, os.fstat(fd).st_gid) != (st.st_uid, st.st_gid):
            os.fchown(fd, st.st_uid, st.st_gid)
        if hasattr(os, "fchmod"):
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
    except OSError:
        return False
    if hasattr(os, "listxattr"):
        try:
            names = os.listxattr(source)
        except OSError as err:
            return err.errno in (errno.ENOTSUP, getattr(errno, "EOPNOTSUPP", errno.ENOTSUP))
        for name in names:
            try:
                os.setxattr(fd, name, os.getxattr(source, name))
            except OSError:
                return False
    return True


def _write_in_place(handle, data: bytes) -> None:
    handle.seek(0)
    handle.write(data)
    handle.truncate()
    handle.flush()
    os.fsync(handle.fileno())


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
