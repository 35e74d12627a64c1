"""``--submit``: the same command as a Slurm batch job that stops safely at
its time limit.

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

import json
import os
import shlex
import subprocess
import sys
from argparse import ArgumentParser, Namespace
from pathlib import Path
from typing import TYPE_CHECKING

from .deadline import stop_ahead
from .exceptions import MigrateError, UsageError
from .names import LOGS, state_dir
from .parser import command_line, configure_parser, program
from .progress import printable

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import TextIO

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


def refuse_active(args: Namespace, home: Path) -> None:
    """The job inherits ``CONDA_PREFIX`` (``--export=ALL``), so the run in it
    would refuse the environment active here; say so now, not after the
    job waited in the queue."""
    from .discover import examine, under
    from .options import Options
    from .workflow import refuse_active as refuse

    active = os.environ.get("CONDA_PREFIX")
    if not active:
        return
    options = Options.from_args(args, home)
    prefix, root = Path(active), options.scanned
    inside = (
        root.resolve() in (prefix.resolve(), prefix.resolve().parent)
        if options.given_directory
        else under(prefix, root)
    )
    candidate = examine(prefix)
    if inside and candidate.valid:
        refuse([candidate], options, command_line())


#: Options of this command that sbatch does not have: given after
#: ``--submit`` they are a mistake, never meant for sbatch.
_OURS_NOT_SBATCH = frozenset(
    {
        "--directory",
        "--dest",
        "--yaml-dir",
        "--method",
        "--jobs",
        "--keep-old",
        "--no-clean",
        "--no-rc",
        "--dry-run",
        "--yes",
    }
)


def take_our_options(args: Namespace) -> None:
    """``--submit -c 4 --all``: REMAINDER hands ``--all`` to sbatch, which
    has no such option; it is this command's, and taken. Any other option of
    ours there is refused rather than guessed at."""
    sbatch = []
    for option in args.submit:
        flag = option.split("=", 1)[0]
        if option == "--all":
            args.all = True
        elif flag in _OURS_NOT_SBATCH:
            raise UsageError(
                f"{flag} came after --submit, so it would go to sbatch; nothing "
                "was submitted.",
                hint=f"Put {flag} before --submit: what follows --submit is for sbatch.",
            )
        else:
            sbatch.append(option)
    args.submit = sbatch


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


def submit(args: Namespace, *, home: Path, stdout: TextIO) -> int:
    take_our_options(args)
    if not (args.all or args.yes):
        raise UsageError(
            "--submit needs --all: a batch job has no one to answer the prompt.",
            hint="List them first with --dry-run, or move one environment with -d ENV --all.",
        )
    refuse_active(args, home)
    if args.tasks is not None:
        from .array import submit_array

        return submit_array(args, home=home, stdout=stdout)
    logs = state_dir(home) / LOGS
    command = [sys.executable, "-m", "conda_migrate_plugin", *job_arguments(args)]
    script = job_script(command)
    sbatch = sbatch_command(args.submit, logs)
    if args.dry_run:
        print(
            printable(f"Would submit with: {shlex.join(sbatch)}"),
            printable(script),
            sep="\n",
            file=stdout,
        )
        return 0
    logs.mkdir(parents=True, exist_ok=True)
    job_id = run_sbatch(sbatch, script)
    output = logs / f"slurm-{job_id}.out"
    if args.json:
        document = {"job_id": job_id, "command": command, "output": str(output)}
        print(json.dumps(document, indent=2), file=stdout)
        return 0
    typed = shlex.join([*program(), *job_arguments(args)])
    print(
        printable(f"Submitted batch job {job_id}: {typed}"),
        printable(f"Its output: {output} (unless your sbatch options chose another)."),
        f"It stops safely {stop_ahead(time_limit(args.submit))} s before its time "
        "limit; its last line then "
        "says where it stopped, and running this command again continues.",
        f"Follow it with: squeue -j {job_id}    tail -f {output}",
        sep="\n",
        file=stdout,
    )
    return 0
