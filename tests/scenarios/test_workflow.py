"""The whole ``conda migrate`` run on real environments, as users drive it.

These run with conda (clone, then the comparison) and without it (relocate,
verified file by file): the messages, files and exit codes are the same.
"""

from __future__ import annotations

import json
import subprocess
import sys

from ruamel.yaml import YAML

from tests.support.markers import HAVE_CONDA
from tests.support.runs import assert_in_order, child_env, registered
from tests.support.trees import tree_snapshot

SEED_MESSAGES = [
    "Valid Env: abc",
    "Valid Env: amd",
    "INVALID ENV: pkgs (a package cache, not an environment)",
    "INVALID ENV: pyt (no conda-meta directory)",
    "Valid Conda environments in '{envs}':",
    "1. abc ({envs}/abc)",
    "2. amd ({envs}/amd)",
    "Selected environments:",
    "abc:{envs}/abc",
    "amd:{envs}/amd",
    "Migrating and comparing environment: abc",
    "Source:      {envs}/abc",
    "Destination: {home}/.conda/envs/abc",
    "Packages: 4",
    "Old and New Environments are same",
    "Remove all packages in environment {envs}/abc:",
    "Successfully migrated and removed old environment: {envs}/abc",
    "Migrating and comparing environment: amd",
    "Successfully migrated and removed old environment: {envs}/amd",
]


def test_all_migrates_the_seed_layout(scratch, home, migrate):
    out, err, code = migrate("-d", scratch.envs_dir, "--all")
    assert code == 0, out + err
    fmt = {"envs": scratch.envs_dir, "home": home}
    assert_in_order(out, [line.format(**fmt) for line in SEED_MESSAGES])
    new_abc = home / ".conda" / "envs" / "abc"
    assert not scratch.abc.exists() and not scratch.amd.exists()
    assert sorted(p.name for p in scratch.envs_dir.iterdir()) == ["pkgs", "pyt"]
    assert (new_abc / "conda-meta" / "history").is_file()
    assert f"root = {new_abc}\n" in (new_abc / "etc/demo/demo.conf").read_text()
    run = subprocess.run([new_abc / "bin/demo-app"], capture_output=True, text=True)
    assert run.stdout == "demo-app works\n"
    exported = YAML(typ="safe").load(home / ".conda" / "yaml" / "abc.yml")
    assert exported["name"] == "abc"
    assert exported["prefix"] == str(scratch.abc)
    assert "demo-app=2.0=py311_0" in exported["dependencies"]
    assert {"pip": ["extra-tool==0.3"]} in exported["dependencies"]
    known = registered(home)
    assert str(new_abc) in known and str(home / ".conda/envs/amd") in known
    assert str(scratch.abc) not in known


def test_answer_2_at_the_prompt_migrates_only_the_second(scratch, home, migrate):
    abc_before = tree_snapshot(scratch.abc)
    out, err, code = migrate("-d", scratch.envs_dir, stdin="2\n")
    assert code == 0, out + err
    assert (
        "Select environments to migrate (comma-separated list, 'All' to migrate all):\n"
        in out
    )
    assert "Selected environments:\namd:" in out
    assert not scratch.amd.exists()
    assert (home / ".conda/envs/amd/conda-meta/history").is_file()
    assert tree_snapshot(scratch.abc) == abc_before
    assert not (home / ".conda/envs/abc").exists()


def test_end_of_input_exits_2_and_changes_nothing(scratch, home, migrate):
    before = tree_snapshot(scratch.root)
    out, err, code = migrate("-d", scratch.envs_dir, stdin="")
    assert code == 2
    assert "--all" in err
    assert tree_snapshot(scratch.root) == before
    assert not (home / ".conda" / "envs").exists()


