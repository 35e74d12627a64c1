"""The site install, proven: recipe/recipe.yaml builds, offline, into a conda
package that installs into a fresh environment and runs there;
recipe/meta.yaml says the same for conda-build. The Lmod module is
tests/scenarios/test_module.py's.

The build runs rattler-build against a local channel made in this session:
a conda package of the running CPython and ``noarch: python`` packages made
from the wheels of pip, the build backend and the run requirements. Those
wheels are downloaded at set-up time (``.ci/run``), never here.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.support.markers import requires_conda
from tests.support.runs import ROOT

RECIPE = ROOT / "recipe" / "recipe.yaml"
META = ROOT / "recipe" / "meta.yaml"
#: Filled by ``.ci/run``: pip download --only-binary=:all: -d tests/.wheels ...
WHEELS = ROOT / "tests" / ".wheels"
#: The recipe's host and run requirements other than python and conda; pip
#: brings the rest of their closure into WHEELS.
NEEDED_WHEELS = ("pip", "hatchling", "hatch-vcs", "pluggy", "ruamel-yaml")
#: The release the throwaway copy of the repository is tagged with.
VERSION = "1.2.3"
TAG = f"v{VERSION}"
SITE_PACKAGES = (
    f"lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"
)


def _normalize(name: str) -> str:
    """PEP 503 names, which are also the names the wheel packages get."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _entry_points(text: str) -> dict[str, dict[str, str]]:
    groups: dict[str, dict[str, str]] = {}
    section = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = groups.setdefault(line.strip("[]"), {})
        elif line and section is not None:
            key, _, value = line.partition("=")
            section[key.strip()] = value.strip()
    return groups


# --- the two recipes say the same -------------------------------------------


def _load_meta_yaml() -> dict:
    """meta.yaml as conda-build sees it after rendering, with every Jinja
    expression kept as its source text: the comparison is of structure."""
    text = META.read_text()
    text = re.sub(r"\{#.*?#\}", "", text, flags=re.S)
    text = re.sub(r"^\{%.*%\}\n", "", text, flags=re.M)
    text = re.sub(r"\{\{(.*?)\}\}", lambda m: f"<<{m.group(1).strip()}>>", text)
    return YAML(typ="safe").load(text)


def _load_recipe_yaml() -> dict:
    return YAML(typ="safe").load(RECIPE.read_text())


def _names(specs: list[str]) -> dict[str, str]:
    """``["conda >=25.7", "pip"]`` -> ``{"conda": ">=25.7", "pip": ""}``."""
    return {spec.split()[0]: " ".join(spec.split()[1:]) for spec in specs}


def test_recipes_agree():
    meta, v1 = _load_meta_yaml(), _load_recipe_yaml()

    assert meta["package"]["name"] == v1["package"]["name"] == "conda-migrate"
    assert meta["build"]["noarch"] == v1["build"]["noarch"] == "python"
    assert meta["build"]["number"] == v1["build"]["number"] == 0
    assert _names(meta["requirements"]["host"]) == _names(v1["requirements"]["host"])
    assert _names(meta["requirements"]["run"]) == _names(v1["requirements"]["run"])
    assert meta["build"]["entry_points"] == v1["build"]["python"]["entry_points"]

    python_test, script_test = v1["tests"]
    assert meta["test"]["imports"] == python_test["python"]["imports"]
    assert meta["test"]["commands"] == script_test["script"]
    assert meta["test"]["requires"] == script_test["requirements"]["run"]


def test_recipes_take_the_version_from_the_latest_git_tag():
    meta_text, v1 = META.read_text(), _load_recipe_yaml()

    # conda-build's GIT_DESCRIBE_TAG and rattler-build's git.latest_tag are
    # the same tag; a leading "v" is dropped in both, as hatch-vcs drops it.
    assert "{% set tag = GIT_DESCRIBE_TAG" in meta_text
    assert 'tag[1:] if tag.startswith("v") else tag' in meta_text
    assert v1["context"]["tag"] == '${{ git.latest_tag("..") }}'
    assert 'tag[1:] if tag is startingwith("v") else tag' in v1["context"]["version"]
    assert _load_meta_yaml()["package"]["version"] == "<<version>>"
    assert v1["package"]["version"] == "${{ version }}"
    # hatch-vcs gets the same version for the wheel inside the package.
    assert "SETUPTOOLS_SCM_PRETEND_VERSION={{ version }} {{ PYTHON }}" in meta_text
    assert v1["build"]["script"]["env"] == {
        "SETUPTOOLS_SCM_PRETEND_VERSION": "${{ version }}"
    }


