"""Where an incremental pull resumes, applied to rows a peer returned.

SQL sources push the whole (cursor, key) condition down to the database. Peers that can only
filter `cursor >= value` (ODBC drivers without row values, SOAP, Salesforce, Sage X3) return the
rows at the watermark's exact cursor value again; `past_watermark` drops those already loaded,
so a pull neither skips nor repeats a row.

A watermark keeps the kind of each of its values (`CURSOR_KINDS`: the type the source's driver
returned them as), so the next pull binds them as that type (`typed_value`) and a column that
changed type since is refused with a clear message (`WatermarkError`), never compared as text.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from connectors.errors import ConfigError
from connectors.lazy import np, pd
from connectors.rawtable import ChunkStream, RawTable, StreamEnd, Watermark, header_key

__all__ = [
    "CURSOR_KINDS",
    "WatermarkError",
    "checked_kind",
    "past_watermark",
    "past_watermark_stream",
    "type_kind",
    "typed_value",
    "value_kind",
]

# the kinds a watermark value keeps, with the words a message uses for them
CURSOR_KINDS = {
    "timestamptz": "a timestamp with time zone",
    "timestamp": "a timestamp without time zone",
    "date": "a date",
    "integer": "an integer",
    "decimal": "a decimal number",
    "text": "text",
}
_EXAMPLES = {
    "timestamptz": "2026-03-01 14:30:00+01:00",
    "timestamp": "2026-03-01 14:30:00",
    "date": "2026-03-01",
    "integer": "42",
    "decimal": "42.50",
}
_NUMBERS = frozenset({"integer", "decimal"})


class WatermarkError(ConfigError):
    """A watermark value cannot be compared with its cursor or key column (the column changed
    type since the last run, or a value set by hand does not parse): names the column."""

    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column


def value_kind(value: object) -> str | None:
    """The kind of a value as a database driver returned it (None: no kind, or not one a cursor
    keeps: booleans, times, bytes …)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, dt.datetime):
        return "timestamp" if value.utcoffset() is None else "timestamptz"
    if isinstance(value, dt.date):
        return "date"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, Decimal | float):
        return "decimal"
    if isinstance(value, str):
        return "text"
    return None


def type_kind(python_type: object) -> str | None:
    """The kind of the values of a column a driver describes by their Python type (pyodbc);
    a date-time is `timestamp` (a description does not say whether it carries an offset)."""
    if not isinstance(python_type, type) or issubclass(python_type, bool):
        return None
    for kind, types in (
        ("timestamp", (dt.datetime,)),
        ("date", (dt.date,)),
        ("integer", (int,)),
        ("decimal", (Decimal, float)),
        ("text", (str,)),
    ):
        if issubclass(python_type, types):
            return kind
    return None


def checked_kind(column: str, value: str, stored: str | None, found: str | None) -> str | None:
    """The kind to bind a watermark value of `column` as: the one stored with it, checked
    against the kind the column holds now (`found`, None when unknown); without a stored kind
    (a watermark kept before kinds were, or set by hand) the column's.

    Integers and decimals compare with each other; any other change is a `WatermarkError`."""
    if stored is None or stored not in CURSOR_KINDS:
        return found
    if found is not None and found != stored and not {stored, found} <= _NUMBERS:
        raise WatermarkError(
            column,
            f"column `{column}` now holds {CURSOR_KINDS[found]} but the watermark the last run"
            f" stored for it is {CURSOR_KINDS[stored]} ({value!r}): the two cannot be compared",
        )
    return stored


