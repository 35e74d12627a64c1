"""The command line as a user meets it: usage errors in ``conda migrate``'s
own words, the version, and a help that answers the first questions."""

from __future__ import annotations

import pytest

from conda_migrate_plugin import __version__


@pytest.mark.parametrize(
    "args, says",
    [
        (["--bogus"], "error: unrecognized arguments: --bogus"),
        (["-d", "/x", "stray"], "error: unrecognized arguments: stray"),
        (
            ["-q", "-v"],
            "error: argument -v/--verbose: not allowed with argument -q/--quiet",
        ),
        (["--method", "copy"], "error: argument --method: invalid choice: 'copy'"),
    ],
)
def test_usage_errors_show_the_subcommands_usage(home, migrate, args, says):
    out, err, code = migrate(*args)
    assert code == 2, out + err
    assert says in err
    assert "usage: conda migrate" in err or "usage: conda-migrate" in err
    assert "usage: conda [" not in err and "COMMAND" not in err


def test_version(home, migrate):
    out, err, code = migrate("--version")
    assert code == 0, out + err
    assert out == f"conda-migrate {__version__}\n"


def test_help_answers_the_first_questions(home, migrate, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    out, err, code = migrate("--help")
    assert code == 0, out + err
    for line in [
        "  conda migrate -d /scratch/wz22/conda-envs --all      # all valid ones",
        "  conda migrate -d /scratch/wz22/conda-envs --all --submit -c 10 -t 48:00:00",
        "  conda env list | grep /scratch",
        "not conda's -d/--dry-run (spell that --dry-run)",
        "~/.condarc and",
        "--no-rc leaves them.",
        "$HOME/.conda/migrate/logs/conda-migrate-DATE-PID.log",
        "exit codes: 0 all migrated, 1 something failed or nothing to migrate,",
        "2 usage error (nothing touched), 128+N stopped by signal N",
    ]:
        assert line in out, f"{line!r} missing from:\n{out}"
    assert max(map(len, out.splitlines())) <= 80