def test_recipes_install_what_pyproject_declares():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    v1 = _load_recipe_yaml()
    run = _names(v1["requirements"]["run"])

    assert run.pop("python") == project["requires-python"]
    assert run.pop("conda")
    assert run == _names(project["dependencies"])
    scripts = [f"{k} = {v}" for k, v in project["scripts"].items()]
    assert v1["build"]["python"]["entry_points"] == scripts


#: Every conda name the plugin imports, and what it then calls on it: the
#: list recipe.yaml's ``conda >=25.7`` was checked against in conda's history.
CONDA_APIS = {
    "conda": [],
    "conda.plugins": ["hookimpl"],
    "conda.plugins.types.CondaSubcommand": [],
    "conda.auxlib.exceptions.ValidationError": [],
    "conda.base.context.context": [
        "subdir",
        "plugin_manager",
        "active_prefix",
        "root_prefix",
        "channels",
        "always_softlink",
        "allow_softlinks",
    ],
    "conda.cli.main.main": [],
    "conda.cli.main_clean.find_index_cache": [],
    "conda.cli.main_clean.find_logfiles": [],
    "conda.cli.main_clean.find_pkgs": [],
    "conda.cli.main_clean.find_tarballs": [],
    "conda.common.path.strip_pkg_extension": [],
    "conda.core.envs_manager.list_all_known_prefixes": [],
    "conda.core.envs_manager.register_env": [],
    "conda.core.envs_manager.unregister_env": [],
    "conda.core.package_cache_data.PackageCacheData": [
        "all_caches_writable_first",
        "is_writable",
    ],
    "conda.core.prefix_data.PrefixData": [
        "reload",
        "get_conda_packages",
        "get_python_packages",
        "iter_records",
    ],
    "conda.exceptions.CondaError": [],
    "conda.exceptions.CondaHTTPError": [],
    "conda.gateways.connection.download.download": [],
    "conda.gateways.disk.delete.rm_rf": [],
    "conda.misc.clone_env": [],
    "conda.models.environment.Environment": ["from_prefix"],
}


def _conda_imports() -> set[str]:
    import ast

    found = set()
    for path in sorted((ROOT / "conda_migrate_plugin").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.level == 0  # not the package's own backends/conda.py
                and (node.module or "").split(".")[0] == "conda"
            ):
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                found.update(
                    a.name for a in node.names if a.name.split(".")[0] == "conda"
                )
    return found


def test_conda_floor_covers_every_conda_api_imported():
    """A new conda import fails here: look up when conda gained it
    (``git log -S`` in conda's repository) and raise ``conda >=`` in both
    recipes if it is newer than 25.7, then add it to CONDA_APIS."""
    assert _conda_imports() == set(CONDA_APIS)
    assert _names(_load_recipe_yaml()["requirements"]["run"])["conda"] == ">=25.7"
    assert _names(_load_meta_yaml()["requirements"]["run"])["conda"] == ">=25.7"


@requires_conda
def test_installed_conda_has_every_api_used():
    import importlib

    import conda
    from conda.base.context import context
    from packaging.version import Version

    assert Version(conda.__version__) >= Version("25.7")
    for dotted, attributes in CONDA_APIS.items():
        module, _, name = dotted.rpartition(".")
        try:
            found = importlib.import_module(dotted)
        except ImportError:
            found = getattr(importlib.import_module(module), name)
        for attribute in attributes:
            assert hasattr(found, attribute), f"{dotted}.{attribute}"
    exporter = context.plugin_manager.get_environment_exporter_by_format(
        "environment-yaml"
    )
    assert callable(exporter.export)


