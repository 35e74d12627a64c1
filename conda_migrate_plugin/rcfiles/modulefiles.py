"""The user's own modulefiles: Lmod's ``.lua`` and Tcl's ``#%Module``.

A cluster user wraps an environment in a module (``module use
~/modulefiles``, Environment Modules' ``~/privatemodules``) whose
``prepend_path("PATH", ".../envs/x/bin")``, ``setenv`` or ``source_sh`` names
its prefix: once the environment is removed, ``module load x`` puts nothing
on ``PATH``, or an environment the purge half-deleted. The old prefix is
replaced where it stands as a whole path, absolute or under ``~`` or
``$HOME`` (the same spelling before and after); one built from ``$SCRATCH``
is only named, since in a Tcl file ``$SCRATCH`` is the file's own variable
and ``$HOME`` may be none, and in Lua a string is never expanded.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from .rewrite import DIR_VARIABLES, Rewriter, Unsafe, is_within, split_lines
from .shell import Shell

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence

#: Where modules are kept by convention: the directory a site's guide says to
#: ``module use``, and the one Environment Modules' ``use.own`` makes.
MODULE_DIRS = ("modulefiles", "privatemodules")

#: What ends a Tcl word or a Lua string, or starts a substitution in either:
#: a new place holding one cannot be written where the old one stood.
_UNSAFE = re.compile(rb"[\s\"'\\$\[\]{};]")

_NAMES = rb"(?P<name>" + b"|".join(DIR_VARIABLES) + rb")"
#: How a module sets conda's directory variables: Lmod's functions (called
#: with parentheses or a table) with a string, Tcl's commands with a word,
#: bare, quoted or braced; a value with a substitution is not taken.
_SETTINGS = (
    re.compile(
        rb"\b(?:setenv|pushenv|prepend_path|append_path)[ \t]*[({][ \t]*"
        rb"([\"'])" + _NAMES + rb"\1[ \t]*,[ \t]*"
        rb"(?P<quote>[\"'])(?P<value>[^\"'\n]*)(?P=quote)"
    ),
    re.compile(
        rb"\b(?:setenv|pushenv|prepend-path|append-path)[ \t]+"
        + _NAMES
        + rb"[ \t]+[\"{]?(?P<value>[^\s\"{}\[\];$\\]*)(?![^\"}\s;])"
    ),
)
#: conda's own variables, which a module sets from ``$SCRATCH`` in any form.
_SETS_FROM_SCRATCH = re.compile(_NAMES + rb".*\bSCRATCH\b")
_SCRATCH_SPELLINGS = ("$SCRATCH", "${SCRATCH}")

#: A path a module builds (``$env(SCRATCH)/``, ``os.getenv("SCRATCH") ..
#: "/``, ``$SCRATCH/``, ``[getenv X]/``) just before the old prefix's tail.
_BUILT = rb"(?:\$\{?\w+\}?/|[)\]]/|[\"']/?)"


def module_files(
    home: Path, environ: Mapping[str, str], startup: Iterable[bytes]
) -> list[Path]:
    """The modulefiles in the module directories inside the home: those of
    ``$MODULEPATH``, those the login files (``startup``) add with ``module
    use`` or an assignment to it, and the conventional ones; each real file
    once. A directory outside the home is the site's, not the user's."""
    places = [*environ.get("MODULEPATH", "").split(":"), *_used(home, startup)]
    places += [str(home / name) for name in MODULE_DIRS]
    found: dict[str, Path] = {}
    for place in places:
        directory = Path(os.path.normpath(place))
        if place.startswith("/") and is_within(directory, home) and directory != home:
            for path in _walk(directory):
                found.setdefault(os.path.realpath(path), path)
    return list(found.values())


def _used(home: Path, startup: Iterable[bytes]) -> Iterator[str]:
    """The directories ``module use`` (``ml use``) adds, and the parts of a
    ``MODULEPATH=`` the run can read, in the login files."""
    shell = Shell({"HOME": str(home)})
    for data in startup:
        # Only these lines are read as the shell reads them, each once: a
        # .bashrc may be megabytes of repeated lines.
        for line in dict.fromkeys(data.splitlines()):
            if b"use" not in line and b"MODULEPATH=" not in line:
                continue
            words = [w.value for w in shell.words(line.decode("utf-8", "replace"))]
            for at, word in enumerate(words):
                if word.startswith("MODULEPATH="):
                    yield from word.removeprefix("MODULEPATH=").split(":")
                elif word in ("module", "ml") and words[at + 1 : at + 2] == ["use"]:
                    for used in words[at + 2 :]:
                        if not used.startswith(("/", "~/", "-")):
                            break
                        if used.startswith("~/"):
                            yield str(home / used[2:])
                        elif used.startswith("/"):
                            yield used


def _walk(directory: Path) -> Iterator[Path]:
    """The files a module command loads from ``directory``'s tree: named
    ``*.lua``, or starting ``#%Module``; hidden ones (``.version``, and the
    backups this step writes) are never a module it loads by its name."""
    seen: set[tuple[int, int]] = set()
    for top, dirs, files in os.walk(directory, followlinks=True):
        try:
            status = os.stat(top)
        except OSError:  # gone since it was listed
            continue
        if (status.st_dev, status.st_ino) in seen:  # a symlink loop
            dirs.clear()
            continue
        seen.add((status.st_dev, status.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(top, name)
            if not name.startswith(".") and (name.endswith(".lua") or _tcl(path)):
                yield path


def _tcl(path: Path) -> bool:
    try:
        with open(path, "rb") as file:
            return file.read(8) == b"#%Module"
    except OSError:
        return False


def rewrite_module(data: bytes, rewriter: Rewriter) -> bytes:
    """The old prefixes replaced as whole paths, absolute or under the home;
    the file is left as it is where a new place cannot be written as the
    old one was."""
    new = _directories(data, rewriter)
    rewriter = dataclasses.replace(rewriter, scratch=None)
    new = rewriter.prefixes(new)
    if new == data:
        return data
    for move in rewriter.env_moves:
        if _UNSAFE.search(os.fsencode(move.dest)):
            alone = dataclasses.replace(rewriter, env_moves=[move])
            lines = _changed_lines(data, alone.prefixes(data))
            if lines:
                raise Unsafe(
                    f"line {', '.join(map(str, lines))} names {move.source}, whose "
                    f"new place {move.dest} a modulefile cannot hold as it is "
                    "written: change it by hand"
                )
    return new


def _directories(data: bytes, rewriter: Rewriter) -> bytes:
    """The entries of conda's directory variables the module sets moved as a
    condarc's are; one spelled with ``$SCRATCH`` is left (and named)."""

    def relocated(match: re.Match[bytes]) -> bytes:
        kind, separator = DIR_VARIABLES[match["name"]]
        entries = os.fsdecode(match["value"]).split(os.fsdecode(separator))
        hidden = ["$" if _from_scratch(e) else e for e in entries]
        moved = rewriter.relocate(hidden, kind)
        if moved == hidden:
            return match[0]
        value = os.fsencode(
            os.fsdecode(separator).join(
                entry if new == "$" else new
                for entry, new in zip(entries, moved)
                if new is not None
            )
        )
        if set(_UNSAFE.findall(value)) - set(_UNSAFE.findall(match["value"])):
            number = match.string.count(b"\n", 0, match.start()) + 1
            raise Unsafe(
                f"line {number} sets {os.fsdecode(match['name'])} to a directory "
                "whose new place a modulefile cannot hold as it is written: "
                "change it by hand"
            )
        start, end = (at - match.start() for at in match.span("value"))
        return match[0][:start] + value + match[0][end:]

    for setting in _SETTINGS:
        data = setting.sub(relocated, data)
    return data


