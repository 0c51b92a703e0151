"""Push: one asset per kind of outgoing record, delivering it to the landlord's sinks, and its
`delivered` check.

A push whose sinks refused records (failed, dead letters beyond `max_dead_percent`, blocked) is
still materialised: the outbox did change, and what comes after it in the run (the works
timeline reads the deliveries, then the morning report) must see this run's deliveries, which a
failed step would skip. Its `delivered` check then records the failure (ERROR) and fails its
own step, so the run still ends failed, with the sinks' messages as its cause."""

from collections.abc import Iterator

import dagster as dg

from connectors.errors import ConnectorError
from pipelines.defs.common import landlord_asset, refused
from pipelines.defs.health.tables import dead_letter_metadata
from pipelines.defs.partitions import landlord_partitions
from pipelines.defs.resources import DatafixesResource, WarehouseResource
from pipelines.lib.metadata import AssetRole
from pipelines.lib.outbox import PushBusyError
from pipelines.lib.push import FAILING, push_landlord, sinks_sending
from pipelines.lib.sinks import build_sink
from schemas.outgoing import OUTGOING, OutgoingSpec


def build_push_asset(spec: OutgoingSpec) -> dg.AssetsDefinition:
    """The `push_<name>` asset: the landlord's outbox for that kind, delivered to every sink of
    the landlord's datafix that sends it."""

    role = AssetRole("push", sends=spec.name)

    @landlord_asset(
        role,
        deps=[f"outgoing_{spec.name}"],
        description=f"Push of the landlord's {spec.name} to the sinks its datafix declares:"
        " only changed records are queued in the outbox, each delivered once (idempotency"
        " keys, read-back after a crash); refused records go to the dead letter.",
    )
    def push_records(
        context: dg.AssetExecutionContext,
        datafixes: DatafixesResource,
        warehouse: WarehouseResource,
    ) -> dg.MaterializeResult:
        loaded = datafixes.get_client(context.partition_key)
        names = sinks_sending(loaded, spec.name)
        if not names:
            return dg.MaterializeResult(metadata={**role.entries(), "status": "no sink sends it"})
        try:
            outcomes = push_landlord(
                warehouse.get_client(), loaded, build_sink, run_id=context.run.run_id, sinks=names
            )
        except (PushBusyError, ConnectorError) as error:
            raise refused(error) from error
        totals = {
            key: sum(getattr(outcome, key) for outcome in outcomes)
            for key in (
                "sent",
                "unchanged",
                "failed",
                "dead",
                "queued",
                "pending",
                "recovered",
                "calls",
            )
        }
        for outcome in outcomes:
            context.log.info(
                "%s → %s (%s): %s; sent %d, unchanged %d, failed %d, dead %d",
                loaded.landlord_id, outcome.sink, outcome.kind, outcome.status, outcome.sent,
                outcome.unchanged, outcome.failed, outcome.dead,
            )  # fmt: skip
        # one number per sink and count too: the UI plots numeric metadata run after run
        per_sink = {
            f"{o.sink}/{key}": dg.MetadataValue.int(getattr(o, key))
            for o in outcomes
            for key in ("sent", "unchanged", "failed", "dead")
        }
        # each sink's dead letters waiting for a replay: the peer's messages and the first ones
        with warehouse.get_client().engine.connect() as connection:
            for outcome in outcomes:
                per_sink |= dead_letter_metadata(connection, loaded.landlord_id, outcome.sink)
        # every record refused, a sink that cannot build its request, dead letters beyond the
        # sink's max_dead_percent: the `delivered` check fails, hence the run (`datafix` exits 1)
        failed = [o for o in outcomes if o.status in FAILING]
        metadata = {
            **role.entries(),
            "status": "failed" if failed else "pushed",
            **{key: dg.MetadataValue.int(value) for key, value in totals.items()},
            **per_sink,
            "sinks": dg.MetadataValue.json(
                [
                    {
                        "sink": o.sink,
                        "kind": o.kind,
                        "status": o.status,
                        "confirmed": o.confirmed,
                        "queued": o.queued,
                        "pending": o.pending,
                        "sent": o.sent,
                        "unchanged": o.unchanged,
                        "recovered": o.recovered,
                        "failed": o.failed,
                        "dead": o.dead,
                        "dead_waiting": o.dead_waiting,
                        "calls": o.calls,
                        "error": o.error,
                    }
                    for o in outcomes
                ]
            ),
        }
        if failed:
            metadata["failure"] = "; ".join(f"{o.sink}: {o.status}: {o.error}" for o in failed)
        return dg.MaterializeResult(metadata=metadata)

    return push_records


def build_delivery_check(push: dg.AssetsDefinition, spec: OutgoingSpec) -> dg.AssetChecksDefinition:
    """`delivered` on `push_<name>`: passes when this run's push left no sink failing; else it
    records the failure (ERROR, the sinks' messages) and fails its step, hence the run."""

    @dg.asset_check(
        asset=push,
        name="delivered",
        partitions_def=landlord_partitions,
        description=f"Every sink that sends {spec.name} took this run's records: none failed,"
        " none blocked, dead letters within the sink's max_dead_percent. A failure fails the"
        " run, after the works timeline and the morning report have seen the deliveries.",
    )
    def delivered(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=push.key, asset_partitions=[context.partition_key]),
            limit=1,
        ).records
        materialization = records[0].asset_materialization if records else None
        if materialization is None or records[0].run_id != context.run.run_id:
            return  # this run did not push (the check runs only after its asset, so never)
        failure = materialization.metadata.get("failure")
        if failure is None:
            yield dg.AssetCheckResult(passed=True, description="every sink took its records")
            return
        yield dg.AssetCheckResult(
            passed=False, severity=dg.AssetCheckSeverity.ERROR, description=failure.value
        )
        raise dg.Failure(description=failure.value, allow_retries=False)

    return delivered


@dg.definitions
def defs() -> dg.Definitions:
    """One push asset per kind of outgoing record, each with its `delivered` check."""
    pushes = {spec.name: build_push_asset(spec) for spec in OUTGOING.values()}
    return dg.Definitions(
        assets=list(pushes.values()),
        asset_checks=[build_delivery_check(pushes[spec.name], spec) for spec in OUTGOING.values()],
    )
