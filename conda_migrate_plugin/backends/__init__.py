"""The operations that need conda, behind one small interface.

``CondaBackend`` calls conda's APIs in-process (``PrefixData``, the
``environment-yaml`` exporter, ``clone_env``, the environments registry,
clean). ``PortableBackend`` does what can be done without conda, from the
same on-disk formats, so the whole workflow also runs, and is tested, where
conda is not installed; it has no clone, so relocation is what runs there.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Protocol

from ..exceptions import CloneUnavailable, MigrateError
from ..export import portable_yaml
from ..safety.interrupt import check
from . import registry
from .records import (
    CondaPackage,
    EnvContents,
    PipPackage,
    portable_contents,
    read_conda_meta,
)


class Backend(Protocol):
    name: str

    def contents(self, prefix: Path) -> EnvContents: ...
    def export_yaml(self, prefix: Path, name: str) -> str: ...
    def clone(self, source: Path, dest: Path, *, quiet: bool) -> None: ...
    def known_prefixes(self) -> list[Path]: ...
    def protected_prefixes(self) -> list[Path]: ...
    def register(self, prefix: Path) -> None: ...
    def unregister(self, prefix: Path) -> None: ...
    def clean(self, *, dry_run: bool) -> dict[str, list[str]] | None: ...


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
        prefixes = registry.read_registry()
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
        registry.register(prefix)

    def unregister(self, prefix: Path) -> None:
        registry.unregister(prefix)

    def clean(self, *, dry_run: bool) -> dict[str, list[str]] | None:
        return None


class CondaBackend:
    name = "conda"

    def contents(self, prefix: Path) -> EnvContents:
        from conda.core.prefix_data import PrefixData
        from conda.exceptions import CondaError

        # conda's reader fails with a TypeError on a record that is JSON but
        # not an object; the plain reader turns that into a clear error.
        read_conda_meta(prefix)
        # PrefixData caches per path; a prefix that was just written must be read anew.
        try:
            data = PrefixData(str(prefix), interoperability=True).reload()
            records = data.get_conda_packages()
            pip = data.get_python_packages()
        except CondaError as err:
            check(err)
            raise MigrateError(
                f"conda cannot read the environment {prefix}: {err}",
                hint="It was left as it is; repair it or recreate it from its YAML.",
            ) from err
        conda = tuple(
            sorted(
                CondaPackage(r.name, r.version, r.build, r.channel.canonical_name)
                for r in records
            )
        )
        return EnvContents(
            conda, tuple(sorted(PipPackage(r.name, r.version) for r in pip))
        )

    def export_yaml(self, prefix: Path, name: str) -> str:
        from conda.base.context import context
        from conda.models.environment import Environment

        environment = Environment.from_prefix(
            prefix=str(prefix), name=name, platform=context.subdir
        )
        exporter = context.plugin_manager.get_environment_exporter_by_format(
            "environment-yaml"
        )
        return exporter.export(environment)

    def clone(self, source: Path, dest: Path, *, quiet: bool) -> None:
        from ..relocation.clone import carry_omitted, clone

        clone(source, dest, quiet=quiet)
        carry_omitted(source, dest)

    def known_prefixes(self) -> list[Path]:
        from conda.core.envs_manager import list_all_known_prefixes

        # Run as root, conda reads every home's environments.txt from the
        # password database: other users' environments, which are theirs to
        # migrate, never root's; root gets only its own.
        if os.geteuid() == 0:
            return PortableBackend().known_prefixes()
        known = [Path(prefix) for prefix in list_all_known_prefixes()]
        return known + registry.read_registry()

    def protected_prefixes(self) -> list[Path]:
        from conda.base.context import context

        active = context.active_prefix
        return [Path(context.root_prefix), *([Path(active)] if active else [])]

    def register(self, prefix: Path) -> None:
        from conda.core.envs_manager import register_env

        from ..safety.durable import flush_file

        # conda rewrites the file in place without a sync: a power cut would
        # bring it back empty, losing every registered environment.
        register_env(str(prefix))
        flush_file(registry.environments_txt())

    def unregister(self, prefix: Path) -> None:
        from conda.core.envs_manager import unregister_env

        from ..safety.durable import flush_file

        unregister_env(str(prefix))
        flush_file(registry.environments_txt())

    def clean(self, *, dry_run: bool) -> dict[str, list[str]] | None:
        from ..clean import clean

        return clean(dry_run=dry_run)


def load_backend() -> Backend:
    try:
        import conda  # noqa: F401
    except ImportError:
        return PortableBackend()
    return CondaBackend()
