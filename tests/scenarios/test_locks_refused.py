"""A home whose filesystem refuses ``flock``: an NFS home whose lock manager
cannot be reached (ENOLCK), Lustre mounted ``noflock`` (ENOSYS), some FUSE
and CIFS mounts (EOPNOTSUPP, EINVAL). slowfs refuses it as they do. The run
stops before it touches anything, says why and what to do, exit 1: without
its locks two runs, or the tasks of a job array, could each undo the
other's edit of the same file.

These run with conda and without it (relocation, offline)."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.markers import requires_conda
from tests.support.runs import child_env, registered, run_cli
from tests.support.trees import tree_snapshot

RELOCATE = ("--all", "--method", "relocate", "--no-clean")
STRERROR = {"ENOLCK": "No locks available", "ENOSYS": "Function not implemented"}


def refusing_home(scratch, home, slowfs_mount, refusal: str):
    """``home`` seen through slowfs refusing flock with ``refusal``, its
    ``.bashrc`` activating ``abc`` by its scratch path."""
    point = slowfs_mount(home.with_name("nfs-home"), home, flock=refusal)
    (point / ".bashrc").write_text(f"conda activate {scratch.abc}\n")
    return point


def assert_untouched(out: str, point, scratch, sources, bashrc: str) -> None:
    assert "Traceback" not in out and "unexpected error" not in out, out
    assert tree_snapshot(scratch.envs_dir) == sources
    assert not (point / ".conda/envs").exists()
    assert (point / ".bashrc").read_text() == bashrc
    assert registered(point) == []


@pytest.mark.parametrize("refusal", ["ENOLCK", "ENOSYS"])
@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param((), id="console-script"),
        pytest.param(("conda", "migrate"), id="conda-migrate", marks=requires_conda),
    ],
)
def test_refused_locks_stop_the_run_before_anything(
    scratch, home, slowfs_mount, refusal, prefix
):
    point = refusing_home(scratch, home, slowfs_mount, refusal)
    sources, bashrc = tree_snapshot(scratch.envs_dir), (point / ".bashrc").read_text()
    args = [*prefix, "-d", scratch.envs_dir, *RELOCATE]

    code, out, err = run_cli(point, *args, env=child_env(point))

    assert code == 1, out + err
    said = " ".join((out + err).split())
    locks = point / ".conda/migrate/locks"
    assert (
        f"Nothing was done: conda-migrate cannot lock files in {locks}: its "
        f"filesystem refuses flock ({STRERROR[refusal]})." in said
    ), said
    assert "Your environments and files are untouched" in said, said
    assert_untouched(out + err, point, scratch, sources, bashrc)


def test_a_dry_run_says_the_locks_are_refused(scratch, home, slowfs_mount):
    """What the real run would stop at, and nothing made in the home."""
    point = refusing_home(scratch, home, slowfs_mount, "ENOLCK")
    sources, bashrc = tree_snapshot(scratch.envs_dir), (point / ".bashrc").read_text()
    before = tree_snapshot(point)

    code, out, err = run_cli(point, "-d", scratch.envs_dir, *RELOCATE, "--dry-run")

    assert code == 1, out + err
    said = " ".join((out + err).split())
    assert "its filesystem refuses flock (No locks available)" in said, said
    assert_untouched(out + err, point, scratch, sources, bashrc)
    assert tree_snapshot(point) == before


@pytest.mark.parametrize("tasks", [(), ("--tasks", "2%1")])
def test_no_job_is_submitted_that_would_stop_at_its_first_lock(
    scratch, home, slowfs_mount, tasks
):
    """Refused at the submission, where the user reads it, not in a job's
    output file later."""
    point = refusing_home(scratch, home, slowfs_mount, "ENOLCK")
    before = tree_snapshot(point)
    args = ["-d", scratch.envs_dir, "--all", *tasks, "--submit", "-t", "5"]

    code, out, err = run_cli(point, *args)

    assert code == 1, out + err
    said = " ".join((out + err).split())
    assert "its filesystem refuses flock (No locks available)" in said, said
    assert "Submitted" not in said
    assert tree_snapshot(point) == before


#: The locks a run of the two environments below asks for (strace of a run:
#: the check, the rc files' turns, then for each environment its own two,
#: the journal's and conda's environments.txt turns); the sweep refuses
#: each of them after the check in turn.
LOCKS_ASKED = 27


@pytest.mark.parametrize("granted", range(1, LOCKS_ASKED))
def test_locks_lost_midway_lose_nothing(scratch, home, slowfs_mount, granted):
    """The home's lock manager lost after ``granted`` locks (ENOLCK from
    then on): each environment is whole at its old place or at its new one
    whatever the run had done, and once locks work again the same command
    finishes the job."""
    point = home.with_name("nfs-home")
    slowfs_mount(point, home, flock="ENOLCK", flock_after=granted)
    (point / ".bashrc").write_text(f"conda activate {scratch.abc}\n")
    names = ("abc", "amd")
    sources = {name: tree_snapshot(scratch.envs_dir / name) for name in names}
    args = ["-d", scratch.envs_dir, *RELOCATE]

    code, out, err = run_cli(point, *args)

    said = " ".join((out + err).split())
    assert code == 1, said
    assert "Traceback" not in said and "unexpected error" not in said, said
    assert "its filesystem refuses flock (No locks available)" in said, said
    for name in names:
        source, copy = scratch.envs_dir / name, point / ".conda/envs" / name
        if source.exists():
            assert tree_snapshot(source) == sources[name], (name, out + err)
        else:
            assert set(tree_snapshot(copy)) == set(sources[name]), (name, out + err)
            assert f"was put back at {source}" not in said, (name, said)
    subprocess.run(["umount", point], check=True)
    slowfs_mount(point, home)

    code, out, err = run_cli(point, *args)

    assert code == 0, out + err
    for name in names:
        assert not (scratch.envs_dir / name).exists(), out + err
        assert set(tree_snapshot(point / ".conda/envs" / name)) == set(sources[name])
    assert (point / ".bashrc").read_text() == (
        f"conda activate {point / '.conda/envs/abc'}\n"
    )
    assert sorted(registered(point)) == [str(point / ".conda/envs" / n) for n in names]


#: The lock of a run of the two environments above that conda's
#: environments.txt is unregistered under, right after ``abc`` was deleted
#: (the sweep's count).
UNREGISTER_ABC = 12
#: The one before: the journal's record that abc's removal begins.
REMOVING_ABC = UNREGISTER_ABC - 1


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param((), id="console-script"),
        pytest.param(("conda", "migrate"), id="conda-migrate", marks=requires_conda),
    ],
)
def test_a_registry_refused_after_the_removal_says_it_was_removed(
    scratch, home, slowfs_mount, prefix
):
    """conda's environments.txt cannot be updated once the old environment
    was deleted: the run says it was removed after its copy was verified,
    not that it was put back, and the same command finishes the job."""
    point = home.with_name("nfs-home")
    slowfs_mount(point, home, flock="ENOLCK", flock_after=UNREGISTER_ABC)
    (point / ".conda").mkdir()
    (point / ".conda/environments.txt").write_text(f"{scratch.abc}\n")
    source, dest = scratch.abc, point / ".conda/envs/abc"
    files = set(tree_snapshot(source))
    args = [*prefix, "-d", scratch.envs_dir, *RELOCATE]

    code, out, err = run_cli(point, *args, env=child_env(point))

    said = " ".join((out + err).split())
    assert code == 1, said
    # Where the lock was refused: abc deleted, still in conda's list.
    assert not source.exists() and set(tree_snapshot(dest)) == files, said
    assert str(source) in registered(point), said
    assert "put back" not in said, said
    assert (
        f"Copied to {dest}, and removed the old environment {source} after its "
        "copy was verified; then updating conda's list of environments "
        "(environments.txt) failed: [Errno 37] No locks available" in said
    ), said
    assert (
        f"The environment is whole at {dest}. Run the same command again once "
        "that is fixed: it finishes the migration" in said
    ), said
    subprocess.run(["umount", point], check=True)
    slowfs_mount(point, home)

    code, out, err = run_cli(point, *args, env=child_env(point))

    assert code == 0, out + err
    assert str(source) not in registered(point), out + err
    assert str(dest) in registered(point), out + err


def test_a_journal_refused_before_the_removal_says_nothing_was_removed(
    scratch, home, slowfs_mount
):
    """The journal cannot record that the removal begins: the old
    environment is not touched, and the run says so (it said what was left
    of it had been put back), and the same command finishes the job."""
    point = home.with_name("nfs-home")
    slowfs_mount(point, home, flock="ENOLCK", flock_after=REMOVING_ABC)
    source, dest = scratch.abc, point / ".conda/envs/abc"
    before = tree_snapshot(source)
    args = ["-d", scratch.envs_dir, *RELOCATE]

    code, out, err = run_cli(point, *args, env=child_env(point))

    said = " ".join((out + err).split())
    assert code == 1, said
    assert tree_snapshot(source) == before, said
    assert set(tree_snapshot(dest)) == set(before), said
    assert "put back" not in said, said
    assert (
        f"Copied to {dest}, but {source} was not removed: recording the removal "
        "in the journal failed first: [Errno 37] No locks available" in said
    ), said
    assert "Both environments are whole. Run the same command again" in said, said
    subprocess.run(["umount", point], check=True)
    slowfs_mount(point, home)

    code, out, err = run_cli(point, *args, env=child_env(point))

    assert code == 0, out + err
    assert not source.exists(), out + err
    assert str(dest) in registered(point), out + err
