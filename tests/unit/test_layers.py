"""The domain packages depend on each other in one direction: no import cycles between them.

A cycle (tracking → dispatch → tracking, as there once was) means neither package can be
understood, tested or changed alone. Imports under ``if TYPE_CHECKING:`` do not count: they
describe types, not a dependency at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import surge

ROOT = Path(surge.__file__).parent
# Entry points and the composition root name every domain on purpose: the composition root
# (app, resources), the commands (cli, up, bench, every package's cli module).
ROOTS = {"app", "resources", "cli", "up", "bench", "__main__"}


def _runtime_imports(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        package = parts[0]
        if package in ROOTS or parts[-1] in ROOTS:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for name in _runtime_imports(tree):
            target = name.split(".")
            if target[0] == "surge" and len(target) > 1 and target[1] not in (package, *ROOTS):
                graph.setdefault(package, set()).add(target[1])
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_the_domain_packages_import_each_other_without_cycles() -> None:
    cycle = _cycle(_package_graph())
    assert cycle is None, "import cycle between packages: " + " → ".join(cycle or [])


def test_the_cycle_finder_finds_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}}) is None
