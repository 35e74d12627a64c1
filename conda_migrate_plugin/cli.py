"""``conda migrate`` and the ``conda-migrate`` console script: run what the
parser (``parser.configure_parser``) read from the command line."""

from __future__ import annotations

import os
import sys
from argparse import ArgumentParser
from pathlib import Path
from typing import TYPE_CHECKING

from .exceptions import Interrupted, MigrateError, UsageError
from .parser import command_line, configure_parser, options_from_args

if TYPE_CHECKING:
    from argparse import Namespace


def _home() -> Path:
    return Path(os.path.expanduser("~"))


def execute(args: Namespace) -> int:
    if args.submit is not None:
        from .submit import submit

        return submit(args, home=_home(), stdout=sys.stdout)
    if args.tasks is not None:
        raise UsageError("--tasks spreads a --submit over a job array: add --submit.")
    if args.end_of_array is not None:
        from .array import finish

        return finish(
            args.end_of_array, options_from_args(args, _home()), stdout=sys.stdout
        )
    from .deadline import stop_before_time_limit
    from .safety.interrupt import stop_on_signals
    from .workflow import run

    options = options_from_args(args, _home())
    try:
        with stop_on_signals(), stop_before_time_limit():
            return run(
                options,
                home=_home(),
                stdin=sys.stdin,
                stdout=sys.stdout,
                command=command_line(),
            )
    except Interrupted:
        _quiet_if_terminal_closed()
        raise


def _quiet_if_terminal_closed() -> None:
    """After SIGHUP the terminal is gone and any write to it fails, which
    would turn conda's report of the stop into a crash with exit code 1;
    the run's log already holds the message."""
    try:
        print(file=sys.stderr, flush=True)
    except OSError:
        sys.stdout = sys.stderr = open(os.devnull, "w")


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
            try:
                print(f"conda-migrate: error: {err}", file=sys.stderr)
            except OSError:  # the terminal is gone; the log has it
                pass
            return err.return_code
    return conda_main("migrate", *argv)
