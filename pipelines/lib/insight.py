"""The landlord's morning figures, computed in the warehouse: set-based SQL (SQLAlchemy Core),
the same statements on SQLite and PostgreSQL, no Python loop over rows.

Money stays integer cents. `ledger_entries.amount_cents` is signed (debit > 0, credit < 0), so a
tenant's balance is the plain sum of their live entries: positive means the tenant owes.

The balances of a day are computed once per ledger: `refresh_tenant_balances` sums the ledger
again only when a load wrote it since the balances of that day were recorded (a landlord's
ledger changes only through a load or a requeue, each audited in `load_runs` in the same
transaction as its writes), and a new day always recomputes (entries dated today come in).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from schemas.tables import CANONICAL_TABLES, balance_states, insight_states, load_runs
from schemas.tables import tenant_balances as tenant_balances_table

LEDGER = CANONICAL_TABLES["ledger_entries"]


@dataclass(frozen=True)
class TenantBalance:
    """One tenant's balance on a date, in cents (> 0: the tenant owes the landlord)."""

    tenant_ref: str
    balance_cents: int


@dataclass(frozen=True)
class BalanceFigures:
    """The landlord's balances of one day summed up (from the stored `tenant_balances` rows)."""

    tenants: int
    tenants_in_debt: int
    total_balance_cents: int


@dataclass(frozen=True)
class LedgerVersion:
    """Which loads had written a landlord's ledger: their number and the last one's run."""

    loads: int
    last_run_id: str | None


# the `load_runs` statuses of a load that wrote the canonical table (blocked and failed did not)
WRITING_LOADS = ("loaded", "requeued")


def _balances_query(landlord_id: str, as_of: date) -> sa.Select:
    """Each tenant's sum of live ledger entries dated on or before `as_of`."""
    return (
        sa.select(LEDGER.c.tenant_ref, sa.func.sum(LEDGER.c.amount_cents).label("balance_cents"))
        .where(
            LEDGER.c.landlord_id == landlord_id,
            LEDGER.c.deleted_at.is_(None),  # soft-deleted: vanished from the landlord's export
            LEDGER.c.entry_date <= as_of,
        )
        .group_by(LEDGER.c.tenant_ref)
    )


def tenant_balances(
    connection: sa.Connection, landlord_id: str, as_of: date
) -> list[TenantBalance]:
    """Every tenant with a ledger entry up to `as_of`, with their balance, by tenant reference."""
    query = _balances_query(landlord_id, as_of).order_by(LEDGER.c.tenant_ref)
    return [
        TenantBalance(row.tenant_ref, int(row.balance_cents)) for row in connection.execute(query)
    ]


def record_tenant_balances(
    connection: sa.Connection, landlord_id: str, as_of: date, run_id: str
) -> None:
    """Replace the landlord's balances of `as_of` in `tenant_balances` (one INSERT … SELECT, so
    a second run on the same day leaves the same rows)."""
    table = tenant_balances_table
    connection.execute(
        table.delete().where(table.c.landlord_id == landlord_id, table.c.as_of == as_of)
    )
    # right after a load, PostgreSQL without statistics summed the 1M-line ledger in 11 s
    analyse(connection, LEDGER)
    balances = _balances_query(landlord_id, as_of).subquery()
    select = sa.select(
        sa.literal(landlord_id, LEDGER.c.landlord_id.type),
        balances.c.tenant_ref,
        sa.literal(as_of, sa.Date()),
        balances.c.balance_cents,
        sa.literal(run_id, table.c.run_id.type),
    )
    columns = ["landlord_id", "tenant_ref", "as_of", "balance_cents", "run_id"]
    connection.execute(table.insert().from_select(columns, select))


def load_version(connection: sa.Connection, landlord_id: str, entity: str) -> LedgerVersion:
    """The loads that wrote one of the landlord's canonical tables so far (`load_runs` keeps
    every one: their number grows with each load, whatever the clock says)."""
    scope = sa.and_(
        load_runs.c.landlord_id == landlord_id,
        load_runs.c.entity == entity,
        load_runs.c.status.in_(WRITING_LOADS),
    )
    loads = connection.execute(sa.select(sa.func.count()).where(scope)).scalar_one()
    last = connection.execute(
        sa.select(load_runs.c.run_id)
        .where(scope)
        .order_by(load_runs.c.finished_at.desc(), load_runs.c.run_id.desc())
        .limit(1)
    ).scalar()
    return LedgerVersion(int(loads), last)


