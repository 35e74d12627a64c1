"""The old environment is removed only on proof: copied (file by file, by
either engine), durable, the user's own, and unchanged since the copy. Each
test tries to make a removal destroy something and checks that nothing was.

The power cut is in ``test_powercut.py``; these run with conda and without.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from conda_migrate_plugin.backends.clone import carry_omitted
from conda_migrate_plugin.names import MARKER, STAGING_PREFIX
from conda_migrate_plugin.relocation.relocate import relocate
from conda_migrate_plugin.relocation.verify import verify_files
from conda_migrate_plugin.result import Phase
from conda_migrate_plugin.safety import journal
from tests.support.markers import requires_conda
from tests.support.runs import child_env, faultpoint, registered, wait_until_stopped
from tests.support.trees import chown_tree, tree_snapshot
from tests.support.users import OTHER_USER, USER, user_home

RELOCATE = ("--all", "--method", "relocate", "--no-clean")

#: What conda's clone leaves out of a copy (read in conda.misc and
#: conda.core.envs_manager): each must reach the copy, or the source stay.
OMITTED_BY_CLONE = {
    "notes.txt~": b"an editor's backup\n",
    "info/about.txt": b"top-level info/\n",
    "pkgs/readme.txt": b"top-level pkgs/\n",
    "conda-bld/notes.txt": b"top-level conda-bld/\n",
    "users/me.txt": b"top-level users/\n",
    "LICENSE.txt": b"the env's own licence\n",
    "conda-meta/my-notes.txt": b"an extra file in conda-meta\n",
    "bin/activate": b"#!/bin/sh\n# a user's own activate script\n",
}


def plant_omitted(prefix: Path) -> None:
    for rel, data in OMITTED_BY_CLONE.items():
        (prefix / rel).parent.mkdir(parents=True, exist_ok=True)
        (prefix / rel).write_bytes(data)
    (prefix / "share" / "empty-dir").mkdir(parents=True)
    (prefix / "share" / "read-only").mkdir()
    (prefix / "share" / "read-only" / "data.txt").write_text("kept\n")
    (prefix / "share" / "read-only").chmod(0o555)
    (prefix / "etc" / "self-link").symlink_to(prefix / "etc" / "demo" / "demo.conf")


def run_cli(home: Path, *args, fault: tuple[str, ...] = ()) -> subprocess.Popen:
    return subprocess.Popen(
        faultpoint(*fault, args=args),
        env=child_env(home),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


# -- 1. what the engine leaves out ---------------------------------------------


def test_carry_brings_every_path_conda_clone_leaves_out(make_env, tmp_path):
    """A copy missing what conda's clone skips fails the file check; once
    carried, every path is there with the source's content and modes."""
    source = make_env(tmp_path / "scratch" / "abc", ["demo-app"], pip=True)
    plant_omitted(source)
    dest = tmp_path / "home" / "abc"
    relocate(source, dest, dest)
    for rel in OMITTED_BY_CLONE:
        (dest / rel).unlink()
    shutil.rmtree(dest / "share" / "empty-dir")
    (dest / "share" / "read-only").chmod(0o755)
    (dest / "etc" / "self-link").unlink()
    (dest / "etc" / "self-link").symlink_to(source / "etc" / "demo" / "demo.conf")
    missing = verify_files(source, dest, dest).problems
    assert any("notes.txt~: missing in the copy" in p for p in missing), missing
    assert any("share/empty-dir: missing in the copy" in p for p in missing)

    carried = carry_omitted(source, dest)

    assert set(OMITTED_BY_CLONE) <= set(carried)
    assert not verify_files(source, dest, dest).problems
    for rel, data in OMITTED_BY_CLONE.items():
        assert (dest / rel).read_bytes() == data, rel
    assert (dest / "share" / "empty-dir").is_dir()
    assert (dest / "share" / "read-only").stat().st_mode & 0o777 == 0o555
    assert os.readlink(dest / "etc" / "self-link") == str(
        dest / "etc" / "demo" / "demo.conf"
    )
    (source / "share" / "read-only").chmod(0o755)
    (dest / "share" / "read-only").chmod(0o755)


@requires_conda
def test_clone_engine_keeps_every_file_before_removing(scratch, home, conda_cli):
    plant_omitted(scratch.abc)
    before = tree_snapshot(scratch.abc)
    out, err, code = conda_cli(
        "migrate", "-d", scratch.abc, "--all", "--method", "clone", "--no-clean"
    )
    assert code == 0, out + err
    assert not scratch.abc.exists()
    new = home / ".conda/envs/abc"
    for rel, data in OMITTED_BY_CLONE.items():
        assert (new / rel).read_bytes() == data, rel
    assert (new / "share/empty-dir").is_dir()
    after = tree_snapshot(new)
    assert after["share/read-only"] == before["share/read-only"]
    assert after["etc/self-link"] == ("link", f"{new}/etc/demo/demo.conf")


