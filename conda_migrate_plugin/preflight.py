"""Checks made before anything is copied, so that a migration that cannot
succeed fails at once with numbers, not halfway through with a full quota."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .classify import Kind, classify
from .exceptions import MigrateError
from .limits import AS_A_JOB, file_size_limit, file_size_said
from .mounts import mounts
from .progress import size

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable
    from pathlib import Path

    from .snapshot import Footprint

#: Room kept free beyond the environment's own size: metadata, the YAML, rc
#: backups, and whatever else the user writes to $HOME meanwhile.
MARGIN_BYTES = 64 * 2**20
MARGIN_FRACTION = 0.05
MARGIN_INODES = 1000


def check_carriable(footprint: Footprint) -> None:
    """Refuse an environment holding what no copy made here can carry.
    A FIFO, a socket or a device: conda never installs one, so it is a
    leftover of a crashed program; but relocate skips it, conda's clone would
    wait for ever opening a FIFO, and the environment would not be removed
    unchanged. A file larger than the login node lets a process write
    (``ulimit -f``): its copy would fail with EFBIG once all before it were
    written, and fail again at every run there."""
    _refuse(
        "The environment holds what conda never installs and no copy can carry",
        footprint.special,
        "Remove it (a program that crashed left it) and run again.",
    )
    limit = file_size_limit()
    if limit is None:
        return
    over = sorted(
        (
            (stamp[1], rel)
            for rel, stamp in footprint.stamps.items()
            if stat.S_ISREG(stamp[0]) and stamp[1] > limit
        ),
        reverse=True,
    )
    _refuse(
        f"It holds a file larger than {file_size_said(limit)}",
        tuple(f"{rel} ({size(nbytes)})" for nbytes, rel in over[:10])
        + ((f"... {len(over) - 10} more",) if len(over) > 10 else ()),
        AS_A_JOB,
    )


def check_nested(footprint: Footprint) -> None:
    """An environment holding others (a personal miniconda's ``envs/``) or a
    package cache would take them along when it is removed, unselected and
    unregistered. The environments inside move first, each as one of its
    own; a package cache is no environment and cannot be migrated: it holds
    what conda downloaded, which it fetches again, so it is moved out of the
    way. Each remedy is one the user can follow: a package cache told to
    "migrate first" would be refused again, for ever."""
    if not footprint.nested:
        return
    kinds = {path: classify(path) for path in footprint.nested}
    parents = sorted(
        {os.path.dirname(p) for p, kind in kinds.items() if kind is Kind.ENVIRONMENT}
    )
    remedies = []
    if parents:
        commands = "; ".join(f"conda migrate -d {parent} --all" for parent in parents)
        remedies.append(f"Migrate the environments first ({commands}), then this one.")
    if Kind.PACKAGE_CACHE in kinds.values():
        remedies.append(
            "A package cache holds only what conda downloaded, which it fetches "
            "again when needed: move it out of this environment, then run this again."
        )
    _refuse(
        "The environment holds other environments or package caches",
        tuple(
            f"{path} ({_KINDS.get(kind, 'gone since')})" for path, kind in kinds.items()
        ),
        " ".join(remedies) or "Run this again.",
    )


_KINDS = {Kind.ENVIRONMENT: "an environment", Kind.PACKAGE_CACHE: "a package cache"}


def check_mounts(footprint: Footprint, source: Path, *, keep_old: bool) -> None:
    """A directory mounted inside the environment (a bind mount of
    ``~/project``, a tmpfs) belongs to no copy of it: copying it would fill
    the destination with what is not the environment's, and removing it
    would delete the mounted files. Never entered; refused up front.

    An environment that is itself a mount point (a group's volume mounted
    there) copies whole, but can be neither renamed aside nor removed
    (EBUSY): refused before the copy rather than found at the removal, with
    a registered copy in the home and the volume left to remove by hand."""
    _refuse(
        "The environment has other filesystems, or other places, mounted inside it",
        footprint.mounts,
        "Unmount them (umount PATH), then run again.",
    )
    real = os.path.realpath(source)
    if not keep_old and any(mount.point == real for mount in mounts()):
        raise MigrateError(
            f"{source} is itself a mount point ({real} in /proc/self/mountinfo): "
            "a mounted directory cannot be moved aside or removed.",
            hint="Nothing was copied and the environment is untouched. "
            "--keep-old copies it and leaves it mounted where it is; "
            "whoever mounted it can unmount it once the copy is checked.",
        )


def check_owned(footprint: Footprint, *, keep_old: bool) -> None:
    """Only the owner of every file may have an environment removed: a group
    member's environment in a shared directory is not ours to delete, even
    where the directory's mode would let us."""
    if not keep_old:
        _refuse(
            "The environment holds files of another user",
            footprint.foreign,
            "Its owner can migrate it; --keep-old copies it without removing it.",
        )


def _refuse(problem: str, paths: tuple[str, ...], remedy: str) -> None:
    """Before anything is copied: the paths that stand in the way, if any."""
    if paths:
        raise MigrateError(
            f"{problem}:\n  " + "\n  ".join(paths),
            hint=f"Nothing was copied and the environment is untouched. {remedy}",
        )


def existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_space(
    footprint: Footprint,
    linked: Collection[os.stat_result],
    restored: Restored,
    dest_root: Path,
) -> None:
    """Refuse when the destination's filesystem lacks the bytes or the
    inodes (home quotas often limit the file count as well); the copy holds
    the ``linked`` files (``relocation.softlinks``) where the source has
    links, and the files the purge took that it ``restored``."""
    vfs = os.statvfs(existing_ancestor(dest_root))
    free_bytes = vfs.f_bavail * vfs.f_frsize
    allocated = copy_allocated(footprint, linked, restored, vfs.f_frsize)
    need_bytes = int(allocated * (1 + MARGIN_FRACTION)) + MARGIN_BYTES
    hint = "Nothing was copied and the environment is untouched. Free space in the destination or choose another with --dest."
    # f_blocks is 0 on filesystems that count no size (ramfs).
    if vfs.f_blocks and free_bytes < need_bytes:
        raise MigrateError(
            f"Not enough space in {dest_root}: the environment needs {size(need_bytes)} "
            f"(with margin), {size(free_bytes)} are free.",
            hint=hint,
        )
    if vfs.f_files:  # 0 on filesystems without an inode limit
        need_inodes = footprint.inodes + restored.inodes + MARGIN_INODES
        if vfs.f_favail < need_inodes:
            raise MigrateError(
                f"Not enough inodes in {dest_root}: the environment needs {need_inodes} "
                f"files and directories (with margin), {vfs.f_favail} are free.",
                hint=hint,
            )


def copy_allocated(
    footprint: Footprint,
    linked: Iterable[os.stat_result],
    restored: Restored,
    block: int,
) -> int:
    """Bytes the copy takes in ``block``-sized blocks, before any sharing:
    what the walk saw, the ``linked`` files its links into a package cache
    become, and what it ``restored`` of what the purge took."""
    return (
        footprint.allocated(block)
        + whole_blocks((st.st_size for st in linked), block)
        + restored.allocated(block)
    )


def whole_blocks(sizes: Iterable[int], block: int) -> int:
    """The bytes files of these ``sizes`` take in ``block``-sized blocks, as copied."""
    return sum(-(-nbytes // block) * block for nbytes in sizes)


@dataclass(frozen=True)
class Restored:
    """What the copy writes that the source's walk did not see: the files
    of conda packages the purge took (``purge.find_purged``), which it
    restores from a package cache, a tarball or the channel, by the sizes
    their records give."""

    #: Each restored file's size, as its record gives it.
    sizes: tuple[int, ...] = ()
    #: The files among them the source lacks (a link into a purged cache is
    #: there already: the copy turns it into its file, in its inode).
    files: int = 0
    #: The directories the purge emptied and took, which the copy makes
    #: again for them.
    directories: int = 0

    @property
    def inodes(self) -> int:
        return self.files + self.directories

    def allocated(self, block: int) -> int:
        """Bytes they take on a filesystem of ``block``-sized blocks."""
        return whole_blocks(self.sizes, block) + self.directories * block


def check_writable(dest_root: Path) -> None:
    """A read-only or foreign destination fails here, not after the export."""
    target = existing_ancestor(dest_root)
    if not os.access(target, os.W_OK | os.X_OK):
        raise MigrateError(
            f"The destination {dest_root} cannot be written ({target} is not writable).",
            hint="Nothing was copied and the environment is untouched. Choose another with --dest.",
        )


def check_paths(source: Path, dest: Path) -> None:
    """A destination inside the source (or the reverse) would copy into itself
    or delete the copy with the original."""
    # Each resolved once: on a network filesystem every missing component
    # of the destination is a lookup the server answers again each time.
    real_source, real_dest = source.resolve(), dest.resolve()
    if real_dest.is_relative_to(real_source) or real_source.is_relative_to(real_dest):
        raise MigrateError(
            f"The destination {dest} and the source {source} overlap.",
            hint="Nothing was done. Choose a destination outside the environment with --dest.",
        )
