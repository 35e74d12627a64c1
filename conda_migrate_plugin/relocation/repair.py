"""Files a scratch purge took from an environment, put back in its copy as
conda would link them at the new prefix.

The package a record names is looked for where conda keeps it: extracted
in a package cache (the one the record says it was linked from first, then
every ``pkgs_dirs``), as a tarball in one, and last at the record's ``url``
through conda's own download, so that proxies, credentials and offline mode
apply. A file is taken only when its bytes match the sha256 of the
package's ``info/paths.json``, and that entry matches the one the
environment's record holds (the same build of the same file). The prefix is
then written in for the new place exactly as conda's link does: text
substituted (a ``#!`` line escaped, or sent through ``/usr/bin/env`` when too
long), binary strings NUL-padded.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..exceptions import RelocateError
from ..records import read_record
from .chunks import patched_chunks, read_chunks, sha256
from .prefix import PrefixRewrite

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from ..records import PathRecord

#: What conda calls the two package formats, newest first.
EXTENSIONS = (".conda", ".tar.bz2")


@dataclass
class Repair:
    #: The relative paths put back.
    restored: list[str] = field(default_factory=list)
    #: The sha256 of each restored regular file as written.
    digests: dict[str, str] = field(default_factory=dict)
    #: The bytes of the cached files they were written from.
    bytes: int = 0
    #: The restored files whose bytes hold a NUL (binary, not text).
    binary: set[str] = field(default_factory=set)
    #: Where each package's files came from, for the log.
    notes: list[str] = field(default_factory=list)


def package_caches() -> list[Path]:
    """conda's ``pkgs_dirs``; where conda is not installed, what
    ``CONDA_PKGS_DIRS`` names (comma-separated, as conda reads it) and the
    user's own cache."""
    try:
        from conda.base.context import context
    except ImportError:
        named = os.environ.get("CONDA_PKGS_DIRS", "")
        dirs = [Path(os.path.expanduser(p)) for p in named.split(",") if p]
        return [*dirs, Path.home() / ".conda" / "pkgs"]
    return [Path(p) for p in context.pkgs_dirs]


def restore_missing(
    source: Path,
    staging: Path | None,
    new_prefix: str,
    records: dict[str, PathRecord],
    missing: Iterable[str],
) -> Repair:
    """Write into ``staging`` each ``missing`` file (relative paths the
    records list) that a package cache or channel holds intact. With no
    ``staging`` (``--dry-run``), only say which ones the caches hold, and
    download nothing."""
    by_record: dict[str, list[str]] = {}
    for rel in missing:
        by_record.setdefault(records[rel].record_file, []).append(rel)
    repair = Repair()
    caches = package_caches()
    for record_file, rels in sorted(by_record.items()):
        _restore_package(
            source / "conda-meta" / record_file,
            {records[rel].record_path or rel: rel for rel in rels},
            staging,
            new_prefix,
            caches,
            repair,
        )
    return repair


def _restore_package(
    record_path: Path,
    wanted: dict[str, str],
    staging: Path | None,
    new_prefix: str,
    caches: list[Path],
    repair: Repair,
) -> None:
    """``wanted`` maps the package's own paths to where they are installed."""
    record = read_record(record_path)
    installed = {
        entry["_path"]: entry
        for entry in (record.get("paths_data") or {}).get("paths", [])
    }
    for origin, package_dir in _package_dirs(record, caches, staging is not None):
        paths = _package_paths(package_dir, record)
        found = []
        for path, rel in wanted.items():
            entry = paths.get(path)
            if entry is None or installed.get(path, entry).get("sha256") != entry.get(
                "sha256"
            ):
                continue
            if _link(package_dir / path, staging, rel, entry, new_prefix, repair):
                repair.restored.append(rel)
                found.append(path)
        if found:
            repair.notes.append(
                f"{record_path.stem}: {len(found)} files restored from {origin}"
            )
        for path in found:
            del wanted[path]
        if not wanted:
            return


