"""Typed watermarks (issue 12, Why 3): an incremental SQL or ODBC source resumes past its
watermark with the cursor bound as the column's own type, on every database.

The landlord ERPs are real databases (SQLite files; PostgreSQL and MariaDB on the machine's
servers) read through SQLAlchemy and, for PostgreSQL and MariaDB, over ODBC. Each case pulls a
ledger three times through pull → normalise → load into a SQLite warehouse: the first pull reads
every row, the second (after rows were added) only the new ones, the third nothing. The cursor
values are chosen so that comparing them as text gives the wrong answer (`'100' < '99'`,
timestamps written with different UTC offsets), and rows share the watermark's cursor value. The
expected rows are computed here, from the test's own values, never by the hub.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.errors import ConfigError
from pipelines.lib.warehouse import Warehouse
from tests.conftest import (
    odbc_connection_string,
    temporary_mariadb_database,
    temporary_postgres_database,
)
from tests.landlords.common import connected, datafix
from tests.pipelines.lib.helpers import (
    incremental_ledger_datafix,
    migrated_warehouse,
    run_ledger_once,
)

KINDS = ("timestamptz", "timestamp", "date", "integer", "decimal", "text")

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


# (first rows' cursor values, the cursor values of the rows added before the second pull);
# ids follow the order written. The first added value ties with the first pull's last value.
VALUES: dict[str, tuple[list[Any], list[Any]]] = {
    # instants written with various offsets: their text order is not their time order
    "timestamptz": (
        [
            at("2026-03-01 10:00:00+02:00"),  # 08:00 UTC
            at("2026-03-01 09:30:00+01:00"),  # 08:30 UTC
            at("2026-03-01 09:00:00.250000+00:00"),
            at("2026-03-01 08:00:00.250000-01:00"),  # 09:00:00.25 UTC, the same instant
        ],
        [
            at("2026-03-01 11:00:00.250000+02:00"),  # 09:00:00.25 UTC again: a tie
            at("2026-03-01 08:30:00-01:00"),  # 09:30 UTC
            at("2026-03-02 00:00:00+05:00"),  # 2026-03-01 19:00 UTC
        ],
    ),
    "timestamp": (
        [
            at("2026-03-01 08:00:00"),
            at("2026-03-01 09:00:00.250000"),
            at("2026-03-01 09:00:00.500000"),
            at("2026-03-01 09:00:00.500000"),
        ],
        [at("2026-03-01 09:00:00.500000"), at("2026-03-01 09:00:01"), at("2026-03-02 00:00:00")],
    ),
    "date": (
        [dt.date(2026, 2, 27), dt.date(2026, 2, 28), dt.date(2026, 3, 1), dt.date(2026, 3, 1)],
        [dt.date(2026, 3, 1), dt.date(2026, 3, 2), dt.date(2027, 1, 1)],
    ),
    # as text, '100' and '1000' sort before '99'
    "integer": ([9, 10, 99, 99], [99, 100, 1000]),
    "decimal": (
        [Decimal("9.5"), Decimal("10.25"), Decimal("99.125"), Decimal("99.125")],
        [Decimal("99.125"), Decimal("100.5"), Decimal("1000.0625")],
    ),
    "text": (["alpha", "bravo", "charlie", "charlie"], ["charlie", "delta", "echo"]),
}

# the column type each database gives a cursor of each kind
COLUMN_TYPES = {
    "sqlite": {
        "timestamptz": "TIMESTAMP",  # SQLite keeps date-times as ISO text (here in UTC)
        "timestamp": "DATETIME",
        "date": "DATE",
        "integer": "INTEGER",
        "decimal": "REAL",
        "text": "TEXT",
    },
    "postgresql": {
        "timestamptz": "timestamptz",
        "timestamp": "timestamp",
        "date": "date",
        "integer": "bigint",
        "decimal": "numeric(14,4)",
        "text": "text",
    },
    "mariadb": {
        "timestamptz": "timestamp(6) NULL",  # MariaDB's TIMESTAMP stores UTC instants
        "timestamp": "datetime(6)",
        "date": "date",
        "integer": "bigint",
        "decimal": "decimal(14,4)",
        "text": "varchar(40)",
    },
}


def stored(database: str, value: Any) -> Any:
    """The value as the test writes it into `database`."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        instant = value.astimezone(UTC)
        if database == "sqlite":
            return instant.isoformat(" ")
        if database == "mariadb":
            return instant.replace(tzinfo=None)  # the test's session time zone is UTC
    if database == "sqlite" and isinstance(value, dt.date | Decimal):
        return str(value) if isinstance(value, dt.date) else float(value)
    return value


