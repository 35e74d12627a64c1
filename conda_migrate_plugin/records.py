"""What an environment's ``conda-meta`` says, read and written in one place.

Every reader of the package records (``conda-meta/*.json``) is here, and
reads them through ``read_record``, which refuses a record that cannot be
parsed: what the comparison needs (``read_conda_meta``,
``portable_contents``), the path by path view relocation and verification
work from (``read_path_records``), the one writer, which updates a
relocated copy's records (``update_records``); only the packages an
environment links to by symlink (``softlinked_packages``, which conda's
clean must keep) pass over what cannot be parsed.
Where conda is installed its ``PrefixData`` reads the contents instead (see
``backends/conda.py``); the file formats are conda's and Python's packaging
standards.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .exceptions import MigrateError
from .jobs import gather

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable
    from concurrent.futures import ThreadPoolExecutor

#: conda's records of entry points it generated at link time.
ENTRY_POINT_TYPES = {"unix_python_entry_point", "windows_python_entry_point_script"}

#: conda's ``LinkType.softlink`` and ``LinkType.copy``, as package records
#: store them.
SOFTLINK = 2
COPY = 3


@dataclass(frozen=True, order=True)
class CondaPackage:
    name: str
    version: str
    build: str
    channel: str

    def __str__(self) -> str:
        return f"{self.name}-{self.version}-{self.build} ({self.channel})"


@dataclass(frozen=True, order=True)
class PipPackage:
    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}=={self.version} (pip)"


@dataclass(frozen=True)
class EnvContents:
    conda: tuple[CondaPackage, ...]
    pip: tuple[PipPackage, ...]


def _record_files(prefix: Path) -> list[Path]:
    return sorted((prefix / "conda-meta").glob("*.json"))


def _parse(path: Path) -> object:
    return json.loads(path.read_bytes())


def read_record(path: Path) -> dict[str, Any]:
    """One package record (``conda-meta/NAME-VERSION-BUILD.json``), as conda
    wrote it.

    A record that cannot be parsed makes the environment unmigratable: its
    copy could not be verified.
    """
    try:
        record = _parse(path)
    except (OSError, ValueError) as err:
        raise MigrateError(
            f"{path} cannot be read as a conda package record ({err}).",
            hint="The environment was left as it is; repair it "
            "(conda install --force-reinstall) or recreate it from its YAML.",
        ) from err
    if not isinstance(record, dict) or not {"name", "version", "build"} <= set(record):
        raise MigrateError(
            f"{path} is not a conda package record (name, version or build is missing).",
            hint="The environment was left as it is; repair or recreate it.",
        )
    return record


def read_conda_meta(prefix: Path) -> list[dict[str, Any]]:
    """Every package record of the environment, as conda wrote it."""
    return [read_record(path) for path in _record_files(prefix)]


def channel_name(channel: str) -> str:
    """``https://conda.anaconda.org/conda-forge/linux-64`` -> ``conda-forge``;
    other URLs lose only their platform subdirectory."""
    channel = re.sub(r"/(noarch|[a-z0-9]+-[a-z0-9_]+)/?$", "", channel.rstrip("/"))
    for host in ("https://conda.anaconda.org/", "https://repo.anaconda.com/pkgs/"):
        if channel.startswith(host):
            return channel[len(host) :]
    return channel


def site_packages(prefix: Path) -> list[Path]:
    return sorted(p for p in prefix.glob("lib/python*/site-packages") if p.is_dir())


def read_distribution(metadata_file: Path) -> PipPackage | None:
    """The name and version a pip distribution's ``METADATA`` (or
    ``PKG-INFO``) gives, the name as packaging compares it, so that the
    spellings of pip and of the damage report agree; None where it cannot be
    read or lacks either."""
    try:
        headers = HeaderParser().parsestr(metadata_file.read_text(errors="replace"))
    except OSError:
        return None
    name, version = headers.get("Name"), headers.get("Version")
    if not name or not version:
        return None
    return PipPackage(_normalized(name), version)


def _normalized(project: str) -> str:
    """A project's name as packaging compares it: ``Foo_Bar`` -> ``foo-bar``."""
    return re.sub(r"[-_.]+", "-", project).lower()


#: What conda's pip interoperability takes as the mark of each Python
#: package a conda record installs: its dist-info or egg-info in site-packages.
_ANCHOR = re.compile(
    r"(lib/python[^/]+/site-packages/[^/]+\.(?:dist-info|egg-info|egg))(?:/.*)?"
)


def _project(entry: str) -> str:
    """``Foo_Bar-1.0.dist-info`` -> ``foo-bar``."""
    return _normalized(entry.split("-", 1)[0])


