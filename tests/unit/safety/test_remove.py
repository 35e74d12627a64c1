"""The removal deletes across many threads: it must still never reach out of
the environment through a symlink, and must put back what it could not delete."""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import subprocess
import sys

import pytest

from conda_migrate_plugin import snapshot
from conda_migrate_plugin.discover import REMOVING_SUFFIX
from conda_migrate_plugin.exceptions import MigrateError
from conda_migrate_plugin.safety import noreplace, remove
from conda_migrate_plugin.safety.remove import put_back_remains, remove_environment
from tests.support.trees import tree_snapshot


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


@pytest.mark.parametrize("kind", ["bind", "tmpfs unlisted", "tmpfs after the check"])
def test_removal_never_crosses_a_mount(tmp_path, monkeypatch, kind):
    """Defence in depth, under the preflight's refusal: a directory mounted
    inside the environment keeps the whole environment, and its own files;
    one the mount table does not show is found by its device number, before
    anything is deleted; and one mounted after the check, by the device of
    the directory the deletion opens."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting needs root and mount(8)")
    env = tmp_path / "envs/env"
    _tree(env)
    project = tmp_path / "project"
    project.mkdir()
    point = env / "d3/project"
    point.mkdir()
    tmpfs = ["-t", "tmpfs", "-o", "size=1m", "cm-test"]
    unchanged = None
    says = f"{point} is a mount point"
    if kind == "bind":
        args = ["--bind", project, point]
    elif kind == "tmpfs unlisted":
        args = [*tmpfs, point]
        monkeypatch.setattr(snapshot, "mount_points", lambda root: set())
        monkeypatch.setattr(remove, "mount_points", lambda root: set())
    else:
        args = ["--version"]
        aside = tmp_path / f"envs/.env{REMOVING_SUFFIX}"

        def unchanged(now):
            subprocess.run(["mount", *tmpfs, aside / "d3/project"], check=True)
            (aside / "d3/project/paper.tex").write_text("results\n")

        says = "another filesystem is mounted here"
    run = subprocess.run(["mount", *args], capture_output=True)
    if run.returncode:
        pytest.skip(f"cannot mount here: {run.stderr.decode().strip()}")
    if unchanged is None:
        (point / "paper.tex").write_text("results\n")
    try:
        with pytest.raises((MigrateError, OSError), match=says):
            remove_environment(env, jobs=8, unchanged=unchanged)
        assert (point / "paper.tex").read_text() == "results\n"
    finally:
        subprocess.run(["umount", "-l", point], check=True)
    assert os.listdir(tmp_path / "envs") == ["env"]
    if unchanged is None:  # refused before anything went
        assert (env / "d7/e1/f").read_bytes() == b"x" * 7


def test_entry_made_after_the_check_is_not_deleted(tmp_path):
    """A process still in the renamed tree writes a file after the walk that
    was checked: it is not deleted unseen, the removal stops and puts the
    rest back."""
    env = tmp_path / "envs/env"
    _tree(env)
    aside = tmp_path / f"envs/.env{REMOVING_SUFFIX}"

    def unchanged(now):
        (aside / "d5/e2/result.txt").write_text("written late\n")

    with pytest.raises(OSError, match="not empty"):
        remove_environment(env, jobs=8, unchanged=unchanged)
    assert os.listdir(tmp_path / "envs") == ["env"]
    assert (env / "d5/e2/result.txt").read_text() == "written late\n"


def test_directory_swapped_for_a_symlink_after_the_check(tmp_path):
    """A directory of the renamed tree replaced after the check by a symlink
    to one outside, holding the same names: nothing outside is deleted."""
    env = tmp_path / "envs/env"
    _tree(env)
    outside = tmp_path / "outside"
    (outside / "e2").mkdir(parents=True)
    (outside / "e2/f").write_text("keep")
    (outside / "top").write_text("keep")
    aside = tmp_path / f"envs/.env{REMOVING_SUFFIX}"

    def unchanged(now):
        (aside / "d5").rename(tmp_path / "d5-moved")
        (aside / "d5").symlink_to(outside)

    with pytest.raises(OSError):
        remove_environment(env, jobs=8, unchanged=unchanged)
    assert (outside / "e2/f").read_text() == "keep"
    assert (outside / "top").read_text() == "keep"
    assert (env / "d5").is_symlink()
    assert (tmp_path / "d5-moved/e2/f").read_bytes() == b"x" * 5


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


def _refused(*args):
    """``renameat2`` as a filesystem without ``RENAME_NOREPLACE`` answers
    (NFS, a FUSE daemon that does not implement it)."""
    ctypes.set_errno(errno.EINVAL)
    return -1


#: How the put-back renames: the kernel's own check, or the placeholder taken
#: first where the flag is refused or the C library has no ``renameat2``.
WAYS = {
    "renameat2": None,
    "flag refused": lambda: _refused,
    "no renameat2": lambda: None,
}


@pytest.mark.parametrize("way", WAYS)
def test_empty_directory_made_at_the_old_name_is_never_replaced(
    tmp_path, monkeypatch, way
):
    """A job's ``mkdir $CONDA_PREFIX`` while the environment is renamed
    aside and found changed makes an empty directory at the old name, which
    a plain rename back would replace without a word: it is kept as it is
    (the same directory), the rest stays aside, and the error says where."""
    if WAYS[way] is not None:
        monkeypatch.setattr(noreplace, "_renameat2", WAYS[way])
    _made_anew_during_the_check(tmp_path / "envs/env")


def test_put_back_where_the_filesystem_refuses_the_flag(tmp_path, slowfs_mount):
    """On a filesystem that answers ``RENAME_NOREPLACE`` with ``EINVAL``, as
    NFS does (slowfs told to): the old name made anew meanwhile is kept all
    the same, and with nothing there what is left goes back whole."""
    point = slowfs_mount(tmp_path / "nfs", us=0, rename_flags=False)
    (point / "a").mkdir()
    renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    assert renameat2(-100, bytes(point / "a"), -100, bytes(point / "b"), 1) == -1
    assert ctypes.get_errno() == errno.EINVAL, "the filesystem takes the flag"
    _made_anew_during_the_check(point / "envs/env")
    env = point / "envs/other"
    _tree(env)
    before = tree_snapshot(env)

    def changed(now):
        raise MigrateError(f"{env} changed since it was copied")

    with pytest.raises(MigrateError, match="changed since it was copied"):
        remove_environment(env, jobs=8, unchanged=changed)
    assert tree_snapshot(env) == before
    assert sorted(os.listdir(point / "envs")) == [
        f".env{REMOVING_SUFFIX}",
        "env",
        "other",
    ]


def _made_anew_during_the_check(env):
    """The removal of ``env`` found changed once aside, while a job makes
    the old name anew, empty: the job's directory is kept, the rest is left
    aside, and the error says so."""
    _tree(env)
    before = tree_snapshot(env)
    made = []

    def changed(now):
        env.mkdir()
        made.append(env.stat().st_ino)
        raise MigrateError(f"{env} changed since it was copied")

    with pytest.raises(MigrateError) as raised:
        remove_environment(env, jobs=8, unchanged=changed)
    aside = env.with_name(f".env{REMOVING_SUFFIX}")
    assert env.stat().st_ino == made[0], "the directory made meanwhile was replaced"
    assert os.listdir(env) == []
    assert tree_snapshot(aside) == before
    assert f"{env} changed since it was copied" in str(raised.value)
    assert f"it is at {aside}" in str(raised.value)


@pytest.mark.parametrize("way", WAYS)
def test_remains_are_never_put_back_over_a_directory_made_at_any_instant(
    tmp_path, monkeypatch, way
):
    """A later run puts back what a killed removal left aside, while a job
    makes the old name anew (``mkdir $CONDA_PREFIX``, left empty), at each
    call the put-back makes in turn, after any look at the name: the job's
    directory is kept as it is, and so are the remains, aside, and the error
    says where; or the job finds the name taken (made nothing), and the
    remains are back."""
    if WAYS[way] is not None:
        monkeypatch.setattr(noreplace, "_renameat2", WAYS[way])
    env, before = _put_back_remains_of(tmp_path / "count")
    instants = _calls_of(lambda: put_back_remains(env))
    assert tree_snapshot(env) == before
    assert instants > 3, instants
    for instant in range(1, instants + 1):
        env, before = _put_back_remains_of(tmp_path / str(instant))
        aside = env.with_name(f".env{REMOVING_SUFFIX}")
        made = []

        def job(frame, event, arg, env=env, made=made):
            if event in ("call", "c_call") and len(made) < instant:
                made.append(None)
                if len(made) == instant:
                    try:
                        env.mkdir()
                    except FileExistsError:
                        return
                    made[-1] = env.stat().st_ino

        refused = _profiled(job, lambda env=env: put_back_remains(env))
        if refused is not None:
            assert made[-1] is not None, f"refused at {instant}: {refused}"
            assert str(aside) in str(refused)
            assert env.stat().st_ino == made[-1], f"replaced at {instant}"
            assert os.listdir(env) == []
            assert tree_snapshot(aside) == before
        else:
            assert made[-1] is None, f"the job's directory replaced at {instant}"
            assert not aside.exists()
            assert tree_snapshot(env) == before


def _put_back_remains_of(root):
    """An environment renamed aside by a removal killed midway, and its
    snapshot."""
    env = root / "envs/env"
    (env / "conda-meta").mkdir(parents=True)
    (env / "conda-meta/history").write_text("==> 2024-01-01 <==\n")
    before = tree_snapshot(env)
    env.rename(env.with_name(f".env{REMOVING_SUFFIX}"))
    return env, before


def _calls_of(action):
    """How many calls (Python and C) ``action`` makes."""
    calls = []

    def count(frame, event, arg):
        if event in ("call", "c_call"):
            calls.append(event)

    assert _profiled(count, action) is None
    return len(calls)


def _profiled(hook, action):
    """Run ``action`` with ``hook`` seeing each of its calls; the
    ``MigrateError`` it raised, if any."""
    sys.setprofile(hook)
    try:
        action()
    except MigrateError as err:
        return err
    finally:
        sys.setprofile(None)
    return None