def expected_ids(first: list[Any], every: list[Any]) -> list[int]:
    """Ids (1-based positions in `every`) of the rows strictly past the last row of `first` in
    (cursor, id) order, in that order; typed Python comparison (instants as instants)."""
    last = max((value, number) for number, value in enumerate(first, 1))
    rows = sorted((value, number) for number, value in enumerate(every, 1))
    return [number for value, number in rows if (value, number) > last]


# --- The landlord's ERP ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    """One PostgreSQL and one MariaDB database for the module; each test has its own table."""
    with temporary_postgres_database() as postgres, temporary_mariadb_database() as mariadb:
        yield {"postgresql": postgres, "mariadb": mariadb}


def erp_url(database: str, servers: dict[str, str], tmp_path: Path) -> str:
    if database == "sqlite":
        path = tmp_path / "erp.db"
        sqlite3.connect(path).close()
        return f"sqlite:///{path}"
    return servers[database]


def engine_for(url: str) -> sa.Engine:
    engine = sa.create_engine(url)
    if engine.dialect.name == "mysql":

        @sa.event.listens_for(engine, "connect")
        def utc(dbapi_connection: Any, record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("SET time_zone = '+00:00'")
            cursor.close()

    return engine


class Erp:
    """A ledger table `table` whose cursor column `curseur` holds values of one kind."""

    def __init__(self, url: str, database: str, kind: str, table: str) -> None:
        self.url, self.database, self.kind, self.table = url, database, kind, table
        self.engine = engine_for(url)
        self.count = 0
        with self.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
            conn.exec_driver_sql(
                f"CREATE TABLE {table} (id integer PRIMARY KEY, compte varchar(10),"
                f" date_ecriture varchar(10), code varchar(5), montant varchar(12),"
                f" curseur {COLUMN_TYPES[database][kind]})"
            )

    def add(self, values: list[Any]) -> None:
        if not values:
            return
        rows = []
        for value in values:
            self.count += 1
            rows.append(
                {
                    "id": self.count,
                    "compte": f"T{self.count:03d}",
                    "date_ecriture": "2026-02-01",
                    "code": "LOY",
                    "montant": f"{400 + self.count}.25",
                    "curseur": stored(self.database, value),
                }
            )
        statement = sa.text(
            f"INSERT INTO {self.table} (id, compte, date_ecriture, code, montant, curseur)"
            " VALUES (:id, :compte, :date_ecriture, :code, :montant, :curseur)"
        )
        with self.engine.begin() as conn:
            conn.execute(statement, rows)

    def drop(self) -> None:
        with self.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self.table}")
        self.engine.dispose()


@pytest.fixture
def make_erp(servers: dict[str, str], tmp_path: Path) -> Iterator[Callable[[str, str], Erp]]:
    made: list[Erp] = []

    def make(database: str, kind: str) -> Erp:
        url = erp_url(database, servers, tmp_path)
        erp = Erp(url, database, kind, f"ecritures_{kind}_{len(made)}_{tmp_path.name[-12:]}")
        erp.table = re.sub(r"\W", "_", erp.table).lower()
        made.append(erp)
        return erp

    yield make
    for erp in made:
        erp.drop()


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[Warehouse]:
    yield from migrated_warehouse(f"sqlite:///{tmp_path}/warehouse.db")


