"""One run at a time per environment.

``flock`` locks belong to the open file, so the kernel drops them the moment
the holding process dies, however it dies: a lock can never outlive a killed
job and block the rerun. They live in ``$HOME`` because scratch filesystems
often disable ``flock``. Each file names its last holder, by Slurm job id
where there is one, since that is what ``squeue`` and ``scancel`` take.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

from ..exceptions import MigrateError
from ..names import LOCKS, keyed_file

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


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
        fcntl.flock(fd, operation)
        yield
    finally:
        os.close(fd)


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
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
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
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
