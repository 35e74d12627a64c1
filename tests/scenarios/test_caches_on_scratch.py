"""conda's package cache after a run: none is left on scratch.

A cache on scratch is purged like the environments were: conda then
downloads into it again (the many small files the site wants gone) or links
from a package the purge half-deleted and fails. So when a run empties the
scanned directory, every ``pkgs_dirs`` and ``CONDA_PKGS_DIRS`` entry under
``$SCRATCH`` becomes ``~/.conda/pkgs``, listed once, and what the run could
not read is named with its file and line.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.markers import HAVE_CONDA, requires_conda
from tests.support.runs import child_env


def filled_cache(directory, tarball_bytes):
    """A package cache as conda leaves one: urls.txt and a tarball."""
    directory.mkdir(parents=True)
    (directory / "urls.txt").write_text("https://example.invalid/demo-1.0-0.conda\n")
    (directory / "demo-1.0-0.conda").write_bytes(b"\0" * tarball_bytes)
    return directory


def conda_pkgs_dirs(home):
    """conda's own reading of the user's files: what a login shell's conda
    downloads into and links from."""
    env = child_env(home)
    env.pop("CONDA_PKGS_DIRS", None)
    show = f"{sys.executable} -m conda config --show pkgs_dirs --json"
    run = subprocess.run(
        ["bash", "-c", f". ~/.bashrc && {show}"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(run.stdout)["pkgs_dirs"]


def test_every_package_cache_on_scratch_moves_home_once(scratch, home, migrate):
    root, envs = scratch.root, scratch.envs_dir
    beside = filled_cache(root / "conda" / "pkgs", 40_000)
    other = filled_cache(root / "other-pkgs", 20_000)
    condarc = home / ".condarc"
    condarc.write_text(
        "# my caches\n"
        "pkgs_dirs:\n"
        f"  - {beside}  # beside the envs\n"
        f"  - {envs}/pkgs\n"
        "  - $SCRATCH/other-pkgs   # the older one\n"
        "  - /opt/site/pkgs\n"
        "channels:\n"
        "  - defaults\n"
    )
    bashrc = home / ".bashrc"
    bashrc.write_text(
        "# caches\n"
        f"export CONDA_PKGS_DIRS={other},${{SCRATCH}}/conda-envs/pkgs\n"
        # conda splits on commas: this is one directory, named "pkgs:" on scratch.
        f'export CONDA_PKGS_DIRS="{beside}:{other},/opt/site/pkgs"\n'
    )

    out, err, code = migrate("-d", envs, "--all", "--no-clean")

    assert code == 0, out + err
    assert condarc.read_text() == (
        "# my caches\n"
        "pkgs_dirs:\n"
        f"  - {home}/.conda/pkgs  # beside the envs\n"
        "  # the older one\n"
        "  - /opt/site/pkgs\n"
        "channels:\n"
        "  - defaults\n"
    )
    assert bashrc.read_text() == (
        "# caches\n"
        f"export CONDA_PKGS_DIRS={home}/.conda/pkgs\n"
        f'export CONDA_PKGS_DIRS="{home}/.conda/pkgs,/opt/site/pkgs"\n'
    )
    assert out.count(f"conda's package cache moves into {home}/.conda/pkgs") == 1
    for cache in (beside, other):
        assert out.count(f"The cache it replaces, {cache}, holds ") == 1, out
    assert "warning" not in out
    if HAVE_CONDA:
        assert sorted(conda_pkgs_dirs(home)) == [
            "/opt/site/pkgs",
            f"{home}/.conda/pkgs",
        ]


def test_a_cache_on_scratch_the_run_cannot_read_is_named(scratch, home, migrate):
    condarc = home / ".condarc"
    condarc.write_text(f"pkgs_dirs:\n  - {scratch.root}/pkgs-$USER\n")
    bashrc = home / ".bashrc"
    line = 'export CONDA_PKGS_DIRS="$SCRATCH/pkgs:$CONDA_PKGS_DIRS"'
    bashrc.write_text(f"# caches\n{line}\n")

    out, err, code = migrate("-d", scratch.envs_dir, "--all", "--no-clean")

    assert code == 0, out + err
    assert condarc.read_text() == f"pkgs_dirs:\n  - {scratch.root}/pkgs-$USER\n"
    assert bashrc.read_text() == f"# caches\n{line}\n"
    left = "still names a package cache on scratch in a form this run does not rewrite"
    assert f"warning: {condarc}: line 2 {left}: {scratch.root}/pkgs-$USER\n" in out, out
    assert f"warning: {bashrc}: line 2 {left}: $SCRATCH/pkgs:$CONDA_PKGS_DIRS\n" in out


def test_caches_stay_while_environments_stay_in_the_directory(scratch, home, migrate):
    """A run that leaves an environment in the scanned directory keeps its
    rc files' caches, as it keeps the directory in ``envs_dirs``."""
    other = scratch.root / "other-pkgs"
    text = f"envs_dirs:\n  - {scratch.envs_dir}\npkgs_dirs:\n  - {other}\n"
    (home / ".condarc").write_text(text)

    out, err, code = migrate("-d", scratch.envs_dir, "--no-clean", stdin="2\n")

    assert code == 0, out + err
    assert (home / ".condarc").read_text() == text
    assert "conda's package cache" not in out


@requires_conda
def test_conda_fails_on_a_cache_the_purge_half_emptied(channel, home, tmp_path):
    """Why no cache may stay on scratch: conda links from a package it
    extracted there before, and fails once the purge took a file of it."""
    env = child_env(home, CONDA_PKGS_DIRS=str(tmp_path / "scratch" / "pkgs"))
    conda = [sys.executable, "-m", "conda", "create", "-y", "--offline"]
    source = ["--override-channels", "-c", channel.as_uri(), "demo-text"]
    run = {"capture_output": True, "text": True, "env": env, "cwd": tmp_path}
    first = subprocess.run([*conda, "-p", tmp_path / "one", *source], **run)
    assert first.returncode == 0, first.stderr
    (extracted,) = (tmp_path / "scratch" / "pkgs").glob("demo-text-*/share")
    purged = next(p for p in extracted.rglob("*") if p.is_file())
    purged.unlink()

    second = subprocess.run([*conda, "-p", tmp_path / "two", *source], **run)

    assert second.returncode == 1
    assert "appears to be corrupted" in second.stderr + second.stdout
