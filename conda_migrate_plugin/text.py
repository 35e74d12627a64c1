"""Text as a terminal and conda's error printer can take it.

Below everything else, so that the errors and the output sink can both
use it without importing each other."""

from __future__ import annotations


def printable(line: str) -> str:
    """Names are bytes: one that is not UTF-8 reaches Python with its bytes
    as surrogates (``surrogateescape``), which no terminal encoding takes;
    it is shown with those bytes escaped (``r\\xe9sultats``)."""
    return line.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
