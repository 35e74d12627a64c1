"""Batch jobs without Slurm: the worker count a job asked for, rc files that
follow each environment as it moves, and two runs at once telling the truth.

The same behaviours run under a real Slurm in ``test_slurm.py``; these run
everywhere, with the Slurm variables a job would have.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from tests.support import runs
from tests.support.runs import child_env, wait_until_stopped
from tests.support.trees import unshare

if TYPE_CHECKING:
    from pathlib import Path


def without_slurm() -> dict[str, str]:
    """This process's environment, as if it ran outside any Slurm job."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}


def run_cli(home: Path, *args, fault=("count", "0"), env=None, wait=True):
    """The real command in a child process, struck by ``faultpoint.py``."""
    env = child_env(home, base=without_slurm(), **(env or {}))
    return runs.run_cli(home, *args, fault=fault, env=env, wait=wait)


def jobs_in(env: dict[str, str], cpus: set[int] | None = None) -> int:
    """``default_jobs()`` in a fresh process with that environment and CPU set."""
    code = "from conda_migrate_plugin.jobs import default_jobs; print(default_jobs())"
    if cpus is not None:
        code = f"import os; os.sched_setaffinity(0, {cpus!r}); {code}"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=child_env(base=without_slurm(), **env),
        capture_output=True,
        text=True,
        check=True,
    )
    return int(result.stdout)


def test_workers_are_what_the_job_asked_for():
    """Eight threads per CPU the job asked for (they mostly wait on the
    filesystem's round trips), at most 32."""
    cpus = len(os.sched_getaffinity(0))
    assert jobs_in({}) == min(32, 8 * cpus)
    assert jobs_in({"SLURM_CPUS_PER_TASK": "1"}) == 8
    assert jobs_in({"SLURM_CPUS_PER_TASK": str(cpus + 8)}) == min(32, 8 * cpus)
    assert jobs_in({"SLURM_CPUS_PER_TASK": "nonsense"}) == min(32, 8 * cpus)
    assert jobs_in({"SLURM_CPUS_PER_TASK": "64"}) <= 32


def test_workers_never_exceed_the_cpus_the_job_is_bound_to():
    one = {sorted(os.sched_getaffinity(0))[0]}
    assert jobs_in({"SLURM_CPUS_PER_TASK": "64"}, cpus=one) == 8


def test_help_says_what_cpus_buy(migrate):
    out, err, code = migrate("--help")
    assert code == 0
    text = " ".join(out.split())
    assert "SLURM_CPUS_PER_TASK, which is sbatch's -c" in text
    assert "conda's clone does not use them" in text


def stamps_set_migrating(make_env, tmp_path: Path, specs, pip: bool) -> int:
    """How many stamps a relocation of such an environment sets: on
    each entry copied, each record rewritten and each directory."""
    prefix = make_env(tmp_path / "count" / "envs" / "env", specs, pip=pip)
    home = tmp_path / "count" / "home"
    home.mkdir()
    code, out, err = run_cli(
        home,
        *("-d", prefix, "--all", "--method", "relocate", "--no-clean"),
        fault=("count", "0", "utime"),
    )
    assert code == 0, out + err
    return int(err.split("faultpoint-count ")[1].split()[0])


def test_a_stopped_run_leaves_rc_files_naming_what_is_where(
    scratch, home, make_env, tmp_path
):
    """abc moved before the stop, amd did not: ~/.bashrc activates abc in
    $HOME and amd in scratch, and the scratch directory stays on the envs
    path while amd is still in it."""
    envs, dest = scratch.envs_dir, home / ".conda" / "envs"
    bashrc, condarc = home / ".bashrc", home / ".condarc"
    bashrc.write_text(
        f"export CONDA_ENVS_PATH={envs}\n"
        f"conda activate {scratch.abc}\nconda activate {scratch.amd}\n"
    )
    condarc.write_text(f"envs_dirs:\n  - {envs}\n")
    abc_stamps = stamps_set_migrating(make_env, tmp_path, ["demo-app"], pip=True)
    args = ("-d", envs, "--all", "--method", "relocate", "--no-clean")
    # Then amd's entries: rewriting ~/.bashrc sets no stamps.
    code, out, err = run_cli(home, *args, fault=("term", str(abc_stamps + 3), "utime"))
    assert code == 128 + signal.SIGTERM, out + err
    assert "Stopped by SIGTERM while copying amd" in out + err
    assert not (scratch.abc).exists() and (dest / "abc").is_dir()
    assert (scratch.amd / "conda-meta" / "history").is_file()
    assert not (dest / "amd").exists()
    assert bashrc.read_text() == (
        f"export CONDA_ENVS_PATH={envs}\n"
        f"conda activate {dest / 'abc'}\nconda activate {scratch.amd}\n"
    )
    assert condarc.read_text() == f"envs_dirs:\n  - {envs}\n"

    code, out, err = run_cli(home, *args)
    assert code == 0, out + err
    assert bashrc.read_text() == (
        f"export CONDA_ENVS_PATH={dest}\n"
        f"conda activate {dest / 'abc'}\nconda activate {dest / 'amd'}\n"
    )
    assert condarc.read_text() == f"envs_dirs:\n  - {dest}\n"
    # One backup per file per run: the file as it was before that run.
    backups = sorted(home.glob(".bashrc.conda-migrate-*"))
    assert [b.read_text().splitlines()[1] for b in backups] == [
        f"conda activate {scratch.abc}",
        f"conda activate {dest / 'abc'}",
    ]


