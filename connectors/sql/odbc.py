"""Read a landlord's database over ODBC (Sage 100 on SQL Server, PostgreSQL, MariaDB) into text.

`read_odbc` returns the same `RawTable` as `connectors.sql.client.read_sql` does for the same
rows: the same text for every value, the same lineage (`table:id=42` or `table:row 7`), the same
fingerprint. It shares that reader's rules and helpers; what is ODBC's own is here:

- the connection string (`Driver={PostgreSQL Unicode};Server=…;PWD=…`): the driver or DSN it
  names must be installed, else a one-line `ConfigError` says which package to install; a
  password (`PWD=`, `Password=`) never appears in a message;
- the driver's own defaults that would lose data or memory are overridden unless the connection
  string sets them: psqlODBC sends booleans as `'1'`/`'0'` text (`BoolsAsChar=0`) and caches a
  whole result set in memory (`UseDeclareFetch=1` streams it through a server-side cursor);
  MariaDB's driver is asked to stream too (`NO_CACHE=1`, honoured from Connector/ODBC 3.1.17
  on: Debian 12's 3.1.15 still buffers the result) and gets its parameters as UTF-8 (its UTF-16
  parameters of 255 characters or more arrive garbled);
- the session is read-only (`readonly=True`, and `SET TRANSACTION READ ONLY` on PostgreSQL and
  MySQL/MariaDB, as the SQLAlchemy reader does; SQL Server relies on the account's rights);
- identifiers from the datafix (schema, table, `since` column) are quoted for the dialect, and
  one holding the quote character is refused; values (the `since` bound) are always bound
  parameters, converted to the column's type so that no server parses a date with its locale.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import uuid
from collections.abc import Generator, Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache
from operator import itemgetter
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from connectors.errors import ConfigError, ConnectorError, PermanentError, RetriableError
from connectors.rawtable import ChunkStream, RawTable, header_key, unique_labels
from connectors.secrets import scrub
from connectors.sql.client import (
    TRANSIENT,
    TextChunks,
    check_target,
    match_columns,
    text_stream,
)
from connectors.watermark import WatermarkError, checked_kind, type_kind

if TYPE_CHECKING:
    import pyodbc

__all__ = [
    "MISSING_COLUMN_STATES",
    "MISSING_TABLE_STATES",
    "OdbcRead",
    "OdbcTarget",
    "connect_error",
    "dialect_of_server",
    "is_transient",
    "load_pyodbc",
    "odbc_drivers",
    "odbc_target",
    "read_odbc",
    "read_odbc_header",
    "resolve_connection_string",
    "source_columns",
    "state_and_message",
    "stream_odbc",
    "uuid_text",
]

# connection-string keys whose value is a secret (compared lower-case)
SECRET_KEYS = frozenset({"pwd", "password"})
# the usual spelling of the keys `resolve_connection_string` takes as keyword arguments
KNOWN_KEYS = {
    "dsn": "DSN",
    "driver": "Driver",
    "server": "Server",
    "port": "Port",
    "database": "Database",
    "uid": "UID",
    "pwd": "PWD",
}
# rows psqlODBC fetches per round trip from its server-side cursor (at most)
POSTGRES_FETCH_ROWS = 10_000

_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_ -]*")
_NEEDS_BRACES = re.compile(r"[;{}=]|^\s|\s$")

# SQLSTATEs: connection lost / timeouts / serialisation (retry); missing table or column (config)
_RETRIABLE_STATES = frozenset({"40001", "40P01", "57P01", "57P02", "57P03", "HYT00", "HYT01"})
MISSING_TABLE_STATES = frozenset({"42P01", "42S02"})
MISSING_COLUMN_STATES = frozenset({"42703", "42S22"})
# SQLSTATE classes that say what is wrong with the statement or the data, never the connection
# (a column named `timeout` must not make a missing-column error look transient)
_STATEMENT_CLASSES = frozenset({"22", "23", "25", "28", "2D", "3D", "3F", "42", "44"})


# --------------------------------------------------------------------------------------------
# pyodbc, loaded on first use: importing it needs unixODBC's libodbc


@cache
def load_pyodbc() -> ModuleType:
    """The `pyodbc` module, imported on first use (a `ConfigError` says how to install it)."""
    try:
        import pyodbc
    except ImportError as error:
        problem = " ".join(str(error).split())
    else:
        return pyodbc
    raise ConfigError(
        f"pyodbc cannot load unixODBC ({problem}) — apt-get install unixodbc (make system-deps)"
    )


def odbc_drivers() -> list[str]:
    """The ODBC drivers registered with unixODBC (`odbcinst -q -d`), by their `Driver=` name."""
    return list(load_pyodbc().drivers())


# --------------------------------------------------------------------------------------------
# Connection strings


def _parse(text: str) -> list[tuple[str, str]]:
    """`key=value;…` pairs; a value in braces may hold `;` and `}}` stands for `}`.

    Messages never quote the text: it may hold a password anywhere."""
    malformed = (
        "the ODBC connection string is malformed ({}) — write it as"
        " Driver={{…}};Server=…;Database=…;UID=…;PWD=${{VARIABLE}}"
    )
    pairs: list[tuple[str, str]] = []
    position, end = 0, len(text)
    while position < end:
        while position < end and text[position] in "; \t\r\n":
            position += 1
        if position >= end:
            break
        equals = text.find("=", position)
        if equals < 0:
            raise ConfigError(malformed.format(f"a part without `=` at character {position + 1}"))
        key = text[position:equals].strip()
        if not _KEY.fullmatch(key):
            raise ConfigError(malformed.format(f"a key that is not a name at character {position}"))
        position = equals + 1
        while position < end and text[position] in " \t":
            position += 1
        if position < end and text[position] == "{":
            value, position = _braced(text, position + 1)
            if position is None:
                raise ConfigError(malformed.format(f"the value of `{key}` opens `{{` never closed"))
            rest = text.find(";", position)
            rest = end if rest < 0 else rest
            if text[position:rest].strip():
                raise ConfigError(malformed.format(f"text after the `}}` of `{key}`"))
            position = rest
        else:
            semicolon = text.find(";", position)
            stop = end if semicolon < 0 else semicolon
            value, position = text[position:stop].strip(), stop
        pairs.append((key, value))
    return pairs


def _braced(text: str, position: int) -> tuple[str, int | None]:
    """The value after an opening `{` and the position after its closing `}` (None: unclosed)."""
    characters: list[str] = []
    while position < len(text):
        character = text[position]
        if character == "}":
            if text[position + 1 : position + 2] == "}":
                characters.append("}")
                position += 2
                continue
            return "".join(characters), position + 1
        characters.append(character)
        position += 1
    return "".join(characters), None


def _parse_connection(connection: str) -> list[tuple[str, str]]:
    if "://" in connection.split(";", 1)[0]:
        raise ConfigError(
            "this is a database URL, not an ODBC connection string — read it with the `sql`"
            " source, or write Driver={…};Server=…;Database=… for ODBC"
        )
    return _parse(connection)


def _format(pairs: Sequence[tuple[str, str]], *, masked: bool = False) -> str:
    parts = []
    for key, value in pairs:
        if masked and key.lower() in SECRET_KEYS:
            value = "***"
        if key.lower() == "driver" or _NEEDS_BRACES.search(value):
            value = "{" + value.replace("}", "}}") + "}"
        parts.append(f"{key}={value}")
    return ";".join(parts)


def _get(pairs: Sequence[tuple[str, str]], key: str) -> str | None:
    return next((value for name, value in pairs if name.lower() == key.lower()), None)


def _set(pairs: list[tuple[str, str]], key: str, value: str) -> None:
    for index, (name, _) in enumerate(pairs):
        if name.lower() == key.lower():
            pairs[index] = (name, value)
            return
    pairs.append((key, value))


def _install_hint(driver: str) -> str:
    name = driver.lower()
    if "postgres" in name or "psqlodbc" in name:
        return "apt-get install odbc-postgresql"
    if "mariadb" in name or "mysql" in name or "maodbc" in name:
        return "apt-get install odbc-mariadb"
    if "sql server" in name or "msodbcsql" in name:
        return "install msodbcsql18 from Microsoft's package repository"
    return "install the vendor's ODBC driver and register it with odbcinst"


def _installed_driver(pairs: Sequence[tuple[str, str]]) -> str:
    """The driver the connection string designates (by name, library path or DSN); refuses a
    driver or DSN that unixODBC does not know."""
    pyodbc = load_pyodbc()
    driver, dsn = _get(pairs, "driver"), _get(pairs, "dsn")
    if driver:
        if "/" in driver or "\\" in driver:  # a driver library given by its path
            if not Path(driver).is_file():
                raise ConfigError(
                    f"ODBC driver library {driver} does not exist — {_install_hint(driver)}"
                )
            return driver
        found = list(pyodbc.drivers())
        if driver in found:
            return driver
        same = [name for name in found if name.lower() == driver.lower()]
        if same:
            return same[0]
        raise ConfigError(
            f"ODBC driver {driver!r} is not installed (found: {', '.join(found) or 'none'})"
            f" — {_install_hint(driver)}"
        )
    if dsn:
        sources = dict(pyodbc.dataSources())
        same = [name for name in sources if name.lower() == dsn.lower()]
        if not same:
            raise ConfigError(
                f"ODBC data source {dsn!r} is not defined (found: {', '.join(sources) or 'none'})"
                " — add it to /etc/odbc.ini or ~/.odbc.ini, or name the driver with Driver={…}"
            )
        return str(sources[same[0]])
    raise ConfigError(
        "the ODBC connection string names neither a driver nor a data source — start it with"
        f" Driver={{…}} (installed: {', '.join(pyodbc.drivers()) or 'none'}) or DSN=…"
    )


def resolve_connection_string(
    connection: str | None = None,
    *,
    dsn: str | None = None,
    driver: str | None = None,
    **parts: str,
) -> str:
    """An ODBC connection string from a written one and/or its parts, its driver checked.

    `resolve_connection_string(driver="PostgreSQL Unicode", server="127.0.0.1", port="5432",
    database="erp", uid="hub", pwd=secret)` gives
    `Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Database=erp;UID=hub;PWD=…`;
    keyword parts replace the same keys (any case) of `connection`, and values holding `;`,
    braces or edge spaces are braced. Raises `ConfigError` when the driver or DSN is not
    installed, naming the ones that are and the package to install.
    """
    pairs = _parse_connection(connection) if connection else []
    for key, value in (("dsn", dsn), ("driver", driver), *parts.items()):
        if value is None:
            continue
        if not _KEY.fullmatch(key):
            raise ConfigError(f"{key!r} is not an ODBC connection-string key")
        _set(pairs, KNOWN_KEYS.get(key.lower(), key), str(value))
    _installed_driver(pairs)
    return _format(pairs)


# --------------------------------------------------------------------------------------------
# Dialects


@dataclass(frozen=True)
class Dialect:
    """How a database quotes identifiers and makes a transaction read-only."""

    name: str
    open_quote: str
    close_quote: str
    read_only_statement: str | None

    def quote(self, identifier: str) -> str:
        """The identifier quoted; refused when it holds a quote character (or is empty)."""
        for character in {self.open_quote, self.close_quote, "\0"}:
            if character in identifier:
                shown = "NUL" if character == "\0" else character
                raise ConfigError(
                    f"identifier {identifier!r} contains `{shown}`, which the {self.name}"
                    " reader refuses to quote — read it through a view or a `query`"
                )
        if not identifier:
            raise ConfigError("an empty identifier (table, schema or column name) was given")
        return f"{self.open_quote}{identifier}{self.close_quote}"


DIALECTS = {
    "postgresql": Dialect("postgresql", '"', '"', "SET TRANSACTION READ ONLY"),
    "mysql": Dialect("mysql", "`", "`", "SET TRANSACTION READ ONLY"),
    "mssql": Dialect("mssql", "[", "]", None),
}
_DIALECT_NAMES = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "mssql": "mssql",
    "sqlserver": "mssql",
    "sql server": "mssql",
}


def _dialect_of_driver(driver: str) -> Dialect | None:
    name = driver.lower()
    if "postgres" in name or "psqlodbc" in name:
        return DIALECTS["postgresql"]
    if "mariadb" in name or "mysql" in name or "maodbc" in name or "myodbc" in name:
        return DIALECTS["mysql"]
    if "sql server" in name or "msodbcsql" in name or "freetds" in name or "tdsodbc" in name:
        return DIALECTS["mssql"]
    return None


def dialect_of_server(connection: pyodbc.Connection) -> Dialect:
    """The dialect the server names itself with; ANSI double quotes for anything else."""
    pyodbc = load_pyodbc()
    product = str(connection.getinfo(pyodbc.SQL_DBMS_NAME)).lower()
    known = _dialect_of_driver(product.replace("microsoft sql server", "sql server"))
    if known is not None:
        return known
    quote = str(connection.getinfo(pyodbc.SQL_IDENTIFIER_QUOTE_CHAR)).strip() or '"'
    return Dialect(product or "odbc", quote, quote, None)


def _driver_options(driver: str, fetch_rows: int) -> dict[str, str]:
    """Driver settings the reader needs, unless the connection string sets them itself."""
    name = driver.lower()
    if "postgres" in name or "psqlodbc" in name:
        return {
            "BoolsAsChar": "0",  # booleans as booleans, not '1'/'0' text
            "UseDeclareFetch": "1",  # stream through a cursor instead of caching the result
            "Fetch": str(min(fetch_rows, POSTGRES_FETCH_ROWS)),
        }
    if "mariadb" in name or "maodbc" in name:
        return {"NO_CACHE": "1"}  # stream the result (Connector/ODBC 3.1.17 and later)
    return {}


# --------------------------------------------------------------------------------------------
# Errors


@dataclass(frozen=True)
class OdbcTarget:
    """A checked connection: the string given to the driver, and how to speak of it."""

    connection_string: str
    masked: str
    secrets: tuple[str, ...]
    dialect: Dialect | None  # None: ask the server once connected

    def scrub(self, message: str) -> str:
        """A driver message with any trace of the password removed."""
        return scrub(message, self.secrets)


def state_and_message(error: BaseException, target: OdbcTarget) -> tuple[str, str]:
    """The SQLSTATE and the driver's message (one line, secrets scrubbed) of a pyodbc error."""
    args = error.args
    state = args[0] if len(args) >= 2 and isinstance(args[0], str) else ""
    text = " ".join(str(args[-1] if args else error).split())  # one line
    return state, target.scrub(text[:500])


