"""The demo landlords' sources: byte-deterministic, shaped like real exports, counted exactly.

`DEMO_ROWS` and `DEMO_BAD_ROWS` are what end-to-end tests assert `read == loaded + quarantined`
against, so they are checked here against the files themselves: the files are read back with
plain csv / openpyxl / sqlite3 and the demo datafixes' rules are applied by a small, slow and
obvious oracle (one row at a time) that follows the transform semantics of the datafix format.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import sqlite3
import unicodedata
import zipfile
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import openpyxl
import pytest
import yaml

from connectors.files.kinds import CsvSource, XlsxSource
from connectors.sandbox.demo_files import (
    DEMO_BAD_ROWS,
    DEMO_LANDLORDS,
    DEMO_ROWS,
    DEMO_SANDBOX_LANDLORDS,
    EXTRACTED_ON,
    main,
    write_demo_sources,
)
from connectors.sql.kinds import SqlSource
from schemas.canonical import ENTITIES, LEDGER_KINDS, ColumnSpec, ColumnType
from schemas.datafix import Datafix, EntityMapping, FieldRule, semantic_issues

DATAFIXES = Path(__file__).resolve().parents[2] / "datafixes"
# the landlords whose files are written here (the others' rows are checked against the peers
# that serve them, in test_sandbox_run.py)
FILE_ENTITIES = [
    (landlord, entity)
    for landlord, entities in DEMO_ROWS.items()
    if landlord not in DEMO_SANDBOX_LANDLORDS
    for entity in entities
]

# Why each seeded bad row must be quarantined (reason codes of QUARANTINE_REASONS).
EXPECTED_REASONS: dict[str, dict[str, Counter[str]]] = {
    "loire-habitat": {
        "tenants": Counter(["unmapped_value", "bad_date", "missing_value", "duplicate_key"]),
        "ledger_entries": Counter(["bad_amount", "bad_date", "missing_value", "unmapped_value"]),
    },
    "opale-logement": {
        "work_orders": Counter(["unmapped_value", "bad_date", "missing_value", "duplicate_key"]),
        "quotes": Counter(["unmapped_value", "bad_date", "missing_value"]),
        "completions": Counter(["out_of_range", "missing_value", "bad_date"]),
        "invoices": Counter(["missing_value", "unmapped_value", "bad_amount"]),
    },
    "cite-jardins": {
        "tenants": Counter(["unmapped_value", "bad_date", "missing_value"]),
        "ledger_entries": Counter(["bad_amount", "bad_date", "missing_value", "unmapped_value"]),
        "repayment_plans": Counter(["unmapped_value"]),
        "commitments": Counter(["unmapped_value", "bad_date", "missing_value"]),
    },
}


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("demo-home")
    write_demo_sources(home, EXTRACTED_ON)  # the reference day: the dates asserted below
    return home


def _digests(home: Path) -> dict[str, str]:
    return {
        str(path.relative_to(home)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(home.rglob("*"))
        if path.is_file()
    }


def _load_datafix(landlord_id: str) -> Datafix:
    return Datafix.model_validate(yaml.safe_load((DATAFIXES / f"{landlord_id}.yaml").read_text()))


# --- Determinism and files on disk -------------------------------------------------------------


def test_two_generations_are_identical_to_the_byte(tmp_path: Path) -> None:
    first = write_demo_sources(tmp_path / "one", EXTRACTED_ON)
    write_demo_sources(tmp_path / "two", EXTRACTED_ON)

    digests_one, digests_two = _digests(tmp_path / "one"), _digests(tmp_path / "two")
    assert digests_one == digests_two
    assert sorted(digests_one) == [
        "inbox/cite-jardins/erp.db",
        "inbox/loire-habitat/locataires_2026-10.csv",
        "inbox/loire-habitat/quittancement_2026-10.csv",
        "inbox/opale-logement/travaux_2026-10.xlsx",
    ]
    assert {landlord: [path.name for path in paths] for landlord, paths in first.items()} == {
        "loire-habitat": ["locataires_2026-10.csv", "quittancement_2026-10.csv"],
        "opale-logement": ["travaux_2026-10.xlsx"],
        "cite-jardins": ["erp.db"],
    }


def test_regenerating_leaves_unchanged_files_and_their_mtime_alone(tmp_path: Path) -> None:
    paths = [path for group in write_demo_sources(tmp_path).values() for path in group]
    long_ago = 1_700_000_000
    for path in paths:
        os.utime(path, (long_ago, long_ago))
    damaged = paths[0]
    damaged.write_bytes(b"edited by hand")
    os.utime(damaged, (long_ago, long_ago))

    write_demo_sources(tmp_path)

    assert [path.stat().st_mtime for path in paths[1:]] == [long_ago] * (len(paths) - 1)
    assert damaged.stat().st_mtime != long_ago  # a changed file is written again …
    assert damaged.read_bytes() != b"edited by hand"
    assert not [path for path in tmp_path.rglob("*.tmp")]  # … through a temporary file


def test_main_writes_the_inboxes_under_the_given_home(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path)]) == 0

    assert (tmp_path / "inbox" / "cite-jardins" / "erp.db").is_file()
    assert "opale-logement: " in capsys.readouterr().out


# --- Shapes of the sources ----------------------------------------------------------------------


def test_loire_csvs_are_written_as_french_excel_does(demo_home: Path) -> None:
    folder = demo_home / "inbox" / "loire-habitat"
    for name in ("locataires_2026-10.csv", "quittancement_2026-10.csv"):
        raw = (folder / name).read_bytes()
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")  # accents in cp1252, no BOM
        text = raw.decode("cp1252")
        lines = text.split("\r\n")
        assert lines[-1] == "" and "\n" not in "".join(lines)  # CRLF everywhere
        assert lines[-3] == ";" * lines[0].count(";")  # a blank row before the totals row
        assert lines[-2].startswith("Total;")
    tenants = (folder / "locataires_2026-10.csv").read_bytes().decode("cp1252")
    assert tenants.startswith("N° locataire;N° bail;Nom  du locataire;Logement;Date d'entrée;")
    ledger = (folder / "quittancement_2026-10.csv").read_bytes().decode("cp1252")
    header = ledger.split("\r\n", 1)[0].split(";")
    assert {"Débit", "Crédit", "Libellé", "Échéance", "Motif rejet"} <= set(header)
    amounts = [cell for row in csv.reader(io.StringIO(ledger), delimiter=";") for cell in row[6:8]]
    assert any(re.fullmatch(r"-\d+,\d\d", cell) for cell in amounts)
    assert any(re.fullmatch(r"\d+,\d\d-", cell) for cell in amounts)
    assert any(re.fullmatch(r"\(\d+,\d\d\)", cell) for cell in amounts)
    assert any(re.fullmatch(r"\d\u00a0\d{3},\d\d", cell) for cell in amounts)
    assert any(re.fullmatch(r"\d \d{3},\d\d", cell) for cell in amounts)
    assert any(cell.endswith("\u00a0€") for cell in amounts)
    assert "12,5O" in amounts
    assert re.search(r";\d\d/\d\d/\d\d;", ledger) and re.search(r";\d\d/\d\d/\d{4};", ledger)


def test_opale_workbook_has_a_title_block_merged_headers_and_mixed_dates(demo_home: Path) -> None:
    path = demo_home / "inbox" / "opale-logement" / "travaux_2026-10.xlsx"
    book = openpyxl.load_workbook(path)

    assert book.sheetnames == ["Commandes", "Devis", "Quitus", "Factures"]
    for sheet in book:
        assert "A1:H1" in {str(merged) for merged in sheet.merged_cells.ranges}
        assert sheet["A1"].value == "Suivi des bons de travaux — Opale Logement"
        assert sheet["A2"].value == "Extrait le 31/10/2026"
        assert all(cell.value is None for cell in sheet[3])
        last = max(row for row in range(1, sheet.max_row + 1) if sheet.cell(row, 1).value)
        assert sheet.max_row >= last + 3  # formatted empty rows below the table
    orders = book["Commandes"]
    assert {"E4:F4", "A4:A5", "L4:L5"} <= {str(merged) for merged in orders.merged_cells.ranges}
    assert (orders["E4"].value, orders["E5"].value, orders["F5"].value) == (
        "Montant engagé",
        "HT",
        "TTC",
    )
    for name in ("Commandes", "Devis", "Factures"):
        sheet = book[name]
        last = max(row for row in range(1, sheet.max_row + 1) if sheet.cell(row, 1).value)
        assert sheet.cell(last, 1).value == "Total"
    ordered = [orders.cell(row, 8) for row in range(6, orders.max_row + 1)]
    assert any(isinstance(cell.value, datetime) and cell.is_date for cell in ordered)
    assert any(isinstance(cell.value, int) and not cell.is_date for cell in ordered)
    assert any(
        isinstance(cell.value, str) and re.fullmatch(r"\d\d/\d\d/\d{4}", cell.value)
        for cell in ordered
    )
    amounts = [book["Factures"].cell(row, 4).value for row in range(5, book["Factures"].max_row)]
    assert any(isinstance(value, str) and "\u202f" in value for value in amounts)
    assert book.properties.created == book.properties.modified == datetime(2026, 10, 31, 22, 0)
    with zipfile.ZipFile(path) as archive:
        assert {info.date_time for info in archive.infolist()} == {(2026, 10, 31, 22, 0, 0)}


def test_cite_erp_keeps_amounts_as_exact_decimal_text(demo_home: Path) -> None:
    with sqlite3.connect(demo_home / "inbox" / "cite-jardins" / "erp.db") as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        types = connection.execute("SELECT DISTINCT typeof(montant) FROM ecritures").fetchall()
        negative = connection.execute("SELECT count(*) FROM ecritures WHERE montant LIKE '-%'")
        assert negative.fetchone()[0] > 0
    assert tables == {"tiers", "ecritures", "plans_apurement", "engagements"}
    assert types == [("text",)]


# --- The demo datafixes ---------------------------------------------------------------------


@pytest.mark.parametrize("landlord_id", sorted(DEMO_LANDLORDS))
def test_demo_datafix_validates_with_no_semantic_issue(landlord_id: str) -> None:
    path = DATAFIXES / f"{landlord_id}.yaml"
    datafix = _load_datafix(landlord_id)

    assert path.read_text().splitlines()[0] == (
        "# yaml-language-server: $schema=../schemas/datafix.schema.json"
    )
    assert semantic_issues(datafix, file_stem=landlord_id) == []
    assert (datafix.landlord.id, datafix.landlord.name) == (
        landlord_id,
        DEMO_LANDLORDS[landlord_id],
    )
    assert datafix.inbox is None
    assert sorted(datafix.entities) == sorted(DEMO_ROWS[landlord_id])


# --- Row counts and quarantine, by the oracle ---------------------------------------------------


def _key(label: object) -> str:
    """Header and code comparison: case, accents and repeated spaces ignored."""
    text = unicodedata.normalize("NFKD", str(label))
    text = "".join(char for char in text if not unicodedata.combining(char))
    return " ".join(text.casefold().split())


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return (
            value.isoformat(sep=" ") if value.time() != datetime.min.time() else str(value.date())
        )
    return str(value)


def _read_source(home: Path, datafix: Datafix, mapping: EntityMapping) -> list[dict[str, str]]:
    """Data rows of the entity's source as {header key: text}, all-blank rows dropped."""
    source = datafix.sources[mapping.source]
    inbox = home / "inbox" / datafix.landlord.id
    if isinstance(source, SqlSource):
        url = source.url.replace("${DATAFIX_HOME}", str(home))
        with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
            cursor = connection.execute(source.query or f"SELECT * FROM {source.table}")
            header = [column[0] for column in cursor.description]
            rows = [[_text(value) for value in row] for row in cursor.fetchall()]
    elif isinstance(source, CsvSource):
        (path,) = inbox.glob(source.path)
        header, *rows = list(
            csv.reader(io.StringIO(path.read_bytes().decode("cp1252")), delimiter=";")
        )
    else:
        assert isinstance(source, XlsxSource)
        (path,) = inbox.glob(source.path)
        book = openpyxl.load_workbook(path)
        sheet = book[mapping.sheet or source.sheet or book.sheetnames[0]]
        top = [sheet.cell(4, column).value for column in range(1, sheet.max_column + 1)]
        for merged in sheet.merged_cells.ranges:  # a merged header cell names every column below
            if merged.min_row == 4:
                for column in range(merged.min_col, merged.max_col + 1):
                    top[column - 1] = top[merged.min_col - 1]
        depth = mapping.header_rows or source.header_rows
        bottom = (
            [sheet.cell(5, c).value for c in range(1, sheet.max_column + 1)] if depth == 2 else []
        )
        header = [
            " ".join(str(part) for part in parts if part)
            for parts in zip(top, bottom or [None] * len(top), strict=True)
        ]
        rows = [
            [_text(value) for value in row]
            for row in sheet.iter_rows(min_row=4 + depth, values_only=True)
        ]
    keys = [_key(label) for label in header]
    return [
        dict(zip(keys, (cell.strip() for cell in row), strict=True))
        for row in rows
        if any(cell.strip() for cell in row)
    ]


