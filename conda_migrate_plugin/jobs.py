"""How many threads relocation and verification use by default, and how
many files each task takes.

A job may run on every CPU of its node: without CPU binding (Slurm's
``task/none``, or a site that binds nothing) the affinity mask is the whole
node, and a ``-c 1`` job would copy with all of its CPUs, on the neighbours'
share. ``SLURM_CPUS_PER_TASK`` is what the job asked for (``-c``), so it
caps the count; the affinity mask caps it where binding is in force.
"""

from __future__ import annotations

import os
from typing import Final

#: Files per task: enough to amortise the pool's overhead over many tiny files.
BATCH: Final = 128


def default_jobs() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    try:
        asked = int(os.environ.get("SLURM_CPUS_PER_TASK", ""))
    except ValueError:
        asked = 0
    return max(1, min(cpus, asked) if asked > 0 else cpus)
