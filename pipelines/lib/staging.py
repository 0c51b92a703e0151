"""Canonical rows on their way to the driver, and a second process that stages them for SQLite.

`row_values` turns a chunk of canonical rows into driver-ready values (None for nulls, ISO text
for dates, Python ints, the row's hash) and `insert_rows` writes them to SQLite in multi-row
INSERTs: the load's own bulk insert (`pipelines.lib.warehouse`) and the staging helper below
share them, so both write the same values.

Binding a million rows is what a SQLite load pays in Python, on one core, after normalise and
the contract. `StagedRows` moves it to the machine's other core: while normalise maps the later
chunks and the contract runs, a helper process (`python -m pipelines.lib.staging`, which
imports pandas, pyarrow and sqlite3 only) reads each chunk of canonical rows the spool writes
and inserts its values (every column but the load's lineage constants) into a SQLite file of
its own in the spool's folder (0600 in a 0700 folder, removed with the spool). The load then
attaches that file and copies the rows with one `INSERT … SELECT`, the lineage bound once, in
its one transaction (`Warehouse.load`). The contract still gates the load: a refused entity's
staged file is never read. When the helper failed, or staged another number of rows than the
load holds, the load binds the rows itself as before. DATAFIX_LOAD_HELPER=0 turns the helper
off (`helper_wanted`).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sqlite3
import subprocess
import sys
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.lazy import np, pa, pd
from schemas.canonical import ENTITIES, ColumnType

__all__ = [
    "DriverValues",
    "StagedRows",
    "Staging",
    "helper_wanted",
    "insert_rows",
    "row_hashes",
    "row_values",
    "sqlite_literal",
]

log = logging.getLogger(__name__)

# rows per bulk-insert batch: its driver values (a Python object per cell) stay under ~60 MB;
# 100,000 held ~180 MB at the peak of a 1M-row load, and was no faster
BATCH_ROWS = 32_000
HASH_ROWS = 131_072
SQLITE_ROWS_PER_STATEMENT = 200
STAGED_TABLE = "staged_rows"


def helper_wanted() -> bool:
    """Whether a SQLite load has its rows staged by a helper process (`StagedRows`): yes unless
    DATAFIX_LOAD_HELPER is `0` (the helper holds ~150 MB more while it runs)."""
    return os.environ.get("DATAFIX_LOAD_HELPER", "").strip() != "0"


def row_hashes(rows: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """A stable 64-bit hash of each row's mapped values.

    A row's hash depends on its own values only, so it is computed `HASH_ROWS` rows at a time:
    pandas hashes a text column through a Python object per cell, and over a million rows at
    once those objects held ~240 MB more at the load's peak, for no gain in time."""
    hashes = np.empty(len(rows), dtype="int64")
    mapped = rows[list(columns)]
    for start in range(0, len(rows), HASH_ROWS):
        part = mapped.iloc[start : start + HASH_ROWS]
        hashes[start : start + len(part)] = (
            pd.util.hash_pandas_object(part, index=False).to_numpy().view("int64")
        )
    return hashes


@dataclass(frozen=True)
class DriverValues:
    """Driver-ready values of one chunk: None for nulls, ISO text for dates, Python ints.

    `constants` holds the values every row shares (the load's lineage), `columns` one converter
    per other column returning the object array of rows `start:stop`. Rows are converted one
    batch at a time, so a million-row load never holds a million Python objects per column.
    """

    constants: dict[str, Any]
    columns: dict[str, Callable[[int, int], np.ndarray]]
    count: int  # rows
    nulls: frozenset[str] = frozenset()  # columns null in every row of the batch
    # the same values as Arrow arrays of every row (the PostgreSQL COPY of `warehouse`)
    arrays: dict[str, Callable[[], pa.Array]] = field(default_factory=dict)

    def arrow(self, names: Sequence[str]) -> pa.Table:
        """Every row as an Arrow table, one column per name, a constant repeated."""
        columns = []
        for name in names:
            if name in self.constants:
                value = self.constants[name]
                columns.append(pa.array([value]).take(np.zeros(self.count, dtype="int64")))
            else:
                columns.append(self.arrays[name]())
        return pa.Table.from_arrays(columns, names=list(names))

    def grids(self, names: Sequence[str]) -> Iterator[np.ndarray]:
        """Batches of at most BATCH_ROWS rows as 2-D object arrays, one column per name."""
        for start in range(0, self.count, BATCH_ROWS):
            stop = min(start + BATCH_ROWS, self.count)
            grid = np.empty((stop - start, len(names)), dtype=object)
            for position, name in enumerate(names):
                if name in self.constants:
                    grid[:, position] = self.constants[name]
                else:
                    grid[:, position] = self.columns[name](start, stop)
            yield grid


