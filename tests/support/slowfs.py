"""slowfs (``slowfs.c`` beside this file), built and mounted for a test or
the benchmark: a home or scratch with a network filesystem's latency and a
quota that ``statvfs`` does not show (root only).

Nothing here imports the test suite, so ``benchmarks/`` can use it too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SOURCE = Path(__file__).with_name("slowfs.c")


class Unavailable(Exception):
    """slowfs cannot be built or mounted here; the reason says why."""


def build(out_dir: Path) -> Path:
    """The daemon compiled into ``out_dir``, against Debian's libfuse3-dev."""
    if os.geteuid() != 0:
        raise Unavailable("mounting slowfs (FUSE, allow_other) needs root")
    if not os.path.exists("/dev/fuse"):
        raise Unavailable("no /dev/fuse here")
    if shutil.which("cc") is None or shutil.which("pkg-config") is None:
        raise Unavailable("cc and pkg-config are needed to build slowfs")
    flags = subprocess.run(
        ["pkg-config", "fuse3", "--cflags", "--libs"],
        capture_output=True,
        text=True,
        check=False,
    )
    if flags.returncode:
        raise Unavailable("libfuse3-dev is not installed here")
    binary = out_dir / "slowfs"
    compiled = subprocess.run(
        ["cc", "-O2", "-Wall", str(SOURCE), *flags.stdout.split(), "-o", str(binary)],
        capture_output=True,
        text=True,
        check=False,
    )
    if compiled.returncode:
        raise Unavailable(f"slowfs did not compile: {compiled.stderr.strip()}")
    return binary


@dataclass
class SlowFS:
    """``backing`` seen through slowfs at ``point``. Settings are the
    daemon's environment variables: ``us`` (SLOWFS_US, the round trip in
    microseconds), ``quota_kb`` and ``quota_files`` (0: none), ``threads``
    (0: libfuse's default), ``cache_s`` (the attribute cache),
    ``rename_flags`` (False: ``renameat2``'s flags refused, as on NFS),
    ``flock`` (an errno's name, ``ENOLCK``...: every ``flock`` refused with
    it, as by an NFS home whose lock manager is unreachable), ``flock_after``
    (with ``flock``: the first so many granted, the rest refused)."""

    binary: Path
    backing: Path
    point: Path
    us: int = 0
    quota_kb: int = 0
    quota_files: int = 0
    threads: int = 0
    cache_s: float = 1.0
    rename_flags: bool = True
    flock: str = ""
    flock_after: int = 0
    daemon: subprocess.Popen | None = field(default=None, repr=False)

    def mount(self) -> None:
        self.backing.mkdir(parents=True, exist_ok=True)
        self.point.mkdir(parents=True, exist_ok=True)
        settings = {
            "SLOWFS_US": self.us,
            "SLOWFS_QUOTA_KB": self.quota_kb,
            "SLOWFS_QUOTA_FILES": self.quota_files,
            "SLOWFS_CACHE_S": self.cache_s,
            "SLOWFS_RENAME_FLAGS": int(self.rename_flags),
            "SLOWFS_FLOCK": self.flock,
            "SLOWFS_FLOCK_AFTER": self.flock_after,
        }
        if self.threads:
            settings["SLOWFS_THREADS"] = self.threads
        env = {**os.environ, **{key: str(value) for key, value in settings.items()}}
        self.daemon = subprocess.Popen(
            [self.binary, self.backing, self.point, "-f"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 10
        while not os.path.ismount(self.point):
            if self.daemon.poll() is not None:
                err = self.daemon.stderr.read() if self.daemon.stderr else ""
                raise Unavailable(f"slowfs did not mount: {err.strip()}")
            if time.monotonic() > deadline:
                self.unmount()
                raise Unavailable("slowfs did not mount within 10 s")
            time.sleep(0.02)

    def unmount(self) -> None:
        """For teardown: lazily if a process still holds a file there."""
        if os.path.ismount(self.point):
            for command in (["umount", self.point], ["umount", "-l", self.point]):
                if (
                    subprocess.run(command, capture_output=True, check=False).returncode
                    == 0
                ):
                    break
        if self.daemon is not None:
            try:
                self.daemon.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
            self.daemon = None

    def __enter__(self) -> Path:
        self.mount()
        return self.point

    def __exit__(self, *exc: object) -> None:
        self.unmount()
