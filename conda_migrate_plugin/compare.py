"""Step 3: the site guide's comparison of the old and the new environment.

The same packages (name, version, build, channel) and the same pip
distributions: anything else means the copy is not the environment the user
had, and the old one must stay.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from .classify import is_environment
from .exceptions import MigrateError

if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from .backends import Backend
    from .records import EnvContents


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


def differences_from(source: Path, dest: Path, backend: Backend) -> list[str]:
    """Why the existing ``dest`` is not a copy of ``source``; empty when it
    is one. A rerun (after ``--keep-old``, or with the old environment
    active) finds its copy in place; an environment built anew from the
    same packages lacks what the user added (notes, activation scripts), so
    the files are compared as a copy is verified, not only the packages.
    What only the copy has is allowed: it may have been used since."""
    from .relocation.verify import verify_files

    if dest.is_symlink() and dest.resolve() == source.resolve():
        # Made so conda finds it by name; "remove the other one" would send
        # a user to ``rm -rf DEST/``, which deletes the environment itself.
        rm = f"rm {shlex.quote(str(dest))} (with no / at the end)"
        return [
            f"it is a symlink to this environment; {rm} removes the link alone, then run this again"
        ]
    if dest.is_symlink() or not is_environment(dest):
        return ["it is not a conda environment"]
    try:
        differences = compare_contents(backend.contents(source), backend.contents(dest))
        if differences:
            return differences
        return verify_files(source, dest, dest, extra_allowed=True).problems
    except (MigrateError, OSError) as err:
        return [f"it cannot be compared: {err}"]