def is_transient(state: str, message: str) -> bool:
    """Whether an ODBC error (SQLSTATE, message) is worth retrying.

    Connection or serialisation trouble is; a statement the server refused never is.
    """
    if state.startswith("08") or state in _RETRIABLE_STATES:
        return True
    return state[:2] not in _STATEMENT_CLASSES and bool(TRANSIENT.search(message))


def connect_error(error: BaseException, target: OdbcTarget) -> ConnectorError:
    """The connector error for a failed ODBC connection.

    Retriable when the message says the server is unreachable or busy, else a `ConfigError`
    naming the connection.
    """
    _, message = state_and_message(error, target)
    # by the message only: drivers give every failed connection SQLSTATE 08001, even a database
    # that does not exist
    if TRANSIENT.search(message):
        return RetriableError(
            f"{target.masked}: connecting failed: {message} — the database may be down or busy;"
            " the run will be retried"
        )
    return ConfigError(
        f"{target.masked}: connecting failed: {message} — check the server, port, database,"
        " user and the password variable of the ODBC connection"
    )


def _read_error(error: BaseException, target: OdbcTarget, doing: str) -> ConnectorError:
    state, message = state_and_message(error, target)
    if is_transient(state, message):
        return RetriableError(
            f"{target.masked}: {doing} failed: {message} — the connection was lost or the"
            " database is busy; the run will be retried"
        )
    if state in MISSING_TABLE_STATES | MISSING_COLUMN_STATES:
        return ConfigError(f"{target.masked}: {doing} failed: {message} — fix the datafix source")
    return PermanentError(
        f"{target.masked}: {doing} failed: {message} — fix the datafix `table` or `query`, or"
        " grant the account SELECT on it"
    )


