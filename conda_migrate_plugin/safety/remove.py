"""Step 4: remove the old environment, the one irreversible step.

The environment is first renamed aside within its own directory (atomic on
any POSIX filesystem) and only then deleted, so that a job killed midway
leaves either the whole environment or a clearly named leftover that the
next run finishes deleting, never a half-deleted environment that still
looks usable.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..classify import is_environment
from ..discover import under
from ..exceptions import InUse, MigrateError
from ..jobs import gather, pool
from ..names import removing_aside
from ..snapshot import mount_points

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from ..snapshot import Stamp


def check_removable(
    prefix: Path, scanned: Path, protected: Iterable[Path], *, remains: bool = False
) -> None:
    """Refuse anything that must never be deleted, before it could be;
    ``remains`` of a removal that stopped midway need not look like an
    environment any more."""
    keep = "The environment was not removed; its copy is in place."
    if prefix.is_symlink():
        raise MigrateError(
            f"{prefix} is a symlink; conda-migrate never removes through one.",
            hint=keep,
        )
    if not remains and not is_environment(prefix):
        raise MigrateError(
            f"{prefix} no longer looks like an environment (no conda-meta/history).",
            hint=keep,
        )
    resolved = prefix.resolve()
    if resolved != scanned.resolve() and not under(prefix, scanned):
        raise MigrateError(
            f"{prefix} lies outside the scanned directory {scanned}.", hint=keep
        )
    for other in protected:
        if resolved == other.resolve():
            raise MigrateError(
                f"{prefix} is the base environment or the active one; it is never removed.",
                hint=f"{keep} Deactivate it (conda deactivate), then remove it with: "
                f"conda env remove -p {prefix}",
            )


@dataclass(frozen=True)
class User:
    """A process of the user's that has the environment in use."""

    command: str
    pid: str
    #: What it holds open for writing, or works in: a reason never to remove
    #: the environment under it (its next write would go to an unlinked
    #: file, lost with the directory). ``None`` for a process that only
    #: reads or runs from it, which loses nothing.
    writes: str | None = None

    def __str__(self) -> str:
        return f"{self.command} (pid {self.pid})"


def _open_for_writing(proc: Path, fd: str) -> bool:
    """The access mode of descriptor ``fd``, as ``fdinfo`` gives its flags
    in octal; a file gone meanwhile counts as not written."""
    try:
        info = (proc / "fdinfo" / fd).read_text()
    except OSError:
        return False
    for line in info.splitlines():
        if line.startswith("flags:"):
            return int(line.split()[1], 8) & os.O_ACCMODE != os.O_RDONLY
    return False


def _writable_mappings(maps: str, inside: str) -> list[str]:
    """Files of the environment mapped shared and writable (a database's
    ``mmap``): the kernel writes them back whenever it likes."""
    found = []
    for line in maps.splitlines():
        fields = line.split(None, 5)
        if len(fields) == 6 and "w" in fields[1] and "s" in fields[1]:
            if fields[5].startswith(inside):
                found.append(fields[5])
    return found


def processes_using(prefix: Path) -> list[User]:
    """The processes that run from, work in, or hold files of the
    environment, as ``/proc`` shows them (the user's own, unless run as
    root): removing it pulls the ground from under them, which the user
    should hear of before it happens; and a process that writes into it or
    works in it keeps it."""
    root = os.path.realpath(prefix)
    inside = root + "/"

    def within(link: str) -> bool:
        return link == root or link.startswith(inside)

    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        if proc.name == str(os.getpid()):
            continue
        try:
            cwd, exe = os.readlink(proc / "cwd"), os.readlink(proc / "exe")
            fds = {fd.name: os.readlink(fd) for fd in (proc / "fd").iterdir()}
            maps = (proc / "maps").read_text()
            command = (proc / "comm").read_text().strip()
        except OSError:
            continue
        written = [
            link
            for fd, link in sorted(fds.items(), key=lambda item: int(item[0]))
            if within(link) and _open_for_writing(proc, fd)
        ]
        written += _writable_mappings(maps, inside)
        if written:
            found.append(User(command, proc.name, f"has {written[0]} open for writing"))
        elif within(cwd):
            found.append(User(command, proc.name, f"works in {cwd}"))
        elif inside in maps or within(exe) or any(map(within, fds.values())):
            found.append(User(command, proc.name))
    return found


def remove_tree(root: Path) -> None:
    """``rmtree`` of a tree this user owns, such as a copy given up: a
    directory it may not empty (copied read-only from the source) is made
    writable by its owner, as conda's ``rm_rf`` does, and the removal goes on."""
    try:
        shutil.rmtree(root)
    except PermissionError:
        for dirpath, dirnames, _ in os.walk(root):
            for name in [".", *dirnames]:
                path = os.path.join(dirpath, name)
                mode = os.lstat(path).st_mode
                if stat.S_ISDIR(mode) and mode & 0o700 != 0o700:
                    os.chmod(path, stat.S_IMODE(mode) | 0o700)
        shutil.rmtree(root)


