"""The command line: its parser, the ``Options`` it asks for, and how the
user typed it.

The parser is plain argparse so that the console script also works where
conda is not installed; ``-d`` is the site guide's directory flag, which is why
conda's own ``-d/--dry-run`` helper is not reused. ``--submit`` rebuilds a
job's command line from this same parser, so it lives apart from ``cli``,
which runs what the parser read.
"""

from __future__ import annotations

import os
import shlex
import sys
from argparse import (
    REMAINDER,
    SUPPRESS,
    ArgumentParser,
    Namespace,
    RawDescriptionHelpFormatter,
)
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .exceptions import MigrateError, UsageError
from .names import state_dir
from .options import JOBS_VARIABLE, METHODS, Options

if TYPE_CHECKING:
    from collections.abc import Sequence

DESCRIPTION = """\
Migrate conda environments from $SCRATCH to $HOME/.conda/envs: export
each to YAML, copy it, compare old and new, and remove the old one only
when they are the same."""

EPILOG = """\
examples:
  conda migrate -d /scratch/wz22/conda-envs            # choose at a prompt
  conda migrate -d /scratch/wz22/conda-envs --all      # all valid ones
  conda migrate -d /scratch/wz22/conda-envs --dry-run  # show the plan
  conda migrate -n abc --all                           # one, by name
  conda migrate -d /scratch/wz22/conda-envs --all --submit -c 10 -t 48:00:00
                                                       # as a Slurm job

  To find the directory for -d:  conda env list | grep /scratch
  Note: -d is the directory of environments, as in the site guide; it is
  not conda's -d/--dry-run (spell that --dry-run).

rewritten by default, with a backup beside each file and the diff shown:
  ~/.bashrc (and ~/.bash_profile, ~/.profile, ~/.bashrc.d/*, ~/.zshrc,
  ~/.cshrc, ~/.tcshrc, ~/.login, fish's config.fish and conf.d/*.fish),
  ~/.condarc and Jupyter kernels that name a migrated environment.
  --no-rc leaves them.

log: every run writes $HOME/.conda/migrate/logs/conda-migrate-DATE-PID.log
exit codes: 0 all migrated, 1 something failed or nothing to migrate,
  2 usage error (nothing touched), 128+N stopped by signal N
  (130 Ctrl-C, 143 SIGTERM at a job's time limit, 129 SIGHUP,
  152 SIGXCPU near a login node's CPU-time limit: use --submit)
"""

JOBS_HELP = (
    "Threads that copy, verify and remove when relocating. Default: on a "
    "network filesystem (NFS, Lustre, GPFS, BeeGFS, CIFS, FUSE), where they mostly "
    "wait on the server, 8 for each CPU this process may use, counting at "
    "most SLURM_CPUS_PER_TASK, which is sbatch's -c; at most 32; 1 when source and "
    "destination are both local (ext4, XFS, btrfs, tmpfs), where more only contend. "
    "The log says which; CONDA_MIGRATE_JOBS=N sets the default. conda's clone does "
    "not use them: it links with conda's own threads."
)

METHOD_HELP = (
    "relocate: copy the environment and rewrite its prefix, offline; clone: "
    "conda's clone, from the package cache or the channels; auto (default): "
    "relocate, and clone only where relocation cannot be exact (a package's "
    "binary file names the prefix where its record does not say)."
)

#: The on/off options of a migration, in the order ``--help`` lists them.
SWITCHES = (
    ("--keep-old", "Keep the old environment after a verified copy."),
    ("--no-clean", "Skip conda's clean at the end."),
    ("--no-rc", "Leave ~/.bashrc, ~/.condarc and kernels as they are."),
    (
        "--copy",
        (
            "Copy every file, also those the environments share on the source "
            "(by default a file that is one inode there, such as a package "
            "cache's hard link, stays one inode in the destination, as conda "
            "links them)."
        ),
    ),
)


def _refuse_unknown_arguments(parser: ArgumentParser) -> None:
    """conda parses a subcommand with ``parse_known_args`` and reports what
    is left with its own top-level usage; report it with ours instead."""
    parse_known_args = parser.parse_known_args

    def parse_strictly(
        args: Sequence[str] | None = None, namespace: Namespace | None = None
    ) -> tuple[Namespace, list[str]]:
        parsed, extras = parse_known_args(args, namespace)
        if extras:
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras

    parser.parse_known_args = parse_strictly  # type: ignore[method-assign,assignment]


def configure_parser(parser: ArgumentParser) -> None:
    """``conda migrate``'s options, for conda's parser or the console
    script's; the raw formatter keeps the epilog's examples as written."""
    parser.description = DESCRIPTION
    parser.epilog = EPILOG
    parser.formatter_class = RawDescriptionHelpFormatter
    _refuse_unknown_arguments(parser)
    _add_where(parser)
    _add_how(parser)
    _add_slurm(parser)
    _add_output(parser)


