"""README's two commands: the test command is what CI runs, and it names
what it installs."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

from tests.support.runs import ROOT

README = (ROOT / "README.md").read_text()
SETUP = ROOT / ".ci" / "setup"
CI = ROOT / ".ci" / "run"


def command_after(heading: str) -> str:
    """The one-line shell block that follows ``heading`` in README."""
    block = re.search(re.escape(heading) + r".*?```shell\n(.*?)\n```", README, re.S)
    assert block, f"no shell block after {heading!r}"
    return block.group(1)


def test_the_test_command_is_what_ci_runs():
    setup, test = command_after("Run the tests").split(" && ")
    assert setup == ".ci/setup"
    assert os.access(SETUP, os.X_OK)
    ci = CI.read_text().splitlines()
    assert setup in ci, "CI installs what the tests need the same way"
    runner = shlex.split(test)
    assert runner[:4] == [".venv/bin/python", "-m", "pytest", "-q"]
    assert ". .venv/bin/activate" in ci
    pytest_lines = [line for line in ci if line.startswith("python -m pytest -q")]
    assert len(pytest_lines) == 1, "CI runs README's command (with coverage)"


def test_readme_names_every_package_setup_installs():
    packages = re.search(r'^PACKAGES="([^"]+)"$', SETUP.read_text(), re.M)
    assert packages
    for package in packages.group(1).split():
        assert package in README, package


def test_the_test_command_runs_the_slow_tests_too():
    """``slow`` marks the tests that wait for a Slurm time limit; ``-m 'not
    slow'`` leaves them out by hand, README's command never does."""
    command = shlex.split(command_after("Run the tests").split(" && ")[1])
    collected = subprocess.run(
        [sys.executable, *command[1:], "--collect-only", "-m", "slow"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    slow = [line for line in collected.splitlines() if "::test_" in line]
    assert len(slow) >= 3, collected
    everything = subprocess.run(
        [sys.executable, *command[1:], "--collect-only"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert set(slow) <= set(everything.splitlines()), "deselected by default"
