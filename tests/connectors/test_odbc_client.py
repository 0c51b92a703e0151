"""The ODBC reader against the machine's PostgreSQL and MariaDB, through their real ODBC drivers.

The same ERP tables are built in a fresh PostgreSQL database and a fresh MariaDB database (one
per module, dropped after), then read with `read_odbc` and with the SQLAlchemy reader `read_sql`
(psycopg for PostgreSQL, `mysql+pyodbc` for MariaDB): both must give the same `RawTable` — the
same columns, text values, lineage and fingerprint. Without the ODBC drivers the tests skip on a
workstation and fail with `CI=true`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from connectors.errors import ConfigError, PermanentError, RetriableError
from connectors.rawtable import RawTable
from connectors.sql.client import read_sql, read_sql_header
from connectors.sql.odbc import (
    DIALECTS,
    iter_odbc,
    odbc_drivers,
    read_odbc,
    read_odbc_header,
    resolve_connection_string,
)
from tests.conftest import (
    POSTGRES_HOST,
    POSTGRES_ODBC_DRIVER,
    POSTGRES_PORT,
    POSTGRES_USER,
    new_database_name,
    odbc_connection_string,
    run_postgres_admin,
    service_unavailable,
    temporary_mariadb_database,
    temporary_postgres_database,
)

PASSWORD = "S3cr3t-pw;{x}"  # holds the characters that need braces in a connection string
BRACED_PASSWORD = "{S3cr3t-pw;{x}}}"  # as written in one: `}` doubled

# --- The ERP fixture ------------------------------------------------------------------------

LEDGER_COLUMNS = """
    "Pièce" varchar(13) NOT NULL, "Ligne" integer NOT NULL, locataire_id bigint,
    "Locataire" varchar(60), montant numeric(12, 2), date_piece date, saisie_le {timestamp},
    lettre boolean, libelle text, PRIMARY KEY ("Pièce", "Ligne")
