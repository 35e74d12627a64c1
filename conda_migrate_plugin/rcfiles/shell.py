"""The shell's reading of a line, far enough to see paths in it: words,
quotes, ``$NAME`` and ``${NAME}``, backslashes, and the variables that
earlier lines set, each by the rules of the shell that reads the file
(sh and its kin, csh and tcsh, fish).

A path a user wrote as ``/scratch/$USER/envs/abc`` or ``"$SCRATCH"/envs/abc``
names an old prefix only once expanded; this reader finds where, in the
line's own characters, so that only those characters change.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

#: What ends a shell word outside quotes.
_BREAKS = " \t\r\n;&|()<>`"
#: Those of them after which a new command starts.
_COMMAND_BREAKS = set(";&|()\n`")


def _tokens(
    unknown: str = "", braced: str = r"\$\{(?P<braced>[^}]*)\}"
) -> re.Pattern[str]:
    """The tokens of a line outside single quotes; ``unknown`` matches what
    this shell expands in a way this run does not follow."""
    return re.compile(
        (f"(?P<unknown>{unknown})|" if unknown else "")
        + braced
        + r"|\$(?P<name>[A-Za-z_]\w*)"  # $NAME
        r"|\\(?P<escaped>.)"  # \x
        r"|(?P<quote>[\"'])"
        r"|(?P<breaks>[" + re.escape(_BREAKS) + r"]+)"
        r"|(?P<plain>[^$\\\"'{" + re.escape(_BREAKS) + r"]+|.)",
        re.DOTALL,
    )


@dataclass(frozen=True)
class Dialect:
    """What one family of shells does differently with the characters of a
    path: what it expands, what quotes, and how it sets a variable."""

    name: str
    token: re.Pattern[str]
    single_quoted: re.Pattern[str]
    #: The variable a command (its words so far) sets, and its value (None: unknown).
    sets: Callable[[Sequence[str]], tuple[str, str | None] | None] | None = None
    #: Words that come before a command without being one (fish's ``and``).
    keywords: frozenset[str] = field(default_factory=frozenset)
    #: What is not itself inside double quotes, and how a path written there
    #: gets it: sh takes a backslash before it, csh none (the quote is closed
    #: around the backslash), fish takes one before ``$``, ``"`` and ``\``.
    double_quoted: tuple[str, str] = (r'([$`"\\])', r"\\\1")


def _csh_sets(command: Sequence[str]) -> tuple[str, str | None] | None:
    """``setenv NAME value`` and ``set name = value`` (``set name=value``
    is read as sh's ``NAME=value``)."""
    match command:
        case ["setenv", name, value] | ["set", name, "=", value]:
            return name, value
        case ["set", name, value] if name.endswith("="):
            return name[:-1], value
        case ["unsetenv" | "unset", name]:
            return name, None
    return None


#: fish's ``set`` options that only choose a scope or export the variable.
_FISH_SCOPES = set("glxuUf") | {"global", "local", "export", "unexport", "universal"}
#: Those that only read variables.
_FISH_QUERIES = set("qnSL") | {"query", "names", "show", "long"}


def _fish_sets(command: Sequence[str]) -> tuple[str, str | None] | None:
    """``set [-gx] NAME value``: one value is a path; a list (or an erase,
    an append) is unknown from here on."""
    if command[:1] != ["set"]:
        return None
    flags: set[str] = set()
    for at, word in enumerate(command[1:], 1):
        if not word.startswith("-"):
            break
        flags |= {word[2:]} if word.startswith("--") else set(word[1:])
    else:
        return None
    if flags & _FISH_QUERIES:
        return None
    values = command[at + 1 :]
    if flags <= _FISH_SCOPES and len(values) == 1:
        return command[at], values[0]
    return command[at], None


#: bash's and zsh's ``$'...'`` takes escapes, ``\'`` too: read whole, not followed.
SH = Dialect(
    "sh",
    _tokens(r"\$'(?:[^'\\]|\\.)*'"),
    re.compile(r"(?P<quote>')|(?P<plain>[^']+)"),
)
#: ``$name:h`` takes a modifier and ``$name[1]`` a word of a list.
CSH = Dialect(
    "csh",
    _tokens(r"\$[A-Za-z_]\w*(?=[:\[])"),
    SH.single_quoted,
    _csh_sets,
    double_quoted=(r'([$`"\\!])', r'"\\\1"'),
)
#: fish writes ``{$NAME}`` where sh writes ``${NAME}`` (an error in fish),
#: indexes lists with ``$NAME[1]``, and ``\'`` or ``\\`` escape inside single quotes.
FISH = Dialect(
    "fish",
    _tokens(r"\$[A-Za-z_]\w*(?=\[)|\$\{[^}]*\}", r"\{\$(?P<fishbraced>[A-Za-z_]\w*)\}"),
    re.compile(r"\\(?P<escaped>[\\'])|(?P<quote>')|(?P<plain>[^'\\]+|.)", re.DOTALL),
    _fish_sets,
    frozenset(
        {"and", "or", "not", "if", "while", "begin", "else", "command", "builtin"}
    ),
    (r'([$"\\])', r"\\\1"),
)
DIALECTS = {dialect.name: dialect for dialect in (SH, CSH, FISH)}

_VARIABLE = re.compile(r"[A-Za-z_]\w*")
_SETS = re.compile(r"([A-Za-z_]\w*)=")
#: Linux's longest path: no prefix hides in a longer value.
_PATH_MAX = 4096
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
class Word:
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


class Shell:
    """Reads lines as the shell splits and expands them, far enough to see
    paths: quotes, ``$NAME`` and ``${NAME}``, backslashes, and the variables
    set on earlier lines. Anything else (``${NAME:-x}``, a variable not set
    here) is unknown, and never taken for a path."""

    def __init__(self, variables: dict[str, str], dialect: Dialect = SH) -> None:
        self.variables = variables
        self.dialect = dialect
        #: Counts the assignments read: what a line expands to may change.
        self.generation = 0
        #: The words of the command being read, for the dialect's ``sets``.
        self._command: list[str] = []

    def words(self, text: str) -> Iterator[Word]:
        pieces: list[_Piece] = []
        quote, at = "", 0
        self._command = []
        while at < len(text):
            tokens = self.dialect.single_quoted if quote == "'" else self.dialect.token
            token = tokens.match(text, at)
            assert token is not None  # each pattern's last choice takes any character
            kind, start, at = token.lastgroup, token.start(), token.end()
            if kind == "breaks" and not quote:
                if pieces:
                    yield self._read(Word(pieces))
                pieces = []
                if _COMMAND_BREAKS.intersection(token[0]):
                    self._end_command()
                continue
            if kind == "quote" and quote in ("", token[0]):
                new = "" if quote else token[0]
                pieces.append(_Piece(start, at, "", True, quote, new))
                quote = new
                continue
            pieces.append(_Piece(start, at, *self._value(token, quote), quote, quote))
        if pieces:
            yield self._read(Word(pieces))
        self._end_command()

    def _value(self, token: re.Match[str], quote: str) -> tuple[str, bool]:
        """What a token expands to, and whether it is a character for a character."""
        kind = token.lastgroup or ""
        if kind in ("plain", "breaks", "quote"):
            return token[0], True
        if kind == "escaped":
            return token["escaped"], False
        if kind == "unknown" or not _VARIABLE.fullmatch(token[kind]):
            return _UNKNOWN, False
        value = self.variables.get(token[kind], _UNKNOWN)
        if kind == "fishbraced" and quote:  # braces in quotes are characters
            value = "{" + value + "}"
        return value, False

    def _read(self, word: Word) -> Word:
        """``NAME=value`` (after ``export`` or not) sets NAME for the words
        after it; a value this run cannot know unsets it."""
        assignment = _SETS.match(word.value)
        if assignment:
            self._set(assignment[1], word.value[assignment.end() :])
        if self._command or word.value not in self.dialect.keywords:
            self._command.append(word.value)
        return word

    def _end_command(self) -> None:
        """The dialect's own command (``setenv``, fish's ``set``) sets a
        variable for the commands after it."""
        if self.dialect.sets is not None and (
            found := self.dialect.sets(self._command)
        ):
            self._set(*found)
        self._command = []

    def _set(self, name: str, value: str | None) -> None:
        """A value longer than any path (``PATH=/x:$PATH`` on every line of
        a huge file would grow it with each) is unknown, as one not known."""
        if value is not None and _UNKNOWN not in value and len(value) <= _PATH_MAX:
            if _VARIABLE.fullmatch(name):
                self.variables[name] = value
                self.generation += 1
                return
        if self.variables.pop(name, None) is not None:
            # Only a change counts: repeated lines stay read once.
            self.generation += 1

    def read_assignments(self, text: str) -> None:
        """The variables ``text`` sets, as the lines after it see them."""
        if "=" in text or self.dialect.sets and "set" in text:
            for _ in self.words(text):
                pass


def requote(have: str, want: str) -> str:
    """The quote characters that turn quoting ``have`` into ``want``."""
    if have == want:
        return ""
    return have + want


#: What the shell does not take as itself outside quotes: a path written
#: there needs a backslash before it (a space would split it).
_SPECIAL = re.compile(r"([^\w./+,:=@%^~-])")


def escape(path: str, quote: str, dialect: Dialect = SH) -> str:
    """``path`` written where quote ``quote`` is in force, to read as itself."""
    if quote == "'":
        return path.replace("'", "'\\''")
    if quote == '"':
        return re.sub(*dialect.double_quoted, path)
    return _SPECIAL.sub(r"\\\1", path)
