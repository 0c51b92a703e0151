"""The jobs and the schedule: every landlord's nightly run at 02:00 Europe/Paris (pull through
push, and the insight figures after the loads); `pull` (pull through load and the insight
figures, no push: `datafix pull` / `datafix run --no-push`, for a landlord whose push is not
ready) and `push` alone (`datafix push`), both from the UI's launchpad too."""

import dagster as dg

from pipelines.defs.partitions import landlord_partitions
from pipelines.lib.instance import reap_dead_runs

nightly_job = dg.define_asset_job(
    name="nightly",
    selection=dg.AssetSelection.groups("pull", "normalise", "load", "derive", "push", "insight"),
    description="Pull, normalise, check and load one landlord's data, then push what changed"
    " and compute the morning figures.",
    # one process per run: a landlord's steps are light and sequential in practice, and a
    # subprocess per step would re-import pandas, GX and dagster 32 times on a 2-core machine
    executor_def=dg.in_process_executor,
)


pull_job = dg.define_asset_job(
    name="pull",
    selection=dg.AssetSelection.groups("pull", "normalise", "load", "insight"),
    description="Pull, normalise, check and load one landlord's data and compute the morning"
    " figures, without deriving or pushing anything.",
    executor_def=dg.in_process_executor,
)


push_job = dg.define_asset_job(
    name="push",
    selection=dg.AssetSelection.groups("derive", "push"),
    description="Derive and push one landlord's confirmed records from the warehouse as it is"
    " (a failed contract still holds the records it concerns).",
    executor_def=dg.in_process_executor,
)


@dg.schedule(
    job=nightly_job,
    cron_schedule="0 2 * * *",
    execution_timezone="Europe/Paris",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every landlord's nightly run (pull through push, then the morning figures) at"
    " 02:00 Europe/Paris time, summer and winter alike: one run per landlord, keyed by landlord"
    " and night, so a schedule tick replayed after a restart starts nothing twice; runs of one"
    " landlord queue behind each other (deploy/dagster.yaml).",
)
def nightly_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    """One run per landlord every night at 02:00 Paris time."""
    night = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return [
        dg.RunRequest(run_key=f"nightly:{landlord}:{night}", partition_key=landlord)
        for landlord in landlord_partitions.get_partition_keys()
    ]


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def dead_runs_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    """Every minute, marks failed the runs whose process is gone (killed with -9, a crash): the
    default run launcher cannot see a run worker die, and a dead run left STARTED would hold its
    place in the run queue for good."""
    reaped = reap_dead_runs(context.instance)
    return dg.SkipReason(f"marked failed: {', '.join(reaped)}" if reaped else "no dead run")
