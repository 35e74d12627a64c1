"""What a moved environment still names on the filesystem it left, on real
files: the environment on this test's filesystem, "scratch" in ``/dev/shm``
(a tmpfs, another device, where no mount is needed)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from conda_migrate_plugin.scratch_refs import find_references, planned_references
from conda_migrate_plugin.snapshot import measure

SITE = "lib/python3.12/site-packages"


@pytest.fixture
def shm(tmp_path):
    """A directory on another filesystem than ``tmp_path``."""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm here")
    if os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("/dev/shm is on the filesystem of the test's directory")
    made = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="cm-test-"))
    yield made
    shutil.rmtree(made)


@pytest.fixture
def env(tmp_path) -> Path:
    prefix = tmp_path / "envs" / "abc"
    for rel in (SITE, "conda-meta", "share"):
        (prefix / rel).mkdir(parents=True)
    return prefix


def references(env: Path, shm: Path, links=None, source=None):
    footprint = replace(measure(env), device=os.stat(shm).st_dev)
    return [
        (os.path.relpath(ref.file, env), ref.names, ref.via)
        for ref in find_references(
            source or env.parent / "old", env, footprint, links or {}, 2
        )
    ]


def test_a_path_file_as_python_reads_it(env, shm):
    (shm / "my code").mkdir()
    (env / SITE / "a.pth").write_text(
        f"# {shm}\nimport sys; sys.path.append({str(shm)!r})\n\n"
        f"{shm}/my code  \n{shm}/gone\n"
    )
    # Python reads path files in site-packages only.
    (env / "share/b.pth").write_text(f"{shm}\n")
    assert references(env, shm) == [
        (f"{SITE}/a.pth", f"{shm}/my code", "a path Python adds to sys.path")
    ]


def test_only_an_editable_install_of_a_directory_counts(env, shm):
    (shm / "my code").mkdir()
    (shm / "dist.whl").write_bytes(b"")
    for name, origin in {
        "one": {"url": (shm / "my code").as_uri(), "dir_info": {"editable": True}},
        "two": {"url": shm.as_uri(), "dir_info": {}},
        "three": {"url": (shm / "dist.whl").as_uri(), "archive_info": {}},
    }.items():
        dist = env / SITE / f"{name}-1.0.dist-info"
        dist.mkdir()
        (dist / "direct_url.json").write_text(json.dumps(origin))
    (env / SITE / "bad-1.0.dist-info").mkdir()
    (env / SITE / "bad-1.0.dist-info/direct_url.json").write_text("[not json")
    (env / SITE / "four.egg-link").write_text(f"{shm}\n.\n")
    assert references(env, shm) == [
        (f"{SITE}/four.egg-link", str(shm), "an editable install (egg-link)"),
        (
            f"{SITE}/one-1.0.dist-info/direct_url.json",
            f"{shm}/my code",
            "an editable pip install",
        ),
    ]


def test_each_path_of_an_environment_variable(env, shm, tmp_path):
    (shm / "a").mkdir()
    (env / "conda-meta/state").write_text(
        json.dumps(
            {"env_vars": {"P": f"{shm}/a:{shm}/missing:relative:{tmp_path}", "N": 3}}
        )
    )
    assert references(env, shm) == [
        ("conda-meta/state", f"{shm}/a", "conda env config var P")
    ]


def test_symlinks_as_the_copy_found_them_and_where_they_lead_now(env, shm):
    (shm / "ref.fa").write_text(">1\n")
    (env / "share/ref.fa").symlink_to(shm / "ref.fa")
    (env / "share/gone").symlink_to(shm / "gone")
    links = {"share/ref.fa": str(shm / "ref.fa"), "share/gone": str(shm / "gone")}
    assert references(env, shm, links) == [
        ("share/ref.fa", str(shm / "ref.fa"), "a symlink")
    ]


def test_paths_inside_the_old_environment_are_not_its_business(env, shm):
    old = shm / "conda-envs" / "abc"
    (old / "src").mkdir(parents=True)
    (env / SITE / "a.pth").write_text(f"{old}/src\n")
    assert references(env, shm, source=old) == []


def test_nothing_when_both_are_one_filesystem(env, tmp_path):
    """A path beside the environment, on its filesystem: with no other
    device to tell scratch by, nothing is named."""
    (tmp_path / "data").mkdir()
    (env / SITE / "a.pth").write_text(f"{tmp_path}/data\n")
    footprint = measure(env)
    assert footprint.device == os.stat(tmp_path / "data").st_dev
    assert find_references(env.parent / "old", env, footprint, {}, 1) == []


@pytest.fixture
def on_shm(shm) -> Path:
    """An environment on the other filesystem, reached through a symlinked
    directory (``$SCRATCH`` often is one), with code and data beside it."""
    source = shm / "envs" / "abc"
    for rel in (SITE, "share"):
        (source / rel).mkdir(parents=True)
    (shm / "alias").symlink_to("envs")
    (shm / "data").mkdir()
    (shm / "data/ref.fa").write_text(">1\n")
    (shm / "code").mkdir()
    return shm / "alias" / "abc"


def test_planned_as_relocation_would_copy_the_source(on_shm, shm, tmp_path):
    """Read in the source before anything is written: its file named, each
    symlink as the copy would make it."""
    source, dest = on_shm, tmp_path / "home" / "envs" / "abc"
    (source / SITE / "a.pth").write_text(f"{shm}/code\n")
    (source / "share/abs").symlink_to(shm / "data/ref.fa")
    (source / "share/rel").symlink_to("../../../data/ref.fa")
    # Its own file under its real path's spelling: relocation retargets it.
    (source / "share/x").write_text("")
    (source / "share/own").symlink_to(shm / "envs/abc/share/x")
    # A link into a package cache, which the copy holds as the file.
    (source / "share/cached").symlink_to(shm / "data/ref.fa")
    planned = planned_references(source, dest, measure(source), {"share/cached"}, 2)
    assert [(ref.file, ref.names, ref.via) for ref in planned] == [
        (f"{source}/{SITE}/a.pth", f"{shm}/code", "a path Python adds to sys.path"),
        (f"{source}/share/abs", f"{shm}/data/ref.fa", "a symlink"),
        (f"{source}/share/rel", f"{shm}/data/ref.fa", "a symlink"),
    ]
    assert not (tmp_path / "home").exists()


def test_planned_nothing_when_the_destination_would_be_on_scratch(on_shm, shm):
    """The destination is not there yet: its nearest directory says where."""
    (on_shm / "share/abs").symlink_to(shm / "data/ref.fa")
    dest = shm / "home" / "envs" / "abc"
    assert planned_references(on_shm, dest, measure(on_shm), (), 1) == []
