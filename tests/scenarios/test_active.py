"""The seed's most common case: ``~/.bashrc`` activates a scratch environment
at login, so it is active whenever the user runs the tool. conda refuses to
remove the active environment; so does this tool, before anything is copied.
And every way a run can end with an environment in its new place (migrated
now, already migrated, finished later, the old one removed by hand) leaves
the rc files naming that place."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.support.markers import HAVE_CONDA
from tests.support.trees import tree_snapshot

RUN = ("--all", "--no-clean")


def user_files(home, scratch):
    """A login that activates ``abc`` from scratch, and a condarc that lists
    the scratch directory first, as the site's old advice had it."""
    bashrc = home / ".bashrc"
    bashrc.write_text(f"# .bashrc\nconda activate {scratch.abc}\n")
    condarc = home / ".condarc"
    condarc.write_text(f"envs_dirs:\n  - {scratch.envs_dir}\n")
    return bashrc, condarc


def assert_rc_files_name_the_new_place(home, scratch, bashrc, condarc):
    dest = home / ".conda" / "envs"
    assert bashrc.read_text() == f"# .bashrc\nconda activate {dest / 'abc'}\n"
    assert condarc.read_text() == f"envs_dirs:\n  - {dest}\n"


@pytest.mark.parametrize("extra", [(), ("--dry-run",)], ids=["run", "dry-run"])
def test_the_active_environment_is_refused_before_anything_is_copied(
    scratch, home, migrate, monkeypatch, extra
):
    bashrc, condarc = user_files(home, scratch)
    monkeypatch.setenv("CONDA_PREFIX", str(scratch.abc))
    before = tree_snapshot(scratch.envs_dir)
    out, err, code = migrate("-d", scratch.envs_dir, *RUN, *extra)
    assert code == 1, out + err
    assert "abc is the active environment" in out + err
    assert "conda deactivate" in out + err
    # The command to run again, as typed.
    assert f"-d {scratch.envs_dir} --all --no-clean" in out + err
    assert "Migrating and comparing environment" not in out
    assert "Would write" not in out
    assert tree_snapshot(scratch.envs_dir) == before
    assert not (home / ".conda" / "envs").exists()
    assert not (home / ".conda" / "yaml").exists()
    assert bashrc.read_text() == f"# .bashrc\nconda activate {scratch.abc}\n"


def test_the_listing_says_which_one_is_active(scratch, home, migrate, monkeypatch):
    monkeypatch.setenv("CONDA_PREFIX", str(scratch.abc))
    out, err, code = migrate("-d", scratch.envs_dir, stdin="2\n")
    assert code == 0, out + err
    listing = out.split("Select environments to migrate")[0]
    assert "abc is the active environment" in listing
    assert "conda deactivate" in listing
    # amd, chosen at the prompt, moves; the active abc is not touched.
    assert (home / ".conda" / "envs" / "amd" / "conda-meta" / "history").is_file()
    assert (scratch.abc / "conda-meta" / "history").is_file()


def test_keep_old_may_copy_the_active_environment(scratch, home, migrate, monkeypatch):
    """--keep-old never removes it, so nothing of conda's rule is at stake."""
    bashrc, condarc = user_files(home, scratch)
    monkeypatch.setenv("CONDA_PREFIX", str(scratch.abc))
    out, err, code = migrate("-d", scratch.abc, *RUN, "--keep-old")
    assert code == 0, out + err
    assert (scratch.abc / "conda-meta" / "history").is_file()
    dest = home / ".conda" / "envs" / "abc"
    assert bashrc.read_text() == f"# .bashrc\nconda activate {dest}\n"


def test_already_migrated_points_the_rc_files_at_the_copy(scratch, home, migrate):
    """An earlier run copied it and left the rc files (--no-rc, or a version
    that did not follow an environment it could not remove)."""
    bashrc, condarc = user_files(home, scratch)
    out, err, code = migrate("-d", scratch.envs_dir, *RUN, "--keep-old", "--no-rc")
    assert code == 0, out + err
    out, err, code = migrate("-d", scratch.envs_dir, *RUN)
    assert code == 0, out + err
    assert "abc is already migrated" in out
    dest = home / ".conda" / "envs"
    assert bashrc.read_text() == f"# .bashrc\nconda activate {dest / 'abc'}\n"
    # Both old ones are still there, so the directory stays listed.
    assert condarc.read_text() == f"envs_dirs:\n  - {scratch.envs_dir}\n"


def test_old_ones_removed_by_hand_the_rerun_finishes_the_rc_files(
    scratch, home, migrate
):
    bashrc, condarc = user_files(home, scratch)
    out, err, code = migrate("-d", scratch.envs_dir, *RUN, "--keep-old", "--no-rc")
    assert code == 0, out + err
    shutil.rmtree(scratch.abc)
    shutil.rmtree(scratch.amd)
    out, err, code = migrate("-d", scratch.envs_dir, *RUN)
    assert code == 0, out + err
    assert "No valid conda environments" not in out + err
    assert f"Nothing left to migrate in '{scratch.envs_dir}'" in out
    assert "already migrated: 2" in out
    assert_rc_files_name_the_new_place(home, scratch, bashrc, condarc)
    # Run once more: nothing to do, said the same way, still exit 0.
    out, err, code = migrate("-d", scratch.envs_dir, *RUN)
    assert code == 0, out + err
    assert not list(home.glob(".bashrc.conda-migrate-*"))[1:]


