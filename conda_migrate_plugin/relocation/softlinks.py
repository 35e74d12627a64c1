"""Links into a package cache (conda's ``allow_softlinks`` and
``always_softlink``): which ones the copy turns into the files they lead to,
and what those files are.

On scratch such a link takes a few bytes and its file lives in the package
cache, which the purge takes like the rest; the copy holds the file itself.
The room a copy needs is counted before anything is written, so the
preflight must see those files as the copy will write them: both decide with
``findings.into_package_cache``. Environments linking to one cache file
shared it on scratch; the first one's copy of it is offered to the ones
after it (see ``share``), which link to it rather than hold one each.
"""

from __future__ import annotations

import os
import shutil
import stat
from typing import TYPE_CHECKING

from .chunks import read_chunks, sha256
from .findings import into_package_cache
from .prefix import PrefixRewrite, old_spellings
from .share import Written

if TYPE_CHECKING:
    from pathlib import Path

    from ..records import PathRecord
    from ..snapshot import Listing
    from .findings import Findings
    from .repair import Repair
    from .share import SharedFiles


def package_cache_links(
    source: Path, new_prefix: Path, listing: Listing, records: dict[str, PathRecord]
) -> dict[str, os.stat_result]:
    """The symlinks of the environment at ``source`` (its ``listing`` and
    its ``records``, as ``read_path_records`` gives them) that its copy to
    ``new_prefix`` turns into files, each with the ``stat`` of the file it
    leads to. One whose file is gone (a purged cache) is left out: damage,
    restored from elsewhere if at all (see ``damage``).

    The environment's other spellings are those its history and real path
    give: the copy also reads its scripts' ``#!`` lines for more, and each
    one more can only make a link here one the copy keeps as a link, so
    the room counted is never less than the copy takes."""
    symlinks = [
        (rel, st)
        for entries in listing.values()
        for rel, st in entries
        if stat.S_ISLNK(st.st_mode)
    ]
    if not symlinks:
        return {}
    rewrite = PrefixRewrite(str(source), str(new_prefix), old_spellings(source))
    found = {}
    for rel, st in symlinks:
        record = records.get(rel)
        # A link's size is its target's length: one no longer than the
        # package's path for the file cannot end with "/" and that path,
        # and is not read.
        if record is None or st.st_size <= len(os.fsencode(record.record_path or rel)):
            continue
        try:
            target = os.readlink(f"{source}/{rel}")
            if into_package_cache(record, target, rewrite):
                linked = os.stat(target)
                if stat.S_ISREG(linked.st_mode):
                    found[rel] = linked
        except OSError:
            # Changed since the walk (the copy's checks see it), or leading
            # to a file the purge took (damage, see above).
            continue
    return found


def copied_softlinks(records: dict[str, PathRecord], listing: Listing) -> list[str]:
    """Files where the records say ``softlink``: executables conda's
    softlink link type copied. The copy's records say they are files."""
    return [
        rel
        for entries in listing.values()
        for rel, st in entries
        if stat.S_ISREG(st.st_mode)
        and rel in records
        and records[rel].path_type == "softlink"
    ]


def offer(
    rel: str,
    target: str,
    path: str,
    repair: Repair,
    outcome: Findings,
    shared: SharedFiles | None,
) -> None:
    """The file restored at ``path`` for the link ``rel`` into a package
    cache gets the times of the file it led to, ``target``, as a copy of it
    would; with ``shared``, the environments after this one linking to that
    file link to this one (``outcome.written``, see ``share``)."""
    try:
        cached = os.stat(target)
    except OSError:
        return
    os.utime(path, ns=(cached.st_atime_ns, cached.st_mtime_ns))
    if shared is None:
        return
    made = os.lstat(path)
    outcome.written.append(
        Written(
            rel,
            (cached.st_dev, cached.st_ino),
            cached.st_size,
            cached.st_mtime_ns,
            cached.st_mode,
            made.st_dev,
            made.st_ino,
            repair.digests[rel],
            rel in repair.binary,
        )
    )


def delink_anyway(rel: str, target: str, path: str, outcome: Findings) -> None:
    """A link ``rel`` into a package cache that no package's bytes could
    replace: the bytes it shows now, at ``path``, when it shows any. A
    dangling one is left out: purge damage the run reports with its remedy,
    where a link back into the purged cache would only hide it."""
    if not os.path.isfile(target):
        outcome.notes.append(
            f"{rel}: links to {target}, which the purge took; left out"
        )
        return
    with open(target, "rb") as src, open(path, "xb") as dst:
        digest = sha256(read_chunks(src.fileno()), write_to=dst.fileno())
        outcome.bytes += os.fstat(src.fileno()).st_size
    shutil.copymode(target, path)
    outcome.rewritten[rel] = digest
    outcome.files += 1
    outcome.notes.append(
        f"{rel}: copied from {target}, which it linked to (it does not match "
        "its package's record)"
    )
