"""The journal's transaction around one environment's copy.

A copy is provisional while it is made and checked (any failure, a stop
included, removes it and leaves the source untouched); it is committed
once verified, durably, before anything may touch the source; and the
source is removed last, only while it is still exactly what was copied.
The journal records each step before it is taken, so a run killed anywhere
is finished by the next one (see ``resume``), through these same steps.
"""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Final

from .exceptions import CopyCommitted, DestinationTaken, InUse, MigrateError
from .jobs import jobs_for
from .names import MARKER, STAGING_PREFIX
from .progress import size
from .result import Phase, Status
from .safety import journal
from .safety.atomic import fsync_directory
from .safety.durable import flush_tree
from .safety.interrupt import uninterruptible
from .safety.noreplace import rename_noreplace
from .safety.remove import (
    check_no_writers,
    check_removable,
    processes_using,
    remove_environment,
    remove_tree,
)
from .snapshot import changes, changes_since, left_over, measure

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .backends import Backend
    from .options import Options
    from .output import Output
    from .quota import Room
    from .relocation.share import Written
    from .result import MigrationResult
    from .safety.remove import User
    from .snapshot import Stamp


@dataclass
class Migration:
    """One environment's migration: what each of its steps works with."""

    options: Options
    backend: Backend
    out: Output
    outcome: MigrationResult
    #: What the environments of a run share, and the quota, carried from
    #: one to the next (see ``quota``).
    room: Room | None = None
    #: The step under way: the one a stop is reported in.
    phase: Phase = Phase.CHECKING

    @classmethod
    def start(
        cls,
        options: Options,
        backend: Backend,
        out: Output,
        outcome: MigrationResult,
        room: Room | None = None,
    ) -> Migration:
        """The migration of ``outcome``'s environment, with ``--jobs`` threads
        (or ``CONDA_MIGRATE_JOBS``), or the default for the filesystems it
        moves between (see ``jobs``), chosen for each environment on its own:
        the log says how many and why, since the right count differs many
        times between them."""
        if options.jobs is not None:
            out.log_only(f"threads: {options.jobs} ({options.jobs_from})")
        else:
            jobs, why = jobs_for(outcome.source, outcome.dest)
            out.log_only(f"threads: {jobs} ({why}; --jobs sets it)")
            options = replace(options, jobs=jobs)
        return cls(options, backend, out, outcome, room)

    def end(self, status: Status, message: str) -> MigrationResult:
        """Every ending but a failure: the status, and the words the user sees."""
        self.outcome.status = status
        self.outcome.message = message
        self.out.info(message, "")
        return self.outcome


def discard(path: Path) -> None:
    """Remove a copy this run made (the caller knows it is this run's)."""
    if path.is_symlink():
        path.unlink()
    elif path.exists():
        remove_tree(path)


@dataclass
class Copy:
    """The directory this run copies into, and the journal entry that proves
    it is this run's: made fresh (``mkdir`` never follows a planted symlink)
    at a random staging name recorded before it is made, or at the
    destination, whose inode and a marker with the run's id are recorded
    before anything is written."""

    entry: journal.Entry
    path: Path
    #: What later environments of the run may link to once this is committed.
    written: list[Written] = field(default_factory=list)
    #: Its entries' stamps as the relocate engine took them while it wrote
    #: them; None where only a walk of the copy can tell (conda's clone).
    stamps: dict[str, Stamp] | None = None
    #: Its symlinks that lead out of it, and where, as the engine found them
    #: (see ``scratch_refs``).
    links_out: dict[str, str] = field(default_factory=dict)

    @classmethod
    def make(cls, entry: journal.Entry, staged: bool, state_dir: Path) -> Copy:
        dest = Path(entry.dest)
        path = dest
        if staged:
            path = dest.with_name(
                f"{STAGING_PREFIX}{entry.name}-{secrets.token_hex(8)}"
            )
            entry = replace(entry, staging=str(path))
        # Recorded before it exists, so that no kill can leave a copy the
        # journal does not know of.
        journal.record(state_dir, entry)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            if staged:
                raise
            # conda's clone copies at the destination, which the preflight
            # found free: something made it since (a user, another tool).
            raise DestinationTaken(
                Path(entry.source), dest, None, copied=False
            ) from None
        try:
            fsync_directory(path.parent)
            entry = replace(entry, copy_ino=os.lstat(path).st_ino)
            if not staged:
                _write_marker(path, entry.run)
            # The proof survives a power cut: nothing is written into the copy
            # before this is on disk.
            journal.record(state_dir, entry)
        except OSError:
            # A full disk right after the mkdir: the caller forgets the
            # entry, so the directory (empty, or holding only the marker)
            # goes too, or no journal would know of it.
            with suppress(OSError):
                (path / MARKER).unlink(missing_ok=True)
                path.rmdir()
            raise
        return cls(entry, path)


