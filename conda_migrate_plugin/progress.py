"""What a user watching the run sees besides the site guide's messages: how far a
copy is, how long each phase took, and conda's own lines kept in the log.

On a terminal the copy's progress is one line rewritten in place; anywhere
else (a batch job's output file) only the line each phase ends with is
written, so the file holds no carriage returns.
"""

from __future__ import annotations

import io
import re
import time
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TextIO

#: How often the progress line is rewritten, in seconds.
EVERY = 0.2


def duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def size(nbytes: float) -> str:
    """In conda's units, as its package plans show sizes: powers of 1024
    named B, KB (whole), MB (one decimal) and GB (two)."""
    if nbytes < 1024:
        return f"{nbytes:.0f} B"
    if nbytes < 1024**2:
        return f"{nbytes / 1024:.0f} KB"
    if nbytes < 1024**3:
        return f"{nbytes / 1024**2:.1f} MB"
    return f"{nbytes / 1024**3:.2f} GB"


class Progress(Protocol):
    """What the relocation engine reports its progress to."""

    def show(self, files: int, nbytes: int, *, force: bool = False) -> None: ...
    def close(self) -> None: ...


class CopyProgress:
    """Files and bytes done of the total, percentage, rate and time left,
    rewritten in place on a terminal; nothing elsewhere. ``show`` and
    ``close`` are what the relocation engine calls."""

    def __init__(self, files: int, nbytes: int, stream: TextIO | None) -> None:
        self.files, self.bytes = files, nbytes
        self.stream = stream if stream is not None and stream.isatty() else None
        self.start = time.monotonic()
        self.last = 0.0
        self.width = 0
        #: Files and bytes copied so far: how far a copy that failed got.
        self.done = (0, 0)

    def line(self, files: int, nbytes: int) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-6)
        fraction = nbytes / self.bytes if self.bytes else files / max(self.files, 1)
        rate = nbytes / elapsed
        left = (self.bytes - nbytes) / rate if rate and self.bytes > nbytes else 0.0
        return (
            f"Copying: {files}/{self.files} files, {size(nbytes)}/{size(self.bytes)} "
            f"({min(fraction, 1.0):.0%}), {size(rate)}/s, {duration(left)} left"
        )

    def show(self, files: int, nbytes: int, *, force: bool = False) -> None:
        self.done = (files, nbytes)
        now = time.monotonic()
        if self.stream is None or (not force and now - self.last < EVERY):
            return
        self.last = now
        text = self.line(files, nbytes)
        try:
            self.stream.write("\r" + text.ljust(self.width))
            self.stream.flush()
        except OSError:  # the terminal is gone
            self.stream = None
            return
        self.width = len(text)

    def close(self) -> None:
        """Clear the line: the phase's own line takes its place."""
        if self.stream is not None and self.width:
            try:
                self.stream.write("\r" + " " * self.width + "\r")
                self.stream.flush()
            except OSError:
                self.stream = None
            self.width = 0


#: A spinner's frame and the backspace that erases it.
_ERASED = re.compile(".\b")


def _as_logged(line: str) -> str:
    """What a terminal shows in the end: the text after the last carriage
    return, without the characters backspaced over."""
    line = line.rstrip("\r").rsplit("\r", 1)[-1]
    while "\b" in line:
        line, erased = _ERASED.subn("", line)
        if not erased:
            line = line.replace("\b", "")
    return line.rstrip()


class Tee(io.TextIOBase):
    """Where conda's clone prints: shown on ``stream`` unless it is None
    (``-q``), and every line, as a terminal would end up showing it, handed
    to ``note`` (the run's log)."""

    def __init__(self, stream: TextIO | None, note: Callable[[str], None]) -> None:
        self.stream, self.note, self.pending = stream, note, ""

    def write(self, text: str) -> int:
        if self.stream is not None:
            try:
                self.stream.write(text)
            except OSError:  # the terminal is gone (SIGHUP): keep logging
                self.stream = None
        *lines, self.pending = (self.pending + text).split("\n")
        for line in lines:
            self.note(_as_logged(line))
        return len(text)

    def flush(self) -> None:
        if self.stream is not None:
            try:
                self.stream.flush()
            except OSError:
                self.stream = None

    def close_lines(self) -> None:
        if self.pending:
            self.note(_as_logged(self.pending))
            self.pending = ""

    def isatty(self) -> bool:
        return self.stream is not None and self.stream.isatty()
