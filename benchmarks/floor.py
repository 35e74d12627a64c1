"""The least a migration can cost: ``bench_migrate.py``'s floor rows.

``python benchmarks/floor.py SOURCE DEST [PROCESSES]`` does what a relocation cannot do
without, and nothing else: the tool's start-up (its command line's imports,
conda's among them), conda's reading of the source's records (before any
walk: conda may delete a stale record as it reads), and then, in one thread,
with none of the run's bookkeeping, the calls per entry of its four passes
over the tree: the walk its checks start from (``lstat`` each entry), the
copy (open, read, sha256 and a search for the old prefix and for a NUL byte
in every chunk, write, list the extended attributes, set the times, ``fstat``
the copy), the walk that finds the source unchanged before the commit, and
the removal's walk and its unlinks. Each pass must find what the first did.

A relocation that took as long as this would have no overhead at all: the
row shows how much of the gap to ``cp -a`` + ``rm -rf`` is the design's
(Python per call, the checks it makes) rather than the implementation's.
With ``PROCESSES`` above 1, the files of the copy and of the removal are
dealt out to that many forked processes (threads would share one
interpreter lock): what a copier using every core could reach at best.
"""

from __future__ import annotations

import gc
import hashlib
import os
import stat
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

Stamps = dict[str, tuple[int, ...]]


def walk(root: str) -> Stamps:
    found: Stamps = {}
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        with os.scandir(f"{root}/{rel_dir}" if rel_dir else root) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                found[rel] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ino)
                if stat.S_ISDIR(st.st_mode):
                    pending.append(rel)
    return found


def copy_file(src: str, dst: str, mode: int, old: bytes, buffer: bytearray) -> None:
    fd_in = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
    fd_out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode & 0o777)
    digest = hashlib.sha256()
    view = memoryview(buffer)
    while read := os.readv(fd_in, [buffer]):
        chunk = view[:read]
        digest.update(chunk)
        data = bytes(chunk)
        data.find(old)
        data.find(b"\0")
        os.write(fd_out, chunk)
    os.listxattr(fd_in)
    st = os.fstat(fd_in)
    os.utime(fd_out, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.fstat(fd_out)
    os.close(fd_out)
    os.close(fd_in)


def spread(processes: int, work: Callable[[int], object]) -> None:
    """``work(k)`` for each k below ``processes``, the first in this process."""
    children = []
    for k in range(1, processes):
        pid = os.fork()
        if pid == 0:
            work(k)
            os._exit(0)
        children.append(pid)
    work(0)
    for pid in children:
        if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]):
            raise SystemExit("a process of the floor failed")


def copy(src: str, dst: str, stamps: Stamps, processes: int) -> None:
    os.mkdir(dst)
    files = []
    for rel in sorted(stamps):
        if stat.S_ISDIR(stamps[rel][0]):
            os.mkdir(f"{dst}/{rel}")
        else:
            files.append(rel)

    def copy_share(k: int) -> None:
        buffer = bytearray(256 * 1024)
        for rel in files[k::processes]:
            mode = stamps[rel][0]
            if stat.S_ISLNK(mode):
                os.symlink(os.readlink(f"{src}/{rel}"), f"{dst}/{rel}")
            else:
                copy_file(f"{src}/{rel}", f"{dst}/{rel}", mode, src.encode(), buffer)

    spread(processes, copy_share)


def remove(root: str, stamps: Stamps, processes: int) -> None:
    files = [rel for rel in stamps if not stat.S_ISDIR(stamps[rel][0])]

    def unlink_share(k: int) -> None:
        for rel in files[k::processes]:
            os.unlink(f"{root}/{rel}")

    spread(processes, unlink_share)
    for rel in sorted(stamps, reverse=True):
        if stat.S_ISDIR(stamps[rel][0]):
            os.rmdir(f"{root}/{rel}")
    os.rmdir(root)


def read_records(prefix: str) -> int:
    """conda's reading of the records, as the run's export and comparison
    start from it; where conda is missing, the records' JSON alone."""
    try:
        from conda.core.prefix_data import PrefixData
    except ImportError:
        import json

        meta = f"{prefix}/conda-meta"
        for name in os.listdir(meta):
            if name.endswith(".json"):
                with open(f"{meta}/{name}", "rb") as record:
                    json.load(record)
        return 0
    return len(PrefixData(prefix, interoperability=True).reload().get_conda_packages())


def main() -> int:
    source, dest = sys.argv[1:3]
    processes = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    import conda_migrate_plugin.cli  # noqa: F401  (the tool's start-up)

    gc.disable()  # as the run holds the collector off while an environment moves
    start = time.perf_counter()
    read_records(source)
    before = walk(source)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    copy(source, dest, before, processes)
    if walk(source) != before or walk(source) != before:
        print("the source changed while the floor ran", file=sys.stderr)
        return 1
    remove(source, before, processes)
    print(f"{len(before)} entries, {time.perf_counter() - start:.2f} s after start-up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
