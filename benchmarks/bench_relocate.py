"""How relocate compares with ``cp -a`` on an environment of realistic shape.

Not a test: run by hand, ``python benchmarks/bench_relocate.py [--repeats N]``.
It writes a synthetic installed environment (100 packages, over 20,000 files,
``conda-meta`` records with ``paths_data``, text and binary files carrying the
prefix, files no package owns), then times, interleaved so that drifts in the
machine hit both alike, ``cp -a`` against relocate, and ``cp -a`` + ``rm -rf``
against relocate + verify + ``rm -rf``. Page caches cannot be dropped without
root, so one warm-up round runs first and every round reads from memory. Peak
memory is measured in a child process relocating an environment with a 1 GB
file in it.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conda_migrate_plugin.relocation.relocate import relocate
from conda_migrate_plugin.relocation.verify import verify_files

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic import PACKAGES, build_env

TARGETS = {"relocate / cp -a": 1.3, "relocate+verify+rm / cp+rm": 2.0}
MEMORY_TARGET_MB = 150


def _timed(argv_or_fn) -> float:
    start = time.perf_counter()
    if callable(argv_or_fn):
        argv_or_fn()
    else:
        subprocess.run(argv_or_fn, check=True)
    return time.perf_counter() - start


def _rounds(source: Path, work: Path, repeats: int) -> dict[str, list[float]]:
    final = work / "home-envs" / "env"
    staging = final.with_name("env.partial")
    copy = work / "cp-copy"
    times: dict[str, list[float]] = {
        "cp": [],
        "cp+rm": [],
        "relocate": [],
        "relocate+verify+rm": [],
    }

    def cp_round() -> None:
        t_cp = _timed(["cp", "-a", str(source), str(copy)])
        t_rm = _timed(["rm", "-rf", str(copy)])
        times["cp"].append(t_cp)
        times["cp+rm"].append(t_cp + t_rm)

    def relocate_round() -> None:
        t_rel = _timed(lambda: relocate(source, staging, final))
        check = []
        t_ver = _timed(lambda: check.append(verify_files(source, staging, final)))
        assert not check[0].problems, check[0].problems[:5]
        t_rm = _timed(["rm", "-rf", str(staging)])
        times["relocate"].append(t_rel)
        times["relocate+verify+rm"].append(t_rel + t_ver + t_rm)

    cp_round()
    relocate_round()
    for key in times:
        times[key].clear()
    for i in range(repeats):
        for run in (
            (cp_round, relocate_round) if i % 2 == 0 else (relocate_round, cp_round)
        ):
            run()
    return times


_MEMORY_PROBE = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[4])
    from conda_migrate_plugin.relocation.relocate import relocate
    from conda_migrate_plugin.relocation.verify import verify_files

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic import PACKAGES, build_env
    source, staging, final = map(Path, sys.argv[1:4])
    relocate(source, staging, final)
    assert not verify_files(source, staging, final).problems
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """
)


def peak_memory_mb(work: Path) -> float:
    source = work / "memory-env"
    build_env(source, packages=5, files=20)
    (source / "share").mkdir()
    with (source / "share" / "big.bin").open("wb") as fh:
        for _ in range(1024):
            fh.write(os.urandom(1 << 20))
    final = work / "memory-final"
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _MEMORY_PROBE,
            str(source),
            str(final.with_name("memory-staging")),
            str(final),
            str(Path(__file__).resolve().parents[1]),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout) / 1024


def _ratio(num: list[float], den: list[float]) -> list[float]:
    return sorted(n / d for n, d in zip(num, den))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to build (default: a temp dir)"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-relocate-", dir=args.dir))
    try:
        source = work / "scratch" / "conda-envs" / "env"
        t0 = time.perf_counter()
        files = build_env(source)
        size = sum(p.stat().st_size for p in source.rglob("*") if p.is_file())
        print(
            f"environment: {files} files, {size / 2**20:.0f} MiB, "
            f"{PACKAGES} packages (built in {time.perf_counter() - t0:.1f} s); "
            f"jobs={len(os.sched_getaffinity(0))}, repeats={args.repeats}"
        )
        times = _rounds(source, work, args.repeats)
        rows = {
            "relocate / cp -a": _ratio(times["relocate"], times["cp"]),
            "relocate+verify+rm / cp+rm": _ratio(
                times["relocate+verify+rm"], times["cp+rm"]
            ),
        }
        print(f"\n{'seconds':28} {'min':>6} {'median':>6} {'max':>6}")
        for key, values in times.items():
            print(
                f"{key:28} {min(values):6.2f} {statistics.median(values):6.2f} {max(values):6.2f}"
            )
        print(f"\n{'ratio':28} {'min':>6} {'median':>6} {'max':>6} {'target':>7}")
        ok = True
        for key, values in rows.items():
            median = statistics.median(values)
            ok &= median <= TARGETS[key]
            print(
                f"{key:28} {values[0]:6.2f} {median:6.2f} {values[-1]:6.2f} "
                f"{'<= ' + str(TARGETS[key]):>7}"
            )
        peak = peak_memory_mb(work)
        ok &= peak < MEMORY_TARGET_MB
        print(
            f"\npeak RSS relocating + verifying with a 1 GiB file: {peak:.0f} MB (target < {MEMORY_TARGET_MB} MB)"
        )
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"(this benchmark process peaked at {own:.0f} MB)")
        print("\nall targets met" if ok else "\nTARGETS MISSED")
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
