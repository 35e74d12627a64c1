"""Realistic conda packages, built offline as conda-build would build them.

Plain functions (no pytest here) so that any test module or fixture can use
them: a conda package of the running CPython, a ``noarch: python`` package
made from a wheel, and a small C program with a shared library. Each returns
the path of the package it wrote; index the directory with rattler.

What makes them realistic is what conda-build leaves in a package:

* a 255-character placeholder prefix (``.../_h_env_placehold_placehold...``)
  named by text files recorded with ``file_mode: text`` and by binaries
  recorded with ``file_mode: binary``;
* ``$ORIGIN``-relative RUNPATHs, set with ``patchelf``, in CPython's ELF files;
* ``.pyc`` files compiled inside the placeholder, so their ``co_filename``
  names it; conda-build records them as plain files;
* ``noarch: python`` packages with ``site-packages/`` and ``python-scripts/``
  package paths and their entry points listed in ``info/link.json``.
"""

from __future__ import annotations

import compileall
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

#: conda-build's host prefix: the build directory, then ``_h_env`` padded with
#: ``_placehold`` to 255 characters, the most any installed prefix may have.
PLACEHOLDER = ("/opt/conda-bld/realpkgs_1700000000000/_h_env" + "_placehold" * 30)[:255]

#: Left out of the CPython package to keep it small: test suites, GUIs,
#: the bundled wheels and the static library nothing here links against.
_STDLIB_SKIP = {
    "site-packages",
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "lib2to3/tests",
    "__pycache__",
}
_BIN_KEEP = re.compile(r"(python3?(\.\d+)?(-config)?|pydoc3?(\.\d+)?|2to3(-\d\.\d+)?)$")


class PackageUnavailable(RuntimeError):
    """This machine cannot build the package (static interpreter, no
    patchelf or compiler); the message says why, for a test skip."""


def _require(tool: str) -> str:
    found = shutil.which(tool)
    if not found:
        raise PackageUnavailable(
            f"{tool} is not installed (Debian package {tool}; .ci/run installs it)"
        )
    return found


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _is_text(data: bytes) -> bool:
    if b"\0" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _write_package(
    stage: Path,
    out_dir: Path,
    index: dict,
    prefix_modes: dict[str, str],
    extra_info: dict[str, str] | None = None,
) -> Path:
    """Write ``info/`` for the files under ``stage`` and pack a ``.conda``."""
    from conda_package_handling import api

    paths = []
    members = []
    for root, dirnames, filenames in os.walk(stage):
        dirnames[:] = sorted(
            d for d in dirnames if not (root == str(stage) and d == "info")
        )
        for name in sorted(
            filenames + [d for d in dirnames if Path(root, d).is_symlink()]
        ):
            path = Path(root, name)
            rel = str(path.relative_to(stage))
            members.append(rel)
            if path.is_symlink():
                paths.append({"_path": rel, "path_type": "softlink"})
                continue
            entry = {
                "_path": rel,
                "path_type": "hardlink",
                "sha256": _sha256(path),
                "size_in_bytes": path.stat().st_size,
            }
            if rel in prefix_modes:
                entry.update(
                    prefix_placeholder=PLACEHOLDER, file_mode=prefix_modes[rel]
                )
            paths.append(entry)
    info = {
        "info/index.json": json.dumps(index, indent=2),
        "info/paths.json": json.dumps({"paths": paths, "paths_version": 1}, indent=2),
        "info/files": "".join(f"{p['_path']}\n" for p in paths),
        **(extra_info or {}),
    }
    if prefix_modes:
        info["info/has_prefix"] = "".join(
            f"{PLACEHOLDER} {mode} {rel}\n"
            for rel, mode in sorted(prefix_modes.items())
        )
    (stage / "info").mkdir(exist_ok=True)
    for rel, text in info.items():
        (stage / rel).write_text(text)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"{index['name']}-{index['version']}-{index['build']}.conda"
    api.create(
        str(stage),
        [*info, *members],
        name,
        out_folder=str(out_dir),
        compression_level=1,
    )
    return out_dir / name


