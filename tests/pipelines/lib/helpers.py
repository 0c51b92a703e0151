"""Helpers shared by the stage tests: a migrated warehouse, a datafix written from a dict, an
incremental ledger mapping, and one pull → normalise → load."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from pipelines.lib.datafixes import load_datafix
from pipelines.lib.stages import load, normalise, pull
from pipelines.lib.warehouse import Warehouse


def migrated_warehouse(url: str) -> Iterator[Warehouse]:
    """For a fixture (`yield from`): the warehouse at `url`, migrated, disposed afterwards."""
    warehouse = Warehouse(url)
    warehouse.migrate()
    yield warehouse
    warehouse.dispose()


def write_datafix(folder: Path, document: dict[str, Any]) -> Path:
    """`document` as `<folder>/<landlord id>.yaml`."""
    path = folder / f"{document['landlord']['id']}.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


def incremental_ledger(
    source: str, *, entry_ref: str, tenant_ref: str, entry_date: str, kind: Any, amount: str
) -> dict[str, Any]:
    """The `entities:` of a datafix mapping `ledger_entries` from an incremental source."""
    fields = {
        "entry_ref": entry_ref,
        "tenant_ref": tenant_ref,
        "entry_date": entry_date,
        "kind": kind,
        "amount_cents": amount,
    }
    return {"ledger_entries": {"source": source, "mode": "incremental", "fields": fields}}


def run_ledger_once(datafix: Path, warehouse: Warehouse, run_id: str) -> int:
    """One pull → normalise → load of the ledger; returns the rows pulled from the source."""
    loaded = load_datafix(datafix)
    pulled = pull(loaded, "ledger_entries", warehouse=warehouse)
    load(warehouse, loaded, normalise(loaded, pulled), run_id=run_id)
    return pulled.rows
