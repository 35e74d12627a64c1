"""Step 5: point the user's startup files, condarc files and Jupyter kernels at migrated envs.

After a migration the old prefixes are gone, so every line that still names them
breaks the next login, and a condarc or ``CONDA_ENVS_PATH`` that still names the
scanned scratch directory makes conda create new environments there again.

Files are edited as bytes and only the matched paths change, because these are
hand-kept files: comments, CRLF line ends, Latin-1 bytes and a missing final newline
must survive. Paths are matched in the spellings users write them in: absolute, ``~/``,
``$HOME/``, ``${HOME}/`` (when the old path lies under the home directory) and
``$SCRATCH/``, ``${SCRATCH}/`` (when ``SCRATCH`` is set in the given environment). A
path written relative to home keeps that spelling, since it expands the same way
wherever the old one did; one written with ``$SCRATCH`` or ``${SCRATCH}`` is written
with ``$HOME`` or ``${HOME}``; an absolute one stays absolute. Occurrences in comments and heredocs are
rewritten too: a commented-out ``conda activate`` is usually switched back on later.

A file that is read-only or hard-linked is reported and left as it is, with its diff
still shown: the user made it so on purpose, or a rename would split the links.

This module must not import conda: it runs, and is tested, without it.
"""

from __future__ import annotations

import bisect
import difflib
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

from .names import BACKUP_SUFFIX
from .safety.atomic import write_atomically, write_new

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from typing import Any

    from ruamel.yaml.nodes import Node

#: The kinds of file rewritten, each by its own rules.
RcKind = Literal["shell", "condarc", "kernel"]

SHELL_FILES = (".bashrc", ".bash_profile", ".profile", ".zshrc")

#: The user-level files of conda's own search path, in its order.
CONDARC_FILES = (
    ".config/conda/.condarc",
    ".config/conda/condarc",
    ".conda/.condarc",
    ".conda/condarc",
    ".condarc",
)

#: condarc keys (and conda's alias ``envs_path``) with the destination their entries take.
_CONDARC_KEYS = {"envs_dirs": "envs", "envs_path": "envs", "pkgs_dirs": "pkgs"}

#: conda splits ``CONDA_PKGS_DIRS`` on commas but the envs variables on ``os.pathsep``.
_DIR_VARIABLES = {
    b"CONDA_ENVS_PATH": ("envs", b":"),
    b"CONDA_ENVS_DIRS": ("envs", b":"),
    b"CONDA_PKGS_DIRS": ("pkgs", b","),
}

_HOME_SPELLINGS = ("~", "$HOME", "${HOME}")
_SCRATCH_SPELLINGS = ("$SCRATCH", "${SCRATCH}")
_HOME_FOR_SCRATCH = {"$SCRATCH": "$HOME", "${SCRATCH}": "${HOME}"}

# A path starts a word after a shell/list delimiter, or behind a one-letter option
# (``-L/x/lib``); after a letter, ``/``, ``~`` or ``}`` it is the tail of another path.
_PATH_START = rb"(?<![^\s\"'`=:;,|&<>(\[{])(-[A-Za-z])?"
# Anything but ``/`` or a delimiter after the prefix means a longer name (``abcd``).
_PATH_END = rb"(?![^/\s\"'`:;,|&<>()\[\]{}])"

_ASSIGNMENT = re.compile(
    rb"(?<![^\s;&|(])(" + b"|".join(_DIR_VARIABLES) + rb")="
    rb"(\"[^\"\n]*\"|'[^'\n]*'|[^\s;&|()\"'`]*)(?![^\s;&|)])"
)


@dataclass(frozen=True)
class EnvMove:
    source: Path  # old prefix, e.g. /scratch/u/conda-envs/abc
    dest: Path  # new prefix, e.g. /home/u/.conda/envs/abc


@dataclass(frozen=True)
class DirMove:
    source: Path  # the scanned scratch directory, e.g. /scratch/u/conda-envs
    envs_dest: Path  # e.g. /home/u/.conda/envs
    pkgs_dest: Path  # e.g. /home/u/.conda/pkgs


@dataclass
class RcEdit:
    path: Path  # the file as found (may be a symlink)
    target: Path  # the real file that is written
    old: bytes
    new: bytes
    diff: str  # unified diff text, ready to print
    error: str | None = None  # unreadable, unparsable or refused; then unwritten
    backup: Path | None = None  # set by apply_rc_edits
    #: Lines that still name an old prefix in a form not rewritten.
    warnings: list[str] = field(default_factory=list)


