"""``conda migrate`` and the ``conda-migrate`` console script.

The parser is plain argparse so that the console script also works where
conda is not installed; ``-d`` is the seed's directory flag, which is why
conda's own ``-d/--dry-run`` helper is not reused.
"""

from __future__ import annotations

import os
import sys
from argparse import ArgumentParser, Namespace
from pathlib import Path

from .exceptions import Interrupted, MigrateError


def configure_parser(parser: ArgumentParser) -> None:
    parser.description = (
        "Migrate conda environments from $SCRATCH to $HOME/.conda/envs: export "
        "each to YAML, copy it, compare old and new, and remove the old one only "
        "when they are the same."
    )
    parser.add_argument(
        "-d",
        "--directory",
        type=Path,
        metavar="DIR",
        help="A directory holding environments (each subdirectory is examined), "
        "or one environment. Default: the environments conda knows under $SCRATCH.",
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
    parser.add_argument(
        "--method",
        choices=("auto", "clone", "relocate"),
        default="auto",
        help="clone: conda's clone, from the package cache or the channels; relocate: copy "
        "the environment and rewrite its prefix, offline; auto (default): clone, and "
        "relocate when clone cannot obtain every package.",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="Parallel copies when relocating (default: the CPUs this job may use).",
    )
    parser.add_argument(
        "--keep-old",
        action="store_true",
        help="Keep the old environment after a verified copy.",
    )
    parser.add_argument(
        "--no-clean", action="store_true", help="Skip conda's clean at the end."
    )
    parser.add_argument(
        "--no-rc",
        action="store_true",
        help="Leave ~/.bashrc, ~/.condarc and kernels as they are.",
    )
    output = parser.add_argument_group("Output, Prompt, and Flow Control Options")
    output.add_argument(
        "--json", action="store_true", help="Report as one JSON document (needs --all)."
    )
    output.add_argument(
        "-v", "--verbose", action="count", default=0, dest="verbosity", help="Say more."
    )
    output.add_argument(
        "-q", "--quiet", action="store_true", help="Only errors and the summary."
    )
    output.add_argument(
        "--dry-run", action="store_true", help="Show the plan; change nothing."
    )
    output.add_argument(
        "-y",
        "--yes",
        action="store_true",
        help="Answer the selection prompt with 'All' (same as --all).",
    )


def _home() -> Path:
    return Path(os.path.expanduser("~"))


def execute(args: Namespace) -> int:
    from .interrupt import stop_on_signals
    from .workflow import run

    with stop_on_signals():
        return run(args, home=_home(), stdin=sys.stdin, stdout=sys.stdout)


def main(argv: list[str] | None = None) -> int:
    """The console script: conda's own entry point where conda is installed
    (same parsing, context and error reporting as ``conda migrate``), plain
    argparse where it is not."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        from conda.cli.main import main as conda_main
    except ImportError:
        parser = ArgumentParser(prog="conda-migrate")
        configure_parser(parser)
        args = parser.parse_args(argv)
        try:
            return execute(args)
        except (MigrateError, Interrupted) as err:
            print(f"conda-migrate: error: {err}", file=sys.stderr)
            return err.return_code
    return conda_main("migrate", *argv)
