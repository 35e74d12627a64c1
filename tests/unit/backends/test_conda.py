"""``conda migrate`` inside a real conda: the plugin hook, conda's clone, and
the fallback to relocation when clone cannot obtain the packages."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from typing import TYPE_CHECKING

import pytest

from tests.support.channel import SUBDIR
from tests.support.markers import requires_conda
from tests.support.trees import chown_tree, tree_snapshot
from tests.support.users import USER, user_home

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = requires_conda


def test_conda_lists_the_subcommand(conda_cli):
    out, err, code = conda_cli("--help", raises=SystemExit)
    assert "migrate" in out


def test_conda_migrate_clones_in_process(scratch, home, conda_cli):
    out, err, code = conda_cli(
        "migrate", "-d", scratch.envs_dir, "--all", "--method", "clone", "--json"
    )
    assert code == 0, out + err
    document = json.loads(out)
    engines = {e["name"]: e["engine"] for e in document["environments"]}
    assert engines == {"abc": "clone", "amd": "clone"}
    new_abc = home / ".conda" / "envs" / "abc"
    from conda.core.prefix_data import PrefixData

    names = sorted(
        r.name
        for r in PrefixData(str(new_abc), interoperability=True).reload().iter_records()
    )
    assert names == ["demo-app", "demo-binary", "demo-text", "extra-tool", "python"]
    assert str(new_abc) in (home / ".conda" / "environments.txt").read_text()
    assert not scratch.abc.exists()
    assert sorted(document["clean"]) == [
        "bytes",
        "index_cache",
        "logfiles",
        "packages",
        "tarballs",
    ]


def test_auto_relocates_when_the_channel_and_cache_are_gone(
    channel, tmp_path, home, conda_cli
):
    """The cache sat on the purged scratch and the channel is unreachable:
    conda's clone could not work, relocation, the default, needs neither."""
    import rattler

    gone = tmp_path / "gone-channel"
    shutil.copytree(channel, gone)
    records = asyncio.run(
        rattler.solve([gone.as_uri()], ["demo-app"], platforms=[SUBDIR, "noarch"])
    )
    source = tmp_path / "scratch" / "envs" / "abc"
    cache = tmp_path / "scratch" / "pkgs"
    asyncio.run(rattler.install(records, source, cache_dir=cache, show_progress=False))
    shutil.rmtree(gone)
    shutil.rmtree(cache)
    out, err, code = conda_cli("migrate", "-d", source, "--all")
    assert code == 0, out + err
    assert "conda's clone" not in out
    assert len(re.findall("^Files: ", out, re.M)) == 1
    assert len(re.findall("^Packages: ", out, re.M)) == 1
    new = home / ".conda" / "envs" / "abc"
    assert f"root = {new}\n" in (new / "etc/demo/demo.conf").read_text()
    assert not source.exists()


def test_clone_method_does_not_fall_back(channel, tmp_path, home, conda_cli):
    import rattler

    gone = tmp_path / "gone-channel"
    shutil.copytree(channel, gone)
    records = asyncio.run(
        rattler.solve([gone.as_uri()], ["demo-text"], platforms=[SUBDIR, "noarch"])
    )
    source = tmp_path / "scratch" / "envs" / "amd"
    asyncio.run(
        rattler.install(
            records, source, cache_dir=tmp_path / "cache", show_progress=False
        )
    )
    shutil.rmtree(gone)
    shutil.rmtree(tmp_path / "cache")
    out, err, code = conda_cli("migrate", "-d", source, "--all", "--method", "clone")
    assert code == 1
    assert "--method relocate" in out
    assert (source / "conda-meta" / "history").is_file()
    assert not (home / ".conda" / "envs" / "amd").exists()


@pytest.mark.parametrize("flag", ["--dry-run"])
def test_dry_run_through_conda(scratch, home, conda_cli, flag):
    out, err, code = conda_cli("migrate", "-d", scratch.envs_dir, "--all", flag)
    assert code == 0
    assert "Would write" in out
    assert scratch.abc.exists() and not (home / ".conda" / "envs").exists()