def ledger_version(connection: sa.Connection, landlord_id: str) -> LedgerVersion:
    """The loads that wrote the landlord's ledger so far."""
    return load_version(connection, landlord_id, "ledger_entries")


def refresh_tenant_balances(
    connection: sa.Connection, landlord_id: str, as_of: date, run_id: str
) -> bool:
    """Record the landlord's balances of `as_of` unless they were already computed from the
    ledger as it is (no load wrote it since); True when they were computed now. Call it inside
    one transaction: the check, the balances and their state are written together."""
    version = ledger_version(connection, landlord_id)
    state = balance_states
    scope = sa.and_(state.c.landlord_id == landlord_id, state.c.as_of == as_of)
    recorded = connection.execute(
        sa.select(state.c.ledger_loads, state.c.ledger_run_id).where(scope)
    ).first()
    if recorded is not None and LedgerVersion(recorded.ledger_loads, recorded.ledger_run_id) == (
        version
    ):
        return False
    record_tenant_balances(connection, landlord_id, as_of, run_id)
    connection.execute(state.delete().where(scope))
    connection.execute(
        state.insert().values(
            landlord_id=landlord_id,
            as_of=as_of,
            ledger_loads=version.loads,
            ledger_run_id=version.last_run_id,
            run_id=run_id,
            computed_at=datetime.now(UTC),
        )
    )
    return True


def ledger_analysed(connection: sa.Connection, landlord_id: str, as_of: date) -> bool:
    """Whether the ledger's statistics were refreshed after its last load (of any landlord):
    the balances of `as_of` were recorded (`record_tenant_balances` analyses the ledger) from
    the landlord's ledger as it is, and no load wrote the table since. Then a computation of
    the same morning need not `ANALYZE` the 1M-line ledger again (0.2 s on SQLite, 0.3-1 s on
    PostgreSQL)."""
    state = balance_states
    recorded = connection.execute(
        sa.select(state.c.ledger_loads, state.c.ledger_run_id, state.c.computed_at).where(
            state.c.landlord_id == landlord_id, state.c.as_of == as_of
        )
    ).first()
    if recorded is None or LedgerVersion(recorded.ledger_loads, recorded.ledger_run_id) != (
        ledger_version(connection, landlord_id)
    ):
        return False
    newest_load = connection.execute(
        sa.select(sa.func.max(load_runs.c.finished_at)).where(
            load_runs.c.entity == "ledger_entries", load_runs.c.status.in_(WRITING_LOADS)
        )
    ).scalar()
    return newest_load is None or _utc(newest_load) <= _utc(recorded.computed_at)


def _utc(moment: datetime) -> datetime:
    # SQLite gives the stored UTC timestamps back without their zone
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def balance_figures(connection: sa.Connection, landlord_id: str, as_of: date) -> BalanceFigures:
    """Count, tenants in debt and total of the landlord's recorded balances of `as_of` (one SQL
    aggregate over the stored rows, not the ledger)."""
    table = tenant_balances_table
    row = connection.execute(
        sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(sa.case((table.c.balance_cents > 0, 1), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(table.c.balance_cents), 0),
        ).where(table.c.landlord_id == landlord_id, table.c.as_of == as_of)
    ).one()
    return BalanceFigures(int(row[0]), int(row[1]), int(row[2]))


def computed_once(
    connection: sa.Connection,
    landlord_id: str,
    step: str,
    as_of: date,
    run_id: str,
    inputs: str,
    compute: Callable[[], object],
) -> bool:
    """Run `compute` unless the landlord's `step` was computed on `as_of` from the same
    `inputs` (a text naming the versions of what it reads: loads, settings …), and record what
    it was computed from (`insight_states`); True when computed now. Call it inside the
    transaction `compute` writes in."""
    state = insight_states
    scope = sa.and_(state.c.landlord_id == landlord_id, state.c.step == step)
    recorded = connection.execute(sa.select(state.c.as_of, state.c.inputs).where(scope)).first()
    if recorded is not None and (recorded.as_of, recorded.inputs) == (as_of, inputs):
        return False
    compute()
    connection.execute(state.delete().where(scope))
    connection.execute(
        state.insert().values(
            landlord_id=landlord_id,
            step=step,
            as_of=as_of,
            inputs=inputs,
            run_id=run_id,
            computed_at=datetime.now(UTC),
        )
    )
    return True


