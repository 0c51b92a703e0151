"""Insight assets: the landlord's morning figures, computed in the warehouse after the loads."""

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import dagster as dg

from pipelines.defs.common import landlord_asset
from pipelines.defs.resources import WarehouseResource
from pipelines.lib.insight import balance_figures, refresh_tenant_balances
from pipelines.lib.metadata import AssetRole

PARIS = ZoneInfo("Europe/Paris")


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
    return dg.MaterializeResult(
        metadata={
            **AssetRole("insight").entries(),
            "as_of": as_of.isoformat(),
            "tenants": dg.MetadataValue.int(figures.tenants),
            "tenants_in_debt": dg.MetadataValue.int(figures.tenants_in_debt),
            "total_balance_cents": dg.MetadataValue.int(figures.total_balance_cents),
            "total_balance_euros": str(Decimal(figures.total_balance_cents).scaleb(-2)),
            "dagster/row_count": dg.MetadataValue.int(figures.tenants),
            # False: no load wrote the ledger since today's balances were summed; kept as they are
            "recomputed": computed,
        }
    )
