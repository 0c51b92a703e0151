"""The great-expectations contracts (`pipelines.lib.quality`) on small canonical frames.

Every frame here is built from the specs in `schemas.canonical`, with the dtypes normalisation
produces: a valid frame passes for every entity, and each kind of rule fails on the row it should,
naming that row's natural key.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from pipelines.lib.quality import (
    ContractResult,
    contract_description,
    contract_expectations,
    row_rule_breaks,
    run_contract,
    run_contract_chunks,
)
from schemas.canonical import (
    CREDIT_KINDS,
    DEBIT_KINDS,
    ENTITIES,
    LEDGER_ENTRIES,
    LEDGER_KINDS,
    LINEAGE_COLUMNS,
    ColumnType,
    EntitySpec,
)

REPO_ROOT = next(
    path for path in Path(__file__).resolve().parents if (path / "pyproject.toml").is_file()
)
ROWS = 3  # rows 0 and 1 are fully filled; row 2 leaves every optional column empty
LANDLORD = "acme"
DAY = pd.Timestamp("2025-03-01")


def key_of(spec: EntitySpec, row: int) -> str:
    """The natural key of row `row` in `valid_frame(spec)`: T0, T1, E0, ..."""
    return f"{spec.key[0].upper()}{row}"


def column_values(spec: EntitySpec, name: str) -> pd.api.extensions.ExtensionArray | pd.Series:
    """Valid values for one column, with the dtype the normalise stage gives it."""
    column = spec.column(name)
    present = [True, True, column.required]
    if name == spec.key:
        values: list = [key_of(spec, row) for row in range(ROWS)]
    elif column.type is ColumnType.CHOICE:
        values = [column.choices[0], column.choices[-1], column.choices[1 % len(column.choices)]]
    elif column.type in (ColumnType.INTEGER, ColumnType.CENTS):
        low = column.min_value if column.min_value is not None else 1
        values = [low, low if column.max_value is None else column.max_value, low]
    elif column.type is ColumnType.BOOLEAN:
        values = [True, False, True]
    else:
        values = [f"{name}-{row}" for row in range(ROWS)]
    values = [value if keep else None for value, keep in zip(values, present, strict=True)]
    if column.type in (ColumnType.TEXT, ColumnType.CHOICE):
        return pd.array(values, dtype="string")
    if column.type in (ColumnType.INTEGER, ColumnType.CENTS):
        return pd.array(values, dtype="Int64")
    if column.type is ColumnType.BOOLEAN:
        return pd.array(values, dtype="boolean")
    # Same day on every row, so every "not before" rule holds (it allows equality).
    dates = pd.Series([DAY if keep else pd.NaT for keep in present], dtype="datetime64[ns]")
    return dates.dt.tz_localize("UTC") if column.type is ColumnType.DATETIME else dates


def valid_frame(entity: str) -> pd.DataFrame:
    """A canonical frame of `entity` that satisfies its contract, lineage columns included."""
    spec = ENTITIES[entity]
    frame = pd.DataFrame({name: column_values(spec, name) for name in spec.column_names})
    for rule in spec.rules:
        if rule.kind == "sign_matches_kind":
            kind_column, amount_column = rule.columns
            sign = frame[kind_column].isin(DEBIT_KINDS).map({True: 1, False: -1})
            frame[amount_column] = (frame[amount_column].abs() * sign).astype("Int64")
    lineage = {
        "landlord_id": pd.array([LANDLORD] * ROWS, dtype="string"),
        "source_name": pd.array(["export"] * ROWS, dtype="string"),
        "source_row": pd.array([f"export.csv:{row + 2}" for row in range(ROWS)], dtype="string"),
        "datafix_sha": pd.array(["0" * 64] * ROWS, dtype="string"),
        "run_id": pd.array(["run-1"] * ROWS, dtype="string"),
        "loaded_at": pd.Series([pd.Timestamp("2026-01-02", tz="UTC")] * ROWS),
        "row_hash": pd.array([f"h{row}" for row in range(ROWS)], dtype="string"),
        "deleted_at": pd.Series([pd.NaT] * ROWS, dtype="datetime64[ns, UTC]"),
    }
    assert set(lineage) == set(LINEAGE_COLUMNS)
    return frame.assign(**lineage)


def failing(result: ContractResult) -> dict[str, dict]:
    return {failure["expectation"]: failure for failure in result.failures}


# --- Valid data ---------------------------------------------------------------------------


@pytest.mark.parametrize("entity", list(ENTITIES))
def test_a_valid_frame_passes(entity: str) -> None:
    frame = valid_frame(entity)
    assert frame.iloc[ROWS - 1].isna().any(), "the last row must leave optional columns empty"

    result = run_contract(entity, frame)

    assert result.failures == []
    assert result.passed is True
    assert result.rows == ROWS
    assert result.statistics["evaluated_expectations"] == len(contract_description(entity))
    assert result.statistics["successful_expectations"] == len(contract_description(entity))
    assert result.summary() == (
        f"{entity}: all {len(contract_description(entity))} expectations passed on {ROWS} rows"
    )


# --- Each kind of rule fails on the right rows -----------------------------------------------


@dataclass(frozen=True)
class Breach:
    entity: str
    change: Callable[[pd.DataFrame], pd.DataFrame]
    expectation: str
    keys: list[str]


def set_cell(column: str, row: int, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[row, column] = value
        return frame

    return change


BREACHES = {
    "duplicate_key": Breach(
        "tenants", set_cell("tenant_ref", 1, "T0"), "tenant_ref_unique", ["T0"]
    ),
    "null_key_named_by_source_row": Breach(
        "invoices",
        set_cell("invoice_ref", 1, pd.NA),
        "invoice_ref_not_null",
        ["<no invoice_ref: export.csv:3>"],
    ),
    "null_required": Breach(
        "ledger_entries", set_cell("tenant_ref", 1, pd.NA), "tenant_ref_not_null", ["E1"]
    ),
    "null_required_date": Breach(
        "work_orders", set_cell("ordered_date", 0, pd.NaT), "ordered_date_not_null", ["O0"]
    ),
    "out_of_set_choice": Breach(
        "work_orders", set_cell("status", 1, "lost"), "status_in_set", ["O1"]
    ),
    "rating_above_range": Breach(
        "completions", set_cell("rating", 0, 6), "rating_in_range", ["C0"]
    ),
    "rating_below_range": Breach(
        "completions", set_cell("rating", 1, 0), "rating_in_range", ["C1"]
    ),
    "negative_cents": Breach(
        "quotes", set_cell("amount_cents", 1, -1), "amount_cents_in_range", ["Q1"]
    ),
    "move_out_before_move_in": Breach(
        "tenants",
        set_cell("move_out_date", 1, DAY - pd.Timedelta(days=1)),
        "move_out_after_move_in",
        ["T1"],
    ),
    "instalment_above_total": Breach(
        "repayment_plans",
        set_cell("instalment_cents", 0, 10_000_000),
        "instalment_within_total",
        ["P0"],
    ),
    "credit_with_positive_amount": Breach(
        "ledger_entries", set_cell("amount_cents", 1, 500), "sign_matches_kind", ["E1"]
    ),
    "debit_with_negative_amount": Breach(
        "ledger_entries", set_cell("amount_cents", 0, -500), "sign_matches_kind", ["E0"]
    ),
    "two_landlord_ids": Breach(
        "commitments", set_cell("landlord_id", 2, "other"), "landlord_id_single_value", []
    ),
}


@pytest.mark.parametrize("breach", BREACHES.values(), ids=BREACHES.keys())
def test_each_rule_fails_on_the_rows_that_break_it(breach: Breach) -> None:
    frame = breach.change(valid_frame(breach.entity))

    result = run_contract(breach.entity, frame)

    assert result.passed is False
    assert list(failing(result)) == [breach.expectation], result.summary()
    failure = failing(result)[breach.expectation]
    assert failure["failing_keys"] == breach.keys
    assert all(type(key) is str for key in failure["failing_keys"])
    assert result.failing_keys() == breach.keys


def judged(result: ContractResult) -> list[tuple]:
    """What a verdict says, failure by failure (not its timing statistics)."""
    return [
        (
            failure["expectation"],
            failure["unexpected_count"],
            failure["failing_keys"],
            failure.get("sample_values"),
            failure.get("observed_value"),
        )
        for failure in [*result.failures, *result.warnings]
    ]


@pytest.mark.parametrize("size", [1, 2])
@pytest.mark.parametrize("breach", BREACHES.values(), ids=BREACHES.keys())
def test_chunk_by_chunk_the_verdict_is_that_of_the_whole_frame(breach: Breach, size: int) -> None:
    # GX judges the first chunk, the later ones are judged vectorised (`_chunk_contract`)
    frame = breach.change(valid_frame(breach.entity))
    whole = run_contract(breach.entity, frame)

    def chunks() -> list[pd.DataFrame]:
        return [frame.iloc[s : s + size].reset_index(drop=True) for s in range(0, len(frame), size)]

    chunked = run_contract_chunks(breach.entity, chunks)

    assert chunked.passed is False
    assert judged(chunked) == judged(whole)
    assert chunked.statistics["unsuccessful_expectations"] == 1


def test_chunk_by_chunk_failures_add_up_across_chunks() -> None:
    # six rows in chunks of two: breaks in the first (GX) and in later (vectorised) chunks, a
    # key repeated across chunks, a rule set to `warn`
    base = valid_frame("ledger_entries")
    frame = pd.concat([base, base], ignore_index=True)
    frame["entry_ref"] = pd.array(["E0", "E1", "E2", "E3", "E1", "E5"], dtype="string")
    frame.loc[0, "tenant_ref"] = pd.NA
    frame.loc[5, "tenant_ref"] = pd.NA
    frame.loc[3, "amount_cents"] = -frame.loc[3, "amount_cents"]
    frame.loc[4, "kind"] = "lost"
    warn = ["sign_matches_kind"]
    whole = run_contract("ledger_entries", frame, warn=warn)

    def chunks() -> list[pd.DataFrame]:
        return [frame.iloc[s : s + 2].reset_index(drop=True) for s in range(0, 6, 2)]

    chunked = run_contract_chunks("ledger_entries", chunks, warn=warn)

    assert judged(chunked) == judged(whole)
    assert {f["expectation"] for f in whole.failures} == {
        "entry_ref_unique",
        "tenant_ref_not_null",
        "kind_in_set",
    }
    assert [f["expectation"] for f in whole.warnings] == ["sign_matches_kind"]


# --- Ledger kinds and their sign ------------------------------------------------------------

SIGNED_KINDS = [
    pytest.param(kind, amount, id=f"{kind}{'+' if amount > 0 else '-'}")
    for kind in LEDGER_KINDS
    for amount in (500, -500)
]


@pytest.mark.parametrize(("kind", "amount"), SIGNED_KINDS)
def test_sign_matches_kind_follows_the_ledger_kinds_table(kind: str, amount: int) -> None:
    allowed = ("+" if amount > 0 else "-") in LEDGER_KINDS[kind].signs
    frame = valid_frame("ledger_entries")
    frame.loc[0, "kind"] = kind
    frame.loc[0, "amount_cents"] = amount

    breaks = row_rule_breaks(LEDGER_ENTRIES, frame)["sign_matches_kind"]
    result = run_contract("ledger_entries", frame)

    assert breaks.tolist() == [not allowed, False, False]
    if allowed:
        assert result.passed, result.summary()
    else:
        assert list(failing(result)) == ["sign_matches_kind"], result.summary()
        assert failing(result)["sign_matches_kind"]["failing_keys"] == ["E0"]


def test_a_zero_amount_never_breaks_the_sign_rule() -> None:
    frame = pd.DataFrame(
        {
            "kind": pd.array(list(LEDGER_KINDS), dtype="str"),
            "amount_cents": pd.array([0] * len(LEDGER_KINDS), dtype="Int64"),
        }
    )
    assert not row_rule_breaks(LEDGER_ENTRIES, frame)["sign_matches_kind"].any()


def test_the_kind_choices_are_the_ledger_kinds_table() -> None:
    assert LEDGER_ENTRIES.column("kind").choices == tuple(LEDGER_KINDS)
    assert all(kind.signs and kind.signs <= {"+", "-"} for kind in LEDGER_KINDS.values())
    both = {name for name, kind in LEDGER_KINDS.items() if kind.signs == {"+", "-"}}
    assert set(DEBIT_KINDS) | set(CREDIT_KINDS) | both == set(LEDGER_KINDS)
    assert not set(DEBIT_KINDS) & set(CREDIT_KINDS)
    assert "charge_regularisation" in both
    assert LEDGER_KINDS["refund_to_tenant"].signs == {"+"}  # paying out uses up a credit
    assert LEDGER_KINDS["refund"].signs == {"-"}  # credited to the account, as before
    existing = ("rent_call", "rent", "service_charges", "charge_regularisation", "fee")
    existing += ("rejected_debit", "payment", "housing_aid", "refund", "credit_note")
    assert set(existing) <= set(LEDGER_KINDS)


def test_duplicate_key_counts_both_rows() -> None:
    frame = set_cell("tenant_ref", 1, "T0")(valid_frame("tenants"))

    failure = failing(run_contract("tenants", frame))["tenant_ref_unique"]

    assert failure["unexpected_count"] == 2
    assert failure["column"] == "tenant_ref"


def test_out_of_set_choice_shows_the_bad_value() -> None:
    frame = set_cell("status", 1, "lost")(valid_frame("work_orders"))

    failure = failing(run_contract("work_orders", frame))["status_in_set"]

    assert failure["sample_values"] == ["lost"]
    assert failure["unexpected_count"] == 1


def test_two_landlords_are_named() -> None:
    frame = set_cell("landlord_id", 2, "other")(valid_frame("commitments"))

    failure = failing(run_contract("commitments", frame))["landlord_id_single_value"]

    assert failure["observed_value"] == 2
    assert failure["sample_values"] == ["acme", "other"]


def test_an_empty_frame_fails_on_its_row_count() -> None:
    frame = valid_frame("ledger_entries").iloc[0:0]

    result = run_contract("ledger_entries", frame)

    assert result.passed is False
    assert result.rows == 0
    assert failing(result)["row_count"]["observed_value"] == 0
    assert result.summary().startswith("ledger_entries: ")
    assert "row_count: observed 0" in result.summary()


def test_a_missing_column_is_reported_not_raised() -> None:
    frame = valid_frame("quotes").drop(columns=["status"])

    result = run_contract("quotes", frame)

    assert result.passed is False
    assert set(failing(result)) == {"status_not_null", "status_in_set"}
    assert 'The column "status"' in failing(result)["status_in_set"]["error"]


# --- Result shape --------------------------------------------------------------------------


def _tenants_moving_out_before_moving_in() -> pd.DataFrame:
    frame = valid_frame("tenants")
    frame["move_out_date"] = DAY - pd.Timedelta(days=30)  # row 2 has no move-in date: not judged
    return frame


def _twelve_completions_rated_nine() -> pd.DataFrame:
    frame = pd.concat([valid_frame("completions")] * 4, ignore_index=True)
    frame["completion_ref"] = pd.array([f"C{row}" for row in range(len(frame))], dtype="string")
    frame["rating"] = pd.array([9] * len(frame), dtype="Int64")
    return frame


@pytest.mark.parametrize(
    ("entity", "make_frame", "expected"),
    [
        pytest.param(
            "tenants",
            _tenants_moving_out_before_moving_in,
            "tenants: 1 of 14 expectations failed (move_out_after_move_in: T0, T1)",
            id="names-the-rule-and-keys",
        ),
        pytest.param(
            "completions",
            _twelve_completions_rated_nine,
            "completions: 1 of 8 expectations failed"
            " (rating_in_range: C0, C1, C2, C3, C4 (12 rows))",
            id="five-keys-and-the-row-count",
        ),
    ],
)
def test_summary(entity: str, make_frame: Callable[[], pd.DataFrame], expected: str) -> None:
    result = run_contract(entity, make_frame())

    assert result.summary() == expected


def test_failing_keys_are_capped_per_failure() -> None:
    frame = pd.concat([valid_frame("ledger_entries")] * 40, ignore_index=True)
    frame["entry_ref"] = pd.array([f"E{row}" for row in range(len(frame))], dtype="string")
    frame["kind"] = "unknown"

    failure = failing(run_contract("ledger_entries", frame))["kind_in_set"]

    assert failure["unexpected_count"] == 120
    assert failure["failing_keys"] == [f"E{row}" for row in range(50)]


def test_failing_keys_is_an_ordered_union_capped_at_200() -> None:
    failures = [
        {"expectation": f"rule_{n}", "failing_keys": [f"K{k}" for k in range(n * 40, n * 40 + 50)]}
        for n in range(6)
    ]
    result = ContractResult("tenants", False, failures, {"evaluated_expectations": 14}, 300)

    keys = result.failing_keys()

    assert len(keys) == 200
    assert keys[:3] == ["K0", "K1", "K2"]
    assert len(set(keys)) == 200


def test_the_result_is_json_safe() -> None:
    frame = valid_frame("tenants")
    frame.loc[1, "tenant_ref"] = "T0"
    frame.loc[0, "household_size"] = 99
    frame.loc[2, "landlord_id"] = "other"

    result = run_contract("tenants", frame)

    assert len(result.failures) == 3
    json.dumps({"failures": result.failures, "statistics": result.statistics})
    for failure in result.failures:
        assert type(failure["unexpected_count"]) is int
    assert all(type(value) in (int, float) for value in result.statistics.values())


def test_an_unknown_entity_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown entity 'tenant'"):
        run_contract("tenant", valid_frame("tenants"))


def test_keys_are_found_whatever_the_frame_index() -> None:
    frame = valid_frame("tenants")
    frame.index = pd.Index(["z", "y", "x"])
    frame.loc["y", "status"] = "gone"

    failure = failing(run_contract("tenants", frame))["status_in_set"]

    assert failure["failing_keys"] == ["T1"]


def test_the_frame_given_is_left_untouched() -> None:
    frame = valid_frame("ledger_entries")
    before = frame.copy()

    run_contract("ledger_entries", frame)

    pd.testing.assert_frame_equal(frame, before)


def test_runs_from_several_threads_do_not_mix() -> None:
    broken = set_cell("tenant_ref", 1, "T0")(valid_frame("tenants"))
    jobs = [("tenants", broken), *((entity, valid_frame(entity)) for entity in ENTITIES)] * 3

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda job: run_contract(*job), jobs))

    assert [result.passed for result in results] == [
        entity != "tenants" or frame is not broken for entity, frame in jobs
    ]


# --- Description ---------------------------------------------------------------------------


def test_the_suite_is_derived_from_the_spec() -> None:
    names = [item.name for item in contract_expectations("tenants")]

    assert names == [
        "row_count",
        "tenant_ref_not_null",
        "tenant_ref_unique",
        "status_not_null",
        "status_in_set",
        "income_band_in_set",
        "age_band_in_set",
        "housing_aid_in_set",
        "payment_method_in_set",
        "preferred_channel_in_set",
        "household_size_in_range",
        "formal_demands_in_range",
        "landlord_id_single_value",
        "move_out_after_move_in",
    ]


@pytest.mark.parametrize("entity", list(ENTITIES))
def test_every_rule_and_choice_column_is_described(entity: str) -> None:
    spec = ENTITIES[entity]
    lines = contract_description(entity)

    for rule in spec.rules:
        assert any(line.startswith(f"{rule.name}: {rule.description}") for line in lines)
    for column in spec.columns:
        if column.type is ColumnType.CHOICE:
            assert any(line.startswith(f"{column.name}_in_set: ") for line in lines)


def test_importing_and_describing_does_not_import_great_expectations() -> None:
    code = (
        "import sys, pipelines.lib.quality as q; q.contract_description('ledger_entries');"
        " print('great_expectations' in sys.modules)"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )

    assert completed.stdout.strip() == "False"


def test_the_datafix_guide_lists_every_ledger_kind_with_its_sign() -> None:
    guide = (REPO_ROOT / "datafixes" / "README.md").read_text(encoding="utf-8")
    section = guide.split("### Ledger kinds and their sign", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|") for line in section.splitlines() if line.startswith("| `")]
    listed = {cells[1].strip().strip("`"): cells[2].strip() for cells in rows}
    assert listed == {name: kind.sign_label for name, kind in LEDGER_KINDS.items()}
