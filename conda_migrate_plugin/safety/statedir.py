"""Where conda-migrate keeps its own state: ``~/.conda/migrate``.

The journal in there decides what a later run deletes, so nobody else may
write to it: conda creates ``~/.conda`` group-writable (2775), and on a
cluster whose users share a primary group, a file planted there by a
colleague would otherwise be obeyed. The directory is made 0700 and refused
when it is not the user's own or others can write to it; its files are
read only when the user owns them.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from ..exceptions import UsageError
from ..names import JOURNAL, LOCKS, LOGS, MOVES

if TYPE_CHECKING:
    from pathlib import Path


def _check(path: Path, st: os.stat_result) -> None:
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise UsageError(
            f"{path} is not a directory of yours; conda-migrate keeps its journal "
            "there and will not trust it. Nothing was done.",
            hint=f"Remove or rename {path} (look at what is in it first), then run again.",
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UsageError(
            f"{path} can be written by other users, so its journal cannot be "
            "trusted. Nothing was done.",
            hint=f"Run 'chmod 700 {path}' and look at what is in it, then run again.",
        )


def ensure_private(state_dir: Path, *, create: bool = True) -> None:
    """Create the state directory 0700 (and its parts), or refuse it."""
    for path in (
        state_dir,
        *(state_dir / part for part in (JOURNAL, LOCKS, LOGS, MOVES)),
    ):
        if create:
            _make(path)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if create:
                raise
            continue
        _check(path, st)


def _make(path: Path) -> None:
    """``mkdir`` first, whatever is there (it never follows a symlink): a
    directory that is missing is made without first being looked up as
    missing, a round trip each on a network filesystem that does not cache
    absences; what was there is checked after, as what was made is."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(path, 0o700)


def owned_file(path: Path) -> bool:
    """A regular file of the user's, reached without a symlink."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid()
