"""SIGINT and SIGTERM (Slurm's time limit) stop the run at a safe point.

Python runs signal handlers in the main thread between bytecodes, so the
handler raises ``Interrupted`` where the run is; every step cleans up its
partial work on the way out. Removing the old environment is the one step
that must never stop halfway, so there the signal waits until it is done.
"""

from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import TYPE_CHECKING

from .exceptions import MigrateError

if TYPE_CHECKING:
    from collections.abc import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(MigrateError):
    """The run was stopped by a signal."""

    def __init__(self, signum: int, where: str = "") -> None:
        self.signum = signum
        name = signal.Signals(signum).name
        super().__init__(
            f"Stopped by {name} {where}".rstrip() if where else f"Stopped by {name}."
        )


class _State:
    deferring = False
    pending: int | None = None


def _handler(signum: int, frame) -> None:
    if _State.deferring:
        _State.pending = signum
        return
    raise Interrupted(signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    previous = {signum: signal.signal(signum, _handler) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def uninterruptible() -> Iterator[None]:
    """Hold signals back for the duration, then act on the last one."""
    _State.deferring, _State.pending = True, None
    try:
        yield
    finally:
        _State.deferring = False
        pending, _State.pending = _State.pending, None
        if pending is not None:
            raise Interrupted(pending)