"""
# (Pièce, Ligne) is the key's order, not the alphabetical one: MariaDB's driver reports the
# primary key columns in the wrong order, the reader must not follow it.
LEDGER_ROWS = [
    (
        "FA0002",
        1,
        1001,
        "Éléonore Dupré",
        Decimal("1234.50"),
        dt.date(2026, 3, 1),
        dt.datetime(2026, 3, 1, 14, 30),
        True,
        "Loyer mars — résidence « Les Tilleuls »",
    ),
    (
        "FA0001",
        2,
        1002,
        "O'Brien",
        Decimal("-12.25"),
        dt.date(2026, 2, 28),
        dt.datetime(2026, 2, 28, 9, 5, 7, 250000),
        False,
        "",
    ),
    (
        "FA0001",
        1,
        9007199254740993,
        "Zoé Çelik",
        Decimal("0.00"),
        dt.date(2025, 12, 31),
        dt.datetime(2025, 12, 31, 23, 59, 59),
        None,
        None,
    ),
    ("AV0001", 1, 1003, None, None, None, None, False, "é" * 5000),
    (
        "FA0001",
        10,
        1004,
        "  espaces  ",
        Decimal("9999999999.99"),
        dt.date(2026, 1, 15),
        dt.datetime(2026, 1, 15),
        True,
        "ligne 10",
    ),
]
# what PostgreSQL gives, in key order (Pièce, Ligne)
LEDGER_TEXT = [
    ["AV0001", "1", "1003", "", "", "", "", "false", "é" * 5000],
    [
        "FA0001",
        "1",
        "9007199254740993",
        "Zoé Çelik",
        "0.00",
        "2025-12-31",
        "2025-12-31 23:59:59",
        "",
        "",
    ],
    [
        "FA0001",
        "2",
        "1002",
        "O'Brien",
        "-12.25",
        "2026-02-28",
        "2026-02-28 09:05:07.250000",
        "false",
        "",
    ],
    [
        "FA0001",
        "10",
        "1004",
        "  espaces  ",
        "9999999999.99",
        "2026-01-15",
        "2026-01-15 00:00:00",
        "true",
        "ligne 10",
    ],
    [
        "FA0002",
        "1",
        "1001",
        "Éléonore Dupré",
        "1234.50",
        "2026-03-01",
        "2026-03-01 14:30:00",
        "true",
        "Loyer mars — résidence « Les Tilleuls »",
    ],
]
LEDGER_LABELS = [
    "Pièce",
    "Ligne",
    "locataire_id",
    "Locataire",
    "montant",
    "date_piece",
    "saisie_le",
    "lettre",
    "libelle",
]

# a primary key whose order is not the columns' order (MariaDB's driver reports the latter)
SCHEDULE = (
    "CREATE TABLE echeances (bail varchar(10), echeance date, montant numeric(12, 2),"
    " PRIMARY KEY (echeance, bail));"
    "INSERT INTO echeances VALUES ('B2', '2026-01-05', 410.00), ('B1', '2026-02-05', 380.5),"
    " ('B1', '2026-01-05', 380.5), ('B2', '2026-02-05', 410.00)"
)

# journal: 10 rows before the bound, 5,000 rows exactly at it, 10 after
BOUND = "2026-03-01 10:00:00"
JOURNAL_CASE = (
    "CASE WHEN {n} <= 10 THEN TIMESTAMP '2026-02-28 23:59:59'"
    " WHEN {n} <= 5010 THEN TIMESTAMP '2026-03-01 10:00:00'"
    " ELSE TIMESTAMP '2026-03-01 10:00:01' END"
)


@dataclass(frozen=True)
class Database:
    """One fixture database, reachable over ODBC and through SQLAlchemy."""

    engine: str  # "postgres" or "mariadb"
    odbc: str  # ODBC connection string, without a password
    url: str  # SQLAlchemy URL for read_sql
    name: str

    def odbc_with(self, **parts: str) -> str:
        return resolve_connection_string(self.odbc, **parts)


def require_odbc_driver(name: str) -> None:
    """Skip on a workstation, fail in CI, when unixODBC does not know the driver."""
    try:
        drivers = odbc_drivers()
    except ConfigError as error:
        service_unavailable(f"{error} (run .ci/system-deps.sh)")
    if name not in drivers:
        service_unavailable(
            f"ODBC driver {name!r} is not registered with unixODBC (found {drivers}); run"
            " .ci/system-deps.sh (Debian packages odbc-postgresql, odbc-mariadb)"
        )


@pytest.fixture(scope="module")
def postgres() -> Iterator[Database]:
    require_odbc_driver(POSTGRES_ODBC_DRIVER)
    with temporary_postgres_database() as url:
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            connection.exec_driver_sql(
                f"CREATE TABLE ledger ({LEDGER_COLUMNS.format(timestamp='timestamp')})"
            )
            connection.execute(
                sa.text("INSERT INTO ledger VALUES (:p, :l, :t, :n, :m, :d, :s, :b, :x)"),
                [dict(zip("pltnmdsbx", row, strict=True)) for row in LEDGER_ROWS],
            )
            connection.exec_driver_sql(
                "CREATE TABLE journal (id integer PRIMARY KEY, modified_at timestamp NOT NULL,"
                " label text);"
                f" INSERT INTO journal SELECT n, {JOURNAL_CASE.format(n='n')}, 'écriture ' || n"
                " FROM generate_series(1, 5020) n;"
                """CREATE TABLE "Bons de Travaux" ("N° BT" text PRIMARY KEY, "Site" text);"""
                """INSERT INTO "Bons de Travaux" VALUES ('BT2', 'Les Tilleuls'), ('BT1', NULL);"""
                f"{SCHEDULE};"
                """CREATE TABLE "it's" (id integer PRIMARY KEY);"""
                """INSERT INTO "it's" VALUES (1);"""
                "CREATE TABLE extras (id integer PRIMARY KEY, uid uuid, heure time,"
                " duree interval, piece bytea, details jsonb, taux double precision,"
                " reel real, signe_le timestamptz);"
                "INSERT INTO extras VALUES (1, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',"
                " '08:15', '30 hours 5 minutes', '\\x00ff', '{\"lot\": [1, 2]}', 0.1, 0.1,"
                " '2026-03-01 14:30:00+01'), (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
            )
        engine.dispose()
        name = str(sa.make_url(url).database)
        odbc = odbc_connection_string(url)
        yield Database("postgres", odbc, url, name)


def _mariadb_admin(odbc: str):  # type: ignore[no-untyped-def]
    import pyodbc

    connection = pyodbc.connect(odbc, autocommit=True)
    # MariaDB Connector/ODBC 3.1 garbles UTF-16 parameters of 255 characters or more
    connection.setencoding(encoding="utf-8")
    return connection


def _mariadb_parameters(row: tuple[object, ...]) -> tuple[object, ...]:
    """Date-times as ISO text: MariaDB Connector/ODBC 3.1 drops a timestamp parameter's fraction."""
    return tuple(value.isoformat(" ") if isinstance(value, dt.datetime) else value for value in row)


