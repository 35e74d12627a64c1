"""The command line: its parser, and how the user typed it.

The parser is plain argparse so that the console script also works where
conda is not installed; ``-d`` is the site guide's directory flag, which is why
conda's own ``-d/--dry-run`` helper is not reused. ``--submit`` rebuilds a
job's command line from this same parser, so it lives apart from ``cli``,
which runs what the parser read.
"""

from __future__ import annotations

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
from .options import METHODS

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
  ~/.bashrc (and ~/.bash_profile, ~/.profile, ~/.zshrc), ~/.condarc and
  Jupyter kernels that name a migrated environment. --no-rc leaves them.

log: every run writes $HOME/.conda/migrate/logs/conda-migrate-DATE-PID.log
exit codes: 0 all migrated, 1 something failed or nothing to migrate,
  2 usage error (nothing touched), 128+N stopped by signal N
  (130 Ctrl-C, 143 SIGTERM at a job's time limit, 129 SIGHUP)
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
