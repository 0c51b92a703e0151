"""Requeue: quarantined rows mapped again with the fixed datafix, from their kept raw values.

The ERP is a real PostgreSQL database read incrementally (`kind: sql` with a `cursor`); the
warehouse runs on SQLite and on PostgreSQL (`warehouse_url`). Expected rows are counted by hand
from the rows inserted below.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from pipelines.lib.datafixes import load_datafix
from pipelines.lib.requeue import requeue
from pipelines.lib.warehouse import Warehouse
from tests.conftest import temporary_postgres_database
from tests.landlords.common import datafix, live_rows, open_quarantine
from tests.pipelines.lib import helpers
from tests.pipelines.lib.helpers import (
    incremental_ledger_datafix,
    migrated_warehouse,
    run_ledger_once,
)

LANDLORD = "terres-de-loire"

# id, tenant, date, code, amount, modified; `AVO` (a credit note) is not in the first map
FIRST = [
    (1, "T1", "2026-03-01", "LOY", "500.00", "2026-03-02 08:00:00"),
    (2, "T1", "2026-03-04", "AVO", "-40.00", "2026-03-02 09:00:00"),
    (3, "T2", "2026-03-01", "LOY", "620.00", "2026-03-02 10:00:00"),
    (4, "T2", "2026-03-05", "AVO", "-620.00", "2026-03-02 11:00:00"),
    (5, "T2", "2026-03-06", "XXX", "12.00", "2026-03-02 12:00:00"),
]
LATER = [(6, "T3", "2026-03-08", "LOY", "450.00", "2026-03-03 08:00:00")]


def _insert(url: str, rows: list[tuple]) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE IF NOT EXISTS ecritures (id INTEGER PRIMARY KEY, compte TEXT,"
                " date_ecriture DATE, code TEXT, montant NUMERIC(12, 2), modifie_le TIMESTAMP)"
            )
        )
        conn.execute(
            sa.text("INSERT INTO ecritures VALUES (:i, :c, :d, :k, :m, :t)"),
            [dict(zip("icdkmt", row, strict=True)) for row in rows],
        )
    engine.dispose()


def _datafix(folder: Path, erp: str, codes: dict[str, str]) -> Path:
    source = {
        "kind": "sql",
        "url": erp,
        "table": "ecritures",
        "key": ["id"],
        "cursor": {"column": "modifie_le"},
    }
    return incremental_ledger_datafix(
        folder, (LANDLORD, "Terres de Loire"), source, kind={"from": "code", "map": codes}
    )


@pytest.fixture
def erp() -> Iterator[str]:
    with temporary_postgres_database() as url:
        yield url


@pytest.fixture
def warehouse(warehouse_url: str) -> Iterator[Warehouse]:
    yield from migrated_warehouse(warehouse_url)


def _state(warehouse: Warehouse) -> dict[str, Any]:
    """The ledger, the open quarantine, the watermark (None when nothing is incremental) and
    the load runs, as plain tuples."""
    url = warehouse.engine.url.render_as_string(hide_password=False)
    with warehouse.engine.connect() as conn:
        cursor = conn.execute(sa.text("SELECT cursor_value FROM feed_cursors")).scalar()
        runs = conn.execute(
            sa.text(
                "SELECT status, rows_in_source, skipped, read, loaded, quarantined FROM load_runs"
                " ORDER BY finished_at"
            )
        ).all()
    return {
        "ledger": live_rows(url, LANDLORD, "ledger_entries", "entry_ref, kind, amount_cents"),
        "open": sorted(open_quarantine(url, LANDLORD, "ledger_entries").items()),
        "cursor": cursor,
        "runs": [tuple(r) for r in runs],
    }


def test_a_fixed_datafix_requeues_incremental_rows_the_watermark_has_passed(
    tmp_path: Path, erp: str, warehouse: Warehouse
) -> None:
    _insert(erp, FIRST)
    path = _datafix(tmp_path, erp, {"LOY": "rent_call"})
    assert run_ledger_once(path, warehouse, "night-1") == 5
    _insert(erp, LATER)
    assert run_ledger_once(path, warehouse, "night-2") == 1  # only row 6: past the watermark
    before = _state(warehouse)
    assert before["ledger"] == [("1", "rent_call", 50000), ("3", "rent_call", 62000),
                                ("6", "rent_call", 45000)]  # fmt: skip
    # the second night did not resolve the first night's rejects: they were not sent again
    assert before["open"] == [
        ("ecritures:id=2", "unmapped_value"),
        ("ecritures:id=4", "unmapped_value"),
        ("ecritures:id=5", "unmapped_value"),
    ]
    watermark = before["cursor"]

    # landlord IT adds the credit note code; XXX stays unknown
    fixed = load_datafix(_datafix(tmp_path, erp, {"LOY": "rent_call", "AVO": "write_off"}))
    result = requeue(warehouse, fixed, "ledger_entries", run_id="requeue-1")
    assert (result.requeued, result.loaded, result.quarantined, result.skipped) == (3, 2, 1, 0)
    assert result.read == result.loaded + result.quarantined
    assert result.reasons == {"unmapped_value": 1}
    after = _state(warehouse)
    assert after["ledger"] == [
        ("1", "rent_call", 50000),
        ("2", "write_off", -4000),
        ("3", "rent_call", 62000),
        ("4", "write_off", -62000),
        ("6", "rent_call", 45000),
    ]
    assert after["open"] == [("ecritures:id=5", "unmapped_value")]
    assert after["cursor"] == watermark  # the requeue read no source: the watermark stays
    assert after["runs"][-1] == ("requeued", 3, 0, 3, 2, 1)

    # a second requeue changes nothing but its own audit row
    again = requeue(warehouse, fixed, "ledger_entries", run_id="requeue-2")
    assert (again.requeued, again.loaded, again.quarantined) == (1, 0, 1)
    final = _state(warehouse)
    assert final["ledger"] == after["ledger"]
    assert final["open"] == after["open"]
    assert final["cursor"] == watermark
    # and the next night reads only what is new, nothing twice
    assert run_ledger_once(load_datafix_path(tmp_path), warehouse, "night-3") == 0


def load_datafix_path(folder: Path) -> Path:
    return folder / f"{LANDLORD}.yaml"


def test_requeue_keeps_a_row_whose_key_is_live_from_another_row(
    tmp_path: Path, warehouse: Warehouse, hub_home: Path
) -> None:
    """A duplicate reference: requeueing the second row must not overwrite the first."""
    lines = [
        "E1;T1;01/03/2026;LOY;500,00",
        "E1;T1;02/03/2026;LOY;999,00",
        "E2;T1;03/03/2026;NEW;10,00",
    ]
    path = _csv_landlord(hub_home, tmp_path, {"LOY": "rent_call"}, lines)
    run_ledger_once(path, warehouse, "night-1")
    fixed = load_datafix(
        _csv_landlord(hub_home, tmp_path, {"LOY": "rent_call", "NEW": "sls"}, lines)
    )
    result = requeue(warehouse, fixed, "ledger_entries", run_id="requeue-1")
    assert (result.requeued, result.loaded, result.quarantined) == (2, 1, 1)
    state = _state(warehouse)
    assert state["ledger"] == [("E1", "rent_call", 50000), ("E2", "sls", 1000)]
    assert state["open"] == [("ledger.csv:3", "duplicate_key")]


def test_requeue_of_one_reason_leaves_the_others(
    tmp_path: Path, erp: str, warehouse: Warehouse
) -> None:
    _insert(erp, FIRST)
    path = _datafix(tmp_path, erp, {"LOY": "rent_call"})
    run_ledger_once(path, warehouse, "night-1")
    fixed = load_datafix(_datafix(tmp_path, erp, {"LOY": "rent_call", "AVO": "write_off"}))
    result = requeue(warehouse, fixed, "ledger_entries", run_id="r", reason="missing_value")
    assert result.requeued == 0
    assert result.summary() == f"{LANDLORD}/ledger_entries: nothing in quarantine"


CSV_LINES = [
    "E1;T1;01/03/2026;LOY;500,00",
    "E2;T1;03/03/2026;NEW;10,00",
    "E3;T2;03/03/2026;NEW;12,00",
]


def _csv_landlord(
    hub_home: Path, folder: Path, codes: dict[str, str], lines: list[str] = CSV_LINES
) -> Path:
    """The landlord reading `ledger.csv` (`lines` under its header) from its inbox, its ledger
    codes mapped by `codes`; the datafix written in `folder`."""
    inbox = hub_home / "inbox" / LANDLORD
    inbox.mkdir(parents=True, exist_ok=True)
    text = "\n".join(["ref;compte;date;code;montant", *lines]) + "\n"
    (inbox / "ledger.csv").write_text(text, encoding="utf-8")
    document: dict[str, Any] = {
        "landlord": {"id": LANDLORD, "name": "Terres de Loire"},
        "sources": {"fichier": {"kind": "csv", "path": "ledger.csv"}},
        "entities": {
            "ledger_entries": {
                "source": "fichier",
                "max_quarantine_percent": 80,
                "fields": {
                    "entry_ref": "ref",
                    "tenant_ref": "compte",
                    "entry_date": "date",
                    "kind": {"from": "code", "map": codes},
                    "amount_cents": "montant",
                },
            }
        },
    }
    return helpers.write_datafix(folder, document)


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The datafixes folder the hub reads (`DATAFIX_DATAFIXES_DIR`), empty."""
    path = tmp_path / "datafixes"
    path.mkdir()
    monkeypatch.setenv("DATAFIX_DATAFIXES_DIR", str(path))
    return path


