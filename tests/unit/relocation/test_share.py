"""What environments share on scratch stays shared in $HOME: real installs
from one package cache, their blocks and inodes before and after a run."""

from __future__ import annotations

import os
import stat
import subprocess
from typing import TYPE_CHECKING

from tests.support.trees import assert_no_more_room, inode, tree_snapshot, usage
from tests.support.users import USER

if TYPE_CHECKING:
    from pathlib import Path

NAMES = ("a1", "a2", "a3", "a4")
#: A package file no prefix is written into: the cache's hard link in every env.
DATA = "share/demo/data.txt"


def make_envs(make_env, tmp_path, names=NAMES) -> Path:
    envs = tmp_path / "scratch" / "envs"
    for name in names:
        make_env(envs / name, ["demo-app"], pip=name == names[-1])
    return envs


def test_envs_from_one_cache_take_no_more_room_in_home(
    make_env, tmp_path, home, migrate
):
    envs = make_envs(make_env, tmp_path)
    cache = tmp_path / "rattler-cache"
    assert inode(envs / "a1" / DATA) == inode(envs / "a2" / DATA)
    before, envs_alone = usage(envs, cache), usage(envs)
    out, err, code = migrate("-d", envs, "--all")
    assert code == 0, out + err
    dest = home / ".conda" / "envs"
    assert_no_more_room(dest, before, envs_alone)
    # One inode for what was one, in every environment.
    assert len({inode(dest / name / DATA) for name in NAMES}) == 1
    assert (dest / "a4" / DATA).lstat().st_nlink == len(NAMES)
    for name in NAMES:
        # Rewritten files are each environment's own.
        conf = (dest / name / "etc/demo/demo.conf").read_text()
        assert f"root = {dest / name}\n" in conf
        run = subprocess.run([dest / name / "bin/demo-app"], capture_output=True)
        assert run.stdout == b"demo-app works\n"
    assert "shared with environments migrated before it" in out


def test_copy_gives_every_environment_its_own_files(make_env, tmp_path, home, migrate):
    envs = make_envs(make_env, tmp_path, NAMES[:2])
    out, err, code = migrate("-d", envs, "--all", "--copy")
    assert code == 0, out + err
    dest = home / ".conda" / "envs"
    assert inode(dest / "a1" / DATA) != inode(dest / "a2" / DATA)
    assert (dest / "a2" / DATA).lstat().st_nlink == 1


def spoil(prefix: Path) -> None:
    """Give ``prefix`` its own copy of ``DATA``, of the recorded size, naming
    the environment's own prefix: its relocation then fails, after the copy."""
    path = prefix / DATA
    size = path.stat().st_size
    text = f"{prefix}\n".encode()
    path.unlink()
    path.write_bytes(text + b"x" * (size - len(text)))


def test_failed_environment_takes_nothing_an_earlier_one_gave(
    make_env, tmp_path, home, migrate
):
    envs = make_envs(make_env, tmp_path, NAMES[:2])
    spoil(envs / "a2")
    out, err, code = migrate("-d", envs, "--all", "--keep-old")
    assert code == 1, out + err
    assert "Migration of a2 failed" in out and "still names the old prefix" in out
    dest = home / ".conda" / "envs"
    assert not (dest / "a2").exists()
    source, copy = tree_snapshot(envs / "a1"), tree_snapshot(dest / "a1")
    kept = [
        rel
        for rel, value in source.items()
        if value[0] == "file"
        and not rel.startswith("conda-meta/")
        and str(envs / "a1").encode() not in (envs / "a1" / rel).read_bytes()
    ]
    assert DATA in kept and all(copy[rel] == source[rel] for rel in kept)
    # a2's links to a1's files went with a2's copy; a1's files stay.
    st = (dest / "a1" / DATA).lstat()
    assert st.st_nlink == 1 and stat.S_ISREG(st.st_mode)


