"""The whole run, top to bottom in the README's order: discover, select,
migrate each environment (steps 1 to 4, see ``migrate``), point the user's
files at the new places after each one (step 5), and clean conda's caches."""

from __future__ import annotations

import errno
import os
import shlex
import tempfile
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from . import __version__
from .array_plan import record_end
from .backends import load_backend
from .backends.portable import PortableBackend
from .caches import clean_caches, still_needed
from .candidates import (
    discover,
    moved_earlier,
    nothing_to_migrate,
    orphaned_remains,
    report_discovery,
)
from .exceptions import Interrupted, MigrateError, UsageError
from .migrate import migrate_all
from .names import LOCKS, LOGS
from .output import Output
from .quota import start
from .refusals import (
    check_home_writable,
    check_not_same,
    check_off_scratch,
    refuse_active,
    refuse_duplicate_names,
    state_on_scratch,
)
from .report import json_report, quota_json, quota_line, summarize
from .result import SUCCEEDED, MigrationResult, Phase
from .resume import partial_copies, resume
from .running_jobs import warning as running_jobs
from .safety.lock import check_locking, node_local, said_if_lost
from .safety.statedir import ensure_private
from .selection import prompt_selection
from .settle import Settle

if TYPE_CHECKING:
    from .backends import Backend
    from .discover import Candidate
    from .options import Options
    from .quota import Room
    from .quota_tools import Quota


def open_log(state_dir: Path) -> tuple[TextIO, Path]:
    """0600 (``mkstemp``) in a 0700 directory: rc-file lines and error
    messages may hold what others must not read. A home whose quota is
    full refuses it: the run stops before anything, saying what to do."""
    try:
        fd, path = tempfile.mkstemp(
            prefix=f"conda-migrate-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-",
            suffix=".log",
            dir=state_dir / LOGS,
        )
    except OSError as err:
        raise MigrateError(
            f"Nothing was done: this run's log cannot be written in "
            f"{state_dir / LOGS} ({err.strerror}).",
            hint=_make_room(state_dir, err),
        ) from None
    # The log keeps names as the bytes they are, not UTF-8 or not.
    return open(fd, "a", encoding="utf-8", errors="surrogateescape"), Path(path)


def _make_room(state_dir: Path, err: OSError) -> str:
    """What to do when the home is full, naming the room a killed run's
    partial copy takes there, which only a run that can start would free."""
    if err.errno not in (errno.EDQUOT, errno.ENOSPC):
        return "Fix that, then run the same command again."
    partial = "".join(
        f" The partial copy an interrupted run left at {path} takes room there "
        f"too; its source is untouched, and rm -rf {shlex.quote(str(path))} frees it."
        for path in partial_copies(state_dir)
    )
    return (
        "Your home is full (a quota counts files as well as bytes)."
        + partial
        + " Make room, then run the same command again."
    )


def run(
    options: Options, *, home: Path, stdin: TextIO, stdout: TextIO, command: str
) -> int:
    """The whole run; ``command`` is what the log names as typed."""
    backend = load_backend()
    if options.method == "clone" and isinstance(backend, PortableBackend):
        raise UsageError(
            "conda is not installed here, so --method clone cannot run.",
            hint="Use --method relocate.",
        )
    check_not_same(options.scanned, options.dest_root)
    check_off_scratch(options, home)
    check_home_writable(options, home)
    ensure_private(options.state_dir, create=not options.dry_run)
    with ExitStack() as stack:
        log, log_path = (None, None) if options.dry_run else open_log(options.state_dir)
        if log is not None:
            stack.enter_context(log)
        out = Output(
            quiet=options.quiet,
            stream=stdout,
            log=log,
            log_path=log_path,
            json=options.json,
            verbose=options.verbose,
        )
        out.log_only(f"conda-migrate {__version__}, backend {backend.name}: {command}")
        try:
            with said_if_lost():
                code = _run(options, backend, home, stdin, out, command)
        except (MigrateError, Interrupted) as err:
            out.log_only(f"error: {err}")
            out.log_only(f"exit code {err.return_code}")
            if options.record is not None:
                record_end(options.record, err.return_code)
            raise
        out.log_only(f"exit code {code}")
        if options.record is not None:
            record_end(options.record, code)
        if log_path is not None:
            out.important(f"Log: {log_path}")
        return code


