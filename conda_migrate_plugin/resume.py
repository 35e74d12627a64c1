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
from pathlib import Path
from typing import TYPE_CHECKING

from . import journal
from .exceptions import MigrateError
from .lock import hold_all, is_held
from .migrate import Outcome, commit, discard, remove_old
from .remove import finish_removal

if TYPE_CHECKING:
    from .backend import Backend
    from .migrate import Options, Output


def _finish_verified(
    entry: journal.Entry, options: Options, backend: Backend, out: Output
) -> Outcome | None:
    source, dest = Path(entry.source), Path(entry.dest)
    outcome = Outcome(entry.name, source, dest, engine=entry.method)
    staging = Path(entry.staging) if entry.staging else None
    if (
        staging
        and not dest.exists()
        and journal.is_our_copy(entry, staging, verified=True)
    ):
        commit(entry, staging, options, backend)
    if not journal.is_our_copy(entry, dest, verified=True):
        journal.clear(options.state_dir, dest)
        out.say(
            f"An interrupted run had copied {source} to {dest}, but that copy is no "
            f"longer there as it was made; {source} was left as it is."
        )
        return None
    # A run killed in ``commit`` after its rename, before the registration.
    backend.register(dest)
    if finish_removal(source) or not source.exists():
        backend.unregister(source)
        journal.clear(options.state_dir, dest)
        outcome.status = "migrated"
        outcome.message = (
            f"Finished the removal of {source} that an interrupted run had begun."
        )
        out.say(outcome.message)
        return outcome
    out.say(
        f"A run had copied and verified {source} to {dest}, and not finished "
        "removing it; finishing it."
        if entry.phase == journal.REMOVING
        else f"An interrupted run had copied and verified {source} to {dest}; finishing it."
    )
    return remove_old(
        outcome,
        entry,
        options,
        backend,
        out,
        journal.load_stamps(options.state_dir, dest),
    )


def _only_marker(entry: journal.Entry, path: Path) -> bool:
    try:
        names = os.listdir(path)
        if path.is_symlink() or names not in ([], [journal.MARKER]):
            return False
        return not names or (path / journal.MARKER).read_text() == entry.run
    except OSError:
        return False


def _discard_unverified(
    entry: journal.Entry, options: Options, backend: Backend, out: Output
) -> None:
    source, dest = Path(entry.source), Path(entry.dest)
    for path in filter(None, (Path(entry.staging) if entry.staging else None, dest)):
        if journal.is_our_copy(entry, path):
            discard(path)
            if path == dest:
                backend.unregister(dest)
            out.say(
                f"An interrupted run left an unverified copy of {source} at {path}; "
                f"it was removed. {source} was not touched."
            )
        elif path == dest and _only_marker(entry, path):
            # Made, but stopped before its inode was recorded: it holds
            # nothing but this run's marker, if that.
            (path / journal.MARKER).unlink(missing_ok=True)
            path.rmdir()
    journal.clear(options.state_dir, dest)


def resume(options: Options, backend: Backend, out: Output) -> list[Outcome]:
    outcomes = []
    for entry in journal.entries(options.state_dir):
        source, dest = Path(entry.source), Path(entry.dest)
        if is_held(options.state_dir, dest):
            continue  # a live run is on it
        if options.dry_run:
            out.say(
                f"An interrupted migration of {source} to {dest} will be finished by the next run."
            )
            continue
        try:
            with hold_all(options.state_dir, source, dest):
                if entry.phase == journal.DONE:
                    outcomes.append(
                        Outcome(
                            entry.name,
                            source,
                            dest,
                            "migrated",
                            "Migrated by an interrupted run.",
                            engine=entry.method,
                        )
                    )
                elif entry.phase in (journal.VERIFIED, journal.REMOVING):
                    finished = _finish_verified(entry, options, backend, out)
                    outcomes += [finished] if finished else []
                else:
                    _discard_unverified(entry, options, backend, out)
        except (MigrateError, OSError) as err:
            # A failure on every run until it is gone: never "nothing to do".
            message = f"Could not finish the migration of {source}: {err}"
            out.tell(message)
            outcomes.append(Outcome(entry.name, source, dest, "failed", message))
    return outcomes
