"""A job killed while conda's clone extracts a package into the package
cache, for real: ``conda migrate --method clone`` in a child process, and
SIGKILL to its whole process group (conda extracts in processes of its own,
which a kill of the run alone would leave to finish) once the package's
files are coming out. The rerun must then finish."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest

from tests.support.channel import SUBDIR, stage_file, write_info
from tests.support.markers import requires_conda
from tests.support.runs import child_env

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = requires_conda

#: Files enough that their extraction lasts long past the moment looked for.
FILES = 4000
PACKAGE = "demo-many-1.0-0"


@pytest.fixture
def many_files_channel(tmp_path) -> Path:
    """A channel of one package of ``FILES`` small files."""
    from conda_package_handling import api
    from rattler.index import index_fs

    root = tmp_path / "many-channel"
    for subdir in (SUBDIR, "noarch"):
        (root / subdir).mkdir(parents=True)
    stage = tmp_path / "many-build" / PACKAGE
    paths = []
    for index in range(FILES):
        data = f"VALUE = {index}\n".encode() * 20
        entry, _ = stage_file(
            stage, f"lib/many/m{index:05}.py", data, executable=False, mode=None
        )
        paths.append(entry)
    name, version, build = PACKAGE.rsplit("-", 2)
    index_json = {
        **{"name": name, "version": version, "build": build, "build_number": 0},
        **{"depends": [], "subdir": SUBDIR, "license": "BSD-3-Clause"},
    }
    info = write_info(stage, index_json, paths, [])
    members = [*info, *(str(entry["_path"]) for entry in paths)]
    api.create(str(stage), members, str(root / SUBDIR / f"{PACKAGE}.conda"))
    asyncio.run(index_fs(root, write_zst=False, write_shards=False))
    return root


def killed_mid_extraction(run: list[str], env: dict[str, str], package: Path) -> int:
    """Start ``run`` and kill its process group once ``package``'s own files
    are being extracted: some out, conda's record of a finished extraction
    not yet written. Returns how many files were out."""
    files = package / "lib" / "many"
    process = subprocess.Popen(
        run,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    out = 0
    try:
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            try:
                out = len(os.listdir(files))
            except FileNotFoundError:
                out = 0
            if out >= FILES // 10:
                break
            time.sleep(0.001)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert out >= FILES // 10, "the run ended before the package was extracted"
    return out


def test_the_rerun_after_a_kill_mid_extraction_finishes(many_files_channel, tmp_path):
    """On conda's extraction: ``info/`` first, then the files, then the
    record. conda took what the kill left for extracted, and every rerun's
    clone failed on the missing files."""
    import rattler

    records = asyncio.run(
        rattler.solve(
            [many_files_channel.as_uri()],
            [PACKAGE.split("-1.0")[0]],
            platforms=[SUBDIR, "noarch"],
        )
    )
    source = tmp_path / "scratch" / "envs" / "many"
    asyncio.run(
        rattler.install(
            records, source, cache_dir=tmp_path / "rattler-cache", show_progress=False
        )
    )
    home = tmp_path / "home"
    home.mkdir()
    pkgs = tmp_path / "conda-pkgs"
    base = {
        key: value
        for key, value in os.environ.items()
        if key not in ("CONDARC", "CONDA_ENVS_PATH", "CONDA_ENVS_DIRS", "SCRATCH")
    }
    env = child_env(home, base=base, CONDA_PKGS_DIRS=str(pkgs))
    run = [
        sys.executable,
        "-m",
        "conda_migrate_plugin",
        *("-d", source.parent, "--all", "--method", "clone", "--no-clean"),
    ]
    run = [str(arg) for arg in run]
    package = pkgs / PACKAGE

    out = killed_mid_extraction(run, env, package)

    assert (package / "info" / "paths.json").is_file()
    assert not (package / "info" / "repodata_record.json").exists(), "killed too late"
    assert len(os.listdir(package / "lib" / "many")) < FILES, f"{out} files out"
    assert source.is_dir()
    dest = home / ".conda" / "envs" / "many"
    cut_short = sorted(os.listdir(package / "lib" / "many"))

    # conda's clone copies at the destination itself: the dry run plans what
    # the run does, the partial copy removed first, not a name collision.
    dry = subprocess.run(
        [*run, "--dry-run"], env=env, capture_output=True, text=True, timeout=300
    )

    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert (
        f"Would remove the unverified copy {dest} that an interrupted run left of "
        f"{source}, which was not touched." in dry.stdout
    )
    assert f"copy, compare and remove {source}" in dry.stdout
    assert "name collision" not in dry.stdout
    assert sorted(os.listdir(package / "lib" / "many")) == cut_short
    assert dest.is_dir()

    rerun = subprocess.run(run, env=env, capture_output=True, text=True, timeout=300)

    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert (
        f"An interrupted run left an unverified copy of {source} at {dest}; it "
        "was removed." in rerun.stdout
    )
    assert f"Note: {PACKAGE} in {pkgs}: " in rerun.stdout
    assert "missing or cut short, as a stopped extraction or a purge" in rerun.stdout
    assert len(os.listdir(dest / "lib" / "many")) == FILES
    assert (dest / "lib/many/m03999.py").read_bytes() == b"VALUE = 3999\n" * 20
    assert len(os.listdir(package / "lib" / "many")) == FILES
    assert not source.exists()
