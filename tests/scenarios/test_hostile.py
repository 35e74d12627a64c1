"""Hostile input: broken records, odd names, odd files, guarded removals,
leftovers of dead runs. Each environment either migrates or fails alone
with a message that says why, and nothing else is harmed.

These run with conda and without it. Where the copy itself is at stake both
engines run: ``auto`` (conda's clone where conda is installed) and relocate.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conda_migrate_plugin.discover import examine
from conda_migrate_plugin.exceptions import MigrateError
from conda_migrate_plugin.names import REMOVING_SUFFIX
from conda_migrate_plugin.safety import journal
from conda_migrate_plugin.safety.remove import check_removable
from tests.support.markers import requires_conda
from tests.support.runs import (
    killed_in_the_removal,
    registered,
    run_again,
)
from tests.support.trees import tree_snapshot

RELOCATE = ("--all", "--method", "relocate", "--no-clean")


def assert_failed_alone(scratch, home, out: str, code: int, name: str, before) -> None:
    """``name`` failed, was left byte for byte, was not copied or listed;
    the other environment of the seed layout still migrated."""
    prefix = scratch.envs_dir / name
    assert code == 1, out
    assert f"Migration of {name} failed" in out, out
    assert tree_snapshot(prefix) == before
    assert not (home / ".conda/envs" / name).exists()
    assert not (home / ".conda/envs/.conda-migrate-staging").exists()
    assert str(home / ".conda/envs" / name) not in registered(home)
    other = "abc" if name == "amd" else "amd"
    assert not (scratch.envs_dir / other).exists(), f"{other} still migrates"
    assert (home / ".conda/envs" / other / "conda-meta/history").is_file()
    assert "failed: 1" in out and "migrated: 1" in out


# -- broken package records ---------------------------------------------------


@pytest.mark.parametrize(
    "content, why",
    [
        (b"", "cannot be read as a conda package record"),
        (b'["demo-text", "1.0", "0"]', "is not a conda package record"),
    ],
    ids=["truncated-to-empty", "json-list"],
)
def test_unreadable_record_fails_that_environment_alone(
    scratch, home, migrate, content, why
):
    record = scratch.amd / "conda-meta" / "demo-text-1.0-0.json"
    record.write_bytes(content)
    before = tree_snapshot(scratch.amd)
    out, err, code = migrate("-d", scratch.envs_dir, *RELOCATE)
    assert_failed_alone(scratch, home, out, code, "amd", before)
    assert f"{record} {why}" in out


@requires_conda
def test_record_conda_rejects_fails_that_environment_alone(scratch, home, migrate):
    """JSON with a name, version and build, but without a field conda's
    record model requires: conda's reader refuses it, and so does the run."""
    record = scratch.amd / "conda-meta" / "demo-text-1.0-0.json"
    data = json.loads(record.read_text())
    del data["build_number"]
    record.write_text(json.dumps(data))
    before = tree_snapshot(scratch.amd)
    out, err, code = migrate("-d", scratch.envs_dir, *RELOCATE)
    assert_failed_alone(scratch, home, out, code, "amd", before)
    assert f"conda cannot read the environment {scratch.amd}" in out
    assert "ERROR REPORT" not in out + err


def test_environment_without_history_is_listed_invalid_and_left(scratch, home, migrate):
    (scratch.amd / "conda-meta" / "history").unlink()
    before = tree_snapshot(scratch.amd)
    out, err, code = migrate("-d", scratch.envs_dir, "-v", *RELOCATE)
    assert code == 0, out + err
    assert "INVALID ENV: amd (conda-meta/history is missing)\n" in out
    assert tree_snapshot(scratch.amd) == before
    assert not (home / ".conda/envs/amd").exists()
    assert not scratch.abc.exists()


# -- names ----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["auto", "relocate"])
def test_odd_but_legal_names_migrate(make_env, home, tmp_path, migrate, method):
    """Spaces, unicode, a leading dash and ``..`` are ordinary characters
    in a directory name; none of them may be read as an option or a path."""
    envs_dir = tmp_path / "scratch"
    names = ["my env", "données-ü", "-rf", "a..b"]
    for name in names:
        make_env(envs_dir / name, ["demo-text"])
    out, err, code = migrate("-d", envs_dir, "--all", "--method", method, "--no-clean")
    assert code == 0, out + err
    assert f"migrated: {len(names)}" in out
    assert list(envs_dir.iterdir()) == []
    for name in names:
        new = home / ".conda" / "envs" / name
        assert (
            f"Successfully migrated and removed old environment: {envs_dir / name}\n"
            in out
        )
        assert f"root = {new}\n" in (new / "etc/demo/demo.conf").read_text()
        assert str(new) in registered(home)
        run = subprocess.run([new / "bin/demo-hello"], capture_output=True, text=True)
        assert run.stdout == f"hello from {new}\n"


