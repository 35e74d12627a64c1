"""The user's Slurm jobs running elsewhere, which the removal cannot see.

The removal's check for processes using an environment reads ``/proc`` on
this node only. A job on a compute node that runs from, or writes into, an
environment on scratch is invisible there: removed under it, its next
writes go to deleted files and its output is lost. What the job uses
cannot be known from here, but that the user has jobs running can: the run
asks ``squeue`` once, before anything is removed, and warns. It never
refuses on it (users with jobs of days must still be able to migrate), and
a ``squeue`` that fails or hangs never stops the run.
"""

from __future__ import annotations

import os
import shutil
import subprocess

#: Seconds to wait for ``squeue``: a slow controller must not hold the run.
TIMEOUT = 5
#: Jobs named in the warning; the rest are counted.
SHOWN = 3
#: States in which a job's processes exist and may write.
STATES = "RUNNING,COMPLETING,SUSPENDED"
#: What ``squeue`` says where no cluster is configured (the client package
#: installed on a machine that is not a cluster's, found neither by a
#: ``slurm.conf`` nor by DNS): not a Slurm site, so nothing to warn of.
NO_CLUSTER = "Could not establish a configuration source"
#: What the run asks each job: its id, its array's id (its own id when it
#: is not a task of an array), the id as users see it, its name.
FORMAT = "%A|%F|%i|%j"


def parse(output: str, ours: set[str]) -> list[str]:
    """``squeue``'s lines as ``ID (NAME)``, leaving out the run's own job and
    the other tasks of its array (a ``--submit`` array is the run itself)."""
    jobs = []
    for line in output.splitlines():
        fields = line.strip().split("|", 3)
        if len(fields) != 4:
            continue
        job, array, shown, name = fields
        if job in ours or array in ours:
            continue
        jobs.append(f"{shown} ({name})")
    return jobs


def _ours() -> set[str]:
    """The ids of the job this run is, and of its array."""
    names = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID")
    return {os.environ[n] for n in names if os.environ.get(n)}


def warning() -> str | None:
    """What to say of the user's running jobs; None when there are none
    besides the run's own, or no ``squeue`` here, or one that knows of no
    cluster (not a Slurm site)."""
    squeue = shutil.which("squeue")
    if squeue is None:
        return None
    argv = [squeue, "-h", "-u", str(os.getuid()), "-t", STATES, "-o", FORMAT]
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=TIMEOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "LC_ALL": "C"},
        )
    except subprocess.TimeoutExpired:
        return _unlisted(f"no answer in {TIMEOUT} seconds")
    except (OSError, subprocess.SubprocessError) as err:
        return _unlisted(str(err))
    if done.returncode != 0 and NO_CLUSTER in done.stderr:
        return None
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()
        return _unlisted(said[-1] if said else f"exit code {done.returncode}")
    jobs = parse(done.stdout, _ours())
    if not jobs:
        return None
    named = ", ".join(jobs[:SHOWN])
    more = f" and {len(jobs) - SHOWN} more" if len(jobs) > SHOWN else ""
    return (
        f"warning: you have Slurm jobs running: {named}{more}. This node cannot "
        "see whether they use an environment being moved; one that writes into "
        "an environment after its removal loses that output. Wait for them to "
        "end, or add --keep-old to copy and keep the old environments."
    )


def _unlisted(why: str) -> str:
    return (
        f"warning: your running Slurm jobs could not be listed (squeue: {why}); "
        "one that writes into an environment after its removal loses that output."
    )
