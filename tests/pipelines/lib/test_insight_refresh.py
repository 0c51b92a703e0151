"""Balances summed once per ledger (`pipelines.lib.insight.refresh_tenant_balances`), on SQLite
and on a fresh PostgreSQL database.

The ledgers are loaded through the warehouse's real load path (so `load_runs` is written as a
night's run writes it); the balances expected are worked out by hand in the comments.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from pipelines.defs.insight.assets import PARIS, insight_tenant_balances
from pipelines.defs.resources import WarehouseResource
from pipelines.lib.insight import BalanceFigures, balance_figures, refresh_tenant_balances
from pipelines.lib.warehouse import Warehouse
from schemas.tables import CANONICAL_TABLES, balance_states, tenant_balances
from tests.pipelines.lib.helpers import migrated_warehouse
from tests.pipelines.lib.test_warehouse import canonical, rejects, request

LANDLORD = "loire-habitat"  # a landlord of datafixes/: a partition of the asset
DAY = dt.date(2026, 3, 10)
NEXT_DAY = dt.date(2026, 3, 11)


def entry(ref: str, tenant: str, day: str, amount: int) -> dict[str, Any]:
    return {
        "entry_ref": ref,
        "tenant_ref": tenant,
        "entry_date": pd.Timestamp(day),
        "kind": "rent" if amount > 0 else "payment",
        "amount_cents": amount,
    }


# the first night's export
FIRST = [
    entry("E1", "T1", "2026-03-01", 60_000),
    entry("E2", "T1", "2026-03-05", -20_000),
    entry("E3", "T2", "2026-03-01", 45_000),
    entry("E4", "T2", "2026-03-10", -45_000),  # on DAY
    entry("E5", "T3", "2026-03-11", 30_000),  # the day after DAY
]
# DAY: T1 60 000 - 20 000 = 40 000; T2 45 000 - 45 000 = 0; T3 has nothing yet
FIRST_ON_DAY = {"T1": 40_000, "T2": 0}
# NEXT_DAY: E5 is dated that day: T3 30 000
FIRST_ON_NEXT_DAY = {"T1": 40_000, "T2": 0, "T3": 30_000}

# the second night's export: E2 is now -25 000, E3 vanished (soft-deleted), E6 is new
SECOND = [
    entry("E1", "T1", "2026-03-01", 60_000),
    entry("E2", "T1", "2026-03-05", -25_000),
    entry("E4", "T2", "2026-03-10", -45_000),
    entry("E5", "T3", "2026-03-11", 30_000),
    entry("E6", "T4", "2026-03-02", 12_345),
]
# DAY: T1 60 000 - 25 000 = 35 000; T2 -45 000 (E3 gone); T4 12 345
SECOND_ON_DAY = {"T1": 35_000, "T2": -45_000, "T4": 12_345}


@pytest.fixture
def warehouse(warehouse_url: str) -> Iterator[Warehouse]:
    """A migrated, empty warehouse."""
    yield from migrated_warehouse(warehouse_url)


def load(warehouse: Warehouse, rows: list[dict[str, Any]], run_id: str) -> None:
    # max_vanished_percent: SECOND drops one of five entries on purpose
    rows_frame = canonical("ledger_entries", rows)
    warehouse.load(request(rows_frame, run_id, landlord=LANDLORD, max_vanished_percent=100))


def refresh(warehouse: Warehouse, as_of: dt.date, run_id: str) -> bool:
    with warehouse.engine.begin() as connection:
        return refresh_tenant_balances(connection, LANDLORD, as_of, run_id)


def stored(warehouse: Warehouse, as_of: dt.date) -> dict[str, tuple[int, str]]:
    """tenant → (balance, run that computed it) of the landlord's day."""
    table = tenant_balances
    with warehouse.engine.connect() as connection:
        rows = connection.execute(
            sa.select(table.c.tenant_ref, table.c.balance_cents, table.c.run_id).where(
                table.c.landlord_id == LANDLORD, table.c.as_of == as_of
            )
        ).all()
    return {row.tenant_ref: (row.balance_cents, row.run_id) for row in rows}


def computed_by(balances: dict[str, int], run_id: str) -> dict[str, tuple[int, str]]:
    return {tenant: (balance, run_id) for tenant, balance in balances.items()}


def test_an_unchanged_ledger_is_not_summed_again_the_same_day(warehouse: Warehouse) -> None:
    load(warehouse, FIRST, "load-1")
    assert refresh(warehouse, DAY, "run-1") is True
    assert stored(warehouse, DAY) == computed_by(FIRST_ON_DAY, "run-1")
    # a second run the same day, nothing loaded in between: the rows of run-1 stay
    assert refresh(warehouse, DAY, "run-2") is False
    assert stored(warehouse, DAY) == computed_by(FIRST_ON_DAY, "run-1")
    with warehouse.engine.connect() as connection:
        assert balance_figures(connection, LANDLORD, DAY) == BalanceFigures(2, 1, 40_000)


