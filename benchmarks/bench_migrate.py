"""The whole ``conda-migrate --method relocate`` against ``cp -a`` + ``rm -rf``.

Not a test: run by hand, as root (it mounts), ``python benchmarks/bench_migrate.py
--slowfs /tmp/slowfs/slowfs``. The interpreter running it runs the console
script beside it (with this checkout first on ``PYTHONPATH``), so run it with
conda's Python to include conda's share of the work. On a tmpfs (CPU-bound, the
~21k-file environment) and on slowfs at each ``--latency`` (scratch and home
both on it, the ~5k-file environment), each round starts from a fresh copy of
the same environment and times, interleaved, ``cp -a`` scratch to home then
``rm -rf`` of scratch, against the migration at each ``--jobs``. It prints the
median seconds, the ratio to ``cp -a`` + ``rm -rf`` of the same round, the
metadata system calls per file (``strace -c -f``, on the tmpfs: they do not
depend on latency) and the peak resident memory of the process tree; then the
peak memory of a migration of an environment holding a 1 GiB file.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_relocate import build_env

ROOT = Path(__file__).resolve().parents[1]
METADATA = {
    "open", "openat", "openat2", "creat", "close", "close_range", "stat",
    "lstat", "fstat", "newfstatat", "statx", "access", "faccessat",
    "faccessat2", "mkdir", "mkdirat", "rmdir", "unlink", "unlinkat", "rename",
    "renameat", "renameat2", "link", "linkat", "symlink", "symlinkat",
    "readlink", "readlinkat", "chmod", "fchmod", "fchmodat", "chown", "fchown",
    "lchown", "fchownat", "utimensat", "utimes", "futimesat", "getdents64",
    "getxattr", "lgetxattr", "fgetxattr", "setxattr", "lsetxattr", "fsetxattr",
    "listxattr", "llistxattr", "flistxattr", "fsync", "fdatasync", "syncfs",
    "truncate", "ftruncate",
}  # fmt: skip


def _run(argv: list[str], env: dict | None = None) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of a process tree."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(
            f"{argv} exited {proc.returncode}: {proc.stderr.read()[-2000:]}"
        )
    return elapsed, usage.ru_maxrss / 1024


def _strace(argv: list[str], env: dict | None = None) -> int:
    """Metadata system calls of a process tree."""
    with tempfile.NamedTemporaryFile("r") as out:
        subprocess.run(
            ["strace", "-c", "-f", "-o", out.name, *argv],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        total = 0
        for line in out.read().splitlines():
            fields = line.split()
            if fields and fields[-1] in METADATA and re.fullmatch(r"\d+", fields[3]):
                total += int(fields[3])
        return total


class Site:
    """A scratch and a home on one filesystem; ``backing`` is the same tree
    without the delay, where the untimed setup of each round is done."""

    def __init__(self, view: Path, backing: Path, files: int) -> None:
        self.view, self.backing, self.files = view, backing, files

    def fresh(self) -> None:
        for name in ("scratch", "home"):
            shutil.rmtree(self.backing / name, ignore_errors=True)
        shutil.copytree(
            self.backing / "template", self.backing / "scratch", symlinks=True
        )
        (self.backing / "home").mkdir()

    def cp_rm(self) -> list[list[str]]:
        src = self.view / "scratch/envs/env"
        dst = self.view / "home/env"
        return [["cp", "-a", str(src), str(dst)], ["rm", "-rf", str(src)]]

    def migrate(self, jobs: int | None) -> tuple[list[str], dict]:
        home = self.view / "home"
        env = dict(
            os.environ,
            HOME=str(home),
            CONDA_PKGS_DIRS=str(home / "pkgs"),
            PYTHONPATH=str(ROOT),
        )
        env.pop("SLURM_CPUS_PER_TASK", None)
        script = Path(sys.executable).with_name("conda-migrate")
        argv = [str(script), "-d", str(self.view / "scratch/envs"), "--all", "--yes"]
        argv += ["--method", "relocate", "--no-clean", "--no-rc"]
        if jobs is not None:
            argv += ["--jobs", str(jobs)]
        return argv, env

    def check_migrated(self) -> None:
        if (self.backing / "scratch/envs/env").exists() or not (
            self.backing / "home/.conda/envs/env/conda-meta/history"
        ).is_file():
            raise SystemExit("the migration did not move the environment")


def make_site(backing: Path, view: Path, packages: int, files: int) -> Site:
    """Build the environment at its path in ``view`` (before anything is
    mounted there), then keep it in ``backing`` as the template."""
    prefix = view / "scratch/envs/env"
    count = build_env(prefix, packages=packages, files=files)
    for path in (prefix / "conda-meta").glob("*.json"):
        record = json.loads(path.read_text())
        fn = f"{record['name']}-1.0-0.conda"
        record.update(
            build_number=0,
            subdir="linux-64",
            channel="https://conda.anaconda.org/conda-forge/linux-64",
            fn=fn,
            url=f"https://conda.anaconda.org/conda-forge/linux-64/{fn}",
            depends=[],
        )
        path.write_text(json.dumps(record, indent=2))
    backing.mkdir(parents=True, exist_ok=True)
    os.rename(view / "scratch", backing / "template")
    return Site(view, backing, count)


def measure(site: Site, jobs_list: list, rounds: int, label: str) -> list[dict]:
    rows: dict[str, dict] = {"cp -a + rm -rf": {"t": [], "ratio": [], "rss": []}}
    for jobs in jobs_list:
        rows[_name(jobs)] = {"t": [], "ratio": [], "rss": []}
    for r in range(rounds):
        site.fresh()
        base = 0.0
        rss = 0.0
        for argv in site.cp_rm():
            seconds, peak = _run(argv)
            base += seconds
            rss = max(rss, peak)
        rows["cp -a + rm -rf"]["t"].append(base)
        rows["cp -a + rm -rf"]["ratio"].append(1.0)
        rows["cp -a + rm -rf"]["rss"].append(rss)
        order = jobs_list if r % 2 == 0 else list(reversed(jobs_list))
        for jobs in order:
            site.fresh()
            seconds, peak = _run(*site.migrate(jobs))
            site.check_migrated()
            row = rows[_name(jobs)]
            row["t"].append(seconds)
            row["ratio"].append(seconds / base)
            row["rss"].append(peak)
        print(f"  {label}: round {r + 1}/{rounds} done", file=sys.stderr)
    return [
        {
            "fs": label,
            "run": name,
            "seconds": statistics.median(row["t"]),
            "ratio": statistics.median(row["ratio"]),
            "rss": max(row["rss"]),
        }
        for name, row in rows.items()
    ]


def syscalls(site: Site, jobs_list: list) -> dict[str, float]:
    counts = {}
    site.fresh()
    counts["cp -a + rm -rf"] = sum(_strace(argv) for argv in site.cp_rm())
    for jobs in jobs_list:
        site.fresh()
        counts[_name(jobs)] = _strace(*site.migrate(jobs))
        site.check_migrated()
    return {name: count / site.files for name, count in counts.items()}


def _name(jobs: int | None) -> str:
    return "relocate, default jobs" if jobs is None else f"relocate, {jobs} jobs"


def _mount_tmpfs(path: Path) -> None:
    path.mkdir(parents=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8g", "bench", str(path)], check=True
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slowfs", type=Path, help="the built slowfs binary")
    parser.add_argument("--latency", type=int, nargs="*", default=[200, 500, 2000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--jobs", nargs="*", default=["1", "2", "default", "16"], help="N or default"
    )
    parser.add_argument("--tmpfs-packages", type=int, default=100)
    parser.add_argument("--slow-packages", type=int, default=24)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("skipped: needs root to mount tmpfs and slowfs", file=sys.stderr)
        return 0
    if not shutil.which("strace"):
        print("note: no strace; system calls are not counted", file=sys.stderr)
    jobs_list = [None if j == "default" else int(j) for j in args.jobs]
    work = Path(tempfile.mkdtemp(prefix="bench-migrate-"))
    mounts: list[Path] = []
    table: list[dict] = []
    per_file: dict[str, float] = {}
    try:
        tmp = work / "tmpfs"
        _mount_tmpfs(tmp)
        mounts.append(tmp)
        site = make_site(tmp, tmp, args.tmpfs_packages, 205)
        print(f"tmpfs: {site.files} files", file=sys.stderr)
        table += measure(site, jobs_list, args.rounds, "tmpfs")
        if shutil.which("strace"):
            per_file = syscalls(site, jobs_list)
        memory = peak_memory(site)
        if args.slowfs is None:
            print("skipped slowfs: pass --slowfs BINARY", file=sys.stderr)
        for us in args.latency if args.slowfs else []:
            base = work / f"slow{us}"
            _mount_tmpfs(base)
            mounts.append(base)
            site = make_site(base / "backing", base / "view", args.slow_packages, 205)
            subprocess.run(
                [str(args.slowfs), str(site.backing), str(site.view)],
                env=dict(os.environ, SLOWFS_US=str(us)),
                check=True,
            )
            mounts.insert(0, site.view)
            print(f"slowfs {us} us: {site.files} files", file=sys.stderr)
            rounds = 1 if us >= 500 else args.rounds
            table += measure(site, jobs_list, rounds, f"slowfs {us} us")
            subprocess.run(["fusermount3", "-u", str(site.view)], check=True)
            mounts.remove(site.view)
        print(
            f"\n{len(os.sched_getaffinity(0))} CPUs; default jobs "
            f"{_default_jobs()}; {args.rounds} rounds (1 at 500 us and 2 ms), medians\n"
        )
        print("| filesystem | run | seconds | ratio | syscalls/file | peak MB |")
        print("|---|---|---:|---:|---:|---:|")
        for row in table:
            calls = per_file.get(row["run"])
            calls_text = f"{calls:.1f}" if calls is not None else "-"
            print(
                f"| {row['fs']} | {row['run']} | {row['seconds']:.2f} | "
                f"{row['ratio']:.2f} | {calls_text} | {row['rss']:.0f} |"
            )
        print(
            f"\npeak memory migrating an environment with a 1 GiB file: {memory:.0f} MB"
        )
        return 0
    finally:
        for mount in mounts:
            subprocess.run(["umount", "-l", str(mount)], check=False)
        shutil.rmtree(work, ignore_errors=True)


def peak_memory(site: Site) -> float:
    site.fresh()
    big = site.backing / "scratch/envs/env/share/big.bin"
    big.parent.mkdir(exist_ok=True)
    with big.open("wb") as fh:
        for _ in range(1024):
            fh.write(os.urandom(1 << 20))
    _, peak = _run(*site.migrate(None))
    site.check_migrated()
    return peak


def _default_jobs() -> int:
    from conda_migrate_plugin.jobs import default_jobs

    return default_jobs()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