def _skipped(row: dict[str, str], mapping: EntityMapping) -> bool:
    for row_filter in mapping.skip_rows:
        cell = row[_key(row_filter.column)]
        if row_filter.matches is not None and re.search(row_filter.matches, cell, re.IGNORECASE):
            return True
        if row_filter.equals is not None and cell == row_filter.equals.strip():
            return True
        if row_filter.blank is not None and (cell == "") == row_filter.blank:
            return True
    return False


def _cents(text: str) -> int | None:
    compact = re.sub(r"[\s\u00a0\u202f€]", "", text)
    negative = compact.startswith("-") or compact.endswith("-") or compact.startswith("(")
    found = re.fullmatch(r"(\d+)(?:[.,](\d{1,2}))?", compact.strip("()-+"))
    if not found:
        return None
    cents = int(found[1]) * 100 + int((found[2] or "").ljust(2, "0"))
    return -cents if negative else cents


def _date(text: str, formats: list[str] | None) -> datetime | None:
    strftime = [
        fmt.replace("yyyy", "%Y").replace("yy", "%y").replace("dd", "%d").replace("mm", "%m")
        .replace("HH", "%H").replace("MI", "%M").replace("SS", "%S")
        for fmt in formats or ["dd/mm/yyyy", "dd/mm/yy"]
    ]  # fmt: skip
    for fmt in [*strftime, "%Y-%m-%d", "%Y-%m-%d %H:%M:%S"]:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    if re.fullmatch(r"\d{5}", text):
        return datetime(1899, 12, 30) + timedelta(days=int(text))  # an Excel serial number
    return None


