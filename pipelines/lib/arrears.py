"""Arrears per tenant, profiles and prevention actions, computed in the warehouse: set-based
SQL (SQLAlchemy Core), the same statements on SQLite and PostgreSQL, no Python loop over rows.

**Ageing (FIFO).** Every credit of a tenant (payments, aid, credit notes …) pays their oldest
debits first. Debits are ordered by the day they fell due (`due_date`, else `entry_date`), then
by posting date and reference; with `running` the running sum of the debits in that order and
`paid` the sum of the credits, a debit's unpaid part is `min(amount, max(0, running - paid))`.
Each unpaid part is aged from that day to `as_of` and summed into the buckets 0–30, 31–60,
61–90, 91–180 and over 180 days, so the buckets add up to the balance when it is positive (and
are all 0 when it is not). Dates are compared with cut-off dates computed in Python (bound as
parameters), so no date arithmetic differs between the two databases.

**Months owed**: the balance divided by the last rent called (the last `rent_call`, else the
last `rent` plus the last `service_charges`), floored. **Plan status** of the tenant's latest
repayment plan: `completed` or `broken` when the source says so; else the instalments called
(`plan_instalment` debits due since the plan started, before `as_of`) that FIFO leaves unpaid
are counted: `plan_broken_after` (default 2) or more break it, one is `late`, none `on_track`.

**Profiles**: the datafix's rules (`schemas.arrears`) compiled into one SQL CASE, first match
wins, stored with the rule that placed the tenant. **Actions**: each profile's scenario steps
joined to the tenants in debt; a step is created once (its key: tenant, profile, step and the
day it opened) and closed when the balance clears or the tenant leaves the profile.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta

import sqlalchemy as sa

from pipelines.lib.insight import (
    analyse,
    computed_once,
    ledger_analysed,
    load_version,
    staged,
    staging_table,
)
from pipelines.lib.warehouse import newest_first
from schemas.arrears import (
    FACTS,
    ArrearsAlerts,
    ArrearsSection,
    FactKind,
    ProfileRule,
    ScenarioStep,
)
from schemas.canonical import SEPA_REJECT_REASONS
from schemas.tables import (
    AGEING_BUCKETS,
    AGEING_COLUMNS,
    CANONICAL_TABLES,
    insight_states,
    prevention_actions,
    tenant_arrears,
    tenant_balances,
)

__all__ = [
    "ActionCounts",
    "ArrearsFigures",
    "arrears_figures",
    "compute_arrears",
    "refresh_actions",
    "refresh_actions_once",
    "refresh_arrears",
]

LEDGER = CANONICAL_TABLES["ledger_entries"]
TENANTS = CANONICAL_TABLES["tenants"]
PLANS = CANONICAL_TABLES["repayment_plans"]
INPUTS = ("ledger_entries", "tenants", "repayment_plans")
UNPROFILED = "unprofiled"
RENT_KINDS = ("rent_call", "rent", "service_charges")


def _day(as_of: date, days: int) -> sa.BindParameter:
    """`as_of` minus `days`, bound as a date (the same comparison on both databases)."""
    return sa.literal(as_of - timedelta(days=days), sa.Date())


def _count(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)


def _cents(value: sa.ColumnElement) -> sa.ColumnElement[int]:
    # PostgreSQL sums BIGINT into NUMERIC: cast back so cents stay integers
    return sa.cast(sa.func.coalesce(value, 0), sa.BigInteger())


# each tenant's balance and credits, staged (`insight.staged`) before the arrears are computed
TOTALS = staging_table(
    "arrears_tenant_totals",
    sa.Column("tenant_ref", sa.Text(), primary_key=True),
    sa.Column("balance_cents", sa.BigInteger(), nullable=False),
    sa.Column("paid", sa.BigInteger(), nullable=False),
    # SQLite: the row lives in its primary key's b-tree, so a probe by tenant is one lookup,
    # not an index lookup then a table lookup (the FIFO join's 500,000 probes: 1.1 s -> 0.6 s)
    sqlite_with_rowid=False,
)


def _live_lines(landlord_id: str, as_of: date) -> tuple[sa.ColumnElement[bool], ...]:
    return (
        LEDGER.c.landlord_id == landlord_id,
        LEDGER.c.deleted_at.is_(None),
        LEDGER.c.entry_date <= as_of,
    )


def _totals(landlord_id: str, as_of: date) -> sa.Select:
    """Each tenant's balance and the sum of their credits (what FIFO pays the debits with):
    only columns of the ledger's tenant index, read in its order, so neither a table lookup
    nor a sort."""
    amount = LEDGER.c.amount_cents
    return (
        sa.select(
            LEDGER.c.tenant_ref,
            _cents(sa.func.sum(amount)),
            _cents(sa.func.sum(sa.case((amount < 0, -amount), else_=0))),
        )
        .where(*_live_lines(landlord_id, as_of))
        .group_by(LEDGER.c.tenant_ref)
    )


def _facts(
    landlord_id: str, as_of: date, plan_broken_after: int, totals: sa.Table, *, sqlite: bool
) -> sa.Subquery:
    """One row per tenant (in the tenants table or with a ledger entry): every fact a profile
    rule may test, and every column of `tenant_arrears` but the profile; `totals` holds
    `_totals`.

    Why it is shaped so (the 1M-line ledger took 12.7 s before): the ledger is read once into
    `live`; each later part reads as few of its rows as it needs, and sorts them at most once:
    the FIFO window only over the debits of tenants who owe (a tenant whose balance is not
    positive has nothing unpaid), the rejects and housing aid only over the year's lines of
    those kinds, the last rent and last payment in one pass (a GROUP BY on SQLite, a window on
    PostgreSQL); the tenants are listed from the staged totals rather than from every ledger
    line."""
    # only the columns read below: the CTE is materialised once and scanned by each part
    used = ("tenant_ref", "entry_ref", "entry_date", "due_date", "kind", "amount_cents",
            "reject_reason", "payment_method")  # fmt: skip
    live = (
        sa.select(*[LEDGER.c[name] for name in used])
        .where(*_live_lines(landlord_id, as_of))
        .cte("live")
    )
    amount = live.c.amount_cents

    aged_on = sa.func.coalesce(live.c.due_date, live.c.entry_date)
    debits = (
        sa.select(
            live.c.tenant_ref,
            live.c.kind,
            amount.label("amount"),
            aged_on.label("aged_on"),
            sa.func.sum(amount)
            .over(
                partition_by=live.c.tenant_ref,
                order_by=(aged_on, live.c.entry_date, live.c.entry_ref),
                rows=(None, 0),
            )
            .label("running"),
        )
        .where(
            amount > 0,
            live.c.tenant_ref.in_(sa.select(totals.c.tenant_ref).where(totals.c.balance_cents > 0)),
        )
        .cte("debits")
    )
    left = debits.c.running - totals.c.paid
    # only the debits FIFO leaves (partly) unpaid: the ageing and the missed instalments
    unpaid_debits = (
        sa.select(
            debits.c.tenant_ref,
            debits.c.kind,
            debits.c.aged_on,
            sa.case((left >= debits.c.amount, debits.c.amount), else_=left).label("unpaid"),
        )
        .select_from(debits.join(totals, totals.c.tenant_ref == debits.c.tenant_ref))
        .where(left > 0)
        .cte("unpaid_debits")
    )
    unpaid, due_on = unpaid_debits.c.unpaid, unpaid_debits.c.aged_on
    buckets = []
    for name, (low, high) in AGEING_BUCKETS.items():
        within = [due_on <= _day(as_of, low)] if low > 0 else []  # the 0–30 bucket: future too
        within += [due_on >= _day(as_of, high)] if high is not None else []
        buckets.append(
            _cents(sa.func.sum(sa.case((sa.and_(*within), unpaid), else_=0))).label(name)
        )
    ageing = (
        sa.select(
            unpaid_debits.c.tenant_ref,
            *buckets,
            sa.func.min(due_on).label("oldest_unpaid_date"),
        )
        .group_by(unpaid_debits.c.tenant_ref)
        .cte("ageing")
    )

    # rejected direct debits and housing aid of the last 365 days: a few percent of the lines
    year_columns = ("tenant_ref", "entry_date", "kind", "amount_cents", "reject_reason")
    year = (
        sa.select(*[live.c[name] for name in year_columns])
        .where(
            live.c.kind.in_(("rejected_debit", "housing_aid")),
            live.c.entry_date > _day(as_of, 365),
        )
        .cte("year")
    )
    recent = year.c.entry_date > _day(as_of, 90)
    rejected = year.c.kind == "rejected_debit"
    rejected_recently = rejected & recent
    reason_flags = [
        sa.case(
            (
                sa.func.sum(
                    sa.case((rejected_recently & (year.c.reject_reason == code), 1), else_=0)
                )
                > 0,
                code + " ",
            ),
            else_="",
        )
        for code in SEPA_REJECT_REASONS
    ]
    reasons = reason_flags[0]
    for flag in reason_flags[1:]:
        reasons = reasons.concat(flag)
    rejects = (
        sa.select(
            year.c.tenant_ref,
            _count(rejected_recently).label("rejects_90d"),
            _count(rejected).label("rejects_365d"),
            sa.func.nullif(sa.func.trim(reasons), "").label("reject_reasons"),
            _cents(
                sa.func.sum(
                    sa.case(
                        ((year.c.kind == "housing_aid") & recent, -year.c.amount_cents), else_=0
                    )
                )
            ).label("housing_aid_90d_cents"),
        )
        .group_by(year.c.tenant_ref)
        .cte("rejects")
    )

    # the last line of each kind that counts (rents, payments), newest by date then reference
    counted = live.c.kind.in_((*RENT_KINDS, "payment"))
    line_columns = (
        live.c.tenant_ref,
        live.c.kind,
        live.c.amount_cents,
        live.c.entry_date,
        live.c.payment_method,
    )
    if sqlite:
        # SQLite: one GROUP BY, its only aggregate max() of the date and the reference as one
        # text (a date is always `YYYY-MM-DD`: the text orders as the pair), and the line's
        # other columns taken from the row holding that max (SQLite's documented rule for a
        # bare column beside a single min() or max()). The window below cost this statement
        # a quarter more on the 250,000-line ledger (make bench, Table 3)
        newest = sa.type_coerce(live.c.entry_date, sa.String()).concat(live.c.entry_ref)
        latest = (
            sa.select(*line_columns, sa.func.max(newest).label("newest"))
            .where(counted)
            .group_by(live.c.tenant_ref, live.c.kind)
            .cte("latest")
        )
        newest_only: tuple[sa.ColumnElement[bool], ...] = ()
    else:  # one window for all of them
        latest = (
            sa.select(
                *line_columns,
                newest_first((live.c.tenant_ref, live.c.kind), live.c.entry_date, live.c.entry_ref),
            )
            .where(counted)
            .cte("latest")
        )
        newest_only = (latest.c.rank == 1,)

    def last(kind: str, column: sa.ColumnElement) -> sa.ColumnElement:
        return sa.func.max(sa.case((latest.c.kind == kind, column)))

    last_lines = (
        sa.select(
            latest.c.tenant_ref,
            last("rent_call", latest.c.amount_cents).label("rent_call"),
            last("rent", latest.c.amount_cents).label("rent"),
            last("service_charges", latest.c.amount_cents).label("charges"),
            last("payment", latest.c.entry_date).label("last_payment_date"),
            last("payment", latest.c.payment_method).label("last_payment_method"),
        )
        .where(*newest_only)
        .group_by(latest.c.tenant_ref)
        .cte("last_lines")
    )
    plans = (
        sa.select(
            PLANS.c.tenant_ref,
            PLANS.c.plan_ref,
            PLANS.c.start_date,
            PLANS.c.status,
            newest_first(PLANS.c.tenant_ref, PLANS.c.start_date, PLANS.c.plan_ref),
        )
        .where(
            PLANS.c.landlord_id == landlord_id,
            PLANS.c.deleted_at.is_(None),
            PLANS.c.start_date <= as_of,
        )
        .cte("plans")
    )
    missed = (
        sa.select(plans.c.tenant_ref, sa.func.count().label("missed"))
        .select_from(plans.join(unpaid_debits, unpaid_debits.c.tenant_ref == plans.c.tenant_ref))
        .where(
            plans.c.rank == 1,
            unpaid_debits.c.kind == "plan_instalment",
            unpaid_debits.c.aged_on >= plans.c.start_date,
            unpaid_debits.c.aged_on < sa.literal(as_of, sa.Date()),
            unpaid_debits.c.unpaid > 0,
        )
        .group_by(plans.c.tenant_ref)
        .cte("missed")
    )
    history = (
        sa.select(tenant_balances.c.tenant_ref, sa.func.count().label("days"))
        .where(
            tenant_balances.c.landlord_id == landlord_id,
            tenant_balances.c.as_of > _day(as_of, 90),
            tenant_balances.c.as_of <= as_of,
            tenant_balances.c.balance_cents > 0,
        )
        .group_by(tenant_balances.c.tenant_ref)
        .cte("history")
    )
    live_tenants = TENANTS.c.landlord_id == landlord_id, TENANTS.c.deleted_at.is_(None)
    # the tenants with a ledger line, then those of the tenants table without one: each once,
    # with no sort to remove duplicates (a UNION sorted the 100,000 references)
    everyone = sa.union_all(
        sa.select(totals.c.tenant_ref),
        sa.select(TENANTS.c.tenant_ref).where(
            *live_tenants, ~sa.exists().where(totals.c.tenant_ref == TENANTS.c.tenant_ref)
        ),
    ).subquery("everyone")
    tenant = everyone.c.tenant_ref
    joined = (
        everyone.outerjoin(
            TENANTS,
            sa.and_(TENANTS.c.tenant_ref == tenant, *live_tenants),
        )
        .outerjoin(totals, totals.c.tenant_ref == tenant)
        .outerjoin(ageing, ageing.c.tenant_ref == tenant)
        .outerjoin(rejects, rejects.c.tenant_ref == tenant)
        .outerjoin(last_lines, last_lines.c.tenant_ref == tenant)
        .outerjoin(plans, sa.and_(plans.c.tenant_ref == tenant, plans.c.rank == 1))
        .outerjoin(missed, missed.c.tenant_ref == tenant)
        .outerjoin(history, history.c.tenant_ref == tenant)
    )
    rent = last_lines.c
    monthly_rent = sa.case(
        (rent.rent_call.is_not(None), rent.rent_call),
        (rent.rent.is_not(None), rent.rent + sa.func.coalesce(rent.charges, 0)),
        else_=rent.charges,
    )
    balance = sa.func.coalesce(totals.c.balance_cents, 0)
    plan_missed = sa.func.coalesce(missed.c.missed, 0)
    base = (
        sa.select(
            tenant.label("tenant_ref"),
            _cents(balance).label("balance_cents"),
            *[_cents(ageing.c[name]).label(name) for name in AGEING_COLUMNS],
            ageing.c.oldest_unpaid_date,
            monthly_rent.label("monthly_rent_cents"),
            sa.case(((balance > 0) & (monthly_rent > 0), balance // monthly_rent), else_=0).label(
                "months_owed"
            ),
            last_lines.c.last_payment_date,
            last_lines.c.last_payment_method,
            sa.func.coalesce(rejects.c.rejects_90d, 0).label("rejects_90d"),
            sa.func.coalesce(rejects.c.rejects_365d, 0).label("rejects_365d"),
            rejects.c.reject_reasons,
            plans.c.plan_ref,
            sa.case(
                (plans.c.plan_ref.is_(None), None),
                (plans.c.status == "completed", "completed"),
                ((plans.c.status == "broken") | (plan_missed >= plan_broken_after), "broken"),
                (plan_missed >= 1, "late"),
                else_="on_track",
            ).label("plan_status"),
            plan_missed.label("plan_missed"),
            _cents(rejects.c.housing_aid_90d_cents).label("housing_aid_90d_cents"),
            sa.func.coalesce(history.c.days, 0).label("debt_days_90d"),
            TENANTS.c.status.label("lease_status"),
            TENANTS.c.income_band,
            TENANTS.c.age_band,
            TENANTS.c.housing_aid,
            TENANTS.c.fsl_aid,
            TENANTS.c.payment_method,
            TENANTS.c.preferred_channel,
            TENANTS.c.household_size,
            TENANTS.c.formal_demands,
            TENANTS.c.move_in_date,
        )
        .select_from(joined)
        .subquery("facts")
    )
    return base


def _fact(facts: sa.Subquery, name: str) -> sa.ColumnElement:
    if name == "overdue_cents":
        return sum((facts.c[column] for column in AGEING_COLUMNS[1:]), sa.literal(0))
    if name == "plan_status":
        return sa.func.coalesce(facts.c.plan_status, "none")
    return facts.c[name]


# a days fact is the age of a date: (the date column, as of when it counts)
_DATED = {
    "tenancy_days": "move_in_date",
    "debt_age_days": "oldest_unpaid_date",
    "days_since_payment": "last_payment_date",
}


def _condition(facts: sa.Subquery, rule: ProfileRule, as_of: date) -> sa.ColumnElement[bool]:
    """Every test of `rule` on one tenant's facts, as one SQL condition."""
    tests: list[sa.ColumnElement[bool]] = []
    for name, test in rule.when.items():
        fact = FACTS[name]
        if fact.kind is FactKind.NUMBER:
            column = _fact(facts, name)
            if "at_least" in test:
                tests.append(column >= test["at_least"])
            if "at_most" in test:
                tests.append(column <= test["at_most"])
        elif fact.kind is FactKind.DAYS:
            column = facts.c[_DATED[name]]  # N days or more ago: on or before as_of - N
            if "at_least" in test:
                tests.append(column <= _day(as_of, test["at_least"]))
            if "at_most" in test:
                tests.append(column >= _day(as_of, test["at_most"]))
        elif fact.kind is FactKind.BOOLEAN:
            tests.append(facts.c[name] == sa.literal(test, sa.Boolean()))
        elif fact.kind is FactKind.REASON:
            tests.append(sa.or_(*(facts.c.reject_reasons.contains(code) for code in test)))
        else:
            tests.append(_fact(facts, name).in_(test))
    return sa.and_(sa.true(), *tests)


