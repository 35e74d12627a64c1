"""Runs that cannot do what was asked refuse at once, in one line, with the
exit code a batch job can test, before anything is written or copied."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from conda_migrate_plugin.names import BACKUP_SUFFIX
from tests.support.trees import tree_snapshot

RELOCATE = ("--all", "--method", "relocate", "--no-clean")


@pytest.fixture
def read_only(tmp_path):
    """Make a directory or a file read-only for root too: a bind mount of it
    onto itself, remounted read-only; undone at teardown."""
    mounted = []

    def _read_only(path) -> None:
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("a read-only bind mount needs root and mount(8)")
        for options in (["--bind"], ["-o", "remount,bind,ro"]):
            run = subprocess.run(
                ["mount", *options, path, path], capture_output=True, text=True
            )
            if run.returncode:
                pytest.skip(f"cannot bind-mount here: {run.stderr.strip()}")
            if options == ["--bind"]:
                mounted.append(path)

    yield _read_only
    for path in reversed(mounted):
        if subprocess.run(["umount", path]).returncode:
            subprocess.run(["umount", "-l", path], check=True)


def assert_one_line_refusal(out, err, code, expected_code, line) -> None:
    assert code == expected_code, out + err
    assert line in err, out + err
    assert "Traceback" not in out + err
    assert "Summary:" not in out


@pytest.mark.parametrize("dry_run", [(), ("--dry-run",)], ids=["run", "dry-run"])
def test_home_conda_not_a_directory_is_refused_before_any_copy(
    scratch, home, migrate, dry_run
):
    (home / ".conda").write_text("a stray file\n")
    before = tree_snapshot(scratch.envs_dir)
    out, err, code = migrate("-d", scratch.envs_dir, *RELOCATE, *dry_run)
    assert_one_line_refusal(
        out,
        err,
        code,
        2,
        f"Cannot write {home}/.conda/migrate/logs (the run's log): "
        f"{home}/.conda is not a directory. Nothing was touched.",
    )
    assert tree_snapshot(scratch.envs_dir) == before


@pytest.mark.parametrize(
    "where, says",
    [
        ("home", "{home}/.conda/migrate/logs (the run's log): {home} is not writable"),
        (
            ".conda",
            "{home}/.conda/migrate/logs (the run's log): {home}/.conda is not writable",
        ),
        ("yaml", "{yaml} (the YAML copies): {yaml} is not writable"),
        ("registry", "{registry} (conda's list of environments): it is not writable"),
    ],
)
@pytest.mark.parametrize("dry_run", [(), ("--dry-run",)], ids=["run", "dry-run"])
def test_unwritable_places_are_refused_before_any_copy(
    scratch, home, migrate, read_only, tmp_path, where, says, dry_run
):
    yaml = tmp_path / "yaml"
    yaml.mkdir()
    registry = home / ".conda" / "environments.txt"
    if where != "home":
        (home / ".conda").mkdir()
    if where == "registry":
        registry.write_text("")
    target = {"home": home, ".conda": home / ".conda", "yaml": yaml}
    read_only(target.get(where, registry))
    before = tree_snapshot(scratch.envs_dir)
    out, err, code = migrate(
        "-d", scratch.envs_dir, "--yaml-dir", yaml, *RELOCATE, *dry_run
    )
    line = "Cannot write " + says.format(home=home, yaml=yaml, registry=registry)
    assert_one_line_refusal(out, err, code, 2, line)
    assert tree_snapshot(scratch.envs_dir) == before
    assert not (home / ".conda" / "envs").exists()


def test_dest_equal_to_the_scanned_directory_is_refused(scratch, home, migrate):
    before = tree_snapshot(scratch.envs_dir)
    out, err, code = migrate(
        "-d", scratch.envs_dir, "--dest", scratch.envs_dir, *RELOCATE
    )
    assert_one_line_refusal(
        out,
        err,
        code,
        2,
        f"The source {scratch.envs_dir} and the destination {scratch.envs_dir} "
        "are the same",
    )
    assert "another conda-migrate run" not in out + err
    assert tree_snapshot(scratch.envs_dir) == before


def test_d_pointing_at_the_destination_is_refused(scratch, home, migrate):
    dest = home / ".conda" / "envs"
    dest.mkdir(parents=True)
    shutil.move(scratch.amd, dest / "amd")
    before = tree_snapshot(dest)
    for directory in (dest, dest / "amd"):
        out, err, code = migrate("-d", directory, *RELOCATE)
        assert_one_line_refusal(
            out,
            err,
            code,
            2,
            f"The source {directory} and the destination {dest} are the same",
        )
    assert tree_snapshot(dest) == before


def test_dest_inside_the_environment_is_refused(scratch, home, migrate, monkeypatch):
    """Where ``$SCRATCH`` does not name the place (set, it refuses first:
    see test_dest_under_scratch_is_refused)."""
    monkeypatch.delenv("SCRATCH")
    dest_root = scratch.abc / "moved"
    before = tree_snapshot(scratch.abc)
    out, err, code = migrate("-d", scratch.abc, "--dest", dest_root, *RELOCATE)
    assert code == 1, out + err
    assert (
        f"The destination {dest_root / 'abc'} and the source {scratch.abc} overlap."
        in out
    )
    assert tree_snapshot(scratch.abc) == before


def test_missing_d_does_not_exist(scratch, home, migrate):
    missing = scratch.root / "conda-env"
    out, err, code = migrate("-d", missing, *RELOCATE)
    assert_one_line_refusal(out, err, code, 2, f"{missing} does not exist.")


def test_d_one_level_too_high_names_the_right_directory(scratch, home, migrate):
    before = tree_snapshot(scratch.root)
    out, err, code = migrate("-d", scratch.root, *RELOCATE)
    assert_one_line_refusal(
        out,
        err,
        code,
        1,
        f"No conda environments directly in '{scratch.root}', but these directories "
        f"hold some: {scratch.envs_dir} (2); nothing was migrated.",
    )
    assert f"conda migrate -d {scratch.envs_dir}" in err
    assert "Valid Conda environments in" not in out
    assert tree_snapshot(scratch.root) == before


def test_nothing_valid_fails_the_batch_job(scratch, home, migrate):
    out, err, code = migrate("-d", scratch.envs_dir / "pyt", *RELOCATE)
    assert_one_line_refusal(
        out,
        err,
        code,
        1,
        f"No valid conda environments in '{scratch.envs_dir / 'pyt'}'; "
        "nothing was migrated.",
    )
    assert "Valid Conda environments in" not in out
    assert "Selected environments:" not in out


def test_active_environment_then_rerun_says_what_to_do(
    scratch, home, migrate, monkeypatch
):
    """Refused as conda refuses ``conda remove --all`` of it, before any copy;
    the same command after ``conda deactivate`` moves it."""
    monkeypatch.setenv("CONDA_PREFIX", str(scratch.amd))
    before = tree_snapshot(scratch.envs_dir)
    out, err, code = migrate("-d", scratch.envs_dir, *RELOCATE)
    assert code == 1, out + err
    assert "conda never removes the active environment, so nothing was touched." in (
        out + err
    )
    assert f"  conda deactivate\n  conda-migrate -d {scratch.envs_dir} " in out + err
    assert tree_snapshot(scratch.envs_dir) == before
    assert not (home / ".conda" / "envs").exists()
    monkeypatch.delenv("CONDA_PREFIX")
    out, err, code = migrate("-d", scratch.envs_dir, *RELOCATE)
    assert code == 0, out + err
    assert "migrated: 2" in out
    assert not scratch.amd.exists()


def test_rerun_over_a_different_copy_still_skips(scratch, home, migrate):
    out, err, code = migrate("-d", scratch.envs_dir, "--keep-old", *RELOCATE)
    assert code == 0, out + err
    (home / ".conda/envs/amd/conda-meta/demo-text-1.0-0.json").unlink()
    out, err, code = migrate("-d", scratch.envs_dir, *RELOCATE)
    assert code == 1, out + err
    assert "already exists and is not a copy of" in out
    assert "(a name collision): missing in the copy: conda package demo-text" in out
    assert "abc is already migrated" in out


@pytest.mark.parametrize("dry_run", [(), ("--dry-run",)], ids=["run", "dry-run"])
def test_a_link_to_the_environment_at_its_destination_says_to_remove_the_link(
    scratch, home, migrate, dry_run
):
    """``ln -s $SCRATCH/conda-envs/abc ~/.conda/envs/abc`` lets conda find
    it by name. "Remove the other one" would send a user to ``rm -rf
    ~/.conda/envs/abc/``, which deletes the environment itself through the
    link: the link is named as what it is, with the ``rm`` that removes it
    alone, after which the same command moves the environment there."""
    (home / ".conda" / "envs").mkdir(parents=True)
    link = home / ".conda" / "envs" / "abc"
    link.symlink_to(scratch.abc)
    before = tree_snapshot(scratch.abc)
    out, err, code = migrate("-d", scratch.envs_dir, *RELOCATE, *dry_run)
    assert code == 1, out + err
    assert (
        f"{link} already exists and is not a copy of {scratch.abc} (a name "
        f"collision): it is a symlink to this environment; rm {link} (with no "
        "/ at the end) removes the link alone, then run this again." in out
    )
    assert tree_snapshot(scratch.abc) == before
    assert link.is_symlink()
    if dry_run:
        return
    subprocess.run(["rm", link], check=True)
    out, err, code = migrate("-d", scratch.envs_dir, *RELOCATE)
    assert code == 0, out + err
    assert (link / "conda-meta" / "history").is_file() and not link.is_symlink()
    assert not scratch.abc.exists()


def test_same_packages_without_the_sources_own_files_is_a_name_collision(
    scratch, home, migrate, make_env
):
    """A different ``~/.conda/envs/abc`` built from the same packages lacks
    what the user added to the old one: claiming "already migrated" would
    send them to remove the only copy of their notes and activation script."""
    (scratch.abc / "share" / "notes.txt").write_text("results of run 7\n")
    activate_d = scratch.abc / "etc" / "conda" / "activate.d"
    activate_d.mkdir(parents=True)
    (activate_d / "vars.sh").write_text("export DATA=/scratch/u/data\n")
    other = make_env(home / ".conda" / "envs" / "abc", ["demo-app"], pip=True)
    before, theirs = tree_snapshot(scratch.abc), tree_snapshot(other)
    out, err, code = migrate("-d", scratch.abc, *RELOCATE)
    assert code == 1, out + err
    assert "already migrated" not in out
    assert "conda env remove" not in out
    assert (
        f"{other} already exists and is not a copy of {scratch.abc} (a name "
        "collision): etc/conda: missing in the copy; share/notes.txt: missing "
        "in the copy." in out
    )
    assert f"Neither was touched; {scratch.abc} stays where it is." in out
    assert "  skipped: 1" in out
    assert tree_snapshot(scratch.abc) == before
    assert tree_snapshot(other) == theirs


def test_a_copy_missing_one_edited_byte_is_not_already_migrated(scratch, home, migrate):
    """Judged file by file as a copy is verified: an edit made in the old
    environment after a --keep-old copy leaves the two different."""
    out, err, code = migrate("-d", scratch.amd, "--keep-old", *RELOCATE)
    assert code == 0, out + err
    data = scratch.amd / "share" / "demo" / "data.txt"
    data.write_bytes(data.read_bytes() + b"one more line\n")
    out, err, code = migrate("-d", scratch.amd, *RELOCATE)
    assert code == 1, out + err
    assert "already migrated" not in out
    assert "(a name collision): share/demo/data.txt: differs from the source" in out
    assert data.read_bytes().endswith(b"one more line\n")


def _bytes_name(directory, name: bytes):
    """A path below ``directory`` whose last name is not UTF-8, as Python
    carries it (``surrogateescape``)."""
    return directory / os.fsdecode(name)


def test_names_that_are_not_utf8_are_listed_never_a_traceback(scratch, home, migrate):
    """Names are bytes on POSIX: a results folder named in Latin-1 beside
    the environments, and an environment named so, are listed (escaped, as
    Python writes such bytes) and the others migrate; the log keeps the
    bytes themselves."""
    results = _bytes_name(scratch.envs_dir, b"r\xe9sultats")
    results.mkdir()
    (results / "table.csv").write_text("a,b\n")
    odd = _bytes_name(scratch.envs_dir, b"d\xe9mo")
    shutil.copytree(scratch.amd, odd, symlinks=True)
    before = tree_snapshot(odd)
    out, err, code = migrate("-d", scratch.envs_dir, "-v", *RELOCATE)
    assert code == 0, out + err
    assert "INVALID ENV: r\\xe9sultats (no conda-meta directory)\n" in out
    assert (
        "INVALID ENV: d\\xe9mo (its name is not valid UTF-8, which conda's "
        "environments.txt cannot record; rename it to migrate it, e.g.: "
        f"mv $'{scratch.envs_dir}/d\\xe9mo' '{scratch.envs_dir}/d\xe9mo')" in out
    )
    assert "Traceback" not in out + err
    assert "migrated: 2" in out
    assert tree_snapshot(odd) == before
    (log,) = (home / ".conda" / "migrate" / "logs").glob("*.log")
    assert b"INVALID ENV: r\xe9sultats" in log.read_bytes()


def test_json_carries_names_that_are_not_utf8(scratch, home, migrate):
    """conda reports the error as JSON (escaped, as JSON writes such
    characters); without conda the error goes to stderr."""
    odd = _bytes_name(scratch.envs_dir, b"d\xe9mo")
    shutil.copytree(scratch.amd, odd, symlinks=True)
    out, err, code = migrate("-d", odd, "--json", *RELOCATE)
    assert code == 1, out + err
    message = json.loads(out)["message"] if out else err
    assert (
        f"{scratch.envs_dir}/d\\xe9mo cannot be migrated: its name is not valid "
        "UTF-8" in message
    )
    assert "Traceback" not in err
    assert odd.exists()


def test_a_d_directory_not_in_utf8_is_scanned_and_submitted(
    scratch, home, migrate, monkeypatch
):
    """``-d`` itself named in Latin-1: discovery, the job script of
    ``--submit`` and its shell quoting carry the bytes."""
    envs = _bytes_name(scratch.root, b"envs-\xe9t\xe9")
    shutil.copytree(scratch.amd, envs / "amd", symlinks=True)
    out, err, code = migrate(
        "-d", envs, "--all", "--dry-run", "--submit", "-t", "1:00:00"
    )
    assert code == 0, out + err
    assert "exec " in out and "envs-\\xe9t\\xe9" in out
    # An sbatch that keeps the script it is given, as Slurm does.
    bin_dir, kept = home / "bin", home / "job.sh"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f"#!/bin/sh\ncat > {kept}\necho 4242\n")
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    out, err, code = migrate("-d", envs, "--all", "--submit", "-t", "1:00:00")
    assert code == 0, out + err
    assert "Submitted batch job 4242: " in out and "envs-\\xe9t\\xe9" in out
    (line,) = [x for x in kept.read_bytes().splitlines() if x.startswith(b"exec ")]
    assert b" -d '" + os.fsencode(envs) + b"' --all" in line
    out, err, code = migrate("-d", envs, "-v", *RELOCATE)
    assert code == 1, out + err
    assert "Traceback" not in out + err
    assert "INVALID ENV: amd (its path is not valid UTF-8" in out


def refused_untouched(scratch, home, migrate, link, target, line, *args, condarc=""):
    """Run with ``link`` (below the home) a symlink to ``target``, and the rc
    files a user keeps (``condarc`` added to ``~/.condarc``): refused (exit
    code 2, ``line``), with the environments in their old place with their
    files, the rc files as they were (no backup made), nothing in
    ``target``. The output."""
    if link is not None:
        (home / link).parent.mkdir(exist_ok=True)
        (home / link).symlink_to(target)
    rc_files = {
        home / ".condarc": f"envs_dirs:\n  - {scratch.envs_dir}  # big envs\n{condarc}",
        home / ".bashrc": f"conda activate {scratch.abc}  # at login\n",
    }
    for path, text in rc_files.items():
        path.write_text(text)
    before = tree_snapshot(scratch.envs_dir)
    out, err, code = migrate("-d", scratch.envs_dir, *RELOCATE, *args)
    assert_one_line_refusal(out, err, code, 2, line)
    assert tree_snapshot(scratch.envs_dir) == before
    assert (scratch.abc / "conda-meta" / "history").is_file()
    assert {path: path.read_text() for path in rc_files} == rc_files
    assert [p.name for p in home.iterdir() if BACKUP_SUFFIX in p.name] == []
    assert not (target / "envs").exists() and not (target / "abc").exists()
    return out + err


@pytest.mark.parametrize("link", [".conda", ".conda/envs", "purged .conda"])
@pytest.mark.parametrize(
    "dry_run",
    [(), ("--dry-run",), ("--dry-run", "--submit", "-t", "1:00:00")],
    ids=["run", "dry-run", "submit"],
)
def test_conda_dir_linked_into_scratch_is_refused(
    scratch, home, migrate, link, dry_run
):
    """``ln -s $SCRATCH/dotconda ~/.conda`` dodges the home quota, and makes
    ``~/.conda/envs`` a place on scratch: "migrated" there, the environments
    stay where the purge takes them while the rc files say they are safe.
    Refused before anything is written (a job before it is queued); the
    hint's commands make it a directory in the home, and the same command
    then moves them there."""
    purged = link.startswith("purged ")
    link = link.removeprefix("purged ")
    target = scratch.root / f"dot{link.replace('/', '-')}"
    if not purged:
        target.mkdir()
    said = refused_untouched(
        scratch,
        home,
        migrate,
        link,
        target,
        f"The destination {home}/.conda/envs is on scratch: {home / link} is a "
        f"symlink to {target}, under $SCRATCH ({scratch.root}). The environments "
        "would stay where scratch is purged. Nothing was touched.",
        *dry_run,
    )
    assert "Submitted" not in said
    if dry_run:
        return
    make = f"mkdir {home / link}" if purged else f"mv {target} {home / link}"
    hint = f"rm {home / link} && {make}"
    assert f"\n  {hint}\nthen run this again (or pass --dest with a directory " in said
    subprocess.run(["bash", "-c", hint], check=True)
    out, err, code = migrate("-d", scratch.envs_dir, *RELOCATE)
    assert code == 0, out + err
    assert not (home / link).is_symlink()
    assert (home / ".conda/envs/abc/conda-meta/history").is_file()
    assert not scratch.abc.exists()


def test_the_hint_never_carries_the_environments_into_the_home(scratch, home, migrate):
    """``ln -s $SCRATCH ~/.conda``: a ``mv`` of what the link leads to would
    take the environments into the home unchecked, their prefixes wrong; the
    hint makes an empty directory instead, and the run then moves them."""
    said = refused_untouched(
        scratch,
        home,
        migrate,
        ".conda",
        scratch.root,
        f"The destination {home}/.conda/envs is on scratch: {home}/.conda is a "
        f"symlink to {scratch.root}, under $SCRATCH ({scratch.root}).",
    )
    hint = f"rm {home}/.conda && mkdir {home}/.conda"
    assert f"\n  {hint}\n" in said
    subprocess.run(["bash", "-c", hint], check=True)
    out, err, code = migrate("-d", scratch.envs_dir, *RELOCATE)
    assert code == 0, out + err
    assert (home / ".conda/envs/abc/conda-meta/history").is_file()
    assert sorted(p.name for p in scratch.envs_dir.iterdir()) == ["pkgs", "pyt"]


def test_dest_under_scratch_is_refused(scratch, home, migrate):
    dest = scratch.root / "safe-envs"
    said = refused_untouched(
        scratch,
        home,
        migrate,
        None,
        dest,
        f"The destination {dest} is on scratch: it is under $SCRATCH "
        f"({scratch.root}). The environments would stay where scratch is purged. "
        "Nothing was touched.",
        "--dest",
        dest,
    )
    assert "Pass --dest with a directory in your home" in said


def test_scratch_that_is_a_symlink_is_followed(
    scratch, home, migrate, monkeypatch, tmp_path
):
    """``$SCRATCH=/scratch/u -> /lustre/u``, and ``~/.conda`` linked to the
    real path: under ``$SCRATCH`` as both resolve."""
    linked = tmp_path / "scratch-link"
    linked.symlink_to(scratch.root)
    monkeypatch.setenv("SCRATCH", str(linked))
    target = scratch.root / "dotconda"
    target.mkdir()
    refused_untouched(
        scratch,
        home,
        migrate,
        ".conda",
        target,
        f"The destination {home}/.conda/envs is on scratch: {home}/.conda is a "
        f"symlink to {target}, under $SCRATCH ({linked}).",
    )


def test_conda_dir_linked_onto_the_sources_filesystem_is_refused(
    scratch, home, migrate, tmp_path
):
    """Where ``$SCRATCH`` does not name it (unset, or another directory of
    the purged filesystem): a symlink on the way that lands the destination
    on the filesystem the environments are on keeps them there."""
    target = tmp_path / "project" / "dotconda"
    target.mkdir(parents=True)
    refused_untouched(
        scratch,
        home,
        migrate,
        ".conda",
        target,
        f"The destination {home}/.conda/envs is on the filesystem the "
        f"environments are leaving: {home}/.conda is a symlink to {target}. "
        "The environments would stay on it. Nothing was touched.",
    )


@pytest.mark.parametrize("where", ["same filesystem", "another filesystem"])
def test_a_home_that_is_a_symlink_is_no_refusal(
    scratch, home, migrate, monkeypatch, tmp_path, tmpfs, where
):
    """``/home/u -> /gpfs/home/u``: the site's home is where the home is,
    on the filesystem of scratch or not; only what lies below it counts."""
    real = tmp_path / "gpfs-home" if where == "same filesystem" else tmpfs() / "u"
    real.mkdir()
    linked = tmp_path / "u"
    linked.symlink_to(real)
    monkeypatch.setenv("HOME", str(linked))
    out, err, code = migrate("-d", scratch.envs_dir, *RELOCATE)
    assert code == 0, out + err
    assert (real / ".conda/envs/abc/conda-meta/history").is_file()
    assert not scratch.abc.exists()


@pytest.mark.parametrize("link", [".conda/pkgs", ".conda"])
def test_package_cache_linked_into_scratch_is_refused_if_it_moves(
    scratch, home, migrate, link
):
    """The run points ``pkgs_dirs`` entries on scratch at ``~/.conda/pkgs``;
    one linked into scratch keeps the cache on the purged filesystem, so
    that is refused, also with the environments going elsewhere (the hint
    offers no --dest then); without such an entry the link is the user's
    business, and the environments move."""
    target = scratch.root / "linked"
    target.mkdir()
    said = refused_untouched(
        scratch,
        home,
        migrate,
        link,
        target,
        f"{home}/.conda/pkgs, where conda's package cache would move, is on "
        f"scratch: {home / link} is a symlink to {target}, under $SCRATCH "
        f"({scratch.root}). conda's package cache would stay where scratch is "
        "purged. Nothing was touched.",
        "--dest",
        home / "envs",
        condarc=f"pkgs_dirs:\n  - {scratch.root}/conda-pkgs\n",
    )
    assert (
        f"\n  rm {home / link} && mv {target} {home / link}\nthen run this again.\n"
        in said
    )
    (home / ".condarc").write_text(f"envs_dirs:\n  - {scratch.envs_dir}\n")
    out, err, code = migrate("-d", scratch.envs_dir, "--dest", home / "envs", *RELOCATE)
    assert code == 0, out + err
    assert (home / "envs/abc/conda-meta/history").is_file()
