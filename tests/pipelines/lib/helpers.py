"""Helpers shared by the stage tests: a migrated warehouse, a datafix written from a dict, a
datafix reading the ledger incrementally from one source, and one pull → normalise → load."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from pipelines.lib.datafixes import load_datafix
from pipelines.lib.quality import ContractResult
from pipelines.lib.stages import (
    NormalisedEntity,
    check_contract,
    load,
    normalise,
    pull,
    record_refused,
)
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


def ecritures_datafix(folder: Path, inbox: Path, landlord: tuple[str, str], **mapping: Any) -> Path:
    """A datafix reading the ledger from `ecritures.csv` (`Pièce;Compte;Date;Code;Montant`, LOY
    rent calls and REG payments) in `inbox`; `mapping` adds entity keys (rules, limits …)."""
    landlord_id, name = landlord
    return write_datafix(
        folder,
        {
            "landlord": {"id": landlord_id, "name": name},
            "inbox": str(inbox),
            "sources": {"ecritures": {"kind": "csv", "path": "ecritures.csv"}},
            "entities": {
                "ledger_entries": {
                    "source": "ecritures",
                    **mapping,
                    "fields": {
                        "entry_ref": "Pièce",
                        "tenant_ref": "Compte",
                        "entry_date": {"from": "Date", "formats": ["dd/mm/yyyy"]},
                        "kind": {"from": "Code", "map": {"LOY": "rent_call", "REG": "payment"}},
                        "amount_cents": "Montant",
                    },
                }
            },
        },
    )


def ledger_night(
    path: Path,
    warehouse: Warehouse,
    run_id: str,
    *,
    chunk: int | None = None,
    stage: bool | None = None,
) -> tuple[NormalisedEntity, ContractResult, Any]:
    """What the nightly job does for the ledger of the datafix at `path`: normalise (`chunk`
    rows at a time; the rows staged by a helper process on SQLite, as the job does, unless
    `stage` says otherwise), the contract, then the load when the contract passes or the
    blocked load's trace when it fails."""
    loaded = load_datafix(path)
    pulled = pull(loaded, "ledger_entries", warehouse=warehouse)
    if stage is None:
        stage = warehouse.dialect == "sqlite"
    normalised = normalise(loaded, pulled, chunk=chunk, stage=stage)
    contract = check_contract(loaded, normalised)
    if contract.passed:
        result = load(warehouse, loaded, normalised, run_id=run_id)
    else:
        result = record_refused(
            warehouse, loaded, normalised, run_id=run_id, status="blocked",
            reason=contract.summary(),
        )  # fmt: skip
    return normalised, contract, result


ECRITURES_RENT = {"from": "code", "map": {"LOY": "rent"}}


def incremental_ledger_datafix(
    folder: Path,
    landlord: tuple[str, str],
    source: dict[str, Any],
    *,
    entry_ref: str = "id",
    tenant_ref: str = "compte",
    entry_date: str = "date_ecriture",
    kind: Any = ECRITURES_RENT,
    amount: str = "montant",
    rules: dict[str, str] | None = None,
) -> Path:
    """A datafix (landlord id, name) mapping `ledger_entries` incrementally from its one source
    `erp` (`source`'s settings), written in `folder`. The columns default to those of the
    `ecritures` table of the SQL tests (`id, compte, date_ecriture, code, montant`, `LOY` rent)."""
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


def ledger_rows(warehouse: Warehouse, where: str = "true") -> int:
    """How many ledger rows the warehouse holds (those the SQL condition `where` keeps)."""
    with warehouse.engine.connect() as conn:
        query = f"SELECT count(*) FROM ledger_entries WHERE {where}"
        return conn.execute(sa.text(query)).scalar_one()


def run_ledger_once(datafix: Path, warehouse: Warehouse, run_id: str) -> int:
    """One pull → normalise → load of the ledger; returns the rows pulled from the source."""
    loaded = load_datafix(datafix)
    pulled = pull(loaded, "ledger_entries", warehouse=warehouse)
    load(warehouse, loaded, normalise(loaded, pulled), run_id=run_id)
    return pulled.rows
