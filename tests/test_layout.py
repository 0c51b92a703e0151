"""The repository's layout rules, checked on the source itself."""

from __future__ import annotations

import ast
from pathlib import Path

from pipelines.lib.environment import REPO_ROOT

PRODUCTION_PACKAGES = ("pipelines", "schemas")
SANDBOX = "connectors.sandbox"


def _imported_modules(node: ast.AST) -> list[str]:
    """The modules an import node names (for `from X import a, b`: X, X.a and X.b)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and not node.level:
        return [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return []


def test_no_production_module_imports_the_sandbox() -> None:
    """`connectors/sandbox/` (the demo and rehearsal peers) stays off the production path: no
    module under pipelines/ or schemas/ imports it, at the top or inside a function. The
    sandbox's commands are registered in pipelines/cli.py by import string."""
    offenders = []
    for package in PRODUCTION_PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                for module in _imported_modules(node):
                    if module == SANDBOX or module.startswith(f"{SANDBOX}."):
                        where = Path(path).relative_to(REPO_ROOT)
                        offenders.append(f"{where}:{node.lineno}: imports {module}")
                        break
    assert not offenders, "production modules import the sandbox:\n" + "\n".join(offenders)


FIRST_PARTY = ("pipelines", "connectors", "schemas")


def _module_graph() -> dict[str, set[str]]:
    """First-party module → the first-party modules it imports (anywhere in the file)."""
    modules: dict[str, Path] = {}
    for package in FIRST_PARTY:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            graph[name].update(m for m in _imported_modules(node) if m in modules and m != name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph[module]):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_no_import_circle() -> None:
    """Modules import each other in one direction only (imports inside functions count too):
    a circle means two modules that cannot be read, tested or changed apart."""
    circles = _cycles(_module_graph())
    assert not circles, "modules importing each other in a circle:\n" + "\n".join(
        " <-> ".join(group) for group in circles
    )


def test_the_cycle_finder_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