def test_the_requeue_op_of_the_dagster_job_maps_rows_again(
    hub_home: Path, tmp_path: Path, folder: Path
) -> None:
    import dagster as dg

    from pipelines.defs.requeue.jobs import RequeueConfig, requeue_quarantine
    from pipelines.defs.resources import DatafixesResource, WarehouseResource

    url = f"sqlite:///{tmp_path}/warehouse.db"
    warehouse = Warehouse(url)
    warehouse.migrate()
    run_ledger_once(_csv_landlord(hub_home, folder, {"LOY": "rent_call"}), warehouse, "night-1")
    _csv_landlord(hub_home, folder, {"LOY": "rent_call", "NEW": "sls"})
    # the job's op in a job partitioned by this test's landlord (the hub's job takes the
    # landlords the datafixes folder held when the definitions were built)
    job = dg.GraphDefinition(name="requeue", node_defs=[requeue_quarantine]).to_job(
        partitions_def=dg.StaticPartitionsDefinition([LANDLORD]),
        resource_defs={"warehouse": WarehouseResource(url=url), "datafixes": DatafixesResource()},
    )
    result = job.execute_in_process(
        partition_key=LANDLORD,
        run_config=dg.RunConfig(ops={"requeue_quarantine": RequeueConfig(entity="ledger_entries")}),
    )
    assert result.success
    (output,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = output.step_output_data.metadata
    assert metadata["ledger_entries/loaded"].value == 2
    assert metadata["total/quarantined"].value == 0
    state = _state(warehouse)
    warehouse.dispose()
    assert state["ledger"] == [
        ("E1", "rent_call", 50000),
        ("E2", "sls", 1000),
        ("E3", "sls", 1200),
    ]
    assert state["open"] == []


def test_datafix_requeue_on_the_command_line(hub_home: Path, folder: Path) -> None:
    _csv_landlord(hub_home, folder, {"LOY": "rent_call"})
    ran = datafix("run", LANDLORD)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    _csv_landlord(hub_home, folder, {"LOY": "rent_call", "NEW": "sls"})
    done = datafix("requeue", LANDLORD, "--reason", "unmapped_value")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        f"{LANDLORD}/ledger_entries: 2 quarantined row(s) requeued: 2 loaded, 0 still quarantined"
    ]
    again = datafix("requeue", LANDLORD)
    assert again.stdout.splitlines() == [f"{LANDLORD}/ledger_entries: nothing in quarantine"]
