"""A purged scratch: environments that lost files their records list.

The fixtures are real installs from the test channel, with files deleted as
a scratch purge deletes them (unread files go, ``conda-meta`` stays).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import TYPE_CHECKING

import pytest

from tests.support.channel import SITE_PACKAGES, SUBDIR
from tests.support.markers import requires_conda
from tests.support.trees import chown_tree, softlink_by_hand, tree_snapshot
from tests.support.users import USER

if TYPE_CHECKING:
    from pathlib import Path

#: One file of each kind the purge takes: text with the prefix, binary with
#: the prefix, plain data, a pip-installed module.
PURGED_CONDA = ("etc/demo/demo.conf", "lib/libdemo.so", "share/demo/data.txt")
PURGED_PIP = f"{SITE_PACKAGES}/extra_tool/__init__.py"


def purge(prefix: Path, *rels: str) -> None:
    for rel in rels:
        (prefix / rel).unlink()


def purged_env(make_env, tmp_path, *, cache: bool = True, channel: bool = True) -> Path:
    """``$SCRATCH/conda-envs/abc``, installed, then purged; ``cache=False``
    also purges the package cache it was installed from, ``channel=False``
    makes the channel its records name unreachable."""
    env = make_env(tmp_path / "scratch" / "conda-envs" / "abc", ["demo-app"], pip=True)
    purge(env, *PURGED_CONDA, PURGED_PIP)
    if not cache:
        shutil.rmtree(tmp_path / "rattler-cache")
    if not channel:
        channel_gone(env, tmp_path)
    return env


def channel_gone(env: Path, tmp_path: Path) -> None:
    """The channel the records name moved away."""
    gone = (tmp_path / "gone-channel").as_uri()
    for record_path in (env / "conda-meta").glob("*.json"):
        record = json.loads(record_path.read_text())
        record["url"] = f"{gone}/{SUBDIR}/{record['fn']}"
        record_path.write_text(json.dumps(record))


def test_unrepairable_damage_is_never_same(make_env, migrate, home, tmp_path):
    env = purged_env(make_env, tmp_path, cache=False, channel=False)
    out, _, code = migrate("-d", env.parent, "--all", "--no-clean")
    dest = home / ".conda" / "envs" / "abc"
    assert code == 1
    assert "are same" not in out
    assert "5 files" not in out  # four were purged, no more
    assert "Damaged by the purge: 4 files missing" in out
    assert "demo-text-1.0-0 (2 files)" in out
    assert "demo-binary-1.0-0 (1 file)" in out
    assert "extra-tool 0.3 (1 file)" in out
    assert (
        f"conda install --force-reinstall -p {dest} "
        "-c " in out  # the channel the records name
    )
    assert "demo-text==1.0=0" in out and "demo-binary==1.0=0" in out
    assert (
        f"{dest}/bin/python -m pip install --force-reinstall --no-deps extra-tool==0.3"
        in out
    )
    # Moved all the same: the copy holds everything the source held.
    assert (dest / "conda-meta" / "history").is_file()
    assert not env.exists()


def test_dry_run_shows_damage(make_env, migrate, tmp_path):
    env = purged_env(make_env, tmp_path, cache=False, channel=False)
    out, _, code = migrate("-d", env.parent, "--all", "--dry-run")
    assert "Damaged by the purge: 4 files missing" in out
    assert "demo-text-1.0-0 (2 files)" in out
    assert code == 1
    assert env.exists()


def test_dry_run_says_what_the_caches_would_restore(make_env, migrate, tmp_path):
    env = purged_env(make_env, tmp_path, channel=False)
    before = tree_snapshot(env)
    out, _, code = migrate("-d", env.parent, "--all", "--dry-run", "--json")
    (result,) = json.loads(out)["environments"]
    assert sorted(result["restored"]) == sorted(PURGED_CONDA)
    assert result["missing"] == [PURGED_PIP]
    assert code == 1  # the pip module cannot come back
    assert tree_snapshot(env) == before
    out, _, code = migrate("-d", env.parent, "--all", "--dry-run")
    assert "Would restore 3 of the 3 files the purge took" in out


def test_json_reports_damage(make_env, migrate, home, tmp_path):
    env = purged_env(make_env, tmp_path, cache=False, channel=False)
    out, _, code = migrate("-d", env.parent, "--all", "--json", "--no-clean")
    assert code == 1
    document = json.loads(out)
    assert document["success"] is False
    (result,) = document["environments"]
    assert sorted(result["missing"]) == sorted([*PURGED_CONDA, PURGED_PIP])
    assert result["damage"]["conda"]["demo-text-1.0-0"] == [
        "etc/demo/demo.conf",
        "share/demo/data.txt",
    ]
    assert result["damage"]["pip"]["extra-tool 0.3"] == [PURGED_PIP]
    assert any("--force-reinstall" in command for command in result["remedy"])


def test_missing_pyc_is_no_damage(make_env, migrate, home, tmp_path):
    """A ``.pyc`` (and ``__pycache__``) is compiled again when missing."""
    env = make_env(tmp_path / "scratch" / "conda-envs" / "abc", ["demo-app"], pip=True)
    site = env / SITE_PACKAGES
    cache = site / "extra_tool" / "__pycache__"
    cache.mkdir()
    (cache / "__init__.cpython-311.pyc").write_bytes(b"\x00" * 16)
    record = site / "extra_tool-0.3.dist-info" / "RECORD"
    record.write_text(
        record.read_text() + "extra_tool/__pycache__/__init__.cpython-311.pyc,,\n"
    )
    shutil.rmtree(cache)
    out, _, code = migrate("-d", env.parent, "--all", "--no-clean")
    assert code == 0, out
    assert "Damaged" not in out
    assert "are same" in out


@requires_conda
def test_clean_keeps_the_packages_a_damaged_environment_needs(
    make_env, migrate, home, tmp_path
):
    """The cache lost the same file (purged there too): nothing restores it,
    and conda's clean must not take what is left of that package."""
    env = purged_env(make_env, tmp_path, channel=False)
    pkgs = tmp_path / "conda-pkgs"
    pkgs.mkdir()
    (pkgs / "urls.txt").write_text("")  # what makes it a package cache
    for package in ("demo-text-1.0-0", "python-3.11.0-0"):
        shutil.copytree(tmp_path / "rattler-cache" / package, pkgs / package)
    purge(pkgs / "demo-text-1.0-0", "etc/demo/demo.conf")
    shutil.rmtree(tmp_path / "rattler-cache")
    out, _, code = migrate("-d", env.parent, "--all")
    assert code == 1, out
    assert "Removed" in out and "from conda's caches" in out
    assert (pkgs / "demo-text-1.0-0" / "info" / "paths.json").is_file()
    assert not (pkgs / "python-3.11.0-0").exists()


