"""The home quota: what the environments need of it, checked before anything is copied.

``statvfs`` on an NFS, GPFS or Lustre home is the server's free space
(terabytes), not what the user may still write: a move that cannot fit would
start anyway and meet ``EDQUOT`` part way. So the tools that know are asked
(see ``quota_tools``), in bytes and in files. What an environment needs is
counted after sharing (see ``relocation.share``), in whole blocks and
inodes. No tool answering is not an error: the run says so.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from .classify import Kind, classify
from .exceptions import MigrateError
from .names import PACKAGE_CACHE_MARK
from .preflight import (
    MARGIN_BYTES,
    MARGIN_FRACTION,
    MARGIN_INODES,
    copy_allocated,
    existing_ancestor,
    whole_blocks,
)
from .progress import size
from .quota_tools import Quota, ask

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    from .preflight import Restored
    from .relocation.share import SharedFiles
    from .snapshot import Footprint


@dataclass
class Room:
    """What one run knows of the destination's room: the files the
    environments committed so far share (None: ``--copy``), the quota as
    the run began (None: no tool answered, and none is asked again), and
    what the environments planned or copied so far need."""

    shared: SharedFiles | None
    #: The destination's nearest existing directory: what the tools are asked.
    dest: Path
    #: The destination, as the user names it.
    root: Path
    before: Quota | None = None
    tried: list[str] = field(default_factory=list)
    needed_bytes: int = 0
    needed_files: int = 0
    #: Set once the destination filled during a copy: what happened.
    full: str | None = None

    def now(self) -> Quota | None:
        """The quota as it is now, asked again in the same order (none is
        asked where none answered as the run began)."""
        if self.before is None:
            return None
        return ask(self.dest)[0]

    def plan(self, footprint: Footprint, wanted: Need) -> None:
        """Under ``--dry-run``: count ``wanted``, and the environment's files
        other names share, and the package cache's files its links lead to,
        as held, for those planned after it (conda hard-links and softlinks
        only files it writes no prefix into: those stay shared)."""
        self.needed_bytes += wanted.bytes
        self.needed_files += wanted.files
        if self.shared is None:
            return
        self.shared.planned.update(wanted.linked)
        for entries in footprint.listing.values():
            for rel, st in entries:
                if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                    if not rel.startswith("conda-meta/"):
                        self.shared.planned.add((st.st_dev, st.st_ino))

    def after(self) -> Quota | None:
        """The quota once what was planned is written (``--dry-run``)."""
        if self.before is None:
            return None
        return replace(
            self.before,
            used_bytes=self.before.used_bytes + self.needed_bytes,
            used_files=self.before.used_files + self.needed_files,
        )


def start(dest_root: Path, share: bool) -> Room:
    """The run's room, the quota asked once up front."""
    from .relocation.share import SharedFiles

    dest = existing_ancestor(dest_root)
    before, tried = ask(dest)
    return Room(SharedFiles() if share else None, dest, dest_root, before, tried)


@dataclass(frozen=True)
class Need:
    """What an environment takes in the destination, and what of it the
    environments before it in the run already hold."""

    bytes: int
    files: int
    shared_bytes: int = 0
    shared_files: int = 0
    #: The files of a package cache its links lead to, which its copy holds,
    #: by ``(st_dev, st_ino)``.
    linked: tuple[tuple[int, int], ...] = ()


def block_size(dest: Path) -> int:
    """The destination's block, as quotas count it: ``statvfs``'s fragment
    size, but 4 KiB where a network filesystem reports its transfer size
    (an NFS client says 1 MiB) rather than the server's blocks."""
    try:
        frsize = os.statvfs(dest).f_frsize
    except OSError:
        return 4096
    return frsize if 0 < frsize <= 65536 else 4096