def test_batch_job_with_stdin_closed_does_not_hang(scratch, home):
    env = child_env(home)
    run = subprocess.run(
        [sys.executable, "-m", "conda_migrate_plugin", "-d", scratch.envs_dir],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert "--all" in run.stderr
    assert scratch.abc.exists() and scratch.amd.exists()


def test_piped_answer_from_a_shell(scratch, home):
    env = child_env(home)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "conda_migrate_plugin",
            "-d",
            scratch.envs_dir,
            "--no-clean",
        ],
        input="abc\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert not scratch.abc.exists() and scratch.amd.exists()
    assert (home / ".conda/envs/abc/conda-meta/history").is_file()


def test_without_d_takes_known_environments_under_scratch(
    scratch, home, make_env, tmp_path, migrate
):
    elsewhere = make_env(tmp_path / "project" / "env", ["demo-text"])
    (home / ".conda").mkdir()
    (home / ".conda" / "environments.txt").write_text(f"{scratch.abc}\n{elsewhere}\n")
    out, err, code = migrate("--all", "--no-clean")
    assert code == 0, out + err
    assert not scratch.abc.exists()
    assert elsewhere.exists()
    assert (
        f"Valid Conda environments in '{scratch.root}':\n1. abc ({scratch.abc})\n"
        in out
    )


def test_without_d_or_scratch_is_a_usage_error(home, migrate, monkeypatch):
    monkeypatch.delenv("SCRATCH", raising=False)
    out, err, code = migrate("--all")
    assert code == 2
    assert "$SCRATCH is not set" in err and "-d" in err


def test_existing_destination_is_skipped_not_overwritten(scratch, home, migrate):
    taken = home / ".conda" / "envs" / "abc"
    taken.mkdir(parents=True)
    (taken / "mine.txt").write_text("keep me")
    abc_before = tree_snapshot(scratch.abc)
    out, err, code = migrate("-d", scratch.envs_dir, "--all", "--no-clean")
    assert code == 1
    assert (
        f"{taken} already exists and is not a copy of {scratch.abc} (a name "
        "collision): it is not a conda environment. Neither was touched" in out
    )
    assert (taken / "mine.txt").read_text() == "keep me"
    assert sorted(p.name for p in taken.iterdir()) == ["mine.txt"]
    assert tree_snapshot(scratch.abc) == abc_before
    assert not scratch.amd.exists(), "the next environment still migrates"


def test_dry_run_prints_the_plan_and_changes_nothing(scratch, home, migrate):
    before = tree_snapshot(scratch.root)
    out, err, code = migrate("-d", scratch.envs_dir, "--all", "--dry-run")
    assert code == 0, out + err
    assert "Packages: 4\n" in out and "Size: " in out
    assert f"Would write {home}/.conda/yaml/abc.yml" in out
    assert tree_snapshot(scratch.root) == before
    assert not (home / ".conda" / "yaml").exists()
    assert not (home / ".conda" / "envs").exists()


def test_json_is_one_document(scratch, home, migrate):
    out, err, code = migrate("-d", scratch.envs_dir, "--all", "--json", "--no-clean")
    assert code == 0, err
    document = json.loads(out)
    assert document["success"] is True
    by_name = {e["name"]: e for e in document["environments"]}
    assert by_name["abc"]["status"] == "migrated"
    assert by_name["abc"]["dest"] == str(home / ".conda/envs/abc")
    assert by_name["abc"]["yaml"] == str(home / ".conda/yaml/abc.yml")


def test_json_without_all_is_a_usage_error(scratch, migrate):
    out, err, code = migrate("-d", scratch.envs_dir, "--json")
    assert code == 2 and "--all" in out + err
    assert scratch.abc.exists()


def test_keep_old_copies_and_keeps(scratch, home, migrate):
    before = tree_snapshot(scratch.abc)
    out, err, code = migrate("-d", scratch.abc, "--all", "--keep-old", "--no-clean")
    assert code == 0, out + err
    assert tree_snapshot(scratch.abc) == before
    assert (home / ".conda/envs/abc/conda-meta/history").is_file()


