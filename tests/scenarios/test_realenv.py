"""Real environments: the running CPython, pip as ``noarch: python``, a C
program, and what the environment's own pip installs, moved by both engines.

Every check runs programs by path with a ``PATH`` that holds no Python, as
a batch job that never activates the environment would.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support import realpkgs
from tests.support.markers import HAVE_CONDA, requires_conda
from tests.support.runs import ROOT
from tests.support.trees import chown_tree, tree_snapshot
from tests.support.users import USER, user_home

if TYPE_CHECKING:
    from collections.abc import Callable

PY = f"python{sys.version_info.major}.{sys.version_info.minor}"
SITE = f"lib/{PY}/site-packages"
#: Where .ci/run puts a pip wheel other than the bundled one, for the
#: ``pip install -U pip`` case (``pip download pip -d build/test-wheels``).
WHEELS = ROOT / "build" / "test-wheels"


@pytest.fixture(scope="session")
def real_records(real_channel) -> list:
    import rattler

    return asyncio.run(
        rattler.solve(
            [real_channel.as_uri()],
            ["python", "pip", "cmdemo"],
            platforms=["linux-64", "noarch"],
        )
    )


@pytest.fixture(scope="session")
def local_wheels(tmp_path_factory) -> list[Path]:
    """A compiled extension and a pure package with a console script."""
    out = tmp_path_factory.mktemp("wheels")
    tool = realpkgs.build_wheel(
        out,
        "hello-tool",
        "0.4",
        {
            "hello_tool/__init__.py": b"import sys\n\ndef main():\n"
            b"    print('hello-tool from', sys.prefix)\n    return 0\n"
        },
        console_scripts={"hello-tool": "hello_tool:main"},
    )
    try:
        return [
            tool,
            realpkgs.build_extension_wheel(out, tmp_path_factory.mktemp("ext")),
        ]
    except realpkgs.PackageUnavailable:
        return [tool]


@pytest.fixture
def nopython_path(tmp_path) -> str:
    """A PATH without any Python: only what a shell script needs by name."""
    bin_dir = tmp_path / "nopython-bin"
    bin_dir.mkdir()
    return str(bin_dir)


def run(path_var: str, *args) -> subprocess.CompletedProcess:
    """Run by path, without activation and with no python on ``PATH``."""
    env = {"PATH": path_var, "HOME": "/nonexistent", "LC_ALL": "C.UTF-8"}
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


@pytest.fixture
def real_env(real_records, local_wheels, nopython_path, tmp_path) -> Callable:
    """A realistic environment at ``prefix``: python, noarch pip and cmdemo
    installed as conda would, then the environment's own pip installing
    local wheels, and what users leave in environments besides."""
    import rattler

    def _make(prefix: Path) -> Path:
        asyncio.run(
            rattler.install(
                real_records,
                prefix,
                cache_dir=tmp_path / "rattler-cache",
                show_progress=False,
            )
        )
        pip_install(prefix, nopython_path, *local_wheels)
        (prefix / "conda-meta/pinned").write_text("cmdemo 1.0\n")
        (prefix / "conda-meta/state").write_text(
            json.dumps({"env_vars": {"DATA_DIR": f"{prefix}/share/data"}})
        )
        kernel = prefix / "share/jupyter/kernels/python3"
        kernel.mkdir(parents=True)
        (kernel / "kernel.json").write_text(
            json.dumps({"argv": [f"{prefix}/bin/python", "-m", "ipykernel_launcher"]})
        )
        data = prefix / "share/data"
        data.mkdir()
        (data / "table.csv").write_text("a,b\n1,2\n")
        data.chmod(0o555)
        (prefix / "var/empty").mkdir(parents=True)
        (prefix / "share/greeting-link").symlink_to(
            f"{prefix}/share/cmdemo/greeting.txt"
        )
        outside = tmp_path / "outside.txt"
        outside.write_text("outside\n")
        (prefix / "share/outside-link").symlink_to(outside)
        return prefix

    return _make


def pip_install(prefix: Path, path_var: str, *wheels: Path, upgrade=False) -> None:
    args = [prefix / "bin/pip", "install", "--no-index", "--no-deps"]
    args += ["--disable-pip-version-check", "--no-warn-script-location"]
    run(path_var, *args, *(["--upgrade"] if upgrade else []), *wheels)


def pip_list(prefix: Path, path_var: str) -> str:
    return run(
        path_var,
        prefix / "bin/pip",
        "list",
        "--format=freeze",
        "--disable-pip-version-check",
    ).stdout


def _padded(base: Path, length: int) -> Path:
    """A prefix of exactly ``length`` characters below ``base``."""
    room = length - len(str(base)) - 1
    assert room >= 3, f"{base} is too long for a {length}-character prefix"
    return base / ("e" * room)


def _shape(root: Path) -> dict[str, tuple]:
    """Types, modes and symlink targets, no contents; leaving out what
    Python writes whenever it runs and the records (each installer writes
    its own; their contents are checked through conda and pip)."""
    return {
        rel: entry if entry[0] == "link" else entry[:2]
        for rel, entry in tree_snapshot(root).items()
        if "__pycache__" not in rel
        and not (rel.startswith("conda-meta/") and rel.endswith(".json"))
        and rel != "conda-meta/created_at"
    }


def _files_naming(root: Path, old: str) -> list[str]:
    needle = old.encode()
    found = []
    for path in root.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if needle in data:
            found.append(str(path.relative_to(root)))
    return sorted(found)


def assert_moved(old: Path, new: Path, before: dict, path_var: str) -> None:
    assert not os.path.lexists(old)
    out = run(path_var, new / "bin/python", "-c", "import sys, ssl; print(sys.prefix)")
    assert out.stdout == f"{new}\n"
    if "fastsq" in before["pip"]:
        out = run(
            path_var, new / "bin/python", "-c", "import fastsq; print(fastsq.square(7))"
        )
        assert out.stdout == "49\n"
    assert run(path_var, new / "bin/hello-tool").stdout == f"hello-tool from {new}\n"
    version = run(path_var, new / "bin/pip", "--version").stdout
    assert f"from {new}/{SITE}/pip " in version
    activated = f"{new}/bin:{path_var}"
    assert run(activated, "hello-tool").stdout == f"hello-tool from {new}\n"
    assert run(activated, "pip", "--version").stdout == version
    assert pip_list(new, path_var) == before["pip"]
    assert run(path_var, new / "bin/cmdemo").stdout == (
        f"prefix={new}\ndata=hello from cmdemo\n"
    )
    leftovers = [
        rel
        for rel in _files_naming(new, str(old))
        if rel != "conda-meta/history" and not rel.endswith(".pyc")
    ]
    assert leftovers == []
    moved = {
        rel: ("link", entry[1].replace(str(old), str(new)))
        if entry[0] == "link"
        else entry
        for rel, entry in before["shape"].items()
    }
    shape = _shape(new)
    differ = [
        (rel, moved.get(rel), shape.get(rel))
        for rel in sorted(moved.keys() | shape.keys())
        if moved.get(rel) != shape.get(rel)
    ]
    assert not differ, "\n".join(map(str, differ))


def _before(prefix: Path, path_var: str) -> dict:
    return {
        "pip": pip_list(prefix, path_var),
        "shape": _shape(prefix),
    }


def test_realistic_packages_install_and_work(real_env, tmp_path, nopython_path):
    prefix = real_env(tmp_path / "env")
    out = run(
        nopython_path, prefix / "bin/python", "-c", "import sys; print(sys.prefix)"
    )
    assert out.stdout == f"{prefix}\n"
    assert "hello-tool==0.4" in pip_list(prefix, nopython_path)
    assert run(nopython_path, prefix / "bin/cmdemo").stdout == (
        f"prefix={prefix}\ndata=hello from cmdemo\n"
    )
    record = json.loads(
        next((prefix / "conda-meta").glob("python-3*.json")).read_text()
    )
    modes = {p["_path"]: p.get("file_mode") for p in record["paths_data"]["paths"]}
    assert modes[f"lib/{PY}/_sysconfigdata__linux_x86_64-linux-gnu.py"] == "text"
    assert modes[f"lib/pkgconfig/python-{PY[6:]}.pc"] == "text"


#: New prefixes shorter and longer than the old one (95 characters), and one
#: whose ``#!`` line would pass the kernel's 127.
LENGTHS = {"shorter": None, "longer": 110, "over-127": 150}


def _dest_root(tmp_path: Path, name: str, length: int | None) -> Path:
    """Where ``name`` lands with a prefix of ``length`` characters, or a
    shorter one than its 95 when None."""
    if length is None:
        return tmp_path / "h"
    return _padded(tmp_path / "home-envs", length - len(name) - 1)


@pytest.mark.parametrize("length", LENGTHS)
def test_relocates_a_real_environment(
    length, real_env, migrate, home, tmp_path, nopython_path
):
    envs = tmp_path / "scratch"
    old = real_env(_padded(envs, 95))
    dest_root = _dest_root(tmp_path, old.name, LENGTHS[length])
    new = dest_root / old.name
    assert len(str(new)) == (LENGTHS[length] or len(str(new)))
    before = _before(old, nopython_path)

    out, err, code = migrate("-d", envs, "--all", "--dest", dest_root)

    assert code == 0, out + err
    assert "Successfully migrated" in out
    assert_moved(old, new, before, nopython_path)
    # pip's .pyc files name the old prefix: one line in the log, none here.
    assert [line for line in out.splitlines() if ".pyc" in line] == []
    (log,) = (home / ".conda/migrate/logs").iterdir()
    assert len(re.findall(r"\d+ \.pyc files name the old prefix", log.read_text())) == 1
    if length == "over-127":
        for script in ("pip", "hello-tool"):
            lines = (new / "bin" / script).read_text().splitlines()
            assert lines[:2] == [
                "#!/bin/sh",
                f"'''exec' \"{new}/bin/{PY}\" \"$0\" \"$@\" #'''",
            ]
        # A file a package installed keeps conda's own rule for text files.
        pydoc = (new / f"bin/pydoc{PY[6:]}").read_text().splitlines()[0]
        assert pydoc == f"#!/usr/bin/env {PY}"


@pytest.mark.parametrize(
    "method", ["auto", pytest.param("clone", marks=requires_conda)]
)
def test_after_pip_upgrades_itself(method, real_env, migrate, tmp_path, nopython_path):
    newer = sorted(WHEELS.glob("pip-*.whl"))
    if not newer:
        pytest.skip(f"no pip wheel in {WHEELS} (.ci/run downloads one)")
    envs = tmp_path / "scratch"
    old = real_env(envs / "env")
    pip_install(old, nopython_path, newer[-1], upgrade=True)
    before = _before(old, nopython_path)
    assert f"pip=={newer[-1].name.split('-')[1]}" in before["pip"]
    dest_root = tmp_path / "home-envs"

    out, err, code = migrate(
        "-d", envs, "--all", "--dest", dest_root, "--method", method
    )

    if method == "clone" and code == 1:
        # conda's clone may link the old pip again from the package cache
        # under the newer one's files: then the copy must be refused.
        assert "differ" in out
        assert pip_list(old, nopython_path) == before["pip"]
        assert not (dest_root / "env").exists()
        return
    assert code == 0, out + err
    assert_moved(old, dest_root / "env", before, nopython_path)


@requires_conda
def test_clone_is_checked_against_the_sources_bytes_not_its_records(
    real_env, migrate, tmp_path, nopython_path
):
    """pip replaced a file of a conda package (a wheel that patches
    ``pip/_internal/cli/spinners.py``, as ``pip install -U`` or a fork of a
    package does): conda's records still describe the packaged file, which
    its clone links again from the package cache. Checked against the
    records, that copy passed and the patched environment was removed;
    checked against the source's bytes, it differs, and the old one stays."""
    envs = tmp_path / "scratch"
    old = real_env(envs / "env")
    spinners = old / SITE / "pip/_internal/cli/spinners.py"
    patched = spinners.read_bytes() + b"\n# patched by spinner-fix 1.0\n"
    wheel = realpkgs.build_wheel(
        tmp_path / "fix-wheel",
        "spinner-fix",
        "1.0",
        {"pip/_internal/cli/spinners.py": patched},
    )
    pip_install(old, nopython_path, wheel)
    assert spinners.read_bytes() == patched
    before = _before(old, nopython_path)
    snapshot = tree_snapshot(old)
    dest_root = tmp_path / "home-envs"

    out, err, code = migrate(
        "-d", envs, "--all", "--dest", dest_root, "--method", "clone"
    )

    assert code == 1, out + err
    assert f"\n  {SITE}/pip/_internal/cli/spinners.py: differs from the source\n" in out
    assert "The old environment was left untouched and the copy removed." in out
    assert tree_snapshot(old) == snapshot
    assert pip_list(old, nopython_path) == before["pip"]
    assert not (dest_root / "env").exists()


