"""Packages in conda's cache that a stopped extraction left cut short.

conda extracts a package straight into its directory in the package cache,
``info/`` first (the ``.conda``'s info component is streamed before its pkg
component; a ``.tar.bz2`` holds ``info/`` first), then the package's own
files, and writes ``info/repodata_record.json`` once the last one is out. A
job killed in between (scancel, a time limit, a power cut) leaves ``info/``
whole and files missing or cut short. conda takes such a directory as
extracted, and writes the missing record itself the next time it reads the
cache, so every later clone linking from it fails (conda finds the files
missing) or links the short files (the file check then rejects the copy).
"""

from __future__ import annotations

import json
import os
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..exceptions import CloneUnavailable
from ..safety.interrupt import uninterruptible

if TYPE_CHECKING:
    from typing import Any

#: Written by conda after the last file of the package is extracted.
FINISHED = "repodata_record.json"


@dataclass(frozen=True)
class CutShort:
    """An extracted package that does not hold what its file list says."""

    directory: Path
    #: In the user's words: what is wrong with it.
    why: str
    #: Whether conda may write to its cache, so that it can be removed
    #: and extracted again.
    writable: bool


def find(source: Path, *, thorough: bool = False) -> list[CutShort]:
    """The cut-short extractions of ``source``'s packages that conda's clone
    would link from: in each cache in the order conda links from them
    (writable first), up to the first whole one. The file list is read for
    each; the files are looked at (a stat each, which a network filesystem
    makes slow) only where conda's record of a finished extraction is
    missing, or ``thorough``ly, after conda's clone failed: conda may have
    written that record since the kill."""
    from conda.common.path import strip_pkg_extension
    from conda.core.package_cache_data import PackageCacheData
    from conda.core.prefix_data import PrefixData

    packages = sorted(
        {
            strip_pkg_extension(record.fn)[0]
            for record in PrefixData(str(source)).iter_records()
        }
    )
    caches = PackageCacheData.all_caches_writable_first()
    found = []
    for package in packages:
        for cache in caches:
            directory = Path(cache.pkgs_dir, package)
            if not directory.is_dir():
                continue
            why = _why_cut_short(directory, thorough)
            if why is None:
                break
            found.append(CutShort(directory, why, bool(cache.is_writable)))
            if not cache.is_writable:
                break
    return found


def drop(found: list[CutShort]) -> None:
    """Remove each cut-short extraction, as conda removes one whose
    ``index.json`` it cannot read, so that conda extracts the package again
    from its tarball or the channel; printed within conda's lines, so the
    log keeps it. One in a cache conda may not write to, or that cannot be
    removed (another user's, in a group's cache), is left as it is and
    named, with what to do."""
    stuck = [cut for cut in found if not cut.writable]
    for cut in found:
        if not cut.writable:
            continue
        if not _remove(cut.directory):
            stuck.append(cut)
            continue
        print(
            f"Note: {cut.directory.name} in {cut.directory.parent}: {cut.why}, "
            "as a stopped extraction or a purge leaves it; conda extracts the "
            "package again."
        )
    if stuck:
        raise CloneUnavailable(
            "conda's package cache holds "
            + "; ".join(f"{cut.directory}: {cut.why}" for cut in stuck)
            + ", as a stopped extraction or a purge leaves it, and it cannot be "
            "removed here for conda to extract it again.",
            reason="a package in the package cache is cut short",
            hint="The old environment is untouched. Ask the cache's owner to "
            "remove that directory (conda extracts it again), or use "
            "--method relocate, which copies the environment without the "
            "package cache.",
        )


def _remove(directory: Path) -> bool:
    """Whether ``directory`` is gone. The record of a finished extraction
    goes first: a kill midway leaves a directory the next run finds cut
    short by its files. A stop waits for the rest, as conda's ``rm_rf``
    would swallow it."""
    from conda.gateways.disk.delete import rm_rf

    ours = (
        os.access(path, os.W_OK | os.X_OK)
        for path in (directory, directory / "info")
        if path.is_dir()
    )
    if not all(ours):
        # Another user's: rm_rf would warn of each file it cannot remove.
        return False
    with uninterruptible():
        with suppress(OSError):
            (directory / "info" / FINISHED).unlink()
        rm_rf(str(directory))
    return not os.path.lexists(directory)


def _why_cut_short(directory: Path, thorough: bool) -> str | None:
    """What is wrong with an extracted package, or None where it is whole."""
    info = directory / "info"
    finished = (info / FINISHED).is_file()
    try:
        listed = json.loads((info / "paths.json").read_bytes())["paths"]
    except FileNotFoundError:
        # A package older than paths.json lists its files in info/files.
        if finished and (info / "files").is_file():
            return None
        return "its file list (info/paths.json) cannot be read"
    except (OSError, ValueError, LookupError, TypeError):
        return "its file list (info/paths.json) cannot be read"
    if finished and not thorough:
        return None
    try:
        short = sum(1 for entry in listed if not _holds(directory, entry))
    except (LookupError, TypeError):
        return "its file list (info/paths.json) cannot be read"
    if short:
        return (
            f"{short} of the {len(listed)} files its file list names are "
            "missing or cut short"
        )
    return None


def _holds(directory: Path, entry: dict[str, Any]) -> bool:
    """Whether the extracted package holds one entry of its file list, as
    conda's check before linking asks it: there, and a file of the size the
    list gives."""
    path = directory / entry["_path"]
    size = (
        entry.get("size_in_bytes")
        if entry.get("path_type", "hardlink") == "hardlink"
        else None
    )
    try:
        if size:
            return os.stat(path).st_size == size
        os.lstat(path)
    except OSError:
        return False
    return True