# --------------------------------------------------------------------------------------------
# Connecting


def odbc_target(connection_string: str, dialect: str | None, fetch_rows: int) -> OdbcTarget:
    """A checked ODBC connection string, with its masked form, secrets and dialect.

    `dialect` forces the dialect (else the driver's); `fetch_rows` sets the driver's fetch
    size options when the string does not.
    """
    pairs = _parse_connection(connection_string)
    secrets = tuple(
        sorted({value for key, value in pairs if key.lower() in SECRET_KEYS and value}, key=len)
    )[::-1]  # longest first: a password that contains another is scrubbed whole
    masked = _format(pairs, masked=True)
    driver = _installed_driver(pairs)
    for key, value in _driver_options(driver, fetch_rows).items():
        if _get(pairs, key) is None:
            pairs.append((key, value))
    if dialect is not None:
        known = _DIALECT_NAMES.get(dialect.strip().lower())
        if known is None:
            raise ConfigError(
                f"unknown SQL dialect {dialect!r} — use one of postgresql, mysql (MariaDB) or"
                " mssql (SQL Server)"
            )
        chosen: Dialect | None = DIALECTS[known]
    else:
        chosen = _dialect_of_driver(driver)
    return OdbcTarget(_format(pairs), masked, secrets, chosen)


def _begin_read_only(connection: pyodbc.Connection, dialect: Dialect, target: OdbcTarget) -> None:
    if dialect.read_only_statement is None:
        return
    pyodbc = load_pyodbc()
    try:
        # the transaction's first statement: what follows runs in it (autocommit is off)
        connection.execute(dialect.read_only_statement).close()
    except pyodbc.Error as error:
        raise connect_error(error, target) from None


