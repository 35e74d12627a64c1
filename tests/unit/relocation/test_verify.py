"""File-by-file verification catches every kind of difference in a copy."""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING

import pytest

from conda_migrate_plugin.relocation.chunks import CHUNK
from conda_migrate_plugin.relocation.relocate import relocate
from conda_migrate_plugin.relocation.verify import verify_files
from tests.support.trees import softlink_by_hand

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def moved(make_env, tmp_path) -> tuple[Path, Path, Path]:
    """A source environment, its relocated copy in staging, and the final path."""
    source = make_env(tmp_path / "scratch" / "envs" / "abc", pip=True)
    (source / "lib/abs-link").symlink_to(source / "lib/libdemo.so")
    final = tmp_path / "home" / "envs" / "abc"
    staging = final.with_name("abc.partial")
    relocate(source, staging, final)
    return source, staging, final


def test_a_faithful_copy_verifies(moved):
    check = verify_files(*moved)
    assert check.problems == []
    assert check.notes == []
    assert check.files > 10


def test_a_siblings_name_where_a_read_ends_is_not_the_old_prefix(moved):
    """Text naming a sibling environment (``abc2``) with the prefix's last
    byte the last of a read: the byte after it, in the next read, says it is
    another name; the copy, unchanged, is not still naming the source."""
    source, staging, final = moved
    start = CHUNK - len(str(source))
    data = b"x" * start + str(source).encode() + b"2/share/notes\n"
    for root in (source, staging):
        (root / "share/sibling.txt").write_bytes(data)
    check = verify_files(source, staging, final)
    assert check.problems == []


def test_catches_a_corrupted_byte(moved):
    source, staging, final = moved
    for rel in ("share/demo/data.txt", "lib/libdemo.so", "bin/extra-tool"):
        path = staging / rel
        data = bytearray(path.read_bytes())
        data[-2] ^= 0x01
        path.write_bytes(bytes(data))
    problems = verify_files(source, staging, final).problems
    assert len(problems) == 3
    assert [p.split(":")[0] for p in problems] == [
        "bin/extra-tool",
        "lib/libdemo.so",
        "share/demo/data.txt",
    ]


def test_catches_a_missing_file(moved):
    source, staging, final = moved
    (staging / "etc/demo/demo.conf").unlink()
    (staging / "lib/python3.11/site-packages/extra_tool.pth").unlink()
    problems = verify_files(source, staging, final).problems
    assert any(p.startswith("etc/demo/demo.conf: missing") for p in problems)
    assert any(p.startswith("etc/demo/demo.conf: listed in") for p in problems)
    assert any("extra_tool.pth: missing" in p for p in problems)


def test_catches_a_changed_symlink(moved):
    source, staging, final = moved
    (staging / "lib/abs-link").unlink()
    (staging / "lib/abs-link").symlink_to(source / "lib/libdemo.so")
    (staging / "bin/python").unlink()
    (staging / "bin/python").write_text("not a link\n")
    problems = verify_files(source, staging, final).problems
    assert any(p.startswith("lib/abs-link: symlink to") for p in problems)
    assert any(p.startswith("bin/python: a file in the copy") for p in problems)


@pytest.mark.parametrize(
    ("copied", "differs"),
    [
        ("../../../datasets/ref.fa", True),  # as conda's clone copies it
        ("{elsewhere}", True),
        ("{data}", False),
    ],
)
def test_a_relative_link_out_must_lead_where_it_led(moved, tmp_path, copied, differs):
    """From the copy's place the source's relative target leads elsewhere:
    the copy's link must lead where the source's did. One that dangled in
    the source is held to its target as it was."""
    source, staging, final = moved
    data = tmp_path / "scratch" / "datasets" / "ref.fa"
    data.parent.mkdir()
    data.write_text(">chr1\n")
    elsewhere = tmp_path / "home" / "datasets" / "ref.fa"
    (source / "share/ref.fa").symlink_to("../../../datasets/ref.fa")
    (source / "share/gone.fa").symlink_to("../../../datasets/gone.fa")
    target = copied.format(data=os.path.realpath(data), elsewhere=elsewhere)
    (staging / "share/ref.fa").symlink_to(target)
    (staging / "share/gone.fa").symlink_to(os.path.realpath(data.with_name("gone.fa")))
    check = verify_files(source, staging, final)
    assert [p.split(":")[0] for p in check.problems] == (
        ["share/gone.fa", "share/ref.fa"] if differs else ["share/gone.fa"]
    )
    assert bool(check.notes) != differs


