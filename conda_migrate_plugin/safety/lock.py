"""One run at a time per environment.

``flock`` locks belong to the open file, so the kernel drops them the moment
the holding process dies, however it dies: a lock can never outlive a killed
job and block the rerun. They live in ``$HOME`` because scratch filesystems
often disable ``flock``. Each file names its last holder, by Slurm job id
where there is one, since that is what ``squeue`` and ``scancel`` take.

A home may refuse them too (an NFS home whose lock manager is out of reach:
ENOLCK; Lustre mounted ``noflock``: ENOSYS; some FUSE and CIFS mounts), so a
run tries once, before it touches anything (``check_locking``). Some mounts
grant them on one node only (``node_local``): runs on two nodes then do not
exclude each other, and a job array must not run its tasks side by side.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ..exceptions import MigrateError
from ..mounts import holding, parse
from ..names import LOCKS, keyed_file

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Mounts whose ``flock`` locks the kernel keeps on the node alone, by the
#: options that say so in ``/proc/self/mountinfo``: NFS v2/v3 ``nolock``
#: (shown with ``local_lock=all``) or ``local_lock=flock`` (``flock`` stays
#: local, byte-range locks go to the server); Lustre ``localflock``.
NODE_LOCAL: Final = {
    "nfs": ("nolock", "local_lock=flock", "local_lock=all"),
    "lustre": ("localflock",),
}
MOUNTINFO: Final = Path("/proc/self/mountinfo")


def lock_path(state_dir: Path, prefix: Path, *, by_inode: bool = True) -> Path:
    """An existing environment is locked by its device and inode, so that the
    same one reached through a symlink or another spelling is one lock; a
    destination, which comes and goes, by its parent's real path and name."""
    key = os.path.join(os.path.realpath(prefix.parent), prefix.name)
    if by_inode:
        try:
            st = os.stat(prefix)
        except OSError:
            pass
        else:
            key = f"inode {st.st_dev}:{st.st_ino}"
    return keyed_file(state_dir, LOCKS, key, ".lock")


def identity() -> str:
    job = os.environ.get("SLURM_JOB_ID")
    who = f"pid {os.getpid()} on {socket.gethostname()}"
    return f"{f'Slurm job {job}, ' if job else ''}{who}, since {time.strftime('%Y-%m-%d %H:%M:%S')}"


