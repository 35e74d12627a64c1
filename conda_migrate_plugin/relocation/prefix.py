"""How an environment names its own location inside its files, and how to
change that name the way conda does when it installs a package.

Shared by the relocate engine, which writes the rewritten files, and by the
verification, which recomputes what every rewritten file must contain.
Nothing here imports conda: relocation must work where conda cannot run.
"""

from __future__ import annotations

import os
import re
import time
from typing import TYPE_CHECKING

from ..exceptions import RelocateError
from . import chunks

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

#: conda replaces a placeholder in all of these, in this order (portability.py).
ENCODINGS = ("utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")

#: Linux truncates longer ``#!`` lines; conda then falls back to /usr/bin/env
#: in package files, and to a ``/bin/sh`` trampoline in Python entry points.
MAX_SHEBANG = 127

#: The furthest a NUL may follow the prefix for the bytes between to be
#: taken as one C string (the bound of what is read to patch one).
LONGEST_STRING = 1 << 20

#: A character that continues a path name: ``/scratch/envs/abc`` must not match
#: inside ``/scratch/envs/abc2``, a sibling environment.
_NAME_CHAR = rb"[\w.+~-]"
_SHEBANG = re.compile(rb"#![ ]*(/(?:\\ |[^ \n\r\t])*)(.*)")
_PYTHON = re.compile(rb"python[0-9.]*")


def old_spellings(prefix: Path, scripts: Iterable[str] = ()) -> list[str]:
    """Other names the environment at ``prefix`` goes by in its own files.

    A site's ``$SCRATCH`` is often a symlink, so an environment created
    through the real path (``/gpfs/scratch/u/envs/abc``) is migrated through
    the link (``/scratch/u/envs/abc``) or the other way round, and its files
    name the spelling it was created with. Looked for: the real path, the
    ``-p``/``--prefix`` of the commands in ``conda-meta/history`` (also a
    place that is gone: the environment was created there and moved), and
    the interpreters of the ``#!`` lines of ``scripts`` (relative paths,
    ``bin/`` files) that are this environment's own under another path.
    """
    given = os.path.abspath(prefix)
    found = {os.path.realpath(prefix)}
    created = set(_history_prefixes(prefix / "conda-meta" / "history"))
    for rel in scripts:
        interpreter = _interpreter(prefix / rel)
        if interpreter:
            home, _, name = interpreter.rpartition("/")
            if home.endswith("/bin") and os.path.lexists(prefix / "bin" / name):
                found.add(home[: -len("/bin")] or "/")
    spellings = []
    for spelling in (found | created) - {given}:
        try:
            same = os.path.samefile(spelling, given)
        except OSError:
            same = spelling in created and not os.path.lexists(spelling)
        if same:
            spellings.append(spelling)
    return sorted(spellings)


def _history_prefixes(history: Path) -> Iterator[str]:
    """The absolute ``-p``/``--prefix`` arguments of ``# cmd:`` lines."""
    try:
        lines = history.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return
    for line in lines:
        if not line.startswith("# cmd:"):
            continue
        words = line[len("# cmd:") :].split()
        for i, word in enumerate(words):
            if word.startswith("--prefix="):
                value = word[len("--prefix=") :]
            elif word in ("-p", "--prefix") and i + 1 < len(words):
                value = words[i + 1]
            else:
                continue
            if value.startswith("/"):
                yield os.path.normpath(value)


def _interpreter(path: Path) -> str | None:
    """The absolute interpreter of a ``#!`` line, or None."""
    try:
        # Not a FIFO's writer to wait for, nor a symlink's target elsewhere.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        line = os.pread(fd, 512, 0).split(b"\n", 1)[0]
    except OSError:
        return None
    finally:
        os.close(fd)
    match = _SHEBANG.match(line)
    if match is None:
        return None
    return os.fsdecode(match.group(1)).replace("\\ ", " ")


def link_out(root: str, rel: str, target: str) -> str | None:
    """Where a relative symlink at ``rel`` of the environment at ``root``
    leads, as an absolute path, when that is outside the environment and
    there is something there: the same relative target would lead
    elsewhere from the new place (``share/ref.fa -> ../../../datasets/ref.fa``).
    None for a link that stays inside, is absolute, or dangles (it keeps
    its target, and its meaning, as it was)."""
    if target.startswith("/"):
        return None
    real_root = os.path.realpath(root)
    resolved = os.path.normpath(os.path.join(real_root, os.path.dirname(rel), target))
    if resolved == real_root or resolved.startswith(real_root + "/"):
        return None
    if not os.path.exists(os.path.join(root, rel)):
        return None
    return resolved


