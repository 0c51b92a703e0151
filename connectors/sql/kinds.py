"""Source kinds `sql` (SQLAlchemy URL) and `odbc` (pyodbc), and sink kind `sql` (an ERP table)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from connectors.delivery import Sink
from connectors.rawtable import RawTable
from connectors.registry import SinkKind, SourceKind, SourceRequest
from connectors.watermark import past_watermark_stream
from schemas.config import (
    CursorSpec,
    DatabaseUrl,
    EnvText,
    OdbcString,
    SinkBase,
    StrictModel,
    check_table_or_query,
)

__all__ = ["ODBC_SOURCE", "SQL_SINK", "SQL_SOURCE", "OdbcSource", "SqlSink", "SqlSource"]


class SqlSource(StrictModel):
    """A SQL database reached through a SQLAlchemy URL, read through a table or a query."""

    kind: Literal["sql"]
    url: DatabaseUrl = Field(
        description="SQLAlchemy URL; put credentials in `${ENV_VAR}` references, never inline."
    )
    table: str | None = Field(None, description="Table (or view) to read.")
    db_schema: str | None = Field(None, alias="schema", description="Schema of the table.")
    query: str | None = Field(None, description="A read-only SELECT (or WITH … SELECT) query.")
    key: list[str] = Field(
        default_factory=list,
        description="Columns that identify a row, recorded as its lineage (`source_row`).",
    )
    cursor: CursorSpec | None = Field(
        None,
        description="Pull incrementally: only rows past the last watermark (the entities it"
        " feeds must use `mode: incremental`).",
    )

    @model_validator(mode="after")
    def _table_or_query(self) -> SqlSource:
        check_table_or_query(self.table, self.query)
        if self.cursor is not None and not self.key:
            raise ValueError(
                "an incremental source (`cursor`) needs `key`: the columns that tell apart rows"
                " sharing one cursor value"
            )
        return self


class OdbcSource(StrictModel):
    """A database reached over ODBC (pyodbc): a connection string or a DSN."""

    kind: Literal["odbc"]
    connection: OdbcString | None = Field(
        None,
        description="ODBC connection string, e.g. `Driver={PostgreSQL Unicode};Server=erp;"
        "Database=gestion;UID=hub;PWD=${ERP_PASSWORD}`.",
    )
    dsn: EnvText | None = Field(
        None, description="A DSN declared in odbc.ini, instead of a string."
    )
    table: str | None = Field(None, description="Table (or view) to read.")
    db_schema: str | None = Field(None, alias="schema", description="Schema of the table.")
    query: str | None = Field(None, description="A read-only SELECT (or WITH … SELECT) query.")
    key: list[str] = Field(default_factory=list, description="Columns that identify a row.")
    cursor: CursorSpec | None = Field(None, description="Pull incrementally (see `sql`).")
    dialect: Literal["postgresql", "mysql", "mssql", "ansi"] | None = Field(
        None, description="How identifiers are quoted; detected from the driver when omitted."
    )

    @model_validator(mode="after")
    def _target(self) -> OdbcSource:
        if (self.connection is None) == (self.dsn is None):
            raise ValueError("give exactly one of `connection` or `dsn`")
        check_table_or_query(self.table, self.query)
        if self.cursor is not None and not self.key:
            raise ValueError("an incremental source (`cursor`) needs `key`")
        return self


class SqlSink(SinkBase):
    """Upsert into a table of the landlord's ERP database (SQLAlchemy URL or ODBC)."""

    kind: Literal["sql"]
    url: DatabaseUrl | None = Field(
        None, description="SQLAlchemy URL; `${VARIABLE}` for the password."
    )
    connection: OdbcString | None = Field(
        None, description="ODBC connection string instead of `url` (`PWD=${VARIABLE}`)."
    )
    table: str = Field(description="Target table; it must exist.")
    db_schema: str | None = Field(None, alias="schema", description="Schema of the table.")
    key_column: str = Field(description="Column holding the record's key (upsert on it).")
    idempotency_column: str | None = Field(
        None, description="Column storing each record's idempotency key (optional)."
    )

    @model_validator(mode="after")
    def _one_address(self) -> SqlSink:
        if (self.url is None) == (self.connection is None):
            raise ValueError("give exactly one of `url` (SQLAlchemy) or `connection` (ODBC)")
        return self


# --- sources ----------------------------------------------------------------------------------


def _target(source: SqlSource | OdbcSource) -> dict[str, str | None]:
    """What a database source reads: a table (in a schema) or a query."""
    return {"table": source.table, "schema": source.db_schema, "query": source.query}


def _read_sql(source: SqlSource, request: SourceRequest) -> RawTable:
    from connectors.sql.client import read_sql

    # the database applies the whole (cursor, key) condition itself; the rows are streamed
    return read_sql(
        source.url, **_target(source), key=source.key, after=request.after, stream=request.stream
    )


def _sql_header(source: SqlSource, request: SourceRequest) -> list[str]:
    from connectors.sql.client import read_sql_header

    return read_sql_header(source.url, **_target(source))


def _odbc_connection(source: OdbcSource) -> str:
    from connectors.sql.odbc import resolve_connection_string

    if source.dsn is not None:
        return resolve_connection_string(dsn=source.dsn)
    assert source.connection is not None
    return source.connection


def _read_odbc(source: OdbcSource, request: SourceRequest) -> RawTable:
    from connectors.sql.odbc import read_odbc, stream_odbc

    after = request.after
    since = None
    if after is not None and after.value is not None:
        since = (after.column, after.value, after.kinds[0] if after.kinds else None)
    raw = (stream_odbc if request.stream else read_odbc)(
        _odbc_connection(source),
        **_target(source),
        key=source.key,
        since=since,
        dialect=source.dialect,
        watermark=() if after is None else (after.column, *after.key),
    )
    return raw if after is None else past_watermark_stream(raw, after)


def _odbc_header(source: OdbcSource, request: SourceRequest) -> list[str]:
    from connectors.sql.odbc import read_odbc_header

    return read_odbc_header(_odbc_connection(source), **_target(source), dialect=source.dialect)


# --- sink -------------------------------------------------------------------------------------


def _build_sink(name: str, spec: SqlSink) -> Sink:
    from connectors.sql.push import SqlSink as SqlConnector

    return SqlConnector(
        name,
        url=spec.url,
        odbc=spec.connection,
        table=spec.table if spec.db_schema is None else f"{spec.db_schema}.{spec.table}",
        key_column=spec.key_column,
        idempotency_column=spec.idempotency_column,
        batch_size=spec.batch_size or 500,
        timeout=int(spec.timeout),
    )


def _check_sink(sink: Sink, spec: SqlSink) -> None:
    """The table exists and holds the key, idempotency and every mapped column."""
    sink.probe(list(spec.fields))  # type: ignore[attr-defined]


def _odbc_locator(source: OdbcSource) -> str:
    return "dsn" if source.dsn is not None else "connection"


def _sink_locator(sink: SqlSink) -> str:
    return "url" if sink.url is not None else "connection"


SQL_SOURCE = SourceKind("sql", SqlSource, read=_read_sql, header=_sql_header, locator="url")
ODBC_SOURCE = SourceKind("odbc", OdbcSource, _read_odbc, _odbc_header, locator=_odbc_locator)
SQL_SINK = SinkKind("sql", SqlSink, _build_sink, check=_check_sink, locator=_sink_locator)
