"""The rules every source kind shares for its raw table: header labels, values as text, lineage.

A source reader (CSV and xlsx files, SQL and ODBC tables, SOAP services, Salesforce, Sage X3)
returns a `RawTable`: one text column per header label, every value a `str`, and for each row
the place a person would look for it. What makes those tables alike lives here, as plain
functions on labels, rows and frames:

- header labels: `header_key` (how labels match), `unique_labels`, `final_labels` (empty
  labels), `combine_header` (a header over several rows, merged cells) and `find_header`
  (`header_row: auto`);
- values as text: `value_text` (one value) and `column_text` (a whole column, vectorised);
- the fingerprint of a table read whole: `frame_fingerprint`;
- lineage: `key_lineage` (`label:id=42`, from key columns) and `line_lineage` (`file.csv:12`,
  `book.xlsx:Sheet:12`, `table:row 7`, from line or row numbers).

`Watermark` (where an incremental pull resumes) is here too: every incremental reader takes one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import unicodedata
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from connectors.errors import SourceDataError
from connectors.lazy import lazy_module, np, pa, pd

if TYPE_CHECKING:
    import pyarrow.compute as pc
else:
    pc = lazy_module("pyarrow.compute")

__all__ = [
    "CHUNK_ROWS",
    "HEADER_SCAN_ROWS",
    "FrameHasher",
    "RawTable",
    "StreamEnd",
    "Watermark",
    "chunk_rows",
    "closed_after",
    "column_text",
    "combine_header",
    "drain",
    "final_labels",
    "find_header",
    "frame_fingerprint",
    "header_key",
    "key_lineage",
    "line_lineage",
    "rechunk",
    "streamed_pages",
    "unique_labels",
    "value_text",
]

HEADER_SCAN_ROWS = 30  # header_row: auto looks for the header among the first rows
# rows the stages hold at a time (pull, normalise, contract, load): the memory of a run stays
# flat in the number of rows; DATAFIX_CHUNK_ROWS overrides it (tests use small chunks). On the
# bench's 1M-line ledger (whole `datafix run`), 50,000 rather than 100,000: peak RSS ~485 ->
# ~430 MB for ~0.4 CPU s more (the fixed cost of each chunk)
CHUNK_ROWS = 50_000

_BLANK_RUNS = re.compile(r"\s+")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u00b4": "'"})
_LETTER = re.compile(r"[^\W\d_]")


# --------------------------------------------------------------------------------------------
# What a reader returns


@dataclass(frozen=True)
class StreamEnd:
    """What a table streamed from a peer (a database, a web service) knows once its last chunk
    is read: the stream's return value (`RawTable.chunks`).

    Attributes:
        fingerprint: the fingerprint of every row streamed (what `RawTable.fingerprint` holds
            for a table read whole: equal for the same rows).
        watermark_kinds: as `RawTable.watermark_kinds`, from the whole stream.
        last: for an incremental read, the cursor and key values (by column label) of the row
            the next watermark resumes after, when that is not the last row streamed (a reader
            that filters and orders the rows itself, chunk by chunk); None: the last row.
    """

    fingerprint: str
    watermark_kinds: tuple[str | None, ...] = ()
    last: dict[str, str] | None = None


# a stream: chunks of at most the size asked, then (a peer's stream) what it knows at its end
ChunkStream = Generator["RawTable", None, "StreamEnd | None"]


@dataclass(frozen=True)
class RawTable:
    """Rows read from one source, before any mapping.

    Attributes:
        frame: one column per source header label (labels as written in the source, made
            unique), every value a `str`; a blank cell is `""`. Text is the lossless common
            form: amounts stay exact decimals, dates are ISO (`2026-03-01`, `2026-03-01 14:30:00`)
            when the source stored a real date, or the text as typed otherwise.
        source_rows: lineage of each row, aligned with `frame`: `file.csv:12`,
            `book.xlsx:Sheet:12` (1-based line / row numbers as a person sees them), or
            `table:id=42` for SQL.
        fingerprint: SHA-256 over what was read (file bytes, or the rows for SQL); equal
            fingerprints mean the source did not change. Empty for a table streamed from a
            peer: known once the stream is read (`StreamEnd`).
        origin: the files or table read, for messages.
        faults: the rows the reader could not read whole (a CSV line cut by a copy still
            running, a line with fewer fields than the header): `reason` and `message` per
            faulty row, indexed like `frame`. They are quarantined with that reason before any
            field rule, never loaded padded with blanks. None when every row is whole.
    """

    frame: pd.DataFrame
    source_rows: pd.Series
    fingerprint: str
    origin: str
    watermark_kinds: tuple[str | None, ...] = ()
    faults: pd.DataFrame | None = None
    # a table read chunk by chunk: `frame` holds its header only (no rows), `stream(size)`
    # yields the rows as tables of at most `size` rows, `streamed_rows` counts them all. A
    # table streamed from a peer (`fingerprint` empty) knows its header, its row count and its
    # fingerprint only once read: its `frame` may have no column, `streamed_rows` is 0, and its
    # stream yields at least one chunk (empty for no row, with the header) then returns a
    # `StreamEnd`; it is read once (the pull spools it, `pipelines.lib.stages`).
    stream: Callable[[int], ChunkStream] | None = None
    streamed_rows: int = 0

    def __len__(self) -> int:
        return self.streamed_rows if self.stream is not None else len(self.frame)

    @classmethod
    def streamed_from_peer(cls, origin: str, stream: Callable[[int], ChunkStream]) -> RawTable:
        """A table streamed from a peer (`peer_stream`): nothing known before it is read."""
        return cls(
            frame=pd.DataFrame(),
            source_rows=pd.Series([], dtype="str"),
            fingerprint="",
            origin=origin,
            stream=stream,
        )

    @property
    def peer_stream(self) -> bool:
        """Streamed from a peer: the fingerprint (and row count) known only once read."""
        return self.stream is not None and not self.fingerprint

    def chunks(self, size: int) -> ChunkStream:
        """The rows as tables of about `size` rows, in order, each with its own lineage and
        faults (indexed from 0 in each chunk); a table read whole is sliced. Returns the
        stream's `StreamEnd` (None for a table that knew its fingerprint before)."""
        if self.stream is not None:
            return (yield from self.stream(size))
        size = max(1, size)
        # a tail of under 1/64 of a chunk rides with the chunk before it (a workbook's `Total`
        # row is not a chunk of one row that every stage pays a chunk's fixed cost for):
        # already in memory, it holds no more
        rows = len(self.frame)
        tail = rows % size
        last = rows - tail if rows > size and tail <= size // 64 else rows
        for start in range(0, max(last, 1), size):
            yield _slice(self, start, rows if start + size >= last else start + size)
        return None

    def whole(self) -> RawTable:
        """The table with every row in `frame` (a streamed table read to its end)."""
        if self.stream is None:
            return self
        parts, end = drain(self.chunks(CHUNK_ROWS))
        return _joined(parts, self, end)


