"""Database sources stream through the stages chunk by chunk (issue 13, point 1).

A `sql` source on PostgreSQL and an `odbc` source on MariaDB (real servers on loopback) feed the
ledger through pull → normalise → contract → load as the nightly job runs it, with
DATAFIX_CHUNK_ROWS=7 (60 rows: 9 chunks, fetched 7 at a time) and with the default chunk. The
warehouse must end up the same (row hashes included) across three nights: a first load, a
snapshot that changes and drops rows, and an unchanged night that loads nothing. A duplicate key
on the last line, with `max_quarantine_percent: 0`, blocks the night and leaves nothing of it
loaded. An incremental pull resumes inside 25 rows sharing one cursor value that straddle chunk
boundaries, neither skipping nor repeating a row. A PostgreSQL connection cut after the first
chunk fails the pull with the driver's words and the source's name, nothing loaded. Expected
figures are written by hand from the fixture.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.errors import RetriableError
from connectors.rawtable import CHUNK_ROWS
from pipelines.lib.datafixes import load_datafix
from pipelines.lib.spool import Spool
from pipelines.lib.stages import pull
from pipelines.lib.warehouse import Warehouse
from schemas.tables import CANONICAL_TABLES, load_runs, quarantine
from tests.conftest import odbc_connection_string
from tests.pipelines.lib.helpers import (
    ECRITURES_RENT,
    ledger_night,
    ledger_rows,
    migrated_warehouse,
    write_datafix,
)

LANDLORD = "flux-habitat"
LEDGER = CANONICAL_TABLES["ledger_entries"]
LINES = 60
EARLY, SHARED, LATE = "2026-03-01 08:00:00", "2026-03-01 09:00:00", "2026-03-02 10:00:00"


def modified(line: int) -> str:
    """Lines 1-20 at 08:00, 21-45 (25 lines, across chunks 3 to 7) at 09:00, then later."""
    return EARLY if line <= 20 else SHARED if line <= 45 else LATE


def ledger_line(line: int, *, piece: int | None = None, bump: int = 0) -> dict[str, Any]:
    return {
        "ligne": line,
        "piece": f"E{line if piece is None else piece:03d}",
        "compte": f"T{line % 7:03d}",
        "date_ecriture": dt.date(2026, 2, 1),
        "code": "LOY",
        "montant": f"{400 + line + bump}.25",
        "modifie_le": dt.datetime.fromisoformat(modified(line)),
    }


@dataclass
class Erp:
    """The ERP database: a SQLAlchemy engine to write it, the datafix source reading it."""

    kind: str
    engine: sa.Engine
    source: dict[str, Any]

    def write(self, lines: list[dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM ecritures"))
            if lines:
                columns = ", ".join(lines[0])
                values = ", ".join(f":{name}" for name in lines[0])
                conn.execute(sa.text(f"INSERT INTO ecritures ({columns}) VALUES ({values})"), lines)


CREATE = (
    "CREATE TABLE ecritures (ligne integer PRIMARY KEY, piece varchar(8) NOT NULL,"
    " compte varchar(8), date_ecriture date, code varchar(4), montant numeric(12, 2),"
    " modifie_le {timestamp} NOT NULL)"
)


@pytest.fixture(
    params=[
        pytest.param("sql", marks=pytest.mark.postgres),
        pytest.param("odbc", marks=pytest.mark.mariadb),
    ]
)
def erp(
    request: pytest.FixtureRequest,
    postgres_database: Callable[[], AbstractContextManager[str]],
    mariadb_database: Callable[[], AbstractContextManager[str]],
) -> Iterator[Erp]:
    """`sql`: PostgreSQL through SQLAlchemy; `odbc`: MariaDB through its ODBC driver."""
    factory = postgres_database if request.param == "sql" else mariadb_database
    with factory() as url:
        engine = sa.create_engine(url)
        timestamp = "timestamp" if request.param == "sql" else "datetime"
        with engine.begin() as conn:
            conn.execute(sa.text(CREATE.format(timestamp=timestamp)))
        source: dict[str, Any] = {"kind": request.param, "table": "ecritures", "key": ["ligne"]}
        if request.param == "sql":
            source["url"] = url
        else:
            source["connection"] = odbc_connection_string(url)
        try:
            yield Erp(request.param, engine, source)
        finally:
            engine.dispose()


def datafix(folder: Path, erp: Erp, *, incremental: bool = False, **entity: Any) -> Path:
    source = dict(erp.source)
    ledger: dict[str, Any] = {
        "source": "erp",
        **entity,
        "fields": {
            "entry_ref": "piece",
            "tenant_ref": "compte",
            "entry_date": "date_ecriture",
            "kind": ECRITURES_RENT,
            "amount_cents": "montant",
        },
    }
    if incremental:
        source["cursor"] = {"column": "modifie_le"}
        ledger["mode"] = "incremental"
    folder.mkdir(parents=True, exist_ok=True)
    document = {
        "landlord": {"id": LANDLORD, "name": "Flux Habitat"},
        "sources": {"erp": source},
        "entities": {"ledger_entries": ledger},
    }
    return write_datafix(folder, document)


ENTRY_COLUMNS = ("entry_ref", "tenant_ref", "entry_date", "kind", "amount_cents", "source_row")
ENTRY_COLUMNS += ("row_hash",)
RUN_COLUMNS = ("status", "rows_in_source", "read", "loaded", "inserted", "updated", "unchanged")
RUN_COLUMNS += ("deleted", "quarantined")


def contents(warehouse: Warehouse) -> dict[str, list[tuple]]:
    """The landlord's ledger (row hashes included), quarantine and load counts."""
    entries = [LEDGER.c[name] for name in ENTRY_COLUMNS]
    runs = [load_runs.c[name] for name in RUN_COLUMNS]
    with warehouse.engine.connect() as conn:
        return {
            "ledger": [
                tuple(row)
                for row in conn.execute(
                    sa.select(*entries, LEDGER.c.deleted_at.is_not(None))
                    .where(LEDGER.c.landlord_id == LANDLORD)
                    .order_by(LEDGER.c.entry_ref)
                )
            ],
            "quarantine": [
                tuple(row)
                for row in conn.execute(
                    sa.select(quarantine.c.source_row, quarantine.c.reason)
                    .where(quarantine.c.landlord_id == LANDLORD)
                    .order_by(quarantine.c.source_row)
                )
            ],
            "runs": [
                tuple(row)
                for row in conn.execute(
                    sa.select(*runs)
                    .where(load_runs.c.landlord_id == LANDLORD)
                    .order_by(load_runs.c.run_id)
                )
            ],
        }


