"""Checks made before anything is copied, so that a migration that cannot
succeed fails at once with numbers, not halfway through with a full quota."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .discover import under
from .exceptions import MigrateError

if TYPE_CHECKING:
    from pathlib import Path

#: Room kept free beyond the environment's own size: metadata, the YAML, rc
#: backups, and whatever else the user writes to $HOME meanwhile.
MARGIN_BYTES = 64 * 2**20
MARGIN_FRACTION = 0.05
MARGIN_INODES = 1000


@dataclass(frozen=True)
class Footprint:
    files: int
    bytes: int
    inodes: int


def measure(prefix: Path) -> Footprint:
    """Walk the environment once (lstat only, no reads); a file hardlinked
    within it is counted once, as it will be copied once."""
    files = size = inodes = 0
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(prefix):
        inodes += len(dirnames)
        for name in filenames:
            st = os.lstat(os.path.join(dirpath, name))
            inodes += 1
            if not stat.S_ISREG(st.st_mode):
                continue
            files += 1
            if st.st_nlink > 1:
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            size += st.st_size
    return Footprint(files, size, inodes)


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_space(footprint: Footprint, dest_root: Path) -> None:
    """Refuse when the destination's filesystem lacks the bytes or the
    inodes (home quotas often limit the file count as well)."""
    vfs = os.statvfs(_existing_ancestor(dest_root))
    free_bytes = vfs.f_bavail * vfs.f_frsize
    need_bytes = int(footprint.bytes * (1 + MARGIN_FRACTION)) + MARGIN_BYTES
    hint = "Nothing was copied and the environment is untouched. Free space in the destination or choose another with --dest."
    if free_bytes < need_bytes:
        raise MigrateError(
            f"Not enough space in {dest_root}: the environment needs {need_bytes:,} bytes "
            f"(with margin), {free_bytes:,} are free.",
            hint=hint,
        )
    if vfs.f_files:  # 0 on filesystems without an inode limit
        need_inodes = footprint.inodes + MARGIN_INODES
        if vfs.f_favail < need_inodes:
            raise MigrateError(
                f"Not enough inodes in {dest_root}: the environment needs {need_inodes:,} "
                f"files and directories (with margin), {vfs.f_favail:,} are free.",
                hint=hint,
            )


def check_writable(dest_root: Path) -> None:
    """A read-only or foreign destination fails here, not after the export."""
    target = _existing_ancestor(dest_root)
    if not os.access(target, os.W_OK | os.X_OK):
        raise MigrateError(
            f"The destination {dest_root} cannot be written ({target} is not writable).",
            hint="Nothing was copied and the environment is untouched. Choose another with --dest.",
        )


def check_paths(source: Path, dest: Path) -> None:
    """A destination inside the source (or the reverse) would copy into itself
    or delete the copy with the original."""
    if dest.resolve() == source.resolve() or under(dest, source) or under(source, dest):
        raise MigrateError(
            f"The destination {dest} and the source {source} overlap.",
            hint="Nothing was done. Choose a destination outside the environment with --dest.",
        )
