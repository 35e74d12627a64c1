"""What a run says at its end: the summary, the quota, and what ``--json``
adds up."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .progress import duration, size
from .result import EXPLAINED, MigrationResult, Status

if TYPE_CHECKING:
    from pathlib import Path

    from .output import Output
    from .quota import Room
    from .quota_tools import Quota


#: What ``--json`` and the summary add up: written, shared and freed.
COUNTED = (
    "written_files",
    "written_bytes",
    "shared_files",
    "shared_bytes",
    "freed_files",
    "freed_bytes",
)


def totals(outcomes: list[MigrationResult]) -> dict[str, int]:
    return {key: sum(getattr(o, key) or 0 for o in outcomes) for key in COUNTED}


def _moved(numbers: dict[str, int], dry_run: bool) -> str:
    """Written, shared and freed, as one line of the summary."""
    verb = (
        ("would write", "would share", "would free")
        if dry_run
        else ("written", "shared", "freed")
    )
    return (
        f"{verb[0]} {numbers['written_files']} files, {size(numbers['written_bytes'])}; "
        f"{verb[1]} {numbers['shared_files']} files, {size(numbers['shared_bytes'])}; "
        f"{verb[2]} on the source {numbers['freed_files']} files, "
        f"{size(numbers['freed_bytes'])}"
    )


def quota_line(room: Room, when: str, after: Quota | None = None) -> str:
    """The quota the run found (``after``: as it ends), or that it found
    none to ask."""
    if room.before is None:
        asked = (
            f"no quota tool answered (asked: {', '.join(room.tried)})"
            if room.tried
            else "no quota tool is installed here (lfs, mmlsquota, beegfs-ctl, quota)"
        )
        return (
            f"Quota on {room.root}: {asked}; only the filesystem's free space is "
            "checked, which on a network home is not your quota."
        )
    quota = room.before if after is None else after
    return f"Quota on {room.root} {when}: {quota.describe()}"


def quota_json(room: Room | None, after: Quota | None) -> dict[str, Any] | None:
    if room is None or room.before is None:
        return None
    return {
        "tool": room.before.tool,
        "before": _quota_numbers(room.before),
        "after": _quota_numbers(after) if after else None,
    }


def _quota_numbers(quota: Quota) -> dict[str, int | None]:
    return {
        "used_bytes": quota.used_bytes,
        "limit_bytes": quota.limit_bytes,
        "used_files": quota.used_files,
        "limit_files": quota.limit_files,
    }


def _left_on_scratch(outcome: MigrationResult) -> str:
    """The summary's count of what the environment uses on scratch (see
    ``scratch_refs``); a dry run writes no log, its plan names them above."""
    refs = len(outcome.scratch_refs)
    paths = f"{refs} path{'s' if refs > 1 else ''}"
    if outcome.status == Status.PLANNED:
        return f"would still use {paths} on the filesystem it would be moved from (see above)"
    return (
        f"still uses {paths} on the filesystem it was moved from (the log names each)"
    )


def summarize(
    outcomes: list[MigrationResult], out: Output, seconds: float, dry_run: bool = False
) -> None:
    out.important("Summary:")
    for status in Status:
        group = [o for o in outcomes if o.status == status]
        if group:
            label = "already migrated" if status == Status.ALREADY else status
            out.important(f"  {label}: {len(group)}")
            for o in group:
                notes = [f"YAML: {o.yaml}"] if o.yaml else []
                if o.seconds is not None and status != Status.PLANNED:
                    notes.append(duration(o.seconds))
                more = f" ({'; '.join(notes)})" if notes else ""
                out.important(f"    {o.name}: {o.source} -> {o.dest}{more}")
                if o.written_files is not None:
                    out.important(f"      {_moved(totals([o]), dry_run)}")
                if status in EXPLAINED and o.message:
                    out.important(f"      {o.message.splitlines()[0]}")
                if o.scratch_refs:
                    out.important(f"      {_left_on_scratch(o)}")
                if o.missing:
                    out.important(
                        f"      files lost to the purge and missing: {len(o.missing)} "
                        "(see above for what restores them)"
                    )
    if any(o.written_files is not None for o in outcomes):
        out.important(f"  total: {_moved(totals(outcomes), dry_run)}")
    out.important(f"Total time: {duration(seconds)}")


def json_report(
    outcomes: list[MigrationResult],
    *,
    success: bool,
    dry_run: bool,
    quota: dict[str, Any] | None,
    rc_files: list[dict[str, Any]],
    clean: dict[str, Any] | None,
    log: Path | None,
    warnings: list[str],
) -> str:
    """The one document ``--json`` prints, at the end."""
    document = {
        "success": success,
        "dry_run": dry_run,
        "environments": [o.to_json() for o in outcomes],
        "totals": totals(outcomes),
        "quota": quota,
        "rc_files": rc_files,
        "clean": clean,
        "log": str(log) if log else None,
        "warnings": warnings,
    }
    return json.dumps(document, indent=2)
