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
from ..snapshot import measure, mount_points
from .noreplace import rename_noreplace

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from ..snapshot import Footprint, Listing, Stamp


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


def _written(proc: Path, fd: str, within: bool, files: Files | None) -> bool:
    """Whether ``fd`` is open for writing (``fdinfo``'s octal flags) on a file
    of the environment: ``within`` it by its path, or one of ``files`` by any
    (its mount's device and its inode: read, never followed, so a hung
    network filesystem cannot stall it). A file gone counts as not written."""
    if not within and files is None:
        return False
    try:
        lines = (proc / "fdinfo" / fd).read_text().splitlines()
        pairs = (line.partition(":") for line in lines)
        info = {key: value.strip() for key, _, value in pairs}
        if int(info["flags"], 8) & os.O_ACCMODE == os.O_RDONLY:
            return False
        if within:
            return True
        if files is None or info.get("ino") not in files[1]:
            return False
        mounts = (proc / "mountinfo").read_text().splitlines()
    except (OSError, KeyError, ValueError):
        return False
    devices = {line.split()[0]: line.split()[2] for line in mounts}
    major, _, minor = devices.get(info.get("mnt_id", ""), "0:0").partition(":")
    return os.makedev(int(major), int(minor)) == files[0]


#: The environment's device and its entries' inodes (decimal, as ``/proc``
#: gives them): a process may reach them by another path (a bind mount).
Files = tuple[int, frozenset[str]]


def _writable_mappings(maps: str, inside: str, files: Files | None) -> list[str]:
    """Files of the environment mapped shared and writable (a database's
    ``mmap``): the kernel writes them back whenever it likes."""
    found = []
    for line in maps.splitlines():
        fields = line.split(None, 5)
        if len(fields) == 6 and "w" in fields[1] and "s" in fields[1]:
            major, _, minor = fields[3].partition(":")
            ours = (
                files is not None
                and fields[4] in files[1]
                and os.makedev(int(major, 16), int(minor, 16)) == files[0]
            )
            if fields[5].startswith(inside) or ours:
                found.append(fields[5])
    return found


def processes_using(prefix: Path, files: Files | None = None) -> list[User]:
    """The processes that run from, work in, or hold files of the
    environment, as ``/proc`` shows them (the user's own, unless run as
    root): removing it pulls the ground from under them, which the user
    should hear of before it happens; and a process that writes into it or
    works in it keeps it, also by another path to ``files``."""
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
            if _written(proc, fd, within(link), files)
        ]
        written += _writable_mappings(maps, inside, files)
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
    prefix: Path,
    users: Iterable[User] | None = None,
    named: Path | None = None,
    files: Files | None = None,
) -> None:
    """Refuse to remove an environment a process writes into or works in
    (``users``, or those ``/proc`` shows now, ``files`` by any path); paths
    are said as below ``named``, the name it is put back under."""
    for user in processes_using(prefix, files) if users is None else users:
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
    jobs: int | None = None,
    unchanged: Callable[[dict[str, Stamp]], None] | None = None,
) -> None:
    """Rename aside, walk the renamed tree, check it, then delete what the
    walk listed, across ``jobs`` threads. What is checked is checked on the
    renamed tree, which no one can reach by its old name any more:
    ``unchanged`` (given its stamps as walked, raising if they are not as
    copied) and the processes writing into it; a write made before the
    rename cannot slip between the check and the deletion, and one made
    after the walk (by a process still in it) is not deleted: its
    directory is found not empty and the removal stops. Directories the
    owner made read-only (``chmod -w``, a Julia depot) are made writable
    first, as conda's own removal does. If a check or the deletion fails,
    what is left is put back under the original name and the error raised."""
    aside = removing_aside(prefix)
    os.rename(prefix, aside)
    try:
        walked = _check_aside(prefix, aside, jobs, unchanged)
        for rel, stamp in walked.stamps.items():
            mode = stamp[0]
            if stat.S_ISDIR(mode) and not mode & stat.S_IWUSR:
                os.chmod(aside / rel if rel else aside, stat.S_IMODE(mode) | 0o700)
        _delete_walked(str(aside), walked, jobs)
    except (OSError, MigrateError) as err:
        if os.path.lexists(aside):
            _put_back(aside, prefix, err)
        raise


def _check_aside(
    prefix: Path,
    aside: Path,
    jobs: int | None,
    unchanged: Callable[[dict[str, Stamp]], None] | None,
) -> Footprint:
    """What must hold of the renamed tree before anything in it is deleted;
    its walk, which the deletion works from."""
    walked = measure(aside, jobs, sizes=False)
    real = os.path.realpath(aside)
    mounted = sorted(mount_points(real)) + [
        f"{real}/{rel}" for rel in _unwalked(walked.listing)
    ]
    if mounted:
        shown = mounted[0].replace(real, str(prefix), 1)
        raise MigrateError(
            f"{shown} is a mount point inside {prefix}; the removal never crosses one.",
            hint="Unmount it (umount PATH), then run the same command again.",
        )
    if unchanged is not None:
        unchanged(walked.stamps)
    check_no_writers(aside, named=prefix, files=files_of(walked))
    return walked


def files_of(footprint: Footprint) -> Files:
    """The walked environment's device and inodes, for ``processes_using``."""
    inodes = frozenset(str(stamp[5]) for stamp in footprint.stamps.values())
    return footprint.device, inodes


