"""The landlord's health: one partition per landlord, refreshed after every run, read from the
warehouse's own bookkeeping (`pipelines.lib.health`): per entity the latest load's read / loaded
/ quarantined / skipped, the contract verdict, the age of the data and the open quarantine; per
sink the outbox's records by state and the last push's sent / unchanged / failed / dead; the
open insight alerts (arrears and works, judged as their own checks judge them) and a link to the
newest morning report. Its `healthy` check fails when any part of the landlord is not (an alert
counts once it reaches its *error* threshold in the datafix; one at its *warning* threshold is
listed, not failed), so the asset overview shows the landlords in trouble; the Markdown says
which part and why.

It runs at the end of the `nightly` and `pull` jobs (in the insight group, after the loads, the
push and the morning report). A run that ends before it (a failed step, a blocked contract) or
that does not include it (`push`, `requeue`, `replay`) is followed by the `health` job for its
landlord: `datafix` runs it itself, and the `health_after_runs` sensor does for runs launched
from the UI, the schedule or the file sensor.
"""

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg

from connectors.errors import ConnectorError
from pipelines.defs.common import landlord_asset
from pipelines.defs.health.tables import dead_letter_metadata, quarantine_metadata, rows_table
from pipelines.defs.partitions import landlord_partitions
from pipelines.defs.resources import DatafixesResource, WarehouseResource
from pipelines.lib.failures import failure_cause
from pipelines.lib.health import (
    InsightAlert,
    LandlordHealth,
    alert_problems,
    insight_alerts,
    landlord_health,
)
from pipelines.lib.metadata import AssetRole
from pipelines.lib.report import latest_report
from schemas.canonical import ENTITIES
from schemas.outgoing import OUTGOING

HEALTH_ASSET = "landlord_health"
HEALTH_JOB = "health"
ENTITY_COLUMNS = [
    "entity", "status", "read", "loaded", "quarantined", "skipped", "contract", "data_age_hours",
    "open_quarantine", "last_load_run",
]  # fmt: skip
SINK_COLUMNS = ["sink", "pending", "sent", "failed", "dead", "last_push"]
ALERT_COLUMNS = ["alert", "family", "level", "keys", "which"]
# the `summary` Markdown stays below the 1,000 characters the UI shows without a click
SUMMARY_PROBLEMS, SUMMARY_LINE, SUMMARY_MAX = 3, 180, 990
REPORT_ASSET = "insight_morning_report"
CHECK_FAILED = "DagsterAssetCheckFailedError"  # the step failure of a failed blocking check


