"""Insight figures (`pipelines.lib.insight`) on SQLite and on a fresh PostgreSQL database.

The ledger below is written by hand and the balances expected from it are worked out by hand in
the comments, independently of the hub's SQL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import dagster as dg
import pytest
import sqlalchemy as sa

from pipelines.defs.insight.assets import PARIS, insight_tenant_balances
from pipelines.defs.resources import WarehouseResource
from pipelines.lib.insight import (
    TenantBalance,
    analyse,
    record_tenant_balances,
    staged,
    staging_table,
    tenant_balances,
)
from pipelines.lib.warehouse import Warehouse
from schemas.tables import CANONICAL_TABLES
from schemas.tables import tenant_balances as tenant_balances_table

LANDLORD = "loire-habitat"
AS_OF = dt.date(2026, 1, 31)
LOADED_AT = dt.datetime(2026, 2, 1, 3, 0, tzinfo=dt.UTC)

# (entry_ref, tenant_ref, entry_date, kind, amount_cents, soft-deleted, landlord)
LEDGER_ROWS = [
    ("E1", "T1", dt.date(2026, 1, 1), "rent", 50_000, False, LANDLORD),
    ("E2", "T1", dt.date(2026, 1, 5), "payment", -30_000, False, LANDLORD),
    ("E3", "T1", dt.date(2026, 1, 10), "fee", 1_500, True, LANDLORD),  # soft-deleted
    ("E4", "T1", dt.date(2026, 2, 1), "rent", 50_000, False, LANDLORD),  # after as_of
    ("E5", "T2", dt.date(2026, 1, 1), "rent", 40_000, False, LANDLORD),
    ("E6", "T2", dt.date(2026, 1, 31), "payment", -45_000, False, LANDLORD),  # on as_of
    ("E7", "T3", dt.date(2026, 3, 1), "rent", 40_000, False, LANDLORD),  # only after as_of
    ("E8", "T4", dt.date(2026, 1, 2), "rent", 40_000, True, LANDLORD),  # only soft-deleted
    ("E1", "T1", dt.date(2026, 1, 1), "rent", 99_999, False, "opale-logement"),
]
# T1: 50 000 - 30 000 = 20 000 (owes 200.00 €); T2: 40 000 - 45 000 = -5 000 (in credit)
EXPECTED = [TenantBalance("T1", 20_000), TenantBalance("T2", -5_000)]


@pytest.fixture
def warehouse(warehouse_url: str) -> Iterator[Warehouse]:
    """The migrated warehouse holding the hand-made ledger."""
    warehouse = Warehouse(warehouse_url)
    warehouse.migrate()
    ledger = CANONICAL_TABLES["ledger_entries"]
    rows = [
        {
            "landlord_id": landlord,
            "entry_ref": entry,
            "tenant_ref": tenant,
            "entry_date": entry_date,
            "kind": kind,
            "amount_cents": amount,
            "source_name": "ledger",
            "source_row": f"ledger.csv:{line}",
            "datafix_sha": "0" * 64,
            "run_id": "load-run",
            "loaded_at": LOADED_AT,
            "row_hash": line,
            "deleted_at": LOADED_AT if deleted else None,
        }
        for line, (entry, tenant, entry_date, kind, amount, deleted, landlord) in enumerate(
            LEDGER_ROWS, start=2
        )
    ]
    with warehouse.engine.begin() as connection:
        connection.execute(ledger.insert(), rows)
    yield warehouse
    warehouse.dispose()


def test_balances_sum_live_entries_up_to_as_of_per_tenant(warehouse: Warehouse) -> None:
    with warehouse.engine.connect() as connection:
        assert tenant_balances(connection, LANDLORD, AS_OF) == EXPECTED
        # the day before, T2's payment is not posted yet and T1's payment is
        assert tenant_balances(connection, LANDLORD, dt.date(2026, 1, 30)) == [
            TenantBalance("T1", 20_000),
            TenantBalance("T2", 40_000),
        ]
        assert tenant_balances(connection, "nobody", AS_OF) == []


def test_recording_twice_leaves_one_row_per_tenant_and_day(warehouse: Warehouse) -> None:
    table = tenant_balances_table
    for run_id in ("run-1", "run-2"):
        with warehouse.engine.begin() as connection:
            record_tenant_balances(connection, LANDLORD, AS_OF, run_id)
    with warehouse.engine.connect() as connection:
        rows = connection.execute(
            sa.select(table.c.landlord_id, table.c.tenant_ref, table.c.as_of,
                      table.c.balance_cents, table.c.run_id).order_by(table.c.tenant_ref)
        ).all()  # fmt: skip
    assert [tuple(row) for row in rows] == [
        (LANDLORD, "T1", AS_OF, 20_000, "run-2"),
        (LANDLORD, "T2", AS_OF, -5_000, "run-2"),
    ]


def test_the_asset_records_todays_figures(warehouse: Warehouse) -> None:
    today = dt.datetime.now(PARIS).date()
    assert today > dt.date(2026, 3, 1)  # every dated entry of the ledger is in the past
    result = dg.materialize(
        [insight_tenant_balances],
        partition_key=LANDLORD,
        resources={"warehouse": WarehouseResource(url=warehouse.url)},
    )
    assert result.success
    metadata = {
        key: getattr(value, "value", value)
        for key, value in result.asset_materializations_for_node("insight_tenant_balances")[
            0
        ].metadata.items()
    }
    # T1: 50 000 - 30 000 + 50 000 (E4, now past) = 70 000; T2: -5 000; T3: 40 000
    assert metadata["tenants"] == 3
    assert metadata["tenants_in_debt"] == 2
    assert metadata["total_balance_cents"] == 105_000
    assert metadata["total_balance_euros"] == "1050.00"
    assert metadata["datafix/stage"] == "insight"


def _stat_rows(connection: sa.Connection, table: str) -> set[int]:
    """The row counts SQLite's statistics of `table` were taken on."""
    stats = connection.exec_driver_sql("SELECT stat FROM main.sqlite_stat1 WHERE tbl = ?", (table,))
    return {int(stat.split()[0]) for stat in stats.scalars()}


