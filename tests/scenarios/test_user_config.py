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
import subprocess
import sys

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