def _joined(parts: Sequence[RawTable], like: RawTable, end: StreamEnd | None) -> RawTable:
    """`parts` (chunks, in order) as one table; its fingerprint and watermark kinds from `end`
    when given, else from `like`."""
    faults = []
    offset = 0
    for part in parts:
        if part.faults is not None:
            faults.append(part.faults.set_axis(part.faults.index + offset))
        offset += len(part.frame)
    if not parts:
        frame, source_rows = like.frame.iloc[:0], like.source_rows.iloc[:0]
    elif len(parts) == 1:
        frame, source_rows = parts[0].frame, parts[0].source_rows
    else:
        frame = pd.concat([part.frame for part in parts], ignore_index=True)
        source_rows = pd.concat([part.source_rows for part in parts], ignore_index=True)
    return RawTable(
        frame=frame,
        source_rows=source_rows,
        fingerprint=like.fingerprint if end is None else end.fingerprint,
        origin=like.origin,
        watermark_kinds=like.watermark_kinds if end is None else end.watermark_kinds,
        faults=pd.concat(faults) if faults else None,
    )


def drain(stream: ChunkStream) -> tuple[list[RawTable], StreamEnd | None]:
    """Every chunk of `stream`, in order, and what the stream returned at its end (its
    `StreamEnd`: fingerprint and watermark kinds, known once the last row is read; None for a
    table read whole)."""
    parts = []
    while True:
        try:
            parts.append(next(stream))
        except StopIteration as finished:
            return parts, finished.value