class _Unsafe(Exception):
    """A file this module will not edit, with the reason shown to the user."""


@dataclass(frozen=True)
class _Rewriter:
    """The rules for one run, shared by the three kinds of file."""

    env_moves: Sequence[EnvMove]
    dir_moves: Sequence[DirMove]
    home: Path
    scratch: Path | None
    environ: Mapping[str, str] = field(default_factory=dict)

    def shell(self, data: bytes) -> bytes:
        return _ASSIGNMENT.sub(self._assignment, self.expanded(self.prefixes(data)))

    def expanded(self, data: bytes) -> bytes:
        """Rewrite the old prefixes the shell reads out of variables and
        quotes (``/scratch/$USER/envs/abc``, ``"$SCRATCH"/envs/abc``, a
        variable the file itself sets), each in the manner it was written;
        only those spans change."""
        lines = _lines(data)
        shell = _Shell(self._variables_known())
        # A file of repeated lines is read once per distinct line, while no
        # assignment changed what they expand to.
        done: dict[tuple[bytes, int], bytes] = {}
        for number, line in enumerate(lines):
            key = (line, shell.generation)
            if key in done:
                lines[number] = done[key]
                continue
            text = line.decode("utf-8", "surrogateescape")
            if self._may_name_prefix(text):
                spans = [
                    (start, end, self._respell(text[start:end], dest, before, after))
                    for start, end, dest, before, after in self._expansions(shell, text)
                ]
                for start, end, new in sorted(spans, reverse=True):
                    text = text[:start] + new + text[end:]
                lines[number] = _encode(text)
            shell.read_assignments(text)
            if shell.generation == key[1]:
                done[key] = lines[number]
        return b"".join(lines)

    def unrewritten(self, data: bytes) -> list[str]:
        """The lines that, as the shell reads them, still name an old prefix
        (a variable this run cannot know, ``${VAR:-default}``, a prefix cut
        by a variable): listed for the user, never guessed at."""
        found = []
        shell = _Shell(self._variables_known())
        named: dict[tuple[bytes, int], list[Path]] = {}
        for number, line in enumerate(_lines(data), 1):
            key = (line, shell.generation)
            text = line.decode("utf-8", "surrogateescape")
            if key not in named:
                sources = []
                if self._may_name_prefix(text):
                    sources = list(self._still_named(shell, text))
                shell.read_assignments(text)
                if shell.generation == key[1]:
                    named[key] = sources
            else:
                sources = named[key]
            found += [
                f"line {number} still names {source} in a form this run "
                f"does not rewrite: {text.rstrip()}"
                for source in sources
            ]
        return found

    def _variables_known(self) -> dict[str, str]:
        return {**self.environ, "HOME": str(self.home)}

    def _may_name_prefix(self, text: str) -> bool:
        """Only a line with a variable, a quote or an escape can hide a
        prefix from the plain rewrite, and it ends in the environment's name."""
        return any(c in text for c in "$\"'\\") and any(
            move.source.name in text for move in self.env_moves
        )

    def _expansions(
        self, shell: _Shell, text: str
    ) -> Iterator[tuple[int, int, Path, str, str]]:
        """Spans of ``text`` that expand to an old prefix as a whole path,
        with the new prefix and the quoting in force at either end."""
        for word in shell.words(text):
            for move in self.env_moves:
                for span in word.spans_of(str(move.source)):
                    start, end, before, after = span
                    original = text[start:end]
                    if "$" in original or any(q in original for q in "\"'\\"):
                        yield start, end, move.dest, before, after

    def _still_named(self, shell: _Shell, text: str) -> Iterator[Path]:
        for word in shell.words(text):
            for move in self.env_moves:
                tail = f"/{move.source.parent.name}/{move.source.name}"
                if word.names(str(move.source)) or word.names_after_unknown(tail):
                    yield move.source

    def _respell(self, original: str, dest: Path, before: str, after: str) -> str:
        """``dest`` for a span that starts inside quote ``before`` and must
        end inside quote ``after``: spelled with ``$HOME`` (``${HOME}``)
        where the old one used a variable, absolute otherwise."""
        if "$" in original and self.home in dest.parents:
            variable = "${HOME}" if "${" in original else "$HOME"
            head, quote = variable, before
            if before == "'":  # no expansion inside single quotes
                head, quote = "'" + variable, ""
            return head + _requote(quote, after) + f"/{dest.relative_to(self.home)}"
        return str(dest) + _requote(before, after)

    def prefixes(self, data: bytes) -> bytes:
        """Replace every spelling of every old prefix that stands as a whole path."""
        pattern, spellings = self._prefix_pattern
        return pattern.sub(lambda m: (m[1] or b"") + spellings[m[2]], data)

    @cached_property
    def _prefix_pattern(self) -> tuple[re.Pattern[bytes], dict[bytes, bytes]]:
        spellings = {
            old: new
            for move in self.env_moves
            for old, new in self._spellings(move.source, move.dest)
        }
        # Longest first, so a prefix nested in another one cannot take its match.
        alternatives = b"|".join(
            re.escape(s) for s in sorted(spellings, key=len, reverse=True)
        )
        # With no moves, "(?!)" is a group that never matches.
        group = b"(" + (alternatives or b"(?!)") + b")"
        return re.compile(_PATH_START + group + _PATH_END), spellings

    def _spellings(self, source: Path, dest: Path) -> Iterator[tuple[bytes, bytes]]:
        yield os.fsencode(source), os.fsencode(dest)
        for variable, base in self._variables():
            if base is not None and base in source.parents:
                old = f"{variable}/{source.relative_to(base)}"
                yield _encode(old), _encode(self._spell(dest, old))

    def _variables(self) -> Iterator[tuple[str, Path | None]]:
        yield from ((spelling, self.home) for spelling in _HOME_SPELLINGS)
        yield from ((spelling, self.scratch) for spelling in _SCRATCH_SPELLINGS)

    def _assignment(self, match: re.Match[bytes]) -> bytes:
        kind, separator = _DIR_VARIABLES[match[1]]
        value = match[2]
        quote = value[:1] if value[:1] in (b'"', b"'") else b""
        inner = value[len(quote) : len(value) - len(quote)]
        entries = [e.decode("utf-8", "surrogateescape") for e in inner.split(separator)]
        relocated = self.relocate(entries, kind)
        if relocated == entries:
            return match[0]
        kept = separator.join(_encode(e) for e in relocated if e is not None)
        return match[1] + b"=" + quote + kept + quote

    def relocate(self, entries: Sequence[str], kind: str) -> list[str | None]:
        """New spelling of each directory entry; None drops it.

        An entry is dropped when it duplicates an earlier one and either of them was
        relocated, so "replaced" never means "listed twice", while the first entry (the
        one conda creates new environments in) keeps its position.
        """
        result: list[str | None] = []
        seen: dict[Path, bool] = {}
        for entry in entries:
            path = self._expand(entry)
            if path is None:
                result.append(entry)
                continue
            move = next((m for m in self.dir_moves if _is_within(path, m.source)), None)
            if move is not None:
                path = move.envs_dest if kind == "envs" else move.pkgs_dest
            if path in seen and (move is not None or seen[path]):
                result.append(None)
                continue
            seen.setdefault(path, move is not None)
            result.append(entry if move is None else self._spell(path, entry))
        return result

    def _expand(self, entry: str) -> Path | None:
        for variable, base in self._variables():
            if base is not None and _spelled_with(entry, variable):
                entry = str(base) + entry[len(variable) :]
                break
        if not entry.startswith("/") or "$" in entry:
            return None
        return Path(os.path.normpath(entry))

    def _spell(self, dest: Path, old: str) -> str:
        """The new path in the old one's manner: a path the user spelled with
        a variable keeps one (``$SCRATCH/x`` becomes ``$HOME/.conda/envs/x``,
        ``${SCRATCH}`` becomes ``${HOME}``), which reads as what it is."""
        if self.home in dest.parents:
            for variable in (*_HOME_SPELLINGS, *_SCRATCH_SPELLINGS):
                if _spelled_with(old, variable):
                    home = _HOME_FOR_SCRATCH.get(variable, variable)
                    return f"{home}/{dest.relative_to(self.home)}"
        return str(dest)

    def condarc(self, data: bytes) -> bytes:
        """Splice new entries into the text that ruamel.yaml located.

        ruamel's round-trip dumper re-indents the whole document to one style, so the
        parser only locates the scalars; everything around them is kept byte for byte,
        and the result is loaded again to prove that only the planned entries changed.
        """
        text = data.decode("utf-8")
        root = YAML(typ="rt").compose(text)
        if not isinstance(root, MappingNode):
            return data
        document = _settings(text)
        uses = _node_uses(root)
        splices: list[tuple[int, int, str]] = []
        planned: dict[str, list[object]] = {}
        for key, value in root.value:
            kind = _CONDARC_KEYS.get(key.value) if isinstance(key, ScalarNode) else None
            if kind is None or not isinstance(value, SequenceNode):
                continue
            entries = _entries(value)
            relocated = self.relocate(entries, kind)
            for position, (item, old, new) in enumerate(
                zip(value.value, entries, relocated)
            ):
                if new == old:
                    continue
                if uses[id(value)] > 1 or uses[id(item)] > 1:
                    raise _Unsafe(
                        f"{key.value} entry {old} is shared through a YAML alias"
                    )
                if new is None:
                    splices.append(_removal(text, value, position))
                else:
                    splices.append(_replacement(text, item, new))
            planned[key.value] = [
                loaded if new == old else new
                for loaded, old, new in zip(document[key.value], entries, relocated)
                if new is not None
            ]
        if not splices:
            return data
        for start, end, replacement in sorted(splices, reverse=True):
            text = text[:start] + replacement + text[end:]
        document.update(planned)
        if _settings(text) != document:
            raise _Unsafe("cannot be edited without changing other settings")
        return text.encode("utf-8")

    def kernel(self, data: bytes) -> bytes:
        """Touch a kernel spec only when its command or environment uses a moved env."""
        if not self._kernel_uses_prefix(json.loads(data)):
            return data
        new = self.prefixes(data)
        if self._kernel_uses_prefix(json.loads(new)):
            raise _Unsafe(
                "names a migrated environment in a form that cannot be rewritten"
            )
        return new

    def _kernel_uses_prefix(self, spec: object) -> bool:
        if not isinstance(spec, dict):
            return False
        argv, env = spec.get("argv"), spec.get("env")
        strings = [
            *(argv if isinstance(argv, list) else ()),
            *(env.values() if isinstance(env, dict) else ()),
        ]
        pattern, _ = self._prefix_pattern
        return any(isinstance(s, str) and pattern.search(_encode(s)) for s in strings)


