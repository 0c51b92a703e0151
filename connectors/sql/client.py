"""Read a landlord's SQL table or query into a text `RawTable`, read-only, streamed in chunks.

The connection is made read-only before anything is read (SQLite `PRAGMA query_only`,
PostgreSQL and MySQL/MariaDB `SET TRANSACTION READ ONLY`); other databases rely on the account's
rights. A table is reflected and selected through SQLAlchemy, so identifiers are quoted by the
dialect; a query is run as written (the datafix model only lets a single SELECT/WITH through).
Values become text with the same rules as spreadsheet cells (`connectors.rawtable`), and
passwords never appear in a message.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import re
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from operator import itemgetter
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url

from connectors.errors import ConfigError, ConnectorError, RetriableError
from connectors.files.client import gc_paused
from connectors.lazy import np, pd
from connectors.rawtable import (
    ChunkStream,
    RawTable,
    StreamEnd,
    Watermark,
    column_text,
    header_key,
    key_lineage,
    line_lineage,
    unique_labels,
)
from connectors.secrets import scrub
from connectors.watermark import checked_kind, type_kind, typed_value, value_kind

__all__ = [
    "TRANSIENT",
    "TextChunks",
    "check_target",
    "database_error",
    "driver_message",
    "make_engine",
    "match_columns",
    "read_sql",
    "read_sql_header",
    "reflect_table",
    "text_stream",
]

# pip package to install for a missing database driver module
DRIVER_PACKAGES = {
    "psycopg": "psycopg[binary]",
    "psycopg2": "psycopg2-binary",
    "asyncpg": "asyncpg",
    "pg8000": "pg8000",
    "pymysql": "PyMySQL",
    "MySQLdb": "mysqlclient",
    "mysql": "mysql-connector-python",
    "mariadb": "mariadb",
    "pyodbc": "pyodbc",
    "pymssql": "pymssql",
    "oracledb": "oracledb",
    "cx_Oracle": "oracledb",
}

# words in a driver's message that mean "try again later" rather than "fix the URL"
TRANSIENT = re.compile(
    r"connection refused|timed out|timeout|server closed the connection|connection reset"
    r"|could not receive data|lost connection|gone away|too many connections|no route to host"
    r"|the database system is (starting up|shutting down|in recovery mode)|terminating connection"
    r"|deadlock|could not serialize",
    re.IGNORECASE,
)


def _masked(url: str) -> str:
    """The URL with its password (user info or query) replaced by `***`."""
    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except Exception:
        shown = url
    return scrub(shown)


def _scrub(message: str, url: str) -> str:
    """A driver message with any trace of the URL's password removed."""
    try:
        password = make_url(url).password
    except Exception:
        password = None
    return scrub(message.replace(url, _masked(url)), [str(password)] if password else [])


def driver_message(error: BaseException, url: str) -> str:
    """The driver's own message for `error` on one line, cut short, the URL's secrets scrubbed."""
    orig = getattr(error, "orig", None) or error
    text = " ".join(str(orig).split())  # one line: drivers add newlines and hints
    return _scrub(text[:500], url)


def database_error(
    error: sa.exc.DBAPIError, url: str, doing: str, *, connecting: bool = False
) -> ConnectorError:
    """Classify a database error by what the caller should do next."""
    message = driver_message(error, url)
    where = _masked(url)
    if isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError) and TRANSIENT.search(
        message
    ):
        return RetriableError(
            f"{where}: {doing} failed: {message} — the database may be down or busy; the run"
            " will be retried"
        )
    if connecting:
        return ConfigError(
            f"{where}: {doing} failed: {message} — check the host, database name, user and the"
            " password variable in the datafix `url`"
        )
    return ConfigError(f"{where}: {doing} failed: {message} — fix the datafix `table` or `query`")


