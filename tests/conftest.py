"""Real conda environments for the tests, built offline.

Tiny packages are made here with conda-package-handling, indexed into a local
channel and installed with py-rattler, a real conda installer: the environments
under test carry real ``conda-meta`` records, prefix-replaced text and binary
files, symlinks and entry points, exactly as conda lays them out.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from slowfs import SlowFS, Unavailable, build

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from typing import Any

try:
    import conda  # noqa: F401
except ImportError:
    HAVE_CONDA = False
else:
    HAVE_CONDA = True
    pytest_plugins = ("conda.testing.fixtures",)

#: Long enough for the binary prefix replacement to have room, as conda-build's is.
PLACEHOLDER = "/opt/conda-migrate-build/" + "placeholder_" * 18
SUBDIR = "linux-64"
PY_VER = "3.11"
SITE_PACKAGES = f"lib/python{PY_VER}/site-packages"

requires_conda = pytest.mark.skipif(
    not HAVE_CONDA,
    reason="conda is not importable here (it is not on PyPI); "
    "these tests run where conda is installed",
)


@dataclass(frozen=True)
class FileSpec:
    """One file of a test package: ``mode`` is conda's prefix mode, or None."""

    path: str
    content: bytes = b""
    mode: str | None = None
    link_to: str | None = None
    executable: bool = False


def _entry_point(module: str) -> bytes:
    return (
        f"#!{PLACEHOLDER}/bin/python\n"
        f"import sys\nimport {module}\nsys.exit({module}.main())\n"
    ).encode()


PACKAGES: dict[tuple[str, str, str], tuple[list[str], list[FileSpec]]] = {
    ("python", f"{PY_VER}.0", "0"): (
        [],
        [
            # A stand-in interpreter: enough for shebangs in the env to run.
            FileSpec(
                f"bin/python{PY_VER}",
                f'#!/bin/sh\nPYTHONPATH="{PLACEHOLDER}/{SITE_PACKAGES}" '
                'exec python3 "$@"\n'.encode(),
                mode="text",
                executable=True,
            ),
            FileSpec("bin/python", link_to=f"python{PY_VER}"),
            FileSpec(f"{SITE_PACKAGES}/README.txt", b"site-packages of a test env\n"),
        ],
    ),
    ("demo-text", "1.0", "0"): (
        [],
        [
            FileSpec(
                "etc/demo/demo.conf",
                f"root = {PLACEHOLDER}\ndata = {PLACEHOLDER}/share/demo\n".encode(),
                mode="text",
            ),
            FileSpec("share/demo/data.txt", b"plain data, no prefix\n" * 20),
            FileSpec("share/demo/current.txt", link_to="data.txt"),
            FileSpec(
                "bin/demo-hello",
                f'#!/bin/sh\necho "hello from {PLACEHOLDER}"\n'.encode(),
                mode="text",
                executable=True,
            ),
        ],
    ),
    ("demo-binary", "1.0", "0"): (
        [],
        [
            FileSpec(
                "lib/libdemo.so",
                b"\x7fELF\x02\x01\x01\x00"
                + bytes(range(256))
                + f"{PLACEHOLDER}/lib\x00".encode()
                + b"\x00" * 16
                + f"{PLACEHOLDER}/share/demo\x00tail".encode(),
                mode="binary",
            ),
        ],
    ),
    ("demo-app", "2.0", "py311_0"): (
        [f"python {PY_VER}.*", "demo-text 1.0", "demo-binary 1.0"],
        [
            FileSpec(
                f"{SITE_PACKAGES}/demo_app/__init__.py",
                b"def main():\n    print('demo-app works')\n    return 0\n",
            ),
            FileSpec("bin/demo-app", _entry_point("demo_app"), "text", executable=True),
        ],
    ),
}


def _build_package(workdir: Path, out_dir: Path, key, depends, files) -> None:
    from conda_package_handling import api

    name, version, build = key
    src = workdir / f"{name}-{version}-{build}"
    (src / "info").mkdir(parents=True)
    paths, has_prefix = [], []
    for spec in files:
        target = src / spec.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if spec.link_to is not None:
            target.symlink_to(spec.link_to)
            paths.append({"_path": spec.path, "path_type": "softlink"})
            continue
        target.write_bytes(spec.content)
        if spec.executable:
            target.chmod(0o755)
        entry = {
            "_path": spec.path,
            "path_type": "hardlink",
            "sha256": hashlib.sha256(spec.content).hexdigest(),
            "size_in_bytes": len(spec.content),
        }
        if spec.mode:
            entry.update(prefix_placeholder=PLACEHOLDER, file_mode=spec.mode)
            has_prefix.append(f"{PLACEHOLDER} {spec.mode} {spec.path}")
        paths.append(entry)
    index = {
        "name": name,
        "version": version,
        "build": build,
        "build_number": 0,
        "depends": depends,
        "subdir": SUBDIR,
        "arch": "x86_64",
        "platform": "linux",
        "license": "BSD-3-Clause",
        "timestamp": 1700000000000,
    }
    info = {
        "info/index.json": json.dumps(index),
        "info/paths.json": json.dumps({"paths": paths, "paths_version": 1}),
        "info/files": "".join(f"{p['_path']}\n" for p in paths),
    }
    if has_prefix:
        info["info/has_prefix"] = "".join(f"{line}\n" for line in has_prefix)
    for rel, text in info.items():
        (src / rel).write_text(text)
    members = [*info, *(spec.path for spec in files)]
    api.create(str(src), members, str(out_dir / f"{name}-{version}-{build}.tar.bz2"))


