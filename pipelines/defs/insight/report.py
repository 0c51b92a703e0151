"""The morning report: one self-contained HTML file per landlord and day, written after the
night's figures, linked from the asset's metadata (the UI shows the path and the link)."""

from datetime import datetime

import dagster as dg

from pipelines.defs.common import landlord_asset
from pipelines.defs.insight.assets import PARIS
from pipelines.defs.resources import DatafixesResource, WarehouseResource
from pipelines.lib.metadata import AssetRole
from pipelines.lib.report import write_report

ROLE = AssetRole("insight")


@landlord_asset(
    ROLE,
    name="insight_morning_report",
    deps=["insight_tenant_balances", "insight_prevention_actions", "insight_works"],
    description="The landlord's morning report: loads and quarantine, pushes and dead letters,"
    " arrears (balances, ageing, 30-day trend, profiles, due actions), works orders by stage,"
    " SLA and first-time fix, and the alerts; one self-contained HTML file per day under"
    " `$DATAFIX_HOME/reports/<landlord>/` (also written by `datafix report LANDLORD`).",
)
def insight_morning_report(
    context: dg.AssetExecutionContext,
    datafixes: DatafixesResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    loaded = datafixes.get_client(context.partition_key)
    as_of = datetime.now(PARIS).date()
    path = write_report(warehouse.get_client(), loaded, as_of)
    return dg.MaterializeResult(
        metadata={
            **ROLE.entries(),
            "as_of": as_of.isoformat(),
            "report": dg.MetadataValue.path(str(path)),
            "report_url": dg.MetadataValue.url(path.as_uri()),
        }
    )