def copied_link(
    rewrite: PrefixRewrite, root: str, rel: str, target: str
) -> tuple[str, str | None]:
    """The target a copy's symlink at ``rel`` gets, whichever engine made
    the copy (conda's clone copies a link no package owns as it is), and
    the log's note when a relative link out of the environment at ``root``
    became absolute so as to lead where it led."""
    outside = link_out(root, rel, target)
    if outside is None:
        return rewrite.retarget(target), None
    return outside, (
        f"{rel}: its relative target {target} leaves the environment; "
        f"it now links to {outside}, where that led"
    )


def leads_out(root: str, rel: str, target: str) -> str | None:
    """Where a symlink at ``rel`` of the environment at ``root``, to
    ``target``, leads when that is outside it, as an absolute path (resolved
    by its spelling, with no call to the filesystem: the copy and its check
    read each link anyway): what the environment uses that a move leaves
    where it was."""
    resolved = os.path.normpath(os.path.join(root, os.path.dirname(rel), target))
    if resolved == root or resolved.startswith(root + "/"):
        return None
    return resolved


def conda_bookkeeping(rel: str) -> bool:
    """``conda-meta``'s package records and history, which name the old prefix
    by right (the package cache's paths, the commands run): copied as they
    are, then edited by the relocate engine itself."""
    return rel.startswith("conda-meta/") and (
        rel == "conda-meta/history" or rel.endswith(".json")
    )