def uuid_text(raw: bytes | None) -> str | None:
    """A GUID as psycopg writes a PostgreSQL uuid (lower case), not pyodbc's upper case."""
    return None if raw is None else str(uuid.UUID(bytes_le=bytes(raw)))


@contextmanager
def _read_only_session(
    target: OdbcTarget, timeout: int
) -> Iterator[tuple[pyodbc.Connection, Dialect]]:
    """A connection in a read-only transaction, rolled back and closed afterwards."""
    pyodbc = load_pyodbc()
    try:
        connection = pyodbc.connect(
            target.connection_string, timeout=timeout, readonly=True, autocommit=False
        )
    except pyodbc.Error as error:
        raise connect_error(error, target) from None
    try:
        try:
            dialect = target.dialect or dialect_of_server(connection)
        except pyodbc.Error as error:
            raise connect_error(error, target) from None
        if dialect.name == "mysql":
            connection.setencoding(encoding="utf-8")
        if dialect.name == "postgresql":
            connection.add_output_converter(pyodbc.SQL_GUID, uuid_text)
        _begin_read_only(connection, dialect, target)
        yield connection, dialect
    finally:
        with suppress(pyodbc.Error):
            connection.rollback()
        with suppress(pyodbc.Error):
            connection.close()


# --------------------------------------------------------------------------------------------
# Building the SELECT


