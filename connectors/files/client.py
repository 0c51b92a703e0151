"""Read the landlord's spreadsheet exports (CSV, Excel) into text tables with row lineage.

Every reader returns a `RawTable`: one text column per header label, every cell a `str` (blank
is `""`), and for each row the place a person would look for it (`file.csv:12`,
`book.xlsx:Sheet:12`). Nothing is interpreted here: amounts, dates and codes stay text; the
transform layer parses them. What *is* decided here is where the header is (title lines above
it, two-row headers under merged cells), which encoding and separator a CSV uses, and how a
typed Excel cell is written as text (`2026-03-01`, `1234.56`).

The header, text and lineage rules every source kind shares live in `connectors.rawtable`.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import gc
import hashlib
import itertools
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from python_calamine import CalamineWorkbook

from connectors.environment import seconds_variable
from connectors.errors import ConfigError, RetriableError, SourceDataError
from connectors.lazy import lazy_module, np, pa, pd
from connectors.rawtable import (
    HEADER_SCAN_ROWS,
    RawTable,
    column_text,
    combine_header,
    final_labels,
    find_header,
    header_key,
    line_lineage,
    value_text,
)

if TYPE_CHECKING:
    import pyarrow.csv as pacsv
else:
    pacsv = lazy_module("pyarrow.csv")

__all__ = [
    "fingerprint_files",
    "gc_paused",
    "read_csv",
    "read_header",
    "read_xlsx",
    "resolve_files",
    "settle_seconds",
    "sheet_names",
    "wait_until_stable",
]

HEAD_LINES = 50  # lines read to find the separator and the header of a CSV
SEPARATORS = (";", ",", "\t", "|")
BLOCK_SIZE = 1 << 20

_PANDAS_RAGGED = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


@dataclass(frozen=True)
class _Header:
    """Where a file's header is: the reader options `header_row`, `header_rows` and
    `expected_columns`, carried together through the CSV and Excel readers."""

    row: int | Literal["auto"] = "auto"
    rows: int = 1
    expected_columns: Sequence[str] = ()

    @property
    def head_lines(self) -> int:
        """How many lines (rows) to read to be sure of finding the header and some data."""
        return max(HEAD_LINES, (self.row if isinstance(self.row, int) else 0) + self.rows + 20)


# --------------------------------------------------------------------------------------------
# Files in the inbox


def _case_insensitive(pattern: str) -> str:
    """`Locataires_*.csv` → `[lL][oO]…`: Windows exports change case from month to month."""
    out: list[str] = []
    in_class = False
    for char in pattern:
        if char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        if not in_class and char.lower() != char.upper() and len(char.upper()) == 1:
            out.append(f"[{char.lower()}{char.upper()}]")
        else:
            out.append(char)
    return "".join(out)


def resolve_files(inbox: Path, pattern: str, files: Literal["newest", "all"]) -> list[Path]:
    """The files `pattern` (a glob, case-insensitive) designates inside `inbox`.

    Excel lock files (`~$…`) and hidden files are ignored. `newest`: the single most recently
    modified file (ties: the last name); `all`: every match, sorted by name.
    """
    inbox = Path(inbox)
    if not inbox.is_dir():
        raise ConfigError(
            f"inbox folder {inbox} does not exist — create it and drop the exports there, or set"
            " `inbox` in the datafix"
        )
    relative = Path(pattern)
    if not pattern.strip() or relative.is_absolute() or pattern.startswith(("/", "\\")):
        raise ConfigError(
            f"`path: {pattern}` must be a file name or glob inside the inbox ({inbox}), not an"
            " absolute path — write it relative to the inbox"
        )
    if ".." in re.split(r"[\\/]", pattern):
        raise ConfigError(
            f"`path: {pattern}` leaves the inbox ({inbox}) with `..` — keep the files inside it"
        )
    root = inbox.resolve()
    matches: list[Path] = []
    for path in inbox.glob(_case_insensitive(pattern)):
        parts = path.relative_to(inbox).parts
        if any(part.startswith((".", "~$")) for part in parts) or not path.is_file():
            continue
        if not path.resolve().is_relative_to(root):
            raise ConfigError(
                f"{path} is a link to {path.resolve()}, outside the inbox ({inbox}) — copy the"
                " file into the inbox instead"
            )
        matches.append(path)
    if not matches:
        present = sorted(
            entry.name for entry in inbox.iterdir() if not entry.name.startswith((".", "~$"))
        )
        listing = ", ".join(present[:20]) + (", …" if len(present) > 20 else "")
        raise ConfigError(
            f"no file matches `{pattern}` in {inbox} (files there: {listing or 'none'}) — drop"
            " the export there or fix `path`"
        )
    if files == "all":
        return sorted(matches, key=lambda path: (str(path.relative_to(inbox)), path.name))
    return [max(matches, key=lambda path: (path.stat().st_mtime_ns, path.name))]


# --------------------------------------------------------------------------------------------
# Files still being written

SETTLE_SECONDS = 2.0  # a file is read once unchanged for this long (datafix `settle_seconds`)
SETTLE_PATIENCE = 5  # … waited for at most this many intervals, then left for the next run
SETTLE_VARIABLE = "DATAFIX_FILE_SETTLE_SECONDS"


def settle_seconds(declared: float | None) -> float:
    """The settling interval of a file source: the datafix's `settle_seconds`, else the hub's
    default (`DATAFIX_FILE_SETTLE_SECONDS`, else 2 s)."""
    if declared is not None:
        return declared
    return seconds_variable(SETTLE_VARIABLE, SETTLE_SECONDS, most=600, fix="fix or unset it")


def wait_until_stable(
    paths: Sequence[Path], settle: float, *, patience: int = SETTLE_PATIENCE
) -> None:
    """Return once every file's size and modification time have been unchanged for `settle`
    seconds: an export still being written or copied is never read half-way.

    A file last modified `settle` seconds ago or more is stable at once (what a nightly run
    finds). A younger one (or one dated in the future) is watched, stat'ed again until it has
    been still that long; one still changing after `patience` intervals raises
    `RetriableError` naming it: it is left for the next run.
    """
    if settle <= 0 or not paths:
        return
    started = time.monotonic()
    deadline = started + settle * patience
    seen: dict[Path, tuple[int, int]] = {}
    changed_at: dict[Path, float] = {}  # when each file last changed, on the wall clock
    while True:
        now = time.time()
        for path in paths:
            with _readable(path):
                status = path.stat()
            state = (status.st_size, status.st_mtime_ns)
            if path not in seen:
                changed_at[path] = min(status.st_mtime_ns / 1e9, now)
            elif seen[path] != state:
                changed_at[path] = now
            seen[path] = state
        youngest = max(paths, key=lambda path: changed_at[path])
        still = now - changed_at[youngest]
        if still >= settle:
            return
        if time.monotonic() >= deadline:
            raise RetriableError(
                f"{youngest.name} is still being written (its size or modification time changed"
                f" {still:.1f} s ago, after {time.monotonic() - started:.0f} s of waiting for"
                f" {settle:g} s without a change) — left for the next run; if it never settles,"
                " check what keeps writing it"
            )
        time.sleep(max(0.05, min(settle - still, deadline - time.monotonic())))


def _hash_file(hasher: Any, path: Path) -> None:
    hasher.update(path.name.encode() + b"\0")
    with path.open("rb") as stream:
        while block := stream.read(BLOCK_SIZE):
            hasher.update(block)
    hasher.update(b"\0")


def fingerprint_files(paths: Sequence[Path]) -> str:
    """The fingerprint `read_csv` / `read_xlsx` would give these files, without parsing them
    (SHA-256 over each file's name and bytes): lets a caller skip an unchanged export."""
    paths = _check_paths(paths)
    state = _file_state(paths)
    if state is not None and state in _FINGERPRINTS:
        return _FINGERPRINTS[state]
    hasher = hashlib.sha256()
    for path in paths:
        _hash_file(hasher, path)
    digest = hasher.hexdigest()
    _remember_fingerprint(paths, state, digest)
    return digest


# The pull fingerprints a source's files to skip an unchanged export, then the reader hashes the
# same bytes again while it scans them (0.06 s per 70 MB): the second hash is taken from here
# when no file changed in between. A file is known by its device, inode, size, modification and
# change times (what `git status` trusts); one changed less than `_RACY_SECONDS` ago is never
# remembered, so a rewrite within the file system's clock tick cannot reuse a stale digest.
_FINGERPRINTS: dict[tuple[tuple[object, ...], ...], str] = {}
_RACY_SECONDS = 2.0


def _file_state(paths: Sequence[Path]) -> tuple[tuple[object, ...], ...] | None:
    try:
        stats = [os.stat(path) for path in paths]
    except OSError:
        return None
    now = time.time()
    if any(now - max(stat.st_mtime, stat.st_ctime) < _RACY_SECONDS for stat in stats):
        return None
    return tuple(
        (str(Path(path).absolute()), s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns)
        for path, s in zip(paths, stats, strict=True)
    )


def _remember_fingerprint(
    paths: Sequence[Path], state: tuple[tuple[object, ...], ...] | None, digest: str
) -> None:
    """Keep `digest` for the files' `state` (taken before hashing) if they still have it."""
    if state is None or _file_state(paths) != state:
        return
    if len(_FINGERPRINTS) >= 256:
        _FINGERPRINTS.clear()
    _FINGERPRINTS[state] = digest


class _NoHash:
    """Stands for the hasher of a scan whose fingerprint is already known."""

    def update(self, _data: bytes) -> None:
        return None


_fingerprint = fingerprint_files  # the name pipelines.lib.stages first imported


def _check_paths(paths: Sequence[Path]) -> list[Path]:
    if not paths:
        raise ConfigError("no file to read — give at least one path")
    paths = [Path(path) for path in paths]
    for path in paths:
        if not path.is_file():
            raise SourceDataError(f"{path}: file not found (moved or deleted while reading?)")
    return paths


# --------------------------------------------------------------------------------------------
# CSV


def _ascii_compatible(encoding: str) -> bool:
    return "\n;,".encode(encoding) == b"\n;,"


def _explicit_encoding(encoding: str, path: Path) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise ConfigError(
            f"{path.name}: unknown encoding `{encoding}` — use `auto`, `utf-8` or `cp1252`"
        ) from None


def _encoding_for(encoding: str, head: bytes, path: Path) -> str | None:
    """The codec for a declared encoding; `utf-8` on a file with a BOM reads past the BOM.
    None for `auto` without a BOM: the whole file decides."""
    if encoding == "auto":
        return _bom_encoding(head)
    chosen = _explicit_encoding(encoding, path)
    return "utf-8-sig" if chosen == "utf-8" and head.startswith(codecs.BOM_UTF8) else chosen


def _bom_encoding(head: bytes) -> str | None:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return None


def _scan_csv(path: Path, encoding: str, hasher: Any) -> tuple[str, int, bool]:
    """One pass over the file: feed the fingerprint, settle the encoding, count the lines, and
    tell whether the file ends with a line end (a copy cut short usually does not).

    `auto`: a BOM decides; else UTF-8 if the whole file decodes as UTF-8, else cp1252.
    """
    with path.open("rb") as stream:
        block = stream.read(BLOCK_SIZE)
        if not block:
            raise SourceDataError(f"{path.name}: the file is empty — export it again")
        chosen = _encoding_for(encoding, block, path)
        _refuse_binary(path, block, chosen)
        utf8_check = codecs.getincrementaldecoder("utf-8")() if chosen is None else None
        text_lines = None  # UTF-16 and the like: count line ends in the decoded text
        if chosen is not None and not _ascii_compatible(chosen):
            text_lines = codecs.getincrementaldecoder(chosen)(errors="replace")
        lines, ends_with_newline = 0, False
        hasher.update(path.name.encode() + b"\0")
        while block:
            hasher.update(block)
            if text_lines is not None:
                text = text_lines.decode(block)
                lines += text.count("\n")
                ends_with_newline = text.endswith("\n") if text else ends_with_newline
            else:
                lines += block.count(b"\n")
                ends_with_newline = block.endswith(b"\n")
            if utf8_check is not None:
                try:
                    utf8_check.decode(block)
                except UnicodeDecodeError:
                    utf8_check = None
                    chosen = "cp1252"
            block = stream.read(BLOCK_SIZE)
        hasher.update(b"\0")
    if utf8_check is not None:
        try:
            utf8_check.decode(b"", final=True)
            chosen = "utf-8"
        except UnicodeDecodeError:
            chosen = "cp1252"
    assert chosen is not None
    return chosen, lines + (0 if ends_with_newline else 1), ends_with_newline


# what a binary file dropped in place of a CSV export usually is, by its first bytes
_MAGIC = (
    (b"PK\x03\x04", "a zip archive or an Excel workbook (.xlsx): set `kind: xlsx` or export CSV"),
    (b"\xd0\xcf\x11\xe0", "an old Excel workbook (.xls): save it as .xlsx or CSV"),
    (b"%PDF", "a PDF document: export the data as CSV"),
    (b"SQLite format 3\x00", "an SQLite database: read it with `kind: sql`"),
)


def _refuse_binary(path: Path, head: bytes, encoding: str | None) -> None:
    """Refuse a file that is not text (NUL bytes, mostly control characters) before its bytes
    are taken for a header and rows: say what it looks like instead."""
    if encoding is not None and not _ascii_compatible(encoding):
        return  # UTF-16 text holds NUL bytes by design
    controls = sum(head.count(bytes([code])) for code in range(32) if code not in (9, 10, 13))
    if b"\x00" not in head and controls * 10 <= len(head):
        return
    looks = next((what for magic, what in _MAGIC if head.startswith(magic)), None)
    raise SourceDataError(
        f"{path.name}: not a text/CSV file ("
        + (looks or "binary data: NUL bytes or control characters — export the data as CSV")
        + ")"
    )


def _decode_error(path: Path, encoding: str) -> SourceDataError:
    """Locate the first byte `encoding` cannot decode, for a message a person can act on."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset, line = 0, 1
    with path.open("rb") as stream:
        while block := stream.read(BLOCK_SIZE):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as error:
                # error.object is the bytes kept from the previous block followed by this one
                data, start = error.object, max(error.start, 0)
                position = offset - (len(data) - len(block)) + start
                line += data[:start].count(b"\n")
                other = "utf-8" if codecs.lookup(encoding).name != "utf-8" else "cp1252"
                return SourceDataError(
                    f"{path.name}:{line}: byte {position} (0x{data[start]:02x}) is not valid"
                    f" {encoding} — set `encoding: {other}` (cp1252 is what French Excel"
                    " writes) or export the file again as UTF-8"
                )
            offset += len(block)
            line += block.count(b"\n")
    return SourceDataError(
        f"{path.name}: the file ends in the middle of a {encoding} character — export it again"
    )


def _head_lines(path: Path, encoding: str, limit: int) -> list[str]:
    """The first `limit` lines, decoded, each with its line end (a quoted value may span
    lines, and the csv module needs the `\\n` to keep it inside the value)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    text = ""
    with path.open("rb") as stream:
        while text.count("\n") < limit and (block := stream.read(1 << 16)):
            try:
                text += decoder.decode(block)
            except UnicodeDecodeError:
                raise _decode_error(path, encoding) from None
        complete = not stream.read(1)
    pieces = text.split("\n")
    lines = [piece + "\n" for piece in pieces[:-1]]
    if complete and pieces[-1]:
        lines.append(pieces[-1])  # a last line without line end
    return lines[:limit]


def _sniff_separator(lines: Sequence[str]) -> str:
    """The separator giving the most lines with one same field count above 1 (title lines,
    which have another count, are outvoted); ties go to the larger count, then to `;`."""
    best: tuple[int, int, int] | None = None
    choice = SEPARATORS[0]
    for rank, separator in enumerate(SEPARATORS):
        counts: dict[int, int] = {}
        try:
            for record in csv.reader(lines, delimiter=separator):
                if len(record) > 1:
                    counts[len(record)] = counts.get(len(record), 0) + 1
        except csv.Error:
            continue
        if not counts:
            continue
        width, frequency = max(counts.items(), key=lambda item: (item[1], item[0]))
        score = (frequency, width, -rank)
        if best is None or score > best:
            best, choice = score, separator
    return choice


def _records(lines: Sequence[str], separator: str, where: str) -> list[tuple[int, int, list[str]]]:
    """(first line, last line, fields) of each record in `lines` (quoted values may span lines)."""
    records: list[tuple[int, int, list[str]]] = []
    reader = csv.reader(lines, delimiter=separator)
    start = 1
    try:
        for fields in reader:
            records.append((start, reader.line_num, fields))
            start = reader.line_num + 1
    except csv.Error as error:
        raise SourceDataError(f"{where}:{start}: unreadable CSV line ({error})") from None
    return records


def _csv_header(
    path: Path, encoding: str, separator: str, header: _Header
) -> tuple[str, int, int, list[str], list[list[str]]]:
    """Find the separator and the header of one CSV file.

    Returns the separator, the number of records before the data (for `skiprows`), the
    physical line the data starts on, the header labels (raw, one per field) and the data
    records seen in the head (to size the table and to tell empty columns).
    """
    lines = _head_lines(path, encoding, header.head_lines)
    if separator == "auto":
        separator = _sniff_separator(lines)
    records = _records(lines, separator, path.name)
    if not records:
        raise SourceDataError(f"{path.name}: the file has no line — export it again")
    cells = [fields for _, _, fields in records]
    if header.row == "auto":
        start, labels = find_header(
            cells,
            header_rows=header.rows,
            expected_columns=header.expected_columns,
            merged_for=lambda _start: [],
            where=path.name,
            unit="line",
        )
    else:
        starts = [first for first, _, _ in records]
        if header.row not in starts or starts.index(header.row) + header.rows > len(records):
            raise SourceDataError(
                f"{path.name}: `header_row: {header.row}` is past the lines read or inside a"
                " quoted value — check the line number in a text editor"
            )
        start = starts.index(header.row)
        labels = combine_header(cells[start : start + header.rows], [])
    end = start + header.rows
    data_line = records[end - 1][1] + 1
    return separator, end, data_line, labels, cells[end:]


def _table_width(labels: Sequence[str], head_data: Sequence[Sequence[str]]) -> int:
    """Fields per record: the header's, or the count most data lines share when that is more
    (a header written without its trailing separators). A lone longer line stays an error."""
    counts: dict[int, int] = {}
    for fields in head_data:
        if fields:
            counts[len(fields)] = counts.get(len(fields), 0) + 1
    usual = max(counts, key=lambda width: (counts[width], width)) if counts else 0
    return max(len(labels), usual)


# encodings in which `"`, CR and LF are single bytes that never occur inside another character
_PLAIN_ENCODINGS = frozenset(
    {"utf-8", "utf-8-sig", "cp1252", "iso8859-1", "iso8859-15", "ascii", "latin-1"}
)


def _plain_text_options(names: list[str], encoding: str, separator: str) -> dict[str, Any]:
    """Arrow's CSV options for a plain file (no quote anywhere, one record a line): every
    column read as text, blank cells kept as empty strings, blank lines kept (they are rows the
    hub reports), in blocks of 4 MiB."""
    return {
        "read_options": pacsv.ReadOptions(
            column_names=names, encoding=encoding, block_size=1 << 22
        ),
        "parse_options": pacsv.ParseOptions(
            delimiter=separator,
            quote_char=False,
            double_quote=False,
            escape_char=False,
            newlines_in_values=False,
            ignore_empty_lines=False,
        ),
        "convert_options": pacsv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.large_string()),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    }


