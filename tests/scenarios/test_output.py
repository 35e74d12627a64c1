"""What the user sees of a run besides the seed's messages: the activation
hint, the counts, the phases and their times, progress on a terminal, the
summary's times, the log, and the rc-file plan of a dry run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.support.markers import requires_conda
from tests.support.runs import assert_in_order, console_script, run_on_terminal

RELOCATE = ("--all", "--method", "relocate", "--no-clean")


def files_in(prefix) -> int:
    """Regular files, as ``Files:`` counts them (symlinks are not copied as data)."""
    return sum(
        os.path.isfile(path) and not os.path.islink(path)
        for root, _, files in os.walk(prefix)
        for path in (os.path.join(root, name) for name in files)
    )


def hint(dest) -> list[str]:
    return [
        "#",
        "# To activate this environment, use",
        "#",
        f"#     $ conda activate {dest}",
        "#",
        "# To deactivate an active environment, use",
        "#",
        "#     $ conda deactivate",
        "",
        "Old and New Environments are same",
    ]


def test_each_migrated_environment_gets_the_guides_lines(scratch, home):
    """On a terminal, the guide's lines with its activation banner."""
    files = {name: files_in(scratch.envs_dir / name) for name in ("abc", "amd")}
    code, shown = run_on_terminal(["-d", scratch.envs_dir, *RELOCATE], b"", b"")
    out = shown.replace("\r\n", "\n")
    assert code == 0, out
    for name in ("abc", "amd"):
        dest = home / ".conda" / "envs" / name
        assert_in_order(
            out,
            [
                f"Migrating and comparing environment: {name}",
                f"Files: {files[name]}",
            ]
            + hint(dest)
            + [
                f"Successfully migrated and removed old environment: {scratch.envs_dir / name}"
            ],
        )
    assert out.count("Files: ") == 2 and out.count("Packages: ") == 2


def test_phases_are_one_line_each_without_carriage_returns(scratch, home, migrate):
    out, err, code = migrate("-d", scratch.envs_dir, "--all", "--method", "relocate")
    assert code == 0, out + err
    assert "\r" not in out
    durations = r"\d+(\.\d)? s"
    for phase in ("Copy", "Verify", "Remove"):
        assert len(re.findall(rf"^{phase} took {durations}$", out, re.M)) == 2, out
    assert len(re.findall(rf"^Clean took {durations}$", out, re.M)) == 1
    removal = (
        re.escape(f"Remove all packages in environment {scratch.abc}:\n")
        + r"  4 packages, \d+ files, \d+ KB\n"
        + f"Remove took {durations}\n"
        + re.escape(f"Successfully migrated and removed old environment: {scratch.abc}")
    )
    assert re.search(removal, out), out


def test_summary_has_each_environments_time_the_total_and_the_log(
    scratch, home, migrate
):
    out, err, code = migrate("-d", scratch.envs_dir, *RELOCATE)
    assert code == 0, out + err
    yaml = home / ".conda" / "yaml"
    for name in ("abc", "amd"):
        line = (
            f"    {name}: {scratch.envs_dir / name} -> {home}/.conda/envs/{name} "
            f"(YAML: {yaml / name}.yml; "
        )
        assert re.search(re.escape(line) + r"\d+(\.\d)? s\)\n", out), out
    assert re.search(r"\nTotal time: \d+(\.\d)? s\n", out)
    (log,) = (home / ".conda" / "migrate" / "logs").glob("*.log")
    assert out.endswith(f"Log: {log}\n")


def test_quiet_still_names_the_log(scratch, home, migrate):
    out, err, code = migrate("-d", scratch.envs_dir, "-q", *RELOCATE)
    assert code == 0, out + err
    assert out.startswith("Summary:\n")
    assert "\nLog: " in out and "Copy took" not in out