def _run(
    connection: pyodbc.Connection,
    target: OdbcTarget,
    doing: str,
    statement: str,
    parameters: Sequence[object] = (),
) -> pyodbc.Cursor:
    pyodbc = load_pyodbc()
    cursor = connection.cursor()
    try:
        cursor.execute(statement, *parameters)
    except pyodbc.Error as error:
        cursor.close()
        raise _read_error(error, target, doing) from None
    return cursor


def _table_names(connection: pyodbc.Connection, dialect: Dialect, schema: str | None) -> list[str]:
    pyodbc = load_pyodbc()
    place = {"catalog": schema} if dialect.name == "mysql" else {"schema": schema}
    if dialect.name == "mysql" and schema is None:
        place = {"catalog": str(connection.getinfo(pyodbc.SQL_DATABASE_NAME))}
    try:
        with closing(connection.cursor()) as cursor:
            return sorted({row[2] for row in cursor.tables(tableType="TABLE,VIEW", **place)})
    except pyodbc.Error:
        return []


def source_columns(
    connection: pyodbc.Connection,
    dialect: Dialect,
    target: OdbcTarget,
    source: str,
    table: str | None,
    schema: str | None,
) -> list[tuple[str, Any]]:
    """(name, Python type) of each column of `source`, read without fetching a row."""
    pyodbc = load_pyodbc()
    cursor = connection.cursor()
    try:
        cursor.execute(f"SELECT * FROM {source} WHERE 1 = 0")  # identifiers quoted above
    except pyodbc.Error as error:
        cursor.close()
        state, _ = state_and_message(error, target)
        if table is None or state not in MISSING_TABLE_STATES:
            doing = f"reading the columns of {table or 'the query'}"
            raise _read_error(error, target, doing) from None
        with suppress(pyodbc.Error):
            connection.rollback()  # PostgreSQL refuses anything more in a failed transaction
        _begin_read_only(connection, dialect, target)
        names = _table_names(connection, dialect, schema)
        close = difflib.get_close_matches(table, names, n=1, cutoff=0.6)
        place = f"schema `{schema}`" if schema else "the database"
        hint = f"did you mean `{close[0]}`?" if close else "fix `table` (or `schema`)"
        listing = ", ".join(names[:30]) + (", …" if len(names) > 30 else "")
        raise ConfigError(
            f"{target.masked}: no table or view `{table}` in {place} (there:"
            f" {listing or 'none'}) — {hint}"
        ) from None
    with closing(cursor):  # closing, not the cursor's own `with`: that one commits
        return [(column[0], column[1]) for column in cursor.description]


