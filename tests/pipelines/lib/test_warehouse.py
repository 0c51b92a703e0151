"""Warehouse writes (`pipelines.lib.warehouse`), on SQLite and on a fresh PostgreSQL database.

Every test takes the `warehouse_url` fixture, so it runs once per database. Canonical frames are
built here with the dtypes the normalise stage gives them; tables are read back through
SQLAlchemy and compared whole, lineage columns included, to prove what was (not) rewritten.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

import pipelines.lib.staging as staging_module
from pipelines.lib.warehouse import (
    BULK_REINDEX_ROWS,
    LoadRequest,
    LoadResult,
    VanishGuardError,
    Warehouse,
)
from schemas import tables
from schemas.canonical import ENTITIES, PANDAS_DTYPES
from schemas.tables import CANONICAL_TABLES, load_runs, quarantine, source_state
from tests.pipelines.lib.helpers import migrated_warehouse

LANDLORD = "acme-habitat"
OTHER_LANDLORD = "opale-logement"
LEDGER = CANONICAL_TABLES["ledger_entries"]
REJECT_COLUMNS = ["source_row", "key", "raw", "reason", "message", "open_columns"]
DatabaseFactory = Callable[[], AbstractContextManager[str]]


# --- helpers --------------------------------------------------------------------------------


def canonical(entity: str, records: list[dict[str, Any]]) -> pd.DataFrame:
    """Canonical rows as normalise hands them over: spec dtypes plus `source_row`."""
    spec = ENTITIES[entity]
    frame = pd.DataFrame(
        {
            column.name: pd.Series(
                [r.get(column.name) for r in records], dtype=PANDAS_DTYPES[column.type]
            )
            for column in spec.columns
        }
    )
    frame["source_row"] = pd.Series(
        [r.get("source_row", f"quittancement.csv:{n}") for n, r in enumerate(records, 2)],
        dtype="str",
    )
    return frame


def entries(count: int, *, amount: int = 1_000) -> list[dict[str, Any]]:
    """Ledger entries E0..E<count-1>, each with its own amount."""
    return [
        {
            "entry_ref": f"E{number}",
            "tenant_ref": f"T{number % 3}",
            "entry_date": pd.Timestamp("2026-03-01"),
            "kind": "rent",
            "amount_cents": amount + number,
        }
        for number in range(count)
    ]


def rejects(*rejected: tuple[str, str]) -> pd.DataFrame:
    """Rejects as normalise returns them, from (source_row, key) pairs."""
    records = [
        {
            "source_row": source_row,
            "key": key,
            "raw": json.dumps({"N° écriture": key, "Débit": "12,5O"}, ensure_ascii=False),
            "reason": "bad_amount",
            "message": f"amount_cents ← column 'Débit': '12,5O' is not an amount ({key})",
            "open_columns": json.dumps(["N° écriture"], ensure_ascii=False),  # Débit sealed
        }
        for source_row, key in rejected
    ]
    return pd.DataFrame(
        {c: pd.Series([r[c] for r in records], dtype="str") for c in REJECT_COLUMNS}
    )


def request(
    rows: pd.DataFrame,
    run_id: str,
    *,
    entity: str = "ledger_entries",
    landlord: str = LANDLORD,
    rejected: pd.DataFrame | None = None,
    **options: Any,
) -> LoadRequest:
    rejected = rejects() if rejected is None else rejected
    return LoadRequest(
        landlord_id=landlord,
        entity=entity,
        source_name="quittancement",
        rows=rows,
        rejects=rejected,
        datafix_sha="a" * 64,
        run_id=run_id,
        fingerprint=f"fingerprint-{run_id}",
        rows_in_source=len(rows) + len(rejected) + 1,
        skipped=1,
        **options,
    )


def ledger_load(count: int, run_id: str, *rejected: tuple[str, str]) -> LoadRequest:
    """The load of `entries(count)` in run `run_id`, with `rejected` (source_row, key) pairs."""
    return request(canonical("ledger_entries", entries(count)), run_id, rejected=rejects(*rejected))


def dump(warehouse: Warehouse, table: sa.Table) -> list[tuple[Any, ...]]:
    """Every row of `table`, every column, in primary-key order."""
    order = list(table.primary_key.columns) or list(table.columns)
    with warehouse.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.select(table).order_by(*order))]


def by_key(warehouse: Warehouse, landlord: str = LANDLORD) -> dict[str, Any]:
    """Ledger rows of one landlord by entry_ref."""
    with warehouse.engine.connect() as conn:
        rows = conn.execute(sa.select(LEDGER).where(LEDGER.c.landlord_id == landlord)).all()
    return {row.entry_ref: row for row in rows}


def as_utc(value: dt.datetime) -> dt.datetime:
    """SQLite hands back naive UTC datetimes, PostgreSQL aware ones."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


