"""The whole ``conda-migrate``, relocate and conda's clone, against ``cp -a`` + ``rm -rf``.

Not a test: run by hand, as root (it mounts), from a checkout, with a Python
that has the project's requirements (and conda, for conda's share of the
work and the clone rows): ``python benchmarks/bench_migrate.py``. Each
migration runs ``python -m conda_migrate_plugin`` in a subprocess, with this
checkout first on ``PYTHONPATH``. Everything it needs is in the project:
the latency filesystem is ``tests/support/slowfs.c``, built and mounted with
``tests/support/slowfs.py`` (cc, pkg-config and libfuse3-dev; Debian's ``fuse3
libfuse3-dev pkg-config``), and the array rows start the tests' single-node
Slurm (``tests/support/slurm.py``; Debian's ``slurmctld slurmd slurm-client munge``).
What is missing is skipped with the reason.

The environment is a real install. The package trees of ``synthetic.py`` (an
entry point naming conda-build's 255-character placeholder in text, a shared
library naming it in a C string, data files of realistic sizes) are packed
into ``.conda`` files with ``info/paths.json`` as conda-build writes it,
indexed into a local ``file://`` channel and installed with py-rattler, so the
records carry the channel, URL, checksums and ``paths_data`` of a real
install; then the files no package owns (pip's, a ``bin/python`` symlink) are
added. On a tmpfs (CPU-bound): 100 packages, ~21k files; on slowfs (every
metadata operation delayed by ``--latency`` microseconds, an NFS-like 1 s
attribute cache, 10 server threads; scratch and home both on it): the first
24 packages, ~5.5k files, the same sizes. Then, at the first latency, the
default ``--jobs`` again with slowfs serving on ``--scale-threads`` threads;
and 8 such environments migrated by one Slurm job against a job array
(``--tasks 8%4``), each wall time from the submission to the end of the last
job.

Each round starts every run from a fresh copy of the environment and times,
interleaved (the order of the migrations reverses every round), ``cp -a``
scratch to home then ``rm -rf`` of scratch, the migration with
``--method relocate`` at each ``--jobs``, and with ``--method clone`` (only
where ``import conda`` works here; otherwise the reason is printed); on the
tmpfs also ``floor.py``, the calls a relocation cannot do without in a bare
loop, with the tool's start-up and conda's reading of the records, in one
process and (on more than one CPU) with the files dealt out to a process per
CPU. It prints min, median and max seconds, the median ratio to ``cp -a`` +
``rm -rf`` of the same round, the metadata system calls per file
(``strace -c -f``, on the tmpfs: they do not depend on latency) and the peak
resident memory of the process tree; then the peak memory of a relocation,
at the default jobs, of an environment holding a 1 GiB file. A run that
fails is reported with its message, not hidden.

conda's clone fetches every package again, so where its files come from is
part of what is timed. The channel lives on the benchmark's tmpfs, never on
slowfs (a channel is a server, not the user's home); the package cache is
``CONDA_PKGS_DIRS=$HOME/pkgs`` on the site's home, created empty for every
run, so each clone copies the ``.conda`` files in, extracts them and links
them into the new environment at the home filesystem's latency, as a cluster
user whose cache was purged or lives in ``$HOME`` would see.

Every row has 3 rounds or more (``--rounds N`` sets all of them): 5 on the
tmpfs, 3 on slowfs; at 200 us and 500 us by default (``--latency 2000``
adds the slowest, ~15 min a round). On this project's 2-core machine that is
about 45 minutes. ``--quick`` keeps 3 rounds but only 500 us, and on slowfs
only the default and 16 ``--jobs``: about 12 minutes.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

import slowfs
from synthetic import PACKAGES, build_channel, install_env

if TYPE_CHECKING:
    from collections.abc import Callable

ROOT = Path(__file__).resolve().parents[1]
SLOW_PACKAGES = 24
BASELINE = "cp -a + rm -rf"
CLONE = "clone"
FLOOR = "floor: the calls alone"
CORES = len(os.sched_getaffinity(0))
FLOOR_CORES = f"floor: the calls alone, {CORES} processes"
START = time.monotonic()
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


class RunFailed(Exception):
    """A timed command failed: its rows say so and the message is printed."""


def _run(argv: list[str], env: dict | None = None) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of a process tree."""
    with tempfile.TemporaryFile() as output:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=output, stderr=output)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        if code:
            output.seek(0)
            raise RunFailed(f"exit {code}: {output.read().decode()[-3000:]}")
    return elapsed, usage.ru_maxrss / 1024


