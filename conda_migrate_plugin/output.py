"""What the user sees of a run, and what its log keeps.

One sink for every line: shown unless ``-q`` or ``--json`` hides it, always
written to the log a batch user reads after the job, and redacted on the
way to both, since channel URLs and rc files may hold credentials.
"""

from __future__ import annotations

import os
import re
import sys
import time
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from .progress import CopyProgress, Tee, duration
from .result import TIMED
from .text import printable

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from .result import Phase


#: Credentials that may stand beside what is printed and logged: a token in
#: a channel URL, a password in one, an assignment in an rc file.
_SECRETS = (
    (re.compile(r"/t/[^/\s]+"), "/t/<TOKEN>"),
    (re.compile(r"://[^/\s:@]+:[^/\s@]+@"), "://<CREDENTIALS>@"),
    (
        re.compile(
            r"\b(\w*(?:TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY)\w*)"
            r"(\s*[=:]\s*)\S+",
            re.IGNORECASE,
        ),
        r"\1\2<REDACTED>",
    ),
)


def redact(line: str) -> str:
    for pattern, replacement in _SECRETS:
        line = pattern.sub(replacement, line)
    return line


@dataclass
class Output:
    """Human output, silent under ``--json`` and ``-q``; everything also goes
    to the run's log, which is what a batch user reads after the job."""

    quiet: bool = False
    stream: TextIO = field(default_factory=lambda: sys.stdout)
    json: bool = False
    log: TextIO | None = None
    log_path: Path | None = None
    #: ``-v``: the log's details are shown too.
    verbose: int = 0
    phase_name: Phase | None = None
    phase_start: float = 0.0

    def info(self, *lines: str) -> None:
        """What the user follows the run by: hidden by ``-q`` and ``--json``."""
        for line in map(redact, lines):
            if not self.quiet:
                self.show(line)
            self._log(line)

    def important(self, *lines: str) -> None:
        """Errors and the summary: shown under ``-q`` too, never in JSON."""
        for line in map(redact, lines):
            if not self.json:
                self.show(line)
            self._log(line)

    def show(self, line: str) -> None:
        """A closed terminal (SIGHUP) or pipe must not turn into a failure of
        the environment being migrated: the log still gets every line."""
        try:
            print(printable(line), file=self.stream, flush=True)
        except BrokenPipeError:
            # ``| head`` is gone: the rest goes nowhere, quietly, as with
            # conda's own commands, and the run goes on.
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), self.stream.fileno())
            except (OSError, ValueError, AttributeError):
                pass
        except OSError:
            pass

    def on_terminal(self) -> bool:
        """Whether a person watches, rather than a batch job's file."""
        try:
            return not self.quiet and self.stream.isatty()
        except (AttributeError, ValueError):
            return False

    def screen_only(self, line: str) -> None:
        """An abridged form of what the log gets whole."""
        if not self.quiet:
            self.show(redact(line))

    def log_only(self, line: str) -> None:
        """Details a batch user may look up afterwards; on the screen only
        with ``-v``."""
        if self.verbose and not self.quiet and line:
            self.show(redact(line))
        self._log(line)

    def _log(self, line: str) -> None:
        if self.log and line:
            self.log.write(f"{time.strftime('%H:%M:%S')} {redact(line)}\n")
            self.log.flush()

    def phase(self, name: Phase | None) -> None:
        """Begin phase ``name`` (one of ``TIMED``; ``None``: no phase), ending
        the one before with a line saying how long it took."""
        if name == self.phase_name:
            return
        if self.phase_name is not None:
            took = duration(time.monotonic() - self.phase_start)
            self.info(f"{TIMED[self.phase_name]} took {took}")
        self.phase_name, self.phase_start = name, time.monotonic()

    @contextmanager
    def conda_output(self) -> Iterator[None]:
        """conda's clone prints its own lines: shown unless ``-q``, always logged."""
        tee = Tee(None if self.quiet else self.stream, self._log)
        try:
            with redirect_stdout(tee):
                yield
        finally:
            tee.close_lines()

    def copy_progress(self, files: int, nbytes: int) -> CopyProgress:
        return CopyProgress(files, nbytes, None if self.quiet else self.stream)
