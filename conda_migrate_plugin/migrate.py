"""Steps 1 to 4 of the README, one environment at a time, destructive steps last.

For each environment: export its YAML, copy it (conda's clone, or
relocation), compare old and new, and only when they are the same register
the new one and remove the old one. Any failure removes the partial copy,
leaves the old environment untouched and moves on to the next. The journal
records each phase first, so a run killed anywhere can be finished by the
next one (see ``resume``).
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
import sys
import time
from contextlib import contextmanager, nullcontext, redirect_stdout, suppress
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from .compare import compare_contents, differences_from
from .damage import Damage, count_files, find_damage
from .discover import HISTORY
from .exceptions import (
    DestinationFull,
    InexactRelocation,
    Interrupted,
    InUse,
    MigrateError,
)
from .export import write_yaml
from .jobs import jobs_for
from .names import MARKER, STAGING_PREFIX
from .preflight import (
    changes_since,
    check_file_types,
    check_mounts,
    check_nested,
    check_owned,
    check_paths,
    check_space,
    check_writable,
    left_over,
    measure,
)
from .progress import PHASES, CopyProgress, Tee, duration, printable, size
from .records import portable_contents
from .safety import journal
from .safety.atomic import fsync_directory
from .safety.durable import flush_tree
from .safety.interrupt import check, received, uninterruptible
from .safety.lock import hold_all, name_holder
from .safety.remove import (
    check_no_writers,
    check_removable,
    processes_using,
    remove_environment,
    remove_tree,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from .backends import Backend
    from .discover import Candidate
    from .options import Options
    from .preflight import Footprint, Stamp
    from .quota import Need, Room
    from .records import EnvContents
    from .relocation.share import Written


#: Credentials that may stand beside what is printed and logged: a token in
#: a channel URL, a password in one, an assignment in an rc file.
_SECRETS = (
    (re.compile(r"/t/[^/\s]+"), "/t/<TOKEN>"),
    (re.compile(r"://[^/\s:@]+:[^/\s@]+@"), "://<CREDENTIALS>@"),
    (
        re.compile(
            r"\b(\w*(?:TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY)\w*)"
            r"(\s*[=:]\s*)\S+",
            re.IGNORECASE,
        ),
        r"\1\2<REDACTED>",
    ),
)


def redact(line: str) -> str:
    for pattern, replacement in _SECRETS:
        line = pattern.sub(replacement, line)
    return line


@dataclass
class Output:
    """Human output, silent under ``--json`` and ``-q``; everything also goes
    to the run's log, which is what a batch user reads after the job."""

    quiet: bool = False
    stream: TextIO = field(default_factory=lambda: sys.stdout)
    json: bool = False
    log: TextIO | None = None
    log_path: Path | None = None
    #: ``-v``: the log's details are shown too.
    verbose: int = 0
    phase_name: str | None = None
    phase_start: float = 0.0

    def info(self, *lines: str) -> None:
        """What the user follows the run by: hidden by ``-q`` and ``--json``."""
        for line in map(redact, lines):
            if not self.quiet:
                self.show(line)
            self._log(line)

    def important(self, *lines: str) -> None:
        """Errors and the summary: shown under ``-q`` too, never in JSON."""
        for line in map(redact, lines):
            if not self.json:
                self.show(line)
            self._log(line)

    def show(self, line: str) -> None:
        """A closed terminal (SIGHUP) or pipe must not turn into a failure of
        the environment being migrated: the log still gets every line."""
        try:
            print(printable(line), file=self.stream, flush=True)
        except BrokenPipeError:
            # ``| head`` is gone: the rest goes nowhere, quietly, as with
            # conda's own commands, and the run goes on.
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), self.stream.fileno())
            except (OSError, ValueError, AttributeError):
                pass
        except OSError:
            pass

    def on_terminal(self) -> bool:
        """Whether a person watches, rather than a batch job's file."""
        try:
            return not self.quiet and self.stream.isatty()
        except (AttributeError, ValueError):
            return False

    def screen_only(self, line: str) -> None:
        """An abridged form of what the log gets whole."""
        if not self.quiet:
            self.show(redact(line))

    def log_only(self, line: str) -> None:
        """Details a batch user may look up afterwards; on the screen only
        with ``-v``."""
        if self.verbose and not self.quiet and line:
            self.show(redact(line))
        self._log(line)

    def _log(self, line: str) -> None:
        if self.log and line:
            self.log.write(f"{time.strftime('%H:%M:%S')} {redact(line)}\n")
            self.log.flush()

    def phase(self, name: str | None) -> None:
        """Begin phase ``name`` (``None``: no phase), ending the one before
        with a line saying how long it took."""
        if name == self.phase_name:
            return
        if self.phase_name is not None:
            took = duration(time.monotonic() - self.phase_start)
            self.info(f"{PHASES[self.phase_name]} took {took}")
        self.phase_name, self.phase_start = name, time.monotonic()

    @contextmanager
    def conda_output(self) -> Iterator[None]:
        """conda's clone prints its own lines: shown unless ``-q``, always logged."""
        tee = Tee(None if self.quiet else self.stream, self._log)
        try:
            with redirect_stdout(tee):
                yield
        finally:
            tee.close_lines()

    def copy_progress(self, files: int, nbytes: int) -> CopyProgress:
        return CopyProgress(files, nbytes, None if self.quiet else self.stream)


