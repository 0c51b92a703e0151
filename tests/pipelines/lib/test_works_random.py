"""The works tables of seeded random orders, equal row for row to the plain pandas/Python
reference of `test_works_demo` (the rules written out again, not the hub's SQL), on SQLite and
PostgreSQL.

The orders are drawn to meet what the set-based SQL handles by cases: dates on and around the
days Paris changes its offset, instants in the hours around the change, orders with and
without their own time, several reports of one visit at the same instant, absences before and
after restoration, reports and quotes of deleted rows and of orders that do not exist, orders
ordered after the as-of day, dwellings shared by several orders of one category (repeats), no
dwelling at all."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from pipelines.lib import warehouse as warehouse_module
from pipelines.lib import works as works_module
from pipelines.lib.warehouse import Warehouse
from pipelines.lib.works import refresh_works
from schemas.tables import CANONICAL_TABLES, works_events, works_orders
from tests.pipelines.lib.helpers import migrated_warehouse
from tests.pipelines.lib.test_works_demo import (
    AS_OF,
    PARIS,
    WINDOW_DAYS,
    assert_equal_to_reference,
)

LANDLORD = "bocage-aleatoire"
OTHER = "voisin-aleatoire"  # the same references, another landlord: never read
ORDERS = 400
SEED = 20_260_329
LOADED_AT = dt.datetime(2026, 11, 2, 3, 0, tzinfo=dt.UTC)


def last_sunday(year: int, month: int) -> dt.date:
    day = dt.date(year, month, 31)
    return day - dt.timedelta(days=(day.weekday() + 1) % 7)


# the days of the offset's changes (last Sundays of March and October)
CHANGE_DAYS = [last_sunday(year, month) for year in range(2024, 2027) for month in (3, 10)]


class Draw:
    """Seeded draws of the values the orders are made of."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def day(self) -> dt.date:
        if self.rng.random() < 0.3:  # on or next to a change
            return self.rng.choice(CHANGE_DAYS) + dt.timedelta(days=self.rng.choice((-1, 0, 1)))
        return dt.date(2024, 1, 1) + dt.timedelta(days=self.rng.randrange(0, 1100))

    def instant(self, after: dt.datetime) -> dt.datetime:
        if self.rng.random() < 0.25:  # within three hours of a change (01:00 UTC)
            change = dt.datetime.combine(self.rng.choice(CHANGE_DAYS), dt.time(1), dt.UTC)
            return change + dt.timedelta(minutes=self.rng.randrange(-180, 181, 30))
        return after + dt.timedelta(seconds=self.rng.randrange(-3_600, 40 * 86_400))

    def maybe(self, value: Any, chance: float = 0.5) -> Any:
        return value if self.rng.random() < chance else None


