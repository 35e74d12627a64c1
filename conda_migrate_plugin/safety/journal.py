"""What each migration in progress has done so far, on disk.

A job can be killed between any two instructions. Before each phase the
journal says where the migration stands, so the next run knows whether a
copy it finds is unverified (remove it) or verified (finish the job), instead
of guessing from what happens to be on disk.

Nothing in it is taken on trust: an entry is read only from a file the user
owns, every field is checked (names are joined into paths), and a copy is
removed only when it still is the directory this run created (same device
and inode, and the run's marker inside while unverified), never because a
path of that name exists: the user may have made a new environment there.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ..names import JOURNAL, MARKER, MOVES, STAGING_PREFIX, keyed_file
from ..result import JOURNALED, Phase
from .atomic import write_atomically
from .lock import alone, sharing
from .statedir import owned_file

if TYPE_CHECKING:
    from ..snapshot import Stamp


@dataclass(frozen=True)
class Entry:
    """Where one migration stands, recorded before each of its steps."""

    name: str
    source: str
    dest: str
    #: One of ``JOURNALED``.
    phase: Phase
    #: The engine making the copy ("relocate" or "clone", never the "auto"
    #: a user may leave the choice at): what a later run finishing the
    #: migration reports.
    method: str
    #: A random id of the run; also the content of the marker.
    run: str = ""
    #: Read from entries that earlier versions wrote, never used: a device
    #: number is the client's own, and an NFS or Lustre home's differs from
    #: node to node and from one mount to the next.
    copy_dev: int = 0
    #: Inode of the copy's directory, once it was created: the server's.
    copy_ino: int = 0
    #: Where a relocated copy is made before it is renamed to ``dest``.
    staging: str = ""


def _plain_name(name: str) -> bool:
    return (
        bool(name) and name not in (".", "..") and "/" not in name and "\0" not in name
    )


def _normal_path(path: str, name: str) -> bool:
    return (
        os.path.isabs(path)
        and os.path.normpath(path) == path
        and os.path.basename(path) == name
    )


def valid(entry: Entry) -> bool:
    types = {f.name: f.type for f in fields(Entry)}
    for key, value in asdict(entry).items():
        want = int if types[key] in ("int", int) else str
        if not isinstance(value, want) or isinstance(value, bool):
            return False
    return (
        _plain_name(entry.name)
        and _normal_path(entry.source, entry.name)
        and _normal_path(entry.dest, entry.name)
        and entry.phase in JOURNALED
        and entry.source != entry.dest
        and (
            not entry.staging
            or (
                os.path.normpath(entry.staging) == entry.staging
                and os.path.dirname(entry.staging) == os.path.dirname(entry.dest)
                and os.path.basename(entry.staging).startswith(STAGING_PREFIX)
            )
        )
    )


def path_for(state_dir: Path, dest: Path) -> Path:
    return keyed_file(state_dir, JOURNAL, str(dest), ".json")


def record(state_dir: Path, entry: Entry) -> None:
    with sharing(state_dir, JOURNAL):
        write_atomically(
            path_for(state_dir, Path(entry.dest)),
            json.dumps(asdict(entry)),
            mode=0o600,
        )


def clear(state_dir: Path, dest: Path) -> None:
    path = path_for(state_dir, dest)
    path.unlink(missing_ok=True)
    for of in (SOURCE, COPY):
        path.with_suffix(of).unlink(missing_ok=True)


def entries(state_dir: Path) -> list[Entry]:
    """Unreadable, foreign or malformed entries are skipped: a torn write or
    a planted file is never half-trusted."""
    found = []
    partials = list((state_dir / JOURNAL).glob(".*.partial"))
    if partials:
        # Writes a killed run never finished, unless another run (a task of
        # the same job array) is writing: its write may be one of them.
        with alone(state_dir, JOURNAL) as no_writer:
            for partial in partials if no_writer else []:
                if owned_file(partial):
                    partial.unlink(missing_ok=True)
    for path in sorted((state_dir / JOURNAL).glob("*.json")):
        if not owned_file(path):
            continue
        try:
            entry = Entry(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue
        if valid(entry) and path == path_for(state_dir, Path(entry.dest)):
            found.append(replace(entry, phase=Phase(entry.phase)))
    return found


#: The stamps kept beside an entry: of the source as it was copied, and of
#: the copy as it was verified.
SOURCE: Final = ".stamps"
COPY: Final = ".copy-stamps"


def save_stamps(
    state_dir: Path, dest: Path, stamps: dict[str, Stamp], of: str = SOURCE
) -> None:
    """The source as it was copied, for a later run to check it unchanged;
    or the copy as it was verified, for a later run to prove it still is."""
    with sharing(state_dir, JOURNAL):
        write_atomically(
            path_for(state_dir, dest).with_suffix(of), json.dumps(stamps), mode=0o600
        )


def load_stamps(
    state_dir: Path, dest: Path, of: str = SOURCE
) -> dict[str, Stamp] | None:
    path = path_for(state_dir, dest).with_suffix(of)
    if not owned_file(path):
        return None
    try:
        stamps = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(stamps, dict):
        return None
    return {rel: tuple(stamp) for rel, stamp in stamps.items()}


def is_our_copy(entry: Entry, path: Path, *, verified: bool = False) -> bool:
    """Whether ``path`` is the directory this entry's run created: the user's
    own, and either at the random staging name recorded before it was made,
    or with the recorded inode and (while unverified) the run's marker
    inside. A verified copy is then held to the stamps it was verified with
    before anything is removed (``resume``): its inode number alone could
    be one a deleted directory left free."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        return False
    same = st.st_ino == entry.copy_ino
    if entry.staging and str(path) == entry.staging:
        return same or not entry.copy_ino
    if not same:
        return False
    if verified:
        return True
    try:
        return (path / MARKER).read_text() == entry.run
    except OSError:
        return False


def unverified(state_dir: Path, path: Path) -> bool:
    """Whether ``path`` is the unverified copy a killed run made, there
    still (conda's clone copies at the destination itself): the next run
    removes it before anything else (see ``resume``)."""
    return any(
        entry.phase not in _FINISHED_COPY and is_our_copy(entry, path)
        for entry in entries(state_dir)
    )


#: Phases past the copy's verification.
_FINISHED_COPY = (Phase.VERIFIED, Phase.REMOVING, Phase.DONE)


def remember_move(state_dir: Path, source: Path, dest: Path) -> None:
    """Kept after the entry is cleared: once the old environment is gone
    (removed by this run, or by hand later), this is what tells a rerun
    over its directory that it was moved, and where, so that it can still
    point the rc files there and say so instead of "nothing found"."""
    write_atomically(
        keyed_file(state_dir, MOVES, str(source), ".json"),
        json.dumps({"source": str(source), "dest": str(dest)}),
        mode=0o600,
    )


def moves(state_dir: Path) -> dict[Path, Path]:
    """Every move remembered, old place to new; what is not the user's own
    file, or not two absolute paths of the same name, is not believed."""
    found = {}
    for path in sorted((state_dir / MOVES).glob("*.json")):
        if not owned_file(path):
            continue
        try:
            move = json.loads(path.read_text())
            source, dest = move["source"], move["dest"]
        except (OSError, ValueError, TypeError, KeyError):
            continue
        name = os.path.basename(str(source))
        if (
            isinstance(source, str)
            and isinstance(dest, str)
            and _plain_name(name)
            and _normal_path(source, name)
            and _normal_path(dest, name)
            and path == keyed_file(state_dir, MOVES, source, ".json")
        ):
            found[Path(source)] = Path(dest)
    return found
