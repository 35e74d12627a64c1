"""slowfs stands in for a site's home in other tests and in the benchmark:
these hold it to what it claims, a quota of blocks and of inodes that statvfs
does not show, hard links counted once, inodes and owners as a real
filesystem keeps them, and flock refused as a site's mount refuses it."""

from __future__ import annotations

import errno
import fcntl
import os

import pytest

from tests.support.users import USER, as_user


def test_quota_of_blocks_refuses_the_write_that_passes_it_while_statvfs_shows_the_server(
    slowfs_mount, tmp_path
):
    home = slowfs_mount(tmp_path / "home", quota_kb=1024)
    with pytest.raises(OSError) as refused, open(home / "big", "wb") as stream:
        for _ in range(2048):
            stream.write(b"x" * 1024)
            stream.flush()
    assert refused.value.errno == errno.EDQUOT
    assert os.stat(home / "big").st_blocks * 512 <= 1024 * 1024
    free = os.statvfs(home)
    assert (
        free.f_bavail * free.f_frsize > 1024 * 1024
    )  # the backing disk, not the quota
    (home / "big").unlink()
    (home / "again").write_bytes(b"y" * 512 * 1024)  # the removal gave the blocks back


def test_quota_of_inodes_counts_hard_links_once_and_frees_on_removal(
    slowfs_mount, tmp_path
):
    backing = tmp_path / "backing"
    backing.mkdir()
    (backing / "shared").write_text("one inode, two names\n")
    os.link(backing / "shared", backing / "shared-too")
    home = slowfs_mount(tmp_path / "home", backing, quota_files=5)  # 2 inodes used
    assert os.stat(home / "shared").st_ino == os.stat(home / "shared-too").st_ino
    os.link(home / "shared", home / "third-name")  # no new inode
    for name in ("a", "b", "c"):
        (home / name).write_text(name)
    with pytest.raises(OSError) as refused:
        (home / "d").mkdir()
    assert refused.value.errno == errno.EDQUOT
    (home / "a").unlink()
    (home / "d").mkdir()


def test_what_a_user_creates_is_theirs(unprivileged, slowfs_mount):
    base, _ = unprivileged  # a directory every user can traverse; unmounted first
    home = slowfs_mount(base / "home")
    home.chmod(0o777)

    def create() -> None:
        os.umask(0o022)
        (home / "mine").write_text("a user's file\n")

    assert as_user(create) == 0
    made = os.stat(home / "mine")
    assert (made.st_uid, made.st_gid, made.st_mode & 0o777) == (USER, USER, 0o644)


@pytest.mark.parametrize("refusal", ["ENOLCK", "ENOSYS", "EOPNOTSUPP", "EINVAL"])
def test_flock_refused_with_the_error_a_site_mount_gives(
    slowfs_mount, tmp_path, refusal
):
    home = slowfs_mount(tmp_path / "home", flock=refusal)
    fd = os.open(home / "a.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        for operation in (fcntl.LOCK_EX | fcntl.LOCK_NB, fcntl.LOCK_SH):
            with pytest.raises(OSError) as refused:
                fcntl.flock(fd, operation)
            assert refused.value.errno == getattr(errno, refusal)
    finally:
        os.close(fd)


def test_flock_held_by_the_kernel_without_a_refusal(slowfs_mount, tmp_path):
    home = slowfs_mount(tmp_path / "home")
    first, second = (
        os.open(home / "a.lock", os.O_RDWR | os.O_CREAT, 0o600) for _ in range(2)
    )
    try:
        fcntl.flock(first, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(BlockingIOError):
            fcntl.flock(second, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(first)
        os.close(second)


def test_flock_granted_then_refused_as_a_lock_manager_lost_midway(
    slowfs_mount, tmp_path
):
    home = slowfs_mount(tmp_path / "home", flock="ENOLCK", flock_after=2)
    first, second = (
        os.open(home / "a.lock", os.O_RDWR | os.O_CREAT, 0o600) for _ in range(2)
    )
    try:
        fcntl.flock(first, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(BlockingIOError):  # granted locks exclude each other
            fcntl.flock(second, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(first, fcntl.LOCK_UN)  # never refused
        with pytest.raises(OSError) as refused:
            fcntl.flock(second, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert refused.value.errno == errno.ENOLCK
    finally:
        os.close(first)
        os.close(second)
