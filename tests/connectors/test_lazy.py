"""connectors/lazy.py: a module bound by `lazy_module` is imported at its first attribute read,
is then the real module's namespace, and `after_import` hooks run before that first use returns.

Each test imports a small module written into its own temporary folder, so nothing the rest of
the suite imported (pandas is, long before these run) hides whether the import happened.
"""

from __future__ import annotations

import sys
import types
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.lazy import LazyModule, after_import, deferred_imports, lazy_module


@pytest.fixture
def module_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The name of a fresh module (`VALUE = 42`, a function, a package with a submodule) that
    records in `IMPORTS` (a list in `sys`) each time it is executed."""
    name = f"lazy_probe_{uuid.uuid4().hex[:8]}"
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text(
        "import sys\n"
        "sys.lazy_probe_imports.append(__name__)\n"
        "VALUE = 42\n"
        "def double(x):\n"
        "    return 2 * x\n"
    )
    (package / "part.py").write_text(
        "import sys\nsys.lazy_probe_imports.append(__name__)\nPART = 'part'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "lazy_probe_imports", [], raising=False)
    yield name
    for loaded in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
        del sys.modules[loaded]


def imports() -> list[str]:
    return sys.lazy_probe_imports  # type: ignore[attr-defined]


def test_the_module_is_imported_at_its_first_attribute_read(module_name: str) -> None:
    probe = lazy_module(module_name)
    assert isinstance(probe, LazyModule)
    assert imports() == []
    assert module_name not in sys.modules
    assert "not imported yet" in repr(probe)

    assert probe.VALUE == 42
    assert imports() == [module_name]
    assert probe.double(4) == 8
    assert probe.double is sys.modules[module_name].double  # the module's own objects
    assert imports() == [module_name]  # once
    assert "VALUE" in vars(probe)  # later reads are plain attribute reads
    assert "(imported)" in repr(probe)


def test_a_submodule_imports_its_package_at_first_use(module_name: str) -> None:
    part = lazy_module(f"{module_name}.part")
    assert imports() == []
    assert part.PART == "part"
    assert imports() == [module_name, f"{module_name}.part"]


def test_a_missing_attribute_is_an_attribute_error_after_the_import(module_name: str) -> None:
    probe = lazy_module(module_name)
    assert not hasattr(probe, "nothing_here")
    assert imports() == [module_name]


def test_an_imported_module_is_returned_as_it_is(module_name: str) -> None:
    real = __import__(module_name)
    assert lazy_module(module_name) is real


def test_a_hook_runs_once_at_the_first_use_after_its_module_is_imported(
    module_name: str,
) -> None:
    seen: list[types.ModuleType] = []
    after_import(f"{module_name}.part", seen.append)
    probe = lazy_module(module_name)
    assert probe.VALUE == 42
    assert seen == []  # the package alone does not bring the submodule
    part = lazy_module(f"{module_name}.part")
    assert part.PART == "part"
    assert seen == [sys.modules[f"{module_name}.part"]]  # before the value was returned
    assert lazy_module(module_name).VALUE == 42
    assert len(seen) == 1


def test_a_hook_for_an_imported_module_runs_at_once(module_name: str) -> None:
    __import__(module_name)
    seen: list[str] = []
    after_import(module_name, lambda module: seen.append(module.__name__))
    assert seen == [module_name]


def test_the_hub_chooses_the_arrow_memory_pool_before_its_first_arrow_use() -> None:
    """pyarrow is imported by whichever module needs it first; the pool hook of
    pipelines.lib.transforms has run by then (an explicit ARROW_DEFAULT_MEMORY_POOL aside)."""
    import os

    import pyarrow as pa

    from connectors.rawtable import RawTable  # noqa: F401  (a module using Arrow)
    from pipelines.lib import transforms

    assert transforms.pa.string() == pa.string()  # a first use of the lazily bound module
    if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        assert pa.default_memory_pool().backend_name in {"jemalloc", "system"}


def test_a_deferred_import_binds_a_stand_in_imported_at_first_use(module_name: str) -> None:
    """`import name` inside `deferred_imports` imports nothing; the stand-in it binds imports
    the module at its first attribute read, and `sys.modules` is as before once the block ends."""
    with deferred_imports(module_name):
        probe = __import__(module_name)
        assert isinstance(probe, LazyModule)
    assert imports() == []
    assert module_name not in sys.modules  # a later `import name` gets the real module
    assert probe.double(4) == 8
    assert imports() == [module_name]
    assert sys.modules[module_name].double is probe.double


def test_a_deferred_module_read_inside_the_block_is_the_real_one(module_name: str) -> None:
    with deferred_imports(module_name):
        probe = __import__(module_name)
        assert probe.VALUE == 42  # `from name import X` inside the block imports it for real
        assert not isinstance(sys.modules[module_name], LazyModule)
    assert imports() == [module_name]
    assert sys.modules[module_name].VALUE == 42


def test_an_imported_module_is_not_deferred(module_name: str) -> None:
    real = __import__(module_name)
    with deferred_imports(module_name):
        assert __import__(module_name) is real
    assert sys.modules[module_name] is real


def test_the_contracts_leave_scipy_stats_and_altair_to_their_first_use() -> None:
    """great-expectations imports them for an expectation the contracts do not use: in a fresh
    process, building the contracts' engine imports neither; the expectation's module still
    reaches them at its first use."""
    import subprocess

    probe = (
        "import sys\n"
        "from pipelines.lib import quality\n"
        "quality._get_engine()\n"
        "print(sorted(m for m in ('scipy.stats', 'altair') if m in sys.modules))\n"
        "from great_expectations.expectations.core import (\n"
        "    expect_column_kl_divergence_to_be_less_than as kl)\n"
        "print(kl.stats.entropy([0.5, 0.5], [0.5, 0.5]), kl.alt.Chart.__name__)\n"
    )
    shown = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert shown == ["[]", "0.0 Chart"]
