"""``--submit``: the same command as a Slurm batch job that stops safely at
its time limit (how, in ``sbatch``); ``--tasks`` makes it a job array
(``array``). What the job would refuse is refused here, before it waits in
the queue."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .deadline import stop_ahead
from .exceptions import UsageError
from .names import LOGS, state_dir
from .parser import command_line, options_from_args
from .refusals import check_off_scratch, state_on_scratch
from .safety.lock import check_locking
from .sbatch import (
    job_command,
    job_script,
    run_sbatch,
    sbatch_command,
    time_limit,
    typed,
)
from .text import printable

if TYPE_CHECKING:
    from argparse import Namespace
    from typing import TextIO


def refuse_active(args: Namespace, home: Path) -> None:
    """The job inherits ``CONDA_PREFIX`` (``--export=ALL``), so the run in it
    would refuse the environment active here; say so now, not after the
    job waited in the queue."""
    from .discover import examine, under
    from .refusals import refuse_active as refuse

    active = os.environ.get("CONDA_PREFIX")
    if not active:
        return
    options = options_from_args(args, home)
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


def submit(args: Namespace, *, home: Path, stdout: TextIO) -> int:
    take_our_options(args)
    if not (args.all or args.yes):
        raise UsageError(
            "--submit needs --all: a batch job has no one to answer the prompt.",
            hint="List them first with --dry-run, or move one environment with -d ENV --all.",
        )
    refuse_active(args, home)
    options = options_from_args(args, home)
    check_off_scratch(options, home)
    # The job would stop at once, where no one reads what it says.
    check_locking(state_dir(home))
    warning = state_on_scratch(options, home)
    if warning is not None:  # the job's run says it again, in its output
        print(printable(warning), file=sys.stderr if args.json else stdout)
    if args.tasks is not None:
        from .array import submit_array

        return submit_array(args, home=home, stdout=stdout)
    return _submit_job(args, home, stdout)


def _submit_job(args: Namespace, home: Path, stdout: TextIO) -> int:
    logs = state_dir(home) / LOGS
    command = job_command(args)
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
    _say_submitted(args, job_id, output, stdout)
    return 0


def _say_submitted(args: Namespace, job_id: str, output: Path, stdout: TextIO) -> None:
    print(
        printable(f"Submitted batch job {job_id}: {typed(args)}"),
        printable(f"Its output: {output} (unless your sbatch options chose another)."),
        f"It stops safely {stop_ahead(time_limit(args.submit))} s before its time "
        "limit; its last line then "
        "says where it stopped, and running this command again continues.",
        f"Follow it with: squeue -j {job_id}    tail -f {output}",
        sep="\n",
        file=stdout,
    )
