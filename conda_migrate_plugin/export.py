"""Step 1: keep a YAML description of each environment before it moves.

It is the user's way back if anything goes wrong later (``conda env create
-f``), so it is written before the copy starts, atomically, and an older
description of a different environment with the same name is never
overwritten.
"""

from __future__ import annotations

import io
import time
from typing import TYPE_CHECKING

from ruamel.yaml import YAML

from .records import EnvContents, channel_name, read_conda_meta
from .safety.atomic import write_atomically

if TYPE_CHECKING:
    from pathlib import Path


def portable_yaml(prefix: Path, name: str, contents: EnvContents) -> str:
    """What ``conda env export`` writes, for machines without conda."""
    channels: list[str] = []
    for record in read_conda_meta(prefix):
        channel = channel_name(record.get("channel", ""))
        if channel and channel not in channels:
            channels.append(channel)
    dependencies: list[str | dict[str, list[str]]] = [
        f"{p.name}={p.version}={p.build}" for p in contents.conda
    ]
    if contents.pip:
        dependencies.append({"pip": [f"{p.name}=={p.version}" for p in contents.pip]})
    document = {
        "name": name,
        "channels": channels,
        "dependencies": dependencies,
        "prefix": str(prefix),
    }
    yaml = YAML()
    yaml.indent(mapping=2, sequence=4, offset=2)
    stream = io.StringIO()
    yaml.dump(document, stream)
    return stream.getvalue()


def write_yaml(yaml_dir: Path, name: str, text: str) -> Path:
    """Write ``NAME.yml``, or a timestamped name when a different
    description already holds that one; returns the path written."""
    yaml_dir.mkdir(parents=True, exist_ok=True)
    path = yaml_dir / f"{name}.yml"
    if path.exists() and path.read_text(errors="replace") != text:
        path = yaml_dir / f"{name}.{time.strftime('%Y%m%d-%H%M%S')}.yml"
    write_atomically(path, text)
    return path