# --- the package builds offline, installs and runs --------------------------


def _wheels() -> list[Path]:
    wheels = sorted(WHEELS.glob("*.whl"))
    missing = set(NEEDED_WHEELS) - {_normalize(w.name.split("-")[0]) for w in wheels}
    if missing:
        pytest.skip(
            f"no wheels of {', '.join(sorted(missing))} in {WHEELS}; .ci/run downloads "
            "them (pip download --only-binary=:all: -d tests/.wheels ...)"
        )
    return wheels


def _requirements(wheel: Path) -> list[str]:
    """The conda dependencies of a wheel's package, from its Requires-Dist,
    as the channel conda-forge builds from the same project would state them."""
    from packaging.requirements import Requirement

    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(zf.read(name).decode())
    depends = [f"python {metadata.get('Requires-Python', '')}".strip()]
    for line in metadata.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue
        depends.append(
            f"{_normalize(requirement.name)} {requirement.specifier}".strip()
        )
    return depends


@pytest.fixture(scope="session")
def site_channel(tmp_path_factory) -> Path:
    """A local channel like the site's: CPython, pip, the build backend and
    the run requirements, with their dependencies in the repodata."""
    pytest.importorskip("rattler_build", reason="py-rattler-build is not installed")
    from rattler.index import index_fs

    from tests.support.realpkgs import (
        PackageUnavailable,
        build_cpython_package,
        build_noarch_python_from_wheel,
    )

    wheels = _wheels()
    root = tmp_path_factory.mktemp("site-channel")
    work = tmp_path_factory.mktemp("site-channel-build")
    try:
        build_cpython_package(root / "linux-64", work)
    except PackageUnavailable as err:
        pytest.skip(str(err))
    depends = {}
    for wheel in wheels:
        package = build_noarch_python_from_wheel(wheel, root / "noarch", work)
        depends[package.name] = _requirements(wheel)
    asyncio.run(index_fs(root, write_zst=False, write_shards=False))
    # The wheel packages declare only python; conda-forge's repodata would
    # name their dependencies, which the build environment's solve needs.
    repodata_path = root / "noarch" / "repodata.json"
    repodata = json.loads(repodata_path.read_text())
    for filename, record in repodata["packages.conda"].items():
        record["depends"] = depends[filename]
    repodata_path.write_text(json.dumps(repodata))
    return root


@dataclass(frozen=True)
class Built:
    package: Path
    version: str