def _read_plain_csv(
    path: Path, encoding: str, separator: str, skip: int, data_line: int, width: int
) -> pd.DataFrame | None:
    """The data records through Arrow's multithreaded CSV reader, or None to use pandas.

    Only for the files where both read exactly the same text (checked against pandas' C
    parser with thousands of generated files): no `"` after the header (no quoting rules to
    compare), no lone CR, a header made of whole lines, every record the same width. Arrow
    refuses any other shape (a short or long line, an undecodable byte): pandas then reads the
    file and reports the problem as before. Saves about 1 s per million lines (pandas builds a
    Python string per cell before converting it to Arrow).
    """
    if encoding not in _PLAIN_ENCODINGS or data_line - 1 != skip or len(separator) != 1:
        return None
    data = path.read_bytes()
    offset = 0
    for _ in range(skip):
        offset = data.find(b"\n", offset) + 1
        if not offset:
            return None
    if offset == len(data) or data.find(b'"', offset) >= 0:
        return None
    if data.count(b"\r") != data.count(b"\r\n"):
        return None
    names = [str(index) for index in range(width)]
    try:
        table = pacsv.read_csv(
            pa.BufferReader(pa.py_buffer(memoryview(data)[offset:])),
            **_plain_text_options(names, encoding, separator),
        )
    except (pa.ArrowException, UnicodeError, ValueError):
        return None
    return pd.DataFrame(
        {index: pd.Series(table.column(index), dtype="str") for index in range(width)}
    )


