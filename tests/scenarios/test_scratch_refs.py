"""A migrated environment can still lead back to the scratch it left: an
editable pip install of code there, a symlink to data there, a conda
environment variable naming a directory there. The next purge breaks it in
``$HOME`` with no warning, so the run names each one. Scratch is a tmpfs of
its own here, ``$HOME`` is not: the run tells them apart by device, as on a
site (root only, to mount).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.channel import SITE_PACKAGES, SUBDIR
from tests.support.markers import requires_conda
from tests.support.runs import ROOT
from tests.support.trees import softlink_by_hand, tree_snapshot

if TYPE_CHECKING:
    from collections.abc import Callable

METHODS = ["relocate", pytest.param("clone", marks=requires_conda)]


def editable_install(env: Path, code: Path) -> None:
    """What ``pip install -e CODE`` leaves in an environment: setuptools'
    ``__editable__`` path file, the ``direct_url.json`` pip writes, and the
    older ``setup.py develop`` ``.egg-link``."""
    site = env / SITE_PACKAGES
    (site / "__editable__.mycode-0.1.pth").write_text(f"{code}/src\n")
    dist = site / "mycode-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: mycode\nVersion: 0.1\n"
    )
    (dist / "direct_url.json").write_text(
        json.dumps({"url": code.as_uri(), "dir_info": {"editable": True}})
    )
    (site / "oldcode.egg-link").write_text(f"{code}/old\n.")


def set_env_vars(env: Path, **variables: str) -> None:
    """``conda env config vars set NAME=VALUE``: conda keeps them here."""
    (env / "conda-meta/state").write_text(json.dumps({"env_vars": variables}))


@pytest.fixture
def on_scratch(make_env, home, tmpfs) -> tuple[Path, Path]:
    """An environment on a scratch filesystem of its own, holding references
    to code and data on that scratch, and others to $HOME and into itself.
    Returns the environment and the scratch."""
    scratch = tmpfs("size=64m")
    env = make_env(scratch / "conda-envs" / "abc", ["demo-app"])
    code = scratch / "mycode"
    (code / "src" / "mycode").mkdir(parents=True)
    (code / "old").mkdir()
    (code / "src" / "mycode" / "__init__.py").write_text("")
    data = scratch / "data"
    data.mkdir()
    (data / "ref.fa").write_text(">chr1\nACGT\n")
    editable_install(env, code)
    (env / "share/ref.fa").symlink_to(data / "ref.fa")
    # share/ -> abc -> conda-envs -> scratch: a relative link out of it.
    (env / "share/genome.fa").symlink_to("../../../data/ref.fa")
    set_env_vars(env, DATA=str(data), OWN=f"{env}/share", MINE=str(home))
    # In $HOME, and inside the environment: none of them is on scratch.
    (home / "projects" / "src").mkdir(parents=True)
    (home / "notes.txt").write_text("notes\n")
    site = env / SITE_PACKAGES
    (site / "homework.pth").write_text(f"# mine\nimport os\n{home}/projects/src\n")
    (site / "inside.pth").write_text(f"{env}/share\n")
    (env / "share/notes.txt").symlink_to(home / "notes.txt")
    (env / "share/inner").symlink_to("demo")
    return env, scratch


def expected(dest: Path, scratch: Path) -> list[dict[str, str]]:
    site = dest / SITE_PACKAGES
    data = f"{scratch}/data"
    return [
        {
            "file": f"{dest}/conda-meta/state",
            "names": data,
            "via": "conda env config var DATA",
        },
        {
            "file": f"{site}/__editable__.mycode-0.1.pth",
            "names": f"{scratch}/mycode/src",
            "via": "a path Python adds to sys.path",
        },
        {
            "file": f"{site}/mycode-0.1.dist-info/direct_url.json",
            "names": f"{scratch}/mycode",
            "via": "an editable pip install",
        },
        {
            "file": f"{site}/oldcode.egg-link",
            "names": f"{scratch}/mycode/old",
            "via": "an editable install (egg-link)",
        },
        {
            "file": f"{dest}/share/genome.fa",
            "names": f"{data}/ref.fa",
            "via": "a symlink",
        },
        {"file": f"{dest}/share/ref.fa", "names": f"{data}/ref.fa", "via": "a symlink"},
    ]


def assert_shown(out: str, refs: list[dict[str, str]], home: Path) -> None:
    """Each reference on a line of the warning; none into $HOME."""
    for ref in refs:
        assert f"  {ref['file']}: {ref['via']}, {ref['names']}" in out
    assert f"{home}/work" not in out
    assert f"{home}/notes.txt" not in out


@pytest.mark.parametrize("method", METHODS)
def test_what_still_leads_to_scratch_is_named_after_the_move(
    on_scratch, home, migrate, method
):
    env, scratch = on_scratch
    dest = home / ".conda/envs/abc"
    out, err, code = migrate(
        "-d", env.parent, "--all", "--json", "--method", method, "--no-clean"
    )
    assert code == 0, out + err
    assert not env.exists()
    assert (dest / "conda-meta").is_dir()
    report = json.loads(out)
    (moved,) = report["environments"]
    assert moved["status"] == "migrated"
    found = sorted(moved["scratch_refs"], key=lambda ref: ref["file"])
    want = expected(dest, scratch)
    assert found == want
    log = open(report["log"]).read()
    for ref in want:
        assert f"{ref['file']}: {ref['via']}, {ref['names']}" in log


def test_the_run_shows_them_and_the_summary_counts_them(on_scratch, home, migrate):
    env, scratch = on_scratch
    dest = home / ".conda/envs/abc"
    out, err, code = migrate("-d", env.parent, "--all", "--no-clean")
    assert code == 0, out + err
    assert (
        f"warning: abc still uses 6 paths on the filesystem it was moved from "
        f"({env}); the purge of scratch can delete them and break it:"
    ) in out
    assert_shown(out, expected(dest, scratch), home)
    summary = out[out.index("Summary:") :]
    assert (
        "      still uses 6 paths on the filesystem it was moved from (the log names each)"
        in summary
    )


def test_the_dry_run_names_them_and_changes_nothing(on_scratch, home, migrate):
    """What users run first to decide, and a site admin over everyone's
    environments before a purge: each path the move would leave on scratch,
    named by the environment's file as it is now (on scratch), and nothing
    written anywhere."""
    env, scratch = on_scratch
    before, home_before = tree_snapshot(scratch), tree_snapshot(home)
    out, err, code = migrate("-d", env.parent, "--all", "--dry-run", "--json")
    assert code == 0, out + err
    (planned,) = json.loads(out)["environments"]
    assert planned["status"] == "planned"
    want = expected(env, scratch)
    assert sorted(planned["scratch_refs"], key=lambda ref: ref["file"]) == want
    out, err, code = migrate("-d", env.parent, "--all", "--dry-run")
    assert code == 0, out + err
    assert (
        f"warning: abc would still use 6 paths on the filesystem it would be moved "
        f"from ({env}); the purge of scratch can delete them and break it:"
    ) in out
    assert_shown(out, want, home)
    summary = out[out.index("Summary:") :]
    assert (
        "      would still use 6 paths on the filesystem it would be moved from "
        "(see above)" in summary
    )
    assert tree_snapshot(scratch) == before
    assert tree_snapshot(home) == home_before


def test_the_dry_run_leaves_out_links_into_a_package_cache(
    make_env, home, tmpfs, migrate
):
    """conda's ``always_softlink`` links each file into the package cache,
    on scratch too: the copy holds those files, so they are no reference."""
    scratch = tmpfs("size=64m")
    env = make_env(scratch / "conda-envs" / "abc", ["demo-app"])
    cache = scratch / "pkgs"
    for record in (env / "conda-meta").glob("*.json"):
        extracted = Path(json.loads(record.read_text())["extracted_package_dir"])
        shutil.copytree(extracted, cache / extracted.name, symlinks=True)
    linked = softlink_by_hand(env, cache)
    (scratch / "data").mkdir()
    (env / "share/ref").symlink_to(scratch / "data")
    out, err, code = migrate("-d", env.parent, "--all", "--dry-run", "--json")
    assert code == 0, out + err
    (planned,) = json.loads(out)["environments"]
    assert linked and planned["status"] == "planned"
    assert planned["scratch_refs"] == [
        {"file": f"{env}/share/ref", "names": f"{scratch}/data", "via": "a symlink"}
    ]


def test_references_into_home_or_itself_give_no_warning(make_env, home, tmpfs, migrate):
    """The control: the same kinds of reference, all into $HOME or into the
    environment itself."""
    scratch = tmpfs("size=64m")
    env = make_env(scratch / "conda-envs" / "abc", ["demo-app"])
    code = home / "mycode"
    (code / "src").mkdir(parents=True)
    (code / "old").mkdir()
    editable_install(env, code)
    (home / "ref.fa").write_text(">chr1\n")
    (env / "share/ref.fa").symlink_to(home / "ref.fa")
    set_env_vars(env, DATA=str(home), OWN=f"{env}/share")
    out, err, code_ = migrate("-d", env.parent, "--all", "--json", "--no-clean")
    assert code_ == 0, out + err
    (moved,) = json.loads(out)["environments"]
    assert moved["status"] == "migrated"
    assert moved["scratch_refs"] == []


def test_one_filesystem_for_both_reports_nothing(make_env, home, tmp_path, migrate):
    """Scratch and $HOME on one filesystem: nothing tells a path on scratch
    apart, and nothing is guessed from its spelling."""
    scratch = tmp_path / "scratch"
    env = make_env(scratch / "conda-envs" / "abc", ["demo-app"])
    (scratch / "data").mkdir()
    (scratch / "data" / "ref.fa").write_text(">chr1\n")
    (env / "share/ref.fa").symlink_to(scratch / "data" / "ref.fa")
    set_env_vars(env, DATA=str(scratch / "data"))
    out, err, code = migrate("-d", env.parent, "--all", "--json", "--no-clean")
    assert code == 0, out + err
    (moved,) = json.loads(out)["environments"]
    assert moved["scratch_refs"] == []
    assert os.path.exists(home / ".conda/envs/abc/share/ref.fa")


#: A build backend's wheel: ``.ci/setup`` downloads setuptools into it with
#: the recipe test's closure (``pip download ... -d tests/.wheels hatch-vcs ...``).
WHEELS = ROOT / "tests" / ".wheels"


@pytest.fixture
def python_env(real_channel, tmp_path) -> Callable[[Path], Path]:
    """A real CPython and pip, installed as conda would (see ``realpkgs``)."""
    import rattler

    if not list(WHEELS.glob("setuptools-*.whl")):
        pytest.skip(f"no setuptools wheel in {WHEELS} (.ci/setup downloads it)")
    records = asyncio.run(
        rattler.solve(
            [real_channel.as_uri()], ["python", "pip"], platforms=[SUBDIR, "noarch"]
        )
    )

    def make(prefix: Path) -> Path:
        asyncio.run(
            rattler.install(
                records, prefix, cache_dir=tmp_path / "cache", show_progress=False
            )
        )
        return prefix

    return make


def python(env: Path, *args: str | Path, home: Path) -> subprocess.CompletedProcess:
    """The environment's Python by path, as a job that never activates it."""
    return subprocess.run(
        [env / "bin/python", *map(str, args)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home), "PIP_NO_CACHE_DIR": "1"},
    )


