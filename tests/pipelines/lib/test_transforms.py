"""The transform engine (`pipelines.lib.transforms`): the value parsers and the mapping rules.

Parsers get the forms real French exports hold (DOMAIN.md "Conventions"); the engine gets small
RawTables built here, shaped like the readers' output (every cell text, `""` when blank, one
lineage string per row). Every batch the engine returns is checked for the hub's first rule:
rows read = rows mapped + rows rejected, blank and `skip_rows` rows counted apart.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from functools import partial
from typing import Any

import pandas as pd
import pytest

from connectors.errors import ConfigError
from pipelines.lib.transforms import (
    EntityTransformer,
    NormalisedBatch,
    parse_booleans,
    parse_cents,
    parse_dates,
    parse_integers,
    per_distinct,
    to_strftime,
)
from schemas.canonical import ENTITIES, ColumnType
from schemas.datafix import EntityMapping
from tests.casedata import parametrize
from tests.pipelines.lib.transforming import (
    ACTIVE,
    ONE_TENANT_AND_DAY,
    contract_rules_left_in,
    raw_table,
    transform,
)

# --- helpers --------------------------------------------------------------------------------


def text(values: list[str | None], index: list[int] | None = None) -> pd.Series:
    """A column as the transforms see it after blanks became <NA>."""
    return pd.Series(values, dtype="str", index=index)


def column(batch: NormalisedBatch, name: str) -> list[Any]:
    """A mapped column as plain Python values, None for blanks."""
    return [None if pd.isna(value) else value for value in batch.rows[name].tolist()]


def rejected(batch: NormalisedBatch) -> list[tuple[str, str]]:
    """(source_row, reason) of every reject."""
    return list(zip(batch.rejects["source_row"], batch.rejects["reason"], strict=True))


# Constants that satisfy the required columns the test does not look at.
LEDGER_CONSTANTS = ONE_TENANT_AND_DAY | {"kind": {"const": "rent"}}
# the reference, tenant and date columns of the ledger exports below (`Pièce;Compte;Date;…`)
LEDGER_COLUMNS = {"entry_ref": "Pièce", "tenant_ref": "Compte", "entry_date": "Date"}
INVOICE_CONSTANTS = {
    "order_ref": {"const": "BT345678"},
    "kind": {"const": "final"},
    "issued_date": {"const": "2026-03-01"},
    "status": {"const": "issued"},
}


# --- parse_cents ----------------------------------------------------------------------------


@parametrize("amounts", "french-and-plain", "cell, cents")
def test_parse_cents_reads_french_and_plain_amounts(cell: str, cents: int) -> None:
    values, bad = parse_cents(text([cell]))

    assert values.dtype == "Int64"
    assert values.tolist() == [cents]
    assert bad.tolist() == [False]


@parametrize("amounts", "not-amounts", "cell")
def test_parse_cents_flags_what_is_not_an_amount(cell: str) -> None:
    values, bad = parse_cents(text([cell]))

    assert bad.tolist() == [True]
    assert values.isna().tolist() == [True]


def test_parse_cents_blank_is_missing_not_bad() -> None:
    values, bad = parse_cents(text([None, "12,50"]))

    assert values.isna().tolist() == [True, False]
    assert bad.tolist() == [False, False]


@parametrize("amounts", "cents-unit", "cell, cents, is_bad")
def test_parse_cents_in_cents_unit(cell: str, cents: int | None, is_bad: bool) -> None:
    values, bad = parse_cents(text([cell]), unit="cents")

    assert [None if pd.isna(v) else v for v in values.tolist()] == [cents]
    assert bad.tolist() == [is_bad]


# --- parse_dates ----------------------------------------------------------------------------


@parametrize("dates", "default-formats", "cell, with_time, expected")
def test_parse_dates_default_formats_iso_and_excel(
    cell: str, with_time: bool, expected: str
) -> None:
    values, bad = parse_dates(text([cell]), None, with_time=with_time)

    assert values.dtype == "datetime64[ns]"
    assert values.tolist() == [pd.Timestamp(expected)]
    assert bad.tolist() == [False]


@parametrize("dates", "impossible", "cell")
def test_parse_dates_flags_impossible_or_implausible_dates(cell: str) -> None:
    values, bad = parse_dates(text([cell]), None, with_time=False)

    assert bad.tolist() == [True]
    assert values.isna().tolist() == [True]


def test_parse_dates_blank_is_missing_not_bad() -> None:
    values, bad = parse_dates(text([None, "15/03/2026"]), None, with_time=False)

    assert values.isna().tolist() == [True, False]
    assert bad.tolist() == [False, False]


@parametrize("dates", "declared-formats", "formats, cell, expected")
def test_parse_dates_declared_formats(formats: list[str], cell: str, expected: str) -> None:
    values, bad = parse_dates(text([cell]), formats, with_time=True)

    assert values.tolist() == [pd.Timestamp(expected)]
    assert bad.tolist() == [False]


def test_parse_dates_declared_formats_replace_the_defaults() -> None:
    values, bad = parse_dates(text(["15/03/2026"]), ["mm/dd/yyyy"], with_time=False)

    assert bad.tolist() == [True]
    assert values.isna().tolist() == [True]


@parametrize("dates", "format-tokens", "datafix_format, strftime")
def test_format_tokens_become_strftime(datafix_format: str, strftime: str) -> None:
    assert to_strftime(datafix_format) == strftime


# --- parse_integers and parse_booleans ------------------------------------------------------


@parametrize("integers", "cells", "cell, number, is_bad")
def test_parse_integers(cell: str | None, number: int | None, is_bad: bool) -> None:
    values, bad = parse_integers(text([cell]))

    assert values.dtype == "Int64"
    assert [None if pd.isna(v) else v for v in values.tolist()] == [number]
    assert bad.tolist() == [is_bad]


@pytest.mark.parametrize(
    ("cell", "truth", "is_bad"),
    [
        *[pytest.param(word, True, False, id=word) for word in ("oui", "o", "x", "1", "vrai")],
        *[pytest.param(word, False, False, id=word) for word in ("non", "n", "0", "faux")],
        pytest.param(" OUI ", True, False, id="upper-case-padded"),
        pytest.param("Vrai", True, False, id="capitalised"),
        pytest.param("yes", True, False, id="yes"),
        pytest.param("false", False, False, id="false"),
        pytest.param(None, None, False, id="blank"),
        pytest.param("peut-être", None, True, id="maybe"),
        pytest.param("2", None, True, id="two"),
    ],
)
def test_parse_booleans(cell: str | None, truth: bool | None, is_bad: bool) -> None:
    values, bad = parse_booleans(text([cell]))

    assert values.dtype == "boolean"
    assert [None if pd.isna(v) else v for v in values.tolist()] == [truth]
    assert bad.tolist() == [is_bad]


# --- per_distinct: the same answer as parsing every cell ------------------------------------

SERIES = {
    "repeats-with-blanks": text(["12,50", "12,50", None, "12,50", "abc", "abc", None, "1"] * 3),
    "dates-repeating": text(["15/03/2026", "15/03/2026", None, "45658", "45658", "31/02/2026"] * 2),
    "shuffled-index": text(["1", "1", "1", "oui", "oui", None], index=[30, 5, 17, 2, 11, 8]),
    "mostly-distinct": text(["1", "2", "3", None]),
    "every-cell-blank": text([None, None, None, None]),
    "empty": text([]),
}
PARSERS: dict[str, Callable[[pd.Series], tuple[pd.Series, ...]]] = {
    "cents": parse_cents,
    "integers": parse_integers,
    "booleans": parse_booleans,
    "dates": partial(parse_dates, formats=None, with_time=True),
}


@pytest.mark.parametrize("parser_name", list(PARSERS))
@pytest.mark.parametrize("series_name", list(SERIES))
def test_per_distinct_matches_parsing_every_cell(parser_name: str, series_name: str) -> None:
    parser, values = PARSERS[parser_name], SERIES[series_name]

    spread = per_distinct(values, parser)

    direct = parser(values)
    assert len(spread) == len(direct)
    for got, expected in zip(spread, direct, strict=True):
        pd.testing.assert_series_equal(got, expected, check_names=False)


# --- EntityTransformer: where values come from ----------------------------------------------


def test_rename_with_from_and_with_the_bare_string_short_form() -> None:
    header, rows = ["N° locataire", "N° bail"], [["T1", "B1"], ["T2", "B2"]]

    long_form = transform(
        "tenants",
        {"tenant_ref": {"from": "N° locataire"}, "lease_ref": {"from": "N° bail"}} | ACTIVE,
        header,
        rows,
    )
    short_form = transform(
        "tenants", {"tenant_ref": "N° locataire", "lease_ref": "N° bail"} | ACTIVE, header, rows
    )

    assert column(short_form, "tenant_ref") == ["T1", "T2"]
    assert column(short_form, "lease_ref") == ["B1", "B2"]
    pd.testing.assert_frame_equal(long_form.rows, short_form.rows)


@parametrize("header_keys", "in-export", "label_in_export")
def test_header_matches_ignoring_case_accents_and_spaces(label_in_export: str) -> None:
    batch = transform(
        "tenants",
        {"tenant_ref": "Ref", "move_in_date": "Date d'entrée"} | ACTIVE,
        ["Ref", label_in_export],
        [["T1", "15/03/2026"]],
    )

    assert column(batch, "move_in_date") == [pd.Timestamp("2026-03-15")]


# One tenants column of each value type, a value a datafix gives it (`const`, `default`) and
# that value normalised
FIXED_VALUES = [
    pytest.param("dwelling_ref", "inconnu", "inconnu", id="text"),
    pytest.param("household_size", 1, 1, id="integer"),
    pytest.param("fsl_aid", False, False, id="boolean"),
    pytest.param("move_in_date", "01/01/2000", pd.Timestamp("2000-01-01"), id="date"),
    pytest.param("income_band", "low", "low", id="choice"),
]
# a source cell of each of those columns holding another value
OTHER_CELLS = {
    "dwelling_ref": "LOG-7",
    "household_size": "3",
    "fsl_aid": "oui",
    "move_in_date": "15/03/2026",
    "income_band": "middle",
}


@pytest.mark.parametrize(("field", "const", "expected"), FIXED_VALUES)
def test_const_fills_every_row(field: str, const: object, expected: object) -> None:
    batch = transform(
        "tenants",
        {"tenant_ref": "Ref", field: {"const": const}} | ACTIVE,
        ["Ref"],
        [["T1"], ["T2"]],
    )

    assert column(batch, field) == [expected, expected]


def test_concat_joins_with_the_separator_and_skips_blanks() -> None:
    batch = transform(
        "tenants",
        {"tenant_ref": "Ref", "full_name": {"concat": ["Nom", "Prénom"], "separator": ", "}}
        | ACTIVE,
        ["Ref", "Nom", "Prénom"],
        [["T1", "Dupont", "Jean"], ["T2", "Martin", ""], ["T3", "", "Zoé"], ["T4", " ", ""]],
    )

    assert column(batch, "full_name") == ["Dupont, Jean", "Martin", "Zoé", None]


# --- amounts: debit/credit folding and negate -----------------------------------------------

DEBIT_CREDIT = {"debit": "Débit", "credit": "Crédit"}


@pytest.mark.parametrize(
    ("debit", "credit", "cents"),
    [
        pytest.param("512,30", "", 51230, id="debit-only"),
        pytest.param("", "100,00", -10000, id="credit-only"),
        pytest.param("10,00", "2,50", 750, id="both"),
        pytest.param("1 234,56 €", "(0,56)", 123512, id="french-forms"),
    ],
)
def test_debit_minus_credit(debit: str, credit: str, cents: int) -> None:
    batch = transform(
        "ledger_entries",
        {"entry_ref": "N°", "amount_cents": DEBIT_CREDIT} | LEDGER_CONSTANTS,
        ["N°", "Débit", "Crédit"],
        [["E1", debit, credit], ["E2", "1,00", "1,00"]],  # E2 keeps each column partly filled
    )

    assert column(batch, "amount_cents") == [cents, 0]


def test_debit_credit_both_blank_is_null_when_optional() -> None:
    batch = transform(
        "invoices",
        {"invoice_ref": "N°", "amount_cents": "HT", "vat_cents": DEBIT_CREDIT} | INVOICE_CONSTANTS,
        ["N°", "HT", "Débit", "Crédit"],
        [["F1", "100,00", "", ""], ["F2", "100,00", "20,00", "5,00"]],
    )

    assert column(batch, "vat_cents") == [None, 1500]
    assert rejected(batch) == []


def test_debit_credit_both_blank_is_missing_when_required() -> None:
    batch = transform(
        "ledger_entries",
        {"entry_ref": "N°", "amount_cents": DEBIT_CREDIT} | LEDGER_CONSTANTS,
        ["N°", "Débit", "Crédit"],
        [["E1", "", ""], ["E2", "1,00", "2,00"]],
    )

    assert rejected(batch) == [("export.csv:2", "missing_value")]


@pytest.mark.parametrize(
    ("debit", "credit", "shown"),
    [
        pytest.param("12,5O", "", "'12,5O'", id="bad-debit"),
        pytest.param("", "cent", "'cent'", id="bad-credit"),
        pytest.param("10,00", "1,234", "'1,234'", id="bad-credit-good-debit"),
    ],
)
def test_debit_credit_one_bad_amount_rejects_the_row(debit: str, credit: str, shown: str) -> None:
    batch = transform(
        "ledger_entries",
        {"entry_ref": "N°", "amount_cents": DEBIT_CREDIT} | LEDGER_CONSTANTS,
        ["N°", "Débit", "Crédit"],
        [["E1", debit, credit], ["E2", "1,00", "2,00"]],
    )

    assert rejected(batch) == [("export.csv:2", "bad_amount")]
    message = batch.rejects["message"].iloc[0]
    assert shown in message
    assert "'Débit'" in message and "'Crédit'" in message  # both source columns are named
    assert column(batch, "entry_ref") == ["E2"]


def test_debit_credit_with_a_column_blank_on_every_row() -> None:
    """A month with no payment at all: the credit column is empty from top to bottom."""
    batch = transform(
        "ledger_entries",
        {"entry_ref": "N°", "amount_cents": DEBIT_CREDIT} | LEDGER_CONSTANTS,
        ["N°", "Débit", "Crédit"],
        [["E1", "512,30", ""], ["E2", "40,00", ""], ["E3", "512,30", ""]],
    )

    assert column(batch, "amount_cents") == [51230, 4000, 51230]


NEGATED_AMOUNT = {"from": "Montant", "negate": True}


@pytest.mark.parametrize(
    ("rule", "header", "rows", "cents"),
    [
        pytest.param(
            NEGATED_AMOUNT, ["Montant"], [["512,30"], ["-5,00"]], [-51230, 500], id="from"
        ),
        pytest.param(
            DEBIT_CREDIT | {"negate": True},
            ["Débit", "Crédit"],
            [["", "100,00"], ["30,00", "10,00"]],
            [10000, -2000],
            id="debit-credit",
        ),
    ],
)
def test_negate_flips_the_sign(
    rule: dict[str, Any], header: list[str], rows: list[list[str]], cents: list[int]
) -> None:
    batch = transform(
        "ledger_entries",
        {"entry_ref": "N°", "amount_cents": rule} | LEDGER_CONSTANTS,
        ["N°", *header],
        [[f"E{number}", *cells] for number, cells in enumerate(rows, start=1)],
    )

    assert column(batch, "amount_cents") == cents


# --- value maps and defaults ----------------------------------------------------------------

STATUS_MAP = {"ACT": "active", "Préavis": "leaving", "SOR": "left"}


@pytest.mark.parametrize(
    "cell",
    [
        pytest.param("Préavis", id="as-written"),
        pytest.param("PREAVIS", id="upper-no-accent"),
        pytest.param("  préavis ", id="lower-padded"),
    ],
)
def test_map_matches_ignoring_case_and_accents(cell: str) -> None:
    batch = transform(
        "tenants",
        {"tenant_ref": "Ref", "status": {"from": "Statut", "map": STATUS_MAP}},
        ["Ref", "Statut"],
        [["T1", cell]],
    )

    assert column(batch, "status") == ["leaving"]


@pytest.mark.parametrize("cell", ["active", "ACTIVE", " Active "])
def test_choice_without_map_matches_canonical_values_ignoring_case(cell: str) -> None:
    batch = transform(
        "tenants", {"tenant_ref": "Ref", "status": "Statut"}, ["Ref", "Statut"], [["T1", cell]]
    )

    assert column(batch, "status") == ["active"]


def test_unmapped_value_is_rejected_naming_the_value_and_the_known_codes() -> None:
    batch = transform(
        "tenants",
        {"tenant_ref": "Ref", "status": {"from": "Statut", "map": STATUS_MAP}},
        ["Ref", "Statut"],
        [["T1", "ACT"], ["T2", "RES"]],
    )

    assert rejected(batch) == [("export.csv:3", "unmapped_value")]
    message = batch.rejects["message"].iloc[0]
    assert "'RES'" in message
    assert "known: ACT, Préavis, SOR" in message
    assert "Statut" in message


def test_unmapped_default_uses_the_default() -> None:
    batch = transform(
        "tenants",
        {
            "tenant_ref": "Ref",
            "status": {
                "from": "Statut",
                "map": STATUS_MAP,
                "unmapped": "default",
                "default": "left",
            },
        },
        ["Ref", "Statut"],
        [["T1", "ACT"], ["T2", "RES"], ["T3", ""]],
    )

    assert column(batch, "status") == ["active", "left", "left"]
    assert rejected(batch) == []


def test_choice_default_is_a_canonical_value_applied_after_the_map() -> None:
    # `none` is not a source code of the map: a default applied before the map would be refused
    batch = transform(
        "tenants",
        {
            "tenant_ref": "Ref",
            "housing_aid": {"from": "Aide", "map": {"APL": "apl", "AL": "al"}, "default": "none"},
        }
        | ACTIVE,
        ["Ref", "Aide"],
        [["T1", "APL"], ["T2", ""], ["T3", "FSL"]],
    )

    assert column(batch, "housing_aid") == ["apl", "none"]
    assert rejected(batch) == [("export.csv:4", "unmapped_value")]


@pytest.mark.parametrize(("field", "default", "expected"), FIXED_VALUES)
def test_default_fills_blank_cells_only(field: str, default: object, expected: object) -> None:
    batch = transform(
        "tenants",
        {"tenant_ref": "Ref", field: {"from": "Cell", "default": default}} | ACTIVE,
        ["Ref", "Cell"],
        [["T1", ""], ["T2", "  "], ["T3", OTHER_CELLS[field]]],
    )

    filled = column(batch, field)
    assert filled[:2] == [expected, expected]
    assert filled[2] != expected


# --- rejects: reasons, messages, lineage ----------------------------------------------------


def test_required_blank_is_missing_value() -> None:
    batch = transform(
        "tenants",
        {"tenant_ref": "Ref", "lease_ref": "Bail"} | ACTIVE,
        ["Ref", "Bail"],
        [["T1", "B1"], ["", "B2"]],
    )

    assert rejected(batch) == [("export.csv:3", "missing_value")]
    assert "tenant_ref is required" in batch.rejects["message"].iloc[0]


@pytest.mark.parametrize(
    ("entity", "fields", "cell", "shown"),
    [
        pytest.param("tenants", {"household_size": "Valeur"}, "0", "value 0", id="household-0"),
        pytest.param("tenants", {"household_size": "Valeur"}, "21", "value 21", id="household-21"),
        pytest.param("tenants", {"formal_demands": "Valeur"}, "-1", "value -1", id="negative-int"),
        pytest.param("invoices", {"amount_cents": "Valeur"}, "-5,00", "value -500", id="credit-ht"),
    ],
)
def test_out_of_range(entity: str, fields: dict[str, str], cell: str, shown: str) -> None:
    constants = INVOICE_CONSTANTS if entity == "invoices" else ACTIVE
    key = ENTITIES[entity].key
    batch = transform(entity, {key: "Ref", **fields} | constants, ["Ref", "Valeur"], [["R1", cell]])

    assert rejected(batch) == [("export.csv:2", "out_of_range")]
    assert shown in batch.rejects["message"].iloc[0]


@parametrize("bad_cells", "tenants", "field, cell, reason")
def test_bad_cells_get_their_reason_and_a_message_naming_the_value(
    field: str, cell: str, reason: str
) -> None:
    batch = transform(
        "tenants",
        {"tenant_ref": "Ref", field: "Valeur"} | ACTIVE,
        ["Ref", "Valeur"],
        [["T1", cell]],
    )

    assert rejected(batch) == [("export.csv:2", reason)]
    message = batch.rejects["message"].iloc[0]
    assert f"'{cell}'" in message
    assert field in message and "'Valeur'" in message


def test_duplicate_key_keeps_the_first_and_names_its_row() -> None:
    batch = transform(
        "tenants",
        {"tenant_ref": "Ref", "lease_ref": "Bail"} | ACTIVE,
        ["Ref", "Bail"],
        [["T1", "B1"], ["T2", "B2"], ["T1", "B3"], ["T1", "B4"]],
    )

    assert column(batch, "lease_ref") == ["B1", "B2"]
    assert rejected(batch) == [("export.csv:4", "duplicate_key"), ("export.csv:5", "duplicate_key")]
    assert all("'T1' already appears at export.csv:2" in m for m in batch.rejects["message"])


def test_duplicate_of_a_rejected_row_is_kept() -> None:
    """The first T1 has a bad date: the second T1 is then the only valid one, and is kept."""
    batch = transform(
        "tenants",
        {"tenant_ref": "Ref", "move_in_date": "Entrée"} | ACTIVE,
        ["Ref", "Entrée"],
        [["T1", "31/02/2026"], ["T1", "01/03/2026"], ["T1", "02/03/2026"]],
    )

    assert column(batch, "move_in_date") == [pd.Timestamp("2026-03-01")]
    assert rejected(batch) == [("export.csv:2", "bad_date"), ("export.csv:4", "duplicate_key")]
    assert "already appears at export.csv:3" in batch.rejects["message"].iloc[1]


def test_first_failing_field_in_column_order_gives_the_reason() -> None:
    batch = transform(
        "tenants",
        {"tenant_ref": "Ref", "move_in_date": "Entrée", "household_size": "Nb"} | ACTIVE,
        ["Ref", "Entrée", "Nb"],
        [["T1", "31/02/2026", "deux"]],
    )

    assert rejected(batch) == [("export.csv:2", "bad_date")]


def test_reject_keeps_raw_values_key_and_lineage() -> None:
    header = ["  N° Locataire ", "Statut", "Nom"]
    batch = transform(
        "tenants",
        {"tenant_ref": "N° locataire", "status": {"from": "Statut", "map": STATUS_MAP}},
        header,
        [["T1", "ACT", "Dupont"], ["T2", "RES", "Éloïse Martin"]],
    )

    reject = batch.rejects.iloc[0]
    assert reject["source_row"] == "export.csv:3"
    assert reject["key"] == "T2"
    assert json.loads(reject["raw"]) == {
        "  N° Locataire ": "T2",
        "Statut": "RES",
        "Nom": "Éloïse Martin",
    }
    assert list(batch.rejects.columns) == [
        "source_row",
        "key",
        "raw",
        "reason",
        "message",
        "open_columns",
    ]
    # the reference and the status feed no personal field: they may stay readable at rest;
    # the unmapped name is sealed in quarantine.raw
    assert sorted(json.loads(reject["open_columns"])) == ["  N° Locataire ", "Statut"]
    assert column(batch, "source_row") == ["export.csv:2"]


# --- skipped rows ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("skip_rows", "skipped_refs"),
    [
        pytest.param([], ["(blank)"], id="only-the-blank-row"),
        pytest.param(
            [{"column": "Ref", "matches": "^total"}],
            ["(blank)", "TOTAL", "Total général"],
            id="matches-ignores-case",
        ),
        pytest.param([{"column": "Nom", "equals": "ANNULÉ"}], ["(blank)", "T3"], id="equals"),
        pytest.param([{"column": "Nom", "blank": True}], ["(blank)", "TOTAL"], id="blank-true"),
        pytest.param(
            [{"column": "Nom", "blank": False}],
            ["(blank)", "T1", "T3", "Total général"],
            id="blank-false",
        ),
    ],
)
def test_blank_rows_and_skip_rows_are_counted_as_skipped(
    skip_rows: list[dict[str, Any]], skipped_refs: list[str]
) -> None:
    rows = [
        ["T1", "Dupont"],
        ["", ""],
        ["T3", " ANNULÉ "],
        ["TOTAL", ""],
        ["Total général", "2 lignes"],
    ]
    batch = transform(
        "tenants", {"tenant_ref": "Ref"} | ACTIVE, ["Ref", "Nom"], rows, skip_rows=skip_rows
    )

    kept = set(column(batch, "tenant_ref")) | set(batch.rejects["key"].dropna())
    all_refs = {row[0] or "(blank)" for row in rows}
    assert all_refs - kept == set(skipped_refs)
    assert batch.skipped == len(skipped_refs)


def test_counts_add_up_on_a_messy_export() -> None:
    batch = transform(
        "tenants",
        {
            "tenant_ref": "Ref",
            "status": {"from": "Statut", "map": STATUS_MAP},
            "household_size": "Nb",
        },
        ["Ref", "Statut", "Nb"],
        [
            ["T1", "ACT", "2"],
            ["T2", "XXX", "2"],
            ["", "", ""],
            ["T3", "SOR", "0"],
            ["T1", "ACT", "1"],
            ["", "ACT", "3"],
            ["Total", "", "5"],
        ],
        skip_rows=[{"column": "Ref", "matches": "^total$"}],
    )

    assert (batch.rows_in_source, batch.skipped, batch.read) == (7, 2, 5)
    assert len(batch.rows) == 1
    assert sorted(batch.rejects["reason"]) == [
        "duplicate_key",
        "missing_value",
        "out_of_range",
        "unmapped_value",
    ]


def test_an_empty_export_gives_empty_typed_frames() -> None:
    batch = transform("tenants", {"tenant_ref": "Ref"} | ACTIVE, ["Ref"], [])

    assert batch.read == 0
    assert batch.rows.empty and batch.rejects.empty
    assert batch.rows["household_size"].dtype == "Int64"


# --- configuration errors -------------------------------------------------------------------


def test_column_missing_from_the_header_raises_config_error_with_did_you_mean() -> None:
    with pytest.raises(ConfigError) as raised:
        transform(
            "tenants",
            {"tenant_ref": "Ref", "move_in_date": "Date d'entrée"} | ACTIVE,
            ["Ref", "Date d'entre"],
            [["T1", "01/01/2020"]],
        )

    message = str(raised.value)
    assert "export.csv" in message
    assert "`Date d'entrée`: did you mean `Date d'entre`?" in message


# --- dtypes and time zones ------------------------------------------------------------------

VALID_CELL = {
    ColumnType.TEXT: "ABC-1",
    ColumnType.CENTS: "12,50",
    ColumnType.INTEGER: "3",
    ColumnType.DATE: "15/03/2026",
    ColumnType.DATETIME: "2026-03-15 14:30:00",
    ColumnType.BOOLEAN: "oui",
}


@pytest.mark.parametrize("entity", list(ENTITIES))
def test_output_dtypes_follow_the_column_types(entity: str) -> None:
    """Every column mapped from one valid row: each gets its type's dtype, lineage is text."""
    spec = ENTITIES[entity]
    fields: dict[str, Any] = {}
    cells: list[str] = []
    for spec_column in spec.columns:
        fields[spec_column.name] = spec_column.name
        if spec_column.type is ColumnType.CHOICE:
            cells.append(spec_column.choices[0])
        elif spec_column.type is ColumnType.CENTS and spec_column.min_value is None:
            cells.append("-12,50" if spec_column.name == "amount_cents" else "12,50")
        else:
            cells.append(VALID_CELL[spec_column.type])
    batch = transform(entity, fields, list(spec.column_names), [cells])

    assert rejected(batch) == []
    assert list(batch.rows.columns) == [*spec.column_names, "source_row"]
    # written out here, apart from schemas.canonical.PANDAS_DTYPES, which the code uses
    expected_dtypes = {
        "str": (ColumnType.TEXT, ColumnType.CHOICE),
        "boolean": (ColumnType.BOOLEAN,),
        "Int64": (ColumnType.CENTS, ColumnType.INTEGER),
        "datetime64[ns]": (ColumnType.DATE,),
        "datetime64[ns, UTC]": (ColumnType.DATETIME,),
    }
    dtype_of = {kind: dtype for dtype, kinds in expected_dtypes.items() for kind in kinds}
    for spec_column in spec.columns:
        dtype = dtype_of[spec_column.type]
        assert batch.rows[spec_column.name].dtype == dtype, spec_column.name
    assert batch.rows["source_row"].dtype == "str"


