"""Reading an entity's source, whatever its kind, through the kind registry.

Each kind's reader lives in `connectors/<system>/kinds.py` (listed in `connectors/registry.py`);
this module only asks the kind the entity's source names, with the source's settings resolved
once at load and the entity's own request (mapped columns, header and sheet settings, the
watermark an incremental pull resumes after).
"""

from __future__ import annotations

from pathlib import Path

from connectors import registry
from connectors.errors import ConfigError
from connectors.rawtable import RawTable, Watermark
from pipelines.lib.datafixes import LoadedDatafix

__all__ = ["file_paths", "read_source", "source_header"]


def _request(
    loaded: LoadedDatafix,
    entity: str,
    after: Watermark | None = None,
    header_rows: int | None = None,
) -> tuple[registry.SourceKind, object, registry.SourceRequest]:
    from pipelines.lib.transforms import EntityTransformer  # transforms imports the model only

    mapping = loaded.datafix.entities[entity]
    settings = loaded.source(mapping.source)
    kind = registry.source_kind(settings.kind)
    if kind is None:
        raise ConfigError(f"source `{mapping.source}`: no kind `{settings.kind}` is registered")
    request = registry.SourceRequest(
        entity=entity,
        inbox=loaded.inbox(),
        columns=tuple(EntityTransformer(entity, mapping).source_columns),
        header_row=mapping.header_row,
        header_rows=mapping.header_rows if header_rows is None else header_rows,
        sheet=mapping.sheet,
        after=after,
    )
    return kind, settings, request


def read_source(loaded: LoadedDatafix, entity: str, *, after: Watermark | None = None) -> RawTable:
    """Every row of the source feeding `entity` (or those strictly past `after`), as text."""
    kind, settings, request = _request(loaded, entity, after)
    return kind.read(settings, request)


def source_header(
    loaded: LoadedDatafix, entity: str, *, header_rows: int | None = None
) -> list[str] | None:
    """The source's column labels, cheaply; None when its kind knows them only by calling.
    `header_rows` reads the header as that many rows deep instead of as configured."""
    kind, settings, request = _request(loaded, entity, header_rows=header_rows)
    return None if kind.header is None else kind.header(settings, request)


def file_paths(loaded: LoadedDatafix, entity: str) -> list[Path] | None:
    """The files a file source would read now (None for other kinds)."""
    kind, settings, request = _request(loaded, entity)
    return None if kind.files is None else kind.files(settings, request)
