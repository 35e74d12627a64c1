"""A run killed midway, then the site changes before the same command is run
again: the scratch purge, or the user, deletes what the killed run left, or
the journal. The rerun loses nothing the user still had, and says exactly
what is left and what to do, with an honest exit code.

These run with conda and without it (relocation, offline); restoring what
the purge took from the channel needs conda's fetch.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

from conda_migrate_plugin.names import REMOVING_SUFFIX, STAGING_PREFIX
from conda_migrate_plugin.safety import journal
from tests.support.markers import requires_conda
from tests.support.runs import (
    child_env,
    killed_in_the_removal,
    registered,
    run_again,
    run_cli,
)
from tests.support.slowfs import SlowFS
from tests.support.trees import softlink_by_hand, tree_snapshot

RELOCATE = ("--all", "--method", "relocate", "--no-clean")


def killed_mid_copy(home, args: list, env: dict[str, str] | None = None) -> Path:
    """Run the command, killed while it copies ``abc`` (at its 4th file):
    the staging directory it leaves."""
    killed = run_cli(home, *args, fault=("kill", "4", "utime"), env=env)
    assert killed[0] == -signal.SIGKILL, killed
    (staging,) = (home / ".conda/envs").glob(f"{STAGING_PREFIX}*")
    return staging


def test_copy_deleted_while_the_removal_was_cut_short_is_not_called_untouched(
    scratch, home
):
    """Killed inside the removal of the old environment; the user then takes
    the copy in ``~/.conda/envs`` for a half-made one of the dead job and
    deletes it. What is left of the old environment is only a part of it:
    the rerun says where it is and how to get the environment back (its
    YAML), fails, and deletes none of it, then or on any later run."""
    args = ["-d", scratch.envs_dir, *RELOCATE]
    env = killed_in_the_removal(home, args)
    aside = scratch.envs_dir / f".abc{REMOVING_SUFFIX}"
    remains = tree_snapshot(aside)
    shutil.rmtree(home / ".conda/envs/abc")
    yaml = home / ".conda/yaml/abc.yml"

    rerun = run_again(args, env)
    out = rerun.stdout
    assert rerun.returncode == 1, out + rerun.stderr
    assert "was left as it is" not in out, out
    assert (
        f"What is left of {scratch.abc} is at {aside}: only a part of it, "
        "which was not touched." in out
    )
    assert f"conda env create -p {home / '.conda/envs/abc'} -f {yaml}" in out
    assert yaml.is_file()
    assert tree_snapshot(aside) == remains
    assert journal.entries(home / ".conda/migrate") == []

    again = run_again(args, env)
    assert "the run that migrated it deletes them" not in again.stdout
    assert (
        f"INVALID ENV: .abc{REMOVING_SUFFIX} (the remains of an environment whose "
        "removal was interrupted, which no run will finish: nothing records its "
        "copy any more; remove them by hand once you no longer need them)"
        in again.stdout
    )
    assert tree_snapshot(aside) == remains


def test_journal_deleted_while_the_removal_was_cut_short(scratch, home):
    """Killed inside the removal; the user then deletes the journal. The copy
    is verified and registered, the old name gone: the rerun still points
    ``~/.bashrc`` at the new place, and names the remains as something no
    run will delete."""
    bashrc = home / ".bashrc"
    bashrc.write_text(f"conda activate {scratch.abc}\n")
    args = ["-d", scratch.envs_dir, *RELOCATE]
    env = killed_in_the_removal(home, args)
    shutil.rmtree(home / ".conda/migrate/journal")

    rerun = run_again(args, env)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert bashrc.read_text() == f"conda activate {home / '.conda/envs/abc'}\n"
    assert "which no run will finish" in rerun.stdout
    assert (scratch.envs_dir / f".abc{REMOVING_SUFFIX}").is_dir()


def test_home_quota_filled_after_a_kill_mid_copy(scratch, home, slowfs_mount):
    """Killed while copying; then the home quota fills (another job's
    output). The rerun cannot even write its log: it says so, and that the
    partial copy the killed run left takes room there and may go, instead
    of conda's report of an unexpected error; it touches nothing."""
    used = sum(len(dirs) + len(files) + 1 for _, dirs, files in os.walk(home))
    point = slowfs_mount(home.with_name("nfs-home"), home, quota_files=used + 400)
    args = ["-d", scratch.envs_dir, *RELOCATE]
    env = child_env(point)
    staging = killed_mid_copy(point, args, env)
    (point / "data").mkdir()
    with pytest.raises(OSError, match="quota"):
        for index in range(10_000):
            (point / "data" / str(index)).touch()
    sources = tree_snapshot(scratch.envs_dir)
    partial = tree_snapshot(staging)

    rerun = run_again(args, env)
    out = rerun.stdout + rerun.stderr
    assert rerun.returncode == 1, out
    assert "Traceback" not in out and "unexpected error" not in out, out
    assert f"this run's log cannot be written in {point / '.conda/migrate/logs'}" in out
    assert f"The partial copy an interrupted run left at {staging}" in out
    assert tree_snapshot(scratch.envs_dir) == sources
    assert tree_snapshot(staging) == partial