def _git(*args: str | Path, cwd: Path) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=ci", "-c", "user.email=ci@localhost", *map(str, args)],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def _release_copy(parent: Path, tag: str | None) -> Path:
    """This checkout's files as they are on disk, committed in a new
    repository and tagged ``tag``: the real repository's tags stay as they are."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip(
            "the recipe takes its version from git: needs git and a git checkout"
        )
    source = parent / "conda-migrate"
    listed = _git(
        "ls-files", "--cached", "--others", "--exclude-standard", "-z", cwd=ROOT
    )
    for rel in filter(None, listed.split("\0")):
        if (ROOT / rel).is_file():
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, source / rel)
    _git("init", "-q", cwd=source)
    _git("add", "-A", cwd=source)
    _git("commit", "-q", "-m", "release", cwd=source)
    if tag:
        _git("tag", tag, cwd=source)
    return source


def _render_version(source: Path) -> str:
    from rattler_build import PlatformConfig, RenderConfig, Stage0Recipe

    recipe = Stage0Recipe.from_file(source / "recipe" / "recipe.yaml")
    config = RenderConfig(platform=PlatformConfig(experimental=True))
    (variant,) = recipe.render(render_config=config)
    return str(variant.recipe.package.version)


@pytest.mark.parametrize("tag", ["v2.0.1", "2.0.1"])
def test_recipe_version_is_the_tag_without_its_v(tag, tmp_path):
    pytest.importorskip("rattler_build", reason="py-rattler-build is not installed")

    assert _render_version(_release_copy(tmp_path, tag)) == "2.0.1"


def test_recipe_without_a_tag_does_not_render(tmp_path):
    """No 0.0.0 package: an untagged checkout is refused."""
    rattler_build = pytest.importorskip(
        "rattler_build", reason="py-rattler-build is not installed"
    )
    source = _release_copy(tmp_path, None)

    with pytest.raises(rattler_build.RattlerBuildError, match="cannot describe"):
        _render_version(source)


@pytest.fixture(scope="session")
def built(site_channel, tmp_path_factory) -> Built:
    """recipe/recipe.yaml built from a release copy of this checkout tagged
    TAG, offline, against site_channel."""
    from rattler_build import PlatformConfig, RenderConfig, Stage0Recipe

    source = _release_copy(tmp_path_factory.mktemp("release"), TAG)

    output = tmp_path_factory.mktemp("recipe-output")
    recipe = Stage0Recipe.from_file(source / "recipe" / "recipe.yaml")
    with pytest.MonkeyPatch.context() as mp:
        # rattler's package cache, away from $HOME and the other tests.
        mp.setenv("RATTLER_CACHE_DIR", str(tmp_path_factory.mktemp("rattler-cache")))
        (result,) = recipe.run_build(
            render_config=RenderConfig(platform=PlatformConfig(experimental=True)),
            output_dir=output,
            channels=[site_channel.as_uri()],
            no_build_id=True,
        )
    (package,) = result.packages
    return Built(Path(package), result.version)


@pytest.fixture(scope="session")
def installed(built, site_channel, tmp_path_factory) -> Path:
    """A fresh environment holding that Python, the package and its run
    requirements, installed by py-rattler. The package's depends are not
    solved: conda is in no channel here (the package's code runs without
    it), and the wheel packages carry PEP 503 names (ruamel-yaml, where
    conda-forge says ruamel.yaml)."""
    import rattler

    output = built.package.parent.parent
    records = asyncio.run(
        rattler.solve(
            [site_channel.as_uri()],
            ["python", "pluggy", "ruamel-yaml"],
            platforms=["linux-64", "noarch"],
        )
    )
    own = rattler.SparseRepoData(
        rattler.Channel(output.as_uri()), "noarch", output / "noarch" / "repodata.json"
    ).load_records(rattler.PackageName("conda-migrate"))
    assert [r.file_name for r in own] == [built.package.name]
    prefix = tmp_path_factory.mktemp("site-conda") / "base"
    asyncio.run(
        rattler.install(
            records + own,
            prefix,
            cache_dir=tmp_path_factory.mktemp("install-cache"),
            show_progress=False,
        )
    )
    return prefix


def _clean_env(home: Path) -> dict[str, str]:
    """No virtualenv, PYTHONPATH or conda of the test run leaks in."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(home)}


def test_package_version_is_the_release_tag(built, installed, tmp_path):
    assert built.version == VERSION
    assert built.package.name.startswith(f"conda-migrate-{built.version}-")
    record = json.loads(
        next((installed / "conda-meta").glob("conda-migrate-*.json")).read_text()
    )
    assert record["version"] == VERSION
    # hatch-vcs gave the wheel inside the same version.
    out = subprocess.run(
        [
            installed / "bin" / "python",
            "-c",
            "import conda_migrate_plugin as m; print(m.__version__)",
        ],
        capture_output=True,
        text=True,
        env=_clean_env(tmp_path),
        cwd=tmp_path,
        check=True,
    ).stdout
    assert out.strip() == VERSION
    assert (
        installed / SITE_PACKAGES / f"conda_migrate-{VERSION}.dist-info" / "METADATA"
    ).is_file()


