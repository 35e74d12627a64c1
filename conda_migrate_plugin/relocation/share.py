"""Files the environments of one run share stay shared in the destination.

Environments installed from one package cache hold most of their files as
hard links into it: one inode, many names. Copied one environment at a time,
each name becomes a file of its own, and four environments of the same
packages take four times the blocks and inodes of a home quota. conda's
own norm is the other way round (it links every environment into the
package cache), so a run keeps one inode where the source had one: a file
of a later environment whose source is an inode an earlier environment of
the run already copied, unchanged, becomes a hard link to that copy. So does
a link into a package cache (conda's softlinks), which the copy turns into
the file it leads to: by that file's inode, environments linking to one
cache file hold one copy of it.

What makes such a link safe:

* it points at a file of an environment that is committed (renamed into its
  final place and registered), never into a staging directory: a later
  failure discards only its own names, and the inode lives on in the
  committed environment;
* the file's bytes were proven in this run: the copy pass hashed what it
  wrote, and the hash is the sha256 that the later environment's own record
  gives for that path, so the link holds what a copy would have been checked
  to hold;
* the destination file is still that one: after the link the new name's
  device, inode, size, mtime and mode are those the copy pass left; anything
  else (the user replaced it meanwhile) is unlinked and copied instead.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import os
    from pathlib import Path

#: A source file's identity: (st_dev, st_ino).
Key = tuple[int, int]


@dataclass(frozen=True)
class Written:
    """A file the copy pass wrote from a source inode other names share,
    unchanged and hashed on its way."""

    rel: str
    source: Key
    #: The source's size, mtime and mode when it was copied: a later
    #: environment's name of that inode must still show the same.
    size: int
    mtime_ns: int
    mode: int
    #: The written file's device and inode.
    dev: int
    ino: int
    sha256: str
    #: Whether its bytes hold a NUL: text (none) is scanned for the later
    #: environment's prefix when linked, as a copy of it would be.
    has_nul: bool


@dataclass(frozen=True)
class SharedFile:
    """A committed file a later environment may link to."""

    path: str
    written: Written

    def matches(self, st: os.stat_result) -> bool:
        """``st`` (a name of the source) is still the inode that was copied."""
        w = self.written
        return (st.st_size, st.st_mtime_ns, st.st_mode) == (w.size, w.mtime_ns, w.mode)

    def is_target(self, st: os.stat_result) -> bool:
        """``st`` (a new link's) is the destination file as the copy pass left it."""
        w = self.written
        return stat.S_ISREG(st.st_mode) and (
            st.st_dev,
            st.st_ino,
            st.st_size,
            st.st_mtime_ns,
            st.st_mode,
        ) == (w.dev, w.ino, w.size, w.mtime_ns, w.mode)


@dataclass
class SharedFiles:
    """The files of the environments committed so far in this run, by the
    source inode they were copied from. ``planned`` holds the inodes a
    ``--dry-run`` counts as shared by environments it only planned."""

    files: dict[Key, SharedFile] = field(default_factory=dict)
    planned: set[Key] = field(default_factory=set)

    def add(self, prefix: Path, written: list[Written]) -> None:
        """Once ``prefix`` is committed: its files become link targets."""
        for item in written:
            self.files.setdefault(item.source, SharedFile(f"{prefix}/{item.rel}", item))

    def target(
        self, st: os.stat_result, sha256: str | None, *, linked: bool = False
    ) -> SharedFile | None:
        """The committed file a source file ``st``, which its record says
        holds ``sha256``, may be linked to; None when it must be copied.
        ``linked``: ``st`` is what a link into a package cache leads to,
        which other environments' links may share under one name."""
        if (st.st_nlink < 2 and not linked) or sha256 is None:
            return None
        found = self.files.get((st.st_dev, st.st_ino))
        if found is None or not found.matches(st) or found.written.sha256 != sha256:
            return None
        return found

    def covers(self, st: os.stat_result, *, linked: bool = False) -> bool:
        """Whether a source file ``st`` (``linked``: what a link into a
        package cache leads to) will cost nothing more in the destination:
        an earlier environment of the run holds its inode."""
        if st.st_nlink < 2 and not linked:
            return False
        key = (st.st_dev, st.st_ino)
        found = self.files.get(key)
        return key in self.planned or (found is not None and found.matches(st))
