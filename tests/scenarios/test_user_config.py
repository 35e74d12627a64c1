"""Configuration a user keeps beside the plain rc files: the ``condarc.d``
directories of conda's search path and the user's own modulefiles.

A ``condarc.d/*.yml`` that still lists the emptied scratch directory in
``envs_dirs`` sends the next ``conda create -n`` back to scratch, and one
naming a cache there fills it again; a modulefile that still puts the old
environment's ``bin`` on ``PATH`` makes ``module load`` break once it is
removed. Each is checked by what reads it: real conda's own configuration,
real Lmod loading the module.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.support.lmod import lmod_init, lmod_shell
from tests.support.markers import HAVE_CONDA
from tests.support.runs import child_env


def conda_directories(home, environ):
    """What real conda reads from the user's files: where a new environment
    goes and where packages are cached."""
    env = child_env(home, **environ)
    env.pop("CONDA_PKGS_DIRS", None)
    run = subprocess.run(
        [sys.executable, "-m", "conda", "config", "--show", "envs_dirs", "pkgs_dirs"]
        + ["--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    shown = json.loads(run.stdout)
    return shown["envs_dirs"], shown["pkgs_dirs"]


def test_condarc_d_files_conda_reads_follow_the_environments(
    scratch, home, migrate, tmp_path, monkeypatch
):
    xdg = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    envs, cache = scratch.envs_dir, scratch.root / "conda-pkgs"
    cache.mkdir()
    written = {
        xdg / "conda/condarc.d/site.yml": f"# onboarding\nenvs_dirs:\n  - {envs}\n",
        home / ".config/conda/condarc.d/caches.yaml": f"pkgs_dirs: [{cache}]\n",
        home / ".conda/condarc.d/.late.yml": "envs_dirs:\n  - $SCRATCH/conda-envs\n",
    }
    # conda reads only *.yml and *.yaml there: these stay as they are.
    ignored = {
        home / ".conda/condarc.d/notes.txt": f"envs_dirs: [{envs}]\n",
        home / ".conda/condarc.d/old.yml.bak": f"envs_dirs: [{envs}]\n",
    }
    for path, text in {**written, **ignored}.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    out, err, code = migrate("-d", envs, "--all", "--no-clean")

    assert code == 0, out + err
    new = home / ".conda/envs"
    assert [path.read_text() for path in written] == [
        f"# onboarding\nenvs_dirs:\n  - {new}\n",
        f"pkgs_dirs: [{home}/.conda/pkgs]\n",
        "envs_dirs:\n  - $HOME/.conda/envs\n",
    ]
    for path, text in written.items():
        assert f"Updated {path} (backup: " in out
        (backup,) = path.parent.glob(f"{path.name}.conda-migrate-*")
        assert backup.read_text() == text
    assert [path.read_text() for path in ignored] == list(ignored.values())
    if HAVE_CONDA:
        # The backups beside them are no files conda reads.
        envs_dirs, pkgs_dirs = conda_directories(home, {"XDG_CONFIG_HOME": str(xdg)})
        assert str(envs) not in envs_dirs, envs_dirs
        assert envs_dirs[0] == str(new), envs_dirs
        assert pkgs_dirs[0] == f"{home}/.conda/pkgs", pkgs_dirs
        assert str(cache) not in pkgs_dirs


def lmod_with_tcl() -> None:
    """Lmod reads a Tcl modulefile with ``tclsh``."""
    lmod_init()
    if shutil.which("tclsh") is None:
        pytest.skip("tclsh is not installed: Lmod cannot read a Tcl modulefile")


def test_module_load_after_the_run_finds_the_environment(
    scratch, home, migrate, tmp_path
):
    """Real Lmod loads the user's Lua and Tcl modules of two environments
    after the run: each one's program runs from its new place, and no
    backup is listed or loaded as a version of a module."""
    lmod_with_tcl()
    lua = home / "modulefiles/abc/1.0.lua"
    lua.parent.mkdir(parents=True)
    lua.write_text(
        "-- abc, my analysis env\n"
        f'prepend_path("PATH", "{scratch.abc}/bin")\n'
        f'setenv("ABC_PREFIX", "{scratch.abc}")\n'
    )
    tcl = home / "privatemodules/amd"
    tcl.parent.mkdir()
    tcl.write_text(f"#%Module1.0\nprepend-path PATH {scratch.amd}/bin\n")

    out, err, code = migrate("-d", scratch.envs_dir, "--all", "--no-clean")

    assert code == 0, out + err
    new = home / ".conda/envs"
    assert f'prepend_path("PATH", "{new}/abc/bin")' in lua.read_text()
    assert f"Updated {lua} (backup: {lua.parent}/.1.0.lua.conda-migrate-" in out
    assert f"Updated {tcl} (backup: {tcl.parent}/.amd.conda-migrate-" in out
    result = lmod_shell(
        "module use ~/modulefiles ~/privatemodules\n"
        "module -t avail 2>&1\n"
        "module load abc\n"
        'echo "ABC_PREFIX=$ABC_PREFIX"\n'
        "demo-app\n"
        "module purge\n"
        "module load amd\n"
        "demo-hello\n",
        home,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        f"{home}/privatemodules:",
        "amd",
        f"{home}/modulefiles:",
        "abc/",
        "abc/1.0",
        f"ABC_PREFIX={new}/abc",
        "demo-app works",
        f"hello from {new}/amd",
    ], result.stdout + result.stderr


def test_no_rc_leaves_condarc_d_and_modulefiles_alone(scratch, home, migrate):
    condarc = home / ".conda/condarc.d/site.yml"
    lua = home / "modulefiles/abc/1.0.lua"
    texts = {
        condarc: f"envs_dirs:\n  - {scratch.envs_dir}\n",
        lua: f'prepend_path("PATH", "{scratch.abc}/bin")\n',
    }
    for path, text in texts.items():
        path.parent.mkdir(parents=True)
        path.write_text(text)

    out, err, code = migrate("-d", scratch.envs_dir, "--all", "--no-clean", "--no-rc")

    assert code == 0, out + err
    assert not scratch.abc.exists()
    for path, text in texts.items():
        assert path.read_text() == text
        assert sorted(path.parent.iterdir()) == [path]


def test_a_module_setting_condas_directories_stops_naming_scratch(
    scratch, home, migrate
):
    """After ``module load``, conda creates environments and caches packages
    in the home, not in the directory the run emptied."""
    cache = scratch.root / "conda-pkgs"
    lua = home / "modulefiles/myconda/1.lua"
    lua.parent.mkdir(parents=True)
    lua.write_text(
        f'setenv("CONDA_ENVS_PATH", "{scratch.envs_dir}")\n'
        f'setenv("CONDA_PKGS_DIRS", "{cache}")\n'
    )

    out, err, code = migrate("-d", scratch.envs_dir, "--all", "--no-clean")

    assert code == 0, out + err
    new = home / ".conda"
    assert lua.read_text() == (
        f'setenv("CONDA_ENVS_PATH", "{new}/envs")\n'
        f'setenv("CONDA_PKGS_DIRS", "{new}/pkgs")\n'
    )
    conda = f"{sys.executable} -m conda config --show envs_dirs pkgs_dirs --json"
    result = lmod_shell(
        "module use ~/modulefiles\nmodule load myconda\n"
        'echo "$CONDA_ENVS_PATH $CONDA_PKGS_DIRS"\n'
        + (f"{conda}\n" if HAVE_CONDA else ""),
        home,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    shown, _, conda_shows = result.stdout.partition("\n")
    assert shown == f"{new}/envs {new}/pkgs"
    if HAVE_CONDA:
        directories = json.loads(conda_shows)
        assert directories["envs_dirs"][0] == f"{new}/envs"
        assert directories["pkgs_dirs"] == [f"{new}/pkgs"]


def test_condas_directories_set_by_what_the_run_cannot_read_are_named(
    scratch, home, migrate, tmp_path, monkeypatch
):
    """A site's module (outside the home, never changed) exports conda's
    directory variables to scratch: the user's files are pointed at the
    home, yet conda, which the variables override, keeps creating
    environments and caching packages on scratch. The run says so, and
    where to look; a variable a file it updated sets needs no word."""
    site_module = tmp_path / "site/modules/conda/1.lua"
    site_module.parent.mkdir(parents=True)
    cache = scratch.root / "conda-pkgs"
    site_module.write_text(
        f'setenv("CONDA_ENVS_PATH", "{scratch.envs_dir}")\n'
        f'setenv("CONDA_PKGS_DIRS", "{cache}")\n'
    )
    monkeypatch.setenv("MODULEPATH", str(site_module.parents[1]))
    monkeypatch.setenv("CONDA_ENVS_PATH", str(scratch.envs_dir))
    monkeypatch.setenv("CONDA_PKGS_DIRS", str(cache))
    (home / ".bashrc").write_text(f"export CONDA_PKGS_DIRS={cache}\n")

    out, err, code = migrate("-d", scratch.envs_dir, "--all", "--no-clean")

    assert code == 0, out + err
    assert not scratch.abc.exists() and not scratch.amd.exists()
    assert site_module.read_text().count(str(scratch.root)) == 2
    assert (home / ".bashrc").read_text() == (
        f"export CONDA_PKGS_DIRS={home}/.conda/pkgs\n"
    )
    envs = scratch.envs_dir
    assert (
        f"warning: CONDA_ENVS_PATH={envs} in this run's environment names {envs}, "
        "where conda keeps creating environments while it is set, and no file "
        "this run changed sets it: if a new login still has it, find what sets "
        "it (a module of the site's? module show names what each loaded module "
        f"sets) and set it to {home}/.conda/envs there, or unset it\n"
    ) in out, out
    assert "warning: CONDA_PKGS_DIRS" not in out