@pytest.mark.parametrize(
    ("cell", "formats", "utc"),
    [
        pytest.param("01/07/2026 14:00", ["dd/mm/yyyy HH:MI"], "2026-07-01 12:00", id="summer"),
        pytest.param("15/01/2026 14:00", ["dd/mm/yyyy HH:MI"], "2026-01-15 13:00", id="winter"),
        pytest.param("2026-07-01 14:00:00", None, "2026-07-01 12:00", id="iso-summer"),
        pytest.param("15/01/2026", None, "2026-01-14 23:00", id="date-only-midnight-paris"),
        pytest.param("45658.5", None, "2025-01-01 11:00", id="excel-serial-noon"),
        pytest.param("29/03/2026 02:30", ["dd/mm/yyyy HH:MI"], "2026-03-29 01:00", id="dst-gap"),
    ],
)
def test_datetime_columns_are_paris_local_stored_as_utc(
    cell: str, formats: list[str] | None, utc: str
) -> None:
    batch = transform(
        "completions",
        {
            "completion_ref": "N°",
            "order_ref": {"const": "BT345678"},
            "completed_at": {"from": "Terminé le", "formats": formats},
        },
        ["N°", "Terminé le"],
        [["C1", cell]],
    )

    assert batch.rows["completed_at"].dtype == "datetime64[ns, UTC]"
    assert column(batch, "completed_at") == [pd.Timestamp(utc, tz="UTC")]