def _value(row: dict[str, str], rule: FieldRule, column: ColumnSpec) -> tuple[object, str | None]:
    """The canonical value of one field, or the quarantine reason."""
    if rule.debit is not None and rule.credit is not None:
        debit, credit = row[_key(rule.debit)], row[_key(rule.credit)]
        if not debit and not credit:
            return None, "missing_value" if column.required else None
        sides = [_cents(side) if side else 0 for side in (debit, credit)]
        if None in sides:
            return None, "bad_amount"
        return sides[0] - sides[1], None  # type: ignore[operator]
    if rule.concat is not None:
        text = rule.separator.join(row[_key(name)] for name in rule.concat if row[_key(name)])
    elif rule.from_ is not None:
        text = row[_key(rule.from_)]
    else:
        text = str(rule.const)
    if rule.map is not None and text:
        lookup = {_key(source): str(target) for source, target in rule.map.items()}
        if _key(text) not in lookup:
            if rule.unmapped == "reject":
                return None, "unmapped_value"
            text = str(rule.default)
        else:
            text = lookup[_key(text)]
    if not text and rule.default is not None:
        text = str(rule.default)
    if not text:
        return None, "missing_value" if column.required else None
    if column.type is ColumnType.CHOICE:
        return (text, None) if text in column.choices else (None, "unmapped_value")
    if column.type in (ColumnType.DATE, ColumnType.DATETIME):
        parsed = _date(text, rule.formats)
        return (parsed, None) if parsed else (None, "bad_date")
    if column.type is ColumnType.CENTS:
        cents = _cents(text)
        if cents is None:
            return None, "bad_amount"
        return (
            (cents, None)
            if column.min_value is None or cents >= column.min_value
            else (None, "out_of_range")
        )
    if column.type is ColumnType.INTEGER:
        if not re.fullmatch(r"[-+]?\d+", text):
            return None, "bad_integer"
        number = int(text)
        low, high = column.min_value, column.max_value
        inside = (low is None or number >= low) and (high is None or number <= high)
        return (number, None) if inside else (None, "out_of_range")
    if column.type is ColumnType.BOOLEAN:
        words = {"oui": True, "o": True, "yes": True, "y": True, "true": True, "vrai": True,
                 "1": True, "x": True, "non": False, "n": False, "no": False, "false": False,
                 "faux": False, "0": False}  # fmt: skip
        return (words[_key(text)], None) if _key(text) in words else (None, "bad_boolean")
    return text, None


