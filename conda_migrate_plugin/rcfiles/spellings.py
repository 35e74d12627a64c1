"""The other names of an old place that a user's files may use.

``$SCRATCH`` is often a symlink (``/scratch/u`` to ``/gpfs/scratch/u``),
users reach it by one of their own (``~/scratch``), and keep a link to an
environment beside it (``analysis -> analysis-2024``): a file written with
one spelling, and a run given another, would leave the next login activating
a removed environment and conda creating new ones in the directory just
emptied. Each is found from the names alone where the place is gone (the
run removed it), since its parents and the links still resolve.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from .rewrite import DirMove, EnvMove, is_within

if TYPE_CHECKING:
    from collections.abc import Sequence


def every_spelling(
    env_moves: Sequence[EnvMove],
    dir_moves: Sequence[DirMove],
    home: Path,
    scratch: Path | None,
) -> tuple[list[EnvMove], list[DirMove]]:
    """The moves once for each name their old places go by in a file."""
    roots = _linked_roots(home, scratch)
    envs = [
        EnvMove(name, move.dest)
        for move in env_moves
        for name in _same_place(move.source, roots)
    ]
    dirs = [
        DirMove(name, move.envs_dest, move.pkgs_dest)
        for move in dir_moves
        for name in _same_place(move.source, roots)
    ]
    return envs, dirs


def _linked_roots(home: Path, scratch: Path | None) -> list[tuple[Path, Path]]:
    """Each directory a file may reach scratch through, with its real path:
    ``$SCRATCH`` as set, and the symlinks at the top of the home directory."""
    links = [scratch] if scratch else []
    try:
        with os.scandir(home) as entries:
            links += [Path(entry.path) for entry in entries if entry.is_symlink()]
    except OSError:
        pass
    return [(link, Path(os.path.realpath(link))) for link in links]


def _same_place(path: Path, roots: Sequence[tuple[Path, Path]]) -> list[Path]:
    """``path``, its real path, the symlinks beside it that lead to it, and
    each one's spelling through the other end of each of ``roots``."""
    names = {path, Path(os.path.realpath(path)), *_links_to(path)}
    for name in list(names):
        for link, real in roots:
            for one, other in ((link, real), (real, link)):
                if is_within(name, one):
                    names.add(other / name.relative_to(one))
    return [path, *sorted(names - {path})]


def _links_to(path: Path) -> set[Path]:
    """The symlinks beside ``path`` that lead to it: a user activates
    ``analysis -> analysis-2024`` by the link, which the run lists as no
    environment of its own and leaves, leading nowhere once its target moved."""
    real = os.path.realpath(path)
    try:
        with os.scandir(path.parent) as entries:
            return {
                Path(entry.path)
                for entry in entries
                if entry.is_symlink() and os.path.realpath(entry.path) == real
            }
    except OSError:
        return set()
