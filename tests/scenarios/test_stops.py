"""A user's stop is a stop: Ctrl-C, Slurm's SIGTERM and a closed terminal's
SIGHUP end the run at once, remove the partial copy, touch no other
environment, and exit 128 + the signal's number, whichever engine was copying.

Every case runs the real command in a child process; ``faultpoint.py`` sends
the signal from inside the copy, and a pseudo-terminal plays the user at the
prompt.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import time

import pytest

from tests.support.markers import requires_conda
from tests.support.runs import (
    child_env,
    console_script,
    faultpoint,
    run_again,
    run_on_terminal,
)
from tests.support.trees import tree_snapshot

SIGNALS = {"int": signal.SIGINT, "term": signal.SIGTERM, "hup": signal.SIGHUP}


def strike(action: str, nth: int, function: str, *args) -> tuple[int, str]:
    run = subprocess.run(
        faultpoint(action, str(nth), function, args=args),
        env=child_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return run.returncode, run.stdout + run.stderr


def assert_stopped_cleanly(scratch, home, before, code, text, action) -> None:
    signum = SIGNALS[action]
    assert code == 128 + signum, text
    name = signal.Signals(signum).name
    assert f"Stopped by {name} while copying abc: the partial copy was removed" in text
    assert "Run the same command again to continue." in text
    # abc was being copied, amd's turn never came: both as they were.
    assert {"abc": tree_snapshot(scratch.abc), "amd": tree_snapshot(scratch.amd)} == (
        before
    )
    dest = home / ".conda" / "envs"
    assert not dest.exists() or sorted(os.listdir(dest)) == []
    registry = home / ".conda" / "environments.txt"
    assert not registry.exists() or str(dest) not in registry.read_text()
    assert "Migrating and comparing environment: amd" not in text
    assert "Summary:" not in text


@pytest.mark.parametrize("action", sorted(SIGNALS))
@pytest.mark.parametrize("method", ["relocate", "auto"])
def test_signal_during_relocation_stops_the_run(scratch, home, method, action):
    before = {"abc": tree_snapshot(scratch.abc), "amd": tree_snapshot(scratch.amd)}
    args = ["-d", scratch.envs_dir, "--all", "--method", method, "--no-clean"]
    code, text = strike(action, 4, "utime", *args)
    assert_stopped_cleanly(scratch, home, before, code, text, action)


@requires_conda
@pytest.mark.parametrize("nth", [3, 8], ids=["preparing", "executing"])
@pytest.mark.parametrize("action", sorted(SIGNALS))
@pytest.mark.parametrize("method", ["clone"])
def test_signal_during_condas_clone_stops_the_run(scratch, home, method, action, nth):
    """conda holds SIGINT and SIGTERM itself while its transaction runs and
    raises its own error; SIGHUP reaches ours inside conda's code. Neither
    may become "clone failed, relocate instead" or "failed, next one"."""
    before = {"abc": tree_snapshot(scratch.abc), "amd": tree_snapshot(scratch.amd)}
    args = ["-d", scratch.envs_dir, "--all", "--method", method, "--no-clean"]
    code, text = strike(action, nth, "link", *args)
    assert_stopped_cleanly(scratch, home, before, code, text, action)
    assert "relocating the environment instead" not in text


@pytest.mark.parametrize("action", sorted(SIGNALS))
def test_signal_in_the_start_up_stops_before_anything_is_done(scratch, home, action):
    """The console script's signal comes in its start-up, before the run's
    own handling is in place: conda's parsing of the command line where conda
    is installed (inside its ~0.3 s start-up), argparse's where it is not.
    The run stops as it begins, in its own words, with 128 + N: not conda's
    "CondaError: KeyboardInterrupt" and exit 1, nor a silent death."""
    before = tree_snapshot(scratch.envs_dir)
    code, text = strike(action, 1, "parse_args", "-d", scratch.envs_dir, "--all")
    assert_stopped_at_start_up(scratch, home, before, code, text, action)


def test_signal_where_no_run_begins_still_ends_it_with_128_plus_n():
    """``--help`` begins no run to stop on the signal noted in the start-up:
    the command still ends with 130, as Python's default would have."""
    code, text = strike("int", 1, "format_help", "--help")
    assert code == 130, text
    assert "Stopped by SIGINT." in text
    assert "usage:" in text


