"""The home quota: asked of the site's tools before anything is copied.

``statvfs`` on an NFS, GPFS or Lustre home is the server's free space
(terabytes), not what the user may still write: a move that cannot fit would
start anyway and meet ``EDQUOT`` part way. So the tools that know are asked,
in bytes and in files: a command the site configures, then the filesystem's
own (``lfs quota``, ``mmlsquota``, ``beegfs-ctl --getquota``), then the Linux
quota tools' ``quota`` (local filesystems, and NFS through rquotad). What an
environment needs is counted after sharing (see ``relocation.share``), in
whole blocks and inodes. No tool answering is not an error: the run says so.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .classify import Kind, classify
from .exceptions import MigrateError
from .preflight import MARGIN_BYTES, MARGIN_FRACTION, MARGIN_INODES
from .progress import size

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .relocation.share import SharedFiles
    from .snapshot import Footprint

#: The site's own command, which wins over the tools: the environment
#: variable, or this key in a ``.condarc``.
COMMAND_VARIABLE = "CONDA_MIGRATE_QUOTA_COMMAND"
COMMAND_KEY = "migrate_quota_command"
#: Where GPFS installs its commands, rarely on a user's PATH.
GPFS_BIN = "/usr/lpp/mmfs/bin"
TIMEOUT = 30
#: Quota tools count 1 KiB blocks.
KIB = 1024


@dataclass(frozen=True)
class Mount:
    point: str
    source: str
    fstype: str


@dataclass(frozen=True)
class Quota:
    """What a tool said: usage and limits (None: no limit), bytes and files."""

    tool: str
    used_bytes: int
    limit_bytes: int | None
    used_files: int
    limit_files: int | None

    @property
    def left_bytes(self) -> int | None:
        return None if self.limit_bytes is None else self.limit_bytes - self.used_bytes

    @property
    def left_files(self) -> int | None:
        return None if self.limit_files is None else self.limit_files - self.used_files

    def describe(self) -> str:
        def part(used: int, limit: int | None, unit: Callable[[int], str]) -> str:
            if limit is None:
                return f"{unit(used)} used, no limit"
            return (
                f"{unit(used)} used of {unit(limit)}, {unit(max(0, limit - used))} left"
            )

        return (
            f"{part(self.used_bytes, self.limit_bytes, size)}; "
            f"{part(self.used_files, self.limit_files, lambda n: f'{n} files')} "
            f"(said {self.tool})"
        )


@dataclass
class Room:
    """What one run knows of the destination's room: the files the
    environments committed so far share (None: ``--copy``), the quota as
    the run began (None: no tool answered, and none is asked again), and
    what the environments planned or copied so far need."""

    shared: SharedFiles | None
    #: The destination's nearest existing directory: what the tools are asked.
    dest: Path
    #: The destination, as the user names it.
    root: Path
    before: Quota | None = None
    tried: list[str] = field(default_factory=list)
    needed_bytes: int = 0
    needed_files: int = 0
    #: Set once the destination filled during a copy: what happened.
    full: str | None = None

    def now(self) -> Quota | None:
        """The quota as it is now, asked again in the same order (none is
        asked where none answered as the run began)."""
        if self.before is None:
            return None
        return ask(self.dest)[0]

    def plan(self, footprint: Footprint, wanted: Need) -> None:
        """Under ``--dry-run``: count ``wanted``, and the environment's files
        other names share as held, for those planned after it (conda
        hard-links only files it writes no prefix into: those stay shared)."""
        self.needed_bytes += wanted.bytes
        self.needed_files += wanted.files
        if self.shared is None:
            return
        for entries in footprint.listing.values():
            for rel, st in entries:
                if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                    if not rel.startswith("conda-meta/"):
                        self.shared.planned.add((st.st_dev, st.st_ino))

    def after(self) -> Quota | None:
        """The quota once what was planned is written (``--dry-run``)."""
        if self.before is None:
            return None
        return replace(
            self.before,
            used_bytes=self.before.used_bytes + self.needed_bytes,
            used_files=self.before.used_files + self.needed_files,
        )


def start(dest_root: Path, share: bool) -> Room:
    """The run's room, the quota asked once up front."""
    from .relocation.share import SharedFiles

    dest = _existing(dest_root)
    before, tried = ask(dest)
    return Room(SharedFiles() if share else None, dest, dest_root, before, tried)


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _limit(soft: int, hard: int) -> int | None:
    """The lower limit that is set: past the soft one the grace period
    starts, after which writes fail as at the hard one."""
    limits = [n for n in (soft, hard) if n > 0]
    return min(limits) if limits else None


