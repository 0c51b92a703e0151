"""Works tracking: each order's timeline, stage, SLA and delays (`insight_works`), and the works
alerts as asset checks on it, with the thresholds of the landlord's datafix (`works.alerts`)."""

from datetime import datetime

import dagster as dg

from pipelines.defs.common import landlord_asset, safe_metadata
from pipelines.defs.insight.assets import PARIS, insight_result
from pipelines.defs.partitions import landlord_partitions
from pipelines.defs.resources import DatafixesResource, WarehouseResource
from pipelines.lib.insight import computed_once
from pipelines.lib.metadata import AssetRole, counts
from pipelines.lib.push import sinks_sending
from pipelines.lib.works import (
    WORKS_ALERTS,
    WORKS_INPUTS,
    judge,
    refresh_works,
    works_alerts,
    works_as_of,
    works_inputs,
    works_summary,
)
from schemas.datafix import WorksAlert, WorksAlerts

ROLE = AssetRole("insight")
# the pushes whose deliveries are events of the timeline (`commitment_sent`, `invoice_sent`)
WORKS_DELIVERIES = ("push_commitments", "push_invoices")


@landlord_asset(
    ROLE,
    name="insight_works",
    # after this run's push of commitments and invoices: the timeline reads their deliveries
    # (a push whose sinks failed still materialises; its `delivered` check fails the run)
    deps=[f"warehouse_{entity}" for entity in WORKS_INPUTS] + list(WORKS_DELIVERIES),
    description="Works tracking, like a parcel: every order's timeline (ordered, quote sent and"
    " accepted, commitment raised and delivered, appointment, tenant absent, completed, signed,"
    " invoiced, invoice delivered, paid) from the canonical tables and the push outbox, its"
    " current stage and days in it, GTI/GTR met / missed / pending (missed appointments are"
    " not the contractor's delay), first-time fix, commitment lag and invoice delays, and the"
    " missed appointments per tenant and per weekday and slot: warehouse tables `works_*`.",
)
def insight_works(
    context: dg.AssetExecutionContext,
    datafixes: DatafixesResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    landlord_id = context.partition_key
    datafix = datafixes.get_client(landlord_id).datafix
    if not any(entity in datafix.entities for entity in WORKS_INPUTS):
        return dg.MaterializeResult(
            metadata={**ROLE.entries(), "status": "not_configured: the datafix maps no works"}
        )
    days = datafix.works.first_time_fix_days
    as_of = datetime.now(PARIS).date()
    run_id = context.run.run_id
    with warehouse.get_client().engine.begin() as connection:
        # computed again only on a new day, after a load of one of its tables or a delivery
        computed = computed_once(
            connection,
            landlord_id,
            "works",
            as_of,
            run_id,
            works_inputs(connection, landlord_id, days),
            lambda: refresh_works(connection, landlord_id, as_of, run_id, first_time_fix_days=days),
        )
        summary = works_summary(connection, landlord_id)
    rate = summary.first_time_fix_rate
    return insight_result(
        as_of,
        summary.orders,
        computed,
        **counts(
            orders=summary.orders,
            open_orders=summary.open_orders,
            timeline_events=summary.events,
            missed_appointments=summary.missed_appointments,
        ),
        orders_by_stage=dg.MetadataValue.json(summary.stages),
        gti=dg.MetadataValue.json(summary.gti),
        gtr=dg.MetadataValue.json(summary.gtr),
        first_time_fix_rate=dg.MetadataValue.float(rate if rate is not None else 0.0),
    )


ALERT_DESCRIPTIONS = {
    name: WorksAlerts.model_fields[name].description or name for name in WORKS_ALERTS
}


def build_works_check(name: str) -> dg.AssetChecksDefinition:
    """The `<name>` alert on `insight_works`: passes when no key is late enough to list."""

    @dg.asset_check(
        asset=insight_works,
        name=name,
        partitions_def=landlord_partitions,
        description=ALERT_DESCRIPTIONS[name] + " Thresholds: the datafix's `works.alerts`.",
    )
    def works_alert(
        context: dg.AssetCheckExecutionContext,
        datafixes: DatafixesResource,
        warehouse: WarehouseResource,
    ) -> dg.AssetCheckResult:
        landlord_id = context.partition_key
        loaded = datafixes.get_client(landlord_id)
        alert: WorksAlert = getattr(loaded.datafix.works.alerts, name)
        with warehouse.get_client().engine.connect() as connection:
            as_of = works_as_of(connection, landlord_id) or datetime.now(PARIS).date()
            keys = works_alerts(
                connection,
                landlord_id,
                as_of,
                pushes_commitments=bool(sinks_sending(loaded, "commitments")),
                only=name,
            )[name]
        listed, error = judge(alert, keys)
        return dg.AssetCheckResult(
            passed=not listed,
            severity=dg.AssetCheckSeverity.ERROR if error else dg.AssetCheckSeverity.WARN,
            description=f"{len(listed)} listed" if listed else "nothing late",
            metadata=safe_metadata(
                {
                    **ROLE.entries(),
                    "alert": name,
                    "as_of": as_of.isoformat(),
                    "count": dg.MetadataValue.int(len(listed)),
                    "keys": dg.MetadataValue.json(
                        [{"key": key.key, "days": key.days} for key in listed]
                    ),
                }
            ),
        )

    return works_alert


@dg.definitions
def defs() -> dg.Definitions:
    """The works asset and one alert check per works alert."""
    return dg.Definitions(
        assets=[insight_works], asset_checks=[build_works_check(name) for name in WORKS_ALERTS]
    )
