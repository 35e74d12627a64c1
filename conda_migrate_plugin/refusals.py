"""What a run refuses before it writes anything: a destination inside the
source or back on scratch, a home it cannot write, the active environment,
two environments of one name; and what it only warns of then: its own state
left on scratch."""

from __future__ import annotations

import os
import shlex
import stat
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .candidates import active_among
from .exceptions import MigrateError, UsageError
from .names import HISTORY, LOGS
from .preflight import existing_ancestor
from .rcfiles.rewrite import environ_path, scratch_roots
from .result import MigrationResult

if TYPE_CHECKING:
    from .discover import Candidate
    from .options import Options


def check_not_same(directory: Path, dest_root: Path) -> None:
    """Scanning the destination itself would "migrate" each environment onto
    itself (and meet its own lock)."""
    # Each resolved once (see preflight.check_paths).
    if directory.resolve().is_relative_to(dest_root.resolve()):
        raise UsageError(
            f"The source {directory} and the destination {dest_root} are the same: "
            "environments there are already where they would go. Nothing was touched.",
            hint="Pass -d with the directory in $SCRATCH, or another --dest.",
        )


def check_off_scratch(options: Options, home: Path) -> None:
    """The run exists to take environments off scratch. A destination that
    leads back onto it (``ln -s $SCRATCH/dotconda ~/.conda`` dodges the home
    quota) would have them "migrated" there, the old ones removed and the rc
    files pointed at a place the purge empties, the user told they are safe.
    ``~/.conda/pkgs`` likewise, where the rc files' caches on scratch move."""
    pkgs = home / ".conda" / "pkgs"
    dest = _onto_scratch(options.dest_root, options.scanned, home)
    cache = _onto_scratch(pkgs, options.scanned, home)
    if cache is not None and not _caches_move(options, home, pkgs):
        cache = None
    if dest is not None:
        what, moved, onto = (
            f"The destination {options.dest_root}",
            "The environments",
            dest,
        )
    elif cache is not None:
        what, moved, onto = (
            f"{pkgs}, where conda's package cache would move,",
            "conda's package cache",
            cache,
        )
    else:
        return
    where = (
        "on scratch"
        if onto.under_scratch
        else "on the filesystem the environments are leaving"
    )
    purged = " where scratch is purged" if onto.under_scratch else " on it"
    raise UsageError(
        f"{what} is {where}: {onto.reason}. {moved} would stay{purged}. "
        "Nothing was touched.",
        hint=_off_scratch_hint(
            onto, home, options.scanned, dest=dest is not None, alone=cache is None
        ),
    )


@dataclass(frozen=True)
class _Onto:
    """How a place the run would write leads onto scratch."""

    reason: str
    #: Under ``$SCRATCH``; else on the sources' filesystem through ``link``.
    under_scratch: bool
    #: The last symlink on the way (below the home, for a place in it).
    link: Path | None


def _onto_scratch(place: Path, source: Path, home: Path) -> _Onto | None:
    """Under ``$SCRATCH`` (as set, or as the symlinks of either resolve), or
    led by a symlink onto the filesystem of the environments to migrate. A
    home that is itself a symlink (``/home/u -> /gpfs/home/u``) is the
    site's: only the links below it count for a place in it."""
    lexical, real = Path(os.path.normpath(place)), Path(os.path.realpath(place))
    scratch = environ_path(os.environ, "SCRATCH")
    roots = scratch_roots(scratch, home)
    if any(lexical.is_relative_to(root) for root in roots):
        return _Onto(f"it is under $SCRATCH ({scratch})", True, None)
    link = _last_link(lexical, home)
    said = (
        f"{link} is a symlink to {os.path.realpath(link)}" if link else f"it is {real}"
    )
    if any(real.is_relative_to(root) for root in roots):
        return _Onto(f"{said}, under $SCRATCH ({scratch})", True, link)
    if link is not None and _device(real) == _device(source):
        return _Onto(said, False, link)
    return None


def _last_link(lexical: Path, home: Path) -> Path | None:
    """The deepest symlink on the way to ``lexical`` (it decides where the
    place lands), one lstat a level, none below the first missing one."""
    top = next(
        (h for h in (home, Path(os.path.realpath(home))) if lexical.is_relative_to(h)),
        Path(lexical.anchor),
    )
    link, walked = None, top
    for part in lexical.relative_to(top).parts:
        walked /= part
        try:
            mode = os.lstat(walked).st_mode
        except OSError:
            break
        if stat.S_ISLNK(mode):
            link = walked
    return link


def _device(path: Path) -> int:
    return os.stat(existing_ancestor(Path(os.path.realpath(path)))).st_dev


