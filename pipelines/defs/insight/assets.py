"""Insight assets: the landlord's morning figures, computed in the warehouse after the loads:
balances, arrears and profiles, prevention actions."""

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import sqlalchemy as sa

from pipelines.defs.common import landlord_asset
from pipelines.defs.resources import DatafixesResource, WarehouseResource
from pipelines.lib.arrears import (
    ArrearsFigures,
    arrears_figures,
    refresh_actions_once,
    refresh_arrears,
)
from pipelines.lib.insight import BalanceFigures, balance_figures, refresh_tenant_balances
from pipelines.lib.metadata import AssetRole, counts

PARIS = ZoneInfo("Europe/Paris")
ROLE = AssetRole("insight")


def insight_result(
    as_of: date, rows: int, recomputed: bool | None = None, **figures: Any
) -> dg.MaterializeResult:
    """An insight asset's result: its role, the day, its `figures`, `rows` as
    `dagster/row_count` and, for a step computed once per inputs, whether it was computed now
    (False: nothing it reads changed since it was computed that day; kept as it is)."""
    metadata = {**ROLE.entries(), "as_of": as_of.isoformat(), **figures}
    metadata["dagster/row_count"] = dg.MetadataValue.int(rows)
    if recomputed is not None:
        metadata["recomputed"] = recomputed
    return dg.MaterializeResult(metadata=metadata)


def _tenant_counts(figures: BalanceFigures | ArrearsFigures, **more: int) -> dict[str, Any]:
    """The tenant counts of the balances or the arrears, and the `more` integer entries."""
    return counts(tenants=figures.tenants, tenants_in_debt=figures.tenants_in_debt, **more)


@landlord_asset(
    AssetRole("insight"),
    name="insight_tenant_balances",
    deps=["warehouse_ledger_entries"],
    description="Each tenant's balance today (Paris date), in cents: the sum of their live"
    " ledger entries up to today (soft-deleted and future-dated entries left out), kept in"
    " the warehouse table `tenant_balances`; summed again only when a load wrote the ledger"
    " since (or on a new day).",
)
def insight_tenant_balances(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    landlord_id = context.partition_key
    as_of = datetime.now(PARIS).date()
    with warehouse.get_client().engine.begin() as connection:
        computed = refresh_tenant_balances(
            connection, landlord_id, as_of, run_id=context.run.run_id
        )
        figures = balance_figures(connection, landlord_id, as_of)
    return insight_result(
        as_of,
        figures.tenants,
        computed,
        **_tenant_counts(figures, total_balance_cents=figures.total_balance_cents),
        total_balance_euros=str(Decimal(figures.total_balance_cents).scaleb(-2)),
    )


def _arrears_step(
    context: dg.AssetExecutionContext,
    datafixes: DatafixesResource,
    warehouse: WarehouseResource,
    step: Callable[..., Any],
) -> tuple[date, Any]:
    """Today (Paris) and what `step(connection, landlord, today, run id, the datafix's
    arrears settings)` returns, run in one warehouse transaction."""
    landlord_id = context.partition_key
    settings = datafixes.get_client(landlord_id).datafix.arrears
    as_of = datetime.now(PARIS).date()
    with warehouse.get_client().engine.begin() as connection:
        return as_of, step(connection, landlord_id, as_of, context.run.run_id, settings)


@landlord_asset(
    AssetRole("insight"),
    name="insight_tenant_arrears",
    deps=[
        "insight_tenant_balances",
        "warehouse_ledger_entries",
        "warehouse_tenants",
        "warehouse_repayment_plans",
    ],
    description="Each tenant's arrears today (Paris date), in the warehouse table"
    " `tenant_arrears`: balance, the debt aged in buckets 0–30, 31–60, 61–90, 91–180 and"
    " over 180 days (credits pay the oldest debits first), months of rent owed, last payment"
    " date and method, direct debits rejected in the last 90 days with their SEPA reasons,"
    " repayment plan status, housing aid received, and the profile the datafix's rules (or the"
    " default ones) place the tenant in, with the rule that placed them. The day's ageing, plan"
    " status and profile are copied onto the history (`tenant_balances`). Computed again only"
    " when a load wrote the ledger, tenants or plans since, the rules changed, or on a new day.",
)
def insight_tenant_arrears(
    context: dg.AssetExecutionContext,
    datafixes: DatafixesResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    def compute(connection: sa.Connection, landlord_id: str, *args: Any) -> tuple:
        computed = refresh_arrears(connection, landlord_id, *args)
        return computed, arrears_figures(connection, landlord_id)

    as_of, (computed, figures) = _arrears_step(context, datafixes, warehouse, compute)
    return insight_result(
        as_of,
        figures.tenants,
        computed,
        **_tenant_counts(figures, debt_cents=figures.debt_cents, **figures.ageing_cents),
        profiles=dg.MetadataValue.json(figures.profiles),
        plans=dg.MetadataValue.json(figures.plans),
    )


@landlord_asset(
    AssetRole("insight"),
    name="insight_prevention_actions",
    deps=["insight_tenant_arrears"],
    description="The prevention actions of each indebted tenant's profile scenario, in the"
    " warehouse table `prevention_actions`: channel (the tenant's preferred one, else the"
    " step's fallback), due date, template and a stable key; an action is created once, not"
    " every morning, and closed when the balance clears or the tenant leaves the profile. The"
    " `actions` outgoing records push them through the outbox to the datafix's sinks.",
)
def insight_prevention_actions(
    context: dg.AssetExecutionContext,
    datafixes: DatafixesResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    as_of, actions = _arrears_step(context, datafixes, warehouse, refresh_actions_once)
    return insight_result(
        as_of,
        actions.open,
        **counts(created=actions.created, closed=actions.closed, open=actions.open),
    )
