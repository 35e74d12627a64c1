"""fish's universal variables: what ``set -U`` and ``fish_add_path`` (by
default) keep in ``fish_variables``, which every fish reads at start, so a
path kept there is on ``PATH`` at every login, whatever ``config.fish`` says.

fish owns that file: its running shells merge their changes into it, in an
escaping of its own. So the run does not write it; it names each variable
that still names an old prefix, with the ``set -U`` that points it at the
new place, for the user to run in fish.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .rewrite import EnvMove

#: ``SETUVAR [--export] NAME:VALUE``, a list's elements parted by ``\x1e``.
_SETUVAR = re.compile(rb"SETUVAR (--export )?([^:\s]+):(.*?)\r?")
_ESCAPE = re.compile(
    rb"\\(?:x(?P<byte>[0-9A-Fa-f]{2})|u(?P<u>[0-9A-Fa-f]{4})|U(?P<U>[0-9A-Fa-f]{8})|\\)"
)


def _unescaped(value: bytes) -> bytes:
    def one(match: re.Match[bytes]) -> bytes:
        if match["byte"]:
            return bytes([int(match["byte"], 16)])
        if point := match["u"] or match["U"]:
            return chr(min(int(point, 16), 0x10FFFF)).encode("utf-8", "surrogatepass")
        return b"\\"

    return _ESCAPE.sub(one, value)


def _fish_quoted(text: str) -> str:
    """``text`` as one word of fish's: inside single quotes only ``\\``
    and ``'`` need a backslash."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def universal_warnings(data: bytes, env_moves: Sequence[EnvMove]) -> list[str]:
    """A warning per universal variable that names an old prefix, with the
    command that sets it to the same list at the new place."""
    found = []
    for number, line in enumerate(data.split(b"\n"), 1):
        match = _SETUVAR.fullmatch(line)
        if match is None:
            continue
        elements = [os.fsdecode(e) for e in _unescaped(match[3]).split(b"\x1e")]
        new, named = [], []
        for element in elements:
            for move in env_moves:
                source = str(move.source)
                if element == source or element.startswith(source + "/"):
                    named.append(source)
                    element = str(move.dest) + element[len(source) :]
                    break
            new.append(element)
        if named:
            name = os.fsdecode(match[2])
            flags = "-Ux" if match[1] else "-U"
            command = " ".join(["set", flags, name, *map(_fish_quoted, new)])
            found.append(
                f"line {number} still names {', '.join(dict.fromkeys(named))} in fish's "
                f"universal variable {name}, which fish keeps here and this run "
                f"does not rewrite; in fish, run: {command}"
            )
    return found
