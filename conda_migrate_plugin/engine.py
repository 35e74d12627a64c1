"""Step 2: the copy, by relocation (the default) or conda's clone.

Either engine writes into a provisional copy (see ``transaction``) and
checks every file it wrote; ``--method auto`` turns to conda's clone where
relocation cannot rewrite every file exactly. A full destination is told
apart from other failures, since what to do next differs.
"""

from __future__ import annotations

import errno
import secrets
from dataclasses import replace
from typing import TYPE_CHECKING

from .exceptions import DestinationFull, InexactRelocation, MigrateError
from .limits import AS_A_JOB, file_size_limit, file_size_said
from .progress import size
from .result import Phase
from .safety import journal
from .transaction import Copy, provisional

if TYPE_CHECKING:
    from pathlib import Path

    from .output import Output
    from .snapshot import Footprint
    from .transaction import Migration


def copy_verified(run: Migration, footprint: Footprint) -> Copy:
    """A verified copy, not yet committed: relocation into a staging
    directory, or conda's clone at the destination (``--method auto`` turns
    to it where relocation cannot rewrite every file exactly)."""
    options, outcome, out = run.options, run.outcome, run.out
    options.dest_root.mkdir(parents=True, exist_ok=True)
    journal.save_stamps(options.state_dir, outcome.dest, footprint.stamps)
    entry = journal.Entry(
        outcome.name,
        str(outcome.source),
        str(outcome.dest),
        Phase.COPYING,
        "clone" if options.method == "clone" else "relocate",
        run=secrets.token_hex(16),
    )
    out.info(f"Packages: {outcome.packages}", f"Files: {outcome.files}")
    out.phase(Phase.COPYING)
    if options.method == "clone":
        return _clone(run, entry)
    copy = Copy.make(entry, True, options.state_dir)
    try:
        with provisional(run, copy):
            _relocate(run, copy, footprint)
    except InexactRelocation as err:
        if run.backend.name == "portable":
            raise MigrateError(
                f"{err} Relocation cannot rewrite them exactly.",
                hint="The old environment is untouched. Run conda migrate where conda "
                "is installed (conda's clone redoes them from the package cache), or "
                "accept them as they are with --method relocate.",
            ) from err
        out.info(f"{err} Using conda's clone instead.")
        return _clone(run, replace(entry, method="clone"))
    outcome.engine = "relocate"
    out.log_only("engine: relocation")
    return copy


def _clone(run: Migration, entry: journal.Entry) -> Copy:
    copy = Copy.make(entry, False, run.options.state_dir)
    with provisional(run, copy):
        with run.out.conda_output():
            run.backend.clone(run.outcome.source, copy.path, quiet=run.options.quiet)
        run.outcome.engine = "clone"
        run.out.log_only("engine: conda's clone")
        copy.links_out = _verify(run, copy.path)
    return copy


def _verify(run: Migration, copy: Path) -> dict[str, str]:
    """conda's clone checks nothing it links or copies: the file-by-file
    check relocation makes as it writes, made after the clone. Returns the
    copy's symlinks that lead out of it."""
    from .relocation import xattrs
    from .relocation.verify import verify_files

    run.out.phase(Phase.COMPARING)
    check = verify_files(run.outcome.source, copy, copy, run.options.jobs)
    if check.unsupported:
        run.out.info(f"warning: {xattrs.unsupported_warning(check.unsupported)}")
    _judge(run.outcome.source, check.problems, check.notes, run.out)
    return check.links_out


def _judge(source: Path, problems: list[str], notes: list[str], out: Output) -> None:
    """Notes go to the log; any problem stops the migration of ``source``."""
    for line in notes:
        out.log_only(f"note: {line}")
    if problems:
        raise MigrateError(
            f"The copy of {source} differs from it:\n  " + "\n  ".join(problems),
            hint="The old environment was left untouched and the copy removed.",
        )


def _relocate(run: Migration, copy: Copy, footprint: Footprint) -> None:
    """Copy into a staging directory beside the destination, checking each
    file as it is written, then rename into place: conda never sees an
    unverified copy."""
    from .relocation.relocate import relocate

    options, outcome, room = run.options, run.outcome, run.room
    progress = run.out.copy_progress(outcome.files or 0, outcome.bytes or 0)
    try:
        result = relocate(
            outcome.source,
            copy.path,
            outcome.dest,
            listing=footprint.listing,
            jobs=options.jobs,
            progress=progress,
            shared=room.shared if room else None,
        )
    except (MigrateError, OSError) as err:
        full = filled(err)
        if full is not None:
            raise _destination_full(run, full, progress.done) from err
        limit = file_size_limit()
        if limit is None or _caused_by(err, errno.EFBIG) is None:
            raise
        raise MigrateError(
            str(err),
            hint=f"Its copy is larger than {file_size_said(limit)}. The partial "
            f"copy was removed and {outcome.source} is untouched. {AS_A_JOB}",
        ) from err
    copy.written, copy.stamps = result.written, result.stamps
    copy.links_out = result.links_out
    outcome.written_files = result.files - result.shared_files
    outcome.written_bytes = result.bytes - result.shared_bytes
    outcome.shared_files, outcome.shared_bytes = (
        result.shared_files,
        result.shared_bytes,
    )
    run.out.info(*(f"warning: {w}" for w in result.warnings))
    _judge(outcome.source, result.problems, result.notes, run.out)
    if result.inexact and options.method == "auto":
        raise InexactRelocation(
            f"{len(result.inexact)} package files of {outcome.source} name it in "
            f"binary data their records do not describe (such as {result.inexact[0]})."
        )


def _destination_full(
    run: Migration, full: OSError, done: tuple[int, int]
) -> DestinationFull:
    """How far the copy got when the quota or the filesystem filled."""
    options, outcome = run.options, run.outcome
    files, nbytes = done
    quota = full.errno == errno.EDQUOT
    return DestinationFull(
        ("Your quota on " if quota else "The filesystem of ")
        + f"{options.dest_root} filled up ({full.strerror}) while {outcome.name} "
        f"was copied: {files} of {outcome.files or 0} files, {size(nbytes)} of "
        f"{size(outcome.bytes or 0)}, were written when it did.",
        hint=f"The partial copy was removed and {outcome.source} is untouched. "
        "Make room (conda clean --all frees conda's package cache in $HOME; "
        "something else may be writing there), then run the same command again.",
    )


def filled(err: BaseException) -> OSError | None:
    """The ``EDQUOT`` or ``ENOSPC`` behind ``err``, if one is."""
    return _caused_by(err, errno.EDQUOT, errno.ENOSPC)


def _caused_by(err: BaseException, *errnos: int) -> OSError | None:
    """The ``OSError`` of one of ``errnos`` behind ``err``, if one is."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in errnos:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