#: What ends a shell word outside quotes.
_BREAKS = " \t\r\n;&|()<>`"
_TOKEN = re.compile(
    r"\$(?P<name>[A-Za-z_]\w*)"  # $NAME
    r"|\$\{(?P<braced>[^}]*)\}"  # ${NAME}, ${NAME:-default}
    r"|\\(?P<escaped>.)"  # \x
    r"|(?P<quote>[\"'])"
    r"|(?P<breaks>[" + re.escape(_BREAKS) + r"]+)"
    r"|(?P<plain>[^$\\\"'" + re.escape(_BREAKS) + r"]+|\$)",
    re.DOTALL,
)
_VARIABLE = re.compile(r"[A-Za-z_]\w*")
_SETS = re.compile(r"([A-Za-z_]\w*)=")
#: Stands for what a variable this run cannot know expands to.
_UNKNOWN = "\0"


@dataclass
class _Piece:
    """A piece of a shell word: its span in the line, what the shell makes of
    it, and the quote in force before and after it."""

    start: int
    end: int
    value: str
    literal: bool  # a character for a character: any point inside is a boundary
    before: str
    after: str


@dataclass
class _Word:
    pieces: list[_Piece]

    @cached_property
    def value(self) -> str:
        return "".join(piece.value for piece in self.pieces)

    @cached_property
    def _offsets(self) -> list[int]:
        offsets, at = [], 0
        for piece in self.pieces:
            offsets.append(at)
            at += len(piece.value)
        return offsets

    def _occurrences(self, path: str) -> Iterator[tuple[int, int]]:
        """Where ``path`` stands as a whole path in the expanded word: at its
        start or after ``=`` or ``:``, followed by its end, ``/`` or ``:``."""
        value = self.value
        at = value.find(path)
        while at != -1:
            end = at + len(path)
            if (at == 0 or value[at - 1] in "=:") and value[end : end + 1] in (
                "",
                "/",
                ":",
            ):
                yield at, end
            at = value.find(path, at + 1)

    def names(self, path: str) -> bool:
        return any(True for _ in self._occurrences(path))

    def names_after_unknown(self, tail: str) -> bool:
        """``tail`` follows a variable this run cannot expand."""
        value = self.value
        unknown = value.find(_UNKNOWN)
        if unknown == -1:
            return False
        at = value.find(tail, unknown)
        end = at + len(tail)
        return at != -1 and value[end : end + 1] in ("", "/", ":")

    def spans_of(self, path: str) -> Iterator[tuple[int, int, str, str]]:
        """The spans in the line that expand to ``path``, with the quote in
        force at either end; a prefix that starts or ends inside what one
        variable expands to cannot be rewritten and is not yielded."""
        for at, end in self._occurrences(path):
            first = self._piece_at(at)
            last = self._piece_at(end - 1)
            head, tail = self.pieces[first], self.pieces[last]
            into_head = at - self._offsets[first]
            out_of_tail = self._offsets[last] + len(tail.value) - end
            if not head.literal and into_head or not tail.literal and out_of_tail:
                continue
            start = head.start + (into_head if head.literal else 0)
            stop = tail.end - (out_of_tail if tail.literal else 0)
            yield start, stop, head.before, tail.after

    def _piece_at(self, offset: int) -> int:
        """The piece whose value holds character ``offset`` of the word."""
        index = bisect.bisect_right(self._offsets, offset) - 1
        while not self.pieces[index].value:  # quotes expand to nothing
            index += 1
        return index


