"""Extended attributes of environment files: ``user.*`` and POSIX ACLs.

Users tag files (``user.*``: provenance, checksums, tools' metadata) and
share them with their group through ACLs; a copy without them is not the
environment they had. Other namespaces stay behind on purpose: ``security.*``
is the destination's policy to set, ``trusted.*`` is root's.

Symlinks carry none (Linux refuses ``user.*`` on them), and a filesystem
that does not support a namespace (ramfs, some NFS servers) refuses it with
``EOPNOTSUPP``: the caller says so, since those attributes will not follow.
"""

from __future__ import annotations

import errno
import os
import struct
import tempfile

#: Whole POSIX ACLs, kept as the kernel's binary form.
ACLS = ("system.posix_acl_access", "system.posix_acl_default")

#: What a filesystem answers for a namespace it does not support (FUSE
#: without xattr handlers answers ENOSYS).
_UNSUPPORTED = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})


def kept(name: str) -> bool:
    return name.startswith("user.") or name in ACLS


def read(target: int | str) -> dict[str, bytes]:
    """The kept attributes of a file descriptor or a path (a symlink's own,
    which are none); none where the filesystem has no such support."""
    follow = {} if isinstance(target, int) else {"follow_symlinks": False}
    try:
        names = os.listxattr(target, **follow)
    except OSError as exc:
        if exc.errno in _UNSUPPORTED:
            return {}
        raise
    found = {}
    for name in names:
        if not kept(name):
            continue
        try:
            found[name] = os.getxattr(target, name, **follow)
        except OSError as exc:
            if exc.errno != errno.ENODATA:  # removed meanwhile
                raise
    return found


def write(target: int | str, attributes: dict[str, bytes]) -> list[str]:
    """Set ``attributes``; return the names the filesystem does not support.
    The access ACL goes last: it sets the mode's bits too, and a read-only
    one would keep its owner from setting the others."""
    follow = {} if isinstance(target, int) else {"follow_symlinks": False}
    refused = []
    for name in sorted(attributes, key=lambda name: name == ACLS[0]):
        value = attributes[name]
        try:
            os.setxattr(target, name, value, **follow)
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:
                raise
            refused.append(name)
    return refused


def differing(want: dict[str, bytes], have: dict[str, bytes]) -> list[str]:
    """The attributes of ``want`` that ``have`` lacks or holds otherwise. An
    attribute only ``have`` holds is no difference: a copy inherits the
    default ACL of the directory it is made in."""
    return sorted(name for name, value in want.items() if have.get(name) != value)


#: A minimal access ACL (owner rw, group r, others r) in the kernel's form:
#: version 2, then (tag, permissions, id) for USER_OBJ, GROUP_OBJ, OTHER.
_PROBE_ACL = struct.pack(
    "<I" + "HHI" * 3, 2, 0x01, 6, 0xFFFFFFFF, 0x04, 4, 0xFFFFFFFF, 0x20, 4, 0xFFFFFFFF
)


def unsupported_warning(entries: list[str]) -> str:
    """One line for what the destination could not keep."""
    such = "; ".join(entries[:3]) + ("; ..." if len(entries) > 3 else "")
    return (
        f"the destination does not support these extended attributes or ACLs, "
        f"so the copy has them on none of {len(entries)} entries that had them "
        f"({such})"
    )


def supported(directory: str, name: str) -> bool:
    """Whether a file made in ``directory`` can hold attribute ``name``: asked
    of a file no one sees (``O_TMPFILE``), or of a temporary one."""
    probe = (
        ("system.posix_acl_access", _PROBE_ACL)
        if name in ACLS
        else (
            "user.conda-migrate-probe",
            b"",
        )
    )
    try:
        fd = os.open(directory, os.O_TMPFILE | os.O_WRONLY, 0o600)
    except OSError:
        fd, path = tempfile.mkstemp(dir=directory)
        os.unlink(path)
    try:
        return not write(fd, dict([probe]))
    finally:
        os.close(fd)