def _profiles(
    facts: sa.Subquery, rules: list[ProfileRule], as_of: date
) -> tuple[sa.ColumnElement[str], sa.ColumnElement[str]]:
    """The profile and the rule that placed the tenant: two CASEs over the same conditions."""
    if not rules:
        return sa.literal(UNPROFILED), sa.literal("no rule")
    conditions = [_condition(facts, rule, as_of) for rule in rules]
    profile = sa.case(
        *[(condition, rule.profile) for condition, rule in zip(conditions, rules, strict=True)],
        else_=UNPROFILED,
    )
    placed_by = sa.case(
        *[
            (condition, f"{number}: {rule.rule_text()}")
            for number, (condition, rule) in enumerate(zip(conditions, rules, strict=True), 1)
        ],
        else_="no rule holds",
    )
    return profile, placed_by


ARREARS_COLUMNS = (
    "tenant_ref", "balance_cents", *AGEING_COLUMNS, "oldest_unpaid_date", "monthly_rent_cents",
    "months_owed", "last_payment_date", "last_payment_method", "rejects_90d", "rejects_365d",
    "reject_reasons", "plan_ref", "plan_status", "plan_missed", "housing_aid_90d_cents",
    "debt_days_90d",
)  # fmt: skip


@contextmanager
def _sorts_in_one_thread(connection: sa.Connection) -> Iterator[None]:
    """SQLite: the block's sorts without helper threads (`PRAGMA threads=0`; the warehouse
    sets 2 for a load's index builds), then the connection's setting back. The arrears
    statement holds a dozen sorts and temporary b-trees at once; with helper threads each
    sort keeps up to three 4 MB runs in memory (the pages then stay with the process): peak
    RSS of the derive grew 1.26x from the 250,000-line to the 1M-line ledger (issue 15 wants it
    flat: at most 1.2x), 1.15x without them, and the statement took no more CPU (10.4
    against 10.8 CPU s, medians of 3 on a busy machine, within its noise)."""
    if connection.dialect.name != "sqlite":
        yield
        return
    threads = connection.exec_driver_sql("PRAGMA threads").scalar_one()
    connection.exec_driver_sql("PRAGMA threads=0")
    try:
        yield
    finally:
        connection.exec_driver_sql(f"PRAGMA threads={int(threads)}")


