"""Real conda environments for the tests, built offline.

Tiny packages are made here with conda-package-handling, indexed into a local
channel and installed with py-rattler, a real conda installer: the environments
under test carry real ``conda-meta`` records, prefix-replaced text and binary
files, symlinks and entry points, exactly as conda lays them out.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.channel import PACKAGES, SUBDIR, add_pip_package, build_package
from tests.support.markers import HAVE_CONDA
from tests.support.slowfs import SlowFS, Unavailable, build
from tests.support.users import USER

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from typing import Any

if HAVE_CONDA:
    pytest_plugins = ("conda.testing.fixtures",)


@pytest.fixture(scope="session")
def channel(tmp_path_factory) -> Path:
    """A local conda channel holding the test packages."""
    from rattler.index import index_fs

    root = tmp_path_factory.mktemp("channel")
    work = tmp_path_factory.mktemp("package-build")
    for subdir in (SUBDIR, "noarch"):
        (root / subdir).mkdir()
    for key, (depends, files) in PACKAGES.items():
        build_package(work, root / SUBDIR, key, depends, files)
    asyncio.run(index_fs(root, write_zst=False, write_shards=False))
    return root


@pytest.fixture(scope="session")
def solve(channel) -> Callable[[Sequence[str]], list]:
    """Solve specs against the test channel, once per spec set."""
    import rattler

    solved: dict[tuple[str, ...], list] = {}

    def _solve(specs: Sequence[str]) -> list:
        key = tuple(specs)
        if key not in solved:
            solved[key] = asyncio.run(
                rattler.solve(
                    [channel.as_uri()], list(specs), platforms=[SUBDIR, "noarch"]
                )
            )
        return solved[key]

    return _solve


@pytest.fixture
def make_env(solve, tmp_path) -> Callable[..., Path]:
    """Install a real environment at ``prefix`` from the test channel.

    Each test gets its own package cache so that a test which corrupts a file
    in an environment cannot reach, through a hardlink, another test's copy.
    """
    import rattler

    cache = tmp_path / "rattler-cache"

    def _make_env(
        prefix: Path, specs: Sequence[str] = ("demo-app",), pip: bool = False
    ) -> Path:
        asyncio.run(
            rattler.install(solve(specs), prefix, cache_dir=cache, show_progress=False)
        )
        if pip:
            add_pip_package(prefix)
        return prefix

    return _make_env


@dataclass(frozen=True)
class Scratch:
    """The seed's example layout: two environments beside non-environments."""

    root: Path
    envs_dir: Path
    abc: Path
    amd: Path