def random_rows(seed: int) -> dict[str, list[dict[str, Any]]]:
    """The canonical works rows of `LANDLORD` (without lineage)."""
    draw, rng = Draw(seed), random.Random(seed + 1)
    rows: dict[str, list[dict[str, Any]]] = {
        "work_orders": [], "quotes": [], "commitments": [], "completions": [], "invoices": [],
    }  # fmt: skip
    done_in: dict[tuple[Any, str], dt.date] = {}  # the last done date per dwelling, category
    for number in range(ORDERS):
        ref = f"BT{number}"
        dwelling = draw.maybe(f"D{rng.randrange(ORDERS // 5)}", 0.95)
        category = rng.choice(("repair", "leak_search", "planned_works"))
        ordered = draw.day()
        if (dwelling, category) in done_in and rng.random() < 0.4:  # a repeat, maybe that day
            ordered = done_in[dwelling, category] + dt.timedelta(days=rng.choice((0, 0, 3, 45)))
        at = draw.maybe(
            dt.datetime.combine(ordered, dt.time(0), PARIS).astimezone(dt.UTC)
            + dt.timedelta(minutes=rng.randrange(0, 24 * 60, 30)),
            0.4,
        )
        start = at or dt.datetime.combine(ordered, dt.time(0), dt.UTC)
        done = draw.maybe(ordered + dt.timedelta(days=rng.randrange(0, 40)), 0.5)
        if done is not None:
            done_in[dwelling, category] = done
        rows["work_orders"].append({
            "order_ref": ref, "contractor": "Couverture du Bocage", "dwelling_ref": dwelling,
            "category": category,
            "status": rng.choice(("received", "scheduled", "done", "invoiced", "cancelled")),
            "ordered_date": ordered, "ordered_at": at,
            "planned_date": draw.maybe(ordered + dt.timedelta(days=rng.randrange(0, 20)), 0.7),
            "done_date": done,
            "gti_hours": draw.maybe(rng.choice((4, 24, 48)), 0.8),
            "gtr_hours": draw.maybe(rng.choice((24, 72, 500)), 0.8),
            "tenant_ref": draw.maybe(f"T{rng.randrange(ORDERS // 4)}", 0.6),
        })  # fmt: skip
        for quote in range(rng.choice((0, 0, 1, 2))):
            issued = draw.maybe(ordered + dt.timedelta(days=rng.randrange(-3, 20)), 0.85)
            accepted = (issued or ordered) + dt.timedelta(days=rng.randrange(0, 10))
            rows["quotes"].append({
                "quote_ref": f"Q{number}-{quote}", "order_ref": ref, "amount_cents": 10_000,
                "status": rng.choice(("draft", "sent", "accepted", "refused", "accepted")),
                "issued_date": issued, "accepted_date": draw.maybe(accepted, 0.8),
            })  # fmt: skip
        for commitment in range(rng.choice((0, 1))):
            rows["commitments"].append({
                "commitment_ref": f"E{number}-{commitment}", "order_ref": ref,
                "amount_cents": 10_000, "status": rng.choice(("confirmed", "cancelled")),
                "committed_date": ordered + dt.timedelta(days=rng.randrange(0, 30)),
            })  # fmt: skip
        previous = None
        for visit in range(rng.choice((0, 0, 1, 1, 2, 3))):
            same = previous is not None and rng.random() < 0.15  # two reports, one instant
            previous = previous if same else draw.instant(start)
            rows["completions"].append({
                "completion_ref": f"C{number}-{visit}", "order_ref": ref,
                "completed_at": previous, "tenant_absent": rng.choice((True, False, None, True)),
                "tenant_signed": rng.choice((True, False, None)),
            })  # fmt: skip
        for invoice in range(rng.choice((0, 1))):
            issued = ordered + dt.timedelta(days=rng.randrange(0, 60))
            rows["invoices"].append({
                "invoice_ref": f"F{number}-{invoice}", "kind": "final", "amount_cents": 10_000,
                "order_ref": ref if rng.random() < 0.9 else f"BT-unknown-{number}",
                "status": rng.choice(("draft", "issued", "paid", "cancelled")),
                "issued_date": issued,
                "paid_date": draw.maybe(issued + dt.timedelta(days=rng.randrange(0, 30)), 0.7),
            })  # fmt: skip
    return rows


def write_rows(warehouse: Warehouse, rows: dict[str, list[dict[str, Any]]]) -> None:
    """The rows for `LANDLORD` (a few of them deleted) and again for `OTHER`."""
    line = 0
    rng = random.Random(SEED + 2)
    with warehouse.engine.begin() as connection:
        for entity, records in rows.items():
            values = []
            for landlord in (LANDLORD, OTHER):
                for record in records:
                    line += 1
                    deleted = LOADED_AT if rng.random() < 0.04 else None
                    values.append({**record, "landlord_id": landlord, "source_name": "random",
                                   "source_row": str(line), "datafix_sha": "0" * 64,
                                   "run_id": "load", "loaded_at": LOADED_AT, "row_hash": line,
                                   "deleted_at": deleted})  # fmt: skip
            connection.execute(CANONICAL_TABLES[entity].insert(), values)


@pytest.fixture
def warehouse(warehouse_url: str) -> Iterator[Warehouse]:
    for migrated in migrated_warehouse(warehouse_url):
        write_rows(migrated, random_rows(SEED))
        for landlord in (OTHER, LANDLORD):
            with migrated.engine.begin() as connection:
                refresh_works(connection, landlord, AS_OF, "run", first_time_fix_days=WINDOW_DAYS)
        yield migrated


def test_random_orders_equal_the_reference(warehouse: Warehouse) -> None:
    events, orders, slots = assert_equal_to_reference(warehouse, LANDLORD)
    # the draws reach the cases they are for
    assert len(orders) > ORDERS * 0.8
    stages = {"ordered", "appointment", "tenant_absent", "completed", "signed", "paid", "cancelled"}
    assert {o["current_stage"] for o in orders} >= stages
    assert any(o["excused_hours"] > 0 for o in orders)
    assert {o["first_time_fix"] for o in orders} == {True, False, None}
    assert {o["gtr_status"] for o in orders} == {"met", "missed", "pending", "no_term"}
    assert sum(missed for *_, missed in slots) > 0
    assert len(events) > 2 * ORDERS


