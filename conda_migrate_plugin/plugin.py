"""The conda plugin hook; conda imports this on every ``conda`` call, so it
stays empty of anything but the registration."""

from __future__ import annotations

from typing import TYPE_CHECKING

from conda import plugins
from conda.plugins.types import CondaSubcommand

if TYPE_CHECKING:
    from collections.abc import Iterator


@plugins.hookimpl
def conda_subcommands() -> Iterator[CondaSubcommand]:
    from .cli import execute
    from .parser import configure_parser

    yield CondaSubcommand(
        name="migrate",
        summary="Move environments from $SCRATCH into $HOME/.conda/envs, verified.",
        action=execute,
        configure_parser=configure_parser,
    )
