"""Normalise maps the rows a part at a time (`MAP_ROWS`): whatever the part size, the batch is
the one a single pass gives, and the key rules still see every row (a repeat in a later part is
quarantined naming its first line in an earlier one)."""

from __future__ import annotations

import pandas as pd
import pytest

import pipelines.lib.transforms as transforms
from pipelines.lib.transforms import EntityTransformer, NormalisedBatch
from schemas.datafix import EntityMapping
from tests.pipelines.lib.transforming import raw_table

HEADER = ["N° écriture", "Date", "Code", "Montant", "Libellé"]
# line 2 onwards; the reasons a single pass gives are asserted below by hand
ROWS = [
    ["E1", "01/03/2026", "LOY", "500,00", "Loyer"],  # 2
    ["E2", "31/02/2026", "LOY", "500,00", "Loyer"],  # 3: bad date
    ["E3", "01/03/2026", "ZZZ", "10,00", "?"],  # 4: unmapped kind
    ["E4", "01/03/2026", "REG", "-450,00", "Virement"],  # 5
    ["E1", "02/03/2026", "LOY", "500,00", "Loyer bis"],  # 6: E1 again (first at line 2)
    ["E2", "02/03/2026", "LOY", "500,00", "Loyer"],  # 7: the first valid E2 (line 3 was bad)
    ["E5", "01/03/2026", "REG", "450,00", "Virement"],  # 8: a payment with a debit's sign
    ["E6", "01/03/2026", "LOY", "1 234,56", "Loyer"],  # 9
    ["E2", "03/03/2026", "LOY", "500,00", "Loyer ter"],  # 10: E2 again (first at line 7)
    ["E7", "01/03/2026", "LOY", "abc", "Loyer"],  # 11: bad amount
    ["E8", "01/03/2026", "REG", "300,00", "Virement"],  # 12: sign again
    ["E9", "04/03/2026", "LOY", "12,50", "Frais"],  # 13
    ["", "", "", "", ""],  # 14: blank
    ["Total", "", "", "2 000,00", ""],  # 15: skipped
]


def mapping(sign_rule: str) -> EntityMapping:
    return EntityMapping.model_validate(
        {
            "source": "export",
            "skip_rows": [{"column": "N° écriture", "matches": "^total"}],
            "fields": {
                "entry_ref": "N° écriture",
                "tenant_ref": {"const": "T1"},
                "entry_date": {"from": "Date", "formats": ["dd/mm/yyyy"]},
                "kind": {
                    "from": "Code",
                    "map": {"LOY": "rent", "REG": "payment"},
                    "unmapped": "reject",
                },
                "amount_cents": "Montant",
                "label": "Libellé",
            },
            "rules": {"sign_matches_kind": sign_rule},
        }
    )


def normalised(sign_rule: str, per_part: int, monkeypatch: pytest.MonkeyPatch) -> NormalisedBatch:
    monkeypatch.setattr(transforms, "MAP_ROWS", per_part)
    return EntityTransformer("ledger_entries", mapping(sign_rule)).apply(raw_table(HEADER, ROWS))


@pytest.mark.parametrize("sign_rule", ["quarantine", "warn"])
@pytest.mark.parametrize("per_part", [1, 2, 5, 7])
def test_any_part_size_gives_the_single_pass_batch(
    sign_rule: str, per_part: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    single = normalised(sign_rule, 10_000, monkeypatch)
    parted = normalised(sign_rule, per_part, monkeypatch)

    pd.testing.assert_frame_equal(parted.rows, single.rows)
    pd.testing.assert_frame_equal(
        parted.rejects.reset_index(drop=True), single.rejects.reset_index(drop=True)
    )
    assert (parted.skipped, parted.rows_in_source, parted.warnings) == (
        single.skipped,
        single.rows_in_source,
        single.warnings,
    )


@pytest.mark.parametrize("per_part", [2, 10_000])
def test_a_repeat_in_a_later_part_names_the_first_line(
    per_part: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = normalised("quarantine", per_part, monkeypatch)

    reasons = dict(zip(batch.rejects["source_row"], batch.rejects["reason"], strict=True))
    assert reasons == {
        "export.csv:3": "bad_date",
        "export.csv:4": "unmapped_value",
        "export.csv:6": "duplicate_key",
        "export.csv:8": "sign_matches_kind",
        "export.csv:10": "duplicate_key",
        "export.csv:11": "bad_amount",
        "export.csv:12": "sign_matches_kind",
    }
    messages = dict(zip(batch.rejects["source_row"], batch.rejects["message"], strict=True))
    assert "'E1' already appears at export.csv:2" in messages["export.csv:6"]
    assert "'E2' already appears at export.csv:7" in messages["export.csv:10"]
    assert batch.rows["entry_ref"].tolist() == ["E1", "E4", "E2", "E6", "E9"]
    assert batch.rows["amount_cents"].tolist() == [50000, -45000, 50000, 123456, 1250]
    assert (batch.skipped, batch.read) == (2, 12)


def test_warned_rows_are_counted_across_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    batch = normalised("warn", 3, monkeypatch)

    assert batch.warnings == {"sign_matches_kind": 2}
    assert {"E5", "E8"} <= set(batch.rows["entry_ref"])