def _as_conda_records_noarch(prefix: Path) -> Path:
    """Rewrite the pip record as conda writes it: ``paths_data`` holds the
    package paths of a ``noarch: python`` package, ``files`` the installed
    ones (py-rattler writes installed paths in both)."""
    (record_path,) = (prefix / "conda-meta").glob("pip-*.json")
    record = json.loads(record_path.read_text())
    for entry in record["paths_data"]["paths"]:
        if entry["_path"].startswith(f"{SITE}/"):
            entry["_path"] = "site-packages/" + entry["_path"][len(SITE) + 1 :]
    record_path.write_text(json.dumps(record, indent=2))
    return record_path


def test_noarch_python_records_are_owned_and_verified(real_env, tmp_path):
    from conda_migrate_plugin.relocation.relocate import relocate
    from conda_migrate_plugin.relocation.verify import verify_files

    old = real_env(tmp_path / "scratch" / "env")
    record_path = _as_conda_records_noarch(old)
    # A noarch file that carries the prefix, as conda records one.
    vendored = f"{SITE}/pip/_vendor/vendor.txt"
    record = json.loads(record_path.read_text())
    for entry in record["paths_data"]["paths"]:
        if entry["_path"] == "site-packages/pip/_vendor/vendor.txt":
            entry.update(prefix_placeholder=realpkgs.PLACEHOLDER, file_mode="text")
    record_path.write_text(json.dumps(record, indent=2))
    (old / vendored).unlink()  # a hardlink into the package cache
    (old / vendored).write_text(f"home = {old}\n")
    new = tmp_path / "home" / "env"
    staging = tmp_path / "staging"

    relocate(old, staging, new)
    check = verify_files(old, staging, new)

    assert check.problems == []
    assert [n for n in check.notes if "missing in the source" in n] == []
    assert (staging / vendored).read_text() == f"home = {new}\n"
    copied = json.loads((staging / "conda-meta" / record_path.name).read_text())
    (entry,) = [
        e
        for e in copied["paths_data"]["paths"]
        if e["_path"] == "site-packages/pip/_vendor/vendor.txt"
    ]
    import hashlib

    assert (
        entry["sha256_in_prefix"]
        == hashlib.sha256((staging / vendored).read_bytes()).hexdigest()
    )