def test_broken_environment_fails_alone_and_is_untouched(scratch, home, migrate):
    record = scratch.amd / "conda-meta" / "demo-text-1.0-0.json"
    record.write_text(record.read_text()[:100])
    amd_before = tree_snapshot(scratch.amd)
    out, err, code = migrate("-d", scratch.envs_dir, "--all", "--no-clean")
    assert code == 1
    assert "Migration of amd failed" in out
    assert tree_snapshot(scratch.amd) == amd_before
    assert not (home / ".conda/envs/amd").exists()
    assert not scratch.abc.exists(), "abc still migrated"
    assert "failed: 1" in out and "migrated: 1" in out


def test_copy_that_cannot_be_made_keeps_the_old_environment(
    scratch, home, migrate, tmp_path
):
    """A destination longer than the binary placeholder: relocation cannot
    fit it, and without conda nothing else can move the environment."""
    far = tmp_path.joinpath(*["d" * 60] * 5)
    before = tree_snapshot(scratch.abc)
    out, err, code = migrate(
        "-d", scratch.abc, "--all", "--dest", far, "--method", "relocate", "--no-clean"
    )
    assert code == 1, out + err
    assert "lib/libdemo.so" in out, out
    assert tree_snapshot(scratch.abc) == before
    assert not (far / "abc").exists()
    assert not (far / ".conda-migrate-staging" / "abc").exists()
    assert str(far / "abc") not in registered(home)


def test_clone_method_needs_conda(scratch, migrate):
    if HAVE_CONDA:
        return
    out, err, code = migrate("-d", scratch.abc, "--all", "--method", "clone")
    assert code == 2 and "--method relocate" in err


def test_shell_and_conda_config_follow_the_environments(scratch, home, migrate):
    """The site's old advice (``echo "export CONDA_ENVS_PATH=..." >>
    ~/.bashrc``) and a condarc naming scratch end up pointing at $HOME."""
    envs, dest = scratch.envs_dir, home / ".conda" / "envs"
    bashrc = home / ".bashrc"
    bashrc.write_text(
        "# .bashrc\n"
        f"export CONDA_ENVS_PATH={envs}\n"
        f"conda activate {envs}/abc\n"
        f"export DATA={scratch.root}/data  # not an environment\n"
    )
    condarc = home / ".condarc"
    condarc.write_text(
        f"# site settings\nenvs_dirs:\n  - {envs}  # old place\n"
        f"pkgs_dirs:\n  - {envs}/pkgs\nchannels:\n  - defaults\n"
    )
    out, err, code = migrate("-d", envs, "--all", "--no-clean")
    assert code == 0, out + err
    assert bashrc.read_text() == (
        "# .bashrc\n"
        f"export CONDA_ENVS_PATH={dest}\n"
        f"conda activate {dest}/abc\n"
        f"export DATA={scratch.root}/data  # not an environment\n"
    )
    assert condarc.read_text() == (
        f"# site settings\nenvs_dirs:\n  - {dest}  # old place\n"
        f"pkgs_dirs:\n  - {home}/.conda/pkgs\nchannels:\n  - defaults\n"
    )
    assert f"\n-conda activate {envs}/abc\n" in out
    assert f"\n+conda activate {dest}/abc\n" in out
    backups = sorted(p.name for p in home.glob(".bashrc.conda-migrate-*"))
    assert len(backups) == 1


def test_no_rc_leaves_the_files_alone(scratch, home, migrate):
    bashrc = home / ".bashrc"
    bashrc.write_text(f"conda activate {scratch.abc}\n")
    out, err, code = migrate("-d", scratch.envs_dir, "--all", "--no-clean", "--no-rc")
    assert code == 0, out + err
    assert bashrc.read_text() == f"conda activate {scratch.abc}\n"
    assert not list(home.glob(".bashrc.conda-migrate-*"))