def _put_back(aside: Path, prefix: Path, cause: BaseException | None = None) -> None:
    """What is left goes back under its name, for every later run to report
    or check; never over anything made there meanwhile (a job's ``mkdir
    $CONDA_PREFIX``, even left empty, which a plain rename would replace
    without a word): then neither is touched, and no later run may finish
    this removal. ``cause``: why the removal stopped, if it did."""
    try:
        rename_noreplace(aside, prefix)
    except OSError as blocked:
        if isinstance(blocked, FileExistsError):
            why, left = "something made it anew meanwhile", ", and neither was touched"
            todo = f"Move {prefix} out of the way, then move"
        else:
            why, left, todo = str(blocked.strerror), "", "Fix that, then move"
        stopped = f"{cause}\n" if cause is not None else ""
        raise MigrateError(
            f"{stopped}What is left of the old environment could not be put back "
            f"at {prefix} ({why}); it is at {aside}{left}.",
            hint=f"Nothing more was deleted. {todo} {aside} back to {prefix}.",
        ) from (cause or blocked)


def _unwalked(listing: Listing) -> list[str]:
    """Directories the walk did not enter: another filesystem mounted there."""
    return [
        rel
        for entries in listing.values()
        for rel, st in entries
        if stat.S_ISDIR(st.st_mode) and rel not in listing
    ]


def _delete_walked(root: str, walked: Footprint, jobs: int | None) -> None:
    """Delete what the walk listed, and nothing else. On a network filesystem
    every request is a round trip, so no directory is listed again: each is
    opened (``O_PATH``: no open request) by its path below the root, known
    as the same directory the walk listed by its device and inode, and its
    files are unlinked by name, across ``jobs`` threads, in the order the
    walk listed them, while the kernel still holds the names it looked up;
    its subdirectories are opened once it is emptied of its files, as each
    unlink makes the kernel ask for its attributes again. A directory goes
    as soon as it is empty, with no wait for the rest of its level: a
    directory of many subdirectories removes them one at a time, as the
    kernel allows, while the others go on. An entry made since the walk is
    not deleted: its directory is not empty, and the removal stops there.
    The first error stops the removal and is raised."""
    deletion = _Deletion.of(root, walked)
    try:
        with pool(jobs) as threads:
            for _ in gather(
                threads, deletion.step, [("files", "")], more=deletion.next
            ):
                pass
    finally:
        os.close(deletion.top)
    os.rmdir(root)


#: A step of the deletion: ("files", directory) unlinks its files,
#: ("rmdir", directory) removes it, emptied.
_Step = tuple[str, str]


@dataclass
class _Deletion:
    """The walked tree being deleted: what each directory waits for before
    it is empty (its files, and each of its subdirectories)."""

    root: str
    top: int
    listing: Listing
    #: Each directory's device and inode, as walked.
    known: dict[str, tuple[int, int]]
    subdirectories: dict[str, list[str]]
    waiting: dict[str, int]

    @classmethod
    def of(cls, root: str, walked: Footprint) -> _Deletion:
        known = {
            rel: (st.st_dev, st.st_ino)
            for entries in walked.listing.values()
            for rel, st in entries
            if stat.S_ISDIR(st.st_mode)
        }
        known[""] = (walked.device, walked.stamps[""][5])
        subdirectories: dict[str, list[str]] = {}
        for rel in known:
            if rel:
                subdirectories.setdefault(rel.rpartition("/")[0], []).append(rel)
        waiting = {rel: 1 + len(subdirectories.get(rel, ())) for rel in known}
        top = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            _same_directory(top, root, known[""])
        except OSError:
            os.close(top)
            raise
        return cls(root, top, walked.listing, known, subdirectories, waiting)

    def step(self, step: _Step) -> _Step:
        """One step, in a thread of the pool."""
        kind, rel = step
        if kind == "files":
            fd = self._open(rel)
            try:
                for entry, st in self.listing[rel]:
                    if not stat.S_ISDIR(st.st_mode):
                        os.unlink(entry.rpartition("/")[2], dir_fd=fd)
            finally:
                os.close(fd)
        else:
            parent, _, name = rel.rpartition("/")
            fd = self._open(parent)
            try:
                os.rmdir(name, dir_fd=fd)
            finally:
                os.close(fd)
        return step

    def next(self, done: _Step) -> list[_Step]:
        """The steps ``done`` makes possible (in the gathering thread)."""
        kind, rel = done
        after = []
        if kind == "files":
            after = [("files", sub) for sub in self.subdirectories.get(rel, ())]
        else:
            rel = rel.rpartition("/")[0]
        self.waiting[rel] -= 1
        if rel and not self.waiting[rel]:
            after.append(("rmdir", rel))
        return after

    def _open(self, rel: str) -> int:
        """The directory ``rel``, as the walk listed it: a name that is a
        symlink now is not followed (``O_NOFOLLOW``), and one above it
        swapped for a symlink leads to another directory, refused."""
        if not rel:
            return os.dup(self.top)
        fd = os.open(rel, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=self.top)
        try:
            _same_directory(fd, f"{self.root}/{rel}", self.known[rel])
        except OSError:
            os.close(fd)
            raise
        return fd


def _same_directory(fd: int, path: str, known: tuple[int, int]) -> None:
    """Refuse a directory that is not the one the walk listed: a filesystem
    mounted there since, or a symlink swapped in above it."""
    st = os.fstat(fd)
    if st.st_dev != known[0]:
        raise OSError(
            errno.EXDEV,
            "another filesystem is mounted here; the removal never crosses one",
            path,
        )
    if st.st_ino != known[1]:
        raise OSError(
            errno.ESTALE,
            "not the directory that was checked; nothing in it was deleted",
            path,
        )


def put_back_remains(source: Path) -> bool:
    """Put what a killed run had renamed aside from ``source`` back under its
    name, when it is the user's own, for the removal to check it against the
    copy's stamps as it checks any source before it deletes anything: the
    kill may have come before that check was done, after a write into the
    environment it would have found. Returns whether there was anything."""
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
    _put_back(aside, source)
    return True