def test_partial_copy_no_journal_knows_is_named_not_left_silently(scratch, home):
    """Killed while copying; the user then deletes the journal. Nothing
    proves the staging directory is a copy this tool made, so no run deletes
    it; but it takes room in the home quota: every run names it and says how
    to remove it."""
    args = ["-d", scratch.envs_dir, *RELOCATE]
    staging = killed_mid_copy(home, args)
    partial = tree_snapshot(staging)
    shutil.rmtree(home / ".conda/migrate/journal")

    for _ in range(2):
        rerun = run_again(args, child_env(home))
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert (
            f"warning: {staging} is a copy an interrupted run began, which no "
            "journal names any more: it takes room in your home and no run will "
            f"remove it. Remove it by hand: rm -rf {staging}" in rerun.stdout
        )
        assert tree_snapshot(staging) == partial
    assert (home / ".conda/envs/abc/conda-meta/history").is_file()


def killed_then_purged(scratch, home, *fault: str):
    """Run the command struck at ``fault``; the purge then takes ``abc``; run
    it again. What the killed run left in ``~/.conda/envs`` (each directory's
    tree, by name), and the rerun."""
    args = ["-d", scratch.envs_dir, *RELOCATE]
    killed = run_cli(home, *args, fault=fault)
    assert killed[0] == -signal.SIGKILL, killed
    left = {path: tree_snapshot(path) for path in (home / ".conda/envs").iterdir()}
    shutil.rmtree(scratch.abc)
    return left, run_again(args, child_env(home))


def test_source_purged_after_a_kill_mid_copy_keeps_the_partial_copy(scratch, home):
    """Killed while copying; the purge then takes the whole old environment.
    The partial copy is all that is left of it: kept, and named, with the
    way back (its YAML); the environment failed (exit 1), the others move."""
    left, rerun = killed_then_purged(scratch, home, "kill", "4", "utime")
    ((staging, partial),) = left.items()
    out = rerun.stdout
    assert rerun.returncode == 1, out + rerun.stderr
    assert "was not touched" not in out, out
    assert (
        f"{scratch.abc} is gone since (the scratch purge, or you, removed it), so "
        f"the unverified copy of it at {staging} is all that is left of it: it was "
        "kept." in out
    )
    yaml = home / ".conda/yaml/abc.yml"
    remove = out.index(f"Take what you need from it, then remove it: rm -rf {staging}.")
    assert remove < out.index(
        f"conda env create -p {home / '.conda/envs/abc'} -f {yaml}."
    ), "removed first: conda's clone makes its partial copy at the destination"
    assert tree_snapshot(staging) == partial
    assert (home / ".conda/envs/amd/conda-meta/history").is_file()
    assert "failed: 1" in out and "migrated: 1" in out


def test_source_purged_after_the_copy_was_verified(scratch, home):
    """Killed once the verified copy was in place, before the removal began;
    the purge then takes the old environment. The rerun finishes, and says
    the purge removed it, not that a removal was begun."""
    left, rerun = killed_then_purged(
        scratch, home, "kill-after", "1", "rename_noreplace"
    )
    copy = home / ".conda/envs/abc"
    out = rerun.stdout
    assert rerun.returncode == 0, out + rerun.stderr
    assert "that an interrupted run had begun" not in out, out
    assert (
        f"{scratch.abc} is gone since an interrupted run copied and verified it to "
        f"{copy} (the scratch purge, or you, removed it); the copy is complete." in out
    )
    assert tree_snapshot(copy) == left[copy]


@pytest.mark.parametrize("took", ["some", "all"])
def test_remains_the_purge_thinned_or_took_are_finished(scratch, home, took):
    """Killed inside the removal; the purge then deletes files of what is
    left aside, or all of it. Nothing there is newer than the verified copy:
    the rerun finishes the removal, exit 0, the copy as it was."""
    args = ["-d", scratch.envs_dir, *RELOCATE]
    env = killed_in_the_removal(home, args)
    aside = scratch.envs_dir / f".abc{REMOVING_SUFFIX}"
    if took == "all":
        shutil.rmtree(aside)
    else:
        files = [Path(top, name) for top, _, names in os.walk(aside) for name in names]
        for path in files[::2]:
            path.unlink()
    copy = tree_snapshot(home / ".conda/envs/abc")

    rerun = run_again(args, env)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert not aside.exists() and not scratch.abc.exists()
    assert tree_snapshot(home / ".conda/envs/abc") == copy
    assert "migrated: 2" in rerun.stdout


@requires_conda
def test_softlinked_env_killed_mid_copy_then_its_package_cache_purged(
    make_env, home, tmp_path
):
    """An environment of symlinks into a package cache on scratch, killed
    while copying; the purge then takes that cache. The rerun removes the
    partial copy and restores the files from the channel (conda's fetch):
    the copy holds each as a file, nothing dangles."""
    env = make_env(tmp_path / "scratch" / "conda-envs" / "abc", ["demo-app"])
    linked = softlink_by_hand(env)
    args = ["-d", env.parent, *RELOCATE]
    staging = killed_mid_copy(home, args)
    shutil.rmtree(tmp_path / "rattler-cache")

    rerun = run_again(args, child_env(home))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"Restored {len(linked)} files the purge took" in rerun.stdout
    dest = home / ".conda/envs/abc"
    for rel in linked:
        assert (dest / rel).is_file() and not (dest / rel).is_symlink(), rel
    assert not staging.exists() and not env.exists()