def make_engine(url: str) -> Engine:
    """The SQLAlchemy engine for a database URL (for readers and the `sql` sink).

    Parses the URL and checks its driver module is installed (a `ConfigError` names the
    package to install); does not connect.
    """
    try:
        parsed = make_url(url)
    except Exception:
        raise ConfigError(  # not echoed: an unparsable URL may hold a password anywhere
            "the datafix `url` is not a database URL — write it like"
            " postgresql+psycopg://user:${DB_PASSWORD}@host:5432/database"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        uri = str(parsed.query.get("uri", "")).lower() in ("true", "1")
        if database and database != ":memory:" and not uri and not Path(database).is_file():
            raise ConfigError(
                f"{_masked(url)}: no SQLite database file at {Path(database).resolve()} — fix"
                " the path in `url`"
            )
    try:
        return sa.create_engine(parsed)
    except ModuleNotFoundError as error:
        module = (error.name or "").split(".")[0]
        package = DRIVER_PACKAGES.get(module, module)
        raise ConfigError(
            f"{_masked(url)}: the database driver `{module}` is not installed — install it with"
            f" `pip install {package}` (or pick another driver in the URL)"
        ) from None
    except sa.exc.NoSuchModuleError:
        raise ConfigError(
            f"{_masked(url)}: unknown database kind `{parsed.drivername}` — use e.g."
            " postgresql+psycopg://, mysql+pymysql:// or sqlite:///path/to/file.db"
        ) from None
    except sa.exc.ArgumentError as error:
        raise ConfigError(f"{_masked(url)}: invalid database URL ({error})") from None


@contextmanager
def _read_only_connection(url: str) -> Iterator[Connection]:
    """A connection on which writes are refused, closed and disposed of afterwards."""
    engine = make_engine(url)
    try:
        try:
            connection = engine.connect()
        except sa.exc.DBAPIError as error:
            raise database_error(error, url, "connecting", connecting=True) from None
        with connection:
            backend = connection.dialect.name
            try:
                if backend == "sqlite":
                    connection.exec_driver_sql("PRAGMA query_only = ON")
                elif backend in ("postgresql", "mysql", "mariadb"):
                    # first statement of the transaction (SQLAlchemy begins it implicitly)
                    connection.exec_driver_sql("SET TRANSACTION READ ONLY")
            except sa.exc.DBAPIError as error:
                raise database_error(
                    error, url, "opening a read-only transaction", connecting=True
                ) from None
            try:
                yield connection
            finally:
                if connection.in_transaction():
                    connection.rollback()
    finally:
        engine.dispose()


def check_target(table: str | None, query: str | None) -> None:
    if (table is None) == (query is None):
        raise ConfigError("give exactly one of `table` or `query` for a SQL source")


def reflect_table(connection: Connection, table: str, schema: str | None, url: str) -> sa.Table:
    """The table `table` (in `schema`) as the database describes it, for the `sql` sink.

    A missing table is a `ConfigError` naming the tables that exist.
    """
    try:
        return sa.Table(table, sa.MetaData(), schema=schema, autoload_with=connection)
    except sa.exc.NoSuchTableError:
        inspector = sa.inspect(connection)
        try:
            names = inspector.get_table_names(schema=schema) + inspector.get_view_names(
                schema=schema
            )
        except sa.exc.DBAPIError:
            names = []
        close = difflib.get_close_matches(table, names, n=1, cutoff=0.6)
        place = f"schema `{schema}`" if schema else "the database"
        hint = f"did you mean `{close[0]}`?" if close else "fix `table` (or `schema`)"
        listing = ", ".join(sorted(names)[:30]) + (", …" if len(names) > 30 else "")
        raise ConfigError(
            f"{_masked(url)}: no table or view `{table}` in {place} (there: {listing or 'none'})"
            f" — {hint}"
        ) from None
    except sa.exc.DBAPIError as error:
        raise database_error(error, url, f"reading the definition of `{table}`") from None


def match_columns(wanted: Sequence[str], available: Sequence[str], where: str) -> list[str]:
    """The available column each wanted name designates (exact, else same `header_key`)."""
    matched = []
    for name in wanted:
        if name in available:
            matched.append(name)
            continue
        same = [column for column in available if header_key(column) == header_key(name)]
        if len(same) != 1:
            close = difflib.get_close_matches(name, list(available), n=1, cutoff=0.6)
            hint = f"did you mean `{close[0]}`?" if close else "fix `key`"
            raise ConfigError(
                f"{where}: key column `{name}` is not among the columns"
                f" ({', '.join(available)}) — {hint}"
            )
        matched.append(same[0])
    return matched


def text_stream(reading: Generator[RawTable, None, tuple[TextChunks, str]]) -> ChunkStream:
    """The chunks of a reader made by `TextChunks` (not retained) as a peer's stream
    (`RawTable.peer_stream`): one empty chunk with the header when there is no row, then what
    the stream knows at its end (`TextChunks.end`)."""
    text, _origin = yield from reading
    if not text.count:
        yield text.add([])
    return text.end()


class TextChunks:
    """Rows of a result arriving chunk by chunk, made text at once (only the text is kept), with
    their lineage and a running fingerprint.

    The one rule set `read_sql` and `connectors.sql.odbc.read_odbc` share, so both give the
    same `RawTable` for the same rows: values as `column_text` writes them, lineage `label:id=42`
    (`key` columns) or `label:row 7`, a fingerprint over the column labels, every text value in
    order and the row count.
    """

    def __init__(
        self,
        names: Sequence[str],
        label: str,
        key: Sequence[str],
        where: str,
        *,
        retain: bool = True,
        watermark: Sequence[str] = (),
    ) -> None:
        """`names`: the result's column names, in order; `key`: the datafix key columns, matched
        to them (a ConfigError, naming `where`, for one that is not there). With `retain`
        false the chunks are handed back by `add` and not kept (streaming). `watermark`: the
        cursor and key columns of an incremental read, whose last values' kinds are kept
        (`watermark_kinds`)."""
        self.retain = retain
        names = list(names)
        self.watermark = [names.index(name) for name in match_columns(watermark, names, where)]
        self.kinds: list[str | None] = [None] * len(self.watermark)
        self.labels = unique_labels(names)
        self.label = label
        self.key = key
        self.key_labels = [
            self.labels[names.index(name)] for name in match_columns(key, names, where)
        ]
        self.hasher = hashlib.sha256()
        self.hasher.update("\0".join(self.labels).encode())
        self.frames: list[pd.DataFrame] = []
        self.rows: list[pd.Series] = []
        self.count = 0

    def add(self, part: Sequence[Sequence[object]]) -> RawTable:
        """One chunk of rows, as the driver fetched them (one value per column, in order);
        returns it as a table (its fingerprint covers this chunk only)."""
        with gc_paused():
            chunk = pd.DataFrame(
                {
                    column: column_text(list(map(itemgetter(index), part)))
                    for index, column in enumerate(self.labels)
                }
            )
        for position, index in enumerate(self.watermark):
            last = next((row[index] for row in reversed(part) if row[index] is not None), None)
            if last is not None:
                self.kinds[position] = value_kind(last)
        hashes = pd.util.hash_pandas_object(chunk, index=False).to_numpy().tobytes()
        self.hasher.update(hashes)
        if self.key:
            lineage = key_lineage(chunk, self.label, self.key, columns=self.key_labels)
        else:
            numbers = np.arange(self.count + 1, self.count + len(chunk) + 1)
            lineage = line_lineage(f"{self.label}:row ", numbers)
        if self.retain:
            self.rows.append(lineage)
            self.frames.append(chunk)
        self.count += len(chunk)
        return RawTable(
            frame=chunk,
            source_rows=lineage.rename(None),
            fingerprint=hashlib.sha256(hashes).hexdigest(),
            origin=self.label,
            watermark_kinds=tuple(self.kinds),
        )

    def end(self) -> StreamEnd:
        """What the stream of every chunk added knows at its end (`RawTable.chunks`)."""
        hasher = self.hasher.copy()
        hasher.update(str(self.count).encode())
        return StreamEnd(fingerprint=hasher.hexdigest(), watermark_kinds=tuple(self.kinds))

    def table(self, origin: str) -> RawTable:
        """Every chunk added, as one table named `origin`."""
        self.hasher.update(str(self.count).encode())
        if self.frames:
            # Arrow-backed text columns: concatenating chains the chunks, it copies nothing
            many = len(self.frames) > 1
            frame = pd.concat(self.frames, ignore_index=True) if many else self.frames[0]
            lineage = pd.concat(self.rows, ignore_index=True) if many else self.rows[0]
        else:
            frame = pd.DataFrame({column: pd.Series([], dtype="str") for column in self.labels})
            lineage = pd.Series([], dtype="str")
        return RawTable(
            frame=frame,
            source_rows=lineage.rename(None),
            fingerprint=self.hasher.hexdigest(),
            origin=origin,
            watermark_kinds=tuple(self.kinds),
        )


# PostgreSQL's built-in type OIDs (psycopg describes a result's columns by them)
_POSTGRES_KINDS = {
    1184: "timestamptz",
    1114: "timestamp",
    1082: "date",
    20: "integer",
    21: "integer",
    23: "integer",
    1700: "decimal",
    700: "decimal",
    701: "decimal",
    25: "text",
    1043: "text",
    1042: "text",
    19: "text",
}
# the SQLAlchemy type a watermark value of each kind is bound as
_BIND_TYPES: dict[str, sa.types.TypeEngine] = {
    "timestamptz": sa.DateTime(timezone=True),
    "timestamp": sa.DateTime(),
    "date": sa.Date(),
    "integer": sa.BigInteger(),
    "decimal": sa.Numeric(),
}


def _column_kinds(
    connection: Connection, source: sa.FromClause, names: Sequence[str], url: str, label: str
) -> list[str | None]:
    """The kind of the values each column holds now, from the description of an empty result
    (None where the driver does not say: SQLite, whose columns hold any type)."""
    probe = sa.select(*(sa.column(name) for name in names)).select_from(source)
    try:
        with connection.execute(probe.where(sa.false())) as result:
            description = result.cursor.description or ()
    except sa.exc.DBAPIError as error:
        raise database_error(error, url, f"reading {label}") from None
    kinds: list[str | None] = []
    for column in description:
        code = column[1]
        if isinstance(code, type):  # pyodbc: the Python type of the values
            kinds.append(type_kind(code))
        elif connection.dialect.name == "postgresql" and isinstance(code, int):
            kinds.append(_POSTGRES_KINDS.get(code))
        else:
            kinds.append(None)
    return kinds + [None] * (len(names) - len(kinds))


def _bound(name: str, column: str, text: str, kind: str | None, backend: str) -> Any:
    """One watermark value as a parameter bound as `kind`."""
    if kind is None:
        # no kind known: untyped, so the server reads the text as the column's type
        return sa.bindparam(name, text, type_=sa.types.NullType())
    value = typed_value(column, text, kind)
    if kind == "text" or (backend == "sqlite" and kind in ("timestamptz", "timestamp", "date")):
        # SQLite keeps date-times as the text the driver returned: compared as that text
        return sa.bindparam(name, text, type_=sa.String())
    if backend in ("mysql", "mariadb") and isinstance(value, dt.datetime):
        # MariaDB Connector/ODBC drops the fraction of a timestamp parameter; MariaDB reads ISO
        # text as a date-time exactly (and the same whatever the locale)
        return sa.bindparam(name, value.isoformat(" "), type_=sa.String())
    return sa.bindparam(name, value, type_=_BIND_TYPES[kind])


def _after(
    statement: sa.Select,
    after: Watermark,
    names: Sequence[str] | None,
    where: str,
    kinds: Callable[[Sequence[str]], list[str | None]],
    backend: str,
) -> sa.Select:
    """Rows past the watermark in (cursor, key) order; names are checked when known.

    Each watermark value is bound as its kind (stored with the watermark, checked against the
    kind the column holds now, given by `kinds(columns)`), never as text against a timestamp or
    a number."""
    wanted = [after.column, *after.key]
    if names is not None:
        wanted = match_columns(wanted, names, where)
    cursor, *keys = (sa.column(name) for name in wanted)
    if after.value is None:
        return statement.order_by(cursor, *keys)
    texts = [after.value, *after.key_values][: len(wanted)]
    found = kinds(wanted[: len(texts)])
    stored = [*after.kinds, *[None] * len(texts)]
    value, *key_values = (
        _bound(
            "cursor_value" if index == 0 else f"key_value_{index - 1}",
            column,
            text,
            checked_kind(column, text, stored[index], found[index]),
            backend,
        )
        for index, (column, text) in enumerate(zip(wanted, texts, strict=False))
    )
    if key_values and keys:
        condition = sa.or_(
            cursor > value,
            sa.and_(cursor == value, sa.tuple_(*keys) > sa.tuple_(*key_values)),
        )
    else:
        condition = cursor >= value
    return statement.where(condition).order_by(cursor, *keys)


def read_sql(
    url: str,
    *,
    table: str | None = None,
    schema: str | None = None,
    query: str | None = None,
    key: Sequence[str] = (),
    chunk_rows: int = 50_000,
    after: Watermark | None = None,
    stream: bool = False,
) -> RawTable:
    """Read a table (every column) or a query's result as text, `chunk_rows` rows at a time.

    With `after`, only the rows past that watermark, in cursor order (see `Watermark`): the
    condition is built from quoted identifiers and bound values, never from config text.

    Lineage: `table:id=42` (`key` columns) or `table:row 7`; `query` stands for the table name
    of a query. The fingerprint hashes the column names and every text value in order, so any
    change of a value changes it. A table is read in key (or primary key) order so the row
    numbers and the fingerprint do not depend on the storage order.

    `stream`: return a table streamed from the database (`RawTable.peer_stream`): nothing is
    read until its chunks are, `stream(size)` rows fetched at a time, one chunk held at once;
    its fingerprint and watermark kinds come at the end (`StreamEnd`), equal to a whole read's.
    """
    check_target(table, query)
    if chunk_rows < 1:
        raise ConfigError("chunk_rows must be at least 1")
    label = table or "query"
    origin = f"{_masked(url)} {f'{schema}.' if schema else ''}{label}"
    options = {"table": table, "schema": schema, "query": query, "key": key, "after": after}
    if stream:

        def chunks(size: int) -> ChunkStream:
            reading = _sql_chunks(url, chunk_rows=max(1, size), retain=False, **options)
            return (yield from text_stream(reading))

        return RawTable.streamed_from_peer(origin, chunks)
    reading = _sql_chunks(url, chunk_rows=chunk_rows, retain=True, **options)
    while True:
        try:
            next(reading)
        except StopIteration as finished:
            return finished.value[0].table(origin)  # type: ignore[no-any-return]


def _sql_chunks(
    url: str,
    *,
    table: str | None,
    schema: str | None,
    query: str | None,
    key: Sequence[str],
    chunk_rows: int,
    after: Watermark | None,
    retain: bool,
) -> Generator[RawTable, None, tuple[TextChunks, str]]:
    """The chunks `read_sql` reads, as fetched; returns the `TextChunks` that made them
    (`retain`: they keep every chunk) and the label."""
    label = table or "query"
    where = f"{_masked(url)} {label}"
    with _read_only_connection(url) as connection:
        if table is not None:
            reflected = reflect_table(connection, table, schema, url)
            names = [column.name for column in reflected.columns]
            key_columns = match_columns(key, names, where)
            order = key_columns or [column.name for column in reflected.primary_key.columns]
            # the driver's own values: no SQLAlchemy result processing (MySQL DOUBLE would
            # come back as a Decimal rounded to 10 places, SQLite text dates re-parsed)
            raw_columns = [
                sa.type_coerce(column, sa.types.NullType()).label(column.name)
                for column in reflected.columns
            ]
            statement: sa.Executable = sa.select(*raw_columns).select_from(reflected)
            if after is not None:
                kinds = partial(_column_kinds, connection, reflected, url=url, label=label)
                backend = connection.dialect.name
                statement = _after(statement, after, names, where, kinds, backend)
            else:
                statement = statement.order_by(*(reflected.c[name] for name in order))
        elif after is not None:
            source = sa.text(query).columns().subquery("src")  # type: ignore[arg-type]
            kinds = partial(_column_kinds, connection, source, url=url, label=label)
            everything = sa.select(sa.text("*")).select_from(source)
            statement = _after(everything, after, None, where, kinds, connection.dialect.name)
        else:
            statement = sa.text(query)  # type: ignore[arg-type]
        streaming = connection.execution_options(stream_results=True, yield_per=chunk_rows)
        try:
            result = streaming.execute(statement)
        except sa.exc.DBAPIError as error:
            raise database_error(error, url, f"reading {label}") from None
        with result:
            marks = () if after is None else (after.column, *after.key)
            names = list(map(str, result.keys()))
            chunks = TextChunks(names, label, key, where, retain=retain, watermark=marks)

            def added() -> Iterator[RawTable]:
                try:
                    for part in result.partitions():
                        yield chunks.add(part)
                except sa.exc.DBAPIError as error:
                    raise database_error(
                        error, url, f"reading {label} (after {chunks.count:,} rows)"
                    ) from None

            yield from added()
    return chunks, label


def read_sql_header(
    url: str,
    *,
    table: str | None = None,
    schema: str | None = None,
    query: str | None = None,
) -> list[str]:
    """The column names a `read_sql` call would give, without reading the rows."""
    check_target(table, query)
    with _read_only_connection(url) as connection:
        if table is not None:
            reflected = reflect_table(connection, table, schema, url)
            return unique_labels([column.name for column in reflected.columns])
        try:
            result = connection.execution_options(stream_results=True).execute(sa.text(query))  # type: ignore[arg-type]
        except sa.exc.DBAPIError as error:
            raise database_error(error, url, "running the query") from None
        with result:
            return unique_labels(list(map(str, result.keys())))
