"""One run at a time per environment.

``flock`` locks belong to the open file, so the kernel drops them the moment
the holding process dies, however it dies: a lock can never outlive a killed
job and block the rerun. They live in ``$HOME`` because scratch filesystems
often disable ``flock``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import time
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

from .exceptions import MigrateError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


def lock_path(state_dir: Path, prefix: Path) -> Path:
    digest = hashlib.sha256(str(prefix).encode()).hexdigest()[:20]
    return state_dir / "locks" / f"{digest}.lock"


@contextmanager
def hold(state_dir: Path, prefix: Path) -> Iterator[None]:
    """Hold the lock for ``prefix`` or say at once who holds it."""
    path = lock_path(state_dir, prefix)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip()
            raise MigrateError(
                f"{prefix} is being migrated by another conda-migrate run ({holder or 'unknown'}).",
                hint="It was not touched by this run. Wait for the other run to finish, then run again.",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(
            fd,
            f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(),
            0,
        )
        yield
    finally:
        os.close(fd)


@contextmanager
def hold_all(state_dir: Path, *prefixes: Path) -> Iterator[None]:
    with ExitStack() as stack:
        for prefix in prefixes:
            stack.enter_context(hold(state_dir, prefix))
        yield


def is_held(state_dir: Path, prefix: Path) -> bool:
    """Whether a live run holds the lock (used before touching leftovers)."""
    path = lock_path(state_dir, prefix)
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