def _primary_key(
    connection: pyodbc.Connection,
    dialect: Dialect,
    target: OdbcTarget,
    table: str,
    schema: str | None,
) -> list[str]:
    """The primary key's columns in key order (what SQLAlchemy's reflection gives)."""
    pyodbc = load_pyodbc()
    doing = f"reading the primary key of `{table}`"
    if dialect.name == "mysql":
        # MariaDB Connector/ODBC 3.1 numbers SQLPrimaryKeys' KEY_SEQ wrongly: ask the catalogue
        statement = (
            "SELECT column_name FROM information_schema.key_column_usage"
            " WHERE table_schema = COALESCE(?, DATABASE()) AND table_name = ?"
            " AND constraint_name = 'PRIMARY' ORDER BY ordinal_position"
        )
        with closing(_run(connection, target, doing, statement, (schema, table))) as cursor:
            return [str(row[0]) for row in cursor.fetchall()]
    try:
        with closing(connection.cursor()) as cursor:
            rows = cursor.primaryKeys(table, schema=schema).fetchall()
    except pyodbc.Error as error:
        raise _read_error(error, target, doing) from None
    return [str(row[3]) for row in sorted(rows, key=itemgetter(4))]


def _typed_bound(value: str, kind: Any, column: str, dialect: Dialect) -> object:
    """The `since` bound as the column's Python type, so the driver binds a typed parameter
    (a French SQL Server would read '2026-03-01 14:30:00' as the 3rd of January)."""
    text = value.strip()
    try:
        if kind is dt.datetime:
            moment = dt.datetime.fromisoformat(text)
            # MariaDB Connector/ODBC 3.1 drops the fraction of a timestamp parameter; MariaDB
            # reads ISO text the same whatever the locale
            return moment.isoformat(" ") if dialect.name == "mysql" else moment
        if kind is dt.date:
            return dt.date.fromisoformat(text)
        if kind is bool:
            if text.lower() in ("true", "1"):
                return True
            if text.lower() in ("false", "0"):
                return False
            raise ValueError(value)
        if kind is int:
            return int(text)
        if kind is Decimal:
            return Decimal(text)
        if kind is float:
            return float(text)
    except (ValueError, InvalidOperation):
        example = {dt.datetime: "2026-03-01 14:30:00", dt.date: "2026-03-01", bool: "true"}
        raise WatermarkError(
            column,
            f"`since` value {value!r} is not a {kind.__name__} as column `{column}` holds —"
            f" write it like {example.get(kind, '42')!r}",
        ) from None
    return value


