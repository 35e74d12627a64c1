"""The default thread count follows the filesystems an environment moves
between: one thread on local ones, where more only contend for Python's
lock, and many on network ones, where each waits on a round trip."""

from __future__ import annotations

import shutil
import subprocess
from typing import TYPE_CHECKING

import pytest

from conda_migrate_plugin.jobs import (
    LOCAL,
    NETWORK,
    choose_jobs,
    default_jobs,
    filesystem_type,
)
from tests.support.loopfs import LoopFS, Unavailable

if TYPE_CHECKING:
    from pathlib import Path

TMPFS, EXT4, XFS = 0x01021994, 0xEF53, 0x58465342
NFS, LUSTRE, GPFS, FUSE = 0x6969, 0x0BD00BD0, 0x47504653, 0x65735546


@pytest.mark.parametrize(
    ("source", "dest"), [(TMPFS, TMPFS), (EXT4, XFS), (XFS, TMPFS), (EXT4, EXT4)]
)
def test_one_thread_between_local_filesystems(source, dest):
    jobs, why = choose_jobs(source, dest)
    assert jobs == 1
    assert f"source on {LOCAL[source]}, destination on {LOCAL[dest]}: local" in why


@pytest.mark.parametrize(
    ("source", "dest"),
    [(LUSTRE, NFS), (GPFS, EXT4), (TMPFS, NFS), (FUSE, FUSE), (0xCAFE, TMPFS)],
)
def test_network_or_unknown_on_either_side_keeps_the_threads(source, dest):
    """An unknown type may be a network filesystem, where one thread would
    be many times slower, so it counts as one."""
    jobs, why = choose_jobs(source, dest)
    assert jobs == default_jobs() > 1
    names = {**NETWORK, **LOCAL}
    assert names.get(source, "unknown type 0xcafe") in why


def test_unreadable_type_counts_as_network():
    jobs, why = choose_jobs(None, TMPFS)
    assert jobs == default_jobs()
    assert "source on a filesystem whose type could not be read" in why


def test_type_is_statfs_of_the_path_or_its_nearest_parent(tmp_path):
    if shutil.which("stat") is None:
        pytest.skip("no stat command here")
    shown = subprocess.run(
        ["stat", "-f", "-c", "%t", tmp_path], capture_output=True, text=True, check=True
    )
    assert filesystem_type(tmp_path) == int(shown.stdout, 16)
    assert filesystem_type(tmp_path / "not" / "yet") == int(shown.stdout, 16)


@pytest.fixture
def local_filesystem(tmp_path, tmpfs):
    """A fresh tmpfs or ext4 loop image mounted in ``tmp_path`` (root only)."""
    loops: list[LoopFS] = []

    def _mount(kind: str) -> Path:
        if kind == "tmpfs":
            return tmpfs("size=256m")
        loop = LoopFS(tmp_path / "ext4.img", tmp_path / "ext4")
        loops.append(loop)
        try:
            loop.make(256)
            loop.mount()
        except Unavailable as err:
            pytest.skip(str(err))
        return loop.point

    yield _mount
    for loop in loops:
        loop.unmount()


@pytest.mark.parametrize("kind", ["tmpfs", "ext4"])
def test_log_names_the_filesystems_and_the_one_thread_chosen(
    kind, local_filesystem, make_env, home, migrate, monkeypatch
):
    monkeypatch.delenv("CONDA_MIGRATE_JOBS")
    point = local_filesystem(kind)
    make_env(point / "envs" / "abc", ["demo-app"])
    out, err, code = migrate("-d", point / "envs", "--all", "--dest", point / "home")
    assert code == 0, out + err
    assert (point / "home" / "abc" / "conda-meta").is_dir()
    (log,) = (home / ".conda" / "migrate" / "logs").glob("*.log")
    name = "tmpfs" if kind == "tmpfs" else "ext4"
    assert (
        f"threads: 1 (source on {name}, destination on {name}: local" in log.read_text()
    )


def test_log_says_when_jobs_were_given(scratch, home, migrate):
    out, err, code = migrate("-d", scratch.envs_dir, "--all", "--jobs", "3")
    assert code == 0, out + err
    (log,) = (home / ".conda" / "migrate" / "logs").glob("*.log")
    assert log.read_text().count("threads: 3 (--jobs)") == 2


def test_the_variable_sets_the_default_and_jobs_still_wins(scratch, home, migrate):
    """conftest sets CONDA_MIGRATE_JOBS=16 for every test."""
    out, err, code = migrate("-d", scratch.envs_dir, "--all", "--keep-old")
    assert code == 0, out + err
    (log,) = (home / ".conda" / "migrate" / "logs").glob("*.log")
    assert log.read_text().count("threads: 16 (CONDA_MIGRATE_JOBS)") == 2


@pytest.mark.parametrize("value", ["0", "many"])
def test_a_bad_variable_is_a_usage_error(scratch, migrate, monkeypatch, value):
    monkeypatch.setenv("CONDA_MIGRATE_JOBS", value)
    out, err, code = migrate("-d", scratch.envs_dir, "--all")
    assert code == 2
    assert f"CONDA_MIGRATE_JOBS must be at least 1, not {value}." in (out + err)