_PANDAS_OPEN_QUOTE = re.compile(r"EOF inside string starting at row (\d+)")


def _pandas_csv(
    path: Path, encoding: str, separator: str, skip: int, width: int, nrows: int | None = None
) -> tuple[pd.DataFrame, bool]:
    """The data records through pandas' C parser, and whether the last one was left out
    because a quote opened in it is never closed (the file ends inside a quoted value)."""
    if nrows == 0:
        return pd.DataFrame({index: pd.Series([], dtype="str") for index in range(width)}), True
    try:
        with warnings.catch_warnings():
            # pandas drops the extra fields of a first record longer than the table, warning
            # only: an error here, as for any other line longer than the header
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(
                path,
                sep=separator,
                encoding=encoding,
                header=None,
                names=list(range(width)),
                index_col=False,
                skiprows=skip,
                nrows=nrows,
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                skip_blank_lines=False,
                quotechar='"',
                engine="c",
            )
    except pd.errors.ParserWarning:
        raise SourceDataError(
            f"{path.name}:{skip + 1}: more fields than the header ({width}) on the first data"
            " line — a value probably holds an unquoted separator; quote it or fix the export"
        ) from None
    except UnicodeDecodeError:
        raise _decode_error(path, encoding) from None
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame({index: pd.Series([], dtype="str") for index in range(width)})
    except pd.errors.ParserError as error:
        ragged = _PANDAS_RAGGED.search(str(error))
        if ragged:
            expected, line, saw = ragged.groups()
            raise SourceDataError(
                f"{path.name}:{line}: {saw} fields where the header has {expected} — a value"
                f" probably holds an unquoted `{separator}`; quote it or fix the export"
            ) from None
        open_quote = _PANDAS_OPEN_QUOTE.search(str(error))
        if open_quote and nrows is None:
            # every record before the one holding the open quote is whole: read those
            whole, _ = _pandas_csv(
                path, encoding, separator, skip, width, nrows=int(open_quote.group(1)) - skip
            )
            return whole, True
        raise SourceDataError(f"{path.name}: unreadable CSV ({error})") from None
    return frame, nrows is not None


