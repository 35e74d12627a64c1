"""Steps 1 to 4 of the README, one environment at a time, destructive steps last.

For each environment: export its YAML, copy it (conda's clone, or
relocation), compare old and new, and only when they are the same register
the new one and remove the old one. Any failure removes the partial copy,
leaves the old environment untouched and moves on to the next. The journal
records each phase first (see ``transaction``), so a run killed anywhere
can be finished by the next one (see ``resume``).
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import replace
from typing import TYPE_CHECKING

from .classify import is_environment
from .compare import compare_contents, differences_from
from .damage import count_files
from .engine import copy_verified, filled
from .exceptions import Interrupted, MigrateError
from .export import write_yaml
from .gc_pause import collector_paused
from .plan import plan
from .preflight import (
    check_carriable,
    check_mounts,
    check_nested,
    check_owned,
    check_paths,
    check_space,
    check_writable,
)
from .progress import size
from .purge import count_restored, find_purged, report_missing
from .records import portable_contents, read_path_records
from .result import MigrationResult, Phase, Status
from .safety import journal
from .safety.interrupt import check, received, uninterruptible
from .safety.lock import hold_all, name_holder
from .scratch_refs import find_references, warn
from .snapshot import changes_since, measure
from .transaction import Migration, commit, copy_stamps, forget, provisional, remove_old

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from .backends import Backend
    from .discover import Candidate
    from .options import Options
    from .output import Output
    from .quota import Need, Room
    from .records import EnvContents
    from .snapshot import Footprint
    from .transaction import Copy


def migrate_all(
    selected: Sequence[Candidate],
    options: Options,
    backend: Backend,
    out: Output,
    settle: Callable[[MigrationResult], object],
    room: Room | None = None,
) -> list[MigrationResult]:
    """``settle`` runs after each environment, before the next one starts.
    ``room`` carries what the environments share and the quota from one to
    the next (see ``quota``)."""
    outcomes = []
    for candidate in selected:
        check()  # a stop something swallowed still stops before the next one
        started = time.monotonic()
        if room is not None and room.full and room.before is None:
            outcome = _not_tried(candidate, options, backend, out, room.full)
        else:
            outcome = migrate_one(candidate, options, backend, out, room)
        out.phase(None)
        outcome.seconds = time.monotonic() - started
        outcomes.append(outcome)
        settle(outcome)
    return outcomes


def _not_tried(
    candidate: Candidate, options: Options, backend: Backend, out: Output, why: str
) -> MigrationResult:
    """After the destination filled, with no quota tool to say whether the
    next environment would fit: not tried, rather than copied into a full
    quota and removed again."""
    outcome = MigrationResult(
        candidate.name, candidate.prefix, options.dest_root / candidate.name
    )
    return Migration(options, backend, out, outcome).end(
        Status.SKIPPED,
        f"{candidate.name} was not tried: {why} (see above), and no quota tool "
        f"says how much room is left. {candidate.prefix} is untouched; make room "
        "and run the same command again.",
    )


def migrate_one(
    candidate: Candidate,
    options: Options,
    backend: Backend,
    out: Output,
    room: Room | None = None,
) -> MigrationResult:
    outcome = MigrationResult(
        candidate.name, candidate.prefix, options.dest_root / candidate.name
    )
    out.info(
        f"Migrating and comparing environment: {candidate.name}",
        f"Source:      {outcome.source}",
        f"Destination: {outcome.dest}",
        "",
    )
    run = Migration.start(options, backend, out, outcome, room)
    try:
        locks = (
            nullcontext()
            if options.dry_run
            else hold_all(options.state_dir, outcome.source, outcome.dest)
        )
        with locks as holder:
            if holder is not None and _migrated_meanwhile(outcome):
                return _migrated_by_other(run, holder)
            with collector_paused():
                outcome = _migrate_locked(run)
            report_missing(outcome, out)
            return outcome
    except Interrupted:
        raise
    except MigrateError as err:  # the lock is held by another run, or cannot be made
        return run.end(Status.SKIPPED, str(err))


def _migrated_meanwhile(outcome: MigrationResult) -> bool:
    """Another run, started alongside, moved it after this one found it."""
    return not is_environment(outcome.source) and is_environment(outcome.dest)


def _migrated_by_other(run: Migration, holder: str) -> MigrationResult:
    outcome = run.outcome
    name_holder(run.options.state_dir, outcome.dest, holder)
    return run.end(
        Status.ALREADY,
        f"{outcome.source} was already migrated to {outcome.dest} by another "
        f"conda-migrate run ({holder or 'unknown'}).",
    )


def _migrate_locked(run: Migration) -> MigrationResult:
    """The phases in order; ``run.phase`` names the one a stop is reported in."""
    try:
        ended = _already_there(run)
        if ended is not None:
            return ended
        old, footprint, wanted, linked = _preflight(run)
        if run.outcome.damage:
            run.out.info(*run.outcome.damage.summary())
        if run.options.dry_run:
            return plan(run, footprint, wanted, linked)
        verified = _copy_and_commit(run, old, footprint)
    except Interrupted as err:
        raise _stopped(err.signum, run) from None
    except (MigrateError, OSError) as err:
        return _failed(run, err)
    settled = _settle_source(run, verified, footprint)
    warn(settled, run.out)
    return settled


def _copy_and_commit(
    run: Migration, old: EnvContents, footprint: Footprint
) -> journal.Entry:
    """Export, copy, compare, and make the copy the environment at its
    destination: the journal's entry for it, verified. The source is
    untouched."""
    options, outcome = run.options, run.outcome
    run.phase = Phase.EXPORTING
    _export(run)
    run.phase = Phase.COPYING
    copy = copy_verified(run, footprint)
    count_restored(run, copy.path)
    run.phase = Phase.COMPARING
    with provisional(run, copy):
        _compare(run, old, copy, footprint)
    run.phase = Phase.REGISTERING
    verified = replace(copy.entry, phase=Phase.VERIFIED)
    # A stop that comes during the commit is raised as the block ends,
    # once the copy is committed and no longer provisional.
    with uninterruptible(), provisional(run, copy):
        journal.save_stamps(
            options.state_dir,
            outcome.dest,
            copy_stamps(copy.path, options.jobs, copy.stamps),
            journal.COPY,
        )
        commit(run, verified, copy.path)
        run.phase = Phase.VERIFIED
    outcome.scratch_refs = [
        ref.to_json()
        for ref in find_references(
            outcome.source, outcome.dest, footprint, copy.links_out, options.jobs
        )
    ]
    if run.room is not None and run.room.shared is not None:
        run.room.shared.add(outcome.dest, copy.written)
    return verified


def _failed(run: Migration, err: MigrateError | OSError) -> MigrationResult:
    """The copy was removed (one committed stays: ``forget``), the source
    untouched; the run goes on, unless ``err`` is a stop in disguise."""
    options, outcome = run.options, run.outcome
    forget(run, err)
    # Code the run does not own may turn a signal into another error.
    signum = received(err)
    if signum is not None:
        raise _stopped(signum, run) from err
    outcome.message = str(err)
    # The copy was removed: nothing of it stays written or shared.
    outcome.written_files = outcome.written_bytes = None
    outcome.shared_files = outcome.shared_bytes = None
    run.out.important(f"Migration of {outcome.name} failed: {err}", "")
    if run.room is not None and filled(err) is not None:
        run.room.full = f"{options.dest_root} filled up while {outcome.name} was copied"
    return outcome


def _settle_source(
    run: Migration, verified: journal.Entry, footprint: Footprint
) -> MigrationResult:
    """The copy is committed: the source is kept (``--keep-old``) or removed."""
    outcome = run.outcome
    if run.options.keep_old:
        journal.record(run.options.state_dir, replace(verified, phase=Phase.DONE))
        return run.end(
            Status.KEPT,
            f"Copied to {outcome.dest}; the old environment was kept (--keep-old).",
        )
    try:
        done = remove_old(run, verified, footprint.stamps)
    except Interrupted as err:
        gone = not os.path.lexists(outcome.source)
        run.phase = Phase.DONE if gone else Phase.VERIFIED
        raise _stopped(err.signum, run) from None
    if done.status == Status.MIGRATED:
        from .quota import freed

        done.freed_files, done.freed_bytes = freed(footprint)
        run.out.info(
            f"Freed on the source: {done.freed_files} files and directories, "
            f"{size(done.freed_bytes)} (what the package cache or other environments "
            "share stays)",
            "",
        )
    return done


def _stopped(signum: int, run: Migration) -> Interrupted:
    """What a stop in ``run.phase`` left, and that the same command goes on."""
    name, source, dest = run.outcome.name, run.outcome.source, run.outcome.dest
    if run.phase == Phase.DONE:  # the stop waited for the removal to finish
        return Interrupted(
            signum,
            f"after migrating {name} to {dest}. Run the same command "
            "again to continue with the rest.",
        )
    if run.phase == Phase.VERIFIED:
        # The stop waited for the commit: the copy is in place and listed.
        return Interrupted(
            signum,
            f"after copying {name}: the verified copy is at {dest} and "
            f"{source} is untouched. Run the same command again to finish: it "
            "removes the old environment once it is shown unchanged.",
        )
    copy_started = run.phase not in (Phase.CHECKING, Phase.EXPORTING)
    return Interrupted(
        signum,
        f"while {run.phase} {name}: "
        + ("the partial copy was removed and " if copy_started else "")
        + f"{source} is untouched. Run the same command again to continue.",
    )


def _already_there(run: Migration) -> MigrationResult | None:
    """The destination exists, and is no killed run's unverified copy (the
    run removes it first): this one's copy, or something never touched."""
    source, dest = run.outcome.source, run.outcome.dest
    if not os.path.lexists(dest) or journal.unverified(run.options.state_dir, dest):
        return None
    differences = differences_from(source, dest, run.backend)
    if not differences:
        if not run.options.dry_run:
            # As the commit does (a killed one's journal may have been deleted).
            run.backend.register(dest)
        return run.end(
            Status.ALREADY,
            f"{run.outcome.name} is already migrated: {dest} holds the same packages "
            f"and files. {source} was left as it is; once you no longer need it, "
            f"remove it with: conda env remove -p {source}",
        )
    for line in differences:
        run.out.log_only(f"{dest}: {line}")
    more = f" (and {len(differences) - 3} more)" if len(differences) > 3 else ""
    return run.end(
        Status.SKIPPED,
        f"{dest} already exists and is not a copy of {source} (a name collision): "
        + "; ".join(differences[:3])
        + f"{more}. Neither was touched; {source} stays where it is. "
        "Remove or rename the other one, or choose another --dest.",
    )