@pytest.fixture(scope="module")
def mariadb() -> Iterator[Database]:
    with temporary_mariadb_database() as url:
        name = str(sa.make_url(url).database)
        odbc = odbc_connection_string(url)
        admin = _mariadb_admin(odbc)
        try:
            admin.execute(
                "SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')"
            )  # the same CREATE TABLE text as PostgreSQL
            admin.execute(f"CREATE TABLE ledger ({LEDGER_COLUMNS.format(timestamp='datetime(6)')})")
            admin.cursor().executemany(
                "INSERT INTO ledger VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [_mariadb_parameters(row) for row in LEDGER_ROWS],
            )
            admin.execute(
                "CREATE TABLE journal (id integer PRIMARY KEY, modified_at datetime NOT NULL,"
                " label text)"
            )
            admin.execute(
                f"INSERT INTO journal SELECT seq, {JOURNAL_CASE.format(n='seq')},"
                " CONCAT('écriture ', seq) FROM seq_1_to_5020"
            )
            admin.execute(
                """CREATE TABLE "Bons de Travaux" ("N° BT" varchar(10) PRIMARY KEY, "Site" text)"""
            )
            admin.execute(
                """INSERT INTO "Bons de Travaux" VALUES ('BT2', 'Les Tilleuls'), ('BT1', NULL)"""
            )
            for statement in SCHEDULE.split(";"):
                admin.execute(statement)
            admin.execute("CREATE TABLE notes (id integer PRIMARY KEY, body text)")
            admin.execute("INSERT INTO notes VALUES (1, ?), (2, ?)", "é" * 300, "é" * 299)
        finally:
            admin.close()
        yield Database("mariadb", odbc, url, name)


@pytest.fixture(
    params=[
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ]
)
def database(request: pytest.FixtureRequest) -> Database:
    """Each test taking it runs once on PostgreSQL and once on MariaDB."""
    return request.getfixturevalue(request.param)


def assert_same(odbc: RawTable, sql: RawTable) -> None:
    """The two readers' tables are the same: columns, text values, lineage, fingerprint."""
    assert list(odbc.frame.columns) == list(sql.frame.columns)
    pd.testing.assert_frame_equal(odbc.frame, sql.frame)
    pd.testing.assert_series_equal(odbc.source_rows, sql.source_rows)
    assert odbc.fingerprint == sql.fingerprint


# --- Same RawTable as the SQLAlchemy reader -------------------------------------------------


@pytest.mark.postgres
def test_postgres_ledger_as_text(postgres: Database) -> None:
    table = read_odbc(postgres.odbc, table="ledger")
    assert list(table.frame.columns) == LEDGER_LABELS
    assert table.frame.to_numpy().tolist() == LEDGER_TEXT
    assert (table.frame.dtypes == "str").all()
    assert table.source_rows.tolist() == [f"ledger:row {n}" for n in range(1, 6)]
    assert table.origin.endswith(" ledger") and postgres.name in table.origin


