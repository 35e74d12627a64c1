"""The backend where conda is installed: its APIs, in-process."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..exceptions import MigrateError
from ..records import (
    CondaPackage,
    EnvContents,
    PipPackage,
    portable_contents,
    python_records_gone,
    read_conda_meta,
)
from ..safety.interrupt import check
from .portable import PortableBackend
from .registry import changing, environments_txt, read_registry

if TYPE_CHECKING:
    from collections.abc import Collection


class CondaBackend:
    name = "conda"

    def contents(self, prefix: Path) -> EnvContents:
        from conda.auxlib.exceptions import ValidationError
        from conda.core.prefix_data import PrefixData
        from conda.exceptions import CondaError

        # conda's reader fails with a TypeError on a record that is JSON but
        # not an object; the plain reader turns that into a clear error.
        records = read_conda_meta(prefix)
        if not all(python_records_gone(prefix, records).values()):
            return portable_contents(prefix)
        # PrefixData caches per path; a prefix that was just written must be read anew.
        try:
            data = PrefixData(str(prefix), interoperability=True).reload()
            records = data.get_conda_packages()
            pip = data.get_python_packages()
        except (CondaError, ValidationError) as err:
            # ValidationError: a record conda's model rejects (a field missing).
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

        if not all(python_records_gone(prefix).values()):
            return PortableBackend().export_yaml(prefix, name)
        environment = Environment.from_prefix(
            prefix=str(prefix), name=name, platform=context.subdir
        )
        exporter = context.plugin_manager.get_environment_exporter_by_format(
            "environment-yaml"
        )
        return exporter.export(environment)

    def clone(self, source: Path, dest: Path, *, quiet: bool) -> None:
        from .clone import carry_omitted, clone

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
        return known + read_registry()

    def protected_prefixes(self) -> list[Path]:
        from conda.base.context import context

        active = context.active_prefix
        return [Path(context.root_prefix), *([Path(active)] if active else [])]

    def register(self, prefix: Path) -> None:
        from conda.core.envs_manager import register_env

        from ..safety.durable import flush_file

        # conda rewrites the file in place without a sync: a power cut would
        # bring it back empty, losing every registered environment.
        with changing():
            register_env(str(prefix))
            flush_file(environments_txt())

    def unregister(self, prefix: Path) -> None:
        from conda.core.envs_manager import unregister_env

        from ..safety.durable import flush_file

        with changing():
            unregister_env(str(prefix))
            flush_file(environments_txt())

    def clean(
        self, *, dry_run: bool, keep: Collection[str] = ()
    ) -> dict[str, Any] | None:
        from .clean import clean

        return clean(dry_run=dry_run, keep=keep)
