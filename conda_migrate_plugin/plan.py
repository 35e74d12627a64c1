"""``--dry-run``: what a run would do to one environment, and the room it
would take, found without writing or downloading anything."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .progress import size
from .purge import plan_repair
from .result import Status
from .safety.remove import files_of, processes_using
from .scratch_refs import planned_references, warn

if TYPE_CHECKING:
    from collections.abc import Collection

    from .quota import Need
    from .result import MigrationResult
    from .snapshot import Footprint
    from .transaction import Migration


def plan(
    run: Migration, footprint: Footprint, wanted: Need, linked: Collection[str]
) -> MigrationResult:
    """What the run would do, with the room it would take: what the
    environments planned before this one hold counts once; and what the
    copy would still use on scratch (``linked``: the links into a package
    cache it would hold as files)."""
    from .quota import freed

    options, outcome, room = run.options, run.outcome, run.room
    outcome.status = Status.PLANNED
    removal, kept = _removal(run, footprint)
    outcome.written_files, outcome.written_bytes = wanted.files, wanted.bytes
    outcome.shared_files = wanted.shared_files
    outcome.shared_bytes = wanted.shared_bytes
    writes = f"{wanted.files} files and directories, {size(wanted.bytes)}"
    lines = [
        f"Packages: {outcome.packages}",
        f"Files: {outcome.files}",
        f"Size: {size(outcome.bytes or 0)}",
        f"Would write: {writes} in whole blocks",
    ]
    if wanted.shared_files:
        lines.append(
            f"Would share with environments before it: {wanted.shared_files} files, "
            f"{size(wanted.shared_bytes)}"
        )
    if not options.keep_old and not kept:
        outcome.freed_files, outcome.freed_bytes = freed(footprint)
        lines.append(
            f"Would free on the source: {outcome.freed_files} files and directories, "
            f"{size(outcome.freed_bytes)}"
        )
    if room is not None:
        room.plan(footprint, wanted)
    lines += plan_repair(outcome)
    run.out.info(
        *lines,
        f"Would write {options.yaml_dir / (outcome.name + '.yml')}, copy{removal}",
        "",
    )
    outcome.scratch_refs = [
        ref.to_json()
        for ref in planned_references(
            outcome.source, outcome.dest, footprint, linked, options.jobs
        )
    ]
    warn(outcome, run.out)
    return outcome


def _removal(run: Migration, footprint: Footprint) -> tuple[str, bool]:
    """What the removal would do, as the real run decides it from ``/proc``:
    a process writing or working in the environment keeps it (the run
    copies it and exits 1), one that only runs from it is named. Said from
    what runs now, so a dry run before the jobs end says the same as the
    run would (a kept one is "copied", as the run reports it); whether it
    is kept."""
    outcome = run.outcome
    if run.options.keep_old:
        return ", compare", True
    users = processes_using(outcome.source, files_of(footprint))
    for user in users:
        if user.writes:
            # The real run's status: its exit code 1, and no rc file or
            # envs_dirs entry made to leave the environment kept.
            outcome.status = Status.COPIED
            outcome.message = (
                f"{outcome.source} would be copied but kept: {user} {user.writes}. "
                "Run again once it has ended to have it removed."
            )
            return (
                f" and compare, but keep {outcome.source}: {user} {user.writes}",
                True,
            )
    for user in users:
        run.out.info(
            f"warning: {user} is using {outcome.source}; it would be removed all the same."
        )
    return f", compare and remove {outcome.source}", False


# END
