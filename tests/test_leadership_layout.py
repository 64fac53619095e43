"""The leadership package's layout: no import circles (type-only imports count), no
swimmesh imports, and no module past the size where it is usually two mechanisms."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "leadership"
MAX_LINES = 500


def _imports(path: Path) -> set[str]:
    """Every module of the package (and every top-level package) ``path`` imports, at any
    depth of the file, ``if TYPE_CHECKING:`` blocks included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                if node.module:
                    found.add(node.module.split(".")[0])
                else:
                    found.update(alias.name for alias in node.names)
            elif node.module:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {p.stem: p for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for imported in _imports(path):
            short = imported.removeprefix("leadership.")
            if short in modules:
                deps.add(short)
        graph[name] = deps
    return graph


def test_no_module_of_leadership_imports_another_that_imports_it_back() -> None:
    graph = _graph()
    cycles: list[list[str]] = []

    def walk(node: str, path: list[str]) -> None:
        for dep in sorted(graph[node]):
            if dep in path:
                cycles.append([*path[path.index(dep) :], dep])
            elif dep not in done:
                walk(dep, [*path, dep])
        done.add(node)

    done: set[str] = set()
    for start in sorted(graph):
        if start not in done:
            walk(start, [start])
    assert not cycles, cycles


def test_leadership_never_imports_swimmesh() -> None:
    offenders = {
        p.name
        for p in PACKAGE.glob("*.py")
        if any(i == "swimmesh" or i.startswith("swimmesh.") for i in _imports(p))
    }
    assert not offenders


def test_no_leadership_module_is_over_the_size_of_one_mechanism() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in PACKAGE.glob("*.py")}
    assert {n: s for n, s in sizes.items() if s > MAX_LINES} == {}
