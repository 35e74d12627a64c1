"""Step 3 (the seed's engine): conda's own clone, in-process.

conda rebuilds the environment from the package cache or the channels, so it
fails when those are gone; that failure is turned into ``CloneUnavailable``
so that ``--method auto`` can relocate instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .exceptions import CloneUnavailable

if TYPE_CHECKING:
    from pathlib import Path


def clone(source: Path, dest: Path, *, quiet: bool) -> None:
    from conda.base.context import context
    from conda.exceptions import CondaError
    from conda.misc import clone_env

    try:
        clone_env(
            str(source),
            str(dest),
            verbose=not quiet,
            quiet=quiet,
            index_args={"channel_urls": list(context.channels)},
        )
    except CondaError as err:
        raise CloneUnavailable(
            f"conda's clone of {source} failed: {err}".rstrip(),
            hint="The old environment is untouched. --method relocate copies it "
            "without the package cache or the network.",
        ) from err