#: A whole package (demo-text: text with the prefix, plain data, a symlink, a
#: script) and a binary file with the prefix.
WHOLE_PACKAGE = (
    "bin/demo-hello",
    "etc/demo/demo.conf",
    "share/demo/current.txt",
    "share/demo/data.txt",
    "lib/libdemo.so",
)


def as_installed_at(make_env, dest: Path, rels) -> dict[str, bytes | str]:
    """What a fresh install at ``dest`` holds at ``rels`` (the migrated copy
    is moved aside for it, and back)."""
    aside = dest.with_name("aside")
    dest.rename(aside)
    try:
        make_env(dest, ["demo-app"])
        return {rel: read(dest / rel) for rel in rels}
    finally:
        shutil.rmtree(dest)
        aside.rename(dest)


def read(path: Path) -> bytes | str:
    return str(path.readlink()) if path.is_symlink() else path.read_bytes()


def assert_restored(migrate, make_env, home, env: Path, *more: str) -> str:
    """``env``, purged of ``WHOLE_PACKAGE``, migrates; the run says it
    restored the 5 files, and they are what an install at the new place
    holds. Returns what the run printed."""
    out, _, code = migrate("-d", env.parent, "--all", "--no-clean", *more)
    assert code == 0, out
    assert "Restored 5 files the purge took" in out
    dest = home / ".conda" / "envs" / "abc"
    restored = {rel: read(dest / rel) for rel in WHOLE_PACKAGE}
    assert restored == as_installed_at(make_env, dest, WHOLE_PACKAGE)
    return out


