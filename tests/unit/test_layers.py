"""Imports run one way. In the tests: a test module imports the package and
``tests.support``, never another test module nor ``conftest`` (fixtures
reach it through pytest), so that moving or deleting one test module never
breaks another."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
#: Where test modules live: one module of the package at a time, or whole runs.
TEST_HOMES = ("unit", "scenarios")


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of its code, by its full
    dotted name (relative imports resolved against ``path``'s package)."""
    names: set[str] = set()
    package = path.relative_to(TESTS.parent).parent.parts
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def is_test_module(name: str) -> bool:
    leaf = name.rsplit(".", 1)[-1]
    return leaf == "conftest" or leaf.startswith("test_")


def test_no_test_module_imports_another_or_conftest():
    wrong = {
        str(path.relative_to(TESTS)): sorted(filter(is_test_module, imported(path)))
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