class Status(str, Enum):
    """Where one environment ended up; the values are those of ``--json``,
    in the order the summary lists them."""

    #: copied, verified, and the old one removed
    MIGRATED = "migrated"
    #: copied and verified; the old one kept (``--keep-old``)
    KEPT = "kept"
    #: the destination already holds the same environment
    ALREADY = "already"
    #: what ``--dry-run`` would do
    PLANNED = "planned"
    #: copied and verified, but the old one could not be removed
    COPIED = "copied"
    #: not touched: the destination is taken, or another run holds it
    SKIPPED = "skipped"
    #: refused, or the copy failed or differed; the old one is untouched
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


#: The statuses a run exits 0 with.
SUCCEEDED: Final = frozenset(
    {Status.MIGRATED, Status.KEPT, Status.ALREADY, Status.PLANNED}
)
#: Environments at their destination (or, under ``--dry-run``, about to be):
#: the rc files follow them, also when an earlier run had put them there.
MOVED: Final = frozenset({Status.MIGRATED, Status.KEPT, Status.ALREADY, Status.PLANNED})
#: The statuses the summary explains with the first line of the message.
EXPLAINED: Final = frozenset({Status.COPIED, Status.SKIPPED, Status.FAILED})


@dataclass
class MigrationResult:
    """One environment's migration as the summary and ``--json`` report it."""

    name: str
    source: Path
    dest: Path
    status: Status = Status.FAILED
    message: str = ""
    yaml: Path | None = None
    engine: str | None = None
    packages: int | None = None
    files: int | None = None
    bytes: int | None = None
    differences: list[str] = field(default_factory=list)
    seconds: float | None = None
    #: What the purge took, found before the copy.
    damage: Damage | None = None
    #: Files of ``damage`` put back in the copy, and those still missing.
    restored: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    #: The commands that put back what is still missing.
    remedy: list[str] = field(default_factory=list)
    #: Files (and their bytes) the copy wrote, and those it made as links to
    #: an earlier environment's copy instead (see ``relocation.share``).
    written_files: int | None = None
    written_bytes: int | None = None
    shared_files: int | None = None
    shared_bytes: int | None = None
    #: What the removal of the source gave back (an inode the package cache
    #: or another environment shares stays).
    freed_files: int | None = None
    freed_bytes: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            key: str(value)
            if isinstance(value, Path)
            else value.to_json()
            if isinstance(value, Damage)
            else value
            for key, value in vars(self).items()
        }


def discard(path: Path) -> None:
    """Remove a copy this run made (the caller knows it is this run's)."""
    if path.is_symlink():
        path.unlink()
    elif path.exists():
        remove_tree(path)


@dataclass
class _Copy:
    """The directory this run copies into, and the journal entry that proves
    it is this run's: made fresh (``mkdir`` never follows a planted symlink)
    at a random staging name recorded before it is made, or at the
    destination, whose device, inode and a marker with the run's id are
    recorded before anything is written."""

    entry: journal.Entry
    path: Path
    #: What later environments of the run may link to once this is committed.
    written: list[Written] = field(default_factory=list)

    @classmethod
    def make(cls, entry: journal.Entry, staged: bool, state_dir: Path) -> _Copy:
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
        os.mkdir(path, 0o700)
        try:
            fsync_directory(path.parent)
            st = os.lstat(path)
            entry = replace(entry, copy_dev=st.st_dev, copy_ino=st.st_ino)
            if not staged:
                fd = os.open(
                    path / MARKER,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                    0o600,
                )
                with open(fd, "w") as marker:
                    marker.write(entry.run)
                    marker.flush()
                    os.fsync(fd)
                fsync_directory(path)
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


