"""Canonical rows written straight into a warehouse for the arrears tests: each row gets the
lineage columns a load would give it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from pipelines.lib.warehouse import Warehouse
from schemas.tables import CANONICAL_TABLES

LOADED_AT = dt.datetime(2026, 7, 1, 3, 0, tzinfo=dt.UTC)


def put(
    connection: sa.Connection, entity: str, landlord_id: str, rows: list[dict[str, Any]]
) -> None:
    """Insert `rows` (canonical columns) into the entity's table with lineage filled in."""
    if not rows:
        return
    columns = CANONICAL_TABLES[entity].c
    lineage = {
        "landlord_id": landlord_id,
        "source_name": "test",
        "datafix_sha": "0" * 64,
        "run_id": "load-run",
        "loaded_at": LOADED_AT,
        "deleted_at": None,
    }
    full = []
    for line, row in enumerate(rows, start=2):
        values = {c.name: None for c in columns if c.name not in lineage}
        values.update(row)
        values.update(lineage, source_row=f"{entity}.csv:{line}", row_hash=line)
        full.append(values)
    connection.execute(CANONICAL_TABLES[entity].insert(), full)


def entry(
    ref: str,
    tenant: str,
    day: str,
    kind: str,
    amount: int,
    *,
    due: str | None = None,
    method: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """One ledger entry (dates as `yyyy-mm-dd`)."""
    return {
        "entry_ref": ref,
        "tenant_ref": tenant,
        "entry_date": dt.date.fromisoformat(day),
        "kind": kind,
        "amount_cents": amount,
        "due_date": dt.date.fromisoformat(due) if due else None,
        "payment_method": method,
        "reject_reason": reason,
    }


def hand_made_warehouse(url: str) -> Iterator[Warehouse]:
    """For a fixture (`yield from`): the migrated warehouse at `url` holding the hand-made
    ledger, tenants and plans of `test_arrears`."""
    from tests.pipelines.lib.test_arrears import LANDLORD, LEDGER, PLANS, TENANTS

    warehouse = Warehouse(url)
    warehouse.migrate()
    with warehouse.engine.begin() as connection:
        put(connection, "ledger_entries", LANDLORD, LEDGER)
        put(connection, "tenants", LANDLORD, TENANTS)
        put(connection, "repayment_plans", LANDLORD, PLANS)
    yield warehouse
    warehouse.dispose()