def python_records_gone(
    prefix: Path, records: list[dict[str, Any]] | None = None
) -> dict[str, bool]:
    """The records (by file name) whose dist-info or egg-info is gone, each
    with whether pip replaced it (another version's is there) or not (the
    purge took it). conda's pip interoperability deletes both kinds from
    ``conda-meta`` whenever it reads the environment: right for the first,
    whose files are pip's now, but the record of the second is what says
    what to restore. ``records``: ``read_conda_meta(prefix)``, when the
    caller has it already."""
    gone = {}
    for record in read_conda_meta(prefix) if records is None else records:
        marks = {m[1] for f in record.get("files", ()) if (m := _ANCHOR.fullmatch(f))}
        for mark in marks:
            path = prefix / mark
            if os.path.lexists(path):
                continue
            present = {
                _project(entry.name)
                for entry in (path.parent.iterdir() if path.parent.is_dir() else ())
                if entry.name.endswith((".dist-info", ".egg-info", ".egg"))
            }
            name = f"{record['name']}-{record['version']}-{record['build']}.json"
            gone[name] = _project(path.name) in present
            break
    return gone


def portable_contents(prefix: Path) -> EnvContents:
    """Read the environment without conda: records from ``conda-meta``,
    pip distributions from the metadata directories no conda package owns."""
    records = read_conda_meta(prefix)
    owned = {f for record in records for f in record.get("files", ())}
    conda = tuple(
        sorted(
            CondaPackage(
                r["name"], r["version"], r["build"], channel_name(r.get("channel", ""))
            )
            for r in records
        )
    )
    pip = set()
    for site in site_packages(prefix):
        rel_site = site.relative_to(prefix)
        for meta_dir in [*site.glob("*.dist-info"), *site.glob("*.egg-info")]:
            metadata = meta_dir / (
                "METADATA" if meta_dir.suffix == ".dist-info" else "PKG-INFO"
            )
            if str(rel_site / meta_dir.name / metadata.name) in owned:
                continue
            dist = read_distribution(metadata)
            if dist:
                pip.add(dist)
    return EnvContents(conda, tuple(sorted(pip)))


@dataclass(frozen=True)
class PathRecord:
    """One path of one installed package, as ``conda-meta/*.json`` lists it."""

    path: str
    path_type: str
    record_file: str
    sha256: str | None = None
    size: int | None = None
    placeholder: str | None = None
    file_mode: str | None = None
    #: ``_path`` as the record writes it, when that is not ``path``.
    record_path: str | None = None
    #: Its package was linked with conda's softlink link type, which
    #: records every path as a ``softlink`` and copies an executable file
    #: all the same (its ``$ORIGIN`` would lead into the package cache).
    softlinked: bool = False

    @property
    def carries_prefix(self) -> bool:
        return self.prefixed is not None

    @property
    def prefixed(self) -> tuple[str, str] | None:
        """``(file_mode, placeholder)`` of a file conda wrote the prefix into."""
        if self.placeholder is None or self.file_mode not in ("text", "binary"):
            return None
        return self.file_mode, self.placeholder

    @property
    def entry_point(self) -> bool:
        return self.path_type in ENTRY_POINT_TYPES


def _is_noarch_python(record: dict[str, Any]) -> bool:
    noarch = record.get("noarch")
    if isinstance(noarch, dict):
        noarch = noarch.get("type")
    return noarch == "python" or record.get("package_type") == "noarch_python"


def _installed_paths(record: dict[str, Any], prefix: Path) -> dict[str, str]:
    """Where the files of a ``noarch: python`` package were installed, by the
    path its ``paths_data`` gives.

    conda writes the package's own paths there (``site-packages/...``,
    ``python-scripts/...``) and the installed ones only in ``files``; the
    site-packages directory is the one ``files`` names (conda-pack's
    ``managed_file`` makes the same translation).
    """
    site = next(
        (
            f[: f.index("/site-packages/") + len("/site-packages")]
            for f in record.get("files", ())
            if "/site-packages/" in f
        ),
        None,
    )
    if site is None:
        found = sorted(prefix.glob("lib/python*/site-packages"))
        site = str(found[0].relative_to(prefix)) if found else None
    translated = {}
    for entry in record["paths_data"]["paths"]:
        path = entry["_path"]
        if path.startswith("site-packages/") and site:
            translated[path] = f"{site}/{path[len('site-packages/') :]}"
        elif path.startswith("python-scripts/"):
            translated[path] = f"bin/{path[len('python-scripts/') :]}"
    return translated


