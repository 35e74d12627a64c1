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

On a local filesystem (ext4, XFS, tmpfs) a call is a copy in the page cache
and the work is Python's: threads only take turns at its lock, and on a
tmpfs 1 thread took 2.84 s where 16 took 3.92. So the default follows what
the source and the destination are (``statfs``'s type): one thread where
both are local, the figures above where either is a network filesystem or
one this table does not know.
"""

from __future__ import annotations

import ctypes
import errno
import os
import queue
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final, TypeVar

from .limits import (
    one_arena_within_address_limit,
    thread_limits,
    threads_for_open_files,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from concurrent.futures import Future
    from pathlib import Path

T = TypeVar("T")
R = TypeVar("R")

#: Files per task: enough to amortise the pool's overhead over many tiny files.
BATCH: Final = 128

#: Threads per CPU: enough to keep a server busy while each thread waits.
THREADS_PER_CPU = 8
#: Beyond this the server, not the client, is the limit, and a shared
#: filesystem is everyone's.
MAX_THREADS = 32


#: ``statfs`` ``f_type`` of filesystems whose every metadata call is a round
#: trip to a server (Linux's magic numbers; FUSE stands for whatever serves it).
NETWORK: Final = {
    0x6969: "NFS",
    0x0BD00BD0: "Lustre",
    0x47504653: "GPFS",
    0x19830326: "BeeGFS",
    0xFF534D42: "CIFS",
    0xFE534D42: "SMB2",
    0x517B: "SMB",
    0x65735546: "FUSE",
    0x00C36400: "CephFS",
    0x6B414653: "AFS",
    0x5346414F: "AFS",
    0x01021997: "9P",
    0xAAD7AAEA: "PanFS",
}
#: Filesystems on a disk (or in memory) of this node.
LOCAL: Final = {
    0xEF53: "ext4",
    0x58465342: "XFS",
    0x9123683E: "btrfs",
    0x01021994: "tmpfs",
    0x858458F6: "ramfs",
    0x2FC12FC1: "ZFS",
    0xF2F52010: "F2FS",
    0x794C7630: "overlayfs",
}


def filesystem_type(path: Path) -> int | None:
    """``statfs``'s ``f_type`` of the filesystem holding ``path`` (or, where
    it does not exist yet, its nearest existing parent); None where it
    cannot be read. Python's ``os.statvfs`` does not return the type, and
    ``f_type`` is the first field of Linux's ``struct statfs`` on every ABI
    (a word, read as ``long``; 256 bytes hold the whole struct)."""
    if not sys.platform.startswith("linux"):
        return None
    path = path.absolute()
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    buffer = ctypes.create_string_buffer(256)
    try:
        statfs = ctypes.CDLL(None, use_errno=True).statfs
    except (OSError, AttributeError):
        return None
    if statfs(os.fsencode(path), buffer) != 0:
        return None
    return ctypes.c_long.from_buffer(buffer).value & 0xFFFFFFFF


def describe(fs_type: int | None) -> str:
    if fs_type is None:
        return "a filesystem whose type could not be read"
    name = NETWORK.get(fs_type) or LOCAL.get(fs_type)
    return name or f"a filesystem of unknown type {fs_type:#x}"


def choose_jobs(source: int | None, dest: int | None) -> tuple[int, str]:
    """The default thread count for a copy from a filesystem of type
    ``source`` to one of type ``dest``, and why, for the log. One thread
    only where both are known to be local: an unknown type may be a
    network filesystem, where one thread would be many times slower."""
    where = f"source on {describe(source)}, destination on {describe(dest)}"
    if source in LOCAL and dest in LOCAL:
        return 1, f"{where}: local, where more threads only contend for Python's lock"
    jobs = default_jobs()
    return jobs, (
        f"{where}: threads wait on round trips there "
        f"({THREADS_PER_CPU} per CPU, at most {MAX_THREADS})"
    )


def jobs_for(source: Path, dest: Path) -> tuple[int, str]:
    """``choose_jobs`` for the filesystems that hold these paths."""
    return choose_jobs(filesystem_type(source), filesystem_type(dest))


def default_jobs() -> int:
    """Threads for a network filesystem: ``THREADS_PER_CPU`` per CPU the
    job may use, at most ``MAX_THREADS``."""
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


class ThreadsRefused(OSError):
    """Not one thread of a pool could start. An ``OSError`` (the kernel's
    ``EAGAIN``), so that each step handles it as any failed call: a copy is
    removed, a removal not yet begun is put back and finished by the next
    run."""

    def __init__(self, why: str) -> None:
        super().__init__(errno.EAGAIN, why)
        self.why = why

    def __str__(self) -> str:
        return self.why


class _Threads(ThreadPoolExecutor):
    """A pool that goes on with the threads it could start. A login node's
    limits refuse a thread where a job's would not (``limits.thread_limits``),
    and the user's other processes count too, so how many start is known
    only by starting them. ``ThreadPoolExecutor`` starts one per ``submit``
    until it has its number, after queueing the work, which the threads it
    has then take; it raises ``RuntimeError`` for one that cannot start."""

    def _adjust_thread_count(self) -> None:
        try:
            super()._adjust_thread_count()
        except RuntimeError as err:
            if not self._threads:
                raise ThreadsRefused(
                    f"no thread could be started ({err}): you are at "
                    f"{thread_limits()}. End some of your processes here, or run "
                    "it as a Slurm job (--submit), then run the same command again."
                ) from err
            self._max_workers = len(self._threads)


@contextmanager
def pool(jobs: int | None = None) -> Iterator[ThreadPoolExecutor]:
    """The threads of one walk, copy, check or removal: ``jobs`` of them,
    or ``default_jobs()``; fewer where the open files allowed would not
    serve them all, or where no more can start. Work still queued when the
    block is left (a failure, a stop) is cancelled, not started."""
    one_arena_within_address_limit()
    executor = _Threads(max_workers=threads_for_open_files(jobs or default_jobs()))
    try:
        yield executor
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


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