def _strace(argv: list[str], env: dict | None = None) -> int:
    """Metadata system calls of a process tree. Only those are traced, and
    the kernel's seccomp filter lets the others (futex, read, mmap: most of
    a threaded run's) through without a stop: several times faster."""
    trace = ",".join(f"?{name}" for name in sorted(METADATA))
    with tempfile.NamedTemporaryFile("r") as out, tempfile.TemporaryFile() as output:
        code = subprocess.call(
            ["strace", "-c", "-f", "--seccomp-bpf", "-e", f"trace={trace}"]
            + ["-o", out.name, *argv],
            env=env,
            stdout=output,
            stderr=output,
        )
        if code:
            output.seek(0)
            raise RunFailed(f"exit {code}: {output.read().decode()[-3000:]}")
        total = 0
        for line in out.read().splitlines():
            fields = line.split()
            if fields and fields[-1] in METADATA and re.fullmatch(r"\d+", fields[3]):
                total += int(fields[3])
        return total


@dataclass
class Row:
    """The runs of one configuration on one filesystem."""

    seconds: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    failed: str | None = None


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

    def migrate(self, run: str) -> tuple[list[str], dict]:
        """The console script for a row name: ``clone``, or ``relocate, N
        jobs`` / ``relocate, default jobs``; or ``floor.py`` for ``FLOOR`` and,
        with a process per core, for ``FLOOR_CORES``."""
        home = self.view / "home"
        env = dict(
            os.environ,
            HOME=str(home),
            CONDA_PKGS_DIRS=str(home / "pkgs"),
            PYTHONPATH=str(ROOT),
        )
        env.pop("SLURM_CPUS_PER_TASK", None)
        if run in (FLOOR, FLOOR_CORES):
            source = self.view / "scratch/envs/env"
            dest = home / ".conda/envs/env"
            processes = CORES if run == FLOOR_CORES else 1
            return [
                sys.executable,
                str(ROOT / "benchmarks/floor.py"),
                str(source),
                str(dest),
                str(processes),
            ], env
        argv = [sys.executable, "-m", "conda_migrate_plugin"]
        argv += ["-d", str(self.view / "scratch/envs"), "--all", "--yes"]
        argv += ["--no-clean", "--no-rc"]
        if run == CLONE:
            argv += ["--method", "clone"]
        else:
            argv += ["--method", "relocate"]
            jobs = run.split()[1]
            if jobs != "default":
                argv += ["--jobs", jobs]
        return argv, env

    def check_migrated(self) -> None:
        if (self.backing / "scratch/envs/env").exists() or not (
            self.backing / "home/.conda/envs/env/conda-meta/history"
        ).is_file():
            raise RunFailed("exit 0, but the environment was not moved")


def make_site(
    backing: Path, view: Path, channel: Path, packages: int, cache: Path
) -> Site:
    """Install the environment at its path in ``view`` (before anything is
    mounted there), then keep it in ``backing`` as the template."""
    prefix = view / "scratch/envs/env"
    _in_child(install_env, prefix, channel, packages, cache)
    files = sum(
        len(names) + sum(os.path.islink(os.path.join(d, n)) for n in dirs)
        for d, dirs, names in os.walk(prefix)
    )
    backing.mkdir(parents=True, exist_ok=True)
    os.rename(view / "scratch", backing / "template")
    return Site(view, backing, files)


