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