def test_sqlite_analyses_a_table_again_once_it_grew_by_a_quarter(tmp_path) -> None:
    """SQLite's statistics of a table are taken when it has none, and again once its row
    count has moved by more than a quarter from theirs (ANALYZE reads the whole table): one
    landlord's lines more in a table of many keep them."""
    table = sa.Table(
        "lines",
        sa.MetaData(),
        sa.Column("landlord_id", sa.String, primary_key=True),
        sa.Column("ref", sa.Integer, primary_key=True),
    )
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'stats.db'}")

    def landlords(first: int, last: int) -> None:
        rows = [
            {"landlord_id": f"L{n}", "ref": ref} for n in range(first, last) for ref in range(10)
        ]
        with engine.begin() as connection:
            connection.execute(table.insert(), rows)

    table.create(engine)
    with engine.begin() as connection:
        analyse(connection, table)  # empty: nothing to record
        assert _stat_rows(connection, "lines") == set()
    landlords(0, 8)
    with engine.begin() as connection:
        analyse(connection, table)
        assert _stat_rows(connection, "lines") == {80}
    landlords(8, 10)  # 100 rows: within a quarter of 80
    with engine.begin() as connection:
        analyse(connection, table)
        assert _stat_rows(connection, "lines") == {80}
    landlords(10, 11)  # 110 rows: more than a quarter above
    with engine.begin() as connection:
        analyse(connection, table)
        assert _stat_rows(connection, "lines") == {110}
    with engine.begin() as connection:
        connection.execute(table.delete().where(table.c.landlord_id != "L0"))  # 10 rows
        analyse(connection, table)
        assert _stat_rows(connection, "lines") == {10}
    engine.dispose()


def test_a_staging_table_is_analysed_each_time(tmp_path) -> None:
    staging = staging_table("staged_lines", sa.Column("ref", sa.Integer, primary_key=True))
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'stats.db'}")
    with engine.begin() as connection:
        for count in (4, 5):
            select = sa.union_all(*(sa.select(sa.literal(ref)) for ref in range(count)))
            with staged(connection, staging, select):
                stats = connection.exec_driver_sql(
                    "SELECT stat FROM temp.sqlite_stat1 WHERE tbl = 'staged_lines'"
                ).scalars()
                assert {int(stat.split()[0]) for stat in stats} == {count}
    engine.dispose()


def test_sqlite_keeps_a_tables_statistics_after_a_staging_tables_on_the_connection(
    tmp_path,
) -> None:
    """A staging table's ANALYZE makes the connection's TEMP statistics table: the warehouse's
    own statistics are still the ones compared (a worker keeps its connection)."""
    table = sa.Table("lines", sa.MetaData(), sa.Column("ref", sa.Integer, primary_key=True))
    staging = staging_table("staged_refs", sa.Column("ref", sa.Integer, primary_key=True))
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'stats.db'}")
    table.create(engine)
    with engine.begin() as connection:
        connection.execute(table.insert(), [{"ref": ref} for ref in range(80)])
        analyse(connection, table)
        with staged(connection, staging, sa.select(table.c.ref)):
            pass
        connection.execute(table.insert(), [{"ref": ref} for ref in range(80, 90)])
        analyse(connection, table)  # 90 rows: within a quarter of 80
        assert _stat_rows(connection, "lines") == {80}
    engine.dispose()
