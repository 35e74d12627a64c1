"""conda's directory variables as the run's own environment has them.

``CONDA_ENVS_PATH`` (``CONDA_ENVS_DIRS``, ``CONDA_PKGS_DIRS``) overrides
every condarc: where a site's module (outside the home, not the user's to
change) or a file the run does not read exports it to the scratch
directory the run empties, conda keeps creating environments and caching
packages there after every file the run reads was pointed at the home.
Nothing the run may write can fix that, so it is named, with where to look.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .rewrite import DIR_VARIABLES, Rewriter, environ_path
from .spellings import every_spelling

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    from . import RcEdit
    from .rewrite import DirMove

_DOES = {"envs": "creating environments", "pkgs": "caching packages"}


def variables_left(
    edits: Sequence[RcEdit],
    dir_moves: Sequence[DirMove],
    home: Path,
    environ: Mapping[str, str],
) -> list[str]:
    """A warning for each of conda's directory variables that names a moved
    directory in ``environ`` and that no file of ``edits`` sets: a file that
    does was rewritten (or named) already, and the next login reads it."""
    if not dir_moves:
        return []
    scratch = environ_path(environ, "SCRATCH")
    values = {name: environ.get(os.fsdecode(name), "") for name in DIR_VARIABLES}
    texts = [os.fsencode(value) for value in values.values()]
    _, dir_moves = every_spelling([], dir_moves, home, scratch, texts)
    rewriter = Rewriter([], dir_moves, home, scratch, environ)
    found = []
    for name, (kind, separator) in DIR_VARIABLES.items():
        entries = values[name].split(os.fsdecode(separator))
        moved = rewriter.relocate(entries, kind)
        if moved == entries or any(name in edit.old for edit in edits):
            continue
        left = ", ".join(e for e, new in zip(entries, moved) if new != e)
        wanted = os.fsdecode(separator).join(e for e in moved if e is not None)
        found.append(
            f"{os.fsdecode(name)}={values[name]} in this run's environment names "
            f"{left}, where conda keeps {_DOES[kind]} while it is set, and no "
            "file this run changed sets it: if a new login still has it, find "
            "what sets it (a module of the site's? module show names what each "
            f"loaded module sets) and set it to {wanted} there, or unset it"
        )
    return found
