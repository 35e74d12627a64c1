"""Batch jobs on a real single-node Slurm (``tests/support/slurm.py``).

Every job runs this project's code the way README's recipe does
(``conda migrate ... --submit SBATCH_OPTIONS``): the job script execs this
interpreter with the test's HOME and SCRATCH. A copy longer than a time
limit is stood in for by holding the job's process still (SIGSTOP) in the
middle of copying, where a slow filesystem would stall it; Slurm's own
signals then do the rest.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sys
import time
from pathlib import Path

import pytest

from conda_migrate_plugin.names import STAGING_PREFIX
from tests.support import slurm as slurm_cluster
from tests.support.markers import requires_conda
from tests.support.runs import ROOT
from tests.support.trees import tree_snapshot, unshare

README = ROOT / "README.md"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = slurm_cluster.missing()
    if reason:
        pytest.skip(reason)
    running = slurm_cluster.start(tmp_path_factory.mktemp("slurm"))
    yield running
    slurm_cluster.stop(running)


@pytest.fixture
def slurm(cluster, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
    for name in [n for n in os.environ if n.startswith(("SLURM_", "SBATCH_"))]:
        if name != "SLURM_CONF":
            monkeypatch.delenv(name)
    return cluster


def add_payload(prefix: Path, files: int = 40, size: int = 8 << 20) -> None:
    """Files no package owns (data a user put there): enough to copy for a
    second or so, so that the copy can be caught midway."""
    block = os.urandom(1 << 20)
    data = prefix / "share" / "data"
    data.mkdir(parents=True)
    for index in range(files):
        (data / f"part-{index:03}.bin").write_bytes(block * (size >> 20))


def readme_recipe() -> list[str]:
    """README's sbatch recipe, as words."""
    lines = [
        line
        for line in README.read_text().splitlines()
        if line.startswith("conda migrate ")
        and "--submit" in line
        and "--tasks" not in line  # the job array's, tested below
    ]
    assert len(lines) == 1, lines
    return shlex.split(lines[0].split("#")[0])[2:]


def recipe(directory: Path, *sbatch: str, extra: tuple[str, ...] = ()) -> list[str]:
    """README's recipe on ``directory``, with this machine's ``-c`` and ``-t``."""
    words = readme_recipe()
    words[words.index("-d") + 1] = str(directory)
    at = words.index("--submit")
    options = words[at + 1 :]
    options[options.index("-c") + 1] = "1"
    options[options.index("-t") + 1] = "5"
    return [*words[:at], *extra, "--submit", *options, *sbatch]


def submit(migrate, words) -> str:
    out, err, code = migrate(*words)
    assert code == 0, out + err
    return re.search(r"Submitted batch job (\d+)", out)[1]


def output(home: Path, job: str) -> str:
    return (home / ".conda" / "migrate" / "logs" / f"slurm-{job}.out").read_text()