def test_text_still_naming_the_old_prefix_keeps_the_source(scratch, home, migrate):
    """Checked as it is copied: latin-1 text no package describes, which the
    engine cannot rewrite, would leave the copy pointing at the old place."""
    notes = scratch.abc / "etc/notes.txt"
    notes.write_bytes(f"caf\xe9 in {scratch.abc}/share\n".encode("latin-1"))
    before = tree_snapshot(scratch.abc)
    out, err, code = migrate("-d", scratch.abc, *RELOCATE)
    assert code == 1, out + err
    assert f"etc/notes.txt: still names the old prefix {scratch.abc}" in out
    assert "The old environment was left untouched and the copy removed." in out
    assert tree_snapshot(scratch.abc) == before
    assert list((home / ".conda/envs").iterdir()) == []
    assert str(home / ".conda/envs/abc") not in registered(home)


def test_a_package_file_edited_in_place_moves_as_it_is_and_is_logged(
    scratch, home, migrate
):
    """The same size, other bytes: the user's edit is what moves, and the
    log says the file no longer matches its package."""
    data = scratch.abc / "share/demo/data.txt"
    edited = data.read_bytes().upper()
    data.unlink()  # break the hardlink into the package cache before editing
    data.write_bytes(edited)
    out, err, code = migrate("-d", scratch.abc, *RELOCATE)
    assert code == 0, out + err
    assert (home / ".conda/envs/abc/share/demo/data.txt").read_bytes() == edited
    (log,) = (home / ".conda/migrate/logs").iterdir()
    assert "note: share/demo/data.txt: the source already differs from its record" in (
        log.read_text()
    )


# -- 2. nested environments ----------------------------------------------------


def test_environment_holding_another_is_refused_with_the_list(
    make_env, scratch, home, migrate
):
    """A personal miniconda in $SCRATCH: its envs/B and pkgs/ go first."""
    inner = make_env(scratch.abc / "envs" / "inner", ["demo-text"])
    pkgs = scratch.abc / "pkgs"
    pkgs.mkdir()
    (pkgs / "urls.txt").write_text("")
    (pkgs / "demo-text-1.0-0.tar.bz2").write_bytes(b"cached")
    (home / ".conda").mkdir()
    (home / ".conda/environments.txt").write_text(f"{scratch.abc}\n{inner}\n")
    before = tree_snapshot(scratch.abc)
    out, err, code = migrate("-d", scratch.abc, *RELOCATE)
    assert code == 1, out + err
    assert "holds other environments or package caches" in out
    assert f"  {inner} (an environment)\n" in out
    assert f"  {pkgs} (a package cache)\n" in out
    assert (
        f"Migrate the environments first (conda migrate -d {inner.parent} --all)" in out
    )
    assert "move it out of this environment, then run this again" in out
    assert tree_snapshot(scratch.abc) == before
    assert not (home / ".conda/envs/abc").exists()
    assert str(inner) in registered(home)


def test_a_package_cache_inside_is_moved_out_and_then_the_environment_moves(
    scratch, home, migrate, tmp_path
):
    """A personal miniconda whose environments moved already: only its pkgs/
    is left inside, which no ``-d`` can migrate. The hint says what works
    (move it out, not "migrate it first"), and once that is done the
    environment moves."""
    pkgs = scratch.abc / "pkgs"
    pkgs.mkdir()
    (pkgs / "urls.txt").write_text("")
    out, err, code = migrate("-d", scratch.abc, *RELOCATE)
    assert code == 1, out + err
    assert f"  {pkgs} (a package cache)\n" in out
    assert "Migrate the environments first" not in out
    assert "move it out of this environment, then run this again" in out

    pkgs.rename(tmp_path / "old-pkgs")
    out, err, code = migrate("-d", scratch.abc, *RELOCATE)

    assert code == 0, out + err
    assert (home / ".conda/envs/abc/conda-meta/history").is_file()
    assert not scratch.abc.exists()