def need(
    footprint: Footprint,
    linked: Mapping[str, os.stat_result],
    restored: Restored,
    block: int,
    shared: SharedFiles | None,
) -> Need:
    """Whole blocks and inodes the copy takes, the files an earlier
    environment of the run holds left out (they become links). A link into
    a package cache that the copy turns into its file (``linked``, by path,
    the file's ``stat``) takes that file's blocks, in the same inode, unless
    an earlier environment holds that file too; a file the purge took takes
    what its record says (``restored``)."""
    held: list[os.stat_result] = []
    if shared is not None:
        seen = set()
        for entries in footprint.listing.values():
            for _, st in entries:
                key = (st.st_dev, st.st_ino)
                if stat.S_ISREG(st.st_mode) and key not in seen and shared.covers(st):
                    seen.add(key)
                    held.append(st)
        held += [st for st in linked.values() if shared.covers(st, linked=True)]
    shared_bytes = whole_blocks((st.st_size for st in held), block)
    # The environment's own directory, and each hardlinked file once.
    unique_inodes = footprint.inodes + 1 - _extra_names(footprint)
    return Need(
        copy_allocated(footprint, linked.values(), restored, block) - shared_bytes,
        unique_inodes + restored.inodes - len(held),
        shared_bytes,
        len(held),
        tuple({(st.st_dev, st.st_ino) for st in linked.values()}),
    )


def _extra_names(footprint: Footprint) -> int:
    """Names of a file hardlinked within the environment beyond the first."""
    names = 0
    seen = set()
    for entries in footprint.listing.values():
        for _, st in entries:
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    names += 1
                seen.add(key)
    return names


def freed(footprint: Footprint) -> tuple[int, int]:
    """Files and bytes the removal of the source gives back: an inode other
    names share (the package cache's, another environment's) stays."""
    counts: dict[tuple[int, int], int] = {}
    stats = {}
    for entries in footprint.listing.values():
        for _, st in entries:
            key = (st.st_dev, st.st_ino)
            counts[key] = counts.get(key, 0) + 1
            stats[key] = st
    files = nbytes = 0
    for key, names in counts.items():
        st = stats[key]
        if stat.S_ISDIR(st.st_mode) or names >= st.st_nlink:
            files += 1
            nbytes += st.st_blocks * 512
    return files + 1, nbytes  # and the environment's own directory


def usage(root: Path) -> tuple[int, int]:
    """Allocated bytes and inodes below ``root``, a hard link counted once,
    as a quota counts them."""
    seen: dict[tuple[int, int], int] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames, *([] if dirpath != str(root) else ["."])]:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            seen[(st.st_dev, st.st_ino)] = st.st_blocks * 512
    return sum(seen.values()), len(seen)


#: What conda creates a package cache with: a cache holding nothing else
#: has nothing conda would download again.
_EMPTY_CACHE = {PACKAGE_CACHE_MARK, "urls"}


def package_caches(
    directories: Sequence[Path], named: Sequence[Path] = ()
) -> list[Path]:
    """The package caches among ``directories`` and directly inside them,
    and those ``named`` (by an rc file; their insides are extracted packages,
    not looked into), that hold more than an empty one, each once."""
    candidates = []
    for directory in directories:
        try:
            inside = [directory, *(p for p in directory.iterdir() if p.is_dir())]
        except OSError:
            continue
        candidates += inside
    found = []
    for candidate in dict.fromkeys([*candidates, *named]):
        try:
            names = os.listdir(candidate)
        except OSError:
            continue
        if (
            classify(candidate, names) is Kind.PACKAGE_CACHE
            and set(names) - _EMPTY_CACHE
        ):
            found.append(candidate)
    return found


def check_quota(quota: Quota, wanted: Need, dest_root: Path) -> None:
    """Refuse, before anything is copied, what cannot fit the quota."""
    need_bytes = int(wanted.bytes * (1 + MARGIN_FRACTION)) + MARGIN_BYTES
    need_files = wanted.files + MARGIN_INODES
    short = []
    if quota.left_bytes is not None and quota.left_bytes < need_bytes:
        short.append(
            f"{size(need_bytes)} (with margin), {size(max(0, quota.left_bytes))} left"
        )
    if quota.left_files is not None and quota.left_files < need_files:
        short.append(
            f"{need_files} files (with margin), {max(0, quota.left_files)} left"
        )
    if not short:
        return
    sharing = (
        f" ({wanted.shared_files} files, {size(wanted.shared_bytes)}, left out: "
        "environments migrated before it hold them)"
        if wanted.shared_files
        else ""
    )
    raise MigrateError(
        f"The environment does not fit your quota on {dest_root}: it needs "
        + " and ".join(short)
        + f"{sharing}. Quota: {quota.describe()}.",
        hint="Nothing was copied and the environment is untouched. Make room "
        "(conda clean --all frees conda's package cache in $HOME), migrate fewer "
        "environments at a time, or choose another destination with --dest.",
    )
