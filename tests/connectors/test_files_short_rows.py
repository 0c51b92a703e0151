"""Short and torn CSV lines found on random files, against the csv module's own count.

`read_csv` reports a line with fewer fields than the header (`short_row`), or the last line of
a file without a final line end (`truncated_row`), in `RawTable.faults`, so the transform
quarantines it rather than load it padded with blanks. The reader counts fields on the raw bytes
where no quote is involved and asks the csv module elsewhere; these files mix both (quoted
separators, doubled quotes, values spanning lines, blank and whitespace-only lines, CRLF and LF,
cp1252 and UTF-8, `;` and `|`), and the expected faults are computed here by reading the same
bytes with Python's csv module, record by record.
"""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

import pytest

from connectors.files.client import read_csv

HEADER = ["Réf", "Nom", "Montant", "Date", "Commentaire"]

PLAIN = ["", "", "R1", "Zoé", "12,50", "01/03/2026", "note", "  ", "Çà et là"]
QUOTED = ['"a{sep}b"', '"dit ""oui"""', '"deux\nlignes"', '"sur\r\ndeux"', '""']


def _field(chooser: random.Random, separator: str, quotes: bool) -> str:
    if quotes and chooser.random() < 0.15:
        return chooser.choice(QUOTED).replace("{sep}", separator)
    return chooser.choice(PLAIN)


def _record(chooser: random.Random, separator: str, quotes: bool) -> str:
    roll = chooser.random()
    if roll < 0.03:
        return ""  # a blank line
    if roll < 0.05:
        return "   "  # whitespace only: one field
    count = len(HEADER) if roll < 0.75 else chooser.randint(1, len(HEADER) - 1)
    fields = [_field(chooser, separator, quotes) for _ in range(count)]
    if count == len(HEADER) and chooser.random() < 0.6:
        fields[-1] = ""  # the last column blank, as most exports leave it
    if chooser.random() < 0.1:
        fields[0] = "R" + str(chooser.randint(1, 99))  # never a blank first field
    return separator.join(fields)


def _expected_faults(data: bytes, encoding: str, separator: str) -> dict[int, tuple[str, int]]:
    """{first physical line: (reason, fields)} of every short record, by the csv module."""
    text = data.decode(encoding)
    records = csv.reader(io.StringIO(text, newline=""), delimiter=separator)
    found: list[tuple[int, list[str]]] = []
    start = 1
    for fields in records:
        found.append((start, fields))
        start = records.line_num + 1
    header, body = found[0], found[1:]
    assert header[1] == HEADER
    ends_with_newline = text.endswith("\n")
    faults: dict[int, tuple[str, int]] = {}
    for position, (line, fields) in enumerate(body):
        if len(fields) >= len(HEADER) or all(field == "" for field in fields):
            continue  # whole, or a blank line (a row of blanks, not a short one)
        last = position == len(body) - 1
        reason = "truncated_row" if last and not ends_with_newline else "short_row"
        faults[line] = (reason, len(fields))
    return faults


@pytest.mark.parametrize("seed", range(24))
def test_short_and_torn_lines_match_the_csv_module(tmp_path: Path, seed: int) -> None:
    chooser = random.Random(seed)
    separator = chooser.choice([";", ";", "|"])
    encoding = chooser.choice(["cp1252", "utf-8"])
    newline = chooser.choice(["\r\n", "\n"])
    quotes = seed % 3 != 0  # every third file has no quote at all
    lines = [separator.join(HEADER)]
    lines.append(separator.join(["R0", "Zoé", "1", "01/01/2026", "x"]))  # a whole first line
    lines += [_record(chooser, separator, quotes) for _ in range(chooser.randint(20, 300))]
    lines.append("R9" + separator + "fin")  # a short line, last
    content = newline.join(lines) + (newline if seed % 2 else "")  # every other: no final end
    data = content.encode(encoding)
    path = tmp_path / "export.csv"
    path.write_bytes(data)

    table = read_csv([path], encoding=encoding, separator=separator)

    expected = _expected_faults(data, encoding, separator)
    assert expected, "each file holds at least one short line"
    faults = table.faults
    assert faults is not None
    lines_of = table.source_rows.loc[faults.index].str.rsplit(":", n=1).str[1].astype(int)
    got = {
        int(line): (reason, message)
        for line, reason, message in zip(lines_of, faults["reason"], faults["message"], strict=True)
    }
    assert {line: reason for line, (reason, _) in got.items()} == {
        line: reason for line, (reason, _) in expected.items()
    }
    for line, (_, message) in got.items():
        count = expected[line][1]
        assert message.startswith(f"export.csv:{line}: ")
        assert f"{count} fields where the header has {len(HEADER)}" in message


def test_a_file_without_quotes_or_short_lines_has_no_faults(tmp_path: Path) -> None:
    # the usual export: the last column mostly blank, a blank line and a total at the bottom
    rows = [f"R{n};Nom {n};{n},50;01/03/2026;" for n in range(2000)]
    path = tmp_path / "export.csv"
    path.write_bytes(
        "\r\n".join([";".join(HEADER), *rows, "", "Total;;;999,00;"]).encode("cp1252") + b"\r\n"
    )
    table = read_csv([path], encoding="cp1252", separator=";")
    assert table.faults is None
    assert len(table) == 2002
    assert table.frame["Commentaire"].eq("").all()
