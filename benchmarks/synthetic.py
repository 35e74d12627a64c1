"""Synthetic conda packages and environments of realistic shape, for the
benchmarks.

One generator of package trees serves both: ``build_env`` writes an
environment as conda would have installed it, record by record, with no
package files anywhere (for the copy engine alone), and ``build_channel`` packs
the same trees into ``.conda`` files of a local channel that ``install_env``
installs with py-rattler, so that conda's clone can fetch them again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING

# tests/support, on the path bench_migrate.py sets: the tests' channel writes
# a package's files and info/ the same way.
from channel import stage_file, write_info

if TYPE_CHECKING:
    from pathlib import Path

#: conda-build's host prefix: 255 characters, the longest an installed prefix
#: may be, so that binary files have room for any prefix.
PLACEHOLDER = ("/opt/conda-bld/bench_1700000000000/_h_env" + "_placehold" * 30)[:255]
PACKAGES = 100
SUBDIR = "linux-64"
FILES_PER_PACKAGE = 205
UNOWNED = 600


@dataclass(frozen=True)
class PackageFile:
    """One file of a package as conda-build packs it: ``data`` names
    PLACEHOLDER where ``mode`` (conda's ``file_mode``) is set."""

    path: str
    data: bytes
    mode: str | None = None
    executable: bool = False

    def installed(self, prefix: str) -> bytes:
        """The bytes conda writes at ``prefix``: text is substituted, a
        binary's C string keeps its length, padded with NULs."""
        if self.mode == "text":
            return self.data.replace(PLACEHOLDER.encode(), prefix.encode())
        if self.mode == "binary":
            head, _, rest = self.data.partition(PLACEHOLDER.encode())
            string, nul, tail = rest.partition(b"\0")
            pad = b"\0" * (len(PLACEHOLDER) - len(prefix))
            return head + prefix.encode() + string + nul + pad + tail
        return self.data


def _size(rng: random.Random) -> int:
    """Sizes skewed as in real environments: mostly small, a few large."""
    roll = rng.random()
    if roll < 0.70:
        return rng.randint(200, 8_000)
    if roll < 0.95:
        return rng.randint(8_000, 64_000)
    if roll < 0.998:
        return rng.randint(64_000, 256_000)
    return rng.randint(1_000_000, 4_000_000)


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)


def package_name(number: int) -> str:
    return f"pkg{number:03d}"


def package_files(rng: random.Random, name: str, files: int) -> list[PackageFile]:
    """A package's files: an entry-point script (prefix in text), a shared
    library (prefix in a C string), then data files of realistic sizes."""
    tree = []
    for f in range(files):
        if f == 0:
            script = f"#!{PLACEHOLDER}/bin/python\nimport {name}\n# data {PLACEHOLDER}/share\n"
            data = script.encode() + rng.randbytes(500).hex().encode() + b"\n"
            tree.append(PackageFile(f"bin/{name}-tool", data, "text", executable=True))
        elif f == 1:
            c_string = f"{PLACEHOLDER}/lib/{name}".encode() + b"\0"
            data = rng.randbytes(30_000) + c_string + rng.randbytes(30_000)
            tree.append(PackageFile(f"lib/lib{name}.so", data, "binary"))
        else:
            path = f"lib/{name}/sub{f % 7}/file{f:04d}.dat"
            tree.append(PackageFile(path, rng.randbytes(_size(rng))))
    return tree


def add_unowned(prefix: Path, rng: random.Random) -> int:
    """What ``pip install`` and the user leave in an environment, which no
    package owns; returns how many entries were written."""
    site = prefix / "lib/python3.11/site-packages"
    for u in range(UNOWNED):
        dist = site / f"pipdist{u // 6}"
        if u % 6 == 0:
            _write(
                dist / "direct_url.json", f'{{"url": "file://{prefix}/src"}}'.encode()
            )
        elif u % 6 == 1:
            _write(dist / "RECORD", f"../../../bin/tool{u},,\n".encode() * 20)
        else:
            _write(dist / f"mod{u}.py", rng.randbytes(_size(rng)))
    (prefix / "bin/python").symlink_to("python3.11")
    return UNOWNED + 1