def job_process(slurm, job: str) -> int:
    """The job's run: the batch script exec'd it, so it carries the job's id."""
    deadline = time.monotonic() + 60
    while True:
        assert slurm.job(job)["JobState"] in ("PENDING", "RUNNING")
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                cmdline = (proc / "cmdline").read_bytes()
                environ = (proc / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"conda_migrate_plugin" in cmdline and (
                f"SLURM_JOB_ID={job}".encode() in environ
            ):
                return int(proc.name)
        assert time.monotonic() < deadline
        time.sleep(0.02)


def stagings(dest_root: Path, name: str = "") -> list[Path]:
    """The relocation's staging directories (``DEST_ROOT/PREFIX-NAME-random``)."""
    return list(dest_root.glob(f"{STAGING_PREFIX}{name}*"))


def hold_mid_copy(slurm, job: str, dest_root: Path, name: str) -> int:
    """SIGSTOP the job's run once it has copied part of ``name``: a few of
    the payload's files, whichever the directory lists first."""
    pid = job_process(slurm, job)
    deadline = time.monotonic() + 60
    while not any(
        len(list((staging / "share" / "data").glob("part-*"))) >= 3
        for staging in stagings(dest_root, name)
        if (staging / "share" / "data").is_dir()
    ):
        assert time.monotonic() < deadline and slurm.job(job)["JobState"] == "RUNNING"
        time.sleep(0.005)
    os.kill(pid, signal.SIGSTOP)
    while Path(f"/proc/{pid}/stat").read_text().split()[2] != "T":
        time.sleep(0.005)
    assert stagings(dest_root, name), "the copy finished before it could be held"
    return pid


def signalled(pid: int) -> bool:
    """Slurm has sent SIGTERM: pending while the run is held, or already
    acted on (Slurm sends SIGCONT with it)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    pending = int(re.search(r"ShdPnd:\s*([0-9a-f]+)", status)[1], 16)
    held = re.search(r"State:\s*T", status) is not None
    return not held or bool(pending & (1 << (signal.SIGTERM - 1)))


def release_at_the_limit(pid: int) -> None:
    """Let the held run go once Slurm has signalled it ahead of the limit."""
    try:
        deadline = time.monotonic() + 90
        while not signalled(pid):
            assert time.monotonic() < deadline, "no SIGTERM from Slurm"
            time.sleep(0.2)
    finally:
        release(pid)


def release(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


@pytest.fixture
def site(scratch, home):
    """abc (small) and amd (about 300 MiB), both activated in ~/.bashrc, the
    scratch directory on CONDA_ENVS_PATH and in ~/.condarc."""
    add_payload(scratch.amd)
    envs = scratch.envs_dir
    (home / ".bashrc").write_text(
        f"export CONDA_ENVS_PATH={envs}\n"
        f"conda activate {scratch.abc}\nconda activate {scratch.amd}\n"
    )
    (home / ".condarc").write_text(f"envs_dirs:\n  - {envs}\n")
    return scratch


def assert_all_migrated(scratch, home) -> None:
    dest = home / ".conda" / "envs"
    assert sorted(p.name for p in dest.iterdir()) == ["abc", "amd"]
    assert sorted(p.name for p in scratch.envs_dir.iterdir()) == ["pkgs", "pyt"]
    assert (home / ".bashrc").read_text() == (
        f"export CONDA_ENVS_PATH={dest}\n"
        f"conda activate {dest / 'abc'}\nconda activate {dest / 'amd'}\n"
    )
    assert (home / ".condarc").read_text() == f"envs_dirs:\n  - {dest}\n"
    registry = (home / ".conda" / "environments.txt").read_text().split()
    assert sorted(registry) == [str(dest / "abc"), str(dest / "amd")]


def assert_stopped_safely(scratch, home, amd_before, text: str) -> None:
    """abc moved, amd stopped mid-copy: its copy is gone, its source as it
    was, and the rc files say exactly that."""
    dest = home / ".conda" / "envs"
    assert "Stopped by SIGTERM while copying amd: the partial copy was removed" in text
    last = text.strip().splitlines()[-1]
    assert "amd" in last and "Run the same command again to continue." in last
    assert sorted(p.name for p in dest.iterdir()) == ["abc"]
    assert tree_snapshot(scratch.amd) == amd_before
    assert (home / ".bashrc").read_text() == (
        f"export CONDA_ENVS_PATH={scratch.envs_dir}\n"
        f"conda activate {dest / 'abc'}\nconda activate {scratch.amd}\n"
    )
    assert (home / ".condarc").read_text() == f"envs_dirs:\n  - {scratch.envs_dir}\n"


def test_readme_recipe_completes_and_a_second_submission_waits(
    slurm, scratch, home, migrate
):
    """singleton: the second job starts only once the first has ended, and
    finds nothing left because the first moved it all: it says so and
    succeeds (a -d that never held environments still fails)."""
    words = recipe(scratch.envs_dir)
    first, second = submit(migrate, words), submit(migrate, words)
    done = slurm.wait(first)
    assert (done["JobState"], done["ExitCode"]) == ("COMPLETED", "0:0"), output(
        home, first
    )
    after = slurm.wait(second)
    assert (after["JobState"], after["ExitCode"]) == ("COMPLETED", "0:0"), output(
        home, second
    )
    assert after["StartTime"] >= done["EndTime"]
    text = output(home, first)
    # The second submission waits, pending: no job of the user runs.
    assert "Slurm jobs" not in text
    for env in (scratch.abc, scratch.amd):
        assert f"Successfully migrated and removed old environment: {env}" in text
    assert (
        f"Nothing left to migrate in '{scratch.envs_dir}': conda-migrate already "
        "moved its environments (see the summary)."
    ) in output(home, second)
    dest = home / ".conda" / "envs"
    assert sorted(p.name for p in dest.iterdir()) == ["abc", "amd"]
    assert (
        (dest / "abc" / "bin" / "demo-app")
        .read_text()
        .startswith(f"#!{dest / 'abc'}/bin/python")
    )
    logs = home / ".conda" / "migrate" / "logs"
    assert len(list(logs.glob("conda-migrate-*.log"))) == 2
    for log in logs.glob("conda-migrate-*.log"):
        # The job runs python -m conda_migrate_plugin: its log still names
        # the command as users type it, not __main__.py.
        first = log.read_text().splitlines()[0]
        assert first.endswith(f": conda-migrate -d {scratch.envs_dir} --all"), first


@pytest.mark.slow
def test_time_limit_stops_the_run_safely_and_a_resubmission_finishes(
    slurm, site, home, migrate
):
    """``-t 1``: Slurm's SIGTERM ahead of the limit comes while amd is
    being copied; the run removes the partial copy and says so last."""
    amd_before = tree_snapshot(site.amd)
    words = recipe(site.envs_dir, "-t", "1", extra=("--method", "relocate"))
    job = submit(migrate, words)
    dest = home / ".conda" / "envs"
    pid = hold_mid_copy(slurm, job, dest, "amd")
    release_at_the_limit(pid)
    ended = slurm.wait(job)
    text = output(home, job)
    assert (ended["JobState"], ended["ExitCode"]) == ("FAILED", "143:0"), text
    assert_stopped_safely(site, home, amd_before, text)
    assert not stagings(dest)

    again = slurm.wait(submit(migrate, words[: words.index("--submit") + 1]))
    assert again["JobState"] == "COMPLETED"
    assert_all_migrated(site, home)


@pytest.mark.parametrize(
    "how, state",
    [
        ((), ("CANCELLED", "143:0")),  # SIGCONT, SIGTERM, SIGKILL after KillWait
        (("--batch", "-s", "TERM"), ("FAILED", "143:0")),  # SIGTERM alone
    ],
)
def test_scancel_stops_the_run_safely(slurm, site, home, migrate, how, state):
    amd_before = tree_snapshot(site.amd)
    job = submit(migrate, recipe(site.envs_dir, extra=("--method", "relocate")))
    pid = hold_mid_copy(slurm, job, home / ".conda" / "envs", "amd")
    slurm.run("scancel", *how, job)
    if how:
        release(pid)  # only a cancellation sends SIGCONT
    ended = slurm.wait(job)
    assert (ended["JobState"], ended["ExitCode"]) == state
    assert_stopped_safely(site, home, amd_before, output(home, job))
    assert not stagings(home / ".conda" / "envs")


@pytest.mark.parametrize(
    "how",
    [
        # Slurm cancels the job as scancel does: SIGTERM first, then SIGKILL.
        ("-s", "KILL"),
        # SIGKILL straight to the run, as a node crash or the OOM killer would.
        ("--batch", "-s", "KILL"),
    ],
)
def test_scancel_kill_then_resubmit_finishes(slurm, site, home, migrate, how):
    amd_before = tree_snapshot(site.amd)
    words = recipe(site.envs_dir, extra=("--method", "relocate"))
    job = submit(migrate, words)
    dest = home / ".conda" / "envs"
    pid = hold_mid_copy(slurm, job, dest, "amd")
    slurm.run("scancel", *how, job)
    ended = slurm.wait(job)
    assert not Path(f"/proc/{pid}").exists()
    text = output(home, job)
    if "--batch" in how:
        assert ended["JobState"] == "FAILED" and ended["ExitCode"] == "0:9"
        assert stagings(dest, "amd")  # killed outright: the next run cleans up
    else:
        assert ended["JobState"] == "CANCELLED"
        assert_stopped_safely(site, home, amd_before, text)
    assert tree_snapshot(site.amd) == amd_before

    again = submit(migrate, words)
    ended = slurm.wait(again)
    assert (ended["JobState"], ended["ExitCode"]) == ("COMPLETED", "0:0"), output(
        home, again
    )
    if "--batch" in how:
        assert "left an unverified copy" in output(home, again)
    assert_all_migrated(site, home)


def test_two_jobs_at_once_migrate_each_environment_once(
    slurm, scratch, home, migrate, make_env
):
    """Job A is held copying big; job B leaves big to it and migrates small;
    A then finds small done by B. Both say so, by job id, and only B, which
    left something unfinished, fails."""
    envs, dest = scratch.envs_dir, home / ".conda" / "envs"
    add_payload(unshare(make_env(envs / "big", ["demo-text"])))
    make_env(envs / "small", ["demo-text"])
    for name in ("abc", "amd"):
        os.rename(envs / name, scratch.root / name)  # out of the way
    base = ["-d", str(envs), "--all", "--method", "relocate", "--submit", "-c", "1"]
    a = submit(migrate, [*base, "-t", "5", "-J", "job-a"])
    pid = hold_mid_copy(slurm, a, dest, "big")
    try:
        b = submit(migrate, [*base, "-t", "5", "-J", "job-b"])
        b_end = slurm.wait(b)
    finally:
        release(pid)
    a_end = slurm.wait(a)
    a_text, b_text = output(home, a), output(home, b)
    assert (b_end["JobState"], b_end["ExitCode"]) == ("FAILED", "1:0"), b_text
    assert (
        f"{envs / 'big'} is being migrated by another conda-migrate run (Slurm job {a}, "
    ) in b_text
    assert f"Successfully migrated and removed old environment: {envs / 'small'}" in (
        b_text
    )
    assert (a_end["JobState"], a_end["ExitCode"]) == ("COMPLETED", "0:0"), a_text
    assert (
        f"{envs / 'small'} was already migrated to {dest / 'small'} by another "
        f"conda-migrate run (Slurm job {b}, "
    ) in a_text
    assert f"Successfully migrated and removed old environment: {envs / 'big'}" in (
        a_text
    )
    assert sorted(p.name for p in dest.iterdir()) == ["big", "small"]
    assert sorted(p.name for p in envs.iterdir()) == ["pkgs", "pyt"]


@pytest.mark.slow
def test_the_site_guides_wrap_recipe_stops_ahead_of_the_limit(
    slurm, site, home, migrate
):
    """``sbatch --wrap "conda-migrate ..."``: the run is the shell's child,
    which Slurm's SIGTERM at the limit cannot save; the run stops itself a
    tenth of the limit ahead of it (6 s of ``-t 1``), here while amd is
    being copied."""
    amd_before = tree_snapshot(site.amd)
    out_file = home / "wrap-%j.out"
    command = shlex.join(
        [
            sys.executable,
            *("-m", "conda_migrate_plugin", "-d", str(site.envs_dir), "--all"),
            *("--method", "relocate"),
        ]
    )
    job = slurm.run(
        "sbatch",
        *("--parsable", "-c", "1", "-t", "1", "-J", "conda-migrate"),
        f"--output={out_file}",
        f"--wrap={command}",
    ).strip()
    pid = hold_mid_copy(slurm, job, home / ".conda" / "envs", "amd")
    try:
        parent = Path(f"/proc/{pid}/stat").read_text().split()[3]
        # The batch script's shell, which Slurm runs as "slurm_script".
        assert Path(f"/proc/{parent}/comm").read_text() == "slurm_script\n"
        end = time.mktime(time.strptime(slurm.job(job)["EndTime"], "%Y-%m-%dT%H:%M:%S"))
        time.sleep(max(0.0, end - 5 - time.time()))
    finally:
        release(pid)
    ended = slurm.wait(job)
    text = Path(str(out_file).replace("%j", job)).read_text()
    assert (ended["JobState"], ended["ExitCode"]) == ("FAILED", "143:0"), text
    assert_stopped_safely(site, home, amd_before, text)
    assert not stagings(home / ".conda" / "envs")


def test_json_submission_reports_the_job_and_the_job_reports_in_json(
    slurm, scratch, home, migrate
):
    out, err, code = migrate(*recipe(scratch.envs_dir, extra=("--json",)))
    assert code == 0, out + err
    submitted = json.loads(out)
    job = submitted["job_id"]
    assert submitted["output"] == str(
        home / ".conda" / "migrate" / "logs" / f"slurm-{job}.out"
    )
    assert submitted["command"][1:] == [
        *("-m", "conda_migrate_plugin", "-d", str(scratch.envs_dir), "--all"),
        "--json",
    ]
    ended = slurm.wait(job)
    assert (ended["JobState"], ended["ExitCode"]) == ("COMPLETED", "0:0")
    report = json.loads(Path(submitted["output"]).read_text())
    assert report["success"] is True
    assert sorted(e["status"] for e in report["environments"]) == [
        "migrated",
        "migrated",
    ]


def test_a_running_job_of_the_user_is_named_and_the_migration_goes_on(
    slurm, scratch, home, migrate
):
    """/proc here cannot see a job on another node: the run names the
    user's running job once, before anything is removed, in the output,
    the log and --json, and migrates all the same."""
    job = slurm.run(
        "sbatch",
        *("--parsable", "-J", "long-sim", f"--output={home / 'long-sim.out'}"),
        "--wrap=sleep 300",
    ).strip()
    try:
        slurm.wait(job, states={"RUNNING"})
        out, err, code = migrate("-d", scratch.envs_dir, "--all", "--dry-run")
        assert code == 0, out + err
        said = (
            f"warning: you have Slurm jobs running: {job} (long-sim). This node "
            "cannot see whether they use an environment being moved"
        )
        assert out.count(said) == 1, out
        out, err, code = migrate("-d", scratch.envs_dir, "--all", "--json")
        assert code == 0, out + err
        document = json.loads(out)
        assert [w[: len(said)] for w in document["warnings"]] == [said]
        assert said in Path(document["log"]).read_text()
        dest = home / ".conda" / "envs"
        assert sorted(p.name for p in dest.iterdir()) == ["abc", "amd"]
        assert not scratch.abc.exists() and not scratch.amd.exists()
    finally:
        slurm.run("scancel", job)


def six_envs(scratch, make_env) -> list[Path]:
    """Six environments of their own inodes (``unshare``: tasks side by
    side must not see each other's removals as edits), each activated in
    ~/.bashrc; abc and amd out of the way."""
    envs = scratch.envs_dir
    for name in ("abc", "amd"):
        os.rename(envs / name, scratch.root / name)
    prefixes = [unshare(make_env(envs / f"env{i}", ["demo-text"])) for i in range(6)]
    return prefixes


def array_recipe(envs: Path, tasks: str, *sbatch: str) -> list[str]:
    return [
        *("-d", str(envs), "--all", "--method", "relocate", "--tasks", tasks),
        *("--submit", "-c", "1", "-t", "5", *sbatch),
    ]


def submit_array(migrate, words) -> tuple[str, str]:
    out, err, code = migrate(*words)
    assert code == 0, out + err
    array = re.search(r"Submitted job array (\d+)", out)[1]
    return array, re.search(r"Then job (\d+), after them all", out)[1]


def tasks_of(slurm, array: str) -> list[dict]:
    listed = slurm.run("squeue", "-h", "-r", "-j", array, "-o", "%i").split()
    return [slurm.job(task) for task in listed]


def test_array_spreads_six_environments_and_cleans_once_after_the_last(
    slurm, scratch, home, migrate, make_env
):
    prefixes = six_envs(scratch, make_env)
    dest = home / ".conda" / "envs"
    (home / ".bashrc").write_text("".join(f"conda activate {p}\n" for p in prefixes))
    array, last = submit_array(migrate, array_recipe(scratch.envs_dir, "3%2"))
    ended = slurm.wait(last, timeout=300)
    logs = home / ".conda" / "migrate" / "logs"
    text = (logs / f"slurm-{last}.out").read_text()
    assert (ended["JobState"], ended["ExitCode"]) == ("COMPLETED", "0:0"), text
    tasks = [slurm.job(f"{array}_{task}") for task in range(3)]
    assert all(t["JobState"] == "COMPLETED" for t in tasks), tasks
    assert ended["StartTime"] >= max(t["EndTime"] for t in tasks)
    assert "6 of 6 environments migrated." in text
    assert (
        "conda is not installed here, so conda's clean was skipped." in text
        or ") from conda's caches." in text
    )
    (summary,) = logs.glob("conda-migrate-array-*-summary.txt")
    assert f"Summary: {summary}" in text
    assert summary.read_text().count("    migrated: ") == 6
    assert sorted(p.name for p in dest.iterdir()) == [f"env{i}" for i in range(6)]
    assert (home / ".bashrc").read_text() == "".join(
        f"conda activate {dest / p.name}\n" for p in prefixes
    )
    registry = (home / ".conda" / "environments.txt").read_text().split()
    assert sorted(registry) == sorted(str(dest / p.name) for p in prefixes)
    for task in range(3):
        task_out = (logs / f"slurm-{array}_{task}.out").read_text()
        assert task_out.count("Successfully migrated and removed") == 2, task_out
        # The other tasks running beside it are this run, not a user's job.
        assert "Slurm jobs" not in task_out
        assert "conda's caches" not in task_out


def task_holding(out: str, name: str) -> int:
    """The task the submission lists ``name`` under."""
    (task,) = (
        int(line.split()[1].rstrip(":"))
        for line in out.splitlines()
        if line.startswith("  task ") and name in line.split(": ")[1].split(", ")
    )
    return task


def held_task(slurm, array: str, task: int, dest: Path, name: str) -> tuple[str, int]:
    """Hold ``task`` of the array mid-copy of ``name``: its job id and pid."""
    deadline = time.monotonic() + 60
    while slurm.job(f"{array}_{task}")["JobState"] != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    job = slurm.job(f"{array}_{task}")["JobId"]
    return job, hold_mid_copy(slurm, job, dest, name)


def test_array_task_cancelled_mid_copy_then_a_resubmission_finishes(
    slurm, scratch, home, migrate, make_env
):
    prefixes = six_envs(scratch, make_env)
    add_payload(prefixes[0])
    before = tree_snapshot(prefixes[0])
    dest = home / ".conda" / "envs"
    (home / ".bashrc").write_text("".join(f"conda activate {p}\n" for p in prefixes))
    words = array_recipe(scratch.envs_dir, "3")
    out, err, code = migrate(*words)
    assert code == 0, out + err
    array = re.search(r"Submitted job array (\d+)", out)[1]
    last = re.search(r"Then job (\d+), after them all", out)[1]
    task = task_holding(out, "env0")
    job, pid = held_task(slurm, array, task, dest, "env0")
    slurm.run("scancel", f"{array}_{task}")
    ended = slurm.wait(job)
    assert ended["JobState"] == "CANCELLED"
    after = slurm.wait(last, timeout=300)
    logs = home / ".conda" / "migrate" / "logs"
    text = (logs / f"slurm-{last}.out").read_text()
    assert (after["JobState"], after["ExitCode"]) == ("FAILED", "1:0"), text
    assert f"not migrated: {prefixes[0]} -> {dest / 'env0'}" in text
    assert "run the same command again to finish what is left." in text
    assert "conda's clean was left for the run that migrates the rest" in text
    assert tree_snapshot(prefixes[0]) == before
    assert not stagings(dest)

    out, err, code = migrate(*words)
    assert code == 0, out + err
    assert "env0" in out and "env1" not in out.split("balanced by files:")[1]
    again = re.search(r"Then job (\d+), after them all", out)[1]
    done = slurm.wait(again, timeout=300)
    text = (logs / f"slurm-{again}.out").read_text()
    assert (done["JobState"], done["ExitCode"]) == ("COMPLETED", "0:0"), text
    assert sorted(p.name for p in dest.iterdir()) == [f"env{i}" for i in range(6)]
    assert (home / ".bashrc").read_text() == "".join(
        f"conda activate {dest / p.name}\n" for p in prefixes
    )
    registry = (home / ".conda" / "environments.txt").read_text().split()
    assert sorted(registry) == sorted(str(dest / p.name) for p in prefixes)


@pytest.mark.slow
def test_array_task_at_its_time_limit_stops_safely_and_the_summary_says_so(
    slurm, scratch, home, migrate, make_env
):
    """``-t 1``: Slurm's SIGTERM ahead of the limit reaches the task held
    mid-copy; the others finish, and the summary names what is left."""
    prefixes = six_envs(scratch, make_env)
    add_payload(prefixes[0])
    before = tree_snapshot(prefixes[0])
    dest = home / ".conda" / "envs"
    out, err, code = migrate(*array_recipe(scratch.envs_dir, "2", "-t", "1"))
    assert code == 0, out + err
    array = re.search(r"Submitted job array (\d+)", out)[1]
    last = re.search(r"Then job (\d+), after them all", out)[1]
    task = task_holding(out, "env0")
    job, pid = held_task(slurm, array, task, dest, "env0")
    release_at_the_limit(pid)
    ended = slurm.wait(job)
    logs = home / ".conda" / "migrate" / "logs"
    task_text = (logs / f"slurm-{array}_{task}.out").read_text()
    assert (ended["JobState"], ended["ExitCode"]) == ("FAILED", "143:0"), task_text
    assert "Stopped by SIGTERM while copying env0" in task_text
    after = slurm.wait(last, timeout=300)
    text = (logs / f"slurm-{last}.out").read_text()
    assert after["ExitCode"] == "1:0", text
    assert f"  task {task}: 3 environments, exit code 143" in text
    assert f"not migrated: {prefixes[0]} -> {dest / 'env0'}" in text
    assert tree_snapshot(prefixes[0]) == before
    assert not stagings(dest)


def fill_cache(cache: Path, count: int = 400, files: int = 30) -> list[Path]:
    """Extracted packages in conda's writable package cache, for the clean
    to remove: many small files, so that it can be caught midway."""
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "urls.txt").touch()
    packages = []
    for index in range(count):
        package = cache / f"filler{index:03}-1.0-0"
        (package / "info").mkdir(parents=True)
        (package / "info" / "index.json").write_text('{"name": "filler"}\n')
        (package / "lib").mkdir()
        for number in range(files):
            (package / "lib" / f"part-{number:02}.txt").write_text("x" * 100)
        packages.append(package)
    return packages


def hold_mid_clean(slurm, job: str, packages: list[Path]) -> int:
    """SIGSTOP the job's run once its clean has removed a package."""
    pid = job_process(slurm, job)
    deadline = time.monotonic() + 120
    while all(package.exists() for package in packages):
        assert time.monotonic() < deadline and slurm.job(job)["JobState"] == "RUNNING"
        time.sleep(0.001)
    os.kill(pid, signal.SIGSTOP)
    while Path(f"/proc/{pid}/stat").read_text().split()[2] != "T":
        time.sleep(0.005)
    assert any(package.exists() for package in packages), "the clean finished"
    return pid


def hold_once_it_takes_signals(slurm, job: str) -> int:
    """SIGSTOP the job's run once its start-up notes SIGTERM (before that,
    Python's default would end it without a word): in conda's start-up,
    before the summary."""
    pid = job_process(slurm, job)
    term = 1 << (signal.SIGTERM - 1)
    status = Path(f"/proc/{pid}/status")
    while (
        not int(re.search(r"SigCgt:\s*([0-9a-f]+)", status.read_text())[1], 16) & term
    ):
        time.sleep(0.001)
    os.kill(pid, signal.SIGSTOP)
    while Path(f"/proc/{pid}/stat").read_text().split()[2] != "T":
        time.sleep(0.005)
    return pid


@requires_conda
@pytest.mark.parametrize("when", ["in the clean", "at its start"])
def test_array_clean_stopped_says_what_was_done_and_what_finishes_it(
    slurm, scratch, home, migrate, when
):
    """The job after the array, stopped (``scancel``, or Slurm's SIGTERM
    ahead of its time limit) in conda's clean: it stops at the next package,
    having removed none by half, writes the summary, and its last line says
    so and which command finishes the clean (the run without ``--submit``:
    submitted again, the array finds nothing left to migrate, and says so,
    naming that command). Stopped as it starts, it says it changed nothing.
    That command finishes it."""
    packages = fill_cache(Path(os.environ["CONDA_PKGS_DIRS"]))
    words = array_recipe(scratch.envs_dir, "2")
    _, last = submit_array(migrate, words)
    if when == "in the clean":
        pid = hold_mid_clean(slurm, last, packages)
    else:
        pid = hold_once_it_takes_signals(slurm, last)
    slurm.run("scancel", "--batch", "-s", "TERM", last)
    release_at_the_limit(pid)  # once the signal is there: scancel returns before
    ended = slurm.wait(last)
    logs = home / ".conda" / "migrate" / "logs"
    text = (logs / f"slurm-{last}.out").read_text()
    assert (ended["JobState"], ended["ExitCode"]) == ("FAILED", "143:0"), text
    finishing = shlex.join(["conda-migrate", *words[: words.index("--tasks")]])
    said = text.strip().splitlines()[-1]
    left = [package for package in packages if package.exists()]
    if when == "at its start":
        assert said.endswith(
            "Stopped by SIGTERM after every task of the job array had ended, before "
            "its summary was written: this job changed nothing. Run this to finish: "
            f"{finishing}"
        ), text
        assert not list(logs.glob("conda-migrate-array-*-summary.txt"))
        assert left == packages
    else:
        (summary,) = logs.glob("conda-migrate-array-*-summary.txt")
        assert "2 of 2 environments migrated." in summary.read_text()
        assert "2 of 2 environments migrated." in text
        assert said.endswith(
            "Stopped by SIGTERM while cleaning conda's package caches, after every "
            f"task of the job array had ended (their summary: {summary}): what "
            "the clean removed is gone, and no package was left half-removed. Run "
            f"this to finish the clean: {finishing}"
        ), text
        assert left and len(left) < len(packages)
        for package in left:  # whole, as conda takes it
            assert len(list((package / "lib").iterdir())) == 30, package
    out, err, code = migrate(*words)
    assert code == 0, out + err
    assert out == (
        f"Nothing left to migrate in '{scratch.envs_dir}': conda-migrate already "
        "moved its environments. Nothing was submitted. conda's clean, if a "
        f"stopped job left it unfinished, is run by: {finishing}\n"
    )
    out, err, code = migrate(*shlex.split(finishing)[1:])
    assert code == 0, out + err
    assert ") from conda's caches." in out
    assert not any(package.exists() for package in packages)