@pytest.mark.parametrize("name", ["bad\nname", "cr\rhere", "bell\x07", "ls\u2028x"])
def test_name_with_a_control_character_is_invalid(scratch, name):
    """environments.txt holds one prefix a line: such a name could never
    be recorded, and would print as something else."""
    prefix = scratch.envs_dir / name
    (prefix / "conda-meta").mkdir(parents=True)
    (prefix / "conda-meta" / "history").touch()
    candidate = examine(prefix)
    assert not candidate.valid
    assert "control character" in candidate.reason and "rename" in candidate.reason
    assert candidate.prefix == prefix
    assert candidate.name.isprintable() and len(candidate.name.splitlines()) == 1


def test_name_with_a_newline_is_reported_and_left(scratch, home, migrate):
    prefix = scratch.envs_dir / "two\nlines"
    os.rename(scratch.amd, prefix)
    before = tree_snapshot(prefix)
    out, err, code = migrate("-d", scratch.envs_dir, "-v", *RELOCATE)
    assert code == 0, out + err
    assert "INVALID ENV: two\\nlines (its name contains a newline" in out
    assert tree_snapshot(prefix) == before
    assert not scratch.abc.exists()
    assert "two" not in (home / ".conda/environments.txt").read_text()
    assert sorted(p.name for p in (home / ".conda/envs").iterdir()) == ["abc"]


# -- odd files inside an environment ----------------------------------------------


@pytest.mark.parametrize("method", ["auto", "relocate"])
def test_dangling_and_looping_symlinks_are_copied_as_links(
    scratch, home, migrate, method
):
    (scratch.amd / "share" / "dangling").symlink_to("does-not-exist")
    (scratch.amd / "share" / "loop-a").symlink_to("loop-b")
    (scratch.amd / "share" / "loop-b").symlink_to("loop-a")
    (scratch.amd / "share" / "self").symlink_to("self")
    out, err, code = migrate(
        "-d", scratch.envs_dir, "--all", "--method", method, "--no-clean"
    )
    assert code == 0, out + err
    share = home / ".conda/envs/amd/share"
    assert os.readlink(share / "dangling") == "does-not-exist"
    assert os.readlink(share / "loop-a") == "loop-b"
    assert os.readlink(share / "loop-b") == "loop-a"
    assert os.readlink(share / "self") == "self"
    assert not scratch.amd.exists()


def _make_fifo(path: Path) -> None:
    os.mkfifo(path)


def _make_socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))


@pytest.mark.parametrize(
    "make, kind, is_kind",
    [(_make_fifo, "a FIFO", stat.S_ISFIFO), (_make_socket, "a socket", stat.S_ISSOCK)],
    ids=["fifo", "socket"],
)
@pytest.mark.parametrize("method", ["auto", "relocate"])
def test_fifo_or_socket_fails_the_environment_naming_it(
    scratch, home, migrate, make, kind, is_kind, method
):
    """conda never installs one, so one left by a crashed program is noise;
    but conda's clone would block for ever opening a FIFO, and a copy that
    silently lacks it is not the same directory. Fail before copying."""
    before = tree_snapshot(scratch.amd)  # it would block reading a FIFO
    leftover = scratch.amd / "etc" / "leftover"
    make(leftover)
    out, err, code = migrate(
        "-d", scratch.envs_dir, "--all", "--method", method, "--no-clean"
    )
    assert f"{leftover} is {kind}" in out
    assert "Remove it" in out
    assert is_kind(leftover.lstat().st_mode)
    leftover.unlink()
    assert_failed_alone(scratch, home, out, code, "amd", before)
    assert not (home / ".conda/yaml/amd.yml").exists()


