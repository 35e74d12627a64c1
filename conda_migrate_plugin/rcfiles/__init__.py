"""Step 5: point the user's startup files, condarc files, Jupyter kernels and
modulefiles at migrated envs.

After a migration the old prefixes are gone, so every line that still names them
breaks the next login, and a condarc or ``CONDA_ENVS_PATH`` that still names the
scanned scratch directory makes conda create new environments there again.

Files are edited as bytes and only the matched paths change, because these are
hand-kept files: comments, CRLF line ends, Latin-1 bytes and a missing final newline
must survive. Paths are matched in the spellings users write them in: absolute, ``~/``,
``$HOME/``, ``${HOME}/`` (when the old path lies under the home directory) and
``$SCRATCH/``, ``${SCRATCH}/`` (when ``SCRATCH`` is set in the given environment). A
path written relative to home keeps that spelling, since it expands the same way
wherever the old one did; one written with ``$SCRATCH`` or ``${SCRATCH}`` is written
with ``$HOME`` or ``${HOME}``; an absolute one stays absolute. Occurrences in comments and heredocs are
rewritten too: a commented-out ``conda activate`` is usually switched back on later.
A modulefile's ``$SCRATCH`` is named, not rewritten (see ``modulefiles``).

A file that is read-only or hard-linked is reported and left as it is, with its diff
still shown: the user made it so on purpose, or a rename would split the links.

This package must not import conda: it runs, and is tested, without it.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ruamel.yaml.error import YAMLError

from ..names import BACKUP_SUFFIX
from ..safety.atomic import write_atomically, write_new
from .condarc import cache_entries, rewrite_condarc
from .modulefiles import cache_entries as module_cache_entries
from .modulefiles import module_files, module_warnings, rewrite_module
from .rewrite import (
    DirMove,
    EnvMove,
    Rewriter,
    Unsafe,
    environ_path,
    split_lines,
)
from .shell import CSH, DIALECTS, FISH, SH, Shell
from .spellings import every_spelling
from .universal import universal_warnings

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

__all__ = [
    "CONDARC_SEARCH_PATH",
    "CSH_FILES",
    "SHELL_FILES",
    "DirMove",
    "EnvMove",
    "RcEdit",
    "RcKind",
    "apply_rc_edits",
    "diff_head",
    "plan_rc_edits",
]

#: The kinds of file rewritten, each by its own rules; a shell file by those
#: of its shell's family (``shell.DIALECTS``).
RcKind = Literal["sh", "csh", "fish", "fish_variables", "condarc", "kernel", "module"]

#: What bash and zsh read at login or start (``.bash_login`` where there is no
#: ``.bash_profile``; ``.bash_aliases``, which the ``.bashrc`` of Debian and
#: Ubuntu sources): an activation in any of them breaks the next login alike.
SHELL_FILES = (
    ".bashrc",
    ".bash_profile",
    ".bash_login",
    ".bash_aliases",
    ".profile",
    ".zshenv",
    ".zprofile",
    ".zshrc",
    ".zlogin",
)

#: What zsh reads from ``$ZDOTDIR`` where that is set (``conda init zsh``
#: writes there too).
ZSH_FILES = (".zshenv", ".zprofile", ".zshrc", ".zlogin")

#: What csh reads at start and login; tcsh reads ``.tcshrc``, or ``.cshrc``
#: where there is none, then ``.login``.
CSH_FILES = (".tcshrc", ".cshrc", ".login")

#: The user-level places of conda's own search path, in its order: files,
#: and ``condarc.d`` directories, of which conda reads every ``*.yml`` and
#: ``*.yaml`` (a site's onboarding script may write its ``envs_dirs`` there).
CONDARC_SEARCH_PATH = (
    ".config/conda/.condarc",
    ".config/conda/condarc",
    ".config/conda/condarc.d",
    ".conda/.condarc",
    ".conda/condarc",
    ".conda/condarc.d",
    ".condarc",
)

#: What conda reads in ``$XDG_CONFIG_HOME/conda``, as in ``~/.config/conda``.
_CONDA_CONFIG_NAMES = (".condarc", "condarc", "condarc.d")

#: What conda reads of a directory on its search path.
_CONDARC_SUFFIXES = (".yml", ".yaml")


@dataclass
class RcEdit:
    path: Path  # the file as found (may be a symlink)
    target: Path  # the real file that is written
    old: bytes
    new: bytes
    diff: str  # unified diff text, ready to print
    error: str | None = None  # unreadable, unparsable or refused; then unwritten
    backup: Path | None = None  # set by apply_rc_edits
    #: Lines that still name an old prefix in a form not rewritten.
    warnings: list[str] = field(default_factory=list)
    #: The package caches on scratch it names ``~/.conda/pkgs`` instead of.
    caches: list[Path] = field(default_factory=list)
    kind: RcKind = "sh"


def plan_rc_edits(
    env_moves: Sequence[EnvMove],
    dir_moves: Sequence[DirMove],
    home: Path,
    environ: Mapping[str, str],
) -> list[RcEdit]:
    """Reads the candidate files, computes the new bytes; writes nothing.

    Returns only files that change, that had an error or that still name an old
    prefix in a form not rewritten (``warnings``), so the caller can print every
    diff before (or, for ``--dry-run``, instead of) applying them.
    """
    scratch = environ_path(environ, "SCRATCH")
    found = [(path, kind, _read(path)) for path, kind in _candidates(home, environ)]
    startup = [d for _, kind, d in found if kind in DIALECTS and type(d) is bytes]
    found += [(p, "module", _read(p)) for p in module_files(home, environ, startup)]
    texts = [data for _, _, data in found if isinstance(data, bytes)]
    env_moves, dir_moves = every_spelling(env_moves, dir_moves, home, scratch, texts)
    rewriter = Rewriter(env_moves, dir_moves, home, scratch, environ)
    rewrite: dict[RcKind, Callable[[bytes], bytes]] = {
        "sh": partial(rewriter.shell, dialect=SH),
        "csh": partial(rewriter.shell, dialect=CSH),
        "fish": partial(rewriter.shell, dialect=FISH),
        "fish_variables": bytes,  # fish's own: read, never written
        "condarc": partial(rewrite_condarc, relocate=rewriter.relocate),
        "kernel": rewriter.kernel,
        "module": partial(rewrite_module, rewriter=rewriter),
    }
    edits = [
        _edit(path, kind, old, rewriter, rewrite[kind]) for path, kind, old in found
    ]
    return [edit for edit in edits if edit is not None]


def _edit(
    path: Path,
    kind: RcKind,
    old: bytes | OSError,
    rewriter: Rewriter,
    rewrite: Callable[[bytes], bytes],
) -> RcEdit | None:
    """One file's edit; None where it neither changes nor warns, so that
    only what the user must see is shown and applied."""
    target = Path(os.path.realpath(path))
    if isinstance(old, OSError):
        return RcEdit(path, target, b"", b"", "", f"cannot be read: {old}", kind=kind)
    try:
        new = rewrite(old)
    except (Unsafe, YAMLError, ValueError) as error:
        error_text = f"left unchanged: {error}"
        return RcEdit(path, target, old, old, "", error_text, kind=kind)
    caches, warnings = _package_caches(rewriter, kind, old, new)
    warnings[:0] = _unrewritten(rewriter, kind, new)
    if new == old and not warnings:
        return None
    diff = _diff(path, old, new) if new != old else ""
    return RcEdit(
        path, target, old, new, diff, warnings=warnings, caches=caches, kind=kind
    )


def _read(path: Path) -> bytes | OSError:
    """A candidate file's bytes (at its real path: a symlinked dotfile is
    edited at its target), or why it cannot be read."""
    try:
        return Path(os.path.realpath(path)).read_bytes()
    except OSError as error:
        return error


def _unrewritten(rewriter: Rewriter, kind: RcKind, new: bytes) -> list[str]:
    """The lines of a shell file or a modulefile that still name an old prefix."""
    if kind == "fish_variables":
        return universal_warnings(new, rewriter.env_moves)
    if kind == "module":
        return module_warnings(new, rewriter)
    dialect = DIALECTS.get(kind)
    return rewriter.unrewritten(new, dialect) if dialect else []


def _package_caches(
    rewriter: Rewriter, kind: RcKind, old: bytes, new: bytes
) -> tuple[list[Path], list[str]]:
    """The caches on scratch a file's edit points away from, and the
    warnings for what of scratch its cache entries still name."""
    if kind in ("kernel", "fish_variables"):
        return [], []
    entries = module_cache_entries if kind == "module" else cache_entries
    if (dialect := DIALECTS.get(kind)) is not None:
        entries = partial(rewriter.shell_caches, dialect=dialect)
    moved = rewriter.moved_caches([entry for _, entry in entries(old)])
    return moved, rewriter.caches_left(entries(new))


def apply_rc_edits(
    edits: Sequence[RcEdit],
    now: datetime | None = None,
    backups: dict[Path, Path] | None = None,
) -> list[RcEdit]:
    """Back up and atomically rewrite each planned change; return the edits attempted.

    Each returned edit has ``backup`` set (written) or ``error`` set (untouched, or
    backed up but not replaced); one failing file does not stop the others.
    ``backups`` maps the files already backed up earlier in the run to their backup,
    which they keep: a run edits a file once per environment, and the backup a user
    wants back is the file as it was before the run.
    """
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    backups = {} if backups is None else backups
    attempted = [e for e in edits if e.error is None and e.old != e.new]
    for edit in attempted:
        try:
            _apply(edit, stamp, backups)
        except (Unsafe, OSError) as error:
            edit.error = f"not changed: {error}"
    return attempted


def _apply(edit: RcEdit, stamp: str, backups: dict[Path, Path]) -> None:
    status = os.stat(edit.target)
    if not status.st_mode & 0o222:
        # A file the user made read-only is theirs to change; the printed diff says how.
        raise Unsafe("the file is read-only")
    if status.st_nlink > 1:
        raise Unsafe(
            f"the file has {status.st_nlink} hard links, which a rename would split"
        )
    if edit.target.read_bytes() != edit.old:
        raise Unsafe("the file changed since it was read")
    edit.backup = backups.get(edit.target) or _write_backup(edit, stamp)
    backups[edit.target] = edit.backup
    # Written beside the target and renamed over it: a crash leaves old or new.
    write_atomically(edit.target, edit.new, like=status)


def _write_backup(edit: RcEdit, stamp: str) -> Path:
    """Next to the file as the user knows it, so a symlinked dotfile's repo stays clean.

    Hidden, for a shell file: a shell sources every file of ``~/.bashrc.d``
    that is not, and the backup would bring the old environment back; and
    for a modulefile: Lmod lists any other ``#%Module`` file beside it as a
    version of the module, which ``module load`` may pick.
    Never over another file, so that two runs in one second never overwrite
    an earlier backup.
    """
    name = f"{edit.path.name}{BACKUP_SUFFIX}{stamp}"
    if (edit.kind in DIALECTS or edit.kind == "module") and not name.startswith("."):
        name = f".{name}"
    base, data = edit.path.with_name(name), edit.old
    backup, number = base, 0
    while True:
        try:
            write_new(backup, data, mode=0o600)
            return backup
        except FileExistsError:
            number += 1
            backup = base.with_name(f"{base.name}.{number}")


def _candidates(home: Path, environ: Mapping[str, str]) -> list[tuple[Path, RcKind]]:
    """Existing files in the order conda/the shell read them, each real file once."""
    places = [home / name for name in CONDARC_SEARCH_PATH]
    xdg_config = environ_path(environ, "XDG_CONFIG_HOME")
    if xdg_config is not None:
        places[:0] = [xdg_config / "conda" / n for n in _CONDA_CONFIG_NAMES]
    if (condarc := environ_path(environ, "CONDARC")) is not None:
        places.append(condarc)
    condarcs = [path for place in places for path in _condarc_files(place)]
    data_dirs = [home / ".local/share/jupyter"]
    if (xdg_data := environ_path(environ, "XDG_DATA_HOME")) is not None:
        data_dirs.append(xdg_data / "jupyter")
    if (jupyter_data := environ_path(environ, "JUPYTER_DATA_DIR")) is not None:
        data_dirs.append(jupyter_data)
    jupyter_path = environ.get("JUPYTER_PATH", "").split(os.pathsep)
    data_dirs += [Path(p) for p in jupyter_path if p.startswith("/")]
    found: list[tuple[Path, RcKind]] = [
        *_shell_files(home, environ, xdg_config),
        *((path, "condarc") for path in condarcs),
        *(
            (path, "kernel")
            for d in data_dirs
            for path in sorted(d.glob("kernels/*/kernel.json"))
        ),
    ]
    unique: dict[str, tuple[Path, RcKind]] = {}
    for path, kind in found:
        if os.path.lexists(path):
            unique.setdefault(os.path.realpath(path), (path, kind))
    return list(unique.values())


def _condarc_files(place: Path) -> list[Path]:
    """The files conda reads at a place of its search path: the place
    itself, or a directory's YAML files (hidden ones too, through symlinks
    too) in the order of their names; a backup's name ends in neither."""
    try:
        with os.scandir(place) as entries:
            return [
                Path(entry.path)
                for entry in sorted(entries, key=lambda entry: entry.name)
                if entry.name.endswith(_CONDARC_SUFFIXES) and entry.is_file()
            ]
    except NotADirectoryError:
        return [place]
    except OSError:  # absent, or a directory conda cannot list either
        return []


