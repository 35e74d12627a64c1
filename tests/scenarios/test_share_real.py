"""Real environments sharing one package cache (CPython, pip and a compiled
program with its library, built as conda-build would) take no more room in
$HOME than they took on scratch, and each still works from its new place."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
from typing import TYPE_CHECKING

import pytest

from tests.support.markers import requires_conda
from tests.support.trees import (
    assert_no_more_room,
    inode,
    softlink_by_hand,
    tree_snapshot,
    usage,
)

if TYPE_CHECKING:
    from pathlib import Path

NAMES = ("torch-a", "torch-b", "torch-c")


def install(real_channel: Path, tmp_path: Path, names: tuple[str, ...]) -> Path:
    """``$SCRATCH/envs/NAME`` for each of ``names``, of the same packages,
    installed from one package cache (``rattler-cache``)."""
    import rattler

    records = asyncio.run(
        rattler.solve(
            [real_channel.as_uri()],
            ["python", "pip", "cmdemo"],
            platforms=["linux-64", "noarch"],
        )
    )
    envs = tmp_path / "scratch" / "envs"
    for name in names:
        asyncio.run(
            rattler.install(
                records,
                envs / name,
                cache_dir=tmp_path / "rattler-cache",
                show_progress=False,
            )
        )
    return envs


@pytest.fixture
def real_envs(real_channel, tmp_path) -> Path:
    return install(real_channel, tmp_path, NAMES)


def runs_from(prefix: Path) -> None:
    """Its python and its compiled program start, and know where they are."""
    run = subprocess.run(
        [prefix / "bin/python", "-c", "import sys, json; print(sys.prefix)"],
        capture_output=True,
        text=True,
        env={"PATH": "/nonexistent", "LC_ALL": "C.UTF-8"},
    )
    assert run.stdout == f"{prefix}\n", run.stderr
    run = subprocess.run([prefix / "bin/cmdemo"], capture_output=True, text=True)
    assert run.stdout.startswith(f"prefix={prefix}\n"), run.stderr


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
        runs_from(dest / name)


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


# -- softlinked into the package cache (conda's always_softlink) ------------------


def linked_files(env: Path, cache: Path) -> tuple[int, int]:
    """The bytes, and the whole 4 KiB blocks, of the files ``env``'s links
    into ``cache`` lead to: what its copy, which holds the files, takes
    beyond the links."""
    nbytes = blocks = 0
    for dirpath, _, filenames in os.walk(env):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path) and os.readlink(path).startswith(f"{cache}/"):
                size = os.stat(path).st_size
                nbytes += size
                blocks += -(-size // 4096) * 4096
    return nbytes, blocks


def test_a_softlinked_environment_that_cannot_fit_is_refused_before_its_copy(
    real_channel, tmp_path, home, migrate, monkeypatch
):
    """Its links take a few bytes on scratch; its copy holds the files they
    lead to. A quota with room for the links and not for the files refuses
    it up front, with the need stated; the dry run and the summary count
    the files."""
    envs = install(real_channel, tmp_path, ("linked",))
    env, cache = envs / "linked", tmp_path / "rattler-cache"
    softlink_by_hand(env)
    links, (nbytes, files) = usage(env)[0], linked_files(env, cache)
    assert files > 2**20, "too little is linked for the test to show anything"
    out, err, code = migrate("-d", envs, "--all", "--dry-run", "--json")
    assert code == 0, out + err
    (planned,) = json.loads(out)["environments"]
    assert planned["written_bytes"] >= files, (links, files)
    # Room for the links and half of the files, with the run's margin.
    room = 64 * 2**20 + int((links + files // 2) * 1.05)
    command = tmp_path / "site-quota"
    command.write_text(f"#!/bin/sh\necho bytes_used=0\necho bytes_limit={room}\n")
    command.chmod(0o755)
    monkeypatch.setenv("CONDA_MIGRATE_QUOTA_COMMAND", str(command))
    before = tree_snapshot(env)
    out, err, code = migrate("-d", envs, "--all")
    assert code == 1, out + err
    assert "Migration of linked failed: The environment does not fit your quota" in out
    assert "Nothing was copied and the environment is untouched" in out
    assert tree_snapshot(env) == before
    assert list((home / ".conda" / "envs").glob("*")) == []
    monkeypatch.delenv("CONDA_MIGRATE_QUOTA_COMMAND")
    out, err, code = migrate("-d", envs, "--all", "--json")
    assert code == 0, out + err
    assert json.loads(out)["totals"]["written_bytes"] >= nbytes


def test_a_softlinked_environment_the_disk_cannot_hold_is_refused_before_its_copy(
    real_channel, tmp_path, home, migrate, tmpfs
):
    """The free-space check, where no quota tool answers, counts the files
    the links lead to as well."""
    envs = install(real_channel, tmp_path, ("linked",))
    env = envs / "linked"
    softlink_by_hand(env)
    links, (_, files) = usage(env)[0], linked_files(env, tmp_path / "rattler-cache")
    # Room for the links and half of the files, with the run's margin.
    room = 64 * 2**20 + int((links + files // 2) * 1.05)
    dest = tmpfs(f"size={room // 4096 * 4096}") / "envs"
    before = tree_snapshot(env)
    out, err, code = migrate("-d", envs, "--all", "--dest", dest)
    assert code == 1, out + err
    assert f"Migration of linked failed: Not enough space in {dest}" in out
    assert "Nothing was copied and the environment is untouched" in out
    assert tree_snapshot(env) == before
    assert list(dest.glob("*")) == []


@pytest.fixture
def conda_softlinked(real_channel, tmp_path, home, conda_cli, monkeypatch):
    """``conda_softlinked(*names)``: environments conda creates on scratch
    with ``always_softlink``, from one package cache on scratch
    (``$SCRATCH/pkgs``), conda then configured as before; returns the
    directory holding them."""
    from conda.base.context import reset_context

    envs, pkgs = tmp_path / "scratch" / "envs", tmp_path / "scratch" / "pkgs"

    def create(*names: str) -> Path:
        with monkeypatch.context() as patch:
            patch.setenv("CONDA_PKGS_DIRS", str(pkgs))
            patch.setenv("CONDA_ALWAYS_SOFTLINK", "true")
            # The channel has no pip for conda to add to python.
            patch.setenv("CONDA_ADD_PIP_AS_PYTHON_DEPENDENCY", "false")
            reset_context()
            for name in names:
                out, err, code = conda_cli(
                    "create", "-p", envs / name, "--offline", "--override-channels",
                    "--solver", "classic", "-c", real_channel.as_uri(), "--yes",
                    "python", "cmdemo",
                )  # fmt: skip
                assert code == 0, out + err
        reset_context()
        return envs

    yield create
    reset_context()


@requires_conda
def test_environments_conda_softlinked_move_and_share_what_they_linked_to(
    conda_softlinked, tmp_path, home, migrate
):
    """conda's ``always_softlink`` links each file into the cache, but
    copies an executable all the same (its ``$ORIGIN`` would lead into the
    cache) and records it as a softlink too: a file where its record says
    ``softlink`` is the package's, and the copy's record says what the copy
    holds. The two environments shared the cache's files on scratch: in
    $HOME the second one's are hard links to the first one's."""
    names = ("linked", "other")
    envs = conda_softlinked(*names)
    env, pkgs = envs / names[0], tmp_path / "scratch" / "pkgs"
    python = json.loads(next((env / "conda-meta").glob("python-*.json")).read_text())
    copied = [
        entry["_path"]
        for entry in python["paths_data"]["paths"]
        if entry["path_type"] == "softlink" and not (env / entry["_path"]).is_symlink()
    ]
    assert copied, "conda copied no executable"
    linked = [
        str(path.relative_to(env))
        for path in env.rglob("*")
        if path.is_symlink() and os.readlink(path).startswith(f"{pkgs}/")
    ]
    assert linked, "conda softlinked nothing"
    out, err, code = migrate("-d", envs, "--all", "--no-clean")
    assert code == 0, out + err
    shutil.rmtree(tmp_path / "scratch")
    dest = home / ".conda" / "envs"
    for name in names:
        runs_from(dest / name)
        record = (dest / name / "conda-meta").glob("python-*.json")
        python = json.loads(next(record).read_text())
        assert python["link"]["type"] != 2
        assert [
            entry["_path"]
            for entry in python["paths_data"]["paths"]
            if entry["path_type"] == "softlink"
            and not (dest / name / entry["_path"]).is_symlink()
        ] == []
    shared = [
        rel
        for rel in linked
        if inode(dest / names[0] / rel) == inode(dest / names[1] / rel)
    ]
    assert shared == linked


def test_softlinked_environments_of_one_cache_share_its_files_in_home(
    real_channel, tmp_path, home, migrate
):
    """Two environments linking into the same files of one package cache
    shared them on scratch: in $HOME the second one's copy of each is a
    hard link to the first one's, planned and said as shared."""
    names = ("linked-a", "linked-b")
    envs, cache = install(real_channel, tmp_path, names), tmp_path / "rattler-cache"
    linked = [softlink_by_hand(envs / name) for name in names]
    assert linked[0] == linked[1]
    nbytes, blocks = linked_files(envs / names[1], cache)
    out, err, code = migrate("-d", envs, "--all", "--dry-run", "--json")
    assert code == 0, out + err
    planned = {env["name"]: env for env in json.loads(out)["environments"]}
    assert planned[names[1]]["shared_bytes"] >= blocks
    assert (
        planned[names[1]]["written_bytes"]
        < planned[names[0]]["written_bytes"] - blocks // 2
    )
    out, err, code = migrate("-d", envs, "--all", "--json")
    assert code == 0, out + err
    done = {env["name"]: env for env in json.loads(out)["environments"]}
    assert done[names[1]]["shared_files"] >= len(linked[1])
    assert done[names[1]]["shared_bytes"] >= nbytes
    shutil.rmtree(tmp_path / "scratch")
    shutil.rmtree(cache)
    dest = home / ".conda" / "envs"
    for rel in linked[0]:
        assert inode(dest / names[0] / rel) == inode(dest / names[1] / rel), rel
    for name in names:
        prefix = dest / name
        runs_from(prefix)
        want = {
            entry["_path"]: entry["sha256"]
            for record in (prefix / "conda-meta").glob("*.json")
            for entry in json.loads(record.read_text())["paths_data"]["paths"]
            if entry["_path"] in set(linked[0])
        }
        have = {
            rel: hashlib.sha256((prefix / rel).read_bytes()).hexdigest()
            for rel in linked[0]
        }
        assert have == want


