"""Step 4: remove the old environment, the one irreversible step.

The environment is first renamed aside within its own directory (atomic on
any POSIX filesystem) and only then deleted, so that a job killed midway
leaves either the whole environment or a clearly named leftover that the
next run finishes deleting, never a half-deleted environment that still
looks usable.
"""

from __future__ import annotations

import os
import shutil
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from ..discover import HISTORY, under
from ..exceptions import MigrateError
from ..jobs import default_jobs, gather
from ..names import removing_aside

if TYPE_CHECKING:
    from collections.abc import Iterable


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
    if not remains and not (prefix / HISTORY).is_file():
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


def processes_using(prefix: Path) -> list[str]:
    """The user's processes that run from, work in, or hold files of the
    environment (as ``/proc`` shows them): removing it pulls the ground from
    under them, which the user should hear of before it happens."""
    root = os.path.realpath(prefix)
    inside = root + "/"
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        if proc.name == str(os.getpid()):
            continue
        try:
            links = [os.readlink(proc / "cwd"), os.readlink(proc / "exe")]
            links += [os.readlink(fd) for fd in (proc / "fd").iterdir()]
            maps = (proc / "maps").read_text()
            command = (proc / "comm").read_text().strip()
        except OSError:
            continue
        if inside in maps or any(
            link == root or link.startswith(inside) for link in links
        ):
            found.append(f"{command} (pid {proc.name})")
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


def remove_environment(
    prefix: Path, stamps: dict[str, tuple] | None = None, jobs: int | None = None
) -> None:
    """Rename aside, then delete across ``jobs`` threads; symlinks are
    unlinked, never followed out of the environment. Directories the owner
    made read-only (``chmod -w``, a Julia depot) are made writable first, as
    conda's own removal does. If the deletion fails midway, what is left is
    put back under the original name and the error raised."""
    aside = removing_aside(prefix)
    os.rename(prefix, aside)
    try:
        for rel, stamp in (stamps or {}).items():
            mode = stamp[0]
            if stat.S_ISDIR(mode) and not mode & stat.S_IWUSR:
                os.chmod(aside / rel if rel else aside, stat.S_IMODE(mode) | 0o700)
        _delete_tree(str(aside), jobs or default_jobs())
    except OSError:
        if os.path.lexists(aside):
            os.rename(aside, prefix)
        raise


def _delete_tree(root: str, jobs: int) -> None:
    """On a network filesystem every unlink is a round trip to the server, so
    a serial ``rmtree`` is paced by latency, not work: each directory is
    emptied of its files by one of ``jobs`` threads as soon as its parent has
    listed it, then the directories go, the deepest first. The first error
    stops the removal and is raised."""
    depth: dict[str, int] = {root: 0}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for parent, children in gather(pool, _empty_files, [root], more=lambda r: r[1]):
            for child in children:
                depth[child] = depth[parent] + 1
        levels: dict[int, list[str]] = {}
        for path, level in depth.items():
            levels.setdefault(level, []).append(path)
        for level in sorted(levels, reverse=True):
            for _ in gather(pool, os.rmdir, levels[level]):
                pass


def _empty_files(path: str) -> tuple[str, list[str]]:
    """Unlink what ``path`` holds but its subdirectories, which it returns;
    names are resolved against the directory, opened once and never through
    a symlink."""
    children = []
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
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