def _verify(
    source: Path, copy: Path, dest: Path, out: Output, jobs: int | None
) -> None:
    """The file-by-file check that gates every removal, whatever the engine."""
    from .relocation import xattrs
    from .relocation.verify import verify_files

    out.phase("verify")
    check = verify_files(source, copy, dest, jobs)
    if check.unsupported:
        out.info(f"warning: {xattrs.unsupported_warning(check.unsupported)}")
    _judge(source, check.problems, check.notes, out)


def _judge(source: Path, problems: list[str], notes: list[str], out: Output) -> None:
    """Notes go to the log; any problem stops the migration of ``source``."""
    for line in notes:
        out.log_only(f"note: {line}")
    if problems:
        raise MigrateError(
            f"The copy of {source} differs from it:\n  " + "\n  ".join(problems),
            hint="The old environment was left untouched and the copy removed.",
        )


def _relocate(
    candidate: Candidate,
    copy: _Copy,
    footprint: Footprint,
    options: Options,
    out: Output,
    outcome: MigrationResult,
    room: Room | None,
) -> None:
    """Copy into a staging directory beside the destination, checking each
    file as it is written, then rename into place: conda never sees an
    unverified copy."""
    from .relocation.relocate import relocate

    progress = out.copy_progress(outcome.files or 0, outcome.bytes or 0)
    try:
        result = relocate(
            candidate.prefix,
            copy.path,
            outcome.dest,
            listing=footprint.listing,
            jobs=options.jobs,
            quiet=options.quiet or options.json,
            progress=progress,
            shared=room.shared if room else None,
        )
    except (MigrateError, OSError) as err:
        full = _filled(err)
        if full is None:
            raise
        files, nbytes = progress.done
        quota = full.errno == errno.EDQUOT
        raise DestinationFull(
            ("Your quota on " if quota else "The filesystem of ")
            + f"{options.dest_root} filled up ({full.strerror}) while {candidate.name} "
            f"was copied: {files} of {outcome.files or 0} files, {size(nbytes)} of "
            f"{size(outcome.bytes or 0)}, were written when it did.",
            hint=f"The partial copy was removed and {candidate.prefix} is untouched. "
            "Make room (conda clean --all frees conda's package cache in $HOME; "
            "something else may be writing there), then run the same command again.",
        ) from err
    copy.written = result.written
    outcome.written_files = result.files - result.shared_files
    outcome.written_bytes = result.bytes - result.shared_bytes
    outcome.shared_files, outcome.shared_bytes = (
        result.shared_files,
        result.shared_bytes,
    )
    out.info(*(f"warning: {w}" for w in result.warnings))
    _judge(candidate.prefix, result.problems, result.notes, out)
    if result.inexact and options.method == "auto":
        raise InexactRelocation(
            f"{len(result.inexact)} package files of {candidate.prefix} name it in "
            f"binary data their records do not describe (such as {result.inexact[0]})."
        )


