"""Fault injection: kill, stop, fill the disk midway; no environment is lost.

Every scenario runs the real command in a child process (``faultpoint.py``
strikes it at a chosen filesystem call), then checks the files on disk, and
runs the same command again to see the job completed exactly once.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.channel import add_pip_package
from tests.support.runs import run_cli, wait_until_stopped
from tests.support.trees import tree_snapshot

#: Points spread evenly over a whole run, plus every atomic commit point.
SPREAD = 16


def without_history(snapshot: dict) -> dict:
    """The history gains a line recording the move (with its time)."""
    return {k: v for k, v in snapshot.items() if k != "conda-meta/history"}


class Layout:
    """One scratch directory with two environments, a home whose
    ``.bashrc`` activates one of them, at fixed paths so that every
    scenario can be compared with one reference migration."""

    def __init__(self, base: Path, make_env) -> None:
        self.base, self.make_env = base, make_env
        self.envs_dir = base / "scratch" / "envs"
        self.home = base / "home"
        self.dest = self.home / ".conda" / "envs"

    def build(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)
        self.make_env(self.envs_dir / "abc", ["demo-app"], pip=True)
        self.make_env(self.envs_dir / "amd", ["demo-text"])
        self.home.mkdir(parents=True)
        (self.home / ".bashrc").write_text(
            f"# mine\nconda activate {self.envs_dir / 'abc'}\n"
        )

    def args(self, *extra) -> list:
        return [
            "-d",
            self.envs_dir,
            "--all",
            "--method",
            "relocate",
            "--no-clean",
            *extra,
        ]

    def state(self) -> dict[str, dict]:
        found = {}
        for side, where in (("scratch", self.envs_dir), ("home", self.dest)):
            for name in ("abc", "amd"):
                if (where / name).exists():
                    found[f"{side}/{name}"] = without_history(
                        tree_snapshot(where / name)
                    )
        return found

    def listed(self) -> list[Path]:
        """What conda would list: environments.txt and the envs directory."""
        registry = self.home / ".conda" / "environments.txt"
        listed = (
            [Path(line) for line in registry.read_text().splitlines()]
            if registry.exists()
            else []
        )
        if self.dest.is_dir():
            listed += [
                p
                for p in self.dest.iterdir()
                if (p / "conda-meta" / "history").is_file()
            ]
        return listed


@pytest.fixture(scope="module")
def layout(tmp_path_factory, solve):
    """The module's layout and its reference: sources before, copies after."""
    import asyncio

    import rattler

    base = tmp_path_factory.mktemp("faults") / "site"
    cache = base.parent / "rattler-cache"

    def make_env(prefix, specs, pip=False):
        asyncio.run(
            rattler.install(solve(specs), prefix, cache_dir=cache, show_progress=False)
        )
        if pip:
            add_pip_package(prefix)
        return prefix

    site = Layout(base, make_env)
    site.build()
    site.before = site.state()
    code, out, err = run_cli(site.home, *site.args())
    assert code == 0, out + err
    site.after = site.state()
    site.bashrc_after = (site.home / ".bashrc").read_bytes()
    site.calls = int(err.split("faultpoint-count ")[1].split()[0])
    code, out, err = run_cli(site.home, *site.args(), fault=("count", "0", "replace"))
    site.commits = int(err.split("faultpoint-count ")[1].split()[0])
    return site


def assert_nothing_lost(site: Layout) -> None:
    state = site.state()
    for name in ("abc", "amd"):
        source, copy = state.get(f"scratch/{name}"), state.get(f"home/{name}")
        if source is not None:
            assert source == site.before[f"scratch/{name}"], f"{name} source changed"
        else:
            assert copy == site.after[f"home/{name}"], f"{name} lost"
    for prefix in site.listed():
        key = f"{'home' if prefix.parent == site.dest else 'scratch'}/{prefix.name}"
        assert state.get(key) in (site.before.get(key), site.after.get(key)), (
            f"half-made {prefix} is listed"
        )
    assert (site.home / ".bashrc").read_bytes() in (
        f"# mine\nconda activate {site.envs_dir / 'abc'}\n".encode(),
        site.bashrc_after,
    )


def assert_completed_once(site: Layout) -> None:
    code, out, err = run_cli(site.home, *site.args())
    assert code == 0, out + err
    assert site.state() == site.after
    # conda rewrites the file in place, so a kill there may leave a blank
    # line, which conda's own reader skips.
    registry = (site.home / ".conda" / "environments.txt").read_text().split()
    assert sorted(registry) == sorted(str(site.dest / n) for n in ("abc", "amd"))
    assert (site.home / ".bashrc").read_bytes() == site.bashrc_after
    leftovers = [p.name for p in site.envs_dir.iterdir()] + [
        p.name for p in site.dest.iterdir()
    ]
    assert sorted(leftovers) == ["abc", "amd"]
    assert not list((site.home / ".conda" / "migrate" / "journal").glob("*"))