class _Shell:
    """Reads lines as the shell splits and expands them, far enough to see
    paths: quotes, ``$NAME`` and ``${NAME}``, backslashes, and the variables
    set on earlier lines. Anything else (``${NAME:-x}``, a variable not set
    here) is unknown, and never taken for a path."""

    def __init__(self, variables: dict[str, str]) -> None:
        self.variables = variables
        #: Counts the assignments read: what a line expands to may change.
        self.generation = 0

    def words(self, text: str) -> Iterator[_Word]:
        pieces: list[_Piece] = []
        quote = ""
        for token in _TOKEN.finditer(text):
            kind, start, end = token.lastgroup, token.start(), token.end()
            if kind == "breaks" and not quote:
                if pieces:
                    yield self._read(_Word(pieces))
                pieces = []
                continue
            if kind == "quote" and quote in ("", token[0]):
                new = "" if quote else token[0]
                pieces.append(_Piece(start, end, "", True, quote, new))
                quote = new
                continue
            if quote == "'" or kind in ("plain", "breaks", "quote"):
                value, literal = token[0], True
            elif kind == "escaped":
                value, literal = token["escaped"], False
            else:
                name = token["name"] or token["braced"]
                value = self.variables.get(name, _UNKNOWN)
                if not _VARIABLE.fullmatch(name):
                    value = _UNKNOWN
                literal = False
            pieces.append(_Piece(start, end, value, literal, quote, quote))
        if pieces:
            yield self._read(_Word(pieces))

    def _read(self, word: _Word) -> _Word:
        """``NAME=value`` (after ``export`` or not) sets NAME for the words
        after it; a value this run cannot know unsets it."""
        assignment = _SETS.match(word.value)
        if assignment:
            self.generation += 1
            value = word.value[assignment.end() :]
            if _UNKNOWN in value:
                self.variables.pop(assignment[1], None)
            else:
                self.variables[assignment[1]] = value
        return word

    def read_assignments(self, text: str) -> None:
        """The variables ``text`` sets, as the lines after it see them."""
        if "=" in text:
            for _ in self.words(text):
                pass


