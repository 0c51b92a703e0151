"""Runs the nightly Dagster job in-process for the command line, and reads back what happened.

`datafix run` goes through the very job the schedule launches, on the same Dagster instance as
the UI (`$DATAFIX_HOME/dagster`), so every command-line run is visible in the UI afterwards.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import sqlalchemy as sa

from connectors.errors import ConnectorError
from pipelines.lib.datafixes import load_landlord
from pipelines.lib.environment import dagster_home
from pipelines.lib.metadata import RUN_TAG_FULL_REFRESH
from schemas.canonical import ENTITIES
from schemas.tables import quarantine

INSTANCE_CONFIG = """\
# written by the hub: the Dagster instance used by `datafix run` and `make ui`
telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 2
    tag_concurrency_limits:
      # one run at a time per landlord: the schedule and the inbox sensor may overlap
      - key: dagster/partition
        value:
          applyLimitPerUniqueValue: true
        limit: 1
"""


@dataclass
class EntityOutcome:
    """What one run did to one entity of one landlord."""

    entity: str
    status: str = "-"
    read: int = 0
    loaded: int = 0
    quarantined: int = 0
    skipped: int = 0
    contract: str = "-"
    contract_summary: str = ""
    failing_keys: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class SinkReport:
    """What one run pushed to one sink of one landlord (from the push asset's metadata)."""

    sink: str
    kind: str
    sends: str
    status: str
    queued: int = 0
    sent: int = 0
    unchanged: int = 0
    recovered: int = 0
    failed: int = 0
    dead: int = 0
    dead_waiting: int = 0
    calls: int = 0
    error: str = ""


@dataclass
class LandlordOutcome:
    """What one run did for one landlord."""

    landlord_id: str
    run_id: str = ""
    success: bool = False
    errors: list[str] = field(default_factory=list)
    entities: dict[str, EntityOutcome] = field(default_factory=dict)
    pushes: list[SinkReport] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        """read = loaded + quarantined for every loaded entity."""
        return all(
            e.read == e.loaded + e.quarantined
            for e in self.entities.values()
            if e.status == "loaded"
        )


def ensure_instance() -> dg.DagsterInstance:
    """The hub's Dagster instance, created under `$DATAFIX_HOME/dagster` on first use."""
    home = dagster_home()
    os.environ["DAGSTER_HOME"] = str(home)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(INSTANCE_CONFIG, encoding="utf-8")
    return dg.DagsterInstance.get()


def run_landlords(
    landlords: list[str],
    *,
    full_refresh: bool = False,
    log_level: str = "CRITICAL",
    job_name: str = "nightly",
) -> list[LandlordOutcome]:
    """Run a job (`nightly`, or `push` alone) for each landlord in turn; one failure never
    stops the others."""
    instance = ensure_instance()
    from pipelines.definitions import defs  # imported late: loading defs reads datafixes/

    definitions = defs()
    job = definitions.resolve_job_def(job_name)
    known = set(job.partitions_def.get_partition_keys()) if job.partitions_def else set()
    outcomes = []
    for landlord in landlords:
        outcome = LandlordOutcome(landlord)
        outcomes.append(outcome)
        if landlord not in known:
            outcome.errors.append(
                f"`{landlord}` is not a landlord of this hub (known: {', '.join(sorted(known))})"
            )
            continue
        try:
            load_landlord(landlord)
        except ConnectorError as error:
            outcome.errors.append(f"datafix refused, nothing was run:\n{error}")
            continue
        result = job.execute_in_process(
            partition_key=landlord,
            instance=instance,
            raise_on_error=False,
            tags={RUN_TAG_FULL_REFRESH: str(full_refresh).lower(), "datafix/launched_by": "cli"},
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        )
        outcome.run_id = result.run_id
        outcome.success = result.success
        _read_result(result, outcome)
    return outcomes


def _read_result(result: dg.ExecuteInProcessResult, outcome: LandlordOutcome) -> None:
    entities = {name: EntityOutcome(name) for name in ENTITIES}
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        name = materialization.asset_key.path[-1]
        stage, _, entity = name.partition("_")
        metadata = {k: _plain(v) for k, v in materialization.metadata.items()}
        if stage == "push":
            outcome.pushes.extend(_sink_reports(entity, metadata))
            continue
        if entity not in entities or stage == "outgoing":
            continue
        target = entities[entity]
        if stage == "raw":
            target.status = str(metadata.get("status", target.status))
        elif stage == "warehouse":
            target.status = str(metadata.get("status", target.status))
            target.read = int(metadata.get("rows_read", 0))
            target.loaded = int(metadata.get("rows_loaded", 0))
            target.quarantined = int(metadata.get("rows_quarantined", 0))
            target.skipped = int(metadata.get("rows_skipped", 0))
        elif stage == "canonical" and "rows_read" in metadata:
            target.read = int(metadata["rows_read"])
            target.quarantined = int(metadata.get("rows_quarantined", 0))
            target.skipped = int(metadata.get("rows_skipped", 0))
    for evaluation in result.get_asset_check_evaluations():
        entity = evaluation.asset_key.path[-1].removeprefix("canonical_")
        if entity in entities:
            metadata = {k: _plain(v.value) for k, v in evaluation.metadata.items()}
            if "status" in metadata:
                continue  # nothing was checked (source unchanged or not configured)
            entities[entity].contract = "passed" if evaluation.passed else "FAILED"
            entities[entity].failing_keys = list(metadata.get("failing_keys") or [])
            entities[entity].contract_summary = evaluation.description or ""
            if not evaluation.passed:
                entities[entity].status = "blocked"
                entities[entity].loaded = 0
    for event in result.get_step_failure_events():
        step = event.step_key or ""
        if step.endswith("_contract"):
            continue  # a failed blocking contract is reported with its entity
        stage, _, entity = step.partition("_")
        data = event.step_failure_data
        message = ""
        if data is not None:
            if data.user_failure_data is not None and data.user_failure_data.description:
                message = data.user_failure_data.description
                if stage == "push":
                    failure_metadata = {
                        k: _plain(v) for k, v in data.user_failure_data.metadata.items()
                    }
                    outcome.pushes.extend(_sink_reports(entity, failure_metadata))
                    continue
            elif data.error is not None:
                message = data.error.message.strip()
        if entity in entities and stage not in ("push", "outgoing"):
            entities[entity].status = "failed"
            entities[entity].error = entities[entity].error or message
        else:
            outcome.errors.append(f"{step}: {message}")
    outcome.entities = {k: v for k, v in entities.items() if v.status != "not_configured"}


def _sink_reports(sends: str, metadata: dict[str, Any]) -> list[SinkReport]:
    fields = set(SinkReport.__dataclass_fields__)
    return [
        SinkReport(sends=sends, **{k: v for k, v in sink.items() if k in fields and k != "sends"})
        for sink in metadata.get("sinks") or []
    ]


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)


def quarantine_sample(
    url: str, landlord_id: str, run_id: str, limit: int = 3
) -> list[tuple[str, str, str, str]]:
    """A few rows this run quarantined: (entity, source_row, reason, message)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    quarantine.c.entity,
                    quarantine.c.source_row,
                    quarantine.c.reason,
                    quarantine.c.message,
                )
                .where(quarantine.c.landlord_id == landlord_id, quarantine.c.run_id == run_id)
                .order_by(quarantine.c.entity, quarantine.c.id)
                .limit(limit)
            ).all()
    except sa.exc.OperationalError:
        return []
    finally:
        engine.dispose()
    return [tuple(row) for row in rows]
