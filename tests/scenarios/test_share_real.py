"""Real environments sharing one package cache (CPython, pip and a compiled
program with its library, built as conda-build would) take no more room in
$HOME than they took on scratch, and each still works from its new place."""

from __future__ import annotations

import asyncio
import subprocess
from typing import TYPE_CHECKING

import pytest

from tests.support.trees import assert_no_more_room, inode, usage

if TYPE_CHECKING:
    from pathlib import Path

NAMES = ("torch-a", "torch-b", "torch-c")


@pytest.fixture
def real_envs(real_channel, tmp_path) -> Path:
    import rattler

    records = asyncio.run(
        rattler.solve(
            [real_channel.as_uri()],
            ["python", "pip", "cmdemo"],
            platforms=["linux-64", "noarch"],
        )
    )
    envs = tmp_path / "scratch" / "envs"
    for name in NAMES:
        asyncio.run(
            rattler.install(
                records,
                envs / name,
                cache_dir=tmp_path / "rattler-cache",
                show_progress=False,
            )
        )
    return envs


def test_real_environments_from_one_cache_fit_where_they_were(
    real_envs, tmp_path, home, migrate
):
    cache = tmp_path / "rattler-cache"
    stdlib = next((real_envs / NAMES[0] / "lib").glob("python3.*/os.py"))
    rel = stdlib.relative_to(real_envs / NAMES[0])
    assert inode(real_envs / NAMES[0] / rel) == inode(real_envs / NAMES[1] / rel)
    before, envs_alone = usage(real_envs, cache), usage(real_envs)
    out, err, code = migrate("-d", real_envs, "--all", "--json")
    assert code == 0, out + err
    dest = home / ".conda" / "envs"
    assert_no_more_room(dest, before, envs_alone)
    assert len({inode(dest / name / rel) for name in NAMES}) == 1
    for name in NAMES:
        prefix = dest / name
        run = subprocess.run(
            [prefix / "bin/python", "-c", "import sys, json; print(sys.prefix)"],
            capture_output=True,
            text=True,
            env={"PATH": "/nonexistent", "LC_ALL": "C.UTF-8"},
        )
        assert run.stdout == f"{prefix}\n", run.stderr
        run = subprocess.run([prefix / "bin/cmdemo"], capture_output=True, text=True)
        assert run.stdout.startswith(f"prefix={prefix}\n"), run.stderr


def test_a_quota_the_environments_fit_on_scratch_holds_them_in_home(
    real_envs, tmp_path, home, migrate, slowfs_mount
):
    """A home whose quota (that statvfs does not show) is what the
    environments and their cache took on scratch: they fit, shared; copied
    each alone (``--copy``), they do not."""
    nbytes, inodes = usage(real_envs, tmp_path / "rattler-cache")
    settings = {"quota_kb": nbytes // 1024, "quota_files": inodes}
    shared = slowfs_mount(tmp_path / "home-shared", **settings)
    out, err, code = migrate("-d", real_envs, "--all", "--keep-old", "--dest", shared)
    assert code == 0, out + err
    alone = slowfs_mount(tmp_path / "home-alone", **settings)
    out, err, code = migrate(
        "-d", real_envs, "--all", "--keep-old", "--copy", "--dest", alone
    )
    assert code == 1, out + err
    assert f"Your quota on {alone} filled up (Disk quota exceeded)" in out
