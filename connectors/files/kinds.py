"""Source kinds `csv` and `xlsx`: exports dropped into the landlord's inbox folder."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from connectors.files.client import (
    read_csv,
    read_header,
    read_xlsx,
    resolve_files,
    settle_seconds,
    sheet_names,
    wait_until_stable,
)
from connectors.rawtable import RawTable
from connectors.registry import SourceKind, SourceRequest
from schemas.config import StrictModel

__all__ = ["CSV_SOURCE", "XLSX_SOURCE", "CsvSource", "FileSource", "XlsxSource"]


class FileSource(StrictModel):
    """Options shared by spreadsheet sources found in the landlord's inbox folder."""

    path: str = Field(
        description="File name or glob (e.g. `locataires_*.csv`) inside the landlord's inbox."
    )
    files: Literal["newest", "all"] = Field(
        "newest",
        description="When the glob matches several files: read the newest one, or all of them.",
    )
    header_row: int | Literal["auto"] = Field(
        "auto",
        description="1-based line or row of the header; `auto` finds it from the mapped columns.",
    )
    header_rows: int = Field(
        1,
        ge=1,
        le=3,
        description="Header depth: 2 when a merged cell spans sub-headers (`Montant` over `HT`).",
    )
    settle_seconds: float | None = Field(
        None,
        ge=0,
        le=600,
        description="A file is read once its size and modification time have not changed for"
        " this many seconds (a copy still running is waited for, then left for the next run);"
        " default 2 (`DATAFIX_FILE_SETTLE_SECONDS`), 0 reads at once.",
    )

    @field_validator("header_row")
    @classmethod
    def _header_row_positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("header_row counts from 1 (the first line of the file)")
        return value


class CsvSource(FileSource):
    """A CSV export, typically from French Excel (`;`, decimal comma, cp1252)."""

    kind: Literal["csv"]
    encoding: str = Field(
        "auto", description="`auto` (UTF-8 with or without BOM, else cp1252) or a codec name."
    )
    separator: str = Field(
        "auto", description="`auto` (sniffed among `; , tab |`) or one character."
    )

    @field_validator("separator")
    @classmethod
    def _one_character(cls, value: str) -> str:
        if value != "auto" and len(value.replace("\\t", "\t")) != 1:
            raise ValueError("separator must be one character (use \\t for tab) or auto")
        return value.replace("\\t", "\t")


class XlsxSource(FileSource):
    """An Excel workbook (.xlsx)."""

    kind: Literal["xlsx"]
    sheet: str | None = Field(
        None, description="Sheet name; the first sheet when omitted. An entity may override it."
    )


def _files(source: FileSource, request: SourceRequest) -> list[Path]:
    """The files a read opens now, once none of them is still being written."""
    paths = resolve_files(request.inbox, source.path, source.files)
    wait_until_stable(paths, settle_seconds(source.settle_seconds))
    return paths


def _watch(source: FileSource, inbox: Path) -> list[Path]:
    return resolve_files(inbox, source.path, "all")


def _options(source: FileSource, request: SourceRequest) -> dict[str, Any]:
    """The reader's options: the entity's own header settings win over the source's."""
    options: dict[str, Any] = {
        "header_row": source.header_row if request.header_row is None else request.header_row,
        "header_rows": source.header_rows if request.header_rows is None else request.header_rows,
        "expected_columns": list(request.columns),
    }
    if isinstance(source, CsvSource):
        options |= {"encoding": source.encoding, "separator": source.separator}
    elif isinstance(source, XlsxSource):
        options["sheet"] = request.sheet or source.sheet
    return options


def _read_csv(source: CsvSource, request: SourceRequest) -> RawTable:
    """A single plain file comes back streamed (read chunk by chunk by the stages)."""
    return read_csv(_files(source, request), **_options(source, request), stream=True)


def _read_xlsx(source: XlsxSource, request: SourceRequest) -> RawTable:
    return read_xlsx(_files(source, request), **_options(source, request))


def _sheets(source: XlsxSource, request: SourceRequest) -> list[str]:
    """The sheets of the workbook(s) a read would open, each once, in workbook order."""
    return list(
        dict.fromkeys(name for path in _files(source, request) for name in sheet_names(path))
    )


def _header(source: CsvSource | XlsxSource, request: SourceRequest) -> list[str]:
    return read_header(_files(source, request), kind=source.kind, **_options(source, request))


# what the two file kinds share: found in the inbox, fingerprinted, watched, headers read cheaply
_file_kind = functools.partial(
    SourceKind, header=_header, files=_files, watch=_watch, locator="path"
)
CSV_SOURCE = _file_kind("csv", CsvSource, read=_read_csv)
XLSX_SOURCE = _file_kind("xlsx", XlsxSource, read=_read_xlsx, sheets=_sheets)
