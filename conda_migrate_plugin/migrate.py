"""The seed's workflow, one environment at a time, destructive steps last.

For each environment: export its YAML, copy it (conda's clone, or
relocation), compare old and new, and only when they are the same register
the new one and remove the old one. Any failure removes the partial copy,
leaves the old environment untouched and moves on to the next. The journal
records each phase first, so a run killed anywhere can be finished by the
next one (see ``resume``).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from contextlib import contextmanager, nullcontext, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from . import journal
from .compare import already_migrated, compare_contents
from .exceptions import CloneUnavailable, MigrateError
from .export import write_yaml
from .interrupt import Interrupted, check, received, uninterruptible
from .lock import hold_all
from .preflight import (
    check_file_types,
    check_paths,
    check_space,
    check_writable,
    measure,
)
from .progress import PHASES, CopyProgress, Tee, duration
from .remove import check_removable, remove_environment

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from .backend import Backend
    from .discover import Candidate

STAGING_DIR = ".conda-migrate-staging"


@dataclass(frozen=True)
class Options:
    dest_root: Path
    yaml_dir: Path
    scanned: Path
    state_dir: Path
    method: str = "auto"
    keep_old: bool = False
    dry_run: bool = False
    jobs: int | None = None
    quiet: bool = False
    verbose: int = 0
    json: bool = False


@dataclass
class Output:
    """Human output, silent under ``--json`` and ``-q``; everything also goes
    to the run's log, which is what a batch user reads after the job."""

    quiet: bool = False
    stream: TextIO = field(default_factory=lambda: sys.stdout)
    json: bool = False
    log: TextIO | None = None
    phase_name: str | None = None
    phase_start: float = 0.0

    def say(self, *lines: str) -> None:
        for line in lines:
            if not self.quiet:
                self.show(line)
            self.note(line)

    def tell(self, *lines: str) -> None:
        """Errors and the summary: shown under ``-q`` too, never in JSON."""
        for line in lines:
            if not self.json:
                self.show(line)
            self.note(line)

    def show(self, line: str) -> None:
        """A closed terminal (SIGHUP) or pipe must not turn into a failure of
        the environment being migrated: the log still gets every line."""
        try:
            print(line, file=self.stream, flush=True)
        except OSError:
            pass

    def note(self, line: str) -> None:
        if self.log and line:
            self.log.write(f"{time.strftime('%H:%M:%S')} {line}\n")
            self.log.flush()

    def phase(self, name: str | None) -> None:
        """Begin phase ``name`` (``None``: no phase), ending the one before
        with a line saying how long it took."""
        if name == self.phase_name:
            return
        if self.phase_name is not None:
            took = duration(time.monotonic() - self.phase_start)
            self.say(f"{PHASES[self.phase_name]} took {took}")
        self.phase_name, self.phase_start = name, time.monotonic()

    @contextmanager
    def conda_output(self) -> Iterator[None]:
        """conda's clone prints its own lines: shown unless ``-q``, always logged."""
        tee = Tee(None if self.quiet else self.stream, self.note)
        try:
            with redirect_stdout(tee):
                yield
        finally:
            tee.close_lines()

    def copy_progress(self, files: int, nbytes: int) -> CopyProgress:
        return CopyProgress(files, nbytes, None if self.quiet else self.stream)


@dataclass
class Outcome:
    name: str
    source: Path
    dest: Path
    status: str = (
        "failed"  # migrated | kept | already | copied | skipped | failed | planned
    )
    message: str = ""
    yaml: Path | None = None
    engine: str | None = None
    packages: int | None = None
    files: int | None = None
    bytes: int | None = None
    differences: list[str] = field(default_factory=list)
    seconds: float | None = None

    def to_json(self) -> dict:
        return {
            key: str(value) if isinstance(value, Path) else value
            for key, value in vars(self).items()
        }


