"""A login node's limits on each of a user's processes (``ulimit``, set by
pam_limits or systemd), which a run there meets where a batch job does not.

The CPU-time limit is the kernel's: SIGXCPU at the soft limit, then again
each second, and SIGKILL at the hard one. Sites often set both alike
(``ulimit -t`` does, and pam_limits lowers the soft one to a hard one set
alone), so the first signal is the kill: a run would die mid-copy without
a word, its partial copy left for the next run to remove, and the next run
would die at the same point. So the run lowers its own soft limit a margin
below the hard one (a process may always lower it): SIGXCPU then comes
first, and stops the run as Slurm's SIGTERM does, with CPU time left to
remove the partial copy and to say to run it as a job.
"""

from __future__ import annotations

import ctypes
import math
import os
import resource
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

#: glibc's ``mallopt`` parameter for the most arenas its allocator makes.
_M_ARENA_MAX = -8

#: At most this many CPU seconds are kept for the stop; a tenth of the limit
#: where that is less (removing a partial copy costs a fraction of making it).
MARGIN_S = 60


def _cpu_used() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


#: The limits a Slurm job gets from the shell that ran ``sbatch`` (Slurm's
#: default ``PropagateResourceLimits=ALL`` applies the submitting shell's soft
#: limits in the job), that a run must not keep there: a job's time limit,
#: not a login node's CPU-time limit, bounds it.
_FROM_THE_LOGIN_NODE = (
    resource.RLIMIT_CPU,
    resource.RLIMIT_FSIZE,
    resource.RLIMIT_AS,
    resource.RLIMIT_NPROC,
)


def lift_login_limits_in_a_job() -> None:
    """In a Slurm job, raise those soft limits to the compute node's hard
    ones (a process may): ``--submit`` from a login node that sets
    ``ulimit -t 600`` ran a job that got SIGXCPU at 600 s all the same.
    Not undone: the job's whole run is the process's."""
    if not os.environ.get("SLURM_JOB_ID"):
        return
    for limit in _FROM_THE_LOGIN_NODE:
        soft, hard = resource.getrlimit(limit)
        if soft != hard:
            resource.setrlimit(limit, (hard, hard))


@contextmanager
def stop_ahead_of_cpu_limit() -> Iterator[None]:
    """The soft CPU-time limit lowered to a margin below the hard one for
    the block (never below what the run has used, nor above what the site
    set), and as it was after it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard == resource.RLIM_INFINITY:
        yield
        return
    margin = min(MARGIN_S, max(1, hard // 10))
    ahead = max(hard - margin, math.ceil(_cpu_used()) + 1)
    if soft != resource.RLIM_INFINITY and soft <= ahead:
        yield
        return
    resource.setrlimit(resource.RLIMIT_CPU, (ahead, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def one_arena_within_address_limit() -> None:
    """Where the address space of a process is limited (``ulimit -v``), have
    glibc's allocator serve every thread from one arena. By default each
    thread that allocates gets an arena of its own (up to 8 per CPU), each
    reserving 64 MiB of address space, used or not: 16 threads of a run
    reserved 1.2 GB where one arena needs 0.2, and past a limit each
    allocation of a thread fails in turn and is retried (a run of 32 threads
    under ``ulimit -v 800000`` used a whole CPU for minutes, copying
    nothing). The threads allocate holding Python's lock anyway. Without
    glibc (no ``mallopt``) nothing changes."""
    if resource.getrlimit(resource.RLIMIT_AS)[0] == resource.RLIM_INFINITY:
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_ARENA_MAX, 1)


#: Files a thread of a walk, copy or removal holds open at once (a
#: directory, a file and its copy), and those the run holds besides (its
#: log, locks, Python's and conda's own).
FILES_PER_THREAD = 4
FILES_BESIDES = 48


def threads_for_open_files(threads: int) -> int:
    """``threads``, or fewer where the open files a process may have
    (``ulimit -n``) would not hold them all: past it every open fails with
    EMFILE, and the copy with it."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return threads
    return max(1, min(threads, (soft - FILES_BESIDES) // FILES_PER_THREAD))


def file_size_limit() -> int | None:
    """The most bytes a file this process writes may hold (``ulimit -f``),
    or None. Python ignores SIGXFSZ, so a write past it fails with EFBIG."""
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def file_size_said(limit: int) -> str:
    return f"this login node lets a process write (ulimit -f: {limit // 1024} KB)"


#: What to do about a login node's limit.
AS_A_JOB = (
    "Run it as a Slurm job instead, adding --submit at the end of the same "
    "command: a job is not held to the login node's limits."
)


def thread_limits() -> str:
    """The limits that refuse a thread, as a user reads them: the processes
    and threads of the user (``RLIMIT_NPROC``, which counts each thread), and
    the address space of a process (``RLIMIT_AS``: each thread's stack and
    allocator's arena reserve some)."""
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    space = resource.getrlimit(resource.RLIMIT_AS)[0]
    said = []
    if nproc != resource.RLIM_INFINITY:
        said.append(
            f"the processes and threads this login node allows you (ulimit -u: {nproc})"
        )
    if space != resource.RLIM_INFINITY:
        said.append(
            f"the memory it allows a process to reserve (ulimit -v: {space // 1024} KB)"
        )
    return " or ".join(said) or "the limits of this machine"
