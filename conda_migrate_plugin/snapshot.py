"""The source as a run sees it: one walk of the environment (``lstat``
only) before anything is copied, which every later step works from: the
preflight's checks (its size, other users' files, nested environments,
mounts), the relocate engine's copy (the listing), and the removal, which
compares each entry's stamp against the one taken here so that nothing
written since the copy is deleted.
"""

from __future__ import annotations

import os
import pwd
import stat
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .classify import Kind, classify
from .jobs import gather, pool
from .mounts import mounts

if TYPE_CHECKING:
    from collections.abc import Collection
    from pathlib import Path


#: What the source's state is compared on before it is removed: a change of
#: content, type, mode, owner or entries shows in one of these (``ctime``
#: moves on every write and every chmod, and cannot be set back by a user).
#: mode, size, mtime, ctime, uid, ino, nlink
Stamp = tuple[int, int, int, int, int, int, int]

#: Each directory's entries with their ``lstat``, by relative path of the
#: directory.
Listing = dict[str, list[tuple[str, os.stat_result]]]


@dataclass(frozen=True)
class Footprint:
    files: int
    bytes: int
    inodes: int
    #: FIFOs, sockets and devices, each as "PATH is a KIND".
    special: tuple[str, ...] = ()
    #: Entries owned by another user, each as a path (the first few).
    foreign: tuple[str, ...] = ()
    #: Environments and package caches inside this one.
    nested: tuple[str, ...] = ()
    #: Mount points inside it, each as "PATH (a mount point)"; never entered.
    mounts: tuple[str, ...] = ()
    #: Every entry's stamp, by relative path ("" is the environment itself).
    stamps: dict[str, Stamp] = field(default_factory=dict, compare=False)
    #: Per regular file (hardlinks once): bytes of data, the holes left out.
    data_bytes: tuple[int, ...] = field(default=(), compare=False)
    directories: int = 0
    #: What the relocate engine copies, so the source is walked once for the
    #: checks and the copy; and what the removal deletes.
    listing: Listing = field(default_factory=dict, compare=False)
    #: The device of the environment's own directory: with its inode (in
    #: ``stamps``), what the removal knows it by.
    device: int = field(default=0, compare=False)

    def allocated(self, block: int) -> int:
        """Bytes the copy takes on a filesystem of ``block``-sized blocks:
        every file and directory rounds up to whole blocks, which for an
        environment of small files is far more than the sum of their sizes."""
        files = sum(-(-size // block) * block for size in self.data_bytes)
        return files + self.directories * block


def _special_kind(mode: int) -> str | None:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISBLK(mode) or stat.S_ISCHR(mode):
        return "a device file"
    return None


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def stamp_of(st: os.stat_result) -> Stamp:
    """An entry's stamp from its ``lstat`` (or the ``fstat`` of it open)."""
    return (
        st.st_mode,
        st.st_size,
        st.st_mtime_ns,
        st.st_ctime_ns,
        st.st_uid,
        st.st_ino,
        st.st_nlink,
    )


def _data_bytes(path: str, st: os.stat_result) -> int:
    """A sparse file is copied sparse, so only its data counts; a file on a
    compressing filesystem also has fewer blocks than bytes, but no holes."""
    if st.st_blocks * 512 >= st.st_size:
        return st.st_size
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return st.st_size
    try:
        hole = os.lseek(fd, 0, os.SEEK_HOLE)
    except OSError:
        hole = st.st_size
    finally:
        os.close(fd)
    return st.st_size if hole >= st.st_size else st.st_blocks * 512


def mount_points(root: str) -> set[str]:
    """Mount points strictly below ``root`` (a real path). A bind mount
    from the same filesystem has the same device number as its
    surroundings: only the kernel's list shows it."""
    inside = root.rstrip("/") + "/"
    return {mount.point for mount in mounts() if mount.point.startswith(inside)}


def measure(prefix: Path, jobs: int | None = None, *, sizes: bool = True) -> Footprint:
    """Walk the environment once (``lstat`` only, no reads), for the space
    it needs, what would make its removal wrong (other users' files, other
    environments inside it) and the stamps its removal is checked against.
    A file hardlinked within it is counted once, as it is copied once. The
    directories are listed across ``jobs`` threads: on a network filesystem
    each ``lstat`` is a round trip, and they overlap. Without ``sizes`` the
    data of sparse-looking files is not measured (an open and a close each,
    round trips too), for walks that only compare stamps."""
    root = str(prefix)
    top = os.lstat(root)
    real = os.path.realpath(root)
    boundary = _Boundary(top.st_dev, real, frozenset(mount_points(real)))
    listed, nested = _walk(root, jobs, boundary, sizes)
    tally = _Tally(os.geteuid(), stamps={"": stamp_of(top)})
    if top.st_uid != tally.euid:
        tally.foreign.append(f"{root} (owner: {_user(top.st_uid)})")
    listing: Listing = {}
    for rel_dir in sorted(listed):
        listing[rel_dir] = [(rel, st) for rel, _, st, _ in listed[rel_dir]]
        for rel, path, st, data_bytes in listed[rel_dir]:
            tally.add(path, rel, st, data_bytes, mounted=boundary.crossed(rel, st))
    return Footprint(
        tally.files,
        tally.bytes,
        tally.inodes,
        tuple(tally.special),
        tuple(tally.foreign),
        tuple(sorted(nested)),
        tuple(sorted(tally.mounts)),
        tally.stamps,
        tuple(tally.data),
        tally.directories + 1,
        listing,
        top.st_dev,
    )


#: One entry of a directory listed: relative path, path, ``lstat``, bytes of
#: data (see ``_data_bytes``).
_Listed = tuple[str, str, os.stat_result, int]


@dataclass(frozen=True)
class _Boundary:
    """Where the environment ends: its device, and the mount points inside it."""

    dev: int
    real: str
    inside: frozenset[str]

    def crossed(self, rel: str, st: os.stat_result) -> bool:
        """Another filesystem, or a part of this one mounted here: copying,
        checking or removing it would reach outside the environment."""
        return (
            stat.S_ISDIR(st.st_mode) and st.st_dev != self.dev
        ) or f"{self.real}/{rel}" in self.inside


def _walk(
    root: str, jobs: int | None, boundary: _Boundary, sizes: bool
) -> tuple[dict[str, list[_Listed]], list[str]]:
    """Every directory's entries, by relative path, never entering a mount;
    and the environments and package caches nested inside."""
    listed: dict[str, list[_Listed]] = {}
    nested: list[str] = []
    with pool(jobs) as threads:
        for rel_dir, is_nested, entries in gather(
            threads,
            lambda rel: _list_directory(root, rel, sizes),
            [""],
            more=lambda result: [
                rel
                for rel, _, st, _ in result[2]
                if stat.S_ISDIR(st.st_mode) and not boundary.crossed(rel, st)
            ],
        ):
            if is_nested:
                nested.append(f"{root}/{rel_dir}")
            listed[rel_dir] = entries
    return listed, nested


@dataclass
class _Tally:
    """What the walk found, entry by entry."""

    euid: int
    files: int = 0
    bytes: int = 0
    inodes: int = 0
    directories: int = 0
    special: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    data: list[int] = field(default_factory=list)
    stamps: dict[str, Stamp] = field(default_factory=dict)
    seen: set[tuple[int, int]] = field(default_factory=set)

    def add(
        self, path: str, rel: str, st: os.stat_result, data_bytes: int, *, mounted: bool
    ) -> None:
        self.stamps[rel] = stamp_of(st)
        self.inodes += 1
        if mounted:
            self.mounts.append(f"{path} (a mount point)")
        if st.st_uid != self.euid and len(self.foreign) < 5:
            self.foreign.append(f"{path} (owner: {_user(st.st_uid)})")
        if stat.S_ISDIR(st.st_mode):
            self.directories += 1
            return
        if not stat.S_ISREG(st.st_mode):
            kind = _special_kind(st.st_mode)
            if kind:
                self.special.append(f"{path} is {kind}")
            return
        self.files += 1
        if st.st_nlink > 1:
            if (st.st_dev, st.st_ino) in self.seen:
                return
            self.seen.add((st.st_dev, st.st_ino))
        self.bytes += st.st_size
        self.data.append(data_bytes)


def _list_directory(
    root: str, rel_dir: str, sizes: bool
) -> tuple[str, bool, list[_Listed]]:
    """One directory's entries with their ``lstat``, and whether it is an
    environment or a package cache of its own. Each ``lstat`` is made
    relative to the directory, opened once (``fstatat``): on a network
    filesystem a full path costs a lookup per component once the client's
    cache of names has expired."""
    path = f"{root}/{rel_dir}" if rel_dir else root
    flags = os.O_RDONLY | os.O_DIRECTORY
    if rel_dir:  # listed as a directory: never followed if it is a link now
        flags |= os.O_NOFOLLOW
    fd = os.open(path, flags)
    try:
        with os.scandir(fd) as it:
            entries = [(entry.name, entry.stat(follow_symlinks=False)) for entry in it]
    finally:
        os.close(fd)
    names = {name for name, _ in entries}
    is_nested = bool(rel_dir) and classify(path, names) is not Kind.OTHER
    found = []
    for name, st in entries:
        entry_path = f"{path}/{name}"
        sized = sizes and stat.S_ISREG(st.st_mode)
        data_bytes = _data_bytes(entry_path, st) if sized else 0
        rel = f"{rel_dir}/{name}" if rel_dir else name
        found.append((rel, entry_path, st, data_bytes))
    return rel_dir, is_nested, found


def _same(before: Stamp | None, now: Stamp) -> bool:
    """Equal, with the ctime compared only for an inode no other name shares:
    environments installed from one package cache share their files' inodes,
    so another environment's removal, or conda linking one into a new
    environment, moves this one's ctimes without touching it. A shared file's
    content cannot change without its size or mtime (short of setting the
    mtime back on purpose); a directory's entries show in its mtime."""
    if before is None or len(before) != len(now):
        return False
    if any(before[i] != now[i] for i in (0, 1, 2, 4, 5)):  # mode size mtime uid ino
        return False
    alone = before[6] == now[6] == 1
    return before[3] == now[3] or not alone


def _changed(
    before: dict[str, Stamp], now: dict[str, Stamp], *, directories: bool = True
) -> list[str]:
    """Entries of ``now`` added or changed since ``before``; a directory's
    own stamp is not compared where ``directories`` is false."""
    return [
        f"{rel or '.'}: {'added' if rel not in before else 'changed'}"
        for rel, stamp in now.items()
        if not _same(before.get(rel), stamp)
        and (
            directories
            or rel not in before
            or not (stat.S_ISDIR(stamp[0]) and stat.S_ISDIR(before[rel][0]))
        )
    ]


def changes(
    before: dict[str, Stamp], now: dict[str, Stamp], *, ignore: Collection[str] = ()
) -> list[str]:
    """What differs in ``now`` from the stamps taken before the copy: an
    edit, a new or removed file, a ``conda install`` meanwhile. Entries in
    ``ignore`` (relative paths) are not compared."""
    now = {rel: stamp for rel, stamp in now.items() if rel not in ignore}
    removed = [
        f"{rel or '.'}: removed"
        for rel in before
        if rel not in now and rel not in ignore
    ]
    return sorted(_changed(before, now) + removed)


def changes_since(
    before: dict[str, Stamp],
    prefix: Path,
    jobs: int | None = None,
    *,
    ignore: Collection[str] = (),
) -> list[str]:
    """``changes`` of ``prefix`` as it is now."""
    return changes(before, measure(prefix, jobs, sizes=False).stamps, ignore=ignore)


def left_over(before: dict[str, Stamp], now: dict[str, Stamp]) -> list[str]:
    """What in the remains of a removal that stopped midway (``now``) is not
    part of what was copied: anything added or changed since (directories
    excepted, whose stamps the removal itself moved)."""
    return sorted(_changed(before, now, directories=False))
