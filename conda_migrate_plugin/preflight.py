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
    #: FIFOs, sockets and devices, each as "PATH is a KIND".
    special: tuple[str, ...] = ()


def _special_kind(mode: int) -> str | None:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISBLK(mode) or stat.S_ISCHR(mode):
        return "a device file"
    return None


def measure(prefix: Path) -> Footprint:
    """Walk the environment once (lstat only, no reads); a file hardlinked
    within it is counted once, as it will be copied once."""
    files = size = inodes = 0
    seen: set[tuple[int, int]] = set()
    special = []
    for dirpath, dirnames, filenames in os.walk(prefix):
        inodes += len(dirnames)
        for name in filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            inodes += 1
            if not stat.S_ISREG(st.st_mode):
                kind = _special_kind(st.st_mode)
                if kind:
                    special.append(f"{path} is {kind}")
                continue
            files += 1
            if st.st_nlink > 1:
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            size += st.st_size
    return Footprint(files, size, inodes, tuple(special))


def check_file_types(footprint: Footprint) -> None:
    """Refuse an environment holding a FIFO, a socket or a device. conda never
    installs one, so it is a leftover of a crashed program; but no copy can
    carry it (relocate skips it, and conda's clone would wait for ever
    opening a FIFO), and the environment would not be removed unchanged."""
    if footprint.special:
        raise MigrateError(
            "The environment holds what conda never installs and no copy can carry:\n  "
            + "\n  ".join(footprint.special),
            hint="Nothing was copied and the environment is untouched. "
            "Remove it (a program that crashed left it) and run again.",
        )


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