def test_a_link_into_the_package_cache_is_checked_as_the_file_it_became(
    make_env, tmp_path
):
    """A softlinked environment's copy holds the files themselves (either
    engine): each is held to the bytes its link shows."""
    source = make_env(tmp_path / "scratch" / "envs" / "abc")
    linked = softlink_by_hand(source)
    final = tmp_path / "home" / "envs" / "abc"
    staging = final.with_name("abc.partial")
    relocate(source, staging, final)
    assert [rel for rel in linked if (staging / rel).is_symlink()] == []
    assert verify_files(source, staging, final).problems == []
    data = staging / "share/demo/data.txt"
    data.write_bytes(data.read_bytes() + b"more\n")
    relinked = next(rel for rel in linked if rel != "share/demo/data.txt")
    (staging / relinked).unlink()
    (staging / relinked).symlink_to(tmp_path / "elsewhere")
    problems = verify_files(source, staging, final).problems
    assert sorted(p.split(":")[0] for p in problems) == sorted(
        [relinked, "share/demo/data.txt"]
    )


def test_catches_the_old_prefix_left_in_a_text_file(moved):
    source, staging, final = moved
    (source / "etc/notes.txt").write_text(f"data in {source}/share\n")
    (staging / "etc/notes.txt").write_text(f"data in {source}/share\n")
    problems = verify_files(source, staging, final).problems
    assert any(
        p.startswith("etc/notes.txt: still names the old prefix") for p in problems
    )


def test_an_edited_source_file_is_a_note(make_env, tmp_path):
    source = make_env(tmp_path / "scratch" / "envs" / "abc")
    data = source / "share/demo/data.txt"
    data.unlink()  # break the hardlink into the package cache before editing
    data.write_text("edited by the user\n")
    final = tmp_path / "home" / "abc"
    staging = final.with_name("abc.partial")
    relocate(source, staging, final)
    check = verify_files(source, staging, final)
    assert check.problems == []
    assert any(n.startswith("share/demo/data.txt: the source") for n in check.notes)


def test_a_record_not_matching_the_rewritten_file_is_a_problem(moved):
    source, staging, final = moved
    record = next((staging / "conda-meta").glob("demo-binary-*.json"))
    text = record.read_text()
    digest = hashlib.sha256((staging / "lib/libdemo.so").read_bytes()).hexdigest()
    record.write_text(text.replace(digest, "0" * 64))
    problems = verify_files(source, staging, final).problems
    assert any("sha256_in_prefix" in p for p in problems)


def test_the_packaged_file_where_the_source_was_changed_is_a_problem(moved):
    """What ``pip install -U pip`` leaves: the source's files no longer
    match conda's records. A copy holding the recorded bytes (as conda's
    clone links them again from the package cache) is not the source."""
    source, staging, final = moved
    for rel in ("share/demo/data.txt", "bin/extra-tool"):
        packaged = (staging / rel).read_bytes()
        (source / rel).unlink()  # break the hardlink into the package cache
        (source / rel).write_bytes(packaged + b"# upgraded\n")
    problems = verify_files(source, staging, final).problems
    assert problems == [
        "bin/extra-tool: differs from the source (prefix substituted)",
        "share/demo/data.txt: differs from the source",
    ]


def test_a_path_only_the_copy_has_is_a_problem(moved):
    """The old pip's files, linked again by the clone after pip removed
    them from the source."""
    source, staging, final = moved
    old_pip = staging / "lib/python3.11/site-packages/pip-23.2.1.dist-info"
    old_pip.mkdir()
    (old_pip / "RECORD").write_text("pip/__init__.py,,\n")
    (staging / "share/demo/stale.txt").write_text("left by an old version\n")
    problems = verify_files(source, staging, final).problems
    pip_info = "lib/python3.11/site-packages/pip-23.2.1.dist-info"
    assert problems == [
        f"{pip_info}: only in the copy, not in the source",
        "share/demo/stale.txt: only in the copy, not in the source",
    ]
    allowed = verify_files(source, staging, final, extra_allowed=True)
    assert allowed.problems == []
