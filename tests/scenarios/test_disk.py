"""A destination that is too small, fills up during the copy, runs out of
inodes, or cannot be written: the environment is never lost, nothing is left
behind in the destination, and the message says what happened.

Each test mounts its own tmpfs (root only) as the destination, with conda's
clone or without it: ``--method relocate`` runs in both.
"""

from __future__ import annotations

import os
import re
import subprocess
from typing import TYPE_CHECKING

import pytest

from conda_migrate_plugin.preflight import MARGIN_BYTES, MARGIN_FRACTION, MARGIN_INODES
from conda_migrate_plugin.progress import size
from conda_migrate_plugin.snapshot import measure
from tests.support.markers import requires_conda
from tests.support.runs import child_env, faultpoint, registered
from tests.support.trees import tree_snapshot

if TYPE_CHECKING:
    from pathlib import Path

METHOD = ("--all", "--method", "relocate", "--no-clean")


def mine(point: Path) -> Path:
    """A file of the user's already in the destination."""
    path = point / "mine.txt"
    path.write_text("already here\n")
    return path


def crowd(prefix: Path) -> None:
    """Files no package owns, in one directory: the copy works through a
    directory's files in order, so the Nth file copied leaves most of them
    still to be made, whatever the other threads have done."""
    many = prefix / "share/many"
    many.mkdir(parents=True)
    for index in range(120):
        (many / f"f{index:03}.txt").write_text(f"file {index}\n" * 50)


def left_in(point: Path) -> list[str]:
    """What the run left in the tmpfs, besides faultpoint's filler files."""
    return sorted(
        str(p.relative_to(point))
        for p in point.rglob("*")
        if not p.name.startswith(".filler-")
    )