def test_clone_keeps_pins_and_environment_variables(scratch, home, conda_cli):
    """conda's clone alone drops conda-meta/pinned and conda-meta/state."""
    (scratch.abc / "conda-meta" / "pinned").write_text("demo-text 1.0\n")
    state = f'{{"env_vars": {{"DEMO_HOME": "{scratch.abc}/share/demo"}}}}\n'
    (scratch.abc / "conda-meta" / "state").write_text(state)
    out, err, code = conda_cli(
        "migrate", "-d", scratch.abc, "--all", "--method", "clone", "--no-clean"
    )
    assert code == 0, out + err
    new = home / ".conda" / "envs" / "abc"
    assert (new / "conda-meta" / "pinned").read_text() == "demo-text 1.0\n"
    assert (new / "conda-meta" / "state").read_text() == state.replace(
        str(scratch.abc), str(new)
    )


def test_clone_extracts_again_a_package_a_killed_extraction_left_cut_short(
    make_env, tmp_path, home, conda_cli
):
    """A kill (scancel, a power cut) during conda's extraction into the
    package cache leaves a package's ``info/index.json`` whole and its
    ``info/paths.json`` empty: conda takes the directory as extracted and
    every later clone of that package died reading its file list."""
    first = make_env(tmp_path / "scratch" / "envs" / "first", ["demo-app"])
    out, err, code = conda_cli(
        "migrate", "-d", first, "--all", "--method", "clone", "--no-clean"
    )
    assert code == 0, out + err
    (extracted,) = (tmp_path / "conda-pkgs").glob("demo-text-*/info/paths.json")
    extracted.write_bytes(b"")
    whole = {
        path: path.stat().st_ino
        for path in (tmp_path / "conda-pkgs").glob("*/info/paths.json")
        if path != extracted
    }
    assert whole
    second = make_env(tmp_path / "scratch" / "envs" / "second", ["demo-app"])
    expected = (second / "share/demo/data.txt").read_bytes()
    out, err, code = conda_cli(
        "migrate", "-d", second, "--all", "--method", "clone", "--no-clean"
    )
    assert code == 0, out + err
    package = extracted.parent.parent.name
    assert f"Note: {package} in {tmp_path / 'conda-pkgs'}: its file list" in out
    new = home / ".conda" / "envs" / "second"
    assert (new / "share/demo/data.txt").read_bytes() == expected
    assert json.loads(extracted.read_text())["paths"]
    assert {path: path.stat().st_ino for path in whole} == whole
    assert out.count("Note: ") == 1
    (record,) = (new / "conda-meta").glob("demo-text-*.json")
    assert json.loads(record.read_text())["name"] == "demo-text"
    assert not second.exists()


def _cut_short_by_a_kill(package: Path, *, recorded: bool) -> None:
    """``package``, extracted in conda's cache, as a kill while conda
    extracted its files leaves it: ``info/`` whole, a file cut short and the
    one after it not there yet. conda's record of a finished extraction is
    there only where a conda read the cache since (it writes it then)."""
    data = package / "share/demo/data.txt"
    whole = data.read_bytes()
    data.unlink()  # its inode is linked into the first clone too
    data.write_bytes(whole[:100])
    (package / "bin/demo-hello").unlink()
    if not recorded:
        (package / "info/repodata_record.json").unlink()


def _migrated_first(make_env, tmp_path, conda_cli) -> Path:
    """conda's cache as a clone fills it; returns the extracted demo-text."""
    first = make_env(tmp_path / "scratch" / "envs" / "first", ["demo-app"])
    out, err, code = conda_cli(
        "migrate", "-d", first, "--all", "--method", "clone", "--no-clean"
    )
    assert code == 0, out + err
    (package,) = (tmp_path / "conda-pkgs").glob("demo-text-*/")
    return package


