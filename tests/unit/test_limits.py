"""limits: the CPU-time limit met ahead of its kill, and the limits named
when a thread cannot start. Each case sets real limits in a forked child,
so pytest's own are never touched."""

from __future__ import annotations

import os
import resource

import pytest

from conda_migrate_plugin.limits import stop_ahead_of_cpu_limit, thread_limits


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