def rechunk(parts: Iterator[RawTable] | ChunkStream, size: int) -> ChunkStream:
    """Tables of any size (a peer's pages, spooled chunks) as chunks of exactly `size` rows
    (the last one smaller; one empty chunk, with the header, when there is no row), in order,
    lineage and faults carried; returns what `parts` returns."""
    size = max(1, size)
    held: list[RawTable] = []
    count = 0
    empty: RawTable | None = None
    yielded = False
    while True:
        try:
            part = next(parts)
        except StopIteration as finished:
            end = finished.value
            break
        if empty is None:
            empty = _slice(part, 0, 0)
        rows = len(part.frame)
        if not held and rows == size:  # already one whole chunk: passed on as it is
            yield part
            yielded = True
            continue
        start = 0
        while start < rows:
            taken = _slice(part, start, min(rows, start + size - count))
            held.append(taken)
            count += len(taken.frame)
            start += len(taken.frame)
            if count == size:
                yield _joined(held, held[0], None)
                yielded = True
                held, count = [], 0
    if held:
        yield _joined(held, held[0], None)
    elif not yielded and empty is not None:
        yield empty
    return end


def _slice(table: RawTable, start: int, stop: int) -> RawTable:
    """Rows `start` to `stop` of a table read whole, faults re-indexed from 0."""
    if start == 0 and stop >= len(table.frame):
        return table
    faults = None
    if table.faults is not None:
        inside = table.faults.index[(table.faults.index >= start) & (table.faults.index < stop)]
        if len(inside):
            faults = table.faults.loc[inside].set_axis(inside - start)
    return dataclasses.replace(
        table,
        frame=table.frame.iloc[start:stop].reset_index(drop=True),
        source_rows=table.source_rows.iloc[start:stop].reset_index(drop=True),
        faults=faults,
    )


@dataclass(frozen=True)
class Watermark:
    """Where an incremental pull resumes: after the row (`value`, `key_values`) in cursor order.

    Readers return the rows strictly after that position in (`column`, *`key`) order, sorted in
    that order, so the last row read is the next watermark. With no `key_values` (a manual
    reset to a value, or a lookback) the bound is inclusive: `column >= value`; with no `value`
    (a first pull) every row is read, in cursor order. Rows sharing one cursor value are told
    apart by the key, so none is skipped and none is read twice.

    `kinds`: the kind of `value` and of each of `key_values` (`connectors.watermark`), so a
    reader binds them as the column's type; empty (or None) where unknown, for a watermark kept
    before kinds were or set by hand: the reader then takes the column's own.
    """

    column: str
    value: str | None
    key: tuple[str, ...] = ()
    key_values: tuple[str, ...] = ()
    kinds: tuple[str | None, ...] = ()


# --------------------------------------------------------------------------------------------
# Header labels


def chunk_rows() -> int:
    """Rows per chunk: `CHUNK_ROWS`, or DATAFIX_CHUNK_ROWS when set (at least 1)."""
    text = os.environ.get("DATAFIX_CHUNK_ROWS", "").strip()
    return max(1, int(text)) if text.isdigit() else CHUNK_ROWS


def header_key(label: object) -> str:
    """Normalised header label for matching: no accents, casefolded, single spaces.

    `"  Date d'ENTRÉE\\n"` → `"date d'entree"`; a trailing `:` is dropped (`"Montant :"` →
    `"montant"`) and typographic apostrophes count as `'` (Excel's autocorrect writes `’`).
    """
    text = "" if label is None else str(label)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(char for char in text if not unicodedata.combining(char))
    text = _BLANK_RUNS.sub(" ", text.translate(_APOSTROPHES).casefold()).strip()
    if text.endswith(":"):
        text = text[:-1].rstrip()
    return text


def unique_labels(labels: Sequence[str]) -> list[str]:
    """Labels made unique by suffixing ` (2)`, ` (3)` … to repeats (compared with `header_key`)."""
    seen: set[str] = set()
    result: list[str] = []
    for label in labels:
        candidate, number = label, 1
        while header_key(candidate) in seen:
            number += 1
            candidate = f"{label} ({number})"
        seen.add(header_key(candidate))
        result.append(candidate)
    return result


