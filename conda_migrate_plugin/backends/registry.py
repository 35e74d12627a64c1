"""conda's list of environments, ``~/.conda/environments.txt``, kept without
conda: one prefix a line. Where conda is installed its own
``register_env``/``unregister_env`` are used instead (see ``backends/conda.py``).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ..names import state_dir
from ..safety.atomic import write_atomically
from ..safety.lock import serialized

if TYPE_CHECKING:
    from collections.abc import Iterator


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


@contextmanager
def changing(home: Path | None = None) -> Iterator[None]:
    """One run at a time reads and writes the file back (conda's own
    ``register_env`` does too): the tasks of a job array register side by
    side."""
    with serialized(state_dir(home or Path.home()), "environments.txt"):
        yield


def register(prefix: Path, home: Path | None = None) -> None:
    with changing(home):
        known = [str(p) for p in read_registry(home)]
        if str(prefix) not in known:
            _write([*known, str(prefix)], home)


def unregister(prefix: Path, home: Path | None = None) -> None:
    with changing(home):
        known = [str(p) for p in read_registry(home)]
        if str(prefix) in known:
            _write([p for p in known if p != str(prefix)], home)