def test_datetime_in_the_repeated_autumn_hour_is_not_reported_blank() -> None:
    """02:30 on 25/10/2026 happens twice in Paris; the cell is filled, so it is never `blank`."""
    batch = transform(
        "completions",
        {
            "completion_ref": "N°",
            "order_ref": {"const": "BT345678"},
            "completed_at": {"from": "Terminé le", "formats": ["dd/mm/yyyy HH:MI"]},
        },
        ["N°", "Terminé le"],
        [["C1", "25/10/2026 02:30"]],
    )

    one_of_the_two = {
        pd.Timestamp("2026-10-25 00:30", tz="UTC"),
        pd.Timestamp("2026-10-25 01:30", tz="UTC"),
    }
    if len(batch.rows):
        assert column(batch, "completed_at")[0] in one_of_the_two
    else:
        assert rejected(batch) == [("export.csv:2", "bad_date")]


# --- sign from an indicator column, and first-match cases ------------------------------------

RUN_DAY = date(2026, 6, 15)


def transform_on(
    day: date, entity: str, fields: dict[str, Any], header: list[str], rows: list[list[str]]
) -> NormalisedBatch:
    """`transform` with the run date `today` means in a case's date test fixed to `day`."""
    mapping = EntityMapping.model_validate(
        {"source": "export", "fields": fields, "rules": contract_rules_left_in(entity)}
    )
    batch = EntityTransformer(entity, mapping, today=day).apply(raw_table(header, rows))
    assert batch.read == len(batch.rows) + len(batch.rejects) == len(rows)
    return batch


