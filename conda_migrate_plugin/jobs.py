"""How many threads the walks of an environment, its relocation, the check
of a clone and the removal use by default, and how many files each task takes.

The work is bound by the filesystem's round trips, not by the CPU: on a
network filesystem (Lustre, GPFS, NFS) each create, stat or unlink waits
0.2-2 ms for the server, and a thread that waits uses no CPU. So the default
is several threads per CPU (``benchmarks/bench_migrate.py``: at 500 us a
round trip, 2 threads took 0.61 times as long as ``cp -a`` + ``rm -rf``, 16
took 0.15), while the CPUs still scale it: a job may run on every CPU of its
node, since without CPU binding (Slurm's ``task/none``) the affinity mask is
the whole node, so ``SLURM_CPUS_PER_TASK``, what the job asked for (``-c``),
caps the CPUs counted; the affinity mask caps them where binding is in force.
"""

from __future__ import annotations

import os
import queue
from typing import TYPE_CHECKING, Final, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from concurrent.futures import Future, ThreadPoolExecutor

T = TypeVar("T")
R = TypeVar("R")

#: Files per task: enough to amortise the pool's overhead over many tiny files.
BATCH: Final = 128

#: Threads per CPU: enough to keep a server busy while each thread waits.
THREADS_PER_CPU = 8
#: Beyond this the server, not the client, is the limit, and a shared
#: filesystem is everyone's.
MAX_THREADS = 32


def default_jobs() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    try:
        asked = int(os.environ.get("SLURM_CPUS_PER_TASK", ""))
    except ValueError:
        asked = 0
    cpus = max(1, min(cpus, asked) if asked > 0 else cpus)
    return min(MAX_THREADS, THREADS_PER_CPU * cpus)


def gather(
    pool: ThreadPoolExecutor,
    task: Callable[[T], R],
    items: Iterable[T],
    *,
    more: Callable[[R], Iterable[T]] | None = None,
    tick: Callable[[], object] | None = None,
    every: float = 0.2,
) -> Iterator[R]:
    """Run ``task`` on each of ``items`` across ``pool``, and on the items
    ``more`` finds in each result as soon as it is in (a tree walked a
    directory per task); yield results as they finish, ``tick`` running
    every ``every`` seconds meanwhile. The first failure is raised and what
    is queued cancelled.

    Results arrive through one queue, and the waiting is its ``get``, in C:
    waiting on every pending future for each result would cost as much as a
    walk of a tree of small directories; and a stop's signal handler raises
    in the main thread wherever it is, which inside ``Condition.wait``
    (``concurrent.futures.wait``, ``Executor.map``) leaves that lock broken,
    so the run crashed instead of stopping cleanly."""
    arrived: queue.SimpleQueue[Future[R]] = queue.SimpleQueue()
    pending: set[Future[R]] = set()

    def submit(item: T) -> None:
        future = pool.submit(task, item)
        pending.add(future)
        future.add_done_callback(arrived.put)

    try:
        for item in items:
            submit(item)
        while pending:
            try:
                future = arrived.get(timeout=every)
            except queue.Empty:
                if tick is not None:
                    tick()
                continue
            pending.discard(future)
            result = future.result()
            for item in more(result) if more is not None else ():
                submit(item)
            yield result
    finally:
        for future in pending:
            future.cancel()
