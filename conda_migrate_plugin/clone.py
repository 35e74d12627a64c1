"""Step 3 (the seed's engine): conda's own clone, in-process.

conda rebuilds the environment from the package cache or the channels, so it
fails when those are gone; that failure is turned into ``CloneUnavailable``
so that ``--method auto`` can relocate instead.
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

from .exceptions import CloneUnavailable
from .interrupt import check
from .prefix import PrefixRewrite

if TYPE_CHECKING:
    from pathlib import Path

#: conda's clone copies only package files and files no package owns, so
#: the pins and the environment variables (``conda env config vars``) would
#: be lost; they name the prefix at most in text.
DROPPED_BY_CLONE = ("conda-meta/pinned", "conda-meta/state")


def clone(source: Path, dest: Path, *, quiet: bool) -> None:
    from conda.base.context import context
    from conda.exceptions import CondaError, CondaHTTPError
    from conda.misc import clone_env

    try:
        # verbose=False: its "Files:" counts only the files no package owns;
        # the caller prints the environment's own counts, as for relocation.
        clone_env(
            str(source),
            str(dest),
            verbose=False,
            quiet=quiet,
            index_args={"channel_urls": list(context.channels)},
        )
    except CondaError as err:
        # A stop is a stop, never a reason to try relocation instead.
        check(err)
        # conda's first line is often a bare path or URL.
        reason = (
            "a channel could not be reached over the network"
            if isinstance(err, CondaHTTPError)
            else "the package files are in neither the cache nor a reachable channel"
        )
        raise CloneUnavailable(
            f"conda's clone of {source} failed: {err}".rstrip(),
            reason=reason,
            hint="The old environment is untouched. --method relocate copies it "
            "without the package cache or the network.",
        ) from err
    check()


def carry_dropped(source: Path, dest: Path) -> list[str]:
    """Copy what clone leaves behind into the clone; returns what was carried."""
    rewrite = PrefixRewrite(str(source), str(dest))
    carried = []
    for rel in DROPPED_BY_CLONE:
        old, new = source / rel, dest / rel
        if old.is_file() and not new.exists():
            new.write_bytes(rewrite.substitute(old.read_bytes()))
            shutil.copymode(old, new)
            carried.append(rel)
    return carried