def test_purged_files_come_back_from_the_extracted_cache(
    make_env, migrate, home, tmp_path
):
    env = make_env(tmp_path / "scratch" / "conda-envs" / "abc", ["demo-app"])
    purge(env, *WHOLE_PACKAGE)
    out = assert_restored(migrate, make_env, home, env)
    assert "Damaged by the purge: 5 files missing" in out
    assert "Old and New Environments are same" in out
    dest = home / ".conda" / "envs" / "abc"
    assert str(dest).encode() in (dest / "etc/demo/demo.conf").read_bytes()
    assert str(dest).encode() in (dest / "lib/libdemo.so").read_bytes()
    assert os.access(dest / "bin/demo-hello", os.X_OK)
    # conda's own check of the new environment agrees with the new bytes.
    record = json.loads((dest / "conda-meta" / "demo-text-1.0-0.json").read_text())
    for entry in record["paths_data"]["paths"]:
        if "sha256_in_prefix" in entry and entry["path_type"] == "hardlink":
            data = (dest / entry["_path"]).read_bytes()
            assert entry["sha256_in_prefix"] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("restorable", [True, False], ids=["cached", "lost"])
def test_the_plan_counts_what_the_copy_restores(
    restorable, make_env, migrate, home, tmp_path
):
    """The purge took files and the directories it emptied: the copy puts
    them back, so the dry run plans what it plans for the environment whole
    (the files by their records' sizes, a package's symlink as a link, each
    directory again), also where no cache or channel still has them (finding
    out takes the copy's own reads); and the copy restores them all."""
    env = make_env(tmp_path / "scratch" / "conda-envs" / "abc", ["demo-app"])

    def planned(expect: int) -> tuple[int, int]:
        out, err, code = migrate("-d", env.parent, "--all", "--dry-run", "--json")
        assert code == expect, out + err  # 1: files would stay missing
        (plan,) = json.loads(out)["environments"]
        return plan["written_files"], plan["written_bytes"]

    whole = planned(0)
    shutil.rmtree(env / "etc")
    shutil.rmtree(env / "share" / "demo")  # data.txt, and current.txt linking to it
    if not restorable:
        shutil.rmtree(tmp_path / "rattler-cache")
        channel_gone(env, tmp_path)
    assert planned(0 if restorable else 1) == whole
    if restorable:
        out, err, code = migrate("-d", env.parent, "--all", "--json", "--no-clean")
        assert code == 0, out + err
        (done,) = json.loads(out)["environments"]
        assert done["restored"] == [
            "etc/demo/demo.conf",
            "share/demo/current.txt",
            "share/demo/data.txt",
        ]


def test_a_file_purged_from_the_cache_too_is_not_taken(
    make_env, migrate, home, tmp_path
):
    """The cache's copy no longer matches the package's paths.json."""
    env = purged_env(make_env, tmp_path, channel=False)
    cached = tmp_path / "rattler-cache" / "demo-text-1.0-0" / "etc/demo/demo.conf"
    cached.unlink()
    cached.write_text("root = somewhere else\n")
    out, _, code = migrate("-d", env.parent, "--all", "--no-clean")
    assert code == 1
    dest = home / ".conda" / "envs" / "abc"
    assert not (dest / "etc/demo/demo.conf").exists()
    assert (dest / "share/demo/data.txt").exists()
    assert "etc/demo/demo.conf" in out.split("could not be restored:")[1]


def test_purged_files_come_back_from_a_cached_tarball(
    make_env, migrate, home, tmp_path, channel
):
    env = make_env(tmp_path / "scratch" / "conda-envs" / "abc", ["demo-app"])
    purge(env, *WHOLE_PACKAGE)
    shutil.rmtree(tmp_path / "rattler-cache")
    channel_gone(env, tmp_path)
    pkgs = tmp_path / "conda-pkgs"
    pkgs.mkdir()
    (pkgs / "urls.txt").write_text("")
    for fn in ("demo-text-1.0-0.tar.bz2", "demo-binary-1.0-0.tar.bz2"):
        shutil.copy(channel / SUBDIR / fn, pkgs / fn)
    assert_restored(migrate, make_env, home, env)