@pytest.fixture
def warehouse(warehouse_url: str) -> Iterator[Warehouse]:
    """A migrated, empty warehouse."""
    yield from migrated_warehouse(warehouse_url)


# --- migrate --------------------------------------------------------------------------------


def test_migrate_creates_every_table_with_every_column(warehouse_url: str) -> None:
    hub = Warehouse(warehouse_url)
    hub.migrate()

    inspector = sa.inspect(hub.engine)
    assert set(tables.metadata.tables) <= set(inspector.get_table_names())
    for table in tables.metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        assert present == set(table.columns.keys()), table.name
    hub.dispose()


def test_migrate_is_idempotent_and_keeps_the_data(warehouse: Warehouse) -> None:
    warehouse.load(ledger_load(3, "run-1"))
    before = dump(warehouse, LEDGER)

    warehouse.migrate()
    warehouse.migrate()

    assert dump(warehouse, LEDGER) == before
    with warehouse.engine.connect() as conn:
        versions = conn.execute(sa.select(tables.hub_schema.c.version)).scalars().all()
    assert versions == [tables.SCHEMA_VERSION]


def test_migrate_replaces_the_schema_7_works_timeline_table_by_its_view(warehouse_url: str) -> None:
    """Schema 7 stored the whole works timeline in a table `works_timeline`; from schema 8 it
    is a view of works_orders' own events and works_events: the table goes (the works are
    computed again at the next run, `works.WORKS_LAYOUT`), the view comes, once."""
    engine = sa.create_engine(warehouse_url)
    key = {"landlord_id", "order_ref", "event", "reference"}
    old = sa.Table(
        "works_timeline",
        sa.MetaData(),
        *(sa.Column(c.name, c.type, primary_key=c.name in key) for c in tables.works_events.c),
    )
    old.create(engine)
    engine.dispose()
    hub = Warehouse(warehouse_url)
    hub.migrate()
    hub.migrate()
    inspector = sa.inspect(hub.engine)
    assert "works_timeline" not in inspector.get_table_names()
    assert "works_timeline" in inspector.get_view_names()
    assert {c["name"] for c in inspector.get_columns("works_timeline")} == set(
        tables.works_timeline.c.keys()
    )
    with hub.engine.connect() as conn:
        assert conn.execute(sa.select(tables.works_timeline)).all() == []
    hub.dispose()


def test_migrate_moves_schema_4_watermarks_into_feed_cursors_once(warehouse_url: str) -> None:
    """Schema 4 kept one watermark per entity (`source_cursors`); the feed is its source."""
    engine = sa.create_engine(warehouse_url)
    tables.legacy_source_cursors.create(engine)
    with engine.begin() as conn:
        conn.execute(
            tables.legacy_source_cursors.insert().values(
                landlord_id="delta-habitat",
                entity="ledger_entries",
                source_name="erp",
                cursor_column="modifie_le",
                cursor_value="2026-03-02 23:00:00",
                key_columns='["id"]',
                key_values='["6000"]',
                run_id="night-9",
                updated_at=dt.datetime(2026, 3, 3, tzinfo=dt.UTC),
            )
        )
    engine.dispose()
    hub = Warehouse(warehouse_url)
    hub.migrate()
    hub.migrate()  # twice: copied once
    watermark = hub.cursor("delta-habitat", "ledger_entries", "erp")
    assert watermark is not None
    assert (watermark.column, watermark.value, watermark.key, watermark.key_values) == (
        "modifie_le",
        "2026-03-02 23:00:00",
        ("id",),
        ("6000",),
    )
    with hub.engine.connect() as conn:
        copied = conn.execute(sa.select(sa.func.count()).select_from(tables.feed_cursors))
        assert copied.scalar_one() == 1
    hub.dispose()