@pytest.fixture(autouse=True)
def threads_as_on_a_cluster(monkeypatch) -> None:
    """The tests' filesystems are local, where a run's default is one
    thread; the many threads a network filesystem gets (``jobs.py``) are
    what stops, faults and removals must be tested under."""
    monkeypatch.setenv("CONDA_MIGRATE_JOBS", "16")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A private ``$HOME`` so nothing touches the real user's files."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CONDA_PKGS_DIRS", str(tmp_path / "conda-pkgs"))
    for var in ("CONDARC", "CONDA_ENVS_PATH", "CONDA_ENVS_DIRS", "SCRATCH"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def scratch(make_env, home, tmp_path, monkeypatch) -> Scratch:
    """``$SCRATCH/conda-envs`` holding ``amd`` and ``abc`` (with a pip install),
    a ``pkgs`` package cache and ``pyt``, a directory that is no environment."""
    root = tmp_path / "scratch"
    envs_dir = root / "conda-envs"
    amd = make_env(envs_dir / "amd", ["demo-text"])
    abc = make_env(envs_dir / "abc", ["demo-app"], pip=True)
    pkgs = envs_dir / "pkgs"
    pkgs.mkdir()
    (pkgs / "urls.txt").write_text("")
    (envs_dir / "pyt").mkdir()
    (envs_dir / "pyt" / "notes.txt").write_text("not an environment\n")
    monkeypatch.setenv("SCRATCH", str(root))
    return Scratch(root=root, envs_dir=envs_dir, abc=abc, amd=amd)


@pytest.fixture(scope="session")
def slowfs_binary(tmp_path_factory) -> Path:
    """slowfs compiled once for the session; the tests that need it skip
    with the reason where it cannot be built (not root, no libfuse3-dev)."""
    try:
        return build(tmp_path_factory.mktemp("slowfs"))
    except Unavailable as err:
        pytest.skip(str(err))


@pytest.fixture
def slowfs_mount(slowfs_binary, tmp_path) -> Iterator[Callable[..., Path]]:
    """``slowfs_mount(point, backing=None, us=0, quota_kb=0, quota_files=0,
    ...)`` mounts slowfs at ``point`` over ``backing`` (default: a fresh
    directory of this test): a home with a quota statvfs does not show, or a
    latency filesystem. Unmounted after the test."""
    mounts: list[SlowFS] = []

    def mount(point: Path, backing: Path | None = None, **settings: Any) -> Path:
        backing = backing or tmp_path / f"slowfs-backing-{len(mounts)}"
        fs = SlowFS(slowfs_binary, backing, point, **settings)
        try:
            fs.mount()
        except Unavailable as err:
            pytest.skip(str(err))
        mounts.append(fs)
        return point

    yield mount
    for fs in reversed(mounts):
        fs.unmount()


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a tmpfs with the given options; unmounted at teardown."""
    mounted: list[Path] = []

    def _mount(*options: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        if shutil.which("mount") is None:
            pytest.skip("no mount command here")
        point = tmp_path / f"tmpfs{len(mounted)}"
        point.mkdir()
        run = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", ",".join(options), "cm-test", point],
            capture_output=True,
            text=True,
        )
        if run.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {run.stderr.strip()}")
        mounted.append(point)
        return point

    yield _mount
    for point in reversed(mounted):
        if subprocess.run(["umount", point]).returncode:
            subprocess.run(["umount", "-l", point], check=True)


@pytest.fixture
def migrate(home, capsys, monkeypatch) -> Callable[..., tuple[str, str, int]]:
    """Run ``conda-migrate ARGS`` in-process as a user would, answering the
    prompt with ``stdin``; conda's own entry point where conda is installed."""
    import io
    import sys

    from conda_migrate_plugin.cli import main

    def _migrate(*args: str | Path, stdin: str = "") -> tuple[str, str, int]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        # What the run shows as the command typed.
        monkeypatch.setattr(sys, "argv", ["conda-migrate", *map(str, args)])
        capsys.readouterr()
        try:
            code = main([str(arg) for arg in args])
        except SystemExit as exit:  # argparse's usage errors
            code = exit.code
        out, err = capsys.readouterr()
        return out, err, code

    return _migrate


@pytest.fixture
def unprivileged(tmp_path_factory):
    """Run ``conda-migrate`` as an ordinary user, as on a cluster (CI is root).

    A forked child drops to ``USER`` and calls the command in-process: the
    interpreter's own files (under root's 0700 home here) need not be
    readable by that user, since everything the run imports is imported
    before the fork. Returns ``(base, run)``: a world-traversable directory
    to build the user's $HOME and $SCRATCH in, and ``run(home, *args)``
    giving ``(output, exit code)``; ``limits`` are the login node's
    (``resource.RLIMIT_*``: soft and hard limit), set before the user is.
    """
    if os.geteuid() != 0:
        pytest.skip("dropping to another user needs root")
    import importlib
    import io
    import pkgutil
    import resource
    import sys
    import tempfile

    import conda_migrate_plugin
    from conda_migrate_plugin.cli import main

    for module in pkgutil.walk_packages(
        conda_migrate_plugin.__path__, "conda_migrate_plugin."
    ):
        leaf = module.name.rsplit(".", 1)[1]
        if not leaf.startswith("_") and (leaf != "plugin" or HAVE_CONDA):
            importlib.import_module(module.name)
    import codecs

    from conda_migrate_plugin.relocation.prefix import ENCODINGS

    for encoding in ENCODINGS:  # codecs load lazily, from files the user cannot read
        codecs.lookup(encoding)
    base = Path(tempfile.mkdtemp(prefix="cm-user-"))
    base.chmod(0o755)

    def run(
        home: Path, *args: str | Path, limits: dict[int, int] | None = None
    ) -> tuple[str, int]:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 70
            try:
                os.close(read)
                for resource_id, limit in (limits or {}).items():
                    resource.setrlimit(resource_id, (limit, limit))
                os.setgroups([])
                os.setgid(USER)
                os.setuid(USER)
                os.environ["HOME"] = str(home)
                sys.stdin = io.StringIO("")
                sys.stdout = sys.stderr = open(write, "w", buffering=1)
                try:
                    code = main([str(arg) for arg in args])
                except SystemExit as exit:
                    code = exit.code if isinstance(exit.code, int) else 2
                sys.stdout.flush()
            finally:
                os._exit(code)
        os.close(write)
        with open(read) as stream:
            output = stream.read()
        _, status = os.waitpid(pid, 0)
        return output, os.waitstatus_to_exitcode(status)

    yield base, run
    shutil.rmtree(base)


@pytest.fixture(scope="session")
def real_channel(tmp_path_factory) -> Path:
    """A channel of realistic packages (see ``realpkgs``): the running
    CPython as ``python``, pip as ``noarch: python``, and ``cmdemo``, a C
    program; built and indexed once per session."""
    from rattler.index import index_fs

    from tests.support import realpkgs

    root = tmp_path_factory.mktemp("real-channel")
    work = tmp_path_factory.mktemp("real-build")
    try:
        realpkgs.build_cpython_package(root / SUBDIR, work)
        realpkgs.build_c_package(root / SUBDIR, work)
        realpkgs.build_noarch_python_from_wheel(
            realpkgs.bundled_pip_wheel(), root / "noarch", work
        )
    except realpkgs.PackageUnavailable as exc:
        pytest.skip(f"cannot build the realistic packages here: {exc}")
    asyncio.run(index_fs(root, write_zst=False, write_shards=False))
    return root