def compute_arrears(
    connection: sa.Connection,
    landlord_id: str,
    as_of: date,
    run_id: str,
    settings: ArrearsSection,
) -> None:
    """Replace the landlord's `tenant_arrears` with the day's figures and profiles (one
    INSERT … SELECT), and copy the day's ageing, plan status and profile onto the history rows
    of `tenant_balances` (written by the balances step before)."""
    inputs = (TENANTS, PLANS, tenant_balances)
    if not ledger_analysed(connection, landlord_id, as_of):
        inputs = (LEDGER, *inputs)
    analyse(connection, *inputs)
    with (
        _sorts_in_one_thread(connection),
        staged(connection, TOTALS, _totals(landlord_id, as_of)) as totals,
    ):
        sqlite = connection.dialect.name == "sqlite"
        facts = _facts(landlord_id, as_of, settings.plan_broken_after, totals, sqlite=sqlite)
        profile, placed_by = _profiles(facts, settings.rules(), as_of)
        select = sa.select(
            sa.literal(landlord_id, tenant_arrears.c.landlord_id.type),
            sa.literal(as_of, sa.Date()),
            *[facts.c[name] for name in ARREARS_COLUMNS],
            profile,
            placed_by,
            sa.literal(run_id, tenant_arrears.c.run_id.type),
        )
        columns = ["landlord_id", "as_of", *ARREARS_COLUMNS, "profile", "profile_rule", "run_id"]
        connection.execute(
            tenant_arrears.delete().where(tenant_arrears.c.landlord_id == landlord_id)
        )
        connection.execute(tenant_arrears.insert().from_select(columns, select))
    day = tenant_balances
    of_the_day = day.c.landlord_id == landlord_id, day.c.as_of == as_of
    same_tenant = sa.and_(
        tenant_arrears.c.landlord_id == day.c.landlord_id,
        tenant_arrears.c.tenant_ref == day.c.tenant_ref,
    )
    copied = (*AGEING_COLUMNS, "plan_status", "profile")
    # UPDATE … FROM (both databases): one join, not one subquery per row and column; a history
    # row whose tenant has no arrears row (none, unless the ledger changed since) is cleared
    connection.execute(
        day.update()
        .where(*of_the_day, same_tenant)
        .values({name: tenant_arrears.c[name] for name in copied})
    )
    connection.execute(
        day.update()
        .where(*of_the_day, ~sa.exists().where(same_tenant))
        .values(dict.fromkeys(copied))
    )