def _column_named(name: str, columns: Sequence[tuple[str, Any]], where: str) -> tuple[str, Any]:
    exact = [column for column in columns if column[0] == name]
    same = exact or [column for column in columns if header_key(column[0]) == header_key(name)]
    if len(same) != 1:
        names = [column[0] for column in columns]
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
        hint = f"did you mean `{close[0]}`?" if close else "fix `since`"
        raise ConfigError(
            f"{where}: `since` column `{name}` is not among the columns ({', '.join(names)})"
            f" — {hint}"
        )
    return same[0]


def _select(
    connection: pyodbc.Connection,
    dialect: Dialect,
    target: OdbcTarget,
    *,
    table: str | None,
    schema: str | None,
    query: str | None,
    key: Sequence[str],
    since: tuple[str, str] | tuple[str, str, str | None] | None,
    where: str,
    order: Sequence[str] = (),
) -> tuple[str, tuple[object, ...]]:
    """The statement reading the source, and its bound parameters; in `order` (an incremental
    read's cursor and key columns) when given and the source is filtered."""
    if table is None and since is None:
        return str(query), ()  # a query is run as written, like the SQLAlchemy reader
    if table is not None:
        source = dialect.quote(table)
        if schema is not None:
            source = f"{dialect.quote(schema)}.{source}"
    else:
        source = f"({str(query).strip().rstrip(';').rstrip()}) AS src"
    columns = source_columns(connection, dialect, target, source, table, schema)
    key_columns = match_columns(key, [name for name, _ in columns], where)
    if table is not None and not key_columns:
        key_columns = _primary_key(connection, dialect, target, table, schema)
    statement = f"SELECT * FROM {source}"
    parameters: tuple[object, ...] = ()
    if since is not None:
        name, kind = _column_named(since[0], columns, where)
        stored = since[2] if len(since) > 2 else None  # type: ignore[misc]
        found = type_kind(kind)
        if stored == "timestamptz" and found == "timestamp":
            found = stored  # a description does not say whether date-times carry an offset
        checked_kind(name, since[1], stored, found)  # the column still holds what it held
        statement += f" WHERE {dialect.quote(name)} >= ?"
        parameters = (_typed_bound(since[1], kind, name, dialect),)
    if since is not None and order:  # the rows past the watermark come in cursor order
        key_columns = match_columns(order, [name for name, _ in columns], where)
    if key_columns:  # row numbers and fingerprint must not depend on the storage order
        statement += " ORDER BY " + ", ".join(map(dialect.quote, key_columns))
    return statement, parameters


# --------------------------------------------------------------------------------------------
# Reading


class OdbcRead(TypedDict, total=False):
    """What `read_odbc` and `iter_odbc` read (every item may be left out; see `read_odbc`)."""

    table: str | None
    schema: str | None
    query: str | None
    key: Sequence[str]
    since: tuple[str, str] | tuple[str, str, str | None] | None
    chunk_rows: int
    timeout: int
    dialect: str | None
    watermark: Sequence[str]


def read_odbc(connection_string: str, **options: Unpack[OdbcRead]) -> RawTable:
    """Read a table (every column) or a query's result over ODBC as text, `chunk_rows` at a time
    (50,000 unless given).

    Same result as `read_sql` on the same rows: lineage `table:id=42` (`key` columns) or
    `table:row 7` (`query` stands for the name of a query); a table is read in `key` (else
    primary key) order. `since=(column, value)` keeps the rows whose column is `>=` the value
    (with a third item, the kind the value was stored with: a column that now holds another kind
    is a `WatermarkError`); `watermark` names the cursor and key columns whose last values'
    kinds the table reports (`watermark_kinds`)
    (bound as the column's type); a query is then wrapped (`SELECT * FROM (query) AS src WHERE
    …`, ordered by `key` when given). `timeout` is the login timeout in seconds (30); `dialect`
    (postgresql, mysql, mssql) overrides the one guessed from the driver's name.
    """
    chunks = _chunks(connection_string, retain=True, **options)
    while True:
        try:
            next(chunks)
        except StopIteration as finished:
            retained, origin = finished.value
            return retained.table(origin)