@pytest.mark.parametrize("started", ["console-script", "python-m"])
def test_log_names_the_command_engine_phases_and_exit_code(scratch, home, started):
    """``python -m conda_migrate_plugin`` is how a ``--submit`` job runs the
    command: its log names the command as users type it, never the
    module's ``__main__.py``, whether or not the console script is there."""
    program = (
        console_script()
        if started == "console-script"
        else [sys.executable, "-m", "conda_migrate_plugin"]
    )
    command = [*program, "-d", str(scratch.envs_dir), *RELOCATE]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    (log,) = (home / ".conda" / "migrate" / "logs").glob("*.log")
    lines = log.read_text().splitlines()
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d conda-migrate \S+, backend (conda|portable): "
        + re.escape(f"conda-migrate -d {scratch.envs_dir} {' '.join(RELOCATE)}"),
        lines[0],
    ), lines[0]
    text = "\n".join(lines)
    assert text.count("engine: relocation") == 2
    assert text.count(" Copy took ") == 2 and text.count(" Verify took ") == 2
    assert lines[-2].endswith(" exit code 0")
    assert "Namespace" not in text and "_plugin_subcommand" not in text


def test_log_records_a_failed_runs_exit_code(scratch, home, migrate):
    out, err, code = migrate("-d", scratch.envs_dir / "pyt", *RELOCATE)
    assert code == 1
    (log,) = (home / ".conda" / "migrate" / "logs").glob("*.log")
    assert log.read_text().splitlines()[-1].endswith(" exit code 1")


def test_terminal_shows_copy_progress(scratch, home):
    code, shown = run_on_terminal(["-d", scratch.envs_dir, *RELOCATE], b"", b"")
    assert code == 0, shown
    matches = re.findall(
        r"\rCopying: (\d+)/(\d+) files, [\d.]+ \w+/[\d.]+ \w+ \((\d+)%\), "
        r"[\d.]+ \w+/s, [\d.]+ s left",
        shown,
    )
    assert matches, shown
    done, total, percent = matches[-1]
    assert done == total and percent == "100"
    assert re.search(r"\r *\rCopy took ", shown.replace("\r\n", "\n")), shown


def test_dry_run_shows_the_rc_plan_and_writes_nothing(scratch, home, migrate):
    bashrc = home / ".bashrc"
    bashrc.write_text(f"conda activate {scratch.abc}\n")
    condarc = home / ".condarc"
    condarc.write_text(
        f"envs_dirs:\n  - {scratch.envs_dir}\npkgs_dirs:\n  - {scratch.envs_dir}/pkgs\n"
    )
    before = (bashrc.read_bytes(), condarc.read_bytes())
    out, err, code = migrate("-d", scratch.envs_dir, "--all", "--dry-run")
    assert code == 0, out + err
    assert "These files would be changed (--no-rc leaves them as they are):" in out
    assert (
        f"-conda activate {scratch.abc}\n+conda activate {home}/.conda/envs/abc" in out
    )
    assert f"+  - {home}/.conda/envs\n" in out
    assert (
        f"Note: conda's package cache would move into {home}/.conda/pkgs: the packages "
        "conda downloads from now on count against your home quota" in out
    )
    assert (bashrc.read_bytes(), condarc.read_bytes()) == before
    assert sorted(p.name for p in home.iterdir()) == [".bashrc", ".condarc"]
    out, err, code = migrate("-d", scratch.envs_dir, "--all", "--dry-run", "--no-rc")
    assert "would be changed" not in out and "+conda activate" not in out


def test_a_real_run_applies_what_the_dry_run_showed(scratch, home, migrate):
    (home / ".bashrc").write_text(f"conda activate {scratch.abc}\n")
    shown, _, _ = migrate("-d", scratch.envs_dir, "--dry-run", *RELOCATE)
    out, err, code = migrate("-d", scratch.envs_dir, *RELOCATE)
    assert code == 0, out + err
    diff = shown[shown.index("--- ") : shown.index("Summary:")].strip()
    assert diff in out
    assert (home / ".bashrc").read_text() == f"conda activate {home}/.conda/envs/abc\n"