class PrefixRewrite:
    """Replaces the old prefix with the new one, as conda replaces a placeholder.

    Text files: every occurrence, in each of conda's encodings; a ``#!`` line
    gets spaces escaped and, when too long, falls back to ``/usr/bin/env`` as
    conda does in package files, or, in scripts started by the environment's
    Python (``launcher=True``), to the ``/bin/sh`` trampoline that conda
    writes into entry points and pip into console scripts, which needs no
    ``python`` on ``PATH``. Binary files: each C string naming the old prefix
    is rewritten in place and NUL-padded to its old length; a longer new
    prefix may use the NULs that followed, which are the room a longer
    placeholder left at install time, and never more than that room.

    ``aliases`` are other spellings of the old prefix (see ``old_spellings``):
    each is rewritten and looked for as the old prefix is.
    """

    def __init__(self, old: str, new: str, aliases: Iterable[str] = ()) -> None:
        self.old = old
        self.new = new
        #: Longest first: a shorter spelling may be the tail of a longer one
        #: (``/scratch/u/x`` inside ``/gpfs/scratch/u/x``).
        self.olds = sorted({old, *aliases}, key=len, reverse=True)
        self.old_bytes = old.encode()
        self.olds_bytes = tuple(o.encode() for o in self.olds)
        self.new_bytes = new.encode()
        self._old_utf8 = re.compile(
            b"(?:"
            + b"|".join(map(re.escape, self.olds_bytes))
            + b")(?!"
            + _NAME_CHAR
            + b")"
        )
        self._others = [
            (o.encode(e), new.encode(e)) for e in ENCODINGS[1:] for o in self.olds
        ]
        needles = [*self.olds_bytes, *(o for o, _ in self._others)]
        #: Bytes kept back between chunks so no match (plus the one byte of
        #: lookahead) is ever split.
        self.keep = max(len(n) for n in needles) + 4
        self._needles = needles
        self._new_holds_old = bool(self._old_utf8.search(self.new_bytes))

    def retarget(self, target: str) -> str:
        """A symlink's target: moved into the new prefix when it is absolute
        and inside the old one, kept as it is otherwise."""
        for old in self.olds:
            if target == old or target.startswith(old + "/"):
                return self.new + target[len(old) :]
        return target

    def names_old(self, data: bytes, *, more: bool = False) -> bool:
        """Whether ``data`` still names the old prefix (as a path, not as
        part of the new prefix or of a sibling's name). ``more``: bytes
        follow ``data`` (it is a piece of a file), so a name ending ``data``
        is not decided yet: the byte after it may make it a sibling's."""
        if not any(old in data for old in self.olds_bytes):
            return False
        if self._new_holds_old:
            data = data.replace(self.new_bytes, b"")
        return any(
            not more or match.end() < len(data)
            for match in self._old_utf8.finditer(data)
        )

    def substitute(self, data: bytes) -> bytes:
        if any(old in data for old in self.olds_bytes):
            data = self._old_utf8.sub(lambda _: self.new_bytes, data)
        for old, new in self._others:
            if old in data:
                data = data.replace(old, new)
        return data

    def _shebang(self, line: bytes, launcher: bool) -> bytes:
        escaped = self.new_bytes.replace(b" ", b"\\ ")
        line = self._old_utf8.sub(lambda _: escaped, line)
        match = _SHEBANG.match(line)
        if match:
            executable, options = match.groups()
            directory, _, name = executable.rpartition(b"/")
            if launcher and directory == escaped + b"/bin" and _PYTHON.fullmatch(name):
                # conda's entry points and pip's scripts count the newline.
                if len(line) < MAX_SHEBANG and b"\\ " not in directory:
                    return line
                # Both shell and Python: sh runs the quoted exec, Python
                # reads a string literal and goes on to the next line.
                python = self.new_bytes + b"/bin/" + name
                return b"#!/bin/sh\n'''exec' \"%s\"%s \"$0\" \"$@\" #'''" % (
                    python,
                    options,
                )
            if len(line) > MAX_SHEBANG or b"\\ " in directory:
                line = b"#!/usr/bin/env " + name + options
        return line

    def text_chunks(
        self, chunks: Iterable[bytes], *, launcher: bool = False
    ) -> Iterator[bytes]:
        """The text of ``chunks`` with the prefix replaced, streamed;
        ``launcher`` for scripts no package file is (see the class)."""
        carry = b""
        first = True
        for chunk in chunks:
            buf = carry + chunk
            if first:
                first = False
                end = buf.find(b"\n")
                if buf.startswith(b"#!") and end > 0 and self.names_old(buf[:end]):
                    yield self._shebang(buf[:end], launcher)
                    buf = buf[end:]
            cut = self._safe_cut(buf)
            if cut > 0:
                yield self.substitute(buf[:cut])
                buf = buf[cut:]
            carry = buf
        if carry:
            yield self.substitute(carry)

    def _safe_cut(self, buf: bytes) -> int:
        """Where ``buf`` may be split without splitting a match or its lookahead."""
        cut = len(buf) - self.keep
        moved = True
        while cut > 0 and moved:
            moved = False
            for needle in self._needles:
                start = buf.find(
                    needle, max(0, cut - len(needle)), cut + len(needle) + 1
                )
                if start != -1 and start < cut:
                    cut, moved = start, True
        return cut

    def binary_patches(
        self, fd: int, placeholder: str, name: str
    ) -> list[tuple[int, bytes]]:
        """Where and with what to overwrite a binary file, as (offset, bytes).

        Raises RelocateError naming ``name`` when a string would need more room
        than the placeholder left.
        """
        patches: list[tuple[int, bytes]] = []
        for encoding in ENCODINGS:
            replacement = self.new.encode(encoding)
            zero = "\0".encode(encoding)
            spellings = [old.encode(encoding) for old in self.olds]
            covered: list[tuple[int, int]] = []
            for search in spellings:
                for start in chunks.find_all(fd, search):
                    if any(lo <= start < hi for lo, hi in covered):
                        continue
                    if encoding == "utf-8":
                        after = os.pread(fd, 1, start + len(search))
                        if after and re.match(_NAME_CHAR, after):
                            continue
                    end = chunks.find_from(fd, zero, start + len(search))
                    if end < 0 or end - start > LONGEST_STRING:
                        # No C string (conda's pattern would not match either).
                        continue
                    end += len(zero)
                    string = os.pread(fd, end - start, start)
                    patched = self._patch_string(
                        string, spellings, replacement, placeholder.encode(encoding)
                    )
                    if patched is None or (
                        len(patched) > len(string)
                        and os.pread(fd, len(patched) - len(string), end)
                        != b"\0" * (len(patched) - len(string))
                    ):
                        raise RelocateError(
                            f"{name}: the new prefix {self.new} ({len(self.new)} "
                            f"characters) does not fit in this binary file, which "
                            f"has room for {len(placeholder)} characters",
                            hint="Only conda's clone (--method clone) can move this "
                            "environment to that path, or choose a shorter path.",
                        )
                    if len(patched) < len(string):
                        patched += b"\0" * (len(string) - len(patched))
                    patches.append((start, patched))
                    covered.append((start, start + len(patched)))
        patches.sort()
        return patches

    @staticmethod
    def _patch_string(
        string: bytes, spellings: list[bytes], replacement: bytes, placeholder: bytes
    ) -> bytes | None:
        """A C string with every spelling replaced (longest first), or None
        when it grew by more than the room the placeholder left: each
        occurrence may take what its spelling is shorter than the
        placeholder."""
        original, room = len(string), 0
        for search in spellings:
            room += string.count(search) * (len(placeholder) - len(search))
            string = string.replace(search, replacement)
        return None if len(string) - original > room else string


def append_history(staging: Path, rewrite: PrefixRewrite) -> str:
    """One line in the copy at ``staging`` saying where it came from
    (``conda-meta/history`` keeps its past commands verbatim); the file's
    path."""
    rel = "conda-meta/history"
    history = staging / rel
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    line = (
        f"# conda-migrate: relocated from {rewrite.old} to {rewrite.new} at {stamp}\n"
    )
    existing = history.read_bytes() if history.exists() else b""
    with history.open("ab") as fh:
        if existing and not existing.endswith(b"\n"):
            fh.write(b"\n")
        fh.write(line.encode())
    return rel
