"""``--submit --tasks N``: the environments spread over a Slurm job array.

One node stops scaling a migration long before the servers do (a Lustre
client keeps about 8 metadata requests in flight per server), so many
environments go faster over several nodes. The share-out is fixed when the
array is submitted, in a plan file in the log directory: each task reads
its share by ``SLURM_ARRAY_TASK_ID``, where discovering anew would see
environments vanish as other tasks move them. Shares are balanced by files
(the records' count, read without walking the trees), since a migration's
time goes with its files, not with its environments. Each task records every
environment's outcome as it settles, so that a task killed midway still
leaves what it did; a last job, dependent on the whole array
(``afterany``), runs conda's clean once and writes one summary of every
task. A resubmission plans again from what is left.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .exceptions import MigrateError, UsageError
from .records import read_conda_meta
from .safety.statedir import ensure_private

if TYPE_CHECKING:
    from argparse import Namespace
    from collections.abc import Iterable, Mapping
    from typing import TextIO

    from .migrate import MigrationResult
    from .options import Options


def weight(prefix: Path) -> int:
    """Files the environment's records list, plus one: what its migration's
    time goes with. Unreadable records count as one file."""
    try:
        records = read_conda_meta(prefix)
    except MigrateError:
        return 1
    return 1 + sum(len(record.get("files") or ()) for record in records)


def share_out(weights: Mapping[str, int], tasks: int) -> list[list[str]]:
    """At most ``tasks`` shares of the keys of ``weights``, none empty, each
    key in one: the heaviest first, each to the lightest share so far
    (within 4/3 of the best balance)."""
    shares: list[list[str]] = [[] for _ in range(min(tasks, len(weights)))]
    loads = [0] * len(shares)
    for key in sorted(weights, key=lambda key: (-weights[key], key)):
        lightest = loads.index(min(loads))
        shares[lightest].append(key)
        loads[lightest] += weights[key]
    return shares


def parse_tasks(value: str) -> tuple[int, int | None]:
    """``N`` or ``N%M``: N tasks, at most M at once (Slurm's own ``%``)."""
    count, percent, at_once = value.partition("%")
    try:
        numbers = int(count), int(at_once) if percent else None
    except ValueError:
        numbers = (0, None)
    if numbers[0] < 1 or (numbers[1] is not None and numbers[1] < 1):
        raise UsageError(
            f"--tasks takes N or N%M (N tasks, at most M at once), not {value!r}."
        )
    return numbers


@dataclass(frozen=True)
class Plan:
    """Where an array's shares, records and summary live: beside the logs."""

    path: Path

    @property
    def summary(self) -> Path:
        return self.path.with_name(f"{self.path.stem}-summary.txt")

    def record_of(self, task: int) -> Path:
        return self.path.with_name(f"{self.path.stem}-task-{task}.jsonl")

    def shares(self) -> list[list[Path]]:
        try:
            document = json.loads(self.path.read_text())
        except (OSError, ValueError) as err:
            raise MigrateError(
                f"Cannot read the job array's plan {self.path}: {err}",
                hint="Nothing was touched. Submit the command again: it plans anew.",
            ) from None
        return [[Path(prefix) for prefix in share] for share in document["tasks"]]

    def share(self, task: int) -> frozenset[Path]:
        shares = self.shares()
        if not 0 <= task < len(shares):
            raise MigrateError(
                f"The job array's plan {self.path} has no task {task}.",
                hint="Nothing was touched. Submit the command again: it plans anew.",
            )
        return frozenset(shares[task])


def write_plan(logs: Path, shares: list[list[Path]]) -> Plan:
    """Names as the filesystem has them: JSON keeps a name that is not UTF-8
    as its surrogate escapes, which ``Path`` turns back into the same bytes."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    plan = Plan(logs / f"conda-migrate-array-{stamp}-{os.getpid()}.json")
    document = {"tasks": [[str(prefix) for prefix in share] for share in shares]}
    fd = os.open(plan.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "w") as stream:
        json.dump(document, stream, indent=1)
    return plan


def task_id() -> int:
    try:
        return int(os.environ["SLURM_ARRAY_TASK_ID"])
    except (KeyError, ValueError):
        raise UsageError(
            "--task-of-array is for the tasks of the job array --tasks submits "
            "(SLURM_ARRAY_TASK_ID is not set).",
        ) from None


def record(path: Path, outcomes: Iterable[MigrationResult]) -> None:
    """One line per environment as it settles, flushed: a task killed later
    keeps what it did."""
    with open(path, "a") as stream:
        for outcome in outcomes:
            stream.write(json.dumps(outcome.to_json()) + "\n")
        stream.flush()
        os.fsync(stream.fileno())


def record_end(path: Path, code: int) -> None:
    with open(path, "a") as stream:
        stream.write(json.dumps({"exit_code": code}) + "\n")


def _read_records(path: Path) -> tuple[dict[str, dict[str, Any]], int | None]:
    outcomes: dict[str, dict[str, Any]] = {}
    code = None
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return outcomes, None
    for line in lines:
        try:
            item = json.loads(line)
        except ValueError:
            continue  # a line cut short by a kill
        if "exit_code" in item:
            code = item["exit_code"]
        elif "source" in item:
            outcomes[item["source"]] = item
    return outcomes, code


def summary(plan: Plan, dest_root: Path) -> tuple[list[str], int, int]:
    """What every task did, from its records; an environment a task never
    settled (it was stopped, cancelled or timed out first) is judged on
    disk. Also how many environments there were, and how many are at their
    destination."""
    lines = [f"Job array summary ({plan.path.name}):"]
    total = done_count = 0
    for task, share in enumerate(plan.shares()):
        outcomes, code = _read_records(plan.record_of(task))
        ended = "did not end (stopped, cancelled or timed out: see its slurm-*.out)"
        if code is not None:
            ended = f"exit code {code}"
        lines.append(f"  task {task}: {len(share)} environments, {ended}")
        for prefix in share:
            outcome = outcomes.get(str(prefix))
            if outcome is not None:
                status = outcome["status"]
                dest = outcome["dest"]
                done = status in ("migrated", "kept", "already")
            else:
                dest = str(dest_root / prefix.name)
                done = not os.path.lexists(prefix) and os.path.isdir(dest)
                status = "migrated" if done else "not migrated"
            total += 1
            done_count += done
            lines.append(f"    {status}: {prefix} -> {dest}")
            if outcome is not None and not done and outcome.get("message"):
                lines.append(f"      {outcome['message'].splitlines()[0]}")
    lines.append(
        f"{done_count} of {total} environments migrated"
        + (
            "."
            if done_count == total
            else ": run the same command again to finish what is left."
        )
    )
    return lines, total, done_count


def _refuse_own_array(options: list[str]) -> None:
    for option in options:
        if option in ("-a", "--array") or option.startswith(("--array=", "-a")):
            raise UsageError(
                f"--tasks makes the job array itself; drop {option} from the "
                "sbatch options.",
                hint="--tasks N%M runs at most M tasks at once.",
            )


def plan_shares(options: Options, tasks: int) -> list[list[Path]]:
    """The selected environments, and those an interrupted run left in the
    journal, in at most ``tasks`` shares. Environments of the same name go
    to one task, which refuses them together as a run does."""
    from .backends import load_backend
    from .safety import journal
    from .workflow import discover, nothing_to_migrate

    candidates = discover(options, load_backend())
    prefixes = [c.prefix for c in candidates if c.valid]
    prefixes += [Path(e.source) for e in journal.entries(options.state_dir)]
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
    from .names import LOGS, state_dir
    from .options import Options
    from .submit import (
        job_arguments,
        job_script,
        run_sbatch,
        sbatch_command,
    )

    tasks, at_once = parse_tasks(args.tasks)
    _refuse_own_array(args.submit)
    options = Options.from_args(args, home)
    shares = plan_shares(options, tasks)
    logs = state_dir(home) / LOGS
    python = [sys.executable, "-m", "conda_migrate_plugin", *job_arguments(args)]
    indices = f"0-{len(shares) - 1}" + (f"%{at_once}" if at_once else "")
    array = sbatch_command(
        args.submit, logs, output="slurm-%A_%a.out", ours=[f"--array={indices}"]
    )
    listing = [
        f"  task {task}: " + ", ".join(prefix.name for prefix in share)
        for task, share in enumerate(shares)
    ]
    if args.dry_run:
        print(
            f"Would submit a job array of {len(shares)} tasks: {shlex.join(array)}",
            *listing,
            "and, after them all, conda's clean and the summary in one more job.",
            sep="\n",
            file=stdout,
        )
        return 0
    ensure_private(state_dir(home))
    plan = write_plan(logs, shares)
    array_id = run_sbatch(
        array, job_script([*python, "--task-of-array", str(plan.path)])
    )
    # Once every task has ended, however each ended. Named as they are, so
    # that a later submission (singleton) waits for conda's clean too.
    last = sbatch_command(args.submit, logs, dependency=f"afterany:{array_id}")
    last_id = run_sbatch(last, job_script([*python, "--end-of-array", str(plan.path)]))
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
        return 0
    print(
        f"Submitted job array {array_id}: {len(shares)} tasks over "
        f"{sum(map(len, shares))} environments, balanced by files:",
        *listing,
        f"Their output: {logs / f'slurm-{array_id}_N.out'} (N: the task).",
        f"Then job {last_id}, after them all: conda's clean and the summary, in "
        f"{plan.summary} and {logs / f'slurm-{last_id}.out'}.",
        "Submitting the same command again finishes whatever is left.",
        sep="\n",
        file=stdout,
    )
    return 0


def finish(plan_path: Path, options: Options, *, stdout: TextIO) -> int:
    """The job after the array: conda's clean once every task has ended
    (none is left to need the cache), then the summary, in a file and in
    this job's output. An environment left unmigrated may need the cache
    (a purged one is repaired from it): the clean then waits for the run
    that finishes it, as the tasks' records do not carry what it lacks."""
    from .backends import load_backend
    from .progress import size
    from .workflow import discover, still_needed

    plan = Plan(plan_path)
    lines, total, done = summary(plan, options.dest_root)
    complete = done == total
    if options.clean and not complete:
        lines.append(
            "conda's clean was left for the run that migrates the rest: "
            "what is left may need the package cache."
        )
    elif options.clean:
        backend = load_backend()
        # Environments left here that link into the cache keep their packages.
        try:
            candidates = discover(options, backend)
        except UsageError:  # -d is gone: nothing is left there to keep
            candidates = []
        keep = still_needed([], candidates)
        cleaned = backend.clean(dry_run=False, keep=keep)
        if cleaned is None:
            lines.append("conda is not installed here, so conda's clean was skipped.")
        else:
            items = sum(len(v) for v in cleaned.values() if isinstance(v, list))
            lines.append(
                f"Removed {items} items ({size(cleaned['bytes'])}) from conda's caches."
            )
    fd = os.open(plan.summary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w") as stream:
        stream.write("\n".join(lines) + "\n")
    if options.json:
        print(
            json.dumps({"success": complete, "summary": lines}, indent=2), file=stdout
        )
    else:
        print(*lines, f"Summary: {plan.summary}", sep="\n", file=stdout)
    return 0 if complete else 1