def _requote(have: str, want: str) -> str:
    """The quote characters that turn quoting ``have`` into ``want``."""
    if have == want:
        return ""
    return have + want


def plan_rc_edits(
    env_moves: Sequence[EnvMove],
    dir_moves: Sequence[DirMove],
    home: Path,
    environ: Mapping[str, str],
) -> list[RcEdit]:
    """Reads the candidate files, computes the new bytes; writes nothing.

    Returns only files that change, that had an error or that still name an old
    prefix in a form not rewritten (``warnings``), so the caller can print every
    diff before (or, for ``--dry-run``, instead of) applying them.
    """
    scratch = _environ_path(environ, "SCRATCH")
    rewriter = _Rewriter(env_moves, dir_moves, home, scratch, environ)
    rewrite = {
        "shell": rewriter.shell,
        "condarc": rewriter.condarc,
        "kernel": rewriter.kernel,
    }
    edits = []
    for path, kind in _candidates(home, environ):
        target = Path(os.path.realpath(path))
        try:
            old = target.read_bytes()
        except OSError as error:
            edits.append(RcEdit(path, target, b"", b"", "", f"cannot be read: {error}"))
            continue
        try:
            new = rewrite[kind](old)
        except (_Unsafe, YAMLError, ValueError) as error:
            edits.append(RcEdit(path, target, old, old, "", f"left unchanged: {error}"))
            continue
        warnings = rewriter.unrewritten(new) if kind == "shell" else []
        if new != old or warnings:
            diff = _diff(path, old, new) if new != old else ""
            edits.append(RcEdit(path, target, old, new, diff, warnings=warnings))
    return edits


