"""Finish what a killed run left, before anything else is done.

The journal says how far each interrupted migration got: an unverified copy
is removed (its source was never touched), a verified one has its source
compared once more and removed, and a finished one still has its rc files
to update; so a rerun of the same command completes the job exactly once.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from . import journal
from .compare import compare_contents
from .discover import HISTORY
from .exceptions import MigrateError
from .lock import hold_all, is_held
from .migrate import STAGING_DIR, Outcome, discard, remove_old
from .remove import finish_removals

if TYPE_CHECKING:
    from .backend import Backend
    from .migrate import Options, Output


def _finish_verified(
    entry: journal.Entry, options: Options, backend: Backend, out: Output
) -> Outcome:
    source, dest = Path(entry.source), Path(entry.dest)
    outcome = Outcome(entry.name, source, dest, engine=entry.method)
    finish_removals(source.parent)
    if not (source / HISTORY).is_file():
        backend.unregister(source)
        journal.clear(options.state_dir, dest)
        outcome.status = "migrated"
        outcome.message = (
            f"Finished the removal of {source} that an interrupted run had begun."
        )
        out.say(outcome.message)
        return outcome
    differences = compare_contents(backend.contents(source), backend.contents(dest))
    if differences:
        journal.clear(options.state_dir, dest)
        outcome.status = "copied"
        outcome.differences = differences
        outcome.message = (
            f"{source} changed since it was copied to {dest}; both were kept."
        )
        out.say(outcome.message)
        return outcome
    out.say(
        f"An interrupted run had copied and verified {source} to {dest}; finishing it."
    )
    return remove_old(outcome, options, backend, out)


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
                discard(dest.parent / STAGING_DIR / entry.name)
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
                    continue
                if entry.phase == journal.VERIFIED:
                    outcomes.append(_finish_verified(entry, options, backend, out))
                    continue
                discard(dest)
                backend.unregister(dest)
                journal.clear(options.state_dir, dest)
                out.say(
                    f"An interrupted run left an unverified copy of {source} at {dest}; "
                    f"it was removed. {source} was not touched."
                )
        except (MigrateError, OSError) as err:
            # A failure on every run until it is gone: never "nothing to do".
            message = f"Could not finish the migration of {source}: {err}"
            out.tell(message)
            outcomes.append(Outcome(entry.name, source, dest, "failed", message))
    return outcomes
