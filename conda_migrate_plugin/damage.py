"""Before the copy: what a scratch purge took from the environment.

A purge deletes files nobody read for weeks and leaves ``conda-meta``
alone, so the records still list what is gone; a copy of what is there
would be "the same packages" and still broken. A file a conda record lists
and the environment lacks is damage, as is a file a pip ``RECORD`` lists,
except compiled ``.pyc`` files, which Python writes again when it needs
them (conda records the ones it compiled as ``pyc_file``).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .records import (
    channel_name,
    python_records_gone,
    read_distribution,
    read_record,
    site_packages,
)

if TYPE_CHECKING:
    from pathlib import Path

    from .records import PathRecord


@dataclass
class Damage:
    """Missing files, by the package that lists them: a conda package as
    ``name-version-build`` (its ``conda-meta`` record's name), a pip
    distribution as ``name version``."""

    conda: dict[str, list[str]] = field(default_factory=dict)
    pip: dict[str, list[str]] = field(default_factory=dict)
    #: How to reinstall each damaged conda package: ``(spec, channel)``.
    conda_specs: dict[str, tuple[str, str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.conda or self.pip)

    @property
    def files(self) -> list[str]:
        return sorted(
            f for files in (*self.conda.values(), *self.pip.values()) for f in files
        )

    def summary(self) -> list[str]:
        """What the user is shown, per environment."""
        missing = count_files(len(self.files))
        lines = [f"Damaged by the purge: {missing} missing that its records list"]
        for kind, packages in (("conda", self.conda), ("pip", self.pip)):
            if packages:
                listed = ", ".join(
                    f"{name} ({count_files(len(files))})"
                    for name, files in sorted(packages.items())
                )
                lines.append(f"  {kind} packages: {listed}")
        return lines

    def remedy(self, dest: Path, missing: list[str]) -> list[str]:
        """The commands that put back the packages of the ``missing`` files
        in the environment at ``dest``."""
        lost = set(missing)
        commands = []
        by_channel: dict[str, list[str]] = {}
        for package in sorted(self.packages_lacking(missing)):
            spec, channel = self.conda_specs[package]
            by_channel.setdefault(channel, []).append(spec)
        for channel, specs in by_channel.items():
            where = f" -c {channel}" if channel else ""
            commands.append(
                f"conda install --force-reinstall -p {dest}{where} {' '.join(specs)}"
            )
        dists = [
            "==".join(dist.split(" ", 1))
            for dist, files in sorted(self.pip.items())
            if lost.intersection(files)
        ]
        if dists:
            commands.append(
                f"{dest}/bin/python -m pip install --force-reinstall --no-deps "
                + " ".join(dists)
            )
        return commands

    def packages_lacking(self, missing: list[str]) -> set[str]:
        """The conda packages (``name-version-build``, as a package cache
        names them) that the ``missing`` files belong to."""
        lost = set(missing)
        return {name for name, files in self.conda.items() if lost.intersection(files)}

    def to_json(self) -> dict[str, Any]:
        return {"conda": self.conda, "pip": self.pip}


def count_files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


def _compiled(rel: str) -> bool:
    return rel.endswith((".pyc", ".pyo")) or "/__pycache__/" in f"/{rel}"


def missing_files(records: dict[str, PathRecord], present: set[str]) -> list[str]:
    """The paths ``records`` list that are not ``present`` and that Python
    would not compile again by itself."""
    return [
        rel
        for rel, record in records.items()
        if rel not in present and record.path_type != "pyc_file" and not _compiled(rel)
    ]


def find_damage(
    prefix: Path,
    path_records: dict[str, PathRecord],
    present: set[str],
    symlinks: set[str],
) -> Damage:
    """The files the records of ``prefix`` list (``path_records``, as
    ``read_path_records`` gives them) that are not in ``present`` (every
    relative path the environment holds, from the source's snapshot,
    ``snapshot.measure``: no file is looked up twice on a network
    filesystem), and the ``symlinks`` among them that link to a file gone
    from outside the environment (a softlinked environment's purged package
    cache)."""
    damage = Damage()
    # A record pip replaced lists pip's old files, gone by pip's hand.
    replaced = {name for name, by_pip in python_records_gone(prefix).items() if by_pip}
    records = {
        rel: record
        for rel, record in path_records.items()
        if record.record_file not in replaced
    }
    dangling = [
        rel
        for rel in sorted(symlinks.intersection(records))
        if os.readlink(prefix / rel).startswith("/") and not (prefix / rel).exists()
    ]
    for rel in [*missing_files(records, present), *dangling]:
        package = records[rel].record_file.removesuffix(".json")
        damage.conda.setdefault(package, []).append(rel)
    for package in damage.conda:
        damage.conda[package].sort()
        damage.conda_specs[package] = _conda_spec(
            prefix / "conda-meta" / f"{package}.json"
        )
    _pip_damage(prefix, present, set(records), damage)
    return damage


def _conda_spec(record_path: Path) -> tuple[str, str]:
    record = read_record(record_path)
    spec = f"{record['name']}=={record['version']}={record['build']}"
    return spec, channel_name(record.get("channel") or "")


def _pip_damage(
    prefix: Path, present: set[str], owned: set[str], damage: Damage
) -> None:
    """Distributions no conda package installed (conda's records cover
    their own), by the paths their ``RECORD`` lists, which are relative to
    site-packages and may climb out of it (``../../../bin/tool``)."""
    for site in site_packages(prefix):
        rel_site = site.relative_to(prefix)
        for dist_info in sorted(site.glob("*.dist-info")):
            record_file = dist_info / "RECORD"
            rel_record = f"{rel_site}/{dist_info.name}/RECORD"
            if rel_record in owned or rel_record not in present:
                continue
            try:
                with open(record_file, newline="", encoding="utf-8") as fh:
                    rows = list(csv.reader(fh))
            except (OSError, UnicodeDecodeError, csv.Error):
                continue
            missing = sorted(
                rel
                for rel in {
                    os.path.normpath(f"{rel_site}/{row[0]}") for row in rows if row
                }
                if not rel.startswith("../")
                and not _compiled(rel)
                and rel not in present
            )
            if missing:
                damage.pip[_dist_name(dist_info)] = missing


def _dist_name(dist_info: Path) -> str:
    """``name version`` from the METADATA when it is there, else from the
    directory's name (``name-version.dist-info``)."""
    dist = read_distribution(dist_info / "METADATA")
    if dist is not None:
        return f"{dist.name} {dist.version}"
    name, _, version = dist_info.name.removesuffix(".dist-info").partition("-")
    return f"{name} {version}"
