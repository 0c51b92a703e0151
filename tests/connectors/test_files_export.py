"""Formula neutralisation (OWASP ASVS 1.2.10) and the atomic CSV/xlsx writers."""

from __future__ import annotations

import csv
import datetime as dt
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from connectors.files.export import (
    clean_stale_temporaries,
    is_temporary,
    neutralise,
    write_csv_atomic,
    write_xlsx_atomic,
)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An empty folder of its own (tmp_path also holds the hub's home)."""
    path = tmp_path / "out"
    path.mkdir()
    return path


CASES: list[tuple[str, Any, Any]] = [
    ("formula", "=1+1", "'=1+1"),
    ("hyperlink-formula", '=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
    ("plus", "+33 1 23", "'+33 1 23"),
    ("minus-as-text", "-12", "'-12"),
    ("minus-as-int", -12, -12),
    ("minus-as-decimal", Decimal("-12.50"), Decimal("-12.50")),
    ("at-sum", "@SUM(A1:A9)", "'@SUM(A1:A9)"),
    ("tab", "\t=1", "'\t=1"),
    ("carriage-return", "\r=1", "'\r=1"),
    ("nul", "\0x", "'\0x"),
    ("quote-already", "'=1", "'=1"),
    ("plain-text", "Loyer mars", "Loyer mars"),
    ("formula-later-in-text", "a=1", "a=1"),
    ("empty-text", "", ""),
    ("none", None, None),
    ("date", dt.date(2026, 3, 1), dt.date(2026, 3, 1)),
    ("bool", True, True),
    ("zero", 0, 0),
]


@pytest.mark.parametrize(("value", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_neutralise(value: Any, expected: Any) -> None:
    result = neutralise(value)
    assert result == expected and type(result) is type(expected)


ROWS = [
    ["=cmd|' /C calc'!A0", -12, "-12", Decimal("1234.56"), dt.date(2026, 3, 1)],
    ["@SUM(A1:A2)", 0, "ok", Decimal("-0.50"), None],
]


def test_csv_read_back_shows_neutralised_text_and_plain_numbers(folder: Path) -> None:
    path = write_csv_atomic(
        folder / "out.csv", ["-label", "n", "t", "amount", "day"], ROWS, encoding="cp1252"
    )
    with path.open(encoding="cp1252", newline="") as handle:
        read = list(csv.reader(handle, delimiter=";"))
    assert read == [
        ["'-label", "n", "t", "amount", "day"],
        ["'=cmd|' /C calc'!A0", "-12", "'-12", "1234.56", "2026-03-01"],
        ["'@SUM(A1:A2)", "0", "ok", "-0.50", ""],
    ]
    assert sorted(os.listdir(folder)) == ["out.csv"]


def test_csv_render_formats_non_text_values_and_trusts_its_output(folder: Path) -> None:
    def render(value: Any) -> Any:
        if isinstance(value, Decimal):
            return f"{value:.2f}".replace(".", ",")
        return value

    path = write_csv_atomic(folder / "out.csv", None, [[Decimal("-3.5"), "-3,50"]], render=render)
    assert path.read_bytes() == b"-3,50;'-3,50\r\n"


def test_xlsx_read_back_has_numeric_numbers_and_neutralised_text(folder: Path) -> None:
    path = write_xlsx_atomic(folder / "out.xlsx", ["label", "n", "t", "amount", "day"], ROWS)
    sheet = openpyxl.load_workbook(path).active
    assert sheet is not None
    values = [list(row) for row in sheet.iter_rows(min_row=2, values_only=True)]
    assert values[0][:4] == ["'=cmd|' /C calc'!A0", -12, "'-12", 1234.56]
    assert values[0][4] == dt.datetime(2026, 3, 1)
    assert values[1][:4] == ["'@SUM(A1:A2)", 0, "ok", -0.5]
    cell = sheet.cell(row=2, column=2)
    assert cell.data_type == "n" and sheet.cell(row=2, column=3).data_type == "s"


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_a_failing_writer_leaves_nothing(folder: Path, kind: str) -> None:
    def rows() -> Any:
        yield ["fine", 1]
        raise RuntimeError("source broke mid-file")

    writer = write_csv_atomic if kind == "csv" else write_xlsx_atomic
    with pytest.raises(RuntimeError, match="mid-file"):
        writer(folder / f"out.{kind}", ["a", "b"], rows())
    assert os.listdir(folder) == []


def test_an_unencodable_character_leaves_nothing(folder: Path) -> None:
    with pytest.raises(UnicodeEncodeError):
        write_csv_atomic(folder / "out.csv", ["a"], [["ok"], ["emoji 🏠"]], encoding="cp1252")
    assert os.listdir(folder) == []


def test_rewrite_replaces_the_whole_file(folder: Path) -> None:
    write_csv_atomic(folder / "out.csv", ["a"], [["1"], ["2"], ["3"]])
    write_csv_atomic(folder / "out.csv", ["a"], [["9"]])
    assert (folder / "out.csv").read_bytes() == b"a\r\n9\r\n"


def test_stale_temporaries_of_dead_writers_are_removed(folder: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead_pid = int(dead.stdout)
    stale = folder / f".out.csv.{dead_pid}.0123abcd.tmp"
    live = folder / f".out.csv.{os.getpid()}.89abcdef.tmp"
    old = folder / f".other.csv.{os.getpid()}.aaaaaaaa.tmp"
    unrelated = folder / ".hidden.tmp"
    for path in (stale, live, old, unrelated):
        path.write_text("partial")
    long_ago = time.time() - 7200
    os.utime(old, (long_ago, long_ago))
    removed = clean_stale_temporaries(folder, older_than=3600)
    assert sorted(removed) == sorted([stale, old])
    assert sorted(p.name for p in folder.iterdir()) == sorted([live.name, unrelated.name])
    assert is_temporary(live.name) and not is_temporary(unrelated.name)