@requires_conda
@pytest.mark.parametrize("action", sorted(SIGNALS))
def test_signal_before_conda_migrate_runs_stops_it(scratch, home, action):
    """``conda migrate``: conda has called the plugin, which reads its
    options: the run stops as it begins. (Earlier, in conda's own start-up,
    SIGINT is conda's "CondaError: KeyboardInterrupt", exit 1: see below.)"""
    before = tree_snapshot(scratch.envs_dir)
    args = ("conda", "migrate", "-d", scratch.envs_dir, "--all")
    code, text = strike(action, 1, "options_from_args", *args)
    assert_stopped_at_start_up(scratch, home, before, code, text, action)


@requires_conda
@pytest.mark.xfail(
    strict=True,
    reason="conda's ExceptionHandler.handle_exception (conda/exception_handler.py) "
    "reports a KeyboardInterrupt as 'CondaError: KeyboardInterrupt' with exit code "
    "1, for every command, before any plugin code runs",
)
def test_sigint_in_condas_own_start_up_gives_130(scratch, home):
    """Where only conda can do it: when this passes, conda gives 130 too."""
    args = ("conda", "migrate", "-d", scratch.envs_dir, "--all")
    code, text = strike("int", 1, "parse_args", *args)
    assert code == 130, text


def assert_stopped_at_start_up(scratch, home, before, code, text, action) -> None:
    signum = SIGNALS[action]
    assert code == 128 + signum, text
    name = signal.Signals(signum).name
    assert f"Stopped by {name} before the run began: nothing was touched." in text
    assert "KeyboardInterrupt" not in text and "Traceback" not in text
    assert tree_snapshot(scratch.envs_dir) == before
    assert not (home / ".conda" / "envs").exists()


def typed_at_the_prompt(scratch, key: bytes) -> tuple[int, str]:
    """``key`` typed at the selection prompt on a terminal: the exit code
    and all the run showed, once the environments are seen untouched."""
    before = tree_snapshot(scratch.envs_dir)
    code, shown = run_on_terminal(
        ["-d", scratch.envs_dir], key, b"'All' to migrate all):"
    )
    assert tree_snapshot(scratch.envs_dir) == before
    return code, shown


def test_ctrl_c_at_the_prompt_touches_nothing(scratch, home):
    code, shown = typed_at_the_prompt(scratch, b"\x03")
    assert code == 130, shown
    assert "Stopped by SIGINT at the selection prompt: nothing was touched." in shown
    assert "Traceback" not in shown
    assert not (home / ".conda" / "envs").exists()


def test_ctrl_d_at_the_prompt_selects_nothing(scratch, home):
    code, shown = typed_at_the_prompt(scratch, b"\x04")
    assert code == 1, shown
    assert "No environment was selected" in shown
    assert "nothing was touched" in shown
    assert "batch job" not in shown and "Traceback" not in shown


