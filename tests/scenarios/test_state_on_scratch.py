"""conda-migrate's own state where the scratch purge reaches it.

``ln -s $SCRATCH/dotconda ~/.conda`` dodges the home quota; with ``--dest``
in the home the run is allowed (the environments do leave scratch), but its
journal, logs and YAML copies, and conda's ``environments.txt``, stay on
scratch. A purge between a killed run and its rerun takes what the rerun
needs to finish; the next one takes every environment's YAML. Refusing
would block a layout chosen on purpose, so the run says so before it does
anything (also under ``--dry-run``, in ``--json``, and when a job is
submitted), naming what lives there and the way out, and that way out is
safe to take even between a killed run and its rerun.

These run with conda and without it (relocation, offline).
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from conda_migrate_plugin.names import REMOVING_SUFFIX
from conda_migrate_plugin.safety import journal
from tests.support.runs import killed_in_the_removal, registered, run_again

RELOCATE = ("--all", "--method", "relocate", "--no-clean")


def linked_conda_dir(scratch, home):
    """``~/.conda`` a symlink to ``$SCRATCH/dotconda``; the link's target."""
    target = scratch.root / "dotconda"
    target.mkdir()
    (home / ".conda").symlink_to(target)
    return target


def said_of(home, target, scratch, *, yaml: bool = True) -> str:
    """The warning's first line, for ``~/.conda`` linked to ``target``."""
    conda = home / ".conda"
    state = f"its journal and logs ({conda}/migrate), which the same command needs"
    kept = [f"{state} to finish a stopped run"]
    if yaml:
        kept.append(
            f"the YAML copies ({conda}/yaml), your way back to each environment"
        )
    kept.append(
        f"conda's environments.txt ({conda}/environments.txt), where conda finds "
        "environments outside its envs_dirs"
    )
    return (
        f"warning: {conda} is a symlink to {target}, under $SCRATCH ({scratch.root}): "
        "the scratch purge would take what conda-migrate keeps there for later: "
        + "; ".join(kept)
        + "."
    )


@pytest.mark.parametrize("mode", ["run", "dry-run", "json"])
def test_state_on_scratch_is_said_before_anything(scratch, home, migrate, mode):
    """The run goes on (the environments do leave scratch), having said
    first what the purge would take and how to keep it."""
    target = linked_conda_dir(scratch, home)
    dest = home / "envs"
    extra = {"run": (), "dry-run": ("--dry-run",), "json": ("--json",)}[mode]
    out, err, code = migrate("-d", scratch.envs_dir, *RELOCATE, "--dest", dest, *extra)
    assert code == 0, out + err
    said = said_of(home, target, scratch)
    hint = (
        f"Make {home}/.conda a directory in your home, holding what it leads to "
        "(if that is a large package cache, conda clean --all first):\n"
        f"  rm {home}/.conda && mv {target} {home}/.conda\n"
        "(a stopped run's journal is found there as before), or pass --yaml-dir "
        "with a directory in your home to keep the YAML copies at least."
    )
    if mode == "json":
        (warning,) = json.loads(out)["warnings"]
        assert warning == f"{said}\n{hint}"
    else:
        assert out.startswith(f"{said}\n{hint}\n"), out
    migrated = mode != "dry-run"
    assert (dest / "abc/conda-meta/history").is_file() == migrated
    assert scratch.abc.exists() != migrated


def test_state_in_the_home_is_said_nothing_of(scratch, home, migrate):
    """Only what is on scratch is named: the YAML copies kept in the home
    leave the journal; a ``~/.conda`` in the home leaves nothing to say."""
    target = linked_conda_dir(scratch, home)
    recipes = home / "recipes"
    args = ("-d", scratch.envs_dir, *RELOCATE, "--dest", home / "envs", "--dry-run")
    out, err, code = migrate(*args, "--yaml-dir", recipes)
    assert code == 0, out + err
    assert out.startswith(said_of(home, target, scratch, yaml=False) + "\n"), out
    (home / ".conda").unlink()
    (home / ".conda").mkdir()
    out, err, code = migrate(*args)
    assert code == 0, out + err
    assert "warning" not in out + err


def test_yaml_copies_under_scratch_are_named(scratch, home, migrate):
    recipes = scratch.root / "recipes"
    out, err, code = migrate(
        "-d", scratch.envs_dir, *RELOCATE, "--yaml-dir", recipes, "--dry-run"
    )
    assert code == 0, out + err
    assert out.startswith(
        f"warning: {recipes} is under $SCRATCH ({scratch.root}): the scratch purge "
        "would take what conda-migrate keeps there for later: the YAML copies "
        f"({recipes}), your way back to each environment.\n"
        "Pass --yaml-dir with a directory in your home to keep the YAML copies "
        "there.\n"
    ), out


def test_a_submitted_job_is_warned_of_before_it_is_queued(scratch, home, migrate):
    target = linked_conda_dir(scratch, home)
    out, err, code = migrate(
        "-d", scratch.envs_dir, "--dest", home / "envs", "--dry-run", "--all",
        "--submit", "-t", "1:00:00",
    )  # fmt: skip
    assert code == 0, out + err
    assert out.startswith(said_of(home, target, scratch) + "\n"), out
    assert "Would submit with: " in out


@pytest.mark.parametrize("then", ["the way out", "the purge"])
def test_killed_in_the_removal_then_the_state_moved_or_purged(scratch, home, then):
    """Killed inside the removal of the old environment. The way out the
    warning gave, taken then, keeps the journal where the rerun finds it:
    it finishes the removal and points ``~/.bashrc`` at the copy. A purge
    of that state instead leaves the rerun nothing that proves the copy
    the run's: the remains are named and kept, and ``~/.bashrc`` still
    names the old place, as the warning said it would."""
    target = linked_conda_dir(scratch, home)
    dest = home / "envs"
    bashrc = home / ".bashrc"
    bashrc.write_text(f"conda activate {scratch.abc}\n")
    args = ["-d", scratch.envs_dir, *RELOCATE, "--dest", dest]
    env = killed_in_the_removal(home, args)
    aside = scratch.envs_dir / f".abc{REMOVING_SUFFIX}"
    assert aside.is_dir()
    if then == "the purge":
        shutil.rmtree(target / "migrate")
    else:
        killed = run_again(["-d", scratch.envs_dir, *RELOCATE, "--dest", dest,
                            "--dry-run"], env)  # fmt: skip
        (way_out,) = (
            line.strip()
            for line in killed.stdout.splitlines()
            if line.startswith("  rm ")
        )
        subprocess.run(["bash", "-c", way_out], check=True)
        assert not (home / ".conda").is_symlink()

    rerun = run_again(args, env)
    out = rerun.stdout
    assert rerun.returncode == 0, out + rerun.stderr
    assert (dest / "abc/conda-meta/history").is_file()
    assert not scratch.abc.exists()
    if then == "the purge":
        assert "which no run will finish" in out
        assert aside.is_dir()
        assert bashrc.read_text() == f"conda activate {scratch.abc}\n"
        return
    assert "warning" not in out
    assert not aside.exists()
    assert bashrc.read_text() == f"conda activate {dest / 'abc'}\n"
    assert journal.entries(home / ".conda/migrate") == []
    assert str(dest / "abc") in registered(home)
