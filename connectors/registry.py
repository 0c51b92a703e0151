"""The kinds of source and sink a datafix may name: each defined once, in its system's folder.

A kind is one value of `kind:` in a datafix (`csv`, `sql`, `soap` …). Everything about it lives
in `connectors/<system>/kinds.py`: its settings model (pydantic, built from `schemas/config.py`),
its reader (sources) or its writer (sinks, the protocol of `connectors/delivery.py`) and its
check hook (what `datafix check` verifies without writing anything). This module lists them,
one line per kind; the datafix model (`schemas/datafix.py`) and the stages (`pipelines/`)
reach a kind only through it, never by name.

Adding a kind: one module holding a `SourceKind` or `SinkKind`, one line in `BUILTIN_SOURCES`
or `BUILTIN_SINKS` below, its tests (see CONTRIBUTING.md). A kind defined outside the hub (a
test's toy kind, a landlord-specific plug-in) is added at run time with `register`.

Kind modules import their heavy clients (zeep, simple-salesforce, pyodbc) inside the reader or
writer, so loading the settings models stays cheap for every command.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from connectors.delivery import Sink
from connectors.rawtable import RawTable, Watermark

__all__ = [
    "BUILTIN_SINKS",
    "BUILTIN_SOURCES",
    "SinkKind",
    "SourceKind",
    "SourceRequest",
    "register",
    "registered",
    "sink_kind",
    "sink_kind_names",
    "sink_kinds",
    "source_kind",
    "source_kind_names",
    "source_kinds",
    "unregister",
]

# kind → "module:attribute" of its SourceKind / SinkKind (imported on first use)
BUILTIN_SOURCES: dict[str, str] = {
    "csv": "connectors.files.kinds:CSV_SOURCE",
    "xlsx": "connectors.files.kinds:XLSX_SOURCE",
    "sql": "connectors.sql.kinds:SQL_SOURCE",
    "odbc": "connectors.sql.kinds:ODBC_SOURCE",
    "soap": "connectors.soap.kinds:SOAP_SOURCE",
    "salesforce": "connectors.salesforce.kinds:SALESFORCE_SOURCE",
    "sage_x3": "connectors.sage.kinds:SAGE_X3_SOURCE",
}
BUILTIN_SINKS: dict[str, str] = {
    "sql": "connectors.sql.kinds:SQL_SINK",
    "soap": "connectors.soap.kinds:SOAP_SINK",
    "sage_x3": "connectors.sage.kinds:SAGE_X3_SINK",
    "sage100_file": "connectors.sage.kinds:SAGE100_FILE_SINK",
    "salesforce": "connectors.salesforce.kinds:SALESFORCE_SINK",
}


@dataclass(frozen=True)
class SourceRequest:
    """What one entity asks of its source: where the landlord's files are, which columns the
    mapping reads, the entity's own header and sheet settings, and where an incremental pull
    resumes."""

    entity: str
    inbox: Path
    columns: tuple[str, ...] = ()
    header_row: int | Literal["auto"] | None = None  # None: the source's own setting
    header_rows: int | None = None
    sheet: str | None = None
    after: Watermark | None = None
    # the caller reads the table chunk by chunk to its end (the pull): a kind reading a
    # database or a web service may return it streamed from its peer (`RawTable.peer_stream`)
    stream: bool = False


@dataclass(frozen=True)
class SourceKind:
    """A kind of source.

    - `settings`: the pydantic model of its datafix section (with `kind: Literal[<name>]`);
    - `read(settings, request)`: every row (or, with `request.after`, the rows strictly past the
      watermark, in cursor order) as a `RawTable` with lineage;
    - `header(settings, request)`: its column labels read cheaply, for `datafix check` (None:
      known only by calling a web service);
    - `files(settings, request)`: the files a read would open now (file kinds only): the pull
      skips unchanged files by fingerprint;
    - `watch(settings, inbox)`: every file in the inbox that belongs to this source (file kinds
      only): the inbox sensor starts a run when one lands or changes;
    - `sheets(settings, request)`: the sheet names of the workbook(s) a read would open (workbook
      kinds only): an entity's feed with a `sheets` pattern reads each sheet it matches;
    - `locator`: the setting that says where the source is, pointed at when it cannot be
      opened (or a function of the settings giving it).

    `settings` arrive with every `${VARIABLE}` resolved.
    """

    name: str
    settings: type[BaseModel]
    read: Callable[[Any, SourceRequest], RawTable]
    header: Callable[[Any, SourceRequest], list[str] | None] | None = None
    files: Callable[[Any, SourceRequest], list[Path]] | None = None
    watch: Callable[[Any, Path], list[Path]] | None = None
    sheets: Callable[[Any, SourceRequest], list[str]] | None = None
    locator: str | Callable[[Any], str] = "kind"

    def where(self, settings: Any) -> str:
        """The setting to point at when the source cannot be opened."""
        return self.locator(settings) if callable(self.locator) else self.locator


@dataclass(frozen=True)
class SinkKind:
    """A kind of sink.

    - `settings`: the pydantic model of its `push.sinks.<name>` section (a `SinkBase`);
    - `build(name, settings)`: the connector, connecting to nothing yet;
    - `check(sink, settings)`: what `datafix check` verifies without sending (the target table
      holds every mapped column, the drop folder is writable …); raises a ConnectorError;
    - `locator`: the setting pointed at when the check fails.
    """

    name: str
    settings: type[BaseModel]
    build: Callable[[str, Any], Sink]
    check: Callable[[Sink, Any], None] | None = None
    locator: str | Callable[[Any], str] = "kind"

    def where(self, settings: Any) -> str:
        """The setting to point at when the check fails."""
        return self.locator(settings) if callable(self.locator) else self.locator


_sources: dict[str, SourceKind] = {}
_sinks: dict[str, SinkKind] = {}


def _load(target: str) -> Any:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def source_kinds() -> dict[str, SourceKind]:
    """Every source kind: the hub's own, then those registered at run time."""
    for name, target in BUILTIN_SOURCES.items():
        if name not in _sources:
            _sources[name] = _load(target)
    return dict(_sources)


