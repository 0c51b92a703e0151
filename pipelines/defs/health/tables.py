"""What the operators' console shows beside each stage's own figures: the last real load of an
entity its run skipped, the open quarantine of an entity and the dead letters of a sink, as
Dagster metadata (Markdown, tables, run links). The reads are `pipelines.lib.health`'s."""

from __future__ import annotations

from typing import Any

import dagster as dg
import sqlalchemy as sa

from pipelines.lib.health import (
    contract_verdict,
    dead_letter_reasons,
    dead_letter_sample,
    last_data_load,
    quarantine_reasons,
    quarantine_sample,
)
from pipelines.lib.warehouse import Warehouse


def skipped_metadata(warehouse: Warehouse, landlord_id: str, entity: str, status: str) -> dict:
    """An entity the run did not read: `not_configured` says so; `unchanged` keeps the counts of
    the load that wrote what the warehouse holds and the last contract verdict, and says since
    when (`summary`: *skipped, unchanged since <run>*)."""
    if status == "not_configured":
        return {"summary": f"not configured: the landlord's datafix maps no {entity}"}
    with warehouse.engine.connect() as connection:
        last = last_data_load(connection, landlord_id, entity)
        verdict = contract_verdict(connection, landlord_id, entity)
    if last is None:
        return {"summary": f"skipped: {status}, never loaded"}
    when = last.finished_at.strftime("%Y-%m-%d %H:%M")
    metadata: dict[str, Any] = {
        "summary": f"skipped, unchanged since run {last.run_id[:8]} ({when} UTC)",
        "unchanged_since_run": dg.MetadataValue.dagster_run(last.run_id),
        "last_load/rows_read": dg.MetadataValue.int(last.read),
        "last_load/rows_loaded": dg.MetadataValue.int(last.loaded),
        "last_load/rows_quarantined": dg.MetadataValue.int(last.quarantined),
        "last_load/rows_skipped": dg.MetadataValue.int(last.skipped),
    }
    if verdict is not None:
        metadata["last_contract"] = (
            "passed" if verdict.passed else f"FAILED: {verdict.summary}"
        ) + f" (run {verdict.run_id[:8]})"
    return metadata


def quarantine_metadata(
    connection: sa.Connection, landlord_id: str, entity: str, limit: int = 5
) -> dict[str, Any]:
    """The entity's open quarantine: reasons with their counts, most first, and its first rows
    (sealed cells masked); what to fix before launching the `requeue` job."""
    reasons = quarantine_reasons(connection, landlord_id, entity).get(entity, [])
    rows = quarantine_sample(connection, landlord_id, entity, limit) if reasons else []
    return {
        "quarantine_open": dg.MetadataValue.int(sum(count for _, count in reasons)),
        "quarantine_reasons": reason_table(reasons, "rows"),
        "quarantine_rows": rows_table(rows, ["source", "row", "reason", "message", "raw"]),
    }


def dead_letter_metadata(
    connection: sa.Connection, landlord_id: str, sink: str, limit: int = 5
) -> dict[str, Any]:
    """One sink's dead letters: the peer's messages with their counts and the first letters;
    what to fix before launching the `replay` job."""
    reasons = dead_letter_reasons(connection, landlord_id, sink).get(sink, [])
    rows = dead_letter_sample(connection, landlord_id, sink, limit) if reasons else []
    columns = ["record", "entity", "attempts", "message", "source_rows"]
    return {
        f"{sink}/dead_letters": reason_table(reasons, "letters"),
        f"{sink}/dead_letter_rows": rows_table(rows, columns),
    }


def reason_table(reasons: list[tuple[str, int]], counted: str) -> dg.TableMetadataValue:
    """(reason, count) pairs as a table."""
    schema = dg.TableSchema(
        columns=[dg.TableColumn("reason", "string"), dg.TableColumn(counted, "int")]
    )
    records = [dg.TableRecord({"reason": reason, counted: count}) for reason, count in reasons]
    return dg.MetadataValue.table(records, schema)


def rows_table(rows: list[dict[str, str]], columns: list[str]) -> dg.TableMetadataValue:
    """Rows of text as a table."""
    schema = dg.TableSchema(columns=[dg.TableColumn(name, "string") for name in columns])
    records = [dg.TableRecord({name: str(row.get(name, "")) for name in columns}) for row in rows]
    return dg.MetadataValue.table(records, schema)
