"""Inside a Slurm job, stop ahead of the time limit, whatever started the run.

At the limit Slurm sends SIGTERM to the job and SIGKILLs what is left once
the batch script has ended. A run that the script started as its child
(``sbatch --wrap "conda migrate ..."``, the site guide's recipe) outlives its
shell by milliseconds, too few to remove a partial copy. So the run asks
Slurm once when its job ends and sends itself the SIGTERM ahead of it: the
same safe stop as Slurm's, whatever the wrapper. The lead is ``STOP_AHEAD``
seconds, or a tenth of the time limit when that is shorter.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Time to remove a partial copy of a large environment on a parallel
#: filesystem, or to finish a removal already begun: a few minutes of a job
#: of hours.
STOP_AHEAD = 300


def job_times(job_id: str) -> tuple[float, float] | None:
    """The job's start and end, or None where Slurm cannot say (no
    ``scontrol`` on the node, no time limit)."""
    try:
        shown = subprocess.run(
            ["scontrol", "show", "job", "-o", job_id],
            # A user's own SLURM_TIME_FORMAT would change how times are shown.
            env={**os.environ, "SLURM_TIME_FORMAT": "standard"},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    fields = dict(re.findall(r"(\w+)=(\S*)", shown))
    try:
        start, end = (
            time.mktime(time.strptime(fields[key], "%Y-%m-%dT%H:%M:%S"))
            for key in ("StartTime", "EndTime")
        )
    except (KeyError, ValueError):
        return None
    return start, end


def stop_ahead(time_limit: float | None) -> int:
    """Seconds before the end of a job of ``time_limit`` seconds (None: not
    known) that the run should start stopping."""
    if time_limit is None:
        return STOP_AHEAD
    return int(min(STOP_AHEAD, time_limit / 10))


@contextmanager
def stop_before_time_limit() -> Iterator[None]:
    job_id = os.environ.get("SLURM_JOB_ID")
    # A task of a job array by its own name: the last task to start has the
    # array's id as its job id, which scontrol shows as every task, ended
    # ones (their times passed) included.
    array, task = (os.environ.get(f"SLURM_ARRAY_{part}_ID") for part in ("JOB", "TASK"))
    if job_id and array and task:
        job_id = f"{array}_{task}"
    times = job_times(job_id) if job_id else None
    if times is None:
        yield
        return
    start, end = times
    stop_at = end - stop_ahead(end - start)
    timer = threading.Timer(
        max(0.0, stop_at - time.time()), os.kill, (os.getpid(), signal.SIGTERM)
    )
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