def test_closed_stdin_in_a_batch_job_asks_for_all(scratch, home):
    run = subprocess.run(
        [*console_script(), "-d", scratch.envs_dir],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert "in a batch job it usually is" in run.stderr
    assert "Pass --all" in run.stderr
    assert "No environment was selected" not in run.stdout + run.stderr


def test_closing_the_terminal_mid_copy_stops_and_logs_129(scratch, home):
    """A closed terminal is SIGHUP, and every later write to it fails: the
    run must still stop cleanly and say so in its log."""
    before = {"abc": tree_snapshot(scratch.abc), "amd": tree_snapshot(scratch.amd)}
    pid, fd = pty.fork()
    if pid == 0:
        args = ["-d", scratch.envs_dir, "--all", "--method", "relocate"]
        command = faultpoint("stop", "4", "utime", args=args)
        os.execve(command[0], command, child_env())
    deadline = time.monotonic() + 60
    while open(f"/proc/{pid}/stat").read().split()[2] != "T":
        assert time.monotonic() < deadline
        while select.select([fd], [], [], 0.05)[0]:
            os.read(fd, 4096)
    os.close(fd)
    os.kill(pid, signal.SIGCONT)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 129
    (log,) = (home / ".conda" / "migrate" / "logs").glob("*.log")
    lines = log.read_text().splitlines()
    assert (
        "error: Stopped by SIGHUP while copying abc: the partial copy was removed"
        in (lines[-2])
    )
    assert lines[-1].endswith(" exit code 129")
    assert {"abc": tree_snapshot(scratch.abc), "amd": tree_snapshot(scratch.amd)} == (
        before
    )
    assert sorted(os.listdir(home / ".conda" / "envs")) == []


def test_a_stop_turned_into_another_error_is_still_a_stop(
    scratch, home, migrate, monkeypatch
):
    """Code the run does not own (conda's, a library's) may catch the
    exception the signal raised and report something else."""
    from conda_migrate_plugin import workflow
    from conda_migrate_plugin.backends.portable import PortableBackend
    from conda_migrate_plugin.exceptions import Interrupted

    class Swallowing(PortableBackend):
        def export_yaml(self, prefix, name):
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            except Interrupted as err:
                raise OSError("export failed") from err
            raise AssertionError("the signal never came")

    monkeypatch.setattr(workflow, "load_backend", Swallowing)
    before = {"abc": tree_snapshot(scratch.abc), "amd": tree_snapshot(scratch.amd)}
    out, err, code = migrate("-d", scratch.envs_dir, "--all", "--no-clean")
    assert code == 143, out + err
    assert f"Stopped by SIGTERM while exporting abc: {scratch.abc} is untouched." in err
    assert "Migration of abc failed" not in out
    assert "Migrating and comparing environment: amd" not in out
    assert {"abc": tree_snapshot(scratch.abc), "amd": tree_snapshot(scratch.amd)} == (
        before
    )


def test_stop_while_the_rc_files_are_rewritten_says_what_is_done(scratch, home):
    """SIGTERM once abc moved, as its rc-file lines are rewritten: the run
    says abc is migrated, the rc files are as they were or updated (never
    half-written) and that the same command finishes; it does (amd too)."""
    bashrc = home / ".bashrc"
    before = f"conda activate {scratch.abc}\nconda activate {scratch.amd}\n"
    bashrc.write_text(before)
    amd = tree_snapshot(scratch.amd)
    args = ["-d", scratch.envs_dir, "--all", "--method", "relocate", "--no-clean"]
    code, text = strike("term", 1, "_apply", *args)
    assert code == 128 + signal.SIGTERM, text
    assert (
        "Stopped by SIGTERM after migrating abc, while pointing the rc files at the "
        "new places: each rc file is as it was or updated, none half-written. Run "
        "the same command again to finish" in text
    )
    assert bashrc.read_text() == before
    assert not list(home.glob(".bashrc.*.partial"))
    assert (home / ".conda/envs/abc/conda-meta/history").is_file()
    assert tree_snapshot(scratch.amd) == amd

    rerun = run_again(args, child_env())
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    envs = home / ".conda/envs"
    assert bashrc.read_text() == (
        f"conda activate {envs / 'abc'}\nconda activate {envs / 'amd'}\n"
    )
    assert not scratch.amd.exists()


@requires_conda
def test_stop_in_condas_clean_says_what_is_done(scratch, home):
    """SIGTERM in conda's clean at the end: everything else was done, the
    run says so and that the same command finishes the clean; it does."""
    args = ["-d", scratch.envs_dir, "--all", "--method", "relocate"]
    code, text = strike("term", 1, "find_pkgs", *args)
    assert code == 128 + signal.SIGTERM, text
    assert (
        "Stopped by SIGTERM while cleaning conda's package caches, after all else "
        "was done (see above): what the clean removed is gone, and no package was "
        "left half-removed. Run the same command again to finish the clean." in text
    )
    assert not scratch.abc.exists() and not scratch.amd.exists()

    rerun = run_again(args, child_env())
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "from conda's caches." in rerun.stdout


@requires_conda
def test_stop_in_condas_clean_never_leaves_a_package_half_removed(
    scratch, home, tmp_path
):
    """SIGTERM amid the deletion of an extracted package from the cache (its
    20th file of 41): conda would take what is left for a whole package. The
    stop waits until it is gone."""
    args = ["-d", scratch.envs_dir, "--all", "--method", "relocate"]
    moved = run_again([*args, "--no-clean"], child_env())
    assert moved.returncode == 0, moved.stdout + moved.stderr
    pkgs = tmp_path / "conda-pkgs"  # the home fixture's CONDA_PKGS_DIRS
    pkgs.mkdir(exist_ok=True)
    (pkgs / "urls.txt").write_text("")
    package = pkgs / "bulky-1.0-0"
    (package / "info").mkdir(parents=True)
    (package / "info/index.json").write_text('{"name": "bulky"}')
    (package / "lib").mkdir()
    for index in range(40):
        (package / "lib" / f"part{index}").write_text("x")
    code, text = strike("term", 20, "unlink", *args)
    assert code == 128 + signal.SIGTERM, text
    assert "Stopped by SIGTERM while cleaning conda's package caches" in text
    assert not package.exists(), sorted(os.listdir(package / "lib"))