def stream_odbc(connection_string: str, **options: Unpack[OdbcRead]) -> RawTable:
    """As `read_odbc`, as a table streamed from the database (`RawTable.peer_stream`): nothing
    is read until its chunks are, `stream(size)` rows fetched at a time, one chunk held at
    once; its fingerprint and watermark kinds come at the end (`StreamEnd`), equal to a whole
    read's."""
    check_target(options.get("table"), options.get("query"))
    target = odbc_target(connection_string, options.get("dialect"), 1)
    label = options.get("table") or "query"
    schema = options.get("schema")

    def chunks(size: int) -> ChunkStream:
        options_now: OdbcRead = {**options, "chunk_rows": max(1, size)}
        return (yield from text_stream(_chunks(connection_string, retain=False, **options_now)))

    return RawTable.streamed_from_peer(
        f"{target.masked} {f'{schema}.' if schema else ''}{label}", chunks
    )


def iter_odbc(connection_string: str, **options: Unpack[OdbcRead]) -> Iterator[RawTable]:
    """As `read_odbc`, one `chunk_rows` table at a time: memory stays that of one chunk.

    Lineage numbering continues across chunks; each chunk's fingerprint covers that chunk.
    """
    yield from _chunks(connection_string, retain=False, **options)


def _chunks(
    connection_string: str,
    *,
    retain: bool,
    table: str | None = None,
    schema: str | None = None,
    query: str | None = None,
    key: Sequence[str] = (),
    since: tuple[str, str] | tuple[str, str, str | None] | None = None,
    chunk_rows: int = 50_000,
    timeout: int = 30,
    dialect: str | None = None,
    watermark: Sequence[str] = (),
) -> Generator[RawTable, None, tuple[TextChunks, str]]:
    check_target(table, query)
    if chunk_rows < 1:
        raise ConfigError("chunk_rows must be at least 1")
    target = odbc_target(connection_string, dialect, chunk_rows)
    pyodbc = load_pyodbc()
    label = table or "query"
    where = f"{target.masked} {label}"
    with _read_only_session(target, timeout) as (connection, sql_dialect):
        statement, parameters = _select(
            connection,
            sql_dialect,
            target,
            table=table,
            schema=schema,
            query=query,
            key=key,
            since=since,
            where=where,
            order=watermark,
        )
        reading = _run(connection, target, f"reading {label}", statement, parameters)
        with closing(reading) as cursor:
            names = [str(column[0]) for column in cursor.description]
            chunks = TextChunks(names, label, key, where, retain=retain, watermark=watermark)
            try:
                while True:
                    part = cursor.fetchmany(chunk_rows)
                    if not part:
                        break
                    chunk = chunks.add(part)
                    del part  # not alive while the next chunk is fetched
                    yield chunk
                    del chunk
            except pyodbc.Error as error:
                raise _read_error(error, target, f"reading {label}") from None
    return chunks, f"{target.masked} {f'{schema}.' if schema else ''}{label}"


def read_odbc_header(
    connection_string: str,
    *,
    table: str | None = None,
    schema: str | None = None,
    query: str | None = None,
    dialect: str | None = None,
) -> list[str]:
    """The column names a `read_odbc` call would give, without reading the rows."""
    check_target(table, query)
    target = odbc_target(connection_string, dialect, 1)
    with _read_only_session(target, 30) as (connection, sql_dialect):
        if table is None:  # run as written (a derived table would refuse repeated names)
            with closing(_run(connection, target, "running the query", str(query))) as cursor:
                return unique_labels([str(column[0]) for column in cursor.description])
        source = sql_dialect.quote(table)
        if schema is not None:
            source = f"{sql_dialect.quote(schema)}.{source}"
        columns = source_columns(connection, sql_dialect, target, source, table, schema)
    return unique_labels([name for name, _ in columns])
