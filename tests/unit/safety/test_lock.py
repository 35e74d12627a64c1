"""The per-environment lock alone: one holder at a time, named to the next."""

from __future__ import annotations

import os

import pytest

from conda_migrate_plugin.exceptions import MigrateError
from conda_migrate_plugin.safety.lock import (
    hold,
    hold_all,
    is_held,
    locality,
    lock_path,
)


def test_a_second_holder_is_refused_with_the_first_ones_name(tmp_path):
    env = tmp_path / "abc"
    env.mkdir()
    with hold(tmp_path / "state", env):
        assert is_held(tmp_path / "state", env) is False  # keyed by inode
        with pytest.raises(MigrateError, match=rf"pid {os.getpid()} on "):
            with hold(tmp_path / "state", env):
                pass
    with hold(tmp_path / "state", env) as before:
        assert f"pid {os.getpid()}" in before


def test_a_symlink_to_an_environment_is_the_same_lock(tmp_path):
    env = tmp_path / "abc"
    env.mkdir()
    (tmp_path / "link").symlink_to(env)
    assert lock_path(tmp_path, tmp_path / "link") == lock_path(tmp_path, env)
    assert lock_path(tmp_path, env) != lock_path(tmp_path, env, by_inode=False)


def test_a_destination_lock_is_seen_held_and_released(tmp_path):
    state, source, dest = (
        tmp_path / "state",
        tmp_path / "abc",
        tmp_path / "envs" / "abc",
    )
    source.mkdir()
    with hold_all(state, source, dest):
        assert is_held(state, dest)
    assert not is_held(state, dest)


ROOT = "22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p1 rw,errors=remount-ro"
NFS3 = (
    "153 22 0:52 / /home rw,relatime shared:85 - nfs srv:/export/home "
    "rw,vers=3,rsize=1048576,wsize=1048576,namlen=255,hard,{lock}proto=tcp,"
    "timeo=600,retrans=2,sec=sys,mountaddr=10.0.0.1,mountvers=3,mountport=20048,"
    "mountproto=udp,local_lock={local},addr=10.0.0.1"
)


@pytest.mark.parametrize(
    ("lock", "local", "said"),
    [
        ("nolock,", "all", "nfs mounted nolock"),
        ("", "flock", "nfs mounted local_lock=flock"),
        ("", "posix", None),  # flock still goes to the server
        ("", "none", None),
    ],
)
def test_nfs_locks_on_this_node_only_are_read_from_mountinfo(lock, local, said):
    mountinfo = "\n".join([ROOT, NFS3.format(lock=lock, local=local)])
    assert locality("/home/u/.conda/migrate/locks", mountinfo) == said
    assert locality("/homework/u", mountinfo) is None  # /home is not above it


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ("rw,localflock,lazystatfs", "lustre mounted localflock"),
        ("rw,flock,lazystatfs", None),
        ("rw,lazystatfs", None),  # noflock: flock fails, check_locking says so
    ],
)
def test_lustre_localflock_is_read_from_mountinfo(options, said):
    lustre = f"200 22 0:60 / /lustre/home rw,relatime shared:100 - lustre mgs@o2ib:/home {options}"
    assert locality("/lustre/home/u/.conda/migrate/locks", f"{ROOT}\n{lustre}") == said


def test_the_mount_holding_the_path_is_the_deepest_and_last():
    nolock = NFS3.format(lock="nolock,", local="all")
    mountinfo = "\n".join(
        [
            ROOT,
            nolock.replace(" /home ", r" /home/my\040home "),
            "300 153 0:70 / /home/my\\040home/.conda rw shared:9 - tmpfs tmpfs rw",
            nolock.replace(" /home ", " /data "),
            "301 22 0:71 / /data rw shared:10 - nfs4 srv:/data rw,vers=4.2,local_lock=none",
        ]
    )
    assert locality("/home/my home/x", mountinfo) == "nfs mounted nolock"
    assert locality("/home/my home/.conda/migrate/locks", mountinfo) is None
    assert locality("/data/u", mountinfo) is None  # mounted over, by NFSv4
    assert locality("/", mountinfo) is None
