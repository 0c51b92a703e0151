"""Push records into a table of a landlord's ERP database: `SqlSink` (kind `sql`).

One class, two transports: a SQLAlchemy URL (`postgresql+psycopg://…`, `mysql+pyodbc://…`,
`sqlite:///…`) or an ODBC connection string (`Driver={PostgreSQL Unicode};Server=…`, through
`connectors.sql.odbc`). Both build the same SQLAlchemy Core statements; the ODBC transport
compiles them for its server's dialect with `?` markers and runs them through pyodbc.

- The table must exist. At first use it is reflected (SQLAlchemy's inspector, or the ODBC
  catalogue); the key column, the idempotency and id columns and every record field must be
  among its columns, else a `ConfigError` names the table, the missing columns and the columns
  that exist. Identifiers are emitted through `Table`/`Column` objects, quoted by the dialect;
  values only ever travel as bound parameters (RELIABILITY.md §3.2).
- One transaction per batch, an upsert by the key column: `INSERT … ON CONFLICT (key) DO
  UPDATE` (PostgreSQL, SQLite) or `INSERT … ON DUPLICATE KEY UPDATE` (MySQL/MariaDB) when a
  primary key or unique constraint is exactly the key column, else an update of the keys the
  table holds and an insert of the others, inside the same transaction (without a unique
  constraint two writers could still race: give the key column one).
- A row the database refuses (value too long, NOT NULL, check constraint, bad type) does not
  sink the batch: the batch is rolled back and bisected, each half in its own transaction,
  until the refused rows stand alone; they are `dead` with the database's message, the field
  it most likely refused (too long, a NUL byte, not of the column's type) and the fix, the
  others `sent`. Lost connection, deadlock, lock timeout, serialisation failure: `RetriableError`.
- `peer_id` is the key, or the value of `id_column` (e.g. a serial id) read back after writing.
- `read_back` selects the records' keys and returns those whose held values (the idempotency
  column when configured, else every field) equal the record's, types normalised (Decimal/int,
  date/datetime, bool/0-1, text from SQLite).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, suppress
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import mssql, mysql, postgresql, sqlite

from connectors.delivery import Delivered, FieldValue, OutgoingRecord, printable
from connectors.errors import ConfigError, ConnectorError, PermanentError, RetriableError
from connectors.sql.client import (
    TRANSIENT,
    database_error,
    driver_message,
    make_engine,
    reflect_table,
)
from connectors.sql.odbc import (
    MISSING_COLUMN_STATES,
    MISSING_TABLE_STATES,
    OdbcTarget,
    connect_error,
    dialect_of_server,
    is_transient,
    load_pyodbc,
    odbc_target,
    source_columns,
    state_and_message,
)

if TYPE_CHECKING:
    import pyodbc

__all__ = ["SqlSink"]

# keys per SELECT … WHERE key IN (…): far below every server's bound-parameter limit
_KEYS_PER_SELECT = 500
# SQLite says "busy"/"locked" where servers say deadlock or lock timeout
_SQLITE_TRANSIENT = re.compile(r"database is locked|database table is locked|busy", re.IGNORECASE)
# SQLSTATE classes of a refused row: data exception, integrity constraint, WITH CHECK OPTION
_ROW_CLASSES = frozenset({"22", "23", "44"})


class _RowRefused(Exception):
    """The database refused one of the rows: bisect to find which."""


@dataclass(frozen=True)
class _Catalogue:
    """What the reflected table offers: its columns (typed) and whether the key is unique."""

    table: sa.Table
    python_types: Mapping[str, type | None]
    key_is_unique: bool


def _python_type(column_type: sa.types.TypeEngine[Any]) -> type | None:
    try:
        return column_type.python_type
    except NotImplementedError:
        return None


_SA_TYPES: dict[type, sa.types.TypeEngine[Any]] = {
    bool: sa.Boolean(),
    int: sa.BigInteger(),
    Decimal: sa.Numeric(),
    float: sa.Float(),
    str: sa.String(),
    dt.datetime: sa.DateTime(),
    dt.date: sa.Date(),
    dt.time: sa.Time(),
}


# --------------------------------------------------------------------------------------------
# Transports: what differs between a SQLAlchemy engine and a pyodbc connection


class AlchemyLink:
    """The `sql` sink's transport for a SQLAlchemy URL: a connection kept open between batches."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._engine = make_engine(url)  # parses the URL and checks the driver; does not connect
        self._connection: sa.Connection | None = None
        self.where = self._engine.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> sa.Dialect:
        return self._engine.dialect

    def connect(self) -> None:
        try:
            self._connection = self._engine.connect()
        except sa.exc.DBAPIError as error:
            raise database_error(error, self._url, "connecting", connecting=True) from None

    def catalogue(self, table: str, schema: str | None, key: str) -> _Catalogue:
        assert self._connection is not None
        reflected = reflect_table(self._connection, table, schema, self._url)
        self._connection.rollback()
        unique = [list(reflected.primary_key.columns.keys())]
        unique += [
            [column.name for column in index.columns] for index in reflected.indexes if index.unique
        ]
        unique += [
            [column.name for column in constraint.columns]
            for constraint in reflected.constraints
            if isinstance(constraint, sa.UniqueConstraint)
        ]
        types = {column.name: _python_type(column.type) for column in reflected.columns}
        return _Catalogue(reflected, types, [key] in unique)

    def execute(self, statement: sa.Executable, rows: Sequence[Mapping[str, Any]]) -> None:
        assert self._connection is not None
        self._connection.execute(statement, list(rows))

    def fetch(self, statement: sa.Select[Any]) -> list[tuple[Any, ...]]:
        assert self._connection is not None
        return [tuple(row) for row in self._connection.execute(statement)]

    def commit(self) -> None:
        assert self._connection is not None
        self._connection.commit()

    def rollback(self) -> None:
        if self._connection is not None:
            with suppress(sa.exc.DBAPIError):
                self._connection.rollback()

    def reason(self, error: BaseException) -> tuple[BaseException, str, str] | None:
        """(driver error, SQLSTATE or '', one-line message) of a database error, else None."""
        if isinstance(error, sa.exc.DBAPIError):
            orig = error.orig or error
            state = getattr(orig, "sqlstate", None) or ""  # psycopg
            if not state and len(orig.args) >= 2 and isinstance(orig.args[0], str):
                state = orig.args[0]  # pyodbc (mysql+pyodbc, mssql+pyodbc)
            return orig, state, driver_message(error, self._url)
        if isinstance(error, sa.exc.StatementError):  # a value a type processor refused
            return error.orig or error, "22000", " ".join(str(error.orig or error).split())
        return None

    def close(self) -> None:
        if self._connection is not None:
            with suppress(sa.exc.DBAPIError):
                self._connection.close()
        self._engine.dispose()


