"""Checks made before anything is copied, so that a migration that cannot
succeed fails at once with numbers, not halfway through with a full quota."""

from __future__ import annotations

import os
import pwd
import re
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .classify import Kind, classify
from .discover import under
from .exceptions import MigrateError
from .jobs import default_jobs, gather
from .progress import size

if TYPE_CHECKING:
    from collections.abc import Collection
    from pathlib import Path

#: Room kept free beyond the environment's own size: metadata, the YAML, rc
#: backups, and whatever else the user writes to $HOME meanwhile.
MARGIN_BYTES = 64 * 2**20
MARGIN_FRACTION = 0.05
MARGIN_INODES = 1000


#: What the source's state is compared on before it is removed: a change of
#: content, type, mode, owner or entries shows in one of these (``ctime``
#: moves on every write and every chmod, and cannot be set back by a user).
#: mode, size, mtime, ctime, uid, ino, nlink
Stamp = tuple[int, int, int, int, int, int, int]


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
    #: Each directory's entries with their ``lstat``, by relative path of the
    #: directory: what the relocate engine copies, so the source is walked
    #: once for the checks and the copy.
    listing: dict[str, list[tuple[str, os.stat_result]]] = field(
        default_factory=dict, compare=False
    )

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


def _stamp(st: os.stat_result) -> Stamp:
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
    """Mount points strictly below ``root`` (a real path), as the kernel
    lists them for this process. A bind mount from the same filesystem has
    the same device number as its surroundings: only this list shows it."""
    inside = root.rstrip("/") + "/"
    try:
        table = open("/proc/self/mountinfo", "rb").read()
    except OSError:
        return set()
    points = set()
    for line in table.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        # Spaces, tabs, newlines and backslashes are written as octal escapes.
        point = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m[1], 8)]), fields[4])
        path = os.fsdecode(point)
        if path.startswith(inside):
            points.add(path)
    return points


def measure(prefix: Path, jobs: int | None = None) -> Footprint:
    """Walk the environment once (``lstat`` only, no reads), for the space
    it needs, what would make its removal wrong (other users' files, other
    environments inside it) and the stamps its removal is checked against.
    A file hardlinked within it is counted once, as it is copied once. The
    directories are listed across ``jobs`` threads: on a network filesystem
    each ``lstat`` is a round trip, and they overlap."""
    root = str(prefix)
    euid = os.geteuid()
    files = size = inodes = directories = 0
    seen: set[tuple[int, int]] = set()
    special: list[str] = []
    foreign: list[str] = []
    nested: list[str] = []
    data: list[int] = []
    top = os.lstat(root)
    stamps: dict[str, Stamp] = {"": _stamp(top)}
    real = os.path.realpath(root)
    inside = mount_points(real)

    def mounted(rel: str, st: os.stat_result) -> bool:
        """Another filesystem, or a part of this one mounted here: copying,
        checking or removing it would reach outside the environment."""
        return (
            stat.S_ISDIR(st.st_mode) and st.st_dev != top.st_dev
        ) or f"{real}/{rel}" in inside

    mounts: list[str] = []
    if top.st_uid != euid:
        foreign.append(f"{root} (owner: {_user(top.st_uid)})")
    listed: dict[str, list[tuple[str, str, os.stat_result, int]]] = {}
    listing: dict[str, list[tuple[str, os.stat_result]]] = {}
    with ThreadPoolExecutor(max_workers=jobs or default_jobs()) as pool:
        for rel_dir, is_nested, entries in gather(
            pool,
            lambda rel: _list_directory(root, rel),
            [""],
            more=lambda result: [
                rel
                for rel, _, st, _ in result[2]
                if stat.S_ISDIR(st.st_mode) and not mounted(rel, st)
            ],
        ):
            if is_nested:
                nested.append(f"{root}/{rel_dir}")
            listed[rel_dir] = entries
    for rel_dir in sorted(listed):
        listing[rel_dir] = [(rel, st) for rel, _, st, _ in listed[rel_dir]]
        for rel, path, st, data_bytes in listed[rel_dir]:
            stamps[rel] = _stamp(st)
            inodes += 1
            if mounted(rel, st):
                mounts.append(f"{path} (a mount point)")
            if st.st_uid != euid and len(foreign) < 5:
                foreign.append(f"{path} (owner: {_user(st.st_uid)})")
            if stat.S_ISDIR(st.st_mode):
                directories += 1
                continue
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
            data.append(data_bytes)
    return Footprint(
        files,
        size,
        inodes,
        tuple(special),
        tuple(foreign),
        tuple(sorted(nested)),
        tuple(sorted(mounts)),
        stamps,
        tuple(data),
        directories + 1,
        listing,
    )


