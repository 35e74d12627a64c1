"""The example Lmod module (``recipe/lmod/conda.lua``), loaded by real Lmod
in bash for a conda whose ``etc/profile.d/conda.sh`` real conda wrote, as
its installer does: ``conda activate`` works, base's python shadows
nothing, ``conda-migrate`` runs, and unloading leaves the shell as it was."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.support.lmod import lmod_shell
from tests.support.markers import HAVE_CONDA
from tests.support.runs import ROOT

MODULE_FILE = ROOT / "recipe" / "lmod" / "conda.lua"


@pytest.fixture
def site_conda(tmp_path) -> Path:
    """A conda installation as the module sees it: ``etc/profile.d/conda.sh``
    written by conda's own ``conda init`` code for the conda running these
    tests, and ``bin/conda-migrate``, the console script installed beside
    it."""
    if not HAVE_CONDA:
        pytest.skip(
            "conda is not importable here (it is not on PyPI): there is no "
            "conda.sh for the module to source"
        )
    from conda.core.initialize import install_conda_sh

    root = tmp_path / "conda"
    install_conda_sh(str(root / "etc" / "profile.d" / "conda.sh"), str(root))
    script = Path(sys.executable).parent / "conda-migrate"
    if not script.exists():
        pytest.skip(f"no conda-migrate console script beside {sys.executable}")
    (root / "bin").mkdir()
    (root / "bin" / "conda-migrate").symlink_to(script)
    return root


def test_module_sets_up_conda_and_unloads_cleanly(site_conda, make_env, tmp_path):
    env = make_env(tmp_path / "scratch" / "envs" / "abc", ["python"])
    modules = tmp_path / "modulefiles"
    (modules / "conda").mkdir(parents=True)
    text = MODULE_FILE.read_text()
    assert text.count('local root = "/opt/conda"\n') == 1
    (modules / "conda" / "26.7.lua").write_text(
        text.replace('local root = "/opt/conda"', f'local root = "{site_conda}"')
    )
    result = lmod_shell(
        f"module use {modules}\n"
        'echo "before=$PATH"\n'
        'echo "python=$(command -v python || echo none)"\n'
        "module load conda\n"
        'echo "loaded python=$(command -v python || echo none)"\n'
        "conda-migrate --version\n"
        f"conda activate {env}\n"
        'echo "active=$CONDA_PREFIX python=$(command -v python)"\n'
        "conda deactivate\n"
        "module unload conda\n"
        'echo "after=$PATH"\n'
        'type conda >/dev/null 2>&1 && echo "conda left" || echo "conda gone"\n'
        'type conda-migrate >/dev/null 2>&1 && echo "script left" || echo "script gone"\n'
        # What conda.sh sets; deactivating the last environment leaves
        # CONDA_PREFIX and the like set but empty, module or not.
        'env | grep -E "^(_?CONDA_EXE|CONDA_PYTHON_EXE|CONDA_SHLVL|_CE_|_CONDA_ROOT)" '
        '|| echo "none left"\n',
        tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    before = lines[0].removeprefix("before=")
    python = lines[1].removeprefix("python=")
    assert lines[2] == f"loaded python={python}", result.stdout
    assert lines[3].startswith("conda-migrate "), result.stdout
    assert lines[4] == f"active={env} python={env / 'bin' / 'python'}", result.stdout
    assert lines[5:] == [f"after={before}", "conda gone", "script gone", "none left"], (
        result.stdout + result.stderr
    )


def test_module_help_says_what_each_command_does(tmp_path):
    modules = tmp_path / "modulefiles"
    (modules / "conda").mkdir(parents=True)
    shutil.copy(MODULE_FILE, modules / "conda" / "26.7.lua")
    result = lmod_shell(
        f"module use {modules}; module help conda", tmp_path, stop_on_error=False
    )
    shown = result.stdout + result.stderr
    assert "--all  (every valid one, no prompt)" in shown, shown
    assert "--all --submit -t 4:00:00" in shown
    assert "(the same, as a Slurm batch job)" in shown
