"""conda's clean at the end of a run (and of a job array): what it must
keep, and the line that says what it freed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .progress import size

if TYPE_CHECKING:
    from .backends import Backend
    from .discover import Candidate
    from .result import MigrationResult


def still_needed(
    outcomes: list[MigrationResult], candidates: list[Candidate]
) -> set[str]:
    """The cached packages that environments damaged by the purge still
    lack files of (the one place those files may come back from), and those
    that the environments found here link to, registered with conda or not
    (a softlinked environment the user did not pick would dangle)."""
    from .records import softlinked_packages

    lacking = {
        package
        for o in outcomes
        if o.damage is not None
        for package in o.damage.packages_lacking(o.missing)
    }
    on_disk = [c.prefix for c in candidates if c.valid and c.prefix.is_dir()]
    return lacking | {path.name for path in softlinked_packages(on_disk)}


def clean_caches(
    backend: Backend, *, dry_run: bool, keep: set[str]
) -> tuple[dict[str, Any] | None, str]:
    """conda's clean, and the line that says what it freed: a run's and the
    job array's last job say it alike."""
    cleaned = backend.clean(dry_run=dry_run, keep=keep)
    if cleaned is None:
        return None, "conda is not installed here, so conda's clean was skipped."
    verb = "Would remove" if dry_run else "Removed"
    items = sum(len(v) for v in cleaned.values() if isinstance(v, list))
    return (
        cleaned,
        f"{verb} {items} items ({size(cleaned['bytes'])}) from conda's caches.",
    )