@requires_conda
def test_purged_files_come_back_from_the_channel_through_conda(
    make_env, migrate, home, tmp_path
):
    env = make_env(tmp_path / "scratch" / "conda-envs" / "abc", ["demo-app"])
    purge(env, *WHOLE_PACKAGE)
    shutil.rmtree(tmp_path / "rattler-cache")
    assert_restored(migrate, make_env, home, env)


@requires_conda
def test_restored_files_are_what_conda_links_at_the_new_prefix(
    make_env, migrate, home, tmp_path, channel, conda_cli
):
    """The same files, linked by conda's own installer at the destination."""
    env = make_env(tmp_path / "scratch" / "conda-envs" / "abc", ["demo-app"])
    purge(env, *WHOLE_PACKAGE)
    out, _, code = migrate("-d", env.parent, "--all", "--no-clean")
    assert code == 0, out
    dest = home / ".conda" / "envs" / "abc"
    restored = {rel: read(dest / rel) for rel in WHOLE_PACKAGE}
    aside = dest.with_name("aside")
    dest.rename(aside)
    out, err, code = conda_cli(
        "create", "-p", dest, "--offline", "--override-channels", "--solver",
        "classic", "-c", channel.as_uri(), "--yes", "demo-text", "demo-binary",
    )  # fmt: skip
    assert code == 0, out + err
    assert restored == {rel: read(dest / rel) for rel in WHOLE_PACKAGE}


# -- every spelling of the old prefix ---------------------------------------------


def files_naming(root: Path, spelling: str) -> list[str]:
    """Files of ``root`` whose bytes name ``spelling`` as a path (conda's
    package records and history name the package cache and past commands
    by right)."""
    found = []
    needle = spelling.encode()
    for path in root.rglob("*"):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            if spelling in os.readlink(path):
                found.append(rel)
        elif path.is_file() and not rel.startswith("conda-meta/"):
            data = path.read_bytes()
            at = data.find(needle)
            while at != -1:
                after = data[at + len(needle) : at + len(needle) + 1]
                if not (after.isalnum() or after in b"_.-+~"):
                    found.append(rel)
                    break
                at = data.find(needle, at + 1)
    return found


def site_with_symlinked_scratch(tmp_path: Path) -> tuple[Path, Path]:
    """``$SCRATCH`` as sites have it: ``/scratch/u`` a symlink to the real
    place on the parallel filesystem."""
    real = tmp_path / "gpfs" / "scratch" / "u"
    real.mkdir(parents=True)
    link = tmp_path / "scratch"
    link.symlink_to(real)
    return real, link


def test_created_by_its_real_path_migrated_through_the_symlink(
    make_env, migrate, home, tmp_path
):
    real, link = site_with_symlinked_scratch(tmp_path)
    env = make_env(real / "envs" / "abc", ["demo-app"], pip=True)
    assert files_naming(env, str(env)), "the fixture names no prefix"
    out, _, code = migrate("-d", link / "envs", "--all", "--no-clean")
    assert code == 0, out
    dest = home / ".conda" / "envs" / "abc"
    assert files_naming(dest, str(real / "envs" / "abc")) == []
    assert files_naming(dest, str(link / "envs" / "abc")) == []
    assert str(dest) in (dest / "etc/demo/demo.conf").read_text()
    assert (dest / "bin/demo-app").read_text().startswith(f"#!{dest}/bin/python")
    assert str(dest).encode() in (dest / "lib/libdemo.so").read_bytes()


def test_created_through_the_symlink_migrated_by_its_real_path(
    make_env, migrate, home, tmp_path
):
    real, link = site_with_symlinked_scratch(tmp_path)
    env = make_env(link / "envs" / "abc", ["demo-app"], pip=True)
    out, _, code = migrate("-d", real / "envs", "--all", "--no-clean")
    assert code == 0, out
    dest = home / ".conda" / "envs" / "abc"
    assert files_naming(dest, str(env)) == []
    assert files_naming(dest, str(real / "envs" / "abc")) == []
    assert (dest / "bin/demo-app").read_text().startswith(f"#!{dest}/bin/python")


