"""A power cut right after ``conda-migrate`` said it was done, or midway.

HOME and SCRATCH are two ext4 loop images (root only, see ``loopfs``). The
environments are built on SCRATCH and made durable, the real command migrates
them in a child process, and the moment it exits (or is killed) one
filesystem is stopped as a power loss stops it, then mounted again. Every
environment must then still exist: in HOME with every byte the command left
there, or whole in SCRATCH. On ext4, with delayed allocation, a copy that was
never flushed comes back as zero-length files, or no files at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import TYPE_CHECKING

import pytest

from tests.support.channel import SITE_PACKAGES
from tests.support.loopfs import LoopFS, Unavailable
from tests.support.markers import requires_conda
from tests.support.runs import FAULTPOINT, ROOT
from tests.support.trees import tree_snapshot

if TYPE_CHECKING:
    from pathlib import Path

NAMES = ("abc", "amd")
#: Modules of a pip-installed library added to each environment: hundreds of
#: files of one block to several, as real environments have.
MODULES = {"abc": 400, "amd": 200}
ENGINES = ["relocate", pytest.param("clone", marks=requires_conda)]


def add_library(prefix: Path, modules: int, seed: int) -> None:
    rng = random.Random(seed)
    site = prefix / SITE_PACKAGES
    package = site / f"bulk{seed}"
    package.mkdir(parents=True)
    for index in range(modules):
        lines = (
            f"VALUE_{n} = {rng.getrandbits(64)}\n" for n in range(rng.randrange(600))
        )
        (package / f"mod{index:04}.py").write_text(
            f"# module {index}\n" + "".join(lines)
        )
    dist = site / f"bulk{seed}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: bulk{seed}\nVersion: 1.0\n"
    )
    (dist / "INSTALLER").write_text("pip\n")
    (dist / "RECORD").write_text(
        "".join(f"bulk{seed}/{p.name},,\n" for p in sorted(package.iterdir()))
    )


#: What a file that came back zero-length hashes to.
EMPTY = hashlib.sha256(b"").hexdigest()


def lost(expected: dict[str, tuple], root: Path) -> dict[str, list[str]]:
    """The paths of ``expected`` (a ``tree_snapshot``) that ``root`` does
    not hold as they were, by what became of them."""
    found = tree_snapshot(root) if root.is_dir() else {}
    how: dict[str, list[str]] = {"missing": [], "zero-length": [], "changed": []}
    for rel, entry in expected.items():
        now = found.get(rel)
        if now is None:
            how["missing"].append(rel)
        elif now != entry:
            how["zero-length" if now[-1] == EMPTY else "changed"].append(rel)
    return how


def empty(snapshot: dict[str, tuple]) -> set[str]:
    return {rel for rel, entry in snapshot.items() if entry[-1] == EMPTY}


class Site:
    """HOME and SCRATCH on their own ext4 images, the seed's two
    environments in ``$SCRATCH/conda-envs``."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.home_fs = LoopFS(base / "home.img", base / "home")
        self.scratch_fs = LoopFS(base / "scratch.img", base / "scratch")
        self.home = self.home_fs.point
        self.envs_dir = self.scratch_fs.point / "conda-envs"
        self.dest = self.home / ".conda" / "envs"
        self.pkgs = base / "conda-pkgs"
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("CONDARC", "CONDA_ENVS_PATH", "CONDA_ENVS_DIRS", "SCRATCH")
        }
        self.env.update(
            HOME=str(self.home),
            CONDA_PKGS_DIRS=str(self.pkgs),
            PYTHONPATH=str(ROOT),
        )

    def mount(self) -> None:
        """HOME leaves room for the preflight's margin of 64 MiB."""
        for fs, size_mib in ((self.home_fs, 128), (self.scratch_fs, 64)):
            fs.make(size_mib)
            fs.mount()

    def unmount(self) -> None:
        for fs in (self.scratch_fs, self.home_fs):
            fs.unmount()

    def build(self, make_env) -> dict[str, dict[str, tuple]]:
        """The environments, durable as a week-old environment is; returns
        their snapshots."""
        make_env(self.envs_dir / "abc", ["demo-app"], pip=True)
        make_env(self.envs_dir / "amd", ["demo-text"])
        for seed, name in enumerate(NAMES):
            add_library(self.envs_dir / name, MODULES[name], seed)
        self.scratch_fs.flush()
        return {name: tree_snapshot(self.envs_dir / name) for name in NAMES}

    def forget_home(self) -> None:
        """HOME as it was before any run, durably."""
        shutil.rmtree(self.home / ".conda", ignore_errors=True)
        shutil.rmtree(self.pkgs, ignore_errors=True)
        self.home_fs.flush()

    def run(self, *args, fault: tuple[str, ...] = ()) -> tuple[int, str]:
        """The console script, or under ``faultpoint`` to count or strike."""
        command = (
            [FAULTPOINT, *fault, "--"] if fault else ["-m", "conda_migrate_plugin"]
        )
        with tempfile.TemporaryFile("w+") as output:
            run = subprocess.Popen(
                [sys.executable, *map(str, command), *map(str, args)],
                cwd=self.base,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            try:
                code = run.wait(timeout=120)
            finally:
                # A power cut takes every process of the run: the workers
                # conda's clone spawns to extract packages outlive a kill of
                # the run alone.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(run.pid, signal.SIGKILL)
            output.seek(0)
            return code, output.read()

    def count(self, *args, only: tuple[str, ...] = ()) -> int:
        code, out = self.run(*args, fault=("count", "0", *only))
        assert code == 0, out
        return int(out.split("faultpoint-count ")[1].split()[0])

    def yaml_files(self) -> dict[Path, bytes]:
        """The YAML copies, as the command left them: the user's way back."""
        paths = [self.home / ".conda" / "yaml" / f"{name}.yml" for name in NAMES]
        return {path: path.read_bytes() for path in paths}


@pytest.fixture
def site(tmp_path):
    made = Site(tmp_path)
    try:
        try:
            made.mount()
        except Unavailable as err:
            pytest.skip(str(err))
        yield made
    finally:
        made.unmount()


def cut(fs: LoopFS) -> None:
    try:
        fs.power_cut()
    except Unavailable as err:
        pytest.skip(str(err))
    fs.remount()


def assert_nothing_lost(copies: dict[str, dict], site: Site, after: str) -> None:
    """``copies``: each migrated environment in HOME as the command left it."""
    found = {name: lost(entries, site.dest / name) for name, entries in copies.items()}
    by_kind = {
        kind: [f"{name}/{rel}" for name, how in found.items() for rel in how[kind]]
        for kind in ("zero-length", "missing", "changed")
    }
    gone = sum(map(len, by_kind.values()))
    assert not gone, (
        f"After {after}, {gone} of {sum(map(len, copies.values()))} files, links "
        "and directories of the migrated environments were lost: "
        + "; ".join(
            f"{len(paths)} {kind} (such as {', '.join(paths[:3])})"
            for kind, paths in by_kind.items()
            if paths
        )
    )


def args(directory: Path, engine: str, *more) -> list:
    return ["-d", directory, "--all", "--method", engine, *more]


@pytest.mark.parametrize("engine", ENGINES)
def test_power_cut_to_home_right_after_success_loses_nothing(site, make_env, engine):
    source = site.build(make_env)
    code, out = site.run(*args(site.envs_dir, engine))
    assert code == 0, out
    for name in NAMES:
        assert (
            f"Successfully migrated and removed old environment: {site.envs_dir / name}"
            in out
        )
    copies = {name: tree_snapshot(site.dest / name) for name in NAMES}
    yaml = site.yaml_files()
    cut(site.home_fs)

    for name in NAMES:
        assert set(source[name]) <= set(copies[name]), (
            f"{name} was incomplete before the cut"
        )
    assert_nothing_lost(
        copies, site, f"a power cut to HOME right after exit 0 ({engine})"
    )
    for path, content in yaml.items():
        assert path.exists() and path.read_bytes() == content, f"{path} lost"
    registered = (site.home / ".conda" / "environments.txt").read_text().split()
    assert {str(site.dest / name) for name in NAMES} <= set(registered)


@pytest.mark.parametrize("engine", ENGINES)
def test_power_cut_to_scratch_right_after_success_loses_nothing(site, make_env, engine):
    """The removal may be undone, never half done under the old name."""
    source = site.build(make_env)
    code, out = site.run(*args(site.envs_dir, engine))
    assert code == 0, out
    copies = {name: tree_snapshot(site.dest / name) for name in NAMES}
    cut(site.scratch_fs)

    for name in NAMES:
        if (site.envs_dir / name).exists():
            assert tree_snapshot(site.envs_dir / name) == source[name], (
                f"{name} half removed"
            )
    site.run(*args(site.envs_dir, engine))  # whatever it decides, it loses nothing
    assert_nothing_lost(
        copies,
        site,
        f"a power cut to SCRATCH right after exit 0 and a rerun ({engine})",
    )
    for name in NAMES:
        if (site.envs_dir / name).exists():
            assert tree_snapshot(site.envs_dir / name) == source[name]


@pytest.mark.parametrize("moment", ["copying", "removing"])
@pytest.mark.parametrize("engine", ENGINES)
def test_power_cut_to_home_midway_loses_nothing(site, make_env, engine, moment):
    """Power lost while ``abc`` is copied, or while its old copy is deleted:
    either the source is whole, or the copy in HOME is; the rerun then
    finishes the job."""
    source = site.build(make_env)
    abc = args(site.envs_dir / "abc", engine, "--no-clean")
    # Where to strike, from a run that copies and keeps the source: halfway
    # through the calls it makes after a dry run's (the checks), or well
    # into the deletion that follows them.
    if moment == "copying":
        checked = site.count(*abc, "--dry-run")
        copied = site.count(*abc, "--keep-old")
        fault = ("kill", str(checked + (copied - checked) // 2))
    else:
        before = site.count(*abc, "--keep-old", only=("unlink",))
        fault = ("kill", str(before + MODULES["abc"] // 2), "unlink")
    site.forget_home()
    code, out = site.run(*abc, fault=fault)
    assert code == -signal.SIGKILL, out
    assert "Migrating and comparing environment: abc" in out, out
    aside = site.envs_dir / ".abc.conda-migrate-removing"
    if moment == "copying":
        assert "Old and New Environments are same" not in out, "killed too late"
        assert any(site.dest.rglob("mod*.py")), "killed before the copy began"
    else:
        assert aside.exists() and not (site.envs_dir / "abc").exists(), (
            "the kill did not land in the removal"
        )
        copies = {"abc": tree_snapshot(site.dest / "abc")}
    cut(site.home_fs)

    if moment == "copying":
        assert tree_snapshot(site.envs_dir / "abc") == source["abc"], "abc changed"
    else:
        assert_nothing_lost(
            copies, site, f"a power cut to HOME while the source was deleted ({engine})"
        )
    code, out = site.run(*args(site.envs_dir, engine, "--no-clean"))
    assert code == 0, out
    assert os.listdir(site.envs_dir) == []
    for name in NAMES:
        copy = tree_snapshot(site.dest / name)
        assert set(copy) >= set(source[name]), f"{name} incomplete after the rerun"
        emptied = empty(copy) - empty(source[name])
        assert not emptied, f"{name} has zero-length files: {sorted(emptied)}"
