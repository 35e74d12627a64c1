"""Nothing is removed before the copy would survive a power cut.

A file written a moment ago lives in the page cache; on ext4 (delayed
allocation) or a network filesystem a crash then brings it back empty. So
the copy's whole filesystem is flushed (``syncfs``: one call, however many
files) and the directory entries that make it reachable are synced, before
the source is touched.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from typing import TYPE_CHECKING

from .atomic import fsync_directory

if TYPE_CHECKING:
    from pathlib import Path

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _syncfs(fd: int) -> None:
    if _libc.syncfs(fd) != 0:
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL):
            raise OSError(err, os.strerror(err))
        os.sync()


def flush_tree(path: Path) -> None:
    """Write everything on ``path``'s filesystem to stable storage, then
    the entry of ``path`` in its parent (a rename is a change of the parent)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _syncfs(fd)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_directory(path.parent)


def flush_file(path: Path) -> None:
    """Make a file another program wrote in place (conda's environments.txt)
    durable, when it exists."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_directory(path.parent)
