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
                hint=f"{keep} Deactivate it (conda deactivate), then remove it with: "
                f"conda env remove -p {prefix}",
            )


def remove_environment(prefix: Path) -> None:
    """Rename aside, then delete; ``rmtree`` unlinks symlinks and never
    follows them out of the environment."""
    aside = prefix.with_name(f".{prefix.name}{REMOVING_SUFFIX}")
    os.rename(prefix, aside)
    shutil.rmtree(aside)


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
            shutil.rmtree(entry)
            finished.append(entry)
    return finished
