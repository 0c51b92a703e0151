"""A CSV read chunk by chunk (`read_csv(stream=True)`, issue 13) gives exactly what a whole
read gives: the same text cells, the same lineage (`file.csv:12`), the same faults and the same
fingerprint, whatever the chunk size; a file Arrow's streaming reader cannot read exactly
(quotes) is read whole, and a line it refuses deep in the file is picked up from the whole read.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from connectors.errors import SourceDataError
from connectors.files.client import read_csv
from connectors.rawtable import RawTable


def joined(table: RawTable, size: int) -> RawTable:
    """The chunks of `table` put back together (faults re-indexed to the whole table)."""
    frames, rows, faults = [], [], []
    offset = 0
    for chunk in table.chunks(size):
        assert len(chunk.frame) <= size
        frames.append(chunk.frame)
        rows.append(chunk.source_rows)
        if chunk.faults is not None:
            faults.append(chunk.faults.set_axis(chunk.faults.index + offset))
        offset += len(chunk.frame)
    return RawTable(
        frame=pd.concat(frames, ignore_index=True),
        source_rows=pd.concat(rows, ignore_index=True),
        fingerprint=table.fingerprint,
        origin=table.origin,
        faults=pd.concat(faults) if faults else None,
    )


def assert_same(streamed: RawTable, whole: RawTable, size: int) -> None:
    back = joined(streamed, size)
    assert len(streamed) == len(whole)
    assert streamed.fingerprint == whole.fingerprint
    pd.testing.assert_frame_equal(back.frame, whole.frame)
    assert list(back.frame.columns) == list(whole.frame.columns)
    pd.testing.assert_series_equal(back.source_rows, whole.source_rows)
    if whole.faults is None:
        assert back.faults is None
    else:
        assert back.faults is not None
        pd.testing.assert_frame_equal(back.faults, whole.faults)


def write(path: Path, lines: list[str], *, encoding: str = "utf-8", newline: str = "\n") -> Path:
    path.write_bytes((newline.join(lines) + newline).encode(encoding))
    return path


@pytest.mark.parametrize("size", [1, 3, 1000])
def test_a_plain_file_streams_as_it_reads_whole(tmp_path: Path, size: int) -> None:
    lines = ["Export du 01/03/2026", "Réf;Montant;Date d'entrée"]
    lines += [f"R{i};{i},50;0{i % 9 + 1}/03/2026" for i in range(1, 26)]
    lines += [";;"]  # a blank row, kept as a row of blanks
    path = write(tmp_path / "plain.csv", lines)
    streamed = read_csv([path], stream=True)
    assert streamed.stream is not None and len(streamed.frame) == 0
    whole = read_csv([path])
    assert_same(streamed, whole, size)
    # lineage by hand: the first data row is line 3, the blank row line 28
    back = joined(streamed, size)
    assert back.source_rows.iloc[0] == "plain.csv:3" and back.source_rows.iloc[-1] == "plain.csv:28"
    assert back.frame.iloc[-1].tolist() == ["", "", ""]


@pytest.mark.parametrize(("encoding", "newline"), [("cp1252", "\r\n"), ("utf-8", "\r\n")])
def test_windows_files_stream_too(tmp_path: Path, encoding: str, newline: str) -> None:
    lines = ["Nom;Commune"] + [f"Hélène {i};Saint-Étienne" for i in range(40)]
    path = write(tmp_path / "w.csv", lines, encoding=encoding, newline=newline)
    streamed = read_csv([path], stream=True)
    assert streamed.stream is not None
    assert_same(streamed, read_csv([path]), 7)
    assert joined(streamed, 7).frame.iloc[0].tolist() == ["Hélène 0", "Saint-Étienne"]


def test_a_file_with_quotes_is_read_whole(tmp_path: Path) -> None:
    lines = ["Réf;Libellé"] + [f'R{i};"loyer; mars"' for i in range(10)]
    path = write(tmp_path / "q.csv", lines)
    streamed = read_csv([path], stream=True)
    assert streamed.stream is None
    assert_same(streamed, read_csv([path]), 4)
    assert streamed.frame["Libellé"].iloc[0] == "loyer; mars"


def test_a_short_line_deep_in_a_streamed_file_is_reported_as_in_a_whole_read(
    tmp_path: Path,
) -> None:
    """Arrow reads 4 MB blocks: a short line at line 150,001 of a ~7 MB file stops it after
    some chunks were handed out; the rest comes from the whole read, which flags that line."""
    lines = ["Ref;Tenant;Amount;Label"]
    lines += [f"E{i:07d};T{i % 997:05d};{i % 1000},25;rent of march {i}" for i in range(200_000)]
    lines[150_000] = "E0149999;T00042"  # line 150,001: 2 fields where the header has 4
    path = write(tmp_path / "big.csv", lines)
    streamed = read_csv([path], stream=True)
    assert streamed.stream is not None
    whole = read_csv([path])
    assert whole.faults is not None and whole.faults["reason"].tolist() == ["short_row"]
    assert_same(streamed, whole, 40_000)
    back = joined(streamed, 40_000)
    assert back.faults is not None
    assert back.source_rows.loc[back.faults.index].tolist() == ["big.csv:150001"]


def test_a_streamed_file_of_blank_lines_has_no_data_rows(tmp_path: Path) -> None:
    path = write(tmp_path / "blank.csv", ["Ref;Amount", ";", ";"])
    streamed = read_csv([path], stream=True)
    assert streamed.stream is not None
    with pytest.raises(SourceDataError, match=r"blank\.csv: no data rows"):
        list(streamed.chunks(1))
    with pytest.raises(SourceDataError, match=r"blank\.csv: no data rows"):
        read_csv([path])