class OdbcLink:
    """The `sql` sink's transport for an ODBC string: a pyodbc connection kept open.

    Autocommit is off: the sink commits or rolls back each batch itself.
    """

    def __init__(self, connection_string: str, timeout: int) -> None:
        self._connection_string = connection_string
        self._timeout = timeout
        self._connection: pyodbc.Connection | None = None
        self._target: OdbcTarget | None = None
        self.dialect: sa.Dialect = sa.engine.default.DefaultDialect()
        self._odbc_dialect: Any = None
        self.where = "ODBC connection"

    def connect(self) -> None:
        pyodbc = load_pyodbc()
        target = self._target = odbc_target(self._connection_string, None, _KEYS_PER_SELECT)
        self.where = target.masked
        try:
            connection = pyodbc.connect(
                target.connection_string, timeout=self._timeout, autocommit=False
            )
            odbc_dialect = target.dialect or dialect_of_server(connection)
            version = str(connection.getinfo(pyodbc.SQL_DBMS_VER))
        except pyodbc.Error as error:
            raise connect_error(error, target) from None
        self._connection, self._odbc_dialect = connection, odbc_dialect
        if odbc_dialect.name == "mysql":
            connection.setencoding(encoding="utf-8")  # see connectors.sql.odbc
            dialect: sa.Dialect = mysql.dialect(paramstyle="qmark")
            dialect.server_version_info = dialect._parse_server_version(version)  # type: ignore[attr-defined]
        elif odbc_dialect.name == "postgresql":
            dialect = postgresql.dialect(paramstyle="qmark")
        elif odbc_dialect.name == "mssql":
            dialect = mssql.dialect(paramstyle="qmark")
        else:
            dialect = sa.engine.default.DefaultDialect(paramstyle="qmark")
        self.dialect = dialect

    def catalogue(self, table: str, schema: str | None, key: str) -> _Catalogue:
        assert self._connection is not None and self._target is not None
        pyodbc = load_pyodbc()
        quote = self._odbc_dialect.quote  # refuses a name holding the quote character
        source = quote(table) if schema is None else f"{quote(schema)}.{quote(table)}"
        try:
            columns = source_columns(
                self._connection, self._odbc_dialect, self._target, source, table, schema
            )
            place = {"schema": schema}
            if self._odbc_dialect.name == "mysql":
                place = {"catalog": schema} if schema else {}
            with closing(self._connection.cursor()) as cursor:
                indexes = cursor.statistics(table, unique=True, **place).fetchall()
        except pyodbc.Error as error:
            raise self._failure(error, f"reading the definition of `{table}`") from None
        finally:
            self.rollback()
        unique: dict[str, list[str]] = {}
        for row in indexes:
            if row.index_name is not None and row.column_name is not None:
                unique.setdefault(str(row.index_name), []).append(str(row.column_name))
        python_types = {name: kind for name, kind in columns}
        shape = [
            sa.Column(name, _SA_TYPES.get(kind, sa.types.NullType())) for name, kind in columns
        ]
        reflected = sa.Table(table, sa.MetaData(), *shape, schema=schema)
        return _Catalogue(reflected, python_types, [key] in unique.values())

    def _failure(self, error: BaseException, doing: str) -> ConnectorError:
        assert self._target is not None
        state, message = state_and_message(error, self._target)
        if is_transient(state, message):
            return RetriableError(f"{self.where}: {doing} failed: {message}")
        return PermanentError(f"{self.where}: {doing} failed: {message}")

    def _compiled(self, statement: sa.ClauseElement) -> tuple[str, list[str], dict[str, Any]]:
        compiled = statement.compile(
            dialect=self.dialect, compile_kwargs={"render_postcompile": True}
        )
        return compiled.string, list(compiled.positiontup or []), dict(compiled.params)

    def execute(self, statement: sa.Executable, rows: Sequence[Mapping[str, Any]]) -> None:
        assert self._connection is not None
        text, names, _ = self._compiled(statement)  # type: ignore[arg-type]
        with closing(self._connection.cursor()) as cursor:
            cursor.executemany(text, [tuple(row[name] for name in names) for row in rows])

    def fetch(self, statement: sa.Select[Any]) -> list[tuple[Any, ...]]:
        assert self._connection is not None
        text, names, params = self._compiled(statement)
        with closing(self._connection.cursor()) as cursor:
            cursor.execute(text, *[params[name] for name in names])
            return [tuple(row) for row in cursor.fetchall()]

    def commit(self) -> None:
        assert self._connection is not None
        self._connection.commit()

    def rollback(self) -> None:
        if self._connection is not None:
            with suppress(load_pyodbc().Error):
                self._connection.rollback()

    def reason(self, error: BaseException) -> tuple[BaseException, str, str] | None:
        if isinstance(error, load_pyodbc().Error) and self._target is not None:
            state, message = state_and_message(error, self._target)
            return error, state, message
        return None

    def close(self) -> None:
        if self._connection is not None:
            with suppress(load_pyodbc().Error):
                self._connection.rollback()
                self._connection.close()
            self._connection = None


