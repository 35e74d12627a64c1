"""A directory tree as a test reads or rearranges it: its snapshot, its
blocks and inodes, its hard links, its owner."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path


def tree_snapshot(root: Path) -> dict[str, tuple]:
    """Every entry below ``root`` with its type, mode and content or target,
    to prove an environment was left byte for byte as it was."""
    snapshot = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                snapshot[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                snapshot[rel] = ("dir", stat.S_IMODE(st.st_mode))
            elif not stat.S_ISREG(st.st_mode):  # a FIFO would block a read
                snapshot[rel] = ("special", stat.S_IFMT(st.st_mode))
            else:
                snapshot[rel] = (
                    "file",
                    stat.S_IMODE(st.st_mode),
                    hashlib.sha256(path.read_bytes()).hexdigest(),
                )
    return snapshot


def unshare(prefix: Path) -> Path:
    """Give every hard-linked file of ``prefix`` its own inode. Environments
    installed from one package cache share inodes, and removing one changes
    the ctime of the others' files, which a run copying them at that moment
    rightly takes for an edit; two runs on environments of their own."""
    for dirpath, _, filenames in os.walk(prefix):
        for name in filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                shutil.copy2(path, path + ".unshared")
                os.replace(path + ".unshared", path)
    return prefix


def chown_tree(root: Path, uid: int, gid: int | None = None) -> None:
    """Give ``root`` to ``uid``; files hardlinked from the package cache get
    copies of their own first, so that no other environment changes hands."""
    gid = uid if gid is None else gid
    unshare(root)
    os.chown(root, uid, gid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


def usage(*roots: Path) -> tuple[int, int]:
    """Allocated bytes and inodes below ``roots``, each inode counted once,
    as a quota counts them."""
    seen: dict[tuple[int, int], int] = {}
    for root in roots:
        seen[(root.lstat().st_dev, root.lstat().st_ino)] = root.lstat().st_blocks
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                st = os.lstat(os.path.join(dirpath, name))
                seen[(st.st_dev, st.st_ino)] = st.st_blocks
    return sum(seen.values()) * 512, len(seen)


def assert_no_more_room(
    dest: Path, before: tuple[int, int], envs_alone: tuple[int, int]
) -> None:
    """``dest`` takes no more blocks or inodes than the environments and
    their cache did (``before``), and not one inode more than the
    environments alone had: what was one inode there is one here."""
    after = usage(dest)
    assert after[0] <= before[0] and after[1] <= before[1], (before, after)
    assert after[1] <= envs_alone[1], (envs_alone, after)


def inode(path: Path) -> tuple[int, int]:
    """The identity of ``path`` itself (a symlink's own, not its target's)."""
    st = path.lstat()
    return st.st_dev, st.st_ino


def softlink_by_hand(env: Path, cache: Path | None = None) -> list[str]:
    """Lay ``env`` out as conda's ``always_softlink`` does: each package file
    conda would not rewrite becomes a symlink into the extracted package
    (in ``cache``, default the one it was installed from), recorded as
    ``softlink``, the record's link type 2. A ``noarch: python`` package,
    whose record names package paths, not installed ones, stays as it is.
    Returns the links made."""
    linked = []
    for record_path in sorted((env / "conda-meta").glob("*.json")):
        record = json.loads(record_path.read_text())
        if record.get("noarch"):
            continue
        source = record["extracted_package_dir"]
        if cache is not None:
            source = str(cache / Path(source).name)
        for entry in record["paths_data"]["paths"]:
            if entry["path_type"] != "hardlink" or "prefix_placeholder" in entry:
                continue
            target = env / entry["_path"]
            target.unlink()
            target.symlink_to(f"{source}/{entry['_path']}")
            entry["path_type"] = "softlink"
            entry.pop("sha256_in_prefix", None)
            linked.append(entry["_path"])
        record["link"] = {"source": source, "type": 2}
        record["extracted_package_dir"] = source
        record_path.write_text(json.dumps(record))
    assert linked, "nothing to softlink"
    return linked
