"""What a copy or a check of one environment found, file by file.

Each thread gathers the findings of its task in one of these and the caller
merges them as tasks finish, so no lock is taken per file. The relocate
engine fills every field; the check of conda's clone only the problems,
notes, unsupported attributes and the files it checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .share import Written


@dataclass
class Findings:
    #: Files made (or checked) and the bytes of their sources.
    files: int = 0
    bytes: int = 0
    #: Files whose bytes the copy changed, with the sha256 of the new ones.
    rewritten: dict[str, str] = field(default_factory=dict)
    #: What makes the copy not the environment (a text file that would still
    #: name the old prefix, a record the files contradict): the copy must
    #: not replace the source.
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: For the log only.
    notes: list[str] = field(default_factory=list)
    #: Entries whose extended attributes the copy's filesystem refused.
    unsupported: list[str] = field(default_factory=list)
    #: Package files naming the old prefix in binary data their record does
    #: not describe: copied unchanged, as nothing says how to rewrite them.
    inexact: list[str] = field(default_factory=list)
    #: ``.pyc`` files naming the old prefix (harmless, only counted).
    old_pyc: int = 0
    #: Symlinks into a package cache (conda's softlinks), by their target:
    #: replaced by the files themselves once the copy is made.
    delinked: dict[str, str] = field(default_factory=dict)
    #: Files a later environment of the run may link to once this copy is
    #: committed (see ``share``).
    written: list[Written] = field(default_factory=list)
    #: Files made as links to an earlier environment's copy, and their bytes.
    shared_files: int = 0
    shared_bytes: int = 0

    def merge(self, other: Findings) -> None:
        """Add ``other``'s findings to these: counts add up, lists extend,
        mappings update."""
        for each in fields(self):
            mine, theirs = getattr(self, each.name), getattr(other, each.name)
            if isinstance(mine, int):
                setattr(self, each.name, mine + theirs)
            elif isinstance(mine, list):
                mine.extend(theirs)
            else:
                mine.update(theirs)
