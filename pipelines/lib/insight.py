"""The landlord's morning figures, computed in the warehouse: set-based SQL (SQLAlchemy Core),
the same statements on SQLite and PostgreSQL, no Python loop over rows.

Money stays integer cents. `ledger_entries.amount_cents` is signed (debit > 0, credit < 0), so a
tenant's balance is the plain sum of their live entries: positive means the tenant owes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa

from schemas.tables import CANONICAL_TABLES
from schemas.tables import tenant_balances as tenant_balances_table

LEDGER = CANONICAL_TABLES["ledger_entries"]


@dataclass(frozen=True)
class TenantBalance:
    """One tenant's balance on a date, in cents (> 0: the tenant owes the landlord)."""

    tenant_ref: str
    balance_cents: int


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
