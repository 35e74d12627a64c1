"""What the site's quota tools say about the home, in bytes and in files.

``statvfs`` on an NFS, GPFS or Lustre home is the server's free space, so
``quota`` asks these instead: a command the site configures, then the
filesystem's own (``lfs quota``, ``mmlsquota``, ``beegfs-ctl --getquota``),
then the Linux quota tools' ``quota`` (local filesystems, and NFS through
rquotad). Each answer is parsed into the same ``Quota``.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .mounts import Mount, holding, mounts
from .progress import size

if TYPE_CHECKING:
    from collections.abc import Sequence

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


#: What a tool said, parsed: bytes used, the byte limit, files used, the
#: file limit (a limit of None: none is set).
Numbers = tuple[int, int | None, int, int | None]
#: A tool to ask: its name as the run reports it, its command, its parser.
Tool = tuple[str, list[str], Callable[[str], Numbers | None]]


def _limit(soft: int, hard: int) -> int | None:
    """The lower limit that is set: past the soft one the grace period
    starts, after which writes fail as at the hard one."""
    limits = [n for n in (soft, hard) if n > 0]
    return min(limits) if limits else None


def _number(text: str) -> int:
    """A count as the tools print it: ``1234*`` past a limit, ``[1234]``
    when Lustre is unsure, ``1234+`` when BeeGFS counts some targets only."""
    return int(text.strip("*[]+"))


def parse_quota(output: str) -> Numbers | None:
    """``quota -v -w -p -f PATH``: a title, a heading, then one line per
    filesystem: device, blocks, quota, limit, grace, files, quota, limit,
    grace (1 KiB blocks; ``-p`` makes every grace one word)."""
    return _columns(output, "blocks")


def parse_lfs(output: str) -> Numbers | None:
    """``lfs quota -u USER PATH``: the same columns as ``quota`` with
    ``kbytes``; a filesystem name longer than 15 characters puts the numbers
    on the next line; the grace is ``-`` when none runs."""
    return _columns(output, "kbytes")


def _columns(output: str, used: str) -> Numbers | None:
    """The first filesystem's numbers after the ``Filesystem USED`` heading."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.split()[:2] == ["Filesystem", used]:
            fields = " ".join(lines[i + 1 :]).split()
            if len(fields) >= 9:
                return _row(fields[1:4], fields[5:8], KIB)
    return None


def parse_mmlsquota(output: str) -> Numbers | None:
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


def parse_beegfs(output: str) -> Numbers | None:
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


def parse_site(output: str) -> Numbers | None:
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


def _row(blocks: Sequence[str], files: Sequence[str], unit: int) -> Numbers:
    used, soft, hard = (_number(f) for f in blocks)
    fused, fsoft, fhard = (_number(f) for f in files)
    return used * unit, _scaled(_limit(soft, hard), unit), fused, _limit(fsoft, fhard)


def _scaled(limit: int | None, unit: int = KIB) -> int | None:
    return None if limit is None else limit * unit


def mount_of(path: Path) -> Mount:
    """The mount holding ``path``: the deepest mount point above its real path."""
    return holding(os.path.realpath(path), mounts()) or Mount("/", "", "")


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


def tools(dest: Path, mount: Mount | None = None) -> list[Tool]:
    """The tools to ask about ``dest``, in order: the site's command, the
    one of the filesystem's type, the other filesystems' tools, ``quota``;
    only those installed here."""
    mount = mount or mount_of(dest)
    found: list[Tool] = []
    command = site_command()
    if command:
        argv = shlex.split(command)
        if argv and _which(argv[0]):
            found.append((command, [*argv, str(dest)], parse_site))
    for name, argv, parse in _filesystem_tools(mount):
        path = _which(argv[0])
        if path:
            found.append((name, [path, *argv[1:]], parse))
    path = _which("quota")
    if path:
        found.append(
            ("quota", [path, "-u", "-v", "-w", "-p", "-f", mount.point], parse_quota)
        )
    return found


def _filesystem_tools(mount: Mount) -> list[Tool]:
    """The parallel filesystems' own tools, the one of ``mount``'s type first."""
    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # no passwd entry (a container, LDAP down): the tools take the id
        user = str(os.getuid())
    device = mount.source.removeprefix("/dev/")
    by_type: dict[str, Tool] = {
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
    return [by_type[t] for t in sorted(by_type, key=lambda t: t != mount.fstype)]


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