def check_no_writers(
    prefix: Path, users: Iterable[User] | None = None, named: Path | None = None
) -> None:
    """Refuse to remove an environment a process writes into or works in
    (``users``, or those ``/proc`` shows now); paths are said as below
    ``named``, the name it is put back under."""
    for user in processes_using(prefix) if users is None else users:
        if user.writes:
            writes = user.writes
            if named is not None:
                writes = writes.replace(
                    os.path.realpath(prefix), os.path.realpath(named), 1
                )
            raise InUse(
                f"{user} {writes}; the environment was kept so that nothing "
                "it writes is lost.",
                hint="Run the same command again once it has ended: it removes the "
                "old environment if it is still as it was copied.",
            )


def remove_environment(
    prefix: Path,
    stamps: dict[str, Stamp] | None = None,
    jobs: int | None = None,
    unchanged: Callable[[Path], None] | None = None,
) -> None:
    """Rename aside, then delete across ``jobs`` threads; symlinks are
    unlinked, never followed out of the environment. What is checked before
    the deletion is checked on the renamed tree, which no one can reach by
    its old name any more: ``unchanged`` (raising if it is not as copied)
    and the processes writing into it; a write made before the rename
    cannot slip between the check and the deletion. Directories the owner
    made read-only (``chmod -w``, a Julia depot) are made writable first, as
    conda's own removal does. If a check or the deletion fails, what is
    left is put back under the original name and the error raised."""
    aside = removing_aside(prefix)
    os.rename(prefix, aside)
    try:
        _check_aside(prefix, aside, unchanged)
        for rel, stamp in (stamps or {}).items():
            mode = stamp[0]
            if stat.S_ISDIR(mode) and not mode & stat.S_IWUSR:
                os.chmod(aside / rel if rel else aside, stat.S_IMODE(mode) | 0o700)
        _delete_tree(str(aside), jobs)
    except (OSError, MigrateError) as err:
        if os.path.lexists(aside):
            _put_back(aside, prefix, err)
        raise


def _check_aside(
    prefix: Path, aside: Path, unchanged: Callable[[Path], None] | None
) -> None:
    """What must hold of the renamed tree before anything in it is deleted."""
    mounted = sorted(mount_points(os.path.realpath(aside)))
    if mounted:
        shown = mounted[0].replace(os.path.realpath(aside), str(prefix), 1)
        raise MigrateError(
            f"{shown} is a mount point inside {prefix}; the removal never crosses one.",
            hint="Unmount it (umount PATH), then run the same command again.",
        )
    if unchanged is not None:
        unchanged(aside)
    check_no_writers(aside, named=prefix)


def _put_back(aside: Path, prefix: Path, err: BaseException) -> None:
    """What is left goes back under its name, for every later run to report."""
    try:
        os.rename(aside, prefix)
    except OSError as blocked:
        # Something made the old name anew meanwhile (a job's
        # ``mkdir -p $CONDA_PREFIX/var/log``): neither is touched,
        # and no later run may finish this removal.
        raise MigrateError(
            f"{err}\nWhat is left of the old environment could not be put "
            f"back at {prefix} ({blocked.strerror}: something made it "
            f"anew meanwhile); it is at {aside}.",
            hint=f"Nothing more was deleted. Move {prefix} out of the way, "
            f"then move {aside} back to {prefix}.",
        ) from err


def _delete_tree(root: str, jobs: int | None) -> None:
    """On a network filesystem every unlink is a round trip to the server, so
    a serial ``rmtree`` is paced by latency, not work: each directory is
    emptied of its files by one of ``jobs`` threads as soon as its parent has
    listed it, then the directories go, the deepest first. The first error
    stops the removal and is raised."""
    depth: dict[str, int] = {root: 0}
    device = os.lstat(root).st_dev
    with pool(jobs) as threads:
        for parent, children in gather(
            threads,
            lambda path: _empty_files(path, device),
            [root],
            more=lambda r: r[1],
        ):
            for child in children:
                depth[child] = depth[parent] + 1
        levels: dict[int, list[str]] = {}
        for path, level in depth.items():
            levels.setdefault(level, []).append(path)
        for level in sorted(levels, reverse=True):
            for _ in gather(threads, os.rmdir, levels[level]):
                pass


def _empty_files(path: str, device: int) -> tuple[str, list[str]]:
    """Unlink what ``path`` holds but its subdirectories, which it returns;
    names are resolved against the directory, opened once and never through
    a symlink. A subdirectory on another ``device`` (a filesystem mounted
    there since the check) stops the removal before anything of it goes."""
    children = []
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if entry.stat(follow_symlinks=False).st_dev != device:
                        raise OSError(
                            errno.EXDEV,
                            "another filesystem is mounted here; the removal "
                            "never crosses one",
                            f"{path}/{entry.name}",
                        )
                    children.append(f"{path}/{entry.name}")
                else:
                    os.unlink(entry.name, dir_fd=fd)
    finally:
        os.close(fd)
    return path, children


def finish_removal(source: Path) -> bool:
    """Delete what a killed run had renamed aside from ``source``, when it is
    the user's own; returns whether there was anything."""
    aside = removing_aside(source)
    try:
        st = os.lstat(aside)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise MigrateError(
            f"{aside} is not a directory of yours; it was left as it is.",
            hint="Look at what it is, and remove it by hand if it is yours to remove.",
        )
    shutil.rmtree(aside)
    return True