def measure(site: Site, runs: list[str], rounds: int, label: str) -> dict[str, Row]:
    rows = {name: Row() for name in [BASELINE, *runs]}
    for r in range(rounds):
        site.fresh()
        base = 0.0
        rss = 0.0
        for argv in site.cp_rm():
            seconds, peak = _run(argv)
            base += seconds
            rss = max(rss, peak)
        rows[BASELINE].seconds.append(base)
        rows[BASELINE].ratios.append(1.0)
        rows[BASELINE].rss.append(rss)
        done = [f"{BASELINE} {base:.2f}"]
        for name in runs if r % 2 == 0 else list(reversed(runs)):
            row = rows[name]
            if row.failed:
                continue
            site.fresh()
            try:
                seconds, peak = _run(*site.migrate(name))
                site.check_migrated()
            except RunFailed as err:
                row.failed = str(err)
                done.append(f"{name} FAILED")
                continue
            row.seconds.append(seconds)
            row.ratios.append(seconds / base)
            row.rss.append(peak)
            done.append(f"{name} {seconds:.2f}")
        _progress(f"{label} round {r + 1}/{rounds}: {'; '.join(done)}")
    return rows


def syscalls(site: Site, runs: list[str]) -> dict[str, float | str]:
    """Per file, or the failure's message."""
    counts: dict[str, float | str] = {}
    site.fresh()
    counts[BASELINE] = sum(_strace(argv) for argv in site.cp_rm()) / site.files
    for name in runs:
        site.fresh()
        try:
            counts[name] = _strace(*site.migrate(name)) / site.files
            site.check_migrated()
        except RunFailed as err:
            counts[name] = str(err)
    return counts


def peak_memory(site: Site) -> float:
    site.fresh()
    big = site.backing / "scratch/envs/env/share/big.bin"
    big.parent.mkdir(exist_ok=True)
    with big.open("wb") as fh:
        for _ in range(1024):
            fh.write(os.urandom(1 << 20))
    _, peak = _run(*site.migrate("relocate, default jobs"))
    site.check_migrated()
    return peak


def _progress(message: str) -> None:
    minutes, seconds = divmod(int(time.monotonic() - START), 60)
    print(f"[{minutes:02d}:{seconds:02d}] {message}", file=sys.stderr, flush=True)


def _in_child(function: Callable[..., None], *args: object) -> None:
    """Setup work runs in a spawned process: a child forked from this one
    starts with this one's resident memory, which would show in every peak
    MB of the table."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        pool.submit(function, *args).result()


def _mount_tmpfs(path: Path) -> None:
    path.mkdir(parents=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8g", "bench", str(path)], check=True
    )


def _conda_missing() -> str | None:
    """Why ``--method clone`` cannot run here, or None. Asked of a child, to
    keep conda out of this process's memory (see ``_in_child``)."""
    proc = subprocess.run(
        [sys.executable, "-c", "import conda"], capture_output=True, text=True
    )
    if proc.returncode:
        reason = proc.stderr.strip().splitlines()[-1]
        return f"skipped clone: conda is not importable by {sys.executable} ({reason})"
    return None


def _default_jobs() -> int:
    from conda_migrate_plugin.jobs import default_jobs

    return default_jobs()


def _rounds(args: argparse.Namespace, us: int | None) -> int:
    if args.rounds is not None:
        return args.rounds
    return 5 if us is None else 3


def _slow_site(work: Path, name: str, channel: Path, envs: int = 1) -> Site:
    """A tmpfs of its own holding the backing tree; ``envs`` environments of
    ``SLOW_PACKAGES`` packages (env, or env0, env1, ... for an array)."""
    base = work / name
    _mount_tmpfs(base)
    names = ["env"] if envs == 1 else [f"env{i}" for i in range(envs)]
    for env in names:
        prefix = base / "view/scratch/envs" / env
        _in_child(install_env, prefix, channel, SLOW_PACKAGES, base / "rattler-cache")
    files = sum(
        len(names) + sum(os.path.islink(os.path.join(d, n)) for n in dirs)
        for d, dirs, names in os.walk(base / "view/scratch/envs")
    )
    (base / "backing").mkdir()
    os.rename(base / "view/scratch", base / "backing/template")
    return Site(base / "view", base / "backing", files)


