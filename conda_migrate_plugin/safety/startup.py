"""Signals that come while the console script starts, before the run's own
handling (``interrupt.stop_on_signals``) is in place.

The start-up is the run's imports and, where conda is installed, conda's own
(its imports, context, plugins and parser: about 0.3 s, longer where conda
lives on a network filesystem). Python's defaults there make SIGINT a
``KeyboardInterrupt``, which conda reports as "CondaError: KeyboardInterrupt"
with exit code 1 (for every command), and let SIGTERM and SIGHUP end the
process without a word. So from the console script's first line they are
noted instead, and the run stops on the first as it begins. They are not
raised where they come: conda's start-up catches any ``Exception`` in places
(a plugin that raises one while it loads is skipped with a warning), and
would carry on. Nothing of this module imports conda: it is in place before
conda is.
"""

from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FrameType

#: What stops a run: Ctrl-C, Slurm's time limit, a closed terminal, a login
#: node's CPU-time limit (see ``limits``).
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGXCPU)

_noted: list[int] = []


def _note(signum: int, frame: FrameType | None) -> None:
    _noted.append(signum)


@contextmanager
def noted_until_the_run() -> Iterator[list[int]]:
    """The signals that came in the block and that no run took (``take``),
    once it ends: where conda ended before the run began (``--help``, a usage
    error), the console script still ends with 128 + N, as Python's default
    would. None is left behind for a later run in the same process."""
    left: list[int] = []
    _noted.clear()
    previous = {signum: signal.signal(signum, _note) for signum in SIGNALS}
    try:
        yield left
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        left += _noted
        _noted.clear()


def take() -> int | None:
    """The first signal noted so far, for the run to stop on: none is left
    for the console script to report again."""
    first = _noted[0] if _noted else None
    _noted.clear()
    return first