SIGNED_LEDGER = {
    **LEDGER_COLUMNS,
    "kind": {"const": "rent_call"},
    "amount_cents": {
        "from": "Montant",
        "sign": {"column": "Sens", "positive": "D", "negative": "C"},
    },
}


def test_sign_comes_from_the_indicator_column_ignoring_case_accents_and_spaces() -> None:
    rows = [
        ["E1", "T1", "01/03/2026", "512,30", "D"],
        ["E2", "T1", "02/03/2026", "100", " c "],
        ["E3", "T1", "03/03/2026", "1 234,56", "C"],
        ["E4", "T1", "04/03/2026", "0,05", "d"],
    ]
    batch = transform(
        "ledger_entries", SIGNED_LEDGER, ["Pièce", "Compte", "Date", "Montant", "Sens"], rows
    )

    assert batch.rows["amount_cents"].tolist() == [51230, -10000, -123456, 5]
    assert str(batch.rows["amount_cents"].dtype) == "Int64"


def test_sign_values_may_be_lists_and_words_with_accents() -> None:
    fields = {
        **SIGNED_LEDGER,
        "amount_cents": {
            "from": "Montant",
            "sign": {"column": "Sens", "positive": ["Débit", "D"], "negative": ["Crédit", "C"]},
        },
    }
    rows = [["E1", "T1", "01/03/2026", "10", "DEBIT"], ["E2", "T1", "01/03/2026", "10", "credit"]]
    batch = transform(
        "ledger_entries", fields, ["Pièce", "Compte", "Date", "Montant", "Sens"], rows
    )

    assert batch.rows["amount_cents"].tolist() == [1000, -1000]