def discard(path: Path) -> None:
    """Remove a copy this run (or a dead run, per the journal) made."""
    if path.is_symlink():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _relocate(
    candidate: Candidate, dest: Path, options: Options, out: Output, outcome: Outcome
) -> None:
    """Copy into a staging directory beside the destination, verify file by
    file, then rename into place: conda never sees an unverified copy."""
    from .relocate import relocate
    from .verify import verify_files

    staging = dest.parent / STAGING_DIR / candidate.name
    discard(staging)
    staging.parent.mkdir(parents=True, exist_ok=True)
    try:
        result = relocate(
            candidate.prefix,
            staging,
            dest,
            jobs=options.jobs,
            quiet=options.quiet or options.json,
            progress=out.copy_progress(outcome.files or 0, outcome.bytes or 0),
        )
        out.say(*(f"warning: {w}" for w in result.warnings))
        out.phase("verify")
        check = verify_files(candidate.prefix, staging, dest)
        for line in check.notes:
            out.note(f"note: {line}")
        if check.problems:
            raise MigrateError(
                f"The relocated copy of {candidate.prefix} differs from it:\n  "
                + "\n  ".join(check.problems),
                hint="The old environment was left untouched and the copy removed.",
            )
        os.rename(staging, dest)
    finally:
        discard(staging)
        try:
            staging.parent.rmdir()
        except OSError:
            pass


def _copy(
    candidate: Candidate,
    dest: Path,
    options: Options,
    backend: Backend,
    out: Output,
    outcome: Outcome,
) -> None:
    out.say(f"Packages: {outcome.packages}", f"Files: {outcome.files}")
    out.phase("copy")
    if options.method in ("auto", "clone"):
        try:
            with out.conda_output():
                backend.clone(candidate.prefix, dest, quiet=options.quiet)
            outcome.engine = "clone"
            out.note("engine: conda's clone")
            return
        except CloneUnavailable as err:
            discard(dest)
            backend.unregister(dest)
            if options.method == "clone":
                raise
            out.note(f"conda's clone failed: {err}")
            out.say(
                f"conda's clone is not possible here ({err.reason}); "
                "relocating the environment instead."
            )
    _relocate(candidate, dest, options, out, outcome)
    outcome.engine = "relocate"
    out.note("engine: relocation")


def _plan(outcome: Outcome, options: Options, out: Output) -> Outcome:
    outcome.status = "planned"
    removal = "" if options.keep_old else f" and remove {outcome.source}"
    out.say(
        f"Packages: {outcome.packages}",
        f"Files: {outcome.files}",
        f"Size: {outcome.bytes:,} bytes",
        f"Would write {options.yaml_dir / (outcome.name + '.yml')}, copy, compare{removal}",
        "",
    )
    return outcome


def _migrate_locked(
    candidate: Candidate,
    options: Options,
    backend: Backend,
    out: Output,
    outcome: Outcome,
) -> Outcome:
    source, dest = outcome.source, outcome.dest
    entry = journal.Entry(
        candidate.name, str(source), str(dest), journal.COPYING, options.method
    )
    copy_started = False
    step = "checking"
    try:
        if os.path.lexists(dest) and already_migrated(source, dest, backend):
            outcome.status = "already"
            outcome.message = (
                f"{candidate.name} is already migrated: {dest} holds the same packages. "
                f"{source} was left as it is; once you no longer need it, remove it "
                f"with: conda env remove -p {source}"
            )
            out.say(outcome.message, "")
            return outcome
        if os.path.lexists(dest):
            outcome.status = "skipped"
            outcome.message = (
                f"{dest} already exists; it was not touched and {source} stays where it is. "
                "Remove or rename it, or choose another --dest."
            )
            out.say(outcome.message, "")
            return outcome
        check_paths(source, dest)
        old = backend.contents(source)
        footprint = measure(source)
        check_file_types(footprint)
        outcome.packages, outcome.files, outcome.bytes = (
            len(old.conda),
            footprint.files,
            footprint.bytes,
        )
        if options.dry_run:
            return _plan(outcome, options, out)
        check_writable(options.dest_root)
        check_space(footprint, options.dest_root)
        step = "exporting"
        outcome.yaml = write_yaml(
            options.yaml_dir,
            candidate.name,
            backend.export_yaml(source, candidate.name),
        )
        out.note(f"YAML written: {outcome.yaml}")
        step = "copying"
        journal.record(options.state_dir, entry)
        copy_started = True
        _copy(candidate, dest, options, backend, out, outcome)
        step = "comparing"
        out.phase("verify")
        outcome.differences = compare_contents(old, backend.contents(dest))
        if outcome.differences:
            out.say(
                "Old and New Environments differ:",
                *(f"  {d}" for d in outcome.differences),
            )
            raise MigrateError(
                f"The copy of {source} is not the same environment.",
                hint="The old environment was left untouched and the copy removed.",
            )
        out.phase(None)
        out.say(*activation_hint(dest), "Old and New Environments are same", "")
        step = "registering"
        with uninterruptible():
            backend.register(dest)
            journal.record(
                options.state_dir,
                journal.Entry(**{**vars(entry), "phase": journal.VERIFIED}),
            )
            copy_started = False
    except Interrupted as err:
        if copy_started:
            discard(dest)
            backend.unregister(dest)
            journal.clear(options.state_dir, dest)
        raise _stopped(err.signum, step, candidate.name, source, copy_started) from None
    except (MigrateError, OSError) as err:
        if copy_started:
            discard(dest)
            backend.unregister(dest)
            journal.clear(options.state_dir, dest)
        # Code the run does not own may turn a signal into another error.
        signum = received(err)
        if signum is not None:
            raise _stopped(signum, step, candidate.name, source, copy_started) from err
        outcome.message = str(err)
        out.tell(f"Migration of {candidate.name} failed: {err}", "")
        return outcome
    if options.keep_old:
        journal.record(
            options.state_dir, journal.Entry(**{**vars(entry), "phase": journal.DONE})
        )
        outcome.status = "kept"
        outcome.message = (
            f"Copied to {dest}; the old environment was kept (--keep-old)."
        )
        out.say(outcome.message, "")
        return outcome
    return remove_old(outcome, options, backend, out)