def apply_rc_edits(
    edits: Sequence[RcEdit],
    now: datetime | None = None,
    backups: dict[Path, Path] | None = None,
) -> list[RcEdit]:
    """Back up and atomically rewrite each planned change; return the edits attempted.

    Each returned edit has ``backup`` set (written) or ``error`` set (untouched, or
    backed up but not replaced); one failing file does not stop the others.
    ``backups`` maps the files already backed up earlier in the run to their backup,
    which they keep: a run edits a file once per environment, and the backup a user
    wants back is the file as it was before the run.
    """
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    backups = {} if backups is None else backups
    attempted = [e for e in edits if e.error is None and e.old != e.new]
    for edit in attempted:
        try:
            _apply(edit, stamp, backups)
        except (_Unsafe, OSError) as error:
            edit.error = f"not changed: {error}"
    return attempted


def _apply(edit: RcEdit, stamp: str, backups: dict[Path, Path]) -> None:
    status = os.stat(edit.target)
    if not status.st_mode & 0o222:
        # A file the user made read-only is theirs to change; the printed diff says how.
        raise _Unsafe("the file is read-only")
    if status.st_nlink > 1:
        raise _Unsafe(
            f"the file has {status.st_nlink} hard links, which a rename would split"
        )
    if edit.target.read_bytes() != edit.old:
        raise _Unsafe("the file changed since it was read")
    edit.backup = backups.get(edit.target) or _write_backup(edit.path, edit.old, stamp)
    backups[edit.target] = edit.backup
    # Written beside the target and renamed over it: a crash leaves old or new.
    write_atomically(edit.target, edit.new, like=status)


def _write_backup(path: Path, data: bytes, stamp: str) -> Path:
    """Next to the file as the user knows it, so a symlinked dotfile's repo stays clean.

    Never over another file, so that two runs in one second never overwrite
    an earlier backup.
    """
    base = path.with_name(f"{path.name}{BACKUP_SUFFIX}{stamp}")
    backup, number = base, 0
    while True:
        try:
            write_new(backup, data, mode=0o600)
            return backup
        except FileExistsError:
            number += 1
            backup = base.with_name(f"{base.name}.{number}")


def _candidates(home: Path, environ: Mapping[str, str]) -> list[tuple[Path, RcKind]]:
    """Existing files in the order conda/the shell read them, each real file once."""
    condarcs = [home / name for name in CONDARC_FILES]
    xdg_config = _environ_path(environ, "XDG_CONFIG_HOME")
    if xdg_config is not None:
        condarcs[:0] = [xdg_config / "conda/.condarc", xdg_config / "conda/condarc"]
    if (condarc := _environ_path(environ, "CONDARC")) is not None:
        condarcs.append(condarc)
    data_dirs = [home / ".local/share/jupyter"]
    if (xdg_data := _environ_path(environ, "XDG_DATA_HOME")) is not None:
        data_dirs.append(xdg_data / "jupyter")
    if (jupyter_data := _environ_path(environ, "JUPYTER_DATA_DIR")) is not None:
        data_dirs.append(jupyter_data)
    jupyter_path = environ.get("JUPYTER_PATH", "").split(os.pathsep)
    data_dirs += [Path(p) for p in jupyter_path if p.startswith("/")]
    found: list[tuple[Path, RcKind]] = [
        *((home / name, "shell") for name in SHELL_FILES),
        *((path, "condarc") for path in condarcs),
        *(
            (path, "kernel")
            for d in data_dirs
            for path in sorted(d.glob("kernels/*/kernel.json"))
        ),
    ]
    unique: dict[str, tuple[Path, RcKind]] = {}
    for path, kind in found:
        if os.path.lexists(path):
            unique.setdefault(os.path.realpath(path), (path, kind))
    return list(unique.values())


