"""conda's conventions: -n/-p, the words and numbers a run prints, the
prompt under -q, --submit's options, a closed pipe, --json's log."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from tests.support.runs import child_env, console_script, run_on_terminal

RUN = ("--all", "--no-clean")


def test_n_selects_an_environment_by_name(scratch, home, migrate, monkeypatch):
    """conda knows abc by name (its directory is an envs_dirs entry)."""
    monkeypatch.setenv("CONDA_ENVS_PATH", str(scratch.envs_dir))
    out, err, code = migrate("-n", "abc", *RUN)
    assert code == 0, out + err
    assert "migrated: 1" in out
    assert (home / ".conda/envs/abc/conda-meta/history").is_file()
    assert not scratch.abc.exists()
    assert scratch.amd.exists()


def test_n_with_a_name_conda_does_not_know(scratch, home, migrate, monkeypatch):
    monkeypatch.setenv("CONDA_ENVS_PATH", str(scratch.envs_dir))
    out, err, code = migrate("-n", "nope", *RUN)
    assert code == 1, out + err
    assert "No environment named nope" in out + err
    assert not (home / ".conda" / "envs").exists()


def test_p_selects_one_environment_by_prefix(scratch, home, migrate):
    out, err, code = migrate("-p", scratch.amd, *RUN)
    assert code == 0, out + err
    assert "migrated: 1" in out
    assert not scratch.amd.exists() and scratch.abc.exists()


def test_p_refuses_what_is_not_an_environment(scratch, home, migrate):
    out, err, code = migrate("-p", scratch.envs_dir, *RUN)
    assert code == 1, out + err
    assert "is not a conda environment" in out + err
    assert scratch.abc.exists() and scratch.amd.exists()


def test_d_n_p_exclude_each_other(scratch, migrate):
    out, err, code = migrate("-d", scratch.envs_dir, "-p", scratch.abc, *RUN)
    assert code == 2
    assert "not allowed with" in err


def test_quiet_prompt_on_a_terminal_shows_what_it_asks_about(scratch, home):
    code, shown = run_on_terminal(
        ["-d", scratch.envs_dir, "-q", "--no-clean"],
        b"2\n",
        b"'All' to migrate all):",
    )
    assert code == 0, shown
    before_prompt = shown.split("Select environments to migrate")[0]
    assert f"1. abc ({scratch.abc})" in before_prompt
    assert f"2. amd ({scratch.amd})" in before_prompt
    assert "Valid Env:" not in shown  # -q still leaves out the rest
    assert not scratch.amd.exists() and scratch.abc.exists()


def test_all_after_submit_is_taken_not_given_to_sbatch(scratch, home, migrate):
    out, err, code = migrate(
        "-d", scratch.envs_dir, "--dry-run", "--submit", "-c", "4", "--all"
    )
    assert code == 0, out + err
    sbatch = out.splitlines()[0]
    assert sbatch.startswith("Would submit with: sbatch ")
    assert "--all" not in sbatch and sbatch.endswith("-c 4")
    assert re.search(r"^exec .* --all( |$)", out, re.M), out


def test_our_options_after_submit_are_refused(scratch, home, migrate):
    out, err, code = migrate(
        "-d", scratch.envs_dir, "--all", "--submit", "-c", "4", "--keep-old"
    )
    assert code == 2, out + err
    assert "--keep-old came after --submit" in out + err


def test_sizes_in_human_units_and_counts_in_one_spelling(scratch, home, migrate):
    big = scratch.amd / "share" / "big.bin"
    big.write_bytes(b"\1" * (3 * 1024 * 1024 + 200 * 1024))
    out, err, code = migrate("-d", scratch.envs_dir, "--dry-run", *RUN)
    assert code == 0, out + err
    assert re.search(r"^Size: 3\.2 MB$", out, re.M), out
    assert not re.search(r"\d,\d{3}", out), out
    assert " bytes" not in out


def test_summary_has_totals_in_one_spelling(scratch, home, migrate):
    big = scratch.amd / "share" / "big.bin"
    big.write_bytes(b"\1" * (2 * 1024 * 1024))
    out, err, code = migrate("-d", scratch.envs_dir, *RUN)
    assert code == 0, out + err
    summary = out.split("Summary:")[1]
    assert re.search(r"^  total: written \d+ files, 2\.\d MB;", summary, re.M), summary
    assert not re.search(r"\d,\d{3}", out), out


def test_total_time_leaves_out_the_wait_at_the_prompt(
    scratch, home, migrate, monkeypatch
):
    import time

    from conda_migrate_plugin import workflow

    answered = workflow.prompt_selection

    def slow_answer(*args, **kwargs):
        time.sleep(3)
        return answered(*args, **kwargs)

    monkeypatch.setattr(workflow, "prompt_selection", slow_answer)
    out, err, code = migrate("-d", scratch.envs_dir, "--no-clean", stdin="2\n")
    assert code == 0, out + err
    total = re.search(r"^Total time: (\d+\.\d) s$", out, re.M)
    assert total and float(total.group(1)) < 3, out


@pytest.mark.parametrize("extra", [(), ("--json",)], ids=["text", "json"])
def test_a_closed_pipe_ends_the_output_not_the_run(scratch, home, extra):
    """``conda-migrate ... | head``, with ``head`` gone before the first
    line: the run finishes quietly, as conda's commands do, and the
    environments are moved."""
    read, write = os.pipe()
    os.close(read)
    try:
        run = subprocess.run(
            [*console_script(), "-d", str(scratch.envs_dir), *RUN, *extra],
            env=child_env(home),
            stdin=subprocess.DEVNULL,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
    finally:
        os.close(write)
    assert run.returncode == 0, run.stderr
    assert "BrokenPipe" not in run.stderr, run.stderr
    assert "Exception ignored" not in run.stderr, run.stderr
    assert not scratch.abc.exists() and not scratch.amd.exists()
    (log,) = (home / ".conda" / "migrate" / "logs").glob("conda-migrate-*.log")
    text = log.read_text()
    assert "Summary:" in text and "exit code 0\n" in text, text


def test_json_names_the_log(scratch, home, migrate):
    out, err, code = migrate("-d", scratch.envs_dir, "--json", *RUN)
    assert code == 0, out + err
    document = json.loads(out)
    log = document["log"]
    assert log.startswith(str(home / ".conda" / "migrate" / "logs"))
    assert "exit code 0" in open(log).read()


def test_the_guides_heading_before_a_removal_is_not_empty(scratch, home, migrate):
    out, err, code = migrate("-d", scratch.amd, *RUN)
    assert code == 0, out + err
    heading = f"Remove all packages in environment {scratch.amd}:\n"
    after = out.split(heading)[1].splitlines()[0]
    assert re.fullmatch(r"  \d+ packages, \d+ files, \d+ (B|KB|MB)", after), out


def test_a_jobs_output_has_no_activation_banner_per_environment(scratch, home, migrate):
    """Output that is no terminal (a batch job's file): the summary names
    each new place once; the guide's banner is for the terminal."""
    out, err, code = migrate("-d", scratch.envs_dir, *RUN)
    assert code == 0, out + err
    assert "# To activate this environment, use" not in out
    assert "Old and New Environments are same" in out
    dest = home / ".conda" / "envs"
    assert f"abc: {scratch.abc} -> {dest / 'abc'}" in out


def test_submit_names_the_command_as_typed_and_how_to_follow_it(
    scratch, home, migrate, tmp_path, monkeypatch
):
    fake = tmp_path / "bin"
    fake.mkdir()
    sbatch = fake / "sbatch"
    sbatch.write_text("#!/bin/sh\ncat >/dev/null\necho 4242\n")
    sbatch.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:/usr/bin:/bin")
    out, err, code = migrate("-d", scratch.envs_dir, "--all", "--submit", "-c", "2")
    assert code == 0, out + err
    assert f"Submitted batch job 4242: conda-migrate -d {scratch.envs_dir} --all" in out
    assert "python -m" not in out and "conda_migrate_plugin" not in out
    assert "squeue -j 4242" in out
    output = home / ".conda" / "migrate" / "logs" / "slurm-4242.out"
    assert f"tail -f {output}" in out


def test_clean_says_how_much_it_freed(scratch, home, migrate):
    pytest.importorskip("conda", reason="conda's clean needs conda")
    out, err, code = migrate("-d", scratch.amd, "--all")
    assert code == 0, out + err
    assert re.search(
        r"^Removed \d+ items \(\d+(\.\d+)? (B|KB|MB|GB)\) from conda's caches\.$",
        out,
        re.M,
    ), out


def test_verbose_shows_the_logs_details(scratch, home, migrate):
    out, err, code = migrate("-d", scratch.amd, *RUN, "-v")
    assert code == 0, out + err
    assert f"YAML written: {home / '.conda/yaml/amd.yml'}\n" in out
    out, err, code = migrate("-d", scratch.abc, *RUN)
    assert "YAML written" not in out