def run_struck(home: Path, action: str, nth: int, *args) -> tuple[int, str]:
    """Run the command in a child, struck at its ``nth`` ``utime``: the
    copy sets each entry's stamps once the entry is written."""
    run = subprocess.run(
        faultpoint(action, str(nth), "utime", args=args),
        env=child_env(home),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return run.returncode, run.stdout + run.stderr


def test_too_small_destination_is_refused_with_both_numbers(
    scratch, home, migrate, tmpfs
):
    point = tmpfs("size=1m")
    mine(point)
    before = tree_snapshot(scratch.abc)
    dest = point / "envs"
    out, err, code = migrate("-d", scratch.abc, "--dest", dest, *METHOD)
    assert code == 1, out + err
    vfs = os.statvfs(point)
    allocated = measure(scratch.abc).allocated(vfs.f_frsize)
    need = int(allocated * (1 + MARGIN_FRACTION)) + MARGIN_BYTES
    free = vfs.f_bavail * vfs.f_frsize
    assert (
        f"Not enough space in {dest}: the environment needs {size(need)} "
        f"(with margin), {size(free)} are free." in out
    ), out
    assert "Nothing was copied and the environment is untouched" in out
    assert tree_snapshot(scratch.abc) == before
    assert left_in(point) == ["mine.txt"]
    assert not (home / ".conda/yaml/abc.yml").exists()
    assert str(dest / "abc") not in registered(home)


def test_too_few_inodes_are_refused_with_both_numbers(scratch, home, migrate, tmpfs):
    point = tmpfs("size=100m", "nr_inodes=200")
    mine(point)
    before = tree_snapshot(scratch.abc)
    dest = point / "envs"
    out, err, code = migrate("-d", scratch.abc, "--dest", dest, *METHOD)
    assert code == 1, out + err
    need = measure(scratch.abc).inodes + MARGIN_INODES
    free = os.statvfs(point).f_favail
    assert (
        f"Not enough inodes in {dest}: the environment needs {need} "
        f"files and directories (with margin), {free} are free." in out
    )
    assert tree_snapshot(scratch.abc) == before
    assert left_in(point) == ["mine.txt"]


def assert_struck_copy_fails_untouched(
    scratch, home, point: Path, fault: str, nth_file: int
) -> Path:
    """abc copied into ``point`` and struck by ``fault`` at its ``nth_file``:
    the run fails, abc is as it was, nothing is left in ``point``; returns
    the destination used."""
    mine(point)
    before = tree_snapshot(scratch.abc)
    dest = point / "envs"
    code, out = run_struck(
        home, f"{fault}:{point}", nth_file, "-d", scratch.abc, "--dest", dest, *METHOD
    )
    assert code == 1, out
    assert "Migration of abc failed" in out, out
    assert "No space left on device" in out, out
    assert tree_snapshot(scratch.abc) == before
    assert left_in(point) == ["envs", "mine.txt"], "no copy, no staging"
    assert str(dest / "abc") not in registered(home)
    return dest
    assert "failed: 1" in out


@pytest.mark.parametrize("nth_file", [1, 8, 20])
def test_disk_filling_up_mid_copy_keeps_the_environment(
    scratch, home, migrate, tmpfs, nth_file
):
    """Big enough for the preflight, filled by another job meanwhile."""
    crowd(scratch.abc)
    size = measure(scratch.abc).allocated(os.sysconf("SC_PAGE_SIZE"))
    need = int(size * (1 + MARGIN_FRACTION)) + MARGIN_BYTES
    point = tmpfs(f"size={need + 2**20}")
    dest = assert_struck_copy_fails_untouched(scratch, home, point, "fill", nth_file)

    for filler in point.glob(".filler-*"):
        filler.unlink()
    out, err, code = migrate("-d", scratch.abc, "--dest", dest, *METHOD)
    assert code == 0, out + err
    assert not scratch.abc.exists()
    assert (dest / "abc/conda-meta/history").is_file()


def test_a_full_destination_says_so_and_stops_the_run(scratch, home, tmpfs):
    """Filled while the first environment is copied, with no quota tool to
    ask: the message says what filled and how far the copy got, and the
    next environment is not copied into it only to be removed again."""
    crowd(scratch.abc)
    for index in range(400):  # past one batch of the copy, so some are done
        (scratch.abc / "share/many" / f"g{index:03}.txt").write_text("g\n")
    size = measure(scratch.abc).allocated(os.sysconf("SC_PAGE_SIZE"))
    need = int(size * (1 + MARGIN_FRACTION)) + MARGIN_BYTES
    point = tmpfs(f"size={need + 2**20}")
    mine(point)
    abc, amd = tree_snapshot(scratch.abc), tree_snapshot(scratch.amd)
    dest = point / "envs"
    code, out = run_struck(
        home, f"fill:{point}", 300, "-d", scratch.envs_dir, "--dest", dest, *METHOD
    )
    assert code == 1, out
    match = re.search(
        rf"Migration of abc failed: The filesystem of {dest} filled up \(No space "
        r"left on device\) while abc was copied: ([\d,]+) of ([\d,]+) files, .* of "
        r".*, were written when it did\.",
        out,
    )
    assert match, out
    written, total = (int(n.replace(",", "")) for n in match.groups())
    assert 0 < written < total
    assert f"The partial copy was removed and {scratch.abc} is untouched" in out
    assert "amd was not tried: " in out and f"{scratch.amd} is untouched" in out
    assert tree_snapshot(scratch.abc) == abc and tree_snapshot(scratch.amd) == amd
    assert left_in(point) == ["envs", "mine.txt"]


@pytest.mark.parametrize("nth_file", [1, 8, 20])
def test_inodes_running_out_mid_copy_keeps_the_environment(
    scratch, home, migrate, tmpfs, nth_file
):
    """Just enough inodes for the preflight: the environment's, the margin,
    and the few the run itself makes (destination, staging directories)."""
    crowd(scratch.abc)
    inodes = measure(scratch.abc).inodes + MARGIN_INODES + 8
    point = tmpfs("size=200m", f"nr_inodes={inodes}")
    assert_struck_copy_fails_untouched(scratch, home, point, "inodes", nth_file)


@pytest.mark.parametrize("below", [".", "envs"])
def test_read_only_destination_fails_before_anything_is_copied(
    scratch, home, migrate, tmpfs, below
):
    """Root ignores a directory's mode, not a read-only mount."""
    point = tmpfs("size=16m", "ro")
    dest = point / below
    before = tree_snapshot(scratch.envs_dir)
    out, err, code = migrate("-d", scratch.envs_dir, "--dest", dest, *METHOD)
    assert code == 1, out + err
    for name in ("abc", "amd"):
        assert (
            f"Migration of {name} failed: The destination {dest} cannot be written ({point} is not writable)."
            in out
        )
    assert "Nothing was copied and the environment is untouched" in out
    assert tree_snapshot(scratch.envs_dir) == before
    assert not (home / ".conda/yaml").exists()
    assert registered(home) == []
    assert "failed: 2" in out


@pytest.mark.parametrize(
    "method", ["relocate", pytest.param("clone", marks=requires_conda)]
)
def test_disk_filling_as_the_copy_begins_leaves_no_stray_directory(
    scratch, tmpfs, method
):
    """``$HOME`` (journal and destination) fills at each directory the run
    makes, in turn, up to the staging directory and just past it: every run
    fails, keeps the environment, and leaves nothing in the destination
    that no journal knows of."""
    size = measure(scratch.abc).allocated(os.sysconf("SC_PAGE_SIZE"))
    need = int(size * (1 + MARGIN_FRACTION)) + MARGIN_BYTES
    point = tmpfs(f"size={need + 2**20}")
    home = point / "home"
    home.mkdir()
    dest = home / ".conda/envs"
    before = tree_snapshot(scratch.abc)
    copying = None
    nth = 0
    while copying is None or nth < copying + 3:
        nth += 1
        run = subprocess.run(
            faultpoint(
                f"fill:{point}",
                str(nth),
                "mkdir",
                args=["-d", scratch.abc, "--all", "--method", method, "--no-clean"],
            ),
            env=child_env(home),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
        out = run.stdout + run.stderr
        assert run.returncode in (1, 2), out
        assert "No space left on device" in out, out
        if copying is None and "Packages:" in out:
            copying = nth
        assert tree_snapshot(scratch.abc) == before
        left = sorted(p.name for p in dest.iterdir()) if dest.exists() else []
        assert left == [], f"struck at mkdir {nth}: {left} left behind\n{out}"
        journal = home / ".conda/migrate/journal"
        assert not journal.exists() or not any(journal.iterdir()), nth
        for filler in point.glob(".filler-*"):
            filler.unlink()
