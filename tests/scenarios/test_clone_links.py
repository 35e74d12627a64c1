"""conda's clone links each package again from conda's package cache. On a
site that cache is on scratch too (``pkgs_dirs``; the rc files move it into
``$HOME`` only at the end of the run), and conda softlinks into it where it
is told to (``always_softlink``) or where its test finds no hard link
possible (``allow_softlinks``): a clone made so would hold links into the
scratch the next purge empties, and pass the file check where the source
held the same links. These tests purge scratch after the run.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import TYPE_CHECKING

import pytest

from tests.support.markers import requires_conda

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

pytestmark = requires_conda


@pytest.fixture
def softlinking(home) -> Iterator[Callable[[str, Path], None]]:
    """``softlinking(setting, pkgs)``: conda configured as the user has it,
    ``setting`` on and the package cache at ``pkgs`` (on scratch); conda's
    context read again, and read as before once the test is done."""
    from conda.base.context import reset_context

    with pytest.MonkeyPatch.context() as patch:

        def configure(setting: str, pkgs: Path) -> None:
            patch.setenv(setting, "true")
            patch.setenv("CONDA_PKGS_DIRS", str(pkgs))
            reset_context()

        yield configure
    reset_context()


def conda_create(conda_cli, channel: Path, prefix: Path, *specs: str) -> None:
    out, err, code = conda_cli(
        "create", "-p", prefix, "--offline", "--override-channels", "--solver",
        "classic", "-c", channel.as_uri(), "--yes", *specs,
    )  # fmt: skip
    assert code == 0, out + err


def links_into(prefix: Path, root: Path) -> list[str]:
    """The paths of ``prefix`` that are symlinks leading into ``root``."""
    return sorted(
        str(path.relative_to(prefix))
        for path in prefix.rglob("*")
        if path.is_symlink() and os.path.realpath(path).startswith(f"{root}/")
    )


def unreadable(prefix: Path) -> list[str]:
    """Files of ``prefix`` that no longer give bytes (a link that dangles)."""
    return sorted(
        str(path.relative_to(prefix))
        for path in prefix.rglob("*")
        if path.is_symlink() and not path.exists()
    )


def test_a_clone_of_a_softlinked_environment_survives_the_purge_of_scratch(
    channel, home, tmp_path, conda_cli, softlinking
):
    """The environment conda softlinked into the scratch cache, conda still
    configured so: its clone must hold the files, not the links."""
    scratch = tmp_path / "scratch"
    env = scratch / "conda-envs" / "linked"
    softlinking("CONDA_ALWAYS_SOFTLINK", scratch / "pkgs")
    conda_create(conda_cli, channel, env, "demo-text", "demo-binary")
    assert links_into(env, scratch / "pkgs"), "conda softlinked nothing"
    out, err, code = conda_cli(
        "migrate", "-d", env.parent, "--all", "--method", "clone", "--no-clean"
    )
    assert code == 0, out + err
    assert not env.exists()
    dest = home / ".conda" / "envs" / "linked"
    assert links_into(dest, scratch) == []
    shutil.rmtree(scratch)
    assert unreadable(dest) == []
    assert (dest / "share/demo/data.txt").read_text()
    # conda's records of the copy say so: clean may take those packages.
    for record in (dest / "conda-meta").glob("*.json"):
        assert json.loads(record.read_text())["link"]["type"] != 2, record.name


@pytest.mark.parametrize("setting", ["CONDA_ALWAYS_SOFTLINK", "CONDA_ALLOW_SOFTLINKS"])
def test_a_clone_through_a_scratch_cache_holds_no_link_into_it(
    make_env, home, tmpfs, conda_cli, softlinking, setting
):
    """A hard-linked environment, cloned through a package cache on scratch,
    a filesystem of its own. ``always_softlink`` links into it; conda's own
    test for ``allow_softlinks`` (a hard link that falls back to a copy)
    finds hard links possible across filesystems, so it softlinks only where
    the filesystem makes a symlink of a hard link, and is held here to the
    same outcome."""
    scratch = tmpfs("size=64m")
    env = make_env(scratch / "conda-envs" / "abc", ["demo-app"])
    softlinking(setting, scratch / "pkgs")
    out, err, code = conda_cli(
        "migrate", "-d", env.parent, "--all", "--method", "clone", "--no-clean"
    )
    assert code == 0, out + err
    dest = home / ".conda" / "envs" / "abc"
    assert links_into(dest, scratch) == []
    shutil.rmtree(scratch / "pkgs")
    assert unreadable(dest) == []