def test_user_built_binary_naming_the_old_prefix_is_reported(
    make_env, migrate, tmp_path
):
    envs = tmp_path / "scratch"
    old = make_env(envs / "env", ["demo-text"])
    (old / "bin/mytool").write_bytes(
        b"\x7fELF\x02\x01\x01\x00" + f"{old}/lib\0".encode() + b"\0" * 32
    )

    out, err, code = migrate("-d", envs, "--all", "--dest", tmp_path / "home-envs")

    assert code == 0, out + err
    (warning,) = [line for line in out.splitlines() if "bin/mytool" in line]
    assert "patchelf" in warning or "rebuild" in warning


@requires_conda
@pytest.mark.parametrize("length", LENGTHS)
def test_clone_engine_on_a_real_environment(
    length, real_env, migrate, tmp_path, nopython_path
):
    envs = tmp_path / "scratch"
    old = real_env(_padded(envs, 95))
    dest_root = _dest_root(tmp_path, old.name, LENGTHS[length])
    before = _before(old, nopython_path)

    out, err, code = migrate(
        "-d", envs, "--all", "--dest", dest_root, "--method", "clone"
    )

    assert code == 0, out + err
    assert_moved(old, dest_root / old.name, before, nopython_path)


def _drop_paths_data(prefix: Path, name: str) -> None:
    """Make a package's record as conda before 4.3 wrote it: ``files`` only,
    nothing saying which file carries the prefix or how."""
    (record_path,) = (prefix / "conda-meta").glob(f"{name}-*.json")
    record = json.loads(record_path.read_text())
    del record["paths_data"]
    record_path.write_text(json.dumps(record))