def _read_one_csv(
    path: Path, *, encoding: str, separator: str, header: _Header, hasher: Any
) -> FileRead:
    chosen, physical_lines, ends_with_newline = _scan_csv(path, encoding, hasher)
    return _read_scanned_csv(path, chosen, physical_lines, ends_with_newline, separator, header)


def _read_scanned_csv(
    path: Path,
    chosen: str,
    physical_lines: int,
    ends_with_newline: bool,
    separator: str,
    header: _Header,
) -> FileRead:
    """One CSV file read whole, once `_scan_csv` settled its encoding and counted its lines."""
    separator, skip, data_line, labels, head_data = _csv_header(path, chosen, separator, header)
    header_width = len(labels)
    width = _table_width(labels, head_data)
    labels = labels + [""] * (width - len(labels))
    open_quote = False
    frame = _read_plain_csv(path, chosen, separator, skip, data_line, width)
    # Arrow refuses any line of another width than the table's (a blank line aside, which it
    # reads as a row of blanks): a table it read holds no short line to look for
    every_line_whole = frame is not None
    if frame is None:
        frame, open_quote = _pandas_csv(path, chosen, separator, skip, width)
    rows = len(frame)
    first = np.arange(data_line, data_line + rows, dtype=np.int64)
    newlines = np.zeros(rows, dtype=np.int64)
    if physical_lines - (data_line - 1) != rows and rows:
        # quoted values spanning lines: each record starts after the newlines of those above
        for column in frame.columns:
            newlines += frame[column].str.count("\n").to_numpy(dtype=np.int64)
        first += np.concatenate(([0], np.cumsum(newlines)[:-1]))
    lines = _RecordLines(path, chosen, first, newlines, data_line)
    faults = None
    if open_quote:
        frame, first, faults = lines.with_open_quote_row(frame, separator, width)
    elif rows and not every_line_whole and not lines.whole_file_is_plain(frame, width):
        faults = lines.short_records(frame, separator, header_width, ends_with_newline)
    source_rows = line_lineage(f"{path.name}:", first)
    return labels, frame, source_rows, faults


