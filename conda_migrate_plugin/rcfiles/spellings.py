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
import re
from pathlib import Path
from typing import TYPE_CHECKING

from .rewrite import DirMove, EnvMove, is_within

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

#: A path as files write it: absolute, or under ``~``, ``$HOME`` or ``$SCRATCH``.
_PATH = re.compile(
    rb"(~|\$HOME|\$\{HOME\}|\$SCRATCH|\$\{SCRATCH\})?(/[^\s\"'`;|&<>()\[\]{}:,=$\\]+)"
)


def every_spelling(
    env_moves: Sequence[EnvMove],
    dir_moves: Sequence[DirMove],
    home: Path,
    scratch: Path | None,
    texts: Iterable[bytes] = (),
) -> tuple[list[EnvMove], list[DirMove]]:
    """The moves once for each name their old places go by in ``texts``
    (the files to rewrite) or any file."""
    roots = _linked_roots(home, scratch)
    named = _named_paths(texts, home, scratch)
    envs = [
        EnvMove(name, move.dest)
        for move in env_moves
        for name in _same_place(move.source, roots, named)
    ]
    dirs = [
        DirMove(name, move.envs_dest, move.pkgs_dest)
        for move in dir_moves
        for name in _same_place(move.source, roots, named)
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


def _same_place(
    path: Path, roots: Sequence[tuple[Path, Path]], named: set[str]
) -> list[Path]:
    """``path``, its real path, the symlinks beside it and the paths of
    ``named`` that lead to it, and each one's spelling through the other end
    of each of ``roots``."""
    real = os.path.realpath(path)
    names = {path, Path(real), *links_beside(path)}
    names.update(
        Path(spelled)
        for spelled in named
        if spelled.rpartition("/")[2] == path.name and os.path.realpath(spelled) == real
    )
    for name in list(names):
        for link, resolved in roots:
            for one, other in ((link, resolved), (resolved, link)):
                if is_within(name, one):
                    names.add(other / name.relative_to(one))
    return [path, *sorted(names - {path})]


def links_beside(path: Path) -> set[Path]:
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


def _named_paths(texts: Iterable[bytes], home: Path, scratch: Path | None) -> set[str]:
    """Every directory the paths in ``texts`` pass through, absolute: one
    may be a link left where an environment was (``conda-envs/proj ->
    /group/envs/proj``), which a run given the environment's own path would
    not know of, and which leads nowhere once it moved."""
    heads = {b"~": home, b"$HOME": home, b"${HOME}": home}
    if scratch is not None:
        heads.update({b"$SCRATCH": scratch, b"${SCRATCH}": scratch})
    named: set[str] = set()
    for text in texts:
        for match in _PATH.finditer(text):
            if match[1] and match[1] not in heads:
                continue  # $SCRATCH where it is not set
            head = os.fsencode(heads[match[1]]) if match[1] else b""
            parts = os.fsdecode(head + match[2]).split("/")
            named.update("/".join(parts[:end]) for end in range(2, len(parts) + 1))
    return named
