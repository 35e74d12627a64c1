"""The tiny test packages: what they hold, and how one is built into a
conda package and installed on top of (a pip install nobody's conda
package owns)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

#: Long enough for the binary prefix replacement to have room, as conda-build's is.
PLACEHOLDER = "/opt/conda-migrate-build/" + "placeholder_" * 18
SUBDIR = "linux-64"
PY_VER = "3.11"
SITE_PACKAGES = f"lib/python{PY_VER}/site-packages"


@dataclass(frozen=True)
class FileSpec:
    """One file of a test package: ``mode`` is conda's prefix mode, or None."""

    path: str
    content: bytes = b""
    mode: str | None = None
    link_to: str | None = None
    executable: bool = False


def _entry_point(module: str) -> bytes:
    return (
        f"#!{PLACEHOLDER}/bin/python\n"
        f"import sys\nimport {module}\nsys.exit({module}.main())\n"
    ).encode()


PACKAGES: dict[tuple[str, str, str], tuple[list[str], list[FileSpec]]] = {
    ("python", f"{PY_VER}.0", "0"): (
        [],
        [
            # A stand-in interpreter: enough for shebangs in the env to run.
            FileSpec(
                f"bin/python{PY_VER}",
                f'#!/bin/sh\nPYTHONPATH="{PLACEHOLDER}/{SITE_PACKAGES}" '
                'exec python3 "$@"\n'.encode(),
                mode="text",
                executable=True,
            ),
            FileSpec("bin/python", link_to=f"python{PY_VER}"),
            FileSpec(f"{SITE_PACKAGES}/README.txt", b"site-packages of a test env\n"),
        ],
    ),
    ("demo-text", "1.0", "0"): (
        [],
        [
            FileSpec(
                "etc/demo/demo.conf",
                f"root = {PLACEHOLDER}\ndata = {PLACEHOLDER}/share/demo\n".encode(),
                mode="text",
            ),
            FileSpec("share/demo/data.txt", b"plain data, no prefix\n" * 20),
            FileSpec("share/demo/current.txt", link_to="data.txt"),
            FileSpec(
                "bin/demo-hello",
                f'#!/bin/sh\necho "hello from {PLACEHOLDER}"\n'.encode(),
                mode="text",
                executable=True,
            ),
        ],
    ),
    ("demo-binary", "1.0", "0"): (
        [],
        [
            FileSpec(
                "lib/libdemo.so",
                b"\x7fELF\x02\x01\x01\x00"
                + bytes(range(256))
                + f"{PLACEHOLDER}/lib\x00".encode()
                + b"\x00" * 16
                + f"{PLACEHOLDER}/share/demo\x00tail".encode(),
                mode="binary",
            ),
        ],
    ),
    ("demo-app", "2.0", "py311_0"): (
        [f"python {PY_VER}.*", "demo-text 1.0", "demo-binary 1.0"],
        [
            FileSpec(
                f"{SITE_PACKAGES}/demo_app/__init__.py",
                b"def main():\n    print('demo-app works')\n    return 0\n",
            ),
            FileSpec("bin/demo-app", _entry_point("demo_app"), "text", executable=True),
        ],
    ),
}


def stage_file(
    stage: Path,
    path: str,
    data: bytes,
    *,
    executable: bool,
    mode: str | None,
    placeholder: str = PLACEHOLDER,
) -> tuple[dict[str, object], str | None]:
    """One file of a package being built, written under ``stage`` with a
    mode that does not depend on the builder's umask; its ``paths.json``
    entry and, where it carries ``placeholder``, its ``has_prefix`` line."""
    target = stage / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    target.chmod(0o755 if executable else 0o644)
    entry: dict[str, object] = {
        "_path": path,
        "path_type": "hardlink",
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_in_bytes": len(data),
    }
    if not mode:
        return entry, None
    entry.update(prefix_placeholder=placeholder, file_mode=mode)
    return entry, f"{placeholder} {mode} {path}"


def write_info(
    stage: Path,
    index: dict[str, object],
    paths: list[dict[str, object]],
    has_prefix: list[str],
) -> list[str]:
    """The package's ``info/`` as conda reads it; the members written."""
    info = {
        "info/index.json": json.dumps(index),
        "info/paths.json": json.dumps({"paths": paths, "paths_version": 1}),
        "info/files": "".join(f"{entry['_path']}\n" for entry in paths),
    }
    if has_prefix:
        info["info/has_prefix"] = "".join(f"{line}\n" for line in has_prefix)
    (stage / "info").mkdir(exist_ok=True)
    for rel, text in info.items():
        (stage / rel).write_text(text)
    return list(info)


def build_package(workdir: Path, out_dir: Path, key, depends, files) -> None:
    from conda_package_handling import api

    name, version, build = key
    src = workdir / f"{name}-{version}-{build}"
    (src / "info").mkdir(parents=True)
    paths: list[dict[str, object]] = []
    has_prefix: list[str] = []
    for spec in files:
        if spec.link_to is not None:
            target = src / spec.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(spec.link_to)
            paths.append({"_path": spec.path, "path_type": "softlink"})
            continue
        entry, line = stage_file(
            src, spec.path, spec.content, executable=spec.executable, mode=spec.mode
        )
        paths.append(entry)
        has_prefix += [line] if line else []
    index = {
        "name": name,
        "version": version,
        "build": build,
        "build_number": 0,
        "depends": depends,
        "subdir": SUBDIR,
        "arch": "x86_64",
        "platform": "linux",
        "license": "BSD-3-Clause",
        "timestamp": 1700000000000,
    }
    info = write_info(src, index, paths, has_prefix)
    members = [*info, *(spec.path for spec in files)]
    api.create(str(src), members, str(out_dir / f"{name}-{version}-{build}.tar.bz2"))


def add_pip_package(prefix: Path) -> None:
    """Files a ``pip install`` leaves behind, which no conda package owns."""
    site = prefix / SITE_PACKAGES
    dist = site / "extra_tool-0.3.dist-info"
    dist.mkdir(parents=True)
    (site / "extra_tool").mkdir()
    (site / "extra_tool" / "__init__.py").write_text(
        "def main():\n    print('extra-tool works')\n    return 0\n"
    )
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: extra-tool\nVersion: 0.3\n"
    )
    (dist / "INSTALLER").write_text("pip\n")
    (dist / "direct_url.json").write_text(
        json.dumps({"url": f"file://{prefix}/src/extra_tool", "dir_info": {}})
    )
    script = prefix / "bin" / "extra-tool"
    script.write_text(f"#!{prefix}/bin/python\nimport extra_tool\nextra_tool.main()\n")
    script.chmod(0o755)
    (dist / "RECORD").write_text(
        "extra_tool/__init__.py,,\n"
        "extra_tool-0.3.dist-info/METADATA,,\n"
        "extra_tool-0.3.dist-info/INSTALLER,,\n"
        "extra_tool-0.3.dist-info/direct_url.json,,\n"
        "extra_tool-0.3.dist-info/RECORD,,\n"
        "../../../bin/extra-tool,,\n"
    )
    (site / "extra_tool.pth").write_text(f"{prefix}/src\n")