@pytest.mark.parametrize(
    ("source", "key"),
    [
        pytest.param({"table": "ledger"}, (), id="table-primary-key-order"),
        pytest.param({"table": "ledger"}, ("Pièce", "Ligne"), id="table-key"),
        pytest.param({"table": "journal"}, ("id",), id="journal"),
        pytest.param({"table": "Bons de Travaux"}, ("n° bt",), id="mixed-case-key"),
        pytest.param({"table": "echeances"}, (), id="key-order-not-column-order"),
        pytest.param(
            {"query": 'SELECT "Locataire", montant FROM ledger WHERE montant > 0'},
            (),
            id="query",
        ),
    ],
)
def test_same_table_as_read_sql(
    database: Database, source: dict[str, str], key: tuple[str, ...]
) -> None:
    if database.engine == "mariadb" and "query" in source:
        source = {"query": source["query"].replace('"', "`")}
    assert_same(
        read_odbc(database.odbc, key=key, **source), read_sql(database.url, key=key, **source)
    )


@pytest.mark.postgres
def test_postgres_other_types_as_read_sql(postgres: Database) -> None:
    columns = "id, uid, heure, duree, piece, details, taux, reel"
    query = f"SELECT {columns} FROM extras ORDER BY id"
    odbc = read_odbc(postgres.odbc, query=query)
    assert_same(odbc, read_sql(postgres.url, query=query))
    assert odbc.frame.iloc[0].tolist() == [
        "1",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",  # lower case, as psycopg writes a uuid
        "08:15:00",
        "30:05:00",
        "00ff",
        '{"lot": [1, 2]}',
        "0.1",
        "0.1",
    ]


@pytest.mark.postgres
def test_postgres_timestamptz_loses_its_offset_over_odbc(postgres: Database) -> None:
    """Known difference: psqlODBC gives a timestamptz as the session's wall-clock time."""
    query = "SELECT signe_le FROM extras WHERE id = 1"
    assert read_odbc(postgres.odbc, query=query).frame.iloc[0, 0] == "2026-03-01 13:30:00"
    assert read_sql(postgres.url, query=query).frame.iloc[0, 0] == "2026-03-01 13:30:00+00:00"


@pytest.mark.postgres
@pytest.mark.mariadb
def test_mariadb_and_postgres_give_the_same_ledger(postgres: Database, mariadb: Database) -> None:
    from_postgres = read_odbc(postgres.odbc, table="ledger")
    from_mariadb = read_odbc(mariadb.odbc, table="ledger")
    # MariaDB has no boolean type: BOOLEAN is TINYINT(1), read as 1/0 by both readers
    assert from_mariadb.frame["lettre"].tolist() == ["0", "", "0", "1", "1"]
    assert from_postgres.frame["lettre"].tolist() == ["false", "", "false", "true", "true"]
    others = [label for label in LEDGER_LABELS if label != "lettre"]
    pd.testing.assert_frame_equal(from_mariadb.frame[others], from_postgres.frame[others])
    pd.testing.assert_series_equal(from_mariadb.source_rows, from_postgres.source_rows)


def test_header_as_read_sql_header(database: Database) -> None:
    assert read_odbc_header(database.odbc, table="ledger") == LEDGER_LABELS
    assert read_odbc_header(database.odbc, table="ledger") == read_sql_header(
        database.url, table="ledger"
    )
    query = "SELECT id, label AS x, modified_at AS x FROM journal"
    assert read_odbc_header(database.odbc, query=query) == ["id", "x", "x (2)"]
    assert read_odbc_header(database.odbc, query=query) == read_sql_header(
        database.url, query=query
    )


def test_chunks_of_7_rows_give_the_same_table(database: Database) -> None:
    whole = read_odbc(database.odbc, table="journal", chunk_rows=50_000)
    chunked = read_odbc(database.odbc, table="journal", chunk_rows=7)
    assert len(whole) == 5020
    assert_same(chunked, whole)
    assert chunked.frame["label"].iloc[-1] == "écriture 5020"
    assert chunked.source_rows.iloc[-1] == "journal:row 5020"
    assert_same(
        read_odbc(database.odbc, table="ledger", chunk_rows=2),
        read_odbc(database.odbc, table="ledger"),
    )