@pytest.fixture(scope="session")
def channel(tmp_path_factory) -> Path:
    """A local conda channel holding the test packages."""
    from rattler.index import index_fs

    root = tmp_path_factory.mktemp("channel")
    work = tmp_path_factory.mktemp("package-build")
    for subdir in (SUBDIR, "noarch"):
        (root / subdir).mkdir()
    for key, (depends, files) in PACKAGES.items():
        _build_package(work, root / SUBDIR, key, depends, files)
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


def add_pip_package(prefix: Path) -> None:
    """Files a ``pip install`` leaves behind, which no conda package owns."""
    site = prefix / SITE_PACKAGES
    dist = site / "extra_tool-0.3.dist-info"
    dist.mkdir(parents=True)
    (site / "extra_tool").mkdir()
    (site / "extra_tool" / "__init__.py").write_text(
        "def main():\n    print('extra-tool works')\n    return 0\n"
    )
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: extra-tool\nVersion: 0.3\n"
    )
    (dist / "INSTALLER").write_text("pip\n")
    (dist / "direct_url.json").write_text(
        json.dumps({"url": f"file://{prefix}/src/extra_tool", "dir_info": {}})
    )
    script = prefix / "bin" / "extra-tool"
    script.write_text(f"#!{prefix}/bin/python\nimport extra_tool\nextra_tool.main()\n")
    script.chmod(0o755)
    (dist / "RECORD").write_text(
        "extra_tool/__init__.py,,\n"
        "extra_tool-0.3.dist-info/METADATA,,\n"
        "extra_tool-0.3.dist-info/INSTALLER,,\n"
        "extra_tool-0.3.dist-info/direct_url.json,,\n"
        "extra_tool-0.3.dist-info/RECORD,,\n"
        "../../../bin/extra-tool,,\n"
    )
    (site / "extra_tool.pth").write_text(f"{prefix}/src\n")


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


def tree_snapshot(root: Path) -> dict[str, tuple]:
    """Every entry below ``root`` with its type, mode and content or target,
    to prove an environment was left byte for byte as it was."""
    snapshot = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                snapshot[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                snapshot[rel] = ("dir", stat.S_IMODE(st.st_mode))
            elif not stat.S_ISREG(st.st_mode):  # a FIFO would block a read
                snapshot[rel] = ("special", stat.S_IFMT(st.st_mode))
            else:
                snapshot[rel] = (
                    "file",
                    stat.S_IMODE(st.st_mode),
                    hashlib.sha256(path.read_bytes()).hexdigest(),
                )
    return snapshot


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


#: Users that exist only as numbers: enough for the kernel's permission checks.
USER, OTHER_USER = 4242, 4343


@pytest.fixture
def unprivileged(tmp_path_factory):
    """Run ``conda-migrate`` as an ordinary user, as on a cluster (CI is root).

    A forked child drops to ``USER`` and calls the command in-process: the
    interpreter's own files (under root's 0700 home here) need not be
    readable by that user, since everything the run imports is imported
    before the fork. Returns ``(base, run)``: a world-traversable directory
    to build the user's $HOME and $SCRATCH in, and ``run(home, *args)``
    giving ``(output, exit code)``.
    """
    if os.geteuid() != 0:
        pytest.skip("dropping to another user needs root")
    import importlib
    import io
    import pkgutil
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

    def run(home: Path, *args: str | Path) -> tuple[str, int]:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 70
            try:
                os.close(read)
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


def chown_tree(root: Path, uid: int, gid: int | None = None) -> None:
    """Give ``root`` to ``uid``; files hardlinked from the package cache get
    copies of their own first, so that no other environment changes hands."""
    gid = uid if gid is None else gid
    os.chown(root, uid, gid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                shutil.copy2(path, path + ".unshared")
                os.replace(path + ".unshared", path)
            os.chown(path, uid, gid, follow_symlinks=False)


@pytest.fixture(scope="session")
def real_channel(tmp_path_factory) -> Path:
    """A channel of realistic packages (see ``realpkgs``): the running
    CPython as ``python``, pip as ``noarch: python``, and ``cmdemo``, a C
    program; built and indexed once per session."""
    import realpkgs
    from rattler.index import index_fs

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
