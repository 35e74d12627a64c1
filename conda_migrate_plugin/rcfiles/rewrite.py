"""The rules that rewrite a run's old prefixes in the user's files: each
path in the manner it was written (absolute, ``~``, ``$HOME``, ``$SCRATCH``,
quoted or cut by variables), directory lists without duplicates, kernel
specs only where they use a moved environment.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from .shell import Dialect, Shell, escape, requote

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

#: conda splits ``CONDA_PKGS_DIRS`` on commas but the envs variables on ``os.pathsep``.
DIR_VARIABLES = {
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

_NAMES = rb"(?P<name>" + b"|".join(DIR_VARIABLES) + rb")"
_VALUE = rb"(?P<value>\"[^\"\n]*\"|'[^'\n]*'|[^\s;&|()\"'`]*)"


def _setting(head: bytes, end: bytes = rb"(?![^\s;&|)])") -> re.Pattern[bytes]:
    """A command that sets a conda directory variable: ``head`` (with
    ``%s`` for its name), then the value, a word that ``end`` ends."""
    return re.compile(
        rb"(?<![^\s;&|(])(?P<head>" + head % _NAMES + rb")" + _VALUE + end
    )


#: sh's ``NAME=value``, which fish's ``export`` takes too.
_SH_SETTING = _setting(rb"%s=")
#: How each shell sets a conda directory variable for the programs it runs;
#: fish's only with a value that ends the command (a list stays as it is).
_SETTINGS = {
    "sh": (_SH_SETTING,),
    "csh": (_SH_SETTING, _setting(rb"setenv[ \t]+%s[ \t]+")),
    "fish": (
        _SH_SETTING,
        _setting(
            rb"set(?:[ \t]+-[-\w]+)*[ \t]+%s[ \t]+", rb"(?=[ \t\r]*(?:[;&|#\n]|$))"
        ),
    ),
}


@dataclass(frozen=True)
class EnvMove:
    source: Path  # old prefix, e.g. /scratch/u/conda-envs/abc
    dest: Path  # new prefix, e.g. /home/u/.conda/envs/abc


@dataclass(frozen=True)
class DirMove:
    source: Path  # the scanned scratch directory, e.g. /scratch/u/conda-envs
    envs_dest: Path  # e.g. /home/u/.conda/envs
    pkgs_dest: Path  # e.g. /home/u/.conda/pkgs


class Unsafe(Exception):
    """A file left as it is, with the reason shown to the user."""


@dataclass(frozen=True)
class Rewriter:
    """The rules for one run, shared by the three kinds of file (a condarc's
    through ``relocate``)."""

    env_moves: Sequence[EnvMove]
    dir_moves: Sequence[DirMove]
    home: Path
    scratch: Path | None
    environ: Mapping[str, str] = field(default_factory=dict)

    def shell(self, data: bytes, dialect: Dialect) -> bytes:
        data = self.expanded(self.prefixes(data), dialect)
        for assignment in _SETTINGS[dialect.name]:
            data = assignment.sub(self._assignment, data)
        return data

    def expanded(self, data: bytes, dialect: Dialect) -> bytes:
        """Rewrite the old prefixes the shell reads out of variables and
        quotes (``/scratch/$USER/envs/abc``, ``"$SCRATCH"/envs/abc``, a
        variable the file itself sets), each in the manner it was written;
        only those spans change."""
        lines = split_lines(data)
        shell = Shell(self._variables_known(), dialect)
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
                    (start, end, self._respell(text[start:end], dest, quotes, dialect))
                    for start, end, dest, quotes in self._expansions(shell, text)
                ]
                for start, end, new in sorted(spans, reverse=True):
                    text = text[:start] + new + text[end:]
                lines[number] = _encode(text)
            shell.read_assignments(text)
            if shell.generation == key[1]:
                done[key] = lines[number]
        return b"".join(lines)

    def unrewritten(self, data: bytes, dialect: Dialect) -> list[str]:
        """The lines that, as the shell reads them, still name an old prefix
        (a variable this run cannot know, ``${VAR:-default}``, a prefix cut
        by a variable): listed for the user, never guessed at."""
        found = []
        shell = Shell(self._variables_known(), dialect)
        named: dict[tuple[bytes, int], list[Path]] = {}
        for number, line in enumerate(split_lines(data), 1):
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
        if not any(c in text for c in "$\"'\\"):
            return False
        bare = re.sub(r"[\\\"']", "", text)  # ``my\ env``, ``'my env'``
        return any(move.source.name in bare for move in self.env_moves)

    def _expansions(
        self, shell: Shell, text: str
    ) -> Iterator[tuple[int, int, Path, tuple[str, str]]]:
        """Spans of ``text`` that expand to an old prefix as a whole path,
        with the new prefix and the quoting in force at either end."""
        for word in shell.words(text):
            for move in self.env_moves:
                for span in word.spans_of(str(move.source)):
                    start, end, before, after = span
                    original = text[start:end]
                    if "$" in original or any(q in original for q in "\"'\\"):
                        yield start, end, move.dest, (before, after)

    def _still_named(self, shell: Shell, text: str) -> Iterator[Path]:
        for word in shell.words(text):
            for move in self.env_moves:
                tail = f"/{move.source.parent.name}/{move.source.name}"
                if word.names(str(move.source)) or word.names_after_unknown(tail):
                    yield move.source

    def _respell(
        self, original: str, dest: Path, quotes: tuple[str, str], dialect: Dialect
    ) -> str:
        """``dest`` for a span that starts inside quote ``before`` and must
        end inside quote ``after``: spelled with ``$HOME`` (``${HOME}``)
        where the old one used a variable, absolute otherwise."""
        before, after = quotes
        if "$" in original and self.home in dest.parents:
            variable = "${HOME}" if "${" in original else "$HOME"
            head, quote = variable, before
            if before == "'":  # no expansion inside single quotes
                head, quote = "'" + variable, ""
            tail = escape(f"/{dest.relative_to(self.home)}", after, dialect)
            return head + requote(quote, after) + tail
        return escape(str(dest), before, dialect) + requote(before, after)

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
        kind, separator = DIR_VARIABLES[match["name"]]
        quote, inner = _unquoted(match["value"])
        entries = _decoded(inner, separator)
        relocated = self.relocate(entries, kind)
        if relocated == entries:
            return match[0]
        kept = separator.join(_encode(e) for e in relocated if e is not None)
        return match["head"] + quote + kept + quote

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
            dest = self._destination(path, kind)
            if dest is not None:
                path = dest
            if path in seen and (dest is not None or seen[path]):
                result.append(None)
                continue
            seen.setdefault(path, dest is not None)
            result.append(entry if dest is None else self._spell(path, entry))
        return result

    def _destination(self, path: Path, kind: str) -> Path | None:
        """Where an entry moves, None where it stays. A scanned directory the
        run empties moves with its environments. A package cache anywhere under
        ``$SCRATCH`` moves with them too: the purge empties it under conda, which
        then downloads onto scratch again, or links from a package it half-deleted.
        """
        for move in self.dir_moves:
            if is_within(path, move.source):
                return move.envs_dest if kind == "envs" else move.pkgs_dest
        if kind == "pkgs" and self.dir_moves:
            if any(is_within(path, root) for root in self._scratch_roots):
                return self.dir_moves[0].pkgs_dest
        return None

    @cached_property
    def _scratch_roots(self) -> tuple[Path, ...]:
        return scratch_roots(self.scratch, self.home)

    def moved_caches(self, entries: Sequence[str]) -> list[Path]:
        """The package caches, among a file's cache entries, that it now
        names ``~/.conda/pkgs`` instead of: the run says what they hold."""
        paths = [self._expand(entry) for entry in entries]
        return [
            path
            for path in paths
            if path is not None and self._destination(path, "pkgs") not in (None, path)
        ]

    def caches_left(self, found: Sequence[tuple[int, str]]) -> list[str]:
        """The cache entries (with their line) that still name scratch once
        the caches moved, in a form this run cannot read (``$SCRATCH/x:$Y``,
        ``/scratch/u/pkgs-$USER``): conda keeps them, so the user must know."""
        if not self.dir_moves:
            return []
        roots = "|".join(re.escape(str(root)) for root in self._scratch_roots)
        # ``${SCRATCH:-x}`` too; a root only as a whole path (not ``/scratch/u2``).
        scratch = re.compile(
            r"\$\{?SCRATCH\b" + (f"|(?:{roots})(?![^/:])" if roots else "")
        )
        return [
            f"line {number} still names a package cache on scratch in a form "
            f"this run does not rewrite: {entry}"
            for number, entry in found
            if self._expand(entry) is None and scratch.search(entry)
        ]

    def shell_caches(self, data: bytes, dialect: Dialect) -> list[tuple[int, str]]:
        """Each ``CONDA_PKGS_DIRS`` entry a shell file sets, with its line."""
        found = []
        for assignment in _SETTINGS[dialect.name]:
            for match in assignment.finditer(data):
                kind, separator = DIR_VARIABLES[match["name"]]
                if kind == "pkgs":
                    number = data.count(b"\n", 0, match.start()) + 1
                    _, inner = _unquoted(match["value"])
                    found += [(number, entry) for entry in _decoded(inner, separator)]
        return sorted(found)

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

    def kernel(self, data: bytes) -> bytes:
        """Touch a kernel spec only when its command or environment uses a moved env."""
        if not self._kernel_uses_prefix(json.loads(data)):
            return data
        new = self.prefixes(data)
        if self._kernel_uses_prefix(json.loads(new)):
            raise Unsafe(
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


def environ_path(environ: Mapping[str, str], name: str) -> Path | None:
    """The path an environment variable names; none where it is unset, empty
    or relative (which names no place a file or a run could agree on)."""
    value = environ.get(name, "")
    return Path(value) if value.startswith("/") else None


def scratch_roots(scratch: Path | None, home: Path) -> tuple[Path, ...]:
    """``$SCRATCH`` as set and as its symlinks resolve (a file may spell
    either); never one holding the home directory, whose caches are home's."""
    if scratch is None:
        return ()
    roots = {scratch, Path(os.path.realpath(scratch))}
    return tuple(r for r in sorted(roots) if not is_within(home, r))


def is_within(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def _spelled_with(entry: str, variable: str) -> bool:
    return entry == variable or entry.startswith(variable + "/")


def _unquoted(value: bytes) -> tuple[bytes, bytes]:
    """An assignment's quote (or none) and what it quotes."""
    quote = value[:1] if value[:1] in (b'"', b"'") else b""
    return quote, value[len(quote) : len(value) - len(quote)]


def _decoded(value: bytes, separator: bytes) -> list[str]:
    return [e.decode("utf-8", "surrogateescape") for e in value.split(separator)]


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def split_lines(data: bytes) -> list[bytes]:
    return re.findall(rb"[^\n]*\n|[^\n]+", data)
