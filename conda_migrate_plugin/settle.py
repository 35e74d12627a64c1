"""Step 5, after each environment moves: remember the move, point the rc
files at the new place, and record a job array task's outcome."""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .array_plan import record
from .discover import scan_directory
from .exceptions import Interrupted
from .progress import size
from .result import MOVED, MigrationResult, Status
from .safety import journal
from .safety.lock import serialized

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from .options import Options
    from .output import Output
    from .rcfiles import DirMove, RcEdit


@dataclass
class Settle:
    """Right after each environment moves, not at the end of the run: a job
    stopped at its time limit must leave the rc files naming what is where.
    ``backups`` keeps each rc file's first backup of the run; ``rc_edits``
    is what ``--json`` reports."""

    options: Options
    home: Path
    out: Output
    backups: dict[Path, Path] = field(default_factory=dict)
    rc_edits: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, outcomes: list[MigrationResult]) -> None:
        try:
            self._settle(outcomes)
        except Interrupted as stop:
            if self.options.dry_run:
                raise
            names = ", ".join(o.name for o in outcomes if o.status in MOVED)
            done = f"after migrating {names}, " if names else ""
            raise Interrupted(
                stop.signum,
                f"{done}while pointing the rc files at the new places: each rc "
                "file is as it was or updated, none half-written. Run the same "
                "command again to finish: it updates them, and goes on with "
                "whatever is not migrated yet.",
            ) from None

    def _settle(self, outcomes: list[MigrationResult]) -> None:
        options = self.options
        if not options.dry_run:
            for outcome in outcomes:
                if outcome.status in (*MOVED, Status.COPIED):
                    journal.remember_move(
                        options.state_dir, outcome.source, outcome.dest
                    )
        for outcome in outcomes:
            if outcome.status in MOVED:
                carry_links(outcome, options.dry_run, self.out)
        if options.update_rc:
            # Tasks of a job array settle side by side: one at a time reads
            # and rewrites the rc files, or one's edit would undo another's.
            turn = (
                nullcontext()
                if options.dry_run
                else serialized(options.state_dir, "rc-files")
            )
            with turn:
                self.rc_edits += update_rc_files(
                    outcomes, options, self.home, self.out, self.backups
                )
        if not options.dry_run:
            for outcome in outcomes:
                if outcome.status in (Status.MIGRATED, Status.KEPT):
                    journal.clear(options.state_dir, outcome.dest)
            if options.record is not None:
                record(options.record, [o.to_json() for o in outcomes])


def carry_links(outcome: MigrationResult, dry_run: bool, out: Output) -> None:
    """A link beside the old environment (``analysis -> analysis-2024``) in
    a directory of ``envs_dirs`` is a name conda lists and activates; the
    copy gets one beside it, or ``conda activate analysis`` stops working.
    Never in place of anything: what is there stays, and the run says so."""
    from .rcfiles.spellings import links_beside

    dest = outcome.dest
    for link in sorted(links_beside(outcome.source)):
        made = dest.parent / link.name
        if os.path.lexists(made):
            if not (made.is_symlink() and os.readlink(made) == dest.name):
                out.info(f"{made} is not made a link to {dest.name}: it exists")
            continue
        if not dry_run:
            try:
                os.symlink(dest.name, made)
            except OSError as error:
                out.info(f"{made} is not made a link to {dest.name}: {error.strerror}")
                continue
        verb = "Would link" if dry_run else "Linked"
        out.info(f"{verb} {made} -> {dest.name}, as {link} led to it")


