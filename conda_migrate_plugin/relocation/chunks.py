"""How relocation moves a file's bytes: a bounded piece at a time, so memory
stays flat however large a file or however many threads, or by the kernel
without passing through Python.

``scan`` is the one pass that learns what the copy and its check need of a
file's bytes (their sha256, whether they name the old prefix, whether they
hold a NUL, which makes them binary), copying them on the way when asked:
the relocate engine copies and checks unowned and package files with it,
the verification reads both trees with it. It reads at offsets and never
moves a descriptor's position, so a kernel copy of the same descriptor may
follow it.
"""

from __future__ import annotations

import codecs
import errno
import hashlib
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

#: Bytes per read: large enough that per-call overhead vanishes, small
#: enough that memory stays flat and a piece stays in the CPU's cache while
#: it is hashed, searched and written; ``scan`` keeps one such buffer per
#: thread for all its files.
CHUNK = 1 << 18

_buffers = threading.local()


class OldPrefix(Protocol):
    """What ``scan`` looks for (``prefix.PrefixRewrite`` is one)."""

    #: Every spelling of the old prefix, as bytes.
    olds_bytes: tuple[bytes, ...]
    #: Bytes kept from one piece to the next, so no match is split.
    keep: int

    def names_old(self, data: bytes, *, more: bool = False) -> bool: ...


@dataclass(frozen=True)
class Scanned:
    """What one pass over a file's bytes found."""

    #: None unless the scan was asked to hash.
    sha256: str | None
    names_old: bool
    has_nul: bool
    #: The bytes read.
    size: int

    @property
    def old_in_text(self) -> bool:
        """Text (no NUL byte) naming the old prefix: as it is, it would send
        the new environment back to the old one."""
        return self.names_old and not self.has_nul


def scan(
    fd: int,
    rewrite: OldPrefix,
    *,
    copy_to: int | None = None,
    hashing: bool = False,
    until_old: bool = False,
) -> Scanned:
    """Read the file behind ``fd`` through this thread's buffer, writing
    each piece to ``copy_to`` (a descriptor) when given, hashing it when
    ``hashing``, and looking in it for the old prefix of ``rewrite``: the
    cheap search of the raw buffer first, the exact one (a path, not a
    sibling's name) only where that finds something. ``until_old``: stop
    at the first piece naming the old prefix (only that is wanted)."""
    buf = getattr(_buffers, "buf", None)
    if buf is None:
        buf = _buffers.buf = bytearray(CHUNK)
    view = memoryview(buf)
    digest = hashlib.sha256() if hashing else None
    olds, keep = rewrite.olds_bytes, rewrite.keep
    names_old = has_nul = False
    tail = b""
    offset = 0
    while n := os.preadv(fd, [buf], offset):
        offset += n
        piece = view[:n]
        if digest is not None:
            digest.update(piece)
        if copy_to is not None:
            write_all(copy_to, piece)
        has_nul = has_nul or buf.find(b"\0", 0, n) != -1
        if not names_old and any(
            buf.find(old, 0, n) != -1 or old in tail + bytes(view[: min(n, keep)])
            for old in olds
        ):
            names_old = rewrite.names_old(tail + bytes(piece), more=True)
            if names_old and until_old:
                break
        tail = bytes(view[n - keep : n]) if n >= keep else (tail + piece)[-keep:]
    # A name the last read ended with, undecided until now: nothing follows.
    names_old = names_old or rewrite.names_old(tail)
    return Scanned(digest.hexdigest() if digest else None, names_old, has_nul, offset)


def names_old(fd: int, rewrite: OldPrefix) -> bool:
    """Whether the file behind ``fd`` names the old prefix anywhere."""
    return scan(fd, rewrite, until_old=True).names_old


def read_chunks(fd: int, offset: int = 0) -> Iterator[bytes]:
    """The file behind ``fd`` from ``offset`` on, a bounded piece at a time."""
    while True:
        chunk = os.pread(fd, CHUNK, offset)
        if not chunk:
            return
        offset += len(chunk)
        yield chunk