def _preflight(
    run: Migration,
) -> tuple[EnvContents, Footprint, Need, dict[str, os.stat_result]]:
    """Everything that can refuse the environment, before anything is
    written; what it needs in the destination, counted after sharing, and
    the links into a package cache its copy holds as files."""
    from .quota import block_size, check_quota, need
    from .relocation.softlinks import package_cache_links

    options, outcome, room = run.options, run.outcome, run.room
    check_paths(outcome.source, outcome.dest)
    old = run.backend.contents(outcome.source)
    footprint = measure(outcome.source, options.jobs)
    check_carriable(footprint)
    check_nested(footprint)
    check_mounts(footprint, outcome.source, keep_old=options.keep_old)
    check_owned(footprint, keep_old=options.keep_old)
    outcome.packages, outcome.files, outcome.bytes = (
        len(old.conda),
        footprint.files,
        footprint.bytes,
    )
    records = read_path_records(outcome.source)
    restored = find_purged(outcome, footprint, records)
    linked = package_cache_links(
        outcome.source, outcome.dest, footprint.listing, records
    )
    wanted = need(
        footprint,
        linked,
        restored,
        block_size(room.dest if room else options.dest_root),
        room.shared if room else None,
    )
    if not options.dry_run:
        check_writable(options.dest_root)
        check_space(footprint, linked.values(), restored, options.dest_root)
        quota = room.now() if room else None
        if quota is not None:
            check_quota(quota, wanted, options.dest_root)
    return old, footprint, wanted, linked