def final_labels(raw: Sequence[str], has_data: Callable[[int], bool]) -> list[tuple[int, str]]:
    """(column index, label) of the columns kept: empty-label columns without data are dropped,
    those with data are named `column N` (1-based position)."""
    kept: list[tuple[int, str]] = []
    for index, label in enumerate(raw):
        label = label.strip()
        if not label:
            if not has_data(index):
                continue
            label = f"column {index + 1}"
        kept.append((index, label))
    return list(
        zip([index for index, _ in kept], unique_labels([lab for _, lab in kept]), strict=True)
    )


def combine_header(
    rows: Sequence[Sequence[str]], merged: Sequence[tuple[int, int, int]]
) -> list[str]:
    """One label per column from a header spanning several rows.

    An upper cell is spread over the columns it covers: across the horizontally merged cells
    `merged` gives as (row offset, first column, last column), or, with no merge information
    (CSV), rightwards over empty upper cells that have a label below (`Montant engagé;;` over
    `HT;TTC`). Parts are joined by a space, a repeated part (a vertically merged cell) once.
    """
    width = max(len(row) for row in rows)
    grid = [[row[col].strip() if col < len(row) else "" for col in range(width)] for row in rows]
    if len(grid) > 1:
        filled = [list(row) for row in grid]
        if merged:
            for level, first, last in merged:
                for col in range(first + 1, min(last, width - 1) + 1):
                    filled[level][col] = grid[level][first]
        else:
            for level in range(len(grid) - 1):
                carried = ""
                for col in range(width):
                    below = any(grid[lower][col] for lower in range(level + 1, len(grid)))
                    if grid[level][col]:
                        carried = grid[level][col]
                    elif carried and below:
                        filled[level][col] = carried
                    else:
                        carried = ""
        grid = filled
    labels = []
    for col in range(width):
        parts: list[str] = []
        for row in grid:
            if row[col] and (not parts or parts[-1] != row[col]):
                parts.append(row[col])
        labels.append(" ".join(parts))
    return labels


def _text_labels(labels: Sequence[str]) -> int:
    """Distinct labels with a letter in them: a merged title spread over the columns counts
    once, numbers and dates not at all."""
    return len({header_key(label) for label in labels if _LETTER.search(label)})


def find_header(
    rows: Sequence[Sequence[str]],
    *,
    header_rows: int,
    expected_columns: Sequence[str],
    merged_for: Callable[[int], list[tuple[int, int, int]]],
    where: str,
    unit: str,
) -> tuple[int, list[str]]:
    """Index (into `rows`) of the first header row and the combined labels, for `auto`.

    The earliest candidate holding the most expected columns wins; with no expected columns,
    the earliest holding the most distinct labels with letters in them. A header spanning
    several rows has no blank row (else a blank line above a one-row header would tie).
    """
    expected = {header_key(column) for column in expected_columns} - {""}
    best: tuple[int, int, list[str]] | None = None
    last_start = min(HEADER_SCAN_ROWS, len(rows) - header_rows + 1)
    for start in range(max(last_start, 0)):
        block = rows[start : start + header_rows]
        if header_rows > 1 and not all(any(cell.strip() for cell in row) for row in block):
            continue
        labels = combine_header(block, merged_for(start))
        score = (
            len(expected & {header_key(label) for label in labels})
            if expected
            else _text_labels(labels)
        )
        if best is None or score > best[0]:
            best = (score, start, labels)
    if best is None or best[0] == 0:
        if expected:
            first = [cell for cell in (rows[0] if rows else []) if cell.strip()]
            raise SourceDataError(
                f"{where}: no header found in the first {HEADER_SCAN_ROWS} {unit}s: none of the"
                f" expected columns ({', '.join(sorted(expected_columns))}) appears. First"
                f" {unit}: {first or '(empty)'} — set `header_row` to the {unit} number of the"
                " header, or fix the column names in the datafix"
            )
        raise SourceDataError(
            f"{where}: no header found in the first {HEADER_SCAN_ROWS} {unit}s (no cell with"
            f" text) — set `header_row` to the {unit} number of the header"
        )
    return best[1], best[2]


# --------------------------------------------------------------------------------------------
# Values as text