def _from_scratch(entry: str) -> bool:
    return entry.startswith(_SCRATCH_SPELLINGS)


def cache_entries(data: bytes) -> list[tuple[int, str]]:
    """Each ``CONDA_PKGS_DIRS`` entry a module sets, with its line; not one
    spelled with ``$SCRATCH``, which stays."""
    return sorted(
        (data.count(b"\n", 0, match.start()) + 1, entry)
        for setting in _SETTINGS
        for match in setting.finditer(data)
        if DIR_VARIABLES[match["name"]][0] == "pkgs"
        for entry in os.fsdecode(match["value"]).split(",")
        if not _from_scratch(entry)
    )


def _changed_lines(old: bytes, new: bytes) -> list[int]:
    pairs = zip(split_lines(old), split_lines(new))
    return [number for number, (a, b) in enumerate(pairs, 1) if a != b]


def module_warnings(data: bytes, rewriter: Rewriter) -> list[str]:
    """The lines that build an old prefix from a variable (``$SCRATCH``, Tcl's
    ``$env(SCRATCH)``, Lua's ``os.getenv("SCRATCH") .. "/envs/x"``): the
    tail after it, up to the environment's name, is what they still name."""
    patterns = [
        (move, re.compile(_BUILT + re.escape(tail) + rb"(?![^/\s\"')\]}])"))
        for move in rewriter.env_moves
        for tail in _tails(move.source, rewriter.scratch)
    ]
    found = []
    for number, line in enumerate(split_lines(data), 1):
        text = line.decode("utf-8", "backslashreplace").rstrip()
        if rewriter.dir_moves and _SETS_FROM_SCRATCH.search(line):
            found.append(
                f"line {number} sets a conda directory on scratch in a form "
                f"this run does not rewrite: {text}"
            )
        # One warning for each place, whichever of its spellings the line names.
        named: dict[Path, Path] = {}
        for move, tail in patterns:
            if tail.search(line):
                named.setdefault(move.dest, move.source)
        found += [
            f"line {number} still names {source} in a form this run does not "
            f"rewrite: {text}"
            for source in named.values()
        ]
    return found


def _tails(source: Path, scratch: Path | None) -> Sequence[bytes]:
    """The old prefix below ``$SCRATCH``, and its last two names (a module
    may build it from any variable)."""
    tails = {os.fsencode(Path(source.parent.name, source.name))}
    if scratch is not None and is_within(source, scratch) and source != scratch:
        tails.add(os.fsencode(source.relative_to(scratch)))
    return sorted(tails)