def test_migrate_adds_a_column_missing_from_an_older_table(warehouse_url: str) -> None:
    tenants = CANONICAL_TABLES["tenants"]
    older = sa.Table(
        "tenants",
        sa.MetaData(),
        *[
            sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
            for c in tenants.columns
            if c.name != "formal_demands"
        ],
    )
    hub = Warehouse(warehouse_url)
    with hub.engine.begin() as conn:
        older.create(conn)

    hub.migrate()

    columns = {c["name"] for c in sa.inspect(hub.engine).get_columns("tenants")}
    assert "formal_demands" in columns
    rows = canonical("tenants", [{"tenant_ref": "T1", "status": "active", "formal_demands": 2}])
    hub.load(request(rows, "run-1", entity="tenants"))
    with hub.engine.connect() as conn:
        stored = conn.execute(sa.select(tenants.c.formal_demands)).scalar_one()
    assert stored == 2
    hub.dispose()


# --- upserts --------------------------------------------------------------------------------


def test_first_load_inserts_every_row(warehouse: Warehouse) -> None:
    result = warehouse.load(ledger_load(5, "run-1"))

    assert result == LoadResult(inserted=5, updated=0, unchanged=0, deleted=0, quarantined=0)
    assert result.loaded == 5
    stored = by_key(warehouse)
    assert sorted(stored) == ["E0", "E1", "E2", "E3", "E4"]
    assert {row.run_id for row in stored.values()} == {"run-1"}
    assert stored["E3"].amount_cents == 1_003
    assert stored["E3"].source_row == "quittancement.csv:5"
    assert stored["E3"].datafix_sha == "a" * 64


def test_same_load_again_rewrites_nothing(warehouse: Warehouse) -> None:
    rows = canonical("ledger_entries", entries(5))
    warehouse.load(request(rows, "run-1"))
    before = dump(warehouse, LEDGER)

    result = warehouse.load(request(rows, "run-2"))

    assert result == LoadResult(inserted=0, updated=0, unchanged=5, deleted=0, quarantined=0)
    assert dump(warehouse, LEDGER) == before  # run_id and loaded_at included


def test_changed_rows_are_updated_and_only_them(warehouse: Warehouse) -> None:
    warehouse.load(ledger_load(6, "run-1"))
    before = by_key(warehouse)
    changed = entries(6)
    changed[0]["amount_cents"] = 1
    changed[2]["label"] = "Loyer mars"
    changed[4]["entry_date"] = pd.Timestamp("2026-04-01")

    result = warehouse.load(request(canonical("ledger_entries", changed), "run-2"))

    assert result == LoadResult(inserted=0, updated=3, unchanged=3, deleted=0, quarantined=0)
    after = by_key(warehouse)
    assert {key for key, row in after.items() if row.run_id == "run-2"} == {"E0", "E2", "E4"}
    assert (after["E0"].amount_cents, after["E2"].label) == (1, "Loyer mars")
    assert after["E4"].entry_date == dt.date(2026, 4, 1)
    for key in ("E1", "E3", "E5"):
        assert tuple(after[key]) == tuple(before[key])


def test_new_rows_are_inserted_beside_existing_ones(warehouse: Warehouse) -> None:
    warehouse.load(ledger_load(3, "run-1"))

    result = warehouse.load(ledger_load(5, "run-2"))

    assert result == LoadResult(inserted=2, updated=0, unchanged=3, deleted=0, quarantined=0)
    assert {key: row.run_id for key, row in by_key(warehouse).items()} == {
        "E0": "run-1",
        "E1": "run-1",
        "E2": "run-1",
        "E3": "run-2",
        "E4": "run-2",
    }


# --- soft deletes ---------------------------------------------------------------------------


def test_snapshot_soft_deletes_a_vanished_row_and_revives_it(warehouse: Warehouse) -> None:
    warehouse.load(ledger_load(4, "run-1"))

    gone = warehouse.load(ledger_load(3, "run-2"))

    assert gone == LoadResult(inserted=0, updated=0, unchanged=3, deleted=1, quarantined=0)
    stored = by_key(warehouse)
    assert stored["E3"].deleted_at is not None  # still there, flagged
    assert stored["E3"].amount_cents == 1_003
    assert [key for key, row in stored.items() if row.deleted_at is None] == ["E0", "E1", "E2"]

    back = warehouse.load(ledger_load(4, "run-3"))

    assert back == LoadResult(inserted=0, updated=1, unchanged=3, deleted=0, quarantined=0)
    stored = by_key(warehouse)
    assert stored["E3"].deleted_at is None
    assert stored["E3"].run_id == "run-3"


def test_a_rejected_row_is_not_soft_deleted(warehouse: Warehouse) -> None:
    warehouse.load(ledger_load(4, "run-1"))

    result = warehouse.load(ledger_load(3, "run-2", ("quittancement.csv:5", "E3")))

    assert result.deleted == 0
    assert result.quarantined == 1
    stored = by_key(warehouse)["E3"]
    assert stored.deleted_at is None
    assert stored.run_id == "run-1"  # the last good version stays as it was