@pytest.mark.parametrize("method", ["auto", "relocate"])
def test_path_longer_than_255_bytes_is_copied(scratch, home, migrate, method):
    deep = scratch.amd.joinpath("share", *["n" * 60] * 5)
    deep.mkdir(parents=True)
    (deep / "leaf.txt").write_bytes(b"deep\n")
    rel = (deep / "leaf.txt").relative_to(scratch.amd)
    assert len(str(rel).encode()) > 255
    out, err, code = migrate(
        "-d", scratch.envs_dir, "--all", "--method", method, "--no-clean"
    )
    assert code == 0, out + err
    assert (home / ".conda/envs/amd" / rel).read_bytes() == b"deep\n"
    assert not scratch.amd.exists()


# -- removal guards ---------------------------------------------------------------


def test_d_on_a_symlink_to_an_environment_is_invalid(scratch, home, migrate):
    alias = scratch.root / "alias"
    alias.symlink_to(scratch.amd)
    before = tree_snapshot(scratch.amd)
    out, err, code = migrate("-d", alias, "-v", *RELOCATE)
    reason = f"a symlink to {scratch.amd} (migrate that directory)"
    assert f"INVALID ENV: alias ({reason})\n" in out
    assert f"{alias} cannot be migrated: {reason}." in err
    assert "Nothing was migrated." in err
    assert code == 1, out + err
    assert tree_snapshot(scratch.amd) == before
    assert not (home / ".conda/envs").exists()


def test_check_removable_accepts_an_environment_in_the_scanned_directory(scratch):
    check_removable(scratch.amd, scratch.envs_dir, [scratch.abc])


@pytest.mark.parametrize(
    "case, says",
    [
        ("base", "is the base environment or the active one"),
        ("symlink", "is a symlink"),
        ("outside", "lies outside the scanned directory"),
        ("dotdot", "lies outside the scanned directory"),
        ("no-history", "no longer looks like an environment"),
        ("missing", "no longer looks like an environment"),
    ],
)
def test_check_removable_refuses(scratch, tmp_path, make_env, case, says):
    scanned, protected = scratch.envs_dir, [Path(sys.prefix)]
    prefix = scratch.amd
    if case == "base":
        protected.append(scratch.amd)
    elif case == "symlink":
        prefix = scanned / "alias"
        prefix.symlink_to(scratch.amd)
    elif case == "outside":
        prefix = make_env(tmp_path / "elsewhere" / "env", ["demo-text"])
    elif case == "dotdot":
        make_env(tmp_path / "elsewhere" / "env", ["demo-text"])
        prefix = scanned / ".." / ".." / "elsewhere" / "env"
    elif case == "no-history":
        (scratch.amd / "conda-meta" / "history").unlink()
    else:
        prefix = scanned / "gone"
    before = tree_snapshot(scratch.root)
    with pytest.raises(MigrateError, match=says):
        check_removable(prefix, scanned, protected)
    assert tree_snapshot(scratch.root) == before


# -- the run log ------------------------------------------------------------------


def test_run_log_holds_every_step_and_the_errors(scratch, home, migrate):
    record = scratch.amd / "conda-meta" / "demo-text-1.0-0.json"
    record.write_bytes(b"")
    out, err, code = migrate("-d", scratch.envs_dir, *RELOCATE)
    assert code == 1
    (log,) = (home / ".conda/migrate/logs").glob("conda-migrate-*.log")
    text = log.read_text()
    for line in [
        "conda-migrate ",
        "Valid Env: abc",
        "INVALID ENV: pkgs",
        "Selected environments:",
        "Migrating and comparing environment: abc",
        f"YAML written: {home}/.conda/yaml/abc.yml",
        "Old and New Environments are same",
        f"Remove all packages in environment {scratch.abc}:",
        f"Successfully migrated and removed old environment: {scratch.abc}",
        "Migrating and comparing environment: amd",
        f"Migration of amd failed: {record} cannot be read as a conda package record",
        "failed: 1",
    ]:
        assert f" {line}" in text, f"{line!r} not in the log:\n{text}"


# -- leftovers of dead runs ---------------------------------------------------------


def test_stale_staging_is_neither_used_nor_deleted(scratch, home, migrate):
    """A staging directory is never trusted: each run copies into a fresh one
    of its own, and deletes only what it can prove it made."""
    stale = home / ".conda/envs/.conda-migrate-staging/amd"
    (stale / "conda-meta").mkdir(parents=True)
    (stale / "planted.txt").write_text("from a dead run\n")
    out, err, code = migrate("-d", scratch.envs_dir, *RELOCATE)
    assert code == 0, out + err
    new = home / ".conda/envs/amd"
    assert not (new / "planted.txt").exists()
    assert (new / "conda-meta/history").is_file()
    assert (stale / "planted.txt").read_text() == "from a dead run\n"