# -- 4. other users' files -----------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
@pytest.mark.parametrize(
    "where", [".", "lib/python3.11/site-packages/extra_tool/__init__.py"]
)
def test_environment_with_another_users_files_is_not_removed(
    scratch, home, migrate, where
):
    os.chown(scratch.abc / where, 4321, 4321, follow_symlinks=False)
    before = tree_snapshot(scratch.abc)
    out, err, code = migrate("-d", scratch.envs_dir, *RELOCATE)
    assert code == 1, out + err
    assert "holds files of another user" in out
    assert f"{scratch.abc / where if where != '.' else scratch.abc} (owner: " in out
    assert tree_snapshot(scratch.abc) == before
    assert os.stat(scratch.abc / where).st_uid == 4321
    assert not (home / ".conda/envs/abc").exists()
    assert not scratch.amd.exists(), "the user's own environment still migrates"

    out, err, code = migrate("-d", scratch.abc, *RELOCATE, "--keep-old")
    assert code == 0, out + err
    assert tree_snapshot(scratch.abc) == before
    assert (home / ".conda/envs/abc/conda-meta/history").is_file()


def test_root_default_discovery_ignores_other_homes(scratch, home, tmp_path, migrate):
    """As root, conda lists every home's environments; only root's own are
    candidates for the default discovery."""
    if os.geteuid() != 0:
        pytest.skip("the rule is about root")
    (home / ".conda").mkdir()
    (home / ".conda/environments.txt").write_text(f"{scratch.amd}\n")
    out, err, code = migrate(*RELOCATE)
    assert code == 0, out + err
    assert not scratch.amd.exists()
    assert scratch.abc.exists(), "not in root's own registry: not root's to move"


# -- 5. and 6. the journal ------------------------------------------------------


def entry_for(home: Path, source: Path, **fields) -> journal.Entry:
    dest = home / ".conda/envs" / source.name
    entry = journal.Entry(
        source.name, str(source), str(dest), Phase.COPYING, "relocate", "0" * 32
    )
    return replace(entry, **fields)


def plant(home: Path, entry: journal.Entry) -> None:
    state = home / ".conda/migrate"
    (state / "journal").mkdir(parents=True, exist_ok=True, mode=0o700)
    state.chmod(0o700)
    journal.record(state, entry)


def test_stale_journal_entry_never_deletes_a_later_environment(scratch, home, migrate):
    """Killed after the journal said 'copying', before the copy existed; the
    user then made ~/.conda/envs/abc from the YAML. No later run removes it."""
    plant(home, entry_for(home, scratch.abc))
    theirs = home / ".conda/envs/abc"
    (theirs / "conda-meta").mkdir(parents=True)
    (theirs / "conda-meta/history").write_text("made by hand\n")
    (theirs / "work.txt").write_text("precious\n")
    out, err, code = migrate("-d", scratch.amd, *RELOCATE)
    assert code == 0, out + err
    assert (theirs / "work.txt").read_text() == "precious\n"
    assert journal.entries(home / ".conda/migrate") == []


def test_copy_of_a_killed_run_is_removed_only_with_its_marker(scratch, home, migrate):
    """Same inode recorded but no marker: not provably the run's copy."""
    dest = home / ".conda/envs/abc"
    dest.mkdir(parents=True)
    (dest / "work.txt").write_text("precious\n")
    st = dest.stat()
    plant(home, entry_for(home, scratch.abc, copy_dev=st.st_dev, copy_ino=st.st_ino))
    out, err, code = migrate("-d", scratch.amd, *RELOCATE)
    assert code == 0, out + err
    assert (dest / "work.txt").read_text() == "precious\n"

    (dest / MARKER).write_text("1" * 32)
    plant(
        home,
        entry_for(
            home, scratch.abc, copy_dev=st.st_dev, copy_ino=st.st_ino, run="1" * 32
        ),
    )
    out, err, code = migrate("-d", scratch.amd, *RELOCATE)
    assert f"left an unverified copy of {scratch.abc} at {dest}; it was removed" in out
    assert not dest.exists()


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "..", "dest": "HOME", "source": "THESIS/.."},
        {"name": "thesis", "dest": "THESIS", "source": "/scratch/x/thesis"},
        {"phase": "removing"},
        {"copy_ino": "1"},
    ],
)
def test_malformed_journal_entries_are_ignored(scratch, home, migrate, fields):
    thesis = home / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("years of work\n")
    values = {
        k: str(v).replace("THESIS", str(thesis)).replace("HOME", str(home))
        if isinstance(v, str)
        else v
        for k, v in fields.items()
    }
    state = home / ".conda/migrate/journal"
    state.mkdir(parents=True, mode=0o700)
    state.parent.chmod(0o700)
    entry = {**vars(entry_for(home, scratch.abc)), **values}
    (state / "planted.json").write_text(json.dumps(entry))
    out, err, code = migrate("-d", scratch.amd, *RELOCATE)
    assert code == 0, out + err
    assert (thesis / "chapter1.tex").read_text() == "years of work\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_journal_entry_of_another_user_is_ignored(scratch, home, migrate):
    dest = home / ".conda/envs/abc"
    dest.mkdir(parents=True)
    (dest / "work.txt").write_text("precious\n")
    st = dest.stat()
    entry = entry_for(
        home, scratch.abc, copy_dev=st.st_dev, copy_ino=st.st_ino, run="1" * 32
    )
    (dest / MARKER).write_text("1" * 32)
    plant(home, entry)
    os.chown(journal.path_for(home / ".conda/migrate", dest), 4321, 4321)
    out, err, code = migrate("-d", scratch.amd, *RELOCATE)
    assert code == 0, out + err
    assert (dest / "work.txt").read_text() == "precious\n"


