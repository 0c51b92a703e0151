"""Datafix sources of every remote kind, pulled through stages.pull against real local peers.

The SOAP landlord ERP and the Salesforce HTTPS peer run in-process on 127.0.0.1; the warehouse
is SQLite. Each test goes datafix YAML → pull → normalise → load, as a nightly run does.
"""

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.sandbox.soap_erp import LandlordErpPeer
from connectors.watermark import past_watermark
from pipelines.lib.datafixes import load_datafix
from pipelines.lib.stages import load, normalise, pull
from pipelines.lib.warehouse import Warehouse
from tests.pipelines.lib.helpers import (
    incremental_ledger_datafix,
    ledger_rows,
    migrated_warehouse,
    write_datafix,
)
from tests.pipelines.lib.helpers import run_ledger_once as run_once

START = dt.datetime(2026, 3, 1, 8, 0, 0)


def ledger_seed(count: int, *, sharing: int = 0) -> list[dict]:
    """Ledger entries; the first `sharing` share one modification time."""
    return [
        {
            "entryId": f"E{i:05d}",
            "tenantRef": f"T{i % 40:03d}",
            "entryDate": dt.date(2026, 2, 1),
            "kind": "LOY",
            "amount": Decimal("512.30") + i,
            "modifiedAt": START if i < sharing else START + dt.timedelta(minutes=i),
        }
        for i in range(count)
    ]


def soap_datafix(folder: Path, wsdl: str) -> Path:
    erp = {
        "kind": "soap",
        "wsdl": wsdl,
        "operation": "ListLedgerEntries",
        "records": "ledgerEntries.entry",
        "paging": {"kind": "page_number", "page_size": 50, "has_more_path": "hasMore"},
        "key": ["entryId"],
        "cursor": {"column": "modifiedAt", "argument": "modifiedSince"},
        "timeout": 5,
        "operation_timeout": 5,
    }
    return incremental_ledger_datafix(
        folder,
        ("erp-habitat", "ERP Habitat"),
        erp,
        entry_ref="entryId",
        tenant_ref="tenantRef",
        entry_date="entryDate",
        kind={"from": "kind", "map": {"LOY": "rent"}},
        amount="amount",
    )


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[Warehouse]:
    yield from migrated_warehouse(f"sqlite:///{tmp_path / 'warehouse.db'}")


