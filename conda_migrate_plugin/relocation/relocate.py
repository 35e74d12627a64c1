"""Step 2, the relocate engine: copy an environment as it is and rewrite its prefix.

conda's clone rebuilds an environment from the package cache or the network,
and on a cluster both are often gone by the time the environment must move;
copying the installed files needs neither, and is several times faster.

What is rewritten, and why:

* Files conda records as carrying a prefix (``prefix_placeholder``): text by
  substitution, binary in place with NUL padding, exactly as conda would have
  written them had it installed into the new prefix.
* Files no package owns (pip installs, scripts, ``.pth``, ``direct_url.json``),
  entry points conda generated, and owned files whose size no longer matches
  their record (edited): substituted when they are UTF-8 text, a ``#!`` line
  too long for the kernel becoming the ``/bin/sh`` trampoline conda and pip
  write; a binary one still naming the old prefix is copied as it is and
  reported, except ``.pyc`` files, whose ``co_filename`` CPython corrects
  when it loads them (conda's clone copies them as they are too).
* ``conda-meta/*.json``: only ``sha256_in_prefix`` of rewritten files, so that
  conda's own checks agree with the new bytes; ``extracted_package_dir`` and
  the like name the package cache, not the environment, and stay.
* ``conda-meta/history`` is a log of what was done, and keeps its past
  commands verbatim; one comment line recording the move is appended.
* ``conda-meta/pinned`` and ``conda-meta/state``, which clone drops, are
  copied (with the prefix substituted, so environment variables follow the
  move).

Symlinks keep their target unless it is absolute and inside the old prefix.
FIFOs, sockets and devices are skipped with a warning: conda never installs
them, and one left by a crashed server has no meaning in a copy.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import sys
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..exceptions import RelocateError
from ..jobs import BATCH, default_jobs
from ..names import MARKER
from .prefix import (
    CHUNK,
    PathRecord,
    PrefixRewrite,
    conda_bookkeeping,
    is_utf8_text,
    patched_chunks,
    read_chunks,
    read_path_records,
)

if TYPE_CHECKING:
    from collections.abc import Iterable
    from concurrent.futures import Future

    from ..progress import Progress

_PROGRESS_EVERY = 0.2


@dataclass
class RelocateResult:
    files: int
    bytes: int
    rewritten: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: Package files naming the old prefix in binary data their record does
    #: not describe: copied unchanged, as nothing says how to rewrite them.
    inexact: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _File:
    rel: str
    size: int
    mode: int
    atime_ns: int
    mtime_ns: int
    kind: str  # "plain", "text", "binary" or "scan"
    placeholder: str = ""
    #: Fewer blocks than bytes: it may have holes, to be kept as holes.
    sparse: bool = False


@dataclass
class _Outcome:
    files: int = 0
    bytes: int = 0
    rewritten: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    inexact: list[str] = field(default_factory=list)
    old_pyc: int = 0

    def merge(self, other: _Outcome) -> None:
        self.files += other.files
        self.bytes += other.bytes
        self.rewritten.update(other.rewritten)
        self.warnings.extend(other.warnings)
        self.inexact.extend(other.inexact)
        self.old_pyc += other.old_pyc


def relocate(
    source: Path,
    staging: Path,
    final_prefix: Path,
    *,
    jobs: int | None = None,
    quiet: bool = True,
    progress: Progress | None = None,
) -> RelocateResult:
    """Copy the environment at ``source`` into ``staging`` (created here,
    or made empty by the caller but for its marker), with the prefix
    rewritten to ``final_prefix``, where the caller will rename ``staging``
    once it is verified. On failure the partial ``staging`` is left for the
    caller to remove."""
    source = Path(os.path.abspath(source))
    staging = Path(os.path.abspath(staging))
    if os.path.lexists(staging) and (
        staging.is_symlink()
        or not staging.is_dir()
        or set(os.listdir(staging)) - {MARKER}
    ):
        raise RelocateError(f"the staging path {staging} already exists")
    if not (source / "conda-meta").is_dir():
        raise RelocateError(f"{source} is not a conda environment (no conda-meta)")
    copier = _Copier(
        source,
        staging,
        read_path_records(source),
        PrefixRewrite(str(source), str(os.path.abspath(final_prefix))),
    )
    staging.mkdir(parents=True, exist_ok=True)
    # Anything with the same show() and close() may report the progress instead.
    progress = progress or _Progress(enabled=not quiet and sys.stderr.isatty())
    try:
        outcome = copier.run(jobs or default_jobs(), progress)
    finally:
        progress.close()
    notes = []
    if outcome.old_pyc:
        notes.append(
            f"{outcome.old_pyc} .pyc files name the old prefix in co_filename "
            "(harmless: Python uses the path it loads them from)"
        )
    return RelocateResult(
        files=outcome.files,
        bytes=outcome.bytes,
        rewritten=sorted(outcome.rewritten),
        warnings=outcome.warnings,
        notes=notes,
        inexact=sorted(outcome.inexact),
    )


class _Copier:
    def __init__(
        self,
        source: Path,
        staging: Path,
        records: dict[str, PathRecord],
        rewrite: PrefixRewrite,
    ) -> None:
        self.source = source
        self.staging = staging
        self.records = records
        self.rewrite = rewrite
        self.src_root = str(source)
        self.dst_root = str(staging)

    def run(self, jobs: int, progress: Progress) -> _Outcome:
        outcome = _Outcome()
        directories: list[tuple[str, os.stat_result]] = []
        links: list[tuple[str, str]] = []
        pool = ThreadPoolExecutor(max_workers=jobs)
        try:
            pending: set[Future[_Outcome]] = set()
            for batch in self._walk(directories, links, outcome):
                pending.add(pool.submit(self._copy_batch, batch))
                pending = _collect(pending, outcome, timeout=0)
                progress.show(outcome.files, outcome.bytes)
            while pending:
                pending = _collect(pending, outcome, timeout=_PROGRESS_EVERY)
                progress.show(outcome.files, outcome.bytes)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        progress.show(outcome.files, outcome.bytes, force=True)
        for first, other in links:
            os.link(self._dst(first), self._dst(other))
            outcome.files += 1
        self._update_records(outcome.rewritten)
        self._append_history()
        for rel, st in reversed(directories):
            path = self._dst(rel)
            os.chmod(path, stat.S_IMODE(st.st_mode))
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        return outcome

    def _src(self, rel: str) -> str:
        return f"{self.src_root}/{rel}" if rel else self.src_root

    def _dst(self, rel: str) -> str:
        return f"{self.dst_root}/{rel}" if rel else self.dst_root

    def _walk(self, directories, links, outcome) -> Iterable[list[_File]]:
        """Make the directory tree and symlinks on the way, and hand out the
        regular files in batches; a file seen before under another name
        (a hardlink within the environment) becomes a link, made at the end."""
        inodes: dict[tuple[int, int], str] = {}
        batch: list[_File] = []
        stack = [""]
        directories.append(("", os.lstat(self.src_root)))
        while stack:
            rel_dir = stack.pop()
            try:
                entries = list(os.scandir(self._src(rel_dir)))
            except OSError as exc:
                raise RelocateError(f"cannot read {rel_dir or '.'}: {exc}") from exc
            for entry in entries:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                st = entry.stat(follow_symlinks=False)
                mode = st.st_mode
                if stat.S_ISDIR(mode):
                    os.mkdir(self._dst(rel), 0o700)
                    directories.append((rel, st))
                    stack.append(rel)
                elif stat.S_ISLNK(mode):
                    self._copy_symlink(rel, st)
                elif stat.S_ISREG(mode):
                    if st.st_nlink > 1:
                        key = (st.st_dev, st.st_ino)
                        if key in inodes:
                            links.append((inodes[key], rel))
                            continue
                        inodes[key] = rel
                    batch.append(self._classify(rel, st))
                    if len(batch) >= BATCH:
                        yield batch
                        batch = []
                else:
                    outcome.warnings.append(
                        f"{rel}: skipped, not a regular file, directory or symlink"
                    )
        if batch:
            yield batch

    def _classify(self, rel: str, st: os.stat_result) -> _File:
        record = self.records.get(rel)
        placeholder = ""
        if conda_bookkeeping(rel):
            kind = "plain"
        elif record is None:
            kind = "scan"
        elif record.prefixed is not None:
            kind, placeholder = record.prefixed
        elif record.path_type == "pyc_file":
            kind = "plain"
        elif (
            record.entry_point
            or record.sha256 is None
            or (record.size is not None and record.size != st.st_size)
        ):
            # Generated at link time (entry points) or edited since: the
            # package says nothing about what it holds now.
            kind = "scan"
        else:
            kind = "plain"
        return _File(
            rel,
            st.st_size,
            st.st_mode,
            st.st_atime_ns,
            st.st_mtime_ns,
            kind,
            placeholder,
            st.st_blocks * 512 < st.st_size,
        )

    def _copy_symlink(self, rel: str, st: os.stat_result) -> None:
        target = self.rewrite.retarget(os.readlink(self._src(rel)))
        dst = self._dst(rel)
        os.symlink(target, dst)
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    def _copy_batch(self, batch: list[_File]) -> _Outcome:
        outcome = _Outcome()
        for item in batch:
            try:
                self._copy_file(item, outcome)
            except RelocateError:
                raise
            except OSError as exc:
                raise RelocateError(
                    f"cannot copy {item.rel}: {exc.strerror or exc}"
                ) from exc
            outcome.files += 1
            outcome.bytes += item.size
        return outcome

    def _copy_file(self, item: _File, outcome: _Outcome) -> None:
        src = os.open(self._src(item.rel), os.O_RDONLY | os.O_NOFOLLOW)
        try:
            dst = os.open(
                self._dst(item.rel), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600
            )
            try:
                digest = self._write(item, src, dst, outcome)
                if digest is not None:
                    outcome.rewritten[item.rel] = digest
                os.fchmod(dst, stat.S_IMODE(item.mode))
                os.utime(dst, ns=(item.atime_ns, item.mtime_ns))
            finally:
                os.close(dst)
        finally:
            os.close(src)

    def _write(self, item: _File, src: int, dst: int, outcome: _Outcome) -> str | None:
        """Fill ``dst``; return the sha256 of what was written when the
        content differs from the source."""
        if item.kind == "plain":
            _kernel_copy(src, dst, item.size, sparse=item.sparse)
            return None
        if item.kind == "text":
            return _write_changed(dst, self.rewrite.text_chunks(read_chunks(src)), src)
        if item.kind == "binary":
            patches = self.rewrite.binary_patches(src, item.placeholder, item.rel)
            if not patches:
                _kernel_copy(src, dst, item.size, sparse=item.sparse)
                return None
            return _write_changed(dst, patched_chunks(src, patches), src, force=True)
        return self._write_scanned(item, src, dst, outcome)

    def _write_scanned(self, item: _File, src: int, dst: int, outcome: _Outcome):
        """A file nothing describes: look for the prefix before deciding."""
        if item.size <= CHUNK:
            data = os.pread(src, CHUNK + 1, 0)
            if not self.rewrite.names_old(data):
                _write_all(dst, data)
                return None
        elif not self.rewrite.stream_names_old(read_chunks(src)):
            _kernel_copy(src, dst, item.size, sparse=item.sparse)
            return None
        if not is_utf8_text(src):
            if item.rel.endswith(".pyc"):
                outcome.old_pyc += 1
            elif item.rel in self.records:
                outcome.inexact.append(item.rel)
                outcome.warnings.append(
                    f"{item.rel}: binary file of a package naming the old prefix "
                    f"{self.rewrite.old}, copied unchanged; its record does not "
                    "say where (only conda's clone can redo it)"
                )
            else:
                outcome.warnings.append(
                    f"{item.rel}: binary file naming the old prefix "
                    f"{self.rewrite.old}, copied unchanged; no package describes "
                    "it, so rebuild it in the new environment (or, for a "
                    "RUNPATH, patchelf --set-rpath) if it uses that path"
                )
            _kernel_copy(src, dst, item.size, sparse=item.sparse)
            return None
        return _write_changed(
            dst, self.rewrite.text_chunks(read_chunks(src), launcher=True), src
        )

    def _update_records(self, rewritten: dict[str, str]) -> None:
        """Give rewritten files their new ``sha256_in_prefix``, so that conda
        verifying the new environment sees the bytes it holds."""
        by_record: dict[str, dict[str, str]] = {}
        for rel, digest in rewritten.items():
            record = self.records.get(rel)
            if record is not None:
                by_record.setdefault(record.record_file, {})[
                    record.record_path or rel
                ] = digest
        for name, digests in by_record.items():
            path = self.staging / "conda-meta" / name
            st = path.stat()
            record = json.loads(path.read_text(encoding="utf-8"))
            for entry in record.get("paths_data", {}).get("paths", []):
                if entry["_path"] in digests:
                    entry["sha256_in_prefix"] = digests[entry["_path"]]
            path.write_text(json.dumps(record, indent=2), encoding="utf-8")
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    def _append_history(self) -> None:
        history = self.staging / "conda-meta" / "history"
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        line = (
            f"# conda-migrate: relocated from {self.rewrite.old} "
            f"to {self.rewrite.new} at {stamp}\n"
        )
        existing = history.read_bytes() if history.exists() else b""
        with history.open("ab") as fh:
            if existing and not existing.endswith(b"\n"):
                fh.write(b"\n")
            fh.write(line.encode())


def _collect(
    pending: set[Future[_Outcome]], outcome: _Outcome, *, timeout: float
) -> set[Future[_Outcome]]:
    """Merge the finished batches; the first failure ends the copy."""
    done, pending = wait(pending, timeout=timeout, return_when=FIRST_EXCEPTION)
    for future in done:
        outcome.merge(future.result())
    return pending


_kernel_copy_works = True


def _kernel_copy(src: int, dst: int, size: int, *, sparse: bool = False) -> None:
    """Copy without passing the bytes through Python: copy_file_range lets
    the filesystem share extents (XFS, btrfs reflinks) or copy server-side
    (NFS 4.2); sendfile is the fallback across filesystems."""
    global _kernel_copy_works
    if sparse and _copy_data_only(src, dst, size):
        return
    remaining = size
    while remaining > 0 and _kernel_copy_works:
        try:
            n = os.copy_file_range(src, dst, min(remaining, 1 << 30))
        except OSError as exc:
            if exc.errno not in (
                errno.EXDEV,
                errno.ENOSYS,
                errno.EINVAL,
                errno.EOPNOTSUPP,
            ):
                raise
            _kernel_copy_works = False
            break
        if n == 0:
            break
        remaining -= n
    while remaining > 0:
        n = os.sendfile(dst, src, None, min(remaining, 1 << 30))
        if n == 0:
            break
        remaining -= n
    # A file that grew while being copied is copied whole.
    for chunk in read_chunks(src, os.lseek(src, 0, os.SEEK_CUR)):
        _write_all(dst, chunk)


def _copy_data_only(src: int, dst: int, size: int) -> bool:
    """Copy a file with holes as one with the same holes (a copy filled with
    zeros could need far more room than the preflight counted); False where
    the filesystem cannot say where the data is."""
    offset = 0
    try:
        while offset < size:
            try:
                start = os.lseek(src, offset, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: only a hole is left
                    raise
                break
            end = os.lseek(src, start, os.SEEK_HOLE)
            for chunk in read_chunks(src, start):
                chunk = chunk[: end - start]
                os.pwrite(dst, chunk, start)
                start += len(chunk)
                if start >= end:
                    break
            offset = end
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP) and offset == 0:
            return False
        raise
    os.ftruncate(dst, size)
    return True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _write_changed(
    dst: int, chunks: Iterable[bytes], src: int, *, force: bool = False
) -> str | None:
    """Write ``chunks``; the sha256 of them when they differ from the source."""
    digest = hashlib.sha256()
    same = not force
    offset = 0
    for chunk in chunks:
        digest.update(chunk)
        _write_all(dst, chunk)
        if same and os.pread(src, len(chunk), offset) != chunk:
            same = False
        offset += len(chunk)
    if same and os.pread(src, 1, offset):
        same = False
    return None if same else digest.hexdigest()


class _Progress:
    """One status line on stderr, rewritten in place, a few times a second."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self.last = 0.0
        self.shown = False

    def show(self, files: int, nbytes: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self.last < _PROGRESS_EVERY):
            return
        self.last = now
        self.shown = True
        sys.stderr.write(f"\rrelocating: {files} files, {nbytes / 2**20:.1f} MiB")
        sys.stderr.flush()

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()
