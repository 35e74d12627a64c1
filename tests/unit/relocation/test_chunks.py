"""The one pass over a file's bytes that the copy and its check share: what
it finds does not depend on where its reads cut the file."""

from __future__ import annotations

import hashlib
import os

import pytest

from conda_migrate_plugin.relocation.chunks import CHUNK, scan
from conda_migrate_plugin.relocation.prefix import PrefixRewrite

OLD = "/scratch/u/envs/abc"
NEW = "/home/u/.conda/envs/abc"


def scan_file(tmp_path, data: bytes, **kw):
    path = tmp_path / "file"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        return scan(fd, PrefixRewrite(OLD, NEW), **kw)
    finally:
        os.close(fd)


@pytest.mark.parametrize("at", [-len(OLD), -5, -1, 0])
def test_scan_finds_the_prefix_across_its_read_boundary(tmp_path, at):
    """The prefix starting just before, or at, the end of the first read."""
    data = b"x" * (CHUNK + at) + OLD.encode() + b"/lib\n" + b"y" * 10
    seen = scan_file(tmp_path, data, hashing=True)
    assert seen.names_old and not seen.has_nul and seen.old_in_text
    assert seen.size == len(data)
    assert seen.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("at", [-len(OLD), -5, 0])
@pytest.mark.parametrize("sibling", ["2/lib", ".old/lib"])
def test_scan_tells_a_siblings_name_across_the_boundary(tmp_path, at, sibling):
    """A read that ends right after the prefix does not say what follows
    it: a sibling environment's name there is not the prefix."""
    data = b"x" * (CHUNK + at) + OLD.encode() + sibling.encode() + b"\n"
    assert not scan_file(tmp_path, data).names_old


@pytest.mark.parametrize("size", [CHUNK, CHUNK + 3])
def test_scan_finds_the_prefix_ending_the_file(tmp_path, size):
    data = b"x" * (size - len(OLD)) + OLD.encode()
    assert scan_file(tmp_path, data).names_old


def test_scan_copies_every_byte_and_finds_a_nul_anywhere(tmp_path):
    data = b"a" * (2 * CHUNK + 7) + b"\0" + OLD.encode() + b"\n"
    out = tmp_path / "copy"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT)
    try:
        seen = scan_file(tmp_path, data, copy_to=fd)
    finally:
        os.close(fd)
    assert out.read_bytes() == data
    assert seen.names_old and seen.has_nul and not seen.old_in_text
    assert seen.sha256 is None