def source_settings(erp: Erp, reader: str, shape: str) -> dict[str, Any]:
    """The datafix `erp` source reading the table through SQLAlchemy (`sql`) or ODBC."""
    if reader == "sql":
        settings: dict[str, Any] = {"kind": "sql", "url": erp.url}
    else:
        settings = {"kind": "odbc", "connection": odbc_connection_string(erp.url)}
    if shape == "table":
        settings["table"] = erp.table
    else:
        settings["query"] = (
            f"SELECT id, compte, date_ecriture, code, montant, curseur FROM {erp.table}"
            " WHERE code = 'LOY'"
        )
    settings["key"] = ["id"]
    settings["cursor"] = {"column": "curseur"}
    return settings


def ledger_datafix(folder: Path, erp: Erp, reader: str, shape: str) -> Path:
    return incremental_ledger_datafix(
        folder,
        ("curseur-habitat", "Curseur Habitat"),
        source_settings(erp, reader, shape),
    )


def first_pull(
    make_erp: Callable[[str, str], Erp],
    warehouse: Warehouse,
    folder: Path,
    database: str,
    kind: str,
    reader: str = "sql",
    shape: str = "query",
) -> tuple[Erp, Path]:
    """An ERP table of `kind` holding its first values, its datafix, and a first run that
    loads every one of them (asserted)."""
    first, _ = VALUES[kind]
    erp = make_erp(database, kind)
    erp.add(first)
    document = ledger_datafix(folder, erp, reader, shape)
    assert run_ledger_once(document, warehouse, "run-1") == len(first)
    return erp, document


def loaded_refs(warehouse: Warehouse) -> list[str]:
    with warehouse.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT entry_ref FROM ledger_entries")).scalars().all()
    return sorted(rows, key=int)


CASES = [
    pytest.param(database, reader, kind, id=f"{database}-{reader}-{kind}")
    for database, reader in (
        ("sqlite", "sql"),
        ("postgresql", "sql"),
        ("mariadb", "sql"),
        ("postgresql", "odbc"),
        ("mariadb", "odbc"),
    )
    for kind in KINDS
]


@pytest.mark.postgres
@pytest.mark.mariadb
@pytest.mark.parametrize("shape", ["table", "query"])
@pytest.mark.parametrize(("database", "reader", "kind"), CASES)
def test_three_pulls_read_everything_then_the_new_rows_then_nothing(
    make_erp: Callable[[str, str], Erp],
    warehouse: Warehouse,
    tmp_path: Path,
    database: str,
    reader: str,
    kind: str,
    shape: str,
) -> None:
    first, added = VALUES[kind]
    erp, document = first_pull(make_erp, warehouse, tmp_path, database, kind, reader, shape)
    assert loaded_refs(warehouse) == [str(n) for n in range(1, len(first) + 1)]

    erp.add(added)
    new = expected_ids(first, first + added)
    assert len(new) == len(added)  # the test's own values: every added row is past the mark
    assert run_ledger_once(document, warehouse, "run-2") == len(new)
    assert loaded_refs(warehouse) == [str(n) for n in range(1, len(first) + len(added) + 1)]

    assert run_ledger_once(document, warehouse, "run-3") == 0
    watermark = warehouse.cursor("curseur-habitat", "ledger_entries", "erp")
    assert watermark is not None and watermark.key_values == (str(new[-1]),)


# --- The case, through the command -----------------------------------------------------


