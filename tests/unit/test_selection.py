"""The selection prompt: every accepted form, every rejected one, and no hang."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from conda_migrate_plugin.discover import Candidate
from conda_migrate_plugin.exceptions import UsageError
from conda_migrate_plugin.selection import (
    PROMPT,
    SelectionError,
    parse_selection,
    prompt_selection,
)

ENVS = [
    Candidate(name, Path("/scratch/u/envs", name))
    for name in ("amd", "abc", "hdf", "x-y")
]


@pytest.mark.parametrize(
    "answer, names",
    [
        ("2", ["abc"]),
        (" 1 , 3 \n", ["amd", "hdf"]),
        ("1-3", ["amd", "abc", "hdf"]),
        ("3,1-2,2", ["amd", "abc", "hdf"]),
        ("abc", ["abc"]),
        ("hdf, 1", ["amd", "hdf"]),
        ("x-y", ["x-y"]),
        ("All", ["amd", "abc", "hdf", "x-y"]),
        ("all\n", ["amd", "abc", "hdf", "x-y"]),
        ("ALL", ["amd", "abc", "hdf", "x-y"]),
    ],
)
def test_accepted_answers(answer, names):
    assert [c.name for c in parse_selection(answer, ENVS)] == names


@pytest.mark.parametrize(
    "answer, message",
    [
        ("", "nothing was selected"),
        (" , ", "nothing was selected"),
        ("0", "'0' is not between 1 and 4"),
        ("5", "'5' is not between 1 and 4"),
        ("3-1", "range '3-1' runs backwards"),
        ("2-9", "range '2-9' goes beyond 1-4"),
        ("xyz", "'xyz' is neither a number nor an environment name"),
        ("1;2", "'1;2' is neither a number nor an environment name"),
    ],
)
def test_rejected_answers(answer, message):
    with pytest.raises(SelectionError) as excinfo:
        parse_selection(answer, ENVS)
    assert str(excinfo.value) == message


def test_prompt_asks_again_after_a_typo():
    stdout = io.StringIO()
    chosen = prompt_selection(ENVS, io.StringIO("7\nabc\n"), stdout)
    assert [c.name for c in chosen] == ["abc"]
    assert stdout.getvalue() == (
        f"{PROMPT}\nInvalid selection: '7' is not between 1 and 4. Try again.\n{PROMPT}\n"
    )


def test_end_of_input_is_a_usage_error_not_a_hang():
    with pytest.raises(UsageError) as excinfo:
        prompt_selection(ENVS, io.StringIO("typo\n"), io.StringIO())
    assert excinfo.value.return_code == 2
    assert "--all" in str(excinfo.value)


def test_digits_int_refuses_are_asked_again_not_a_traceback(scratch, home, migrate):
    """``'²'.isdigit()`` is true, yet ``int('²')`` raises."""
    out, err, code = migrate(
        "-d", scratch.envs_dir, "--method", "relocate", stdin="²\n1-²\n²-3\n١\n1\n"
    )
    assert code == 0, out + err
    for typo in ("²", "1-²", "²-3", "١"):
        assert (
            f"Invalid selection: '{typo}' is neither a number nor an environment "
            "name. Try again.\n" in out
        )
    assert "Traceback" not in out + err
    assert (home / ".conda" / "envs" / "abc" / "conda-meta").is_dir()
    assert scratch.amd.is_dir()