def typed_value(column: str, value: str, kind: str | None) -> object:
    """A watermark's text as a value of `kind` (the text itself for text or no kind); a text
    that is not one is a `WatermarkError` showing how to write it."""
    text = value.strip()
    try:
        if kind in ("timestamptz", "timestamp"):
            return dt.datetime.fromisoformat(text)
        if kind == "date":
            return dt.date.fromisoformat(text)
        if kind == "integer":
            return int(text)
        if kind == "decimal":
            return Decimal(text)
    except (ValueError, InvalidOperation):
        raise WatermarkError(
            column,
            f"the watermark {value!r} of column `{column}` is not {CURSOR_KINDS[kind]} as the"
            f" column holds — write it like {_EXAMPLES[kind]!r}",
        ) from None
    return value


def past_watermark(raw: RawTable, after: Watermark) -> RawTable:
    """Rows strictly after the watermark in (cursor, key) order, sorted in that order.

    Numbers compare as numbers and everything else as text (ISO timestamps sort as text).
    Without `key_values` the bound is inclusive; without `value` every row is kept.
    """
    frame = raw.frame
    if frame.empty:
        return raw
    labels = {header_key(label): label for label in frame.columns}
    columns = [labels[header_key(name)] for name in (after.column, *after.key)]
    sortable = [_sortable(frame[column]) for column in columns]
    order = np.lexsort([values.to_numpy() for values in reversed(sortable)])
    keep = np.ones(len(frame), dtype=bool)
    if after.value is not None:
        converters = [_converter(values) for values in sortable]
        bound = [converters[0](after.value)]
        bound += [convert(v) for convert, v in zip(converters[1:], after.key_values, strict=False)]
        cursor = sortable[0].to_numpy()
        if after.key_values:
            keep = cursor > bound[0]
            tie = cursor == bound[0]
            later = np.zeros(len(frame), dtype=bool)
            equal_so_far = tie.copy()
            for values, limit in zip(sortable[1:], bound[1:], strict=False):
                array = values.to_numpy()
                later |= equal_so_far & (array > limit)
                equal_so_far &= array == limit
            keep |= later
        else:
            keep = cursor >= bound[0]
    order = order[keep[order]]
    return dataclasses.replace(
        raw,
        frame=frame.iloc[order].reset_index(drop=True),
        source_rows=raw.source_rows.iloc[order].reset_index(drop=True),
    )


def past_watermark_stream(raw: RawTable, after: Watermark) -> RawTable:
    """`past_watermark` on a table streamed from a peer (`RawTable.peer_stream`), chunk by
    chunk: each chunk keeps its rows strictly after the watermark, sorted; the next watermark
    is the greatest row kept over every chunk (`StreamEnd.last`), however the peer ordered its
    rows, so the next pull neither skips nor repeats one. A table read whole: `past_watermark`.
    """
    if not raw.peer_stream:
        return past_watermark(raw, after)
    names = (after.column, *after.key)

    def chunks(size: int) -> ChunkStream:
        stream = raw.chunks(size)
        greatest: tuple[tuple[tuple[int, float, str], ...], dict[str, str]] | None = None
        while True:
            try:
                part = next(stream)
            except StopIteration as finished:
                end: StreamEnd | None = finished.value
                break
            kept = past_watermark(part, after)
            if len(kept.frame):
                labels = {header_key(label): label for label in kept.frame.columns}
                row = kept.frame.iloc[-1]
                values = {
                    labels[header_key(name)]: str(row[labels[header_key(name)]]) for name in names
                }
                order = tuple(_order(value) for value in values.values())
                if greatest is None or order > greatest[0]:
                    greatest = (order, values)
            yield kept
        end = end or StreamEnd(fingerprint="")
        return dataclasses.replace(end, last=None if greatest is None else greatest[1])

    return dataclasses.replace(raw, stream=chunks)


def _order(text: str) -> tuple[int, float, str]:
    """A value's place in the order `past_watermark` sorts by: numbers as numbers (before any
    text), anything else as text."""
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)


def _sortable(values: pd.Series) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().all():
        return numbers.astype("float64")
    return values.astype(object)


def _converter(values: pd.Series) -> Callable[[str], object]:
    if values.dtype == "float64":
        return float
    return str