def test_streamed_chunks_add_up_to_the_whole_table(database: Database) -> None:
    whole = read_odbc(database.odbc, table="journal")
    chunks = list(iter_odbc(database.odbc, table="journal", chunk_rows=1000))
    assert [len(chunk) for chunk in chunks] == [1000] * 5 + [20]
    frame = pd.concat([chunk.frame for chunk in chunks], ignore_index=True)
    lineage = pd.concat([chunk.source_rows for chunk in chunks], ignore_index=True)
    assert frame.equals(whole.frame)
    assert lineage.tolist() == whole.source_rows.tolist()


# --- since ----------------------------------------------------------------------------------


def test_since_keeps_every_row_at_the_bound(database: Database) -> None:
    table = read_odbc(database.odbc, table="journal", key=["id"], since=("modified_at", BOUND))
    assert len(table) == 5010  # the 5,000 rows sharing the bound and the 10 after it
    assert table.frame["id"].tolist() == [str(n) for n in range(11, 5021)]
    assert (table.frame["modified_at"].iloc[:5000] == BOUND).all()
    assert table.source_rows.iloc[0] == "journal:id=11"
    literal = f"SELECT * FROM journal WHERE modified_at >= '{BOUND}' ORDER BY id"
    sql = read_sql(database.url, query=literal)
    pd.testing.assert_frame_equal(table.frame, sql.frame)
    assert table.fingerprint == sql.fingerprint
    # a date alone is midnight; a fraction of a second after the bound leaves the last 10
    day = read_odbc(database.odbc, table="journal", since=("modified_at", "2026-03-01"))
    assert len(day) == 5010
    just_after = read_odbc(
        database.odbc, table="journal", since=("Modified_At", "2026-03-01 10:00:00.5")
    )
    assert just_after.frame["id"].tolist() == [str(n) for n in range(5011, 5021)]
    future = read_odbc(database.odbc, table="journal", since=("modified_at", "2030-01-01"))
    assert len(future) == 0 and list(future.frame.columns) == ["id", "modified_at", "label"]


def test_since_on_a_query_wraps_it(database: Database) -> None:
    query = "SELECT id, label FROM journal WHERE id > 5;"
    table = read_odbc(database.odbc, query=query, key=["id"], since=("id", "5015"))
    assert table.frame["id"].tolist() == ["5015", "5016", "5017", "5018", "5019", "5020"]
    assert table.source_rows.iloc[0] == "query:id=5015"


def test_since_value_is_bound_not_spliced(database: Database) -> None:
    for value in ("O'Brien", "x' OR '1'='1", "'); DROP TABLE ledger; --"):
        table = read_odbc(database.odbc, table="ledger", since=("Locataire", value))
        quote = "`" if database.engine == "mariadb" else '"'
        escaped = value.replace("'", "''")
        literal = f"SELECT * FROM ledger WHERE {quote}Locataire{quote} >= '{escaped}'"
        expected = read_odbc(database.odbc, query=literal, key=["Pièce", "Ligne"])
        assert sorted(table.frame["Locataire"]) == sorted(expected.frame["Locataire"])
    assert (
        "O'Brien"
        in read_odbc(database.odbc, table="ledger", since=("Locataire", "O'Brien"))
        .frame["Locataire"]
        .tolist()
    )
    assert len(read_odbc(database.odbc, table="ledger")) == 5  # nothing was dropped