@contextmanager
def recorded(engine: sa.Engine) -> Iterator[list[str]]:
    """The SQL statements `engine` runs inside the block."""
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def test_keys_built_after_the_insert_give_the_same_tables(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above the load's threshold (lowered here to the test's size) and with no more rows held
    than it brings, PostgreSQL drops the primary keys for the inserts and builds them once
    after: the same rows, the keys back, and a duplicate still refused afterwards."""
    monkeypatch.setattr(warehouse_module, "BULK_REINDEX_ROWS", 1)
    # the landlord's rows are deleted first: the tables hold the other landlord's, as many
    with recorded(warehouse.engine) as statements, warehouse.engine.begin() as connection:
        refresh_works(connection, LANDLORD, AS_OF, "run-2", first_time_fix_days=WINDOW_DAYS)
    dropped = [s for s in statements if "DROP CONSTRAINT" in s]
    rebuilt = [s for s in statements if "ADD CONSTRAINT" in s]
    assert len(dropped) == len(rebuilt)
    if warehouse.engine.dialect.name == "postgresql":
        assert len(rebuilt) == 2
    else:
        assert not rebuilt  # SQLite cannot drop a primary key
    assert_equal_to_reference(warehouse, LANDLORD)
    assert_equal_to_reference(warehouse, OTHER)
    inspector = sa.inspect(warehouse.engine)
    assert inspector.get_pk_constraint("works_events")["constrained_columns"] == [
        "landlord_id", "order_ref", "event", "reference"
    ]  # fmt: skip
    assert inspector.get_pk_constraint("works_orders")["constrained_columns"] == [
        "landlord_id", "order_ref"
    ]  # fmt: skip
    with pytest.raises(sa.exc.IntegrityError), warehouse.engine.begin() as connection:
        connection.execute(
            sa.insert(works_orders).from_select(
                [c.name for c in works_orders.c],
                sa.select(works_orders).where(works_orders.c.landlord_id == LANDLORD).limit(1),
            )
        )


def test_a_failed_refresh_keeps_the_keys(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refresh that fails after the keys were dropped rolls back with them: the old rows and
    both primary keys are there."""
    monkeypatch.setattr(warehouse_module, "BULK_REINDEX_ROWS", 1)

    def broken(*args: Any) -> None:
        raise RuntimeError("the per-order step failed")

    monkeypatch.setattr(works_module, "_record_orders", broken)
    with (
        recorded(warehouse.engine) as statements,
        pytest.raises(RuntimeError, match="per-order step"),
        warehouse.engine.begin() as connection,
    ):
        refresh_works(connection, LANDLORD, AS_OF, "run-2", first_time_fix_days=WINDOW_DAYS)
    if warehouse.engine.dialect.name == "postgresql":
        assert any("DROP CONSTRAINT" in s for s in statements)  # dropped before the failure
    assert_equal_to_reference(warehouse, LANDLORD)
    inspector = sa.inspect(warehouse.engine)
    assert inspector.get_pk_constraint("works_events")["constrained_columns"]
    assert inspector.get_pk_constraint("works_orders")["constrained_columns"]


@pytest.mark.postgres
@pytest.mark.parametrize("warehouse_url", ["postgres"], indirect=True)  # a PostgreSQL matter
def test_the_sampled_statistics_leave_the_setting_as_it_was(warehouse: Warehouse) -> None:
    """PostgreSQL: the works' ANALYZEs sample fewer rows (the same tables as the reference
    above come out of it), and the transaction's statistics target is given back."""
    with warehouse.engine.begin() as connection:
        connection.execute(sa.text("SET LOCAL default_statistics_target = 77"))
        with recorded(warehouse.engine) as statements:
            refresh_works(connection, LANDLORD, AS_OF, "run-2", first_time_fix_days=WINDOW_DAYS)
        assert any("default_statistics_target = 10" in s for s in statements)
        shown = connection.execute(sa.text("SHOW default_statistics_target")).scalar_one()
        assert shown == "77"
    assert_equal_to_reference(warehouse, LANDLORD)


@pytest.mark.postgres
@pytest.mark.parametrize("warehouse_url", ["postgres"], indirect=True)  # a PostgreSQL matter
def test_a_table_in_use_elsewhere_keeps_its_key(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: while another transaction holds a lock on works_events (another landlord's
    refresh), the refresh keeps its key rather than wait for it (two refreshes waiting on each
    other would deadlock) and still drops the key of works_orders, which nobody holds."""
    monkeypatch.setattr(warehouse_module, "BULK_REINDEX_ROWS", 1)
    with warehouse.engine.connect() as other:
        other.execute(works_events.delete().where(works_events.c.landlord_id == "nobody"))
        with recorded(warehouse.engine) as statements, warehouse.engine.begin() as connection:
            refresh_works(connection, LANDLORD, AS_OF, "run-2", first_time_fix_days=WINDOW_DAYS)
        other.rollback()
    dropped = [s for s in statements if "DROP CONSTRAINT" in s]
    assert len(dropped) == 1
    assert "works_orders" in dropped[0]
    assert_equal_to_reference(warehouse, LANDLORD)