def test_package_installs_the_plugin_and_console_script(installed):
    site = installed / SITE_PACKAGES
    for module in ("__init__.py", "plugin.py", "cli.py", "_version.py"):
        assert (site / "conda_migrate_plugin" / module).is_file()
    (dist_info,) = site.glob("conda_migrate-*.dist-info")
    groups = _entry_points((dist_info / "entry_points.txt").read_text())
    assert groups["conda"] == {"conda-migrate": "conda_migrate_plugin.plugin"}
    assert groups["console_scripts"] == {
        "conda-migrate": "conda_migrate_plugin.cli:main"
    }
    script = installed / "bin" / "conda-migrate"
    assert os.access(script, os.X_OK)
    assert (
        script.read_text().splitlines()[0]
        == f"#!{installed}/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    )


def _console_script_help(prefix: Path, home: Path) -> str:
    """``PREFIX/bin/conda-migrate --help`` run as a user would, by path."""
    result = subprocess.run(
        [prefix / "bin" / "conda-migrate", "--help"],
        capture_output=True,
        text=True,
        env=_clean_env(home),
        cwd=home,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_console_script_runs_in_the_installed_environment(installed, tmp_path):
    usage = _console_script_help(installed, tmp_path)

    assert usage.startswith("usage: conda-migrate ")
    assert "-d DIR" in usage and "--all" in usage


@requires_conda
def test_conda_lists_migrate_from_the_installed_package(installed, tmp_path):
    """conda (this interpreter's) with the package's site-packages first on
    its path: ``conda --help`` lists migrate, from the installed entry point."""
    site = installed / SITE_PACKAGES
    env = {**os.environ, "PYTHONPATH": str(site), "HOME": str(tmp_path)}
    env.pop("CONDA_PREFIX", None)
    conda = [sys.executable, "-m", "conda"]
    run = {"capture_output": True, "text": True, "env": env, "cwd": tmp_path}

    locate = (
        "import importlib.metadata as md, conda_migrate_plugin as m\n"
        "(ep,) = [e for e in md.entry_points(group='conda') if e.name == 'conda-migrate']\n"
        "print(ep.dist.locate_file(''), m.__file__, m.__version__)"
    )
    where = subprocess.run([sys.executable, "-c", locate], check=True, **run)
    where = where.stdout.split()
    assert where == [
        str(site),
        str(site / "conda_migrate_plugin" / "__init__.py"),
        VERSION,
    ]

    listed = subprocess.run([*conda, "--help"], **run)
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^\s+migrate\s+Move environments", listed.stdout, re.M)
    usage = subprocess.run([*conda, "migrate", "--help"], **run)
    assert usage.returncode == 0, usage.stderr
    assert usage.stdout.startswith("usage: conda migrate ")


@requires_conda
def test_conda_installs_the_built_package(built, site_channel, tmp_path):
    """conda's own installer links the package file into an environment made
    from the site channel: entry point script, site-packages, conda-meta.
    The package file is installed explicitly, without a solve, because conda
    itself is in no channel here."""
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "CONDA_PKGS_DIRS": str(tmp_path / "pkgs"),
    }
    env.pop("CONDA_PREFIX", None)
    prefix = tmp_path / "base"
    conda = [sys.executable, "-m", "conda"]
    run = {"capture_output": True, "text": True, "env": env, "cwd": tmp_path}
    channel = ["--override-channels", "-c", site_channel.as_uri()]

    create = subprocess.run(
        [*conda, "create", "-y", "-p", prefix, *channel, "python"], **run
    )
    assert create.returncode == 0, create.stderr
    install = subprocess.run(
        [*conda, "install", "-y", "-p", prefix, built.package], **run
    )
    assert install.returncode == 0, install.stderr

    (record,) = (prefix / "conda-meta").glob("conda-migrate-*.json")
    assert json.loads(record.read_text())["version"] == VERSION
    assert (prefix / SITE_PACKAGES / "conda_migrate_plugin" / "plugin.py").is_file()
    assert _console_script_help(prefix, tmp_path).startswith("usage: conda-migrate ")


@pytest.mark.parametrize("recipe", [RECIPE, META], ids=["rattler-build", "conda-build"])
def test_description_names_relocation_as_the_engine(recipe):
    """Relocation is the default engine; conda's clone the fallback."""
    about = recipe.read_text().split("\nabout:\n")[1]
    assert "copies it and rewrites its\n    prefix offline, file by file" in about
    assert "copies it with conda's clone" not in about
