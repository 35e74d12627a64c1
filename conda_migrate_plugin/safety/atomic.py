"""Small files written so that a killed job or a power cut leaves the old
bytes or the new, never a truncated file: written to a fresh name beside the
target, synced, renamed over it, and the directory synced.

The temporary name is unique and opened with ``O_EXCL | O_NOFOLLOW``: in a
directory others can write to (a shared ``--yaml-dir``), a symlink planted
at a predictable name would otherwise redirect the write into any file of
the user's (``~/.bashrc``). ``rename`` replaces a symlink at the target
itself rather than following it.
"""

from __future__ import annotations

import os
import secrets
import stat
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


def fsync_directory(path: Path | str) -> None:
    """Make a rename or a creation in ``path`` survive a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(
    path: Path,
    data: str | bytes,
    *,
    mode: int = 0o644,
    like: os.stat_result | None = None,
) -> None:
    """Replace ``path`` with ``data``. ``like`` is the file being replaced
    (an rc file): the new one gets its owner and exactly its mode, whatever
    the umask (see ``_owned_like`` for a group the user cannot give);
    otherwise ``mode``, less the umask."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{secrets.token_hex(6)}.partial")
    fd = os.open(
        partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode & 0o777
    )
    try:
        _write(fd, data)
        if like is not None:
            os.fchmod(fd, _owned_like(fd, like))
        os.fsync(fd)
    except BaseException:
        os.unlink(partial)
        raise
    finally:
        os.close(fd)
    try:
        os.replace(partial, path)
    except BaseException:
        os.unlink(partial)
        raise
    fsync_directory(path.parent)


def _owned_like(fd: int, like: os.stat_result) -> int:
    """Give the new file ``like``'s owner and group; return the mode it
    gets. A file root made for the user (a home's skeleton copied with
    group root) has a group the user is not in and cannot give: the new
    file keeps the user's own group then, and of the group's permissions
    only those everyone has, so that no member of that group gains access.
    Failing instead would leave an rc file activating an environment that
    was just removed."""
    mode = stat.S_IMODE(like.st_mode)
    written = os.fstat(fd)
    if (written.st_uid, written.st_gid) == (like.st_uid, like.st_gid):
        return mode
    try:
        os.fchown(fd, like.st_uid, like.st_gid)
    except PermissionError:
        if written.st_uid != like.st_uid:
            raise
        return mode & ~(0o070 & ~((mode & 0o007) << 3))
    return mode


def write_new(path: Path, data: bytes, *, mode: int) -> None:
    """Create ``path``, which must not exist (``FileExistsError``), with
    exactly ``mode``: a backup, never written over an earlier one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)  # the umask must not loosen or tighten it
        _write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_directory(path.parent)


def _write(fd: int, data: str | bytes) -> None:
    with open(fd, "w" if isinstance(data, str) else "wb", closefd=False) as stream:
        stream.write(data)
