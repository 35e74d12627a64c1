"""Where conda is importable, and the skip that says why a test cannot
run elsewhere."""

from __future__ import annotations

import pytest

try:  # conda is not on PyPI: CI has none, a site's machine has it.
    import conda  # noqa: F401
except ImportError:
    HAVE_CONDA = False
else:
    HAVE_CONDA = True

requires_conda = pytest.mark.skipif(
    not HAVE_CONDA,
    reason="conda is not importable here (it is not on PyPI); "
    "these tests run where conda is installed",
)
