"""conda's list of environments, ``~/.conda/environments.txt``, kept without
conda: one prefix a line. Where conda is installed its own
``register_env``/``unregister_env`` are used instead (see ``conda_backend``).
"""

from __future__ import annotations

import os
from pathlib import Path


def environments_txt(home: Path | None = None) -> Path:
    return (home or Path.home()) / ".conda" / "environments.txt"


def read_registry(home: Path | None = None) -> list[Path]:
    try:
        lines = environments_txt(home).read_text().splitlines()
    except FileNotFoundError:
        return []
    return [Path(line.strip()) for line in lines if line.strip()]


def _write(lines: list[str], home: Path | None) -> None:
    path = environments_txt(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text("".join(f"{line}\n" for line in lines))
    os.replace(partial, path)


def register(prefix: Path, home: Path | None = None) -> None:
    known = [str(p) for p in read_registry(home)]
    if str(prefix) not in known:
        _write([*known, str(prefix)], home)


def unregister(prefix: Path, home: Path | None = None) -> None:
    known = [str(p) for p in read_registry(home)]
    if str(prefix) in known:
        _write([p for p in known if p != str(prefix)], home)
