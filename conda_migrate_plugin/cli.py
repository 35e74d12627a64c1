"""``conda migrate`` and the ``conda-migrate`` console script: run what the
parser (``parser.configure_parser``) read from the command line.

The console script imports this module before its first line runs, and a
signal until then gets Python's default: so it imports nothing here that
takes time (conda's exceptions do), only where it is used."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from argparse import Namespace
    from collections.abc import Callable


def _home() -> Path:
    return Path(os.path.expanduser("~"))


def execute(args: Namespace) -> int:
    from .exceptions import Interrupted, UsageError
    from .parser import options_from_args

    if args.submit is not None:
        from .submit import submit

        return submit(args, home=_home(), stdout=sys.stdout)
    if args.tasks is not None:
        raise UsageError("--tasks spreads a --submit over a job array: add --submit.")
    if args.end_of_array is not None:
        from .array import finish
        from .sbatch import typed

        options = options_from_args(args, _home())
        # What finishes it is the run the job array was of.
        return finish(
            args.end_of_array, options, stdout=sys.stdout, command=typed(args)
        )
    from .safety.interrupt import stop_on_signals

    began = False
    try:
        with stop_on_signals():
            start = _ready(args)
            began = True
            return start()
    except Interrupted as err:
        _quiet_if_terminal_closed()
        if not began:
            where = "before the run began: nothing was touched."
            raise Interrupted(err.signum, where) from None
        raise


def _ready(args: Namespace) -> Callable[[], int]:
    """The run, its modules imported and its options read: the first thing
    done under its own signal handling, so that a stop comes from there on
    in the run's words."""
    from .deadline import stop_before_time_limit
    from .parser import command_line, options_from_args
    from .workflow import run

    options = options_from_args(args, _home())

    def start() -> int:
        with stop_before_time_limit():
            return run(
                options,
                home=_home(),
                stdin=sys.stdin,
                stdout=sys.stdout,
                command=command_line(),
            )

    return start


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
    argparse where it is not. From its first line a signal is noted until the
    run's handling is in place (see ``safety.startup``); one that no run
    took still ends it with 128 + N."""
    from .safety.startup import noted_until_the_run

    argv = sys.argv[1:] if argv is None else argv
    with noted_until_the_run() as noted:
        code = _conda_or_plain(argv)
    if not noted:
        return code
    from .exceptions import Interrupted

    _report(Interrupted(noted[0]))
    return 128 + noted[0]


def _conda_or_plain(argv: list[str]) -> int:
    try:
        from conda.cli.main import main as conda_main
    except ImportError:
        return _plain(argv)
    return conda_main("migrate", *argv)


def _plain(argv: list[str]) -> int:
    """Without conda: argparse, and the errors conda would have printed."""
    from argparse import ArgumentParser

    from .exceptions import Interrupted, MigrateError
    from .parser import configure_parser

    parser = ArgumentParser(prog="conda-migrate")
    configure_parser(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, a usage error
        return int(done.code or 0)
    try:
        return execute(args)
    except (MigrateError, Interrupted) as err:
        _report(err)
        return err.return_code


def _report(err: Exception) -> None:
    try:
        print(f"conda-migrate: error: {err}", file=sys.stderr)
    except OSError:  # the terminal is gone; the log has it
        pass