def test_the_check_looks_for_every_spelling(tmp_path, make_env):
    """A copy that still names the real path is refused, whatever spelling
    the source was given by."""
    from conda_migrate_plugin.relocation.verify import verify_files

    real, link = site_with_symlinked_scratch(tmp_path)
    env = make_env(real / "envs" / "abc", ["demo-app"])
    copy = tmp_path / "copy"
    shutil.copytree(env, copy, symlinks=True)
    check = verify_files(link / "envs" / "abc", copy, tmp_path / "new")
    assert any(
        p.startswith("etc/demo/demo.conf: still names the old prefix")
        for p in check.problems
    ), check.problems


def test_the_prefix_its_history_was_created_with(make_env, migrate, home, tmp_path):
    """Created elsewhere (``conda create -p``), then moved with ``mv``: its
    files name a place that is gone, which its history still names."""
    created = make_env(tmp_path / "project" / "abc", ["demo-app"])
    history = created / "conda-meta" / "history"
    history.write_text(
        f"==> 2026-01-05 10:00:00 <==\n# cmd: conda create -p {created} demo-app\n"
    )
    env = tmp_path / "scratch" / "envs" / "abc"
    env.parent.mkdir(parents=True)
    created.rename(env)
    out, _, code = migrate("-d", env.parent, "--all", "--no-clean")
    assert code == 0, out
    dest = home / ".conda" / "envs" / "abc"
    assert files_naming(dest, str(created)) == []
    assert str(dest) in (dest / "etc/demo/demo.conf").read_text()


# -- softlinked environments ------------------------------------------------------


def test_a_softlinked_environment_becomes_self_contained(
    make_env, migrate, home, tmp_path
):
    env = make_env(tmp_path / "scratch" / "conda-envs" / "abc", ["demo-app"])
    linked = softlink_by_hand(env)
    out, _, code = migrate("-d", env.parent, "--all", "--no-clean")
    assert code == 0, out
    dest = home / ".conda" / "envs" / "abc"
    for rel in linked:
        assert not (dest / rel).is_symlink(), rel
    # The scratch purge takes the package cache: nothing in $HOME dangles.
    shutil.rmtree(tmp_path / "rattler-cache")
    restored = {rel: read(dest / rel) for rel in linked}
    assert restored == as_installed_at(make_env, dest, linked)
    for record_path in (dest / "conda-meta").glob("*.json"):
        record = json.loads(record_path.read_text())
        assert record["link"]["type"] != 2
        for entry in record["paths_data"]["paths"]:
            if entry["_path"] in linked:
                assert entry["path_type"] == "hardlink"


def test_a_softlinked_environment_whose_cache_was_purged(
    make_env, migrate, home, tmp_path
):
    """Its links dangle: damage, repaired from a tarball in a cache."""
    env = make_env(tmp_path / "scratch" / "conda-envs" / "abc", ["demo-app"])
    linked = softlink_by_hand(env)
    assert len(linked) > 1
    shutil.rmtree(tmp_path / "rattler-cache")
    channel_gone(env, tmp_path)
    out, _, code = migrate("-d", env.parent, "--all", "--no-clean", "--keep-old")
    assert code == 1, out
    assert f"Damaged by the purge: {len(linked)} files missing" in out
    assert "conda install --force-reinstall" in out


def test_a_softlinked_environment_whose_cache_kept_its_tarballs(
    make_env, migrate, home, tmp_path, channel
):
    """The extracted packages purged, their tarballs not: the links become
    the files, from the tarballs."""
    env = make_env(tmp_path / "scratch" / "conda-envs" / "abc", ["demo-app"])
    linked = softlink_by_hand(env)
    shutil.rmtree(tmp_path / "rattler-cache")
    channel_gone(env, tmp_path)
    pkgs = tmp_path / "conda-pkgs"
    pkgs.mkdir()
    (pkgs / "urls.txt").write_text("")
    for tarball in (channel / SUBDIR).glob("*.tar.bz2"):
        shutil.copy(tarball, pkgs / tarball.name)
    out, _, code = migrate("-d", env.parent, "--all", "--no-clean")
    assert code == 0, out
    assert f"Restored {len(linked)} files the purge took" in out
    dest = home / ".conda" / "envs" / "abc"
    restored = {rel: read(dest / rel) for rel in linked}
    assert restored == as_installed_at(make_env, dest, linked)


