"""How the relocate engine copies the entries of one directory of the
source: a task of the copy's pool (see ``relocate``).

Each file is read once, and what is written is checked as it is written:
a package file's bytes against the sha256 of its record, a rewritten file
as the source's bytes with the prefix rewritten, any text for the old
prefix left in it. Names resolve against the two directories, opened once
per task: on a network filesystem a full path costs a lookup per component.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..exceptions import RelocateError
from ..snapshot import stamp_of
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
from .findings import Findings, into_package_cache
from .prefix import copied_link, leads_out
from .share import Written

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ..records import PathRecord
    from .prefix import PrefixRewrite
    from .share import SharedFile, SharedFiles


@dataclass(frozen=True)
class Entry:
    """One entry of the source's listing, as the copy treats it."""

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


def copy_attributes(
    rel: str, src: int | str, dst: int | str, outcome: Findings
) -> bool:
    """The source's ``user.*`` attributes and ACLs, read back as they are
    written; whether it had any. The mode set afterwards is the source's,
    whose group bits are its ACL's mask: the ACL stays as the source has it."""
    want = xattrs.read(src)
    if not want:
        return False
    refused = xattrs.write(dst, want)
    if refused:
        outcome.unsupported.append(f"{rel}: {', '.join(refused)}")
    kept = {name: value for name, value in want.items() if name not in refused}
    for name in xattrs.differing(kept, xattrs.read(dst)):
        outcome.problems.append(f"{rel}: extended attribute {name} differs in the copy")
    return True


class FileCopier:
    """Copies entries of the source at ``src_root`` into ``dst_root``, with
    the prefix rewritten as ``rewrite`` says, held to the package
    ``records``; with ``shared``, files an earlier environment of the run
    copied become links to that copy (see ``share``)."""

    def __init__(
        self,
        src_root: str,
        dst_root: str,
        records: dict[str, PathRecord],
        rewrite: PrefixRewrite,
        shared: SharedFiles | None,
    ) -> None:
        self.src_root = src_root
        self.dst_root = dst_root
        self.records = records
        self.rewrite = rewrite
        self.shared = shared

    def _src(self, rel: str) -> str:
        return f"{self.src_root}/{rel}" if rel else self.src_root

    def _dst(self, rel: str) -> str:
        return f"{self.dst_root}/{rel}" if rel else self.dst_root

    def copy_batch(self, task: tuple[str, list[Entry]]) -> Findings:
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
        self, item: Entry, target: SharedFile, dst_dir: int, outcome: Findings
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
        linked = os.lstat(item.name, dir_fd=dst_dir)
        if not target.is_target(linked):
            os.unlink(item.name, dir_fd=dst_dir)
            return False
        outcome.stamps[item.rel] = stamp_of(linked)
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

    def _link_cached(
        self, item: Entry, target: str, dst_dir: int, outcome: Findings
    ) -> bool:
        """A link into a package cache whose file an earlier environment of
        the run holds (restored from its own link to it): a hard link to
        that copy, held to this environment's record as a shared file is;
        False (nothing made) where the file must be restored instead."""
        if self.shared is None:
            return False
        try:
            st = os.stat(target)
        except OSError:
            return False  # purged from the cache: restored, or damage
        found = self.shared.target(st, self.records[item.rel].sha256, linked=True)
        if found is None or not self._link(
            replace(item, st=st), found, dst_dir, outcome
        ):
            return False
        outcome.relinked.append(item.rel)
        outcome.files += 1
        outcome.bytes += st.st_size
        return True

    def _copy_symlink(
        self, item: Entry, src_dir: int, dst_dir: int, outcome: Findings
    ) -> None:
        raw = os.readlink(item.name, dir_fd=src_dir)
        if into_package_cache(self.records.get(item.rel), raw, self.rewrite):
            if not self._link_cached(item, raw, dst_dir, outcome):
                outcome.delinked[item.rel] = raw
            return
        target, note = copied_link(self.rewrite, self.src_root, item.rel, raw)
        if note is not None:
            outcome.notes.append(note)
        os.symlink(target, item.name, dir_fd=dst_dir)
        out = leads_out(self.rewrite.new, item.rel, target)
        if out is not None:
            outcome.links_out[item.rel] = out
        os.utime(
            item.name,
            ns=(item.st.st_atime_ns, item.st.st_mtime_ns),
            dir_fd=dst_dir,
            follow_symlinks=False,
        )
        # Answered from the attributes the change of times returned, where a
        # network filesystem returns them.
        outcome.stamps[item.rel] = stamp_of(os.lstat(item.name, dir_fd=dst_dir))

    def _copy_file(
        self, item: Entry, src_dir: int, dst_dir: int, outcome: Findings
    ) -> None:
        # O_NONBLOCK: what was a file in the listing and is a FIFO now must
        # not hang the copy (the source's stamps then fail the comparison).
        src = os.open(
            item.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=src_dir
        )
        try:
            # Made with the source's mode where the umask (or a default ACL)
            # lets it, so that most files need no chmod: a round trip each on
            # a network filesystem, where the fstat is answered from the
            # attributes the create returned.
            dst = os.open(
                item.name,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                item.st.st_mode & 0o777 | 0o600,
                dir_fd=dst_dir,
            )
            try:
                created = stat.S_IMODE(os.fstat(dst).st_mode)
                digest = self._write(item, src, dst, outcome)
                if digest is not None:
                    outcome.rewritten[item.rel] = digest
                # Before the mode: its owner may set user.* only while the
                # file is writable; an ACL written sets the mode's bits too.
                mode = stat.S_IMODE(item.st.st_mode)
                if copy_attributes(item.rel, src, dst, outcome) or created != mode:
                    os.fchmod(dst, mode)
                os.utime(dst, ns=(item.st.st_atime_ns, item.st.st_mtime_ns))
                # After the last change the copy makes to the file: its stamp
                # as the commit records it (see ``transaction.copy_stamps``).
                outcome.stamps[item.rel] = stamp_of(os.fstat(dst))
            finally:
                os.close(dst)
        finally:
            os.close(src)

    def _write(self, item: Entry, src: int, dst: int, outcome: Findings) -> str | None:
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
        self, item: Entry, src: int, dst: int, outcome: Findings
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

    def _still_names_old(self, item: Entry, outcome: Findings) -> None:
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