@contextmanager
def hold(state_dir: Path, prefix: Path, *, by_inode: bool = True) -> Iterator[str]:
    """Hold the lock for ``prefix`` or say at once who holds it; yields who
    held it before, which after a finished migration is the run that did it."""
    path = lock_path(state_dir, prefix, by_inode=by_inode)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as err:
        # A new file for each environment: a home whose quota is full
        # refuses it before anything of the environment is touched.
        full = err.errno in (errno.EDQUOT, errno.ENOSPC)
        raise MigrateError(
            f"{prefix} was not touched: its lock cannot be made in {path.parent} "
            f"({err.strerror}).",
            hint="Your home is full (a quota counts files as well as bytes): make "
            "room, then run the same command again."
            if full
            else "Run the same command again once that is fixed.",
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip()
            raise MigrateError(
                f"{prefix} is being migrated by another conda-migrate run ({holder or 'unknown'}).",
                hint="It was not touched by this run. Wait for the other run to finish, then run again.",
            ) from None
        except OSError as err:
            raise MigrateError(
                f"{prefix} was not touched: {refusal(path.parent, err)}",
                hint="Run the same command again once locking works there again.",
            ) from None
        previous = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        _write(fd, identity())
        yield previous
    finally:
        os.close(fd)


def _write(fd: int, holder: str) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{holder}\n".encode(), 0)


def name_holder(state_dir: Path, dest: Path, holder: str) -> None:
    """Put back the previous holder of a destination's lock, by a run holding
    it that changed nothing: only the run that migrated it stays named."""
    fd = os.open(lock_path(state_dir, dest, by_inode=False), os.O_RDWR)
    try:
        _write(fd, holder)
    finally:
        os.close(fd)


@contextmanager
def hold_all(state_dir: Path, source: Path, dest: Path) -> Iterator[str]:
    """Yields who held the destination before: the source of a finished
    migration is gone, and with it the inode its lock was keyed by."""
    with ExitStack() as stack:
        stack.enter_context(hold(state_dir, source))
        yield stack.enter_context(hold(state_dir, dest, by_inode=False))


@contextmanager
def serialized(state_dir: Path, what: str) -> Iterator[None]:
    """Wait for, then hold, the one lock on ``what`` (a file of the user's
    that runs read, change and write back): runs side by side, such as the
    tasks of a job array, would otherwise each write back what they read
    before the other's change, and lose it."""
    with _flocked(state_dir, what, fcntl.LOCK_EX):
        yield


@contextmanager
def sharing(state_dir: Path, what: str) -> Iterator[None]:
    """Held, by any number of runs at once, while each writes ``what``;
    ``alone`` gets it only when none is writing."""
    with _flocked(state_dir, what, fcntl.LOCK_SH):
        yield


@contextmanager
def _flocked(state_dir: Path, what: str, operation: int) -> Iterator[None]:
    fd = _open_lock(state_dir, what)
    try:
        _flock(fd, operation, state_dir / LOCKS)
        yield
    finally:
        os.close(fd)


class LockRefused(OSError):
    """The filesystem refused a lock that it granted when the run began
    (its lock manager lost midway), as opposed to another run holding it.
    Still an OSError, so that each step handles it as the filesystem error
    it is (the removal keeps its journal entry for the next run); only where
    it ends the run is it said as what it is (``said_if_lost``)."""


def _flock(fd: int, operation: int, locks: Path) -> None:
    try:
        fcntl.flock(fd, operation)
    except BlockingIOError:
        raise
    except OSError as err:
        raise LockRefused(err.errno, err.strerror, str(locks)) from None


@contextmanager
def said_if_lost() -> Iterator[None]:
    """A lock refused midway that ends the run: what happened and what to
    do, instead of a traceback. Whatever the run had done, each environment
    is whole at its old place or its new one, and the journal says which."""
    try:
        yield
    except LockRefused as err:
        raise MigrateError(
            f"The run stopped: {refusal(Path(err.filename), err)} It took them "
            "when the run began: the lock manager may have been lost since.",
            hint="Each environment is whole, at its old place or at its new one "
            "(see above). Run the same command again once locking works there "
            "again: it finishes what this run left.",
        ) from None


def refusal(locks: Path, err: OSError) -> str:
    return (
        f"conda-migrate cannot lock files in {locks}: its filesystem refuses "
        f"flock ({err.strerror})."
    )


def check_locking(state_dir: Path) -> None:
    """Take a lock once, on a file of its own, before the run touches
    anything: on a home that refuses them, the first lock a run needs comes
    after it began (the rc files' turn, an environment's), and the error
    would be a traceback. A dry run makes nothing that stays: the file has
    no name, or loses it at once."""
    locks = state_dir / LOCKS
    try:
        probe = tempfile.TemporaryFile(dir=_existing(locks))
    except OSError:
        return  # no room for a file: what comes next says so, by name
    with probe:
        try:
            fcntl.flock(probe.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            raise MigrateError(
                f"Nothing was done: {refusal(locks, err)}",
                hint="Your environments and files are untouched. These locks keep "
                "two runs, or the tasks of a job array, from undoing each other's "
                "changes to the same files, so none runs without them. On "
                "an NFS home the lock manager may be out of reach: run the same "
                "command again later; if it keeps failing, ask your site's "
                "support to make flock work on your home (Lustre: mounted with "
                "flock).",
            ) from None


def _existing(path: Path) -> Path:
    while not path.is_dir() and path != path.parent:
        path = path.parent
    return path


def node_local(state_dir: Path) -> str | None:
    """How the filesystem holding the locks keeps them on this node alone
    (``nfs mounted nolock``), or None where they hold across nodes or
    nothing says otherwise."""
    try:
        mountinfo = MOUNTINFO.read_text(errors="surrogateescape")
    except OSError:
        return None
    return locality(os.path.realpath(_existing(state_dir / LOCKS)), mountinfo)


def locality(path: str, mountinfo: str) -> str | None:
    """What ``mountinfo`` says of the mount holding ``path`` (a real path),
    by the options of the mount and of its superblock alike."""
    table = parse(mountinfo.encode(errors="surrogateescape"))
    mount = holding(path, table)
    if mount is None:
        return None
    for option in NODE_LOCAL.get(mount.fstype, ()):
        if option in mount.options:
            return f"{mount.fstype} mounted {option}"
    return None


def _open_lock(state_dir: Path, what: str) -> int:
    path = state_dir / LOCKS / f"{what}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


@contextmanager
def alone(state_dir: Path, what: str) -> Iterator[bool]:
    """True, and held, when no live run is writing ``what`` (see
    ``sharing``): what a write left half done is then a killed run's."""
    fd = _open_lock(state_dir, what)
    try:
        try:
            _flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, state_dir / LOCKS)
            free = True
        except BlockingIOError:
            free = False
        yield free
    finally:
        os.close(fd)


def is_held(state_dir: Path, dest: Path) -> bool:
    """Whether a live run holds the destination's lock (checked before
    touching the leftovers of a run)."""
    path = lock_path(state_dir, dest, by_inode=False)
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        _flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, state_dir / LOCKS)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