def _number(text: str) -> int:
    """A count as the tools print it: ``1234*`` past a limit, ``[1234]``
    when Lustre is unsure, ``1234+`` when BeeGFS counts some targets only."""
    return int(text.strip("*[]+"))


def parse_quota(output: str) -> tuple[int, int | None, int, int | None] | None:
    """``quota -v -w -p -f PATH``: a title, a heading, then one line per
    filesystem: device, blocks, quota, limit, grace, files, quota, limit,
    grace (1 KiB blocks; ``-p`` makes every grace one word)."""
    return _columns(output, "blocks")


def parse_lfs(output: str) -> tuple[int, int | None, int, int | None] | None:
    """``lfs quota -u USER PATH``: the same columns as ``quota`` with
    ``kbytes``; a filesystem name longer than 15 characters puts the numbers
    on the next line; the grace is ``-`` when none runs."""
    return _columns(output, "kbytes")


def _columns(output: str, used: str) -> tuple[int, int | None, int, int | None] | None:
    """The first filesystem's numbers after the ``Filesystem USED`` heading."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.split()[:2] == ["Filesystem", used]:
            fields = " ".join(lines[i + 1 :]).split()
            if len(fields) >= 9:
                return _row(fields[1:4], fields[5:8], KIB)
    return None


def parse_mmlsquota(output: str) -> tuple[int, int | None, int, int | None] | None:
    """``mmlsquota -u USER -Y DEVICE``: colon-separated, a HEADER line naming
    the fields, values in KiB. What is in doubt counts as used: GPFS lets
    usage plus in-doubt reach the hard limit, no more."""
    names: list[str] = []
    for line in output.splitlines():
        fields = line.split(":")
        if len(fields) < 4 or fields[0] != "mmlsquota":
            continue
        if fields[2] == "HEADER":
            names = fields
            continue
        if not names:
            continue
        row = dict(zip(names, fields))
        if row.get("quotaType") != "USR":
            continue
        blocks = _number(row["blockUsage"]) + _number(row.get("blockInDoubt") or "0")
        files = _number(row["filesUsage"]) + _number(row.get("filesInDoubt") or "0")
        return (
            blocks * KIB,
            _scaled(_limit(_number(row["blockQuota"]), _number(row["blockLimit"]))),
            files,
            _limit(_number(row["filesQuota"]), _number(row["filesLimit"])),
        )
    return None


def parse_beegfs(output: str) -> tuple[int, int | None, int, int | None] | None:
    """``beegfs-ctl --getquota --uid UID --csv``: ``name,id,size,hard,files,hard``
    with bytes; ``unlimited`` (or 0) where no limit is set, ``-`` where the
    storage targets cannot count chunk files."""
    lines = [line.strip() for line in output.splitlines()]
    for i, line in enumerate(lines):
        if line == "name,id,size,hard,files,hard" and i + 1 < len(lines):
            fields = lines[i + 1].split(",")
            if len(fields) != 6:
                return None

            def limit(text: str) -> int | None:
                return None if text in ("unlimited", "-") else _limit(0, _number(text))

            files = 0 if fields[4] == "-" else _number(fields[4])
            return _number(fields[2]), limit(fields[3]), files, limit(fields[5])
    return None


def parse_site(output: str) -> tuple[int, int | None, int, int | None] | None:
    """The site's command prints ``bytes_used=N``, ``bytes_limit=N``,
    ``files_used=N`` and ``files_limit=N`` lines (a limit of 0 or left out:
    none); see the README."""
    values = {}
    for line in output.splitlines():
        key, _, value = line.strip().partition("=")
        if value.strip().isdigit():
            values[key.strip()] = int(value)
    if "bytes_used" not in values:
        return None
    return (
        values["bytes_used"],
        _limit(0, values.get("bytes_limit", 0)),
        values.get("files_used", 0),
        _limit(0, values.get("files_limit", 0)),
    )


def _row(
    blocks: Sequence[str], files: Sequence[str], unit: int
) -> tuple[int, int | None, int, int | None]:
    used, soft, hard = (_number(f) for f in blocks)
    fused, fsoft, fhard = (_number(f) for f in files)
    return used * unit, _scaled(_limit(soft, hard), unit), fused, _limit(fsoft, fhard)


def _scaled(limit: int | None, unit: int = KIB) -> int | None:
    return None if limit is None else limit * unit


def mount_of(path: Path) -> Mount:
    """The mount holding ``path``, from ``/proc/self/mountinfo`` (the
    deepest mount point above its real path)."""
    real = os.path.realpath(path)
    best = Mount("/", "", "")
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                left, _, right = line.partition(" - ")
                point = _unescape(left.split()[4])
                fstype, source = (right.split() + ["", ""])[:2]
                inside = real == point or real.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best.point):
                    best = Mount(point, _unescape(source), fstype)
    except OSError:
        pass
    return best


def _unescape(text: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code in ("040", "011", "012", "134"):
        text = text.replace(f"\\{code}", chr(int(code, 8)))
    return text


def site_command() -> str | None:
    """The site's quota command: the environment variable, else the key in
    the ``.condarc`` files conda reads, the one it lets win first."""
    home = Path.home()
    command = os.environ.get(COMMAND_VARIABLE)
    if command:
        return command
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    places = [os.environ.get("CONDARC", "")]
    places += [
        str(home / ".condarc"),
        str(home / ".conda" / ".condarc"),
        str(home / ".config" / "conda" / ".condarc"),
        os.path.join(sys.prefix, ".condarc"),
        "/etc/conda/.condarc",
        "/etc/conda/condarc",
    ]
    for place in filter(None, places):
        try:
            config = YAML(typ="safe").load(Path(place))
        except (OSError, YAMLError):
            continue
        if isinstance(config, dict) and isinstance(config.get(COMMAND_KEY), str):
            return config[COMMAND_KEY]
    return None


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=GPFS_BIN)


def _run(argv: list[str]) -> str | None:
    """A tool's output, whatever its exit code (``quota`` exits 1 when the
    user is over a limit); None when it could not run at all."""
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=TIMEOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "LC_ALL": "C"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout


def tools(
    dest: Path, mount: Mount | None = None
) -> list[
    tuple[
        str, list[str], Callable[[str], tuple[int, int | None, int, int | None] | None]
    ]
]:
    """The tools to ask about ``dest``, in order: the site's command, the
    one of the filesystem's type, the other filesystems' tools, ``quota``;
    only those installed here."""
    mount = mount or mount_of(dest)
    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # no passwd entry (a container, LDAP down): the tools take the id
        user = str(os.getuid())
    found: list[
        tuple[
            str,
            list[str],
            Callable[[str], tuple[int, int | None, int, int | None] | None],
        ]
    ] = []
    command = site_command()
    if command:
        argv = shlex.split(command)
        if argv and _which(argv[0]):
            found.append((command, [*argv, str(dest)], parse_site))
    device = mount.source.removeprefix("/dev/")
    by_type = {
        "lustre": ("lfs quota", ["lfs", "quota", "-u", user, mount.point], parse_lfs),
        "gpfs": ("mmlsquota", ["mmlsquota", "-u", user, "-Y", device], parse_mmlsquota),
        "beegfs": (
            "beegfs-ctl --getquota",
            [
                "beegfs-ctl",
                "--getquota",
                "--uid",
                str(os.getuid()),
                "--csv",
                f"--mount={mount.point}",
            ],
            parse_beegfs,
        ),
    }
    ordered = sorted(by_type, key=lambda fstype: fstype != mount.fstype)
    for fstype in ordered:
        name, argv, parse = by_type[fstype]
        path = _which(argv[0])
        if path:
            found.append((name, [path, *argv[1:]], parse))
    path = _which("quota")
    if path:
        found.append(
            ("quota", [path, "-u", "-v", "-w", "-p", "-f", mount.point], parse_quota)
        )
    return found


def ask(dest: Path, mount: Mount | None = None) -> tuple[Quota | None, list[str]]:
    """The first answer of the tools about ``dest`` (an existing directory
    or its nearest existing parent), and the names of those asked."""
    tried = []
    for name, argv, parse in tools(dest, mount):
        tried.append(name)
        output = _run(argv)
        parsed = parse(output) if output else None
        if parsed is not None:
            return Quota(name, *parsed), tried
    return None, tried


@dataclass(frozen=True)
class Need:
    """What an environment takes in the destination, and what of it the
    environments before it in the run already hold."""

    bytes: int
    files: int
    shared_bytes: int = 0
    shared_files: int = 0


def block_size(dest: Path) -> int:
    """The destination's block, as quotas count it: ``statvfs``'s fragment
    size, but 4 KiB where a network filesystem reports its transfer size
    (an NFS client says 1 MiB) rather than the server's blocks."""
    try:
        frsize = os.statvfs(dest).f_frsize
    except OSError:
        return 4096
    return frsize if 0 < frsize <= 65536 else 4096


