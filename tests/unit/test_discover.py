"""Discovery, before the README's steps: which directories are environments,
and why the others are not."""

from __future__ import annotations

import os

import pytest

from conda_migrate_plugin.discover import examine, scan_directory, scratch_environments
from conda_migrate_plugin.snapshot import measure


def test_seed_layout_lists_valid_and_invalid(scratch):
    found = {c.name: c for c in scan_directory(scratch.envs_dir)}
    assert sorted(found) == ["abc", "amd", "pkgs", "pyt"]
    assert found["abc"].valid and found["abc"].prefix == scratch.abc
    assert found["amd"].valid
    assert found["pkgs"].reason == "a package cache, not an environment"
    assert found["pyt"].reason == "no conda-meta directory"


def test_directory_that_is_an_environment_is_the_only_candidate(scratch):
    (candidate,) = scan_directory(scratch.abc)
    assert candidate.valid and candidate.prefix == scratch.abc


def test_missing_history_and_symlinks_are_invalid(scratch, tmp_path):
    (scratch.amd / "conda-meta" / "history").unlink()
    assert examine(scratch.amd).reason == "conda-meta/history is missing"
    link = scratch.envs_dir / "alias"
    link.symlink_to(scratch.abc)
    assert examine(link).reason.startswith("a symlink")
    tarballs = tmp_path / "cache-without-urls"
    tarballs.mkdir()
    (tarballs / "demo-1.0-0.conda").write_bytes(b"")
    assert examine(tarballs).reason == "no conda-meta directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every directory")
def test_unreadable_directory_is_invalid_not_fatal(scratch):
    locked = scratch.envs_dir / "locked"
    (locked / "conda-meta").mkdir(parents=True)
    locked.chmod(0)
    try:
        assert examine(locked).reason.startswith("cannot be read")
    finally:
        locked.chmod(0o755)


def test_discovery_never_walks_inside_environments(scratch, monkeypatch):
    """Hundreds of environments on a parallel filesystem: only top levels."""
    for i in range(300):
        (scratch.envs_dir / f"env{i:03}" / "conda-meta").mkdir(parents=True)
        (scratch.envs_dir / f"env{i:03}" / "conda-meta" / "history").touch()

    def no_walk(*args, **kwargs):
        raise AssertionError("discovery walked a tree")

    monkeypatch.setattr(os, "walk", no_walk)
    candidates = scan_directory(scratch.envs_dir)
    assert sum(c.valid for c in candidates) == 302


def test_known_environments_under_scratch_only(scratch, tmp_path):
    elsewhere = tmp_path / "project" / "env"
    known = [scratch.abc, elsewhere, scratch.amd, scratch.abc, scratch.root]
    found = scratch_environments(known, scratch.root)
    assert [c.prefix for c in found] == [scratch.abc, scratch.amd]


def test_scratch_reached_through_a_symlink(scratch, tmp_path):
    link = tmp_path / "scratch-link"
    link.symlink_to(scratch.root)
    found = scratch_environments([scratch.abc], link)
    assert [c.prefix for c in found] == [scratch.abc]


@pytest.mark.parametrize(
    ("entries", "is_cache"),
    [
        # conda's mark of a package cache (``PACKAGE_CACHE_MAGIC_FILE``):
        # without it conda takes the directory for no cache at all.
        (["urls.txt"], True),
        (["urls.txt", "urls"], True),  # as conda creates one
        (["urls.txt", "demo-1.0-0.conda", "demo-1.0-0"], True),
        (["demo-1.0-0.conda", "repodata.json"], False),  # a channel's subdir
        (["urls"], False),
        ([], False),
    ],
)
def test_discovery_and_preflight_agree_on_what_a_package_cache_is(
    tmp_path, entries, is_cache
):
    """What -d lists as "a package cache" is what an environment holding it
    is refused for (the removal would take it along), and nothing else."""
    env = tmp_path / "env"
    (env / "conda-meta").mkdir(parents=True)
    (env / "conda-meta" / "history").touch()
    directory = env / "pkgs"
    directory.mkdir()
    for name in entries:
        (directory / name).touch()
    listed_as_cache = examine(directory).reason == "a package cache, not an environment"
    assert listed_as_cache == is_cache
    assert (str(directory) in measure(env).nested) == is_cache