def test_failed_environment_keeps_its_references(scratch, home, migrate):
    """amd stays in scratch, so its directory stays on CONDA_ENVS_PATH."""
    (home / ".conda" / "envs" / "amd").mkdir(parents=True)
    bashrc = home / ".bashrc"
    bashrc.write_text(
        f"export CONDA_ENVS_PATH={scratch.envs_dir}\n"
        f"conda activate {scratch.amd}\nconda activate {scratch.abc}\n"
    )
    out, err, code = migrate("-d", scratch.envs_dir, "--all", "--no-clean")
    assert code == 1
    assert bashrc.read_text() == (
        f"export CONDA_ENVS_PATH={scratch.envs_dir}\n"
        f"conda activate {scratch.amd}\nconda activate {home}/.conda/envs/abc\n"
    )


def test_quiet_shows_only_failures_and_the_summary(scratch, home, migrate):
    (scratch.amd / "conda-meta" / "demo-text-1.0-0.json").write_text("{")
    out, err, code = migrate("-d", scratch.envs_dir, "--all", "--no-clean", "-q")
    assert code == 1
    assert "Valid Env" not in out and "Old and New" not in out
    assert "\nMigration of amd failed: " in "\n" + out
    assert "Summary:\n  migrated: 1\n" in out
    assert "  failed: 1\n" in out
    failed = out.split("  failed: 1\n")[1]
    assert failed.startswith(f"    amd: {scratch.amd} -> ")
    reason = failed.splitlines()[1]
    assert reason.startswith("      ") and str(scratch.amd) in reason


def test_the_listing_says_why_a_directory_is_not_an_environment(scratch, migrate):
    out, err, code = migrate("-d", scratch.envs_dir, "--all", "--dry-run")
    assert code == 0
    assert "INVALID ENV: pkgs (a package cache, not an environment)\n" in out
    assert "INVALID ENV: pyt (no conda-meta directory)\n" in out


def test_jobs_must_be_positive(scratch, migrate):
    out, err, code = migrate("-d", scratch.envs_dir, "--all", "--jobs", "0")
    assert code == 2
    assert "--jobs must be at least 1" in out + err
    assert scratch.abc.exists()


def test_yes_answers_the_prompt_with_all(scratch, home, migrate):
    out, err, code = migrate("-d", scratch.envs_dir, "-y", "--no-clean")
    assert code == 0, out + err
    assert "Select environments" not in out
    assert not scratch.abc.exists() and not scratch.amd.exists()


def test_clean_runs_last_and_says_what_it_did(scratch, home, migrate):
    out, err, code = migrate("-d", scratch.amd, "--all")
    assert code == 0, out + err
    last = out.split("Successfully migrated and removed old environment")[1]
    if HAVE_CONDA:
        assert "from conda's caches.\n" in last
    else:
        assert "conda's clean was skipped.\n" in last


def test_rc_lines_in_shell_spellings_follow_and_the_rest_are_warned_of(
    scratch, home, migrate, monkeypatch
):
    """What the shell expands to the old prefix is rewritten as written
    (``$USER`` inside the path, a quoted ``"$SCRATCH"``); a line naming it
    through a variable this run cannot know is named, with its line."""
    # $SCRATCH is /.../scratch here: /.../$USER with USER=scratch names it.
    monkeypatch.setenv("USER", scratch.root.name)
    user_scratch = scratch.root.parent / "$USER"
    bashrc = home / ".bashrc"
    bashrc.write_text(
        "# .bashrc\n"
        f"export MY_ENV={user_scratch}/conda-envs/abc\n"
        'conda activate "$SCRATCH"/conda-envs/abc\n'
        "conda activate $MODULE_SCRATCH/conda-envs/abc\n"
    )
    out, err, code = migrate("-d", scratch.envs_dir, "--all", "--no-clean")
    assert code == 0, out + err
    assert bashrc.read_text() == (
        "# .bashrc\n"
        "export MY_ENV=$HOME/.conda/envs/abc\n"
        'conda activate "$HOME"/.conda/envs/abc\n'
        "conda activate $MODULE_SCRATCH/conda-envs/abc\n"
    )
    assert (
        f"warning: {bashrc}: line 4 still names {scratch.abc} in a form this run "
        "does not rewrite: conda activate $MODULE_SCRATCH/conda-envs/abc\n" in out
    )
