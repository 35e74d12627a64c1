"""What a copy or a check of one environment found, file by file.

Each thread gathers the findings of its task in one of these and the caller
merges them as tasks finish, so no lock is taken per file. The relocate
engine fills every field; the check of conda's clone only the problems,
notes, unsupported attributes, links into a package cache it found as
files, links out of the copy, and the files it checked. Both hold what a path holds to what
conda's records list there by the same rule.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Collection

    from ..records import PathRecord
    from ..snapshot import Listing, Stamp
    from .prefix import PrefixRewrite
    from .share import Written

_FILE_TYPES = {"softlink": "symlink", "directory": "directory"}


@dataclass
class Findings:
    #: Files made (or checked) and the bytes of their sources.
    files: int = 0
    bytes: int = 0
    #: Files whose bytes the copy changed, with the sha256 of the new ones.
    rewritten: dict[str, str] = field(default_factory=dict)
    #: What makes the copy not the environment (a text file that would still
    #: name the old prefix, a record the files contradict): the copy must
    #: not replace the source.
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: For the log only.
    notes: list[str] = field(default_factory=list)
    #: Entries whose extended attributes the copy's filesystem refused.
    unsupported: list[str] = field(default_factory=list)
    #: Package files naming the old prefix in binary data their record does
    #: not describe: copied unchanged, as nothing says how to rewrite them.
    inexact: list[str] = field(default_factory=list)
    #: ``.pyc`` files naming the old prefix (harmless, only counted).
    old_pyc: int = 0
    #: Symlinks into a package cache (conda's softlinks), by their target:
    #: replaced by the files themselves once the copy is made.
    delinked: dict[str, str] = field(default_factory=dict)
    #: Symlinks into a package cache made hard links to an earlier
    #: environment's copy of the file they lead to (see ``share``).
    relinked: list[str] = field(default_factory=list)
    #: Symlinks of the copy that lead out of it, by relative path: where they
    #: lead (see ``prefix.leads_out``).
    links_out: dict[str, str] = field(default_factory=dict)
    #: Files a later environment of the run may link to once this copy is
    #: committed (see ``share``).
    written: list[Written] = field(default_factory=list)
    #: Files made as links to an earlier environment's copy, and their bytes.
    shared_files: int = 0
    shared_bytes: int = 0
    #: Each entry made, by relative path, stamped after the copy's last
    #: change to it (see ``transaction.copy_stamps``).
    stamps: dict[str, Stamp] = field(default_factory=dict)

    def merge(self, other: Findings) -> None:
        """Add ``other``'s findings to these: counts add up, lists extend,
        mappings update. Most of a task's fields are empty, and are skipped:
        the main thread merges a result per directory."""
        for name, theirs in vars(other).items():
            if not theirs:
                continue
            mine = getattr(self, name)
            if isinstance(mine, int):
                setattr(self, name, mine + theirs)
            elif isinstance(mine, list):
                mine.extend(theirs)
            else:
                mine.update(theirs)


def kind_of(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISREG(mode):
        return "file"
    return "special file"


def record_disagrees(record: PathRecord, have: str) -> str | None:
    """What is wrong with a path conda lists, found as a ``have``; a file
    may be a symlink (conda links from the package cache with ``softlink``
    where it can), and a ``softlink`` of a package conda softlinked a file
    (an executable, which that link type copies)."""
    want = _FILE_TYPES.get(record.path_type, "file")
    if have == want or (want == "file" and have == "symlink"):
        return None
    if want == "symlink" and have == "file" and record.softlinked:
        return None
    return f"a {have} in the copy, conda lists a {want}"


def into_package_cache(
    record: PathRecord | None, target: str, rewrite: PrefixRewrite
) -> bool:
    """Whether a symlink of the source to ``target`` is a package file
    linked from the extracted package (conda's ``allow_softlinks`` or
    ``always_softlink``): an absolute target outside the environment, at the
    package's own path for the file. On scratch the cache is purged like the
    rest, so a copy holds the file itself, never the link."""
    return (
        record is not None
        and record.path_type in ("softlink", "hardlink")
        and target.startswith("/")
        and rewrite.retarget(target) == target
        and target.endswith("/" + (record.record_path or record.path))
    )


def check_records(
    records: dict[str, PathRecord],
    listing: Listing,
    restored: Collection[str],
    outcome: Findings,
) -> None:
    """Every path the ``records`` list, against the kind the source holds
    there (the copy holds the same, entry for entry); a path the source
    lacks is only noted, unless the copy ``restored`` it."""
    kinds = {
        rel: kind_of(st.st_mode) for entries in listing.values() for rel, st in entries
    }
    for rel, record in records.items():
        have = kinds.get(rel)
        if have is None:
            if rel not in restored:
                outcome.notes.append(
                    f"{rel}: listed in conda-meta/{record.record_file} "
                    "but missing in the source"
                )
            continue
        problem = record_disagrees(record, have)
        if problem:
            outcome.problems.append(f"{rel}: {problem}")
