"""The rules every source kind shares: lineage and fingerprints (header and text rules are
exercised through the readers in test_files_client.py)."""

from __future__ import annotations

import pandas as pd

from connectors.rawtable import frame_fingerprint, key_lineage, line_lineage


def test_key_lineage_names_each_key() -> None:
    frame = pd.DataFrame({"ID": ["7", "8"], "Site": ["A", "B"]}, dtype="str")
    lineage = key_lineage(frame, "orders", ["id", "site"], columns=["ID", "Site"])
    assert lineage.tolist() == ["orders:id=7,site=A", "orders:id=8,site=B"]


def test_key_lineage_can_write_a_single_key_bare() -> None:
    frame = pd.DataFrame({"Id": ["0WO1"]}, index=[5], dtype="str")
    assert key_lineage(frame, "WorkOrder", ["Id"], named=False).tolist() == ["WorkOrder:0WO1"]
    assert key_lineage(frame, "WorkOrder", ["Id"]).tolist() == ["WorkOrder:Id=0WO1"]
    assert list(key_lineage(frame, "WorkOrder", ["Id"]).index) == [0]


def test_line_lineage_numbers_rows() -> None:
    assert line_lineage("book.xlsx:Sheet:", [3, 4]).tolist() == [
        "book.xlsx:Sheet:3",
        "book.xlsx:Sheet:4",
    ]
    assert line_lineage("t:row ", range(1, 1)).tolist() == []


def test_frame_fingerprint_sees_labels_values_and_count() -> None:
    frame = pd.DataFrame({"a": ["1", "2"]}, dtype="str")
    assert frame_fingerprint(frame) == frame_fingerprint(frame.copy())
    assert frame_fingerprint(frame) != frame_fingerprint(frame.rename(columns={"a": "b"}))
    assert frame_fingerprint(frame) != frame_fingerprint(frame.iloc[:1])
