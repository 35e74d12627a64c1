"""A user other than root, as on a cluster (CI runs as root): numbers
only, enough for the kernel's permission checks."""

from __future__ import annotations

import os
import traceback
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

USER, OTHER_USER = 4242, 4343


def as_user(action: Callable[[], object]) -> int:
    """Run ``action`` in a forked child that is ``USER``; its exit code
    (0 when ``action`` returned, 70 when it raised, with the traceback)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 70
        try:
            os.setgroups([])
            os.setgid(USER)
            os.setuid(USER)
            action()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def user_home(base: Path) -> Path:
    """``base/home``, a fresh home directory owned by ``USER``."""
    home = base / "home"
    home.mkdir()
    os.chown(home, USER, USER)
    return home
