"""Step 3: the site guide's comparison of the old and the new environment.

The same packages (name, version, build, channel) and the same pip
distributions: anything else means the copy is not the environment the user
had, and the old one must stay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .exceptions import MigrateError

if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from .backends import Backend
    from .backends.records import EnvContents


def compare_contents(old: EnvContents, new: EnvContents) -> list[str]:
    """Human-readable differences; empty when the environments are the same."""
    differences: list[str] = []
    pairs: tuple[tuple[str, tuple[Any, ...], tuple[Any, ...]], ...] = (
        ("conda package", old.conda, new.conda),
        ("pip package", old.pip, new.pip),
    )
    for kind, before, after in pairs:
        differences += [
            f"missing in the copy: {kind} {p}" for p in sorted(set(before) - set(after))
        ]
        differences += [
            f"only in the copy: {kind} {p}" for p in sorted(set(after) - set(before))
        ]
    return differences


def already_migrated(source: Path, dest: Path, backend: Backend) -> bool:
    """A rerun (after ``--keep-old``, or with the old environment active)
    finds the copy in place: the same packages means there is nothing to do."""
    if not (dest / "conda-meta" / "history").is_file() or dest.is_symlink():
        return False
    try:
        return not compare_contents(backend.contents(source), backend.contents(dest))
    except (MigrateError, OSError):
        return False