@pytest.mark.parametrize(
    ("indicator", "shown"), [("X", "'X'"), ("", "''")], ids=["unknown", "blank"]
)
def test_an_unknown_or_blank_indicator_quarantines_the_row_naming_column_and_value(
    indicator: str, shown: str
) -> None:
    rows = [["E1", "T1", "01/03/2026", "10", "D"], ["E2", "T1", "01/03/2026", "20", indicator]]
    batch = transform(
        "ledger_entries", SIGNED_LEDGER, ["Pièce", "Compte", "Date", "Montant", "Sens"], rows
    )

    assert batch.rows["entry_ref"].tolist() == ["E1"]
    assert batch.rejects["reason"].tolist() == ["bad_sign"]
    assert batch.rejects["source_row"].tolist() == ["export.csv:3"]
    assert batch.rejects["message"].iloc[0] == (
        f"amount_cents ← column 'Montant': sign column 'Sens' holds {shown}, expected 'D'"
        " (positive), 'C' (negative) — fix the cell, or add the value under `sign`"
    )


def test_a_bad_amount_with_a_sign_is_reported_as_a_bad_amount() -> None:
    rows = [["E1", "T1", "01/03/2026", "12,5O", "X"]]
    batch = transform(
        "ledger_entries", SIGNED_LEDGER, ["Pièce", "Compte", "Date", "Montant", "Sens"], rows
    )

    assert batch.rejects["reason"].tolist() == ["bad_amount"]