def need(footprint: Footprint, block: int, shared: SharedFiles | None) -> Need:
    """Whole blocks and inodes the copy takes, the files an earlier
    environment of the run holds left out (they become links)."""
    shared_bytes = shared_files = 0
    if shared is not None:
        seen = set()
        for entries in footprint.listing.values():
            for _, st in entries:
                key = (st.st_dev, st.st_ino)
                if stat.S_ISREG(st.st_mode) and key not in seen and shared.covers(st):
                    seen.add(key)
                    shared_files += 1
                    shared_bytes += -(-st.st_size // block) * block
    # The environment's own directory, and each hardlinked file once.
    unique_inodes = footprint.inodes + 1 - _extra_names(footprint)
    return Need(
        footprint.allocated(block) - shared_bytes,
        unique_inodes - shared_files,
        shared_bytes,
        shared_files,
    )


def _extra_names(footprint: Footprint) -> int:
    """Names of a file hardlinked within the environment beyond the first."""
    names = 0
    seen = set()
    for entries in footprint.listing.values():
        for _, st in entries:
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    names += 1
                seen.add(key)
    return names


def freed(footprint: Footprint) -> tuple[int, int]:
    """Files and bytes the removal of the source gives back: an inode other
    names share (the package cache's, another environment's) stays."""
    counts: dict[tuple[int, int], int] = {}
    stats = {}
    for entries in footprint.listing.values():
        for _, st in entries:
            key = (st.st_dev, st.st_ino)
            counts[key] = counts.get(key, 0) + 1
            stats[key] = st
    files = nbytes = 0
    for key, names in counts.items():
        st = stats[key]
        if stat.S_ISDIR(st.st_mode) or names >= st.st_nlink:
            files += 1
            nbytes += st.st_blocks * 512
    return files + 1, nbytes  # and the environment's own directory


def usage(root: Path) -> tuple[int, int]:
    """Allocated bytes and inodes below ``root``, a hard link counted once,
    as a quota counts them."""
    seen: dict[tuple[int, int], int] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames, *([] if dirpath != str(root) else ["."])]:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            seen[(st.st_dev, st.st_ino)] = st.st_blocks * 512
    return sum(seen.values()), len(seen)