def test_incremental_mode_never_deletes(warehouse: Warehouse) -> None:
    warehouse.load(ledger_load(5, "run-1"))

    result = warehouse.load(
        request(canonical("ledger_entries", entries(1)), "run-2", mode="incremental")
    )

    assert result == LoadResult(inserted=0, updated=0, unchanged=1, deleted=0, quarantined=0)
    assert all(row.deleted_at is None for row in by_key(warehouse).values())


@pytest.mark.parametrize(
    ("kept", "max_vanished_percent", "refused"),
    [
        pytest.param(5, 50.0, False, id="half-vanished-at-50"),
        pytest.param(4, 50.0, True, id="sixty-percent-vanished-at-50"),
        pytest.param(0, 100.0, False, id="all-vanished-at-100"),
        pytest.param(9, 0.0, True, id="one-vanished-at-0"),
    ],
)
def test_vanish_guard_threshold(
    warehouse: Warehouse, kept: int, max_vanished_percent: float, refused: bool
) -> None:
    warehouse.load(ledger_load(10, "run-1"))
    smaller = request(
        canonical("ledger_entries", entries(kept)),
        "run-2",
        max_vanished_percent=max_vanished_percent,
    )

    if refused:
        with pytest.raises(VanishGuardError, match=f"lacks {10 - kept} of the 10 rows"):
            warehouse.load(smaller)
    else:
        assert warehouse.load(smaller).deleted == 10 - kept


def test_vanish_guard_writes_nothing(warehouse: Warehouse) -> None:
    warehouse.load(ledger_load(10, "run-1", ("quittancement.csv:20", "E20")))
    written = (LEDGER, quarantine, load_runs, source_state)
    before = {table.name: dump(warehouse, table) for table in written}
    truncated = entries(4)
    truncated[0]["amount_cents"] = 1  # a change that must not be written either
    truncated_load = request(
        canonical("ledger_entries", [*truncated, *entries(12)[10:]]),
        "run-2",
        rejected=rejects(("quittancement.csv:30", "E30")),
    )

    with pytest.raises(VanishGuardError, match="Nothing was written"):
        warehouse.load(truncated_load)

    assert {table.name: dump(warehouse, table) for table in written} == before
    assert warehouse.last_state(LANDLORD, "ledger_entries") == ("fingerprint-run-1", "a" * 64)


# --- quarantine -----------------------------------------------------------------------------


def quarantined(warehouse: Warehouse) -> dict[str, Any]:
    with warehouse.engine.connect() as conn:
        rows = conn.execute(sa.select(quarantine)).all()
    return {row.source_row: row for row in rows}


def test_quarantine_records_dedupes_and_resolves_rejects(warehouse: Warehouse) -> None:
    rows = canonical("ledger_entries", entries(3))
    first = rejects(("quittancement.csv:9", "E9"), ("quittancement.csv:10", "E10"))

    assert warehouse.load(request(rows, "run-1", rejected=first)).quarantined == 2
    stored = quarantined(warehouse)
    assert sorted(stored) == ["quittancement.csv:10", "quittancement.csv:9"]
    row = stored["quittancement.csv:9"]
    assert (row.landlord_id, row.entity, row.source_name) == (
        LANDLORD,
        "ledger_entries",
        "quittancement",
    )
    assert (row.reason, row.first_run_id, row.run_id) == ("bad_amount", "run-1", "run-1")
    stored_raw = json.loads(row.raw)  # at rest: the open column readable, the others sealed
    assert stored_raw["N° écriture"] == "E9"
    assert stored_raw["Débit"].startswith("fernet:") and "12,5O" not in row.raw
    opened = warehouse.open_quarantine(LANDLORD, "ledger_entries")
    by_row = dict(zip(opened["source_row"], opened["raw"], strict=True))
    assert json.loads(by_row["quittancement.csv:9"]) == {"N° écriture": "E9", "Débit": "12,5O"}
    assert "'12,5O' is not an amount" in row.message
    assert row.resolved_at is None

    # E9 is still rejected, E10 was fixed at the source
    warehouse.load(request(rows, "run-2", rejected=rejects(("quittancement.csv:9", "E9"))))

    stored = quarantined(warehouse)
    assert len(stored) == 2  # the same reject is not recorded twice
    assert (stored["quittancement.csv:9"].first_run_id, stored["quittancement.csv:9"].run_id) == (
        "run-1",
        "run-2",
    )
    assert stored["quittancement.csv:9"].resolved_at is None
    assert stored["quittancement.csv:10"].resolved_at is not None

    # the same bad row comes back: it is open again
    warehouse.load(request(rows, "run-3", rejected=first))

    assert all(row.resolved_at is None for row in quarantined(warehouse).values())
    assert len(quarantined(warehouse)) == 2