# -- purged: the files the copy restores -------------------------------------------


def plan_of(migrate, envs: Path) -> tuple[int, int]:
    """What ``--dry-run`` says the one environment in ``envs`` would write:
    files and directories, bytes in whole blocks."""
    out, err, code = migrate("-d", envs, "--all", "--dry-run", "--json")
    assert code == 0, out + err
    (planned,) = json.loads(out)["environments"]
    return planned["written_files"], planned["written_bytes"]


def purged_real_env(
    real_channel: Path, tmp_path: Path, migrate, purged: str
) -> tuple[Path, int, tuple[int, int]]:
    """``$SCRATCH/envs/purged``, a real CPython environment, after a purge
    took the standard library's ``.py`` files (``purged="files"``), or took
    the extracted packages of the cache it is softlinked into and left their
    tarballs (``"cache"``: its links dangle). Returns it, the whole 4 KiB
    blocks of what its copy restores, and what ``--dry-run`` planned for it
    whole."""
    envs = install(real_channel, tmp_path, ("purged",))
    env, cache = envs / "purged", tmp_path / "rattler-cache"
    if purged == "cache":
        softlink_by_hand(env)
        restored = linked_files(env, cache)[1]
        whole = plan_of(migrate, envs)
        shutil.rmtree(cache)
        pkgs = tmp_path / "conda-pkgs"
        pkgs.mkdir()
        (pkgs / "urls.txt").write_text("")
        for tarball in real_channel.glob("*/*.conda"):
            shutil.copy(tarball, pkgs / tarball.name)
    else:
        whole = plan_of(migrate, envs)
        stdlib = next((env / "lib").glob("python3.*/os.py")).parent
        taken = [p for p in stdlib.rglob("*.py") if "site-packages" not in p.parts]
        restored = sum(-(-p.stat().st_size // 4096) * 4096 for p in taken)
        for path in taken:
            path.unlink()
    assert restored > 2**20, "too little is purged for the test to show anything"
    return env, restored, whole


@pytest.mark.parametrize("purged", ["files", "cache"])
def test_a_purged_environment_that_cannot_fit_restored_is_refused_before_its_copy(
    purged, real_channel, tmp_path, home, migrate, monkeypatch
):
    """The copy restores what the purge took (from a package cache, a
    tarball or the channel), so it needs the room of the environment whole,
    not of what is left on scratch: the dry run plans as many files as for
    the whole environment, and a quota with room for what is left and not
    for the restored files refuses it up front, with the need stated."""
    env, restored, whole = purged_real_env(real_channel, tmp_path, migrate, purged)
    planned = plan_of(migrate, env.parent)
    assert planned[0] == whole[0] and planned[1] >= whole[1], (planned, whole)
    # Room for what is left and half of what is restored, with the run's margin.
    room = 64 * 2**20 + int((usage(env)[0] + restored // 2) * 1.05)
    command = tmp_path / "site-quota"
    command.write_text(f"#!/bin/sh\necho bytes_used=0\necho bytes_limit={room}\n")
    command.chmod(0o755)
    monkeypatch.setenv("CONDA_MIGRATE_QUOTA_COMMAND", str(command))
    before = tree_snapshot(env)
    out, err, code = migrate("-d", env.parent, "--all")
    assert code == 1, out + err
    assert "Migration of purged failed: The environment does not fit your quota" in out
    assert "Nothing was copied and the environment is untouched" in out
    assert tree_snapshot(env) == before
    assert list((home / ".conda" / "envs").glob("*")) == []


@pytest.mark.parametrize("purged", ["files", "cache"])
def test_a_purged_environment_the_disk_cannot_hold_restored_is_refused_before_its_copy(
    purged, real_channel, tmp_path, home, migrate, tmpfs
):
    """The free-space check, where no quota tool answers, counts the
    restored files as well."""
    env, restored, _ = purged_real_env(real_channel, tmp_path, migrate, purged)
    room = 64 * 2**20 + int((usage(env)[0] + restored // 2) * 1.05)
    dest = tmpfs(f"size={room // 4096 * 4096}") / "envs"
    before = tree_snapshot(env)
    out, err, code = migrate("-d", env.parent, "--all", "--dest", dest)
    assert code == 1, out + err
    assert f"Migration of purged failed: Not enough space in {dest}" in out
    assert "Nothing was copied and the environment is untouched" in out
    assert tree_snapshot(env) == before
    assert list(dest.glob("*")) == []