def read_path_records(prefix: Path) -> dict[str, PathRecord]:
    """Every path conda installed into ``prefix``, by relative path.

    The hash is the one of the file as installed (``sha256_in_prefix``) when
    the record has it, else the package's, which is the same for files that
    carry no prefix. Paths are the installed ones, also for ``noarch:
    python`` packages, whose records name package paths.
    """
    records: dict[str, PathRecord] = {}
    for record_path in _record_files(prefix):
        record = read_record(record_path)
        paths = (record.get("paths_data") or {}).get("paths")
        installed: dict[str, str] = {}
        if paths is None:
            paths = [
                {"_path": p, "path_type": "hardlink"} for p in record.get("files", [])
            ]
        elif _is_noarch_python(record):
            installed = _installed_paths(record, prefix)
        link = record.get("link")
        softlinked = isinstance(link, dict) and link.get("type") == SOFTLINK
        for entry in paths:
            path = installed.get(entry["_path"], entry["_path"])
            records[path] = PathRecord(
                path=path,
                path_type=entry.get("path_type", "hardlink"),
                record_file=record_path.name,
                sha256=entry.get("sha256_in_prefix") or entry.get("sha256"),
                size=entry.get("size_in_bytes"),
                placeholder=entry.get("prefix_placeholder"),
                file_mode=entry.get("file_mode"),
                record_path=entry["_path"] if path != entry["_path"] else None,
                softlinked=softlinked,
            )
    return records


def softlinked_packages(prefixes: Iterable[Path]) -> set[Path]:
    """The extracted package directories that these environments' records
    say were linked by symlink. A record that cannot be read is passed
    over, and one that lacks a field still counts: this is asked about every
    environment conda knows, and one broken environment must neither stop
    the clean of the others nor lose the packages it links to."""
    linked = set()
    for prefix in prefixes:
        for path in _record_files(Path(prefix)):
            try:
                record = _parse(path)
            except (OSError, ValueError):
                continue
            if not isinstance(record, dict):
                continue
            link = record.get("link")
            if isinstance(link, dict) and link.get("type") in (SOFTLINK, "softlink"):
                for source in (link.get("source"), record.get("extracted_package_dir")):
                    if isinstance(source, str) and source:
                        linked.add(Path(source))
    return linked


def update_records(
    prefix: Path,
    records: dict[str, PathRecord],
    rewritten: dict[str, str],
    delinked: Collection[str],
    threads: ThreadPoolExecutor,
) -> list[str]:
    """Give the files of the copy at ``prefix`` that relocation rewrote
    their new ``sha256_in_prefix``, so that conda verifying the new
    environment sees the bytes it holds; the ``delinked`` paths (links into
    a package cache, and files the records call links) that are files now
    are recorded so, and their package no longer as linked (conda's clean
    may take it). ``records``:
    ``read_path_records`` of the source, by relative path. Returns the
    records it may have rewritten, by relative path. Each record is a few
    round trips on a network filesystem: they are rewritten across
    ``threads``."""
    digests: dict[str, dict[str, str]] = {}
    for rel, digest in rewritten.items():
        record = records.get(rel)
        if record is not None:
            digests.setdefault(record.record_file, {})[record.record_path or rel] = (
                digest
            )
    files: dict[str, set[str]] = {}
    for rel in delinked:
        if os.path.isfile(f"{prefix}/{rel}") and not os.path.islink(f"{prefix}/{rel}"):
            record = records[rel]
            files.setdefault(record.record_file, set()).add(record.record_path or rel)
    still_linked = {records[rel].record_file for rel in delinked} - files.keys()
    # With links into the cache gone, no record of the copy is linked
    # (conda softlinks every package alike; files it rewrites are copies).
    unlinked = (
        {path.name for path in _record_files(prefix)} - still_linked
        if delinked
        else set()
    )
    names = digests.keys() | files.keys() | unlinked
    for _ in gather(
        threads,
        lambda name: _rewrite_record(
            prefix / "conda-meta" / name,
            digests.get(name, {}),
            files.get(name, set()),
            unlinked=name in unlinked,
        ),
        names,
    ):
        pass
    return [f"conda-meta/{name}" for name in names]


def _rewrite_record(
    path: Path, new_hashes: dict[str, str], own: set[str], *, unlinked: bool
) -> None:
    """``new_hashes`` and ``own`` are by the path the record writes."""
    st = path.stat()
    record = read_record(path)
    for entry in record.get("paths_data", {}).get("paths", []):
        if entry["_path"] in new_hashes:
            entry["sha256_in_prefix"] = new_hashes[entry["_path"]]
        if entry["_path"] in own:
            entry["path_type"] = "hardlink"
    link = record.get("link")
    if unlinked and isinstance(link, dict) and link.get("type") == SOFTLINK:
        link["type"] = COPY
    elif not (new_hashes or own):
        return
    path.write_text(json.dumps(record, indent=2), encoding="utf-8")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