def measure_array(site: Site, rounds: int, root: Path) -> dict[str, Row]:
    """8 environments by one job (``--submit -c 2``) and by a job array
    (``--tasks 8%4 --submit -c 1``), interleaved: seconds from the
    submission until no job of the user is left."""
    import slurm

    rows = {"one job, 8 environments": Row(), "array --tasks 8%4": Row()}
    cluster = slurm.start(root)
    try:
        for r in range(rounds):
            done = []
            names = list(rows) if r % 2 == 0 else list(reversed(rows))
            for name in names:
                site.fresh()
                argv, env = site.migrate("relocate, default jobs")
                argv = [a for a in argv if a != "--yes"]
                if name.startswith("array"):
                    argv += ["--tasks", "8%4", "--submit", "-c", "1", "-t", "60"]
                else:
                    argv += ["--submit", "-c", "2", "-t", "60"]
                env.update(cluster.env)
                start = time.perf_counter()
                try:
                    _run(argv, env)
                    while cluster.run("squeue", "-h"):
                        time.sleep(0.05)
                    seconds = time.perf_counter() - start
                    left = list((site.backing / "scratch/envs").iterdir())
                    if left:
                        raise RunFailed(f"not migrated: {[p.name for p in left]}")
                except RunFailed as err:
                    rows[name].failed = str(err)
                    cluster.cancel_all()
                    continue
                rows[name].seconds.append(seconds)
                done.append(f"{name} {seconds:.2f}")
            base = rows["one job, 8 environments"].seconds
            for name, row in rows.items():
                if row.seconds and base and len(row.ratios) < len(row.seconds):
                    row.ratios.append(row.seconds[-1] / base[-1])
            _progress(f"array round {r + 1}/{rounds}: {'; '.join(done)}")
    finally:
        slurm.stop(cluster)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--latency", type=int, nargs="*", help="microseconds (default: 200 500)"
    )
    parser.add_argument("--rounds", type=int, help="for every row (at least 3)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="500 us only (unless --latency), and on slowfs only the default "
        "and 16 jobs",
    )
    parser.add_argument(
        "--jobs", nargs="*", default=["1", "2", "default", "16"], help="N or default"
    )
    parser.add_argument(
        "--scale-threads",
        type=int,
        default=64,
        help="slowfs server threads of the scaling rows (0: none)",
    )
    parser.add_argument(
        "--no-array", action="store_true", help="skip the Slurm job array rows"
    )
    args = parser.parse_args()
    if args.latency is None:
        args.latency = [500] if args.quick else [200, 500]
    if os.geteuid() != 0:
        print("skipped: needs root to mount tmpfs and slowfs", file=sys.stderr)
        return 0
    runs = [f"relocate, {jobs} jobs" for jobs in args.jobs]
    notes = []
    missing = _conda_missing()
    if missing:
        notes.append(missing)
    else:
        runs.append(CLONE)
    slow_runs = (
        [run for run in runs if run != CLONE and run.split()[1] in ("default", "16")]
        if args.quick
        else runs
    )
    if not shutil.which("strace"):
        notes.append("no strace: system calls are not counted")
    work = Path(tempfile.mkdtemp(prefix="bench-migrate-"))
    mounts: list[Path] = []
    table: list[tuple[str, str, Row]] = []
    per_file: dict[str, float | str] = {}
    try:
        tmp = work / "tmpfs"
        _mount_tmpfs(tmp)
        mounts.append(tmp)
        channel = tmp / "channel"
        _in_child(build_channel, channel, tmp / "stage")
        _progress(f"channel: {PACKAGES} packages")
        site = make_site(tmp, tmp, channel, PACKAGES, tmp / "rattler-cache")
        _progress(f"tmpfs: {site.files} files")
        floors = [FLOOR, FLOOR_CORES] if CORES > 1 else [FLOOR]
        rows = measure(site, [*runs, *floors], _rounds(args, None), "tmpfs")
        table += [("tmpfs", name, row) for name, row in rows.items()]
        if shutil.which("strace"):
            per_file = syscalls(site, [*runs, *floors])
            _progress("tmpfs: system calls counted")
        memory = peak_memory(site)
        _progress("tmpfs: 1 GiB file migrated")
        try:
            binary = slowfs.build(tmp)
        except slowfs.Unavailable as err:
            binary = None
            notes.append(f"skipped slowfs: {err}")
        settings = [(us, 10, slow_runs) for us in args.latency]
        if args.scale_threads and args.latency:
            scaled = [r for r in slow_runs if r == "relocate, default jobs"]
            settings.append((args.latency[0], args.scale_threads, scaled))
        for us, threads, chosen in settings if binary else []:
            label = f"slowfs {us} us" + (
                f", {threads} threads" if threads != 10 else ""
            )
            site = _slow_site(work, f"slow{us}-{threads}", channel)
            mounts.insert(0, work / f"slow{us}-{threads}")
            with slowfs.SlowFS(binary, site.backing, site.view, us=us, threads=threads):
                _progress(f"{label}: {site.files} files")
                rows = measure(site, chosen, _rounds(args, us), label)
            table += [(label, name, row) for name, row in rows.items()]
        reason = None if binary else "no slowfs"
        if reason is None and not args.no_array:
            import slurm

            reason = slurm.missing()
        if args.no_array:
            reason = "--no-array"
        if reason is None and binary is not None:
            us = args.latency[0] if args.latency else 500
            label = f"slowfs {us} us, 8 environments"
            mounts.insert(0, work / "array")
            # The other rows are not lost to a failure here: it is a note.
            try:
                site = _slow_site(work, "array", channel, envs=8)
                with slowfs.SlowFS(binary, site.backing, site.view, us=us, threads=10):
                    _progress(f"{label}: {site.files} files")
                    rows = measure_array(site, _rounds(args, us), work / "slurm")
                table += [(label, name, row) for name, row in rows.items()]
            except Exception as err:
                notes.append(f"the job array rows failed: {err!r}")
        else:
            notes.append(f"skipped the job array rows: {reason}")
        _print_table(table, per_file, memory, notes)
        failed = any(row.failed for _, _, row in table) or any(
            isinstance(count, str) for count in per_file.values()
        )
        return 1 if failed else 0
    finally:
        for mount in mounts:
            subprocess.run(["umount", "-l", str(mount)], check=False)
        shutil.rmtree(work, ignore_errors=True)


