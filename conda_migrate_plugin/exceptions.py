"""One error type for everything conda-migrate reports to the user.

conda prints a ``CondaError`` as a clean message and exits with its return
code, where any other exception becomes a traceback and a bug report prompt;
so the base derives from it wherever conda is installed. Without conda (the
test machines, the console script in a plain virtualenv) it falls back to a
plain exception with the same shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .text import printable

if TYPE_CHECKING:
    from pathlib import Path

try:
    from conda.exceptions import CondaError as _Base
except ImportError:

    class _Base(Exception):  # type: ignore[no-redef]
        return_code = 1

        def __init__(self, message: str, **kwargs: Any) -> None:
            self.message = message
            super().__init__(message)


class MigrateError(_Base):
    """Something went wrong; the message says what, what was left untouched,
    and what to do next."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.hint = hint
        # conda prints it to a stream that takes no surrogates: a name that
        # is not UTF-8 is shown escaped.
        message = printable(f"{message}\n{hint}" if hint else message)
        super().__init__(message)

    def __str__(self) -> str:
        # CondaError would %-format the message; paths may contain '%'.
        return self.message


class UsageError(MigrateError):
    """The command line asked for something impossible: exit code 2."""

    return_code = 2


class CloneUnavailable(MigrateError):
    """conda's clone could not obtain every package (offline, purged cache,
    channel gone), so only relocation can move this environment. ``reason``
    says why in a user's words; conda's own message goes to the log."""

    def __init__(
        self, message: str, *, reason: str = "", hint: str | None = None
    ) -> None:
        self.reason = reason or message.rstrip(".")
        super().__init__(message, hint=hint)


class InUse(MigrateError):
    """A process writes into the environment, or works in it: it is kept,
    and the next run removes it once the process has ended."""


class DestinationFull(MigrateError):
    """The quota or the filesystem of the destination filled while an
    environment was copied (another process wrote meanwhile): the ones
    after it are not tried against it blindly."""


class CopyCommitted(MigrateError):
    """The verified copy is in place at its destination, but a step of the
    commit after the rename failed (conda's registry, the record of the
    move; a home's lock manager lost midway): the copy stays, with its
    journal entry, for the next run to finish from, as after a kill there.
    Removing it would throw away a verified copy for a step that can be
    done again."""

    def __init__(self, source: Path, dest: Path, err: Exception) -> None:
        super().__init__(
            f"{source} was copied to {dest} and the copy verified, but the "
            f"migration could not be finished ({err}). {source} is untouched.",
            hint="Run the same command again once that is fixed: it finishes "
            f"from the copy at {dest} (lists it in conda's registry, then "
            "removes the old environment once it is shown unchanged).",
        )


class DestinationTaken(MigrateError):
    """Something made the destination after the run found the name free (a
    user's ``mkdir``, another tool): the verified copy is never renamed over
    it, not even over an empty directory, which ``rename(2)`` would replace
    without a word. ``kept``: where the verified copy stays for the next run
    to finish from (a resumed commit), or None where it was removed.
    ``copied``: False where the name was found taken before anything was
    copied (conda's clone makes its copy at the destination itself)."""

    def __init__(
        self, source: Path, dest: Path, kept: Path | None, *, copied: bool = True
    ) -> None:
        self.kept = kept
        if kept:
            copy = (
                f"The verified copy is kept at {kept}; the next run finishes from it."
            )
        elif copied:
            copy = "The verified copy was removed."
        else:
            copy = "Nothing was copied."
        super().__init__(
            f"{dest} was made by something else after this run found the name "
            f"free; it was left as it is, and {source} is untouched. {copy}",
            hint=f"Move {dest} out of the way, or choose another --dest, then run "
            "the same command again.",
        )


class RelocateError(MigrateError):
    """The environment cannot be copied and relocated as it is."""


def _cpu_time_hint() -> str:
    """What SIGXCPU means to a user, who never sees that name otherwise,
    and the way round it (each run on that node stops at the same point)."""
    import resource

    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    limit = "" if hard == resource.RLIM_INFINITY else f": {hard} s"
    return (
        "The run came close to the CPU time this login node allows a process "
        f"(ulimit -t{limit}) and stopped before being killed at it. Each run "
        "here stops about as far: run it as a Slurm job instead, adding --submit "
        "at the end of the same command (sbatch's options, such as -t 4:00:00, "
        "after it)."
    )


class Interrupted(_Base):
    """The user (Ctrl-C), Slurm's time limit (SIGTERM), a closed terminal
    (SIGHUP) or a login node's CPU-time limit (SIGXCPU) stopped the run. Not a ``MigrateError``: the many places that
    turn a failure into "this environment failed, go on with the next" must
    let a stop through. Exits 128 + the signal's number, as a shell would."""

    def __init__(self, signum: int, where: str = "") -> None:
        import signal

        self.signum = signum
        self.return_code = 128 + signum
        name = signal.Signals(signum).name
        message = f"Stopped by {name} {where}" if where else f"Stopped by {name}."
        if signum == signal.SIGXCPU:
            message += f"\n{_cpu_time_hint()}"
        super().__init__(message)

    def __str__(self) -> str:
        return self.message


class InexactRelocation(RelocateError):
    """Package files name the prefix where their records do not say so
    (records without ``paths_data``), so only conda's clone, which links
    them again from the package cache, can move them exactly."""