class _RecordLines:
    """Where each data record of a CSV file lies (its first physical line, the line ends inside
    its quoted values), to re-read the records pandas padded or left out.

    pandas pads a line with fewer fields than the table with blanks, which hides a line cut
    by a copy still running or values lost in the export: such lines are found again here and
    reported (`RawTable.faults`) so they are quarantined, never loaded padded.
    """

    def __init__(
        self, path: Path, encoding: str, first: np.ndarray, newlines: np.ndarray, data_line: int
    ) -> None:
        self.path = path
        self.encoding = encoding
        self.first = first
        self.newlines = newlines
        self.data_line = data_line
        self._data: bytes | None = None
        self._starts: np.ndarray | None = None

    def whole_file_is_plain(self, frame: pd.DataFrame, width: int) -> bool:
        """True when no record can be short: its last column holds a value in every row
        (cheap, vectorised; the usual case for a complete export)."""
        return bool((frame[width - 1] != "").all()) if width else True

    def _load(self) -> tuple[bytes, np.ndarray]:
        if self._data is None or self._starts is None:
            data = self.path.read_bytes()
            if not _ascii_compatible(self.encoding):
                data = data.decode(self.encoding, errors="replace").encode("utf-8")
            ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10) + 1
            self._data, self._starts = data, np.concatenate(([0], ends))
        return self._data, self._starts

    def text(self, line: int, lines: int | None = None) -> str:
        """The text of `lines` physical lines from `line` (1-based), or to the file's end."""
        data, starts = self._load()
        begin = int(starts[line - 1]) if line - 1 < len(starts) else len(data)
        stop = line - 1 + lines if lines is not None else len(starts)
        end = int(starts[stop]) if stop < len(starts) else len(data)
        encoding = self.encoding if _ascii_compatible(self.encoding) else "utf-8"
        return data[begin:end].decode(encoding, errors="replace")

    def fields(self, text: str, separator: str) -> list[str]:
        """The fields of one record's text, as the csv module splits them."""
        try:
            return next(csv.reader([text.rstrip("\r\n")], delimiter=separator), [])
        except csv.Error:
            return text.rstrip("\r\n").split(separator)

    def short_records(
        self, frame: pd.DataFrame, separator: str, header_width: int, ends_with_newline: bool
    ) -> pd.DataFrame | None:
        """The records holding fewer fields than the header (blank lines aside): the last one,
        in a file without a final line end, is a torn row (`truncated_row`), any other a short
        row (`short_row`).

        Only a record whose last column is blank can be short (pandas pads a short line with
        blanks, as it reads an empty last field). Most exports leave the last column blank on
        most lines, so the fields are counted on the raw bytes, vectorised, for every such
        record written on one line without a `"` (where the csv module would split at each
        separator, the count is the separators plus one); only the records holding a quote
        (or spanning lines) are split again by the csv module.
        """
        width = frame.shape[1]
        candidates = np.flatnonzero((frame[width - 1] == "").to_numpy(dtype=bool))
        if not len(candidates):
            return None
        # blank lines (every cell blank) are rows of their own, not short ones: narrow the
        # candidates column by column, so only the first column is scanned for all of them
        blank = candidates
        for column in frame.columns[: width - 1]:
            blank = blank[(frame[column].iloc[blank] == "").to_numpy(dtype=bool)]
            if not len(blank):
                break
        candidates = np.setdiff1d(candidates, blank, assume_unique=True)
        counts = self._field_counts(candidates, separator)
        last = len(frame) - 1
        reasons: dict[int, tuple[str, str]] = {}
        for position in np.flatnonzero(counts < header_width):
            index, count = int(candidates[position]), int(counts[position])
            line = int(self.first[index])
            where = f"{self.path.name}:{line}"
            if index == last and not ends_with_newline:
                reasons[index] = (
                    "truncated_row",
                    f"{where}: the last line is cut ({count} fields where the header has"
                    f" {header_width}, and no line end) — the file was still being written or"
                    " copied; drop it again once the copy is over",
                )
            else:
                reasons[index] = (
                    "short_row",
                    f"{where}: {count} fields where the header has {header_width} — values are"
                    " missing or the line is cut; fix the line in the export (the hub does not"
                    " pad it with blanks)",
                )
        return _faults(reasons, frame.index)

    def _field_counts(self, records: np.ndarray, separator: str) -> np.ndarray:
        """How many fields the csv module finds in each record of `records` (row positions):
        counted on the bytes where that is exact, split in Python elsewhere."""
        counts = np.full(len(records), -1, dtype=np.int64)
        if not len(records):
            return counts
        data, starts = self._load()
        lines = self.first[records] - 1  # 0-based physical line of each record
        spans = 1 + self.newlines[records]
        fast = np.zeros(len(records), dtype=bool)
        if self._byte_countable(separator):
            inside = (spans == 1) & (lines + 1 < len(starts))
            begin = starts[np.where(inside, lines, 0)]
            end = starts[np.where(inside, lines + 1, 0)]
            raw = np.frombuffer(data, dtype=np.uint8)
            quotes = np.flatnonzero(raw == ord('"'))
            separators = np.flatnonzero(raw == ord(separator))
            quoted = np.searchsorted(quotes, end) > np.searchsorted(quotes, begin)
            found = np.searchsorted(separators, end) - np.searchsorted(separators, begin)
            # no separator: an empty line gives no field, any other text one; left to the csv
            # module (rare: a line of one field where the header has several)
            fast = inside & ~quoted & (found > 0)
            counts[fast] = found[fast] + 1
        for position in np.flatnonzero(~fast):
            line = int(self.first[records[position]])
            text = self.text(line, int(spans[position]))
            counts[position] = len(self.fields(text, separator))
        return counts

    def _byte_countable(self, separator: str) -> bool:
        """Whether a separator byte in the bytes `_load` holds is always a separator character:
        a one-character ASCII separator, in UTF-8 (what `_load` re-encodes a wide encoding to)
        or a single-byte encoding (where no byte of a longer character can equal it)."""
        if len(separator) != 1 or not separator.isascii() or separator in '"\r\n':
            return False
        encoding = codecs.lookup(self.encoding).name
        return encoding in _PLAIN_ENCODINGS or not _ascii_compatible(self.encoding)

    def with_open_quote_row(
        self, frame: pd.DataFrame, separator: str, width: int
    ) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
        """The records pandas read whole, plus the last one, whose quote is never closed, as a
        torn row (`truncated_row`) holding its text as the csv module splits it."""
        rows = len(frame)
        line = int(self.first[-1] + 1 + self.newlines[-1]) if rows else self.data_line
        fields = self.fields(self.text(line), separator)[:width]
        fields += [""] * (width - len(fields))
        torn = pd.DataFrame(
            {index: pd.Series([fields[index]], dtype="str") for index in range(width)}
        )
        frame = pd.concat([frame, torn], ignore_index=True) if rows else torn
        first = np.append(self.first, line)
        message = (
            f"{self.path.name}:{line}: a quote opened on this line is never closed before the"
            " end of the file — the file was still being written or copied (or a value holds a"
            ' stray `"`); drop it again once the copy is over'
        )
        return frame, first, _faults({rows: ("truncated_row", message)}, frame.index)


def _faults(reasons: dict[int, tuple[str, str]], index: pd.Index) -> pd.DataFrame | None:
    """`RawTable.faults` from {row position: (reason, message)}."""
    if not reasons:
        return None
    positions = sorted(reasons)
    return pd.DataFrame(
        {
            "reason": pd.Series([reasons[p][0] for p in positions], dtype="str"),
            "message": pd.Series([reasons[p][1] for p in positions], dtype="str"),
        }
    ).set_axis(index[positions])


# named for the annotations only (pandas is imported at its first use: connectors/lazy.py)
if TYPE_CHECKING:
    FileRead = tuple[list[str], pd.DataFrame, pd.Series, pd.DataFrame | None]


def _read_files(
    paths: list[Path],
    read_one: Callable[[Path], FileRead],
    fingerprint: Callable[[list[Path]], str],
) -> RawTable:
    """Each file read by `read_one` (labels, frame, lineage, faults), then one table of them
    all. A file the hub may not open is an error naming it; so is a table without data rows
    (a header-only export), which would otherwise reach the contract as an empty table."""
    paths = _check_paths(paths)
    parts = []
    for path in paths:
        with _readable(path):
            parts.append((path, *read_one(path)))
    frame, source_rows, faults = _assemble(parts)
    origin = ", ".join(path.name for path in paths)
    if not _has_data_rows(frame):
        raise SourceDataError(
            f"{origin}: no data rows (the header only{', or blank lines' if len(frame) else ''})"
            " — the export is empty or was cut before its first row; export it again"
        )
    with _readable(paths[0]):
        fingerprinted = fingerprint(paths)
    return RawTable(
        frame=frame,
        source_rows=source_rows,
        fingerprint=fingerprinted,
        origin=origin,
        faults=faults,
    )


def _has_data_rows(frame: pd.DataFrame) -> bool:
    """Whether any row holds a non-blank cell (whitespace is blank); the first rows decide
    for any real export, so a large table is rarely scanned whole."""
    return any(
        bool((part[column].str.strip() != "").any())
        for part in (frame.iloc[:100], frame.iloc[100:])
        for column in frame.columns
    )


