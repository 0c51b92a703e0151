"""The landlord's health: one partition per landlord, refreshed after every run, read from the
warehouse's own bookkeeping (`pipelines.lib.health`): per entity the latest load's read / loaded
/ quarantined / skipped, the contract verdict, the age of the data and the open quarantine; per
sink the outbox's records by state and the last push's sent / unchanged / failed / dead. Its
`healthy` check fails when any part of the landlord is not, so the asset overview shows the
landlords in trouble; the Markdown says which part and why.

It runs at the end of the `nightly` and `pull` jobs (in the insight group, after the loads and
the push). A run that ends before it (a failed step, a blocked contract) or that does not
include it (`push`, `requeue`, `replay`) is followed by the `health` job for its landlord:
`datafix` runs it itself, and the `health_after_runs` sensor does for runs launched from the UI,
the schedule or the file sensor.
"""

import datetime as dt
from typing import Any

import dagster as dg

from connectors.errors import ConnectorError
from pipelines.defs.common import landlord_asset
from pipelines.defs.health.tables import dead_letter_metadata, quarantine_metadata, rows_table
from pipelines.defs.partitions import landlord_partitions
from pipelines.defs.resources import DatafixesResource, WarehouseResource
from pipelines.lib.failures import failure_cause
from pipelines.lib.health import LandlordHealth, landlord_health
from pipelines.lib.metadata import AssetRole
from schemas.canonical import ENTITIES
from schemas.outgoing import OUTGOING

HEALTH_ASSET = "landlord_health"
HEALTH_JOB = "health"
ENTITY_COLUMNS = [
    "entity", "status", "read", "loaded", "quarantined", "skipped", "contract", "data_age_hours",
    "open_quarantine", "last_load_run",
]  # fmt: skip
SINK_COLUMNS = ["sink", "pending", "sent", "failed", "dead", "last_push"]


@landlord_asset(
    AssetRole("insight"),
    name=HEALTH_ASSET,
    deps=[f"warehouse_{entity}" for entity in ENTITIES] + [f"push_{name}" for name in OUTGOING],
    check_specs=[
        dg.AssetCheckSpec(
            "healthy",
            asset=HEALTH_ASSET,
            partitions_def=landlord_partitions,
            description="Fails when any part of the landlord is unhealthy: a load blocked or"
            " failed, a contract failed, an entity never loaded, a sink with dead letters or"
            " failing records.",
        )
    ],
    description="The landlord at a glance, for the operator's morning: per entity the latest"
    " load's counts, its contract verdict and the age of its data; per sink the outbox by state"
    " and the last push; the open quarantine and the dead letters with their reasons.",
)
def landlord_health_asset(
    context: dg.AssetExecutionContext,
    datafixes: DatafixesResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    landlord_id = context.partition_key
    try:
        loaded = datafixes.get_client(landlord_id)
    except ConnectorError as error:  # a datafix that does not load: the landlord is unhealthy
        problem = f"datafix refused, nothing can run:\n{error}"
        return dg.MaterializeResult(
            metadata={**AssetRole("insight").entries(), "report": dg.MetadataValue.md(problem)},
            check_results=[_verdict([problem])],
        )
    mapped = list(loaded.datafix.entities)
    sinks = list(loaded.datafix.push.sinks) if loaded.datafix.push else []
    with warehouse.get_client().engine.connect() as connection:
        health = landlord_health(connection, landlord_id, mapped, sinks)
        details: dict[str, Any] = {}
        for entity in mapped:
            details |= {
                f"{entity}/{key}": value
                for key, value in quarantine_metadata(connection, landlord_id, entity).items()
            }
        for sink in sinks:
            details |= dead_letter_metadata(connection, landlord_id, sink)
    pushes = _last_pushes(context.instance, landlord_id)
    now = dt.datetime.now(dt.UTC)
    entities = [
        {
            "entity": e.entity,
            "status": e.status,
            "read": e.read,
            "loaded": e.loaded,
            "quarantined": e.quarantined,
            "skipped": e.skipped,
            "contract": e.contract,
            "data_age_hours": "-" if (age := e.age_hours(now)) is None else f"{age:g}",
            "open_quarantine": e.open_quarantine,
            "last_load_run": e.run_id[:8] or "-",
        }
        for e in health.entities
    ]
    sink_rows = [
        {
            "sink": s.sink,
            **{state: s.states.get(state, 0) for state in ("pending", "sent", "failed", "dead")},
            "last_push": pushes.get(s.sink, "-"),
        }
        for s in health.sinks
    ]
    skipped = [entity for entity in ENTITIES if entity not in mapped]
    problems = health.problems + _last_run_failure(context, landlord_id)
    return dg.MaterializeResult(
        metadata={
            **AssetRole("insight").entries(),
            "healthy": dg.MetadataValue.bool(not problems),
            "report": dg.MetadataValue.md(
                _markdown(health, problems, entities, sink_rows, skipped)
            ),
            "entities": rows_table(_texts(entities), ENTITY_COLUMNS),
            "sinks": rows_table(_texts(sink_rows), SINK_COLUMNS),
            "not_configured": ", ".join(skipped) or "-",
            "rows_read": dg.MetadataValue.int(sum(e.read for e in health.entities)),
            "rows_loaded": dg.MetadataValue.int(sum(e.loaded for e in health.entities)),
            "rows_quarantined": dg.MetadataValue.int(sum(e.quarantined for e in health.entities)),
            "open_quarantine": dg.MetadataValue.int(
                sum(e.open_quarantine for e in health.entities)
            ),
            "dead_letters": dg.MetadataValue.int(sum(s.dead for s in health.sinks)),
            **details,
        },
        check_results=[_verdict(problems)],
    )


def _verdict(problems: list[str]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name="healthy",
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(problems)[:1000]
        if problems
        else "every entity loaded, every contract passed, no dead letter",
        metadata={"problems": dg.MetadataValue.json(problems)},
    )


def _texts(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{key: str(value) for key, value in row.items()} for row in rows]


def _markdown(
    health: LandlordHealth,
    problems: list[str],
    entities: list[dict[str, Any]],
    sinks: list[dict[str, Any]],
    skipped: list[str],
) -> str:
    """The report: problems first, then the entities and the sinks as Markdown tables."""
    lines = [f"## {health.landlord_id}: {'UNHEALTHY' if problems else 'healthy'}", ""]
    lines += [f"- **{problem}**" for problem in problems] or ["Nothing to do."]
    lines += ["", "### Entities", "", _table(entities, ENTITY_COLUMNS)]
    if skipped:
        lines += ["", f"Not configured (not part of this landlord's runs): {', '.join(skipped)}."]
    if sinks:
        lines += ["", "### Sinks", "", _table(sinks, SINK_COLUMNS)]
    return "\n".join(lines)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns)
    body = [
        "| " + " | ".join(str(row[c]).replace("|", "/") for c in columns) + " |" for row in rows
    ]
    return "\n".join([head, *body])


