"""Step 3 (the seed's engine): conda's own clone, in-process.

conda rebuilds the environment from the package cache or the channels, so it
fails when those are gone; that failure is turned into ``CloneUnavailable``,
whose hint is relocation.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from .exceptions import CloneUnavailable
from .prefix import PrefixRewrite

#: conda's clone copies only package files and files no package owns, so
#: the pins and the environment variables (``conda env config vars``) would
#: be lost; they name the prefix at most in text.
DROPPED_BY_CLONE = ("conda-meta/pinned", "conda-meta/state")


def clone(source: Path, dest: Path, *, quiet: bool) -> None:
    from conda.base.context import context
    from conda.exceptions import CondaError
    from conda.misc import clone_env

    try:
        clone_env(
            str(source),
            str(dest),
            verbose=not quiet,
            quiet=quiet,
            index_args={"channel_urls": list(context.channels)},
        )
    except CondaError as err:
        raise CloneUnavailable(
            f"conda's clone of {source} failed: {err}".rstrip(),
            hint="The old environment is untouched. --method relocate copies it "
            "without the package cache or the network.",
        ) from err


def carry_dropped(source: Path, dest: Path) -> list[str]:
    """Copy what clone leaves behind into the clone; returns what was carried.

    Besides the pins and variables, conda's clone re-creates only what
    packages list and files no package owns: empty directories and ``.pyc``
    files written after the install are dropped, absolute symlinks still
    point into the old environment, and directory and file modes are the
    package's. Everything is made as the source has it, so that the clone
    passes the same file-by-file verification as a relocated copy.
    """
    rewrite = PrefixRewrite(str(source), str(dest))
    carried = []
    for rel in DROPPED_BY_CLONE:
        old, new = source / rel, dest / rel
        if old.is_file() and not new.exists():
            new.write_bytes(rewrite.substitute(old.read_bytes()))
            shutil.copymode(old, new)
            carried.append(rel)
    modes: list[tuple[str, int]] = []
    for dirpath, dirnames, filenames in os.walk(source):
        for name in dirnames + filenames:
            old = os.path.join(dirpath, name)
            rel = os.path.relpath(old, source)
            new = os.path.join(dest, rel)
            st = os.lstat(old)
            if stat.S_ISLNK(st.st_mode):
                if _carry_symlink(old, new, rewrite):
                    carried.append(rel)
            elif stat.S_ISDIR(st.st_mode):
                if not os.path.lexists(new):
                    os.mkdir(new)
                    carried.append(rel)
                modes.append((new, st.st_mode))
            elif stat.S_ISREG(st.st_mode):
                if not os.path.lexists(new):
                    data = Path(old).read_bytes()
                    if b"\0" not in data and rewrite.names_old(data):
                        data = rewrite.substitute(data)
                    Path(new).write_bytes(data)
                    carried.append(rel)
                modes.append((new, st.st_mode))
    # Last, and deepest first: a read-only directory must be filled before.
    for path, mode in reversed(modes):
        if not os.path.islink(path) and os.lstat(path).st_mode != mode:
            os.chmod(path, stat.S_IMODE(mode))
    return carried


def _carry_symlink(old: str, new: str, rewrite: PrefixRewrite) -> bool:
    target = os.readlink(old)
    if target == rewrite.old or target.startswith(rewrite.old + "/"):
        target = rewrite.new + target[len(rewrite.old) :]
    if os.path.islink(new) and os.readlink(new) == target:
        return False
    if os.path.lexists(new):
        if not os.path.islink(new):
            return False  # conda made a file there; the verification says so
        os.unlink(new)
    os.symlink(target, new)
    return True