def _package_paths(
    package_dir: Path, record: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """The package's ``paths.json`` by path, when the directory holds the
    build the record names; nothing otherwise."""
    try:
        index = json.loads((package_dir / "info" / "index.json").read_bytes())
        paths = json.loads((package_dir / "info" / "paths.json").read_bytes())
    except (OSError, ValueError):
        return {}
    if any(index.get(key) != record.get(key) for key in ("name", "version", "build")):
        return {}
    return {entry["_path"]: entry for entry in paths.get("paths", [])}


def _package_dirs(
    record: dict[str, Any], caches: list[Path], fetch: bool
) -> Iterator[tuple[str, Path]]:
    """Where the package may be, cheapest first: extracted, a tarball in a
    cache, the channel (when ``fetch``). A tarball or a download is
    unpacked into a temporary directory that lasts while its files are
    taken."""
    dist = _dist_name(record)
    extracted = [
        record.get("extracted_package_dir"),
        (record.get("link") or {}).get("source"),
        *(str(cache / dist) for cache in caches),
    ]
    seen = set()
    for candidate in extracted:
        if isinstance(candidate, str) and candidate and candidate not in seen:
            seen.add(candidate)
            if os.path.isdir(candidate):
                yield f"the package cache {candidate}", Path(candidate)
    for cache in caches:
        for extension in EXTENSIONS:
            tarball = cache / f"{dist}{extension}"
            if tarball.is_file() and _tarball_matches(tarball, record):
                with _unpacked(tarball) as package_dir:
                    if package_dir is not None:
                        yield f"the package {tarball}", package_dir
    url = record.get("url")
    if fetch and isinstance(url, str) and url:
        with _downloaded(url, record) as package_dir:
            if package_dir is not None:
                yield f"the channel ({url})", package_dir


def _dist_name(record: dict[str, Any]) -> str:
    fn = record.get("fn")
    if isinstance(fn, str):
        for extension in EXTENSIONS:
            if fn.endswith(extension):
                return fn[: -len(extension)]
    return f"{record['name']}-{record['version']}-{record['build']}"


def _tarball_matches(tarball: Path, record: dict[str, Any]) -> bool:
    """A tarball is trusted when its checksum is the record's (a purge can
    only delete it whole, but a download cut short leaves a part)."""
    for algorithm in ("sha256", "md5"):
        want = record.get(algorithm)
        if want:
            digest = hashlib.new(algorithm)
            with open(tarball, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
            return digest.hexdigest() == want
    return True


@contextmanager
def _unpacked(tarball: Path) -> Iterator[Path | None]:
    try:
        from conda_package_handling.api import extract
    except ImportError:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="conda-migrate-package-") as tmp:
        try:
            extract(str(tarball), dest_dir=tmp)
        except Exception:  # any failure means: not from here
            yield None
            return
        yield Path(tmp)


@contextmanager
def _downloaded(url: str, record: dict[str, Any]) -> Iterator[Path | None]:
    """The package fetched by conda, unless conda is absent or offline."""
    try:
        from conda.base.context import context
        from conda.gateways.connection.download import download
    except ImportError:
        yield None
        return
    if context.offline:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="conda-migrate-download-") as tmp:
        target = Path(tmp) / url.rstrip("/").rpartition("/")[2]
        try:
            download(
                url, str(target), md5=record.get("md5"), sha256=record.get("sha256")
            )
        except Exception:  # conda raises many kinds; all mean: not from there
            yield None
            return
        with _unpacked(target) as package_dir:
            yield package_dir


def _link(
    cached: Path,
    staging: Path | None,
    rel: str,
    entry: dict[str, Any],
    new_prefix: str,
    repair: Repair,
) -> bool:
    """Write ``rel`` in ``staging`` from the cached file as conda links it
    into ``new_prefix``; False when the cached file is not the package's
    (purged or altered in the cache too). No ``staging``: only check."""
    if entry.get("path_type") == "softlink":
        return _link_symlink(cached, staging, rel)
    try:
        src = os.open(cached, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        if sha256(read_chunks(src)) != entry.get("sha256"):
            return False
        if staging is None:
            return True
        chunks = _as_linked(src, rel, entry, new_prefix)
        if chunks is None:
            return False
        dest = staging / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "xb") as out:
            repair.digests[rel] = sha256(
                _noting_nul(chunks, rel, repair.binary), write_to=out.fileno()
            )
        cached_st = os.fstat(src)
        os.chmod(dest, stat.S_IMODE(cached_st.st_mode))
        repair.bytes += cached_st.st_size
        return True
    finally:
        os.close(src)


def _noting_nul(chunks: Iterator[bytes], rel: str, binary: set[str]) -> Iterator[bytes]:
    """``chunks`` as they are, ``rel`` added to ``binary`` if one holds a NUL."""
    for chunk in chunks:
        if b"\0" in chunk:
            binary.add(rel)
        yield chunk


def _link_symlink(cached: Path, staging: Path | None, rel: str) -> bool:
    if not cached.is_symlink():
        return False
    if staging is not None:
        dest = staging / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.readlink(cached), dest)
    return True


def _as_linked(
    src: int, rel: str, entry: dict[str, Any], new_prefix: str
) -> Iterator[bytes] | None:
    """The cached file's bytes with the prefix written in as conda links it
    (``entry`` is its ``paths.json`` entry); None when the new prefix does
    not fit in a binary file."""
    placeholder, file_mode = entry.get("prefix_placeholder"), entry.get("file_mode")
    rewrite = PrefixRewrite(placeholder or "", new_prefix)
    if placeholder and file_mode == "text":
        return rewrite.text_chunks(read_chunks(src))
    if placeholder and file_mode == "binary":
        try:
            patches = rewrite.binary_patches(src, placeholder, rel)
        except RelocateError:
            return None
        return patched_chunks(src, patches)
    return read_chunks(src)
