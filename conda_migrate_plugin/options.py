"""What one run is asked to do.

The run itself takes these options, not argparse's namespace, so that it is
a function Python code and tests can call (``workflow.run(Options(...))``);
``parser.options_from_args`` reads them from the command line in one place.
Every step below the command line may take them, so this module imports
nothing of the package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, get_args

if TYPE_CHECKING:
    from pathlib import Path


#: ``--method``: how an environment is copied.
Method = Literal["auto", "clone", "relocate"]
METHODS: Final = get_args(Method)


#: The threads of a run without ``--jobs``, where the site or user knows
#: better than the filesystem's type (a parallel filesystem not recognised).
JOBS_VARIABLE: Final = "CONDA_MIGRATE_JOBS"


@dataclass(frozen=True)
class Options:
    """What the run is asked to do: built from the command line by
    ``parser.options_from_args``, or directly by Python code."""

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
