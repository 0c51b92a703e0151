"""Runs the nightly Dagster job in-process for the command line, and reads back what happened.

`datafix run` goes through the very job the schedule launches, on the same Dagster instance as
the UI (`$DATAFIX_HOME/dagster`), so every command-line run is visible in the UI afterwards.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import sqlalchemy as sa

from connectors.errors import ConnectorError
from pipelines.lib.datafixes import load_landlord
from pipelines.lib.failures import failure_cause
from pipelines.lib.instance import ensure_instance, process_tags
from pipelines.lib.metadata import RUN_TAG_FULL_REFRESH, AssetRole
from pipelines.lib.runlock import LandlordBusyError, landlord_locks
from schemas.canonical import ENTITIES
from schemas.tables import quarantine


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
    pending: int = 0
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


def run_landlords(
    landlords: list[str],
    *,
    full_refresh: bool = False,
    log_level: str = "CRITICAL",
    job_name: str = "nightly",
) -> list[LandlordOutcome]:
    """Run a job (`nightly`; `pull` without the push; `push` alone) for each landlord in turn;
    one failure never stops the others."""
    instance = ensure_instance()
    from pipelines.definitions import defs  # imported late: loading defs reads datafixes/
    from pipelines.defs.resources import WarehouseResource

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
        # the landlord's lock is taken before the Dagster run starts (a run that cannot have it
        # is not started), for the run id the run will have: its `run_lock` resource finds it held
        run_id = str(uuid.uuid4())
        try:
            with landlord_locks(
                WarehouseResource().get_client(), [landlord], run_id, notice=_notice
            ):
                result = job.execute_in_process(
                    partition_key=landlord,
                    instance=instance,
                    raise_on_error=False,
                    run_id=run_id,
                    tags={
                        RUN_TAG_FULL_REFRESH: str(full_refresh).lower(),
                        "datafix/launched_by": "cli",
                        **process_tags(),
                    },
                    run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
                )
        except (LandlordBusyError, ConnectorError) as error:
            outcome.errors.append(str(error))
            continue
        outcome.run_id = result.run_id
        outcome.success = result.success
        _read_result(result, outcome)
    return outcomes


def _notice(text: str) -> None:
    """A line for the person at the terminal while a run waits (stdout holds the report)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


# the stages whose assets carry one canonical entity each (derive, push and insight do not)
ENTITY_STAGES = ("pull", "normalise", "load")


def _read_result(result: dg.ExecuteInProcessResult, outcome: LandlordOutcome) -> None:
    """Fill the outcome from the run's events, by the role (`datafix/stage`, `datafix/entity`,
    `datafix/sends`) each asset records in its metadata and definition tags."""
    entities = {name: EntityOutcome(name) for name in ENTITIES}
    _read_materializations(result, outcome, entities)
    _read_contracts(result, entities)
    _read_failures(result, outcome, entities)
    outcome.entities = {k: v for k, v in entities.items() if v.status != "not_configured"}


def _read_materializations(
    result: dg.ExecuteInProcessResult,
    outcome: LandlordOutcome,
    entities: dict[str, EntityOutcome],
) -> None:
    """Counts per entity from pull, normalise and load; per sink from push."""
    for event in result.get_asset_materialization_events():
        metadata = _plain_metadata(event.materialization.metadata)
        role = AssetRole.read(metadata)
        if role is None:
            continue
        if role.stage == "push":
            outcome.pushes.extend(_sink_reports(role.sends, metadata))
            continue
        target = entities.get(role.entity)
        if target is None or role.stage not in ENTITY_STAGES:
            continue
        if role.stage == "pull":
            target.status = str(metadata.get("status", target.status))
        elif role.stage == "load":
            target.status = str(metadata.get("status", target.status))
            target.read = int(metadata.get("rows_read", 0))
            target.loaded = int(metadata.get("rows_loaded", 0))
            target.quarantined = int(metadata.get("rows_quarantined", 0))
            target.skipped = int(metadata.get("rows_skipped", 0))
        elif "rows_read" in metadata:  # normalise
            target.read = int(metadata["rows_read"])
            target.quarantined = int(metadata.get("rows_quarantined", 0))
            target.skipped = int(metadata.get("rows_skipped", 0))


def _read_contracts(result: dg.ExecuteInProcessResult, entities: dict[str, EntityOutcome]) -> None:
    """The contract verdict per entity; a failed one blocked the entity's load."""
    for evaluation in result.get_asset_check_evaluations():
        metadata = _plain_metadata(evaluation.metadata)
        role = AssetRole.read(metadata)
        if role is None or role.entity not in entities:
            continue
        if "status" in metadata:
            continue  # nothing was checked (source unchanged or not configured)
        target = entities[role.entity]
        target.contract = "passed" if evaluation.passed else "FAILED"
        target.failing_keys = list(metadata.get("failing_keys") or [])
        target.contract_summary = evaluation.description or ""
        if not evaluation.passed:
            target.status = "blocked"
            target.loaded = 0


def _read_failures(
    result: dg.ExecuteInProcessResult,
    outcome: LandlordOutcome,
    entities: dict[str, EntityOutcome],
) -> None:
    """Failed steps, mapped to their asset's role through the job's asset graph: an entity's
    stage marks the entity failed, a push reports its sinks, anything else is a run error."""
    for event in result.get_step_failure_events():
        assets_def = result.job_def.asset_layer.get_assets_def_for_node(event.node_handle)
        if assets_def is not None and not assets_def.keys:
            continue  # checks only: a failed blocking contract is reported with its entity
        role = _defined_role(assets_def)
        message = ""
        data = event.step_failure_data
        if data is not None:
            failure = data.user_failure_data
            if failure is not None and failure.description:
                message = failure.description
                if role is not None and role.stage == "push":
                    metadata = _plain_metadata(failure.metadata)
                    outcome.pushes.extend(_sink_reports(role.sends, metadata))
                    continue
            elif data.error is not None:
                message = failure_cause(data.error)
        if role is not None and role.stage in ENTITY_STAGES and role.entity in entities:
            target = entities[role.entity]
            target.status = "failed"
            target.error = target.error or message
        else:
            outcome.errors.append(f"{event.step_key}: {message}")


def _defined_role(assets_def: dg.AssetsDefinition | None) -> AssetRole | None:
    """The role an asset's definition declares in its tags."""
    if assets_def is None:
        return None
    return next((AssetRole.read(spec.tags) for spec in assets_def.specs), None)


def _plain_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {key: getattr(value, "value", value) for key, value in metadata.items()}


def _sink_reports(sends: str, metadata: dict[str, Any]) -> list[SinkReport]:
    fields = set(SinkReport.__dataclass_fields__)
    return [
        SinkReport(sends=sends, **{k: v for k, v in sink.items() if k in fields and k != "sends"})
        for sink in metadata.get("sinks") or []
    ]


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