def _run(
    options: Options,
    backend: Backend,
    home: Path,
    stdin: TextIO,
    out: Output,
    command: str,
) -> int:
    started = time.monotonic()
    check_locking(options.state_dir)
    warnings = _warn(options, home, out)
    # Leftovers of a killed run first: a half-removed environment must not
    # be discovered, and finishing one may be all that is left to do.
    outcomes = resume(options, backend, out)
    settle = Settle(options, home, out)
    if not options.dry_run:  # which shows one plan, at the end
        settle(outcomes)
    earlier = _earlier(options, outcomes, settle)
    candidates = _candidates(options, backend, outcomes, earlier)
    valid = report_discovery(options.scanned, candidates, options, out)
    room: Room | None = None
    if valid:
        selected, waited = _select(valid, options, stdin, out)
        started += waited  # the run's time is its own, not the prompt's
        room, migrated = _migrate(selected, options, backend, out, settle, command)
        outcomes += migrated
    else:
        _nothing_found(options, out, outcomes, earlier, candidates)
    outcomes = earlier + outcomes
    if options.dry_run:
        settle(outcomes)
    cleaned = _clean(options, backend, out, outcomes, candidates)
    after = _quota_after(options, out, room)
    summarize(outcomes, out, time.monotonic() - started, options.dry_run)
    success = all(map(_succeeded, outcomes))
    if options.json:
        out.show(
            json_report(
                outcomes,
                success=success,
                dry_run=options.dry_run,
                quota=quota_json(room, after),
                rc_files=settle.rc_edits,
                clean=cleaned,
                log=out.log_path,
                warnings=warnings,
            )
        )
    return 0 if success else 1


def _select(
    valid: list[Candidate], options: Options, stdin: TextIO, out: Output
) -> tuple[list[Candidate], float]:
    """The environments to migrate, and the seconds the prompt waited for
    the user, which are not the run's."""
    asked = time.monotonic()
    if options.select_all:
        return valid, 0.0
    return prompt_selection(valid, stdin, out.stream), time.monotonic() - asked


def _warn(options: Options, home: Path, out: Output) -> list[str]:
    """Said once, before anything is done: this run's state left where the
    scratch purge takes it, the user's jobs on other nodes, which /proc
    here cannot see (with --keep-old nothing is removed), and a run on
    another node, which locks the home keeps on each node alone cannot
    keep apart from this one."""
    jobs = None if options.keep_old else running_jobs()
    warnings = [w for w in (state_on_scratch(options, home), jobs) if w]
    warnings += _locks_elsewhere(options.state_dir)
    out.info(*warnings)
    return warnings


def _locks_elsewhere(state_dir: Path) -> list[str]:
    """A home that keeps locks on each node alone cannot keep this run
    apart from one on another node; only the user can."""
    local = node_local(state_dir)
    if local is None:
        return []
    warning = (
        f"warning: conda-migrate's locks in {state_dir / LOCKS} hold on this node "
        f"only ({local}): a run on another node at the same time (a job, a login "
        "node) is not kept apart from this one, and one could undo the other's "
        "changes to your rc files and conda's environments.txt. Run one at a time."
    )
    return [warning]


def _succeeded(outcome: MigrationResult) -> bool:
    """Purge damage nothing could repair fails the run wherever the
    environment ended up: it is not whole."""
    return outcome.status in SUCCEEDED and not outcome.missing


