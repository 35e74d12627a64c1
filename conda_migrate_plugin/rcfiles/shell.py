"""The shell's reading of a line, far enough to see paths in it: words,
quotes, ``$NAME`` and ``${NAME}``, backslashes, and the variables that
earlier lines set.

A path a user wrote as ``/scratch/$USER/envs/abc`` or ``"$SCRATCH"/envs/abc``
names an old prefix only once expanded; this reader finds where, in the
line's own characters, so that only those characters change.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

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

    def __init__(self, variables: dict[str, str]) -> None:
        self.variables = variables
        #: Counts the assignments read: what a line expands to may change.
        self.generation = 0

    def words(self, text: str) -> Iterator[Word]:
        pieces: list[_Piece] = []
        quote = ""
        for token in _TOKEN.finditer(text):
            kind, start, end = token.lastgroup, token.start(), token.end()
            if kind == "breaks" and not quote:
                if pieces:
                    yield self._read(Word(pieces))
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
            yield self._read(Word(pieces))

    def _read(self, word: Word) -> Word:
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


def requote(have: str, want: str) -> str:
    """The quote characters that turn quoting ``have`` into ``want``."""
    if have == want:
        return ""
    return have + want


#: What the shell does not take as itself inside each quote: a path written
#: there needs a backslash before it (outside quotes, a space would split it).
_SPECIAL = {"": re.compile(r"([^\w./+,:=@%^~-])"), '"': re.compile(r'([$`"\\])')}


def escape(path: str, quote: str) -> str:
    """``path`` written where quote ``quote`` is in force, to read as itself."""
    if quote == "'":
        return path.replace("'", "'\\''")
    return _SPECIAL[quote].sub(r"\\\1", path)
