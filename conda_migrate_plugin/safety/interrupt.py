"""SIGINT (Ctrl-C), SIGTERM (Slurm's time limit), SIGHUP (a closed
terminal) and SIGXCPU (a login node's CPU-time limit) stop the run at a
safe point.

Python runs signal handlers in the main thread between bytecodes, so the
handler raises ``Interrupted`` where the run is; every step cleans up its
partial work on the way out. Removing the old environment is the one step
that must never stop halfway, so there the signal waits until it is done.

A signal is also remembered: code the run does not own (conda's clone) may
catch the exception, wrap it, or install its own handler for a while, and
the run must stop all the same.
"""

from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..exceptions import Interrupted
from ..limits import lift_login_limits_in_a_job, stop_ahead_of_cpu_limit
from .startup import SIGNALS, take

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FrameType


class _State:
    deferring = False
    pending: int | None = None
    received: int | None = None


def _handler(signum: int, frame: FrameType | None) -> None:
    if signum == signal.SIGXCPU and _State.received == signum:
        # The kernel's reminder each CPU second past the soft limit: the
        # run is stopping already, and its clean-up must not be cut short.
        return
    _State.received = signum
    if _State.deferring:
        _State.pending = signum
        return
    raise Interrupted(signum)


def received(error: BaseException | None = None) -> int | None:
    """The signal that stopped the run, if one did: ours, or conda's own
    ``CondaSignalInterrupt`` anywhere in ``error``'s causes (conda holds
    SIGINT and SIGTERM itself while its transaction runs, and may wrap the
    exception in a ``CondaMultiError``)."""
    seen: set[int] = set()
    pending = [error]
    while pending:
        err = pending.pop()
        if not isinstance(err, BaseException) or id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, Interrupted):
            return err.signum
        if type(err).__name__ == "CondaSignalInterrupt":
            # Matched by name: conda is not imported where it is not installed.
            details = err.dump_map()  # type: ignore[attr-defined]
            _State.received = details.get("signum") or signal.SIGINT
        pending += [err.__cause__, err.__context__, *getattr(err, "errors", ())]
    return _State.received


def check(error: BaseException | None = None) -> None:
    """Raise ``Interrupted`` if a signal came, even if ``error`` hides it."""
    signum = received(error)
    if signum is not None:
        raise Interrupted(signum) from error


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """The run's own handling; a signal the console script noted in its
    start-up (see ``startup``) stops the run as soon as this is in place.
    A login node's CPU-time limit stops it too, ahead of its kill, and in
    a Slurm job the login node's limits are lifted (see ``limits``)."""
    _State.received = None
    previous = {signum: signal.signal(signum, _handler) for signum in SIGNALS}
    try:
        early = take()
        if early is not None:
            _handler(early, None)
        lift_login_limits_in_a_job()
        with stop_ahead_of_cpu_limit():
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