def _is_within(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def _spelled_with(entry: str, variable: str) -> bool:
    return entry == variable or entry.startswith(variable + "/")


def _environ_path(environ: Mapping[str, str], name: str) -> Path | None:
    value = environ.get(name, "")
    return Path(value) if value.startswith("/") else None


def _node_uses(root: Node) -> Counter[int]:
    """How often each node is reached; more than once means it sits behind an alias."""
    uses: Counter[int] = Counter()
    pending = [root]
    while pending:
        node = pending.pop()
        uses[id(node)] += 1
        if uses[id(node)] > 1:
            continue
        if isinstance(node, MappingNode):
            pending.extend(part for pair in node.value for part in pair)
        elif isinstance(node, SequenceNode):
            pending.extend(node.value)
    return uses


def _settings(text: str) -> Any:
    """The plain data a reader sees: round-trip loading would keep tags and styles."""
    return YAML(typ="safe", pure=True).load(text)


def _entries(sequence: SequenceNode) -> list[str]:
    """The scalar entries; "" stands for a nested node, which never names a path."""
    return [i.value if isinstance(i, ScalarNode) else "" for i in sequence.value]


def _replacement(text: str, item: ScalarNode, new: str) -> tuple[int, int, str]:
    if item.style in ("|", ">"):
        raise _Unsafe(f"entry {item.value} is a block scalar")
    start, end = item.start_mark.index, item.end_mark.index
    # The node's span starts at its anchor or tag, which stay.
    properties = re.match(r"(?:[&!]\S*\s+)*", text[start:end])
    skip = properties.end() if properties else 0  # the pattern matches even ""
    return start + skip, end, _yaml_scalar(new, item.style)


def _removal(text: str, sequence: SequenceNode, position: int) -> tuple[int, int, str]:
    """The span to delete for an entry: never the first, which relocation always keeps.

    A block entry takes its line along; were anything else on that line, the check
    after splicing would notice it gone.
    """
    items = sequence.value
    if sequence.flow_style:
        return items[position - 1].end_mark.index, items[position].end_mark.index, ""
    start, end = items[position].start_mark.index, items[position].end_mark.index
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end == -1 else line_end + 1
    return line_start, line_end, ""


def _yaml_scalar(value: str, style: str | None) -> str:
    if style == '"':
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if style != "'" and re.fullmatch(r"[\w/.~${}+@%-]+", value):
        return value
    return "'" + value.replace("'", "''") + "'"


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _diff(path: Path, old: bytes, new: bytes) -> str:
    """diff -u's text; undecodable bytes are shown escaped so printing cannot fail."""
    name = os.fsencode(path)
    lines = difflib.diff_bytes(
        difflib.unified_diff, _lines(old), _lines(new), name, name, n=0
    )
    text = b"".join(
        line if line.endswith(b"\n") else line + b"\n\\ No newline at end of file\n"
        for line in lines
    )
    return text.decode("utf-8", "backslashreplace")


def diff_head(edit: RcEdit, limit: int) -> tuple[str, int]:
    """The diff of the first ``limit`` changed lines, and how many lines
    changed: a ``.bashrc`` of a million repeated lines must not flood a
    terminal or a job's output. Shell files keep their line count (only
    paths change), so the first changes are those of the leading lines."""
    old, new = _lines(edit.old), _lines(edit.new)
    if len(old) != len(new):  # a condarc entry dropped as a duplicate
        lines = edit.diff.splitlines(keepends=True)
        body = [line[:1] for line in lines[2:]]
        changed = max(body.count("-"), body.count("+"))
        return "".join(lines[: 2 + 2 * limit]), changed
    changes = [i for i, (a, b) in enumerate(zip(old, new)) if a != b]
    if len(changes) <= limit:
        return edit.diff, len(changes)
    end = changes[limit]
    return _diff(edit.path, b"".join(old[:end]), b"".join(new[:end])), len(changes)


def _lines(data: bytes) -> list[bytes]:
    return re.findall(rb"[^\n]*\n|[^\n]+", data)