def is_utf8_text(fd: int) -> bool:
    """Text, for files no package describes: UTF-8 without NUL bytes.

    conda's clone decides by UTF-8 alone; refusing NULs as well keeps a binary
    that happens to decode from being rewritten with a different length.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for chunk in read_chunks(fd):
            if b"\0" in chunk:
                return False
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def patched_chunks(fd: int, patches: list[tuple[int, bytes]]) -> Iterator[bytes]:
    """The file behind ``fd`` with ``patches`` laid over it, streamed."""
    offset = 0
    pending = list(patches)
    for chunk in read_chunks(fd):
        end = offset + len(chunk)
        if pending and pending[0][0] < end:
            buf = bytearray(chunk)
            while pending and pending[0][0] < end:
                at, data = pending[0]
                lo = max(at, offset)
                hi = min(at + len(data), end)
                buf[lo - offset : hi - offset] = data[lo - at : hi - at]
                if at + len(data) > end:
                    break
                pending.pop(0)
            chunk = bytes(buf)
        offset = end
        yield chunk


def find_all(fd: int, needle: bytes, offset: int = 0) -> Iterator[int]:
    """Every offset of ``needle`` in the file, chunk by chunk; consecutive
    chunks overlap by one byte less than the needle so none is missed twice
    or split."""
    overlap = len(needle) - 1
    while True:
        chunk = os.pread(fd, CHUNK, offset)
        if len(chunk) < len(needle):
            return
        at = chunk.find(needle)
        while at != -1:
            yield offset + at
            at = chunk.find(needle, at + 1)
        if len(chunk) < CHUNK:
            return
        offset += len(chunk) - overlap


def find_from(fd: int, needle: bytes, offset: int) -> int:
    """The first offset of ``needle`` at or after ``offset``; -1 if none."""
    for at in find_all(fd, needle, offset):
        return at
    return -1


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def sha256(chunks: Iterable[bytes], *, write_to: int | None = None) -> str:
    """The sha256 of ``chunks``, written to the descriptor ``write_to`` on
    the way when given: the hash of what was written, without reading it
    back."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
        if write_to is not None:
            write_all(write_to, chunk)
    return digest.hexdigest()


_kernel_copy_works = True


def kernel_copy(src: int, dst: int, size: int, *, sparse: bool = False) -> None:
    """Copy without passing the bytes through Python, to the end of the file
    (one that grew while being copied is copied whole): copy_file_range lets
    the filesystem share extents (XFS, btrfs reflinks) or copy server-side
    (NFS 4.2); sendfile is the fallback across filesystems."""
    global _kernel_copy_works
    if sparse and _copy_data_only(src, dst, size):
        return
    while _kernel_copy_works:
        try:
            if not os.copy_file_range(src, dst, 1 << 30):
                return
        except OSError as exc:
            if exc.errno not in (
                errno.EXDEV,
                errno.ENOSYS,
                errno.EINVAL,
                errno.EOPNOTSUPP,
            ):
                raise
            _kernel_copy_works = False
    while os.sendfile(dst, src, None, 1 << 30):
        pass


def _copy_data_only(src: int, dst: int, size: int) -> bool:
    """Copy a file with holes as one with the same holes (a copy filled with
    zeros could need far more room than the preflight counted); False where
    the filesystem cannot say where the data is."""
    offset = 0
    try:
        while offset < size:
            try:
                start = os.lseek(src, offset, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: only a hole is left
                    raise
                break
            end = os.lseek(src, start, os.SEEK_HOLE)
            for chunk in read_chunks(src, start):
                chunk = chunk[: end - start]
                os.pwrite(dst, chunk, start)
                start += len(chunk)
                if start >= end:
                    break
            offset = end
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP) and offset == 0:
            return False
        raise
    os.ftruncate(dst, size)
    return True
