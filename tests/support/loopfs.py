"""ext4 filesystems on loop images, and a power cut to one of them (root only).

``EXT4_IOC_SHUTDOWN`` with ``EXT4_GOING_FLAGS_NOLOGFLUSH`` stops a filesystem
the way a power loss stops it: whatever the kernel had not yet written to the
device (delayed-allocation data, the running journal transaction) never gets
there, and the next mount recovers what the journal holds, as a machine that
boots again would. The image keeps its default mount options, so delayed
allocation is on, as it is on the ext4 homes users have.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import struct
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

EXT4_IOC_SHUTDOWN = 0x8004587D  # _IOR('X', 125, __u32)
EXT4_GOING_FLAGS_NOLOGFLUSH = 2
TOOLS = ("mkfs.ext4", "losetup", "mount", "umount", "sync")


class Unavailable(Exception):
    """Loop devices or ext4 cannot be used here; the reason says why."""


def _run(*command: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(arg) for arg in command], capture_output=True, text=True, check=False
    )


def _check(run: subprocess.CompletedProcess, what: str) -> str:
    if run.returncode:
        raise Unavailable(f"{what} failed here: {(run.stderr or run.stdout).strip()}")
    return run.stdout.strip()


@dataclass
class LoopFS:
    image: Path
    point: Path
    device: str | None = None

    def make(self, size_mib: int) -> None:
        """A new, sparse image with a fresh ext4 on it."""
        if os.geteuid() != 0:
            raise Unavailable("loop devices and mounts need root")
        missing = [tool for tool in TOOLS if shutil.which(tool) is None]
        if missing:
            raise Unavailable(f"{', '.join(missing)} not installed here")
        with open(self.image, "wb") as stream:
            stream.truncate(size_mib * 2**20)
        _check(_run("mkfs.ext4", "-q", "-F", self.image), "mkfs.ext4")
        self.point.mkdir(parents=True, exist_ok=True)

    def mount(self) -> None:
        self.device = _check(_run("losetup", "--find", "--show", self.image), "losetup")
        run = _run("mount", "-t", "ext4", self.device, self.point)
        if run.returncode:
            self.detach()
            _check(run, "mounting a loop image")

    def flush(self) -> None:
        """Make everything written so far durable, on this filesystem only."""
        _check(_run("sync", "--file-system", self.point), "sync")

    def power_cut(self) -> None:
        """Stop the filesystem now: nothing more reaches the image."""
        fd = os.open(self.point, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.ioctl(
                fd, EXT4_IOC_SHUTDOWN, struct.pack("I", EXT4_GOING_FLAGS_NOLOGFLUSH)
            )
        except OSError as err:
            raise Unavailable(f"EXT4_IOC_SHUTDOWN is not supported here: {err}")
        finally:
            os.close(fd)

    def remount(self) -> None:
        """Mount the image again, as the machine coming back would: only
        after a clean unmount, for a lazily unmounted filesystem still lives."""
        _check(_run("umount", self.point), f"unmounting {self.point}")
        self.detach()
        self.mount()

    def unmount(self) -> None:
        """For teardown: lazily if a process still holds a file there; the
        device then goes once the last user lets go."""
        try:
            if os.path.ismount(self.point) and _run("umount", self.point).returncode:
                _run("umount", "-l", self.point)
        finally:
            self.detach()

    def detach(self) -> None:
        """Every loop device backing the image, not only the one this object
        attached: none may outlive the test."""
        listed = _run("losetup", "--associated", self.image).stdout.splitlines()
        for device in {self.device, *(line.split(":")[0] for line in listed)}:
            if device:
                _run("losetup", "--detach", device)
        self.device = None