def _float_text(value: float) -> str:
    if value.is_integer():
        return str(int(value))
    text = repr(value)
    return format(Decimal(text), "f") if "e" in text else text


def _timedelta_text(value: dt.timedelta) -> str:
    total = int(value.total_seconds())
    sign, total = ("-", -total) if total < 0 else ("", total)
    hours, rest = divmod(total, 3600)
    return f"{sign}{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


def value_text(value: object, *, midnight_as_date: bool = False) -> str:
    """One cell or database value as lossless text.

    None → `""`; bool → `true`/`false`; float → shortest repr, integral without `.0`, never in
    scientific notation; Decimal → its digits as stored; date → `2026-03-01`; datetime →
    `2026-03-01 14:30:00` (microseconds only when nonzero, `+01:00` when aware; with
    `midnight_as_date` a naive midnight is a plain date, as Excel shows a date cell); time →
    `14:30:00`; duration → `30:05:00`; bytes → hex.
    """
    kind = value.__class__
    if kind is str:
        return value  # type: ignore[return-value]
    if value is None:
        return ""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return _float_text(float(value))
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime):
        if (
            midnight_as_date
            and value.tzinfo is None
            and not (value.hour or value.minute or value.second or value.microsecond)
        ):
            return value.date().isoformat()
        return value.isoformat(" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return _timedelta_text(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


# a column holding one of these types (and blanks) is converted by Arrow in one call
_ARROW_TYPES: dict[type, Callable[[], pa.DataType]] = {
    float: lambda: pa.float64(),
    int: lambda: pa.int64(),
    bool: lambda: pa.bool_(),
    dt.date: lambda: pa.date32(),
    dt.datetime: lambda: pa.timestamp("us"),
}


def _as_object_array(values: Sequence[object]) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype == object:
        return values
    # fromiter never descends into a value that is itself a sequence (a JSON list, bytes)
    return np.fromiter(values, dtype=object, count=len(values))


def _datetime_text(array: pa.Array, midnight_as_date: bool) -> pa.Array | None:
    """`2026-03-01 14:30:00` for naive timestamps without fractions of a second (else None)."""
    if (
        pc.any(pc.not_equal(pc.microsecond(array), 0)).as_py()
        or pc.any(pc.not_equal(pc.millisecond(array), 0)).as_py()
    ):
        return None  # sub-second values are rare: keep the exact per-value rendering
    text = pc.cast(pc.cast(array, pa.timestamp("s")), pa.string())
    if midnight_as_date:
        at_midnight = pc.and_(
            pc.and_(pc.equal(pc.hour(array), 0), pc.equal(pc.minute(array), 0)),
            pc.equal(pc.second(array), 0),
        )
        text = pc.if_else(at_midnight, pc.cast(pc.cast(array, pa.date32()), pa.string()), text)
    return text


def _whole_numbers(array: pa.Array) -> pa.Array | None:
    """A float column whose every value is a whole number under 2**53 (hours, counts, codes)
    as int64, written as `72` as `_float_text` writes 72.0, several times faster than Arrow's
    shortest-float text; None otherwise (NaN and infinities included)."""
    if array.null_count == len(array):
        return None
    whole = pc.and_(pc.equal(pc.floor(array), array), pc.less(pc.abs(array), 2.0**53))
    if not pc.all(whole).as_py():
        return None
    return pc.cast(array, pa.int64())


def _arrow_text(column: np.ndarray, kind: type, midnight_as_date: bool) -> pa.Array | None:
    """Whole-column conversion through Arrow of a column of `kind` values and nulls; None when
    the column does not fit (a text left among numbers, an out-of-range integer, aware or
    sub-second date-times): Arrow refuses those rather than coercing them."""
    if kind is dt.datetime:
        sample = next((value for value in column if value is not None), None)
        if sample is None or sample.tzinfo is not None:  # type: ignore[attr-defined]
            return None  # Arrow would silently shift aware values to UTC
    try:
        array = pa.array(column, type=_ARROW_TYPES[kind]())
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError):
        return None
    if kind is dt.datetime:
        text = _datetime_text(array, midnight_as_date)
        if text is None:
            return None
    elif kind is float and (whole := _whole_numbers(array)) is not None:
        return pc.fill_null(pc.cast(whole, pa.string()), "")
    else:
        text = pc.cast(array, pa.string())
    if kind is float:
        # Arrow writes 1e+20 and -0 where Python writes digits; fix those few exactly
        odd = pc.or_(pc.match_substring(text, "e"), pc.equal(text, "-0"))
        if pc.any(odd).as_py():
            positions = pc.indices_nonzero(odd).to_numpy()
            fixed = pa.array([_float_text(value) for value in column[positions]])
            text = pc.replace_with_mask(text, odd, fixed)
    return pc.fill_null(text, "")