@pytest.mark.mariadb
def test_mariadb_long_parameter_arrives_whole(mariadb: Database) -> None:
    """MariaDB Connector/ODBC 3.1 garbles UTF-16 parameters of 255+ characters: sent as UTF-8."""
    table = read_odbc(mariadb.odbc, table="notes", since=("body", "é" * 300))
    assert table.frame["id"].tolist() == ["1"]


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("since", "message"),
    [
        (("modified_at", "01/03/2026"), r"`since` value '01/03/2026' is not a datetime"),
        (("id", "dix"), r"`since` value 'dix' is not a int"),
        (("modifie_le", BOUND), r"`since` column `modifie_le` is not among the columns"),
    ],
    ids=["not-a-date", "not-a-number", "no-such-column"],
)
def test_since_mistakes_are_config_errors(
    postgres: Database, since: tuple[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        read_odbc(postgres.odbc, table="journal", since=since)


# --- Identifiers ----------------------------------------------------------------------------


def test_table_read_in_primary_key_order(database: Database) -> None:
    table = read_odbc(database.odbc, table="echeances")
    assert table.frame.to_numpy().tolist() == [
        ["B1", "2026-01-05", "380.50"],
        ["B2", "2026-01-05", "410.00"],
        ["B1", "2026-02-05", "380.50"],
        ["B2", "2026-02-05", "410.00"],
    ]


def test_table_with_spaces_and_mixed_case(database: Database) -> None:
    table = read_odbc(database.odbc, table="Bons de Travaux", key=["N° BT"])
    assert table.frame.to_numpy().tolist() == [["BT1", ""], ["BT2", "Les Tilleuls"]]
    assert table.source_rows.tolist() == ["Bons de Travaux:N° BT=BT1", "Bons de Travaux:N° BT=BT2"]
    schema = "public" if database.engine == "postgres" else database.name
    assert_same(
        read_odbc(database.odbc, table="Bons de Travaux", schema=schema),
        read_sql(database.url, table="Bons de Travaux", schema=schema),
    )


@pytest.mark.postgres
def test_postgres_table_named_with_an_apostrophe(postgres: Database) -> None:
    assert read_odbc(postgres.odbc, table="it's").frame["id"].tolist() == ["1"]


@pytest.mark.parametrize(
    ("identifier", "place"),
    [
        ('ledger" WHERE 1=1 --', "table"),
        ('public"."ledger', "schema"),
    ],
    ids=["table", "schema"],
)
def test_identifier_with_the_quote_character_is_refused(
    database: Database, identifier: str, place: str
) -> None:
    quote = '"' if database.engine == "postgres" else "`"
    identifier = identifier.replace('"', quote)
    source = {"table": "ledger", place: identifier}
    with pytest.raises(ConfigError, match=f"contains `{quote}`, which the .* refuses to quote"):
        read_odbc(database.odbc, **source)
    with pytest.raises(ConfigError, match="refuses to quote"):
        read_odbc_header(database.odbc, **source)


@pytest.mark.parametrize(
    ("dialect", "identifier", "quoted"),
    [
        ("postgresql", "Bons de Travaux", '"Bons de Travaux"'),
        ("mysql", "Bons de Travaux", "`Bons de Travaux`"),
        ("mssql", "F_ECRITUREC", "[F_ECRITUREC]"),
        ("mssql", 'say "hi"', '[say "hi"]'),
    ],
)
def test_dialect_quoting(dialect: str, identifier: str, quoted: str) -> None:
    assert DIALECTS[dialect].quote(identifier) == quoted


@pytest.mark.parametrize(
    ("dialect", "identifier"),
    [("postgresql", 'a"b'), ("mysql", "a`b"), ("mssql", "a]b"), ("mssql", "a[b"), ("mysql", "")],
)
def test_dialect_refuses_identifiers_it_cannot_quote(dialect: str, identifier: str) -> None:
    with pytest.raises(ConfigError):
        DIALECTS[dialect].quote(identifier)


@pytest.mark.postgres
def test_explicit_dialect_overrides_the_driver_guess(postgres: Database) -> None:
    with pytest.raises(ConfigError, match="contains `]`"):
        read_odbc(postgres.odbc, table="a]b", dialect="mssql")
    with pytest.raises(ConfigError, match="unknown SQL dialect 'oracle'"):
        read_odbc(postgres.odbc, table="ledger", dialect="oracle")


# --- Read-only, errors, secrets -------------------------------------------------------------


def test_writes_are_refused(database: Database) -> None:
    statement = "DELETE FROM journal"
    with pytest.raises(PermanentError, match=r"(?i)read.only transaction"):
        read_odbc(database.odbc, query=statement)
    assert len(read_odbc(database.odbc, table="journal")) == 5020


def test_missing_table_lists_the_tables(database: Database) -> None:
    with pytest.raises(ConfigError, match=r"no table or view `jounral` .* did you mean `journal`"):
        read_odbc(database.odbc, table="jounral")
    with pytest.raises(ConfigError, match=r"key column `numero` is not among the columns"):
        read_odbc(database.odbc, table="journal", key=["numero"])


@pytest.mark.postgres
def test_postgres_errors_by_what_to_do_next(postgres: Database) -> None:
    with pytest.raises(PermanentError, match="syntax error"):
        read_odbc(postgres.odbc, query="SELEC * FROM journal")
    # the SQLSTATE decides, not a word of the message: no retry for a column named `timeout`
    with pytest.raises(ConfigError, match='column "timeout" does not exist'):
        read_odbc(postgres.odbc, query="SELECT timeout FROM journal")
    # the server ends the session in the middle of the read: a connection reset
    with pytest.raises(RetriableError, match="terminating connection"):
        read_odbc(postgres.odbc, query="SELECT pg_terminate_backend(pg_backend_pid())")
    refused = postgres.odbc.replace(f"Port={POSTGRES_PORT}", "Port=1")
    with pytest.raises(RetriableError, match="Connection refused"):
        read_odbc(refused, table="journal", timeout=5)
    missing = postgres.odbc.replace(postgres.name, "datafix_no_such_db")
    with pytest.raises(ConfigError, match='database "datafix_no_such_db" does not exist'):
        read_odbc(missing, table="journal")


@pytest.fixture
def postgres_role_without_rights(postgres: Database) -> Iterator[str]:
    role = new_database_name().replace("test", "role")
    run_postgres_admin("CREATE ROLE {} LOGIN", role)
    try:
        yield role
    finally:
        run_postgres_admin("DROP ROLE IF EXISTS {}", role)


@pytest.mark.postgres
def test_postgres_permission_denied_is_permanent(
    postgres: Database, postgres_role_without_rights: str
) -> None:
    odbc = postgres.odbc_with(UID=postgres_role_without_rights)
    with pytest.raises(PermanentError, match="permission denied for table journal"):
        read_odbc(odbc, table="journal")


@pytest.mark.parametrize(
    ("driver", "install"),
    [
        ("Acme Sage Connector 9", "install the vendor's ODBC driver"),
        ("MariaDB ODBC 3.2 Driver", "apt-get install odbc-mariadb"),
        ("MySQL ODBC 8.0 Unicode Driver", "apt-get install odbc-mariadb"),
        ("PostgreSQL Unicode(x64)", "apt-get install odbc-postgresql"),
        ("ODBC Driver 18 for SQL Server", "msodbcsql18 from Microsoft"),
    ],
)
def test_missing_driver_is_one_config_line(driver: str, install: str) -> None:
    require_odbc_driver(POSTGRES_ODBC_DRIVER)  # the message lists the installed drivers
    connection = f"Driver={{{driver}}};Server=erp.example;UID=hub;PWD={BRACED_PASSWORD}"
    with pytest.raises(ConfigError) as raised:
        read_odbc(connection, table="F_ECRITUREC")
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"ODBC driver '{driver}' is not installed (found: ")
    assert POSTGRES_ODBC_DRIVER in message and install in message
    assert "S3cr3t" not in message
    with pytest.raises(ConfigError, match="is not installed"):
        resolve_connection_string(driver=driver, server="erp.example")


@pytest.mark.postgres
def test_unknown_dsn_and_dsn_from_odbc_ini(
    postgres: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    odbc_ini = tmp_path / "odbc.ini"
    odbc_ini.write_text(
        f"[erp_pg]\nDriver={POSTGRES_ODBC_DRIVER}\nServername={POSTGRES_HOST}\n"
        f"Port={POSTGRES_PORT}\nDatabase={postgres.name}\nUsername={POSTGRES_USER}\n"
    )
    monkeypatch.setenv("ODBCINI", str(odbc_ini))  # unixODBC's user DSN file
    with pytest.raises(ConfigError, match=r"data source 'erp_sage' is not defined \(found: erp_pg"):
        read_odbc(f"DSN=erp_sage;PWD={BRACED_PASSWORD}", table="journal")
    # the DSN's driver tells the dialect (quoting) and the driver settings (booleans)
    table = read_odbc("DSN=erp_pg", table="ledger")
    assert table.frame["lettre"].tolist() == ["false", "", "false", "true", "true"]


@pytest.mark.mariadb
def test_mariadb_bad_password_is_masked(mariadb: Database) -> None:
    odbc = mariadb.odbc_with(PWD=PASSWORD)
    assert f"PWD={BRACED_PASSWORD}" in odbc  # braced, `}` doubled
    with pytest.raises(ConfigError) as raised:
        read_odbc(odbc, table="ledger")
    message = str(raised.value)
    assert "Access denied for user 'root'" in message and "PWD=***" in message
    assert "S3cr3t" not in message


@pytest.mark.postgres
def test_password_never_in_messages(postgres: Database) -> None:
    secret = "Pa55;word}"
    forms = [
        postgres.odbc_with(PWD=secret),
        postgres.odbc + ";Password={Pa55;word}}}",
    ]
    mistakes = [
        {"table": "jounral"},
        {"query": "SELEC 1"},
        {"table": "journal", "key": ["numero"]},
        {"table": "journal", "since": ("modifie_le", BOUND)},
    ]
    for connection in forms:
        refused = connection.replace(f"Port={POSTGRES_PORT}", "Port=1")
        calls = [(connection, mistake) for mistake in mistakes] + [(refused, {"table": "t"})]
        for target, mistake in calls:
            with pytest.raises((ConfigError, PermanentError, RetriableError)) as raised:
                read_odbc(target, **mistake)  # type: ignore[arg-type]
            assert "Pa55" not in str(raised.value), raised.value
            assert "***" in str(raised.value)
    with pytest.raises(ConfigError) as raised:
        read_odbc(f"Driver={{{POSTGRES_ODBC_DRIVER}}};PWD={{Pa55;word", table="t")
    assert "Pa55" not in str(raised.value) and "never closed" in str(raised.value)


# --- Connection strings ---------------------------------------------------------------------


def test_resolve_connection_string_from_parts() -> None:
    require_odbc_driver(POSTGRES_ODBC_DRIVER)
    assert (
        resolve_connection_string(
            driver=POSTGRES_ODBC_DRIVER,
            server="127.0.0.1",
            port="5432",
            database="erp",
            uid="hub",
            pwd="a;b",
        )
        == "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Database=erp;UID=hub;PWD={a;b}"
    )
    # parts replace the written keys, whatever their case; braced values are read back
    written = "driver={PostgreSQL Unicode};SERVER=old;Database={e;r}}p}"
    assert resolve_connection_string(written, server="new") == (
        "driver={PostgreSQL Unicode};SERVER=new;Database={e;r}}p}"
    )
    with pytest.raises(ConfigError, match="names neither a driver nor a data source"):
        resolve_connection_string("Server=erp.example;UID=hub")
    with pytest.raises(ConfigError, match="this is a database URL"):
        resolve_connection_string("postgresql+psycopg://hub:pw@erp/erp")


def test_driver_library_path_is_checked() -> None:
    require_odbc_driver(POSTGRES_ODBC_DRIVER)
    with pytest.raises(ConfigError, match=r"/opt/nowhere/libsage\.so does not exist"):
        resolve_connection_string(driver="/opt/nowhere/libsage.so")


def test_uuid_converter_matches_psycopg() -> None:
    from connectors.sql.odbc import uuid_text

    value = uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
    assert uuid_text(value.bytes_le) == str(value)
    assert uuid_text(None) is None