def _shell_files(
    home: Path, environ: Mapping[str, str], xdg_config: Path | None
) -> list[tuple[Path, RcKind]]:
    """The files a login reads, each with its shell's family: the sh ones,
    zsh's in ``$ZDOTDIR``, the files of ``~/.bashrc.d``, csh's and fish's
    (in ``$XDG_CONFIG_HOME`` where set, so both places are looked in)."""
    configs = [home / ".config"]
    if xdg_config is not None:
        configs.insert(0, xdg_config)
    fish_dirs = [config / "fish" for config in configs]
    # zsh's are in $ZDOTDIR; where ~/.zshenv sets it in a form the run cannot
    # read (``${XDG_CONFIG_HOME:-$HOME/.config}/zsh``), in the places it names.
    zsh_dirs = [config / "zsh" for config in configs]
    if (zdotdir := _zdotdir(home, environ)) is not None:
        zsh_dirs.insert(0, zdotdir)
    return [
        *((home / name, "sh") for name in SHELL_FILES),
        *((d / name, "sh") for d in zsh_dirs for name in ZSH_FILES),
        *((path, "sh") for path in _sourced(home / ".bashrc.d", "*")),
        *((home / name, "csh") for name in CSH_FILES),
        *((path, "fish") for d in fish_dirs for path in _fish_files(d)),
        *((d / "fish_variables", "fish_variables") for d in fish_dirs),
    ]


