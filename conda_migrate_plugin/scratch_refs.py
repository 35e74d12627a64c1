"""What a migrated environment still uses on the filesystem it was moved from.

A move takes the environment, not what it points at: an editable pip
install of code on scratch (a ``.pth`` line, an ``.egg-link``, pip's
``direct_url.json``), a symlink to data there (also a relative one that
relocation pointed where it led), a variable set with ``conda env config
vars`` naming a directory there. The environment works from $HOME until
the next purge deletes those, then breaks with no warning; so once it is in
place, each one is named, and ``--dry-run`` names each before anything
moves, when the user (or a site's admin, over everyone's environments) can
still decide.

A path counts when it exists on the device the walk before the copy found
the environment on, and not on the destination's: no spelling says which
filesystem is purged, and where both are one, nothing tells them apart.
Paths inside the old environment are relocation's to rewrite, not this.
Only what can name a path is read, found in what the walk and the copy
already have: the ``.pth`` and ``.egg-link`` files of ``site-packages``,
``direct_url.json``, ``conda-meta/state``, and the symlinks the engine saw
leading out of the copy (planned: the walk's symlinks, read as relocation
will copy them). Nothing walks the tree again.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from .jobs import pool
from .relocation.prefix import PrefixRewrite, copied_link, leads_out, old_spellings
from .result import Status

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Iterator
    from pathlib import Path

    from .output import Output
    from .result import MigrationResult
    from .snapshot import Footprint, Listing

    #: What a file names, read from its text and its directory: (path, how).
    _Reader = Callable[[str, str], Iterator[tuple[str, str]]]


@dataclass(frozen=True)
class Reference:
    #: The file of the new environment that names it.
    file: str
    #: The path it names, on the filesystem the environment was moved from.
    names: str
    #: How the file names it, in the user's words.
    via: str

    def to_json(self) -> dict[str, str]:
        return asdict(self)


#: Longer files are not a package's path file nor a small JSON document.
_MOST = 1 << 20


def find_references(
    source: Path,
    dest: Path,
    footprint: Footprint,
    links_out: dict[str, str],
    jobs: int | None = None,
) -> list[Reference]:
    """The paths the environment now at ``dest`` still uses on the
    filesystem ``source`` was on; ``links_out`` are the copy's symlinks that
    lead out of it, as its engine found them. Nothing here fails the
    migration: what cannot be read names nothing."""
    scratch = _scratch_device(dest, footprint)
    if scratch is None:
        return []
    found = [
        (Reference(f"{dest}/{rel}", names, "a symlink"), f"{dest}/{rel}")
        for rel, names in links_out.items()
    ]
    found += _named(str(dest), str(dest), footprint.listing, jobs)
    old = {os.path.abspath(source), os.path.realpath(source)}
    return _left_on(scratch, found, old)


def planned_references(
    source: Path,
    dest: Path,
    footprint: Footprint,
    linked: Collection[str],
    jobs: int | None = None,
) -> list[Reference]:
    """What the copy of the environment at ``source`` to ``dest`` would
    still use on the filesystem it leaves, read in the source before
    anything is written (``--dry-run``: the moment to decide), each named by
    the source's file. ``linked`` are the symlinks the copy turns into the
    files they lead to (see ``relocation.softlinks``): no reference."""
    scratch = _scratch_device(dest, footprint)
    if scratch is None:
        return []
    rewrite = PrefixRewrite(str(source), str(dest), old_spellings(source))
    found = [
        (Reference(f"{source}/{rel}", out, "a symlink"), out)
        for rel, out in _links_out(str(source), rewrite, footprint.listing, linked)
    ]
    # Each file read where it is, its relative paths taken from where the
    # copy will put it, as the run reads them after the move.
    found += _named(str(source), str(dest), footprint.listing, jobs)
    return _left_on(scratch, found, rewrite.olds)


def _scratch_device(dest: Path, footprint: Footprint) -> int | None:
    """The source's device, unless the destination is on it too: where both
    are one filesystem, nothing tells scratch apart. Before the copy, the
    destination is the nearest directory of its path there is."""
    place = os.path.abspath(dest)
    while (device := _device(place)) is None:
        if place == "/":
            return None
        place = os.path.dirname(place)
    return None if device == footprint.device else footprint.device


def _links_out(
    source: str, rewrite: PrefixRewrite, listing: Listing, linked: Collection[str]
) -> Iterator[tuple[str, str]]:
    """The symlinks the copy would make that lead out of it, with where they
    lead: the target either engine gives each (a relative one leaving the
    environment leads where it led; see ``relocation.prefix.copied_link``)."""
    for entries in listing.values():
        for rel, st in entries:
            if not stat.S_ISLNK(st.st_mode) or rel in linked:
                continue
            try:
                raw = os.readlink(f"{source}/{rel}")
            except OSError:  # changed since the walk: the copy's checks see it
                continue
            target, _ = copied_link(rewrite, source, rel, raw)
            out = leads_out(rewrite.new, rel, target)
            if out is not None:
                yield rel, out


def _named(
    read_root: str, placed_root: str, listing: Listing, jobs: int | None
) -> list[tuple[Reference, str]]:
    """What the files of the environment at ``read_root`` that can name a
    path name, each as if it were at ``placed_root``."""
    found: list[tuple[Reference, str]] = []
    with pool(jobs) as threads:
        for named in threads.map(
            lambda work: list(_read(read_root, placed_root, *work)),
            _naming_files(listing),
        ):
            found += [(ref, ref.names) for ref in named]
    return found


def _left_on(
    device: int, found: list[tuple[Reference, str]], old: Iterable[str]
) -> list[Reference]:
    """The references whose path exists on ``device`` (each probed at its
    second item) and lies outside every spelling of the old environment,
    which relocation points at the new one."""
    roots = tuple(old)
    return sorted(
        {
            ref
            for ref, probe in found
            if not any(_inside(ref.names, root) for root in roots)
            and _device(probe) == device
        },
        key=lambda ref: (ref.file, ref.names),
    )


def _naming_files(listing: Listing) -> Iterator[tuple[str, _Reader]]:
    """The files of the environment that can name a path elsewhere, with
    their readers: by their directories' names, never by reading others."""
    for rel_dir, entries in listing.items():
        parent, _, leaf = rel_dir.rpartition("/")
        if leaf == "site-packages":
            readers = {".pth": _path_lines, ".egg-link": _egg_link}
        elif leaf.endswith(".dist-info") and parent.endswith("site-packages"):
            readers = {"/direct_url.json": _direct_url}
        elif rel_dir == "conda-meta":
            readers = {"conda-meta/state": _env_vars}
        else:
            continue
        for rel, st in entries:
            if stat.S_ISREG(st.st_mode):
                for ending, reader in readers.items():
                    if rel.endswith(ending):
                        yield rel, reader