@contextmanager
def _readable(path: Path) -> Iterator[None]:
    """Turn the operating system's refusal to read `path` (permissions, a folder or a device
    in its place, an I/O error) into an error naming the file and what to do."""
    try:
        yield
    except (PermissionError, IsADirectoryError) as error:
        raise SourceDataError(
            f"{path.name}: the hub may not read this file ({error.strerror}) — give the hub's"
            " user read access to it, or drop the export again"
        ) from None
    except OSError as error:
        if isinstance(error, FileNotFoundError):
            raise SourceDataError(
                f"{path.name}: file not found (moved or deleted while reading?)"
            ) from None
        raise SourceDataError(
            f"{path.name}: the file cannot be read ({error.strerror or error}) — check the disk"
            " or drop the export again"
        ) from None


def _assemble(
    parts: Sequence[tuple[Path, list[str], pd.DataFrame, pd.Series, pd.DataFrame | None]],
) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame | None]:
    """Concatenate per-file tables sharing one header, then name and prune the columns; the
    faults of each file follow its rows."""
    first_path, first_labels, _, _, _ = parts[0]

    def significant(labels: Sequence[str]) -> list[str]:
        keys = [header_key(label) for label in labels]
        while keys and not keys[-1]:
            keys.pop()
        return keys

    reference = significant(first_labels)
    for path, labels, _, _, _ in parts[1:]:
        if significant(labels) != reference:
            missing = sorted(set(reference) - set(significant(labels)) - {""})
            extra = sorted(set(significant(labels)) - set(reference) - {""})
            difference = (
                f"missing: {', '.join(missing) or 'none'}; extra: {', '.join(extra) or 'none'}"
                if missing or extra
                else "the same columns in another order"
            )
            raise SourceDataError(
                f"{path.name}: its header differs from {first_path.name}'s ({difference}) —"
                " read the files separately or export them with the same columns"
            )
    width = max(frame.shape[1] for _, _, frame, _, _ in parts)
    labels = first_labels + [""] * (width - len(first_labels))
    frames = []
    for _, _, frame, _, _ in parts:
        frame = frame.set_axis(range(frame.shape[1]), axis=1)
        for index in range(frame.shape[1], width):
            frame[index] = pd.Series([""] * len(frame), dtype="str", index=frame.index)
        frames.append(frame)
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    source_rows = (
        parts[0][3] if len(parts) == 1 else pd.concat([p[3] for p in parts], ignore_index=True)
    )

    def has_data(index: int) -> bool:
        return bool((frame[index] != "").any())

    kept = final_labels(labels, has_data)
    frame = frame[[index for index, _ in kept]]
    frame.columns = pd.Index([label for _, label in kept], dtype=object)
    faults, offset = [], 0
    for _, _, part, _, found in parts:
        if found is not None and len(found):
            positions = part.index.get_indexer(found.index) + offset
            faults.append(found.set_axis(pd.RangeIndex(len(frame))[positions]))
        offset += len(part)
    return (
        frame.reset_index(drop=True),
        source_rows.reset_index(drop=True).rename(None),
        pd.concat(faults) if faults else None,
    )


def read_csv(
    paths: list[Path],
    *,
    encoding: str = "auto",
    separator: str = "auto",
    header_row: int | Literal["auto"] = "auto",
    header_rows: int = 1,
    expected_columns: Sequence[str] = (),
    stream: bool = False,
) -> RawTable:
    """Read CSV exports (concatenated in order, one shared header) into one text table.

    `stream`: a single plain file is returned as a streamed table (`RawTable.stream`, read
    chunk by chunk by the stages; see `_stream_csv`), any other read whole as without it.

    `encoding: auto`: a BOM decides, else UTF-8 when the whole file decodes as UTF-8, else
    cp1252. `separator: auto`: the one of `; , tab |` giving most lines one same field count.
    `header_row: auto`: among the first 30 lines, the earliest holding the most
    `expected_columns` (compared with `header_key`). Blank lines are kept as rows of `""`;
    `source_rows` give each record's first physical line (`file.csv:12`).
    """
    state = _file_state(paths)
    known = _FINGERPRINTS.get(state) if state is not None else None
    hasher: Any = _NoHash() if known is not None else hashlib.sha256()
    header = _Header(header_row, header_rows, expected_columns)

    def fingerprint(read: list[Path]) -> str:
        if known is not None:
            return known
        digest = hasher.hexdigest()
        _remember_fingerprint(read, state, digest)
        return digest

    if stream and len(paths) == 1:
        path = _check_paths(paths)[0]
        with _readable(path):
            streamed, read = _stream_csv(
                path, encoding=encoding, separator=separator, header=header, hasher=hasher
            )
        if streamed is not None:
            with _readable(path):
                return replace(streamed, fingerprint=fingerprint([path]))
        return _read_files(paths, lambda _path: read, fingerprint)  # type: ignore[return-value]
    return _read_files(
        paths,
        lambda path: _read_one_csv(
            path, encoding=encoding, separator=separator, header=header, hasher=hasher
        ),
        fingerprint,
    )


def _plain_data_offset(path: Path, skip: int) -> int | None:
    """The byte offset of the first data line when Arrow reads the file exactly as pandas
    would (`_read_plain_csv`'s conditions: no `"` after the header, no lone CR, data after the
    header), else None; one pass over the file in blocks, never the whole file in memory."""
    with path.open("rb") as stream:
        for _ in range(skip):
            if not stream.readline():
                return None
        offset = stream.tell()
        carriage = pairs = 0
        last = b""
        seen = False
        while block := stream.read(BLOCK_SIZE):
            seen = True
            if b'"' in block:
                return None
            carriage += block.count(b"\r")
            pairs += block.count(b"\r\n") + (last == b"\r" and block[:1] == b"\n")
            last = block[-1:]
    if not seen or carriage != pairs:
        return None
    return offset


def _stream_csv(
    path: Path, *, encoding: str, separator: str, header: _Header, hasher: Any
) -> tuple[RawTable | None, FileRead | None]:
    """One CSV file as a streamed table (`RawTable.stream`) when Arrow's streaming reader
    reads it exactly as the whole-file readers would, else the file read whole (`FileRead`).

    Streamed: a plain file (`_plain_data_offset`) whose header names every column (no empty
    label to prune by looking at the data). Its rows, lineage (`file.csv:12`) and fingerprint
    are those of the whole read; should Arrow refuse a line further down (a line of another
    width), the chunks go on from the whole read (`_read_scanned_csv`, which reports that
    line), so what the stages see does not depend on where the stream stopped.
    """
    chosen, physical_lines, ends_with_newline = _scan_csv(path, encoding, hasher)

    def whole() -> FileRead:
        return _read_scanned_csv(path, chosen, physical_lines, ends_with_newline, separator, header)

    found, skip, data_line, labels, head_data = _csv_header(path, chosen, separator, header)
    width = _table_width(labels, head_data)
    offset = None
    if (
        chosen in _PLAIN_ENCODINGS
        and data_line - 1 == skip
        and len(found) == 1
        and width == len(labels)
        and all(label.strip() for label in labels)
    ):
        offset = _plain_data_offset(path, skip)
    if offset is None:
        return None, whole()
    kept = [label for _, label in final_labels(labels, lambda _index: True)]
    rows = physical_lines - skip

    def chunks(size: int) -> Iterator[RawTable]:
        with _readable(path):
            yield from _csv_chunks(
                path, chosen, found, offset, kept, data_line, max(1, size), whole
            )

    return RawTable(
        frame=pd.DataFrame({label: pd.Series([], dtype="str") for label in kept}),
        source_rows=pd.Series([], dtype="str"),
        fingerprint="",
        origin=path.name,
        stream=chunks,
        streamed_rows=rows,
    ), None


