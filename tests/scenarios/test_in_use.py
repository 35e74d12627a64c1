"""The removal at the edges of a site: a job still writing into the old
environment, a write in the instant before the removal, a copy replaced
between two runs, a directory mounted inside the environment. Each test
tries to make the removal delete something it must not, and checks that
nothing was.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conda_migrate_plugin.names import REMOVING_SUFFIX
from conda_migrate_plugin.result import Phase
from conda_migrate_plugin.safety import journal
from tests.support.runs import run_cli, wait_until_stopped
from tests.support.trees import chown_tree, tree_snapshot
from tests.support.users import USER, user_home

RELOCATE = ("--all", "--method", "relocate", "--no-clean")

#: A batch job's script: open its log for appending, write that it started
#: (unless "silent"), then append its result once told to (or end without
#: writing when told "quit").
JOB = """
import sys
with open(sys.argv[1], "a") as log:
    if sys.argv[2:] != ["silent"]:
        log.write("job started\\n")
        log.flush()
    print("ready", flush=True)
    if sys.stdin.readline().strip() == "finish":
        log.write("job result\\n")
"""


def start_job(log: Path, *how: str) -> subprocess.Popen:
    """A real process appending to ``log``, held open until it is told to end."""
    log.parent.mkdir(parents=True, exist_ok=True)
    job = subprocess.Popen(
        [sys.executable, "-c", JOB, str(log), *how],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert job.stdout is not None and job.stdout.readline() == "ready\n"
    return job


def end_job(job: subprocess.Popen, how: str) -> None:
    job.communicate(f"{how}\n", timeout=30)
    assert job.returncode == 0


def command_of(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


# -- 1. a job writing into its environment -----------------------------------


def test_job_appending_to_its_environment_keeps_it_and_its_result(
    scratch, home, migrate
):
    """The job's result, written after the run, lands in the kept
    environment instead of an unlinked file; the rerun then keeps both,
    since the source changed after the copy."""
    log = scratch.abc / "var/log/job.log"
    job = start_job(log)
    command = command_of(job.pid)
    try:
        out, err, code = migrate("-d", scratch.abc, *RELOCATE)
    finally:
        end_job(job, "finish")
    assert code == 1, out + err
    assert f"{command} (pid {job.pid}) has {log} open for writing" in out, out
    assert f"Copied to {home / '.conda/envs/abc'}, but the old environment" in out
    assert "copied: 1" in out
    assert log.read_text() == "job started\njob result\n"
    assert (home / ".conda/envs/abc/var/log/job.log").read_text() == "job started\n"

    out, err, code = migrate("-d", scratch.abc, *RELOCATE)
    assert code == 1, out + err
    assert f"{scratch.abc} changed since it was copied" in out
    assert "var/log/job.log: changed" in out
    assert log.read_text() == "job started\njob result\n"


def test_rerun_finishes_once_the_writing_job_has_ended(scratch, home, migrate):
    log = scratch.abc / "var/log/job.log"
    job = start_job(log)
    try:
        out, err, code = migrate("-d", scratch.abc, *RELOCATE)
        assert code == 1, out + err
        assert (
            f"{command_of(job.pid)} (pid {job.pid}) has {log} open for writing" in out
        )
        assert "Run the same command again once it has ended" in out
        assert scratch.abc.is_dir()
    finally:
        end_job(job, "quit")
    out, err, code = migrate("-d", scratch.abc, *RELOCATE, "--dry-run")
    assert code == 0, out + err
    assert (
        f"Would finish the interrupted migration of {scratch.abc}: its copy "
        f"{home / '.conda/envs/abc'} is verified; remove {scratch.abc}" in out
    ), out
    assert "conda env remove" not in out, "the run removes it, not the user"
    assert "already migrated" not in out
    assert scratch.abc.is_dir()
    out, err, code = migrate("-d", scratch.abc, *RELOCATE)
    assert code == 0, out + err
    assert not scratch.abc.exists()
    assert (home / ".conda/envs/abc/var/log/job.log").read_text() == "job started\n"
    assert journal.entries(home / ".conda/migrate") == []


#: A program keeping a database file mapped shared and writable, its
#: descriptor closed: only ``/proc/PID/maps`` shows it.
MAPPER = """
import mmap, os, sys
with open(sys.argv[1], "r+b") as db:
    view = mmap.mmap(db.fileno(), 0, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
for fd in os.listdir("/proc/self/fd"):  # the duplicate mmap keeps, too
    if os.path.realpath(f"/proc/self/fd/{fd}") == os.path.realpath(sys.argv[1]):
        os.close(int(fd))
print("ready", flush=True)
sys.stdin.readline()
view[:4] = b"done"
view.flush()
"""


def test_file_mapped_shared_and_writable_keeps_the_environment(scratch, home, migrate):
    db = scratch.abc / "var/cache.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"\0" * 4096)
    mapper = subprocess.Popen(
        [sys.executable, "-c", MAPPER, db],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert mapper.stdout is not None and mapper.stdout.readline() == "ready\n"
        command = command_of(mapper.pid)
        out, err, code = migrate("-d", scratch.abc, *RELOCATE)
    finally:
        mapper.communicate("\n", timeout=30)
    assert code == 1, out + err
    assert f"{command} (pid {mapper.pid}) has {db} open for writing" in out
    assert db.read_bytes()[:4] == b"done"


def test_process_working_in_the_environment_keeps_it(scratch, home, migrate):
    sleeper = subprocess.Popen(["sleep", "60"], cwd=scratch.abc / "share")
    try:
        out, err, code = migrate("-d", scratch.abc, *RELOCATE)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert code == 1, out + err
    assert f"sleep (pid {sleeper.pid}) works in {scratch.abc / 'share'}" in out
    assert (scratch.abc / "conda-meta/history").is_file()


def test_process_reading_the_environment_is_named_and_it_is_removed(
    scratch, home, migrate
):
    """A reader loses nothing: its open file lives on until it closes it."""
    data = scratch.abc / "share/demo/data.txt"
    reader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; f = open(sys.argv[1]); sys.stdin.read()",
            data,
        ],
        stdin=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not any(
            os.readlink(fd) == str(data)
            for fd in Path(f"/proc/{reader.pid}/fd").iterdir()
            if fd.is_symlink()
        ):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        out, err, code = migrate("-d", scratch.abc, *RELOCATE)
    finally:
        reader.communicate("", timeout=30)
    assert code == 0, out + err
    assert (
        f"(pid {reader.pid}) is using {scratch.abc}; it is removed all the same" in out
    )
    assert not scratch.abc.exists()


def test_dry_run_says_a_writing_job_would_keep_the_environment(scratch, home, migrate):
    """The dry run says what the real run does: it copies the environment
    and keeps it while a job writes into it (or works in it), and it names
    a process that only runs from it, as the real run does."""
    import json

    log = scratch.abc / "var/log/job.log"
    bashrc = home / ".bashrc"
    bashrc.write_text(f"conda activate {scratch.abc}\nconda activate {scratch.amd}\n")
    job = start_job(log)
    writer = f"{command_of(job.pid)} (pid {job.pid}) has {log} open for writing"
    sleeper = subprocess.Popen(["sleep", "60"], cwd=scratch.amd)
    try:
        out, err, code = migrate("-d", scratch.envs_dir, *RELOCATE, "--dry-run")
        listed, _, _ = migrate("-d", scratch.envs_dir, *RELOCATE, "--dry-run", "--json")
    finally:
        end_job(job, "finish")
        sleeper.kill()
        sleeper.wait()
    assert code == 1, out + err
    assert f"Would write {home / '.conda/yaml/abc.yml'}, copy and compare" in out
    assert f"but keep {scratch.abc}: {writer}" in out, out
    assert f"and remove {scratch.abc}" not in out
    assert f"but keep {scratch.amd}: sleep (pid {sleeper.pid}) works in" in out
    planned = {env["name"]: env for env in json.loads(listed)["environments"]}
    assert writer in planned["abc"]["message"]
    assert planned["abc"]["status"] == planned["amd"]["status"] == "copied"
    assert "  copied: 2" in out
    assert f"-conda activate {scratch.abc}" not in out, "the real run keeps it"
    assert (
        bashrc.read_text()
        == f"conda activate {scratch.abc}\nconda activate {scratch.amd}\n"
    )
    assert planned["abc"]["freed_files"] is None
    assert (home / ".conda/envs").exists() is False or not any(
        (home / ".conda/envs").iterdir()
    )


# -- 2. a write just before the removal ----------------------------------------


def held_at_the_rename_aside(
    scratch, home, log_text: str
) -> tuple[Path, subprocess.Popen]:
    """abc's job log, holding ``log_text``, and a run held still at the
    rename aside, its first ``rename`` (the commit's is a ``renameat2`` that
    the count does not see), with the copy committed and the journal saying
    the removal has begun."""
    log = scratch.abc / "var/log/job.log"
    log.parent.mkdir(parents=True)
    log.write_text(log_text)
    held = run_cli(
        home, "-d", scratch.abc, *RELOCATE, fault=("stop", "1", "rename"), wait=False
    )
    wait_until_stopped(held)
    (entry,) = journal.entries(home / ".conda/migrate")
    assert entry.phase == Phase.REMOVING, "held before the removal began"
    assert (home / ".conda/envs/abc/conda-meta/history").is_file()
    assert (scratch.abc / "conda-meta/history").is_file(), "held after the rename"
    return log, held


def test_write_just_before_the_rename_aside_puts_the_environment_back(scratch, home):
    """The run is held at the rename aside, after every earlier check; a
    line appended then is in the environment the run puts back, and both
    are kept."""
    log, held = held_at_the_rename_aside(scratch, home, "job started\n")
    with log.open("a") as stream:
        stream.write("job result\n")
    os.kill(held.pid, signal.SIGCONT)
    out, err = held.communicate(timeout=120)
    assert held.returncode == 1, out + err
    assert f"{scratch.abc} changed since it was copied" in out
    assert "var/log/job.log: changed" in out
    assert log.read_text() == "job started\njob result\n"
    assert (scratch.abc / "conda-meta/history").is_file()
    assert not any(
        p.name.endswith(".conda-migrate-removing") for p in scratch.envs_dir.iterdir()
    )
    assert (home / ".conda/envs/abc/var/log/job.log").read_text() == "job started\n"


def test_job_starting_just_before_the_rename_aside_keeps_the_environment(scratch, home):
    """A job that opens its log in the instant before the rename aside is
    found on the renamed tree: the environment is put back, and the job's
    result lands in it."""
    log, held = held_at_the_rename_aside(scratch, home, "")
    job = start_job(log, "silent")
    command = command_of(job.pid)
    try:
        os.kill(held.pid, signal.SIGCONT)
        out, err = held.communicate(timeout=120)
    finally:
        end_job(job, "finish")
    assert held.returncode == 1, out + err
    assert f"{command} (pid {job.pid}) has {log} open for writing" in out
    assert log.read_text() == "job result\n"
    assert (scratch.abc / "conda-meta/history").is_file()


def test_prefix_made_anew_while_aside_is_never_replaced(scratch, home):
    """While the environment is renamed aside, the job writes its result
    into it (so the check keeps it) and makes its prefix anew, empty (``mkdir
    $CONDA_PREFIX``): the put-back must not replace that directory (a plain
    rename does, without a word). Both are left as they are, and the run
    says where the old environment is and what to do."""
    log = scratch.abc / "var/log/job.log"
    log.parent.mkdir(parents=True)
    log.write_text("job started\n")
    held = run_cli(
        home,
        *("-d", scratch.abc, *RELOCATE),
        fault=("stop-after", "1", "rename"),
        wait=False,
    )
    wait_until_stopped(held)
    aside = scratch.envs_dir / f".abc{REMOVING_SUFFIX}"
    with (aside / "var/log/job.log").open("a") as stream:
        stream.write("job result\n")
    scratch.abc.mkdir()
    made = scratch.abc.stat().st_ino
    os.kill(held.pid, signal.SIGCONT)
    out, err = held.communicate(timeout=120)
    assert scratch.abc.stat().st_ino == made, "the job's directory was replaced"
    assert os.listdir(scratch.abc) == []
    assert held.returncode == 1, out + err
    assert f"{scratch.abc} changed since it was copied" in out
    assert f"could not be put back at {scratch.abc}" in out
    assert f"it is at {aside}" in out
    assert (aside / "var/log/job.log").read_text() == "job started\njob result\n"
    assert (home / ".conda/envs/abc/var/log/job.log").read_text() == "job started\n"


# -- 4. a mount inside the environment -----------------------------------------


def mounts_below(root: Path) -> list[str]:
    """Mount points below ``root`` as the kernel lists them, deepest first."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(f"{os.path.realpath(root)}/"):
            points.append(point)
    return sorted(points, key=len, reverse=True)


@pytest.fixture
def mount(tmp_path):
    """``mount ARGS POINT`` as root; skipped where mounting is not allowed.
    Whatever is still mounted below the test's directory is unmounted at
    teardown, wherever a run may have moved it."""

    def _mount(*args: str | Path) -> None:
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("mounting needs root and mount(8)")
        run = subprocess.run(["mount", *map(str, args)], capture_output=True, text=True)
        if run.returncode:
            pytest.skip(f"cannot mount here: {run.stderr.strip()}")

    yield _mount
    for point in mounts_below(tmp_path):
        if subprocess.run(["umount", point]).returncode:
            subprocess.run(["umount", "-l", point], check=True)


def mount_project(kind: str, mount, home: Path, point: Path) -> Path:
    """The user's ``~/project`` bind-mounted at ``point`` (same filesystem:
    the device numbers are the same), or a tmpfs there (another filesystem);
    returns the paper in it."""
    point.mkdir(parents=True)
    if kind == "bind":
        project = home / "project"
        project.mkdir()
        mount("--bind", project, point)
    else:
        mount("-t", "tmpfs", "-o", "size=1m", "cm-test", point)
    paper = point / "paper.tex"
    paper.write_text("\\section{Results}\n")
    return paper


@pytest.mark.parametrize("kind", ["bind", "tmpfs"])
def test_environment_with_a_mount_inside_is_refused_naming_it(
    scratch, home, migrate, mount, kind
):
    point = scratch.abc / "share/project"
    paper = mount_project(kind, mount, home, point)
    before = tree_snapshot(scratch.abc)
    out, err, code = migrate("-d", scratch.envs_dir, *RELOCATE)
    assert code == 1, out + err
    assert "Migration of abc failed" in out
    assert f"{point} (a mount point)" in out
    assert "Nothing was copied and the environment is untouched" in out
    assert paper.read_text() == "\\section{Results}\n"
    assert tree_snapshot(scratch.abc) == before
    assert not (home / ".conda/envs/abc").exists()
    assert not scratch.amd.exists(), "the other environment migrates"
    assert mounts_below(scratch.abc) == [str(point)]


def mount_as_the_environment(kind: str, mount, env: Path) -> None:
    """The environment's directory made a mount point: its files moved to a
    volume out of the scanned directory and that bind-mounted back (as a site mounts a group's
    volume), or copied onto a tmpfs mounted there (another filesystem)."""
    volume = env.parent.parent / "volumes" / env.name
    volume.parent.mkdir()
    env.rename(volume)
    env.mkdir()
    if kind == "bind":
        mount("--bind", volume, env)
    else:
        mount("-t", "tmpfs", "-o", "size=64m", "cm-test", env)
        shutil.copytree(volume, env, symlinks=True, dirs_exist_ok=True)


@pytest.mark.parametrize("kind", ["bind", "tmpfs"])
def test_environment_that_is_a_mount_point_is_refused_before_the_copy(
    scratch, home, migrate, mount, kind
):
    """A mounted directory cannot be renamed aside or removed (EBUSY): the
    run used to copy it whole into the home, register the copy, and only
    then fail at the removal with a bare "Device or resource busy", telling
    the user to remove by hand what is another volume's."""
    mount_as_the_environment(kind, mount, scratch.abc)
    before = tree_snapshot(scratch.abc)
    for dry in ((), ("--dry-run",)):
        out, err, code = migrate("-d", scratch.envs_dir, *RELOCATE, *dry)
        assert code == 1, out + err
        assert "Migration of abc failed" in out
        assert f"{scratch.abc} is itself a mount point" in out
        assert "Nothing was copied and the environment is untouched" in out
        assert "--keep-old copies it and leaves it mounted" in out
        assert not (home / ".conda/envs/abc").exists()
        assert tree_snapshot(scratch.abc) == before
    assert not scratch.amd.exists(), "the other environment migrates"
    assert mounts_below(scratch.abc.parent) == [str(scratch.abc)]
    out, err, code = migrate("-d", scratch.envs_dir, *RELOCATE, "--keep-old")
    assert code == 0, out + err
    assert (home / ".conda/envs/abc/conda-meta/history").is_file()
    assert tree_snapshot(scratch.abc) == before


@pytest.mark.parametrize("kind", ["bind", "tmpfs"])
def test_mount_made_just_before_the_rename_aside_keeps_its_files(
    scratch, home, mount, kind
):
    """A directory mounted inside the environment after the preflight found
    none, in the instant before the rename aside: the removal finds it on
    the renamed tree, never enters it, and puts the environment back."""
    log, held = held_at_the_rename_aside(scratch, home, "")
    point = scratch.abc / "share/project"
    try:
        paper = mount_project(kind, mount, home, point)
    finally:
        os.kill(held.pid, signal.SIGCONT)
        out, err = held.communicate(timeout=120)
    assert held.returncode == 1, out + err
    assert f"{point} is a mount point inside {scratch.abc}" in out
    assert paper.read_text() == "\\section{Results}\n"
    assert mounts_below(scratch.abc) == [str(point)]
    assert (scratch.abc / "conda-meta/history").is_file()
    assert (home / ".conda/envs/abc/conda-meta/history").is_file()
    assert not (home / ".conda/envs/abc/share/project").exists()


def test_job_writing_through_another_mount_of_the_environment_keeps_it(
    scratch, home, migrate, mount, tmp_path
):
    """A job sees the environment where a container or a site bind-mounts
    it (``apptainer --bind $SCRATCH/conda-envs/abc:/opt/env``): ``/proc``
    names its log by that path, not by the environment's. Found by device
    and inode all the same; the run used to remove the environment under
    it, and the job's result went to a deleted file."""
    alias = tmp_path / "opt-env"
    alias.mkdir()
    mount("--bind", scratch.abc, alias)
    log = alias / "var/log/job.log"
    job = start_job(log)
    command = command_of(job.pid)
    try:
        planned, err, code = migrate("-d", scratch.abc, *RELOCATE, "--dry-run")
        assert code == 1, planned + err
        assert f"but keep {scratch.abc}: {command} (pid {job.pid}) has {log}" in planned
        out, err, code = migrate("-d", scratch.abc, *RELOCATE)
    finally:
        end_job(job, "finish")
    assert code == 1, out + err
    assert f"{command} (pid {job.pid}) has {log} open for writing" in out, out
    assert (scratch.abc / "var/log/job.log").read_text() == "job started\njob result\n"
    assert (home / ".conda/envs/abc/conda-meta/history").is_file()


# -- 3. a copy replaced between two runs -----------------------------------------


@pytest.mark.parametrize(
    "stopped", ["before the removal", "midway through the removal"]
)
def test_copy_replaced_before_the_rerun_keeps_the_source(
    scratch, home, make_env, stopped
):
    """Run 1 is killed at the rename aside (or inside the deletion, its
    second ``rmdir``), its journal at ``removing``; the user empties the copy's
    directory (same device and inode) and makes another environment in it.
    The rerun must not take it for the verified copy: the source, with the
    user's own file, stays, and the run says why."""
    notes = scratch.abc / "share/notes.txt"
    notes.write_text("my own notes\n")
    fault = (
        "kill",
        *(("1", "rename") if stopped == "before the removal" else ("2", "rmdir")),
    )
    code, out, err = run_cli(home, "-d", scratch.abc, *RELOCATE, fault=fault)
    assert code == -signal.SIGKILL, out + err
    (entry,) = journal.entries(home / ".conda/migrate")
    assert entry.phase == Phase.REMOVING
    aside = scratch.envs_dir / ".abc.conda-migrate-removing"
    left = scratch.abc if stopped == "before the removal" else aside
    assert left.is_dir()
    before = tree_snapshot(left)

    dest = home / ".conda/envs/abc"
    inode = dest.stat().st_ino
    for child in dest.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    make_env(dest, ["demo-text"])
    assert dest.stat().st_ino == inode
    theirs = tree_snapshot(dest)

    code, out, err = run_cli(home, "-d", scratch.envs_dir, *RELOCATE)
    assert code == 1, out + err
    assert f"{dest} is no longer the copy it verified" in out, out
    assert f"{scratch.abc} was left as it is" in out
    assert tree_snapshot(left) == before
    if stopped == "before the removal":
        assert notes.read_text() == "my own notes\n"
    else:
        assert f"What is left of {scratch.abc} is at {aside}" in out
    assert tree_snapshot(dest) == theirs
    assert journal.entries(home / ".conda/migrate") == []


def test_ordinary_users_job_keeps_its_environment(unprivileged, make_env):
    """As on a cluster: the user's own job (a shell appending to its log),
    the run as that user; only the user's processes are visible to it."""
    base, run = unprivileged
    home = user_home(base)
    envs = base / "scratch"
    env = make_env(envs / "abc", ["demo-text"])
    log = env / "var/log/job.log"
    log.parent.mkdir(parents=True)
    log.write_text("")
    chown_tree(envs, USER)
    job = subprocess.Popen(
        ["sh", "-c", 'exec 3>>"$1"; echo ready; read x; echo result >&3', "job", log],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        user=USER,
        group=USER,
    )
    try:
        assert job.stdout is not None and job.stdout.readline() == "ready\n"
        out, code = run(home, "-d", envs, *RELOCATE)
    finally:
        job.communicate("\n", timeout=30)
    assert code == 1, out
    assert f"sh (pid {job.pid}) has {log} open for writing" in out
    assert log.read_text() == "result\n"
    out, code = run(home, "-d", envs, *RELOCATE)
    assert code == 1, out
    assert "var/log/job.log: changed" in out
    assert log.read_text() == "result\n"
