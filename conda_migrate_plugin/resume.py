"""Finish what a killed run left, before anything else is done.

The journal says how far each interrupted migration got: an unverified copy
is removed (its source was never touched) when it is provably the copy that
run made; a verified one has its source checked unchanged since the copy and
removed; and a finished one still has its rc files to update. So a rerun of
the same command completes the job exactly once, and never deletes what a
user made at the same path in the meantime.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from .exceptions import MigrateError
from .names import MARKER, STAGING_PREFIX, removing_aside
from .result import MigrationResult, Phase, Status
from .safety import journal
from .safety.lock import hold_all, is_held
from .safety.remove import put_back_remains
from .transaction import Migration, commit, copy_changes, discard, remove_old

if TYPE_CHECKING:
    from .backends import Backend
    from .options import Options
    from .output import Output


def _finish_verified(
    entry: journal.Entry, options: Options, backend: Backend, out: Output
) -> MigrationResult | None:
    """The copy was verified: commit it again and remove the source, once
    both are shown to be what they were."""
    source, dest = Path(entry.source), Path(entry.dest)
    copy = _verified_copy(entry)
    if copy is None:
        journal.clear(options.state_dir, dest)
        if entry.phase == Phase.REMOVING:
            return _copy_gone_mid_removal(entry, options, out)
        out.info(
            f"An interrupted run had copied {source} to {dest}, but that copy is no "
            f"longer there as it was made; {source} was left as it is."
        )
        return None
    outcome = MigrationResult(entry.name, source, dest, engine=entry.method)
    run = Migration.start(options, backend, out, outcome)
    verified = journal.load_stamps(options.state_dir, dest, journal.COPY)
    changed = (
        ["there is no record of it as it was verified"]
        if verified is None
        else copy_changes(verified, copy, run.options.jobs)
    )
    if changed:
        return _not_the_copy(outcome, copy, changed, options, out)
    # Killed anywhere in the commit (before the rename, or before conda's
    # registry was written): each step is done again.
    commit(run, entry, copy, resumed=True)
    if not put_back_remains(source) and not source.exists():
        backend.unregister(source)
        journal.clear(options.state_dir, dest)
        outcome.status = Status.MIGRATED
        outcome.message = (
            f"Finished the removal of {source} that an interrupted run had begun."
            if entry.phase == Phase.REMOVING
            else f"{source} is gone since an interrupted run copied and verified it "
            f"to {dest} (the scratch purge, or you, removed it); the copy is complete."
        )
        out.info(outcome.message)
        return outcome
    out.info(
        f"A run had copied and verified {source} to {dest}, and not finished "
        "removing it; finishing it."
        if entry.phase == Phase.REMOVING
        else f"An interrupted run had copied and verified {source} to {dest}; finishing it."
    )
    return remove_old(run, entry, journal.load_stamps(options.state_dir, dest))


def _copy_gone_mid_removal(
    entry: journal.Entry, options: Options, out: Output
) -> MigrationResult:
    """The removal of the source had begun, and the verified copy is gone
    since (deleted by a user who took it for a dead job's half-made one):
    what is left of the source is a part of it, which is kept, and the way
    back is the YAML the run wrote before it copied anything."""
    source, dest = Path(entry.source), Path(entry.dest)
    left = next(filter(os.path.lexists, (removing_aside(source), source)), None)
    what = (
        f"What is left of {source} is at {left}: only a part of it, which was "
        "not touched."
        if left
        else f"Nothing is left of {source}."
    )
    remake = _remake(entry, options)
    if remake:
        what += remake + (f" (then remove {left} by hand)." if left else ".")
    message = (
        f"An interrupted run had copied and verified {source} to {dest} and begun "
        f"removing {source}, but that copy is no longer there as it was made. {what}"
    )
    out.important(message)
    return MigrationResult(
        entry.name, source, dest, Status.FAILED, message, engine=entry.method
    )


def _remake(entry: journal.Entry, options: Options) -> str:
    """The way back where the environment is lost: the YAML the run wrote
    before it copied anything, if it is still there."""
    yaml = options.yaml_dir / f"{entry.name}.yml"
    if not yaml.is_file():
        return ""
    return (
        " Make the environment again from its description: conda env create "
        f"-p {entry.dest} -f {yaml}"
    )


def _verified_copy(entry: journal.Entry) -> Path | None:
    """Where the verified copy is, if it still is the directory the run made:
    still at its staging name where a kill came before the rename (whatever
    was made at the destination since: the commit refuses to replace it), or
    at the destination."""
    for copy in (entry.staging, entry.dest):
        if copy and journal.is_our_copy(entry, Path(copy), verified=True):
            return Path(copy)
    return None


def _not_the_copy(
    outcome: MigrationResult,
    copy: Path,
    changed: list[str],
    options: Options,
    out: Output,
) -> MigrationResult:
    """The directory is the one the run made, but not what it verified (the
    user emptied it and made another environment there): deleting the
    source now could lose the only copy of what it holds."""
    source, dest = outcome.source, outcome.dest
    journal.clear(options.state_dir, dest)
    aside = removing_aside(source)
    left = f" What is left of {source} is at {aside}." if os.path.lexists(aside) else ""
    outcome.status = Status.SKIPPED
    outcome.message = (
        f"An interrupted run had copied and verified {source} to {dest}, but "
        f"{copy} is no longer the copy it verified:\n  "
        + "\n  ".join(changed[:10])
        + f"\n{source} was left as it is.{left} If {dest} is yours now, migrate "
        f"{source} with another --dest; or compare the two and remove the old "
        "one by hand."
    )
    out.important(outcome.message)
    return outcome


def _only_marker(entry: journal.Entry, path: Path) -> bool:
    try:
        names = os.listdir(path)
        if path.is_symlink() or names not in ([], [MARKER]):
            return False
        return not names or (path / MARKER).read_text() == entry.run
    except OSError:
        return False


def _discard_unverified(
    entry: journal.Entry, options: Options, backend: Backend, out: Output
) -> MigrationResult | None:
    source, dest = Path(entry.source), Path(entry.dest)
    for path in filter(None, (Path(entry.staging) if entry.staging else None, dest)):
        if journal.is_our_copy(entry, path):
            if not os.path.lexists(source):
                journal.clear(options.state_dir, dest)
                return _last_of_it(entry, path, options, out)
            discard(path)
            if path == dest:
                backend.unregister(dest)
            out.info(
                f"An interrupted run left an unverified copy of {source} at {path}; "
                f"it was removed. {source} was not touched."
            )
        elif path == dest and _only_marker(entry, path):
            # Made, but stopped before its inode was recorded: it holds
            # nothing but this run's marker, if that.
            (path / MARKER).unlink(missing_ok=True)
            path.rmdir()
    journal.clear(options.state_dir, dest)
    return None


def _last_of_it(
    entry: journal.Entry, path: Path, options: Options, out: Output
) -> MigrationResult:
    """The source is gone since the kill (purged): the unverified copy is
    all that is left of it, so it is kept, however incomplete."""
    source = Path(entry.source)
    remake = _remake(entry, options)
    # Removed before the environment is made again: conda's clone makes its
    # copy at the destination itself, which ``conda env create -p`` needs.
    message = (
        f"An interrupted run was copying {source}, and {source} is gone since "
        "(the scratch purge, or you, removed it), so the unverified copy of it at "
        f"{path} is all that is left of it: it was kept. It may be incomplete and "
        "was not checked. Take what you need from it, then remove it: rm -rf "
        f"{shlex.quote(str(path))}." + (f"{remake}." if remake else "")
    )
    out.important(message)
    return MigrationResult(
        entry.name,
        source,
        Path(entry.dest),
        Status.FAILED,
        message,
        engine=entry.method,
    )


def _unnamed_copies(options: Options, out: Output) -> None:
    """Staging directories no journal entry names (the user deleted the
    journal after a kill): nothing proves one is a copy this tool made, so
    none is removed, but each takes room in the home quota, so each run says
    so. The journal is read after the listing: every staging directory is
    named in it before it is made."""
    staged = sorted(options.dest_root.glob(f"{STAGING_PREFIX}*"))
    named = {entry.staging for entry in journal.entries(options.state_dir)}
    for path in staged:
        if str(path) not in named and path.is_dir() and not path.is_symlink():
            out.info(
                f"warning: {path} is a copy an interrupted run began, which no "
                "journal names any more: it takes room in your home and no run "
                f"will remove it. Remove it by hand: rm -rf {shlex.quote(str(path))}"
            )


def _planned(entry: journal.Entry, out: Output) -> list[MigrationResult]:
    """``--dry-run``: what the next run finishes. A verified copy's source
    is removed then (once shown unchanged and unused), so it is planned as
    that, not left for discovery to call "already migrated" and the user
    to remove by hand."""
    source, dest = Path(entry.source), Path(entry.dest)
    unverified = [
        path
        for path in filter(None, (entry.staging, entry.dest))
        if journal.is_our_copy(entry, Path(path))
    ]
    if entry.phase not in (Phase.VERIFIED, Phase.REMOVING, Phase.DONE) and (
        unverified and source.exists()
    ):
        out.info(
            f"Would remove the unverified copy {unverified[0]} that an interrupted "
            f"run left of {source}, which was not touched."
        )
        return []
    if entry.phase not in (Phase.VERIFIED, Phase.REMOVING) or not source.exists():
        out.info(
            f"An interrupted migration of {source} to {dest} will be finished by the next run."
        )
        return []
    message = (
        f"Would finish the interrupted migration of {source}: its copy {dest} is "
        f"verified; remove {source} once it is shown as it was copied."
    )
    out.info(message)
    return [MigrationResult(entry.name, source, dest, Status.PLANNED, message)]


def resume(options: Options, backend: Backend, out: Output) -> list[MigrationResult]:
    _unnamed_copies(options, out)
    outcomes = []
    for entry in journal.entries(options.state_dir):
        source, dest = Path(entry.source), Path(entry.dest)
        if options.array_share is not None and source not in options.array_share:
            continue  # another task's of the job array
        if is_held(options.state_dir, dest):
            continue  # a live run is on it
        if options.dry_run:
            outcomes += _planned(entry, out)
            continue
        try:
            with hold_all(options.state_dir, source, dest):
                if entry.phase == Phase.DONE:
                    outcomes.append(
                        MigrationResult(
                            entry.name,
                            source,
                            dest,
                            Status.MIGRATED,
                            "Migrated by an interrupted run.",
                            engine=entry.method,
                        )
                    )
                elif entry.phase in (Phase.VERIFIED, Phase.REMOVING):
                    finished = _finish_verified(entry, options, backend, out)
                    outcomes += [finished] if finished else []
                else:
                    kept = _discard_unverified(entry, options, backend, out)
                    outcomes += [kept] if kept else []
        except (MigrateError, OSError) as err:
            # A failure on every run until it is gone: never "nothing to do".
            message = f"Could not finish the migration of {source}: {err}"
            out.important(message)
            outcomes.append(
                MigrationResult(entry.name, source, dest, Status.FAILED, message)
            )
    return outcomes


def partial_copies(state_dir: Path) -> list[Path]:
    """The unverified copies killed runs left, provably theirs: what a run
    that cannot start for want of room says may go (their sources were never
    touched), since it could not remove them itself."""
    found = []
    for entry in journal.entries(state_dir):
        if entry.phase in (Phase.VERIFIED, Phase.REMOVING, Phase.DONE):
            continue
        for path in filter(None, (entry.staging, entry.dest)):
            if journal.is_our_copy(entry, Path(path)):
                found.append(Path(path))
    return found
