"""The journal alone: what it records is read back, and nothing else is."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from conda_migrate_plugin.names import MARKER, STAGING_PREFIX
from conda_migrate_plugin.result import Phase
from conda_migrate_plugin.safety import journal, lock


def entry(tmp_path, **fields) -> journal.Entry:
    source, dest = tmp_path / "scratch" / "abc", tmp_path / "envs" / "abc"
    made = journal.Entry("abc", str(source), str(dest), Phase.COPYING, "relocate")
    return replace(made, run="f" * 32, **fields)


def test_a_recorded_entry_is_read_back_and_cleared_with_its_stamps(tmp_path):
    state = tmp_path / "state"
    recorded = entry(tmp_path)
    journal.record(state, recorded)
    journal.save_stamps(state, tmp_path / "envs" / "abc", {"bin": [1, 2]})
    assert journal.entries(state) == [recorded]
    assert journal.load_stamps(state, tmp_path / "envs" / "abc") == {"bin": (1, 2)}
    journal.clear(state, tmp_path / "envs" / "abc")
    assert journal.entries(state) == []
    assert journal.load_stamps(state, tmp_path / "envs" / "abc") is None
    assert sorted(os.listdir(state / "journal")) == []


def test_a_later_phase_replaces_the_entry(tmp_path):
    state = tmp_path / "state"
    journal.record(state, entry(tmp_path))
    journal.record(state, entry(tmp_path, phase=Phase.VERIFIED))
    assert [e.phase for e in journal.entries(state)] == ["verified"]


def test_torn_malformed_and_misplaced_entries_are_skipped(tmp_path):
    state = tmp_path / "state"
    good = entry(tmp_path)
    journal.record(state, good)
    folder = state / "journal"
    (folder / ".x.json.1234.partial").write_text("{")
    (folder / "torn.json").write_text('{"name": "ab')
    (folder / "list.json").write_text("[]")
    bad = entry(
        tmp_path,
        name="bad",
        source=str(tmp_path / "scratch" / "bad"),
        dest=str(tmp_path / "envs" / "bad"),
    )
    journal.path_for(state, Path(bad.dest)).write_text(
        json.dumps({**vars(bad), "phase": "rm -rf"})
    )
    # A valid entry under another destination's file name.
    other = entry(tmp_path, dest=str(tmp_path / "envs" / "abc" / ".." / "abc"))
    (folder / "misplaced.json").write_text(json.dumps(vars(good)))
    (folder / "symlink.json").symlink_to(journal.path_for(state, Path(good.dest)))
    assert journal.entries(state) == [good]
    assert not (folder / ".x.json.1234.partial").exists()
    assert not journal.valid(other)


def test_an_entry_whose_staging_is_elsewhere_is_not_valid(tmp_path):
    assert journal.valid(
        entry(tmp_path, staging=str(tmp_path / "envs" / f"{STAGING_PREFIX}abc-1"))
    )
    assert not journal.valid(
        entry(tmp_path, staging=str(tmp_path / f"{STAGING_PREFIX}abc-1"))
    )
    assert not journal.valid(
        entry(tmp_path, staging=str(tmp_path / "envs" / "projects"))
    )
    assert not journal.valid(entry(tmp_path, name="../abc"))
    assert not journal.valid(entry(tmp_path, copy_ino="12"))


def test_our_copy_is_the_same_inode_with_the_runs_marker(tmp_path):
    copy = tmp_path / "envs" / "abc"
    copy.mkdir(parents=True)
    st = copy.stat()
    made = entry(tmp_path, copy_dev=st.st_dev, copy_ino=st.st_ino)
    assert not journal.is_our_copy(made, copy)  # no marker yet
    assert journal.is_our_copy(made, copy, verified=True)
    (copy / MARKER).write_text("f" * 32)
    assert journal.is_our_copy(made, copy)
    (copy / MARKER).write_text("0" * 32)
    assert not journal.is_our_copy(made, copy)
    copy.rename(tmp_path / "moved")
    copy.mkdir()  # the user's own, at the same path
    (copy / MARKER).write_text("f" * 32)
    assert not journal.is_our_copy(made, copy)


def test_a_write_under_way_in_another_run_is_left_to_it(tmp_path):
    """A task of a job array may be writing its entry while another lists
    the journal: only a killed run's half-done write goes."""
    state = tmp_path / "state"
    journal.record(state, entry(tmp_path))
    partial = state / "journal" / ".y.json.5678.partial"
    partial.write_text("{")
    with lock.sharing(state, "journal"):
        journal.entries(state)
        assert partial.exists()
    journal.entries(state)
    assert not partial.exists()