def _oracle(
    home: Path, landlord_id: str, entity: str
) -> tuple[int, Counter[str], list[dict[str, object]]]:
    """(data rows read, quarantine reasons, loaded canonical rows) for one entity."""
    datafix = _load_datafix(landlord_id)
    mapping = datafix.entities[entity]
    spec = ENTITIES[entity]
    rows = [row for row in _read_source(home, datafix, mapping) if not _skipped(row, mapping)]
    reasons: Counter[str] = Counter()
    loaded: list[dict[str, object]] = []
    seen: set[object] = set()
    for row in rows:
        values, reason = {}, None
        for name, rule in mapping.fields.items():
            values[name], error = _value(row, rule, spec.column(name))
            reason = reason or error
        if reason is None and values[spec.key] in seen:
            reason = "duplicate_key"
        if reason is not None:
            reasons[reason] += 1
            continue
        seen.add(values[spec.key])
        loaded.append(values)
    return len(rows), reasons, loaded


@pytest.mark.parametrize(("landlord_id", "entity"), FILE_ENTITIES)
def test_rows_read_and_quarantined_match_the_demo_constants(
    demo_home: Path, landlord_id: str, entity: str
) -> None:
    read, reasons, loaded = _oracle(demo_home, landlord_id, entity)

    assert read == DEMO_ROWS[landlord_id][entity]
    assert sum(reasons.values()) == DEMO_BAD_ROWS[landlord_id][entity]
    assert reasons == EXPECTED_REASONS[landlord_id][entity]
    assert read == len(loaded) + sum(reasons.values())


@pytest.mark.parametrize(("landlord_id", "entity"), FILE_ENTITIES)
def test_loaded_rows_pass_the_canonical_row_rules(
    demo_home: Path, landlord_id: str, entity: str
) -> None:
    """The good rows must not trip the blocking contracts: only seeded rows are bad."""
    _, _, loaded = _oracle(demo_home, landlord_id, entity)
    broken = []
    for rule in ENTITIES[entity].rules:
        a, b = rule.columns
        for values in loaded:
            first, second = values.get(a), values.get(b)
            if rule.kind == "sign_matches_kind":
                sign = "+" if second > 0 else "-" if second < 0 else "0"  # type: ignore[operator]
                ok = first in LEDGER_KINDS and sign in LEDGER_KINDS[first].signs
            elif first is None or second is None:
                ok = True
            elif rule.kind == "a_not_before_b":
                ok = first >= second  # type: ignore[operator]
            else:
                ok = first <= second  # type: ignore[operator]
            if not ok:
                broken.append((rule.name, values))
    assert broken == []