# --- audit rows and source state ------------------------------------------------------------


def test_load_runs_and_source_state_are_written(warehouse: Warehouse) -> None:
    rows = canonical("ledger_entries", entries(4))
    warehouse.load(request(rows, "run-1", rejected=rejects(("quittancement.csv:9", "E9"))))
    warehouse.load(ledger_load(3, "run-2"))

    with warehouse.engine.connect() as conn:
        audit = conn.execute(sa.select(load_runs).order_by(load_runs.c.run_id)).all()
        state = conn.execute(sa.select(source_state)).all()
    names = ("run_id", "rows_in_source", "skipped", "read", "loaded", "inserted", "updated")
    names += ("unchanged", "deleted", "quarantined", "status")
    counts = [tuple(getattr(r, name) for name in names) for r in audit]
    assert counts == [
        ("run-1", 6, 1, 5, 4, 4, 0, 0, 0, 1, "loaded"),
        ("run-2", 4, 1, 3, 3, 0, 0, 3, 1, 0, "loaded"),
    ]
    assert all(r.read == r.loaded + r.quarantined for r in audit)  # nothing is lost
    assert [(s.landlord_id, s.entity, s.fingerprint, s.run_id) for s in state] == [
        (LANDLORD, "ledger_entries", "fingerprint-run-2", "run-2")
    ]


def test_last_state_is_the_fingerprint_and_datafix_sha_of_the_last_load(
    warehouse: Warehouse,
) -> None:
    assert warehouse.last_state(LANDLORD, "ledger_entries") is None

    warehouse.load(ledger_load(2, "run-1"))
    warehouse.load(ledger_load(2, "run-2"))

    assert warehouse.last_state(LANDLORD, "ledger_entries") == ("fingerprint-run-2", "a" * 64)
    assert warehouse.last_state(LANDLORD, "tenants") is None
    assert warehouse.last_state(OTHER_LANDLORD, "ledger_entries") is None


# --- values round-trip exactly --------------------------------------------------------------


def test_amounts_round_trip_as_exact_integers(warehouse: Warehouse) -> None:
    amounts = {
        "E0": 123_456_789_012,  # a billion euros
        "E1": -123_456_789_012,
        "E2": 2**53 + 1,  # a float would round it to 2**53
        "E3": 0,
        "E4": -1,
    }
    records = [row | {"amount_cents": amounts[row["entry_ref"]]} for row in entries(5)]

    warehouse.load(request(canonical("ledger_entries", records), "run-1"))

    stored = {key: row.amount_cents for key, row in by_key(warehouse).items()}
    assert stored == amounts
    assert {type(value) for value in stored.values()} == {int}


# microseconds, booleans, a rating, text beyond ASCII (C1) and blanks (C2)
COMPLETIONS = [
    {
        "completion_ref": "C1",
        "order_ref": "BT345678",
        "completed_at": pd.Timestamp("2026-07-01 12:00:00.123456", tz="UTC"),
        "tenant_absent": False,
        "tenant_signed": True,
        "rating": 5,
        "tenant_comment": "Très bien, merci ❤",
    },
    {
        "completion_ref": "C2",
        "order_ref": "BT345679",
        "completed_at": pd.Timestamp("2026-01-15 13:00:00", tz="UTC"),
    },
]


