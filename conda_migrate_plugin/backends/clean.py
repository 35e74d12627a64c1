"""After the last step: conda's clean, in-process, once every environment has moved.

conda's own ``conda clean --all`` asks for confirmation per category, which a
batch job cannot answer; so its finders choose what to remove and the
removal is done here, with the same targets. One more rule than conda's: an
extracted package that an environment links to by symlink (conda's
``allow_softlinks``/``always_softlink``) is never removed, or that
environment's files would dangle; conda's own clean only warns about it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..records import softlinked_packages
from ..safety.interrupt import uninterruptible
from .registry import read_registry

if TYPE_CHECKING:
    from collections.abc import Collection


def _package_name(path: str) -> str:
    """``name-version-build`` of a cached package, extracted or not."""
    name = Path(path).name
    for extension in (".tar.bz2", ".conda"):
        name = name.removesuffix(extension)
    return name


def disk_usage(path: str) -> int:
    """Bytes of a file, or of everything below a directory (no symlink
    followed); what is gone already counts nothing."""
    try:
        if not os.path.isdir(path) or os.path.islink(path):
            return os.lstat(path).st_size
    except OSError:
        return 0
    total = 0
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            total += 0 if stat.S_ISDIR(st.st_mode) else st.st_size
    return total


def clean(*, dry_run: bool, keep: Collection[str] = ()) -> dict[str, Any]:
    """Remove tarballs, index caches, extracted packages and log files from
    the writable package caches; returns what was (or would be) removed,
    by kind, and under ``bytes`` how much that frees, measured before it goes.
    The packages named in ``keep`` stay, tarball and extracted: an
    environment that lost their files to a purge needs them back."""
    from conda.cli.main_clean import (
        find_index_cache,
        find_logfiles,
        find_pkgs,
        find_tarballs,
    )
    from conda.core.envs_manager import list_all_known_prefixes
    from conda.gateways.disk.delete import rm_rf

    def paths(found: dict[str, Any]) -> list[str]:
        return [
            f"{pkgs_dir}/{name}"
            for pkgs_dir, names in found["pkg_sizes"].items()
            for name in names
        ]

    # conda's list (as root: every home's) and this $HOME's, which conda
    # misses when $HOME is not the password database's home.
    known = [*map(Path, list_all_known_prefixes()), *read_registry()]
    in_use = softlinked_packages(known)
    needed = set(keep)
    removed = {
        "tarballs": [
            p for p in paths(find_tarballs()) if _package_name(p) not in needed
        ],
        "index_cache": find_index_cache(),
        "packages": [
            p
            for p in paths(find_pkgs())
            if Path(p) not in in_use and _package_name(p) not in needed
        ],
        "logfiles": find_logfiles(),
    }
    freed = sum(disk_usage(item) for items in removed.values() for item in items)
    if not dry_run:
        for items in removed.values():
            for item in items:
                # A stop waits for the item: a package half removed from
                # the cache may still look whole to conda.
                with uninterruptible():
                    rm_rf(item)
    return {**removed, "bytes": freed}
