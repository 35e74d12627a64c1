"""The removal deletes across many threads: it must still never reach out of
the environment through a symlink, and must put back what it could not delete."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from conda_migrate_plugin.discover import REMOVING_SUFFIX
from conda_migrate_plugin.exceptions import MigrateError
from conda_migrate_plugin.safety import remove
from conda_migrate_plugin.safety.remove import remove_environment


def _tree(env):
    for i in range(40):
        sub = env / f"d{i}" / f"e{i % 3}"
        sub.mkdir(parents=True)
        (sub / "f").write_bytes(b"x" * i)
        (env / f"d{i}" / "top").write_text(str(i))


def test_parallel_removal_unlinks_symlinks_and_never_follows_them(tmp_path):
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "sub/keep.txt").write_text("keep")
    env = tmp_path / "envs/env"
    _tree(env)
    (env / "d0/to-dir").symlink_to(outside)
    (env / "d1/to-file").symlink_to(outside / "sub/keep.txt")
    (env / "d2/dangling").symlink_to(tmp_path / "nowhere")
    remove_environment(env, jobs=8)
    assert os.listdir(tmp_path / "envs") == []
    assert (outside / "sub/keep.txt").read_text() == "keep"
    assert sorted(os.listdir(outside)) == ["sub"]


def test_parallel_removal_failing_puts_the_rest_back(tmp_path):
    if os.geteuid() != 0 or not shutil.which("chattr"):
        pytest.skip("chattr +i needs root and e2fsprogs")
    env = tmp_path / "envs/env"
    _tree(env)
    pinned = env / "d7/e1/f"
    if subprocess.run(["chattr", "+i", pinned], capture_output=True).returncode:
        pytest.skip("this filesystem has no immutable flag")
    try:
        with pytest.raises(PermissionError):
            remove_environment(env, jobs=8)
    finally:
        subprocess.run(["chattr", "-i", pinned], check=True)
    assert pinned.read_bytes() == b"x" * 7
    assert not (tmp_path / f"envs/.env{REMOVING_SUFFIX}").exists()
    assert os.listdir(tmp_path / "envs") == ["env"]


@pytest.mark.parametrize("kind", ["bind", "tmpfs unlisted"])
def test_removal_never_crosses_a_mount(tmp_path, monkeypatch, kind):
    """Defence in depth, under the preflight's refusal: a directory mounted
    inside the environment keeps the whole environment, and its own files;
    also one the mount table did not show (mounted after the check), by its
    device number."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting needs root and mount(8)")
    env = tmp_path / "envs/env"
    _tree(env)
    project = tmp_path / "project"
    project.mkdir()
    point = env / "d3/project"
    point.mkdir()
    if kind == "bind":
        args = ["--bind", project, point]
        says = f"{point} is a mount point"
    else:
        args = ["-t", "tmpfs", "-o", "size=1m", "cm-test", point]
        says = "another filesystem is mounted here"
        monkeypatch.setattr(remove, "mount_points", lambda root: set())
    run = subprocess.run(["mount", *args], capture_output=True)
    if run.returncode:
        pytest.skip(f"cannot mount here: {run.stderr.decode().strip()}")
    (point / "paper.tex").write_text("results\n")
    try:
        with pytest.raises((MigrateError, OSError), match=says):
            remove_environment(env, jobs=8)
        assert (point / "paper.tex").read_text() == "results\n"
    finally:
        subprocess.run(["umount", "-l", point], check=True)
    assert os.listdir(tmp_path / "envs") == ["env"]
    if kind == "bind":  # refused before anything went
        assert (env / "d7/e1/f").read_bytes() == b"x" * 7


def test_old_name_made_anew_during_the_check_keeps_both(tmp_path):
    """A job recreates its log directory under the old name while the
    environment is renamed aside and found changed: neither is deleted, and
    the error names where the environment is, not a put-back that failed."""
    env = tmp_path / "envs/env"
    _tree(env)
    before = sorted(str(p.relative_to(env)) for p in env.rglob("*"))

    def changed(aside):
        (env / "var/log").mkdir(parents=True)
        (env / "var/log/job.log").write_text("job result\n")
        raise MigrateError(f"{env} changed since it was copied")

    with pytest.raises(MigrateError) as raised:
        remove_environment(env, jobs=8, unchanged=changed)
    aside = tmp_path / f"envs/.env{REMOVING_SUFFIX}"
    assert f"{env} changed since it was copied" in str(raised.value)
    assert f"it is at {aside}" in str(raised.value)
    assert sorted(str(p.relative_to(aside)) for p in aside.rglob("*")) == before
    assert (env / "var/log/job.log").read_text() == "job result\n"