@pytest.mark.slow
@pytest.mark.postgres
def test_datafix_run_on_a_postgresql_timestamp_cursor_transfers_nothing_the_third_time(
    hub_home: Path, tmp_path: Path
) -> None:
    first = [at(f"2026-03-01 {hour:02d}:15:00") for hour in range(8, 13)]
    added = [first[-1], at("2026-03-01 13:00:00.5"), at("2026-03-02 07:00:00")]
    folder = tmp_path / "datafixes"
    folder.mkdir()
    with temporary_postgres_database() as url:
        erp = Erp(url, "postgresql", "timestamp", "ecritures")
        try:
            erp.add(first)
            ledger_datafix(folder, erp, "sql", "query")
            env = {"DATAFIX_DATAFIXES_DIR": str(folder)}
            runs = []
            for added_now in ([], added, []):
                erp.add(added_now)
                completed = datafix("run", "curseur-habitat", env=env)
                runs.append(completed)
                assert completed.returncode == 0, completed.stdout + completed.stderr
        finally:
            erp.drop()
    with connected(f"sqlite:///{hub_home}/warehouse.db") as conn:
        reads = conn.execute(
            sa.text(
                "SELECT read, loaded FROM load_runs WHERE entity = 'ledger_entries'"
                " ORDER BY finished_at"
            )
        ).all()
        loaded = conn.execute(sa.text("SELECT count(*) FROM ledger_entries")).scalar_one()
    new = expected_ids(first, first + added)
    # two loads (every row, then the new ones); the third run read nothing and loaded nothing
    assert [tuple(row) for row in reads] == [(len(first), len(first)), (len(new), len(new))]
    assert loaded == len(first) + len(added)
    assert re.search(r"ledger_entries\s+unchanged", runs[2].stdout), runs[2].stdout


# --- Stored watermarks ---------------------------------------------------------------------------


@pytest.mark.postgres
def test_a_watermark_stored_without_its_type_still_resumes(
    make_erp: Callable[[str, str], Erp], warehouse: Warehouse, tmp_path: Path
) -> None:
    """Warehouses written before watermarks kept their type hold only the cursor's text."""
    _, added = VALUES["timestamptz"]
    erp, document = first_pull(make_erp, warehouse, tmp_path, "postgresql", "timestamptz")
    with warehouse.engine.begin() as conn:
        conn.execute(sa.text("UPDATE feed_cursors SET value_kinds = NULL"))
    erp.add(added)
    assert run_ledger_once(document, warehouse, "run-2") == len(added)
    assert run_ledger_once(document, warehouse, "run-3") == 0


@pytest.mark.postgres
def test_a_cursor_column_whose_type_changed_is_named_with_the_fix(
    make_erp: Callable[[str, str], Erp], warehouse: Warehouse, tmp_path: Path
) -> None:
    erp, document = first_pull(make_erp, warehouse, tmp_path, "postgresql", "integer")
    with erp.engine.begin() as conn:
        conn.exec_driver_sql(
            f"ALTER TABLE {erp.table} ALTER COLUMN curseur TYPE timestamptz"
            " USING timestamptz '2026-03-01 08:00:00+00' + curseur * interval '1 minute'"
        )
    with pytest.raises(ConfigError) as refused:
        run_ledger_once(document, warehouse, "run-2")
    message = str(refused.value)
    assert "source `erp`" in message and "`curseur`" in message
    assert "integer" in message and "timestamp" in message
    assert "datafix reset-cursor curseur-habitat erp" in message
    # nothing moved: the watermark is still the first run's
    watermark = warehouse.cursor("curseur-habitat", "ledger_entries", "erp")
    assert watermark is not None and watermark.value == "99"


@pytest.mark.postgres
def test_a_watermark_set_by_hand_is_read_as_the_column_type(
    make_erp: Callable[[str, str], Erp], warehouse: Warehouse, tmp_path: Path
) -> None:
    """`datafix reset-cursor … --to VALUE` keeps no kind: the value is bound as the column's."""
    first, added = VALUES["timestamptz"]
    erp = make_erp("postgresql", "timestamptz")
    erp.add(first + added)
    document = ledger_datafix(tmp_path, erp, "sql", "query")
    run_ledger_once(document, warehouse, "run-1")
    since = at("2026-03-01 10:15:00+01:00")  # 09:15 UTC, inclusive
    warehouse.reset_cursor("curseur-habitat", ["ledger_entries"], to=str(since))
    expected = sum(1 for value in first + added if value >= since)
    assert expected == 2
    assert run_ledger_once(document, warehouse, "run-2") == expected

    warehouse.reset_cursor("curseur-habitat", ["ledger_entries"], to="yesterday")
    with pytest.raises(ConfigError) as refused:
        run_ledger_once(document, warehouse, "run-3")
    message = str(refused.value)
    assert "source `erp`" in message and "`curseur`" in message
    assert "'yesterday'" in message and "write it like" in message
