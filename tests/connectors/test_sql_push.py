"""`SqlSink` against real databases: SQLite (file), PostgreSQL and MariaDB through SQLAlchemy,
PostgreSQL and MariaDB through pyodbc. The same records must leave the same table content."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.delivery import OutgoingRecord
from connectors.errors import ConfigError
from connectors.sql.push import SqlSink
from tests.conftest import (
    odbc_connection_string,
    temporary_mariadb_database,
    temporary_postgres_database,
)
from tests.pipelines.lib.pushing import run_sql

TARGETS = ["sqlite", "postgresql", "mariadb", "postgresql-odbc", "mariadb-odbc"]


@dataclass(frozen=True)
class Target:
    """A fresh database: the admin URL (SQLAlchemy) and what the sink is given."""

    backend: str
    admin_url: str
    sink_url: str | None
    sink_odbc: str | None

    def run(self, *statements: str) -> None:
        run_sql(self.admin_url, *statements)

    def rows(self, table: str = "invoices") -> list[tuple[Any, ...]]:
        """The table's rows by key, values normalised (bool, int, date) across backends."""
        engine = sa.create_engine(self.admin_url)
        try:
            with engine.connect() as connection:
                reflected = sa.Table(table, sa.MetaData(), autoload_with=connection)
                query = sa.select(*reflected.c).order_by(reflected.c.invoice_no)
                return [_normalised(row) for row in connection.execute(query)]
        finally:
            engine.dispose()

    def sink(self, **options: Any) -> SqlSink:
        options.setdefault("table", "invoices")
        options.setdefault("key_column", "invoice_no")
        return SqlSink("erp", url=self.sink_url, odbc=self.sink_odbc, **options)


def _normalised(row: Any) -> tuple[Any, ...]:
    values = []
    for value in row:
        if isinstance(value, str) and len(value) == 10 and value[4] == "-":
            value = dt.date.fromisoformat(value)  # SQLite keeps dates as text
        if isinstance(value, dt.datetime):
            value = value.date()
        values.append(value)
    return tuple(values)


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    backend = request.param
    if backend == "sqlite":
        path = tmp_path / "erp.db"
        sa.create_engine(f"sqlite:///{path}").dispose()
        path.touch()
        url = f"sqlite:///{path}"
        yield Target(backend, url, url, None)
    else:
        postgres = backend.startswith("postgresql")
        temporary = temporary_postgres_database if postgres else temporary_mariadb_database
        with temporary() as url:
            odbc = odbc_connection_string(url)
            odbc_only = backend.endswith("odbc")
            yield Target(backend, url, None if odbc_only else url, odbc if odbc_only else None)


def create_invoices(target: Target, *, keyed: bool = True, table: str = "invoices") -> None:
    key = "PRIMARY KEY" if keyed else ""
    label = "VARCHAR(20) NOT NULL"
    if target.backend == "sqlite":  # SQLite does not enforce lengths: a CHECK does
        label += " CHECK (length(label) <= 20)"
    target.run(
        f"CREATE TABLE {table} (invoice_no VARCHAR(20) {key}, label {label},"
        " amount_cents BIGINT, due_date DATE, paid BOOLEAN, hub_key VARCHAR(80))"
    )


def invoice(number: int, *, label: str | None = None, amount: int = 0) -> OutgoingRecord:
    fields = {
        "label": f"Loyer {number}" if label is None else label,
        "amount_cents": amount or number * 100 + 7,
        "due_date": dt.date(2026, 3, 1) + dt.timedelta(days=number % 28),
        "paid": number % 2 == 0,
    }
    return OutgoingRecord(f"F{number:05d}", f"idem-{number}-{fields['amount_cents']}", fields)


def expected_rows(records: list[OutgoingRecord], hub_key: bool = False) -> list[tuple[Any, ...]]:
    return [
        (
            record.key,
            record.fields["label"],
            record.fields["amount_cents"],
            record.fields["due_date"],
            bool(record.fields["paid"]),
            record.idempotency_key if hub_key else None,
        )
        for record in sorted(records, key=lambda r: r.key)
    ]