TENANT_STATUS = {
    "tenant_ref": "Réf",
    "move_out_date": {"from": "Sortie", "formats": ["dd/mm/yyyy"]},
    "status": {
        "cases": [
            {
                "when": {"column": "Sortie", "before": "today", "formats": ["dd/mm/yyyy"]},
                "value": "left",
            },
            {
                "when": {"column": "Sortie", "after": "today", "formats": ["dd/mm/yyyy"]},
                "value": "leaving",
            },
        ],
        "else": {"value": "active"},
    },
}


def test_tenant_status_from_the_move_out_date_against_the_run_date() -> None:
    rows = [
        ["T1", "14/06/2026"],  # the day before the run: left
        ["T2", "16/06/2026"],  # the day after: leaving
        ["T3", ""],  # no move-out date: active
        ["T4", "15/06/2026"],  # the run day itself: neither before nor after → else
        ["T5", "2025-12-31"],  # ISO is always understood
    ]
    batch = transform_on(RUN_DAY, "tenants", TENANT_STATUS, ["Réf", "Sortie"], rows)

    assert batch.rows["status"].tolist() == ["left", "leaving", "active", "active", "left"]
    assert str(batch.rows["status"].dtype) == "str"


def test_the_same_rows_on_a_later_run_day_give_a_later_status() -> None:
    rows = [["T1", "14/06/2026"], ["T2", "16/06/2026"]]

    batch = transform_on(date(2026, 7, 1), "tenants", TENANT_STATUS, ["Réf", "Sortie"], rows)

    assert batch.rows["status"].tolist() == ["left", "left"]


