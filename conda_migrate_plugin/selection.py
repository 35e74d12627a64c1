"""Selection, after discovery: ask which environments to migrate.

The answer may come from a terminal or from a pipe (``echo 2 | conda
migrate``); a batch job's stdin is usually /dev/null, so end of input must
end the run with a usage error rather than wait forever.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TextIO

from .exceptions import Interrupted, MigrateError, UsageError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .discover import Candidate

PROMPT = "Select environments to migrate (comma-separated list, 'All' to migrate all):"


class NothingSelected(MigrateError):
    """Ctrl-D at the prompt: the user chose to migrate nothing."""


class SelectionError(ValueError):
    """The answer could not be understood; the message says which part."""


def _number(text: str) -> int | None:
    """``str.isdigit`` also accepts ``²``, which ``int`` refuses."""
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() else None


def _resolve_item(item: str, candidates: Sequence[Candidate]) -> list[int]:
    count = len(candidates)
    number = _number(item)
    if number is not None:
        if not 1 <= number <= count:
            raise SelectionError(f"'{item}' is not between 1 and {count}")
        return [number - 1]
    start, dash, end = item.partition("-")
    first, last = _number(start), _number(end)
    if dash and first is not None and last is not None:
        if first > last:
            raise SelectionError(f"range '{item}' runs backwards")
        if first < 1 or last > count:
            raise SelectionError(f"range '{item}' goes beyond 1-{count}")
        return list(range(first - 1, last))
    matches = [i for i, candidate in enumerate(candidates) if candidate.name == item]
    if not matches:
        raise SelectionError(f"'{item}' is neither a number nor an environment name")
    return matches


def parse_selection(answer: str, candidates: Sequence[Candidate]) -> list[Candidate]:
    """Numbers, ranges (``1-3``), names and ``All``, comma-separated."""
    items = [item.strip() for item in answer.split(",") if item.strip()]
    if not items:
        raise SelectionError("nothing was selected")
    if any(item.lower() == "all" for item in items):
        return list(candidates)
    chosen: set[int] = set()
    for item in items:
        chosen.update(_resolve_item(item, candidates))
    return [candidates[i] for i in sorted(chosen)]


def prompt_selection(
    candidates: Sequence[Candidate], stdin: TextIO, stdout: TextIO
) -> list[Candidate]:
    """Ask until the answer makes sense. End of input is Ctrl-D on a
    terminal, but a batch job's closed stdin otherwise, which needs --all."""
    while True:
        try:
            print(PROMPT, file=stdout, flush=True)
            answer = stdin.readline()
        except Interrupted as err:
            raise Interrupted(
                err.signum, "at the selection prompt: nothing was touched."
            ) from None
        if not answer and stdin.isatty():
            raise NothingSelected(
                "No environment was selected (end of input at the prompt); nothing was touched.",
                hint="Run the command again and type numbers, names or All.",
            )
        if not answer:
            raise UsageError(
                "No answer to the selection prompt (standard input is closed; "
                "in a batch job it usually is). Nothing was migrated.",
                hint="Pass --all to migrate every valid environment without a prompt.",
            )
        try:
            return parse_selection(answer, candidates)
        except SelectionError as err:
            print(f"Invalid selection: {err}. Try again.", file=stdout)
