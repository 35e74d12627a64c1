"""Slurm's side of ``--submit``: the job's command line, its script and
the ``sbatch`` call, for one job or a job array (``array``).

Slurm signals a batch job's shell, not the commands the shell runs: with
``sbatch --wrap "conda migrate ..."`` the shell dies at the SIGTERM and Slurm
SIGKILLs the run a moment later, before it can remove a partial copy (or,
under ``proctrack/linuxproc``, loses track of it and lets it run on). So the
job script ``exec``s the command, which makes the run the batch shell itself
(``scancel`` reaches it), and asks Slurm for the SIGTERM ahead of the limit
(``--signal=B:TERM@...``, by ``deadline.stop_ahead`` of the ``-t`` given),
more than the ``KillWait`` between Slurm's SIGTERM and its SIGKILL; the run
also keeps its own time (``deadline``). ``--dependency=singleton`` queues a second
submission behind a running one, and ``--export=ALL`` gives the job the
environment the command has here (HOME, SCRATCH, CONDA_*), whatever
``SBATCH_EXPORT`` a site sets.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from argparse import ArgumentParser
from pathlib import Path
from typing import TYPE_CHECKING

from .deadline import stop_ahead
from .exceptions import MigrateError
from .parser import configure_parser, program

if TYPE_CHECKING:
    from argparse import Namespace
    from collections.abc import Sequence

JOB_NAME = "conda-migrate"
#: Options that make no sense inside the job.
_NOT_FORWARDED = {
    "submit",
    "dry_run",
    "help",
    "tasks",
    "task_of_array",
    "end_of_array",
}


def job_arguments(args: Namespace) -> list[str]:
    """The command line of this run without ``--submit``, paths absolute:
    every option ``configure_parser`` knows is forwarded as it was given."""
    parser = ArgumentParser(add_help=False)
    configure_parser(parser)
    argv: list[str] = []
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        if action.dest in _NOT_FORWARDED or value in (None, False, action.default):
            continue
        flag = action.option_strings[0]
        if action.nargs == 0 and isinstance(value, bool):
            argv.append(flag)
        elif action.nargs == 0:
            argv += [flag] * value
        elif isinstance(value, Path):
            argv += [flag, str(value.expanduser().absolute())]
        else:
            argv += [flag, str(value)]
    return argv


def typed(args: Namespace) -> str:
    """The run without ``--submit``, as users type it: what a job runs, and
    what finishes one that was stopped."""
    return shlex.join([*program(), *job_arguments(args)])


def job_command(args: Namespace) -> list[str]:
    """What the job runs: this interpreter and its copy of the package,
    whatever ``PATH`` the job gets; the run names itself as users type it
    (``parser.program``), not ``__main__.py``."""
    return [sys.executable, "-m", "conda_migrate_plugin", *job_arguments(args)]


def time_limit(options: list[str]) -> int | None:
    """Seconds of the last ``-t``/``--time`` among sbatch options; None when
    there is none (the partition's default applies) or it is unlimited."""
    value = None
    for option, following in zip(options, [*options[1:], ""]):
        if option in ("-t", "--time"):
            value = following
        elif option.startswith("--time="):
            value = option.removeprefix("--time=")
        elif option.startswith("-t") and not option.startswith("--"):
            value = option[2:]
    if value is None:
        return None
    # Slurm's forms: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S; 0 is no limit.
    days, _, clock = value.rpartition("-")
    try:
        parts = [int(part) for part in clock.split(":")]
        if days:
            hours, minutes, seconds = [*parts, 0, 0][:3]
            hours += int(days) * 24
        elif len(parts) <= 2:
            hours, minutes, seconds = 0, *[*parts, 0][:2]
        else:
            hours, minutes, seconds = parts
    except ValueError:
        return None
    return ((hours * 60 + minutes) * 60 + seconds) or None


def job_script(command: list[str]) -> str:
    return (
        "#!/bin/sh\n"
        "# Written by conda-migrate --submit. exec makes the run the job's own\n"
        "# process, so that Slurm's SIGTERM reaches it and it can stop safely.\n"
        f"exec {shlex.join(command)}\n"
    )


def sbatch_command(
    options: list[str],
    logs: Path,
    *,
    output: str = "slurm-%j.out",
    dependency: str = "singleton",
    ours: Sequence[str] = (),
) -> list[str]:
    """Ours first: sbatch takes the last of a repeated option, so the user's
    win (but it joins every ``--dependency``)."""
    return [
        "sbatch",
        "--parsable",
        f"--job-name={JOB_NAME}",
        f"--dependency={dependency}",
        f"--signal=B:TERM@{stop_ahead(time_limit(options))}",
        f"--output={logs / output}",
        "--open-mode=append",
        "--export=ALL",
        *ours,
        *options,
    ]


def run_sbatch(sbatch: list[str], script: str) -> str:
    """The job id sbatch gives the script."""
    try:
        # The script carries paths as their bytes, UTF-8 or not.
        result = subprocess.run(
            sbatch,
            input=script.encode("utf-8", "surrogateescape"),
            capture_output=True,
            check=False,
        )
    except FileNotFoundError:
        raise MigrateError(
            "sbatch was not found, so no job was submitted.",
            hint="Run --submit where Slurm's commands are (a login node), or run without it.",
        ) from None
    answer = result.stdout.decode(errors="replace").strip()
    if result.returncode != 0:
        complaint = result.stderr.decode(errors="replace").strip()
        raise MigrateError(
            f"sbatch refused the job: {complaint or answer}",
            hint="Nothing was submitted and nothing was migrated.",
        )
    return answer.split(";")[0]