def _csv_chunks(
    path: Path,
    encoding: str,
    separator: str,
    offset: int,
    labels: list[str],
    data_line: int,
    size: int,
    whole: Callable[[], FileRead],
) -> Iterator[RawTable]:
    """The data records of a plain CSV file, `size` rows at a time, through Arrow's streaming
    reader (bounded memory); see `_stream_csv`."""
    width = len(labels)
    names = [str(index) for index in range(width)]
    done = 0
    data = False

    def table_of(part: pa.Table) -> RawTable:
        nonlocal done, data
        frame = pd.DataFrame(
            {
                label: pd.Series(part.column(index), dtype="str")
                for index, label in enumerate(labels)
            }
        )
        frame.columns = pd.Index(labels, dtype=object)
        first = np.arange(data_line + done, data_line + done + len(frame), dtype=np.int64)
        done += len(frame)
        data = data or _has_data_rows(frame)
        return RawTable(
            frame=frame,
            source_rows=line_lineage(f"{path.name}:", first),
            fingerprint="",
            origin=path.name,
        )

    with path.open("rb") as handle:
        handle.seek(offset)
        try:
            reader = pacsv.open_csv(handle, **_plain_text_options(names, encoding, separator))
            pending: list[pa.RecordBatch] = []
            held = 0
            for batch in reader:
                pending.append(batch)
                held += batch.num_rows
                while held >= size:
                    table = pa.Table.from_batches(pending)
                    yield table_of(table.slice(0, size))
                    rest = table.slice(size)
                    pending, held = rest.to_batches(), rest.num_rows
            if held:
                yield table_of(pa.Table.from_batches(pending))
            failed = False
        except (pa.ArrowException, UnicodeError, ValueError):
            failed = True
    if failed:
        # a line Arrow refuses: the rest from the whole read, which names that line
        _, frame, source_rows, faults = whole()
        frame.columns = pd.Index(labels[: frame.shape[1]], dtype=object)
        read = RawTable(frame, source_rows.reset_index(drop=True), "", path.name, faults=faults)
        for start in range(done, max(len(frame), done + 1), size):
            part = read.frame.iloc[start : start + size].reset_index(drop=True)
            if not len(part):
                break
            chunk_faults = None
            if faults is not None:
                inside = faults.index[(faults.index >= start) & (faults.index < start + size)]
                if len(inside):
                    chunk_faults = faults.loc[inside].set_axis(inside - start)
            data = data or _has_data_rows(part)
            yield RawTable(
                frame=part,
                source_rows=read.source_rows.iloc[start : start + size].reset_index(drop=True),
                fingerprint="",
                origin=path.name,
                faults=chunk_faults,
            )
    if not data:
        raise SourceDataError(
            f"{path.name}: no data rows (the header only, or blank lines) — the export is empty"
            " or was cut before its first row; export it again"
        )


def _csv_header_labels(
    path: Path,
    *,
    encoding: str = "auto",
    separator: str = "auto",
    header_row: int | Literal["auto"] = "auto",
    header_rows: int = 1,
    expected_columns: Sequence[str] = (),
) -> list[str]:
    with path.open("rb") as stream:
        head = stream.read(1 << 16)
    if not head:
        raise SourceDataError(f"{path.name}: the file is empty — export it again")
    chosen = _encoding_for(encoding, head, path)
    _refuse_binary(path, head, chosen)
    if chosen is None:  # auto, judged on the head only: cheap, and the header is there
        try:
            codecs.getincrementaldecoder("utf-8")().decode(head)
            chosen = "utf-8"
        except UnicodeDecodeError:
            chosen = "cp1252"
    header = _Header(header_row, header_rows, expected_columns)
    _, _, _, labels, head_data = _csv_header(path, chosen, separator, header)
    width = _table_width(labels, head_data)
    labels = labels + [""] * (width - len(labels))
    return _kept_labels(labels, head_data)


# --------------------------------------------------------------------------------------------
# Excel