def test_kill_points_do_not_depend_on_the_machine(layout):
    """The spread strikes at fractions of a count taken once: with 400 more
    processes on the machine (which the check before the removal reads in
    ``/proc``) a run must make as many counted calls, give or take the few
    writes of progress and log a slower run makes, or the later points fall
    past the run's end (the /proc reads made thousands more)."""
    counts = []
    for more in (0, 400):
        others = [subprocess.Popen(["sleep", "120"]) for _ in range(more)]
        try:
            layout.build()
            code, out, err = run_cli(layout.home, *layout.args(), fault=("count", "0"))
        finally:
            for other in others:
                other.kill()
                other.wait()
        assert code == 0, out + err
        counts.append(int(err.split("faultpoint-count ")[1].split()[0]))
    assert abs(counts[0] - counts[1]) <= counts[0] // 100, counts


def kill_points(count: int):
    return [("spread", i) for i in range(SPREAD)] + [
        ("commit", i) for i in range(count)
    ]


@pytest.mark.parametrize("kind, index", kill_points(12))
def test_sigkill_anywhere_loses_nothing(layout, kind, index):
    if kind == "spread":
        fault = ("kill", str(1 + index * layout.calls // SPREAD))
    elif index < layout.commits:
        fault = ("kill", str(index + 1), "replace")
    else:
        pytest.skip(f"the run makes only {layout.commits} atomic commits")
    layout.build()
    code, out, err = run_cli(layout.home, *layout.args(), fault=fault)
    assert code == -signal.SIGKILL, out + err
    assert_nothing_lost(layout)
    assert_completed_once(layout)


@pytest.mark.parametrize("nth_file", [3, 15])
def test_sigterm_mid_copy_stops_cleanly(layout, nth_file):
    """Slurm's time limit: the copy sets each entry's stamps once it is
    written."""
    layout.build()
    code, out, err = run_cli(
        layout.home, *layout.args(), fault=("term", str(nth_file), "utime")
    )
    assert code == 128 + signal.SIGTERM, out + err
    assert "Stopped by SIGTERM while copying" in out + err
    assert "Run the same command again to continue" in out + err
    assert_nothing_lost(layout)
    assert not (layout.dest / ".conda-migrate-staging").exists()
    assert_completed_once(layout)


def test_two_runs_at_once_one_refuses(layout):
    layout.build()
    args = [
        "-d",
        layout.envs_dir / "abc",
        "--all",
        "--method",
        "relocate",
        "--no-clean",
    ]
    first = run_cli(layout.home, *args, fault=("stop", "5", "utime"), wait=False)
    try:
        wait_until_stopped(first)
        code, out, err = run_cli(layout.home, *args)
        assert code == 1
        assert (
            f"is being migrated by another conda-migrate run (pid {first.pid} on" in out
        )
        assert not (layout.dest / "abc").exists()
    finally:
        first.send_signal(signal.SIGCONT)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, out + err
    assert layout.state() == {
        "scratch/amd": layout.before["scratch/amd"],
        "home/abc": layout.after["home/abc"],
    }


def test_rerun_on_the_environment_itself_finishes_an_interrupted_removal(layout):
    """Killed while deleting the old environment, which ``-d`` named: the
    path is gone, and the same command still finishes the job."""
    layout.build()
    args = ["-d", layout.envs_dir / "abc", "--all", "--method", "relocate"]
    code, out, err = run_cli(
        layout.home, *args, "--no-clean", fault=("kill", "2", "rmdir")
    )
    assert code == -signal.SIGKILL
    assert not (layout.envs_dir / "abc").exists()
    assert (layout.envs_dir / ".abc.conda-migrate-removing").exists()
    code, out, err = run_cli(layout.home, *args, "--no-clean")
    assert code == 0, out + err
    assert "not finished removing it; finishing it." in out
    assert f"removed old environment: {layout.envs_dir / 'abc'}" in out
    assert sorted(p.name for p in layout.envs_dir.iterdir()) == ["amd"]
    assert layout.state() == {
        "scratch/amd": layout.before["scratch/amd"],
        "home/abc": layout.after["home/abc"],
    }
    assert (layout.home / ".bashrc").read_bytes() == layout.bashrc_after