def row_values(rows: pd.DataFrame, entity: str, dialect: str) -> DriverValues:
    """The values of each row's own columns (no constant): the canonical columns, `source_row`,
    `row_hash`, and `source_name` when the rows name their feed (an entity with several)."""
    spec = ENTITIES[entity]
    columns: dict[str, Callable[[int, int], np.ndarray]] = {
        column.name: _driver_values(rows[column.name], column.type, dialect)
        for column in spec.columns
    }
    arrays: dict[str, Callable[[], pa.Array]] = {
        column.name: functools.partial(_arrow_values, rows[column.name], column.type, dialect)
        for column in spec.columns
    }
    nulls = frozenset(name for name in spec.column_names if len(rows) and rows[name].isna().all())
    source_rows = rows["source_row"].astype("str")
    columns["source_row"] = lambda start, stop: source_rows.iloc[start:stop].to_numpy(
        dtype=object, na_value=None
    )
    arrays["source_row"] = lambda: pa.array(source_rows, type=pa.large_string(), from_pandas=True)
    hashes = row_hashes(rows, spec.column_names)
    columns["row_hash"] = lambda start, stop: hashes[start:stop].astype(object)
    arrays["row_hash"] = lambda: pa.array(hashes)
    if "source_name" in rows:  # an entity with several feeds: each row names its own
        feeds = rows["source_name"].to_numpy(dtype=object)
        columns["source_name"] = lambda start, stop: feeds[start:stop]
        arrays["source_name"] = lambda: pa.array(feeds)
    return DriverValues({}, columns, len(rows), nulls, arrays)


def _driver_values(
    series: pd.Series, column_type: ColumnType, dialect: str
) -> Callable[[int, int], np.ndarray]:
    """The converter of one canonical column: rows `start:stop` as an object array."""
    missing = series.isna().to_numpy()

    def with_nulls(out: np.ndarray, start: int, stop: int) -> np.ndarray:
        # `out` is always a fresh array here (astype, fancy indexing): set the nulls in place
        gaps = missing[start:stop]
        if gaps.any():
            out[gaps] = None
        return out

    if column_type in (ColumnType.TEXT, ColumnType.CHOICE):
        return lambda start, stop: series.iloc[start:stop].to_numpy(dtype=object, na_value=None)
    if column_type in (ColumnType.CENTS, ColumnType.INTEGER):
        whole = series.to_numpy(dtype="int64", na_value=0)
        return lambda start, stop: with_nulls(whole[start:stop].astype(object), start, stop)
    if column_type is ColumnType.BOOLEAN:
        truth = series.to_numpy(dtype="bool", na_value=False)
        return lambda start, stop: with_nulls(truth[start:stop].astype(object), start, stop)
    codes, text = _date_texts(series, column_type, dialect)
    text = text.astype(object)
    return lambda start, stop: with_nulls(text[codes[start:stop]], start, stop)


def _arrow_values(series: pd.Series, column_type: ColumnType, dialect: str) -> pa.Array:
    """One canonical column as an Arrow array holding the values `_driver_values` gives."""
    missing = series.isna().to_numpy()
    if column_type in (ColumnType.TEXT, ColumnType.CHOICE):
        # an Arrow-backed text column is taken as it is, not through a Python object per cell
        return pa.array(series, type=pa.large_string(), from_pandas=True)
    if column_type in (ColumnType.CENTS, ColumnType.INTEGER):
        return pa.array(series.to_numpy(dtype="int64", na_value=0), mask=missing)
    if column_type is ColumnType.BOOLEAN:
        return pa.array(series.to_numpy(dtype="bool", na_value=False), mask=missing)
    codes, text = _date_texts(series, column_type, dialect)
    return pa.array(text).take(pa.array(codes, mask=missing))


