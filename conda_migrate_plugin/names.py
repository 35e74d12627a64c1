"""Every name on disk that conda-migrate gives or goes by, in one place: what
one module writes, another finds, removes or refuses to trust, and a later
run (or another version) reads again; and conda's own marks it tells
environments and package caches by."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Final

#: conda's mark of an environment (``PREFIX_MAGIC_FILE``): a prefix without
#: it is no environment to conda.
HISTORY: Final = Path("conda-meta", "history")
#: conda's mark of a package cache (``PACKAGE_CACHE_MAGIC_FILE``), written
#: when it creates one; without it conda takes a directory for no cache.
PACKAGE_CACHE_MARK: Final = "urls.txt"

#: The run's own state, below ``$HOME``: journal, locks and logs.
STATE_DIR: Final = Path(".conda", "migrate")
JOURNAL: Final = "journal"
#: Finished moves, old place to new, kept for later runs (not journal
#: entries: those are cleared once a migration is settled).
MOVES: Final = "moved"
LOCKS: Final = "locks"
LOGS: Final = "logs"

#: A relocated copy is made in ``DEST_ROOT/STAGING_PREFIX + NAME-random``.
STAGING_PREFIX: Final = ".conda-migrate-staging-"

#: Written inside a copy while it is unverified: with the journal's device
#: and inode, the proof that the directory is this run's partial copy.
MARKER: Final = ".conda-migrate-partial"

#: A source being removed is first renamed to ``.NAME + REMOVING_SUFFIX``
#: beside itself, so that no half-removed environment is ever activated.
REMOVING_SUFFIX: Final = ".conda-migrate-removing"

#: An rc file's backup: ``NAME + BACKUP_SUFFIX + DATE-TIME``.
BACKUP_SUFFIX: Final = ".conda-migrate-"


def state_dir(home: Path) -> Path:
    return home / STATE_DIR


def keyed_file(state_dir: Path, part: str, key: str, suffix: str) -> Path:
    """The file in ``part`` for ``key`` (a path, of any length and bytes),
    named by its hash: the journal entry and the lock of one destination."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return state_dir / part / f"{digest}{suffix}"


def removing_aside(prefix: Path) -> Path:
    """Where ``prefix`` is renamed while it is being removed."""
    return prefix.with_name(f".{prefix.name}{REMOVING_SUFFIX}")