def _classify(orig: BaseException, state: str, message: str) -> str:
    """`transient`, `row` (this data refused), `missing` (table/column) or `other`."""
    name = type(orig).__name__
    sqlite = type(orig).__module__.startswith("sqlite3")
    if is_transient(state, message) or (sqlite and _SQLITE_TRANSIENT.search(message)):
        return "transient"
    if state in MISSING_TABLE_STATES | MISSING_COLUMN_STATES or (
        sqlite and re.search(r"no such (table|column)|has no column", message)
    ):
        return "missing"
    if state[:2] in _ROW_CLASSES or name in ("IntegrityError", "DataError"):
        return "row"
    if isinstance(orig, TypeError | ValueError | OverflowError):
        return "row"
    if not state and TRANSIENT.search(message):
        return "transient"
    return "other"


# --------------------------------------------------------------------------------------------
# Comparing what the table holds with what a record says


def _same(held: Any, wanted: FieldValue) -> bool:
    """Whether a value read back equals the record's, across the drivers' type choices."""
    if held is None or wanted is None:
        return held is None and wanted is None
    try:
        if isinstance(wanted, bool):
            if isinstance(held, str):
                return held.strip().lower() in (
                    ("1", "t", "true") if wanted else ("0", "f", "false")
                )
            return held in (0, 1) and bool(held) == wanted
        if isinstance(wanted, int):
            return not isinstance(held, bool) and Decimal(str(held)) == wanted
        if isinstance(wanted, dt.datetime):
            if isinstance(held, str):
                held = dt.datetime.fromisoformat(held)
            if not isinstance(held, dt.datetime):
                return False
            if (held.tzinfo is None) != (wanted.tzinfo is None):
                return held.replace(tzinfo=None) == wanted.replace(tzinfo=None)
            return held == wanted
        if isinstance(wanted, dt.date):
            if isinstance(held, str):
                held = dt.datetime.fromisoformat(held)
            if isinstance(held, dt.datetime):
                return held.time() == dt.time() and held.date() == wanted
            return isinstance(held, dt.date) and held == wanted
        if isinstance(held, str):
            return held == wanted or held.rstrip(" ") == wanted  # CHAR(n) pads with spaces
        if isinstance(held, int | Decimal | float):
            return Decimal(str(held)) == Decimal(wanted)
        if isinstance(held, dt.date):
            return held.isoformat() == wanted
        return str(held) == wanted
    except (ValueError, InvalidOperation, TypeError):
        return False


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --------------------------------------------------------------------------------------------
# The sink