def _print_table(
    table: list[tuple[str, str, Row]],
    per_file: dict[str, float | str],
    memory: float,
    notes: list[str],
) -> None:
    print(
        f"\n{len(os.sched_getaffinity(0))} CPUs; default jobs: 1 on the tmpfs, "
        f"{_default_jobs()} on slowfs; "
        "seconds per run; ratio: median of (run / cp -a + rm -rf of the same round)\n"
    )
    print(
        "| filesystem | run | rounds | min s | median s | max s | ratio "
        "| syscalls/file | peak MB |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    failures = []
    for fs, name, row in table:
        calls = per_file.get(name)
        calls_text = f"{calls:.1f}" if isinstance(calls, float) else "-"
        if row.seconds:
            times = (
                f"{min(row.seconds):.2f} | {statistics.median(row.seconds):.2f} | "
                f"{max(row.seconds):.2f} | {statistics.median(row.ratios):.2f}"
            )
            peak = f"{max(row.rss):.0f}" if any(row.rss) else "-"
        else:
            times, peak = "failed | - | - | -", "-"
        print(
            f"| {fs} | {name} | {len(row.seconds)} | {times} | {calls_text} | {peak} |"
        )
        if row.failed:
            failures.append(f"{fs}, {name}: {row.failed}")
    failures += [
        f"strace, {name}: {calls}"
        for name, calls in per_file.items()
        if isinstance(calls, str)
    ]
    print(
        "\npeak memory relocating (default jobs) an environment with a 1 GiB file: "
        f"{memory:.0f} MB"
    )
    for note in notes:
        print(note)
    for failure in failures:
        print(f"\nFAILED {failure}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