def _inputs(connection: sa.Connection, landlord_id: str, settings: ArrearsSection) -> str:
    """What the arrears are computed from: each input table's loads and the rules."""
    versions = {
        entity: dataclasses.astuple(load_version(connection, landlord_id, entity))
        for entity in INPUTS
    }
    rules = hashlib.sha256(settings.model_dump_json().encode("utf-8")).hexdigest()
    return json.dumps({**versions, "settings": rules}, sort_keys=True)


def refresh_arrears(
    connection: sa.Connection,
    landlord_id: str,
    as_of: date,
    run_id: str,
    settings: ArrearsSection,
) -> bool:
    """Compute the landlord's arrears of `as_of` unless they were computed that day from the
    same inputs (no load wrote the ledger, tenants or plans since, same rules); True when
    computed now. Call it inside one transaction."""
    return computed_once(
        connection,
        landlord_id,
        "arrears",
        as_of,
        run_id,
        _inputs(connection, landlord_id, settings),
        lambda: compute_arrears(connection, landlord_id, as_of, run_id, settings),
    )


@dataclass(frozen=True)
class ArrearsFigures:
    """The landlord's arrears today, summed from `tenant_arrears`."""

    tenants: int
    tenants_in_debt: int
    debt_cents: int
    ageing_cents: dict[str, int]
    profiles: dict[str, int]
    plans: dict[str, int]