def test_removal_killed_midway_is_finished_by_the_next_run(scratch, home):
    """Killed inside the deletion of the old environment: the same command
    run again deletes the rest and reports it migrated."""
    args = ["-d", scratch.envs_dir, *RELOCATE]
    env = killed_in_the_removal(home, args)
    aside = scratch.envs_dir / f".abc{REMOVING_SUFFIX}"
    assert aside.is_dir() and not scratch.abc.exists()
    copy = tree_snapshot(home / ".conda/envs/abc")

    rerun = run_again(args, env)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "and not finished removing it; finishing it.\n" in rerun.stdout
    assert (
        f"Successfully migrated and removed old environment: {scratch.abc}\n"
        in rerun.stdout
    )
    assert "Selected environments:\namd:" in rerun.stdout, "never the remains"
    assert not aside.exists() and not scratch.abc.exists()
    assert tree_snapshot(home / ".conda/envs/abc") == copy
    assert not scratch.amd.exists(), "the rest of the job is done too"
    assert journal.entries(home / ".conda/migrate") == []
    known = registered(home)
    assert known.count(str(home / ".conda/envs/abc")) == 1
    assert str(scratch.abc) not in known


def test_remains_changed_since_the_copy_are_kept_by_the_next_run(scratch, home):
    """Killed once the old environment was renamed aside, before its removal
    was done: what is left still holds a write the removal's check was to
    find (a job's result). The next run checks the remains against the copy
    as it checks any source: it puts them back under their name, keeps them
    and says why, instead of deleting them unchecked."""
    args = ["-d", scratch.envs_dir, *RELOCATE]
    env = killed_in_the_removal(home, args)
    aside = scratch.envs_dir / f".abc{REMOVING_SUFFIX}"
    result = aside / "job-result.txt"
    result.write_text("written before the rename aside\n")

    rerun = run_again(args, env)
    assert rerun.returncode == 1, rerun.stdout + rerun.stderr
    assert f"{scratch.abc} changed since it was copied" in rerun.stdout
    assert "job-result.txt: added" in rerun.stdout
    assert not aside.exists()
    kept = scratch.abc / "job-result.txt"
    assert kept.read_text() == "written before the rename aside\n"
    assert (home / ".conda/envs/abc/conda-meta/history").is_file()


def test_remains_are_never_put_back_over_the_old_name_made_anew(scratch, home):
    """Killed in the removal; a job then makes the old prefix anew, empty
    (``mkdir $CONDA_PREFIX``). No later run puts the remains back over it or
    deletes them: each says where they are and what to do, and leaves both
    as they are."""
    args = ["-d", scratch.envs_dir, *RELOCATE]
    env = killed_in_the_removal(home, args)
    aside = scratch.envs_dir / f".abc{REMOVING_SUFFIX}"
    remains = tree_snapshot(aside)
    scratch.abc.mkdir()
    made = scratch.abc.stat().st_ino

    for _ in range(2):
        rerun = run_again(args, env)
        assert rerun.returncode == 1, rerun.stdout + rerun.stderr
        assert (
            f"could not be put back at {scratch.abc} (something made it anew "
            f"meanwhile); it is at {aside}, and neither was touched." in rerun.stdout
        )
        assert f"Move {scratch.abc} out of the way, then move {aside}" in rerun.stdout
        assert scratch.abc.stat().st_ino == made
        assert os.listdir(scratch.abc) == []
        assert tree_snapshot(aside) == remains
    assert (home / ".conda/envs/abc/conda-meta/history").is_file()


def test_a_run_finishing_a_killed_one_reports_the_engine_that_copied(scratch, home):
    """``--method auto`` (the default) picks an engine for each environment:
    the run that finishes what a killed one began reports in ``--json`` the
    engine that made the copy, never the choice it was left ("auto")."""
    args = ["-d", scratch.envs_dir, "--all", "--no-clean"]
    env = killed_in_the_removal(home, args)

    rerun = run_again([*args, "--json"], env)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    reported = json.loads(rerun.stdout)["environments"]
    assert {e["name"]: (e["status"], e["engine"]) for e in reported} == {
        "abc": ("migrated", "relocate"),
        "amd": ("migrated", "relocate"),
    }
