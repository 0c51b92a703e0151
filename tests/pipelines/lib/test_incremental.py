"""Incremental pulls: watermarks on (cursor, key), advanced only with a committed load.

The ERP is a real SQLite file read through SQLAlchemy; the warehouse runs on SQLite and on
PostgreSQL (`warehouse_url`).
"""

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from connectors.rawtable import Watermark
from pipelines.lib.datafixes import load_datafix
from pipelines.lib.stages import load, normalise, pull
from pipelines.lib.warehouse import Warehouse
from tests.pipelines.lib.helpers import incremental_ledger_datafix, ledger_rows, migrated_warehouse
from tests.pipelines.lib.helpers import run_ledger_once as run_once

BOUNDARY = "2026-03-01 08:00:00"


def make_erp(path: Path, rows: int = 6_000, sharing_boundary: int = 5_000) -> None:
    """Ledger rows: the first `sharing_boundary` share one modification time."""
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE ecritures (id INTEGER PRIMARY KEY, compte TEXT, date_ecriture TEXT,"
            " code TEXT, montant TEXT, modifie_le TEXT)"
        )
        conn.executemany(
            "INSERT INTO ecritures VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    i,
                    f"T{i % 97:04d}",
                    "2026-02-01",
                    "LOY",
                    f"{400 + i % 50}.25",
                    BOUNDARY if i <= sharing_boundary else f"2026-03-02 {i % 24:02d}:00:00",
                )
                for i in range(1, rows + 1)
            ],
        )


def write_datafix(folder: Path, erp: Path, *, lookback: int = 0) -> Path:
    source = {
        "kind": "sql",
        "url": f"sqlite:///{erp}",
        "table": "ecritures",
        "key": ["id"],
        "cursor": {"column": "modifie_le", "lookback_minutes": lookback},
    }
    return incremental_ledger_datafix(folder, ("delta-habitat", "Delta Habitat"), source)


@pytest.fixture
def erp(tmp_path: Path) -> Path:
    path = tmp_path / "erp.db"
    make_erp(path)
    return path


@pytest.fixture
def warehouse(warehouse_url: str) -> Iterator[Warehouse]:
    yield from migrated_warehouse(warehouse_url)


def test_an_unchanged_source_transfers_nothing_the_second_time(
    tmp_path: Path, erp: Path, warehouse: Warehouse
) -> None:
    datafix = write_datafix(tmp_path, erp)
    assert run_once(datafix, warehouse, "run-1") == 6_000
    assert run_once(datafix, warehouse, "run-2") == 0
    assert ledger_rows(warehouse) == 6_000
    cursor = warehouse.cursor("delta-habitat", "ledger_entries", "erp")
    # SQLite returns the text it keeps and the integer id: the kinds bound next time
    kinds = ("text", "integer")
    assert cursor == Watermark("modifie_le", "2026-03-02 23:00:00", ("id",), ("5999",), kinds)


def test_after_100_updates_exactly_those_100_are_pulled(
    tmp_path: Path, erp: Path, warehouse: Warehouse
) -> None:
    datafix = write_datafix(tmp_path, erp)
    run_once(datafix, warehouse, "run-1")
    with sqlite3.connect(erp) as conn:
        conn.execute(
            "UPDATE ecritures SET montant = '999.99', modifie_le = '2026-03-05 09:00:00'"
            " WHERE id % 60 = 0"
        )
    assert run_once(datafix, warehouse, "run-2") == 100
    assert ledger_rows(warehouse, "amount_cents = 99999") == 100


def test_rows_sharing_the_boundary_value_are_never_lost_when_a_pull_stops_midway(
    tmp_path: Path, erp: Path, warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    datafix = write_datafix(tmp_path, erp)
    loaded = load_datafix(datafix)
    pulled = pull(loaded, "ledger_entries", warehouse=warehouse)
    assert pulled.rows == 6_000

    # the load dies in the middle: nothing commits, the watermark does not move
    def crash(*args: object, **kwargs: object) -> None:
        raise ConnectionError("killed mid-load")

    monkeypatch.setattr(Warehouse, "_quarantine", crash)
    with pytest.raises(ConnectionError):
        load(warehouse, loaded, normalise(loaded, pulled), run_id="run-1")
    monkeypatch.undo()
    assert warehouse.cursor("delta-habitat", "ledger_entries", "erp") is None
    assert ledger_rows(warehouse) == 0
    assert run_once(datafix, warehouse, "run-2") == 6_000
    assert ledger_rows(warehouse) == 6_000


def test_a_pull_resumes_inside_rows_sharing_one_cursor_value(
    tmp_path: Path, erp: Path, warehouse: Warehouse
) -> None:
    """A previous pull committed up to row 2,500 of the 5,000 sharing the boundary value."""
    datafix = write_datafix(tmp_path, erp)
    loaded = load_datafix(datafix)
    with sqlite3.connect(erp) as conn:
        conn.execute("DELETE FROM ecritures WHERE id > 2500")
    first = pull(loaded, "ledger_entries", warehouse=warehouse)
    load(warehouse, loaded, normalise(loaded, first), run_id="run-1")
    assert warehouse.cursor("delta-habitat", "ledger_entries", "erp").key_values == ("2500",)
    make_erp(tmp_path / "full.db")
    with sqlite3.connect(erp) as conn:
        conn.execute(f"ATTACH DATABASE '{tmp_path / 'full.db'}' AS full")
        conn.execute("INSERT INTO ecritures SELECT * FROM full.ecritures WHERE id > 2500")
    second = pull(loaded, "ledger_entries", warehouse=warehouse)
    assert second.rows == 3_500  # the other 2,500 at the boundary value, then 1,000 later ones
    assert second.raw is not None
    assert second.raw.frame["id"].iloc[0] == "2501"
    load(warehouse, loaded, normalise(loaded, second), run_id="run-2")
    assert ledger_rows(warehouse) == 6_000


def test_lookback_rereads_recent_rows_without_changing_them(
    tmp_path: Path, erp: Path, warehouse: Warehouse
) -> None:
    datafix = write_datafix(tmp_path, erp, lookback=60)
    run_once(datafix, warehouse, "run-1")
    # rows modified in the last hour before the watermark (23:00) are read again: 22:00, 23:00
    again = run_once(datafix, warehouse, "run-2")
    assert again == sum(1 for i in range(5_001, 6_001) if i % 24 in (22, 23))
    assert ledger_rows(warehouse, "run_id = 'run-2'") == 0


def test_reset_cursor_replays_the_source(tmp_path: Path, erp: Path, warehouse: Warehouse) -> None:
    datafix = write_datafix(tmp_path, erp)
    run_once(datafix, warehouse, "run-1")
    assert warehouse.reset_cursor("delta-habitat", ["ledger_entries"], to="2026-03-02 20:00:00")
    assert run_once(datafix, warehouse, "run-2") == sum(
        1 for i in range(5_001, 6_001) if i % 24 >= 20
    )
    assert warehouse.reset_cursor("delta-habitat", ["ledger_entries"]) == 1
    assert run_once(datafix, warehouse, "run-3") == 6_000


def test_an_incremental_source_feeding_a_snapshot_entity_is_refused(
    tmp_path: Path, erp: Path
) -> None:
    from pipelines.lib.datafixes import DatafixError

    path = write_datafix(tmp_path, erp)
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    del document["entities"]["ledger_entries"]["mode"]
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    with pytest.raises(DatafixError, match="mode: incremental"):
        load_datafix(path)
