"""Helpers for push tests: a landlord whose works data comes from CSV files, loaded for real.

`write_works(folder, ...)` writes orders, quotes, completions and invoices as a contractor's
export would; `write_datafix(folder, landlord, sinks)` declares them plus a `push:` section;
`load_all` runs pull → normalise → load for every entity so the push reads a real warehouse.
"""

from __future__ import annotations

import csv
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from pipelines.lib.datafixes import LoadedDatafix, load_datafix
from pipelines.lib.stages import load, normalise, pull
from pipelines.lib.warehouse import Warehouse
from schemas.datafix import env_references

ENTITY_FIELDS: dict[str, dict[str, Any]] = {
    "work_orders": {
        "order_ref": "bt",
        "contractor": "entreprise",
        "dwelling_ref": "logement",
        "category": {"from": "nature", "map": {"DEP": "repair", "FUI": "leak_search"}},
        "committed_cents": "montant",
        "status": {
            "from": "statut",
            "map": {"REC": "received", "PLA": "scheduled", "FIN": "done", "ANN": "cancelled"},
        },
        "ordered_date": "date_commande",
        "done_date": "date_fin",
    },
    "quotes": {
        "quote_ref": "devis",
        "order_ref": "bt",
        "additional_works": {"from": "complementaire", "map": {"O": True, "N": False}},
        "amount_cents": "montant",
        "status": {"from": "statut", "map": {"ACC": "accepted", "REF": "refused", "ENV": "sent"}},
        "accepted_date": "date_acceptation",
    },
    "completions": {
        "completion_ref": "rapport",
        "order_ref": "bt",
        "completed_at": {"from": "fin", "formats": ["%d/%m/%Y %H:%M"]},
        "technician": "technicien",
        "tenant_absent": {"from": "absent", "map": {"O": True, "N": False}},
        "rating": "note",
    },
    "invoices": {
        "invoice_ref": "facture",
        "order_ref": "bt",
        "kind": {"from": "type", "map": {"FAC": "final", "PRO": "proforma"}},
        "amount_cents": "ht",
        "vat_cents": "tva",
        "issued_date": "date",
        "status": {"from": "statut", "map": {"EMI": "issued", "BRO": "draft"}},
    },
}

# the local Salesforce peer's object (connectors/sandbox/salesforce/) and its upsert key
SF_OBJECT = "WorkOrder"
SF_EXTERNAL_ID = "Hub_External_Id__c"
# commitments → the local ERP's SubmitCommitments (connectors/sandbox/soap_erp.py), read back
# by GetCommitments, as the end-to-end tests and the push bench declare them (each adds `wsdl`)
ERP_COMMITMENT_FIELDS: dict[str, Any] = {
    "Contractor": "contractor",
    "BudgetLine": {"value": "GE-2026-61521"},
    "AmountExclTaxCents": "amount_cents",
    "AmountInclTax": {"from": "amount_cents", "as": "euros"},
    "OrderedOn": "ordered_date",
    "Label": {"value": "Engagement travaux"},
}
ERP_COMMITMENT_SINK: dict[str, Any] = {
    "kind": "soap",
    "sends": "commitments",
    "operation": "SubmitCommitments",
    "read_back": {"operation": "GetCommitments"},
    "fields": ERP_COMMITMENT_FIELDS,
}
# commitments → the works-order ERP's EnregistrerEngagement(engagement {numeroBon, fournisseur
# {siret, nom}, dateEngagement, montant {valeur, devise}, lignes {ligne {libelle, quantite,
# prixUnitaire}}}) on node-soap (connectors/sandbox/erp_node/), one call per record, as
# `tests/test_push_travaux.py` and the push bench declare it (each adds its `wsdl`)
TRAVAUX_COMMITMENT_FIELDS: dict[str, Any] = {
    "engagement.numeroBon": "order_ref",
    "engagement.fournisseur.siret": {"value": "41234567800019"},
    "engagement.fournisseur.nom": "contractor",
    "engagement.dateEngagement": "ordered_date",
    "engagement.montant.valeur": {"from": "amount_cents", "as": "euros"},
    "engagement.montant.devise": {"value": "EUR"},
    "engagement.lignes.ligne.libelle": {"value": "Engagement travaux"},
    "engagement.lignes.ligne.quantite": {"value": "1"},
    "engagement.lignes.ligne.prixUnitaire": {"from": "amount_cents", "as": "euros"},
}
TRAVAUX_COMMITMENT_SINK: dict[str, Any] = {
    "kind": "soap",
    "sends": "commitments",
    "operation": "EnregistrerEngagement",
    "mode": "per_record",
    "natural_key": "engagement.numeroBon",
    "results": {
        "status": "statut",
        "id": "reference",
        "message": "message",
        "statuses": {"CREE": "sent", "MIS_A_JOUR": "sent", "INCHANGE": "sent"},
    },
    "read_back": {
        "operation": "LireEngagement",
        "argument": "numeroBon",
        "not_found": {"fault": "Client.Introuvable"},
        "id": "reference",
    },
    "fields": TRAVAUX_COMMITMENT_FIELDS,
}


