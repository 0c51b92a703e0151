"""`matches:` patterns (skip_rows and case conditions) over whole columns.

A datafix pattern is an RE2 regular expression, case ignored, searched anywhere in the cell
(`schemas.datafix.compile_pattern`). The engine matches a whole column at once; these tests
check it row by row against Google's RE2 binding (`re2.search` with the same options) on cells
chosen to tell implementations apart: accents and their case, empty and whitespace cells, line
ends inside a cell, anchors, classes and alternations, columns of repeated values and columns
of distinct ones.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
import re2

from pipelines.lib.transforms import EntityTransformer
from tests.pipelines.lib.transforming import (
    ACTIVE,
    ONE_TENANT_AND_DAY,
    mapping_of,
    raw_of,
    raw_table,
    transform,
)

CELLS = [
    "Total",
    "TOTAL général",
    "  total  ",
    "Sous-total",
    "ÉTÉ",
    "été 2024",
    "Ete",
    "",
    "   ",
    "ligne\nsuivante",
    "fin\n",
    "12345",
    "A12",
    "x" * 300,
    "Straße",
    "STRASSE",
    "ǅ digraphe",
    "ſ long s",
    "K kelvin",
    "日本語",
    "tab\there",
]

PATTERNS = [
    "^total",
    "total$",
    "^$",
    "^\\s*$",
    "^[0-9]{5}$",
    "été",
    "^é",
    "e.e",
    "suivante$",
    "^fin$",
    "(?m)^suivante",
    "(?s)ligne.suivante",
    "straße|strasse",
    "^ǆ",
    "^s long",
    "^k",
    "\\bkelvin\\b",
    "[[:alpha:]]{3}",
    "\\p{Han}+",
    "x{300}",
    "\\t",
]


def _reference(pattern: str, cell: str) -> bool:
    options = re2.Options()
    options.case_sensitive = False
    return re2.search(pattern, cell, options) is not None


def _skipped(pattern: str, cells: list[str]) -> set[str]:
    """The references of the rows `skip_rows` sets aside (the cell stripped, as the engine
    compares it)."""
    frame = pd.DataFrame({"Ref": [f"T{n}" for n in range(len(cells))], "Nom": cells}, dtype="str")
    mapping = mapping_of(
        "tenants", {"tenant_ref": "Ref"} | ACTIVE, skip_rows=[{"column": "Nom", "matches": pattern}]
    )
    batch = EntityTransformer("tenants", mapping).apply(raw_of(frame))
    kept = set(batch.rows["tenant_ref"]) | set(batch.rejects["key"])
    return set(frame["Ref"]) - kept


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("shape", ["distinct", "repeated"])
def test_skip_rows_matches_like_re2_cell_by_cell(pattern: str, shape: str) -> None:
    # distinct: every cell once (matched whole); repeated: each cell many times (matched once
    # per distinct value, then spread back over the rows)
    cells = CELLS if shape == "distinct" else CELLS * 40
    expected = {f"T{n}" for n, cell in enumerate(cells) if _reference(pattern, cell.strip())}
    assert _skipped(pattern, cells) == expected


def _kinds_by_case(pattern: str, codes: list[str]) -> list[Any]:
    rows = [[f"E{n}", code, "10,00"] for n, code in enumerate(codes)]
    mapping = mapping_of(
        "ledger_entries",
        {
            "entry_ref": "Ref",
            **ONE_TENANT_AND_DAY,
            "amount_cents": "Montant",
            "kind": {
                "cases": [{"when": {"column": "Code", "matches": pattern}, "value": "fee"}],
                "else": {"value": "rent"},
            },
        },
    )
    batch = EntityTransformer("ledger_entries", mapping).apply(
        raw_table(["Ref", "Code", "Montant"], rows)
    )
    assert batch.rejects.empty
    return batch.rows.set_index("entry_ref")["kind"].reindex([r[0] for r in rows]).tolist()


@pytest.mark.parametrize("pattern", ["^total", "^$", "^\\s*$", "été", "^k", "\\t"])
def test_case_condition_matches_like_re2_and_a_blank_cell_never_matches(pattern: str) -> None:
    kinds = _kinds_by_case(pattern, CELLS)
    expected = [
        "fee" if cell.strip() and _reference(pattern, cell.strip()) else "rent" for cell in CELLS
    ]
    assert kinds == expected


WHITE = ["", " ", "\t", "\u00a0", "\u2003\u3000", "\u200b", " x ", "\u0085", "\u180e", "\ufeff"]


def test_a_row_of_white_space_is_blank_as_str_strip_sees_it() -> None:
    # a row is blank (skipped, not rejected) when every cell is empty once stripped of the
    # characters Python's str.strip() removes: a zero-width space or a BOM is not one of them
    rows = [[first, second] for first in WHITE for second in WHITE]
    batch = transform("tenants", {"tenant_ref": "Ref"} | ACTIVE, ["Ref", "Nom"], rows)
    blank = sum(1 for first, second in rows if not first.strip() and not second.strip())
    assert blank == 36  # 6 of the 10 values are white space
    assert batch.skipped == blank
    assert batch.read == len(rows) - blank


def test_a_table_in_several_chunks_maps_as_one() -> None:
    # two files read one after the other: every column of the table comes in two chunks
    rows = [[f"T{n}", cell] for n, cell in enumerate(CELLS)]
    header = ["Ref", "Nom"]
    halves = [pd.DataFrame(part, columns=header, dtype="str") for part in (rows[:7], rows[7:])]
    chunked = pd.concat(halves, ignore_index=True)
    assert chunked["Nom"].array._pa_array.num_chunks == 2  # what this test is about
    whole = pd.DataFrame(rows, columns=header, dtype="str")
    mapping = mapping_of(
        "tenants",
        {"tenant_ref": "Ref", "full_name": "Nom"} | ACTIVE,
        skip_rows=[{"column": "Nom", "matches": "^total|^$"}],
    )
    batches = [EntityTransformer("tenants", mapping).apply(raw_of(f)) for f in (chunked, whole)]
    pd.testing.assert_frame_equal(batches[0].rows, batches[1].rows)
    pd.testing.assert_frame_equal(batches[0].rejects, batches[1].rejects)
    # Total, TOTAL général, "  total  ", and the empty and white-space cells (stripped: "")
    assert batches[0].skipped == batches[1].skipped == 5