def test_home_quota_with_room_for_the_log_alone(scratch, home, slowfs_mount):
    """Killed in the removal; the home quota then fills but for one file,
    which the rerun's log takes. Each environment's lock is a file too: the
    rerun says for each that it was not touched and that the home is full,
    exit 1, instead of conda's report of an unexpected error."""
    args = ["-d", scratch.envs_dir, *RELOCATE]
    used = sum(len(dirs) + len(files) + 1 for _, dirs, files in os.walk(home))
    point = slowfs_mount(home.with_name("nfs-home"), home, quota_files=used + 400)
    env = killed_in_the_removal(point, args)
    (point / "data").mkdir()
    with pytest.raises(OSError, match="quota"):
        for index in range(10_000):
            (point / "data" / str(index)).touch()
    (point / "data" / "0").unlink()
    sources = tree_snapshot(scratch.envs_dir)

    rerun = run_again(args, env)
    out = rerun.stdout + rerun.stderr
    assert rerun.returncode == 1, out
    assert "Traceback" not in out and "unexpected error" not in out, out
    assert f"{scratch.amd} was not touched: its lock cannot be made" in out
    assert "Your home is full (a quota counts files as well as bytes)" in out
    assert tree_snapshot(scratch.envs_dir) == sources


def test_journal_deleted_after_a_kill_at_the_commit_lists_the_copy(scratch, home):
    """Killed right after the verified copy was renamed into a ``--dest``
    that is none of conda's envs_dirs, before it was registered; the user
    then deletes the journal. The rerun finds the copy already migrated and
    lists it in conda's registry, as the commit would have: otherwise conda
    (``conda env list``, ``conda activate`` by name) never finds it there."""
    dest_root = home / "projects" / "envs"
    args = ["-d", scratch.envs_dir, "--dest", dest_root, *RELOCATE]
    code, out, err = run_cli(home, *args, fault=("kill-after", "1", "rename_noreplace"))
    assert code == -signal.SIGKILL, out + err
    copy = dest_root / "abc"
    assert (copy / "conda-meta/history").is_file()
    assert str(copy) not in registered(home)
    shutil.rmtree(home / ".conda/migrate/journal")

    code, out, err = run_cli(home, *args)
    assert code == 0, out + err
    assert f"abc is already migrated: {copy} holds the same packages" in out
    assert (scratch.abc / "conda-meta/history").is_file()
    assert registered(home).count(str(copy)) == 1, registered(home)


@pytest.mark.parametrize("phase", ["verified", "removing"])
def test_home_mounted_again_with_another_device_number(
    scratch, home, slowfs_binary, tmp_path, phase
):
    """A job killed on a compute node, run again on the login node, or a home
    the automounter mounted again: the kernel numbers a network filesystem's
    device per client and per mount, while the server keeps its inodes. The
    rerun finds the copy the killed run verified, by what it holds, and
    finishes."""
    point, other = home.with_name("nfs-home"), tmp_path / "other"
    for directory in (point, other, tmp_path / "other-backing"):
        directory.mkdir()
    mounted = [SlowFS(slowfs_binary, home, point)]
    mounted[0].mount()
    try:
        args = ["-d", scratch.envs_dir, *RELOCATE]
        if phase == "removing":
            env = killed_in_the_removal(point, args)
        else:
            env = child_env(point)
            killed = run_cli(point, *args, fault=("kill", "1", "rename_noreplace"))
            assert killed[0] == -signal.SIGKILL, killed
        (entry,) = journal.entries(point / ".conda/migrate")
        mounted[0].unmount()
        # Another mount takes the device number the home had.
        mounted = [SlowFS(slowfs_binary, tmp_path / "other-backing", other)]
        mounted[0].mount()
        mounted.append(SlowFS(slowfs_binary, home, point))
        mounted[1].mount()
        assert os.stat(point).st_dev != entry.copy_dev

        rerun = run_again(args, env)

        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert "no longer there as it was made" not in rerun.stdout
        assert not list((point / ".conda/envs").glob(f"{STAGING_PREFIX}*"))
        assert not (scratch.envs_dir / "abc").exists()
        assert not (scratch.envs_dir / f".abc{REMOVING_SUFFIX}").exists()
        assert (point / ".conda/envs/abc/conda-meta").is_dir()
        assert (point / ".conda/envs/amd/conda-meta").is_dir()
        assert registered(point) == sorted(
            str(point / ".conda/envs" / name) for name in ("abc", "amd")
        )
        assert not journal.entries(point / ".conda/migrate")
    finally:
        for fs in reversed(mounted):
            fs.unmount()
