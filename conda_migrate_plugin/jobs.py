"""How many threads relocation, verification and removal use by default,
and how many files each task takes.

The work is bound by the filesystem's round trips, not by the CPU: on a
network filesystem (Lustre, GPFS, NFS) each create, stat or unlink waits
0.2-2 ms for the server, and a thread that waits uses no CPU. So the default
is several threads per CPU (``benchmarks/bench_migrate.py``: at 500 us a
round trip, 2 threads took 0.8 times as long as ``cp -a`` + ``rm -rf``, 16
took 0.16), while the CPUs still scale it: a job may run on every CPU of its
node, since without CPU binding (Slurm's ``task/none``) the affinity mask is
the whole node, so ``SLURM_CPUS_PER_TASK``, what the job asked for (``-c``),
caps the CPUs counted; the affinity mask caps them where binding is in force.
"""

from __future__ import annotations

import os
from typing import Final

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