def _zdotdir(home: Path, environ: Mapping[str, str]) -> Path | None:
    """``$ZDOTDIR`` as the run's environment has it, or as ``~/.zshenv``
    (which zsh reads from the home directory) sets it."""
    shell = Shell({**environ, "HOME": str(home)})
    try:
        zshenv = (home / ".zshenv").read_bytes()
    except OSError:
        zshenv = b""
    for line in split_lines(zshenv):
        shell.read_assignments(line.decode("utf-8", "surrogateescape"))
    value = shell.variables.get("ZDOTDIR", "")
    if value.startswith("~/"):
        return home / value[2:]
    return Path(value) if value.startswith("/") else None


def _fish_files(config: Path) -> list[Path]:
    """In fish's order: ``conf.d``, then ``config.fish``; and the functions
    it loads when called, where ``funcsave`` keeps an alias."""
    return [
        *_sourced(config / "conf.d", "*.fish"),
        config / "config.fish",
        *_sourced(config / "functions", "*.fish"),
    ]


def _sourced(directory: Path, pattern: str) -> list[Path]:
    """What a loop over ``directory/pattern`` sources, in its order: regular
    files (through a symlink too), none hidden, since the shell's ``*`` skips them."""
    return sorted(
        path
        for path in directory.glob(pattern)
        if not path.name.startswith(".") and path.is_file()
    )


