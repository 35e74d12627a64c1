"""The byte-level core of relocation, on bytes alone: what a text or binary
file becomes when the prefix moves, however the file is cut into chunks."""

from __future__ import annotations

import os

import pytest

from conda_migrate_plugin.exceptions import RelocateError
from conda_migrate_plugin.relocation import prefix
from conda_migrate_plugin.relocation.chunks import patched_chunks
from conda_migrate_plugin.relocation.prefix import PrefixRewrite

OLD = "/scratch/u/envs/abc"
NEW = "/home/u/.conda/envs/abc"


def rewrite_text(data: bytes, chunks: list[bytes] | None = None, **kw) -> bytes:
    return b"".join(PrefixRewrite(OLD, NEW).text_chunks(chunks or [data], **kw))


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_text_replaces_the_prefix_and_paths_below_it():
    data = b"prefix=/scratch/u/envs/abc\nlib=/scratch/u/envs/abc/lib:/usr/lib\n"
    assert rewrite_text(data) == (
        b"prefix=/home/u/.conda/envs/abc\nlib=/home/u/.conda/envs/abc/lib:/usr/lib\n"
    )


def test_text_leaves_a_sibling_whose_name_extends_the_prefix():
    data = b"/scratch/u/envs/abc2/bin /scratch/u/envs/abc.old /scratch/u/envs/abc\n"
    assert rewrite_text(data) == (
        b"/scratch/u/envs/abc2/bin /scratch/u/envs/abc.old /home/u/.conda/envs/abc\n"
    )


@pytest.mark.parametrize("encoding", prefix.ENCODINGS[1:])
def test_text_replaces_the_prefix_in_each_of_condas_wide_encodings(encoding):
    data = f"x {OLD}/share y".encode(encoding)
    assert rewrite_text(data) == f"x {NEW}/share y".encode(encoding)


def test_text_split_at_every_size_is_what_it_is_whole():
    """Every cut of the stream, including one inside the prefix or between
    the prefix and the character that would make it a sibling's name."""
    data = (
        b"#!/bin/sh\n"
        b"a /scratch/u/envs/abc/bin b /scratch/u/envs/abcd c "
        + "/scratch/u/envs/abc".encode("utf-16-le")
        + b" /scratch/u/envs/abc"
    ) * 3
    whole = rewrite_text(data)
    assert whole.count(NEW.encode()) == 6
    assert whole.count(b"/scratch/u/envs/abcd") == 3
    for size in range(1, len(data) + 1):
        assert rewrite_text(data, split(data, size)) == whole, size


def test_safe_cut_moves_back_to_a_match_that_straddles_it():
    rewrite = PrefixRewrite(OLD, NEW)
    buf = b"." * 100 + OLD.encode() + b"/" + b"y" * (rewrite.keep - 10)
    naive = len(buf) - rewrite.keep
    assert 100 < naive < 100 + len(OLD)  # the naive cut falls inside the prefix
    assert rewrite._safe_cut(buf) == 100


def test_shebang_keeps_a_short_interpreter_path():
    data = b"#!/scratch/u/envs/abc/bin/python3 -E\nprint(1)\n"
    assert rewrite_text(data) == b"#!/home/u/.conda/envs/abc/bin/python3 -E\nprint(1)\n"


def test_shebang_too_long_falls_back_to_env_in_a_package_file():
    new = "/home/u/" + "d" * 120 + "/abc"
    data = f"#!{OLD}/bin/perl -w\nprint 1;\n".encode()
    out = b"".join(PrefixRewrite(OLD, new).text_chunks([data]))
    assert out == b"#!/usr/bin/env perl -w\nprint 1;\n"


def test_shebang_too_long_becomes_the_sh_trampoline_for_a_launcher():
    new = "/home/u/" + "d" * 120 + "/abc"
    data = f"#!{OLD}/bin/python3.12\nimport sys\n".encode()
    out = b"".join(PrefixRewrite(OLD, new).text_chunks([data], launcher=True))
    assert out == (
        b"#!/bin/sh\n'''exec' \"" + new.encode() + b'/bin/python3.12" "$0" "$@" #\'\'\''
        b"\nimport sys\n"
    )


