"""What an environment contains, in the terms the comparison needs.

Two readers fill the same dataclasses: conda's ``PrefixData`` where conda
is installed (see ``backends/conda.py``), and this module's plain reading of
``conda-meta/*.json`` and ``*.dist-info`` where it is not; the file formats
are conda's and Python's packaging standards.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from email.parser import HeaderParser
from typing import TYPE_CHECKING, Any

from ..exceptions import MigrateError

if TYPE_CHECKING:
    from pathlib import Path

#: conda-meta files that are not package records.
_NOT_RECORDS = {"history", "pinned", "state"}


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


def read_conda_meta(prefix: Path) -> list[dict[str, Any]]:
    """Every package record of the environment, as conda wrote it.

    A record that cannot be parsed makes the environment unmigratable: its
    copy could not be verified.
    """
    records = []
    for path in sorted((prefix / "conda-meta").glob("*.json")):
        try:
            record = json.loads(path.read_bytes())
        except (OSError, ValueError) as err:
            raise MigrateError(
                f"{path} cannot be read as a conda package record ({err}).",
                hint="The environment was left as it is; repair it "
                "(conda install --force-reinstall) or recreate it from its YAML.",
            ) from err
        if not isinstance(record, dict) or not {"name", "version", "build"} <= set(
            record
        ):
            raise MigrateError(
                f"{path} is not a conda package record (name, version or build is missing).",
                hint="The environment was left as it is; repair or recreate it.",
            )
        records.append(record)
    return records


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


def _distribution(metadata_file: Path) -> PipPackage | None:
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
            dist = _distribution(metadata)
            if dist:
                pip.add(dist)
    return EnvContents(conda, tuple(sorted(pip)))
