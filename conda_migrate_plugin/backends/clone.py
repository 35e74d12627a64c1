"""Step 2 as the site guide does it: conda's own clone, in-process.

conda rebuilds the environment from the package cache or the channels, so it
fails when those are gone; that failure is turned into ``CloneUnavailable``
so that ``--method auto`` can relocate instead.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ..exceptions import CloneUnavailable
from ..relocation import xattrs
from ..relocation.prefix import PrefixRewrite, copied_link
from ..safety.interrupt import check
from . import extractions

if TYPE_CHECKING:
    from collections.abc import Iterator


def clone(source: Path, dest: Path, *, quiet: bool) -> None:
    from conda.base.context import context
    from conda.exceptions import CondaError, CondaHTTPError
    from conda.misc import clone_env

    extractions.drop(extractions.find(source))
    try:
        # verbose=False: its "Files:" counts only the files no package owns;
        # the caller prints the environment's own counts, as for relocation.
        with _linking_no_symlinks():
            clone_env(
                str(source),
                str(dest),
                verbose=False,
                quiet=quiet,
                index_args={"channel_urls": list(context.channels)},
            )
    except CondaError as err:
        # A stop is a stop, never a reason to try relocation instead.
        check(err)
        if not isinstance(err, CondaHTTPError):
            _drop_found_after(source, err)
        # conda's first line is often a bare path or URL.
        reason = (
            "a channel could not be reached over the network"
            if isinstance(err, CondaHTTPError)
            else "the package files are in neither the cache nor a reachable channel"
        )
        raise CloneUnavailable(
            f"conda's clone of {source} failed: {err}".rstrip(),
            reason=reason,
            hint="The old environment is untouched. --method relocate copies it "
            "without the package cache or the network.",
        ) from err
    check()


def _drop_found_after(source: Path, err: Exception) -> None:
    """After conda's clone failed: cut-short extractions that the check
    before it passed, where conda wrote the record of a finished extraction
    since the kill (any conda reading the cache does), or a scratch purge
    took files and left the record, are found by their files, removed, and
    named instead of conda's own message, a paragraph for each missing
    file."""
    found = extractions.find(source, thorough=True)
    if not found:
        return
    extractions.drop(found)
    raise CloneUnavailable(
        f"conda's clone of {source} failed: conda's package cache held "
        + ", ".join(cut.directory.name for cut in found)
        + " with files missing or cut short, as a stopped extraction or a purge "
        "leaves it; removed, so that conda extracts it again.",
        reason="a package in the package cache was cut short",
        hint="The old environment is untouched. Run the same command again.",
    ) from err


#: conda's settings that make it link a package's files as symlinks into
#: the package cache: always, or where its test finds no hard link possible.
_SOFTLINKING = ("always_softlink", "allow_softlinks")


@contextmanager
def _linking_no_symlinks() -> Iterator[None]:
    """conda's clone with its softlink settings off, whatever the user's
    condarc says: the package cache it links from is still the one on
    scratch (pkgs_dirs moves to $HOME only at the end of the run), and a
    clone of symlinks into it passes the file check, replaces the old
    environment and dangles at the next purge. Not ``always_copy``: conda
    still hard-links where the cache shares the copy's filesystem (a cache
    in $HOME, one inode for many environments under the quota)."""
    from conda.base.context import context

    # Set on the instance, each shadows conda's configured value until deleted.
    for name in _SOFTLINKING:
        setattr(context, name, False)
    try:
        yield
    finally:
        for name in _SOFTLINKING:
            delattr(context, name)


#: Written anew by conda's clone, but facts about the environment that a
#: move does not change: when it was first created (conda 26).
KEPT_FROM_SOURCE = ("conda-meta/created_at",)


def carry_omitted(source: Path, dest: Path) -> list[str]:
    """Copy into the clone what conda's clone leaves out, so that the clone
    holds every path of the source and passes the same file-by-file check as
    a relocated copy: names ending in ``~``, ``info/``, ``pkgs/``, extra files
    in ``conda-meta`` (``pinned``, ``state``), ``bin/activate``, empty
    directories, what it could not read. Symlinks it copied are made as
    relocation makes them (one naming the old prefix points into the new
    one, a relative one out of the environment leads where it led), and
    directories get their modes back. Returns the relative paths carried."""
    rewrite = PrefixRewrite(str(source), str(dest))
    carried: list[str] = []
    attributed: list[str] = []
    directories: list[tuple[str, int]] = []
    for rel, old, st in _walk(source):
        new = dest / rel
        if stat.S_ISDIR(st.st_mode):
            if not os.path.lexists(new):
                os.mkdir(new, 0o700)
                carried.append(rel)
            directories.append((rel, stat.S_IMODE(st.st_mode)))
        elif stat.S_ISLNK(st.st_mode):
            if _carry_symlink(source, rel, new, rewrite):
                carried.append(rel)
        elif stat.S_ISREG(st.st_mode) and _carry_file(old, new, st, rewrite):
            carried.append(rel)
        if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
            attributed.append(rel)
    for rel in KEPT_FROM_SOURCE:
        if (source / rel).is_file() and not (source / rel).is_symlink():
            shutil.copy2(source / rel, dest / rel)
    for rel in ["", *attributed]:
        carry_attributes(source / rel, dest / rel)
    for rel, mode in reversed(directories):
        os.chmod(dest / rel, mode)
    os.chmod(dest, stat.S_IMODE(os.lstat(source).st_mode))
    return sorted(carried)


def _walk(source: Path) -> Iterator[tuple[str, Path, os.stat_result]]:
    """Every path below ``source``, a directory before what it holds."""
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        with os.scandir(source / rel_dir if rel_dir else source) as it:
            entries = list(it)
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            st = entry.stat(follow_symlinks=False)
            yield rel, Path(entry.path), st
            if stat.S_ISDIR(st.st_mode):
                stack.append(rel)


def _carry_symlink(source: Path, rel: str, new: Path, rewrite: PrefixRewrite) -> bool:
    # The log's note comes from the file check, which holds the link to it.
    target, _ = copied_link(rewrite, str(source), rel, os.readlink(source / rel))
    if new.is_symlink() and os.readlink(new) != target:
        new.unlink()
    if os.path.lexists(new):
        return False
    os.symlink(target, new)
    return True


def _carry_file(
    old: Path, new: Path, st: os.stat_result, rewrite: PrefixRewrite
) -> bool:
    if os.path.lexists(new):
        # Entry points conda wrote again get conda's mode.
        if not new.is_symlink() and stat.S_IMODE(new.stat().st_mode) != stat.S_IMODE(
            st.st_mode
        ):
            os.chmod(new, stat.S_IMODE(st.st_mode))
        return False
    data = old.read_bytes()
    if rewrite.names_old(data) and b"\0" not in data:
        try:
            data.decode()
        except UnicodeDecodeError:
            pass
        else:
            data = rewrite.substitute(data)
    new.write_bytes(data)
    shutil.copystat(old, new)
    return True


def carry_attributes(old: Path, new: Path) -> None:
    """conda's clone copies no extended attributes or ACLs. A file it linked
    from the package cache is copied first, so that the cache and the
    environments sharing it get none of them. What the filesystem refuses,
    the file check reports."""
    want = xattrs.read(str(old))
    if not want or not xattrs.differing(want, xattrs.read(str(new))):
        return
    st = os.lstat(new)
    if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
        own = new.with_name(f".{new.name}.conda-migrate-{secrets.token_hex(4)}")
        shutil.copy2(new, own)
        os.replace(own, new)
    # Its owner may set user.* only while it is writable; the mode put back
    # is the source's, whose group bits are its ACL's mask.
    mode = stat.S_IMODE(st.st_mode)
    if not mode & stat.S_IWUSR:
        os.chmod(new, mode | stat.S_IWUSR)
    try:
        xattrs.write(str(new), want)
    finally:
        if not mode & stat.S_IWUSR:
            os.chmod(new, mode)