def patch_file(tmp_path, data: bytes, placeholder: str, new: str = NEW) -> bytes:
    path = tmp_path / "lib.so"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        rewrite = PrefixRewrite(OLD, new)
        patches = rewrite.binary_patches(fd, placeholder, "lib/lib.so")
        return b"".join(patched_chunks(fd, patches))
    finally:
        os.close(fd)


#: Installed from a package whose placeholder was this long: the room a
#: longer prefix may use.
PLACEHOLDER = "/" + "p" * 60


def c_string(text: str, room: int) -> bytes:
    return text.encode() + b"\0" * room


def test_binary_shorter_prefix_is_padded_with_nuls_to_the_same_length(tmp_path):
    short = "/h/abc"
    data = b"\x7fELF" + c_string(f"{OLD}/lib", 5) + b"tail"
    out = patch_file(tmp_path, data, PLACEHOLDER, short)
    assert len(out) == len(data)
    assert out == b"\x7fELF" + c_string(f"{short}/lib", 5 + len(OLD) - len(short)) + (
        b"tail"
    )


def test_binary_longer_prefix_uses_the_nuls_after_the_string(tmp_path):
    grow = len(NEW) - len(OLD)
    data = b"\x01\x02" + c_string(f"{OLD}/lib:{OLD}/x", 2 * grow + 3) + b"end"
    out = patch_file(tmp_path, data, PLACEHOLDER)
    assert out == b"\x01\x02" + c_string(f"{NEW}/lib:{NEW}/x", 3) + b"end"


def test_binary_longer_prefix_without_room_is_refused(tmp_path):
    data = b"\x01" + c_string(f"{OLD}/lib", 1) + b"\x02" * 20
    with pytest.raises(RelocateError, match="does not fit in this binary file"):
        patch_file(tmp_path, data, PLACEHOLDER)


def test_binary_leaves_a_siblings_name(tmp_path):
    data = b"\x01" + c_string(f"{OLD}2/lib", 8) + b"\x02"
    assert patch_file(tmp_path, data, PLACEHOLDER) == data


@pytest.mark.parametrize("offset", range(0, 48, 5))
def test_binary_string_across_a_chunk_boundary(tmp_path, monkeypatch, offset):
    """Small chunks, so that the string, or the prefix in it, straddles the
    boundary both where it is found and where the patch is laid."""
    monkeypatch.setattr("conda_migrate_plugin.relocation.chunks.CHUNK", 64)
    short = "/h/abc"
    data = b"\xff" * offset + c_string(f"{OLD}/l", 2) + b"\xee" * 70
    want = (
        b"\xff" * offset
        + c_string(f"{short}/l", 2 + len(OLD) - len(short))
        + b"\xee" * 70
    )
    assert patch_file(tmp_path, data, PLACEHOLDER, short) == want


@pytest.mark.parametrize(
    "rel, kept",
    [
        ("conda-meta/history", True),
        ("conda-meta/abc-1.0-0.json", True),
        ("conda-meta/pinned", False),
        ("conda-meta/state", False),
        ("share/conda-meta/x.json", False),
    ],
)
def test_condas_bookkeeping_is_its_records_and_history_only(rel, kept):
    assert prefix.conda_bookkeeping(rel) is kept


@pytest.mark.parametrize(
    ("rel", "target", "leads"),
    [
        ("lib/libz.so", "libz.so.1", None),
        ("bin/python3", "../bin/python3.12", None),
        ("share/ref.fa", "../../../data/ref.fa", "/home/u/.conda/data/ref.fa"),
        ("share/ref.fa", "/scratch/u/data/ref.fa", "/scratch/u/data/ref.fa"),
        ("share/self", f"{NEW}/share/demo", None),
        ("share/up", "..", None),
        ("share/sibling", f"{NEW}-old/x", f"{NEW}-old/x"),
    ],
)
def test_leads_out_names_where_a_link_leaves_the_environment(rel, target, leads):
    assert prefix.leads_out(NEW, rel, target) == leads