def _earlier(
    options: Options, resumed: list[MigrationResult], settle: Settle
) -> list[MigrationResult]:
    """Environments an earlier run moved, settled again (unless this is a
    dry run, which shows one plan at the end). What was just finished (or
    could not be) from an earlier run is that run's, reported by resume; it
    is not reported a second time."""
    earlier = moved_earlier(options, {o.source for o in resumed})
    if options.array_share is not None:  # the other tasks' report theirs
        earlier = [o for o in earlier if o.source in options.array_share]
    if not options.dry_run:
        settle(earlier)
    return earlier


def _candidates(
    options: Options,
    backend: Backend,
    resumed: list[MigrationResult],
    earlier: list[MigrationResult],
) -> list[Candidate]:
    """What discovery finds, but for another task's share; an environment
    being finished from an earlier run is not migrated a second time. A
    ``-d`` gone since is not a mistake when an earlier run moved it all."""
    if (
        (resumed or earlier)
        and options.given_directory
        and not options.scanned.exists()
    ):
        candidates = []
    else:
        candidates = discover(options, backend)
    if options.array_share is not None:
        candidates = [c for c in candidates if c.prefix in options.array_share]
    finishing = {o.source for o in resumed}
    return [
        replace(c, reason="being finished from an earlier run (see above)")
        if c.prefix in finishing
        else c
        for c in orphaned_remains(options, candidates)
    ]


def _nothing_found(
    options: Options,
    out: Output,
    resumed: list[MigrationResult],
    earlier: list[MigrationResult],
    candidates: list[Candidate],
) -> None:
    """No valid environment: done already, or (a task of an array aside,
    whose share may have gone) a mistake to say."""
    if earlier:
        out.info(
            f"Nothing left to migrate in '{options.scanned}': conda-migrate already "
            "moved its environments (see the summary)."
        )
    elif not resumed and options.array_share is None:
        raise nothing_to_migrate(options.scanned, candidates)


def _migrate(
    selected: list[Candidate],
    options: Options,
    backend: Backend,
    out: Output,
    settle: Settle,
    command: str,
) -> tuple[Room, list[MigrationResult]]:
    """The selected environments, once nothing refuses them; each settles as
    it moves, and the quota is read before the first."""
    refuse_active(selected, options, command)
    selected, refused = refuse_duplicate_names(selected, options)
    out.info("Selected environments:", *(f"{c.name}:{c.prefix}" for c in selected))
    room = start(options.dest_root, options.share)
    out.info(quota_line(room, "before"), "")

    def settle_one(outcome: MigrationResult) -> None:
        # A dry run shows one plan for all of them instead, after the loop.
        if not options.dry_run:
            settle([outcome])

    return room, refused + migrate_all(
        selected, options, backend, out, settle_one, room
    )


def _clean(
    options: Options,
    backend: Backend,
    out: Output,
    outcomes: list[MigrationResult],
    candidates: list[Candidate],
) -> dict[str, Any] | None:
    """conda's clean, once something moved; what it removed, for ``--json``."""
    if not options.clean or not any(o.status in SUCCEEDED for o in outcomes):
        return None
    out.phase(Phase.CLEANING)
    try:
        cleaned, said = clean_caches(
            backend, dry_run=options.dry_run, keep=still_needed(outcomes, candidates)
        )
    except Interrupted as stop:
        raise Interrupted(
            stop.signum,
            "while cleaning conda's package caches, after all else was done (see "
            "above): what the clean removed is gone, and no package was left "
            "half-removed. Run the same command again to finish the clean.",
        ) from None
    out.info(said)
    out.phase(None)
    return cleaned


def _quota_after(options: Options, out: Output, room: Room | None) -> Quota | None:
    """The quota as the run leaves it: planned (``--dry-run``), or asked
    again of the tool."""
    if room is None or room.before is None:
        return None
    after = room.after() if options.dry_run else room.now()
    if after is not None:
        out.info(quota_line(room, "after", after))
    return after