class _Workbook:
    """An open workbook through python-calamine, or openpyxl when calamine cannot open it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._calamine: Any = None
        self._openpyxl: Any = None
        try:
            self._calamine = CalamineWorkbook.from_path(str(path))
            self.sheet_names: list[str] = list(self._calamine.sheet_names)
        except Exception as calamine_error:
            try:
                import openpyxl

                self._openpyxl = openpyxl.load_workbook(path, read_only=True, data_only=True)
                self.sheet_names = list(self._openpyxl.sheetnames)
            except Exception:
                raise SourceDataError(
                    f"{path.name}: not a readable Excel workbook ({calamine_error}) — open it in"
                    " Excel and save it again as .xlsx"
                ) from None

    def close(self) -> None:
        if self._openpyxl is not None:
            self._openpyxl.close()
        elif self._calamine is not None:
            self._calamine.close()

    def __enter__(self) -> _Workbook:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def sheet(self, wanted: str | None) -> str:
        """The sheet `wanted` names (exact, else the one with the same `header_key`)."""
        if not self.sheet_names:
            raise SourceDataError(f"{self.path.name}: the workbook has no sheet")
        if wanted is None:
            return self.sheet_names[0]
        if wanted in self.sheet_names:
            return wanted
        same = [name for name in self.sheet_names if header_key(name) == header_key(wanted)]
        if len(same) == 1:
            return same[0]
        close = difflib.get_close_matches(wanted, self.sheet_names, n=1, cutoff=0.5)
        hint = f"did you mean `{close[0]}`?" if close else "set `sheet` to one of them"
        raise SourceDataError(
            f"{self.path.name}: no sheet `{wanted}` (sheets: {', '.join(self.sheet_names)}) —"
            f" {hint}"
        )

    def rows(self, sheet: str, limit: int | None = None) -> tuple[list[list[Any]], list]:
        """Cells from A1 (one list per row, `""` for an empty cell) and merged ranges as
        ((first row, first col), (last row, last col)), 0-based."""
        if self._calamine is not None:
            try:
                worksheet = self._calamine.get_sheet_by_name(sheet)
                rows = worksheet.to_python(skip_empty_area=False, nrows=limit)
                return rows, list(worksheet.merged_cell_ranges or [])
            except Exception as error:
                raise SourceDataError(
                    f"{self.path.name}:{sheet}: the sheet cannot be read ({error}) — open the"
                    " workbook in Excel and save it again"
                ) from None
        worksheet = self._openpyxl[sheet]
        worksheet.reset_dimensions()  # the declared used range may be wrong: read every row
        rows = []
        for row in worksheet.iter_rows(min_row=1, min_col=1, max_row=limit, values_only=True):
            rows.append(["" if value is None else value for value in row])
        width = max((len(row) for row in rows), default=0)
        return [row + [""] * (width - len(row)) for row in rows], []


def _merged_in_header(merged: list, start: int, header_rows: int) -> list[tuple[int, int, int]]:
    """Horizontal spans of the merged ranges crossing rows start … start+header_rows-1."""
    spans = []
    for (first_row, first_col), (last_row, last_col) in merged:
        if last_col <= first_col:
            continue
        for level in range(header_rows):
            if first_row <= start + level <= last_row:
                spans.append((level, first_col, last_col))
    return spans


def _xlsx_header(
    rows: Sequence[Sequence[Any]], merged: list, *, where: str, header: _Header
) -> tuple[int, list[str]]:
    """0-based index of the first header row and the labels."""
    head = [
        [value_text(cell, midnight_as_date=True) for cell in row]
        for row in rows[: max(HEADER_SCAN_ROWS + header.rows, 0)]
    ]
    if header.row == "auto":
        start, _ = find_header(
            head,
            header_rows=header.rows,
            expected_columns=header.expected_columns,
            merged_for=lambda start: _merged_in_header(merged, start, header.rows),
            where=where,
            unit="row",
        )
    else:
        start = header.row - 1
        if start + header.rows > len(rows):
            raise SourceDataError(
                f"{where}: `header_row: {header.row}` is past the last row ({len(rows)}) — check"
                " the row number in Excel"
            )
    block = [
        [value_text(cell, midnight_as_date=True) for cell in row]
        for row in rows[start : start + header.rows]
    ]
    return start, combine_header(block, _merged_in_header(merged, start, header.rows))


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a reader builds millions of short-lived lists.

    Those lists hold no cycles, yet every few thousand allocations the collector walks all of
    them again; pausing it cuts a 100,000-row sheet's conversion time by about half.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _read_one_xlsx(path: Path, *, sheet: str | None, header: _Header) -> FileRead:
    with _Workbook(path) as workbook, gc_paused():
        name = workbook.sheet(sheet)
        rows, merged = workbook.rows(name)
        table = _sheet_table(path, name, rows, merged, header=header)
        # the cells' row lists freed while the collector is still paused: alive when it
        # resumes, the first collection would walk every one of them (~50 ms per 100,000 rows)
        del rows
        return (*table, None)


def _sheet_table(
    path: Path, name: str, rows: list[list[Any]], merged: list, *, header: _Header
) -> tuple[list[str], pd.DataFrame, pd.Series]:
    where = f"{path.name}:{name}"
    end = len(rows)
    while end and rows[end - 1].count("") == len(rows[end - 1]):
        end -= 1  # Excel's used range often ends with formatted but empty rows
    if not end:
        raise SourceDataError(f"{where}: the sheet is empty — check `sheet` or the export")
    rows = rows[:end]
    start, labels = _xlsx_header(rows, merged, where=where, header=header)
    data = rows[start + header.rows :]
    width = len(rows[0])  # every row has the sheet's width (calamine and openpyxl alike)
    labels = labels + [""] * (width - len(labels))
    # one 2-D object array (C speed), then a column at a time: the cells in row order through
    # `fromiter`, which never looks into a cell (2.5x faster than `np.array` on the rows,
    # which checks every cell for a nested sequence)
    if data and set(map(len, data)) != {width}:
        raise SourceDataError(f"{where}: rows of different widths — save the workbook again")
    grid = np.fromiter(
        itertools.chain.from_iterable(data), dtype=object, count=len(data) * width
    ).reshape(len(data), width)
    frame = pd.DataFrame(
        {index: column_text(grid[:, index], midnight_as_date=True) for index in range(width)},
        index=pd.RangeIndex(len(data)),
    )
    first = start + header.rows + 1
    source_rows = line_lineage(f"{path.name}:{name}:", np.arange(first, first + len(data)))
    return labels, frame, source_rows


def read_xlsx(
    paths: list[Path],
    *,
    sheet: str | None = None,
    header_row: int | Literal["auto"] = "auto",
    header_rows: int = 1,
    expected_columns: Sequence[str] = (),
) -> RawTable:
    """Read one sheet (`sheet`, else the first) of Excel workbooks into one text table.

    The header is found as for CSV, a two-row header combining a merged upper cell with each
    cell below it (`Montant engagé` over `HT` → `Montant engagé HT`). Cells become text as
    `value_text` says, dates as `2026-03-01`; formulas give their cached value; the empty
    rows Excel keeps at the bottom of the used range are dropped, blank rows above are kept.
    `source_rows`: `book.xlsx:Sheet:12` (Excel row numbers).
    """
    header = _Header(header_row, header_rows, expected_columns)
    return _read_files(
        paths, lambda path: _read_one_xlsx(path, sheet=sheet, header=header), fingerprint_files
    )


def _xlsx_header_labels(
    path: Path,
    *,
    sheet: str | None = None,
    header_row: int | Literal["auto"] = "auto",
    header_rows: int = 1,
    expected_columns: Sequence[str] = (),
) -> list[str]:
    header = _Header(header_row, header_rows, expected_columns)
    with _Workbook(path) as workbook:
        name = workbook.sheet(sheet)
        rows, merged = workbook.rows(name, limit=header.head_lines)
    if not rows or all(row.count("") == len(row) for row in rows):
        raise SourceDataError(f"{path.name}:{name}: the sheet is empty — check `sheet`")
    start, labels = _xlsx_header(rows, merged, where=f"{path.name}:{name}", header=header)
    data = rows[start + header.rows :]
    return _kept_labels(labels, data)


def _kept_labels(labels: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The column labels `final_labels` keeps when the data is `rows` (the first ones)."""
    kept = final_labels(
        labels, lambda index: any(index < len(row) and row[index] != "" for row in rows)
    )
    return [label for _, label in kept]


def read_header(paths: list[Path], *, kind: Literal["csv", "xlsx"], **options: Any) -> list[str]:
    """The header labels only, as `read_csv` / `read_xlsx` would name the columns.

    Cheap: reads the first lines of the first file (for a workbook, calamine still loads the
    sheet, but only the first rows are converted). An empty-label column is kept as
    `column N` when one of those first rows has a value in it.
    """
    path = _check_paths(paths)[0]
    if kind == "csv":
        return _csv_header_labels(path, **options)
    if kind == "xlsx":
        return _xlsx_header_labels(path, **options)
    raise ConfigError(f"unknown file kind `{kind}` — use csv or xlsx")


def sheet_names(path: Path) -> list[str]:
    """The sheets of a workbook, in order."""
    path = _check_paths([path])[0]
    with _Workbook(path) as workbook:
        return list(workbook.sheet_names)