def _quick_text(column: np.ndarray, midnight_as_date: bool) -> pd.Series | None:
    """The common cases without looking at every value's type first: when a sample says the
    column is text, or numbers with blanks, let Arrow convert it (Arrow refuses any value that
    does not fit, and then the caller takes the careful path). Dates are not tried: Arrow
    would silently cut the time off a date-time among dates."""
    step = max(1, len(column) // 256)
    kinds = set(map(type, column[::step])) | set(map(type, column[-8:]))
    try:
        if kinds <= {str}:
            array = pa.array(column, type=pa.large_string())
            return pd.Series(array.to_pandas(), dtype="str")
        numbers = kinds - {str, type(None)}
        if len(numbers) == 1 and (kind := next(iter(numbers))) in (float, int, bool):
            if str in kinds:  # blank cells seen in the sample: make every blank a null
                blank = column == ""
                column = column.copy()
                column[blank] = None
            converted = _arrow_text(column, kind, midnight_as_date)
            return None if converted is None else pd.Series(converted.to_pandas(), dtype="str")
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError):
        return None
    return None


def column_text(values: Sequence[object], *, midnight_as_date: bool = False) -> pd.Series:
    """A column of cells or database values as a `str` Series (see `value_text`).

    Vectorised: a text column goes to Arrow as is; in a column of one other type (numbers,
    dates …) the blank cells become nulls and Arrow converts the whole column in one call;
    only a column mixing types is converted value by value.
    """
    column = _as_object_array(values)
    quick = _quick_text(column, midnight_as_date)
    if quick is not None:
        return quick
    kinds = set(map(type, column))
    if kinds <= {str}:
        return pd.Series(pa.array(column, type=pa.large_string()).to_pandas(), dtype="str")
    if str in kinds:
        blank = column == ""
        if blank.any():
            column = column.copy()
            column[blank] = None
    kinds -= {str, type(None)}
    if kinds == {dt.date, dt.datetime} and midnight_as_date:
        # calamine returns the midnights of a date-time column as dates
        combine, zero = dt.datetime.combine, dt.time()
        column = np.fromiter(
            (combine(v, zero) if v.__class__ is dt.date else v for v in column),
            dtype=object,
            count=len(column),
        )
        kinds = {dt.datetime}
    if len(kinds) == 1 and (kind := next(iter(kinds))) in _ARROW_TYPES:
        converted = _arrow_text(column, kind, midnight_as_date)
        if converted is not None:
            return pd.Series(converted.to_pandas(), dtype="str")

    def text(value: object) -> str:
        return value_text(value, midnight_as_date=midnight_as_date)

    return pd.Series(
        [value if value.__class__ is str else text(value) for value in values], dtype="str"
    )


# --------------------------------------------------------------------------------------------
# Lineage


def key_lineage(
    frame: pd.DataFrame,
    label: str,
    key: Sequence[str],
    *,
    columns: Sequence[str] | None = None,
    named: bool = True,
) -> pd.Series:
    """Lineage `label:name=value,name=value` of every row, from its key columns.

    `key` names the key columns as the lineage writes them; `columns` the frame's columns that
    hold them when their labels differ (default: `key`). With `named=False` a single key is
    written as its value alone (`WorkOrder:0WO000000000001`). A `str` Series aligned with
    `frame`'s rows, index reset.
    """
    columns = key if columns is None else columns
    if not named and len(columns) == 1:
        return (f"{label}:" + frame[columns[0]]).astype("str").reset_index(drop=True)
    rows = pd.Series(f"{label}:", index=frame.index, dtype="str")
    for position, (name, column) in enumerate(zip(key, columns, strict=True)):
        rows = rows + ("," if position else "") + f"{name}=" + frame[column]
    return rows.astype("str").reset_index(drop=True)


