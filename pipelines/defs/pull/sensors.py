"""The inbox sensor: a file landing in a landlord's inbox starts that landlord's run."""

from pathlib import Path

import dagster as dg

from connectors import registry
from connectors.errors import ConnectorError
from pipelines.defs.automation import nightly_job
from pipelines.defs.partitions import landlord_partitions
from pipelines.lib.datafixes import load_landlord


def inbox_run_requests(landlords: list[str]) -> tuple[list[dg.RunRequest], list[str]]:
    """One run request per file a source watches, keyed by landlord, path and mtime."""
    requests: list[dg.RunRequest] = []
    problems: list[str] = []
    for landlord in landlords:
        try:
            loaded = load_landlord(landlord)
        except ConnectorError as error:
            problems.append(f"{landlord}: {error}")
            continue
        inbox = loaded.inbox()
        watched: set[Path] = set()
        for name, settings in loaded.datafix.sources.items():
            kind = registry.source_kind(settings.kind)
            if kind is None or kind.watch is None:
                continue  # databases and web services: no file
            try:
                watched.update(kind.watch(loaded.source(name), inbox))
            except ConnectorError:
                continue  # nothing landed yet for this source
        for path in sorted(watched):
            relative = path.relative_to(inbox).as_posix()
            requests.append(
                dg.RunRequest(
                    run_key=f"inbox:{landlord}:{relative}:{path.stat().st_mtime_ns}",
                    partition_key=landlord,
                    tags={"datafix/trigger_file": relative},
                )
            )
    return requests, problems


@dg.sensor(
    job=nightly_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts a landlord's run when a new or changed file lands in its inbox"
    " (one run per file, keyed by path and modification time).",
)
def inbox_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Watch every landlord's inbox."""
    requests, problems = inbox_run_requests(landlord_partitions.get_partition_keys())
    for problem in problems:
        context.log.warning(problem)
    return dg.SensorResult(run_requests=requests)
