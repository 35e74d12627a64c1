"""Real environments: the running CPython, pip as ``noarch: python``, a C
program, and what the environment's own pip installs, moved by both engines."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

PY = f"python{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture(scope="session")
def real_records(real_channel) -> list:
    import rattler

    return asyncio.run(
        rattler.solve(
            [real_channel.as_uri()],
            ["python", "pip", "cmdemo"],
            platforms=["linux-64", "noarch"],
        )
    )


@pytest.fixture
def real_env(real_records, tmp_path) -> Callable[[Path], Path]:
    """Install python, pip and cmdemo at a prefix, as conda would."""
    import rattler

    def _install(prefix: Path) -> Path:
        asyncio.run(
            rattler.install(
                real_records,
                prefix,
                cache_dir=tmp_path / "rattler-cache",
                show_progress=False,
            )
        )
        return prefix

    return _install


def run(*args, **kwargs) -> str:
    """Run by path with a minimal environment: no activation, no python on PATH."""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LC_ALL": "C.UTF-8"}
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, env=env, **kwargs
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_realistic_packages_install_and_work(real_env, tmp_path):
    prefix = real_env(tmp_path / "env")
    out = run(prefix / "bin/python", "-c", "import sys, ssl; print(sys.prefix)")
    assert out == f"{prefix}\n"
    assert run(prefix / "bin/pip", "--version").startswith("pip ")
    assert run(prefix / "bin/cmdemo") == (f"prefix={prefix}\ndata=hello from cmdemo\n")
