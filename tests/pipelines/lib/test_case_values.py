"""`value: null` in a case: an optional field left empty for the rows of that case (a payment
method only on payments), refused by `datafix check` on a required field."""

from __future__ import annotations

import pandas as pd

from connectors.rawtable import RawTable
from pipelines.lib.transforms import EntityTransformer
from schemas.datafix import Datafix, EntityMapping, semantic_issues

FIELDS = {
    "entry_ref": "ref",
    "tenant_ref": "compte",
    "entry_date": "date",
    "kind": {"from": "code", "map": {"PRL": "payment", "QUI": "rent_call"}},
    "amount_cents": "montant",
}


def test_value_null_leaves_an_optional_field_empty_for_its_rows() -> None:
    method = {
        "cases": [{"when": {"column": "code", "equals": "PRL"}, "value": "sepa_debit"}],
        "else": {"value": None},
    }
    mapping = EntityMapping(source="s", fields={**FIELDS, "payment_method": method})
    frame = pd.DataFrame(
        {
            "ref": ["E1", "E2"],
            "compte": ["T1", "T1"],
            "date": ["2026-03-01", "2026-03-05"],
            "code": ["QUI", "PRL"],
            "montant": ["500.00", "-500.00"],
        },
        dtype="str",
    )
    raw = RawTable(frame, pd.Series(["l.csv:2", "l.csv:3"]), "fingerprint", "l.csv")
    batch = EntityTransformer("ledger_entries", mapping).apply(raw)
    assert batch.rejects.empty
    methods = dict(zip(batch.rows["entry_ref"], batch.rows["payment_method"], strict=True))
    assert pd.isna(methods["E1"])
    assert methods["E2"] == "sepa_debit"


def test_value_null_on_a_required_field_is_one_clear_issue() -> None:
    kind = {
        "cases": [{"when": {"column": "code", "equals": "PRL"}, "value": "payment"}],
        "else": {"value": None},
    }
    datafix = Datafix.model_validate(
        {
            "landlord": {"id": "baie-habitat", "name": "Baie Habitat"},
            "sources": {"s": {"kind": "csv", "path": "l.csv"}},
            "entities": {"ledger_entries": {"source": "s", "fields": {**FIELDS, "kind": kind}}},
        }
    )
    issues = semantic_issues(datafix)
    assert [(issue.path, issue.message) for issue in issues] == [
        (
            ("entities", "ledger_entries", "fields", "kind", "else", "value"),
            "`value: null` leaves kind empty, but kind is required: every row of this case"
            " would be quarantined (missing_value)",
        )
    ]
