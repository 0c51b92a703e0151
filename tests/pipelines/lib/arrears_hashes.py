"""The derived tables of a generated landlord, hashed: what `test_arrears_hashes` compares with
the hashes recorded from the code before issue 15's speed-up, on SQLite and PostgreSQL.

A seeded generator (Python's `random`, no numpy) writes a landlord of a few thousand tenants
whose ledger holds every kind, signs of both sides, zero amounts, due dates before and after
the posting date, ties on the ageing day and the posting date, lines after the day computed,
soft-deleted lines, SEPA rejections, housing aid, plan instalments; tenants with and without
lines, of every status and attribute, some soft-deleted; several repayment plans per tenant,
some starting later, some deleted; and another landlord with the same tenant references. The
morning's three steps (`refresh_tenant_balances`, `compute_arrears`, `refresh_actions`) then
run over four mornings, the ledger changing between them (payments that clear debts, new
debts, deleted lines), so the history, the debt days, the actions' creation and closing are
all exercised. After each morning the landlord's rows of `tenant_balances`, `tenant_arrears`
and `prevention_actions` are hashed, every column, in primary-key order.

Run it as a script to print the hashes of the code on the path (`--code DIR` puts a checkout
of the hub first: how the recorded hashes were taken from the code before the change):

    python tests/pipelines/lib/arrears_hashes.py --code ../main sqlite:///tmp/h.db
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

LANDLORD = "hash-logement"
OTHER = "autre-logement"
SEED = 15
TENANTS = 2_500
# the mornings computed: (day, run id); the ledger changes before the 2nd and the 4th
MORNINGS = (
    (dt.date(2024, 10, 31), "m1"),
    (dt.date(2024, 12, 31), "m2"),
    (dt.date(2024, 12, 31), "m3"),  # the same day again, nothing changed
    (dt.date(2025, 1, 20), "m4"),
)
HASHED = ("tenant_balances", "tenant_arrears", "prevention_actions")

DEBITS = ("rent_call", "rent", "service_charges", "sls", "deposit", "fee", "legal_costs",
          "rejected_debit", "housing_aid_clawback", "plan_instalment",
          "refund_to_tenant")  # fmt: skip
CREDITS = ("payment", "housing_aid", "deposit_refund", "refund", "credit_note", "write_off")
METHODS = ("sepa_debit", "transfer", "cheque", "cash", "card")
REASONS = ("AC01", "AC04", "AM04", "MS02", "MD06", "MS03", "RR04")


def _day(rng: random.Random, first: dt.date, last: dt.date) -> dt.date:
    return first + dt.timedelta(days=rng.randrange((last - first).days + 1))


def _entry(ref: str, tenant: str, day: dt.date, kind: str, amount: int, rng: random.Random,
           due: dt.date | None = None) -> dict[str, Any]:  # fmt: skip
    return {
        "entry_ref": ref,
        "tenant_ref": tenant,
        "entry_date": day,
        "kind": kind,
        "amount_cents": amount,
        "due_date": due,
        "payment_method": rng.choice(METHODS) if kind in ("payment", "rejected_debit") else None,
        "reject_reason": rng.choice(REASONS) if kind == "rejected_debit" else None,
    }


def ledger(rng: random.Random, tenants: int, first_ref: int = 1) -> list[dict[str, Any]]:
    """About twelve lines a tenant, 2023 to early 2025 (some after every morning)."""
    lines = []
    number = first_ref
    for index in range(tenants):
        tenant = f"T{index:05d}"
        rent = rng.randrange(30_000, 90_000, 100)
        for _ in range(rng.choice((0, 1, 4, 8, 12, 12, 16, 24))):
            number += 1
            ref = f"E{number:07d}"
            day = _day(rng, dt.date(2023, 1, 1), dt.date(2025, 2, 15))
            if rng.random() < 0.15:  # a tie on the posting day with the tenant's previous line
                day = (
                    lines[-1]["entry_date"] if lines and lines[-1]["tenant_ref"] == tenant else day
                )
            if rng.random() < 0.5:
                kind = rng.choice(DEBITS[:4]) if rng.random() < 0.8 else rng.choice(DEBITS)
                amount = rent if kind in ("rent_call", "rent") else rng.randrange(1, 250_000)
                due = rng.choice((None, day + dt.timedelta(days=5), day - dt.timedelta(days=3),
                                  day.replace(day=1)))  # fmt: skip
            elif rng.random() < 0.05:
                kind, amount, due = "charge_regularisation", rng.randrange(-30_000, 30_000), None
                amount = 0 if rng.random() < 0.2 else amount
            else:
                kind = "payment" if rng.random() < 0.6 else rng.choice(CREDITS)
                amount = -(rent if rng.random() < 0.5 else rng.randrange(1, 120_000))
                due = None
            lines.append(_entry(ref, tenant, day, kind, amount, rng, due))
    return lines


def tenant_rows(rng: random.Random, tenants: int) -> list[dict[str, Any]]:
    rows = []
    for index in range(tenants + 200):  # 200 with no ledger line at all
        if rng.random() < 0.08:  # a tenant of the ledger the tenants file does not list
            continue
        rows.append(
            {
                "tenant_ref": f"T{index:05d}",
                "status": rng.choice(("active", "active", "active", "leaving", "left")),
                "move_in_date": rng.choice(
                    (None, _day(rng, dt.date(2000, 1, 1), dt.date(2024, 12, 1)))
                ),
                "income_band": rng.choice((None, "very_low", "low", "middle", "high")),
                "age_band": rng.choice((None, "under_30", "30_59", "60_plus")),
                "household_size": rng.choice((None, 1, 2, 3, 4, 6)),
                "housing_aid": rng.choice((None, "none", "apl", "al")),
                "fsl_aid": rng.choice((None, True, False)),
                "payment_method": rng.choice((None, *METHODS)),
                "preferred_channel": rng.choice((None, "sms", "email", "letter")),
                "formal_demands": rng.choice((None, 0, 0, 1, 2)),
            }
        )
    return rows


def plan_rows(rng: random.Random, tenants: int) -> tuple[list[dict], list[dict]]:
    """Plans of one tenant in six (some two), and their instalments in the ledger."""
    plans, instalments = [], []
    for index in range(0, tenants, 6):
        tenant = f"T{index:05d}"
        for number in range(rng.choice((1, 1, 2))):
            start = _day(rng, dt.date(2023, 6, 1), dt.date(2025, 1, 10))
            instalment = rng.randrange(2_000, 20_000, 100)
            count = rng.randrange(3, 12)
            plans.append({
                "plan_ref": f"P{index:05d}-{number}", "tenant_ref": tenant, "start_date": start,
                "total_cents": instalment * count, "instalment_cents": instalment,
                "instalments": count, "status": rng.choice(("active", "active", "completed",
                                                            "broken")),
            })  # fmt: skip
            for month in range(count):
                due = start + dt.timedelta(days=30 * month)
                instalments.append(
                    _entry(
                        f"I{index:05d}-{number}-{month:02d}",
                        tenant,
                        due - dt.timedelta(days=rng.choice((0, 4))),
                        "plan_instalment",
                        instalment,
                        rng,
                        due,
                    )
                )
                if rng.random() < 0.6:
                    instalments.append(
                        _entry(
                            f"J{index:05d}-{number}-{month:02d}",
                            tenant,
                            due + dt.timedelta(days=rng.randrange(0, 20)),
                            "payment",
                            -instalment,
                            rng,
                        )
                    )
    return plans, instalments


def write_landlord(connection: Any) -> None:
    """The generated landlord (and the other one) into a migrated warehouse."""
    import sqlalchemy as sa

    from schemas.tables import CANONICAL_TABLES
    from tests.pipelines.lib.arrears_cases import put

    rng = random.Random(SEED)
    lines = ledger(rng, TENANTS)
    plans, instalments = plan_rows(rng, TENANTS)
    put(connection, "ledger_entries", LANDLORD, lines + instalments)
    put(connection, "tenants", LANDLORD, tenant_rows(rng, TENANTS))
    put(connection, "repayment_plans", LANDLORD, plans)
    put(connection, "ledger_entries", OTHER, ledger(random.Random(SEED + 1), 300))
    put(connection, "tenants", OTHER, tenant_rows(random.Random(SEED + 2), 300))
    deleted = dt.datetime(2024, 12, 1, tzinfo=dt.UTC)
    for name, share in (("ledger_entries", 50), ("tenants", 40), ("repayment_plans", 9)):
        table = CANONICAL_TABLES[name]
        connection.execute(
            table.update()
            .where(table.c.landlord_id == LANDLORD, table.c.row_hash % share == 7)
            .values(deleted_at=deleted)
        )
    connection.execute(sa.text("SELECT 1"))


def change_ledger(connection: Any, morning: int) -> None:
    """Before the 2nd morning: a third of the indebted pay everything they owe, new debts come
    in; before the 4th: some lines vanish, more payments and debts."""
    import sqlalchemy as sa

    from schemas.tables import CANONICAL_TABLES, tenant_arrears
    from tests.pipelines.lib.arrears_cases import put

    rng = random.Random(SEED * 100 + morning)
    owing = connection.execute(
        sa.select(tenant_arrears.c.tenant_ref, tenant_arrears.c.balance_cents)
        .where(tenant_arrears.c.landlord_id == LANDLORD, tenant_arrears.c.balance_cents > 0)
        .order_by(tenant_arrears.c.tenant_ref)
    ).all()
    day = {2: dt.date(2024, 12, 20), 4: dt.date(2025, 1, 10)}[morning]
    lines = []
    for number, (tenant, balance) in enumerate(owing):
        if number % 3 == 0:
            lines.append(_entry(f"X{morning}-{number:05d}", tenant, day, "payment", -balance, rng))
        elif number % 3 == 1:
            lines.append(_entry(f"Y{morning}-{number:05d}", tenant, day, "rent_call",
                                rng.randrange(10_000, 80_000), rng, day))  # fmt: skip
    put(connection, "ledger_entries", LANDLORD, lines)
    if morning == 4:
        table = CANONICAL_TABLES["ledger_entries"]
        connection.execute(
            table.update()
            .where(table.c.landlord_id == LANDLORD, table.c.row_hash % 23 == 5)
            .values(deleted_at=dt.datetime(2025, 1, 15, tzinfo=dt.UTC))
        )


def _text(value: Any) -> str:
    if value is None:
        return "∅"
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, Decimal) and value == int(value):
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def table_hash(connection: Any, name: str, landlord: str = LANDLORD) -> str:
    """`rows:sha256` of the landlord's rows of table `name`, every column, by primary key."""
    import sqlalchemy as sa

    from schemas.tables import metadata

    table = metadata.tables[name]
    order = [column for column in table.primary_key.columns]
    found = connection.execute(
        sa.select(table).where(table.c.landlord_id == landlord).order_by(*order)
    ).all()
    digest = hashlib.sha256()
    for row in found:
        digest.update(("\x1f".join(_text(value) for value in row) + "\n").encode("utf-8"))
    return f"{len(found)}:{digest.hexdigest()[:16]}"


