"""Imports run one way.

The package is layered, each module importing only from its own layer or a
lower one, and never in a cycle, so that a module can be read, tested and
changed knowing only what lies below it. In the tests: a test module
imports the package and ``tests.support``, never another test module nor
``conftest`` (fixtures reach it through pytest), so that moving or deleting
one test module never breaks another.

Every import counts, wherever it is written (inside a function, under
``TYPE_CHECKING``): each one is a dependency a reader has to follow.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "conda_migrate_plugin"
TESTS = ROOT / "tests"
#: Where test modules live: one module of the package at a time, or whole runs.
TEST_HOMES = ("unit", "scenarios")

#: The layers, lowest first; a module's name is relative to the package
#: ("" is the package's own ``__init__``). Where a module sits above the
#: role its name suggests, its imports put it there.
LAYERS: dict[str, tuple[str, ...]] = {
    "base": ("", "_version", "exceptions", "names", "text"),
    "mechanics": (
        *("safety", "safety.atomic", "safety.durable", "safety.interrupt"),
        *("safety.lock", "safety.noreplace", "safety.startup", "safety.statedir"),
        # options: what the user asked for, read by every step; imports nothing.
        *("deadline", "gc_pause", "jobs", "limits", "mounts", "options"),
        "progress",
        # running_jobs: squeue, asked once before any removal; imports nothing.
        "running_jobs",
    ),
    "readers": (
        *("classify", "damage", "records", "snapshot"),
        # The result holds damage's findings, the journal records the
        # snapshot's stamp, and the output sink reports results.
        *("output", "result", "safety.journal"),
    ),
    "engines": (
        *("backends", "backends.clean", "backends.clone", "backends.conda"),
        "backends.extractions",
        *("backends.portable", "backends.registry", "export"),
        *("relocation", "relocation.chunks", "relocation.copyfiles"),
        *("relocation.findings", "relocation.prefix", "relocation.relocate"),
        *("relocation.repair", "relocation.share", "relocation.softlinks"),
        *("relocation.verify", "relocation.xattrs"),
    ),
    "steps": (
        *("array_plan", "caches", "candidates", "compare", "discover", "engine"),
        *("migrate", "plan", "preflight", "purge", "quota", "quota_tools"),
        *("rcfiles", "rcfiles.condarc", "rcfiles.environment"),
        *("rcfiles.modulefiles", "rcfiles.rewrite", "rcfiles.shell"),
        *("rcfiles.spellings", "rcfiles.universal"),
        *("refusals", "report", "resume", "safety.remove", "scratch_refs"),
        *("selection", "settle", "transaction"),
    ),
    "entry": (
        *("__main__", "array", "cli", "parser", "plugin", "sbatch", "submit"),
        "workflow",
    ),
}

#: Written at install time by hatch-vcs, and git-ignored: absent in a bare checkout.
GENERATED = {"_version"}


def modules(package: Path) -> dict[str, Path]:
    """Every module below ``package``, by its dotted name relative to it."""
    found = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of the package that module ``name`` (at ``path``) imports,
    relative imports resolved; ``from x import y`` names ``x.y`` where that
    is a module, else ``x``."""
    here = name.split(".") if name else []
    if path.name != "__init__.py":
        here = here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                module = ".".join([PACKAGE, *base, *filter(None, [node.module])])
            else:
                module = node.module or ""
            targets = [
                f"{module}.{alias.name}"
                if f"{module}.{alias.name}"[len(PACKAGE) + 1 :] in known
                else module
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                found.add(target[len(PACKAGE) + 1 :])
    found.discard(name)
    return found & known


def graph(package: Path) -> dict[str, set[str]]:
    found = modules(package)
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def layer_of(layers: dict[str, tuple[str, ...]]) -> dict[str, int]:
    return {name: rank for rank, names in enumerate(layers.values()) for name in names}


def upward(edges: dict[str, set[str]], layers: dict[str, tuple[str, ...]]) -> list[str]:
    rank = layer_of(layers)
    names = list(layers)
    return sorted(
        f"{name} ({names[rank[name]]}) imports {target} ({names[rank[target]]})"
        for name, targets in edges.items()
        for target in targets
        if name in rank and target in rank and rank[target] > rank[name]
    )


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles: each strongly connected set of more than one
    module (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_every_module_is_in_one_layer():
    placed = [name for names in LAYERS.values() for name in names]
    assert len(placed) == len(set(placed)), "a module in two layers"
    found = set(modules(ROOT / PACKAGE))
    assert found - set(placed) == set(), "modules in no layer: add them to LAYERS"
    assert set(placed) - found - GENERATED == set(), "layers name modules gone"


def test_no_module_imports_from_a_layer_above_its_own():
    assert upward(graph(ROOT / PACKAGE), LAYERS) == []


def test_no_import_cycle():
    assert cycles(graph(ROOT / PACKAGE)) == []


def test_the_checks_see_an_upward_import_and_a_cycle(tmp_path):
    """The checks above can fail: a package where a low module imports a
    high one, and two modules import each other."""
    package = tmp_path / PACKAGE
    (package / "sub").mkdir(parents=True)
    sources = {
        "__init__.py": "",
        "low.py": "from . import high\n",
        "high.py": "def f():\n    from .sub import a\n",
        "sub/__init__.py": "",
        "sub/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from .b import B\n",
        "sub/b.py": f"from {PACKAGE}.sub.a import A\n",
    }
    for name, text in sources.items():
        (package / name).write_text(text)
    edges = graph(package)
    layers = {"base": ("", "low", "sub", "sub.a", "sub.b"), "top": ("high",)}
    assert upward(edges, layers) == ["low (base) imports high (top)"]
    assert cycles(edges) == [["sub.a", "sub.b"]]


def imported_by_tests(path: Path) -> set[str]:
    """Every module a file of the tests imports, by its full dotted name."""
    names: set[str] = set()
    package = path.relative_to(ROOT).parent.parts
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            module = ".".join([*base, *filter(None, [node.module])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def is_test_module(name: str) -> bool:
    leaf = name.rsplit(".", 1)[-1]
    return leaf == "conftest" or leaf.startswith("test_")


def test_no_test_module_imports_another_or_conftest():
    wrong = {
        str(path.relative_to(TESTS)): sorted(
            filter(is_test_module, imported_by_tests(path))
        )
        for path in TESTS.rglob("*.py")
    }
    assert {path: names for path, names in wrong.items() if names} == {}


def test_every_test_module_is_a_unit_or_a_scenario_test():
    homes = {
        str(path.relative_to(TESTS))
        for path in TESTS.rglob("test_*.py")
        if path.relative_to(TESTS).parts[0] not in TEST_HOMES
    }
    assert homes == set()


def test_unit_tests_mirror_the_package():
    """``tests/unit/a/test_b.py`` tests ``a/b.py`` (or the package ``a/b/``):
    the tests of a module are found at its own path."""
    unit = TESTS / "unit"
    found = set(modules(ROOT / PACKAGE))
    strays = {
        str(path.relative_to(unit))
        for path in unit.rglob("test_*.py")
        if path != Path(__file__).resolve()
        and ".".join((*path.relative_to(unit).parent.parts, path.stem[5:])) not in found
    }
    assert strays == set(), "name a unit test after the module it tests"
