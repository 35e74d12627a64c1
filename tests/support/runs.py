"""The real command as users and jobs run it: in a child process (struck
by ``faultpoint.py`` where a test says so), on a pseudo-terminal, and what
it leaves in conda's registry and prints."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from conda_migrate_plugin.result import Phase
from conda_migrate_plugin.safety import journal

if TYPE_CHECKING:
    from collections.abc import Mapping

#: The checkout whose code the children run.
ROOT = Path(__file__).resolve().parents[2]
FAULTPOINT = Path(__file__).with_name("faultpoint.py")


def registered(home: Path) -> list[str]:
    """The lines of ``home``'s environments.txt; none when there is none."""
    path = home / ".conda" / "environments.txt"
    return path.read_text().splitlines() if path.exists() else []


def child_env(
    home: Path | None = None, *, base: Mapping[str, str] | None = None, **extra: str
) -> dict[str, str]:
    """``base`` (this process's environment) for a child that imports this
    checkout."""
    env = {**(os.environ if base is None else base), "PYTHONPATH": str(ROOT)}
    env.update(extra)
    if home is not None:
        env["HOME"] = str(home)
    return env


def faultpoint(*fault: str, args) -> list[str]:
    """``conda-migrate ARGS`` under ``faultpoint.py``; no ``fault``: it
    only counts."""
    return [
        sys.executable,
        str(FAULTPOINT),
        *(fault or ("count", "0")),
        "--",
        *map(str, args),
    ]


def run_cli(home: Path, *args, fault=(), env=None, timeout=300, wait=True):
    """The real command in a child process under ``faultpoint.py``, with
    ``env`` (default: ``child_env(home)``): ``(code, out, err)``, or the
    process itself when not waiting for it."""
    process = subprocess.Popen(
        faultpoint(*fault, args=args),
        env=child_env(home) if env is None else env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if not wait:
        return process
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def wait_until_stopped(process: subprocess.Popen) -> None:
    """Wait (a minute at most) until faultpoint's SIGSTOP holds ``process``
    still."""
    deadline = time.monotonic() + 60
    while Path(f"/proc/{process.pid}/stat").read_text().split()[2] != "T":
        assert time.monotonic() < deadline, "the run never reached the fault"
        assert process.poll() is None, "the run ended before the fault"
        time.sleep(0.05)


def console_script() -> list[str]:
    """``conda-migrate`` as installed beside this interpreter."""
    script = Path(sys.executable).parent / "conda-migrate"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "conda_migrate_plugin"]


def run_on_terminal(args, keys: bytes, wait_for: bytes) -> tuple[int, str]:
    """Run the console script on a pseudo-terminal, type ``keys`` once
    ``wait_for`` is shown; returns the exit code and all it showed."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the terminal is its stdin, stdout and stderr
        command = console_script() + [str(arg) for arg in args]
        os.execve(command[0], command, os.environ)
    shown, typed = b"", False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        if not typed and wait_for in shown:
            os.write(fd, keys)
            typed = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")


def assert_in_order(out: str, lines: list[str]) -> None:
    """Each of ``lines`` is a whole line of ``out``, after the one before."""
    position = 0
    for line in lines:
        found = out.find(line + "\n", position)
        assert found >= 0, f"{line!r} missing (or out of order) in:\n{out}"
        position = found + len(line)


def killed_in_the_removal(home, args: list) -> dict[str, str]:
    """Run the command, killed inside the deletion of the renamed-aside old
    environment (its second ``rmdir``; the first removes the emptied staging
    directory), which the journal records; the environment to run it again
    with."""
    env = child_env(home)
    killed = subprocess.run(
        faultpoint("kill", "2", "rmdir", args=args),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    (entry,) = journal.entries(home / ".conda/migrate")
    assert entry.phase == Phase.REMOVING
    return env


def run_again(args: list, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The same command, run again as a user would after the kill."""
    return subprocess.run(
        [sys.executable, "-m", "conda_migrate_plugin", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