@landlord_asset(
    AssetRole("insight"),
    name=HEALTH_ASSET,
    deps=[f"warehouse_{entity}" for entity in ENTITIES]
    + [f"push_{name}" for name in OUTGOING]
    + [REPORT_ASSET],
    check_specs=[
        dg.AssetCheckSpec(
            "healthy",
            asset=HEALTH_ASSET,
            partitions_def=landlord_partitions,
            description="Fails when any part of the landlord is unhealthy: a load blocked or"
            " failed, a contract failed, an entity never loaded, a sink with dead letters or"
            " failing records, an insight alert at its error threshold, a failed last run.",
        )
    ],
    description="The landlord at a glance, for the operator's morning: per entity the latest"
    " load's counts, its contract verdict and the age of its data; per sink the outbox by state"
    " and the last push; the open quarantine and the dead letters with their reasons; the open"
    " arrears and works alerts; a link to the newest morning report.",
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
        alerts = insight_alerts(connection, loaded)
    # read only for the sinks shown: a landlord without any pushes nothing (three event-log
    # queries saved on each of its runs)
    pushes = _last_pushes(context.instance, landlord_id) if health.sinks else {}
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
    problems = health.problems + alert_problems(alerts) + _last_run_failure(context, landlord_id)
    open_alerts = [alert for judged in alerts.values() for alert in judged or [] if alert.open]
    report = latest_report(landlord_id)
    return dg.MaterializeResult(
        metadata={
            **AssetRole("insight").entries(),
            "healthy": dg.MetadataValue.bool(not problems),
            "summary": dg.MetadataValue.md(_summary(landlord_id, problems, report)),
            "report": dg.MetadataValue.md(
                _markdown(health, problems, entities, sink_rows, skipped, alerts, report)
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
            "open_alerts": dg.MetadataValue.int(len(open_alerts)),
            "alerts": rows_table(_alert_rows(open_alerts), ALERT_COLUMNS),
            **_report_links(report),
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


def _alert_rows(alerts: list[InsightAlert]) -> list[dict[str, str]]:
    return [
        {
            "alert": alert.name,
            "family": alert.family,
            "level": alert.level,
            "keys": str(len(alert.keys)),
            "which": alert.which(),
        }
        for alert in alerts
    ]


def _report_links(report: Path | None) -> dict[str, dg.MetadataValue]:
    """The newest morning report as a path and a `file://` link (nothing when none exists)."""
    if report is None:
        return {"morning_report": dg.MetadataValue.text("none written yet")}
    return {
        "morning_report": dg.MetadataValue.path(str(report)),
        "morning_report_url": dg.MetadataValue.url(report.as_uri()),
    }


def _texts(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{key: str(value) for key, value in row.items()} for row in rows]


def _summary(landlord_id: str, problems: list[str], report: Path | None) -> str:
    """The verdict, the first problems and the report's link, short enough for the UI to show
    it in place (it folds a Markdown entry of 1,000 characters or more behind a button)."""
    lines = [f"**{landlord_id}: {'UNHEALTHY' if problems else 'healthy'}**", ""]
    lines += [f"- {problem[:SUMMARY_LINE]}" for problem in problems[:SUMMARY_PROBLEMS]]
    if len(problems) > SUMMARY_PROBLEMS:
        lines.append(f"- … and {len(problems) - SUMMARY_PROBLEMS} more (see `report`)")
    if report is not None:
        lines += ["", f"Morning report: [{report.stem}]({report.as_uri()})"]
    return "\n".join(lines)[:SUMMARY_MAX]


def _markdown(
    health: LandlordHealth,
    problems: list[str],
    entities: list[dict[str, Any]],
    sinks: list[dict[str, Any]],
    skipped: list[str],
    alerts: dict[str, list[InsightAlert] | None],
    report: Path | None,
) -> str:
    """The report: problems first, then the morning report's link, the open alerts, the
    entities and the sinks as Markdown tables."""
    lines = [f"## {health.landlord_id}: {'UNHEALTHY' if problems else 'healthy'}", ""]
    lines += [f"- **{problem}**" for problem in problems] or ["Nothing to do."]
    if report is not None:
        lines += ["", f"Morning report: [{report.stem}]({report.as_uri()}) (`{report}`)"]
    else:
        lines += ["", "Morning report: none written yet."]
    lines += ["", "### Open alerts", ""]
    for family, judged in alerts.items():
        if judged is None:
            lines.append(f"- {family}: not computed yet")
            continue
        opened = [alert for alert in judged if alert.open]
        lines += [f"- {family} alert {alert.line()}" for alert in opened]
        if not opened:
            lines.append(f"- {family}: none open")
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
            if user is not None and user.description:
                causes.append(user.description)
            elif data.error is not None and data.error.cls_name == CHECK_FAILED:
                causes += _blocking_checks_failed(context.instance, run.run_id)
            else:
                causes.append(failure_cause(data.error))
        cause = causes[0].splitlines()[0] if causes else "see the run's event log"
        return [f"last run ({run.job_name}, {run.run_id[:8]}) failed: {cause}"]
    return []


def _blocking_checks_failed(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The run's failed blocking checks, in the hub's words (Dagster's own error for them,
    `DagsterAssetCheckFailedError`, names neither the entity nor the reason): `the tenants
    contract failed, its load was held: <the check's description>`."""
    found = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        event = entry.dagster_event
        evaluation = event.asset_check_evaluation_data if event is not None else None
        if evaluation is None or evaluation.passed or not evaluation.blocking:
            continue
        asset = evaluation.asset_key.to_user_string()
        what = next((e for e in ENTITIES if asset == f"canonical_{e}"), asset)
        why = (evaluation.description or "no description").splitlines()[0]
        found.append(f"the {what} {evaluation.check_name} failed, its load was held: {why}")
    return found or ["a blocking check failed (see the run's checks)"]


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
    # by key, not by a selection string: a string is parsed by Dagster's ANTLR grammar, imported
    # for it (some 0.03 s of every process that loads the definitions)
    selection=dg.AssetSelection.assets(HEALTH_ASSET),
    partitions_def=landlord_partitions,
    description="Refresh one landlord's health from the warehouse (after a run that did not).",
    executor_def=dg.in_process_executor,
)