def as_bool(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [(*row[:4], None if row[4] is None else bool(row[4]), row[5]) for row in rows]


@pytest.mark.parametrize("keyed", [True, False], ids=["key-is-primary-key", "key-not-unique"])
def test_same_records_same_content_and_a_resend_updates(target: Target, keyed: bool) -> None:
    create_invoices(target, keyed=keyed)
    records = [invoice(number) for number in range(1, 121)]
    sink = target.sink(idempotency_column="hub_key", batch_size=50)
    try:
        first = sink.send(records)
        assert [d.key for d in first] == [r.key for r in records]
        assert {d.outcome for d in first} == {"sent"} and all(d.created for d in first)
        assert [d.peer_id for d in first] == [r.key for r in records]
        changed = [invoice(number, amount=number * 1000) for number in range(1, 11)]
        second = sink.send(changed + records[10:])
        assert {d.outcome for d in second} == {"sent"}
        assert not any(d.created for d in second)
    finally:
        sink.close()
    assert as_bool(target.rows()) == expected_rows(changed + records[10:], hub_key=True)


def test_refused_rows_are_dead_with_the_database_message_the_others_sent(target: Target) -> None:
    create_invoices(target)
    records = [invoice(number) for number in range(1, 31)]
    records[4] = invoice(5, label="x" * 40)  # too long for VARCHAR(20)
    records[17] = OutgoingRecord("F00018", "idem-18", {**records[17].fields, "label": None})
    sink = target.sink()
    try:
        outcomes = sink.send(records)
    finally:
        sink.close()
    dead = {d.key: d.message for d in outcomes if d.outcome == "dead"}
    assert sorted(dead) == ["F00005", "F00018"]
    assert all(message for message in dead.values())
    assert "null" in dead["F00018"].lower()
    assert [d.outcome for d in outcomes].count("sent") == 28
    kept = [record for position, record in enumerate(records) if position not in (4, 17)]
    assert as_bool(target.rows()) == expected_rows(kept)


def test_missing_table_and_columns_are_config_errors_naming_them(target: Target) -> None:
    create_invoices(target)
    sink = target.sink(table="invoice_lines")
    with pytest.raises(ConfigError, match="invoice_lines") as missing_table:
        sink.send([invoice(1)])
    sink.close()
    assert "invoices" in str(missing_table.value)  # the tables that exist are listed
    record = OutgoingRecord("F00001", "i", {"label": "a", "vat_rate": 20, "iban": "FR76"})
    sink = target.sink()
    try:
        with pytest.raises(ConfigError) as missing_columns:
            sink.send([record])
    finally:
        sink.close()
    message = str(missing_columns.value)
    assert "`invoices`" in message and "`vat_rate`" in message and "`iban`" in message
    assert "invoice_no, label, amount_cents, due_date, paid, hub_key" in message
    assert target.rows() == []


def test_read_back_returns_only_records_held_in_this_very_version(target: Target) -> None:
    create_invoices(target)
    records = [invoice(number) for number in range(1, 7)]
    sink = target.sink()
    try:
        sink.send(records[:4])
        newer = invoice(2, amount=999)  # same key, another version
        other_date = OutgoingRecord(
            "F00003", "x", {**records[2].fields, "due_date": dt.date(2030, 1, 1)}
        )
        other_flag = OutgoingRecord("F00004", "y", {**records[3].fields, "paid": False})
        held = sink.read_back([records[0], newer, other_date, other_flag, *records[4:]])
    finally:
        sink.close()
    assert held == {"F00001": "F00001"}


def test_read_back_by_idempotency_column(target: Target) -> None:
    create_invoices(target)
    records = [invoice(number) for number in range(1, 4)]
    sink = target.sink(idempotency_column="hub_key")
    try:
        sink.send(records)
        same_fields_new_version = OutgoingRecord("F00002", "idem-new", records[1].fields)
        held = sink.read_back([records[0], same_fields_new_version, records[2]])
    finally:
        sink.close()
    assert held == {"F00001": "F00001", "F00003": "F00003"}


@pytest.mark.parametrize(
    "table",
    ['invoices"; DROP TABLE invoices; --', "invoices` ; DROP TABLE invoices; --", "invoices;"],
    ids=["double-quote", "backquote", "semicolon"],
)
def test_injected_table_name_is_refused_and_harms_nothing(target: Target, table: str) -> None:
    create_invoices(target)
    sink = target.sink(table=table)
    try:
        with pytest.raises(ConfigError):
            sink.send([invoice(1)])
    finally:
        sink.close()
    assert target.rows() == []  # the table is still there, untouched


def test_nothing_connects_before_the_first_send() -> None:
    sink = SqlSink(
        "erp",
        url="postgresql+psycopg://hub@192.0.2.1:1/erp",
        table="invoices",
        key_column="invoice_no",
    )
    assert sink.batch_size(10_000) == 500 and sink.batch_size(3) == 3
    assert sink.send([]) == [] and sink.read_back([]) == {}
    sink.close()


def test_url_and_odbc_are_exclusive() -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        SqlSink("erp", table="t", key_column="k")
