"""The spreadsheet readers, on files made the way French Excel and LibreOffice write them.

CSV: cp1252 with `;`, a title line and a `Total` row; UTF-8 with a BOM; UTF-16 tab-separated
("Texte Unicode"); quoted values spanning lines. Excel: a merged title block, a two-row header
with `Montant engagé` merged over `HT`/`TTC`, real date cells, a formula with its cached value,
several sheets, formatted but empty rows at the bottom.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import re
import zipfile
from decimal import Decimal
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
import python_calamine

from connectors.errors import ConfigError, SourceDataError
from connectors.files import client
from connectors.files.client import (
    fingerprint_files,
    read_csv,
    read_header,
    read_xlsx,
    resolve_files,
    sheet_names,
)
from connectors.rawtable import column_text, header_key, value_text
from tests.casedata import parametrize

# --- helpers --------------------------------------------------------------------------------


def write_text(path: Path, lines: list[str], *, encoding: str, newline: str = "\r\n") -> Path:
    path.write_bytes((newline.join(lines) + newline).encode(encoding))
    return path


def rows_of(table: client.RawTable) -> list[dict[str, str]]:
    return table.frame.to_dict("records")


def assert_all_text(table: client.RawTable) -> None:
    for column in table.frame.columns:
        values = table.frame[column].tolist()
        assert all(type(value) is str for value in values), column
    assert all(type(value) is str for value in table.source_rows.tolist())
    assert len(table.source_rows) == len(table.frame)


LEDGER_CP1252 = [
    "Grand livre locataires — export du 01/03/2026;;;;",
    "N° locataire;Nom;Date opération;Débit;Crédit",
    "L000123;Dupont Éléonore;01/03/2026;512,30;",
    "L000124;Martin Zoé;03/03/2026;;1 200,00",
    ";;;;",
    "L000125;N’Diaye Aïssata;05/03/2026;-12,50;",
    "Total;;;499,80;1 200,00",
]


@pytest.fixture
def ledger_csv(tmp_path: Path) -> Path:
    return write_text(tmp_path / "grand_livre.csv", LEDGER_CP1252, encoding="cp1252")


# --- header_key -----------------------------------------------------------------------------


@parametrize("header_keys", "normalised", "label, key")
def test_header_key_normalises_what_changes_between_exports(label: object, key: str) -> None:
    assert header_key(label) == key


# --- resolve_files --------------------------------------------------------------------------


def touch(path: Path, mtime: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x")
    os.utime(path, (mtime, mtime))
    return path


def test_resolve_newest_takes_latest_mtime_and_ties_by_name(tmp_path: Path) -> None:
    touch(tmp_path / "locataires_2026-01.csv", 1_000)
    touch(tmp_path / "locataires_2026-03.csv", 3_000)
    touch(tmp_path / "locataires_2026-02.csv", 3_000)
    touch(tmp_path / "~$locataires_2026-04.csv", 9_000)  # Excel lock file
    touch(tmp_path / ".locataires_2026-05.csv", 9_000)  # hidden
    assert resolve_files(tmp_path, "locataires_*.csv", "newest") == [
        tmp_path / "locataires_2026-03.csv"
    ]


def test_resolve_all_sorted_by_name_case_insensitive_in_subfolders(tmp_path: Path) -> None:
    touch(tmp_path / "2026" / "LOCATAIRES_B.CSV", 1)
    touch(tmp_path / "2026" / "locataires_a.csv", 2)
    touch(tmp_path / "2026" / "autre.csv", 3)
    found = resolve_files(tmp_path, "2026/locataires_*.csv", "all")
    assert found == [tmp_path / "2026" / "LOCATAIRES_B.CSV", tmp_path / "2026" / "locataires_a.csv"]


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        pytest.param("/etc/passwd", "not an absolute path", id="absolute"),
        pytest.param("../secret.csv", "leaves the inbox", id="dot-dot"),
        pytest.param("sub/../../secret.csv", "leaves the inbox", id="dot-dot-inside"),
        pytest.param("link.csv", "outside the inbox", id="symlink-escaping"),
        pytest.param(
            "locataires_*.csv",
            r"no file matches `locataires_\*.csv` in .*inbox \(files there: a.csv, b.xlsx\)"
            " — drop the export there or fix `path`",
            id="no-match-lists-files",
        ),
    ],
)
def test_resolve_refuses_patterns_outside_the_inbox(
    tmp_path: Path, pattern: str, message: str
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (tmp_path / "secret.csv").write_text("x")
    (inbox / "link.csv").symlink_to(tmp_path / "secret.csv")
    (inbox / "a.csv").write_text("x")
    (inbox / "b.xlsx").write_text("x")
    if pattern == "locataires_*.csv":
        (inbox / "link.csv").unlink()
    with pytest.raises(ConfigError, match=message):
        resolve_files(inbox, pattern, "newest")


def test_resolve_missing_inbox_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"inbox folder .*nowhere does not exist"):
        resolve_files(tmp_path / "nowhere", "*.csv", "all")


# --- CSV ------------------------------------------------------------------------------------


def test_csv_french_excel_export(ledger_csv: Path) -> None:
    table = read_csv([ledger_csv], expected_columns=["N° locataire", "Débit"])
    assert list(table.frame.columns) == ["N° locataire", "Nom", "Date opération", "Débit", "Crédit"]
    assert rows_of(table) == [
        {
            "N° locataire": "L000123",
            "Nom": "Dupont Éléonore",
            "Date opération": "01/03/2026",
            "Débit": "512,30",
            "Crédit": "",
        },
        {
            "N° locataire": "L000124",
            "Nom": "Martin Zoé",
            "Date opération": "03/03/2026",
            "Débit": "",
            "Crédit": "1 200,00",
        },
        dict.fromkeys(table.frame.columns, ""),  # kept: the transform layer counts it
        {
            "N° locataire": "L000125",
            "Nom": "N’Diaye Aïssata",
            "Date opération": "05/03/2026",
            "Débit": "-12,50",
            "Crédit": "",
        },
        {
            "N° locataire": "Total",
            "Nom": "",
            "Date opération": "",
            "Débit": "499,80",
            "Crédit": "1 200,00",
        },
    ]
    assert table.source_rows.tolist() == [f"grand_livre.csv:{line}" for line in range(3, 8)]
    assert table.origin == "grand_livre.csv"
    assert_all_text(table)


@parametrize("csv_dialects", "detected", "encoding, separator, newline")
def test_csv_encoding_and_separator_are_detected(
    tmp_path: Path, encoding: str, separator: str, newline: str
) -> None:
    quoted = separator == ","  # French decimal commas must be quoted in a comma CSV
    lines = [
        separator.join(["Réf", "Libellé", "Montant"]),
        separator.join(["A1", '"Loyer, mars"' if quoted else "Loyer mars", '"12,50"']),
        separator.join(["A2", "Régularisation €", "3"]),
    ]
    path = write_text(
        tmp_path / "export.csv", ["Export", *lines], encoding=encoding, newline=newline
    )
    table = read_csv([path])
    assert list(table.frame.columns) == ["Réf", "Libellé", "Montant"]
    libelle = "Loyer, mars" if quoted else "Loyer mars"
    assert rows_of(table) == [
        {"Réf": "A1", "Libellé": libelle, "Montant": "12,50"},
        {"Réf": "A2", "Libellé": "Régularisation €", "Montant": "3"},
    ]
    assert table.source_rows.tolist() == ["export.csv:3", "export.csv:4"]


def test_csv_explicit_options_override_detection(tmp_path: Path) -> None:
    path = write_text(
        tmp_path / "x.csv", ["a;b,c", "1;2,3", "4;5,6"], encoding="latin-1", newline="\n"
    )
    table = read_csv([path], encoding="latin-1", separator=",", header_row=1)
    assert list(table.frame.columns) == ["a;b", "c"]
    assert table.frame["c"].tolist() == ["3", "6"]


def test_csv_quoted_values_spanning_lines_keep_physical_line_numbers(tmp_path: Path) -> None:
    text = (
        "\ufeffRéf;Commentaire\r\n"
        'BT1;"fuite\r\nsous évier"\r\n'
        "BT2;ok\r\n"
        'BT3;"a\nb\nc"\r\n'
        "BT4;fin\r\n"
    )
    path = tmp_path / "bt.csv"
    path.write_bytes(text.encode("utf-8"))
    table = read_csv([path])
    assert table.frame["Réf"].tolist() == ["BT1", "BT2", "BT3", "BT4"]
    assert table.frame["Commentaire"].tolist()[0] == "fuite\r\nsous évier"
    assert table.source_rows.tolist() == ["bt.csv:2", "bt.csv:4", "bt.csv:5", "bt.csv:8"]


def test_csv_header_found_from_expected_columns_below_a_wordy_title(tmp_path: Path) -> None:
    lines = [
        "Export;généré;par;ERP;Ikos;version;2",
        "",
        "Réf;Montant;;;;;",
        "R1;10;;;;;",
    ]
    path = write_text(tmp_path / "x.csv", lines, encoding="utf-8")
    assert read_header([path], kind="csv")[0] == "Export"  # most text cells wins without hints
    table = read_csv([path], expected_columns=["ref", "MONTANT"])
    assert list(table.frame.columns) == ["Réf", "Montant"]
    assert table.source_rows.tolist() == ["x.csv:4"]


def test_csv_two_row_header_spreads_the_upper_label(tmp_path: Path) -> None:
    lines = [
        "Suivi des engagements;;;;",
        "N° BT;Montant engagé;;Statut;Date",
        ";HT;TTC;;",
        "BT345678;1 000,00;1 200,00;Commandé;01/03/2026",
    ]
    path = write_text(tmp_path / "bt.csv", lines, encoding="cp1252")
    table = read_csv([path], header_rows=2, expected_columns=["Montant engagé HT", "N° BT"])
    assert list(table.frame.columns) == [
        "N° BT",
        "Montant engagé HT",
        "Montant engagé TTC",
        "Statut",
        "Date",
    ]
    assert table.source_rows.tolist() == ["bt.csv:4"]
    assert read_header(
        [path], kind="csv", header_rows=2, expected_columns=["Montant engagé TTC"]
    ) == list(table.frame.columns)


def test_csv_labels_made_unique_and_unnamed_columns(tmp_path: Path) -> None:
    lines = ["Montant;montant ;;Réf;", "1;2;x;R;", "3;4;;S;"]
    path = write_text(tmp_path / "x.csv", lines, encoding="utf-8")
    table = read_csv([path])
    # the empty-label column with data is named by position; the empty one is dropped
    assert list(table.frame.columns) == ["Montant", "montant (2)", "column 3", "Réf"]
    assert table.frame["column 3"].tolist() == ["x", ""]
    assert read_header([path], kind="csv") == list(table.frame.columns)


def test_csv_explicit_header_row(ledger_csv: Path) -> None:
    table = read_csv([ledger_csv], header_row=2)
    assert table.frame.columns[0] == "N° locataire"
    assert table.source_rows.iloc[0] == "grand_livre.csv:3"


def test_csv_without_the_expected_columns_names_file_and_columns(ledger_csv: Path) -> None:
    with pytest.raises(SourceDataError) as error:
        read_csv([ledger_csv], expected_columns=["Référence bail", "Loyer"])
    message = str(error.value)
    assert "grand_livre.csv" in message
    assert "Loyer, Référence bail" in message
    assert "Grand livre locataires" in message  # the first line's cells
    assert "header_row" in message


def test_csv_undecodable_with_explicit_encoding_points_at_the_byte(ledger_csv: Path) -> None:
    with pytest.raises(SourceDataError) as error:
        read_csv([ledger_csv], encoding="utf-8")
    message = str(error.value)
    # line 1 holds the em dash, 0x97 in cp1252, after 23 bytes of ASCII
    assert message.startswith("grand_livre.csv:1: byte 23 (0x97) is not valid utf-8")
    assert "encoding: cp1252" in message


def test_csv_undecodable_past_the_head_is_reported_too(tmp_path: Path) -> None:
    lines = ["Réf;Nom", *[f"R{i};nom" for i in range(200)], "R200;Zoé"]
    path = tmp_path / "x.csv"
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8").replace("Zoé".encode(), b"Zo\xe9"))
    assert read_csv([path]).frame["Nom"].iloc[-1] == "Zoé"  # auto: not UTF-8, so cp1252
    with pytest.raises(SourceDataError, match=r"^x.csv:202: byte \d+ \(0xe9\) is not valid utf-8"):
        read_csv([path], encoding="utf-8")


def test_csv_ragged_row_names_file_and_line(tmp_path: Path) -> None:
    lines = ["Réf;Montant", "R1;10", "R2;10;5", "R3;1"]
    path = write_text(tmp_path / "x.csv", lines, encoding="utf-8")
    with pytest.raises(SourceDataError, match=r"^x.csv:3: 3 fields where the header has 2"):
        read_csv([path])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"", "the file is empty", id="empty"),
        pytest.param(b"\xef\xbb\xbf", "the file has no line", id="bom-only"),
    ],
)
def test_csv_empty_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "vide.csv"
    path.write_bytes(content)
    with pytest.raises(SourceDataError, match=f"vide.csv: {message}"):
        read_csv([path])


def test_csv_unknown_encoding_is_a_config_error(ledger_csv: Path) -> None:
    with pytest.raises(ConfigError, match="unknown encoding `latin-9000`"):
        read_csv([ledger_csv], encoding="latin-9000")


def test_csv_header_only_is_refused_as_no_data_rows(tmp_path: Path) -> None:
    # an empty export would reach the contract as an empty table: say what is wrong instead
    path = write_text(tmp_path / "x.csv", ["Réf;Montant"], encoding="utf-8")
    with pytest.raises(SourceDataError, match=r"^x\.csv: no data rows"):
        read_csv([path])
    assert read_header([path], kind="csv") == ["Réf", "Montant"]  # check still reads the header


def test_csv_fingerprint_follows_every_byte_and_the_name(ledger_csv: Path, tmp_path: Path) -> None:
    before = read_csv([ledger_csv]).fingerprint
    assert before == fingerprint_files([ledger_csv])
    data = bytearray(ledger_csv.read_bytes())
    data[-5] = ord("9")
    changed = tmp_path / "changed" / "grand_livre.csv"
    changed.parent.mkdir()
    changed.write_bytes(bytes(data))
    assert read_csv([changed]).fingerprint != before
    renamed = tmp_path / "grand_livre_copie.csv"
    renamed.write_bytes(ledger_csv.read_bytes())
    assert read_csv([renamed]).fingerprint != before


def test_csv_several_files_are_concatenated_in_order(ledger_csv: Path, tmp_path: Path) -> None:
    second = write_text(
        tmp_path / "grand_livre_2.csv",
        ["N° LOCATAIRE;Nom;Date opération;Débit;Crédit", "L9;Zoé;01/04/2026;1;"],
        encoding="utf-8",
    )
    table = read_csv([ledger_csv, second])
    assert len(table) == 6
    assert table.frame["N° locataire"].tolist()[-1] == "L9"
    assert table.source_rows.tolist()[-2:] == ["grand_livre.csv:7", "grand_livre_2.csv:2"]
    assert table.origin == "grand_livre.csv, grand_livre_2.csv"
    assert table.fingerprint == fingerprint_files([ledger_csv, second])


def test_csv_several_files_must_share_the_header(ledger_csv: Path, tmp_path: Path) -> None:
    other = write_text(
        tmp_path / "autre.csv", ["N° locataire;Nom;Solde", "L9;Zoé;1"], encoding="utf-8"
    )
    with pytest.raises(SourceDataError, match=r"^autre.csv: its header differs from grand_livre"):
        read_csv([ledger_csv, other])


# --- values as text -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param(None, "", id="none"),
        pytest.param(True, "true", id="bool"),
        pytest.param(12, "12", id="int"),
        pytest.param(12.0, "12", id="integral-float"),
        pytest.param(-0.0, "0", id="negative-zero"),
        pytest.param(1234.56, "1234.56", id="float"),
        pytest.param(0.1 + 0.2, "0.30000000000000004", id="float-shortest-repr"),
        pytest.param(1e-05, "0.00001", id="tiny-float-not-scientific"),
        pytest.param(1e20, "100000000000000000000", id="huge-float-not-scientific"),
        pytest.param(Decimal("1234.50"), "1234.50", id="decimal-keeps-scale"),
        pytest.param(Decimal("1E+2"), "100", id="decimal-exponent"),
        pytest.param(dt.date(2026, 3, 1), "2026-03-01", id="date"),
        pytest.param(dt.datetime(2026, 3, 1, 14, 30), "2026-03-01 14:30:00", id="datetime"),
        pytest.param(dt.datetime(2026, 3, 1), "2026-03-01 00:00:00", id="datetime-midnight"),
        pytest.param(
            dt.datetime(2026, 3, 1, 14, 30, 0, 500), "2026-03-01 14:30:00.000500", id="micros"
        ),
        pytest.param(
            dt.datetime(2026, 3, 1, 14, 30, tzinfo=dt.timezone(dt.timedelta(hours=1))),
            "2026-03-01 14:30:00+01:00",
            id="aware-datetime",
        ),
        pytest.param(dt.time(8, 15), "08:15:00", id="time"),
        pytest.param(dt.timedelta(hours=30, minutes=5), "30:05:00", id="duration"),
        pytest.param(b"\x00\xff", "00ff", id="bytes"),
    ],
)
def test_value_text(value: object, text: str) -> None:
    assert value_text(value) == text


def test_value_text_midnight_as_date_for_excel() -> None:
    assert value_text(dt.datetime(2026, 3, 1), midnight_as_date=True) == "2026-03-01"
    assert value_text(dt.datetime(2026, 3, 1, 0, 1), midnight_as_date=True) == "2026-03-01 00:01:00"


def _random_float(generator: random.Random) -> float:
    kind = generator.randrange(4)
    if kind == 0:
        return round(generator.uniform(-1e6, 1e6), 2)
    if kind == 1:
        return float(generator.randrange(-10_000, 10_000))
    if kind == 2:
        return generator.uniform(-1, 1) * 10.0 ** generator.randint(-12, 22)
    return generator.choice([0.0, -0.0, 1e-05, 1e16, 123456789012.5, 0.1 + 0.2])


def _with_at(values: list[object], index: int, value: object) -> list[object]:
    values[index] = value
    return values


COLUMN_CASES = {
    "floats-with-blanks": lambda g: [
        _random_float(g) if g.random() > 0.2 else "" for _ in range(500)
    ],
    "ints": lambda g: [g.randrange(-(2**62), 2**62) for _ in range(200)],
    "huge-ints-fall-back": lambda g: [2**70, 1, ""],
    # whole-number floats (hours, counts) go through int64: the edges of that path
    "whole-floats-with-blanks": lambda g: (
        [float(g.randrange(-1000, 1000)) if g.random() > 0.2 else "" for _ in range(500)]
        + [-0.0, 2.0**53 - 1, -(2.0**53 - 1), 1e15]
    ),
    "whole-floats-past-2-53-fall-back": lambda g: [2.0**53, 1.0, 1e20, -0.0],
    "whole-floats-and-infinity-fall-back": lambda g: [float("inf"), 3.0, float("-inf")],
    "whole-floats-and-nan-fall-back": lambda g: [float("nan"), 3.0, ""],
    "dates": lambda g: [
        dt.date(2000, 1, 1) + dt.timedelta(days=g.randrange(20_000)) for _ in range(200)
    ],
    "datetimes-and-midnight-dates": lambda g: [
        dt.datetime(2026, 1, 1, g.randrange(24), g.randrange(60), g.randrange(60))
        if g.random() > 0.3
        else dt.date(2026, 1, 1 + g.randrange(28))
        for _ in range(200)
    ],
    "datetimes-with-micros": lambda g: [
        dt.datetime(2026, 1, 1, 1, 2, 3, 4),
        dt.datetime(2026, 1, 1),
    ],
    "aware-datetimes": lambda g: [dt.datetime(2026, 1, 1, 9, tzinfo=dt.UTC), None],
    "bools-and-none": lambda g: [True, False, None, True],
    "numbers-with-stray-text": lambda g: [1.5, "n/a", 2.0, ""],
    # long columns where the odd value sits where a sample of the column does not look
    "floats-one-text-unsampled": lambda g: _with_at([1.5] * 10_000, 5001, "n/a"),
    "floats-one-blank-unsampled": lambda g: _with_at([2.0] * 10_000, 5001, ""),
    "texts-one-number-unsampled": lambda g: _with_at(["a"] * 10_000, 5001, 3.0),
    "ints-one-huge-unsampled": lambda g: _with_at([7] * 10_000, 5001, 2**80),
    "dates-one-datetime-unsampled": lambda g: _with_at(
        [dt.date(2026, 1, 2)] * 10_000, 5001, dt.datetime(2026, 1, 2, 3, 4)
    ),
    "mixed": lambda g: [
        1,
        2.5,
        dt.date(2026, 1, 2),
        dt.time(1, 2),
        "x",
        True,
        None,
        Decimal("1.10"),
    ],
}


@pytest.mark.parametrize("midnight_as_date", [False, True], ids=["sql", "excel"])
@pytest.mark.parametrize("case", list(COLUMN_CASES))
def test_column_text_equals_value_text_on_every_value(case: str, midnight_as_date: bool) -> None:
    values = COLUMN_CASES[case](random.Random(case))
    converted = column_text(values, midnight_as_date=midnight_as_date)
    expected = [value_text(value, midnight_as_date=midnight_as_date) for value in values]
    assert converted.tolist() == expected
    assert all(type(text) is str for text in converted.tolist())


# --- Excel ----------------------------------------------------------------------------------


def set_cached_values(path: Path, sheet_index: int, values: dict[str, str]) -> None:
    """Give formula cells the cached value Excel would have saved (openpyxl writes none)."""
    member = f"xl/worksheets/sheet{sheet_index}.xml"
    with zipfile.ZipFile(path) as source:
        items = [(info, source.read(info.filename)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for info, data in items:
            if info.filename == member:
                xml = data.decode()
                for ref, cached in values.items():
                    xml, count = re.subn(
                        rf'(<c r="{ref}"[^>]*>\s*<f>[^<]*</f>)\s*(<v\s*/>|<v></v>)?',
                        rf"\g<1><v>{cached}</v>",
                        xml,
                    )
                    assert count == 1, ref
                data = xml.encode()
            target.writestr(info, data)


def make_engagements_workbook(path: Path) -> Path:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Engagements"
    sheet["A1"] = "Suivi des engagements — mars 2026"
    sheet.merge_cells("A1:F1")
    sheet.append([])
    sheet.append(["N° BT", "Date commande", "Montant engagé", None, "Statut", "Urgent"])
    sheet.append([None, None, "HT", "TTC", None, None])
    sheet.merge_cells("C3:D3")
    sheet.merge_cells("A3:A4")  # vertically merged: the label stands alone
    sheet.merge_cells("E3:E4")
    rows = [
        ["BT345678", dt.date(2026, 3, 2), 1234.56, "=C5*1.2", "Commandé", True],
        ["BT345679", dt.datetime(2026, 3, 3, 14, 30), 1500, 1800.0, "Réalisé", False],
        ["BT345680", dt.datetime(2026, 3, 4), 0.1, 1e-05, "", None],
        [None, None, None, None, None, None],  # a blank row in the middle is kept
        ["Total", None, "=SUM(C5:C7)", "=SUM(D5:D7)", None, None],
    ]
    for row in rows:
        sheet.append(row)
    for row in range(5, 30):  # formatted but empty rows: Excel's used range goes on
        sheet.cell(row=row, column=3).number_format = "#,##0.00 €"
    sheet["B5"].number_format = "dd/mm/yyyy"
    sheet["B6"].number_format = "dd/mm/yyyy hh:mm"
    sheet["B7"].number_format = "dd/mm/yyyy"
    tenants = workbook.create_sheet("Locataires")
    tenants.append(["Réf", "Entrée", "Heure RDV"])
    tenants.append(["L1", dt.date(2020, 1, 31), dt.time(8, 15)])
    workbook.create_sheet("Vide")
    workbook.save(path)
    set_cached_values(path, 1, {"D5": "1481.472", "C9": "2734.66", "D9": "3281.47201"})
    return path


@pytest.fixture
def engagements_xlsx(tmp_path: Path) -> Path:
    return make_engagements_workbook(tmp_path / "engagements.xlsx")


EXPECTED_ENGAGEMENTS = [
    {
        "N° BT": "BT345678",
        "Date commande": "2026-03-02",
        "Montant engagé HT": "1234.56",
        "Montant engagé TTC": "1481.472",
        "Statut": "Commandé",
        "Urgent": "true",
    },
    {
        "N° BT": "BT345679",
        "Date commande": "2026-03-03 14:30:00",
        "Montant engagé HT": "1500",
        "Montant engagé TTC": "1800",
        "Statut": "Réalisé",
        "Urgent": "false",
    },
    {
        "N° BT": "BT345680",
        "Date commande": "2026-03-04",
        "Montant engagé HT": "0.1",
        "Montant engagé TTC": "0.00001",
        "Statut": "",
        "Urgent": "",
    },
    {
        "N° BT": "",
        "Date commande": "",
        "Montant engagé HT": "",
        "Montant engagé TTC": "",
        "Statut": "",
        "Urgent": "",
    },
    {
        "N° BT": "Total",
        "Date commande": "",
        "Montant engagé HT": "2734.66",
        "Montant engagé TTC": "3281.47201",
        "Statut": "",
        "Urgent": "",
    },
]


@pytest.mark.parametrize(
    "header_row",
    [pytest.param("auto", id="auto-from-expected-columns"), pytest.param(3, id="explicit")],
)
def test_xlsx_real_workbook(engagements_xlsx: Path, header_row: int | str) -> None:
    table = read_xlsx(
        [engagements_xlsx],
        sheet="Engagements",
        header_rows=2,
        header_row=header_row,  # type: ignore[arg-type]
        expected_columns=["N° BT", "Montant engagé TTC", "statut"],
    )
    assert rows_of(table) == EXPECTED_ENGAGEMENTS
    assert table.source_rows.tolist() == [
        f"engagements.xlsx:Engagements:{row}" for row in range(5, 10)
    ]
    assert table.origin == "engagements.xlsx"
    assert_all_text(table)


def test_xlsx_first_sheet_by_default_and_header_without_hints(engagements_xlsx: Path) -> None:
    table = read_xlsx([engagements_xlsx], header_rows=2)
    assert list(table.frame.columns) == list(EXPECTED_ENGAGEMENTS[0])


@pytest.mark.parametrize("sheet", ["Locataires", "LOCATAIRES"], ids=["exact", "other-case"])
def test_xlsx_other_sheet(engagements_xlsx: Path, sheet: str) -> None:
    table = read_xlsx([engagements_xlsx], sheet=sheet)
    assert rows_of(table) == [{"Réf": "L1", "Entrée": "2020-01-31", "Heure RDV": "08:15:00"}]
    assert table.source_rows.tolist() == ["engagements.xlsx:Locataires:2"]


def test_xlsx_missing_sheet_lists_sheets_and_suggests(engagements_xlsx: Path) -> None:
    with pytest.raises(SourceDataError) as error:
        read_xlsx([engagements_xlsx], sheet="Locataire")
    assert str(error.value) == (
        "engagements.xlsx: no sheet `Locataire` (sheets: Engagements, Locataires, Vide) — did"
        " you mean `Locataires`?"
    )


def test_xlsx_empty_sheet(engagements_xlsx: Path) -> None:
    with pytest.raises(SourceDataError, match=r"engagements\.xlsx:Vide: the sheet is empty"):
        read_xlsx([engagements_xlsx], sheet="Vide")


def test_sheet_names(engagements_xlsx: Path) -> None:
    assert sheet_names(engagements_xlsx) == ["Engagements", "Locataires", "Vide"]


def test_xlsx_header_only(engagements_xlsx: Path) -> None:
    assert read_header(
        [engagements_xlsx], kind="xlsx", header_rows=2, expected_columns=["Montant engagé HT"]
    ) == list(EXPECTED_ENGAGEMENTS[0])
    assert read_header([engagements_xlsx], kind="xlsx", sheet="Locataires") == [
        "Réf",
        "Entrée",
        "Heure RDV",
    ]


def test_xlsx_without_expected_columns_names_the_sheet(engagements_xlsx: Path) -> None:
    with pytest.raises(SourceDataError) as error:
        read_xlsx([engagements_xlsx], expected_columns=["Numéro de commande"])
    message = str(error.value)
    assert message.startswith("engagements.xlsx:Engagements: no header found")
    assert "Numéro de commande" in message and "Suivi des engagements" in message


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"N\xb0;Nom\r\n1;a\r\n", id="csv-renamed-xlsx"),
        pytest.param(b"PK\x03\x04broken", id="truncated-zip"),
    ],
)
def test_xlsx_not_a_workbook_names_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "export.xlsx"
    path.write_bytes(content)
    with pytest.raises(SourceDataError, match=r"^export.xlsx: not a readable Excel workbook"):
        read_xlsx([path])


def test_xlsx_openpyxl_fallback_reads_the_same(
    engagements_xlsx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = read_xlsx([engagements_xlsx], header_rows=2)

    def refuse(path: object) -> None:
        raise python_calamine.CalamineError("unsupported")

    monkeypatch.setattr(python_calamine.CalamineWorkbook, "from_path", refuse)
    fallback = read_xlsx([engagements_xlsx], header_rows=2, expected_columns=["N° BT"])
    assert rows_of(fallback) == EXPECTED_ENGAGEMENTS
    assert fallback.source_rows.tolist() == expected.source_rows.tolist()
    assert sheet_names(engagements_xlsx) == ["Engagements", "Locataires", "Vide"]


def test_xlsx_fingerprint_changes_with_a_cell(engagements_xlsx: Path, tmp_path: Path) -> None:
    before = read_xlsx([engagements_xlsx], header_rows=2).fingerprint
    assert before == fingerprint_files([engagements_xlsx])
    other = tmp_path / "other" / "engagements.xlsx"
    other.parent.mkdir()
    make_engagements_workbook(other)
    workbook = openpyxl.load_workbook(other)
    workbook["Locataires"]["A2"] = "L2"
    workbook.save(other)
    assert read_xlsx([other], header_rows=2).fingerprint != before


def test_xlsx_several_files_concatenated(engagements_xlsx: Path, tmp_path: Path) -> None:
    second = make_engagements_workbook(tmp_path / "engagements_avril.xlsx")
    table = read_xlsx([engagements_xlsx, second], header_rows=2)
    assert len(table) == 10
    assert table.source_rows.tolist()[4:6] == [
        "engagements.xlsx:Engagements:9",
        "engagements_avril.xlsx:Engagements:5",
    ]


def test_xlsx_several_files_must_share_the_header(engagements_xlsx: Path, tmp_path: Path) -> None:
    second = make_engagements_workbook(tmp_path / "engagements_avril.xlsx")
    workbook = openpyxl.load_workbook(second)
    workbook["Engagements"]["F3"] = "Priorité"
    workbook.save(second)
    with pytest.raises(SourceDataError, match=r"^engagements_avril\.xlsx: its header differs"):
        read_xlsx([engagements_xlsx, second], header_rows=2)


def test_xlsx_cells_are_text_like_excel_shows_them(tmp_path: Path) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["Code postal", "Montant", "Quand", "Durée"])
    sheet.append(["01000", 12.5, dt.datetime(2026, 3, 1, 0, 0), dt.timedelta(hours=30, minutes=5)])
    sheet["C2"].number_format = "dd/mm/yyyy"
    sheet["D2"].number_format = "[h]:mm:ss"
    workbook.save(tmp_path / "x.xlsx")
    table = read_xlsx([tmp_path / "x.xlsx"])
    assert rows_of(table) == [
        {"Code postal": "01000", "Montant": "12.5", "Quand": "2026-03-01", "Durée": "30:05:00"}
    ]


def test_read_header_refuses_unknown_kind(ledger_csv: Path) -> None:
    with pytest.raises(ConfigError, match="unknown file kind `ods`"):
        read_header([ledger_csv], kind="ods")  # type: ignore[arg-type]


def test_frames_use_the_pandas_string_dtype(ledger_csv: Path, engagements_xlsx: Path) -> None:
    for table in (read_csv([ledger_csv]), read_xlsx([engagements_xlsx], header_rows=2)):
        assert all(dtype == pd.StringDtype(na_value=float("nan")) for dtype in table.frame.dtypes)


def test_csv_rows_wider_than_a_short_header(tmp_path: Path) -> None:
    # some ERPs write the header without the trailing separators every data line has
    lines = ["Réf;Montant", "R1;10;", "R2;20;", "R3;30;x"]
    path = write_text(tmp_path / "x.csv", lines, encoding="utf-8")
    table = read_csv([path])
    assert list(table.frame.columns) == ["Réf", "Montant", "column 3"]
    assert table.frame["column 3"].tolist() == ["", "", "x"]


@pytest.mark.parametrize("encoding", ["auto", "utf-8", "UTF8", "utf-8-sig"])
def test_csv_bom_never_reaches_the_first_label(tmp_path: Path, encoding: str) -> None:
    path = write_text(tmp_path / "x.csv", ["Réf;Nom", "R1;Zoé"], encoding="utf-8-sig")
    table = read_csv([path], encoding=encoding)
    assert list(table.frame.columns) == ["Réf", "Nom"]
    assert read_header([path], kind="csv", encoding=encoding) == ["Réf", "Nom"]
    assert table.source_rows.tolist() == ["x.csv:2"]


def test_xlsx_fallback_ignores_a_wrong_declared_used_range(
    engagements_xlsx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # some generators declare `A1` as the used range: openpyxl would stop after one row
    with zipfile.ZipFile(engagements_xlsx) as source:
        items = [(info, source.read(info.filename)) for info in source.infolist()]
    with zipfile.ZipFile(engagements_xlsx, "w", zipfile.ZIP_DEFLATED) as target:
        for info, data in items:
            if info.filename == "xl/worksheets/sheet1.xml":
                data, count = re.subn(rb'<dimension ref="[^"]*"/>', b'<dimension ref="A1"/>', data)
                assert count == 1
            target.writestr(info, data)

    def refuse(path: object) -> None:
        raise python_calamine.CalamineError("unsupported")

    monkeypatch.setattr(python_calamine.CalamineWorkbook, "from_path", refuse)
    table = read_xlsx([engagements_xlsx], header_rows=2, expected_columns=["N° BT"])
    assert rows_of(table) == EXPECTED_ENGAGEMENTS
