"""Arrears alerts: asset checks on `insight_tenant_arrears`, thresholds from the datafix's
`arrears.alerts` (warn at the first, error at the second); each lists the keys concerned."""

import dagster as dg

from pipelines.defs.partitions import landlord_partitions
from pipelines.defs.resources import DatafixesResource, WarehouseResource
from pipelines.lib.arrears import debt_crossings, plans_broken_recently
from pipelines.lib.metadata import AssetRole

ROLE = AssetRole("insight")


def _result(
    keys_warn: list[str], keys_error: list[str], what: str, *, error: bool, warn: bool
) -> dg.AssetCheckResult:
    severity = dg.AssetCheckSeverity.ERROR if error else dg.AssetCheckSeverity.WARN
    concerned = keys_error if error else keys_warn
    return dg.AssetCheckResult(
        passed=not (error or warn),
        severity=severity,
        description=f"{len(concerned)} {what}" if concerned else f"no {what}",
        metadata={
            **ROLE.entries(),
            "keys": dg.MetadataValue.json(keys_warn),
            "keys_error": dg.MetadataValue.json(keys_error),
            "count": dg.MetadataValue.int(len(keys_warn)),
        },
    )


@dg.asset_check(
    asset="insight_tenant_arrears",
    name="debt_crossed_threshold",
    partitions_def=landlord_partitions,
    description="Tenants whose balance crossed `arrears.alerts.debt_warn_cents` (warn) or"
    " `debt_error_cents` (error) since their previous day in the history.",
)
def debt_crossed_threshold(
    context: dg.AssetCheckExecutionContext,
    datafixes: DatafixesResource,
    warehouse: WarehouseResource,
) -> dg.AssetCheckResult:
    landlord_id = context.partition_key
    alerts = datafixes.get_client(landlord_id).datafix.arrears.alerts
    with warehouse.get_client().engine.connect() as connection:
        warned = debt_crossings(connection, landlord_id, alerts.debt_warn_cents)
        errors = debt_crossings(connection, landlord_id, alerts.debt_error_cents)
    what = "tenants crossed the debt threshold"
    return _result(warned, errors, what, error=bool(errors), warn=bool(warned))


@dg.asset_check(
    asset="insight_tenant_arrears",
    name="plans_broken_this_week",
    partitions_def=landlord_partitions,
    description="Repayment plans broken in the last 7 days: warn at"
    " `arrears.alerts.broken_plans_warn`, error at `broken_plans_error`.",
)
def plans_broken_this_week(
    context: dg.AssetCheckExecutionContext,
    datafixes: DatafixesResource,
    warehouse: WarehouseResource,
) -> dg.AssetCheckResult:
    landlord_id = context.partition_key
    alerts = datafixes.get_client(landlord_id).datafix.arrears.alerts
    with warehouse.get_client().engine.connect() as connection:
        plans = plans_broken_recently(connection, landlord_id, days=7)
    return _result(
        plans,
        plans,
        "repayment plans broken this week",
        error=len(plans) >= alerts.broken_plans_error,
        warn=len(plans) >= alerts.broken_plans_warn,
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The arrears alerts."""
    return dg.Definitions(asset_checks=[debt_crossed_threshold, plans_broken_this_week])
