"""No module reaches into another first-party module's private (`_name`) names.

What one module needs from another is public and documented there. Caught:
`from connectors.sql.odbc import _target`, and `odbc._target` after `import
connectors.sql.odbc as odbc` or `from connectors.sql import odbc`. Dunder names are allowed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = ("connectors", "pipelines", "schemas", "tests")


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _first_party(module: str | None, level: int) -> bool:
    return level > 0 or (module or "").split(".")[0] in FIRST_PARTY


def _is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def python_files() -> Iterator[Path]:
    """Every first-party .py file of the repository (the virtualenv left out)."""
    for top in FIRST_PARTY:
        for path in sorted((ROOT / top).rglob("*.py")):
            if ".venv" not in path.relative_to(ROOT).parts:
                yield path


def private_uses(path: Path) -> list[str]:
    """`file:line: what` for each private name of another first-party module `path` uses."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    where = path.relative_to(ROOT)
    found: list[str] = []
    modules: dict[str, str] = {}  # local name -> first-party module it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and _first_party(node.module, node.level):
            source = "." * node.level + (node.module or "")
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"{where}:{node.lineno}: from {source} import {alias.name}")
                elif node.level == 0 and _is_module(f"{node.module}.{alias.name}"):
                    modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FIRST_PARTY:
                    modules[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            base = _dotted(node.value)
            if base is not None and (base in modules or base in modules.values()):
                found.append(f"{where}:{node.lineno}: {base}.{node.attr}")
    return found


def test_no_module_uses_another_modules_private_names() -> None:
    found = [use for path in python_files() for use in private_uses(path)]
    assert not found, "private names used across modules (make them public):\n" + "\n".join(found)


def test_the_check_sees_both_forms(tmp_path: Path) -> None:
    sample = ROOT / "tests" / "_private_imports_sample.py"
    sample.write_text(
        "from connectors.sql.odbc import _target, __all__\n"
        "from connectors.sql import odbc\n"
        "import connectors.sql.client as client\n"
        "odbc._parse('x')\nclient._masked('y')\nodbc.__name__\nodbc.read_odbc\n",
        encoding="utf-8",
    )
    try:
        found = private_uses(sample)
    finally:
        sample.unlink()
    assert [use.split(": ", 1)[1] for use in found] == [
        "from connectors.sql.odbc import _target",
        "odbc._parse",
        "client._masked",
    ]