@pytest.mark.skipif(HAVE_CONDA, reason="where conda is installed, auto clones")
def test_auto_leaves_what_only_clone_can_move_exactly(make_env, migrate, tmp_path):
    envs = tmp_path / "scratch"
    old = make_env(envs / "abc", ["demo-binary"])
    _drop_paths_data(old, "demo-binary")
    before = tree_snapshot(old)

    out, err, code = migrate("-d", envs, "--all", "--dest", tmp_path / "envs")

    assert code == 1
    assert "lib/libdemo.so" in out
    assert "--method relocate" in out
    assert tree_snapshot(old) == before
    assert not (tmp_path / "envs" / "abc").exists()

    out, err, code = migrate(
        "-d", envs, "--all", "--dest", tmp_path / "envs", "--method", "relocate"
    )

    assert code == 0, out + err
    (warning,) = [line for line in out.splitlines() if "lib/libdemo.so" in line]
    assert "only conda's clone" in warning


@requires_conda
def test_auto_clones_what_relocation_cannot_move_exactly(make_env, migrate, tmp_path):
    envs = tmp_path / "scratch"
    old = make_env(envs / "abc", ["demo-binary"])
    _drop_paths_data(old, "demo-binary")

    out, err, code = migrate("-d", envs, "--all", "--dest", tmp_path / "envs")

    assert code == 0, out + err
    assert "Using conda's clone instead" in out
    new = tmp_path / "envs" / "abc"
    assert f"{new}/lib\0".encode() in (new / "lib/libdemo.so").read_bytes()
    assert not old.exists()