def three_nights(
    folder: Path, erp: Erp, warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> dict[str, list[tuple]]:
    """Night 1: 60 lines. Night 2: lines 55-60 gone, lines 3 and 4 changed. Night 3: the
    same rows again (unchanged: skipped). `chunk` rows per chunk (DATAFIX_CHUNK_ROWS)."""
    monkeypatch.setenv("DATAFIX_CHUNK_ROWS", str(chunk))
    path = datafix(folder, erp)
    erp.write([ledger_line(line) for line in range(1, LINES + 1)])
    _, contract, _ = ledger_night(path, warehouse, "run-1")
    assert contract.passed, contract.summary()
    erp.write([ledger_line(line, bump=line in (3, 4)) for line in range(1, 55)])
    _, contract, _ = ledger_night(path, warehouse, "run-2")
    assert contract.passed, contract.summary()
    night_3 = pull(load_datafix(path), "ledger_entries", warehouse=warehouse)
    assert night_3.status == "unchanged" and night_3.rows == 0
    return contents(warehouse)


def test_the_warehouse_holds_the_same_whatever_the_chunk(
    tmp_path: Path, erp: Erp, monkeypatch: pytest.MonkeyPatch
) -> None:
    got = {}
    for chunk in (7, CHUNK_ROWS):
        warehouse = next(migrated_warehouse(f"sqlite:///{tmp_path}/warehouse-{chunk}.db"))
        try:
            got[chunk] = three_nights(tmp_path / str(chunk), erp, warehouse, monkeypatch, chunk)
        finally:
            warehouse.dispose()
    small = got[7]
    # by hand: 60 loaded; then 54 read, 2 updated, 52 unchanged… (50 + 2), 6 soft-deleted
    assert small["runs"] == [
        ("loaded", 60, 60, 60, 60, 0, 0, 0, 0),
        ("loaded", 54, 54, 54, 0, 2, 52, 6, 0),
    ]
    assert len(small["ledger"]) == 60 and sum(row[-1] for row in small["ledger"]) == 6
    assert small["ledger"][2][4] == 40425 and small["ledger"][2][5] == "ecritures:ligne=3"
    assert small["quarantine"] == []
    assert small == got[CHUNK_ROWS]  # row hashes included


def test_the_pull_streams_with_the_fingerprint_of_a_whole_read(
    tmp_path: Path, erp: Erp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fetched 7 rows at a time and spooled: 9 chunks handed on, the fingerprint that of the
    whole table read at once; a changed value changes it."""
    from connectors.sql.client import read_sql
    from connectors.sql.odbc import read_odbc

    monkeypatch.setenv("DATAFIX_CHUNK_ROWS", "7")
    erp.write([ledger_line(line) for line in range(1, LINES + 1)])
    added: list[int] = []
    original = Spool.add

    def counting(self: Spool, part: str, frame: Any) -> None:
        if part == "frame":
            added.append(len(frame))
        original(self, part, frame)

    monkeypatch.setattr(Spool, "add", counting)
    loaded = load_datafix(datafix(tmp_path, erp))
    pulled = pull(loaded, "ledger_entries")
    assert added == [7] * 8 + [4]  # the pull never held more than one chunk of the peer
    assert pulled.rows == LINES and pulled.reads[0].raw.stream is not None
    if erp.kind == "sql":
        whole = read_sql(erp.source["url"], table="ecritures", key=["ligne"])
    else:
        whole = read_odbc(erp.source["connection"], table="ecritures", key=["ligne"])
    assert pulled.fingerprint == whole.fingerprint
    assert [len(chunk.frame) for chunk in pulled.reads[0].raw.chunks(25)] == [25, 25, 10]
    assert pulled.raw is not None
    assert pulled.raw.frame.equals(whole.frame)
    assert pulled.raw.source_rows.equals(whole.source_rows)
    erp.write([ledger_line(line, bump=line == LINES) for line in range(1, LINES + 1)])
    assert pull(loaded, "ledger_entries").fingerprint != whole.fingerprint


def test_a_duplicate_key_in_the_last_chunk_loads_nothing_of_the_night(
    tmp_path: Path, erp: Erp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Line 60 repeats E005 (chunk 9 of 7 rows); with `max_quarantine_percent: 0` the night is
    blocked: not one of its changed amounts is loaded, and its trace is kept."""
    monkeypatch.setenv("DATAFIX_CHUNK_ROWS", "7")
    warehouse = next(migrated_warehouse(f"sqlite:///{tmp_path}/warehouse.db"))
    try:
        path = datafix(tmp_path, erp, max_quarantine_percent=0)
        erp.write([ledger_line(line) for line in range(1, LINES + 1)])
        ledger_night(path, warehouse, "run-1")
        before = contents(warehouse)["ledger"]
        lines = [ledger_line(line, bump=1) for line in range(1, LINES)]
        erp.write([*lines, ledger_line(LINES, piece=5, bump=1)])
        _, contract, result = ledger_night(path, warehouse, "run-2")
        assert not contract.passed
        assert result.loaded == 0
        after = contents(warehouse)
        assert after["ledger"] == before
        assert after["runs"][-1][:3] == ("blocked", 60, 60)
        assert after["quarantine"] == [("ecritures:ligne=60", "duplicate_key")]
    finally:
        warehouse.dispose()


def test_an_incremental_pull_resumes_inside_a_cursor_value_across_chunks(
    tmp_path: Path, erp: Erp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Night 1 reads lines 1-30 (its watermark inside the 25 lines at 09:00, which straddle
    chunks of 7); night 2 reads exactly lines 31-60; night 3 nothing."""
    monkeypatch.setenv("DATAFIX_CHUNK_ROWS", "7")
    warehouse = next(migrated_warehouse(f"sqlite:///{tmp_path}/warehouse.db"))
    try:
        path = datafix(tmp_path, erp, incremental=True)
        loaded = load_datafix(path)
        erp.write([ledger_line(line) for line in range(1, 31)])
        ledger_night(path, warehouse, "run-1")
        cursor = warehouse.cursor(LANDLORD, "ledger_entries", "erp")
        assert cursor is not None and (cursor.value, cursor.key_values) == (SHARED, ("30",))
        erp.write([ledger_line(line) for line in range(1, LINES + 1)])
        second = pull(loaded, "ledger_entries", warehouse=warehouse)
        assert second.rows == 30
        assert second.raw is not None
        assert second.raw.source_rows.tolist() == [
            f"ecritures:ligne={line}" for line in range(31, LINES + 1)
        ]
        ledger_night(path, warehouse, "run-2")
        cursor = warehouse.cursor(LANDLORD, "ledger_entries", "erp")
        assert cursor is not None and (cursor.value, cursor.key_values) == (LATE, ("60",))
        assert ledger_rows(warehouse) == LINES
        third = pull(loaded, "ledger_entries", warehouse=warehouse)
        assert third.status == "unchanged" and third.rows == 0
    finally:
        warehouse.dispose()


@pytest.mark.postgres
def test_a_connection_cut_mid_stream_fails_the_pull_naming_the_source(
    tmp_path: Path, postgres_database: Callable[[], AbstractContextManager[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The server ends the reader's session once the first chunk is spooled: the pull fails
    with a retriable error naming the table and how far it got; nothing is loaded."""
    monkeypatch.setenv("DATAFIX_CHUNK_ROWS", "7")
    with postgres_database() as url:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text(CREATE.format(timestamp="timestamp")))
        erp = Erp(
            "sql", engine, {"kind": "sql", "url": url, "table": "ecritures", "key": ["ligne"]}
        )
        erp.write([ledger_line(line) for line in range(1, LINES + 1)])
        database = sa.make_url(url).database
        assert database is not None
        original = Spool.add

        def cut(self: Spool, part: str, frame: Any) -> None:
            original(self, part, frame)
            if part == "frame" and len(self.counts["frame"]) == 1:
                with engine.connect() as admin:
                    admin.execute(
                        sa.text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE datname = :name AND pid <> pg_backend_pid()"
                        ),
                        {"name": database},
                    )

        monkeypatch.setattr(Spool, "add", cut)
        warehouse = next(migrated_warehouse(f"sqlite:///{tmp_path}/warehouse.db"))
        try:
            with pytest.raises(RetriableError) as raised:
                ledger_night(datafix(tmp_path, erp), warehouse, "run-1")
            message = str(raised.value)
            assert "ecritures" in message and "after 7 rows" in message
            assert ledger_rows(warehouse) == 0
        finally:
            warehouse.dispose()
            engine.dispose()