@requires_conda
def test_an_environment_conda_softlinked_survives_the_purge_of_its_cache(
    channel, migrate, home, tmp_path, conda_cli, monkeypatch
):
    from conda.base.context import reset_context

    env = tmp_path / "scratch" / "conda-envs" / "linked"
    monkeypatch.setenv("CONDA_ALWAYS_SOFTLINK", "true")
    reset_context()
    out, err, code = conda_cli(
        "create", "-p", env, "--offline", "--override-channels", "--solver",
        "classic", "-c", channel.as_uri(), "--yes", "demo-text", "demo-binary",
    )  # fmt: skip
    assert code == 0, out + err
    monkeypatch.delenv("CONDA_ALWAYS_SOFTLINK")
    reset_context()
    pkgs = tmp_path / "conda-pkgs"
    links = [
        str(p.relative_to(env))
        for p in env.rglob("*")
        if p.is_symlink() and os.readlink(p).startswith(str(pkgs))
    ]
    assert links, "conda linked nothing into its cache"
    out, _, code = migrate("-d", env.parent, "--all", "--no-clean")
    assert code == 0, out
    shutil.rmtree(pkgs)
    dest = home / ".conda" / "envs" / "linked"
    for rel in links:
        assert not (dest / rel).is_symlink(), rel
        assert (dest / rel).read_bytes()


@requires_conda
def test_clean_keeps_what_an_unregistered_softlinked_environment_links_to(
    make_env, migrate, home, tmp_path
):
    """The prompt lists it, the user does not pick it, conda does not know
    it (not in environments.txt): its links must not dangle after clean."""
    envs = tmp_path / "scratch" / "conda-envs"
    make_env(envs / "abc", ["demo-app"])
    other = make_env(envs / "other", ["demo-text"])
    pkgs = tmp_path / "conda-pkgs"
    pkgs.mkdir()
    (pkgs / "urls.txt").write_text("")
    for package in (tmp_path / "rattler-cache").glob("*-*-*"):
        if package.is_dir():
            shutil.copytree(package, pkgs / package.name, symlinks=True)
    linked = softlink_by_hand(other, pkgs)
    out, _, code = migrate("-d", envs, stdin="abc\n")
    assert code == 0, out
    assert not (pkgs / "demo-app-2.0-py311_0").exists(), "clean removed nothing"
    dangling = [rel for rel in linked if not (other / rel).exists()]
    assert dangling == []


# -- relative links leaving the environment ----------------------------------------


@pytest.mark.parametrize(
    "method", ["relocate", pytest.param("clone", marks=requires_conda)]
)
def test_relative_links_out_of_the_environment_still_resolve(
    make_env, migrate, home, tmp_path, method
):
    """Either engine: conda's clone copies a link no package owns as it is,
    which from ``$HOME`` would lead nowhere once the old environment is gone."""
    real, link = site_with_symlinked_scratch(tmp_path)
    env = make_env(real / "envs" / "abc", ["demo-text"])
    datasets = real / "datasets"
    datasets.mkdir()
    (datasets / "ref.fa").write_text(">chr1\nACGT\n")
    (env / "share" / "ref.fa").symlink_to("../../../datasets/ref.fa")
    (env / "share" / "gone.fa").symlink_to("../../../datasets/gone.fa")
    out, _, code = migrate(
        "-d", link / "envs", "--all", "--no-clean", "--method", method
    )
    assert code == 0, out
    assert not env.exists()
    dest = home / ".conda" / "envs" / "abc"
    assert (dest / "share" / "ref.fa").read_text() == ">chr1\nACGT\n"
    assert (dest / "share" / "ref.fa").resolve() == (datasets / "ref.fa").resolve()
    assert os.readlink(dest / "share" / "gone.fa") == "../../../datasets/gone.fa"
    assert os.readlink(dest / "share" / "demo" / "current.txt") == "data.txt"
    log = next((home / ".conda" / "migrate" / "logs").glob("*.log")).read_text()
    assert (
        "share/ref.fa: its relative target ../../../datasets/ref.fa leaves the "
        f"environment; it now links to {datasets / 'ref.fa'}, where that led"
    ) in log


