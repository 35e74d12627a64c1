"""Discovery, before the README's steps: find the environments to migrate.

Discovery looks only at each candidate's top level (``conda-meta/history``,
conda's own test for an environment) and never walks inside one, so a
directory of hundreds of environments on a slow parallel filesystem is
scanned in a moment.
"""

from __future__ import annotations

import os
import shlex
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .classify import Kind, classify, is_environment
from .names import REMOVING_SUFFIX

if TYPE_CHECKING:
    from collections.abc import Iterable


@dataclass(frozen=True)
class Candidate:
    """A directory that may be an environment; ``reason`` says why it is not."""

    name: str
    prefix: Path
    reason: str = ""

    @property
    def valid(self) -> bool:
        return not self.reason


#: Control characters and the Unicode line and paragraph separators, on
#: which Python's ``splitlines`` (and so environments.txt readers) break.
_LINE_BREAKING = {"Cc", "Zl", "Zp"}


def _breaks_lines(text: str) -> bool:
    return any(unicodedata.category(c) in _LINE_BREAKING for c in text)


def _one_line(name: str) -> str:
    """``name`` with those characters escaped, so that it prints as one line."""
    return "".join(
        repr(c)[1:-1] if unicodedata.category(c) in _LINE_BREAKING else c for c in name
    )


def _utf8(text: str) -> bool:
    """Bytes that are not UTF-8 reach Python as surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shell_bytes(path: Path) -> str:
    """``path`` as bash reads its bytes back: ``$'...'`` with ``\\xNN``."""
    escaped = "".join(
        chr(byte)
        if 0x20 <= byte < 0x7F and chr(byte) not in "'\\"
        else f"\\x{byte:02x}"
        for byte in os.fsencode(path)
    )
    return f"$'{escaped}'"


def _latin1(path: Path) -> Path:
    """A UTF-8 name for ``path``: each byte that is not UTF-8 read as
    Latin-1, the usual source of such names (``r\\xe9sultats`` becomes
    ``résultats``)."""
    return Path(
        "".join(
            chr(ord(c) - 0xDC00) if 0xDC80 <= ord(c) <= 0xDCFF else c for c in str(path)
        )
    )


def examine(prefix: Path) -> Candidate:
    """Decide whether ``prefix`` is an environment, and if not, why."""
    name = prefix.name
    if name in ("", ".", ".."):
        return Candidate(str(prefix), prefix, "not a directory name of its own")
    if _breaks_lines(str(prefix)):
        # environments.txt holds one prefix a line: such a prefix could
        # never be registered, nor unregistered once it was.
        where = "name" if _breaks_lines(name) else "path"
        return Candidate(
            _one_line(name),
            prefix,
            f"its {where} contains a newline or another control character, "
            "which conda's environments.txt cannot record; rename it to migrate it",
        )
    if name.startswith(".") and name.endswith(REMOVING_SUFFIX):
        return Candidate(
            name,
            prefix,
            "the remains of an environment whose removal was interrupted; "
            "the run that migrated it deletes them when run again",
        )
    try:
        return _examine_entry(prefix, name)
    except PermissionError:
        return Candidate(name, prefix, "cannot be read (permission denied)")
    except OSError as err:
        return Candidate(name, prefix, f"cannot be read ({err.strerror})")


def _examine_entry(prefix: Path, name: str) -> Candidate:
    """What the entry on disk is, from its type and its conda-meta; the
    lookups may fail, and the caller says why."""
    if prefix.is_symlink():
        target = os.path.realpath(prefix)
        return Candidate(
            name, prefix, f"a symlink to {target} (migrate that directory)"
        )
    if not prefix.is_dir():
        return Candidate(name, prefix, "not a directory")
    kind = classify(prefix)
    if kind is Kind.ENVIRONMENT and not _utf8(str(prefix)):
        where = "name" if not _utf8(name) else "path"
        return Candidate(
            name,
            prefix,
            f"its {where} is not valid UTF-8, which conda's environments.txt "
            "cannot record; rename it to migrate it, e.g.: "
            f"mv {_shell_bytes(prefix)} {shlex.quote(str(_latin1(prefix)))}",
        )
    if kind is Kind.ENVIRONMENT:
        return Candidate(name, prefix)
    if kind is Kind.PACKAGE_CACHE:
        return Candidate(name, prefix, "a package cache, not an environment")
    if (prefix / "conda-meta").is_dir():
        return Candidate(name, prefix, "conda-meta/history is missing")
    return Candidate(name, prefix, "no conda-meta directory")


def scan_directory(directory: Path) -> list[Candidate]:
    """Examine each subdirectory of ``directory``, or ``directory`` itself
    when it is an environment (``-d`` may name one environment, valid or not:
    a symlink to one is reported as such, not as its subdirectories)."""
    itself = examine(directory)
    if itself.valid or is_environment(directory):
        return [itself]
    with os.scandir(directory) as entries:
        children = sorted(
            Path(entry.path) for entry in entries if entry.is_dir(follow_symlinks=True)
        )
    return [examine(child) for child in children]


def under(path: Path, directory: Path) -> bool:
    """True when ``path`` lies inside ``directory``, following symlinks, since
    ``$SCRATCH`` is often reached through one (``/scratch/u`` -> ``/gpfs/...``)."""
    resolved, root = path.resolve(), directory.resolve()
    return resolved != root and resolved.is_relative_to(root)


def scratch_environments(
    known_prefixes: Iterable[Path], scratch: Path
) -> list[Candidate]:
    """The environments conda knows of that live under ``$SCRATCH``, each
    once: conda may know one by two paths (created through ``~/scratch``,
    listed in ``envs_dirs`` by the real one), and a name listed twice would
    refuse both. The spelling under ``$SCRATCH`` as set is the one kept."""
    seen: set[Path] = set()
    found = []
    known = sorted(known_prefixes, key=lambda p: not p.is_relative_to(scratch))
    for prefix in known:
        if not under(prefix, scratch) or prefix.resolve() in seen:
            continue
        seen.add(prefix.resolve())
        found.append(examine(prefix))
    return sorted(found, key=lambda candidate: candidate.prefix)
