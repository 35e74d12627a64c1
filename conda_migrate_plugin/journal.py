"""What each migration in progress has done so far, on disk.

A job can be killed between any two instructions. Before each phase the
journal says where the migration stands, so the next run knows whether a
copy it finds is unverified (remove it) or verified (finish the job), instead
of guessing from what happens to be on disk.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .atomic import write_atomically

COPYING = "copying"  # the copy at dest, if any, is unverified
VERIFIED = "verified"  # dest is verified and registered; source may remain
DONE = "done"  # source removed (or kept on request); rc files not yet updated


@dataclass(frozen=True)
class Entry:
    name: str
    source: str
    dest: str
    phase: str
    method: str


def _path(state_dir: Path, dest: Path) -> Path:
    digest = hashlib.sha256(str(dest).encode()).hexdigest()[:20]
    return state_dir / "journal" / f"{digest}.json"


def record(state_dir: Path, entry: Entry) -> None:
    write_atomically(_path(state_dir, Path(entry.dest)), json.dumps(asdict(entry)))


def clear(state_dir: Path, dest: Path) -> None:
    _path(state_dir, dest).unlink(missing_ok=True)


def entries(state_dir: Path) -> list[Entry]:
    """Unreadable entries are skipped: a torn write is never half-trusted."""
    found = []
    for path in sorted((state_dir / "journal").glob("*.json")):
        try:
            found.append(Entry(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            continue
    return found