@requires_conda
def test_conda_s_clone_of_a_purged_environment_is_whole(
    make_env, migrate, home, tmp_path
):
    """conda's clone links every package again: what the purge took comes
    back, is checked against the copy's records, and the run says so."""
    env = make_env(tmp_path / "scratch" / "conda-envs" / "abc", ["demo-app"])
    purge(env, *WHOLE_PACKAGE)
    assert_restored(migrate, make_env, home, env, "--method", "clone")


# -- all of it at once, as an ordinary user --------------------------------------


def test_a_user_migrates_a_purged_softlinked_environment_through_the_symlink(
    unprivileged, make_env, tmp_path
):
    """A site's worst case: ``$SCRATCH`` a symlink, the environment created
    by its real path and softlinked into a package cache on scratch, some
    of its files and some of the cache purged, a link out to a dataset."""
    base, run = unprivileged
    home = base / "home"
    home.mkdir()
    real, link = site_with_symlinked_scratch(base)
    env = make_env(real / "envs" / "abc", ["demo-app"])
    pkgs = real / "pkgs"
    shutil.copytree(tmp_path / "rattler-cache", pkgs, symlinks=True)
    linked = softlink_by_hand(env, pkgs)
    (real / "datasets").mkdir()
    (real / "datasets" / "ref.fa").write_text(">chr1\n")
    (env / "share" / "ref.fa").symlink_to("../../../datasets/ref.fa")
    purge(env, "etc/demo/demo.conf", "lib/libdemo.so")
    purge(pkgs / "demo-text-1.0-0", "share/demo/data.txt")  # linked, gone
    chown_tree(base, USER)
    out, code = run(
        home, "-d", link / "envs", "--all", "--no-clean", "--method", "relocate"
    )
    dest = home / ".conda" / "envs" / "abc"
    assert "Damaged by the purge: 3 files missing" in out
    assert "Restored 2 files the purge took" in out
    # data.txt is gone from the cache too, and the user cannot read the
    # channel (the test session's, root's): on screen, with its remedy.
    assert code == 1, out
    missing = out.split("could not be restored:\n")[1].split("To restore them")[0]
    assert missing.split() == ["share/demo/data.txt"]
    assert f"conda install --force-reinstall -p {dest} " in out
    shutil.rmtree(pkgs)
    assert files_naming(dest, str(env)) == []
    assert files_naming(dest, str(link / "envs" / "abc")) == []
    assert [rel for rel in linked if (dest / rel).is_symlink()] == []
    assert [rel for rel in linked if not (dest / rel).exists()] == [
        "share/demo/data.txt"
    ]
    assert (dest / "share" / "ref.fa").read_text() == ">chr1\n"
    assert (dest / "etc/demo/demo.conf").read_text().startswith(f"root = {dest}\n")
    assert dest.stat().st_uid == USER


@requires_conda
def test_a_restored_script_gets_conda_s_long_shebang_at_a_long_prefix(
    make_env, migrate, home, tmp_path, channel, conda_cli, monkeypatch
):
    """Past 127 characters conda writes ``#!/usr/bin/env python``: so must
    the repair, byte for byte."""
    from conda.base.context import reset_context

    env = make_env(tmp_path / "scratch" / "conda-envs" / "abc", ["demo-app"])
    purged = ("bin/demo-app", "etc/demo/demo.conf")
    purge(env, *purged)
    dest_root = home / ("long-" * 24) / "envs"
    out, _, code = migrate("-d", env.parent, "--all", "--no-clean", "--dest", dest_root)
    assert code == 0, out
    dest = dest_root / "abc"
    restored = {rel: read(dest / rel) for rel in purged}
    assert restored["bin/demo-app"].startswith(b"#!/usr/bin/env python\n")
    dest.rename(dest.with_name("aside"))
    # The test channel has no pip for conda to add to python.
    monkeypatch.setenv("CONDA_ADD_PIP_AS_PYTHON_DEPENDENCY", "false")
    reset_context()
    out, err, code = conda_cli(
        "create", "-p", dest, "--offline", "--override-channels", "--solver",
        "classic", "-c", channel.as_uri(), "--yes", "demo-app",
    )  # fmt: skip
    monkeypatch.delenv("CONDA_ADD_PIP_AS_PYTHON_DEPENDENCY")
    reset_context()
    assert code == 0, out + err
    assert restored == {rel: read(dest / rel) for rel in purged}
