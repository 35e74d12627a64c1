"""The conda plugin hook; conda imports this on every ``conda`` call, so it
stays empty of anything but the registration."""

from __future__ import annotations

from conda import plugins
from conda.plugins.types import CondaSubcommand


@plugins.hookimpl
def conda_subcommands():
    from .cli import configure_parser, execute

    yield CondaSubcommand(
        name="migrate",
        summary="Move environments from $SCRATCH into $HOME/.conda/envs, verified.",
        action=execute,
        configure_parser=configure_parser,
    )