def arrears_figures(connection: sa.Connection, landlord_id: str) -> ArrearsFigures:
    """Totals, ageing, profile and plan counts of the landlord's `tenant_arrears`."""
    table = tenant_arrears
    mine = table.c.landlord_id == landlord_id
    owes = table.c.balance_cents > 0
    row = connection.execute(
        sa.select(
            sa.func.count(),
            _count(owes),
            _cents(sa.func.sum(sa.case((owes, table.c.balance_cents), else_=0))),
            *[_cents(sa.func.sum(table.c[name])) for name in AGEING_COLUMNS],
        ).where(mine)
    ).one()

    def counts(column: sa.Column) -> dict[str, int]:
        query = sa.select(column, sa.func.count()).where(mine, column.is_not(None))
        return {
            str(value): int(number)
            for value, number in connection.execute(query.group_by(column).order_by(column))
        }

    return ArrearsFigures(
        tenants=int(row[0]),
        tenants_in_debt=int(row[1]),
        debt_cents=int(row[2]),
        ageing_cents={name: int(row[3 + i]) for i, name in enumerate(AGEING_COLUMNS)},
        profiles=counts(table.c.profile),
        plans=counts(table.c.plan_status),
    )


# -- actions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionCounts:
    """What one refresh of the actions did, and what is open after it."""

    created: int
    closed: int
    open: int


