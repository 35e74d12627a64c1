"""File-by-file verification of a copy conda's clone made, against its source.

conda's clone writes the files itself, out of sight: the old environment is
removed only on the word of this check, which reads every byte of the copy.
(The relocate engine checks its files as it writes them, by the same rules.)
What each file must hold:

* a file conda installed without a prefix: the source's bytes, whatever the
  record says: ``pip install -U pip`` leaves conda's records of pip stale,
  and a clone linking the recorded pip again would match them. A source
  that no longer matches its record (the user's edit) is noted in the log;
* a file conda installed with a prefix: the source with the prefix rewritten
  as conda would;
* any other file: the source, with the prefix substituted when it is text;
* a symlink: the source's target, moved into the new prefix when absolute;
  a relative one that leads out of the environment, to where it led (conda's
  clone copies it as it is, and from the new place it would lead elsewhere);
* a file or directory: the source's ``user.*`` attributes and POSIX ACLs,
  where the copy's filesystem can hold them (see ``xattrs``);
* nothing more: a path in the copy that the source does not have (the old
  pip's files, which the clone linked again) is a difference too, except
  conda's own records and the ``__pycache__`` the clone compiles.

No text file of the copy may still name the old prefix, except the history
and the package records, which name past commands and the package cache.
It holds a relocated copy to the same rules (the tests use it so, as a
second opinion). conda's clone leaves out ``conda-meta/pinned`` and
``state``, which the caller must carry for the check to pass.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..exceptions import RelocateError
from ..jobs import BATCH, gather, pool
from ..names import MARKER
from ..records import read_path_records
from . import xattrs
from .chunks import (
    Scanned,
    is_utf8_text,
    names_old,
    patched_chunks,
    read_chunks,
    scan,
    sha256,
)
from .findings import Findings, into_package_cache, kind_of, record_disagrees
from .prefix import (
    PrefixRewrite,
    conda_bookkeeping,
    copied_link,
    leads_out,
    old_spellings,
)

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    from ..records import PathRecord

#: The largest script also held whole to conda's clone's rewrite, which
#: substitutes the prefix and nothing else; scripts are far smaller.
_WHOLE_SCRIPT = 1 << 20


def verify_files(
    source: Path,
    copy: Path,
    final_prefix: Path,
    jobs: int | None = None,
    *,
    extra_allowed: bool = False,
) -> Findings:
    """Compare ``copy`` with ``source``, expecting ``source`` renamed to
    ``final_prefix`` inside the files. ``extra_allowed``: paths only the
    copy has are no problem (an environment in use since it was copied)."""
    checker = _Checker(source, copy, final_prefix, extra_allowed)
    check = Findings()
    with pool(jobs) as threads:
        files, seen = checker.walk(threads, check)
        checker.check_listed(seen, check)
        batches = [files[i : i + BATCH] for i in range(0, len(files), BATCH)]
        for part in gather(threads, checker.check_batch, batches):
            check.merge(part)
    check.problems.sort()
    check.unsupported.sort()
    return check


def _scan(path: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as entries:
            return list(entries)
    except OSError:
        return []


def _entry_kind(entry: os.DirEntry[str]) -> str:
    """The kind from the directory listing itself where it says (``d_type``),
    sparing a round trip per file on a network filesystem."""
    if entry.is_symlink():
        return "symlink"
    if entry.is_dir(follow_symlinks=False):
        return "directory"
    if entry.is_file(follow_symlinks=False):
        return "file"
    return "special file"


class _Checker:
    def __init__(
        self, source: Path, copy: Path, final_prefix: Path, extra_allowed: bool
    ) -> None:
        self.extra_allowed = extra_allowed
        self.support: dict[str, bool] = {}
        self.src_root = os.path.abspath(source)
        self.copy_root = os.path.abspath(copy)
        scripts = (
            f"bin/{entry.name}"
            for entry in _scan(f"{self.src_root}/bin")
            if entry.is_file(follow_symlinks=False)
        )
        self.rewrite = PrefixRewrite(
            self.src_root,
            os.path.abspath(final_prefix),
            old_spellings(source, scripts),
        )
        self.records = read_path_records(source)
        self.copy_records = read_path_records(copy)

    def walk(
        self, threads: ThreadPoolExecutor, check: Findings
    ) -> tuple[list[str], dict[str, str | None]]:
        """Check directories, symlinks and types, one directory per task so
        that the round trips of a network filesystem overlap; return the
        regular files and, for every path the source holds, its kind in the
        copy (``None``: missing)."""
        files: list[str] = []
        seen: dict[str, str | None] = {}
        for part, _, found, kinds in gather(
            threads, self._walk_directory, [""], more=lambda result: result[1]
        ):
            check.merge(part)
            files += found
            seen.update(kinds)
        return files, seen

    def _walk_directory(
        self, rel_dir: str
    ) -> tuple[Findings, list[str], list[str], dict[str, str | None]]:
        check = Findings()
        directories: list[str] = []
        files: list[str] = []
        kinds: dict[str, str | None] = {}
        path = f"{self.src_root}/{rel_dir}" if rel_dir else self.src_root
        names = set()
        with os.scandir(path) as entries:
            for entry in entries:
                names.add(entry.name)
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                kind = _entry_kind(entry)
                try:
                    copy_kind = kind_of(os.lstat(f"{self.copy_root}/{rel}").st_mode)
                except FileNotFoundError:
                    kinds[rel] = None
                    check.problems.append(f"{rel}: missing in the copy")
                    continue
                kinds[rel] = copy_kind
                if self._delinked(rel, kind, copy_kind, check):
                    files.append(rel)
                elif kind != copy_kind:
                    check.problems.append(
                        f"{rel}: a {copy_kind} in the copy, a {kind} in the source"
                    )
                elif kind == "directory":
                    directories.append(rel)
                    self._check_attributes(rel, check)
                elif kind == "symlink":
                    check.files += 1
                    self._check_symlink(rel, check)
                elif kind == "file":
                    files.append(rel)
        if not self.extra_allowed:
            self._check_extra(rel_dir, names, check)
        return check, directories, files, kinds

    def _delinked(self, rel: str, kind: str, copy_kind: str, check: Findings) -> bool:
        """A symlink into a package cache that the copy holds as the file:
        conda's clone links no file as a symlink (see ``backends.clone``),
        so it is checked as a file, against the bytes the link shows."""
        if kind != "symlink" or copy_kind != "file":
            return False
        target = os.readlink(f"{self.src_root}/{rel}")
        if not into_package_cache(self.records.get(rel), target, self.rewrite):
            return False
        check.delinked[rel] = target
        return True

    def _check_extra(self, rel_dir: str, names: set[str], check: Findings) -> None:
        """What only the copy has: conda's clone links every file its
        records list, also those pip has since removed from the source."""
        path = f"{self.copy_root}/{rel_dir}" if rel_dir else self.copy_root
        for name in sorted(set(os.listdir(path)) - names):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if rel == MARKER or rel_dir == "conda-meta" or _bytecode(rel):
                continue
            if self._relinked(rel):
                check.notes.append(f"{rel}: lost to the purge, linked again by conda")
                continue
            check.problems.append(f"{rel}: only in the copy, not in the source")

    def _relinked(self, rel: str) -> bool:
        """A file the source's records list and a purge took, which conda's
        clone linked again from the package: the copy's record must give
        the bytes it holds (conda writes the hash of what it linked)."""
        copy_record = self.copy_records.get(rel)
        if rel not in self.records or copy_record is None:
            return False
        path = f"{self.copy_root}/{rel}"
        if os.path.islink(path):
            return copy_record.path_type == "softlink"
        return os.path.isfile(path) and copy_record.sha256 == self._read(path).sha256

    def check_listed(self, seen: dict[str, str | None], check: Findings) -> None:
        """Every path the records list must be in the copy, with its type;
        what the walk saw is not asked of the filesystem again."""
        for rel, record in self.records.items():
            if rel in seen:
                have, in_source = seen[rel], True
            else:
                try:
                    have = kind_of(os.lstat(f"{self.copy_root}/{rel}").st_mode)
                except FileNotFoundError:
                    have = None
                in_source = os.path.lexists(f"{self.src_root}/{rel}")
            if not in_source:
                check.notes.append(
                    f"{rel}: listed in conda-meta/{record.record_file} "
                    "but missing in the source"
                )
            elif have is None:
                check.problems.append(
                    f"{rel}: listed in conda-meta/{record.record_file} "
                    "but missing in the copy"
                )
            elif rel not in check.delinked:
                problem = record_disagrees(record, have)
                if problem:
                    check.problems.append(f"{rel}: {problem}")

    def _check_symlink(self, rel: str, check: Findings) -> None:
        raw = os.readlink(f"{self.src_root}/{rel}")
        target, note = copied_link(self.rewrite, self.src_root, rel, raw)
        actual = os.readlink(f"{self.copy_root}/{rel}")
        if actual != target:
            check.problems.append(f"{rel}: symlink to {actual!r}, expected {target!r}")
        elif note is not None:
            check.notes.append(note)
        out = leads_out(self.rewrite.new, rel, actual)
        if out is not None:
            check.links_out[rel] = out

    def _check_attributes(self, rel: str, check: Findings) -> None:
        """The source's ``user.*`` attributes and ACLs, in the copy too; one
        its filesystem cannot hold at all is said, not held against it."""
        want = xattrs.read(f"{self.src_root}/{rel}")
        if not want:
            return
        have = xattrs.read(f"{self.copy_root}/{rel}")
        refused = []
        for name in xattrs.differing(want, have):
            if name not in have and not self._supported(name):
                refused.append(name)
            else:
                check.problems.append(
                    f"{rel}: extended attribute {name} "
                    + ("differs in the copy" if name in have else "missing in the copy")
                )
        if refused:
            check.unsupported.append(f"{rel}: {', '.join(refused)}")

    def _supported(self, name: str) -> bool:
        """Asked once per kind of attribute (threads may ask it twice)."""
        kind = "acl" if name in xattrs.ACLS else "user"
        if kind not in self.support:
            self.support[kind] = xattrs.supported(self.copy_root, name)
        return self.support[kind]

    def check_batch(self, batch: list[str]) -> Findings:
        check = Findings()
        for rel in batch:
            try:
                self._check_attributes(rel, check)
                self._check_file(rel, check)
            except OSError as exc:
                check.problems.append(f"{rel}: cannot be read: {exc.strerror or exc}")
            check.files += 1
        return check

    def _check_file(self, rel: str, check: Findings) -> None:
        record = self.records.get(rel)
        copy = self._read(f"{self.copy_root}/{rel}")
        exempt = conda_bookkeeping(rel)
        if copy.old_in_text and not exempt:
            check.problems.append(
                f"{rel}: still names the old prefix {self.rewrite.old}"
            )
        if exempt:
            return
        if (
            record is None
            or record.entry_point
            or (record.sha256 is None and record.path_type != "pyc_file")
        ):
            if copy.sha256 in self._expected_unowned(rel):
                if record is not None:
                    self._check_recorded(rel, record, copy, check)
            elif self._written_by_conda(rel, record, copy):
                check.notes.append(f"{rel}: written again by conda for the new prefix")
            else:
                check.problems.append(
                    f"{rel}: differs from the source (prefix substituted)"
                )
        elif record.prefixed is not None:
            self._check_prefix_file(rel, record, record.prefixed[1], copy, check)
        elif record.sha256 is None:
            if copy.sha256 != self._read(f"{self.src_root}/{rel}").sha256:
                check.notes.append(f"{rel}: compiled again, differs from the source")
        else:
            source = self._read(f"{self.src_root}/{rel}")
            if source.sha256 != record.sha256:
                check.notes.append(
                    f"{rel}: the source already differs from its record "
                    f"in conda-meta/{record.record_file} (edited?)"
                )
            if copy.sha256 == source.sha256:
                return
            if _bytecode(rel):
                check.notes.append(f"{rel}: compiled again, differs from the source")
            elif source.sha256 == record.sha256:
                check.problems.append(
                    f"{rel}: differs from its record in conda-meta/"
                    f"{record.record_file} and from the source"
                )
            elif copy.sha256 not in self._expected_unowned(rel):
                check.problems.append(f"{rel}: differs from the source")

    def _check_prefix_file(
        self,
        rel: str,
        record: PathRecord,
        placeholder: str,
        copy: Scanned,
        check: Findings,
    ) -> None:
        src_path = f"{self.src_root}/{rel}"
        fd = os.open(src_path, os.O_RDONLY)
        try:
            if record.file_mode == "text":
                expected = sha256(self.rewrite.text_chunks(read_chunks(fd)))
            else:
                try:
                    patches = self.rewrite.binary_patches(fd, placeholder, rel)
                except RelocateError as exc:
                    check.problems.append(str(exc))
                    return
                expected = sha256(patched_chunks(fd, patches))
        finally:
            os.close(fd)
        if copy.sha256 == expected:
            self._check_recorded(rel, record, copy, check)
            return
        check.problems.append(
            f"{rel}: differs from the source with the prefix rewritten"
        )

    def _written_by_conda(
        self, rel: str, record: PathRecord | None, copy: Scanned
    ) -> bool:
        """What conda's clone makes anew: the ``.pyc`` files it compiles and
        the entry points it generates for ``noarch: python`` packages,
        recorded in the copy without a hash (conda writes none for them), and
        files it linked again from the package cache where the source's
        record (from before ``paths_data``) says nothing of their contents."""
        copy_record = self.copy_records.get(rel)
        if copy_record is None:
            return False
        if copy_record.sha256 is None:
            if copy_record.path_type == "pyc_file":
                return True
            return copy_record.entry_point and copy_record.size == copy.size
        return (
            record is not None
            and record.sha256 is None
            and copy_record.carries_prefix
            and copy_record.sha256 == copy.sha256
        )

    def _check_recorded(
        self, rel: str, record: PathRecord, copy: Scanned, check: Findings
    ) -> None:
        """The copy's record must give a rewritten file its new hash, or
        conda would report the file as altered."""
        copy_record = self.copy_records.get(rel)
        if copy_record and copy_record.sha256 not in (None, copy.sha256):
            check.problems.append(
                f"{rel}: its sha256_in_prefix in the copy's conda-meta/"
                f"{record.record_file} does not match the file"
            )

    def _expected_unowned(self, rel: str) -> set[str]:
        """The source with the prefix substituted: a too long ``#!`` line of
        a Python script as relocation writes it (the trampoline), or, in a
        script small enough to be one, as conda's clone copies it (the
        prefix replaced and nothing else)."""
        fd = os.open(f"{self.src_root}/{rel}", os.O_RDONLY)
        try:
            if names_old(fd, self.rewrite) and is_utf8_text(fd):
                expected = {
                    sha256(self.rewrite.text_chunks(read_chunks(fd), launcher=True))
                }
                data = os.pread(fd, _WHOLE_SCRIPT + 1, 0)
                if len(data) <= _WHOLE_SCRIPT:
                    expected.add(sha256([self.rewrite.substitute(data)]))
                return expected
            return {sha256(read_chunks(fd))}
        finally:
            os.close(fd)

    def _read(self, path: str) -> Scanned:
        fd = os.open(path, os.O_RDONLY)
        try:
            return scan(fd, self.rewrite, hashing=True)
        finally:
            os.close(fd)


def _bytecode(rel: str) -> bool:
    """A cache Python writes again (``__pycache__``), which conda's clone
    compiles anew: Python uses such a file only while the source file it
    was compiled from matches it."""
    return "__pycache__" in rel.split("/")
