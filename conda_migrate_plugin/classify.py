"""What a directory is to conda: an environment, a package cache, or neither.

One rule for every step that asks: discovery (``-d`` lists a package cache
as such), the preflight (an environment holding one is refused, as its
removal would take it along) and the quota (the caches on scratch). The
rule is conda's own: its marks (see ``names``), looked up at the top level
only. Tarballs alone make no package cache: a channel's subdirectory holds
them too, and conda would not use it as one.
"""

from __future__ import annotations

import os
from enum import Enum
from typing import TYPE_CHECKING

from .names import HISTORY, PACKAGE_CACHE_MARK

if TYPE_CHECKING:
    from collections.abc import Collection
    from pathlib import Path


class Kind(Enum):
    ENVIRONMENT = "environment"
    PACKAGE_CACHE = "package cache"
    OTHER = "other"


def classify(directory: Path | str, names: Collection[str] | None = None) -> Kind:
    """``names``: the directory's entries, when the caller listed them
    already (a walk): then nothing more is looked up for what they show,
    as each lookup is a round trip on a network filesystem."""
    if (names is None or HISTORY.parts[0] in names) and is_environment(directory):
        return Kind.ENVIRONMENT
    if (
        PACKAGE_CACHE_MARK in names
        if names is not None
        else os.path.isfile(os.path.join(directory, PACKAGE_CACHE_MARK))
    ):
        return Kind.PACKAGE_CACHE
    return Kind.OTHER


def is_environment(directory: Path | str) -> bool:
    return os.path.isfile(os.path.join(directory, HISTORY))