def test_dates_datetimes_booleans_and_blanks_round_trip(warehouse: Warehouse) -> None:
    completions = canonical("completions", COMPLETIONS)
    ledger = canonical(
        "ledger_entries",
        [entries(1)[0] | {"entry_date": pd.Timestamp("2026-02-28"), "due_date": None}],
    )

    warehouse.load(request(completions, "run-1", entity="completions"))
    warehouse.load(request(ledger, "run-1"))

    table = CANONICAL_TABLES["completions"]
    with warehouse.engine.connect() as conn:
        rows = {r.completion_ref: r for r in conn.execute(sa.select(table))}
    assert as_utc(rows["C1"].completed_at) == dt.datetime(2026, 7, 1, 12, 0, 0, 123456, dt.UTC)
    assert as_utc(rows["C2"].completed_at) == dt.datetime(2026, 1, 15, 13, 0, tzinfo=dt.UTC)
    assert (rows["C1"].tenant_absent, rows["C1"].tenant_signed) == (False, True)
    assert (rows["C1"].rating, rows["C1"].tenant_comment) == (5, "Très bien, merci ❤")
    assert (rows["C2"].tenant_absent, rows["C2"].rating, rows["C2"].technician) == (
        None,
        None,
        None,
    )
    entry = by_key(warehouse)["E0"]
    assert (entry.entry_date, entry.due_date) == (dt.date(2026, 2, 28), None)


# what a text column may hold that the bulk write must keep as it is (PostgreSQL's COPY reads
# CSV: quotes, separators, line breaks, backslashes and its end-of-data mark `\.`)
AWKWARD_TEXTS = [
    "",
    " ",
    'il a dit "non"',
    "a;b,c\td",
    "ligne 1\nligne 2\r\nligne 3",
    "\\.",
    "\\N",
    "NULL",
    "C:\\chemin\\vers",
    "Très bien, merci ❤",
]


def test_awkward_texts_and_blanks_round_trip(warehouse: Warehouse) -> None:
    records = entries(len(AWKWARD_TEXTS) + 1)
    for record, text in zip(records, AWKWARD_TEXTS, strict=False):
        record["label"] = text
    records[-1]["label"] = None

    warehouse.load(request(canonical("ledger_entries", records), "run-1"))

    stored = by_key(warehouse)
    assert [stored[f"E{n}"].label for n in range(len(records))] == [*AWKWARD_TEXTS, None]


def test_reloading_what_was_read_back_changes_nothing(warehouse: Warehouse) -> None:
    """Blanks, booleans and UTC datetimes hash the same on every run: nothing is rewritten."""
    completions = canonical("completions", COMPLETIONS)
    warehouse.load(request(completions, "run-1", entity="completions"))

    result = warehouse.load(request(completions.copy(), "run-2", entity="completions"))

    assert (result.updated, result.unchanged) == (0, 2)


# --- volume ---------------------------------------------------------------------------------


def big_ledger(count: int) -> pd.DataFrame:
    """`count` canonical ledger rows E0…, amounts 1…count, 997 tenants."""
    numbers = pd.RangeIndex(count)
    return pd.DataFrame(
        {
            "entry_ref": pd.Series("E" + numbers.astype("str"), dtype="str"),
            "tenant_ref": pd.Series("T" + (numbers % 997).astype("str"), dtype="str"),
            "entry_date": pd.Series(pd.Timestamp("2026-03-01"), index=numbers).astype(
                "datetime64[ns]"
            ),
            "kind": pd.Series("rent", index=numbers, dtype="str"),
            "amount_cents": pd.Series(numbers + 1, dtype="Int64"),
            "label": pd.Series(pd.NA, index=numbers, dtype="str"),
            "due_date": pd.Series(pd.NaT, index=numbers, dtype="datetime64[ns]"),
            "reject_reason": pd.Series(pd.NA, index=numbers, dtype="str"),
            "payment_method": pd.Series(pd.NA, index=numbers, dtype="str"),
            "source_row": pd.Series("big.csv:" + (numbers + 2).astype("str"), dtype="str"),
        }
    )