def _date_texts(
    series: pd.Series, column_type: ColumnType, dialect: str
) -> tuple[np.ndarray, np.ndarray]:
    """A date or timestamp column as driver text: each row's code into the distinct texts."""
    # dates repeat: write each distinct date once, then take (numpy's datetime-to-text
    # conversion costs ~0.3 s per million cells)
    if column_type is ColumnType.DATE:
        stamps = series.to_numpy(dtype="datetime64[ns]")
        codes, distinct = pd.factorize(stamps.view("int64"))
        text = distinct.view("datetime64[ns]").astype("datetime64[D]").astype(str)
    else:
        naive = series.dt.tz_convert("UTC").dt.tz_localize(None) if len(series) else series
        stamps = naive.to_numpy(dtype="datetime64[ns]")
        codes, distinct = pd.factorize(stamps.view("int64"))
        text = np.asarray(distinct.view("datetime64[ns]").astype("datetime64[us]"), dtype=str)
        text = np.char.replace(text, "T", " ")
        if dialect == "postgresql":
            text = np.char.add(text, "+00:00")
    return codes, text


def sqlite_literal(value: Any) -> str | None:
    """`value` as an SQLite string literal, or None when it must be bound instead."""
    if not isinstance(value, str) or "\x00" in value:
        return None
    return "'" + value.replace("'", "''") + "'"


