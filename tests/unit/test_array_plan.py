"""The job array's share-out, its flags, and the plan a dry run shows,
without Slurm (``test_slurm.py`` runs the array on a real one)."""

from __future__ import annotations

import shlex

import pytest

from conda_migrate_plugin.array_plan import parse_tasks, share_out, weight
from conda_migrate_plugin.exceptions import UsageError
from tests.support.runs import ROOT

README = ROOT / "README.md"


def test_shares_are_balanced_by_files_not_by_count():
    weights = {"big": 1000, **{f"small{i}": 10 for i in range(5)}}
    assert share_out(weights, 2) == [["big"], [f"small{i}" for i in range(5)]]


def test_every_environment_goes_to_exactly_one_share_none_empty():
    weights = {f"env{i}": w for i, w in enumerate([100, 90, 10, 5, 5, 3, 70])}
    shares = share_out(weights, 3)
    assert sorted(k for share in shares for k in share) == sorted(weights)
    loads = [sum(weights[k] for k in share) for share in shares]
    assert max(loads) - min(loads) <= max(weights.values()) // 3
    assert share_out({"a": 1, "b": 2}, 5) == [["b"], ["a"]]


@pytest.mark.parametrize(
    ("value", "parsed"), [("6", (6, None)), ("6%3", (6, 3)), ("1", (1, None))]
)
def test_tasks_takes_n_or_n_percent_m(value, parsed):
    assert parse_tasks(value) == parsed


@pytest.mark.parametrize("value", ["0", "x", "3%0", "3%", "-2", "2%x"])
def test_tasks_refuses_anything_else(value):
    with pytest.raises(UsageError, match="--tasks takes N or N%M"):
        parse_tasks(value)


def test_weight_is_the_files_the_records_list(scratch):
    import json

    listed = sum(
        len(json.loads(path.read_text())["files"])
        for path in (scratch.abc / "conda-meta").glob("*.json")
    )
    assert weight(scratch.abc) == 1 + listed > 1


def test_dry_run_shows_the_shares_and_submits_nothing(scratch, home, migrate):
    out, err, code = migrate(
        *("-d", scratch.envs_dir, "--all", "--dry-run", "--tasks", "2%1"),
        *("--submit", "-t", "5"),
    )
    assert code == 0, out + err
    assert "Would submit a job array of 2 tasks: sbatch " in out
    assert "--array=0-1%1" in out
    assert {"abc", "amd"} == {
        line.split(": ")[1] for line in out.splitlines() if "  task " in line
    }
    assert not (home / ".conda" / "migrate").exists()


def test_nothing_left_submits_nothing_and_names_the_run_that_cleans(
    scratch, home, migrate
):
    """Submitted again once everything moved (a stop in the last job's
    clean, or a habit): no array of nothing, no "No valid conda
    environments" for a directory this tool emptied; exit 0."""
    args = ("-d", scratch.envs_dir, "--all", "--method", "relocate", "--no-clean")
    out, err, code = migrate(*args)
    assert code == 0, out + err
    out, err, code = migrate(*args, "--tasks", "2", "--submit", "-t", "5")
    assert code == 0, out + err
    assert out == (
        f"Nothing left to migrate in '{scratch.envs_dir}': conda-migrate already "
        "moved its environments. Nothing was submitted.\n"
    )
    out, err, code = migrate(*args[:-1], "--tasks", "2", "--submit", "-t", "5")
    assert code == 0, out + err
    assert out.endswith(
        ". conda's clean, if a stopped job left it unfinished, is run by: "
        f"conda-migrate {shlex.join(map(str, args[:-1]))}\n"
    ), out


def test_tasks_without_submit_and_an_own_array_are_refused(scratch, migrate):
    out, err, code = migrate("-d", scratch.envs_dir, "--all", "--tasks", "2")
    assert code == 2 and "add --submit" in out + err
    out, err, code = migrate(
        *("-d", scratch.envs_dir, "--all", "--tasks", "2", "--submit", "--array=0-3")
    )
    assert code == 2 and "--tasks makes the job array itself" in out + err


def test_readmes_array_recipe_plans_the_array(scratch, migrate):
    """README's line, on this scratch, shown by --dry-run."""
    (line,) = (
        line
        for line in README.read_text().splitlines()
        if line.startswith("conda migrate ") and "--tasks" in line
    )
    words = shlex.split(line)[2:]
    words[words.index("-d") + 1] = str(scratch.envs_dir)
    at = words.index("--submit")
    out, err, code = migrate(*words[:at], "--dry-run", *words[at:])
    assert code == 0, out + err
    assert "Would submit a job array of 2 tasks: sbatch " in out
    assert "--array=0-1%4" in out and "-c 4 -t 12:00:00" in out
