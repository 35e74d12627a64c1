"""Real Lmod in bash, where it is installed (Debian's package ``lmod``)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


def lmod_init() -> Path:
    """Lmod's setup for bash; the test skips, saying why, where it is missing."""
    init = Path(os.environ.get("LMOD_PKG", "/usr/share/lmod/lmod")) / "init" / "bash"
    if not init.is_file():
        pytest.skip(f"Lmod is not installed ({init} is missing; Debian package lmod)")
    return init


def lmod_shell(lines: str, home: Path, *, stop_on_error: bool = True):
    """``lines`` in a bash with Lmod set up and nothing of the user's read,
    as ``home``'s user on a login node: the completed process."""
    init = lmod_init()
    return subprocess.run(
        ["bash", "--noprofile", "--norc", *(["-e"] if stop_on_error else []), "-c"]
        + [f". {init}\n{lines}"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home)},
        cwd=home,
        timeout=120,
    )
