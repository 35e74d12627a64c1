"""The operations that need conda, behind one small interface.

``CondaBackend`` (``conda.py``) calls conda's APIs in-process
(``PrefixData``, the ``environment-yaml`` exporter, the environments
registry), and conda's clone and clean, each in its module beside it
(``clone.py``, ``clean.py``). ``PortableBackend`` (``portable.py``) does
what can be done without conda, from the same on-disk formats, so the whole
workflow also runs, and is tested, where conda is not installed; it has no
clone, so relocation is what runs there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Collection
    from pathlib import Path

    from ..records import EnvContents


class Backend(Protocol):
    """What the workflow asks of conda, and nothing more."""

    #: ``"conda"`` or ``"portable"``, as the log names it.
    name: str

    def contents(self, prefix: Path) -> EnvContents:
        """The packages and pip distributions in ``prefix``: what the
        comparison of the old and the new environment is made on."""
        ...

    def export_yaml(self, prefix: Path, name: str) -> str:
        """The environment's YAML, as ``conda env export`` writes it."""
        ...

    def clone(self, source: Path, dest: Path, *, quiet: bool) -> None:
        """Make ``dest`` a clone of ``source``, registered; raises
        ``CloneUnavailable`` where it cannot run, so relocation is used."""
        ...

    def known_prefixes(self) -> list[Path]:
        """The environments conda knows: what is migrated without ``-d``."""
        ...

    def protected_prefixes(self) -> list[Path]:
        """Environments never removed: the base one and the active one."""
        ...

    def register(self, prefix: Path) -> None:
        """Add ``prefix`` to ``environments.txt``, durably."""
        ...

    def unregister(self, prefix: Path) -> None:
        """Drop ``prefix`` from ``environments.txt``, durably."""
        ...

    def clean(
        self, *, dry_run: bool, keep: Collection[str] = ()
    ) -> dict[str, Any] | None:
        """conda's ``clean --all``, but for the packages named in ``keep``
        (``name-version-build``); what it removed, by kind, or ``None``
        where conda is not installed."""
        ...


def load_backend() -> Backend:
    try:
        import conda  # noqa: F401
    except ImportError:
        from .portable import PortableBackend

        return PortableBackend()
    from .conda import CondaBackend

    return CondaBackend()
