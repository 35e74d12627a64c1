"""The seed's workflow, one environment at a time, destructive steps last.

For each environment: export its YAML, copy it (conda's clone, or
relocation), compare old and new, and only when they are the same register
the new one and remove the old one. Any failure removes the partial copy,
leaves the old environment untouched and moves on to the next.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .compare import compare_contents
from .exceptions import CloneUnavailable, MigrateError
from .export import write_yaml
from .preflight import check_paths, check_space, measure
from .remove import check_removable, remove_environment

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .backend import Backend
    from .discover import Candidate

STAGING_DIR = ".conda-migrate-staging"


@dataclass(frozen=True)
class Options:
    dest_root: Path
    yaml_dir: Path
    scanned: Path
    method: str = "auto"
    keep_old: bool = False
    dry_run: bool = False
    jobs: int | None = None
    quiet: bool = False
    verbose: int = 0
    json: bool = False


@dataclass
class Output:
    """Human output, silent under ``--json`` and ``-q``."""

    quiet: bool = False
    stream: TextIO = field(default_factory=lambda: sys.stdout)

    def say(self, *lines: str) -> None:
        if not self.quiet:
            for line in lines:
                print(line, file=self.stream, flush=True)


@dataclass
class Outcome:
    name: str
    source: Path
    dest: Path
    status: str = "failed"  # migrated | kept | copied | skipped | failed | planned
    message: str = ""
    yaml: Path | None = None
    engine: str | None = None
    packages: int | None = None
    files: int | None = None
    bytes: int | None = None
    differences: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            key: str(value) if isinstance(value, Path) else value
            for key, value in vars(self).items()
        }


def _discard(path: Path) -> None:
    """Remove a partial copy this run made (never anything else)."""
    if path.is_symlink():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _copy(
    candidate: Candidate,
    dest: Path,
    options: Options,
    backend: Backend,
    out: Output,
    outcome: Outcome,
) -> None:
    """Put a copy of the environment at ``dest``, verified file by file when
    relocated; conda's clone is verified by the record comparison."""
    if options.method in ("auto", "clone"):
        try:
            backend.clone(candidate.prefix, dest, quiet=options.quiet or options.json)
            outcome.engine = "clone"
            return
        except CloneUnavailable as err:
            _discard(dest)
            if options.method == "clone":
                raise
            out.say(
                f"conda's clone is not possible here ({err.message.splitlines()[0]}); relocating the environment instead."
            )
    from .relocate import relocate
    from .verify import verify_files

    staging = options.dest_root / STAGING_DIR / candidate.name
    _discard(staging)
    staging.parent.mkdir(parents=True, exist_ok=True)
    out.say(f"Packages: {outcome.packages}", f"Files: {outcome.files}")
    try:
        result = relocate(
            candidate.prefix,
            staging,
            dest,
            jobs=options.jobs,
            quiet=options.quiet or options.json,
        )
        out.say(*(f"warning: {w}" for w in result.warnings))
        check = verify_files(candidate.prefix, staging, dest)
        if check.problems:
            outcome.differences = check.problems
            raise MigrateError(
                f"The relocated copy of {candidate.prefix} differs from it:\n  "
                + "\n  ".join(check.problems),
                hint="The old environment was left untouched and the copy removed.",
            )
        os.rename(staging, dest)
    finally:
        _discard(staging)
        try:
            staging.parent.rmdir()
        except OSError:
            pass
    outcome.engine = "relocate"


def migrate_one(
    candidate: Candidate, options: Options, backend: Backend, out: Output
) -> Outcome:
    source = candidate.prefix
    dest = options.dest_root / candidate.name
    outcome = Outcome(candidate.name, source, dest)
    out.say(
        f"Migrating and comparing environment: {candidate.name}",
        f"Source:      {source}",
        f"Destination: {dest}",
        "",
    )
    if os.path.lexists(dest):
        outcome.status = "skipped"
        outcome.message = (
            f"{dest} already exists; it was not touched and {source} stays where it is. "
            "Remove or rename it, or choose another --dest."
        )
        out.say(outcome.message, "")
        return outcome
    copy_made = False
    try:
        check_paths(source, dest)
        old = backend.contents(source)
        footprint = measure(source)
        outcome.packages, outcome.files, outcome.bytes = (
            len(old.conda),
            footprint.files,
            footprint.bytes,
        )
        if options.dry_run:
            outcome.status = "planned"
            out.say(
                f"Packages: {outcome.packages}",
                f"Files: {outcome.files}",
                f"Size: {outcome.bytes:,} bytes",
                f"Would write {options.yaml_dir / (candidate.name + '.yml')}, copy, compare"
                + ("" if options.keep_old else f" and remove {source}"),
                "",
            )
            return outcome
        check_space(footprint, options.dest_root)
        outcome.yaml = write_yaml(
            options.yaml_dir,
            candidate.name,
            backend.export_yaml(source, candidate.name),
        )
        copy_made = True
        _copy(candidate, dest, options, backend, out, outcome)
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
        out.say("Old and New Environments are same", "")
        backend.register(dest)
        copy_made = False
        if options.keep_old:
            outcome.status = "kept"
            outcome.message = (
                f"Copied to {dest}; the old environment was kept (--keep-old)."
            )
            out.say(outcome.message, "")
            return outcome
    except (MigrateError, OSError) as err:
        if copy_made:
            _discard(dest)
            backend.unregister(dest)
        outcome.message = str(err)
        out.say(f"Migration of {candidate.name} failed: {err}", "")
        return outcome
    return _remove_old(outcome, options, backend, out)


def _remove_old(
    outcome: Outcome, options: Options, backend: Backend, out: Output
) -> Outcome:
    """The copy is verified and registered; a failure here keeps both."""
    source = outcome.source
    try:
        check_removable(source, options.scanned, backend.protected_prefixes())
        out.say(f"Remove all packages in environment {source}:", "")
        remove_environment(source)
        backend.unregister(source)
    except (MigrateError, OSError) as err:
        outcome.status = "copied"
        outcome.message = (
            f"Copied to {outcome.dest}, but the old environment was not removed: {err}"
        )
        out.say(outcome.message, "")
        return outcome
    outcome.status = "migrated"
    outcome.message = f"Successfully migrated and removed old environment: {source}"
    out.say(outcome.message, "")
    return outcome


def migrate_all(
    selected: Sequence[Candidate], options: Options, backend: Backend, out: Output
) -> list[Outcome]:
    return [migrate_one(candidate, options, backend, out) for candidate in selected]