# the scenario steps, staged (`insight.staged`) before the actions are created: a table with
# a key and statistics, so each tenant in debt looks up their profile's steps (a UNION ALL of
# constants in the query was scanned whole, then every tenant's arrears once per step)
STEPS = staging_table(
    "arrears_scenario_steps",
    sa.Column("profile", sa.Text(), nullable=False),
    sa.Column("step", sa.Text(), nullable=False),
    sa.Column("action", sa.Text(), nullable=False),
    sa.Column("channel", sa.Text(), nullable=False),
    sa.Column("fallback", sa.Text(), nullable=True),
    sa.Column("template", sa.Text(), nullable=False),
    sa.Column("due_date", sa.Date(), nullable=False),
)
sa.Index("ix_arrears_scenario_steps", STEPS.c.profile)


def _steps(scenarios: dict[str, list[ScenarioStep]], as_of: date) -> sa.CompoundSelect | None:
    """The scenario steps as rows (a UNION ALL of constants), each with its due date."""
    rows = [
        sa.select(
            sa.literal(profile, sa.String()).label("profile"),
            sa.literal(step.step, sa.String()).label("step"),
            sa.literal(step.action, sa.String()).label("action"),
            sa.literal(step.channel, sa.String()).label("channel"),
            sa.literal(step.fallback, sa.String()).label("fallback"),
            sa.literal(step.template, sa.String()).label("template"),
            sa.literal(as_of + timedelta(days=step.after_days), sa.Date()).label("due_date"),
        )
        for profile, steps in sorted(scenarios.items())
        for step in steps
    ]
    if not rows:
        return None
    return sa.union_all(*rows)


