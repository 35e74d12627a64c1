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

The copy is checked as it is written, in the same pass (on a network
filesystem a second walk and a second read of both trees cost more than the
copy): a package file's bytes against the sha256 of its record (a mismatch
is the user's edit, copied as it is, and noted), a rewritten file as the
source's bytes with the prefix rewritten, every text file for the old prefix
left in it, and every path the records list against what the source holds.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..damage import missing_files
from ..exceptions import RelocateError
from ..jobs import BATCH, gather, pool
from ..names import MARKER
from ..progress import EVERY, CopyProgress
from ..records import read_path_records, update_records
from ..snapshot import measure
from . import xattrs
from .chunks import (
    is_utf8_text,
    kernel_copy,
    names_old,
    patched_chunks,
    read_chunks,
    scan,
    sha256,
)
from .findings import Findings
from .prefix import (
    PrefixRewrite,
    conda_bookkeeping,
    link_out,
    old_spellings,
)
from .repair import restore_missing
from .share import SharedFile, SharedFiles, Written
from .verify import kind_of, record_disagrees

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from ..progress import Progress
    from ..records import PathRecord

Listing = dict[str, list[tuple[str, os.stat_result]]]


@dataclass(frozen=True)
class _Entry:
    rel: str
    name: str
    st: os.stat_result
    kind: str  # "symlink", "plain", "text", "binary" or "scan"
    placeholder: str = ""
    #: The sha256 the package record gives for the file's bytes, when the
    #: file should hold them as they are.
    expected: str | None = None
    #: The committed copy of the same source inode to link to instead.
    share: SharedFile | None = None

    @property
    def sparse(self) -> bool:
        """Fewer blocks than bytes: it may have holes, to be kept as holes."""
        return self.st.st_blocks * 512 < self.st.st_size


def relocate(
    source: Path,
    staging: Path,
    final_prefix: Path,
    *,
    listing: Listing | None = None,
    jobs: int | None = None,
    progress: Progress | None = None,
    shared: SharedFiles | None = None,
) -> Findings:
    """Copy the environment at ``source`` into ``staging`` (created here,
    or made empty by the caller but for its marker), with the prefix
    rewritten to ``final_prefix``, where the caller will rename ``staging``
    once nothing is found wrong. ``listing`` is the preflight's walk of the
    source (``snapshot.measure``); without it the source is walked here.
    On failure the partial ``staging`` is left for the caller to remove.
    With ``shared``, files whose source inode an earlier environment of the
    run copied become links to that copy, and the files this copy may give
    to later ones are listed in the result's ``written`` (see ``share``).
    ``progress`` is told how far the copy is (nothing is shown without)."""
    source = Path(os.path.abspath(source))
    staging = Path(os.path.abspath(staging))
    _check_places(source, staging)
    if listing is None:
        listing = measure(source, jobs).listing
    scripts = [rel for rel, st in listing.get("bin", ()) if stat.S_ISREG(st.st_mode)]
    copier = _Copier(
        source,
        staging,
        read_path_records(source),
        PrefixRewrite(
            str(source),
            str(os.path.abspath(final_prefix)),
            old_spellings(source, scripts),
        ),
        shared,
    )
    staging.mkdir(parents=True, exist_ok=True)
    progress = progress or CopyProgress(0, 0, None)
    try:
        outcome = copier.run(listing, jobs, progress)
    finally:
        progress.close()
    return _summed_up(outcome)


def _check_places(source: Path, staging: Path) -> None:
    if os.path.lexists(staging) and (
        staging.is_symlink()
        or not staging.is_dir()
        or set(os.listdir(staging)) - {MARKER}
    ):
        raise RelocateError(f"the staging path {staging} already exists")
    if not (source / "conda-meta").is_dir():
        raise RelocateError(f"{source} is not a conda environment (no conda-meta)")


def _summed_up(outcome: Findings) -> Findings:
    """The findings in a stable order, with what was only counted said."""
    outcome.notes.sort()
    if outcome.old_pyc:
        outcome.notes.append(
            f"{outcome.old_pyc} .pyc files name the old prefix in co_filename "
            "(harmless: Python uses the path it loads them from)"
        )
    if outcome.unsupported:
        outcome.warnings.append(xattrs.unsupported_warning(sorted(outcome.unsupported)))
    outcome.inexact.sort()
    outcome.problems.sort()
    return outcome


