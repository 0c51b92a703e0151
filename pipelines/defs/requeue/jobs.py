"""The operators' repair jobs, launched from the UI's launchpad with a config form (the landlord
is the partition): `requeue` maps a landlord's quarantined rows again after a datafix fix (the
same as `datafix requeue LANDLORD`), `replay` queues its dead letters again after their cause was
fixed (the same as `datafix replay LANDLORD`). Both call the command line's own code."""

import dagster as dg

from connectors.errors import ConnectorError
from connectors.secrets import scrub
from pipelines.defs.common import hub_failures
from pipelines.defs.partitions import landlord_partitions
from pipelines.defs.resources import DatafixesResource, WarehouseResource
from pipelines.lib.datafixes import LoadedDatafix
from pipelines.lib.outbox import Outbox, replay_dead_letters
from pipelines.lib.requeue import requeue


def _landlord_datafix(
    context: dg.OpExecutionContext, datafixes: DatafixesResource, nothing_done: str
) -> LoadedDatafix:
    """The partition's datafix; a refused one fails the op, saying `nothing_done` and why."""
    try:
        return datafixes.get_client(context.partition_key)
    except ConnectorError as error:
        raise dg.Failure(
            description=scrub(f"datafix refused, nothing was {nothing_done}:\n{error}")
        ) from None


class RequeueConfig(dg.Config):
    """Which quarantined rows to map again."""

    entity: str | None = None  # every entity the datafix maps when empty
    reason: str | None = None  # every reason when empty


@dg.op(description="Map the landlord's open quarantine rows again with its current datafix.")
@hub_failures
def requeue_quarantine(
    context: dg.OpExecutionContext,
    config: RequeueConfig,
    warehouse: WarehouseResource,
    datafixes: DatafixesResource,
) -> None:
    loaded = _landlord_datafix(context, datafixes, "requeued")
    entities = [config.entity] if config.entity else list(loaded.datafix.entities)
    client = warehouse.get_client()
    totals = {"requeued": 0, "loaded": 0, "quarantined": 0, "skipped": 0}
    for entity in entities:
        try:
            result = requeue(client, loaded, entity, run_id=context.run_id, reason=config.reason)
        except ConnectorError as error:
            raise dg.Failure(description=scrub(str(error))) from None
        context.log.info(result.summary())
        for name in totals:
            totals[name] += getattr(result, name)
        context.add_output_metadata(
            {
                f"{entity}/requeued": result.requeued,
                f"{entity}/loaded": result.loaded,
                f"{entity}/quarantined": result.quarantined,
                f"{entity}/still": ", ".join(f"{r} {n}" for r, n in sorted(result.reasons.items()))
                or "-",
            }
        )
    context.add_output_metadata({f"total/{name}": count for name, count in totals.items()})


@dg.job(
    name="requeue",
    partitions_def=landlord_partitions,
    description="Map one landlord's quarantined rows again after a datafix fix: rows that now"
    " pass load, the rest stay with their new reason. Reads no source; watermarks stay.",
    executor_def=dg.in_process_executor,
)
def requeue_job() -> None:
    requeue_quarantine()


class ReplayConfig(dg.Config):
    """Which dead letters to queue again."""

    sink: str | None = None  # every sink of the landlord's datafix when empty
    reason: str | None = None  # only letters whose peer message contains this text when set


@dg.op(description="Queue the landlord's dead letters again, once their cause is fixed.")
@hub_failures
def replay_dead_letters_op(
    context: dg.OpExecutionContext,
    config: ReplayConfig,
    warehouse: WarehouseResource,
    datafixes: DatafixesResource,
) -> None:
    landlord_id = context.partition_key
    loaded = _landlord_datafix(context, datafixes, "replayed")
    try:
        box = Outbox(warehouse.get_client().engine)
        count = replay_dead_letters(box, loaded, config.sink, config.reason)
    except ConnectorError as error:
        raise dg.Failure(description=scrub(f"nothing was replayed: {error}")) from None
    where = f" for {config.sink}" if config.sink else ""
    context.log.info(f"{landlord_id}: {count} dead letter(s) queued again{where}")
    context.add_output_metadata(
        {"replayed": count, "next": f"launch the `push` job for {landlord_id} to send them"}
    )


@dg.job(
    name="replay",
    partitions_def=landlord_partitions,
    description="Queue one landlord's dead letters again (one sink, one reason, or all) after"
    " their cause was fixed at the peer or in the datafix; the next push sends them (the same as"
    " `datafix replay LANDLORD`).",
    executor_def=dg.in_process_executor,
)
def replay_job() -> None:
    replay_dead_letters_op()
