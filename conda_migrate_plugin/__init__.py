"""conda-migrate: move conda environments off $SCRATCH, verified before removal."""

from __future__ import annotations

try:
    from ._version import __version__ as __version__
except ImportError:  # a source tree that was never built
    __version__ = "0.0.0.dev0"