def refresh_actions(
    connection: sa.Connection,
    landlord_id: str,
    as_of: date,
    run_id: str,
    settings: ArrearsSection,
) -> ActionCounts:
    """Close the open actions whose tenant no longer owes (or left the profile), then create
    the steps of each indebted tenant's scenario that have no open action yet. Running it again
    on the same figures creates and closes nothing."""
    actions, arrears = prevention_actions, tenant_arrears
    tenant_of = sa.and_(
        arrears.c.landlord_id == actions.c.landlord_id,
        arrears.c.tenant_ref == actions.c.tenant_ref,
        arrears.c.balance_cents > 0,
    )
    still_due = sa.exists().where(tenant_of, arrears.c.profile == actions.c.profile)
    closed = connection.execute(
        actions.update()
        .where(actions.c.landlord_id == landlord_id, actions.c.status == "open", ~still_due)
        .values(
            status="closed",
            closed_on=as_of,
            closed_reason=sa.case(
                (sa.exists().where(tenant_of), "profile_changed"), else_="balance_cleared"
            ),
            run_id=run_id,
        )
    ).rowcount
    created = 0
    rows = _steps(settings.scenario_steps(), as_of)
    if rows is not None:
        # the day's arrears were just written: the planner learns their size before the join.
        # Not the actions: analysed while empty (a landlord's first morning), PostgreSQL
        # planned the check for an earlier action as a scan of the table per tenant, a table
        # the INSERT fills as it goes (20 s for 28,000 actions)
        analyse(connection, arrears)
        with staged(connection, STEPS, rows) as steps:
            created = _create_actions(connection, landlord_id, as_of, run_id, steps)
    still_open = _action_count(connection, landlord_id, actions.c.status == "open")
    return ActionCounts(created=created, closed=int(closed), open=still_open)


def _create_actions(
    connection: sa.Connection, landlord_id: str, as_of: date, run_id: str, steps: sa.Table
) -> int:
    """Insert the steps of each indebted tenant's scenario that have no open action yet (nor
    one of the same key); the number created."""
    actions, arrears = prevention_actions, tenant_arrears
    key = (
        arrears.c.tenant_ref.concat(":")
        .concat(arrears.c.profile)
        .concat(":")
        .concat(steps.c.step)
        .concat(":" + as_of.isoformat())
    )
    channel = sa.case(
        (
            steps.c.channel == "preferred",
            sa.func.coalesce(TENANTS.c.preferred_channel, steps.c.fallback),
        ),
        else_=steps.c.channel,
    )
    earlier = sa.exists().where(
        actions.c.landlord_id == landlord_id,
        actions.c.tenant_ref == arrears.c.tenant_ref,
        actions.c.profile == arrears.c.profile,
        actions.c.step == steps.c.step,
        (actions.c.status == "open") | (actions.c.action_key == key),
    )
    wanted = (
        sa.select(
            sa.literal(landlord_id, actions.c.landlord_id.type),
            key,
            arrears.c.tenant_ref,
            arrears.c.profile,
            steps.c.step,
            steps.c.action,
            channel,
            steps.c.template,
            sa.literal(as_of, sa.Date()),
            steps.c.due_date,
            arrears.c.balance_cents,
            sa.literal("open", actions.c.status.type),
            sa.literal(run_id, actions.c.run_id.type),
        )
        .select_from(
            arrears.join(steps, steps.c.profile == arrears.c.profile).outerjoin(
                TENANTS,
                sa.and_(
                    TENANTS.c.landlord_id == arrears.c.landlord_id,
                    TENANTS.c.tenant_ref == arrears.c.tenant_ref,
                    TENANTS.c.deleted_at.is_(None),
                ),
            )
        )
        .where(arrears.c.landlord_id == landlord_id, arrears.c.balance_cents > 0, ~earlier)
    )
    columns = ["landlord_id", "action_key", "tenant_ref", "profile", "step", "action",
               "channel", "template", "opened_on", "due_date", "balance_cents", "status",
               "run_id"]  # fmt: skip
    before = _action_count(connection, landlord_id)
    connection.execute(actions.insert().from_select(columns, wanted))
    # counted, not the INSERT … SELECT's rowcount: psycopg reports -1 for it
    return _action_count(connection, landlord_id) - before


