"""limits: the CPU-time limit met ahead of its kill, and the limits named
when a thread cannot start. Each case sets real limits in a forked child,
so pytest's own are never touched."""

from __future__ import annotations

import os
import resource

import pytest

from conda_migrate_plugin.limits import (
    lift_login_limits_in_a_job,
    stop_ahead_of_cpu_limit,
    thread_limits,
    threads_for_open_files,
)


def in_child(check) -> None:
    """``check()`` in a forked child; its assertion fails the test."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        message = b""
        try:
            check()
        except BaseException as err:  # reported to the parent below
            message = repr(err).encode() or b"failed"
        os.write(write, message)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as stream:
        failure = stream.read().decode()
    os.waitpid(pid, 0)
    assert failure == ""


@pytest.mark.parametrize(
    ("hard", "soft_inside"),
    [(3600, 3540), (600, 540), (300, 270), (20, 18), (5, 4)],
)
def test_soft_limit_is_a_tenth_below_the_hard_one_at_most_a_minute(hard, soft_inside):
    def check() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))
        with stop_ahead_of_cpu_limit():
            assert resource.getrlimit(resource.RLIMIT_CPU) == (soft_inside, hard)
        assert resource.getrlimit(resource.RLIMIT_CPU) == (hard, hard)

    in_child(check)


def test_a_lower_soft_limit_the_site_set_is_kept():
    def check() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (100, 3600))
        with stop_ahead_of_cpu_limit():
            assert resource.getrlimit(resource.RLIMIT_CPU) == (100, 3600)

    in_child(check)


def test_no_cpu_limit_is_left_alone():
    def check() -> None:
        unlimited = resource.RLIM_INFINITY
        resource.setrlimit(resource.RLIMIT_CPU, (unlimited, unlimited))
        with stop_ahead_of_cpu_limit():
            assert resource.getrlimit(resource.RLIMIT_CPU) == (unlimited, unlimited)

    in_child(check)


def test_thread_limits_name_what_is_set():
    def check() -> None:
        resource.setrlimit(resource.RLIMIT_NPROC, (64, 64))
        resource.setrlimit(resource.RLIMIT_AS, (2**31, 2**31))
        assert thread_limits() == (
            "the processes and threads this login node allows you (ulimit -u: 64) "
            "or the memory it allows a process to reserve (ulimit -v: 2097152 KB)"
        )

    in_child(check)


def test_a_job_lifts_the_soft_limits_the_login_node_propagated(monkeypatch):
    """Slurm applies the submitting shell's soft limits in the job (its
    default PropagateResourceLimits=ALL): in a job they go up to the node's
    hard limits."""
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    unlimited = resource.RLIM_INFINITY
    propagated = {
        resource.RLIMIT_CPU: (600, unlimited),
        resource.RLIMIT_FSIZE: (2**30, unlimited),
        resource.RLIMIT_AS: (2**32, unlimited),
    }

    def check() -> None:
        for limit, values in propagated.items():
            resource.setrlimit(limit, values)
        lift_login_limits_in_a_job()
        for limit in propagated:
            assert resource.getrlimit(limit) == (unlimited, unlimited)

    in_child(check)


def test_outside_a_job_the_soft_limits_stay(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)

    def check() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (2**30, resource.RLIM_INFINITY))
        lift_login_limits_in_a_job()
        assert resource.getrlimit(resource.RLIMIT_FSIZE)[0] == 2**30

    in_child(check)


@pytest.mark.parametrize(
    ("open_files", "asked", "threads"),
    [(1024, 32, 32), (256, 32, 32), (128, 32, 20), (64, 32, 4), (50, 8, 1)],
)
def test_threads_fit_the_open_files_allowed(open_files, asked, threads):
    def check() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))
        assert threads_for_open_files(asked) == threads

    in_child(check)