def test_two_jobs_at_once_each_say_who_migrated_what(scratch, home, make_env, tmp_path):
    """Job 4242 is held still while copying abc; job 4343 leaves abc to it
    and migrates amd; 4242 then finds amd done by 4343. Each environment is
    migrated once; only the run that left something unfinished exits 1."""
    envs, dest = scratch.envs_dir, home / ".conda" / "envs"
    unshare(scratch.abc)
    args = ("-d", envs, "--all", "--method", "relocate", "--no-clean")
    first = run_cli(
        home,
        *args,
        fault=("stop", "3", "utime"),
        env={"SLURM_JOB_ID": "4242"},
        wait=False,
    )
    try:
        wait_until_stopped(first)
        code, out, err = run_cli(home, *args, env={"SLURM_JOB_ID": "4343"})
    finally:
        first.send_signal(signal.SIGCONT)
    first_out, first_err = first.communicate(timeout=300)
    assert code == 1, out + err
    assert (
        f"{scratch.abc} is being migrated by another conda-migrate run "
        f"(Slurm job 4242, pid {first.pid} on "
    ) in out
    assert f"Successfully migrated and removed old environment: {scratch.amd}" in out
    assert first.returncode == 0, first_out + first_err
    assert (
        f"{scratch.amd} was already migrated to {dest / 'amd'} by another "
        "conda-migrate run (Slurm job 4343, pid "
    ) in first_out
    assert f"Successfully migrated and removed old environment: {scratch.abc}" in (
        first_out
    )
    assert "already migrated: 1" in first_out
    assert sorted(p.name for p in dest.iterdir()) == ["abc", "amd"]
    assert sorted(p.name for p in envs.iterdir()) == ["pkgs", "pyt"]
    registry = (home / ".conda" / "environments.txt").read_text().split()
    assert sorted(registry) == [str(dest / "abc"), str(dest / "amd")]


@pytest.mark.parametrize("job", ["77", None])
def test_a_held_environment_names_its_holder(scratch, home, job):
    """The lock file says who holds it, by job id inside a Slurm job."""
    from conda_migrate_plugin.safety.lock import hold

    state = home / ".conda" / "migrate"
    env = {"SLURM_JOB_ID": job} if job else {}
    holder = run_cli(
        home,
        "-d",
        scratch.abc,
        "--all",
        "--method",
        "relocate",
        "--no-clean",
        fault=("stop", "1", "utime"),
        env=env,
        wait=False,
    )
    try:
        wait_until_stopped(holder)
        with pytest.raises(Exception, match="being migrated by another") as caught:
            with hold(state, scratch.abc):
                pass
    finally:
        holder.send_signal(signal.SIGCONT)
        holder.communicate(timeout=300)
    expected = (
        f"Slurm job {job}, pid {holder.pid} on " if job else f"(pid {holder.pid} on "
    )
    assert expected in str(caught.value)


def test_submit_writes_a_job_that_execs_the_same_command(scratch, home, migrate):
    """What --submit hands to sbatch, shown by --dry-run: the run replaces
    the job's shell, and every option but --submit is passed on."""
    out, err, code = migrate(
        *("-d", scratch.envs_dir, "--all", "--no-rc", "-v", "--method", "relocate"),
        *("--dry-run", "--submit", "-c", "4", "-t", "2:00:00"),
    )
    assert code == 0, out + err
    logs = home / ".conda" / "migrate" / "logs"
    command = shlex.join(
        [
            sys.executable,
            *("-m", "conda_migrate_plugin", "-d", str(scratch.envs_dir), "--all"),
            *("--method", "relocate", "--no-rc", "-v"),
        ]
    )
    assert out == (
        "Would submit with: sbatch --parsable --job-name=conda-migrate "
        "--dependency=singleton --signal=B:TERM@300 "
        f"--output={logs}/slurm-%j.out --open-mode=append --export=ALL "
        "-c 4 -t 2:00:00\n"
        "#!/bin/sh\n"
        "# Written by conda-migrate --submit. exec makes the run the job's own\n"
        "# process, so that Slurm's SIGTERM reaches it and it can stop safely.\n"
        f"exec {command}\n\n"
    )
    assert (scratch.abc / "conda-meta" / "history").is_file()


def test_submit_needs_all(scratch, migrate):
    out, err, code = migrate("-d", scratch.envs_dir, "--submit", "-c", "4")
    assert code == 2
    assert "--submit needs --all: a batch job has no one to answer the prompt." in (
        out + err
    )


def test_submit_without_slurm_says_nothing_was_submitted(
    scratch, home, migrate, monkeypatch
):
    monkeypatch.setenv("PATH", str(home))
    out, err, code = migrate("-d", scratch.envs_dir, "--all", "--submit")
    assert code == 1
    assert "sbatch was not found, so no job was submitted." in out + err
    assert (scratch.abc / "conda-meta" / "history").is_file()


@pytest.mark.parametrize(
    "options, signal_at",
    [
        (["-t", "48:00:00"], 300),  # five minutes of two days
        (["--time=20"], 120),  # a tenth of 20 minutes
        (["-t", "1"], 6),
        (["-t", "1-0", "-t", "0:30"], 3),  # sbatch takes the last
        (["-c", "2"], 300),  # the partition's default limit: unknown here
        (["-t", "UNLIMITED"], 300),
    ],
)
def test_submit_asks_for_the_signal_ahead_of_the_limit_it_was_given(
    scratch, migrate, options, signal_at
):
    out, err, code = migrate(
        "-d", scratch.envs_dir, "--all", "--dry-run", "--submit", *options
    )
    assert code == 0, out + err
    assert f" --signal=B:TERM@{signal_at} " in out
