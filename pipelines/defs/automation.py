"""The nightly job and its schedule: every landlord at 02:00 Europe/Paris."""

import dagster as dg

from pipelines.defs.partitions import landlord_partitions

nightly_job = dg.define_asset_job(
    name="nightly",
    selection=dg.AssetSelection.groups("pull", "normalise", "load"),
    description="Pull, normalise, check and load one landlord's data.",
    # one process per run: a landlord's steps are light and sequential in practice, and a
    # subprocess per step would re-import pandas, GX and dagster 32 times on a 2-core machine
    executor_def=dg.in_process_executor,
)


@dg.schedule(
    job=nightly_job,
    cron_schedule="0 2 * * *",
    execution_timezone="Europe/Paris",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def nightly_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    """One run per landlord every night at 02:00 Paris time."""
    night = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return [
        dg.RunRequest(run_key=f"nightly:{landlord}:{night}", partition_key=landlord)
        for landlord in landlord_partitions.get_partition_keys()
    ]