def sink_kinds() -> dict[str, SinkKind]:
    """Every sink kind: the hub's own, then those registered at run time."""
    for name, target in BUILTIN_SINKS.items():
        if name not in _sinks:
            _sinks[name] = _load(target)
    return dict(_sinks)


def source_kind(name: object) -> SourceKind | None:
    """The source kind called `name`, or None."""
    if isinstance(name, str) and name not in _sources and name in BUILTIN_SOURCES:
        _sources[name] = _load(BUILTIN_SOURCES[name])
    return _sources.get(name) if isinstance(name, str) else None


def sink_kind(name: object) -> SinkKind | None:
    """The sink kind called `name`, or None."""
    if isinstance(name, str) and name not in _sinks and name in BUILTIN_SINKS:
        _sinks[name] = _load(BUILTIN_SINKS[name])
    return _sinks.get(name) if isinstance(name, str) else None


def source_kind_names() -> list[str]:
    """Names a datafix may give as a source's `kind`."""
    return sorted({*BUILTIN_SOURCES, *_sources})


def sink_kind_names() -> list[str]:
    """Names a datafix may give as a sink's `kind`."""
    return sorted({*BUILTIN_SINKS, *_sinks})


def register(kind: SourceKind | SinkKind) -> None:
    """Add a kind defined outside the hub; a name already taken is refused."""
    table: dict[str, Any] = _sources if isinstance(kind, SourceKind) else _sinks
    builtin = BUILTIN_SOURCES if isinstance(kind, SourceKind) else BUILTIN_SINKS
    if kind.name in table or kind.name in builtin:
        raise ValueError(f"a kind named `{kind.name}` is already registered")
    table[kind.name] = kind


def unregister(kind: SourceKind | SinkKind) -> None:
    """Remove a kind added with `register`."""
    table: dict[str, Any] = _sources if isinstance(kind, SourceKind) else _sinks
    if kind.name in (BUILTIN_SOURCES if isinstance(kind, SourceKind) else BUILTIN_SINKS):
        raise ValueError(f"`{kind.name}` is one of the hub's own kinds")
    table.pop(kind.name, None)


@contextmanager
def registered(*kinds: SourceKind | SinkKind) -> Iterator[None]:
    """Kinds added for the duration of a block (tests, rehearsals)."""
    for kind in kinds:
        register(kind)
    try:
        yield
    finally:
        for kind in kinds:
            unregister(kind)
