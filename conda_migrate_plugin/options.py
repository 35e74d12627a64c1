"""What one run is asked to do, read from the command line in one place.

The run itself takes these options, not argparse's namespace, so that it is
a function Python code and tests can call (``workflow.run(Options(...))``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, get_args

from .exceptions import MigrateError, UsageError
from .names import state_dir

if TYPE_CHECKING:
    from argparse import Namespace


#: ``--method``: how an environment is copied.
Method = Literal["auto", "clone", "relocate"]
METHODS: Final = get_args(Method)


#: The threads of a run without ``--jobs``, where the site or user knows
#: better than the filesystem's type (a parallel filesystem not recognised).
JOBS_VARIABLE: Final = "CONDA_MIGRATE_JOBS"


@dataclass(frozen=True)
class Options:
    """What the run is asked to do: built from the command line by
    ``from_args``, or directly by Python code."""

    dest_root: Path
    yaml_dir: Path
    #: Where environments are looked for: ``-d``, or ``$SCRATCH``.
    scanned: Path
    state_dir: Path
    #: ``-d`` was given: every directory in ``scanned`` is examined, not only
    #: the environments conda knows there.
    given_directory: bool = True
    #: ``-n``/``-p``: ``scanned`` is the one environment to migrate.
    one_environment: bool = False
    method: Method = "auto"
    keep_old: bool = False
    dry_run: bool = False
    jobs: int | None = None
    #: Where ``jobs`` came from, for the log: ``--jobs`` or ``JOBS_VARIABLE``.
    jobs_from: str = "--jobs"
    quiet: bool = False
    verbose: int = 0
    json: bool = False
    #: ``--all``/``--yes``: no selection prompt.
    select_all: bool = False
    update_rc: bool = True
    clean: bool = True
    #: Files one inode on the source stay one in the destination (``--copy``: no).
    share: bool = True
    #: A task of a job array (``--submit --tasks``): the environments it
    #: migrates, of those selected, and where it records each outcome.
    array_share: frozenset[Path] | None = None
    record: Path | None = None

    @classmethod
    def from_args(cls, args: Namespace, home: Path) -> Options:
        """Refuses what the command line alone shows to be wrong."""
        jobs, jobs_from = _jobs(args)
        select_all = args.all or args.yes
        if args.json and not select_all:
            raise UsageError("--json never prompts, so it needs --all.")
        array_share, record = _array_task(args)
        directory, one = _where(args)
        return cls(
            dest_root=(args.dest or home / ".conda" / "envs").expanduser().absolute(),
            yaml_dir=(args.yaml_dir or home / ".conda" / "yaml")
            .expanduser()
            .absolute(),
            scanned=search_root(directory),
            state_dir=state_dir(home),
            given_directory=directory is not None,
            one_environment=one,
            method=args.method,
            keep_old=args.keep_old,
            dry_run=args.dry_run,
            jobs=jobs,
            jobs_from=jobs_from,
            quiet=args.quiet or args.json,
            verbose=args.verbosity,
            json=args.json,
            select_all=select_all,
            update_rc=not args.no_rc,
            share=not args.copy,
            # conda's clean runs once, after the whole array.
            clean=not args.no_clean and array_share is None,
            array_share=array_share,
            record=record,
        )


def _jobs(args: Namespace) -> tuple[int | None, str]:
    """``--jobs``, else ``JOBS_VARIABLE``, and which of them said it."""
    jobs, jobs_from = args.jobs, "--jobs"
    if jobs is None and os.environ.get(JOBS_VARIABLE):
        jobs_from = JOBS_VARIABLE
        try:
            jobs = int(os.environ[JOBS_VARIABLE])
        except ValueError:
            jobs = 0
    if jobs is not None and jobs < 1:
        raise UsageError(
            f"{jobs_from} must be at least 1, not "
            f"{args.jobs if args.jobs is not None else os.environ[JOBS_VARIABLE]}."
        )
    return jobs, jobs_from


def _array_task(args: Namespace) -> tuple[frozenset[Path] | None, Path | None]:
    """A task of a job array: its share of the plan, and its record."""
    if not args.task_of_array:
        return None, None
    from .array_plan import Plan, task_id

    plan, task = Plan(args.task_of_array), task_id()
    return plan.share(task), plan.record_of(task)


def _where(args: Namespace) -> tuple[Path | None, bool]:
    """``-d``, ``-n`` or ``-p``: the directory to scan, and whether it is
    the one environment to migrate."""
    if args.env_name is not None:
        return named_environment(args.env_name), True
    if args.env_prefix is not None:
        return args.env_prefix, True
    return args.directory, False


def canonical(path: Path) -> Path:
    """``$SCRATCH/x/../envs`` is ``$SCRATCH/envs``, spelled as rc files spell
    it; where a symlink makes ``..`` lead elsewhere, the real path."""
    normal = Path(os.path.normpath(path.absolute()))
    real = Path(os.path.realpath(path))
    try:
        return normal if normal.samefile(real) else real
    except OSError:
        return normal


def search_root(directory: Path | None) -> Path:
    """Where to look: ``-d``, or ``$SCRATCH`` for the environments conda knows."""
    if directory:
        return canonical(directory.expanduser())
    scratch = os.environ.get("SCRATCH")
    if not scratch:
        raise UsageError(
            "$SCRATCH is not set, so there is no default place to look for environments.",
            hint="Pass -d with the directory that holds them (conda env list | grep /scratch shows it).",
        )
    return Path(scratch)


def named_environment(name: str) -> Path:
    """``-n NAME`` as conda resolves it: the environment of that name among
    those it knows (registered, or in an ``envs_dirs`` entry)."""
    from .backends import load_backend

    found: dict[Path, Path] = {}
    for prefix in load_backend().known_prefixes():
        if prefix.name == name and (prefix / "conda-meta").is_dir():
            found.setdefault(prefix.resolve(), prefix)
    if not found:
        raise MigrateError(
            f"No environment named {name} is known to conda; nothing was touched.",
            hint="conda env list shows the names and paths it knows; "
            "pass the path with -p, or its directory with -d.",
        )
    if len(found) > 1:
        listed = ", ".join(map(str, found.values()))
        raise MigrateError(
            f"More than one environment is named {name} ({listed}); nothing was touched.",
            hint="Pass the one to migrate with -p PATH.",
        )
    return next(iter(found.values()))
