"""Step 6: conda's clean, in-process, once every environment has moved.

conda's own ``conda clean --all`` asks for confirmation per category, which a
batch job cannot answer; so its finders choose what to remove and the
removal is done here, with the same targets.
"""

from __future__ import annotations


def clean(*, dry_run: bool) -> dict[str, list[str]]:
    """Remove tarballs, index caches, extracted packages and log files from
    the writable package caches; returns what was (or would be) removed."""
    from conda.cli.main_clean import (
        find_index_cache,
        find_logfiles,
        find_pkgs,
        find_tarballs,
    )
    from conda.gateways.disk.delete import rm_rf

    def paths(found: dict) -> list[str]:
        return [
            f"{pkgs_dir}/{name}"
            for pkgs_dir, names in found["pkg_sizes"].items()
            for name in names
        ]

    removed = {
        "tarballs": paths(find_tarballs()),
        "index_cache": find_index_cache(),
        "packages": paths(find_pkgs()),
        "logfiles": find_logfiles(),
    }
    if not dry_run:
        for items in removed.values():
            for item in items:
                rm_rf(item)
    return removed
