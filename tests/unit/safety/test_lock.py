"""The per-environment lock alone: one holder at a time, named to the next."""

from __future__ import annotations

import os

import pytest

from conda_migrate_plugin.exceptions import MigrateError
from conda_migrate_plugin.safety.lock import hold, hold_all, is_held, lock_path


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
