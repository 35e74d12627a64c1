"""A purged scratch: environments that lost files their records list.

The fixtures are real installs from the test channel, with files deleted as
a scratch purge deletes them (unread files go, ``conda-meta`` stays).
"""

from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING

from conftest import SITE_PACKAGES, requires_conda

if TYPE_CHECKING:
    from pathlib import Path

#: One file of each kind the purge takes: text with the prefix, binary with
#: the prefix, plain data, a pip-installed module.
PURGED_CONDA = ("etc/demo/demo.conf", "lib/libdemo.so", "share/demo/data.txt")
PURGED_PIP = f"{SITE_PACKAGES}/extra_tool/__init__.py"


def purge(prefix: Path, *rels: str) -> None:
    for rel in rels:
        (prefix / rel).unlink()


def purged_env(make_env, tmp_path, *, cache: bool = True) -> Path:
    """``$SCRATCH/conda-envs/abc``, installed, then purged; ``cache=False``
    also purges the package cache it was installed from."""
    env = make_env(tmp_path / "scratch" / "conda-envs" / "abc", ["demo-app"], pip=True)
    purge(env, *PURGED_CONDA, PURGED_PIP)
    if not cache:
        shutil.rmtree(tmp_path / "rattler-cache")
    return env


def test_unrepairable_damage_is_never_same(make_env, migrate, home, tmp_path):
    env = purged_env(make_env, tmp_path, cache=False)
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
    env = purged_env(make_env, tmp_path, cache=False)
    out, _, code = migrate("-d", env.parent, "--all", "--dry-run")
    assert "Damaged by the purge: 4 files missing" in out
    assert "demo-text-1.0-0 (2 files)" in out
    assert code == 1
    assert env.exists()


def test_json_reports_damage(make_env, migrate, home, tmp_path):
    env = purged_env(make_env, tmp_path, cache=False)
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
    env = purged_env(make_env, tmp_path)
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