def update_rc_files(
    outcomes: list[MigrationResult],
    options: Options,
    home: Path,
    out: Output,
    backups: dict[Path, Path],
) -> list[dict[str, Any]]:
    """The rc-file edits for the environments moved (``--dry-run``: those it
    would make, "planned"), shown, then made; what ``--json`` reports."""
    from .rcfiles import EnvMove, apply_rc_edits, plan_rc_edits
    from .rcfiles.environment import variables_left

    moved = [o for o in outcomes if o.status in MOVED]
    if not moved:
        return []
    env_moves = [EnvMove(o.source, o.dest) for o in moved]
    dir_moves = _dir_moves(moved, options, home)
    edits = plan_rc_edits(env_moves, dir_moves, home, os.environ)
    _show_edits(edits, dir_moves, options, home, out)
    if not options.dry_run:
        apply_rc_edits(edits, backups=backups)
        for edit in edits:
            if edit.error:
                out.info(f"{edit.path} was not updated: {edit.error}")
            elif edit.backup:
                out.info(f"Updated {edit.path} (backup: {edit.backup})")
    for edit in edits:
        out.info(*(f"warning: {edit.path}: {w}" for w in edit.warnings))
    left = variables_left(edits, dir_moves, home, os.environ)
    out.info(*(f"warning: {warning}" for warning in left))
    return [
        {
            "path": str(e.path),
            "diff": e.diff,
            "error": e.error,
            "backup": str(e.backup) if e.backup else None,
            "warnings": e.warnings,
        }
        for e in edits
    ]


def _dir_moves(
    moved: list[MigrationResult], options: Options, home: Path
) -> list[DirMove]:
    """A directory stops being where environments live (CONDA_ENVS_PATH,
    envs_dirs) only once none is left in it, or those left would be lost
    to activation by name."""
    from .rcfiles import DirMove

    leaving = {
        o.source for o in moved if o.status == Status.PLANNED and not options.keep_old
    }
    return [
        DirMove(parent, options.dest_root, home / ".conda" / "pkgs")
        for parent in sorted({o.source.parent for o in moved})
        if not any(c.valid and c.prefix not in leaving for c in scan_directory(parent))
    ]


def _show_edits(
    edits: list[RcEdit],
    dir_moves: list[DirMove],
    options: Options,
    home: Path,
    out: Output,
) -> None:
    if options.dry_run and any(edit.diff or edit.error for edit in edits):
        out.info("These files would be changed (--no-rc leaves them as they are):")
    for edit in edits:
        if edit.error:
            out.info(f"{edit.path} was left as it is: {edit.error}")
        elif edit.diff:
            show_diff(edit, out)
    caches = [cache for edit in edits for cache in edit.caches]
    if caches:
        verb = "would move" if options.dry_run else "moves"
        out.info(
            f"Note: conda's package cache {verb} into {home / '.conda' / 'pkgs'}: the "
            "packages conda downloads from now on count against your home quota "
            "(conda clean --all frees them)." + _cache_sizes(dir_moves, caches, home)
        )


#: Changed lines of an rc file shown on screen; the log has them all.
DIFF_LINES = 40


def show_diff(edit: RcEdit, out: Output) -> None:
    from .rcfiles import diff_head

    head, changed = diff_head(edit, DIFF_LINES)
    if head == edit.diff:
        out.info(edit.diff)
        return
    out.log_only(edit.diff)
    out.screen_only(head)
    whole = f", the log has all of it: {out.log_path}" if out.log_path else ""
    out.info(
        f"{edit.path}: {changed} lines changed; the diff shows the first "
        f"{DIFF_LINES} of them{whole}"
    )


def _cache_sizes(
    dir_moves: Sequence[DirMove], caches: Sequence[Path], home: Path
) -> str:
    """What the caches being replaced hold (in the scanned directories, and
    those the rc files named), which conda downloads again into $HOME as
    environments need it, and what the one in $HOME holds now."""
    from .quota import package_caches, usage

    said = []
    for cache in package_caches([move.source for move in dir_moves], caches):
        nbytes, files = usage(cache)
        said.append(
            f" The cache it replaces, {cache}, holds {size(nbytes)} in {files} files."
        )
    mine = home / ".conda" / "pkgs"
    if mine.is_dir():
        nbytes, files = usage(mine)
        said.append(f" {mine} holds {size(nbytes)} in {files} files now.")
    return "".join(said)