def test_a_real_pip_install_e_of_code_on_scratch_is_named(
    python_env, home, tmpfs, migrate
):
    """``pip install -e`` of a project on scratch, by the environment's own
    pip and a real build backend (setuptools), offline: the copy in $HOME
    imports it from scratch, which the dry run says first and the run
    again; once scratch is purged, the import fails, as they said it would."""
    scratch = tmpfs("size=256m")
    env = python_env(scratch / "conda-envs" / "py")
    code = scratch / "mycode"
    (code / "src" / "mycode").mkdir(parents=True)
    (code / "src" / "mycode" / "__init__.py").write_text("WHERE = __file__\n")
    (code / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\n'
        'build-backend = "setuptools.build_meta"\n'
        '[project]\nname = "mycode"\nversion = "0.1"\n'
    )
    done = python(
        env, "-m", "pip", "install", "--no-index", "--find-links", WHEELS,
        "--disable-pip-version-check", "-e", code, home=home,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    want = {
        (f"{SITE_PACKAGES}/__editable__.mycode-0.1.pth", f"{code}/src"),
        (f"{SITE_PACKAGES}/mycode-0.1.dist-info/direct_url.json", str(code)),
    }
    dest = home / ".conda/envs/py"
    # Planned first, named by the files on scratch; then moved, by the copy's.
    for run, root, status in (
        (("--dry-run",), env, "planned"),
        ((), dest, "migrated"),
    ):
        out, err, code_ = migrate(
            "-d", env.parent, "--all", "--json", "--no-clean", *run
        )
        assert code_ == 0, out + err
        (outcome,) = json.loads(out)["environments"]
        assert outcome["status"] == status
        named = {
            (os.path.relpath(ref["file"], root), ref["names"])
            for ref in outcome["scratch_refs"]
        }
        assert named == want
    imported = python(dest, "-c", "import mycode; print(mycode.WHERE)", home=home)
    assert imported.stdout.strip() == f"{code}/src/mycode/__init__.py"
    shutil.rmtree(code)  # the purge
    assert python(dest, "-c", "import mycode", home=home).returncode != 0


@requires_conda
def test_a_variable_conda_set_is_named(make_env, home, tmpfs, conda_cli):
    """``conda env config vars set``, by conda itself, then ``conda migrate``
    as users type it, planned first."""
    scratch = tmpfs("size=64m")
    env = make_env(scratch / "conda-envs" / "abc", ["demo-app"])
    (scratch / "data").mkdir()
    out, err, code = conda_cli(
        "env",
        "config",
        "vars",
        "set",
        "-p",
        env,
        f"DATA={scratch}/data",
        f"MINE={home}",
    )
    assert code == 0, out + err
    out, err, code = conda_cli(
        "migrate", "-d", env.parent, "--all", "--dry-run", "--json"
    )
    assert code == 0, out + err

    def data_named_in(prefix: Path) -> list[dict[str, str]]:
        return [
            {
                "file": f"{prefix}/conda-meta/state",
                "names": f"{scratch}/data",
                "via": "conda env config var DATA",
            }
        ]

    (planned,) = json.loads(out)["environments"]
    assert planned["scratch_refs"] == data_named_in(env)
    out, err, code = conda_cli(
        "migrate", "-d", env.parent, "--all", "--json", "--no-clean"
    )
    assert code == 0, out + err
    (moved,) = json.loads(out)["environments"]
    assert moved["scratch_refs"] == data_named_in(home / ".conda/envs/abc")