def _stopped(
    signum: int, step: str, name: str, source: Path, copy_started: bool
) -> Interrupted:
    return Interrupted(
        signum,
        f"while {step} {name}: "
        + ("the partial copy was removed and " if copy_started else "")
        + f"{source} is untouched. Run the same command again to continue.",
    )


def migrate_one(
    candidate: Candidate, options: Options, backend: Backend, out: Output
) -> Outcome:
    outcome = Outcome(
        candidate.name, candidate.prefix, options.dest_root / candidate.name
    )
    out.say(
        f"Migrating and comparing environment: {candidate.name}",
        f"Source:      {outcome.source}",
        f"Destination: {outcome.dest}",
        "",
    )
    try:
        locks = (
            nullcontext()
            if options.dry_run
            else hold_all(options.state_dir, outcome.source, outcome.dest)
        )
        with locks:
            return _migrate_locked(candidate, options, backend, out, outcome)
    except Interrupted:
        raise
    except MigrateError as err:  # the lock is held by another run
        outcome.status = "skipped"
        outcome.message = str(err)
        out.say(outcome.message, "")
        return outcome


def remove_old(
    outcome: Outcome, options: Options, backend: Backend, out: Output
) -> Outcome:
    """The copy is verified and registered; a refusal here keeps both, and
    the removal itself, once begun, always runs to its end."""
    source = outcome.source
    try:
        check_removable(source, options.scanned, backend.protected_prefixes())
    except MigrateError as err:
        journal.clear(options.state_dir, outcome.dest)
        outcome.status = "copied"
        outcome.message = (
            f"Copied to {outcome.dest}, but the old environment was not removed: {err}"
        )
        out.say(outcome.message, "")
        return outcome
    out.say(f"Remove all packages in environment {source}:", "")
    out.phase("remove")
    try:
        with uninterruptible():
            remove_environment(source)
            backend.unregister(source)
            journal.record(
                options.state_dir,
                journal.Entry(
                    outcome.name,
                    str(source),
                    str(outcome.dest),
                    journal.DONE,
                    outcome.engine or "",
                ),
            )
    except OSError as err:
        outcome.status = "copied"
        outcome.message = (
            f"Copied to {outcome.dest}, but removing {source} failed: {err}. "
            "The copy is verified; the next run finishes the removal."
        )
        out.say(outcome.message, "")
        return outcome
    out.phase(None)
    outcome.status = "migrated"
    outcome.message = f"Successfully migrated and removed old environment: {source}"
    out.say(outcome.message, "")
    return outcome


def migrate_all(
    selected: Sequence[Candidate], options: Options, backend: Backend, out: Output
) -> list[Outcome]:
    outcomes = []
    for candidate in selected:
        check()  # a stop something swallowed still stops before the next one
        started = time.monotonic()
        outcome = migrate_one(candidate, options, backend, out)
        out.phase(None)
        outcome.seconds = time.monotonic() - started
        outcomes.append(outcome)
    return outcomes


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