@pytest.mark.parametrize("mode", [0o770, 0o777])
def test_state_directory_writable_by_others_is_refused(scratch, home, migrate, mode):
    state = home / ".conda/migrate"
    state.mkdir(parents=True)
    state.chmod(mode)
    before = tree_snapshot(scratch.envs_dir)
    out, err, code = migrate("-d", scratch.envs_dir, *RELOCATE)
    assert code == 2, out + err
    assert f"{state} can be written by other users" in err + out
    assert f"chmod 700 {state}" in err + out
    assert tree_snapshot(scratch.envs_dir) == before


def test_state_directory_is_private(scratch, home, migrate):
    (home / ".conda").mkdir(mode=0o2775)
    out, err, code = migrate("-d", scratch.amd, *RELOCATE)
    assert code == 0, out + err
    state = home / ".conda/migrate"
    parts = ("journal", "locks", "logs", "moved")
    for path in (state, *(state / part for part in parts)):
        assert path.stat().st_mode & 0o777 == 0o700, path
    (log,) = (state / "logs").iterdir()
    assert log.stat().st_mode & 0o777 == 0o600
    (moved,) = (state / "moved").iterdir()
    assert moved.stat().st_mode & 0o777 == 0o600


# -- 7. edits between the copy and the removal -----------------------------------


def test_edit_after_a_failed_removal_keeps_both(scratch, home):
    """Killed before the removal (the rename aside); the user edits the old
    environment; the rerun keeps both and says why, exit 1."""
    args = ("-d", scratch.abc, *RELOCATE)
    killed = run_cli(home, *args, fault=("kill", "1", "rename"))
    out = killed.communicate(timeout=120)[0]
    assert killed.returncode == -signal.SIGKILL, out
    (entry,) = journal.entries(home / ".conda/migrate")
    assert entry.phase == Phase.REMOVING
    conf = scratch.abc / "etc/demo/demo.conf"
    conf.write_text("edited after the copy\n")
    (scratch.abc / "share/new-file.txt").write_text("made after the copy\n")

    rerun = run_cli(home, *args)
    out = rerun.communicate(timeout=120)[0]
    assert rerun.returncode == 1, out
    assert f"{scratch.abc} changed since it was copied" in out
    assert "etc/demo/demo.conf: changed" in out
    assert "share/new-file.txt: added" in out
    assert conf.read_text() == "edited after the copy\n"
    assert (home / ".conda/envs/abc/conda-meta/history").is_file()
    assert "copied: 1" in out


#: The commit's call that renames the verified copy into place.
COMMIT_RENAME = ("1", "rename_noreplace")


def test_stop_during_the_commit_says_the_copy_is_in_place(scratch, home):
    """SIGTERM while the verified copy is renamed into place: the stop waits
    for the commit, says where the copy is, and the rerun finishes."""
    args = ("-d", scratch.abc, *RELOCATE)
    stopped = run_cli(home, *args, fault=("term", *COMMIT_RENAME))
    out = stopped.communicate(timeout=120)[0]
    assert stopped.returncode == 128 + signal.SIGTERM, out
    dest = home / ".conda/envs/abc"
    assert f"the verified copy is at {dest} and {scratch.abc} is untouched" in out
    assert "partial copy was removed" not in out
    assert (dest / "conda-meta/history").is_file()
    assert (scratch.abc / "conda-meta/history").is_file()
    rerun = run_cli(home, *args)
    out = rerun.communicate(timeout=120)[0]
    assert rerun.returncode == 0, out
    assert not scratch.abc.exists()
    assert (dest / "conda-meta/history").is_file()


#: Where a run is held still while the destination is made: mid-copy, and
#: right before the commit's rename into place.
DEST_MADE = {"while copying": ("3", "utime"), "at the commit": COMMIT_RENAME}


