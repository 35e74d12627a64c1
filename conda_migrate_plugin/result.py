"""Where an environment's migration stands while it runs, and where it ended.

``Phase`` is the one vocabulary of a run in progress: the journal records
it before each step (so that a run killed anywhere is finished by the next
one), the log times some of its phases, and a stop names the one it came
in. ``Status`` and ``MigrationResult`` are the ending, as the summary and
``--json`` report it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, auto
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from .damage import Damage


class _Words(str, Enum):
    """Members whose values are the words a user reads: in messages, in
    ``--json``, in the journal. ``auto()`` gives the name in lower case."""

    @staticmethod
    def _generate_next_value_(
        name: str, start: int, count: int, last_values: list[Any]
    ) -> str:
        return name.lower()

    def __str__(self) -> str:
        return self.value


class Phase(_Words):
    """One environment's migration, step by step; the values are the words
    the journal records and a stop message uses ("Stopped by SIGTERM while
    copying abc").

    The journal records four (``JOURNALED``), which say what a later run
    finds: while ``copying``, the copy at the destination, if any, is
    unverified; once ``verified``, it is verified and registered, and the
    source may remain; while ``removing``, the source's removal began and
    may have stopped midway (what is left of it goes once shown to be
    nothing but a part of what was copied); when ``done``, the source is
    removed (or kept on request) and the rc files may not be updated yet.
    """

    CHECKING = auto()
    EXPORTING = auto()
    COPYING = auto()
    COMPARING = auto()
    REGISTERING = auto()
    VERIFIED = auto()
    REMOVING = auto()
    DONE = auto()
    CLEANING = auto()


#: The phases a journal entry records: where a killed run may be found.
JOURNALED: Final = (Phase.COPYING, Phase.VERIFIED, Phase.REMOVING, Phase.DONE)

#: The phases the log says the duration of, by the name it gives them
#: ("Copy took 2.1 s"); comparing is the verification the site guide asks for.
TIMED: Final = {
    Phase.COPYING: "Copy",
    Phase.COMPARING: "Verify",
    Phase.REMOVING: "Remove",
    Phase.CLEANING: "Clean",
}


class Status(_Words):
    """Where one environment ended up; the values are those of ``--json``,
    in the order the summary lists them."""

    #: copied, verified, and the old one removed
    MIGRATED = "migrated"
    #: copied and verified; the old one kept (``--keep-old``)
    KEPT = "kept"
    #: the destination already holds the same environment
    ALREADY = "already"
    #: what ``--dry-run`` would do
    PLANNED = "planned"
    #: copied and verified, but the old one could not be removed
    COPIED = "copied"
    #: not touched: the destination is taken, or another run holds it
    SKIPPED = "skipped"
    #: refused, or the copy failed or differed; the old one is untouched
    FAILED = "failed"


#: The statuses a run exits 0 with.
SUCCEEDED: Final = frozenset(
    {Status.MIGRATED, Status.KEPT, Status.ALREADY, Status.PLANNED}
)
#: Environments at their destination (or, under ``--dry-run``, about to be):
#: the rc files follow them, also when an earlier run had put them there.
MOVED: Final = frozenset({Status.MIGRATED, Status.KEPT, Status.ALREADY, Status.PLANNED})
#: The statuses the summary explains with the first line of the message.
EXPLAINED: Final = frozenset({Status.COPIED, Status.SKIPPED, Status.FAILED})


@dataclass
class MigrationResult:
    """One environment's migration as the summary and ``--json`` report it."""

    name: str
    source: Path
    dest: Path
    status: Status = Status.FAILED
    message: str = ""
    yaml: Path | None = None
    engine: str | None = None
    packages: int | None = None
    files: int | None = None
    bytes: int | None = None
    differences: list[str] = field(default_factory=list)
    seconds: float | None = None
    #: What the purge took, found before the copy.
    damage: Damage | None = None
    #: Files of ``damage`` put back in the copy, and those still missing.
    restored: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    #: The commands that put back what is still missing.
    remedy: list[str] = field(default_factory=list)
    #: Files (and their bytes) the copy wrote, and those it made as links to
    #: an earlier environment's copy instead (see ``relocation.share``).
    written_files: int | None = None
    written_bytes: int | None = None
    shared_files: int | None = None
    shared_bytes: int | None = None
    #: What the removal of the source gave back (an inode the package cache
    #: or another environment shares stays).
    freed_files: int | None = None
    freed_bytes: int | None = None
    #: What the environment, moved, still uses on the filesystem it was moved
    #: from: each as the file naming it, the path, and how it names it.
    scratch_refs: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        document = {
            key: str(value) if isinstance(value, Path) else value
            for key, value in vars(self).items()
        }
        document["damage"] = None if self.damage is None else self.damage.to_json()
        return document