def package_caches(directories: Sequence[Path]) -> list[Path]:
    """The package caches among ``directories`` and directly inside them."""
    found = []
    for directory in directories:
        try:
            inside = [directory, *(p for p in directory.iterdir() if p.is_dir())]
        except OSError:
            continue
        for candidate in inside:
            try:
                if classify(candidate, os.listdir(candidate)) is Kind.PACKAGE_CACHE:
                    found.append(candidate)
            except OSError:
                continue
    return found


def check_quota(quota: Quota, wanted: Need, dest_root: Path) -> None:
    """Refuse, before anything is copied, what cannot fit the quota."""
    need_bytes = int(wanted.bytes * (1 + MARGIN_FRACTION)) + MARGIN_BYTES
    need_files = wanted.files + MARGIN_INODES
    short = []
    if quota.left_bytes is not None and quota.left_bytes < need_bytes:
        short.append(
            f"{size(need_bytes)} (with margin), {size(max(0, quota.left_bytes))} left"
        )
    if quota.left_files is not None and quota.left_files < need_files:
        short.append(
            f"{need_files} files (with margin), {max(0, quota.left_files)} left"
        )
    if not short:
        return
    sharing = (
        f" ({wanted.shared_files} files, {size(wanted.shared_bytes)}, left out: "
        "environments migrated before it hold them)"
        if wanted.shared_files
        else ""
    )
    raise MigrateError(
        f"The environment does not fit your quota on {dest_root}: it needs "
        + " and ".join(short)
        + f"{sharing}. Quota: {quota.describe()}.",
        hint="Nothing was copied and the environment is untouched. Make room "
        "(conda clean --all frees conda's package cache in $HOME), migrate fewer "
        "environments at a time, or choose another destination with --dest.",
    )
