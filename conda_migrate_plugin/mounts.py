"""The kernel's table of mounts (``/proc/self/mountinfo``): which filesystem
holds a path, its type and its options. The walk stops at the mount points
inside an environment, the preflight refuses an environment that is one,
the quota check asks the filesystem's own tool, and the locks learn whether
they hold across nodes; all from this one reading of the table."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable


@dataclass(frozen=True)
class Mount:
    point: str
    source: str
    fstype: str
    #: The mount's options and its superblock's (``nolock``, ``localflock``).
    options: frozenset[str] = frozenset()


def mounts() -> list[Mount]:
    """Every mount as the kernel lists it for this process; none where that
    cannot be read."""
    try:
        with open("/proc/self/mountinfo", "rb") as info:
            return parse(info.read())
    except OSError:
        return []


def parse(table: bytes) -> list[Mount]:
    """The mounts of a ``mountinfo`` table, in its order."""
    found = []
    for line in table.splitlines():
        left, _, right = line.partition(b" - ")
        fields, rest = left.split(), right.split()
        if len(fields) < 5:
            continue
        fstype, source, superblock = [*rest, b"", b"", b""][:3]
        options = {*fields[5:6], superblock}
        found.append(
            Mount(
                _unescape(fields[4]),
                _unescape(source),
                os.fsdecode(fstype),
                frozenset(
                    o for part in options for o in os.fsdecode(part).split(",") if o
                ),
            )
        )
    return found


def _unescape(field: bytes) -> str:
    """Spaces, tabs, newlines and backslashes are written as octal escapes."""
    return os.fsdecode(re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m[1], 8)]), field))


def holding(real: str, table: Iterable[Mount]) -> Mount | None:
    """The mount holding ``real`` (a real path): the last at the deepest
    mount point above it, as the kernel resolves it."""
    best: Mount | None = None
    for mount in table:
        point = mount.point
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best.point)):
            best = mount
    return best
