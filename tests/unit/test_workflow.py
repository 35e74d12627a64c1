"""The run as a Python function: no argparse, no console script."""

from __future__ import annotations

import io

from conda_migrate_plugin.options import Options
from conda_migrate_plugin.workflow import run


def test_run_migrates_from_python_with_plain_options(scratch, home):
    options = Options(
        dest_root=home / ".conda" / "envs",
        yaml_dir=home / ".conda" / "yaml",
        scanned=scratch.envs_dir,
        state_dir=home / ".conda" / "migrate",
        method="relocate",
        select_all=True,
        clean=False,
        update_rc=False,
    )
    stdout = io.StringIO()
    code = run(options, home=home, stdin=io.StringIO(), stdout=stdout, command="api")
    assert code == 0, stdout.getvalue()
    assert (home / ".conda" / "envs" / "abc" / "conda-meta" / "history").is_file()
    assert not scratch.abc.exists()
    assert "Successfully migrated and removed old environment" in stdout.getvalue()
