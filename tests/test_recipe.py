"""The site's recipes: recipe/recipe.yaml (rattler-build) and recipe/meta.yaml
(conda-build) say the same, and the conda they require has every API the
plugin calls."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import requires_conda
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "recipe" / "recipe.yaml"
META = ROOT / "recipe" / "meta.yaml"


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
    "conda.base.context.context": [
        "subdir",
        "plugin_manager",
        "active_prefix",
        "root_prefix",
        "channels",
    ],
    "conda.cli.main.main": [],
    "conda.cli.main_clean.find_index_cache": [],
    "conda.cli.main_clean.find_logfiles": [],
    "conda.cli.main_clean.find_pkgs": [],
    "conda.cli.main_clean.find_tarballs": [],
    "conda.core.envs_manager.list_all_known_prefixes": [],
    "conda.core.envs_manager.register_env": [],
    "conda.core.envs_manager.unregister_env": [],
    "conda.core.prefix_data.PrefixData": [
        "reload",
        "get_conda_packages",
        "get_python_packages",
    ],
    "conda.exceptions.CondaError": [],
    "conda.gateways.disk.delete.rm_rf": [],
    "conda.misc.clone_env": [],
    "conda.models.environment.Environment": ["from_prefix"],
}


def _conda_imports() -> set[str]:
    import ast

    found = set()
    for path in sorted((ROOT / "conda_migrate_plugin").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
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
