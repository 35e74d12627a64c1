"""conda's list of environments, ``~/.conda/environments.txt``, kept without
conda: one prefix a line. Where conda is installed its own
``register_env``/``unregister_env`` are used instead (see ``backends/conda.py``).
"""

from __future__ import annotations

from pathlib import Path

from ..safety.atomic import write_atomically


def environments_txt(home: Path | None = None) -> Path:
    return (home or Path.home()) / ".conda" / "environments.txt"


def read_registry(home: Path | None = None) -> list[Path]:
    try:
        lines = environments_txt(home).read_text().splitlines()
    except FileNotFoundError:
        return []
    return [Path(line.strip()) for line in lines if line.strip()]


def _write(lines: list[str], home: Path | None) -> None:
    write_atomically(environments_txt(home), "".join(f"{line}\n" for line in lines))


def register(prefix: Path, home: Path | None = None) -> None:
    known = [str(p) for p in read_registry(home)]
    if str(prefix) not in known:
        _write([*known, str(prefix)], home)


def unregister(prefix: Path, home: Path | None = None) -> None:
    known = [str(p) for p in read_registry(home)]
    if str(prefix) in known:
        _write([p for p in known if p != str(prefix)], home)