def test_a_directory_that_never_held_environments_still_fails(
    scratch, home, migrate, tmp_path
):
    out, err, code = migrate("-d", scratch.envs_dir, *RUN)
    assert code == 0, out + err
    empty = tmp_path / "scratch" / "other"
    empty.mkdir()
    out, err, code = migrate("-d", empty, *RUN)
    assert code == 1
    assert "No valid conda environments" in out + err


@pytest.mark.skipif(
    not HAVE_CONDA or not shutil.which("bash"),
    reason="activating an environment at login needs conda's shell function "
    "(conda is not importable here) and bash",
)
def test_a_login_that_activates_the_environment_ends_naming_the_new_place(
    scratch, home
):
    """The documented steps in a real interactive bash on a terminal, whose
    ``~/.bashrc`` sets up conda's shell function and activates ``abc``."""
    import pty
    import select
    import time

    # conda installed with pip refuses every command but init from its
    # ``conda`` script, which activation puts back in $CONDA_EXE: the shell
    # function's runner is made ``python -m conda``.
    bashrc = home / ".bashrc"
    bashrc.write_text(
        f'eval "$({sys.executable} -m conda shell.bash hook)"\n'
        '__conda_exe() ( "$CONDA_PYTHON_EXE" -m conda "$@" )\n'
        f"conda activate {scratch.abc}\n"
    )
    condarc = home / ".condarc"
    condarc.write_text(f"envs_dirs:\n  - {scratch.envs_dir}\n")
    command = f"conda migrate -d {scratch.envs_dir} --all --no-clean"
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(home)
        os.execvpe("bash", ["bash", "-i"], {**os.environ, "PS1": "$ "})
    shown = b""

    def run(line: str, until: bytes) -> str:
        """Type ``line``; wait for ``until``, which the echo of what was
        typed does not hold (``"r""c=``)."""
        nonlocal shown
        start = len(shown)
        os.write(fd, line.encode() + b"\n")
        deadline = time.monotonic() + 180
        while until not in shown[start:] and time.monotonic() < deadline:
            if select.select([fd], [], [], 1)[0]:
                shown += os.read(fd, 65536)
        return shown[start:].decode(errors="replace")

    try:
        first = run(f'{command}; echo "r""c=$?"', b"rc=")
        assert "abc is the active environment" in first, first
        assert "rc=1" in first
        run('conda deactivate; echo "o""k"', b"ok")
        second = run(f'{command}; echo "r""c=$?"', b"rc=")
        assert "rc=0" in second, second
        run("exit", b"")
    finally:
        os.close(fd)
        os.waitpid(pid, 0)
    dest = home / ".conda" / "envs"
    assert bashrc.read_text().endswith(f"conda activate {dest / 'abc'}\n")
    assert condarc.read_text() == f"envs_dirs:\n  - {dest}\n"
    login = subprocess.run(
        ["bash", "-i", "-c", 'echo "active=$CONDA_PREFIX"'],
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(home)},
        timeout=120,
    )
    assert f"active={dest / 'abc'}" in login.stdout, login.stdout + login.stderr


def test_a_job_submitted_from_that_shell_is_refused_before_it_is_queued(
    scratch, home, migrate, monkeypatch
):
    """``--submit`` passes ``--export=ALL``: the job would inherit
    ``CONDA_PREFIX`` and meet the same refusal after waiting in the queue."""
    monkeypatch.setenv("CONDA_PREFIX", str(scratch.abc))
    args = ("-d", scratch.envs_dir, "--all", "--dry-run", "--submit", "-t", "1:00:00")
    out, err, code = migrate(*args)
    assert code == 1, out + err
    assert "abc is the active environment" in out + err
    assert "conda deactivate" in out + err
    assert "Would submit" not in out
    monkeypatch.delenv("CONDA_PREFIX")
    out, err, code = migrate(*args)
    assert code == 0, out + err
    assert "Would submit" in out


def test_default_discovery_rerun_after_everything_moved_exits_0(
    scratch, home, migrate, monkeypatch
):
    """No -d: the environments conda knows under $SCRATCH; once this tool
    moved them all, a rerun has nothing left and says so."""
    monkeypatch.setenv("CONDA_ENVS_PATH", str(scratch.envs_dir))
    out, err, code = migrate(*RUN)
    assert code == 0, out + err
    assert "migrated: 2" in out
    out, err, code = migrate(*RUN)
    assert code == 0, out + err
    assert f"Nothing left to migrate in '{scratch.root}'" in out
    assert "already migrated: 2" in out
