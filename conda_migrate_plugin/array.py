"""``--submit --tasks N``: the environments spread over a Slurm job array.

One node stops scaling a migration long before the servers do (a Lustre
client keeps about 8 metadata requests in flight per server), so many
environments go faster over several nodes. The share-out is fixed when the
array is submitted (``array_plan``), and each task records every
environment's outcome as it settles; a last job, dependent on the whole
array (``afterany``), runs conda's clean once and writes one summary of
every task. A resubmission plans again from what is left.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from .array_plan import Plan, parse_tasks, share_out, summary, weight, write_plan
from .exceptions import UsageError
from .names import LOCKS, LOGS, state_dir
from .parser import options_from_args
from .safety.lock import node_local
from .safety.statedir import ensure_private
from .sbatch import job_command, job_script, run_sbatch, sbatch_command, typed

if TYPE_CHECKING:
    from argparse import Namespace
    from typing import TextIO

    from .options import Options


def _refuse_own_array(options: list[str]) -> None:
    for option in options:
        if option in ("-a", "--array") or option.startswith(("--array=", "-a")):
            raise UsageError(
                f"--tasks makes the job array itself; drop {option} from the "
                "sbatch options.",
                hint="--tasks N%M runs at most M tasks at once.",
            )


def check_side_by_side(
    tasks: int, at_once: int | None, shares: int, locks: Path, local: str | None
) -> None:
    """Tasks side by side take turns at the user's files by the locks in
    ``locks``; where the mount keeps them on each node alone (``local``,
    see ``node_local``), two tasks Slurm starts on two nodes would each
    write back what they read before the other's change, silently. Refused
    rather than made serial behind the user's back: one at a time, an array
    moves nothing faster than one job, which the user may prefer."""
    if local is None or shares < 2 or at_once == 1:
        return
    asked = f"{tasks}%{at_once}" if at_once else str(tasks)
    raise UsageError(
        f"--tasks {asked} runs tasks at the same time, on whichever nodes Slurm "
        f"gives them, but conda-migrate's locks in {locks} hold on one node only "
        f"({local}): two tasks on two nodes could each undo the other's changes "
        "to your rc files, conda's environments.txt and the journal. Nothing was "
        "submitted.",
        hint=f"Run the tasks one at a time with --tasks {tasks}%1 (Slurm's array "
        "throttle), or all in one job: --submit without --tasks.",
    )


def plan_shares(options: Options, tasks: int) -> list[list[Path]]:
    """The selected environments, and those an interrupted run left in the
    journal, in at most ``tasks`` shares. Environments of the same name go
    to one task, which refuses them together as a run does."""
    from .backends import load_backend
    from .candidates import discover, moved_earlier, nothing_to_migrate
    from .safety import journal

    candidates = discover(options, load_backend())
    prefixes = [c.prefix for c in candidates if c.valid]
    prefixes += [Path(e.source) for e in journal.entries(options.state_dir)]
    if not prefixes and moved_earlier(options, set()):
        return []  # done already: not a mistyped -d
    if not prefixes:
        raise nothing_to_migrate(options.scanned, candidates)
    groups: dict[str, list[Path]] = {}
    for prefix in dict.fromkeys(prefixes):
        groups.setdefault(prefix.name, []).append(prefix)
    weights = {name: sum(map(weight, group)) for name, group in groups.items()}
    return [
        [prefix for name in share for prefix in groups[name]]
        for share in share_out(weights, tasks)
    ]


def submit_array(args: Namespace, *, home: Path, stdout: TextIO) -> int:
    """The array, then the job after it; the plan is written first, since
    the tasks read it as they start."""
    tasks, at_once = parse_tasks(args.tasks)
    _refuse_own_array(args.submit)
    options = options_from_args(args, home)
    shares = plan_shares(options, tasks)
    if not shares:
        return _nothing_left(args, options, stdout)
    locks = state_dir(home) / LOCKS
    check_side_by_side(tasks, at_once, len(shares), locks, node_local(locks.parent))
    logs = state_dir(home) / LOGS
    indices = f"0-{len(shares) - 1}" + (f"%{at_once}" if at_once else "")
    array = sbatch_command(
        args.submit, logs, output="slurm-%A_%a.out", ours=[f"--array={indices}"]
    )
    if args.dry_run:
        print(
            f"Would submit a job array of {len(shares)} tasks: {shlex.join(array)}",
            *_listing(shares),
            "and, after them all, conda's clean and the summary in one more job.",
            sep="\n",
            file=stdout,
        )
        return 0
    ensure_private(state_dir(home))
    plan = write_plan(logs, shares)
    python = job_command(args)
    array_id = run_sbatch(
        array, job_script([*python, "--task-of-array", str(plan.path)])
    )
    # Once every task has ended, however each ended. Named as they are, so
    # that a later submission (singleton) waits for conda's clean too.
    last = sbatch_command(args.submit, logs, dependency=f"afterany:{array_id}")
    last_id = run_sbatch(last, job_script([*python, "--end-of-array", str(plan.path)]))
    _say_submitted(args, plan, shares, (array_id, last_id), stdout)
    return 0


def _nothing_left(args: Namespace, options: Options, stdout: TextIO) -> int:
    """Submitted again once everything moved (after a stop in the last
    job's clean, say): an array of nothing would fail, and the last job's
    clean runs only after one; the run itself cleans as it finds nothing."""
    said = (
        f"Nothing left to migrate in '{options.scanned}': conda-migrate already "
        "moved its environments. Nothing was submitted."
    )
    if options.clean:
        said += (
            " conda's clean, if a stopped job left it unfinished, is run by: "
            + typed(args)
        )
    if args.json:
        print(json.dumps({"job_id": None, "message": said}, indent=2), file=stdout)
    else:
        print(said, file=stdout)
    return 0


def _listing(shares: list[list[Path]]) -> list[str]:
    return [
        f"  task {task}: " + ", ".join(prefix.name for prefix in share)
        for task, share in enumerate(shares)
    ]


def _say_submitted(
    args: Namespace,
    plan: Plan,
    shares: list[list[Path]],
    job_ids: tuple[str, str],
    stdout: TextIO,
) -> None:
    """What was submitted: the array's job id, then the last job's."""
    array_id, last_id = job_ids
    logs = plan.path.parent
    if args.json:
        document = {
            "job_id": array_id,
            "tasks": [[str(prefix) for prefix in share] for share in shares],
            "summary_job_id": last_id,
            "plan": str(plan.path),
            "summary": str(plan.summary),
            "output": str(logs / f"slurm-{array_id}_N.out"),
        }
        print(json.dumps(document, indent=2), file=stdout)
        return
    print(
        f"Submitted job array {array_id}: {len(shares)} tasks over "
        f"{sum(map(len, shares))} environments, balanced by files:",
        *_listing(shares),
        f"Their output: {logs / f'slurm-{array_id}_N.out'} (N: the task).",
        f"Then job {last_id}, after them all: conda's clean and the summary, in "
        f"{plan.summary} and {logs / f'slurm-{last_id}.out'}.",
        "Submitting the same command again finishes whatever is left.",
        sep="\n",
        file=stdout,
    )


def finish(plan_path: Path, options: Options, *, stdout: TextIO, command: str) -> int:
    """The job after the array: conda's clean once every task has ended
    (none is left to need the cache), then the summary, in a file and in
    this job's output. An environment left unmigrated may need the cache
    (a purged one is repaired from it): the clean then waits for the run
    that finishes it, as the tasks' records do not carry what it lacks.
    A stop (``scancel``, Slurm's SIGTERM ahead of the time limit) ends it
    at a safe point, saying what was done and that ``command`` (the run
    without ``--submit``) finishes it."""
    from .exceptions import Interrupted
    from .safety.interrupt import stop_on_signals

    plan = Plan(plan_path)
    cleaning = False
    try:
        # A stop noted in the start-up is raised as this is entered.
        with stop_on_signals():
            lines, total, done = summary(plan, options.dest_root)
            complete = done == total
            if options.clean and not complete:
                lines.append(
                    "conda's clean was left for the run that migrates the rest: "
                    "what is left may need the package cache."
                )
            elif options.clean:
                cleaning = True
                lines.append(_stoppable_clean(options, plan, lines, command, stdout))
            _write_summary(plan, lines)
    except Interrupted as stop:
        if cleaning:  # said by the clean
            raise
        raise Interrupted(
            stop.signum,
            "after every task of the job array had ended, before its summary "
            f"was written: this job changed nothing. Run this to finish: {command}",
        ) from None
    if options.json:
        print(
            json.dumps({"success": complete, "summary": lines}, indent=2), file=stdout
        )
    else:
        print(*lines, f"Summary: {plan.summary}", sep="\n", file=stdout)
    return 0 if complete else 1


def _stoppable_clean(
    options: Options, plan: Plan, lines: list[str], command: str, stdout: TextIO
) -> str:
    """The clean, which a stop ends between two packages (see
    ``backends.clean``): the summary is written (and shown, but in a JSON
    document, which the stop's own takes the place of) all the same."""
    from .exceptions import Interrupted

    try:
        return _clean(options)
    except Interrupted as stop:
        finish = f"Run this to finish the clean: {command}"
        lines = [*lines, f"conda's clean was stopped. {finish}"]
        _write_summary(plan, lines)
        if not options.json:
            print(*lines, sep="\n", file=stdout, flush=True)
        raise Interrupted(
            stop.signum,
            "while cleaning conda's package caches, after every task of the job "
            f"array had ended (their summary: {plan.summary}): what the clean "
            f"removed is gone, and no package was left half-removed. {finish}",
        ) from None


def _write_summary(plan: Plan, lines: list[str]) -> None:
    fd = os.open(plan.summary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w") as stream:
        stream.write("\n".join(lines) + "\n")


def _clean(options: Options) -> str:
    """conda's clean, keeping what environments left here link to."""
    from .backends import load_backend
    from .caches import clean_caches, still_needed
    from .candidates import discover

    backend = load_backend()
    try:
        candidates = discover(options, backend)
    except UsageError:  # -d is gone: nothing is left there to keep
        candidates = []
    return clean_caches(backend, dry_run=False, keep=still_needed([], candidates))[1]