@pytest.fixture
def mount_inside(tmp_path):
    """Mount a tmpfs at a path, which no one can remove while it is mounted;
    everything mounted below ``tmp_path`` is unmounted at teardown."""
    import shutil

    def _mount(point: Path) -> None:
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("mounting a tmpfs needs root and mount")
        point.mkdir(parents=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "cm-test", point],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")

    yield _mount
    for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
        point = line.split()[1]
        if point.startswith(f"{tmp_path}/"):
            subprocess.run(["umount", "-l", point], check=False)


def test_leftover_that_cannot_be_removed_fails_every_run(
    make_env, migrate, tmp_path, mount_inside
):
    envs = tmp_path / "scratch"
    old = make_env(envs / "abc", ["demo-text"])
    mount_inside(old / "share" / "busy")
    dest = tmp_path / "envs"

    # A mount inside is refused before the copy (it would be deleted with
    # the environment): every run says so until it is unmounted.
    for _ in range(3):
        out, err, code = migrate("-d", envs, "--all", "--dest", dest)
        assert code == 1, out
        assert f"{old / 'share' / 'busy'} (a mount point)" in out
        assert "nothing to migrate" not in out
        assert not (dest / "abc").exists()
    for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
        if line.split()[1].startswith(f"{envs}/"):
            subprocess.run(["umount", line.split()[1]], check=True)

    out, err, code = migrate("-d", envs, "--all", "--dest", dest)

    assert code == 0, out
    assert list(envs.iterdir()) == []