@pytest.mark.parametrize("moment", DEST_MADE)
def test_destination_made_meanwhile_is_never_replaced(scratch, home, moment):
    """The destination was free when the run looked, then something made it
    (a user's ``mkdir ~/.conda/envs/abc``, another tool), left empty: a plain
    rename would replace it without a word. It is kept as it is, the source
    is untouched, the verified copy removed, and the run says what to do."""
    _assert_made_meanwhile_is_kept(scratch, home, DEST_MADE[moment])


def test_destination_made_at_the_commit_on_nfs_is_never_replaced(
    scratch, home, slowfs_mount
):
    """The same where the filesystem refuses ``RENAME_NOREPLACE``, as NFS
    does (slowfs told to), and the directory is made after the refusal (the
    kernel itself refuses the flag over a name it knows taken): the name is
    then taken first, which fails."""
    slowfs_mount(home / ".conda/envs", us=0, rename_flags=False)
    _assert_made_meanwhile_is_kept(scratch, home, ("1", "_rename_over_placeholder"))


def _assert_made_meanwhile_is_kept(scratch, home, fault: tuple[str, str]) -> None:
    """A run held still at ``fault`` while a directory is made at the
    destination, empty, and listed in conda's registry (as ``conda create
    -p`` lists what it makes): both are kept, and listed, and the run says
    why (exit 1)."""
    before = tree_snapshot(scratch.abc)
    held = run_cli(home, "-d", scratch.abc, *RELOCATE, fault=("stop", *fault))
    dest, made, out = _made_while_held(home, held)
    assert dest.stat().st_ino == made, out
    assert os.listdir(dest) == [], out
    assert held.returncode == 1, out
    assert (
        f"{dest} was made by something else after this run found the name free; "
        f"it was left as it is, and {scratch.abc} is untouched. "
        "The verified copy was removed." in out
    )
    assert f"Move {dest} out of the way, or choose another --dest" in out
    assert tree_snapshot(scratch.abc) == before
    assert os.listdir(dest.parent) == ["abc"], "the copy was left behind"
    assert journal.entries(home / ".conda/migrate") == []
    assert str(dest) in registered(home), "another's directory was unlisted"


def _made_while_held(home, held) -> tuple[Path, int, str]:
    """Once the run ``held`` is stopped, the destination made empty and
    listed in conda's registry (as ``conda create -p`` lists what it
    makes); the run let go to its end. Its inode, and what the run said."""
    wait_until_stopped(held)
    dest = home / ".conda/envs/abc"
    dest.mkdir()
    with (home / ".conda/environments.txt").open("a") as registry:
        registry.write(f"{dest}\n")
    made = dest.stat().st_ino
    os.kill(held.pid, signal.SIGCONT)
    return dest, made, held.communicate(timeout=300)[0]


@requires_conda
def test_destination_made_before_the_clone_is_kept_and_said(scratch, home):
    """conda's clone copies at the destination itself: a directory made
    there after the preflight found the name free, before the clone starts,
    is kept as it is (never cloned into, never removed), the source is
    untouched, and the run says so and what to do (not a bare "File
    exists")."""
    before = tree_snapshot(scratch.abc)
    args = ("-d", scratch.abc, "--all", "--method", "clone", "--no-clean")
    held = run_cli(home, *args, fault=("stop", "1", "_clone"))
    dest, made, out = _made_while_held(home, held)
    assert held.returncode == 1, out
    assert dest.stat().st_ino == made and os.listdir(dest) == [], out
    assert (
        f"{dest} was made by something else after this run found the name free; "
        f"it was left as it is, and {scratch.abc} is untouched. Nothing was copied."
        in out
    )
    assert f"Move {dest} out of the way, or choose another --dest" in out
    assert "File exists" not in out
    assert tree_snapshot(scratch.abc) == before
    assert os.listdir(dest.parent) == ["abc"], out
    assert journal.entries(home / ".conda/migrate") == []
    assert str(dest) in registered(home), "another's directory was unlisted"


def test_destination_made_after_a_kill_at_the_commit_keeps_both(scratch, home):
    """Killed right before the verified copy is renamed into place; then
    something makes the destination. The rerun keeps it, keeps the verified
    copy where it is and says where; once the destination is moved out of
    the way, the next run finishes from that copy."""
    args = ("-d", scratch.abc, *RELOCATE)
    killed = run_cli(home, *args, fault=("kill", *COMMIT_RENAME))
    out = killed.communicate(timeout=120)[0]
    assert killed.returncode == -signal.SIGKILL, out
    (entry,) = journal.entries(home / ".conda/migrate")
    assert entry.phase == Phase.VERIFIED and entry.staging, entry
    staging, dest = Path(entry.staging), home / ".conda/envs/abc"
    copied = tree_snapshot(staging)
    before = tree_snapshot(scratch.abc)
    dest.mkdir()
    made = dest.stat().st_ino

    rerun = run_cli(home, *args)
    out = rerun.communicate(timeout=120)[0]
    assert rerun.returncode == 1, out
    assert dest.stat().st_ino == made and os.listdir(dest) == [], out
    assert f"{dest} was made by something else after this run" in out
    assert f"The verified copy is kept at {staging}" in out
    assert tree_snapshot(staging) == copied
    assert tree_snapshot(scratch.abc) == before

    dest.rmdir()
    rerun = run_cli(home, *args)
    out = rerun.communicate(timeout=120)[0]
    assert rerun.returncode == 0, out
    assert tree_snapshot(dest) == copied
    assert not scratch.abc.exists() and not staging.exists()
    assert journal.entries(home / ".conda/migrate") == []


