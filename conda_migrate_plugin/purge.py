"""What the scratch purge took from an environment: found before the copy,
put back by it where a package cache or channel still has it, and what is
still missing reported with the commands that restore it, since the
environment is not whole wherever it now is."""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from .damage import count_files, find_damage
from .preflight import Restored
from .result import Status

if TYPE_CHECKING:
    from pathlib import Path

    from .damage import Damage
    from .output import Output
    from .records import PathRecord
    from .result import MigrationResult
    from .snapshot import Footprint
    from .transaction import Migration


def find_purged(
    outcome: MigrationResult, footprint: Footprint, records: dict[str, PathRecord]
) -> Restored:
    """What the purge took: files the ``records`` list that the walk did
    not find; and the room the copy takes to restore them."""
    present = {rel for entries in footprint.listing.values() for rel, _ in entries}
    symlinks = {
        rel
        for entries in footprint.listing.values()
        for rel, st in entries
        if stat.S_ISLNK(st.st_mode)
    }
    outcome.damage = find_damage(outcome.source, records, present, symlinks)
    outcome.missing = outcome.damage.files
    return _to_restore(outcome.damage, records, present)


def _to_restore(
    damage: Damage, records: dict[str, PathRecord], present: set[str]
) -> Restored:
    """The room the copy takes to restore what the purge took of conda
    packages (a file, or the file a link into a purged cache led to),
    counted for each whether or not a cache or channel still holds it:
    finding out takes the copy's own reads. Its size is its record's
    (conda's ``size_in_bytes``: the package's file before the prefix is
    written in, which in a text file changes its size by the difference in
    length at each place it is named)."""
    sizes = []
    files = 0
    directories = set()
    for rel in (rel for rels in damage.conda.values() for rel in rels):
        record = records[rel]
        # A package symlink comes back as a link (no data, as the walk
        # counts one); a path of a softlinked package is its file.
        if record.path_type != "softlink" or record.softlinked:
            # A record from before conda wrote ``paths_data`` gives no
            # size: its file counts no bytes rather than a guessed number.
            if record.size is not None:
                sizes.append(record.size)
        if rel not in present:
            files += 1
            parent = os.path.dirname(rel)
            while parent and parent not in present and parent not in directories:
                directories.add(parent)
                parent = os.path.dirname(parent)
    return Restored(tuple(sizes), files, len(directories))


def count_restored(run: Migration, copy: Path) -> None:
    """Which files the purge took the copy holds again (the engine put them
    back from the package cache, checked like every other file), and which
    it still lacks."""
    outcome = run.outcome
    lost = outcome.missing
    outcome.restored = [rel for rel in lost if os.path.exists(copy / rel)]
    outcome.missing = [rel for rel in lost if rel not in set(outcome.restored)]
    if outcome.restored:
        run.out.info(
            f"Restored {count_files(len(outcome.restored))} the purge took, from a package "
            "cache or channel (the log names each, and where it came from)"
        )
    for rel in outcome.restored:
        run.out.log_only(f"restored: {rel}")


def report_missing(outcome: MigrationResult, out: Output) -> None:
    """Damage nothing could repair: on screen with what restores it, since
    the environment is not whole wherever it now is."""
    if not outcome.missing or outcome.damage is None:
        return
    moved = outcome.status not in (Status.PLANNED, Status.FAILED, Status.SKIPPED)
    where = outcome.dest if moved else outcome.source
    outcome.remedy = outcome.damage.remedy(where, outcome.missing)
    out.important(
        f"{count_files(len(outcome.missing))} that the records of {where} list are "
        "missing and could not be restored:",
        *(f"  {rel}" for rel in outcome.missing[:10]),
        *(["  ... (all of them are in the log)"] if len(outcome.missing) > 10 else []),
        "To restore them, run:",
        *(f"  {command}" for command in outcome.remedy),
        "",
    )
    for rel in outcome.missing[10:]:
        out.log_only(f"  {rel}")


def plan_repair(outcome: MigrationResult) -> list[str]:
    """Which files lost to the purge the package caches hold intact, looked
    up without writing or downloading anything."""
    damage = outcome.damage
    if damage is None or not damage.conda:
        return []
    from .records import read_path_records
    from .relocation.repair import restore_missing

    lost = [rel for files in damage.conda.values() for rel in files]
    found = restore_missing(
        outcome.source,
        None,
        str(outcome.dest),
        read_path_records(outcome.source),
        lost,
    )
    outcome.restored = sorted(found.restored)
    outcome.missing = [rel for rel in outcome.missing if rel not in set(found.restored)]
    restorable = len(outcome.restored)
    said = (
        f"Would restore {restorable} of the {len(lost)} files the purge took "
        "from conda packages, from the package caches"
    )
    lines = [said]
    if restorable < len(lost):
        lines.append("  (the others are looked for in their channels too, by conda)")
    return lines