@requires_conda
def test_clone_counts_every_file_and_quiet_keeps_condas_lines_in_the_log(
    scratch, home, migrate
):
    files = files_in(scratch.abc)
    out, err, code = migrate(
        "-d", scratch.abc, "--all", "--method", "clone", "--no-clean"
    )
    assert code == 0, out + err
    assert f"Packages: 4\nFiles: {files}\n" in out
    assert out.count("Files: ") == 1
    assert "Executing transaction: " in out
    shutil.rmtree(home / ".conda" / "envs")
    for log in (home / ".conda" / "migrate" / "logs").glob("*.log"):
        log.unlink()
    out, err, code = migrate(
        "-d", scratch.amd, "-q", "--all", "--method", "clone", "--no-clean"
    )
    assert code == 0, out + err
    assert "transaction" not in out + err and "Package Plan" not in out
    (log,) = (home / ".conda" / "migrate" / "logs").glob("*.log")
    text = log.read_text()
    assert " Executing transaction: " in text
    assert " engine: conda's clone" in text


def test_auto_relocates_without_a_word_about_clone(scratch, home, migrate):
    out, err, code = migrate("-d", scratch.envs_dir, "--all", "--method", "auto")
    assert code == 0, out + err
    assert "clone" not in out
    assert out.count("Files: ") == 2


def test_scratch_spellings_become_home_spellings_and_the_cache_move_is_said(
    scratch, home, migrate
):
    (home / ".bashrc").write_text(
        "conda activate $SCRATCH/conda-envs/abc\n"
        'export CONDA_PKGS_DIRS="${SCRATCH}/conda-envs/pkgs"\n'
    )
    out, err, code = migrate("-d", scratch.envs_dir, *RELOCATE)
    assert code == 0, out + err
    assert (home / ".bashrc").read_text() == (
        "conda activate $HOME/.conda/envs/abc\n"
        'export CONDA_PKGS_DIRS="${HOME}/.conda/pkgs"\n'
    )
    assert (
        f"Note: conda's package cache moves into {home}/.conda/pkgs: the packages "
        "conda downloads from now on count against your home quota "
        "(conda clean --all frees them).\n" in out
    )


def test_the_log_gets_condas_lines_as_a_terminal_shows_them():
    from conda_migrate_plugin.progress import Tee

    logged = []
    tee = Tee(None, logged.append)
    tee.write("Preparing transaction: ")
    tee.write("/\b-\b\\\b|\bdone\nDownloading: 10%\r100%\r\n")
    tee.write("Executing transaction: done")
    tee.close_lines()
    assert logged == [
        "Preparing transaction: done",
        "100%",
        "Executing transaction: done",
    ]


def test_a_huge_rc_diff_is_capped_on_screen_and_whole_in_the_log(
    scratch, home, migrate
):
    """A 10 MB ``.bashrc`` of repeated lines must not flood the terminal or
    a batch job's output: the screen gets the start of the diff and how many
    lines changed, the log the whole diff."""
    line = "conda activate $SCRATCH/conda-envs/abc\n"
    repeats = 10_000_000 // len(line)
    bashrc = home / ".bashrc"
    bashrc.write_text("# .bashrc\n" + line * repeats)
    out, err, code = migrate("-d", scratch.abc, *RELOCATE)
    assert code == 0, out + err
    assert bashrc.read_text() == (
        "# .bashrc\n" + "conda activate $HOME/.conda/envs/abc\n" * repeats
    )
    assert out.count("\n-conda activate $SCRATCH/conda-envs/abc") < 100
    assert len(out) < 20_000, len(out)
    (log,) = (home / ".conda" / "migrate" / "logs").glob("*.log")
    assert (
        f"{bashrc}: {repeats} lines changed; the diff shows the first 40 of "
        f"them, the log has all of it: {log}" in out
    )
    logged = log.read_text().splitlines()
    assert logged.count("-conda activate $SCRATCH/conda-envs/abc") == repeats
    assert logged.count("+conda activate $HOME/.conda/envs/abc") == repeats
