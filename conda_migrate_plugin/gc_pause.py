"""Python's cyclic garbage collector held off while one environment moves.

A migration allocates millions of small objects that form no cycles (stat
results, listing entries, parsed records, findings) and keeps many alive
to the end (the listing, the records conda and the copy parse). The
default collector counts them all the same: a pass every 700 allocations,
and full passes over everything alive, which took 0.3-0.4 s of a 3.7 s
relocation of 21,000 files on a tmpfs (``benchmarks/bench_migrate.py``).
Reference counting still frees every acyclic object at once; what cycles a
migration leaves (an exception's traceback) wait for the collector, which
runs again as soon as the environment is done.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic collection inside the block; the collector as it was after
    (a caller that had turned it off keeps it off)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