def _add_where(parser: ArgumentParser) -> None:
    """Which environments, and where they go. Not ``name``/``prefix``:
    conda's context reads those from the parsed arguments as the
    environment its own commands act on."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "-d",
        "--directory",
        type=Path,
        metavar="DIR",
        help="A directory holding environments (each subdirectory is examined), "
        "or one environment. Default: the environments conda knows under $SCRATCH.",
    )
    where.add_argument(
        "-n",
        "--name",
        dest="env_name",
        metavar="ENVIRONMENT",
        help="The environment conda knows by this name (conda env list).",
    )
    where.add_argument(
        "-p",
        "--prefix",
        dest="env_prefix",
        type=Path,
        metavar="PATH",
        help="The environment at this path.",
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="Migrate every valid environment found, without a prompt.",
    )
    parser.add_argument(
        "--dest",
        type=Path,
        metavar="DIR",
        help="Where the environments go (default: $HOME/.conda/envs).",
    )
    parser.add_argument(
        "--yaml-dir",
        type=Path,
        metavar="DIR",
        help="Where the YAML copies go (default: $HOME/.conda/yaml).",
    )


def _add_how(parser: ArgumentParser) -> None:
    parser.add_argument("--method", choices=METHODS, default="auto", help=METHOD_HELP)
    parser.add_argument("--jobs", type=int, metavar="N", help=JOBS_HELP)
    for flag, text in SWITCHES:
        parser.add_argument(flag, action="store_true", help=text)


def _add_slurm(parser: ArgumentParser) -> None:
    parser.add_argument(
        "--tasks",
        metavar="N[%M]",
        help="With --submit: spread the environments over a Slurm job array of N "
        "tasks (at most M at once), shares balanced by files (sbatch's --exclusive "
        "gives each a node of its own); then one job, after them all, runs "
        "conda's clean and writes the summary.",
    )
    # What --tasks submits: a task of the array, and the job after them all.
    parser.add_argument("--task-of-array", type=Path, help=SUPPRESS)
    parser.add_argument("--end-of-array", type=Path, help=SUPPRESS)
    parser.add_argument(
        "--submit",
        nargs=REMAINDER,
        metavar="SBATCH_OPTION",
        help="Run this command as a Slurm batch job instead (needs --all; put it last: "
        "what follows goes to sbatch, such as -c 10 -t 48:00:00). The job stops safely "
        "before its time limit; its output goes to $HOME/.conda/migrate/logs/.",
    )


def _add_output(parser: ArgumentParser) -> None:
    """The group conda's own commands show these in, by the same title."""
    output = parser.add_argument_group("Output, Prompt, and Flow Control Options")
    output.add_argument(
        "--json", action="store_true", help="Report as one JSON document (needs --all)."
    )
    loudness = output.add_mutually_exclusive_group()
    loudness.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        dest="verbosity",
        help="Also show the log's details (YAML written, engine, threads, notes).",
    )
    loudness.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="Only errors and the summary (conda's own lines go to the log).",
    )
    for flags, text in (
        (("--dry-run",), "Show the plan; change nothing."),
        (("-y", "--yes"), "Answer the selection prompt with 'All' (same as --all)."),
    ):
        output.add_argument(*flags, action="store_true", help=text)
    output.add_argument(
        "-V",
        "--version",
        action="version",
        version=f"conda-migrate {__version__}",
        help="Show the version and exit.",
    )


def program() -> list[str]:
    """How the user started this: ``conda migrate`` (also ``python -m
    conda migrate``) or the ``conda-migrate`` console script, which hands
    its arguments to conda without changing ``sys.argv``. A ``--submit``
    job runs ``python -m conda_migrate_plugin``: the console script's code,
    named as users type it, not ``__main__.py``."""
    started = Path(sys.argv[0])
    if started.name == "conda" or started.parts[-2:] == ("conda", "__main__.py"):
        return ["conda", "migrate"]
    return ["conda-migrate"]


def command_line() -> str:
    """The command as typed, for the log and the hints."""
    arguments = sys.argv[1:]
    if program()[-1] == "migrate" and arguments[:1] == ["migrate"]:
        arguments = arguments[1:]
    return shlex.join([*program(), *arguments])


def options_from_args(args: Namespace, home: Path) -> Options:
    """What the command line asks for; refuses what it alone shows to be
    wrong."""
    jobs, jobs_from = _jobs(args)
    select_all = args.all or args.yes
    if args.json and not select_all:
        raise UsageError("--json never prompts, so it needs --all.")
    array_share, record = _array_task(args)
    directory, one = _where(args)
    return Options(
        dest_root=(args.dest or home / ".conda" / "envs").expanduser().absolute(),
        yaml_dir=(args.yaml_dir or home / ".conda" / "yaml").expanduser().absolute(),
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