def refresh_actions_once(
    connection: sa.Connection,
    landlord_id: str,
    as_of: date,
    run_id: str,
    settings: ArrearsSection,
) -> ActionCounts:
    """`refresh_actions`, unless it already ran on `as_of` over the arrears as they are (the
    arrears' own record in `insight_states`: their inputs, settings included, and when they
    were computed); then nothing is created or closed."""
    state = insight_states
    arrears_state = connection.execute(
        sa.select(state.c.as_of, state.c.inputs, state.c.computed_at).where(
            state.c.landlord_id == landlord_id, state.c.step == "arrears"
        )
    ).first()
    counts: list[ActionCounts] = []
    computed_once(
        connection,
        landlord_id,
        "actions",
        as_of,
        run_id,
        json.dumps([str(value) for value in arrears_state or ()]),
        lambda: counts.append(refresh_actions(connection, landlord_id, as_of, run_id, settings)),
    )
    if counts:
        return counts[0]
    still_open = _action_count(connection, landlord_id, prevention_actions.c.status == "open")
    return ActionCounts(created=0, closed=0, open=still_open)


def _action_count(
    connection: sa.Connection, landlord_id: str, *where: sa.ColumnElement[bool]
) -> int:
    table = prevention_actions
    query = sa.select(sa.func.count()).where(table.c.landlord_id == landlord_id, *where)
    return int(connection.execute(query).scalar_one())


# -- alerts ------------------------------------------------------------------------------------


def _history_before(column: str, before: sa.ColumnElement[bool]) -> sa.ScalarSelect:
    """`column` of the tenant's latest history row (`tenant_balances`) meeting `before`,
    correlated to the tenant of `tenant_arrears`."""
    today, history = tenant_arrears, tenant_balances
    return (
        sa.select(history.c[column])
        .where(
            history.c.landlord_id == today.c.landlord_id,
            history.c.tenant_ref == today.c.tenant_ref,
            before,
        )
        .order_by(history.c.as_of.desc())
        .limit(1)
        .scalar_subquery()
    )


def debt_crossings(connection: sa.Connection, landlord_id: str, threshold_cents: int) -> list[str]:
    """Tenants whose balance today is at or above `threshold_cents` while it was below it on
    the day before in the history (or the tenant had no earlier day): who crossed it now."""
    today = tenant_arrears
    previous_day = _history_before("balance_cents", tenant_balances.c.as_of < today.c.as_of)
    query = (
        sa.select(today.c.tenant_ref)
        .where(
            today.c.landlord_id == landlord_id,
            today.c.balance_cents >= threshold_cents,
            sa.func.coalesce(previous_day, 0) < threshold_cents,
        )
        .order_by(today.c.tenant_ref)
    )
    return list(connection.execute(query).scalars())


def plans_broken_recently(connection: sa.Connection, landlord_id: str, days: int = 7) -> list[str]:
    """The repayment plans broken today that were not broken `days` days ago (on the latest
    day of the history on or before then; no history that old: not broken then)."""
    today = tenant_arrears
    as_of = connection.execute(
        sa.select(sa.func.max(today.c.as_of)).where(today.c.landlord_id == landlord_id)
    ).scalar()
    if as_of is None:
        return []
    status_then = _history_before("plan_status", tenant_balances.c.as_of <= _day(as_of, days))
    query = (
        sa.select(today.c.plan_ref)
        .where(
            today.c.landlord_id == landlord_id,
            today.c.plan_status == "broken",
            sa.func.coalesce(status_then, "none") != "broken",
        )
        .order_by(today.c.plan_ref)
    )
    return list(connection.execute(query).scalars())


@dataclass(frozen=True)
class ArrearsAlert:
    """One arrears alert judged against the datafix's thresholds: the keys listed (at the warn
    threshold), those at the error threshold, and its level."""

    name: str
    listed: list[str]
    errors: list[str]
    warn: bool
    error: bool

    @property
    def level(self) -> str:
        """`error`, `warning` or `ok`."""
        return "error" if self.error else ("warning" if self.warn else "ok")


def arrears_alerts(
    connection: sa.Connection, landlord_id: str, alerts: ArrearsAlerts
) -> list[ArrearsAlert]:
    """The arrears alerts of the landlord's latest day (the asset checks and the morning
    report judge them here): tenants whose debt crossed a threshold, plans broken this week."""
    warned = debt_crossings(connection, landlord_id, alerts.debt_warn_cents)
    errors = debt_crossings(connection, landlord_id, alerts.debt_error_cents)
    plans = plans_broken_recently(connection, landlord_id, days=7)
    return [
        ArrearsAlert("debt_crossed_threshold", warned, errors, bool(warned), bool(errors)),
        ArrearsAlert(
            "plans_broken_this_week",
            plans,
            plans,
            len(plans) >= alerts.broken_plans_warn,
            len(plans) >= alerts.broken_plans_error,
        ),
    ]
