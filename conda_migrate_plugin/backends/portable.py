"""The backend where conda is not installed: conda's on-disk formats, read
and written without it."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..exceptions import CloneUnavailable
from ..export import portable_yaml
from ..records import EnvContents, portable_contents
from .registry import read_registry, register, unregister

if TYPE_CHECKING:
    from collections.abc import Collection


class PortableBackend:
    name = "portable"

    def contents(self, prefix: Path) -> EnvContents:
        return portable_contents(prefix)

    def export_yaml(self, prefix: Path, name: str) -> str:
        return portable_yaml(prefix, name, self.contents(prefix))

    def clone(self, source: Path, dest: Path, *, quiet: bool) -> None:
        raise CloneUnavailable(
            "conda is not installed here, so its clone cannot run.",
            reason="conda is not installed here",
        )

    def known_prefixes(self) -> list[Path]:
        prefixes = read_registry()
        for var in ("CONDA_ENVS_PATH", "CONDA_ENVS_DIRS"):
            for envs_dir in filter(None, os.environ.get(var, "").split(os.pathsep)):
                if os.path.isdir(envs_dir):
                    prefixes += sorted(
                        p for p in Path(envs_dir).iterdir() if p.is_dir()
                    )
        return prefixes

    def protected_prefixes(self) -> list[Path]:
        active = os.environ.get("CONDA_PREFIX")
        return [Path(sys.prefix), *([Path(active)] if active else [])]

    def register(self, prefix: Path) -> None:
        register(prefix)

    def unregister(self, prefix: Path) -> None:
        unregister(prefix)

    def clean(
        self, *, dry_run: bool, keep: Collection[str] = ()
    ) -> dict[str, Any] | None:
        return None