def _last_run_failure(context: dg.AssetExecutionContext, landlord_id: str) -> list[str]:
    """The landlord's latest finished run (but health refreshes and this run), as a problem
    when it failed: a pull that could not read its source leaves no load to show."""
    records = context.instance.get_run_records(
        filters=dg.RunsFilter(
            tags={"dagster/partition": landlord_id},
            statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE],
        ),
        limit=20,
    )
    for record in records:
        run = record.dagster_run
        if run.job_name == HEALTH_JOB or run.run_id == context.run.run_id:
            continue
        if run.status != dg.DagsterRunStatus.FAILURE:
            return []
        causes = []
        for entry in context.instance.all_logs(
            run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE
        ):
            data = entry.dagster_event.step_failure_data if entry.dagster_event else None
            if data is None:
                continue
            user = data.user_failure_data
            causes.append(
                user.description
                if user is not None and user.description
                else failure_cause(data.error)
            )
        cause = causes[0].splitlines()[0] if causes else "see the run's event log"
        return [f"last run ({run.job_name}, {run.run_id[:8]}) failed: {cause}"]
    return []


def _last_pushes(instance: dg.DagsterInstance, landlord_id: str) -> dict[str, str]:
    """Sink → its last push's status and counts, from the push assets' latest materializations
    of this landlord."""
    found: dict[str, str] = {}
    for name in OUTGOING:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey(f"push_{name}"), asset_partitions=[landlord_id]
            ),
            limit=1,
        ).records
        if not records or records[0].asset_materialization is None:
            continue
        sinks = records[0].asset_materialization.metadata.get("sinks")
        for sink in getattr(sinks, "value", None) or []:
            found[sink["sink"]] = (
                f"{sink['status']}: sent {sink['sent']}, unchanged {sink['unchanged']},"
                f" failed {sink['failed']}, dead {sink['dead']}"
            )
    return found


health_job = dg.define_asset_job(
    name=HEALTH_JOB,
    selection=[HEALTH_ASSET],
    partitions_def=landlord_partitions,
    description="Refresh one landlord's health from the warehouse (after a run that did not).",
    executor_def=dg.in_process_executor,
)