def _write_marker(path: Path, run: str) -> None:
    """The run's id inside a copy made at the destination, durably."""
    fd = os.open(
        path / MARKER,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
        0o600,
    )
    with open(fd, "w") as marker:
        marker.write(run)
        marker.flush()
        os.fsync(fd)
    fsync_directory(path)


@contextmanager
def provisional(run: Migration, copy: Copy) -> Iterator[None]:
    """Undo the copy if the block fails in any way, a stop included: remove
    it, unregister it (conda's clone registers the copy it makes at the
    destination; a staged copy is not registered, and what is at the
    destination then may be another's), then forget it, so that an undo cut
    short is still in the journal for the next run. The source was never
    touched."""
    try:
        yield
    except CopyCommitted:
        raise  # in place: the next run finishes from it (see ``forget``)
    except BaseException:
        dest = Path(copy.entry.dest)
        discard(copy.path)
        if copy.path == dest:
            run.backend.unregister(dest)
        journal.clear(run.options.state_dir, dest)
        raise


def forget(run: Migration, err: BaseException) -> None:
    """A failed migration's journal entry goes, but for a committed copy's:
    the next run finishes from that copy, as after a kill in the commit."""
    if not isinstance(err, CopyCommitted):
        journal.clear(run.options.state_dir, run.outcome.dest)


#: What a copy's stamps leave out: its own directory, proven by its inode
#: (the commit removes the marker, which moves its mtime), and the marker.
_UNSTAMPED: Final = ("", MARKER)


def copy_stamps(
    path: Path, jobs: int | None, taken: dict[str, Stamp] | None = None
) -> dict[str, Stamp]:
    """The verified copy as it is committed. A later run finishing the
    removal deletes the source only if the copy is still this: a user may
    have emptied the directory (same inode) and made another
    environment in it meanwhile.

    Without ``taken`` the copy is walked for them (an ``lstat`` per entry:
    a round trip each on a network filesystem). The relocate engine takes
    them as it writes instead: each entry's own ``fstat`` or ``lstat`` after
    its last change by the engine, which is what the walk would see, as
    nothing else writes into the copy before the commit (whose own changes,
    the marker and the top directory, are never stamped). The shortcut can
    only err towards keeping both environments: an entry stamped before a
    later change of its inode carries an older ``ctime`` and no more links,
    which the check of a resumed run (``copy_changes``) can find differing
    where a walk's stamp would match, never the reverse; an entry missed
    shows as added, one in excess as removed; and a change made to the copy
    between its copy and its commit, which the walk would have taken as
    part of the verified copy, shows as a change."""
    if taken is None:
        taken = measure(path, jobs, sizes=False).stamps
    return {rel: stamp for rel, stamp in taken.items() if rel not in _UNSTAMPED}


def copy_changes(stamps: dict[str, Stamp], path: Path, jobs: int | None) -> list[str]:
    """What differs in ``path`` from the copy as it was verified."""
    return changes_since(stamps, path, jobs, ignore=_UNSTAMPED)


def commit(
    run: Migration, entry: journal.Entry, path: Path, *, resumed: bool = False
) -> None:
    """Make the verified copy at ``path`` the environment at its destination,
    durably, and remember the move, before anything may touch the source.
    Each step may be done again: a run killed midway is finished by the next
    one from here.

    Anything made at the destination since the run found it free stops it
    (``DestinationTaken``): this run's copy is then removed (it is still
    provisional), and a ``resumed`` one stays where it is, its journal entry
    with it, for the next run to finish from."""
    dest = Path(entry.dest)
    journal.record(run.options.state_dir, entry)
    (path / MARKER).unlink(missing_ok=True)
    flush_tree(path)
    if path != dest:
        try:
            rename_noreplace(path, dest)
        except FileExistsError:
            kept = path if resumed else None
            raise DestinationTaken(Path(entry.source), dest, kept) from None
        fsync_directory(dest.parent)
    try:
        run.backend.register(dest)
        # Before the source is touched: a journal deleted after a kill in the
        # removal must not leave the rc files naming the old place, gone since.
        journal.remember_move(run.options.state_dir, Path(entry.source), dest)
    except (OSError, MigrateError) as err:
        raise CopyCommitted(Path(entry.source), dest, err) from err


