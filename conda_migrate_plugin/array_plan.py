"""A job array's plan and its tasks' records (``--submit --tasks N``).

The share-out is fixed when the array is submitted, in a plan file in the
log directory: each task reads its share by ``SLURM_ARRAY_TASK_ID``, where
discovering anew would see environments vanish as other tasks move them.
Shares are balanced by files (the records' count, read without walking the
trees), since a migration's time goes with its files, not with its
environments. Each task records every environment's outcome as it settles,
so that a task killed midway still leaves what it did, and the job after the
array sums them up. The run reads and writes these, and ``array`` submits
them, so they live below both.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .exceptions import MigrateError, UsageError
from .records import read_conda_meta

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping


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


def record(path: Path, outcomes: Iterable[dict[str, Any]]) -> None:
    """One line per environment as it settles (its ``--json`` report),
    flushed: a task killed later keeps what it did."""
    with open(path, "a") as stream:
        for outcome in outcomes:
            stream.write(json.dumps(outcome) + "\n")
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