def test_change_during_the_copy_keeps_the_source(scratch, home):
    """A conda install into the source while it is being copied: the run is
    held still mid-copy, a file is added, and the run must not remove it."""
    before_files = set(tree_snapshot(scratch.abc))
    held = run_cli(home, "-d", scratch.abc, *RELOCATE, fault=("stop", "3", "utime"))
    wait_until_stopped(held)
    conf = scratch.abc / "etc/demo/demo.conf"
    os.utime(conf, ns=(0, 0))  # what no file check sees: only the stamps do
    os.kill(held.pid, signal.SIGCONT)
    out = held.communicate(timeout=120)[0]
    assert held.returncode == 1, out
    assert "changed while it was being copied" in out
    assert "etc/demo/demo.conf: changed" in out
    assert set(tree_snapshot(scratch.abc)) == before_files
    assert conf.stat().st_mtime_ns == 0
    assert not (home / ".conda/envs/abc").exists()


# -- 8. symlinks planted where the run writes -------------------------------------


def test_planted_symlinks_in_shared_dest_and_yaml_dir(scratch, home, migrate, tmp_path):
    projects = home / "projects" / "abc"
    projects.mkdir(parents=True)
    (projects / "code.py").write_text("print('mine')\n")
    bashrc = home / ".bashrc"
    bashrc.write_bytes(b"# my settings\n")
    shared = tmp_path / "group"
    dest, yaml_dir = shared / "envs", shared / "yaml"
    dest.mkdir(parents=True)
    yaml_dir.mkdir()
    (dest / ".conda-migrate-staging").symlink_to(home / "projects")
    (dest / f"{STAGING_PREFIX}abc").symlink_to(projects)
    (yaml_dir / ".abc.yml.partial").symlink_to(bashrc)
    out, err, code = migrate(
        "-d", scratch.abc, "--dest", dest, "--yaml-dir", yaml_dir, *RELOCATE
    )
    assert code == 0, out + err
    assert (projects / "code.py").read_text() == "print('mine')\n"
    assert bashrc.read_bytes() == b"# my settings\n"
    assert (dest / "abc/conda-meta/history").is_file()
    assert (yaml_dir / "abc.yml").is_file() and not (yaml_dir / "abc.yml").is_symlink()


# -- 10. secrets -------------------------------------------------------------------


def test_secrets_beside_rc_lines_stay_out_of_the_output_and_log(scratch, home, migrate):
    bashrc = home / ".bashrc"
    bashrc.write_text(
        "export API_TOKEN=s3cr3t-value\n"
        f"conda activate {scratch.abc}\n"
        "export MY_PASSWORD=hunter2\n"
    )
    bashrc.chmod(0o600)
    out, err, code = migrate("-d", scratch.abc, "--all", "--method", "relocate")
    assert code == 0, out + err
    (log,) = (home / ".conda/migrate/logs").iterdir()
    for text in (out + err, log.read_text()):
        assert "s3cr3t-value" not in text and "hunter2" not in text
        assert f"+conda activate {home}/.conda/envs/abc" in text


# -- 11. paths ---------------------------------------------------------------------


def test_dotted_directory_is_canonical_for_rc_files(scratch, home, migrate):
    bashrc = home / ".bashrc"
    bashrc.write_text(f"conda activate {scratch.abc}\n")
    (scratch.root / "x").mkdir()
    out, err, code = migrate("-d", f"{scratch.root}/x/../conda-envs", *RELOCATE)
    assert code == 0, out + err
    assert bashrc.read_text() == f"conda activate {home}/.conda/envs/abc\n"


def test_environment_named_through_dotdot_keeps_its_name(scratch, home, migrate):
    out, err, code = migrate("-d", f"{scratch.abc}/bin/..", *RELOCATE)
    assert code == 0, out + err
    assert (home / ".conda/envs/abc/conda-meta/history").is_file()
    assert not scratch.abc.exists()
    assert (home / ".conda").is_dir() and not (home / ".conda/conda-meta").exists()


