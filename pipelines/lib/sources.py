"""Reading an entity's feeds, whatever their kind, through the kind registry.

Each kind's reader lives in `connectors/<system>/kinds.py` (listed in `connectors/registry.py`);
this module only asks the kind a feed's source names, with the source's settings resolved once
at load and the feed's own request (mapped columns, header and sheet settings, the watermark an
incremental pull resumes after). An entity has one feed (`source` + `fields`) or several
(`feeds`); a feed with a `sheets` pattern stands for one feed per sheet it matches.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

from connectors import registry
from connectors.errors import ConfigError
from connectors.rawtable import RawTable, Watermark, header_key
from pipelines.lib.datafixes import LoadedDatafix
from schemas.datafix import Feed

__all__ = ["concrete_feeds", "file_paths", "read_source", "source_header"]


def _request(
    loaded: LoadedDatafix,
    entity: str,
    feed: Feed,
    after: Watermark | None = None,
    header_rows: int | None = None,
    stream: bool = False,
) -> tuple[registry.SourceKind, object, registry.SourceRequest]:
    from pipelines.lib.transforms import EntityTransformer  # transforms imports the model only

    mapping = loaded.datafix.entities[entity]
    settings = loaded.source(feed.source)
    kind = registry.source_kind(settings.kind)
    if kind is None:
        raise ConfigError(f"source `{feed.source}`: no kind `{settings.kind}` is registered")
    request = registry.SourceRequest(
        entity=entity,
        inbox=loaded.inbox(),
        columns=tuple(EntityTransformer(entity, mapping, feed=feed).source_columns),
        header_row=feed.header_row,
        header_rows=feed.header_rows if header_rows is None else header_rows,
        sheet=feed.sheet,
        after=after,
        stream=stream,
    )
    return kind, settings, request


def concrete_feeds(loaded: LoadedDatafix, entity: str) -> list[Feed]:
    """The entity's feeds, a `sheets` pattern replaced by one feed per sheet it matches (in
    workbook order). A pattern that matches no sheet is an error naming the sheets there are."""
    feeds: list[Feed] = []
    for feed in loaded.datafix.entities[entity].all_feeds:
        if feed.sheets is None:
            feeds.append(feed)
            continue
        kind, settings, request = _request(loaded, entity, feed)
        names = [] if kind.sheets is None else kind.sheets(settings, request)
        pattern = header_key(feed.sheets)
        matched = [name for name in names if fnmatch.fnmatchcase(header_key(name), pattern)]
        if not matched:
            raise ConfigError(
                f"{entity}: no sheet of `{feed.source}` matches `sheets: {feed.sheets}` (sheets:"
                f" {', '.join(names) or 'none'}) — fix the pattern or the workbook"
            )
        feeds.extend(feed.with_sheet(name) for name in matched)
    return feeds


def read_source(
    loaded: LoadedDatafix, entity: str, feed: Feed, *, after: Watermark | None = None
) -> RawTable:
    """Every row of `feed`'s source (or those strictly past `after`), as text; a database or
    a web service may give them streamed from the peer (read once, chunk by chunk: the pull
    drains them, `pipelines.lib.stages`)."""
    kind, settings, request = _request(loaded, entity, feed, after, stream=True)
    return kind.read(settings, request)


def source_header(
    loaded: LoadedDatafix, entity: str, feed: Feed, *, header_rows: int | None = None
) -> list[str] | None:
    """The column labels of `feed`'s source, cheaply; None when its kind knows them only by
    calling. `header_rows` reads the header as that many rows deep instead of as configured."""
    kind, settings, request = _request(loaded, entity, feed, header_rows=header_rows)
    return None if kind.header is None else kind.header(settings, request)


def file_paths(loaded: LoadedDatafix, entity: str, feed: Feed) -> list[Path] | None:
    """The files `feed`'s source would read now (None for kinds that read no files)."""
    kind, settings, request = _request(loaded, entity, feed)
    return None if kind.files is None else kind.files(settings, request)