def _diff(path: Path, old: bytes, new: bytes) -> str:
    """diff -u's text; undecodable bytes are shown escaped so printing cannot fail."""
    name = os.fsencode(path)
    lines = difflib.diff_bytes(
        difflib.unified_diff, split_lines(old), split_lines(new), name, name, n=0
    )
    text = b"".join(
        line if line.endswith(b"\n") else line + b"\n\\ No newline at end of file\n"
        for line in lines
    )
    return text.decode("utf-8", "backslashreplace")


def diff_head(edit: RcEdit, limit: int) -> tuple[str, int]:
    """The diff of the first ``limit`` changed lines, and how many lines
    changed: a ``.bashrc`` of a million repeated lines must not flood a
    terminal or a job's output. Shell files keep their line count (only
    paths change), so the first changes are those of the leading lines."""
    old, new = split_lines(edit.old), split_lines(edit.new)
    if len(old) != len(new):  # a condarc entry dropped as a duplicate
        lines = edit.diff.splitlines(keepends=True)
        body = [line[:1] for line in lines[2:]]
        changed = max(body.count("-"), body.count("+"))
        return "".join(lines[: 2 + 2 * limit]), changed
    changes = [i for i, (a, b) in enumerate(zip(old, new)) if a != b]
    if len(changes) <= limit:
        return edit.diff, len(changes)
    end = changes[limit]
    return _diff(edit.path, b"".join(old[:end]), b"".join(new[:end])), len(changes)