# -- 12. honest removal --------------------------------------------------------------


def test_removal_failing_midway_puts_the_rest_back_and_exits_1(scratch, home, migrate):
    """An immutable file stops the deletion halfway (root too); every run
    says so, exit 1, until the cause is gone, and then finishes it."""
    if os.geteuid() != 0 or not shutil.which("chattr"):
        pytest.skip("chattr +i needs root and e2fsprogs")
    pinned = scratch.abc / "share/demo/data.txt"
    if subprocess.run(["chattr", "+i", pinned], capture_output=True).returncode:
        pytest.skip("this filesystem has no immutable flag")
    try:
        out, err, code = migrate("-d", scratch.abc, *RELOCATE)
        again, _, code_again = migrate("-d", scratch.abc, *RELOCATE)
    finally:
        subprocess.run(["chattr", "-i", pinned], check=True)
    assert code == 1, out + err
    assert f"but removing {scratch.abc} failed" in out
    assert f"was put back at {scratch.abc}" in out
    assert pinned.is_file()
    assert (home / ".conda/envs/abc/conda-meta/history").is_file()
    assert "copied: 1" in out
    assert code_again == 1 and f"but removing {scratch.abc} failed" in again

    out, err, code = migrate("-d", scratch.envs_dir, *RELOCATE)
    assert code == 0, out + err
    assert "not finished removing it; finishing it" in out
    assert not scratch.abc.exists()
    assert (home / ".conda/envs/abc/share/demo/data.txt").is_file()


# -- as an ordinary user --------------------------------------------------------------


def user_site(base: Path, make_env) -> tuple[Path, Path]:
    """The user's $HOME, and a group directory in $SCRATCH that a colleague's
    environment shares with the user's own."""
    home = user_home(base)
    group = base / "scratch" / "group"
    make_env(group / "mine", ["demo-text"])
    make_env(group / "theirs", ["demo-text"])
    chown_tree(group / "mine", USER)
    chown_tree(group / "theirs", OTHER_USER, gid=USER)  # a group they share
    for dirpath, dirnames, filenames in os.walk(group / "theirs"):
        for name in [".", *dirnames, *filenames]:
            path = Path(dirpath, name)
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o070)
    group.chmod(0o1777)
    return home, group


def test_user_never_removes_a_colleagues_group_writable_environment(
    unprivileged, make_env
):
    base, run = unprivileged
    home, group = user_site(base, make_env)
    before = tree_snapshot(group / "theirs")
    out, code = run(home, "-d", group, *RELOCATE)
    assert code == 1, out
    assert "Migration of theirs failed" in out
    assert "holds files of another user" in out
    assert tree_snapshot(group / "theirs") == before
    assert not (base / "scratch/group/.theirs.conda-migrate-removing").exists()
    assert not (group / "mine").exists()
    assert (home / ".conda/envs/mine/conda-meta/history").is_file()
    assert (home / ".conda/envs/mine").stat().st_uid == USER


def test_user_removes_an_environment_with_read_only_directories(unprivileged, make_env):
    """A Julia depot or any ``chmod -w``: the owner's removal runs to its end."""
    base, run = unprivileged
    home, group = user_site(base, make_env)
    depot = group / "mine" / "share" / "depot"
    (depot / "packages").mkdir(parents=True)
    (depot / "packages" / "Example.jl").write_text("module Example end\n")
    chown_tree(depot, USER)
    (depot / "packages").chmod(0o555)
    depot.chmod(0o555)
    out, code = run(home, "-d", group / "mine", *RELOCATE)
    assert code == 0, out
    assert not (group / "mine").exists()
    assert not list(group.glob(".mine*"))
    copy = home / ".conda/envs/mine/share/depot"
    assert (copy / "packages/Example.jl").read_text() == "module Example end\n"
    assert copy.stat().st_mode & 0o777 == 0o555


# -- 9. conda's clean ------------------------------------------------------------------


def test_softlinked_packages_are_read_from_the_records(make_env, tmp_path):
    env = make_env(tmp_path / "scratch" / "linked", ["demo-text"])
    (record,) = (env / "conda-meta").glob("demo-text-*.json")
    data = json.loads(record.read_text())
    cached = tmp_path / "pkgs" / "demo-text-1.0-0"
    data["link"] = {"source": str(cached), "type": 2}
    data["extracted_package_dir"] = str(cached)
    record.write_text(json.dumps(data))
    other = make_env(tmp_path / "scratch" / "copied", ["demo-text"])
    from conda_migrate_plugin.records import softlinked_packages

    assert softlinked_packages([env, other]) == {cached}


