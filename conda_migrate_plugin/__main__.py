"""``python -m conda_migrate_plugin``: the console script's code, as
``--submit`` jobs run it (with the interpreter that submitted them)."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