class _Copier:
    """One pass over the source: each file is read once, and what is written
    is checked as it is written, against the package's record or against
    the source with its prefix rewritten; no second walk or read follows.
    Every entry of the listing is made in the copy or the copy fails, and
    each byte written is the byte read (or its rewrite); ``write`` failures
    surface here, and those a filesystem defers (NFS at ``close``, any at
    writeback) at ``close`` and at the ``syncfs`` that precedes the commit."""

    def __init__(
        self,
        source: Path,
        staging: Path,
        records: dict[str, PathRecord],
        rewrite: PrefixRewrite,
        shared: SharedFiles | None = None,
    ) -> None:
        self.source = source
        self.shared = shared
        self.staging = staging
        self.records = records
        self.rewrite = rewrite
        self.src_root = str(source)
        self.dst_root = str(staging)
        self.umask = _umask()
        #: What a purge took and the package cache gave back.
        self.restored: set[str] = set()

    def run(self, listing: Listing, jobs: int | None, progress: Progress) -> Findings:
        outcome = Findings()
        directories = [("", os.lstat(self.src_root))]
        tasks, links = self._plan(listing, directories, outcome)
        with pool(jobs) as threads:
            for level in _by_depth(directories[1:]):
                for _ in gather(threads, self._make_directory, level):
                    pass
            for part in gather(
                threads,
                self._copy_batch,
                tasks,
                tick=lambda: progress.show(outcome.files, outcome.bytes),
                every=EVERY,
            ):
                outcome.merge(part)
                progress.show(outcome.files, outcome.bytes)
            progress.show(outcome.files, outcome.bytes, force=True)
            for first, other in links:
                os.link(self._dst(first), self._dst(other))
                outcome.files += 1
            self._restore(listing, outcome)
            update_records(
                self.staging, self.records, outcome.rewritten, outcome.delinked
            )
            self._append_history()
            # Last, as the files made inside them move their times.
            for part in gather(threads, self._finish_directory, directories):
                outcome.merge(part)
        self._check_records(listing, outcome)
        return outcome

    def _src(self, rel: str) -> str:
        return f"{self.src_root}/{rel}" if rel else self.src_root

    def _dst(self, rel: str) -> str:
        return f"{self.dst_root}/{rel}" if rel else self.dst_root

    def _plan(
        self,
        listing: Listing,
        directories: list[tuple[str, os.stat_result]],
        outcome: Findings,
    ) -> tuple[list[tuple[str, list[_Entry]]], list[tuple[str, str]]]:
        """The listing as tasks of up to ``BATCH`` entries of one directory;
        a file seen before under another name (a hardlink within the
        environment) becomes a link, made once the files are there."""
        inodes: dict[tuple[int, int], str] = {}
        links: list[tuple[str, str]] = []
        tasks: list[tuple[str, list[_Entry]]] = []
        for rel_dir in sorted(listing):
            batch: list[_Entry] = []
            for rel, st in listing[rel_dir]:
                mode = st.st_mode
                if stat.S_ISDIR(mode):
                    directories.append((rel, st))
                    continue
                if stat.S_ISLNK(mode):
                    batch.append(_Entry(rel, _name(rel), st, "symlink"))
                elif stat.S_ISREG(mode):
                    if st.st_nlink > 1:
                        key = (st.st_dev, st.st_ino)
                        if key in inodes:
                            links.append((inodes[key], rel))
                            continue
                        inodes[key] = rel
                    batch.append(self._shareable(self._classify(rel, st)))
                else:
                    outcome.warnings.append(
                        f"{rel}: skipped, not a regular file, directory or symlink"
                    )
                    continue
                if len(batch) >= BATCH:
                    tasks.append((rel_dir, batch))
                    batch = []
            if batch:
                tasks.append((rel_dir, batch))
        return tasks, links

    def _classify(self, rel: str, st: os.stat_result) -> _Entry:
        record = self.records.get(rel)
        if conda_bookkeeping(rel):
            return _Entry(rel, _name(rel), st, "plain")
        if record is None:
            return _Entry(rel, _name(rel), st, "scan")
        if record.prefixed is not None:
            kind, placeholder = record.prefixed
            return _Entry(rel, _name(rel), st, kind, placeholder)
        if record.path_type == "pyc_file":
            return _Entry(rel, _name(rel), st, "plain")
        if (
            record.entry_point
            or record.sha256 is None
            or (record.size is not None and record.size != st.st_size)
        ):
            # Generated at link time (entry points) or edited since: the
            # package says nothing about what it holds now.
            return _Entry(rel, _name(rel), st, "scan")
        return _Entry(rel, _name(rel), st, "plain", expected=record.sha256)

    def _shareable(self, entry: _Entry) -> _Entry:
        """A package file kept as it is, whose source inode an earlier
        environment of the run copied with the bytes its record names."""
        if self.shared is None or entry.kind != "plain" or entry.sparse:
            return entry
        target = self.shared.target(entry.st, entry.expected)
        return entry if target is None else replace(entry, share=target)

    def _make_directory(self, item: tuple[str, os.stat_result]) -> None:
        """Made with the source's mode where the umask lets it (the staging
        directory keeps the copy private until it is whole), so that most
        need no ``chmod`` later: a round trip each on a network filesystem."""
        rel, st = item
        os.mkdir(self._dst(rel), _creation_mode(st))

    def _finish_directory(self, item: tuple[str, os.stat_result]) -> Findings:
        rel, st = item
        path = self._dst(rel)
        outcome = Findings()
        # A default ACL set only now: the files made inside keep their own;
        # and before the mode, which may take the owner's write permission.
        self._copy_attributes(rel or ".", self._src(rel), path, outcome)
        # The top was made by the caller, private until the copy is whole.
        if not rel or self._needs_chmod(st, _creation_mode(st)):
            os.chmod(path, stat.S_IMODE(st.st_mode))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        return outcome

    def _copy_attributes(
        self, rel: str, src: int | str, dst: int | str, outcome: Findings
    ) -> None:
        """The source's ``user.*`` attributes and ACLs, read back as they are
        written. The mode set afterwards is the source's, whose group bits
        are its ACL's mask: the ACL stays as the source has it."""
        want = xattrs.read(src)
        if not want:
            return
        refused = xattrs.write(dst, want)
        if refused:
            outcome.unsupported.append(f"{rel}: {', '.join(refused)}")
        kept = {name: value for name, value in want.items() if name not in refused}
        for name in xattrs.differing(kept, xattrs.read(dst)):
            outcome.problems.append(
                f"{rel}: extended attribute {name} differs in the copy"
            )

    def _needs_chmod(self, st: os.stat_result, created: int) -> bool:
        """Whether a directory made with ``created`` lacks the source's mode:
        bits the umask took, bits the owner needed meanwhile, set-id bits."""
        return self.umask is None or created & ~self.umask != stat.S_IMODE(st.st_mode)

    def _copy_batch(self, task: tuple[str, list[_Entry]]) -> Findings:
        """Names resolve against the two directories, opened once: on a
        network filesystem a full path costs a lookup per component."""
        rel_dir, batch = task
        outcome = Findings()
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
        try:
            # No symlink swapped in for a directory since the walk is followed.
            src_dir = os.open(self._src(rel_dir), flags)
        except OSError as exc:
            raise RelocateError(
                f"cannot read {rel_dir or '.'}: {exc.strerror or exc}"
            ) from exc
        try:
            dst_dir = os.open(self._dst(rel_dir), flags)
            try:
                for item in batch:
                    try:
                        if item.kind == "symlink":
                            self._copy_symlink(item, src_dir, dst_dir, outcome)
                            continue
                        if item.share is None or not self._link(
                            item, item.share, dst_dir, outcome
                        ):
                            self._copy_file(item, src_dir, dst_dir, outcome)
                    except RelocateError:
                        raise
                    except OSError as exc:
                        raise RelocateError(
                            f"cannot copy {item.rel}: {exc.strerror or exc}"
                        ) from exc
                    outcome.files += 1
                    outcome.bytes += item.st.st_size
            finally:
                os.close(dst_dir)
        finally:
            os.close(src_dir)
        return outcome

    def _link(
        self, item: _Entry, target: SharedFile, dst_dir: int, outcome: Findings
    ) -> bool:
        """Link ``item`` to an earlier environment's copy; False (nothing
        made) where it must be copied instead: another filesystem, too many
        links, or a target that is no longer the file the run wrote."""
        try:
            os.link(target.path, item.name, dst_dir_fd=dst_dir, follow_symlinks=False)
        except OSError as exc:
            if exc.errno in (errno.EDQUOT, errno.ENOSPC):
                raise
            return False
        if not target.is_target(os.lstat(item.name, dir_fd=dst_dir)):
            os.unlink(item.name, dir_fd=dst_dir)
            return False
        if not target.written.has_nul:
            # Text: checked for this environment's prefix, as a copy is.
            fd = os.open(item.name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dst_dir)
            try:
                if names_old(fd, self.rewrite):
                    self._still_names_old(item, outcome)
            finally:
                os.close(fd)
        outcome.shared_files += 1
        outcome.shared_bytes += item.st.st_size
        return True

    def _copy_symlink(
        self, item: _Entry, src_dir: int, dst_dir: int, outcome: Findings
    ) -> None:
        raw = os.readlink(item.name, dir_fd=src_dir)
        if self._into_package_cache(item.rel, raw):
            outcome.delinked[item.rel] = raw
            return
        target = self.rewrite.retarget(raw)
        outside = link_out(self.src_root, item.rel, raw)
        if outside is not None:
            target = outside
            outcome.notes.append(
                f"{item.rel}: its relative target {raw} leaves the environment; "
                f"it now links to {outside}, where that led"
            )
        os.symlink(target, item.name, dir_fd=dst_dir)
        os.utime(
            item.name,
            ns=(item.st.st_atime_ns, item.st.st_mtime_ns),
            dir_fd=dst_dir,
            follow_symlinks=False,
        )

    def _copy_file(
        self, item: _Entry, src_dir: int, dst_dir: int, outcome: Findings
    ) -> None:
        # O_NONBLOCK: what was a file in the listing and is a FIFO now must
        # not hang the copy (the source's stamps then fail the comparison).
        src = os.open(
            item.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=src_dir
        )
        try:
            dst = os.open(
                item.name,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                0o600,
                dir_fd=dst_dir,
            )
            try:
                digest = self._write(item, src, dst, outcome)
                if digest is not None:
                    outcome.rewritten[item.rel] = digest
                # Before the mode: its owner may set user.* only while the
                # file is writable.
                self._copy_attributes(item.rel, src, dst, outcome)
                os.fchmod(dst, stat.S_IMODE(item.st.st_mode))
                os.utime(dst, ns=(item.st.st_atime_ns, item.st.st_mtime_ns))
            finally:
                os.close(dst)
        finally:
            os.close(src)

    def _write(self, item: _Entry, src: int, dst: int, outcome: Findings) -> str | None:
        """Fill ``dst`` and check what was written; return its sha256 when
        the content differs from the source."""
        if item.kind == "plain":
            if item.expected is None or item.sparse:
                # conda's bookkeeping and compiled .pyc: no record to hold
                # them to, so the kernel copies them without a pass through
                # Python.
                kernel_copy(src, dst, item.st.st_size, sparse=item.sparse)
                return None
            seen = scan(src, self.rewrite, copy_to=dst, hashing=True)
            if self.shared is not None and item.st.st_nlink > 1 and seen.sha256:
                written = os.fstat(dst)
                outcome.written.append(
                    Written(
                        item.rel,
                        (item.st.st_dev, item.st.st_ino),
                        item.st.st_size,
                        item.st.st_mtime_ns,
                        item.st.st_mode,
                        written.st_dev,
                        written.st_ino,
                        seen.sha256,
                        seen.has_nul,
                    )
                )
            if seen.sha256 != item.expected:
                record = self.records[item.rel]
                outcome.notes.append(
                    f"{item.rel}: the source already differs from its record "
                    f"in conda-meta/{record.record_file} (edited?)"
                )
            if seen.old_in_text:
                self._still_names_old(item, outcome)
            return None
        if item.kind == "text":
            return self._write_text(src, dst, launcher=False)
        if item.kind == "binary":
            patches = self.rewrite.binary_patches(src, item.placeholder, item.rel)
            if not patches:
                kernel_copy(src, dst, item.st.st_size, sparse=item.sparse)
                return None
            return sha256(patched_chunks(src, patches), write_to=dst)
        return self._write_scanned(item, src, dst, outcome)

    def _write_scanned(
        self, item: _Entry, src: int, dst: int, outcome: Findings
    ) -> str | None:
        """A file nothing describes: copied while looking for the prefix,
        and written again with it rewritten when it is found in text."""
        # Fewer blocks than bytes is holes, or a compressing filesystem: the
        # bytes say which, as they do for a file copied whole.
        seen = scan(src, self.rewrite, copy_to=None if item.sparse else dst)
        if not seen.names_old:
            if item.sparse:
                kernel_copy(src, dst, item.st.st_size, sparse=True)
            return None
        if is_utf8_text(src):
            os.ftruncate(dst, 0)
            os.lseek(dst, 0, os.SEEK_SET)
            return self._write_text(src, dst, launcher=True)
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
        if item.sparse:
            kernel_copy(src, dst, item.st.st_size, sparse=True)
        if seen.old_in_text:
            self._still_names_old(item, outcome)
        return None

    def _still_names_old(self, item: _Entry, outcome: Findings) -> None:
        outcome.problems.append(
            f"{item.rel}: still names the old prefix {self.rewrite.old}"
        )

    def _write_text(self, src: int, dst: int, *, launcher: bool) -> str | None:
        """The source with the prefix substituted; its sha256 when that
        changed anything."""
        source = hashlib.sha256()

        def read() -> Iterator[bytes]:
            for chunk in read_chunks(src):
                source.update(chunk)
                yield chunk

        digest = sha256(
            self.rewrite.text_chunks(read(), launcher=launcher), write_to=dst
        )
        return None if digest == source.hexdigest() else digest

    def _into_package_cache(self, rel: str, target: str) -> bool:
        """A package file linked from the extracted package (conda's
        ``allow_softlinks``/``always_softlink``): an absolute target outside
        the environment, at the package's own path for the file. On scratch
        the cache is purged like the rest, so the copy holds the file."""
        record = self.records.get(rel)
        return (
            record is not None
            and record.path_type in ("softlink", "hardlink")
            and target.startswith("/")
            and self.rewrite.retarget(target) == target
            and target.endswith("/" + (record.record_path or rel))
        )

    def _restore(self, listing: Listing, outcome: Findings) -> None:
        """Put back what a purge took, and the files a softlinked
        environment links to, from the package cache or channel, as conda
        links them at the new prefix (see ``repair``)."""
        present = {rel for entries in listing.values() for rel, _ in entries}
        missing = [
            rel
            for rel in missing_files(self.records, present)
            if not conda_bookkeeping(rel)
        ]
        if not missing and not outcome.delinked:
            return
        repair = restore_missing(
            self.source,
            self.staging,
            self.rewrite.new,
            self.records,
            [*missing, *outcome.delinked],
        )
        restored = set(repair.restored)
        for rel, target in outcome.delinked.items():
            if rel not in restored:
                self._delink_anyway(rel, target, outcome)
        outcome.files += len(repair.restored)
        outcome.rewritten.update(repair.digests)
        outcome.notes.extend(repair.notes)
        self.restored.update(restored - set(outcome.delinked))

    def _delink_anyway(self, rel: str, target: str, outcome: Findings) -> None:
        """A link into a package cache that no package's bytes could replace:
        the bytes it shows now, when it shows any. A dangling one is left
        out: purge damage the run reports with its remedy, where a link
        back into the purged cache would only hide it."""
        dest = self._dst(rel)
        if not os.path.isfile(target):
            outcome.notes.append(
                f"{rel}: links to {target}, which the purge took; left out"
            )
            return
        with open(target, "rb") as src, open(dest, "xb") as dst:
            digest = sha256(read_chunks(src.fileno()), write_to=dst.fileno())
        shutil.copymode(target, dest)
        outcome.rewritten[rel] = digest
        outcome.files += 1
        outcome.notes.append(
            f"{rel}: copied from {target}, which it linked to (it does not match "
            "its package's record)"
        )

    def _check_records(self, listing: Listing, outcome: Findings) -> None:
        """Every path the records list, against the kind the source holds
        there (the copy holds the same, entry for entry)."""
        kinds = {
            rel: kind_of(st.st_mode)
            for entries in listing.values()
            for rel, st in entries
        }
        for rel, record in self.records.items():
            have = kinds.get(rel)
            if have is None:
                if rel in self.restored:
                    continue
                outcome.notes.append(
                    f"{rel}: listed in conda-meta/{record.record_file} "
                    "but missing in the source"
                )
                continue
            problem = record_disagrees(record, have)
            if problem:
                outcome.problems.append(f"{rel}: {problem}")

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


def _name(rel: str) -> str:
    return rel.rpartition("/")[2]


def _by_depth(
    directories: Iterable[tuple[str, os.stat_result]],
) -> list[list[tuple[str, os.stat_result]]]:
    """Directories grouped by depth, shallowest first: each group can be
    made at once, its parents being made already."""
    levels: dict[int, list[tuple[str, os.stat_result]]] = {}
    for item in directories:
        levels.setdefault(item[0].count("/"), []).append(item)
    return [levels[depth] for depth in sorted(levels)]


def _creation_mode(st: os.stat_result) -> int:
    """A directory's permission bits, with what its owner needs while the
    copy is filled: to enter it and write into it."""
    return (st.st_mode & 0o777) | 0o700


def _umask() -> int | None:
    """The process's umask, read where setting it to learn it would race
    with the other threads creating files; None where it cannot be read."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return None