def _caches_move(options: Options, home: Path, pkgs: Path) -> bool:
    """Whether the rc files name a package cache the run would point at
    ``pkgs`` (one on scratch, or in the scanned directory), read as the rc
    step reads them once that directory is emptied."""
    from .rcfiles import DirMove, plan_rc_edits

    if not options.update_rc:
        return False
    scanned = options.scanned
    if (scanned / HISTORY).is_file():
        scanned = scanned.parent
    moves = [DirMove(scanned, options.dest_root, pkgs)]
    return any(edit.caches for edit in plan_rc_edits([], moves, home, os.environ))


def _off_scratch_hint(
    onto: _Onto, home: Path, source: Path, *, dest: bool, alone: bool
) -> str:
    """A symlink of the user's below the home becomes a directory there,
    holding what it led to (an empty one where that holds the ``source``:
    a ``mv`` would carry environments into the home unchecked); a
    destination may also go elsewhere in the home, unless (``alone`` not)
    the cache is refused as well."""
    elsewhere = "pass --dest with a directory in your home"
    link = onto.link
    if link is None or not link.is_relative_to(home):
        if dest:
            return f"{elsewhere.capitalize()}."
        return (
            "Pass --no-rc to leave the rc files and conda's package cache as they are."
        )
    return (
        f"{_make_a_directory(link, home, source)}\n"
        f"then run this again{f' (or {elsewhere})' if dest and alone else ''}."
    )


def _make_a_directory(link: Path, home: Path, source: Path) -> str:
    """The commands that turn ``link`` (below the home) into a directory
    there, at the same path, so that what the run reads and writes through
    it is found where it was."""
    target = Path(os.path.realpath(link))
    make = (
        f"mv {shlex.quote(str(target))} {shlex.quote(str(link))}"
        if target.exists() and not source.resolve().is_relative_to(target)
        else f"mkdir {shlex.quote(str(link))}"
    )
    clean = (
        " (if that is a large package cache, conda clean --all first)"
        if (home / ".conda" / "pkgs").is_relative_to(link)
        else ""
    )
    return (
        f"Make {link} a directory in your home, holding what it leads to{clean}:\n"
        f"  rm {shlex.quote(str(link))} && {make}"
    )


def state_on_scratch(options: Options, home: Path) -> str | None:
    """What a later run needs, left where the purge takes it: said, not
    refused. ``~/.conda`` linked into scratch is a quota workaround users
    choose on purpose, and with ``--dest`` in the home the environments do
    leave scratch; but the journal a rerun finishes a stopped run from, the
    YAML copies and conda's list of environments outside its envs_dirs stay
    there. Moving them elsewhere on the fly would hide a stopped run's
    journal from the rerun; a directory made at the same path keeps it."""
    state = "its journal and logs ({}), which the same command needs to finish"
    registry = "conda's environments.txt ({}), where conda finds environments"
    kept = [
        (options.state_dir, f"{state} a stopped run"),
        (options.yaml_dir, "the YAML copies ({}), your way back to each environment"),
        (home / ".conda" / "environments.txt", f"{registry} outside its envs_dirs"),
    ]
    found = [
        (place, what.format(place), onto)
        for place, what in kept
        if (onto := _onto_scratch(place, options.scanned, home)) is not None
    ]
    if not found:
        return None
    # One reason for all that one symlink (``~/.conda``) leads there.
    reasons = "; ".join(
        dict.fromkeys(
            onto.reason if onto.link else f"{place} {onto.reason.removeprefix('it ')}"
            for place, _, onto in found
        )
    )
    purge = (
        "the scratch purge would take"
        if any(onto.under_scratch for _, _, onto in found)
        else "the environments are leaving that filesystem; a purge of it would take"
    )
    said = (
        f"warning: {reasons}: {purge} what conda-migrate keeps there for later: "
        + "; ".join(what for _, what, _ in found)
        + "."
    )
    links = {onto.link for _, _, onto in found}
    rest = any(place != options.yaml_dir for place, _, _ in found)
    return f"{said}\n{_keep_it(links, home, options.scanned, rest=rest)}"


def _keep_it(links: set[Path | None], home: Path, source: Path, *, rest: bool) -> str:
    """One symlink below the home leads them all there (``~/.conda``): made
    a directory, it keeps them at the paths a rerun looks at. The YAML
    copies alone may go elsewhere (``rest``: more than they are there)."""
    yaml = "--yaml-dir with a directory in your home to keep the YAML copies"
    link = links.pop() if len(links) == 1 else None
    if link is not None and link.is_relative_to(home):
        return (
            f"{_make_a_directory(link, home, source)}\n"
            f"(a stopped run's journal is found there as before), or pass {yaml} "
            "at least."
        )
    if not rest:
        return f"Pass {yaml} there."
    return (
        "To keep them, make the symlink that leads there a directory in your "
        f"home, at the same path (where a rerun looks), or pass {yaml} at least."
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
        # One lstat a level: a symlink, dangling or not, stops the climb.
        while not os.path.lexists(blocker):
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
