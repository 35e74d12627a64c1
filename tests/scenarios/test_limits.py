"""A login node's limits on each user's processes (``ulimit``, set by
pam_limits or systemd): the run either works within them or stops before
it loses anything, saying which limit it met and what to do.

The CPU-time limit is the kernel's: SIGXCPU at the soft limit (again every
second), SIGKILL at the hard one, and sites often set both alike, so that
the first signal is the kill. The process and thread limit
(``RLIMIT_NPROC``) counts every thread of the user's, and root ignores it:
those runs are an ordinary user's.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

from tests.support.runs import child_env, faultpoint, run_again
from tests.support.trees import chown_tree, tree_snapshot
from tests.support.users import USER, user_home

if TYPE_CHECKING:
    from pathlib import Path

RELOCATE = ("--all", "--method", "relocate", "--no-clean")


def conda_migrate(*args) -> list[str]:
    return [sys.executable, "-m", "conda_migrate_plugin", *map(str, args)]


def limited(home: Path, limit: int, value: int, command: list[str]) -> tuple[int, str]:
    """``command`` in a child process under a login node's ``limit`` (a
    ``resource.RLIMIT_*``, soft and hard alike, as ``ulimit`` sets them):
    its exit code and output."""
    run = subprocess.run(
        command,
        env=child_env(home),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: resource.setrlimit(limit, (value, value)),
    )
    return run.returncode, run.stdout + run.stderr


def test_cpu_time_limit_stops_the_run_before_the_kill(scratch, home):
    """The copy uses the CPU until the limit (soft and hard alike, as
    ``ulimit -t 4`` sets them): the run stops itself ahead of the kill,
    removes its partial copy, and says to run it as a job."""
    before = {"abc": tree_snapshot(scratch.abc), "amd": tree_snapshot(scratch.amd)}
    args = ["-d", scratch.envs_dir, *RELOCATE]
    spin = faultpoint("spin", "1", "update_records", args=args)
    code, text = limited(home, resource.RLIMIT_CPU, 4, spin)
    assert code == 128 + signal.SIGXCPU, text
    assert (
        "Stopped by SIGXCPU while copying abc: the partial copy was removed and "
        f"{scratch.abc} is untouched." in text
    )
    assert "CPU time this login node allows a process (ulimit -t: 4 s)" in text
    assert "--submit" in text
    assert "Traceback" not in text
    assert {"abc": tree_snapshot(scratch.abc), "amd": tree_snapshot(scratch.amd)} == (
        before
    )
    dest = home / ".conda" / "envs"
    assert not dest.exists() or os.listdir(dest) == []
    again = run_again([str(arg) for arg in args], child_env(home))
    assert again.returncode == 0, again.stdout + again.stderr
    assert sorted(os.listdir(dest)) == ["abc", "amd"]
    assert not scratch.abc.exists()


def test_no_thread_can_start_touches_nothing(unprivileged, make_env):
    """Every process and thread the user may have is running (``ulimit -u``):
    no thread of the run starts. Each environment is left as it was, the
    message names the limit, and the same command finishes once there is
    room."""
    base, run = unprivileged
    home = user_home(base)
    envs = base / "scratch"
    env = make_env(envs / "abc", ["demo-app"])
    chown_tree(envs, USER)
    before = tree_snapshot(env)
    out, code = run(home, "-d", envs, *RELOCATE, limits={resource.RLIMIT_NPROC: 1})
    assert code == 1, out
    assert "Traceback" not in out
    assert "no thread could be started" in out
    assert "processes and threads this login node allows you (ulimit -u: 1)" in out
    assert tree_snapshot(env) == before
    dest = home / ".conda" / "envs"
    assert not dest.exists() or os.listdir(dest) == []
    out, code = run(home, "-d", envs, *RELOCATE)
    assert code == 0, out
    assert os.listdir(dest) == ["abc"]


def _many_files(env: Path) -> dict[str, tuple]:
    """Directories and files enough to keep 32 threads busy, added to
    ``env``; their snapshot."""
    for index in range(480):
        extra = env / "share" / "extra" / f"d{index:03}"
        extra.mkdir(parents=True)
        for number in range(25):
            (extra / f"f{number}.txt").write_text(f"{index} {number}\n" * 50)
    return _many_files_in(env)


def _many_files_in(env: Path) -> dict[str, tuple]:
    return tree_snapshot(env / "share" / "extra")


def test_threads_fit_a_limited_address_space(scratch, home):
    """``ulimit -v`` of 600 MB, where the run needs about 200: each of 32
    threads reserved an allocator's arena of 64 MiB, and past the limit the
    walk failed with MemoryError (at 800 MB the run spun for minutes,
    copying nothing). The run completes, every file copied."""
    before = _many_files(scratch.abc)
    args = ("-d", scratch.envs_dir, *RELOCATE, "--jobs", "32")
    code, text = limited(home, resource.RLIMIT_AS, 600 * 2**20, conda_migrate(*args))
    assert code == 0, text
    assert _many_files_in(home / ".conda" / "envs" / "abc") == before


def test_file_size_limit_refuses_before_copying(scratch, home):
    """``ulimit -f`` of 1 MiB and an environment holding a 2 MiB file (Python
    ignores SIGXFSZ, so its write fails with EFBIG): that environment is
    refused before anything is copied, naming the file and the limit; the
    other one moves."""
    (scratch.abc / "share" / "big.dat").write_bytes(b"x" * 2 * 2**20)
    before = tree_snapshot(scratch.abc)
    args = [str(arg) for arg in ("-d", scratch.envs_dir, *RELOCATE)]

    def run_limited(*more: str) -> tuple[int, str]:
        return limited(home, resource.RLIMIT_FSIZE, 2**20, conda_migrate(*args, *more))

    refused = (
        "It holds a file larger than this login node lets a process write "
        "(ulimit -f: 1024 KB):\n  share/big.dat (2.0 MB)\n"
        "Nothing was copied and the environment is untouched."
    )
    code, text = run_limited("--dry-run")
    assert code == 1, text
    assert refused in text
    code, text = run_limited()
    assert code == 1, text
    assert f"Migration of abc failed: {refused}" in text
    assert "--submit" in text
    assert "Traceback" not in text
    assert tree_snapshot(scratch.abc) == before
    dest = home / ".conda" / "envs"
    assert sorted(os.listdir(dest)) == ["amd"]
    again = run_again(args, child_env(home))
    assert again.returncode == 0, again.stdout + again.stderr
    assert (dest / "abc" / "share" / "big.dat").stat().st_size == 2 * 2**20


def test_open_files_limit_of_a_login_node_is_enough(scratch, home):
    """``ulimit -n`` set low (64; 1024 is common) with 32 threads asked for:
    each thread holds a few files and directories open, so the run takes
    no more threads than the limit leaves room for, and completes."""
    before = _many_files(scratch.abc)
    args = ("-d", scratch.envs_dir, *RELOCATE, "--jobs", "32")
    code, text = limited(home, resource.RLIMIT_NOFILE, 64, conda_migrate(*args))
    assert code == 0, text
    assert _many_files_in(home / ".conda" / "envs" / "abc") == before


def test_file_grown_past_the_size_limit_names_the_limit(scratch, home):
    """A text file just under ``ulimit -f`` that names the old prefix, many
    times, grows past it as the longer new prefix is written in: the copy
    fails at that file, and the message names the limit; nothing is lost."""
    dest = home / "a-destination-whose-path-is-longer-than-scratch" / "envs"
    limit = 2**20
    line = f"{scratch.abc}/bin\n".encode()
    (scratch.abc / "share" / "paths.txt").write_bytes(line * (limit // len(line)))
    before = tree_snapshot(scratch.abc)
    args = ("-d", scratch.envs_dir, *RELOCATE, "--dest", dest)
    code, text = limited(home, resource.RLIMIT_FSIZE, limit, conda_migrate(*args))
    assert code == 1, text
    assert (
        "Migration of abc failed: cannot copy share/paths.txt: File too large\n"
        "Its copy is larger than this login node lets a process write (ulimit -f: "
        f"1024 KB). The partial copy was removed and {scratch.abc} is untouched. "
        "Run it as a Slurm job instead" in text
    ), text
    assert tree_snapshot(scratch.abc) == before
    assert sorted(os.listdir(dest)) == ["amd"]