def test_nothing_links_into_a_copy_that_failed(make_env, tmp_path, home, migrate):
    envs = make_envs(make_env, tmp_path, NAMES[:2])
    spoil(envs / "a1")
    # a1's other files still share inodes with a2's: they were copied into
    # a1's staging, which was then discarded.
    shared = "lib/python3.11/site-packages/demo_app/__init__.py"
    assert inode(envs / "a1" / shared) == inode(envs / "a2" / shared)
    out, err, code = migrate("-d", envs, "--all", "--keep-old")
    assert code == 1, out + err
    dest = home / ".conda" / "envs"
    assert not (dest / "a1").exists()
    assert (dest / "a2" / shared).lstat().st_nlink == 1
    assert (dest / "a2" / shared).read_bytes() == (envs / "a2" / shared).read_bytes()
    run = subprocess.run([dest / "a2" / "bin/demo-app"], capture_output=True)
    assert run.stdout == b"demo-app works\n"


def test_json_and_summary_say_what_moved_and_what_was_freed(
    make_env, tmp_path, home, migrate
):
    import json

    envs = make_envs(make_env, tmp_path, NAMES[:3])
    cache = tmp_path / "rattler-cache"
    before = usage(envs, cache)
    out, err, code = migrate("-d", envs, "--all", "--json")
    assert code == 0, out + err
    after = usage(envs, cache)
    document = json.loads(out)
    by_name = {e["name"]: e for e in document["environments"]}
    assert by_name["a1"]["shared_files"] == 0
    assert by_name["a2"]["shared_files"] == by_name["a3"]["shared_files"] > 0
    totals = document["totals"]
    for key, value in totals.items():
        assert value == sum(e[key] for e in document["environments"]), key
    # What scratch got back: every inode counted, each environment's own
    # directory included; its bytes but for those directories' blocks.
    assert before[1] - after[1] == totals["freed_files"]
    assert 0 <= before[0] - after[0] - totals["freed_bytes"] <= 3 * 65536
    for e in document["environments"]:
        assert e["written_files"] + e["shared_files"] == e["files"]
        assert e["written_bytes"] + e["shared_bytes"] == e["bytes"]


def test_dry_run_plans_the_sharing_and_changes_nothing(
    make_env, tmp_path, home, migrate
):
    envs = make_envs(make_env, tmp_path, NAMES[:2])
    before = tree_snapshot(envs)
    out, err, code = migrate("-d", envs, "--all", "--dry-run")
    assert code == 0, out + err
    first, second = out.split("Migrating and comparing environment: a2")
    assert "Would share with environments before it" not in first
    assert "Would share with environments before it: 3 files" in second
    assert "Would write: " in first and "Would free on the source: " in second
    assert tree_snapshot(envs) == before
    assert not (home / ".conda" / "envs").exists()


def test_an_unprivileged_user_keeps_what_was_shared(unprivileged, make_env, tmp_path):
    base, run = unprivileged
    home = base / "home"
    home.mkdir()
    envs = base / "scratch" / "envs"
    for name in NAMES[:3]:
        make_env(envs / name, ["demo-app"])
    # The user's own environments and cache: every inode changes hands once,
    # its names staying one inode.
    for root in (base / "scratch", tmp_path / "rattler-cache", home):
        for dirpath, dirnames, filenames in os.walk(root):
            for name in [".", *dirnames, *filenames]:
                os.chown(os.path.join(dirpath, name), USER, USER, follow_symlinks=False)
    assert inode(envs / "a1" / DATA) == inode(envs / "a3" / DATA)
    out, code = run(home, "-d", envs, "--all")
    assert code == 0, out
    dest = home / ".conda" / "envs"
    assert len({inode(dest / name / DATA) for name in NAMES[:3]}) == 1
    st = (dest / "a1" / DATA).lstat()
    assert (st.st_uid, st.st_nlink) == (USER, 3)
    assert not envs.joinpath("a1").exists()


def test_a_failed_copy_counts_as_nothing_written(make_env, tmp_path, home, migrate):
    import json

    envs = make_envs(make_env, tmp_path, NAMES[:2])
    spoil(envs / "a2")
    out, err, code = migrate("-d", envs, "--all", "--json")
    assert code == 1
    document = json.loads(out)
    failed = next(e for e in document["environments"] if e["name"] == "a2")
    assert failed["status"] == "failed" and failed["written_files"] is None
    assert document["totals"]["written_files"] == next(
        e["written_files"] for e in document["environments"] if e["name"] == "a1"
    )
