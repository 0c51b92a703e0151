"""pandas, numpy and pyarrow imported at their first use, not when the hub's modules load.

An unchanged rerun of a landlord (`datafix run`: every source unchanged, every step skipped)
never touches a data frame, yet importing the three took some 0.45 s of its CPU, a fifth of the
whole process. The three are bound here once, and the modules that work on frames import the
stand-ins (`from connectors.lazy import np, pa, pd`); a module that needs a submodule binds it
itself through `lazy_module`:

    if TYPE_CHECKING:
        import pyarrow.compute as pc
    else:
        pc = lazy_module("pyarrow.compute")

`pd` is a stand-in module: the first attribute read (`pd.DataFrame`) imports pandas for
real (the import system's own lock: safe from any thread) and copies its namespace into the
stand-in, so later reads find their attribute at once. Nothing else changes: `pd.X` is pandas'
own object. The stand-ins are not put in `sys.modules`; a plain `import pandas` elsewhere imports
it as usual.

`after_import(name, hook)`: `hook` runs once `name` is imported, at the first use of any of
these stand-ins (the Arrow memory pool is chosen there, before the hub allocates any Arrow
memory: `pipelines.lib.transforms`).

`deferred_imports(*names)`: while importing a library that imports modules it only uses inside
functions the hub never calls, those modules are bound as stand-ins too (great-expectations
imports scipy.stats and altair for one expectation the hub does not use: ~0.7 s of CPU and
~60 MB; `pipelines.lib.quality`). The stand-ins sit in `sys.modules` only while the block
runs; anything importing the module afterwards gets the real one.
"""

from __future__ import annotations

import importlib
import sys
import threading
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

__all__ = ["LazyModule", "after_import", "deferred_imports", "lazy_module", "np", "pa", "pd"]

_PENDING: list[tuple[str, Callable[[types.ModuleType], None]]] = []
_PENDING_LOCK = threading.Lock()


class LazyModule(types.ModuleType):
    """A module imported on its first attribute read (see the module's docstring)."""

    def __getattr__(self, attribute: str) -> Any:
        if sys.modules.get(self.__name__) is self:  # read inside `deferred_imports`
            del sys.modules[self.__name__]
        module = importlib.import_module(self.__name__)
        self.__dict__.update(vars(module))  # later reads no longer come here
        _run_hooks()
        return getattr(module, attribute)

    def __repr__(self) -> str:
        state = "imported" if "__file__" in self.__dict__ else "not imported yet"
        return f"<lazy module {self.__name__!r} ({state})>"


def lazy_module(name: str) -> types.ModuleType:
    """`name` itself when it is already imported, else a `LazyModule` that imports it on first
    use."""
    return sys.modules.get(name) or LazyModule(name)


@contextmanager
def deferred_imports(*names: str) -> Iterator[None]:
    """While the block runs, each of `names` not imported yet is a `LazyModule` in
    `sys.modules`: `import name` and `from package import name` bind the stand-in, which imports
    the real module at its first attribute read. After the block, `sys.modules` holds them as
    before (the stand-ins not used are taken out)."""
    placed = [name for name in names if name not in sys.modules]
    for name in placed:
        sys.modules[name] = LazyModule(name)
    try:
        yield
    finally:
        for name in placed:
            if isinstance(sys.modules.get(name), LazyModule):
                del sys.modules[name]


def after_import(name: str, hook: Callable[[types.ModuleType], None]) -> None:
    """Run `hook(module)` once module `name` is imported: now if it is, else at the first use of
    a `LazyModule` after it was (by that module or by anything else)."""
    with _PENDING_LOCK:
        _PENDING.append((name, hook))
    _run_hooks()


def _run_hooks() -> None:
    with _PENDING_LOCK:
        ready = [(name, hook) for name, hook in _PENDING if name in sys.modules]
        for entry in ready:
            _PENDING.remove(entry)
    for name, hook in ready:
        hook(sys.modules[name])


if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
else:
    np = lazy_module("numpy")
    pd = lazy_module("pandas")
    pa = lazy_module("pyarrow")