def _list_directory(
    root: str, rel_dir: str
) -> tuple[str, bool, list[tuple[str, str, os.stat_result, int]]]:
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
        data_bytes = _data_bytes(entry_path, st) if stat.S_ISREG(st.st_mode) else 0
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


def changes_since(
    before: dict[str, Stamp],
    prefix: Path,
    jobs: int | None = None,
    *,
    ignore: Collection[str] = (),
) -> list[str]:
    """What differs in ``prefix`` from the stamps taken before it was
    copied: an edit, a new or removed file, a ``conda install`` meanwhile.
    Entries in ``ignore`` (relative paths) are not compared."""
    now = measure(prefix, jobs).stamps
    for rel in ignore:
        now.pop(rel, None)
    removed = [
        f"{rel or '.'}: removed"
        for rel in before
        if rel not in now and rel not in ignore
    ]
    return sorted(_changed(before, now) + removed)


def left_over(
    before: dict[str, Stamp], prefix: Path, jobs: int | None = None
) -> list[str]:
    """What in the remains of a removal that stopped midway is not part of
    what was copied: anything added or changed since (directories excepted,
    whose stamps the removal itself moved)."""
    return sorted(_changed(before, measure(prefix, jobs).stamps, directories=False))


def check_file_types(footprint: Footprint) -> None:
    """Refuse an environment holding a FIFO, a socket or a device. conda never
    installs one, so it is a leftover of a crashed program; but no copy can
    carry it (relocate skips it, and conda's clone would wait for ever
    opening a FIFO), and the environment would not be removed unchanged."""
    _refuse(
        "The environment holds what conda never installs and no copy can carry",
        footprint.special,
        "Remove it (a program that crashed left it) and run again.",
    )


def check_nested(footprint: Footprint) -> None:
    """An environment holding others (a personal miniconda's ``envs/``) or a
    package cache would take them along when it is removed, unselected and
    unregistered; those must move first, each as an environment of its own."""
    _refuse(
        "The environment holds other environments or package caches",
        footprint.nested,
        "Migrate those first (conda migrate -d with each of them), then this one.",
    )


def check_mounts(footprint: Footprint) -> None:
    """A directory mounted inside the environment (a bind mount of
    ``~/project``, a tmpfs) belongs to no copy of it: copying it would fill
    the destination with what is not the environment's, and removing it
    would delete the mounted files. Never entered; refused up front."""
    _refuse(
        "The environment has other filesystems, or other places, mounted inside it",
        footprint.mounts,
        "Unmount them (umount PATH), then run again.",
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


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_space(footprint: Footprint, dest_root: Path) -> None:
    """Refuse when the destination's filesystem lacks the bytes or the
    inodes (home quotas often limit the file count as well)."""
    vfs = os.statvfs(_existing_ancestor(dest_root))
    free_bytes = vfs.f_bavail * vfs.f_frsize
    need_bytes = (
        int(footprint.allocated(vfs.f_frsize) * (1 + MARGIN_FRACTION)) + MARGIN_BYTES
    )
    hint = "Nothing was copied and the environment is untouched. Free space in the destination or choose another with --dest."
    # f_blocks is 0 on filesystems that count no size (ramfs).
    if vfs.f_blocks and free_bytes < need_bytes:
        raise MigrateError(
            f"Not enough space in {dest_root}: the environment needs {size(need_bytes)} "
            f"(with margin), {size(free_bytes)} are free.",
            hint=hint,
        )
    if vfs.f_files:  # 0 on filesystems without an inode limit
        need_inodes = footprint.inodes + MARGIN_INODES
        if vfs.f_favail < need_inodes:
            raise MigrateError(
                f"Not enough inodes in {dest_root}: the environment needs {need_inodes} "
                f"files and directories (with margin), {vfs.f_favail} are free.",
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
