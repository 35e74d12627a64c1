"""A directory renamed to a name only while nothing is there.

``rename(2)`` replaces an empty directory at the target without a word. Where
a directory goes back under a name that a job may have made anew meanwhile
(``mkdir $CONDA_PREFIX``, even left empty), that would replace the job's
directory; so Linux's ``renameat2(2)`` with ``RENAME_NOREPLACE`` is used,
which fails instead in the same atomic step. Python's ``os.rename`` takes no
flags: it is called through ctypes.

Network filesystems often lack the flag (NFS and FUSE daemons that do not
implement it answer ``EINVAL``), as do kernels before 3.15 (``ENOSYS``) and C
libraries without the call. There the name is taken first with ``mkdir``,
which fails if anything is there (atomic on NFS too), and the directory is
renamed over that empty placeholder; whatever is put into the placeholder
meanwhile makes the rename fail (``ENOTEMPTY``) and is kept. What stays racy
there: a process that enters the placeholder in the instant between the two
calls (its ``mkdir -p`` finds the name taken and makes nothing) is left in a
directory that is gone, and a kill between them leaves the placeholder, which
the next run takes for a directory made anew (and says so, touching neither).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

#: From <linux/fcntl.h> and <linux/fs.h>.
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
#: The answers of a kernel, filesystem or C library without the flag.
_UNSUPPORTED = (errno.EINVAL, errno.ENOSYS)


def rename_noreplace(source: Path, target: Path) -> None:
    """Rename the directory ``source`` to ``target``, or raise
    ``FileExistsError`` and change nothing when anything is at ``target``."""
    call = _renameat2()
    if call is not None:
        if not call(
            _AT_FDCWD,
            os.fsencode(source),
            _AT_FDCWD,
            os.fsencode(target),
            _RENAME_NOREPLACE,
        ):
            return
        err = ctypes.get_errno()
        if err not in _UNSUPPORTED:
            raise OSError(err, os.strerror(err), str(source), None, str(target))
    _rename_over_placeholder(source, target)


def _renameat2() -> Callable[..., int] | None:
    """The C library's ``renameat2``, where there is one (glibc 2.28 on)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        call = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    path, at = ctypes.c_char_p, ctypes.c_int
    call.argtypes = (at, path, at, path, ctypes.c_uint)
    call.restype = ctypes.c_int
    return call


def _rename_over_placeholder(source: Path, target: Path) -> None:
    """Take the name with an empty directory of our own, then rename over
    it: a plain rename replaces only that placeholder, never a directory
    someone else made."""
    os.mkdir(target, 0o700)
    try:
        os.rename(source, target)
    except OSError as err:
        # Still ours and empty unless someone put something in it.
        with contextlib.suppress(OSError):
            os.rmdir(target)
        if err.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise FileExistsError(
                errno.EEXIST, "something was put there meanwhile", str(target)
            ) from err
        raise
