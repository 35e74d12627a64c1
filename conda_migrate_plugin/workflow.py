"""The whole run, top to bottom in the README's order: discover, select,
migrate each environment (steps 1 to 4, see ``migrate``), point the user's
files at the new places after each one (step 5), and clean conda's caches."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import Counter
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from . import __version__
from .array_plan import record, record_end
from .backends import load_backend
from .backends.portable import PortableBackend
from .discover import HISTORY, examine, scan_directory, scratch_environments, under
from .exceptions import Interrupted, MigrateError, UsageError
from .migrate import (
    EXPLAINED,
    MOVED,
    SUCCEEDED,
    MigrationResult,
    Output,
    Status,
    migrate_all,
)
from .names import LOGS
from .progress import duration, size
from .quota import start
from .resume import resume
from .safety import journal
from .safety.lock import serialized
from .safety.statedir import ensure_private
from .selection import prompt_selection

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .backends import Backend
    from .discover import Candidate
    from .options import Options
    from .quota import Quota, Room
    from .rcfiles import DirMove, RcEdit


def discover(options: Options, backend: Backend) -> list[Candidate]:
    root = options.scanned
    if not options.given_directory:
        return scratch_environments(backend.known_prefixes(), root)
    if not root.exists():
        raise UsageError(
            f"{root} does not exist.",
            hint="Pass -d with the directory that holds your environments "
            "(conda env list | grep /scratch shows it).",
        )
    if not root.is_dir():
        raise UsageError(
            f"{root} is not a directory.",
            hint="Pass -d with a directory in $SCRATCH.",
        )
    if options.one_environment:
        candidate = examine(root)
        if not candidate.valid:
            raise MigrateError(
                f"{root} is not a conda environment ({candidate.reason}); "
                "nothing was touched.",
                hint="Pass -d with a directory to migrate the environments in it.",
            )
        return [candidate]
    return scan_directory(root)


def nothing_to_migrate(directory: Path, candidates: list[Candidate]) -> MigrateError:
    """A mistyped ``-d`` must fail the batch job, and ``-d`` one level too
    high (``$SCRATCH`` instead of ``$SCRATCH/conda-envs``) names the way;
    ``-d`` naming one environment that cannot go says why."""
    if [c.prefix for c in candidates] == [directory] and candidates[0].reason:
        return MigrateError(
            f"{directory} cannot be migrated: {candidates[0].reason}.",
            hint="Nothing was migrated.",
        )
    holders = []
    for candidate in candidates:
        try:
            if candidate.prefix.is_dir() and not candidate.prefix.is_symlink():
                found = sum(c.valid for c in scan_directory(candidate.prefix))
                if found:
                    holders.append((candidate.prefix, found))
        except OSError:
            continue
    if not holders:
        return MigrateError(
            f"No valid conda environments in '{directory}'; nothing was migrated.",
            hint="Pass -d with the directory that holds them "
            "(conda env list | grep /scratch shows it).",
        )
    listed = ", ".join(f"{path} ({count})" for path, count in holders)
    return MigrateError(
        f"No conda environments directly in '{directory}', but these directories "
        f"hold some: {listed}; nothing was migrated.",
        hint=f"Pass one of them with -d, e.g.: conda migrate -d {holders[0][0]}",
    )


def check_not_same(directory: Path, dest_root: Path) -> None:
    """Scanning the destination itself would "migrate" each environment onto
    itself (and meet its own lock)."""
    if directory.resolve() == dest_root.resolve() or under(directory, dest_root):
        raise UsageError(
            f"The source {directory} and the destination {dest_root} are the same: "
            "environments there are already where they would go. Nothing was touched.",
            hint="Pass -d with the directory in $SCRATCH, or another --dest.",
        )


def check_home_writable(options: Options, home: Path) -> None:
    """Every place outside the destination the run writes, checked before
    the first copy: the log, the journal and locks, the YAML copies, conda's
    environments.txt. Otherwise the failure comes after a full copy and
    compare, or as a traceback while the log is opened."""
    places = [
        (options.state_dir / LOGS, "the run's log"),
        (options.state_dir, "the journal and locks"),
        (options.yaml_dir, "the YAML copies"),
        (home / ".conda", "conda's environments.txt"),
    ]
    for place, purpose in places:
        blocker = place
        while not blocker.exists() and not blocker.is_symlink():
            blocker = blocker.parent
        if not blocker.is_dir():
            problem = f"{blocker} is not a directory"
        elif not os.access(blocker, os.W_OK | os.X_OK):
            problem = f"{blocker} is not writable"
        else:
            continue
        raise UsageError(
            f"Cannot write {place} ({purpose}): {problem}. Nothing was touched.",
            hint="Fix that (ls -ld shows who owns it) and run again; "
            "--yaml-dir puts the YAML copies elsewhere.",
        )
    registry = home / ".conda" / "environments.txt"
    if registry.exists() and not os.access(registry, os.W_OK):
        raise UsageError(
            f"Cannot write {registry} (conda's list of environments): it is not "
            "writable. Nothing was touched.",
            hint=f"Fix that (ls -l {registry}) and run again.",
        )


def report_discovery(
    directory: Path, candidates: list[Candidate], options: Options, out: Output
) -> list[Candidate]:
    for candidate in candidates:
        if candidate.valid:
            out.info(f"Valid Env: {candidate.name}")
        else:
            out.info(f"INVALID ENV: {candidate.name} ({candidate.reason})")
    valid = [candidate for candidate in candidates if candidate.valid]
    if valid:
        # What the prompt asks about is shown with it, -q or not.
        say = out.info if options.select_all else out.important
        say("", f"Valid Conda environments in '{directory}':")
        say(*(f"{i}. {c.name} ({c.prefix})" for i, c in enumerate(valid, 1)), "")
    for candidate in active_among(valid, options):
        out.info(
            f"{candidate.name} is the active environment: conda never removes it, "
            "so it can be migrated once deactivated (conda deactivate).",
            "",
        )
    return valid


def active_among(candidates: list[Candidate], options: Options) -> list[Candidate]:
    """The environment this shell (or the job it submitted, which inherits
    ``CONDA_PREFIX``) has activated, unless ``--keep-old`` keeps it anyway."""
    active = os.environ.get("CONDA_PREFIX")
    if not active or options.keep_old:
        return []
    try:
        return [c for c in candidates if c.prefix.resolve() == Path(active).resolve()]
    except OSError:
        return []


def refuse_active(selected: list[Candidate], options: Options, command: str) -> None:
    """conda refuses ``conda remove --all`` of the active environment; this
    run would remove it too, so it refuses as early, before anything is
    written, instead of copying it only to keep both and leave the rc files
    naming the old one."""
    for candidate in active_among(selected, options):
        raise MigrateError(
            f"{candidate.name} is the active environment ({candidate.prefix}); conda "
            "never removes the active environment, so nothing was touched.",
            hint=f"Deactivate it, then run the same command again:\n"
            f"  conda deactivate\n  {command}\n"
            "(or add --keep-old to copy it and keep the old one).",
        )


def refuse_duplicate_names(
    selected: list[Candidate], options: Options
) -> tuple[list[Candidate], list[MigrationResult]]:
    """Two environments named alike would both go to ``DEST/NAME``."""
    counts = Counter(candidate.name for candidate in selected)
    keep, refused = [], []
    for candidate in selected:
        if counts[candidate.name] == 1:
            keep.append(candidate)
            continue
        refused.append(
            MigrationResult(
                candidate.name,
                candidate.prefix,
                options.dest_root / candidate.name,
                message=f"More than one selected environment is named {candidate.name}; "
                "none of them was touched. Migrate them one at a time with -d and different --dest.",
            )
        )
    return keep, refused


def update_rc_files(
    outcomes: list[MigrationResult],
    options: Options,
    home: Path,
    out: Output,
    backups: dict[Path, Path],
) -> list[dict[str, Any]]:
    from .rcfiles import DirMove, EnvMove, apply_rc_edits, plan_rc_edits

    # --dry-run shows the edits the run would make ("planned").
    moved = [o for o in outcomes if o.status in MOVED]
    if not moved:
        return []
    env_moves = [EnvMove(o.source, o.dest) for o in moved]
    leaving = {
        o.source for o in moved if o.status == Status.PLANNED and not options.keep_old
    }
    # A directory stops being where environments live (CONDA_ENVS_PATH,
    # envs_dirs) only once none is left in it, or those left would be lost
    # to activation by name.
    dir_moves = [
        DirMove(parent, options.dest_root, home / ".conda" / "pkgs")
        for parent in sorted({o.source.parent for o in moved})
        if not any(c.valid and c.prefix not in leaving for c in scan_directory(parent))
    ]
    edits = plan_rc_edits(env_moves, dir_moves, home, os.environ)
    if options.dry_run and any(edit.diff or edit.error for edit in edits):
        out.info("These files would be changed (--no-rc leaves them as they are):")
    for edit in edits:
        if edit.error:
            out.info(f"{edit.path} was left as it is: {edit.error}")
        elif edit.diff:
            show_diff(edit, out)
    if any(_moves_package_cache(edit.diff) for edit in edits):
        verb = "would move" if options.dry_run else "moves"
        out.info(
            f"Note: conda's package cache {verb} into {home / '.conda' / 'pkgs'}: the "
            "packages conda downloads from now on count against your home quota "
            "(conda clean --all frees them)." + _cache_sizes(dir_moves, home)
        )
    if not options.dry_run:
        apply_rc_edits(edits, backups=backups)
        for edit in edits:
            if edit.error:
                out.info(f"{edit.path} was not updated: {edit.error}")
            elif edit.backup:
                out.info(f"Updated {edit.path} (backup: {edit.backup})")
    for edit in edits:
        out.info(*(f"warning: {edit.path}: {w}" for w in edit.warnings))
    return [
        {
            "path": str(e.path),
            "diff": e.diff,
            "error": e.error,
            "backup": str(e.backup) if e.backup else None,
            "warnings": e.warnings,
        }
        for e in edits
    ]


#: Changed lines of an rc file shown on screen; the log has them all.
DIFF_LINES = 40


def show_diff(edit: RcEdit, out: Output) -> None:
    from .rcfiles import diff_head

    head, changed = diff_head(edit, DIFF_LINES)
    if head == edit.diff:
        out.info(edit.diff)
        return
    out.log_only(edit.diff)
    out.screen_only(head)
    whole = f", the log has all of it: {out.log_path}" if out.log_path else ""
    out.info(
        f"{edit.path}: {changed} lines changed; the diff shows the first "
        f"{DIFF_LINES} of them{whole}"
    )


def _cache_sizes(dir_moves: Sequence[DirMove], home: Path) -> str:
    """What the caches being replaced hold, which conda downloads again into
    $HOME as environments need it, and what the one in $HOME holds now."""
    from .quota import package_caches, usage

    said = []
    for cache in package_caches([move.source for move in dir_moves]):
        nbytes, files = usage(cache)
        said.append(
            f" The cache it replaces, {cache}, holds {size(nbytes)} in {files} files."
        )
    mine = home / ".conda" / "pkgs"
    if mine.is_dir():
        nbytes, files = usage(mine)
        said.append(f" {mine} holds {size(nbytes)} in {files} files now.")
    return "".join(said)


def _moves_package_cache(diff: str) -> bool:
    """A changed ``pkgs_dirs`` or ``CONDA_PKGS_DIRS`` line now names $HOME."""
    return any(
        line.startswith("+")
        and not line.startswith("+++")
        and ("pkgs_dirs" in line or "CONDA_PKGS_DIRS" in line or "/.conda/pkgs" in line)
        for line in diff.splitlines()
    )


@dataclass
class Settle:
    """Right after each environment moves, not at the end of the run: a job
    stopped at its time limit must leave the rc files naming what is where.
    ``backups`` keeps each rc file's first backup of the run; ``rc_edits``
    is what ``--json`` reports."""

    options: Options
    home: Path
    out: Output
    backups: dict[Path, Path] = field(default_factory=dict)
    rc_edits: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, outcomes: list[MigrationResult]) -> None:
        options = self.options
        if not options.dry_run:
            for outcome in outcomes:
                if outcome.status in (*MOVED, Status.COPIED):
                    journal.remember_move(
                        options.state_dir, outcome.source, outcome.dest
                    )
        if options.update_rc:
            # Tasks of a job array settle side by side: one at a time reads
            # and rewrites the rc files, or one's edit would undo another's.
            turn = (
                nullcontext()
                if options.dry_run
                else serialized(options.state_dir, "rc-files")
            )
            with turn:
                self.rc_edits += update_rc_files(
                    outcomes, options, self.home, self.out, self.backups
                )
        if not options.dry_run:
            for outcome in outcomes:
                if outcome.status in (Status.MIGRATED, Status.KEPT):
                    journal.clear(options.state_dir, outcome.dest)
            if options.record is not None:
                record(options.record, [o.to_json() for o in outcomes])


def moved_earlier(options: Options, skip: set[Path]) -> list[MigrationResult]:
    """Environments of the scanned directory that a run of this tool moved
    and whose old place is gone since (removed by that run, or by hand
    after it kept it): a rerun still points the rc files at them, and
    finding only these is "nothing left to do", not a mistyped ``-d``."""
    root = options.scanned
    found = []
    for source, dest in journal.moves(options.state_dir).items():
        inside = (
            root in (source, source.parent)
            if options.given_directory
            else under(source, root)
        )
        if not inside or source in skip or not (dest / HISTORY).is_file():
            continue
        if os.path.lexists(source) and examine(source).valid:
            continue  # still there: discovery judges it
        found.append(
            MigrationResult(
                source.name,
                source,
                dest,
                Status.ALREADY,
                f"{source.name} was migrated to {dest} by an earlier run.",
            )
        )
    return found


#: What ``--json`` and the summary add up: written, shared and freed.
COUNTED = (
    "written_files",
    "written_bytes",
    "shared_files",
    "shared_bytes",
    "freed_files",
    "freed_bytes",
)


def totals(outcomes: list[MigrationResult]) -> dict[str, int]:
    return {key: sum(getattr(o, key) or 0 for o in outcomes) for key in COUNTED}


def _moved(numbers: dict[str, int], dry_run: bool) -> str:
    """Written, shared and freed, as one line of the summary."""
    verb = (
        ("would write", "would share", "would free")
        if dry_run
        else ("written", "shared", "freed")
    )
    return (
        f"{verb[0]} {numbers['written_files']} files, {size(numbers['written_bytes'])}; "
        f"{verb[1]} {numbers['shared_files']} files, {size(numbers['shared_bytes'])}; "
        f"{verb[2]} on the source {numbers['freed_files']} files, "
        f"{size(numbers['freed_bytes'])}"
    )


def quota_line(room: Room, when: str, after: Quota | None = None) -> str:
    """The quota the run found (``after``: as it ends), or that it found
    none to ask."""
    if room.before is None:
        asked = (
            f"no quota tool answered (asked: {', '.join(room.tried)})"
            if room.tried
            else "no quota tool is installed here (lfs, mmlsquota, beegfs-ctl, quota)"
        )
        return (
            f"Quota on {room.root}: {asked}; only the filesystem's free space is "
            "checked, which on a network home is not your quota."
        )
    quota = room.before if after is None else after
    return f"Quota on {room.root} {when}: {quota.describe()}"


def quota_json(room: Room | None, after: Quota | None) -> dict[str, Any] | None:
    if room is None or room.before is None:
        return None
    return {
        "tool": room.before.tool,
        "before": _quota_numbers(room.before),
        "after": _quota_numbers(after) if after else None,
    }


def _quota_numbers(quota: Quota) -> dict[str, int | None]:
    return {
        "used_bytes": quota.used_bytes,
        "limit_bytes": quota.limit_bytes,
        "used_files": quota.used_files,
        "limit_files": quota.limit_files,
    }


def summarize(
    outcomes: list[MigrationResult], out: Output, seconds: float, dry_run: bool = False
) -> None:
    out.important("Summary:")
    for status in Status:
        group = [o for o in outcomes if o.status == status]
        if group:
            label = "already migrated" if status == Status.ALREADY else status
            out.important(f"  {label}: {len(group)}")
            for o in group:
                notes = [f"YAML: {o.yaml}"] if o.yaml else []
                if o.seconds is not None and status != Status.PLANNED:
                    notes.append(duration(o.seconds))
                more = f" ({'; '.join(notes)})" if notes else ""
                out.important(f"    {o.name}: {o.source} -> {o.dest}{more}")
                if o.written_files is not None:
                    out.important(f"      {_moved(totals([o]), dry_run)}")
                if status in EXPLAINED and o.message:
                    out.important(f"      {o.message.splitlines()[0]}")
                if o.missing:
                    out.important(
                        f"      files lost to the purge and missing: {len(o.missing)} "
                        "(see above for what restores them)"
                    )
    if any(o.written_files is not None for o in outcomes):
        out.important(f"  total: {_moved(totals(outcomes), dry_run)}")
    out.important(f"Total time: {duration(seconds)}")


def still_needed(
    outcomes: list[MigrationResult], candidates: list[Candidate]
) -> set[str]:
    """The cached packages that environments damaged by the purge still
    lack files of (the one place those files may come back from), and those
    that the environments found here link to, registered with conda or not
    (a softlinked environment the user did not pick would dangle)."""
    from .records import softlinked_packages

    lacking = {
        package
        for o in outcomes
        if o.damage is not None
        for package in o.damage.packages_lacking(o.missing)
    }
    on_disk = [c.prefix for c in candidates if c.valid and c.prefix.is_dir()]
    return lacking | {path.name for path in softlinked_packages(on_disk)}


def clean_caches(
    backend: Backend, *, dry_run: bool, keep: set[str]
) -> tuple[dict[str, Any] | None, str]:
    """conda's clean, and the line that says what it freed: a run's and the
    job array's last job say it alike."""
    cleaned = backend.clean(dry_run=dry_run, keep=keep)
    if cleaned is None:
        return None, "conda is not installed here, so conda's clean was skipped."
    verb = "Would remove" if dry_run else "Removed"
    items = sum(len(v) for v in cleaned.values() if isinstance(v, list))
    return (
        cleaned,
        f"{verb} {items} items ({size(cleaned['bytes'])}) from conda's caches.",
    )