def analyse(connection: sa.Connection, *tables: sa.Table) -> None:
    """Refresh the query planner's statistics of `tables` (`ANALYZE`, the same statement on
    SQLite and PostgreSQL), before a computation reads them whole. Right after a load the
    planner knows nothing of what it wrote: PostgreSQL then estimated one row per CTE and
    joined the 1M-line ledger's debits to the credits in a nested loop (over 11 min), and
    SQLite read the whole ledger through its tenant index, one random table lookup per line
    (4 s of system time), where a scan takes 0.4 s."""
    quote = connection.dialect.identifier_preparer.quote
    for table in tables:
        if connection.dialect.name == "sqlite" and _sqlite_statistics_current(connection, table):
            continue
        connection.execute(sa.text(f"ANALYZE {quote(table.name)}"))
    if connection.dialect.name == "postgresql":
        # the one setting that differs: PostgreSQL's JIT compiled the arrears query for 2.7 s
        # of its 7.9 s (its cost is over jit_inline_above_cost); for this transaction only
        connection.execute(sa.text("SET LOCAL jit = off"))
        # the sorts of the FIFO and last-line windows (a few hundred thousand rows) and the
        # works' per-order aggregate (35 MB for 200,000 orders: 25 batches on disk) in memory,
        # not in temporary files (the default 4 MB spilled them): bounded, per sort or hash
        connection.execute(sa.text("SET LOCAL work_mem = '64MB'"))


# SQLite: a table's statistics are taken again once it holds more than this many times the
# rows they were taken on, or fewer than its inverse
STATISTICS_DRIFT = 1.25


def _sqlite_statistics_current(connection: sa.Connection, table: sa.Table) -> bool:
    """Whether SQLite holds statistics of `table` (a table of the warehouse's own schema, not
    a TEMPORARY one) taken on a row count within STATISTICS_DRIFT of the rows it holds now.
    SQLite's ANALYZE reads the whole table and every index of it: for the 3M-line ledger of
    300 landlords 0.4 s of CPU and 1.5 s of reads, in each landlord's run, with the derive's
    write lock held; a count reads its smallest index (0.03 s). One landlord more of 300
    leaves the planner's choices where they were (what the statistics are for: the results
    do not depend on them); a table grown by a quarter is analysed again."""
    if table.metadata is _STAGING:  # made and filled for this computation alone
        return False
    # `main.`: once a staging table is analysed, a bare `sqlite_stat1` names the connection's
    # TEMP one
    kept = connection.exec_driver_sql(
        "SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'"
    ).first()
    if kept is None:
        return False
    stats = connection.exec_driver_sql(
        "SELECT stat FROM main.sqlite_stat1 WHERE tbl = ?", (table.name,)
    ).scalars()
    analysed = max((int(stat.split()[0]) for stat in stats if stat), default=0)
    if analysed == 0:
        return False
    rows = connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
    return analysed / STATISTICS_DRIFT <= rows <= analysed * STATISTICS_DRIFT


# the staging tables of the derive steps (`staging_table`): never in the warehouse's schema
_STAGING = sa.MetaData()


def staging_table(name: str, *columns: sa.Column, **options: Any) -> sa.Table:
    """A TEMPORARY table (one per connection) that a derive step fills with `staged`."""
    return sa.Table(name, _STAGING, *columns, prefixes=["TEMPORARY"], **options)


@contextmanager
def staged(connection: sa.Connection, table: sa.Table, rows: sa.Select) -> Iterator[sa.Table]:
    """`table` (a TEMPORARY table: one per connection) created and filled with `rows` for the
    duration of the block, with its statistics, then dropped: an intermediate result that a
    computation reads several times, through its own primary key rather than whatever
    automatic index the planner may or may not build for a CTE. Inside a transaction, a
    failure rolls the creation back with the rest."""
    table.create(connection)
    connection.execute(table.insert().from_select(list(table.c.keys()), rows))
    analyse(connection, table)
    yield table
    table.drop(connection)