def test_soap_source_pages_loads_exact_amounts_and_resumes_incrementally(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    with LandlordErpPeer({"ledger_entries": ledger_seed(230, sharing=120)}) as peer:
        datafix = soap_datafix(tmp_path, peer.wsdl_url)
        assert run_once(datafix, warehouse, "run-1") == 230
        assert peer.calls_by_operation["ListLedgerEntries"] == 5  # 50 a page
        with warehouse.engine.connect() as conn:
            total = conn.execute(sa.text("SELECT sum(amount_cents) FROM ledger_entries")).scalar()
        assert total == sum(int((Decimal("512.30") + i) * 100) for i in range(230))
        # nothing changed: the peer is asked from the watermark and nothing new is pulled
        assert run_once(datafix, warehouse, "run-2") == 0
        # ten entries change
        for record in peer.records["ledger_entries"][:10]:
            record["amount"] = Decimal("1.00")
            record["modifiedAt"] = START.replace(tzinfo=dt.UTC) + dt.timedelta(days=3)
        assert run_once(datafix, warehouse, "run-3") == 10
        assert ledger_rows(warehouse, "amount_cents = 100") == 10


def test_soap_transient_fault_is_retried_then_pulled(tmp_path: Path, warehouse: Warehouse) -> None:
    with LandlordErpPeer({"ledger_entries": ledger_seed(20)}) as peer:
        peer.set_fault("http_503", times=2)
        datafix = soap_datafix(tmp_path, peer.wsdl_url)
        assert run_once(datafix, warehouse, "run-1") == 20
        assert peer.calls == 3


def test_past_watermark_keeps_rows_after_the_last_loaded_key() -> None:
    import pandas as pd

    from connectors.rawtable import RawTable, Watermark

    frame = pd.DataFrame(
        {
            "id": ["9", "10", "11", "2", "3"],
            "at": ["2026-03-01 08:00:00"] * 3 + ["2026-03-01 07:00:00", "2026-03-02 00:00:00"],
        },
        dtype="str",
    )
    raw = RawTable(frame, pd.Series([f"r{i}" for i in range(5)], dtype="str"), "fp", "test")
    kept = past_watermark(raw, Watermark("at", "2026-03-01 08:00:00", ("id",), ("9",)))
    # numbers compare as numbers: 10 and 11 come after 9; the later timestamp follows
    assert kept.frame["id"].tolist() == ["10", "11", "3"]
    everything = past_watermark(raw, Watermark("at", None, ("id",)))
    assert everything.frame["id"].tolist() == ["2", "9", "10", "11", "3"]


def salesforce_datafix(folder: Path, peer: Any) -> Path:
    document = {
        "landlord": {"id": "sf-works", "name": "SF Works"},
        "secrets": ["SF_SESSION"],
        "sources": {
            "crm": {
                "kind": "salesforce",
                "auth": {"session_id": "${SF_SESSION}", "instance_url": peer.instance_url},
                "object": "WorkOrder",
                "fields": [
                    "BT_Number__c",
                    "Status",
                    "Categorie__c",
                    "Date_Commande__c",
                    "Montant_Engage__c",
                    "SystemModstamp",
                ],
                "cursor": {"column": "SystemModstamp"},
                "ca_bundle": peer.ca_path,
            }
        },
        "entities": {
            "work_orders": {
                "source": "crm",
                "mode": "incremental",
                "fields": {
                    "order_ref": "BT_Number__c",
                    "status": {
                        "from": "Status",
                        "map": {
                            "New": "received",
                            "In Progress": "in_progress",
                            "On Hold": "scheduled",
                            "Completed": "done",
                            "Closed": "invoiced",
                            "Canceled": "cancelled",
                        },
                    },
                    "category": {
                        "from": "Categorie__c",
                        "map": {
                            "dépannage": "repair",
                            "recherche de fuite": "leak_search",
                            "travaux programmés": "planned_works",
                            "entretien": "maintenance",
                        },
                    },
                    "ordered_date": "Date_Commande__c",
                    "committed_cents": "Montant_Engage__c",
                },
            }
        },
    }
    return write_datafix(folder, document)


def test_salesforce_source_loads_work_orders_and_pulls_only_changes(
    tmp_path: Path, warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connectors.sandbox.salesforce import (
        DEFAULT_SESSION_ID,
        SalesforcePeer,
        field_service_store,
    )

    monkeypatch.setenv("SF_SESSION", DEFAULT_SESSION_ID)
    store = field_service_store(60)
    with SalesforcePeer(store, page_size=25) as peer:
        datafix = salesforce_datafix(tmp_path, peer)
        loaded = load_datafix(datafix)
        pulled = pull(loaded, "work_orders", warehouse=warehouse)
        batch = normalise(loaded, pulled).batch
        assert pulled.rows == 60 and batch is not None
        # "Cannot Complete" has no entry in the map: those orders are quarantined, not lost
        assert len(batch.rows) + len(batch.rejects) == 60
        assert set(batch.rejects["reason"]) == {"unmapped_value"}
        assert batch.rejects["source_row"].str.startswith("WorkOrder:").all()
        load(warehouse, loaded, normalise(loaded, pulled), run_id="run-1")
        assert pull(loaded, "work_orders", warehouse=warehouse).rows == 0
        first_ids = list(store.records["WorkOrder"])[:3]
        for record_id in first_ids:
            store.update("WorkOrder", record_id, {"Status": "Completed"})
        changed = pull(loaded, "work_orders", warehouse=warehouse)
        assert changed.rows == 3
        assert peer.errors == []


ERP_ROWS = [
    (
        n,
        f"T{n % 40}",
        dt.date(2026, 2, 1) + dt.timedelta(days=n % 20),
        Decimal(n * 3731 % 200_000 - 30_000) / 100,
        dt.datetime(2026, 3, 1, 8, 0) + dt.timedelta(minutes=n // 50),
    )
    for n in range(1, 501)
]
ERP_TABLE = (
    "CREATE TABLE ecritures (id integer PRIMARY KEY, compte varchar(10), jour date,"
    " montant numeric(12, 2), modifie_le {timestamp} NOT NULL)"
)


def canonical_ledger(folder: Path, source: dict[str, Any]) -> tuple[Any, Any]:
    """The canonical ledger rows and the next watermark of an incremental SQL-ish source."""
    folder.mkdir()
    path = incremental_ledger_datafix(
        folder,
        ("odbc-habitat", "ODBC Habitat"),
        {**source, "table": "ecritures", "key": ["id"], "cursor": {"column": "modifie_le"}},
        entry_date="jour",
        kind={"const": "rent"},
        amount="montant",
        # one kind for amounts of either sign: the rule only warns (this test compares readers)
        rules={"sign_matches_kind": "warn"},
    )
    loaded = load_datafix(path)
    pulled = pull(loaded, "ledger_entries")
    batch = normalise(loaded, pulled).batch
    assert batch is not None and len(batch.rejects) == 0
    return batch.rows, pulled.watermarks.get("erp")


@pytest.mark.postgres
@pytest.mark.mariadb
def test_odbc_on_postgresql_and_mariadb_gives_the_canonical_rows_of_sqlalchemy(
    tmp_path: Path,
) -> None:
    import pyodbc

    from tests.conftest import temporary_mariadb_database, temporary_postgres_database

    results = {}
    with temporary_postgres_database() as url:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql(ERP_TABLE.format(timestamp="timestamp"))
            conn.execute(
                sa.text("INSERT INTO ecritures VALUES (:i, :c, :j, :m, :t)"),
                [dict(zip("icjmt", row, strict=True)) for row in ERP_ROWS],
            )
        engine.dispose()
        database = str(sa.make_url(url).database)
        results["sqlalchemy"] = canonical_ledger(tmp_path / "sql", {"kind": "sql", "url": url})
        results["odbc-postgresql"] = canonical_ledger(
            tmp_path / "pg",
            {
                "kind": "odbc",
                "connection": "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;"
                f"Database={database};UID=postgres",
            },
        )
    with temporary_mariadb_database() as url:
        database = str(sa.make_url(url).database)
        connection = (
            f"Driver={{MariaDB Unicode}};Server=127.0.0.1;Port=3306;Database={database};UID=root"
        )
        admin = pyodbc.connect(connection, autocommit=True)
        try:
            admin.execute(ERP_TABLE.format(timestamp="datetime"))
            admin.cursor().executemany(
                "INSERT INTO ecritures VALUES (?, ?, ?, ?, ?)",
                [(*row[:4], row[4].isoformat(" ")) for row in ERP_ROWS],
            )
        finally:
            admin.close()
        results["odbc-mariadb"] = canonical_ledger(
            tmp_path / "maria", {"kind": "odbc", "connection": connection}
        )
    expected_rows, expected_watermark = results.pop("sqlalchemy")
    assert len(expected_rows) == 500
    for name, (rows, watermark) in results.items():
        assert rows.equals(expected_rows), name
        assert watermark == expected_watermark, name
