"""Step 5: remove the old environment, the one irreversible step.

The environment is first renamed aside within its own directory (atomic on
any POSIX filesystem) and only then deleted, so that a job killed midway
leaves either the whole environment or a clearly named leftover that the
next run finishes deleting, never a half-deleted environment that still
looks usable.
"""

from __future__ import annotations

import os
import shutil
import stat
from typing import TYPE_CHECKING

from .discover import HISTORY, REMOVING_SUFFIX, under
from .exceptions import MigrateError

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path


def check_removable(prefix: Path, scanned: Path, protected: Iterable[Path]) -> None:
    """Refuse anything that must never be deleted, before it could be."""
    keep = "The environment was not removed; its copy is in place."
    if prefix.is_symlink():
        raise MigrateError(
            f"{prefix} is a symlink; conda-migrate never removes through one.",
            hint=keep,
        )
    if not (prefix / HISTORY).is_file():
        raise MigrateError(
            f"{prefix} no longer looks like an environment (no conda-meta/history).",
            hint=keep,
        )
    resolved = prefix.resolve()
    if resolved != scanned.resolve() and not under(prefix, scanned):
        raise MigrateError(
            f"{prefix} lies outside the scanned directory {scanned}.", hint=keep
        )
    for other in protected:
        if resolved == other.resolve():
            raise MigrateError(
                f"{prefix} is the base environment or the active one; it is never removed.",
                hint=f"{keep} Deactivate it (conda deactivate) and run again to remove it.",
            )


def _make_writable(root: Path) -> None:
    """Give the owner write and search permission on every directory below
    ``root``: an unprivileged owner cannot empty a read-only directory (a
    Julia depot, anything ``chmod -w``), as conda's ``rm_rf`` knows."""
    mode = root.lstat().st_mode
    if stat.S_ISDIR(mode) and mode & 0o700 != 0o700:
        os.chmod(root, stat.S_IMODE(mode) | 0o700)
    for dirpath, dirnames, _ in os.walk(root):
        for name in dirnames:
            path = os.path.join(dirpath, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISDIR(mode) and mode & 0o700 != 0o700:
                os.chmod(path, stat.S_IMODE(mode) | 0o700)


def remove_tree(root: Path) -> None:
    """``rmtree``, which unlinks symlinks and never follows them out of the
    tree; a directory it may not empty is made writable, once, and the
    removal goes on."""
    try:
        shutil.rmtree(root)
    except PermissionError:
        _make_writable(root)
        shutil.rmtree(root)


def remove_environment(prefix: Path) -> None:
    """Rename aside, then delete."""
    aside = prefix.with_name(f".{prefix.name}{REMOVING_SUFFIX}")
    os.rename(prefix, aside)
    remove_tree(aside)


def finish_removals(directory: Path) -> list[Path]:
    """Delete what a killed run had already renamed aside."""
    finished = []
    try:
        entries = list(directory.iterdir())
    except OSError:
        return finished
    for entry in entries:
        if (
            entry.name.startswith(".")
            and entry.name.endswith(REMOVING_SUFFIX)
            and not entry.is_symlink()
        ):
            remove_tree(entry)
            finished.append(entry)
    return finished