def open_log(state_dir: Path) -> tuple[TextIO, Path]:
    """0600 (``mkstemp``) in a 0700 directory: rc-file lines and error
    messages may hold what others must not read."""
    fd, path = tempfile.mkstemp(
        prefix=f"conda-migrate-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-",
        suffix=".log",
        dir=state_dir / LOGS,
    )
    # The log keeps names as the bytes they are, not UTF-8 or not.
    return open(fd, "a", encoding="utf-8", errors="surrogateescape"), Path(path)


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
    # Leftovers of a killed run first: a half-removed environment must not
    # be discovered, and finishing one may be all that is left to do.
    outcomes = resume(options, backend, out)
    settle = Settle(options, home, out)
    settle(outcomes)

    def settle_one(outcome: MigrationResult) -> None:
        # A dry run shows one plan for all of them instead, after the loop.
        if not options.dry_run:
            settle([outcome])

    # What was just finished (or could not be) from an earlier run is that
    # run's, reported above; it is not migrated a second time.
    resumed = {o.source for o in outcomes}
    earlier = moved_earlier(options, resumed)
    if options.array_share is not None:  # the other tasks' report theirs
        earlier = [o for o in earlier if o.source in options.array_share]
    if not options.dry_run:  # a dry run shows one plan, at the end
        settle(earlier)
    if (
        (outcomes or earlier)
        and options.given_directory
        and not options.scanned.exists()
    ):
        candidates = []
    else:
        candidates = discover(options, backend)
    if options.array_share is not None:
        candidates = [c for c in candidates if c.prefix in options.array_share]
    candidates = [
        replace(c, reason="being finished from an earlier run (see above)")
        if c.prefix in resumed
        else c
        for c in candidates
    ]
    valid = report_discovery(options.scanned, candidates, options, out)
    room: Room | None = None
    if valid:
        asked = time.monotonic()
        selected = (
            valid if options.select_all else prompt_selection(valid, stdin, out.stream)
        )
        # The run's time is its own, not the time the prompt waited.
        started += time.monotonic() - asked
        refuse_active(selected, options, command)
        selected, refused = refuse_duplicate_names(selected, options)
        out.info("Selected environments:", *(f"{c.name}:{c.prefix}" for c in selected))
        room = start(options.dest_root, options.share)
        out.info(quota_line(room, "before"), "")
        outcomes += refused + migrate_all(
            selected, options, backend, out, settle_one, room
        )
    elif earlier:
        out.info(
            f"Nothing left to migrate in '{options.scanned}': conda-migrate already "
            "moved its environments (see the summary)."
        )
    elif not outcomes and options.array_share is None:
        raise nothing_to_migrate(options.scanned, candidates)
    outcomes = earlier + outcomes
    if options.dry_run:
        settle(outcomes)
    cleaned = None
    if options.clean and any(o.status in SUCCEEDED for o in outcomes):
        out.phase("clean")
        cleaned, said = clean_caches(
            backend, dry_run=options.dry_run, keep=still_needed(outcomes, candidates)
        )
        out.info(said)
        out.phase(None)
    after = None
    if room is not None and room.before is not None:
        # Planned (--dry-run), or asked again of the tool.
        after = room.after() if options.dry_run else room.now()
        if after is not None:
            out.info(quota_line(room, "after", after))
    summarize(outcomes, out, time.monotonic() - started, options.dry_run)
    # Purge damage nothing could repair fails the run wherever the
    # environment ended up: it is not whole.
    success = all(o.status in SUCCEEDED and not o.missing for o in outcomes)
    if options.json:
        document = {
            "success": success,
            "dry_run": options.dry_run,
            "environments": [o.to_json() for o in outcomes],
            "totals": totals(outcomes),
            "quota": quota_json(room, after),
            "rc_files": settle.rc_edits,
            "clean": cleaned,
            "log": str(out.log_path) if out.log_path else None,
        }
        out.show(json.dumps(document, indent=2))
    return 0 if success else 1