@requires_conda
def test_clean_keeps_packages_an_unselected_environment_softlinks_to(
    channel, scratch, home, tmp_path, conda_cli, monkeypatch
):
    from conda.base.context import reset_context

    linked = tmp_path / "other" / "linked"
    monkeypatch.setenv("CONDA_ALWAYS_SOFTLINK", "true")
    reset_context()
    out, err, code = conda_cli(
        "create", "-p", linked, "--offline", "--override-channels",
        "-c", channel.as_uri(), "--yes", "demo-text",
    )  # fmt: skip
    assert code == 0, out + err
    monkeypatch.delenv("CONDA_ALWAYS_SOFTLINK")
    reset_context()
    (record,) = (linked / "conda-meta").glob("demo-text-*.json")
    assert json.loads(record.read_text())["link"]["type"] == 2, "not softlinked"
    links = [p for p in linked.rglob("*") if p.is_symlink()]
    out, err, code = conda_cli(
        "migrate", "-d", scratch.amd, "--all", "--method", "relocate", "--json"
    )
    assert code == 0, out + err
    assert json.loads(out)["clean"]["tarballs"], "the cache was cleaned"
    dangling = [p for p in links if not p.exists()]
    assert dangling == [], f"{len(dangling)} of {len(links)} files dangle"


@requires_conda
def test_clone_keeps_the_creation_time_conda_records(scratch, home, conda_cli):
    """conda 26 writes conda-meta/created_at into every environment it
    makes, its clone included; the moved environment keeps the original's."""
    stamp = scratch.abc / "conda-meta" / "created_at"
    stamp.write_text("1700000000000\n")
    out, err, code = conda_cli(
        "migrate", "-d", scratch.abc, "--all", "--method", "clone", "--no-clean"
    )
    assert code == 0, out + err
    new = home / ".conda/envs/abc/conda-meta/created_at"
    assert new.read_text() == "1700000000000\n"


def test_other_environments_sharing_its_files_do_not_count_as_changes(scratch, home):
    """abc and amd hold the same cached files (hardlinks): while abc is being
    copied, amd's removal and a new environment linking them move abc's
    ctimes, not its content; abc still migrates."""
    shared = scratch.abc / "share/demo/data.txt"
    assert shared.stat().st_nlink > 1, "the layout shares no files"
    held = run_cli(home, "-d", scratch.abc, *RELOCATE, fault=("stop", "3", "utime"))
    wait_until_stopped(held)
    os.unlink(scratch.amd / "share/demo/data.txt")
    os.link(shared, scratch.root / "another-env-data.txt")
    os.kill(held.pid, signal.SIGCONT)
    out = held.communicate(timeout=120)[0]
    assert held.returncode == 0, out
    assert not scratch.abc.exists()


def test_tokens_and_passwords_in_urls_are_redacted():
    from conda_migrate_plugin.output import redact

    line = (
        "conda's clone failed: https://conda.example.org/t/abc-123_XYZ/site/linux-64 "
        "and https://alice:pa55word@mirror.example.org/conda"
    )
    assert redact(line) == (
        "conda's clone failed: https://conda.example.org/t/<TOKEN>/site/linux-64 "
        "and https://<CREDENTIALS>@mirror.example.org/conda"
    )


def test_one_environment_through_a_symlink_is_one_lock(scratch, home):
    from conda_migrate_plugin.exceptions import MigrateError
    from conda_migrate_plugin.safety.lock import hold

    state = home / ".conda/migrate"
    alias = scratch.root / "alias"
    alias.symlink_to(scratch.envs_dir)
    with hold(state, scratch.abc):
        with pytest.raises(MigrateError, match="being migrated by another"):
            with hold(state, alias / "abc"):
                pass


def test_sparse_file_is_copied_sparse(scratch, home, migrate):
    """A 256 MiB file holding 8 KiB of data: the copy keeps its holes."""
    sparse = scratch.abc / "share" / "sparse.img"
    with open(sparse, "wb") as stream:
        stream.write(b"head" * 1024)
        stream.seek(256 * 2**20 - 4096)
        stream.write(b"tail" * 1024)
    if sparse.stat().st_blocks * 512 >= 2**20:
        pytest.skip("this filesystem does not keep holes")
    content = hashlib.sha256(sparse.read_bytes()).hexdigest()
    out, err, code = migrate("-d", scratch.abc, *RELOCATE)
    assert code == 0, out + err
    copy = home / ".conda/envs/abc/share/sparse.img"
    assert copy.stat().st_size == 256 * 2**20
    assert copy.stat().st_blocks * 512 < 2**20, "the holes were filled"
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == content