def _export(run: Migration) -> None:
    outcome = run.outcome
    outcome.yaml = write_yaml(
        run.options.yaml_dir,
        outcome.name,
        run.backend.export_yaml(outcome.source, outcome.name),
    )
    run.out.log_only(f"YAML written: {outcome.yaml}")


def _compare(
    run: Migration, old: EnvContents, copy: Copy, footprint: Footprint
) -> None:
    """The site guide's comparison of the packages, and the source unchanged
    while it was copied: the last checks before the copy is committed."""
    source, outcome = run.outcome.source, run.outcome
    run.out.phase(Phase.COMPARING)
    if outcome.engine == "relocate":
        # The copy's records are the source's, bytes for bytes but the
        # hashes of rewritten files: read both the same plain way, which
        # spares conda's parsing of every path of every package.
        old, new = portable_contents(source), portable_contents(copy.path)
    else:
        new = run.backend.contents(copy.path)
    outcome.differences = compare_contents(old, new)
    if outcome.differences:
        run.out.info(
            "Old and New Environments differ:",
            *(f"  {d}" for d in outcome.differences),
        )
        raise MigrateError(
            f"The copy of {source} is not the same environment.",
            hint="The old environment was left untouched and the copy removed.",
        )
    changed = changes_since(footprint.stamps, source, run.options.jobs)
    if changed:
        raise MigrateError(
            f"{source} changed while it was being copied:\n  "
            + "\n  ".join(changed[:10]),
            hint="The old environment was left as it is and the copy removed. "
            "Run again once nothing is installing into it or writing to it.",
        )
    run.out.phase(None)
    _say_same(run)


def _say_same(run: Migration) -> None:
    """The site guide's verdict, with what the purge left missing."""
    outcome, out = run.outcome, run.out
    verdict = "Old and New Environments are same"
    if outcome.missing:
        verdict = (
            "Old and New Environments hold the same packages and files, but "
            f"{count_files(len(outcome.missing))} their records list are missing"
        )
    # The guide's banner is for the terminal; in a job's output it would
    # repeat after every environment what the summary says once.
    if out.on_terminal():
        out.info(*activation_hint(outcome.dest))
    out.info(verdict)
    if outcome.written_files is not None:
        out.info(_written(outcome))
    out.info("")


def _written(outcome: MigrationResult) -> str:
    """What relocation wrote, and what it linked instead of writing."""
    line = f"Written: {outcome.written_files} files, {size(outcome.written_bytes or 0)}"
    if outcome.shared_files:
        line += (
            f"; shared with environments migrated before it: {outcome.shared_files} "
            f"files, {size(outcome.shared_bytes or 0)} (hard links, as in the source)"
        )
    return line


def activation_hint(dest: Path) -> list[str]:
    """What conda's clone prints, and the site guide shows, after a copy."""
    return [
        "#",
        "# To activate this environment, use",
        "#",
        f"#     $ conda activate {dest}",
        "#",
        "# To deactivate an active environment, use",
        "#",
        "#     $ conda deactivate",
        "",
    ]