class SqlSink:
    """Upsert records into one table of a landlord's database (see the module docstring)."""

    kind = "sql"

    def __init__(
        self,
        name: str,
        *,
        url: str | None = None,
        odbc: str | None = None,
        table: str,
        key_column: str,
        idempotency_column: str | None = None,
        id_column: str | None = None,
        batch_size: int = 500,
        timeout: int = 30,
    ) -> None:
        """`url` (SQLAlchemy) or `odbc` (connection string), exactly one; `table` may be
        `schema.table`. Nothing connects here."""
        if (url is None) == (odbc is None):
            raise ConfigError(f"sink `{name}`: give exactly one of `url` or `odbc`")
        if batch_size < 1:
            raise ConfigError(f"sink `{name}`: batch_size must be at least 1")
        self.name = name
        schema, _, bare = table.rpartition(".")
        self._schema, self._table = schema or None, bare
        self._key = key_column
        self._idempotency = idempotency_column
        self._id = id_column
        self._batch = batch_size
        self._link: AlchemyLink | OdbcLink = (
            AlchemyLink(url) if url is not None else OdbcLink(str(odbc), timeout)
        )
        self._catalogue: _Catalogue | None = None

    # -- the Sink protocol ------------------------------------------------------------------

    def batch_size(self, pending: int) -> int:
        return max(1, min(pending, self._batch))

    def send(self, records: Sequence[OutgoingRecord]) -> list[Delivered]:
        if not records:
            return []
        catalogue = self._open()
        self._check_fields(records, catalogue)
        outcomes: dict[int, Delivered] = {}
        self._write(list(range(len(records))), records, catalogue, outcomes)
        return [outcomes[position] for position in range(len(records))]

    def read_back(self, records: Sequence[OutgoingRecord]) -> dict[str, str]:
        if not records:
            return {}
        catalogue = self._open()
        self._check_fields(records, catalogue)
        table = catalogue.table
        compared = sorted(
            {self._idempotency} if self._idempotency else {n for r in records for n in r.fields}
        )
        compared = [name for name in compared if name != self._key]
        selected = [self._key, *([self._id] if self._id else []), *compared]
        held: dict[str, tuple[Any, ...]] = {}
        try:
            for part in _chunks(records, _KEYS_PER_SELECT):
                keys = [self._key_value(record.key, catalogue) for record in part]
                query = sa.select(*[table.c[name] for name in selected]).where(
                    table.c[self._key].in_(keys)
                )
                for row in self._link.fetch(query):
                    held[str(row[0]).rstrip(" ") if isinstance(row[0], str) else str(row[0])] = row
            self._link.rollback()
        except Exception as error:
            self._link.rollback()
            raise self._whole_call_error(error, "reading back records") from None
        found: dict[str, str] = {}
        offset = 2 if self._id else 1
        for record in records:
            row = held.get(record.key)
            if row is None:
                continue
            values = dict(zip(compared, row[offset:], strict=True))
            if self._idempotency:
                matches = _same(values[self._idempotency], record.idempotency_key)
            else:
                matches = all(
                    _same(values[name], value)
                    for name, value in record.fields.items()
                    if name != self._key
                )
            if matches:
                found[record.key] = str(row[1]) if self._id else record.key
        return found

    def close(self) -> None:
        self._link.close()

    def probe(self, fields: Sequence[str]) -> None:
        """Connect and check the table holds the key, idempotency and `fields` columns (what
        `datafix check` asks before any push); raises ConfigError naming what is missing."""
        self._require(list(fields), self._open())

    # -- first use ----------------------------------------------------------------------------

    def _open(self) -> _Catalogue:
        if self._catalogue is None:
            self._link.connect()
            catalogue = self._link.catalogue(self._table, self._schema, self._key)
            wanted = [self._key, self._idempotency, self._id]
            self._require([name for name in wanted if name], catalogue)
            self._catalogue = catalogue
        return self._catalogue

    def _label(self) -> str:
        return f"{self._schema}.{self._table}" if self._schema else self._table

    def _require(self, names: Sequence[str], catalogue: _Catalogue) -> None:
        existing = list(catalogue.table.columns.keys())
        missing = [name for name in dict.fromkeys(names) if name not in existing]
        if missing:
            raise ConfigError(
                f"sink `{self.name}` ({self._link.where}): table `{self._label()}` has no column"
                f" {', '.join(f'`{name}`' for name in missing)} (its columns:"
                f" {', '.join(existing)}) — fix the sink's mapping or add the column"
            )

    def _check_fields(self, records: Sequence[OutgoingRecord], catalogue: _Catalogue) -> None:
        self._require([name for record in records for name in record.fields], catalogue)

    def _key_value(self, key: str, catalogue: _Catalogue) -> Any:
        """The key as the key column's type (a text key bound to an integer column fails)."""
        kind = catalogue.python_types.get(self._key)
        if kind is int or kind is Decimal:
            try:
                return kind(key)
            except (ValueError, InvalidOperation):
                return key
        return key

    # -- writing ------------------------------------------------------------------------------

    def _row(self, record: OutgoingRecord, catalogue: _Catalogue) -> dict[str, Any]:
        row: dict[str, Any] = dict(record.fields)
        row[self._key] = self._key_value(record.key, catalogue)
        if self._idempotency:
            row[self._idempotency] = record.idempotency_key
        return row

    def _upserts(
        self, columns: tuple[str, ...], catalogue: _Catalogue, existing: bool
    ) -> tuple[sa.Executable, dict[str, str]]:
        """The statement writing rows with these columns, and bind name → column."""
        table = catalogue.table
        binds = {f"p{position}": name for position, name in enumerate(columns)}
        values = {
            name: sa.bindparam(bind, type_=table.c[name].type) for bind, name in binds.items()
        }
        others = [name for name in columns if name != self._key]
        backend = self._link.dialect.name
        if catalogue.key_is_unique and backend in ("postgresql", "sqlite"):
            module = postgresql if backend == "postgresql" else sqlite
            insert = module.insert(table).values(values)
            if others:
                statement: sa.Executable = insert.on_conflict_do_update(
                    index_elements=[table.c[self._key]],
                    set_={name: insert.excluded[name] for name in others},
                )
            else:
                statement = insert.on_conflict_do_nothing(index_elements=[table.c[self._key]])
            return statement, binds
        if catalogue.key_is_unique and backend in ("mysql", "mariadb"):
            insert = mysql.insert(table).values(values)
            kept = others or [self._key]
            return insert.on_duplicate_key_update({n: insert.inserted[n] for n in kept}), binds
        if not existing:
            return sa.insert(table).values(values), binds
        # the portable path: update the rows the table holds (the inserts go separately)
        update = sa.update(table).where(table.c[self._key] == values[self._key])
        kept = others or [self._key]
        return update.values({name: values[name] for name in kept}), binds

    def _write(
        self,
        positions: list[int],
        records: Sequence[OutgoingRecord],
        catalogue: _Catalogue,
        outcomes: dict[int, Delivered],
    ) -> None:
        try:
            outcomes.update(self._apply(positions, records, catalogue))
        except _RowRefused as refused:
            if len(positions) == 1:
                record = records[positions[0]]
                outcomes[positions[0]] = Delivered(
                    record.key, "dead", message=self._refusal(record, str(refused), catalogue)
                )
                return
            middle = len(positions) // 2
            self._write(positions[:middle], records, catalogue, outcomes)
            self._write(positions[middle:], records, catalogue, outcomes)

    def _apply(
        self, positions: list[int], records: Sequence[OutgoingRecord], catalogue: _Catalogue
    ) -> dict[int, Delivered]:
        """Write these records in one transaction; their outcomes once committed."""
        table = catalogue.table
        key_column = table.c[self._key]
        rows = {position: self._row(records[position], catalogue) for position in positions}
        keys = [rows[position][self._key] for position in positions]
        portable = not (
            catalogue.key_is_unique
            and self._link.dialect.name in ("postgresql", "sqlite", "mysql", "mariadb")
        )
        try:
            held = {
                row[0]
                for part in _chunks(keys, _KEYS_PER_SELECT)
                for row in self._link.fetch(sa.select(key_column).where(key_column.in_(part)))
            }
            groups: dict[tuple[tuple[str, ...], bool], list[int]] = {}
            for position in positions:
                exists = portable and rows[position][self._key] in held
                groups.setdefault((tuple(rows[position]), exists), []).append(position)
            for (columns, exists), members in groups.items():
                statement, binds = self._upserts(columns, catalogue, exists)
                self._link.execute(
                    statement,
                    [{bind: rows[p][name] for bind, name in binds.items()} for p in members],
                )
            peer_ids: dict[Any, str] = {}
            if self._id:
                query = sa.select(key_column, table.c[self._id])
                for part in _chunks(keys, _KEYS_PER_SELECT):
                    for key, peer_id in self._link.fetch(query.where(key_column.in_(part))):
                        peer_ids[key] = str(peer_id)
            self._link.commit()
        except Exception as error:
            self._link.rollback()
            reason = self._link.reason(error)
            if reason is not None and _classify(*reason) == "row":
                raise _RowRefused(reason[2]) from None
            raise self._whole_call_error(error, f"writing to `{self._label()}`") from None
        return {
            position: Delivered(
                records[position].key,
                "sent",
                peer_id=peer_ids.get(rows[position][self._key], records[position].key)
                if self._id
                else records[position].key,
                created=rows[position][self._key] not in held,
            )
            for position in positions
        }

    def _refusal(self, record: OutgoingRecord, said: str, catalogue: _Catalogue) -> str:
        """The dead letter's reason: the record, the field the database most likely refused
        (a text longer than its column, a NUL byte, a value not of the column's type), the
        database's own words and the fix."""
        columns = catalogue.table.c
        for name, value in self._row(record, catalogue).items():
            column_type = columns[name].type
            length = getattr(column_type, "length", None)
            wanted = catalogue.python_types.get(name)
            if isinstance(value, str) and length and len(value) > length:
                problem = f"holds {len(value)} characters, its column takes {length} at most"
                fix = "shorten the value at the source or widen the column"
            elif isinstance(value, str) and "\x00" in value:
                problem = "holds a NUL character, which the database refuses in text"
                fix = "remove it from the source row"
            elif (
                value is not None
                and wanted in (int, Decimal, dt.date, dt.datetime)
                and not isinstance(value, wanted)
                and not (wanted is Decimal and isinstance(value, int))
            ):
                problem = f"holds {type(value).__name__}, its column is {column_type}"
                fix = "map a value of the column's type"
            else:
                continue
            return (
                f"record {printable(record.key)}: field `{name}` {problem} ({said}) — {fix};"
                " the next run sends the changed record"
            )
        return (
            f"record {printable(record.key)}: the table `{self._label()}` refused it ({said}) —"
            " fix the record's values at the source or the table's constraint"
        )

    def _whole_call_error(self, error: Exception, doing: str) -> Exception:
        if isinstance(error, ConnectorError):
            return error
        reason = self._link.reason(error)
        if reason is None:
            return error
        kind = _classify(*reason)
        message = f"sink `{self.name}` ({self._link.where}): {doing} failed: {reason[2]}"
        if kind == "transient":
            return RetriableError(f"{message} — the database is busy or unreachable; retried")
        if kind == "missing":
            self._catalogue = None  # reflect again next time: the table may have been fixed
            return ConfigError(f"{message} — the table changed: fix the table or the mapping")
        return PermanentError(f"{message} — grant the account INSERT/UPDATE or fix the table")