def test_a_date_a_case_cannot_read_quarantines_the_row() -> None:
    fields = {"tenant_ref": "Réf", "status": TENANT_STATUS["status"]}
    rows = [["T1", "31/02/2026"], ["T2", ""]]
    batch = transform_on(RUN_DAY, "tenants", fields, ["Réf", "Sortie"], rows)

    assert batch.rows["tenant_ref"].tolist() == ["T2"]
    assert batch.rejects["reason"].tolist() == ["bad_date"]
    assert (
        batch.rejects["message"]
        .iloc[0]
        .startswith(
            "status (cases): column 'Sortie' holds '31/02/2026' — not a date in the formats"
            " dd/mm/yyyy"
        )
    )


LEDGER_KIND = {
    **LEDGER_COLUMNS,
    "amount_cents": "Montant",
    "kind": {
        "cases": [
            {
                "when": [{"column": "Code", "equals": "REG"}, {"column": "Montant", "below": 0}],
                "value": "payment",
            },
            {
                "when": [
                    {"column": "Code", "equals": "REG"},
                    {"column": "Montant", "at_least": "0"},
                ],
                "value": "refund",
            },
            {"when": {"column": "Code", "in": ["QUI", "QUIT"]}, "value": "rent_call"},
            {"when": {"column": "Code", "matches": "^rej"}, "value": "rejected_debit"},
        ]
    },
}


def test_ledger_kind_from_the_movement_code_and_the_sign_of_the_amount() -> None:
    rows = [
        ["E1", "T1", "01/03/2026", "QUI", "512,30"],
        ["E2", "T1", "05/03/2026", "reg ", "-512,30"],
        ["E3", "T1", "06/03/2026", "REG", "1 000,00"],
        ["E4", "T1", "07/03/2026", "Quit", "10"],
        ["E5", "T1", "08/03/2026", "REJET", "512,30"],
        ["E6", "T1", "09/03/2026", "ANN", "5"],  # no case, no else
    ]
    batch = transform(
        "ledger_entries", LEDGER_KIND, ["Pièce", "Compte", "Date", "Code", "Montant"], rows
    )

    assert batch.rows["kind"].tolist() == [
        "rent_call",
        "payment",
        "refund",
        "rent_call",
        "rejected_debit",
    ]
    assert batch.rows["amount_cents"].tolist() == [51230, -51230, 100000, 1000, 51230]
    assert batch.rejects["reason"].tolist() == ["no_case"]
    assert batch.rejects["source_row"].tolist() == ["export.csv:7"]
    assert (
        "no case holds for this row and the rule has no `else`" in batch.rejects["message"].iloc[0]
    )


