"""Step 1b: ask which environments to migrate.

The answer may come from a terminal or from a pipe (``echo 2 | conda
migrate``); a batch job's stdin is usually /dev/null, so end of input must
end the run with a usage error rather than wait forever.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TextIO

from .exceptions import UsageError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .discover import Candidate

PROMPT = "Select environments to migrate (comma-separated list, 'All' to migrate all):"


class SelectionError(ValueError):
    """The answer could not be understood; the message says which part."""


def _resolve_item(item: str, candidates: Sequence[Candidate]) -> list[int]:
    count = len(candidates)
    if item.isdigit():
        number = int(item)
        if not 1 <= number <= count:
            raise SelectionError(f"'{item}' is not between 1 and {count}")
        return [number - 1]
    start, dash, end = item.partition("-")
    if dash and start.strip().isdigit() and end.strip().isdigit():
        first, last = int(start), int(end)
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
    """Ask until the answer makes sense; end of input is a usage error."""
    while True:
        print(PROMPT, file=stdout, flush=True)
        answer = stdin.readline()
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