def _read(
    read_root: str, placed_root: str, rel: str, reader: _Reader
) -> Iterator[Reference]:
    path = f"{read_root}/{rel}"
    try:
        with open(path, "rb") as file:
            text = file.read(_MOST).decode(errors="surrogateescape")
        for names, via in reader(text, os.path.dirname(f"{placed_root}/{rel}")):
            yield Reference(path, os.path.normpath(names), via)
    except (OSError, ValueError, AttributeError, TypeError):
        return


def _path_lines(text: str, directory: str) -> Iterator[tuple[str, str]]:
    """A ``.pth`` file as Python's ``site`` reads it: each line neither
    blank, a comment nor an ``import`` is a directory for ``sys.path``,
    relative to the file's own (an editable install's source tree)."""
    for line in text.splitlines():
        if line.strip() and not line.startswith(("#", "import ", "import\t")):
            yield (
                os.path.join(directory, line.rstrip()),
                "a path Python adds to sys.path",
            )


def _egg_link(text: str, directory: str) -> Iterator[tuple[str, str]]:
    """``setup.py develop``'s link: its first line is the project."""
    first = text.splitlines()[0].strip() if text.strip() else ""
    if first:
        yield os.path.join(directory, first), "an editable install (egg-link)"


def _direct_url(text: str, directory: str) -> Iterator[tuple[str, str]]:
    """pip's record of where a distribution came from: an editable one
    still runs from that directory (one built from it does not)."""
    origin = json.loads(text)
    url = origin.get("url", "")
    if origin.get("dir_info", {}).get("editable") is True and url.startswith("file:"):
        yield unquote(urlsplit(url).path), "an editable pip install"


def _env_vars(text: str, directory: str) -> Iterator[tuple[str, str]]:
    """``conda env config vars``, which conda sets at activation; a value
    may be a list of paths (``a:b``)."""
    for name, value in json.loads(text).get("env_vars", {}).items():
        if isinstance(value, str):
            for part in value.split(os.pathsep):
                if part.startswith("/"):
                    yield part, f"conda env config var {name}"


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _device(path: str) -> int | None:
    try:
        return os.stat(path).st_dev
    except (OSError, ValueError):
        return None


def warn(outcome: MigrationResult, out: Output) -> None:
    """Each reference the move left (or, planned, would leave) on the
    source's filesystem, and what to do before the purge comes."""
    refs = outcome.scratch_refs
    if not refs:
        return
    paths = f"{len(refs)} path{'s' if len(refs) != 1 else ''}"
    uses, moved = (
        ("would still use", "would be")
        if outcome.status == Status.PLANNED
        else ("still uses", "was")
    )
    out.info(
        f"warning: {outcome.name} {uses} {paths} on the filesystem it {moved} moved "
        f"from ({outcome.source}); the purge of scratch can delete them and break it:",
        *(f"  {ref['file']}: {ref['via']}, {ref['names']}" for ref in refs),
        "Move them off scratch and point the environment at the new place "
        "(pip install -e from there, ln -sfn, conda env config vars set).",
        "",
    )
