"""Arrears alerts: asset checks on `insight_tenant_arrears`, thresholds from the datafix's
`arrears.alerts` (warn at the first, error at the second); each lists the keys concerned."""

import dagster as dg

from pipelines.defs.partitions import landlord_partitions
from pipelines.defs.resources import DatafixesResource, WarehouseResource
from pipelines.lib.arrears import ArrearsAlert, arrears_alerts
from pipelines.lib.metadata import AssetRole

ROLE = AssetRole("insight")


def _judged(
    context: dg.AssetCheckExecutionContext,
    datafixes: DatafixesResource,
    warehouse: WarehouseResource,
    name: str,
) -> ArrearsAlert:
    landlord_id = context.partition_key
    alerts = datafixes.get_client(landlord_id).datafix.arrears.alerts
    with warehouse.get_client().engine.connect() as connection:
        judged = arrears_alerts(connection, landlord_id, alerts)
    return next(alert for alert in judged if alert.name == name)


def _result(alert: ArrearsAlert, what: str) -> dg.AssetCheckResult:
    severity = dg.AssetCheckSeverity.ERROR if alert.error else dg.AssetCheckSeverity.WARN
    concerned = alert.errors if alert.error else alert.listed
    return dg.AssetCheckResult(
        passed=not (alert.error or alert.warn),
        severity=severity,
        description=f"{len(concerned)} {what}" if concerned else f"no {what}",
        metadata={
            **ROLE.entries(),
            "keys": dg.MetadataValue.json(alert.listed),
            "keys_error": dg.MetadataValue.json(alert.errors),
            "count": dg.MetadataValue.int(len(alert.listed)),
        },
    )


def _alert_check(name: str, description: str, what: str) -> dg.AssetChecksDefinition:
    """The asset check of the arrears alert `name`, its result phrased with `what`."""

    @dg.asset_check(
        asset="insight_tenant_arrears",
        name=name,
        partitions_def=landlord_partitions,
        description=description,
    )
    def check(
        context: dg.AssetCheckExecutionContext,
        datafixes: DatafixesResource,
        warehouse: WarehouseResource,
    ) -> dg.AssetCheckResult:
        return _result(_judged(context, datafixes, warehouse, name), what)

    return check


debt_crossed_threshold = _alert_check(
    "debt_crossed_threshold",
    "Tenants whose balance crossed `arrears.alerts.debt_warn_cents` (warn) or"
    " `debt_error_cents` (error) since their previous day in the history.",
    "tenants crossed the debt threshold",
)
plans_broken_this_week = _alert_check(
    "plans_broken_this_week",
    "Repayment plans broken in the last 7 days: warn at `arrears.alerts.broken_plans_warn`,"
    " error at `broken_plans_error`.",
    "repayment plans broken this week",
)


@dg.definitions
def defs() -> dg.Definitions:
    """The arrears alerts."""
    return dg.Definitions(asset_checks=[debt_crossed_threshold, plans_broken_this_week])