def test_clone_extracts_again_a_package_a_kill_left_without_all_its_files(
    make_env, tmp_path, home, conda_cli
):
    """The rerun after a job killed while conda extracted a package's own
    files: conda took the directory as extracted and failed on every later
    clone ('appears to be corrupted ... cannot be found', a paragraph a
    file); conda-migrate tells it by conda's missing record of a finished
    extraction, and conda extracts it again."""
    package = _migrated_first(make_env, tmp_path, conda_cli)
    _cut_short_by_a_kill(package, recorded=False)
    others = {
        path: path.stat().st_ino
        for path in (tmp_path / "conda-pkgs").glob("*/info/repodata_record.json")
    }
    assert len(others) == 3
    second = make_env(tmp_path / "scratch" / "envs" / "second", ["demo-app"])
    expected = (second / "share/demo/data.txt").read_bytes()

    out, err, code = conda_cli(
        "migrate", "-d", second, "--all", "--method", "clone", "--no-clean"
    )

    assert code == 0, out + err
    assert (
        f"Note: {package.name} in {package.parent}: 2 of the 4 files its file "
        "list names are missing or cut short, as a stopped extraction or a purge "
        "leaves it; "
        "conda extracts the package again." in out
    )
    assert out.count("Note: ") == 1
    new = home / ".conda" / "envs" / "second"
    assert (new / "share/demo/data.txt").read_bytes() == expected
    assert (new / "bin/demo-hello").is_file()
    assert (package / "share/demo/data.txt").read_bytes() == expected
    assert (package / "info/repodata_record.json").is_file()
    assert {path: path.stat().st_ino for path in others} == others
    assert not second.exists()


def test_a_cut_short_package_conda_has_read_since_is_found_when_the_clone_fails(
    make_env, tmp_path, home, conda_cli
):
    """A conda that read the cache since the kill (the rerun's own clone,
    any ``conda install``) wrote the record of a finished extraction: the
    clone fails on the missing files; its package is then found by its
    files and removed, a line says so in place of conda's paragraph a file,
    and the next run finishes."""
    package = _migrated_first(make_env, tmp_path, conda_cli)
    _cut_short_by_a_kill(package, recorded=True)
    second = make_env(tmp_path / "scratch" / "envs" / "second", ["demo-app"])
    before = tree_snapshot(second)
    migrate = ("migrate", "-d", second, "--all", "--method", "clone", "--no-clean")

    out, err, code = conda_cli(*migrate)

    assert code == 1, out + err
    assert (
        f"conda's clone of {second} failed: conda's package cache held "
        f"{package.name} with files missing or cut short, as a stopped extraction "
        "or a purge leaves it; removed, so that conda extracts it again." in out
    )
    assert "Run the same command again." in out
    assert "appears to be corrupted" not in out + err
    assert tree_snapshot(second) == before
    assert not package.exists()

    out, err, code = conda_cli(*migrate)

    assert code == 0, out + err
    new = home / ".conda" / "envs" / "second"
    assert tree_snapshot(new)["share/demo/data.txt"] == before["share/demo/data.txt"]
    assert (new / "bin/demo-hello").is_file()


@pytest.mark.parametrize("whose", ["a read-only cache", "another user's package"])
def test_a_cut_short_package_that_cannot_be_removed_is_named_and_kept(
    make_env, tmp_path, home, conda_cli, unprivileged, monkeypatch, whose
):
    """A cache conda may not write to (a group's, the site's), or a package
    another user extracted into a group's cache, is never changed: the run,
    as an ordinary user, names the package directory and what to do, and
    keeps the environment."""
    package = _migrated_first(make_env, tmp_path, conda_cli)
    _cut_short_by_a_kill(package, recorded=False)
    base, run = unprivileged
    cache = base / "pkgs"
    shutil.copytree(package.parent, cache, symlinks=True)
    cut = cache / package.name
    if whose == "a read-only cache":
        own = base / "own-pkgs"
        own.mkdir()
        os.chown(own, USER, USER)
        monkeypatch.setenv("CONDA_PKGS_DIRS", f"{own},{cache}")
    else:
        chown_tree(cache, USER)
        for path in (cut, *cut.rglob("*")):
            os.chown(path, 0, 0, follow_symlinks=False)
        monkeypatch.setenv("CONDA_PKGS_DIRS", str(cache))
    kept = tree_snapshot(cut)
    envs = base / "scratch"
    env = make_env(envs / "abc", ["demo-app"])
    chown_tree(envs, USER)
    before = tree_snapshot(env)

    out, code = run(user_home(base), "-d", env, "--all", "--method", "clone")

    assert code == 1, out
    assert (
        f"conda's package cache holds {cut}: 2 of the 4 files its file list names "
        "are missing or cut short, as a stopped extraction or a purge leaves it, "
        "and it cannot be removed here for conda to extract it again." in out
    )
    assert "Ask the cache's owner to remove that directory" in out
    assert "--method relocate" in out
    assert "Note: " not in out
    assert "remove this file manually" not in out
    assert tree_snapshot(cut) == kept
    assert tree_snapshot(env) == before