def build_env(
    prefix: Path, *, packages: int = PACKAGES, files: int = FILES_PER_PACKAGE
) -> int:
    """An environment as conda would have installed it at ``prefix``."""
    rng = random.Random(42)
    meta = prefix / "conda-meta"
    meta.mkdir(parents=True)
    count = 0
    for p in range(packages):
        name = package_name(p)
        paths = []
        for file in package_files(rng, name, files):
            data = file.installed(str(prefix))
            _write(prefix / file.path, data, 0o755 if file.executable else 0o644)
            entry: dict = {"_path": file.path, "path_type": "hardlink"}
            if file.mode:
                entry.update(prefix_placeholder=PLACEHOLDER, file_mode=file.mode)
            entry["sha256"] = hashlib.sha256(file.data).hexdigest()
            entry["sha256_in_prefix"] = hashlib.sha256(data).hexdigest()
            entry["size_in_bytes"] = len(file.data)
            paths.append(entry)
            count += 1
        record = {
            "name": name,
            "version": "1.0",
            "build": "0",
            "files": [e["_path"] for e in paths],
            "paths_data": {"paths_version": 1, "paths": paths},
        }
        (meta / f"{name}-1.0-0.json").write_text(json.dumps(record, indent=2))
    count += add_unowned(prefix, rng)
    (meta / "history").write_text(
        f"==> 2024-01-01 00:00:00 <==\n# cmd: conda create -p {prefix}\n"
    )
    return count + 1


def _build_string(name: str) -> str:
    """A conda-forge-like build string."""
    return f"h{hashlib.sha256(name.encode()).hexdigest()[:7]}_0"


def build_channel(channel: Path, stage_root: Path) -> None:
    """The ``package_files`` trees as ``.conda`` files in a channel indexed
    as conda-index would. Each package depends on one before it, so that the
    first N packages are an installable set with an order to link them in."""
    from conda_package_handling import api
    from rattler.index import index_fs

    rng = random.Random(42)
    for sub in (SUBDIR, "noarch"):
        (channel / sub).mkdir(parents=True)
    for p in range(PACKAGES):
        name = package_name(p)
        stage = stage_root / name
        paths = []
        has_prefix = []
        for file in package_files(rng, name, FILES_PER_PACKAGE):
            entry, line = stage_file(
                stage,
                file.path,
                file.data,
                executable=file.executable,
                mode=file.mode,
                placeholder=PLACEHOLDER,
            )
            paths.append(entry)
            has_prefix += [line] if line else []
        index = {
            "name": name,
            "version": "1.0",
            "build": _build_string(name),
            "build_number": 0,
            "depends": [f"{package_name((p - 1) // 2)} >=1.0"] if p else [],
            "subdir": SUBDIR,
            "arch": "x86_64",
            "platform": "linux",
            "license": "BSD-3-Clause",
            "timestamp": 1700000000000,
        }
        info = write_info(stage, index, paths, has_prefix)
        api.create(
            str(stage),
            [*info, *(e["_path"] for e in paths)],
            f"{name}-1.0-{index['build']}.conda",
            out_folder=str(channel / SUBDIR),
            compression_level=1,
        )
        shutil.rmtree(stage)
    asyncio.run(index_fs(channel, write_zst=False, write_shards=False))


def install_env(prefix: Path, channel: Path, packages: int, cache: Path) -> None:
    """Install the first ``packages`` packages with py-rattler, add what no
    package owns, and write conda's history of such a ``conda create``."""
    import rattler

    specs = [package_name(p) for p in range(packages)]
    records = asyncio.run(
        rattler.solve([channel.as_uri()], specs, platforms=[SUBDIR, "noarch"])
    )
    asyncio.run(rattler.install(records, prefix, cache_dir=cache, show_progress=False))
    shutil.rmtree(cache)
    add_unowned(prefix, random.Random(43))
    dists = sorted(
        f"+{channel.as_uri()}::{r.name.normalized}-{r.version}-{r.build}"
        for r in records
    )
    (prefix / "conda-meta/history").write_text(
        "==> 2024-01-01 00:00:00 <==\n"
        f"# cmd: conda create -p {prefix} {' '.join(specs)}\n"
        "# conda version: 24.1.2\n"
        + "".join(f"{dist}\n" for dist in dists)
        + f"# update specs: {json.dumps(specs)}\n"
    )