def morning_hashes(url: str) -> Iterator[tuple[str, dict[str, str]]]:
    """Each morning's run id and the derived tables' hashes after it, into the warehouse at
    `url` (empty: it is migrated here)."""
    from pipelines.lib.arrears import compute_arrears, refresh_actions
    from pipelines.lib.insight import refresh_tenant_balances
    from pipelines.lib.warehouse import Warehouse
    from schemas.arrears import ArrearsSection

    settings = ArrearsSection()
    warehouse = Warehouse(url)
    warehouse.migrate()
    try:
        with warehouse.engine.begin() as connection:
            write_landlord(connection)
        for number, (as_of, run) in enumerate(MORNINGS, start=1):
            if number in (2, 4):
                with warehouse.engine.begin() as connection:
                    change_ledger(connection, number)
            with warehouse.engine.begin() as connection:
                refresh_tenant_balances(connection, LANDLORD, as_of, run)
            with warehouse.engine.begin() as connection:
                compute_arrears(connection, LANDLORD, as_of, run, settings)
            with warehouse.engine.begin() as connection:
                refresh_actions(connection, LANDLORD, as_of, run, settings)
            with warehouse.engine.connect() as connection:
                yield run, {name: table_hash(connection, name) for name in HASHED}
    finally:
        warehouse.dispose()


def main() -> int:
    arguments = sys.argv[1:]
    if arguments[:1] == ["--code"]:
        sys.path.insert(0, str(Path(arguments[1]).resolve()))
        arguments = arguments[2:]
    repo = str(Path(__file__).resolve().parents[3])
    if repo not in sys.path:
        sys.path.append(repo)  # the tests package (arrears_cases), after the code checked
    import pipelines

    print(f"# code: {Path(pipelines.__file__).parent.parent}", file=sys.stderr)
    for run, hashes in morning_hashes(arguments[0]):
        print(f"    {run!r}: {hashes!r},")
    return 0


if __name__ == "__main__":
    sys.exit(main())
