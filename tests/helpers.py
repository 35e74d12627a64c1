"""What several test modules need alike: conda's registry as the test
reads it, and the real command in a child process, as a batch job runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

HERE = Path(__file__).parent
FAULTPOINT = HERE / "faultpoint.py"


def registered(home: Path) -> list[str]:
    """The lines of ``home``'s environments.txt; none when there is none."""
    path = home / ".conda" / "environments.txt"
    return path.read_text().splitlines() if path.exists() else []


def child_env(
    home: Path | None = None, *, base: Mapping[str, str] | None = None, **extra: str
) -> dict[str, str]:
    """``base`` (this process's environment) for a child that imports this
    checkout."""
    env = {**(os.environ if base is None else base), "PYTHONPATH": str(HERE.parent)}
    env.update(extra)
    if home is not None:
        env["HOME"] = str(home)
    return env


def faultpoint(*fault: str, args) -> list[str]:
    """``conda-migrate ARGS`` under ``faultpoint.py``; no ``fault``: it
    only counts."""
    return [
        sys.executable,
        str(FAULTPOINT),
        *(fault or ("count", "0")),
        "--",
        *map(str, args),
    ]


def run_cli(home: Path, *args, fault=(), env=None, timeout=300, wait=True):
    """The real command in a child process under ``faultpoint.py``, with
    ``env`` (default: ``child_env(home)``): ``(code, out, err)``, or the
    process itself when not waiting for it."""
    process = subprocess.Popen(
        faultpoint(*fault, args=args),
        env=child_env(home) if env is None else env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if not wait:
        return process
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err
