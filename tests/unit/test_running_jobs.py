"""The user's running Slurm jobs, as a ``squeue`` on PATH answers.

Each test puts a ``squeue`` script first on PATH: what it prints, how it
fails or hangs, is what a site's ``squeue`` may do. The real ``squeue`` is
in ``tests/scenarios/test_slurm.py``.
"""

from __future__ import annotations

import time

import pytest

from conda_migrate_plugin import running_jobs


@pytest.fixture
def squeue(tmp_path, monkeypatch):
    """Write ``body`` as ``squeue``, the only one on PATH; its arguments are
    kept in ``args``."""
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")

    def write(body: str) -> None:
        script = tmp_path / "squeue"
        script.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/args\n{body}\n')
        script.chmod(0o755)

    return write


LISTED = (
    "printf '%s\\n' '101|101|101|train' '205|200|200_5|sweep' '206|200|200_6|sweep'"
    " '301|301|301|notebook' '401|401|401|other'"
)


def test_names_a_few_running_jobs_and_counts_the_rest(squeue, tmp_path):
    squeue(LISTED)
    said = running_jobs.warning()
    assert said is not None
    assert said.startswith(
        "warning: you have Slurm jobs running: 101 (train), 200_5 (sweep), "
        "200_6 (sweep) and 2 more. This node cannot see"
    )
    assert "--keep-old" in said
    args = (tmp_path / "args").read_text().split()
    assert args[args.index("-t") + 1] == "RUNNING,COMPLETING,SUSPENDED"


def test_the_runs_own_job_and_its_array_are_left_out(squeue, monkeypatch):
    squeue(LISTED)
    monkeypatch.setenv("SLURM_JOB_ID", "206")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "200")
    said = running_jobs.warning()
    assert said is not None and "(sweep)" not in said
    assert "101 (train), 301 (notebook), 401 (other). " in said
    monkeypatch.setenv("SLURM_JOB_ID", "101")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID")
    assert running_jobs.parse("101|101|101|me\n", running_jobs._ours()) == []


def test_no_running_job_no_squeue_no_warning(squeue, tmp_path, monkeypatch):
    squeue("true")
    assert running_jobs.warning() is None
    monkeypatch.setenv("PATH", str(tmp_path / "none"))
    assert running_jobs.warning() is None


def test_a_squeue_that_knows_no_cluster_is_no_slurm_site(squeue):
    """The client package installed where no cluster is configured (as
    Debian's slurm-client alone leaves it): every run would otherwise warn
    that jobs could not be listed, where there are none to list."""
    squeue(
        "echo 'squeue: error: resolve_ctls_from_dns_srv: res_nsearch error: "
        "Unknown host' >&2; echo 'squeue: error: fetch_config: DNS SRV lookup "
        "failed' >&2; echo 'squeue: fatal: Could not establish a configuration "
        "source' >&2; exit 1"
    )
    assert running_jobs.warning() is None


def test_a_failing_squeue_is_one_line(squeue):
    squeue("echo 'squeue: error: Unable to contact slurm controller' >&2; exit 1")
    assert running_jobs.warning() == (
        "warning: your running Slurm jobs could not be listed (squeue: squeue: "
        "error: Unable to contact slurm controller); one that writes into an "
        "environment after its removal loses that output."
    )


def test_a_hanging_squeue_is_left_after_the_timeout(squeue, monkeypatch):
    monkeypatch.setattr(running_jobs, "TIMEOUT", 1)
    squeue("exec sleep 30")
    began = time.monotonic()
    said = running_jobs.warning()
    assert time.monotonic() - began < 10
    assert said is not None
    assert said.startswith(
        "warning: your running Slurm jobs could not be listed (squeue: no answer "
        "in 1 seconds)"
    )