def line_lineage(prefix: str, numbers: Sequence[int] | np.ndarray | pd.Series) -> pd.Series:
    """Lineage `prefix` + number of every row: `file.csv:12`, `book.xlsx:Sheet:12` (1-based
    line or row numbers as a person sees them), `table:row 7` (the row's position).
    """
    return (prefix + pd.Series(numbers, dtype=np.int64).astype("str")).astype("str")


class FrameHasher:
    """`frame_fingerprint` computed chunk by chunk: the labels, then each chunk's rows (`add`),
    then the row count (`hexdigest`); the same digest as the chunks joined in one frame.

    With `ordered` false, the digest of the rows as a multiset (two 64-bit hashes of each row
    summed, so any order of the same rows gives it): for a peer that sends its rows in no
    particular order (Salesforce's Bulk API), where a table read whole is sorted first."""

    def __init__(self, labels: Sequence[object], *, ordered: bool = True) -> None:
        self._hasher = hashlib.sha256()
        self._hasher.update("\0".join(map(str, labels)).encode())
        self._labels = len(labels)
        self._ordered = ordered
        self._sums = [np.uint64(0), np.uint64(0)]
        self.rows = 0

    def add(self, frame: pd.DataFrame) -> None:
        """One chunk's rows (the same columns, in the same order, as the labels)."""
        if len(frame) and self._labels:
            hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
            if self._ordered:
                self._hasher.update(hashes.tobytes())
            else:
                other = pd.util.hash_pandas_object(frame, index=False, hash_key=_OTHER_HASH_KEY)
                with np.errstate(over="ignore"):  # sums modulo 2**64
                    self._sums[0] += hashes.sum(dtype=np.uint64)
                    self._sums[1] += other.to_numpy().sum(dtype=np.uint64)
        self.rows += len(frame)

    def hexdigest(self) -> str:
        """The fingerprint of every chunk added."""
        hasher = self._hasher.copy()
        if not self._ordered:
            hasher.update(np.array(self._sums, dtype=np.uint64).tobytes())
        hasher.update(str(self.rows).encode())
        return hasher.hexdigest()


_OTHER_HASH_KEY = "datafix-rows-2nd"  # 16 bytes: pandas' second, independent row hash


def closed_after(raw: RawTable, close: Callable[[], None]) -> RawTable:
    """`raw`, whose stream calls `close` once read to its end or given up (a session the
    reader's calls go through); a table read whole is read: `close` is called at once."""
    if raw.stream is None:
        close()
        return raw
    stream = raw.stream

    def chunks(size: int) -> ChunkStream:
        try:
            return (yield from stream(size))
        finally:
            close()

    return dataclasses.replace(raw, stream=chunks)


def streamed_pages(
    origin: str, pages: Callable[[], Iterator[RawTable]], *, ordered: bool = True
) -> RawTable:
    """A table streamed from a peer (`RawTable.peer_stream`) whose reader gives it page by page
    (`pages()`: tables of any size, the same columns each, at least one): re-cut into chunks
    of the size asked (`rechunk`), fingerprinted as `frame_fingerprint` of every page joined
    (`ordered` false: of the rows in any order, `FrameHasher`)."""

    def chunks(size: int) -> ChunkStream:
        hasher: FrameHasher | None = None

        def hashed() -> Iterator[RawTable]:
            nonlocal hasher
            for page in pages():
                if hasher is None:
                    hasher = FrameHasher(list(page.frame.columns), ordered=ordered)
                hasher.add(page.frame)
                yield page

        yield from rechunk(hashed(), size)
        return StreamEnd(fingerprint="" if hasher is None else hasher.hexdigest())

    return RawTable.streamed_from_peer(origin, chunks)


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """SHA-256 over a text frame: its column labels, every value in order and the row count.

    Equal fingerprints mean the source returned the same rows (readers of web services, which
    read a whole table at once or page by page: `FrameHasher`; SQL readers hash chunk by chunk
    with the same ingredients).
    """
    hasher = FrameHasher(list(frame.columns))
    hasher.add(frame)
    return hasher.hexdigest()
