"""Helpers shared by the stage tests: a migrated warehouse, a datafix written from a dict, a
datafix reading the ledger incrementally from one source, and one pull → normalise → load."""

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


def incremental_ledger_datafix(
    folder: Path,
    landlord: tuple[str, str],
    source: dict[str, Any],
    *,
    entry_ref: str,
    tenant_ref: str,
    entry_date: str,
    kind: Any,
    amount: str,
    rules: dict[str, str] | None = None,
) -> Path:
    """A datafix (landlord id, name) mapping `ledger_entries` incrementally from its one source
    `erp` (`source`'s settings), written in `folder`."""
    fields = {
        "entry_ref": entry_ref,
        "tenant_ref": tenant_ref,
        "entry_date": entry_date,
        "kind": kind,
        "amount_cents": amount,
    }
    ledger: dict[str, Any] = {"source": "erp", "mode": "incremental", "fields": fields}
    if rules:
        ledger["rules"] = rules
    landlord_id, name = landlord
    document = {
        "landlord": {"id": landlord_id, "name": name},
        "sources": {"erp": source},
        "entities": {"ledger_entries": ledger},
    }
    return write_datafix(folder, document)


def run_ledger_once(datafix: Path, warehouse: Warehouse, run_id: str) -> int:
    """One pull → normalise → load of the ledger; returns the rows pulled from the source."""
    loaded = load_datafix(datafix)
    pulled = pull(loaded, "ledger_entries", warehouse=warehouse)
    load(warehouse, loaded, normalise(loaded, pulled), run_id=run_id)
    return pulled.rows
