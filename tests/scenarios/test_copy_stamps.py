"""The stamps of a verified copy, which a resumed run checks the copy against
before it removes the source, are what a walk of the committed copy gives,
entry for entry, however the copy was made: files rewritten, patched,
restored from the package cache, linked to an earlier environment's copy or
to each other, symlinks, attributes, a read-only directory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from conda_migrate_plugin import migrate as steps
from conda_migrate_plugin.safety import journal
from conda_migrate_plugin.transaction import copy_stamps

if TYPE_CHECKING:
    from conda_migrate_plugin.snapshot import Stamp

#: A package file in the package cache, hardlinked from every environment.
DATA = "share/demo/data.txt"


def site(make_env, tmp_path: Path) -> Path:
    """Two environments from one package cache; the second holds everything
    a copy may be made of."""
    envs = tmp_path / "scratch" / "envs"
    make_env(envs / "a1", ["demo-app"], pip=True)
    env = make_env(envs / "a2", ["demo-app"], pip=True)
    # Linked within the environment: a package file a1's copy shares (the
    # other name in a directory copied after its own), and a file of the
    # environment's own.
    (env / "share/later").mkdir()
    os.link(env / DATA, env / "share/later/data.txt")
    own = env / "share/own.txt"
    own.write_text("results\n")
    os.link(own, env / "share/own-again.txt")
    (env / "lib/abs-link").symlink_to(env / "lib/libdemo.so")
    os.setxattr(env / "share/own.txt", "user.origin", b"run 7")
    os.setxattr(env / "share/demo", "user.project", b"paper-2026")
    # Purged: a text file with the prefix and its directory, which the copy
    # restores from the package cache (and records anew).
    (env / "etc/demo/demo.conf").unlink()
    (env / "etc/demo").rmdir()
    frozen = env / "share/frozen"
    frozen.mkdir()
    (frozen / "result.dat").write_text("final\n")
    frozen.chmod(0o555)
    return envs


@pytest.fixture
def at_commit(monkeypatch) -> dict[str, tuple[dict[str, Stamp], dict[str, Stamp]]]:
    """For each environment committed: the copy's stamps as the journal
    holds them, and a walk of the copy right after its commit (before a later
    environment may link to its files)."""
    seen: dict[str, tuple[dict[str, Stamp], dict[str, Stamp]]] = {}
    commit = steps.commit

    def observed(run, entry, path) -> None:
        commit(run, entry, path)
        dest = Path(entry.dest)
        recorded = journal.load_stamps(run.options.state_dir, dest, journal.COPY)
        assert recorded is not None
        seen[dest.name] = (recorded, copy_stamps(dest, None))

    monkeypatch.setattr(steps, "commit", observed)
    return seen


def test_the_copy_is_recorded_as_a_walk_of_it_would_see_it(
    make_env, tmp_path, migrate, at_commit
):
    envs = site(make_env, tmp_path)
    out, err, code = migrate("-d", envs, "--all", "--no-clean")
    assert code == 0, out + err
    assert "shared with environments migrated before it" in out
    assert "Restored 1 file the purge took" in out
    assert sorted(at_commit) == ["a1", "a2"]
    for name, (recorded, walked) in at_commit.items():
        assert walked.keys() ^ recorded.keys() == set(), name
        wrong = sorted(rel for rel in walked if walked[rel] != recorded[rel])
        assert not wrong, (name, wrong)
    recorded, _ = at_commit["a2"]
    assert recorded["share/later/data.txt"][6] == 3  # a1's, and two in a2
    assert "etc/demo" in recorded