def _filled(err: BaseException) -> OSError | None:
    """The ``EDQUOT`` or ``ENOSPC`` behind ``err``, if one is."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.EDQUOT, errno.ENOSPC):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _clone(
    candidate: Candidate,
    entry: journal.Entry,
    options: Options,
    backend: Backend,
    out: Output,
    outcome: MigrationResult,
) -> _Copy:
    copy = _Copy.make(entry, False, options.state_dir)
    with provisional(copy, options.state_dir, backend):
        with out.conda_output():
            backend.clone(candidate.prefix, copy.path, quiet=options.quiet)
        outcome.engine = "clone"
        out.log_only("engine: conda's clone")
        _verify(candidate.prefix, copy.path, copy.path, out, options.jobs)
    return copy


def _copy(
    candidate: Candidate,
    footprint: Footprint,
    options: Options,
    backend: Backend,
    out: Output,
    outcome: MigrationResult,
    room: Room | None = None,
) -> _Copy:
    """A verified copy, not yet committed: relocation into a staging
    directory, or conda's clone at the destination (``--method auto`` turns
    to it where relocation cannot rewrite every file exactly)."""
    options.dest_root.mkdir(parents=True, exist_ok=True)
    journal.save_stamps(options.state_dir, outcome.dest, footprint.stamps)
    entry = journal.Entry(
        candidate.name,
        str(outcome.source),
        str(outcome.dest),
        journal.COPYING,
        "clone" if options.method == "clone" else "relocate",
        run=secrets.token_hex(16),
    )
    out.info(f"Packages: {outcome.packages}", f"Files: {outcome.files}")
    out.phase("copy")
    if options.method == "clone":
        return _clone(candidate, entry, options, backend, out, outcome)
    copy = _Copy.make(entry, True, options.state_dir)
    try:
        with provisional(copy, options.state_dir, backend):
            _relocate(candidate, copy, footprint, options, out, outcome, room)
    except InexactRelocation as err:
        if backend.name == "portable":
            raise MigrateError(
                f"{err} Relocation cannot rewrite them exactly.",
                hint="The old environment is untouched. Run conda migrate where conda "
                "is installed (conda's clone redoes them from the package cache), or "
                "accept them as they are with --method relocate.",
            ) from err
        out.info(f"{err} Using conda's clone instead.")
        return _clone(
            candidate, replace(entry, method="clone"), options, backend, out, outcome
        )
    outcome.engine = "relocate"
    out.log_only("engine: relocation")
    return copy


def _plan(
    outcome: MigrationResult,
    options: Options,
    out: Output,
    footprint: Footprint,
    wanted: Need,
    room: Room | None,
) -> MigrationResult:
    """What the run would do, with the room it would take: what the
    environments planned before this one hold counts once."""
    from .quota import freed

    outcome.status = Status.PLANNED
    removal = "" if options.keep_old else f" and remove {outcome.source}"
    outcome.written_files, outcome.written_bytes = wanted.files, wanted.bytes
    outcome.shared_files, outcome.shared_bytes = (
        wanted.shared_files,
        wanted.shared_bytes,
    )
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
    if not options.keep_old:
        outcome.freed_files, outcome.freed_bytes = freed(footprint)
        lines.append(
            f"Would free on the source: {outcome.freed_files} files and directories, "
            f"{size(outcome.freed_bytes)}"
        )
    if room is not None:
        room.plan(footprint, wanted)
    lines += _plan_repair(outcome)
    out.info(
        *lines,
        f"Would write {options.yaml_dir / (outcome.name + '.yml')}, copy, compare{removal}",
        "",
    )
    return outcome


def _plan_repair(outcome: MigrationResult) -> list[str]:
    """Which files lost to the purge the package caches hold intact, looked
    up without writing or downloading anything."""
    damage = outcome.damage
    if damage is None or not damage.conda:
        return []
    from .records import read_path_records
    from .relocation.repair import restore_missing

    lost = [rel for files in damage.conda.values() for rel in files]
    found = restore_missing(
        outcome.source,
        None,
        str(outcome.dest),
        read_path_records(outcome.source),
        lost,
    )
    outcome.restored = sorted(found.restored)
    outcome.missing = [rel for rel in outcome.missing if rel not in set(found.restored)]
    restorable = len(outcome.restored)
    said = (
        f"Would restore {restorable} of the {len(lost)} files the purge took "
        "from conda packages, from the package caches"
    )
    lines = [said]
    if restorable < len(lost):
        lines.append("  (the others are looked for in their channels too, by conda)")
    return lines


def _end(
    outcome: MigrationResult, status: Status, message: str, out: Output
) -> MigrationResult:
    """Every ending but a failure: the status, and the words the user sees."""
    outcome.status = status
    outcome.message = message
    out.info(message, "")
    return outcome


def _already_there(
    candidate: Candidate, backend: Backend, out: Output, outcome: MigrationResult
) -> MigrationResult | None:
    """The destination exists: this environment's copy, or something else,
    which is never touched."""
    source, dest = outcome.source, outcome.dest
    if not os.path.lexists(dest):
        return None
    differences = differences_from(source, dest, backend)
    if not differences:
        return _end(
            outcome,
            Status.ALREADY,
            f"{candidate.name} is already migrated: {dest} holds the same packages "
            f"and files. {source} was left as it is; once you no longer need it, "
            f"remove it with: conda env remove -p {source}",
            out,
        )
    for line in differences:
        out.log_only(f"{dest}: {line}")
    more = f" (and {len(differences) - 3} more)" if len(differences) > 3 else ""
    return _end(
        outcome,
        Status.SKIPPED,
        f"{dest} already exists and is not a copy of {source} (a name collision): "
        + "; ".join(differences[:3])
        + f"{more}. Neither was touched; {source} stays where it is. "
        "Remove or rename the other one, or choose another --dest.",
        out,
    )


def _preflight(
    options: Options, backend: Backend, outcome: MigrationResult, room: Room | None
) -> tuple[EnvContents, Footprint, Need]:
    """Everything that can refuse the environment, before anything is
    written; what it needs in the destination, counted after sharing."""
    from .quota import block_size, check_quota, need

    source, dest = outcome.source, outcome.dest
    check_paths(source, dest)
    old = backend.contents(source)
    footprint = measure(source, options.jobs)
    check_file_types(footprint)
    check_nested(footprint)
    check_mounts(footprint)
    check_owned(footprint, keep_old=options.keep_old)
    outcome.packages, outcome.files, outcome.bytes = (
        len(old.conda),
        footprint.files,
        footprint.bytes,
    )
    present = {rel for entries in footprint.listing.values() for rel, _ in entries}
    symlinks = {
        rel
        for entries in footprint.listing.values()
        for rel, st in entries
        if stat.S_ISLNK(st.st_mode)
    }
    outcome.damage = find_damage(source, present, symlinks)
    outcome.missing = outcome.damage.files
    wanted = need(
        footprint,
        block_size(room.dest if room else options.dest_root),
        room.shared if room else None,
    )
    if not options.dry_run:
        check_writable(options.dest_root)
        check_space(footprint, options.dest_root)
        quota = room.now() if room else None
        if quota is not None:
            check_quota(quota, wanted, options.dest_root)
    return old, footprint, wanted


def _export(
    candidate: Candidate,
    options: Options,
    backend: Backend,
    out: Output,
    outcome: MigrationResult,
) -> None:
    outcome.yaml = write_yaml(
        options.yaml_dir,
        candidate.name,
        backend.export_yaml(candidate.prefix, candidate.name),
    )
    out.log_only(f"YAML written: {outcome.yaml}")


def _compare(
    old: EnvContents,
    copy: _Copy,
    footprint: Footprint,
    options: Options,
    backend: Backend,
    out: Output,
    outcome: MigrationResult,
) -> None:
    """The site guide's comparison of the packages, and the source unchanged
    while it was copied: the last checks before the copy is committed."""
    source = outcome.source
    out.phase("verify")
    if outcome.engine == "relocate":
        # The copy's records are the source's, bytes for bytes but the
        # hashes of rewritten files: read both the same plain way, which
        # spares conda's parsing of every path of every package.
        old, new = portable_contents(source), portable_contents(copy.path)
    else:
        new = backend.contents(copy.path)
    outcome.differences = compare_contents(old, new)
    if outcome.differences:
        out.info(
            "Old and New Environments differ:",
            *(f"  {d}" for d in outcome.differences),
        )
        raise MigrateError(
            f"The copy of {source} is not the same environment.",
            hint="The old environment was left untouched and the copy removed.",
        )
    changed = changes_since(footprint.stamps, source, options.jobs)
    if changed:
        raise MigrateError(
            f"{source} changed while it was being copied:\n  "
            + "\n  ".join(changed[:10]),
            hint="The old environment was left as it is and the copy removed. "
            "Run again once nothing is installing into it or writing to it.",
        )
    out.phase(None)
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


def _count_restored(copy: Path, out: Output, outcome: MigrationResult) -> None:
    """Which files the purge took the copy holds again (the engine put them
    back from the package cache, checked like every other file), and which
    it still lacks."""
    lost = outcome.missing
    outcome.restored = [rel for rel in lost if os.path.exists(copy / rel)]
    outcome.missing = [rel for rel in lost if rel not in set(outcome.restored)]
    if outcome.restored:
        out.info(
            f"Restored {count_files(len(outcome.restored))} the purge took, from a package "
            "cache or channel (the log names each, and where it came from)"
        )
    for rel in outcome.restored:
        out.log_only(f"restored: {rel}")


def _report_missing(outcome: MigrationResult, out: Output) -> None:
    """Damage nothing could repair: on screen with what restores it, since
    the environment is not whole wherever it now is."""
    if not outcome.missing or outcome.damage is None:
        return
    moved = outcome.status not in (Status.PLANNED, Status.FAILED, Status.SKIPPED)
    where = outcome.dest if moved else outcome.source
    outcome.remedy = outcome.damage.remedy(where, outcome.missing)
    out.important(
        f"{count_files(len(outcome.missing))} that the records of {where} list are "
        "missing and could not be restored:",
        *(f"  {rel}" for rel in outcome.missing[:10]),
        *(["  ... (all of them are in the log)"] if len(outcome.missing) > 10 else []),
        "To restore them, run:",
        *(f"  {command}" for command in outcome.remedy),
        "",
    )
    for rel in outcome.missing[10:]:
        out.log_only(f"  {rel}")


def _written(outcome: MigrationResult) -> str:
    """What relocation wrote, and what it linked instead of writing."""
    line = f"Written: {outcome.written_files} files, {size(outcome.written_bytes or 0)}"
    if outcome.shared_files:
        line += (
            f"; shared with environments migrated before it: {outcome.shared_files} "
            f"files, {size(outcome.shared_bytes or 0)} (hard links, as in the source)"
        )
    return line


def _migrate_locked(
    candidate: Candidate,
    options: Options,
    backend: Backend,
    out: Output,
    outcome: MigrationResult,
    room: Room | None = None,
) -> MigrationResult:
    """The phases in order; ``step`` names the one a stop is reported in."""
    step = "checking"
    try:
        ended = _already_there(candidate, backend, out, outcome)
        if ended is not None:
            return ended
        old, footprint, wanted = _preflight(options, backend, outcome, room)
        if outcome.damage:
            out.info(*outcome.damage.summary())
        if options.dry_run:
            return _plan(outcome, options, out, footprint, wanted, room)
        step = "exporting"
        _export(candidate, options, backend, out, outcome)
        step = "copying"
        copy = _copy(candidate, footprint, options, backend, out, outcome, room)
        _count_restored(copy.path, out, outcome)
        step = "comparing"
        with provisional(copy, options.state_dir, backend):
            _compare(old, copy, footprint, options, backend, out, outcome)
        step = "registering"
        verified = replace(copy.entry, phase=journal.VERIFIED)
        # A stop that comes during the commit is raised as the block ends,
        # once the copy is committed and no longer provisional.
        with uninterruptible(), provisional(copy, options.state_dir, backend):
            journal.save_stamps(
                options.state_dir,
                outcome.dest,
                copy_stamps(copy.path, options.jobs),
                journal.COPY,
            )
            commit(verified, copy.path, options, backend)
            step = "committed"
        if room is not None and room.shared is not None:
            room.shared.add(outcome.dest, copy.written)
    except Interrupted as err:
        raise _stopped(err.signum, step, candidate.name, outcome) from None
    except (MigrateError, OSError) as err:
        journal.clear(options.state_dir, outcome.dest)
        # Code the run does not own may turn a signal into another error.
        signum = received(err)
        if signum is not None:
            raise _stopped(signum, step, candidate.name, outcome) from err
        outcome.message = str(err)
        # The copy was removed: nothing of it stays written or shared.
        outcome.written_files = outcome.written_bytes = None
        outcome.shared_files = outcome.shared_bytes = None
        out.important(f"Migration of {candidate.name} failed: {err}", "")
        if room is not None and _filled(err) is not None:
            room.full = (
                f"{options.dest_root} filled up while {candidate.name} was copied"
            )
        return outcome
    if options.keep_old:
        journal.record(options.state_dir, replace(verified, phase=journal.DONE))
        return _end(
            outcome,
            Status.KEPT,
            f"Copied to {outcome.dest}; the old environment was kept (--keep-old).",
            out,
        )
    try:
        done = remove_old(outcome, verified, options, backend, out, footprint.stamps)
    except Interrupted as err:
        step = "committed" if os.path.lexists(outcome.source) else "migrated"
        raise _stopped(err.signum, step, candidate.name, outcome) from None
    if done.status == Status.MIGRATED:
        from .quota import freed

        done.freed_files, done.freed_bytes = freed(footprint)
        out.info(
            f"Freed on the source: {done.freed_files} files and directories, "
            f"{size(done.freed_bytes)} (what the package cache or other environments "
            "share stays)",
            "",
        )
    return done


#: What a copy's stamps leave out: its own directory, proven by its device and
#: inode (the commit removes the marker, which moves its mtime), and the marker.
_UNSTAMPED: Final = ("", MARKER)


def copy_stamps(path: Path, jobs: int | None) -> dict[str, Stamp]:
    """The verified copy as it is committed. A later run finishing the
    removal deletes the source only if the copy is still this: a user may
    have emptied the directory (same device and inode) and made another
    environment in it meanwhile."""
    return {
        rel: stamp
        for rel, stamp in measure(path, jobs).stamps.items()
        if rel not in _UNSTAMPED
    }


def copy_changes(stamps: dict[str, Stamp], path: Path, jobs: int | None) -> list[str]:
    """What differs in ``path`` from the copy as it was verified."""
    return changes_since(stamps, path, jobs, ignore=_UNSTAMPED)


def commit(
    entry: journal.Entry, path: Path, options: Options, backend: Backend
) -> None:
    """Make the verified copy at ``path`` the environment at its destination,
    durably, before anything may touch the source. Each step may be done
    again: a run killed midway is finished by the next one from here."""
    dest = Path(entry.dest)
    journal.record(options.state_dir, entry)
    (path / MARKER).unlink(missing_ok=True)
    flush_tree(path)
    if path != dest:
        os.rename(path, dest)
        fsync_directory(dest.parent)
    backend.register(dest)


@contextmanager
def provisional(copy: _Copy, state_dir: Path, backend: Backend) -> Iterator[None]:
    """Undo the copy if the block fails in any way, a stop included: remove
    it, unregister it, then forget it, so that an undo cut short is still in
    the journal for the next run. The source was never touched."""
    try:
        yield
    except BaseException:
        dest = Path(copy.entry.dest)
        discard(copy.path)
        backend.unregister(dest)
        journal.clear(state_dir, dest)
        raise


def _stopped(
    signum: int, step: str, name: str, outcome: MigrationResult
) -> Interrupted:
    source = outcome.source
    if step == "migrated":  # the stop waited for the removal to finish
        return Interrupted(
            signum,
            f"after migrating {name} to {outcome.dest}. Run the same command "
            "again to continue with the rest.",
        )
    if step == "committed":
        # The stop waited for the commit: the copy is in place and listed.
        return Interrupted(
            signum,
            f"after copying {name}: the verified copy is at {outcome.dest} and "
            f"{source} is untouched. Run the same command again to finish: it "
            "removes the old environment once it is shown unchanged.",
        )
    copy_started = step not in ("checking", "exporting")
    return Interrupted(
        signum,
        f"while {step} {name}: "
        + ("the partial copy was removed and " if copy_started else "")
        + f"{source} is untouched. Run the same command again to continue.",
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
    options = with_jobs(options, outcome, out)
    try:
        locks = (
            nullcontext()
            if options.dry_run
            else hold_all(options.state_dir, outcome.source, outcome.dest)
        )
        with locks as holder:
            if holder is not None and _migrated_meanwhile(outcome):
                return _migrated_by_other(outcome, holder, options, out)
            outcome = _migrate_locked(candidate, options, backend, out, outcome, room)
            _report_missing(outcome, out)
            return outcome
    except Interrupted:
        raise
    except MigrateError as err:  # the lock is held by another run
        return _end(outcome, Status.SKIPPED, str(err), out)


def with_jobs(options: Options, outcome: MigrationResult, out: Output) -> Options:
    """``--jobs`` (or ``CONDA_MIGRATE_JOBS``), or the default for the filesystems this environment moves
    between (see ``jobs``), each environment on its own: the log says which
    and why, since the right count differs many times between them."""
    if options.jobs is not None:
        out.log_only(f"threads: {options.jobs} ({options.jobs_from})")
        return options
    jobs, why = jobs_for(outcome.source, outcome.dest)
    out.log_only(f"threads: {jobs} ({why}; --jobs sets it)")
    return replace(options, jobs=jobs)


def _migrated_meanwhile(outcome: MigrationResult) -> bool:
    """Another run, started alongside, moved it after this one found it."""
    return (
        not (outcome.source / HISTORY).is_file() and (outcome.dest / HISTORY).is_file()
    )


def _migrated_by_other(
    outcome: MigrationResult, holder: str, options: Options, out: Output
) -> MigrationResult:
    name_holder(options.state_dir, outcome.dest, holder)
    return _end(
        outcome,
        Status.ALREADY,
        f"{outcome.source} was already migrated to {outcome.dest} by another "
        f"conda-migrate run ({holder or 'unknown'}).",
        out,
    )


def remove_old(
    outcome: MigrationResult,
    entry: journal.Entry,
    options: Options,
    backend: Backend,
    out: Output,
    stamps: dict[str, Stamp] | None,
) -> MigrationResult:
    """The copy is verified, flushed and registered; the source goes only
    when it is still exactly what was copied (or, where a removal stopped
    midway, what is left is nothing but a part of that). A refusal here keeps
    both; a removal that cannot finish puts the rest back and is reported by
    every run until it is gone."""
    source = outcome.source
    again = entry.phase == journal.REMOVING
    kept = f"Copied to {outcome.dest}, but the old environment was not removed"
    try:
        check_removable(
            source, options.scanned, backend.protected_prefixes(), remains=again
        )
        if stamps is None:
            raise MigrateError(
                f"There is no record of {source} as it was copied, so it cannot be "
                "shown unchanged since.",
                hint="Both were kept. Compare them, then remove the old one by hand.",
            )
        users = processes_using(source)
        check_no_writers(source, users)
    except InUse as err:
        return _end(outcome, Status.COPIED, f"{kept}: {err}", out)
    except MigrateError as err:
        journal.clear(options.state_dir, outcome.dest)
        return _end(outcome, Status.COPIED, f"{kept}: {err}", out)
    for user in users:
        out.info(f"warning: {user} is using {source}; it is removed all the same.")
    out.info(f"Remove all packages in environment {source}:")
    if outcome.packages is not None:
        out.info(
            f"  {outcome.packages} packages, {outcome.files} files, "
            f"{size(outcome.bytes or 0)}"
        )
    out.phase("remove")

    def unchanged(aside: Path) -> None:
        """Checked once renamed aside, where nothing can write to it by name."""
        changed = (left_over if again else changes_since)(stamps, aside, options.jobs)
        if changed:
            raise MigrateError(
                f"{source} changed since it was copied to {outcome.dest}:\n  "
                + "\n  ".join(changed[:10]),
                hint="Both were kept. Keep working in the new one and remove the "
                f"old one by hand, or remove the copy ({outcome.dest}) and run again.",
            )

    try:
        with uninterruptible():
            journal.record(options.state_dir, replace(entry, phase=journal.REMOVING))
            remove_environment(source, stamps, options.jobs, unchanged)
            backend.unregister(source)
            journal.record(options.state_dir, replace(entry, phase=journal.DONE))
    except InUse as err:
        # Put back whole: the next run finishes it as this one would have.
        journal.record(options.state_dir, entry)
        out.phase(None)
        return _end(outcome, Status.COPIED, f"{kept}: {err}", out)
    except MigrateError as err:
        journal.clear(options.state_dir, outcome.dest)
        out.phase(None)
        return _end(outcome, Status.COPIED, f"{kept}: {err}", out)
    except OSError as err:
        out.phase(None)
        return _end(
            outcome,
            Status.COPIED,
            f"Copied to {outcome.dest}, but removing {source} failed: {err}. "
            "The copy is verified and complete; what is left of the old environment "
            f"was put back at {source}. Every run reports it until it is gone: "
            "fix the cause and run the same command again, or remove it by hand.",
            out,
        )
    out.phase(None)
    done = "Successfully migrated" if not outcome.missing else "Migrated, damaged,"
    return _end(
        outcome, Status.MIGRATED, f"{done} and removed old environment: {source}", out
    )


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
            outcome = _not_tried(candidate, options, out, room.full)
        else:
            outcome = migrate_one(candidate, options, backend, out, room)
        out.phase(None)
        outcome.seconds = time.monotonic() - started
        outcomes.append(outcome)
        settle(outcome)
    return outcomes


def _not_tried(
    candidate: Candidate, options: Options, out: Output, why: str
) -> MigrationResult:
    """After the destination filled, with no quota tool to say whether the
    next environment would fit: not tried, rather than copied into a full
    quota and removed again."""
    outcome = MigrationResult(
        candidate.name, candidate.prefix, options.dest_root / candidate.name
    )
    return _end(
        outcome,
        Status.SKIPPED,
        f"{candidate.name} was not tried: {why} (see above), and no quota tool "
        f"says how much room is left. {candidate.prefix} is untouched; make room "
        "and run the same command again.",
        out,
    )


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