def test_a_new_day_is_summed_again(warehouse: Warehouse) -> None:
    load(warehouse, FIRST, "load-1")
    assert refresh(warehouse, DAY, "run-1") is True
    assert refresh(warehouse, NEXT_DAY, "run-2") is True
    assert stored(warehouse, NEXT_DAY) == computed_by(FIRST_ON_NEXT_DAY, "run-2")
    assert stored(warehouse, DAY) == computed_by(FIRST_ON_DAY, "run-1")  # the day before kept
    with warehouse.engine.connect() as connection:
        assert balance_figures(connection, LANDLORD, NEXT_DAY) == BalanceFigures(3, 2, 70_000)


def test_a_load_that_wrote_the_ledger_is_summed_again(warehouse: Warehouse) -> None:
    load(warehouse, FIRST, "load-1")
    assert refresh(warehouse, DAY, "run-1") is True
    load(warehouse, SECOND, "load-2")
    assert refresh(warehouse, DAY, "run-2") is True
    assert stored(warehouse, DAY) == computed_by(SECOND_ON_DAY, "run-2")
    with warehouse.engine.connect() as connection:
        # 3 tenants, T1 and T4 in debt, 35 000 - 45 000 + 12 345 = 2 345
        assert balance_figures(connection, LANDLORD, DAY) == BalanceFigures(3, 2, 2_345)
        state = connection.execute(
            sa.select(balance_states.c.ledger_loads, balance_states.c.ledger_run_id).where(
                balance_states.c.landlord_id == LANDLORD, balance_states.c.as_of == DAY
            )
        ).one()
    assert tuple(state) == (2, "load-2")


def test_a_blocked_load_wrote_nothing_and_is_not_summed_again(warehouse: Warehouse) -> None:
    load(warehouse, FIRST, "load-1")
    assert refresh(warehouse, DAY, "run-1") is True
    blocked = request(
        canonical("ledger_entries", SECOND),
        "load-2",
        landlord=LANDLORD,
        rejected=rejects(("l.csv:9", "E9")),
    )
    warehouse.record_refused(blocked, status="blocked", reason="duplicate keys")
    assert refresh(warehouse, DAY, "run-2") is False
    assert stored(warehouse, DAY) == computed_by(FIRST_ON_DAY, "run-1")


def test_a_landlord_without_a_ledger_gets_no_balances_once(warehouse: Warehouse) -> None:
    assert refresh(warehouse, DAY, "run-1") is True
    assert refresh(warehouse, DAY, "run-2") is False
    assert stored(warehouse, DAY) == {}
    with warehouse.engine.connect() as connection:
        assert balance_figures(connection, LANDLORD, DAY) == BalanceFigures(0, 0, 0)


def _metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    materialization = result.asset_materializations_for_node("insight_tenant_balances")[0]
    return {key: getattr(value, "value", value) for key, value in materialization.metadata.items()}


def test_the_asset_reports_the_same_figures_when_it_does_not_sum_again(
    warehouse: Warehouse,
) -> None:
    load(warehouse, FIRST, "load-1")
    today = dt.datetime.now(PARIS).date()
    assert today > dt.date(2026, 3, 11)  # every entry of FIRST is in the past
    resources = {"warehouse": WarehouseResource(url=warehouse.url)}
    runs = [
        dg.materialize([insight_tenant_balances], partition_key=LANDLORD, resources=resources)
        for _ in range(2)
    ]
    first, second = (_metadata(run) for run in runs)
    assert (first.pop("recomputed"), second.pop("recomputed")) == (True, False)
    assert first == second
    # T1 40 000, T2 0, T3 30 000: 3 tenants, 2 in debt, 70 000
    assert (first["tenants"], first["tenants_in_debt"]) == (3, 2)
    assert (first["total_balance_cents"], first["total_balance_euros"]) == (70_000, "700.00")
    assert stored(warehouse, today) == computed_by(FIRST_ON_NEXT_DAY, runs[0].run_id)


def test_migrate_gives_an_older_warehouse_the_covering_ledger_index(warehouse_url: str) -> None:
    ledger = CANONICAL_TABLES["ledger_entries"]
    engine = sa.create_engine(warehouse_url)
    with engine.begin() as connection:  # the ledger index as schema 5 made it
        ledger.create(connection)
        connection.execute(sa.text("DROP INDEX ix_ledger_entries_tenant"))
        connection.execute(
            sa.text(
                "CREATE INDEX ix_ledger_entries_tenant ON ledger_entries (landlord_id, tenant_ref)"
            )
        )
    engine.dispose()
    warehouse = Warehouse(warehouse_url)
    try:
        warehouse.migrate()
        warehouse.migrate()  # a second time changes nothing
        with warehouse.engine.connect() as connection:
            indexes = {
                index["name"]: index["column_names"]
                for index in sa.inspect(connection).get_indexes("ledger_entries")
            }
            has_state = sa.inspect(connection).has_table("balance_states")
        assert indexes["ix_ledger_entries_tenant"] == [
            "landlord_id", "tenant_ref", "entry_date", "amount_cents", "deleted_at",
        ]  # fmt: skip
        assert has_state
    finally:
        warehouse.dispose()
