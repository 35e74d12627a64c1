"""Discovery as a run does it: the environments the command line names
(``-d``, ``-n``/``-p``, or those conda knows under ``$SCRATCH``), how they
are shown, and those an earlier run already moved; and, when there is
nothing to migrate, why."""

from __future__ import annotations

import os
import shlex
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Final

from .classify import is_environment
from .discover import examine, scan_directory, scratch_environments, under
from .exceptions import MigrateError, UsageError
from .names import REMOVING_SUFFIX
from .result import MigrationResult, Status
from .safety import journal

if TYPE_CHECKING:
    from .backends import Backend
    from .discover import Candidate
    from .options import Options
    from .output import Output


def discover(options: Options, backend: Backend) -> list[Candidate]:
    root = options.scanned
    if not options.given_directory:
        return scratch_environments(backend.known_prefixes(), root)
    if not root.exists():
        raise UsageError(
            f"{root} does not exist.",
            hint="Pass -d with the directory that holds your environments "
            "(conda env list | grep /scratch shows it).",
        )
    if not root.is_dir():
        raise UsageError(
            f"{root} is not a directory.",
            hint="Pass -d with a directory in $SCRATCH.",
        )
    if options.one_environment:
        candidate = examine(root)
        if not candidate.valid:
            raise MigrateError(
                f"{root} is not a conda environment ({candidate.reason}); "
                "nothing was touched.",
                hint=_not_one_hint(root),
            )
        return [candidate]
    return scan_directory(root)


def _not_one_hint(root: Path) -> str:
    """A link is never migrated through (it may lead into a group's
    environment): the user is given the path it leads to, to choose."""
    if root.is_symlink():
        target = shlex.quote(os.path.realpath(root))
        return f"To migrate what it leads to, by that path: conda migrate -p {target}"
    return "Pass -d with a directory to migrate the environments in it."


def nothing_to_migrate(directory: Path, candidates: list[Candidate]) -> MigrateError:
    """A mistyped ``-d`` must fail the batch job, and ``-d`` one level too
    high (``$SCRATCH`` instead of ``$SCRATCH/conda-envs``) names the way;
    ``-d`` naming one environment that cannot go says why."""
    if [c.prefix for c in candidates] == [directory] and candidates[0].reason:
        return MigrateError(
            f"{directory} cannot be migrated: {candidates[0].reason}.",
            hint="Nothing was migrated.",
        )
    holders = []
    for candidate in candidates:
        try:
            if candidate.prefix.is_dir() and not candidate.prefix.is_symlink():
                found = sum(c.valid for c in scan_directory(candidate.prefix))
                if found:
                    holders.append((candidate.prefix, found))
        except OSError:
            continue
    if not holders:
        return MigrateError(
            f"No valid conda environments in '{directory}'; nothing was migrated.",
            hint="Pass -d with the directory that holds them "
            "(conda env list | grep /scratch shows it).",
        )
    listed = ", ".join(f"{path} ({count})" for path, count in holders)
    return MigrateError(
        f"No conda environments directly in '{directory}', but these directories "
        f"hold some: {listed}; nothing was migrated.",
        hint=f"Pass one of them with -d, e.g.: conda migrate -d {holders[0][0]}",
    )


def moved_earlier(options: Options, skip: set[Path]) -> list[MigrationResult]:
    """Environments of the scanned directory that a run of this tool moved
    and whose old place is gone since (removed by that run, or by hand
    after it kept it): a rerun still points the rc files at them, and
    finding only these is "nothing left to do", not a mistyped ``-d``."""
    root = options.scanned
    found = []
    for source, dest in journal.moves(options.state_dir).items():
        inside = (
            root in (source, source.parent)
            if options.given_directory
            else under(source, root)
        )
        if not inside or source in skip or not is_environment(dest):
            continue
        if os.path.lexists(source) and examine(source).valid:
            continue  # still there: discovery judges it
        found.append(
            MigrationResult(
                source.name,
                source,
                dest,
                Status.ALREADY,
                f"{source.name} was migrated to {dest} by an earlier run.",
            )
        )
    return found


def orphaned_remains(options: Options, candidates: list[Candidate]) -> list[Candidate]:
    """Remains of a removal that no journal entry names any more (its copy
    was deleted, or the journal): no run will finish that removal, so the
    reason discovery gives them must not promise one."""
    pending = {Path(entry.source) for entry in journal.entries(options.state_dir)}
    return [
        replace(c, reason=ORPHANED)
        if c.name.startswith(".")
        and c.name.endswith(REMOVING_SUFFIX)
        and c.prefix.with_name(c.name[1 : -len(REMOVING_SUFFIX)]) not in pending
        else c
        for c in candidates
    ]


ORPHANED: Final = (
    "the remains of an environment whose removal was interrupted, which no run "
    "will finish: nothing records its copy any more; remove them by hand once you "
    "no longer need them"
)


def report_discovery(
    directory: Path, candidates: list[Candidate], options: Options, out: Output
) -> list[Candidate]:
    for candidate in candidates:
        if candidate.valid:
            out.info(f"Valid Env: {candidate.name}")
        else:
            out.info(f"INVALID ENV: {candidate.name} ({candidate.reason})")
    valid = [candidate for candidate in candidates if candidate.valid]
    if valid:
        # What the prompt asks about is shown with it, -q or not.
        say = out.info if options.select_all else out.important
        say("", f"Valid Conda environments in '{directory}':")
        say(*(f"{i}. {c.name} ({c.prefix})" for i, c in enumerate(valid, 1)), "")
    for candidate in active_among(valid, options):
        out.info(
            f"{candidate.name} is the active environment: conda never removes it, "
            "so it can be migrated once deactivated (conda deactivate).",
            "",
        )
    return valid


def active_among(candidates: list[Candidate], options: Options) -> list[Candidate]:
    """The environment this shell (or the job it submitted, which inherits
    ``CONDA_PREFIX``) has activated, unless ``--keep-old`` keeps it anyway."""
    active = os.environ.get("CONDA_PREFIX")
    if not active or options.keep_old:
        return []
    try:
        return [c for c in candidates if c.prefix.resolve() == Path(active).resolve()]
    except OSError:
        return []
