"""How much of a home quota environments that share a package cache take.

Not a test: run by hand, ``python benchmarks/bench_share.py [--envs N]``,
with py-rattler and conda-package-handling installed (the test extras).

The environments are real installs from one package cache, as conda makes
them: ``python`` (the running interpreter's standard library, packed as
conda-build packs it), ``pip`` (``noarch: python``) and ``cmdemo`` (a C
program and its shared library, built with the system compiler), from a
local channel built by ``tests/support/realpkgs.py``, installed with py-rattler,
which hard-links every file it writes no prefix into from the cache, as
conda does. It prints, as a Markdown table, the allocated bytes and inodes
(each inode once, as a quota counts) of the environments and of their cache
on the source, then of the destination after ``conda-migrate --all`` (files
shared on the source stay shared), after ``conda-migrate --all --copy``
(every environment copied alone, as before this was measured) and after
``cp -a`` of the directory of environments (which keeps the hard links among
what it copies), each with min, median and max seconds over ``--rounds``.
Every migration runs with ``--keep-old`` into a fresh destination, so each
round starts from the same source.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "support"))

import realpkgs  # noqa: E402


def usage(*roots: Path) -> tuple[int, int]:
    """Allocated bytes and inodes below ``roots``, a hard link once."""
    seen: dict[tuple[int, int], int] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in [*dirnames, *filenames, "."]:
                st = os.lstat(os.path.join(dirpath, name))
                seen[(st.st_dev, st.st_ino)] = st.st_blocks * 512
    return sum(seen.values()), len(seen)


def build_envs(work: Path, count: int) -> tuple[Path, Path]:
    import rattler
    from rattler.index import index_fs

    channel = work / "channel"
    (channel / "noarch").mkdir(parents=True)
    realpkgs.build_cpython_package(channel / "linux-64", work / "build-python")
    realpkgs.build_c_package(channel / "linux-64", work / "build-c")
    realpkgs.build_noarch_python_from_wheel(
        realpkgs.bundled_pip_wheel(), channel / "noarch", work / "build-pip"
    )
    asyncio.run(index_fs(channel, write_zst=False, write_shards=False))
    records = asyncio.run(
        rattler.solve(
            [channel.as_uri()],
            ["python", "pip", "cmdemo"],
            platforms=["linux-64", "noarch"],
        )
    )
    envs, cache = work / "scratch" / "envs", work / "scratch" / "pkgs"
    for index in range(count):
        asyncio.run(
            rattler.install(
                records, envs / f"env{index}", cache_dir=cache, show_progress=False
            )
        )
    return envs, cache


def migrate(envs: Path, dest: Path, home: Path, *extra: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "conda_migrate_plugin",
            "-d",
            envs,
            "--all",
            "--dest",
            dest,
            "--keep-old",
            "--no-rc",
        ]
        + ["--no-clean", "-q", *extra],
        env={**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(f"conda-migrate failed:\n{done.stdout}{done.stderr}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, help="where to work (default: a temp dir)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-share-", dir=args.dir))
    try:
        envs, cache = build_envs(work, args.envs)
        home = work / "home"
        home.mkdir()
        runs = {
            "conda-migrate --all": lambda d: migrate(envs, d, home),
            "conda-migrate --all --copy": lambda d: migrate(envs, d, home, "--copy"),
            "cp -a": lambda d: subprocess.run(["cp", "-a", envs, d], check=True),
        }
        times: dict[str, list[float]] = {name: [] for name in runs}
        sizes: dict[str, tuple[int, int]] = {}
        for _ in range(args.rounds):
            for name, run in runs.items():
                dest = work / "dest"
                started = time.monotonic()
                run(dest)
                times[name].append(time.monotonic() - started)
                sizes[name] = usage(dest)
                shutil.rmtree(dest)
                shutil.rmtree(home / ".conda", ignore_errors=True)
        source = usage(envs, cache)
        rows = [
            (f"scratch: {args.envs} environments", usage(envs), None),
            ("scratch: their package cache", usage(cache), None),
            ("scratch: both, as a quota counts them", source, None),
            *((f"$HOME after {name}", sizes[name], times[name]) for name in runs),
        ]
        print(f"{args.envs} environments of python, pip and cmdemo from one cache")
        print("| what | MiB | inodes | MiB / scratch | min s | median s | max s |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for label, (nbytes, inodes), took in rows:
            spans = (
                (
                    f"{min(took):.2f}",
                    f"{statistics.median(took):.2f}",
                    f"{max(took):.2f}",
                )
                if took
                else ("", "", "")
            )
            print(
                f"| {label} | {nbytes / 2**20:.1f} | {inodes:,} | "
                f"{nbytes / source[0]:.2f} | " + " | ".join(spans) + " |"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