def run_sql(url: str, *statements: str) -> None:
    """Run `statements` on the database at the SQLAlchemy `url`, in one transaction."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.exec_driver_sql(statement)
    finally:
        engine.dispose()


def _write(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=";")
        writer.writerow(header)
        writer.writerows(rows)


def write_works(
    folder: Path,
    *,
    orders: int = 20,
    invoices: int | None = None,
    amount_overrides: Mapping[int, str] | None = None,
    invoice_statuses: Mapping[int, str] | None = None,
    done_before_ordered: Collection[int] = (),
) -> None:
    """Works data of `orders` orders (BT000001 …); invoice i bills order i (default: one each).

    `amount_overrides` sets invoice i's amount text (e.g. to change 10 records between runs);
    orders in `done_before_ordered` are done before they were ordered: the work_orders contract
    (`done_after_ordered`) fails on them.
    """
    folder.mkdir(parents=True, exist_ok=True)
    invoices = orders if invoices is None else invoices
    amount_overrides = amount_overrides or {}
    invoice_statuses = invoice_statuses or {}
    _write(
        folder / "bt.csv",
        ["bt", "entreprise", "logement", "nature", "montant", "statut", "date_commande",
         "date_fin"],
        [
            [f"BT{i:06d}", "Plomberie Martin", f"LOG-{i % 300:04d}", "DEP" if i % 3 else "FUI",
             f"{100 + i % 400},50", ["REC", "PLA", "FIN", "ANN"][i % 4], "03/01/2026",
             "01/01/2026" if i in done_before_ordered else ""]
            for i in range(1, orders + 1)
        ],
    )  # fmt: skip
    _write(
        folder / "devis.csv",
        ["devis", "bt", "complementaire", "montant", "statut", "date_acceptation"],
        [
            [f"DV{i:06d}", f"BT{i:06d}", "O", "250,00", "ACC" if i % 2 else "ENV", "10/01/2026"]
            for i in range(1, orders + 1)
            if i % 5 == 0
        ],
    )
    _write(
        folder / "rapports.csv",
        ["rapport", "bt", "fin", "technicien", "absent", "note"],
        [
            [
                f"RI{i:06d}",
                f"BT{i:06d}",
                "15/01/2026 14:30",
                "Léa",
                "N" if i % 7 else "O",
                1 + i % 5,
            ]
            for i in range(1, orders + 1)
            if i % 4 == 2
        ],
    )
    _write(
        folder / "factures.csv",
        ["facture", "bt", "type", "ht", "tva", "date", "statut"],
        [
            [f"FA{i:06d}", f"BT{(i - 1) % orders + 1:06d}", "FAC" if i % 10 else "PRO",
             amount_overrides.get(i, f"{200 + i % 700},25"), "20,00", "20/01/2026",
             invoice_statuses.get(i, "EMI")]
            for i in range(1, invoices + 1)
        ],
    )  # fmt: skip


def change_order_amounts(data: Path, orders: Iterable[int]) -> None:
    """Rewrite the works orders' file `write_works` wrote under `data` with another committed
    amount (9999,99) for each order in `orders`."""
    path = data / "bt.csv"
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter=";"))
    for number in orders:
        rows[number][4] = "9999,99"  # row 0 is the header: row i is order i
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, delimiter=";").writerows(rows)


def write_datafix(folder: Path, landlord: str, sinks: Mapping[str, Any], **push: Any) -> Path:
    """A datafix reading `write_works` files from `folder/data` and pushing to `sinks`."""
    data = folder / "data"
    files = {
        "work_orders": "bt",
        "quotes": "devis",
        "completions": "rapports",
        "invoices": "factures",
    }
    document = {
        "landlord": {"id": landlord, "name": landlord.title()},
        "inbox": str(data),
        "sources": {
            name: {"kind": "csv", "path": f"{name}.csv", "encoding": "utf-8"}
            for name in files.values()
        },
        "entities": {
            entity: {"source": files[entity], "fields": fields}
            for entity, fields in ENTITY_FIELDS.items()
        },
        "push": {"sinks": dict(sinks), **push},
    }
    # the variables the sinks name (`${SF_SESSION_ID}` …), declared as an operator would
    declared = sorted({n for _, n in env_references(dict(sinks)) if not n.startswith("DATAFIX_")})
    if declared:
        document["secrets"] = declared
    path = folder / f"{landlord}.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def load_all(warehouse: Warehouse, datafix: Path, run_id: str = "run-1") -> LoadedDatafix:
    """Pull, normalise and load every entity of the datafix; returns it loaded."""
    loaded = load_datafix(datafix)
    for entity in loaded.datafix.entities:
        pulled = pull(loaded, entity, warehouse=warehouse)
        load(warehouse, loaded, normalise(loaded, pulled), run_id=run_id)
    return loaded