def remove_old(
    run: Migration, entry: journal.Entry, stamps: dict[str, Stamp] | None
) -> MigrationResult:
    """The copy is verified, flushed and registered; the source goes only
    when it is still exactly what was copied (or, where a removal stopped
    midway, what is left is nothing but a part of that). A refusal here keeps
    both; a removal that cannot finish puts the rest back and is reported by
    every run until it is gone."""
    outcome = run.outcome
    try:
        copied, users = _removable(run, entry, stamps)
    except MigrateError as err:
        return _kept(run, err)
    for user in users:
        run.out.info(
            f"warning: {user} is using {outcome.source}; it is removed all the same."
        )
    run.out.info(f"Remove all packages in environment {outcome.source}:")
    if outcome.packages is not None:
        run.out.info(
            f"  {outcome.packages} packages, {outcome.files} files, "
            f"{size(outcome.bytes or 0)}"
        )
    try:
        _remove(run, entry, copied)
    except _Unfinished as unfinished:
        return run.end(Status.COPIED, unfinished.said(outcome))
    except MigrateError as err:
        return _kept(run, err, restore=entry)
    except OSError as err:
        return run.end(
            Status.COPIED,
            f"Copied to {outcome.dest}, but removing {outcome.source} failed: {err}. "
            "The copy is verified and complete; what is left of the old environment "
            f"was put back at {outcome.source}. Every run reports it until it is gone: "
            "fix the cause and run the same command again, or remove it by hand.",
        )
    done = "Successfully migrated" if not outcome.missing else "Migrated, damaged,"
    return run.end(
        Status.MIGRATED, f"{done} and removed old environment: {outcome.source}"
    )


def _kept(
    run: Migration, err: MigrateError, restore: journal.Entry | None = None
) -> MigrationResult:
    """Both environments kept. A process using the source (``InUse``) only
    delays the removal: the entry stays for the next run, put back whole
    (``restore``) where the removal had begun; any other refusal settles it."""
    state_dir, dest = run.options.state_dir, run.outcome.dest
    if not isinstance(err, InUse):
        journal.clear(state_dir, dest)
    elif restore is not None:
        journal.record(state_dir, restore)
    return run.end(
        Status.COPIED,
        f"Copied to {dest}, but the old environment was not removed: {err}",
    )


def _removable(
    run: Migration, entry: journal.Entry, stamps: dict[str, Stamp] | None
) -> tuple[dict[str, Stamp], list[User]]:
    """The refusals before the removal: the source as it was copied, which
    the removal checks it against, and who uses it (a process that only
    reads it does not keep it)."""
    source = run.outcome.source
    check_removable(
        source,
        run.options.scanned,
        run.backend.protected_prefixes(),
        remains=entry.phase == Phase.REMOVING,
    )
    if stamps is None:
        raise MigrateError(
            f"There is no record of {source} as it was copied, so it cannot be "
            "shown unchanged since.",
            hint="Both were kept. Compare them, then remove the old one by hand.",
        )
    users = processes_using(source)
    check_no_writers(source, users)
    return stamps, users


def _remove(run: Migration, entry: journal.Entry, stamps: dict[str, Stamp]) -> None:
    """Rename the source aside, check it there, delete it: the journal says
    so first, and a stop waits for it to finish."""
    outcome, options = run.outcome, run.options
    again = entry.phase == Phase.REMOVING

    def unchanged(now: dict[str, Stamp]) -> None:
        """Checked once renamed aside, where nothing can write to it by name."""
        changed = (left_over if again else changes)(stamps, now)
        if changed:
            raise MigrateError(
                f"{outcome.source} changed since it was copied to {outcome.dest}:\n  "
                + "\n  ".join(changed[:10]),
                hint="Both were kept. Keep working in the new one and remove the "
                f"old one by hand, or remove the copy ({outcome.dest}) and run again.",
            )

    run.out.phase(Phase.REMOVING)
    try:
        with uninterruptible():
            try:
                journal.record(options.state_dir, replace(entry, phase=Phase.REMOVING))
            except OSError as err:
                raise _Unfinished("recording the removal in the journal", err) from err
            remove_environment(outcome.source, options.jobs, unchanged)
            step = "updating conda's list of environments (environments.txt)"
            try:
                run.backend.unregister(outcome.source)
                step = "recording the removal in the journal"
                journal.record(options.state_dir, replace(entry, phase=Phase.DONE))
            except (MigrateError, OSError) as err:
                raise _Unfinished(step, err, removed=True) from err
    except (MigrateError, OSError, _Unfinished):
        run.out.phase(None)
        raise
    run.out.phase(None)


class _Unfinished(Exception):
    """A step of the removal's own bookkeeping failed, before the old
    environment was touched or after it was deleted: nothing was put back
    (there is nothing to), and the journal, left as it was, has the next run
    finish what follows it (see ``resume``)."""

    def __init__(
        self, step: str, cause: OSError | MigrateError, *, removed: bool = False
    ) -> None:
        super().__init__(step, cause)
        self.step, self.cause, self.removed = step, cause, removed

    def said(self, outcome: MigrationResult) -> str:
        if not self.removed:
            return (
                f"Copied to {outcome.dest}, but {outcome.source} was not removed: "
                f"{self.step} failed first: {self.cause}. Both environments are "
                "whole. Run the same command again once that is fixed: it removes "
                f"{outcome.source} and finishes the migration."
            )
        return (
            f"Copied to {outcome.dest}, and removed the old environment "
            f"{outcome.source} after its copy was verified; then {self.step} "
            f"failed: {self.cause}. The environment is whole at {outcome.dest}. "
            "Run the same command again once that is fixed: it finishes the "
            "migration (conda's list of environments, your rc files)."
        )