def _index(name: str, version: str, build: str, depends: list[str]) -> dict:
    return {
        "name": name,
        "version": version,
        "build": build,
        "build_number": 0,
        "depends": depends,
        "subdir": "linux-64",
        "arch": "x86_64",
        "platform": "linux",
        "license": "PSF-2.0" if name == "python" else "BSD-3-Clause",
        "timestamp": 1700000000000,
    }


def build_cpython_package(out_dir: Path, work: Path) -> Path:
    """A ``python`` package of the running interpreter's standard library.

    Raises PackageUnavailable where the interpreter is static (nothing to
    give an ``$ORIGIN`` RUNPATH) or ``patchelf`` is missing.
    """
    base = Path(sys.base_prefix)
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    library = sysconfig.get_config_var("LDLIBRARY") or ""
    if not sysconfig.get_config_var("Py_ENABLE_SHARED") or not library.endswith(".so"):
        raise PackageUnavailable(
            f"the running Python ({sys.executable}) is linked statically; "
            "a conda-style python package needs a --enable-shared build"
        )
    patchelf = _require("patchelf")
    stage = work / "python"
    if stage.exists():
        shutil.rmtree(stage)
    (stage / "bin").mkdir(parents=True)

    for entry in sorted((base / "bin").iterdir()):
        if _BIN_KEEP.match(entry.name):
            _copy_entry(entry, stage / "bin" / entry.name, base)
    for entry in sorted((base / "lib").iterdir()):
        if entry.name.startswith("libpython") or entry.name == "pkgconfig":
            _copy_entry(entry, stage / "lib" / entry.name, base)
    include = base / "include" / f"python{ver}"
    if include.is_dir():
        shutil.copytree(include, stage / "include" / include.name, symlinks=True)
    stdlib = base / "lib" / f"python{ver}"

    def skip(directory: str, names: list[str]) -> set[str]:
        rel = os.path.relpath(directory, stdlib)
        return {
            n
            for n in names
            if os.path.normpath(os.path.join(rel, n)) in _STDLIB_SKIP
            or n.endswith((".a", ".pyc"))
            or n == f"python{ver}-gdb.py"
        }

    shutil.copytree(stdlib, stage / "lib" / stdlib.name, symlinks=True, ignore=skip)
    (stage / "lib" / stdlib.name / "site-packages").mkdir()
    (stage / "lib" / stdlib.name / "site-packages" / "README.txt").write_text(
        "This directory exists so that 3rd party packages can be installed here.\n"
    )

    # conda-build links against the host prefix, then makes every RUNPATH
    # relative to the file so that the package works wherever it lands.
    for path in sorted(stage.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        with path.open("rb") as fh:
            header = fh.read(18)
        # Executables and shared objects (ET_EXEC, ET_DYN), not objects.
        if header[:4] != b"\x7fELF" or header[16] not in (2, 3):
            continue
        lib = stage / "lib"
        origin = os.path.relpath(lib, path.parent)
        runpath = "$ORIGIN" if origin == "." else f"$ORIGIN/{origin}"
        subprocess.run(
            [patchelf, "--set-rpath", runpath, str(path)],
            check=True,
            capture_output=True,
        )

    # Text naming the prefix (sysconfigdata, python-config, .pc files, the
    # Makefile, shebangs) would have named the placeholder.
    old = str(base).encode()
    modes: dict[str, str] = {}
    for path in sorted(stage.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if old in data and _is_text(data):
            path.write_bytes(data.replace(old, PLACEHOLDER.encode()))
            modes[str(path.relative_to(stage))] = "text"
    compileall.compile_dir(
        stage / "lib" / stdlib.name,
        ddir=f"{PLACEHOLDER}/lib/{stdlib.name}",
        quiet=2,
        workers=0,
    )
    version = ".".join(str(v) for v in sys.version_info[:3])
    return _write_package(
        stage, out_dir, _index("python", version, "h0realpkgs_0_cpython", []), modes
    )


def _copy_entry(src: Path, dst: Path, base: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_symlink():
        target = os.readlink(src)
        if os.path.isabs(target):
            target = os.path.relpath(
                os.path.join(base, os.path.relpath(target, base)), src.parent
            )
        dst.symlink_to(target)
    elif src.is_dir():
        shutil.copytree(src, dst, symlinks=True)
    else:
        shutil.copy2(src, dst)


def _wheel_name_version(wheel: Path) -> tuple[str, str]:
    name, version = wheel.name.split("-")[:2]
    return name, version


def build_noarch_python_from_wheel(wheel: Path, out_dir: Path, work: Path) -> Path:
    """A ``noarch: python`` package holding what ``wheel`` installs.

    Package paths are ``site-packages/...`` and ``python-scripts/...``; the
    console scripts become entry points in ``info/link.json``, which the
    installer writes into ``bin/`` for the environment's Python.
    """
    dist, version = _wheel_name_version(wheel)
    stage = work / f"noarch-{dist}-{version}"
    if stage.exists():
        shutil.rmtree(stage)
    site = stage / "site-packages"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    data = site / f"{dist}-{version}.data"
    if data.is_dir():
        for part in sorted(data.iterdir()):
            if part.name in ("purelib", "platlib"):
                shutil.copytree(part, site, dirs_exist_ok=True)
            elif part.name == "scripts":
                shutil.copytree(part, stage / "python-scripts")
        shutil.rmtree(data)
    dist_info = site / f"{dist}-{version}.dist-info"
    # As after conda-build's ``pip install``: the installer is named, and
    # RECORD lists it so that a later ``pip uninstall`` removes it too.
    (dist_info / "INSTALLER").write_text("conda\n")
    with (dist_info / "RECORD").open("a") as record:
        record.write(f"{dist_info.name}/INSTALLER,,\n")
    entry_points = []
    ep_file = dist_info / "entry_points.txt"
    if ep_file.is_file():
        section = None
        for line in ep_file.read_text().splitlines():
            line = line.strip()
            if line.startswith("["):
                section = line
            elif line and section == "[console_scripts]":
                script, _, target = line.partition("=")
                entry_points.append(f"{script.strip()} = {target.strip()}")
    link = {
        "noarch": {"type": "python", "entry_points": entry_points},
        "package_metadata_version": 1,
    }
    name = dist.lower().replace("_", "-")
    index = {
        **_index(name, version, "pyh0realpkgs_0", ["python >=3.8"]),
        "noarch": "python",
        "subdir": "noarch",
    }
    del index["arch"], index["platform"]
    return _write_package(
        stage, out_dir, index, {}, {"info/link.json": json.dumps(link, indent=2)}
    )


_C_LIBRARY = r"""
#include <stdio.h>
/* Compiled inside the placeholder: the installer rewrites these strings. */
const char *cmdemo_prefix(void) { return PREFIX; }
const char *cmdemo_datafile(void) { return PREFIX "/share/cmdemo/greeting.txt"; }
"""

_C_PROGRAM = r"""
#include <stdio.h>
const char *cmdemo_prefix(void);
const char *cmdemo_datafile(void);
int main(void) {
    char line[256];
    FILE *fh = fopen(cmdemo_datafile(), "r");
    printf("prefix=%s\n", cmdemo_prefix());
    if (!fh) { perror(cmdemo_datafile()); return 1; }
    if (fgets(line, sizeof line, fh)) printf("data=%s", line);
    fclose(fh);
    return 0;
}
"""


def build_c_package(out_dir: Path, work: Path) -> Path:
    """``cmdemo``: a program and its shared library, built with the system
    compiler, both naming the placeholder in C strings (``file_mode:
    binary``) and the program finding the library by an absolute RUNPATH."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise PackageUnavailable("no C compiler (cc or gcc) is installed")
    src = work / "cmdemo-src"
    stage = work / "cmdemo"
    for directory in (src, stage):
        if directory.exists():
            shutil.rmtree(directory)
    src.mkdir(parents=True)
    (stage / "bin").mkdir(parents=True)
    (stage / "lib").mkdir()
    (stage / "share" / "cmdemo").mkdir(parents=True)
    (src / "cmdemo.c").write_text(_C_LIBRARY)
    (src / "main.c").write_text(_C_PROGRAM)
    define = f'-DPREFIX="{PLACEHOLDER}"'
    subprocess.run(
        [
            cc,
            "-O1",
            "-shared",
            "-fPIC",
            define,
            "-o",
            stage / "lib/libcmdemo.so",
            src / "cmdemo.c",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            cc,
            "-O1",
            "-o",
            stage / "bin/cmdemo",
            src / "main.c",
            f"-L{stage / 'lib'}",
            "-lcmdemo",
            f"-Wl,-rpath,{PLACEHOLDER}/lib",
        ],
        check=True,
        capture_output=True,
    )
    (stage / "share/cmdemo/greeting.txt").write_text("hello from cmdemo\n")
    modes = {"bin/cmdemo": "binary", "lib/libcmdemo.so": "binary"}
    return _write_package(
        stage, out_dir, _index("cmdemo", "1.0", "h0realpkgs_0", []), modes
    )


def build_wheel(
    out_dir: Path,
    name: str,
    version: str,
    files: dict[str, bytes],
    *,
    console_scripts: dict[str, str] | None = None,
    tag: str = "py3-none-any",
) -> Path:
    """A wheel holding ``files`` (paths inside site-packages), for the
    environment's own pip to install."""
    import base64

    stem = re.sub(r"[-_.]+", "_", name)
    dist_info = f"{stem}-{version}.dist-info"
    contents = dict(files)
    contents[f"{dist_info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    ).encode()
    root_is_purelib = "true" if tag.endswith("none-any") else "false"
    contents[f"{dist_info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: conda-migrate-tests\n"
        f"Root-Is-Purelib: {root_is_purelib}\nTag: {tag}\n"
    ).encode()
    if console_scripts:
        contents[f"{dist_info}/entry_points.txt"] = (
            "[console_scripts]\n"
            + "".join(f"{k} = {v}\n" for k, v in console_scripts.items())
        ).encode()
    record = []
    for rel, data in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        record.append(f"{rel},sha256={digest.decode()},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    contents[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / f"{stem}-{version}-{tag}.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, data in contents.items():
            zf.writestr(rel, data)
    return wheel


_EXTENSION = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
static PyObject *square(PyObject *self, PyObject *args) {
    long n;
    if (!PyArg_ParseTuple(args, "l", &n)) return NULL;
    return PyLong_FromLong(n * n);
}
static PyMethodDef methods[] = {{"square", square, METH_VARARGS, NULL}, {NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "fastsq", NULL, -1, methods};
PyMODINIT_FUNC PyInit_fastsq(void) { return PyModule_Create(&module); }
"""


def build_extension_wheel(out_dir: Path, work: Path) -> Path:
    """``fastsq``: a compiled extension module in a platform wheel, built with
    the system compiler against the running Python's headers."""
    cc = shutil.which("cc") or shutil.which("gcc")
    include = sysconfig.get_paths()["include"]
    if not cc or not Path(include, "Python.h").is_file():
        raise PackageUnavailable("no C compiler or no Python.h to build an extension")
    src = work / "fastsq.c"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_text(_EXTENSION)
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    built = work / f"fastsq{suffix}"
    subprocess.run(
        [cc, "-O1", "-shared", "-fPIC", f"-I{include}", "-o", built, src],
        check=True,
        capture_output=True,
    )
    abi = f"cp{sys.version_info.major}{sys.version_info.minor}"
    return build_wheel(
        out_dir,
        "fastsq",
        "1.0",
        {f"fastsq{suffix}": built.read_bytes()},
        tag=f"{abi}-{abi}-linux_x86_64",
    )


def bundled_pip_wheel() -> Path:
    """The pip wheel the running Python bundles for ``ensurepip``: offline."""
    import ensurepip

    bundled = Path(ensurepip.__file__).parent / "_bundled"
    wheels = sorted(bundled.glob("pip-*.whl"))
    if not wheels:
        raise PackageUnavailable(f"no pip wheel in {bundled}")
    return wheels[-1]