def test_an_amount_a_case_cannot_read_quarantines_only_where_it_decides() -> None:
    rows = [
        ["E1", "T1", "01/03/2026", "QUI", "5O"],  # the code already fails `REG`: bad amount later
        ["E2", "T1", "01/03/2026", "REG", "5O"],  # the amount decides the case: rejected here
    ]
    batch = transform(
        "ledger_entries", LEDGER_KIND, ["Pièce", "Compte", "Date", "Code", "Montant"], rows
    )

    assert batch.rejects["reason"].tolist() == ["bad_amount", "bad_amount"]
    assert (
        batch.rejects["message"]
        .iloc[1]
        .startswith("kind (cases): column 'Montant' holds '5O' — not an amount")
    )
    assert batch.rejects["message"].iloc[0].startswith("amount_cents ← column 'Montant': '5O'")


def test_amount_from_whichever_of_two_columns_is_filled() -> None:
    fields = {
        **LEDGER_COLUMNS,
        "kind": {"const": "rent_call"},
        "amount_cents": {
            "cases": [
                {"when": {"column": "Montant TTC", "blank": False}, "then": {"from": "Montant TTC"}}
            ],
            "else": {"then": {"from": "Montant HT", "negate": True}},
        },
    }
    rows = [
        ["E1", "T1", "01/03/2026", "120,00", "100,00"],
        ["E2", "T1", "01/03/2026", "", "50,00"],
        ["E3", "T1", "01/03/2026", "  ", ""],  # both blank: amount is required
    ]
    header = ["Pièce", "Compte", "Date", "Montant TTC", "Montant HT"]
    batch = transform("ledger_entries", fields, header, rows)

    assert batch.rows["amount_cents"].tolist() == [12000, -5000]
    assert str(batch.rows["amount_cents"].dtype) == "Int64"
    assert batch.rejects["reason"].tolist() == ["missing_value"]


def test_a_case_then_rule_with_a_map_rejects_its_unmapped_codes() -> None:
    fields = {
        **LEDGER_KIND,
        "kind": {
            "cases": [{"when": {"column": "Montant", "below": "-0,00"}, "value": "payment"}],
            "else": {"then": {"from": "Code", "map": {"QUI": "rent_call"}}},
        },
    }
    rows = [
        ["E1", "T1", "01/03/2026", "QUI", "5"],
        ["E2", "T1", "01/03/2026", "XX", "5"],
        ["E3", "T1", "01/03/2026", "XX", "-5"],
    ]
    batch = transform(
        "ledger_entries", fields, ["Pièce", "Compte", "Date", "Code", "Montant"], rows
    )

    assert batch.rows["kind"].tolist() == ["rent_call", "payment"]
    assert batch.rejects["reason"].tolist() == ["unmapped_value"]
    assert batch.rejects["source_row"].tolist() == ["export.csv:3"]


def test_cases_parse_each_distinct_value_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A million rows hold a few hundred dates: a case's date test parses those, not the rows."""
    import pipelines.lib.transforms as transforms

    seen: list[int] = []
    real = transforms.parse_dates

    def counting(values: pd.Series, *args: Any, **kwargs: Any) -> Any:
        seen.append(len(values))
        return real(values, *args, **kwargs)

    monkeypatch.setattr(transforms, "parse_dates", counting)
    rows = [[f"T{i}", "14/06/2026" if i % 2 else "16/06/2026"] for i in range(1_000)]
    fields = {"tenant_ref": "Réf", "status": TENANT_STATUS["status"]}

    batch = transform_on(RUN_DAY, "tenants", fields, ["Réf", "Sortie"], rows)

    assert batch.rows["status"].value_counts().to_dict() == {"left": 500, "leaving": 500}
    assert seen == [2]


def test_the_sign_indicator_is_one_of_the_columns_the_mapping_reads() -> None:
    mapping = EntityMapping.model_validate({"source": "export", "fields": SIGNED_LEDGER})

    assert EntityTransformer("ledger_entries", mapping).source_columns == [
        "Pièce",
        "Compte",
        "Date",
        "Montant",
        "Sens",
    ]


def test_payments_by_method_are_one_kind_and_a_payment_method_column() -> None:
    """The `datafixes/README.md` example: `payment` + `payment_method`, blank on other rows."""
    batch = transform(
        "ledger_entries",
        {
            "entry_ref": "Pièce",
            **ONE_TENANT_AND_DAY,
            "amount_cents": "Montant",
            "kind": {"from": "Code mvt", "map": {"QUI": "rent_call", "REG": "payment"}},
            "payment_method": {
                "from": "Mode de règlement",
                "map": {"PRLV": "sepa_debit", "VIR": "transfer", "CHQ": "cheque"},
            },
        },
        ["Pièce", "Code mvt", "Montant", "Mode de règlement"],
        [
            ["E1", "QUI", "512,30", ""],
            ["E2", "REG", "-500,00", "prlv"],
            ["E3", "REG", "-12,30", "CHQ"],
        ],
        rules={},
    )

    assert rejected(batch) == []
    assert column(batch, "kind") == ["rent_call", "payment", "payment"]
    assert column(batch, "payment_method") == [None, "sepa_debit", "cheque"]
