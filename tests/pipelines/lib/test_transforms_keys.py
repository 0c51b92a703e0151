"""Repeated keys in exports listed in key order, and in no order.

Most exports list their references in order; the engine then sees at once that no key repeats.
These tests check that a repeat is still found wherever it stands (next to its twin in a sorted
export, far from it in an unsorted one, after a blank key), and that only the later rows are
quarantined as `duplicate_key`, naming the first one's line.
"""

from __future__ import annotations

import pytest

from pipelines.lib.transforms import NormalisedBatch
from tests.pipelines.lib.transforming import ACTIVE, transform


def batch_of(refs: list[str]) -> NormalisedBatch:
    return transform("tenants", {"tenant_ref": "Ref"} | ACTIVE, ["Ref"], [[ref] for ref in refs])


@pytest.mark.parametrize(
    ("refs", "duplicates"),
    [
        pytest.param(["T1", "T2", "T3", "T4"], {}, id="sorted-unique"),
        pytest.param(["T1", "T2", "T2", "T3"], {"export.csv:4": "export.csv:3"}, id="sorted-twin"),
        pytest.param(["T1", "", "T1", "T2"], {"export.csv:4": "export.csv:2"}, id="blank-between"),
        pytest.param(["T3", "T1", "T2", "T3"], {"export.csv:5": "export.csv:2"}, id="unsorted"),
        pytest.param(["T1", "T10", "T2", "T20"], {}, id="text-order-unique"),
        pytest.param(
            ["A", "B", "B", "B", "C"],
            {"export.csv:4": "export.csv:3", "export.csv:5": "export.csv:3"},
            id="sorted-three-times",
        ),
    ],
)
def test_a_repeated_key_is_quarantined_wherever_it_stands(
    refs: list[str], duplicates: dict[str, str]
) -> None:
    batch = batch_of(refs)
    found = batch.rejects.loc[batch.rejects["reason"] == "duplicate_key"]
    first = found["message"].str.extract(r"appears at (\S+)")[0]
    assert dict(zip(found["source_row"], first, strict=True)) == duplicates
    kept = set(batch.rows["tenant_ref"])
    assert kept == {ref for ref in refs if ref}
