"""Extended attributes (``user.*``) and POSIX ACLs of environment files
follow them into the copy, are part of its check, and where the destination
cannot hold them the run says so."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from typing import TYPE_CHECKING

import pytest

from conda_migrate_plugin.backends.clone import carry_omitted
from conda_migrate_plugin.relocation.relocate import relocate
from conda_migrate_plugin.relocation.verify import verify_files
from tests.support.markers import requires_conda
from tests.support.trees import chown_tree
from tests.support.users import USER, as_user, user_home

if TYPE_CHECKING:
    from pathlib import Path

ENGINES = ["relocate", pytest.param("clone", marks=requires_conda)]
OBJ = 0xFFFFFFFF


def acl(*entries: tuple[int, int, int]) -> bytes:
    """A POSIX ACL in the kernel's form: version 2, (tag, permissions, id)."""
    return struct.pack("<I" + "HHI" * len(entries), 2, *sum(entries, ()))


#: Owner rw, user 4242 r, group r, mask r, others none (what setfacl -m u:4242:r writes).
SHARED_WITH_4242 = acl(
    (0x01, 6, OBJ), (0x02, 4, 4242), (0x04, 4, OBJ), (0x10, 4, OBJ), (0x20, 0, OBJ)
)
#: New files below a directory: group 4343 may read them.
DEFAULT_FOR_4343 = acl(
    (0x01, 7, OBJ), (0x04, 5, OBJ), (0x08, 5, 4343), (0x10, 5, OBJ), (0x20, 5, OBJ)
)


def tag(env: Path) -> dict[str, dict[str, bytes]]:
    """What users put on their files: provenance on a data file and on a
    directory, a file shared with a colleague, a directory's default ACL."""
    data = env / "share" / "demo" / "data.txt"
    # A hard link into the package cache: set the attribute on a copy of its own.
    shutil.copy2(data, data.with_name("own"))
    os.replace(data.with_name("own"), data)
    notes = env / "share" / "notes.txt"
    notes.write_text("results of run 7\n")
    attributes = {
        "share/demo/data.txt": {"user.origin": b"run 7 of experiment 12"},
        "share/demo": {"user.project": b"paper-2026"},
        "share/notes.txt": {"system.posix_acl_access": SHARED_WITH_4242},
        "share": {"system.posix_acl_default": DEFAULT_FOR_4343},
    }
    for rel, values in attributes.items():
        for name, value in values.items():
            os.setxattr(env / rel, name, value)
    return attributes


def attributes_of(path: Path, names) -> dict[str, bytes]:
    return {
        name: os.getxattr(path, name) for name in names if name in os.listxattr(path)
    }


@pytest.mark.parametrize("method", ENGINES)
def test_attributes_and_acls_follow_into_the_copy(scratch, home, migrate, method):
    expected = tag(scratch.abc)
    out, err, code = migrate(
        "-d", scratch.abc, "--all", "--method", method, "--no-clean"
    )
    assert code == 0, out + err
    new = home / ".conda" / "envs" / "abc"
    for rel, values in expected.items():
        assert attributes_of(new / rel, values) == values, rel
    assert "extended attributes" not in out


def test_a_copy_missing_an_attribute_fails_the_check(make_env, tmp_path):
    source = make_env(tmp_path / "scratch" / "abc", ["demo-app"])
    tag(source)
    final = tmp_path / "home" / "abc"
    staging = final.with_name("abc.partial")
    relocate(source, staging, final)
    assert verify_files(source, staging, final).problems == []
    os.removexattr(staging / "share/demo/data.txt", "user.origin")
    os.setxattr(staging / "share/demo", "user.project", b"another")
    os.removexattr(staging / "share/notes.txt", "system.posix_acl_access")
    assert verify_files(source, staging, final).problems == [
        "share/demo/data.txt: extended attribute user.origin missing in the copy",
        "share/demo: extended attribute user.project differs in the copy",
        "share/notes.txt: extended attribute system.posix_acl_access missing in the copy",
    ]


@pytest.fixture
def ramfs(tmp_path):
    """A destination without extended attributes or ACLs (ramfs has
    neither), mounted below ``tmp_path`` and unmounted at teardown."""
    point = tmp_path / "ramfs-home"
    point.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a ramfs needs root and mount")
    done = subprocess.run(
        ["mount", "-t", "ramfs", "cm-test", point], capture_output=True, text=True
    )
    if done.returncode:
        pytest.skip(f"cannot mount a ramfs here: {done.stderr.strip()}")
    yield point
    subprocess.run(["umount", "-l", point], check=False)


