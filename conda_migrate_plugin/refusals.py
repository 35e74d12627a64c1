"""What a run refuses before it writes anything: a destination inside the
source, a home it cannot write, the active environment, two environments
of one name."""

from __future__ import annotations

import os
from collections import Counter
from typing import TYPE_CHECKING

from .candidates import active_among
from .exceptions import MigrateError, UsageError
from .names import LOGS
from .result import MigrationResult

if TYPE_CHECKING:
    from pathlib import Path

    from .discover import Candidate
    from .options import Options


def check_not_same(directory: Path, dest_root: Path) -> None:
    """Scanning the destination itself would "migrate" each environment onto
    itself (and meet its own lock)."""
    # Each resolved once (see preflight.check_paths).
    if directory.resolve().is_relative_to(dest_root.resolve()):
        raise UsageError(
            f"The source {directory} and the destination {dest_root} are the same: "
            "environments there are already where they would go. Nothing was touched.",
            hint="Pass -d with the directory in $SCRATCH, or another --dest.",
        )


def check_home_writable(options: Options, home: Path) -> None:
    """Every place outside the destination the run writes, checked before
    the first copy: the log, the journal and locks, the YAML copies, conda's
    environments.txt. Otherwise the failure comes after a full copy and
    compare, or as a traceback while the log is opened."""
    places = [
        (options.state_dir / LOGS, "the run's log"),
        (options.state_dir, "the journal and locks"),
        (options.yaml_dir, "the YAML copies"),
        (home / ".conda", "conda's environments.txt"),
    ]
    for place, purpose in places:
        blocker = place
        # One lstat a level: a symlink, dangling or not, stops the climb.
        while not os.path.lexists(blocker):
            blocker = blocker.parent
        if not blocker.is_dir():
            problem = f"{blocker} is not a directory"
        elif not os.access(blocker, os.W_OK | os.X_OK):
            problem = f"{blocker} is not writable"
        else:
            continue
        raise UsageError(
            f"Cannot write {place} ({purpose}): {problem}. Nothing was touched.",
            hint="Fix that (ls -ld shows who owns it) and run again; "
            "--yaml-dir puts the YAML copies elsewhere.",
        )
    registry = home / ".conda" / "environments.txt"
    if registry.exists() and not os.access(registry, os.W_OK):
        raise UsageError(
            f"Cannot write {registry} (conda's list of environments): it is not "
            "writable. Nothing was touched.",
            hint=f"Fix that (ls -l {registry}) and run again.",
        )


def refuse_active(selected: list[Candidate], options: Options, command: str) -> None:
    """conda refuses ``conda remove --all`` of the active environment; this
    run would remove it too, so it refuses as early, before anything is
    written, instead of copying it only to keep both and leave the rc files
    naming the old one."""
    for candidate in active_among(selected, options):
        raise MigrateError(
            f"{candidate.name} is the active environment ({candidate.prefix}); conda "
            "never removes the active environment, so nothing was touched.",
            hint=f"Deactivate it, then run the same command again:\n"
            f"  conda deactivate\n  {command}\n"
            "(or add --keep-old to copy it and keep the old one).",
        )


def refuse_duplicate_names(
    selected: list[Candidate], options: Options
) -> tuple[list[Candidate], list[MigrationResult]]:
    """Two environments named alike would both go to ``DEST/NAME``."""
    counts = Counter(candidate.name for candidate in selected)
    keep, refused = [], []
    for candidate in selected:
        if counts[candidate.name] == 1:
            keep.append(candidate)
            continue
        refused.append(
            MigrationResult(
                candidate.name,
                candidate.prefix,
                options.dest_root / candidate.name,
                message=f"More than one selected environment is named {candidate.name}; "
                "none of them was touched. Migrate them one at a time with -d and different --dest.",
            )
        )
    return keep, refused