@requires_conda
def test_conda_made_environment_moves_by_default(
    real_channel, conda_cli, home, migrate, tmp_path, local_wheels, nopython_path
):
    """conda itself installs: ``noarch: python`` records with package paths
    and compiled ``.pyc`` files; every one is owned and verified."""
    envs = tmp_path / "scratch"
    old = envs / "real"
    out, err, code = conda_cli(
        "create",
        "-p",
        old,
        "-c",
        real_channel.as_uri(),
        "--override-channels",
        "-y",
        "python",
        "pip",
        "cmdemo",
    )
    assert code == 0, out + err
    record = json.loads(next((old / "conda-meta").glob("pip-*.json")).read_text())
    assert record["paths_data"]["paths"][0]["_path"].startswith("site-packages/")
    pip_install(old, nopython_path, *local_wheels)
    before = _before(old, nopython_path)
    dest_root = _padded(tmp_path / "home-envs", 150 - len("/real"))

    out, err, code = migrate("-d", envs, "--all", "--dest", dest_root)

    assert code == 0, out + err
    assert_moved(old, dest_root / "real", before, nopython_path)
    (log,) = (home / ".conda/migrate/logs").iterdir()
    assert "missing in the source" not in log.read_text()


@pytest.mark.skipif(HAVE_CONDA, reason="where conda is installed, auto clones")
def test_user_copy_with_read_only_directories_is_discarded_whole(
    unprivileged, make_env
):
    """A copy that is given up (here: relocation cannot be exact) keeps the
    source's read-only directories; the owner's discard must still empty it."""
    from conda_migrate_plugin.relocation.prefix import ENCODINGS

    for encoding in ENCODINGS:  # the user cannot read root's codec modules
        "".encode(encoding)
    base, run_as_user = unprivileged
    home = user_home(base)
    envs = base / "scratch"
    old = make_env(envs / "abc", ["demo-binary"])
    _drop_paths_data(old, "demo-binary")
    (old / "share/depot/packages").mkdir(parents=True)
    (old / "share/depot/packages/Example.jl").write_text("module Example end\n")
    chown_tree(envs, USER)
    (old / "share/depot/packages").chmod(0o555)
    before = tree_snapshot(old)

    out, code = run_as_user(home, "-d", envs, "--all", "--no-clean")

    assert code == 1, out
    assert "--method relocate" in out
    assert tree_snapshot(old) == before
    assert list((home / ".conda/envs").iterdir()) == []


@requires_conda
def test_reading_a_purged_environment_never_drops_its_records(
    real_env, migrate, tmp_path
):
    """conda's pip interoperability deletes from conda-meta the record of a
    Python package whose dist-info folder is gone, on any read: a purge
    that took it would lose the package's record to the migration's first
    look, and --dry-run would change the environment."""
    envs = tmp_path / "scratch"
    old = real_env(envs / "env")
    # The purge took every file of pip's dist-info, then the emptied folder.
    (dist_info,) = old.glob(f"lib/{PY}/site-packages/pip-*.dist-info")
    lost = sum(1 for _ in dist_info.iterdir())
    shutil.rmtree(dist_info)
    meta = {p.name: p.read_bytes() for p in (old / "conda-meta").iterdir()}
    pip_records = sorted(name for name in meta if name.startswith("pip-"))
    assert pip_records

    out, err, _ = migrate("-d", envs, "--all", "--dry-run")

    assert f"Damaged by the purge: {lost} files missing" in out, out + err
    assert {p.name: p.read_bytes() for p in (old / "conda-meta").iterdir()} == meta

    dest_root = tmp_path / "home-envs"
    out, err, code = migrate("-d", envs, "--all", "--dest", dest_root)

    # Restored, or moved or kept with its remedy: wherever the environment
    # now is, it still knows its pip package.
    env = dest_root / "env" if (dest_root / "env").exists() else old
    assert code in (0, 1), out + err
    assert sorted(p.name for p in (env / "conda-meta").glob("pip-*.json")) == (
        pip_records
    )
