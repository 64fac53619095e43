"""The packages' import graphs have no circles.

Every ``import`` statement counts, wherever it stands: at module level, inside a function,
or under ``if TYPE_CHECKING:`` (a type-only circle is still a circle of design, and the
first refactoring that makes it a runtime import breaks the package).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("swimmesh", "leadership", "peerhealth")
KNOWN_CIRCLES: list[list[str]] = [
    # A circle being taken apart goes here while its branch is in flight; the test below fails
    # once it is gone, so the list cannot go stale. Empty: no circle is tolerated.
]


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that module ``name`` imports, by absolute name."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            for alias in node.names:
                # ``from pkg import mod`` imports the submodule; ``from mod import thing``
                # imports the module that defines the thing.
                sub = f"{origin}.{alias.name}"
                targets.add(sub if sub in modules else origin)
    found: set[str] = set()
    for target in targets:
        # ``import a.b.c`` runs a.b.c; keep the longest prefix that is a project module.
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
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


def test_the_walker_sees_a_circle_even_a_type_only_one(tmp_path: Path) -> None:
    """The check itself can fail: a circle closed only under TYPE_CHECKING, or by an import
    inside a function, is found."""
    (tmp_path / "p").mkdir()
    sources = {
        "p.a": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n",
        "p.b": "def f() -> None:\n    from . import c\n",
        "p.c": "from p.a import A\n",
        "p.d": "from .a import A\n",
    }
    modules = {}
    for name, text in sources.items():
        path = tmp_path / (name.replace(".", "/") + ".py")
        path.write_text(text)
        modules[name] = path
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert graph == {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}, "p.d": {"p.a"}}
    assert circles(graph) == [["p.a", "p.b", "p.c"]]


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_circles(package: str) -> None:
    found = circles(import_graph())
    mine = [c for c in found if c[0].split(".")[0] == package and c not in KNOWN_CIRCLES]
    assert mine == [], "import circles: " + "; ".join(" <-> ".join(c) for c in mine)
    gone = [c for c in KNOWN_CIRCLES if c[0].split(".")[0] == package and c not in found]
    assert gone == [], f"no longer circles, remove from KNOWN_CIRCLES: {gone}"


def test_dependencies_flow_one_way() -> None:
    """peerhealth <- leadership <- swimmesh, and the swimmesh core (membership, protocol,
    transport) imports neither leadership nor the agent's edges."""
    graph = import_graph()
    for name, targets in graph.items():
        top = name.split(".")[0]
        for target in targets:
            if top == "peerhealth":
                assert target.startswith("peerhealth"), (name, target)
            if top == "leadership":
                assert not target.startswith("swimmesh"), (name, target)
    core = [n for n in graph if n.startswith(("swimmesh.protocol", "swimmesh.transport"))]
    core += ["swimmesh.member", "swimmesh.codec", "swimmesh.messages", "swimmesh.runtime"]
    for name in core:
        for target in graph[name]:
            assert not target.startswith(("leadership", "peerhealth")), (name, target)
            assert target not in ("swimmesh.agent", "swimmesh.control", "swimmesh.cli"), (
                name,
                target,
            )
