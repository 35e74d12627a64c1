"""What a job array refuses before it submits anything, where the home
keeps locks on each node alone (``test_slurm.py`` runs the array on a real
Slurm). A home mounted ``nolock`` cannot be made here: the kernel's mount
table is stood in for by a file saying the home is one."""

from __future__ import annotations

import os

import pytest

from conda_migrate_plugin.safety import lock


@pytest.fixture
def nolock_home(home, tmp_path, monkeypatch):
    """``home`` on NFS mounted ``nolock``, as /proc/self/mountinfo says it."""
    table = tmp_path / "mountinfo"
    table.write_text(
        "22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
        f"153 22 0:52 / {os.path.realpath(home)} rw,relatime shared:85 - nfs "
        "srv:/export/home rw,vers=3,hard,nolock,proto=tcp,local_lock=all\n"
    )
    monkeypatch.setattr(lock, "MOUNTINFO", table)
    return home


@pytest.mark.parametrize("tasks", ["2%2", "2"])
@pytest.mark.parametrize("dry_run", [("--dry-run",), ()])
def test_tasks_side_by_side_are_refused_where_locks_hold_on_one_node(
    scratch, nolock_home, migrate, tasks, dry_run
):
    out, err, code = migrate(
        *("-d", scratch.envs_dir, "--all", *dry_run, "--tasks", tasks),
        *("--submit", "-t", "5"),
    )
    said = " ".join((out + err).split())
    locks = nolock_home / ".conda/migrate/locks"
    assert code == 2, said
    assert (
        f"--tasks {tasks} runs tasks at the same time, on whichever nodes Slurm "
        f"gives them, but conda-migrate's locks in {locks} hold on one node only "
        "(nfs mounted nolock)" in said
    )
    assert "Nothing was submitted." in said
    assert "one at a time with --tasks 2%1 (Slurm's array throttle)" in said
    assert not (nolock_home / ".conda" / "migrate").exists()


def test_tasks_one_at_a_time_are_planned_where_locks_hold_on_one_node(
    scratch, nolock_home, migrate
):
    out, err, code = migrate(
        *("-d", scratch.envs_dir, "--all", "--dry-run", "--tasks", "2%1"),
        *("--submit", "-t", "5"),
    )
    assert code == 0, out + err
    assert "--array=0-1%1" in out


def test_a_run_warns_that_locks_hold_on_this_node_only(scratch, nolock_home, migrate):
    out, err, code = migrate("-d", scratch.envs_dir, "--all", "--dry-run")
    said = " ".join((out + err).split())
    assert code == 0, said
    assert (
        f"warning: conda-migrate's locks in {nolock_home / '.conda/migrate/locks'} "
        "hold on this node only (nfs mounted nolock): a run on another node at the "
        "same time" in said
    )