@pytest.mark.parametrize("method", ENGINES)
def test_a_destination_without_attributes_is_said_on_screen_and_in_the_log(
    scratch, home, migrate, ramfs, method
):
    tag(scratch.abc)
    dest = ramfs / "envs"
    out, err, code = migrate(
        "-d", scratch.abc, "--all", "--method", method, "--no-clean", "--dest", dest
    )
    assert code == 0, out + err
    warning = (
        "warning: the destination does not support these extended attributes "
        "or ACLs, so the copy has them on none of 4 entries that had them ("
    )
    assert warning in out
    (log,) = (home / ".conda" / "migrate" / "logs").glob("*.log")
    assert warning in log.read_text()
    assert (dest / "abc" / "share" / "notes.txt").read_text() == "results of run 7\n"


def test_read_only_files_and_directories_keep_theirs_as_their_owner(
    unprivileged, make_env
):
    """An ordinary user may set ``user.*`` attributes only on what they may
    write: a read-only file or directory gets its attributes before its mode,
    with either engine's carrying."""
    base, _ = unprivileged
    source = make_env(base / "scratch" / "abc", ["demo-app"])
    tag(source)
    frozen = source / "share" / "frozen"
    frozen.mkdir()
    (frozen / "result.dat").write_text("final\n")
    os.setxattr(frozen / "result.dat", "user.checksum", b"sha256:1234")
    os.setxattr(frozen, "user.project", b"paper-2026")
    (frozen / "result.dat").chmod(0o444)
    frozen.chmod(0o555)
    chown_tree(source, USER)
    home = user_home(base)
    relocated, cloned = home / "relocated", home / "cloned"
    # What conda's clone leaves: the files without their attributes.
    relocate(source, cloned, cloned)
    for dirpath, dirnames, filenames in os.walk(cloned):
        for name in [".", *dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            for attribute in os.listxattr(path, follow_symlinks=False):
                os.removexattr(path, attribute, follow_symlinks=False)
    chown_tree(cloned, USER)

    def copy_as_the_user() -> None:
        relocate(source, relocated, relocated)
        carry_omitted(source, cloned)
        for copy in (relocated, cloned):
            problems = verify_files(source, copy, copy).problems
            assert problems == [], problems

    assert as_user(copy_as_the_user) == 0
    for copy in (relocated, cloned):
        assert (
            os.getxattr(copy / "share/frozen/result.dat", "user.checksum")
            == b"sha256:1234"
        )
        assert os.getxattr(copy / "share/frozen", "user.project") == b"paper-2026"
        assert (copy / "share/frozen").stat().st_mode & 0o777 == 0o555
        assert (copy / "share/frozen/result.dat").stat().st_mode & 0o777 == 0o444


#: Others may not read new files or directories below it (a default ACL a
#: site sets on home directories).
DEFAULT_OTHERS_NONE = acl(
    (0x01, 7, OBJ), (0x04, 5, OBJ), (0x08, 5, 4343), (0x10, 5, OBJ), (0x20, 0, OBJ)
)
#: Everyone may do everything: the mode made is then the one asked for.
DEFAULT_OPEN = acl((0x01, 7, OBJ), (0x04, 7, OBJ), (0x10, 7, OBJ), (0x20, 7, OBJ))


@pytest.mark.parametrize(
    "default", [DEFAULT_OTHERS_NONE, DEFAULT_OPEN], ids=["others-none", "open"]
)
def test_a_default_acl_on_the_destination_leaves_the_sources_modes(
    make_env, tmp_path, default
):
    """A default ACL above the copy takes the umask's place at each create:
    every file and directory still ends with its source's mode."""
    source = make_env(tmp_path / "scratch" / "abc", ["demo-app"])
    (source / "share" / "private").mkdir(mode=0o700)
    for name, mode in (("setuid-tool", 0o4755), ("read-only", 0o444)):
        (source / "bin" / name).write_text("#!/bin/sh\n")
        (source / "bin" / name).chmod(mode)
    home = tmp_path / "home"
    home.mkdir()
    os.setxattr(home, "system.posix_acl_default", default)
    final = home / "abc"
    staging = final.with_name("abc.partial")
    relocate(source, staging, final)
    assert verify_files(source, staging, final).problems == []
    for path in [source, *source.rglob("*")]:
        copy = staging / path.relative_to(source)
        assert copy.lstat().st_mode == path.lstat().st_mode, path