def test_a_large_batch_is_loaded_and_the_index_is_there_afterwards(warehouse: Warehouse) -> None:
    count = 60_000
    assert count >= BULK_REINDEX_ROWS  # SQLite drops the index and builds it once afterwards
    rows = big_ledger(count)

    result = warehouse.load(request(rows, "run-1"))

    assert result.inserted == count
    with warehouse.engine.connect() as conn:
        stored, total = conn.execute(
            sa.select(sa.func.count(), sa.func.sum(LEDGER.c.amount_cents))
        ).one()
    assert (stored, int(total)) == (count, count * (count + 1) // 2)
    indexes = {index["name"] for index in sa.inspect(warehouse.engine).get_indexes(LEDGER.name)}
    assert "ix_ledger_entries_tenant" in indexes


def recorded_statements(warehouse: Warehouse) -> list[str]:
    """The SQL statements `warehouse` runs from now on, appended as they run."""
    statements: list[str] = []
    sa.event.listen(
        warehouse.engine,
        "before_cursor_execute",
        lambda _conn, _cursor, statement, *_: statements.append(statement),
    )
    return statements


def indexes_of(warehouse: Warehouse, table: sa.Table) -> list[str]:
    """The definitions of the indexes of `table` on PostgreSQL."""
    with warehouse.engine.connect() as conn:
        return sorted(
            conn.exec_driver_sql(
                "SELECT indexdef FROM pg_indexes WHERE tablename = %(table)s", {"table": table.name}
            ).scalars()
        )


def test_postgres_first_bulk_load_builds_the_indexes_after(
    postgres_database: DatabaseFactory,
) -> None:
    """A bulk load into an empty PostgreSQL table drops its indexes (the primary key's too) and
    builds them after the COPY, as they were: the key is enforced again for the next load."""
    with postgres_database() as url:
        warehouse = Warehouse(url)
        warehouse.migrate()
        before = indexes_of(warehouse, LEDGER)
        statements = recorded_statements(warehouse)
        count = BULK_REINDEX_ROWS + 10
        warehouse.load(request(big_ledger(count), "run-1"))
        after = indexes_of(warehouse, LEDGER)
        with warehouse.engine.connect() as conn:
            constraints = conn.exec_driver_sql(
                "SELECT contype FROM pg_constraint WHERE conrelid = 'ledger_entries'::regclass"
            ).scalars()
            stored = conn.execute(sa.select(sa.func.count()).select_from(LEDGER)).scalar_one()
        with pytest.raises(sa.exc.IntegrityError), warehouse.engine.begin() as conn:
            conn.execute(LEDGER.insert().from_select(list(LEDGER.c.keys()), sa.select(LEDGER)))
        result = warehouse.load(request(big_ledger(count), "run-2"))
        warehouse.dispose()

    assert any(s.startswith("ALTER TABLE ledger_entries DROP CONSTRAINT") for s in statements)
    assert any(s.startswith("DROP INDEX") for s in statements)
    assert after == before and len(after) == 2
    assert list(constraints) == ["p"]
    assert stored == count
    assert (result.inserted, result.unchanged) == (0, count)


def test_postgres_bulk_load_keeps_the_indexes_of_a_table_in_use(
    postgres_database: DatabaseFactory,
) -> None:
    """Another transaction reading the table: the first bulk load does not wait for it (two
    first loads waiting for each other would deadlock) and COPYs with the indexes in place."""
    with postgres_database() as url:
        warehouse = Warehouse(url)
        warehouse.migrate()
        statements = recorded_statements(warehouse)
        reader = sa.create_engine(url)
        with reader.begin() as conn:
            conn.execute(sa.select(sa.func.count()).select_from(LEDGER)).scalar_one()
            result = warehouse.load(request(big_ledger(BULK_REINDEX_ROWS), "run-1"))
        reader.dispose()
        stored = len(by_key(warehouse))
        warehouse.dispose()

    assert result.inserted == stored == BULK_REINDEX_ROWS
    assert any("NOWAIT" in s for s in statements)
    assert not any(s.startswith(("DROP INDEX", "ALTER TABLE")) for s in statements)


def test_sqlite_rebuilds_indexes_only_when_the_load_outweighs_the_table(tmp_path: Path) -> None:
    """A bulk load drops and rebuilds the table's indexes when it brings more rows than the
    table holds (a first landlord); into a table that other landlords' rows already fill, it
    feeds the indexes instead: a rebuild would sort all their rows again."""
    warehouse = Warehouse(f"sqlite:///{tmp_path / 'w.db'}")
    warehouse.migrate()
    statements = recorded_statements(warehouse)
    warehouse.load(request(big_ledger(60_000), "run-a", landlord="first"))
    first = [s for s in statements if s.lstrip().upper().startswith("DROP INDEX")]
    statements.clear()
    warehouse.load(request(big_ledger(BULK_REINDEX_ROWS), "run-b", landlord="second"))
    second = [s for s in statements if s.lstrip().upper().startswith("DROP INDEX")]
    warehouse.dispose()

    assert first and not second
    with sqlite3.connect(tmp_path / "w.db") as conn:
        per_landlord = dict(
            conn.execute("SELECT landlord_id, count(*) FROM ledger_entries GROUP BY landlord_id")
        )
        (indexed,) = conn.execute(
            "SELECT count(*) FROM ledger_entries INDEXED BY ix_ledger_entries_tenant"
            " WHERE landlord_id = 'second' AND tenant_ref = 'T5'"
        ).fetchone()
    assert per_landlord == {"first": 60_000, "second": BULK_REINDEX_ROWS}
    # T5 holds refs 5, 1002, 2009, …: one in 997 rows
    assert indexed == len(range(5, BULK_REINDEX_ROWS, 997))


def test_sqlite_finds_vanished_rows_through_the_primary_key(tmp_path: Path) -> None:
    """The snapshot's vanished-row count (and the soft-delete that follows) walks the landlord's
    rows through the primary key (landlord_id, key): through the tenant index, which also holds
    `deleted_at`, it cost one random row lookup per line (a 1M-line reload: 6 s against 0.6 s).
    The plan is read inside the load, on the load's own connection, where the stage exists."""
    warehouse = Warehouse(f"sqlite:///{tmp_path / 'w.db'}")
    warehouse.migrate()
    plans: list[str] = []

    def explain(_conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "NOT (EXISTS" in statement and statement.lstrip().upper().startswith("SELECT"):
            explained = cursor.connection.execute(f"EXPLAIN QUERY PLAN {statement}", parameters)
            plans.extend(row[3] for row in explained.fetchall())

    warehouse.load(request(big_ledger(3_000), "run-1"))
    sa.event.listen(warehouse.engine, "before_cursor_execute", explain)
    result = warehouse.load(request(big_ledger(2_900), "run-2"))
    warehouse.dispose()

    assert result.deleted == 100
    walk = [
        plan for plan in plans if plan.startswith(("SCAN ledger_entries", "SEARCH ledger_entries"))
    ]
    assert walk and all("sqlite_autoindex_ledger_entries_1" in plan for plan in walk), plans
    assert live_and_deleted(tmp_path / "w.db") == (2_900, 100)


def live_and_deleted(path: Path) -> tuple[int, int]:
    """(live, soft-deleted) ledger rows in the SQLite warehouse at `path`."""
    with sqlite3.connect(path) as conn:
        live, deleted = conn.execute(
            "SELECT sum(deleted_at IS NULL), sum(deleted_at IS NOT NULL) FROM ledger_entries"
        ).fetchone()
    return live, deleted


# --- landlords are independent --------------------------------------------------------------


def test_two_landlords_in_one_table_never_touch_each_other(warehouse: Warehouse) -> None:
    warehouse.load(ledger_load(4, "run-a1", ("quittancement.csv:9", "E9")))
    acme_before = by_key(warehouse, LANDLORD)

    # the other landlord uses the same references, then sends a smaller snapshot
    other = request(
        canonical("ledger_entries", entries(3, amount=5_000)), "run-b1", landlord=OTHER_LANDLORD
    )
    assert warehouse.load(other).inserted == 3
    smaller = request(
        canonical("ledger_entries", entries(2, amount=5_000)), "run-b2", landlord=OTHER_LANDLORD
    )
    assert warehouse.load(smaller).deleted == 1

    assert by_key(warehouse, LANDLORD) == acme_before
    other_rows = by_key(warehouse, OTHER_LANDLORD)
    assert other_rows["E0"].amount_cents == 5_000
    assert [key for key, row in other_rows.items() if row.deleted_at is not None] == ["E2"]
    acme_rejects = [row for row in quarantined(warehouse).values() if row.landlord_id == LANDLORD]
    assert [row.resolved_at for row in acme_rejects] == [None]

    again = warehouse.load(ledger_load(4, "run-a2"))
    assert again == LoadResult(inserted=0, updated=0, unchanged=4, deleted=0, quarantined=0)


@pytest.mark.parametrize("per_part", [1, 7, 131_072])
def test_row_hashes_are_the_same_whatever_the_part_size(
    per_part: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows are hashed a part at a time: each row's hash is what hashing the whole frame at once
    gives it (texts with nulls and accents, nullable integers, dates), so a warehouse loaded
    before keeps seeing its rows as unchanged."""
    rows = canonical("ledger_entries", entries(50)).assign(
        label=lambda f: pd.Series(
            ["Loyer é" if n % 3 else None for n in range(len(f))], dtype="str"
        ),
        due_date=pd.Series([pd.Timestamp("2026-04-05"), pd.NaT] * 25, dtype="datetime64[ns]"),
    )
    columns = ENTITIES["ledger_entries"].column_names
    whole = pd.util.hash_pandas_object(rows[list(columns)], index=False).to_numpy()
    monkeypatch.setattr(staging_module, "HASH_ROWS", per_part)

    assert staging_module.row_hashes(rows, columns).tolist() == whole.view("int64").tolist()
