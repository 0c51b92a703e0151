"""`health_after_runs`: the landlord's health refreshed after every finished run that did not
refresh it itself (a run that failed before it, a `push`, `requeue` or `replay` run), whoever
launched it. `datafix` refreshes it in the same process; this sensor does for runs launched
from the UI, the schedule or the file sensor (it needs the daemon: `make ui` runs one)."""

import datetime as dt

import dagster as dg

from pipelines.defs.health.assets import HEALTH_ASSET, HEALTH_JOB, health_job

FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]


@dg.sensor(
    job=health_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def health_after_runs(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """One `health` run per landlord run that finished since the last tick without a newer
    health of that landlord. The cursor starts at the first tick: earlier runs are left alone."""
    now = dt.datetime.now(dt.UTC).timestamp()
    if context.cursor is None:
        return dg.SensorResult(skip_reason="first tick: watching runs from now", cursor=str(now))
    since = float(context.cursor)
    records = context.instance.get_run_records(
        filters=dg.RunsFilter(
            statuses=FINISHED, updated_after=dt.datetime.fromtimestamp(since, dt.UTC)
        ),
        order_by="update_timestamp",
        ascending=True,
        limit=200,
    )
    requests = []
    cursor = since
    for record in records:
        cursor = max(cursor, record.update_timestamp.timestamp())
        run = record.dagster_run
        landlord = run.tags.get("dagster/partition")
        if run.job_name == HEALTH_JOB or landlord is None:
            continue
        if _refreshed(context.instance, landlord, run.run_id, record.end_time or 0.0):
            continue
        requests.append(dg.RunRequest(run_key=f"health:{run.run_id}", partition_key=landlord))
    return dg.SensorResult(run_requests=requests, cursor=str(cursor))


def _refreshed(instance: dg.DagsterInstance, landlord: str, run_id: str, end: float) -> bool:
    """Whether the landlord's latest health came from that run itself or after its `end`."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(HEALTH_ASSET), asset_partitions=[landlord]),
        limit=1,
    ).records
    return bool(records) and (records[0].run_id == run_id or records[0].timestamp >= end)