def quote_sqlite(name: str) -> str:
    """An SQLite identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


def insert_rows(
    driver: sqlite3.Connection,
    table: str,
    columns: Sequence[str],
    chunks: Iterable[DriverValues],
    quote: Callable[[str], str] = quote_sqlite,
) -> None:
    """Multi-row INSERTs of every chunk into `table` (quoted), the chunks' constants inline.

    Binding is what costs at a million rows: the lineage shared by every row of the load
    (landlord, source, datafix version, run, time) goes into the statement as SQL literals
    instead of being bound five times per row, and each statement carries up to
    `SQLITE_ROWS_PER_STATEMENT` rows (`VALUES (…), (…), …`), which halves SQLite's cost per
    row against one `executemany` step per row. The parameters come from numpy object grids
    reshaped to one flat list per statement, without a Python loop per row.
    """
    limit = driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    insert = f"INSERT INTO {table} ({', '.join(quote(c) for c in columns)}) VALUES "
    statements: dict[tuple[frozenset[str], frozenset[str]], tuple[list[str], int, str, str]] = {}

    def statements_for(chunk: DriverValues) -> tuple[list[str], int, str, str]:
        """The columns bound, rows per statement and the two INSERTs of a chunk: its constants
        (every chunk of one load shares them: the load's lineage) and the columns null in all
        its rows are written inline, not bound per row (a works file's unmapped columns: 2 of
        15 bound, ~0.04 s less per 100,000 rows)."""
        nulls = chunk.nulls & frozenset(columns)
        key = (frozenset(chunk.constants), nulls)
        if key not in statements:
            literals = {
                name: literal
                for name in columns
                if name in chunk.constants
                and (literal := sqlite_literal(chunk.constants[name])) is not None
            }
            literals |= {name: "NULL" for name in nulls if name not in literals}
            bound = [name for name in columns if name not in literals]
            one_row = "(" + ", ".join(literals.get(name, "?") for name in columns) + ")"
            per_statement = max(1, min(SQLITE_ROWS_PER_STATEMENT, limit // max(1, len(bound))))
            statements[key] = (
                bound,
                per_statement,
                insert + ", ".join([one_row] * per_statement),
                insert + one_row,
            )
        return statements[key]

    cursor = driver.cursor()
    try:
        for chunk in chunks:
            bound, per_statement, many_rows_sql, one_row_sql = statements_for(chunk)
            for grid in chunk.grids(bound):
                whole = len(grid) - len(grid) % per_statement
                if whole:
                    cursor.executemany(
                        many_rows_sql,
                        grid[:whole].reshape(-1, per_statement * len(bound)).tolist(),
                    )
                if whole < len(grid):
                    cursor.executemany(one_row_sql, grid[whole:].tolist())
    finally:
        cursor.close()


@dataclass(frozen=True)
class Staging:
    """A staged file the helper finished: where it is, its columns, its rows."""

    path: Path
    columns: tuple[str, ...]
    rows: int


class StagedRows:
    """The helper process staging one entity's canonical rows, chunk by chunk as the spool
    writes them (`add`), until `close`; `finished` waits for it and names the staged file."""

    def __init__(self, folder: Path, entity: str) -> None:
        self.path = folder / "staged.sqlite"
        os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        # its errors go to a file, not a pipe: a pipe nobody reads until the end would block a
        # chatty helper, and then the run writing the next chunk name to it
        self._errors = folder / "staged.log"
        errors = os.open(self._errors, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__, entity, str(self.path)],
            # the system allocator, trimmed after each chunk (`_stage`): what the helper holds
            # adds to the run's memory while it follows normalise and the contract
            env={"ARROW_DEFAULT_MEMORY_POOL": "system", **os.environ},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        os.close(errors)
        self._finalizer = weakref.finalize(self, _stop, self._process)
        self._broken = self._closed = False
        self._result: Staging | None = None
        self._done = False

    def add(self, chunk: Path) -> None:
        """Stage the rows of one chunk file (Arrow IPC, `spool.read_chunk`)."""
        stdin = self._process.stdin
        if self._broken or self._closed or stdin is None:
            return
        try:
            stdin.write(f"{chunk}\n")
            stdin.flush()
        except (BrokenPipeError, OSError):  # the helper died: `finished` reports it
            self._broken = True

    def close(self) -> None:
        """Every chunk was added: the helper commits its file and exits."""
        stdin = self._process.stdin
        if self._broken or self._closed or stdin is None:
            return
        self._closed = True
        try:
            stdin.write("end\n")
            stdin.flush()
        except (BrokenPipeError, OSError):
            self._broken = True

    def finished(self, rows: int) -> Staging | None:
        """The staged file, once the helper is done, if it staged `rows` rows; else None (the
        load then binds the rows itself)."""
        if self._done:
            return self._result if self._result is not None and self._result.rows == rows else None
        self.close()
        try:
            out, _ = self._process.communicate()
        except (BrokenPipeError, OSError):  # stdin: the helper is gone
            self._process.wait()
            out = ""
        self._done = True
        err = self._errors.read_text(errors="replace") if self._errors.exists() else ""
        if self._process.returncode != 0:
            log.warning(
                "staging helper failed (exit %s), the load binds the rows itself: %s",
                self._process.returncode,
                err.strip()[-2000:],
            )
            return None
        staged = json.loads(out)
        self._result = Staging(self.path, tuple(staged["columns"]), int(staged["rows"]))
        if self._result.rows != rows:
            log.warning(
                "staging helper staged %s rows, not %s: the load binds the rows itself",
                self._result.rows,
                rows,
            )
            return None
        return self._result

    def stop(self) -> None:
        """End the helper now (the spool is released)."""
        self._finalizer()


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def _stage(entity: str, path: Path, lines: Iterable[str]) -> dict[str, Any]:
    """The helper's work: each chunk file named by `lines` into `path`'s `STAGED_TABLE`, until
    a line `end`; raises when the lines end without it (the run went away)."""
    from pipelines.lib.spool import read_chunk, release_freed_memory

    driver = sqlite3.connect(path, isolation_level=None)
    # a scratch file read once by the load: no journal, no sync (a crash just loses it)
    for pragma in ("page_size=16384", "journal_mode=OFF", "synchronous=OFF"):
        driver.execute(f"PRAGMA {pragma}")
    driver.execute("BEGIN")
    columns: list[str] = []
    count = 0
    for line in lines:
        name = line.rstrip("\n")
        if name == "end":
            driver.execute("COMMIT")
            driver.close()
            return {"rows": count, "columns": columns}
        values = row_values(read_chunk(Path(name)), entity, "sqlite")
        if not columns:
            columns = list(values.columns)
            # no declared type: each value keeps what it was bound as, and the load's INSERT
            # … SELECT gives it the warehouse column's affinity as binding it there would
            driver.execute(
                f"CREATE TABLE {STAGED_TABLE} ({', '.join(quote_sqlite(c) for c in columns)})"
            )
        insert_rows(driver, STAGED_TABLE, columns, [values])
        count += values.count
        del values
        release_freed_memory()
    raise EOFError("the run stopped before its last chunk")


def main(argv: Sequence[str]) -> int:
    """`python -m pipelines.lib.staging ENTITY FILE`: chunk file names on stdin, then `end`;
    prints the staged rows and columns as JSON."""
    entity, path = argv
    sys.stdout.write(json.dumps(_stage(entity, Path(path), sys.stdin)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
