"""The SQL reader against real databases: a SQLite file, the machine's PostgreSQL and MariaDB.

Each test builds its own tables (PostgreSQL and MariaDB: in a fresh database dropped after).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.errors import ConfigError, RetriableError
from connectors.sql.client import read_sql, read_sql_header
from tests.casedata import parametrize


def rows_of(table) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    return table.frame.to_dict("records")


# --- SQLite ---------------------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    path = tmp_path / "erp.db"
    with sqlite3.connect(path) as connection:
        connection.executescript(
            """
            CREATE TABLE "Bons de travaux" (
                "N° BT" TEXT PRIMARY KEY, site TEXT, montant NUMERIC(12, 2), taux REAL,
                commande DATE, maj TIMESTAMP, urgent BOOLEAN, photo BLOB
            );
            INSERT INTO "Bons de travaux" VALUES
                ('BT345679', 'Les Tilleuls', 1500, 0.1, '2026-03-03', '2026-03-03 14:30:00', 0,
                 NULL),
                ('BT345678', 'Éléonore "B"', 1234.5, 1e-05, '2026-03-02', NULL, 1, x'00ff'),
                ('BT345680', NULL, -12.25, NULL, NULL, NULL, NULL, NULL);
            CREATE TABLE lignes (bt TEXT, ligne INTEGER, libelle TEXT, PRIMARY KEY (bt, ligne));
            INSERT INTO lignes VALUES ('BT1', 2, 'b'), ('BT1', 1, 'a'), ('BT0', 9, 'z');
            CREATE VIEW sites AS SELECT DISTINCT site FROM "Bons de travaux";
            """
        )
    return f"sqlite:///{path}"


def test_sqlite_table_with_key(sqlite_url: str) -> None:
    table = read_sql(sqlite_url, table="Bons de travaux", key=["N° BT"])
    assert rows_of(table) == [
        {
            "N° BT": "BT345678",
            "site": 'Éléonore "B"',
            "montant": "1234.5",
            "taux": "0.00001",
            "commande": "2026-03-02",
            "maj": "",
            "urgent": "1",
            "photo": "00ff",
        },
        {
            "N° BT": "BT345679",
            "site": "Les Tilleuls",
            "montant": "1500",
            "taux": "0.1",
            "commande": "2026-03-03",
            "maj": "2026-03-03 14:30:00",
            "urgent": "0",
            "photo": "",
        },
        {
            "N° BT": "BT345680",
            "site": "",
            "montant": "-12.25",
            "taux": "",
            "commande": "",
            "maj": "",
            "urgent": "",
            "photo": "",
        },
    ]
    assert table.source_rows.tolist() == [
        "Bons de travaux:N° BT=BT345678",
        "Bons de travaux:N° BT=BT345679",
        "Bons de travaux:N° BT=BT345680",
    ]
    assert "Bons de travaux" in table.origin
    for column in table.frame.columns:
        assert all(type(value) is str for value in table.frame[column].tolist())


def test_sqlite_compound_key_orders_and_names_rows(sqlite_url: str) -> None:
    table = read_sql(sqlite_url, table="lignes", key=["bt", "LIGNE"])
    assert table.source_rows.tolist() == [
        "lignes:bt=BT0,LIGNE=9",
        "lignes:bt=BT1,LIGNE=1",
        "lignes:bt=BT1,LIGNE=2",
    ]


def test_sqlite_query_without_key_numbers_rows(sqlite_url: str) -> None:
    table = read_sql(
        sqlite_url,
        query='SELECT "N° BT" AS bt, site AS x, montant AS x FROM "Bons de travaux" ORDER BY 1',
    )
    assert list(table.frame.columns) == ["bt", "x", "x (2)"]
    assert table.frame["x (2)"].tolist() == ["1234.5", "1500", "-12.25"]
    assert table.source_rows.tolist() == ["query:row 1", "query:row 2", "query:row 3"]


@pytest.mark.parametrize("chunk_rows", [1, 2, 50_000])
def test_sqlite_chunks_do_not_change_the_result(sqlite_url: str, chunk_rows: int) -> None:
    whole = read_sql(sqlite_url, table="Bons de travaux", key=["N° BT"])
    chunked = read_sql(sqlite_url, table="Bons de travaux", key=["N° BT"], chunk_rows=chunk_rows)
    assert rows_of(chunked) == rows_of(whole)
    assert chunked.source_rows.tolist() == whole.source_rows.tolist()
    assert chunked.fingerprint == whole.fingerprint


def test_sqlite_view_and_empty_result(sqlite_url: str) -> None:
    assert len(read_sql(sqlite_url, table="sites")) == 3
    empty = read_sql(sqlite_url, query="SELECT site FROM sites WHERE site = 'none'")
    assert list(empty.frame.columns) == ["site"] and len(empty) == 0


@parametrize("sql_queries", "fingerprint-changes", "change")
def test_sqlite_fingerprint_follows_every_value(sqlite_url: str, change: str) -> None:
    before = read_sql(sqlite_url, table="lignes")
    assert read_sql(sqlite_url, table="lignes").fingerprint == before.fingerprint
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as connection:
        connection.execute(change)
    assert read_sql(sqlite_url, table="lignes").fingerprint != before.fingerprint


def test_sqlite_connection_is_read_only(sqlite_url: str) -> None:
    flag = read_sql(sqlite_url, query="PRAGMA query_only")
    assert flag.frame.iloc[0, 0] == "1"
    with pytest.raises(ConfigError, match=r"attempt to write a readonly database"):
        read_sql(sqlite_url, query="INSERT INTO lignes VALUES ('BT9', 1, 'x')")
    assert len(read_sql(sqlite_url, table="lignes")) == 3


def test_sqlite_header(sqlite_url: str) -> None:
    assert read_sql_header(sqlite_url, table="lignes") == ["bt", "ligne", "libelle"]
    assert read_sql_header(sqlite_url, query="SELECT 1 AS a, 2 AS A") == ["a", "A (2)"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            {"table": "ligne"},
            r"no table or view `ligne` in the database \(there: Bons de travaux, lignes, sites\)"
            r" — did you mean `lignes`\?",
            id="missing-table",
        ),
        pytest.param(
            {"table": "lignes", "key": ["num"]},
            r"key column `num` is not among the columns \(bt, ligne, libelle\)",
            id="missing-key-column-table",
        ),
        pytest.param(
            {"query": "SELECT bt FROM lignes", "key": ["ligne"]},
            r"key column `ligne` is not among the columns \(bt\)",
            id="missing-key-column-query",
        ),
        pytest.param(
            {"query": "SELECT nope FROM lignes"},
            r"reading query failed: no such column: nope — fix the datafix `table` or `query`",
            id="bad-query",
        ),
        pytest.param({}, "give exactly one of `table` or `query`", id="neither"),
        pytest.param(
            {"table": "lignes", "query": "SELECT 1"},
            "give exactly one of `table` or `query`",
            id="both",
        ),
    ],
)
def test_sqlite_configuration_errors(sqlite_url: str, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        read_sql(sqlite_url, **options)


@pytest.mark.parametrize(
    ("url", "error", "message"),
    [
        pytest.param(
            "sqlite:///{tmp}/absent.db",
            ConfigError,
            r"no SQLite database file at .*absent\.db",
            id="sqlite-file-missing",
        ),
        pytest.param(
            "mysql+pymysql://erp:S3cr3t-pw@db.example/erp",
            ConfigError,
            r"driver `pymysql` is not installed — install it with `pip install PyMySQL`",
            id="driver-missing",
        ),
        pytest.param(
            "postgress://erp:S3cr3t-pw@db/erp",
            ConfigError,
            r"unknown database kind `postgress`",
            id="unknown-dialect",
        ),
        pytest.param("not a url S3cr3t-pw", ConfigError, "is not a database URL", id="not-a-url"),
    ],
)
def test_url_problems_are_config_errors_without_password(
    tmp_path: Path, url: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as raised:
        read_sql(url.format(tmp=tmp_path), table="t")
    assert "S3cr3t-pw" not in str(raised.value)


# --- PostgreSQL -----------------------------------------------------------------------------


@pytest.fixture
def postgres_url(postgres_database) -> Iterator[str]:  # type: ignore[no-untyped-def]
    with postgres_database() as url:
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            connection.exec_driver_sql(
                """
                CREATE SCHEMA "ERP";
                CREATE TABLE "ERP"."Engagements" (
                    "N° BT" text PRIMARY KEY, montant numeric(12, 2), signe_le timestamptz,
                    jour date, heure time, duree interval, valide boolean, details jsonb,
                    uid uuid, piece bytea, taux double precision, compteur bigint,
                    maj timestamp
                );
                INSERT INTO "ERP"."Engagements" VALUES
                    ('BT345678', 1234.50, '2026-03-01 14:30:00+01', '2026-03-01', '08:15',
                     '30 hours 5 minutes', true, '{"lot": "A"}',
                     '6f1c0a9e-4a55-4a3b-9c7e-1234567890ab', '\\x00ff', 0.1,
                     9007199254740993, '2026-03-01 00:00:00.25'),
                    ('BT345679', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                     NULL, NULL);
                CREATE SEQUENCE public.compteur;
                CREATE TABLE public.lignes (id integer PRIMARY KEY, libelle text);
                INSERT INTO public.lignes SELECT n, 'ligne ' || n FROM generate_series(1, 120) n;
                """
            )
        engine.dispose()
        yield url


@pytest.mark.postgres
def test_postgres_types_and_quoted_identifiers(postgres_url: str) -> None:
    table = read_sql(postgres_url, table="Engagements", schema="ERP", key=["N° BT"])
    assert rows_of(table)[0] == {
        "N° BT": "BT345678",
        "montant": "1234.50",
        "signe_le": "2026-03-01 13:30:00+00:00",  # the session's time zone (UTC) with its offset
        "jour": "2026-03-01",
        "heure": "08:15:00",
        "duree": "30:05:00",
        "valide": "true",
        "details": '{"lot": "A"}',
        "uid": "6f1c0a9e-4a55-4a3b-9c7e-1234567890ab",
        "piece": "00ff",
        "taux": "0.1",
        "compteur": "9007199254740993",
        "maj": "2026-03-01 00:00:00.250000",
    }
    assert set(rows_of(table)[1].values()) == {"BT345679", ""}
    assert table.source_rows.tolist() == [
        "Engagements:N° BT=BT345678",
        "Engagements:N° BT=BT345679",
    ]
    assert "ERP.Engagements" in table.origin
    assert read_sql_header(postgres_url, table="Engagements", schema="ERP")[:2] == [
        "N° BT",
        "montant",
    ]


@pytest.mark.postgres
def test_postgres_streams_in_chunks(postgres_url: str) -> None:
    chunked = read_sql(postgres_url, table="lignes", chunk_rows=50)
    whole = read_sql(postgres_url, query="SELECT * FROM lignes ORDER BY id")
    assert len(chunked) == 120
    assert chunked.frame["libelle"].tolist() == [f"ligne {n}" for n in range(1, 121)]
    assert chunked.source_rows.tolist()[-1] == "lignes:row 120"
    assert chunked.fingerprint == whole.fingerprint  # same text values, same fingerprint


@pytest.mark.postgres
def test_postgres_transaction_is_read_only(postgres_url: str) -> None:
    flag = read_sql(postgres_url, query="SELECT current_setting('transaction_read_only') AS ro")
    assert flag.frame["ro"].tolist() == ["on"]
    with pytest.raises(ConfigError, match=r"cannot execute nextval\(\) in a read-only transaction"):
        read_sql(postgres_url, query="SELECT nextval('compteur') AS n")
    with pytest.raises(ConfigError, match="fix the datafix `table` or `query`"):
        read_sql(
            postgres_url,
            query="WITH gone AS (DELETE FROM lignes RETURNING *) SELECT count(*) FROM gone",
        )
    assert len(read_sql(postgres_url, table="lignes")) == 120


@pytest.mark.postgres
def test_postgres_missing_table_lists_the_schema(postgres_url: str) -> None:
    with pytest.raises(ConfigError, match=r"no table or view `engagements` in schema `ERP`"):
        read_sql(postgres_url, table="engagements", schema="ERP")


@pytest.mark.postgres
def test_postgres_connection_problems_hide_the_password() -> None:
    bad_database = "postgresql+psycopg://postgres:S3cr3t-pw@127.0.0.1:5432/datafix_no_such_db"
    with pytest.raises(ConfigError) as raised:
        read_sql(bad_database, table="t")
    assert 'database "datafix_no_such_db" does not exist' in str(raised.value)
    assert "postgres:***@127.0.0.1" in str(raised.value)
    assert "S3cr3t-pw" not in str(raised.value)
    refused = "postgresql+psycopg://postgres:S3cr3t-pw@127.0.0.1:1/test"
    with pytest.raises(RetriableError, match="Connection refused") as raised:
        read_sql(refused, table="t")
    assert "S3cr3t-pw" not in str(raised.value)


# --- MariaDB (over ODBC, as the hub reaches it) ---------------------------------------------


@pytest.mark.mariadb
def test_mariadb_table_and_read_only(mariadb_url: str) -> None:
    engine = sa.create_engine(mariadb_url)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE `commandes` (id INT PRIMARY KEY, `N° BT` VARCHAR(20),"
            " montant DECIMAL(12, 2), taux DOUBLE, le DATETIME(6), jour DATE)"
        )
        connection.exec_driver_sql(
            "INSERT INTO commandes VALUES (2, 'BT2', NULL, 1e-12, NULL, NULL),"
            " (1, 'BT1', 1234.5, 0.1, '2026-03-01 14:30:00', '2026-03-01')"
        )
    engine.dispose()
    table = read_sql(mariadb_url, table="commandes", key=["id"])
    assert rows_of(table) == [
        {
            "id": "1",
            "N° BT": "BT1",
            "montant": "1234.50",
            "taux": "0.1",  # the driver's float, not a Decimal rounded to 10 places
            "le": "2026-03-01 14:30:00",
            "jour": "2026-03-01",
        },
        {"id": "2", "N° BT": "BT2", "montant": "", "taux": "0.000000000001", "le": "", "jour": ""},
    ]
    assert table.source_rows.tolist() == ["commandes:id=1", "commandes:id=2"]
    with pytest.raises(ConfigError, match="READ ONLY transaction"):
        read_sql(mariadb_url, query="INSERT INTO commandes (id) VALUES (3)")
    assert len(read_sql(mariadb_url, table="commandes")) == 2
