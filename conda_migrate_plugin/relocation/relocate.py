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

import os
import stat
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..damage import missing_files
from ..exceptions import RelocateError
from ..jobs import BATCH, gather, pool
from ..names import MARKER
from ..progress import EVERY, CopyProgress
from ..records import read_path_records, update_records
from ..snapshot import measure, stamp_of
from . import xattrs
from .copyfiles import Entry, FileCopier, copy_attributes
from .findings import Findings, check_records
from .prefix import (
    PrefixRewrite,
    append_history,
    conda_bookkeeping,
    old_spellings,
)
from .repair import restore_missing
from .softlinks import copied_softlinks, delink_anyway, offer

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ..progress import Progress
    from ..records import PathRecord
    from ..snapshot import Listing
    from .share import SharedFiles

#: A directory to make (its ``lstat``), or a batch of its entries to copy.
_Work = tuple[str, os.stat_result | list[Entry]]


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


class _Copier(FileCopier):
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
        super().__init__(str(source), str(staging), records, rewrite, shared)
        self.source = source
        self.staging = staging
        #: Each directory's mode as made, by its path in the copy.
        self.made: dict[str, int] = {}
        #: What a purge took and the package cache gave back.
        self.restored: set[str] = set()

    def run(self, listing: Listing, jobs: int | None, progress: Progress) -> Findings:
        outcome = Findings()
        directories = [("", os.lstat(self.src_root))]
        tasks, links = self._plan(listing, directories, outcome)
        inside = _inside(directories[1:], tasks)
        present = {rel for entries in listing.values() for rel, _ in entries}
        with pool(jobs) as threads:
            for _, part in gather(
                threads,
                self._step,
                inside.pop("", []),
                more=lambda done: (
                    inside.pop(done[0], []) if done[0] is not None else ()
                ),
                tick=lambda: progress.show(outcome.files, outcome.bytes),
                every=EVERY,
            ):
                outcome.merge(part)
                progress.show(outcome.files, outcome.bytes)
            if inside:  # a listing whose directories do not make one tree
                raise RelocateError(f"{min(inside)}: not reached from {self.source}")
            progress.show(outcome.files, outcome.bytes, force=True)
            for first, other in links:
                os.link(self._dst(first), self._dst(other))
                outcome.files += 1
            late = [name for pair in links for name in pair]
            late += self._restore(present, outcome)
            own = [
                *outcome.delinked,
                *outcome.relinked,
                *copied_softlinks(self.records, listing),
            ]
            late += update_records(
                self.staging, self.records, outcome.rewritten, own, threads
            )
            late.append(append_history(self.staging, self.rewrite))
            # Last, as the files made inside them move their times.
            for part in gather(threads, self._finish_directory, directories):
                outcome.merge(part)
        self._stamp_late(late, present, outcome)
        check_records(self.records, listing, self.restored, outcome)
        return outcome

    def _stamp_late(self, late: list[str], listed: set[str], outcome: Findings) -> None:
        """Stamp again what changed after its batch stamped it, or was made
        after the batches (a second link moves the first name's ``nlink``
        and ``ctime``), and the directories a restore made (not ``listed``
        in the source), once nothing changes them any more."""
        todo = set(late)
        for rel in late:
            parent = rel.rpartition("/")[0]
            while parent and parent not in listed:
                todo.add(parent)
                parent = parent.rpartition("/")[0]
        for rel in todo:
            try:
                outcome.stamps[rel] = stamp_of(os.lstat(self._dst(rel)))
            except FileNotFoundError:
                pass  # a file nothing could restore: not in the copy

    def _plan(
        self,
        listing: Listing,
        directories: list[tuple[str, os.stat_result]],
        outcome: Findings,
    ) -> tuple[list[tuple[str, list[Entry]]], list[tuple[str, str]]]:
        """The listing as tasks of up to ``BATCH`` entries of one directory;
        a file seen before under another name (a hardlink within the
        environment) becomes a link, made once the files are there."""
        inodes: dict[tuple[int, int], str] = {}
        links: list[tuple[str, str]] = []
        tasks: list[tuple[str, list[Entry]]] = []
        for rel_dir in sorted(listing):
            batch: list[Entry] = []
            for rel, st in listing[rel_dir]:
                mode = st.st_mode
                if stat.S_ISDIR(mode):
                    directories.append((rel, st))
                    continue
                if stat.S_ISLNK(mode):
                    batch.append(Entry(rel, _name(rel), st, "symlink"))
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

    def _classify(self, rel: str, st: os.stat_result) -> Entry:
        record = self.records.get(rel)
        if conda_bookkeeping(rel):
            return Entry(rel, _name(rel), st, "plain")
        if record is None:
            return Entry(rel, _name(rel), st, "scan")
        if record.prefixed is not None:
            kind, placeholder = record.prefixed
            return Entry(rel, _name(rel), st, kind, placeholder)
        if record.path_type == "pyc_file":
            return Entry(rel, _name(rel), st, "plain")
        if (
            record.entry_point
            or record.sha256 is None
            or (record.size is not None and record.size != st.st_size)
        ):
            # Generated at link time (entry points) or edited since: the
            # package says nothing about what it holds now.
            return Entry(rel, _name(rel), st, "scan")
        return Entry(rel, _name(rel), st, "plain", expected=record.sha256)

    def _shareable(self, entry: Entry) -> Entry:
        """A package file kept as it is, whose source inode an earlier
        environment of the run copied with the bytes its record names."""
        if self.shared is None or entry.kind != "plain" or entry.sparse:
            return entry
        target = self.shared.target(entry.st, entry.expected)
        return entry if target is None else replace(entry, share=target)

    def _step(self, work: _Work) -> tuple[str | None, Findings]:
        """Make a directory, named in the result for its work to be queued;
        or copy a batch of entries."""
        rel, what = work
        if isinstance(what, os.stat_result):
            self._make_directory((rel, what))
            return rel, Findings()
        return None, self.copy_batch((rel, what))

    def _make_directory(self, item: tuple[str, os.stat_result]) -> None:
        """Made with the source's mode where the umask lets it (the staging
        directory keeps the copy private until it is whole), so that most
        need no ``chmod`` later: a round trip each on a network filesystem.
        The mode made is read back (from the attributes the mkdir returned):
        a default ACL or a set-group-ID parent decides it as much as the umask."""
        rel, st = item
        path = self._dst(rel)
        os.mkdir(path, _creation_mode(st))
        self.made[rel] = stat.S_IMODE(os.lstat(path).st_mode)

    def _finish_directory(self, item: tuple[str, os.stat_result]) -> Findings:
        rel, st = item
        path = self._dst(rel)
        outcome = Findings()
        # A default ACL set only now: the files made inside keep their own;
        # and before the mode, which may take the owner's write permission.
        copy_attributes(rel or ".", self._src(rel), path, outcome)
        # The top was made by the caller, private until the copy is whole.
        if not rel or self.made[rel] != stat.S_IMODE(st.st_mode):
            os.chmod(path, stat.S_IMODE(st.st_mode))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        if rel:  # the top is renamed when committed: never stamped
            outcome.stamps[rel] = stamp_of(os.lstat(path))
        return outcome

    def _restore(self, present: set[str], outcome: Findings) -> list[str]:
        """Put back what a purge took (what the records list but is not
        ``present`` in the source), and the files a softlinked environment
        links to, from the package cache or channel, as conda links them at
        the new prefix (see ``repair``); what it may have written."""
        missing = [
            rel
            for rel in missing_files(self.records, present)
            if not conda_bookkeeping(rel)
        ]
        if not missing and not outcome.delinked:
            return []
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
                delink_anyway(rel, target, self._dst(rel), outcome)
            elif rel in repair.digests:
                offer(rel, target, self._dst(rel), repair, outcome, self.shared)
        outcome.files += len(repair.restored)
        outcome.bytes += repair.bytes
        outcome.rewritten.update(repair.digests)
        outcome.notes.extend(repair.notes)
        self.restored.update(restored - set(outcome.delinked))
        return [*missing, *outcome.delinked]


def _name(rel: str) -> str:
    return rel.rpartition("/")[2]


def _inside(
    directories: Iterable[tuple[str, os.stat_result]],
    tasks: Iterable[tuple[str, list[Entry]]],
) -> dict[str, list[_Work]]:
    """The work a directory's creation makes possible, by its path: its
    subdirectories, then its batches. Siblings, made one at a time on a
    network filesystem (the kernel locks their parent during each round
    trip), are made among other work, not a tree level while the pool waits."""
    inside: dict[str, list[_Work]] = {}
    for rel, st in directories:
        inside.setdefault(rel.rpartition("/")[0], []).append((rel, st))
    for rel_dir, batch in tasks:
        inside.setdefault(rel_dir, []).append((rel_dir, batch))
    return inside


def _creation_mode(st: os.stat_result) -> int:
    """A directory's permission bits, with what its owner needs while the
    copy is filled: to enter it and write into it."""
    return (st.st_mode & 0o777) | 0o700
