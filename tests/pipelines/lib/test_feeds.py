"""Entities fed by several sources (`feeds`): unioned into one load, each row with its own
lineage, a key found in two feeds quarantined with both lineages, never overwritten.

Expected rows and balances are written out by hand below from the fixture text."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import sqlalchemy as sa
import yaml
from pydantic import ValidationError

from pipelines.lib.checks import check_datafix
from pipelines.lib.datafixes import load_datafix
from pipelines.lib.stages import load, normalise, pull
from pipelines.lib.warehouse import Warehouse
from schemas.datafix import Datafix, semantic_issues
from tests.landlords.common import balances, open_quarantine
from tests.pipelines.lib.helpers import migrated_warehouse, write_datafix

LANDLORD = "foyers-du-littoral"

LEDGER = """\
Pièce;Compte;Date;Type;Montant
E1;T1;01/03/2026;loyer;500,00
E2;T1;05/03/2026;reglement;-500,00
E3;T2;01/03/2026;loyer;650,00
E4;T2;03/03/2026;reglement;-650,00
"""

REJECTS = """\
Réf rejet;Locataire;Date rejet;Montant rejeté
R1;T2;10/03/2026;650,00
E2;T1;12/03/2026;500,00
"""


def _ledger_feed(source: str, columns: tuple[str, str, str, str], kind: Any) -> dict[str, Any]:
    """A feed of the ledger: reference, tenant, date and amount columns, and its kind rule."""
    names = ("entry_ref", "tenant_ref", "entry_date", "amount_cents")
    return {"source": source, "fields": {**dict(zip(names, columns, strict=True)), "kind": kind}}


def _datafix(**entity: Any) -> dict[str, Any]:
    return {
        "landlord": {"id": LANDLORD, "name": "Foyers du Littoral"},
        "sources": {
            "journal": {"kind": "csv", "path": "journal.csv"},
            "rejets": {"kind": "csv", "path": "rejets.csv"},
        },
        "entities": {"ledger_entries": entity},
    }


FEEDS = [
    _ledger_feed(
        "journal",
        ("Pièce", "Compte", "Date", "Montant"),
        {"from": "Type", "map": {"loyer": "rent_call", "reglement": "payment"}},
    ),
    _ledger_feed(
        "rejets",
        ("Réf rejet", "Locataire", "Date rejet", "Montant rejeté"),
        {"const": "rejected_debit"},
    ),
]


@pytest.fixture
def warehouse(tmp_path: Path) -> Any:
    yield from migrated_warehouse(f"sqlite:///{tmp_path}/warehouse.db")


def _inbox(home: Path, **files: str) -> Path:
    inbox = home / "inbox" / LANDLORD
    inbox.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (inbox / name).write_text(text, encoding="utf-8")
    return inbox


def _run(path: Path, warehouse: Warehouse, run_id: str) -> Any:
    loaded = load_datafix(path)
    pulled = pull(loaded, "ledger_entries", warehouse=warehouse)
    normalised = normalise(loaded, pulled)
    load(warehouse, loaded, normalised, run_id=run_id)
    return pulled, normalised


def test_two_sources_feed_one_ledger_and_a_shared_key_is_quarantined_with_both_lineages(
    hub_home: Path, tmp_path: Path, warehouse: Warehouse
) -> None:
    _inbox(hub_home, **{"journal.csv": LEDGER, "rejets.csv": REJECTS})
    path = write_datafix(tmp_path, _datafix(feeds=FEEDS))
    pulled, _ = _run(path, warehouse, "run-1")
    assert pulled.rows == 6
    with warehouse.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT entry_ref, amount_cents, source_name, source_row FROM ledger_entries"
                " ORDER BY entry_ref"
            )
        ).all()
        quarantined = conn.execute(
            sa.text("SELECT source_name, source_row, reason, message FROM quarantine")
        ).all()
        run = conn.execute(sa.text("SELECT read, loaded, quarantined FROM load_runs")).one()
    # E2 is in both feeds: neither row loads
    assert [tuple(r) for r in rows] == [
        ("E1", 50000, "journal", "journal.csv:2"),
        ("E3", 65000, "journal", "journal.csv:4"),
        ("E4", -65000, "journal", "journal.csv:5"),
        ("R1", 65000, "rejets", "rejets.csv:2"),
    ]
    assert sorted((q.source_name, q.source_row, q.reason) for q in quarantined) == [
        ("journal", "journal.csv:3", "key_in_two_sources"),
        ("rejets", "rejets.csv:3", "key_in_two_sources"),
    ]
    for row in quarantined:
        assert "journal at journal.csv:3" in row.message
        assert "rejets at rejets.csv:3" in row.message
    assert tuple(run) == (6, 4, 2)
    # unchanged files and datafix: the next run skips the entity
    again, _ = _run(path, warehouse, "run-2")
    assert again.status == "unchanged"
    # one feed's file changes: both are read again, the clash is gone once fixed at the source
    _inbox(hub_home, **{"rejets.csv": REJECTS.replace("E2;T1", "R2;T1")})
    third, _ = _run(path, warehouse, "run-3")
    assert third.status == "read"
    url = warehouse.engine.url.render_as_string(hide_password=False)
    assert balances(url, LANDLORD) == {"T1": 50000 - 50000 + 50000, "T2": 65000 - 65000 + 65000}
    assert open_quarantine(url, LANDLORD, "ledger_entries") == {}


def test_a_sheets_pattern_reads_every_matching_sheet_with_the_same_rules(
    hub_home: Path, tmp_path: Path, warehouse: Warehouse
) -> None:
    inbox = _inbox(hub_home)
    workbook = openpyxl.Workbook()
    first = workbook.active
    first.title = "Écritures"
    first.append(["Pièce", "Compte", "Date", "Montant"])
    first.append(["E1", "T1", "01/03/2026", 400])
    for title, ref, amount in (("Rejets mars", "R1", 400), ("Rejets avril", "R2", 410.5)):
        sheet = workbook.create_sheet(title)
        sheet.append(["Réf", "Locataire", "Date", "Montant"])
        sheet.append([ref, "T1", "10/03/2026", amount])
    workbook.save(inbox / "classeur.xlsx")
    feeds = [
        {
            "source": "classeur",
            "sheet": "Écritures",
            "fields": {
                "entry_ref": "Pièce",
                "tenant_ref": "Compte",
                "entry_date": "Date",
                "kind": {"const": "rent_call"},
                "amount_cents": "Montant",
            },
        },
        {
            "source": "classeur",
            "sheets": "rejets *",
            "fields": {
                "entry_ref": "Réf",
                "tenant_ref": "Locataire",
                "entry_date": "Date",
                "kind": {"const": "rejected_debit"},
                "amount_cents": "Montant",
            },
        },
    ]
    document = _datafix(feeds=feeds)
    document["sources"] = {"classeur": {"kind": "xlsx", "path": "classeur.xlsx"}}
    path = write_datafix(tmp_path, document)
    _run(path, warehouse, "run-1")
    with warehouse.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT entry_ref, amount_cents, source_name, source_row FROM ledger_entries")
        ).all()
    assert sorted(tuple(r) for r in rows) == [
        ("E1", 40000, "classeur[Écritures]", "classeur.xlsx:Écritures:2"),
        ("R1", 40000, "classeur[rejets *]", "classeur.xlsx:Rejets mars:2"),
        ("R2", 41050, "classeur[rejets *]", "classeur.xlsx:Rejets avril:2"),
    ]
    assert check_datafix(path) == []
    broken = document | {
        "entities": {"ledger_entries": {"feeds": [feeds[0], {**feeds[1], "sheets": "Impayés*"}]}}
    }
    problems = check_datafix(write_datafix(tmp_path, broken))
    assert len(problems) == 1
    assert "no sheet of `classeur` matches `sheets: Impayés*`" in problems[0].message
    assert "Rejets mars" in problems[0].message


@pytest.mark.parametrize(
    ("entity", "message"),
    [
        ({"feeds": FEEDS, "source": "journal"}, "with `feeds`, put `source` inside each feed"),
        ({"fields": FEEDS[0]["fields"]}, "`source` missing"),
        ({"feeds": [FEEDS[0], FEEDS[0]]}, "two feeds read `journal`"),
        (
            {"feeds": [{**FEEDS[0], "sheet": "A", "sheets": "B*"}]},
            "give `sheet` (one sheet) or `sheets` (a pattern), not both",
        ),
    ],
)
def test_an_entity_takes_one_source_or_feeds_and_says_which(
    entity: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Datafix.model_validate(_datafix(**entity))


def test_each_feed_is_checked_where_it_is_written() -> None:
    feeds = [FEEDS[0], {**FEEDS[1], "source": "rejet", "fields": {"entry_ref": "x"}}]
    issues = semantic_issues(Datafix.model_validate(_datafix(feeds=feeds)))
    paths = {issue.path: issue.message for issue in issues}
    assert paths[("entities", "ledger_entries", "feeds", 1, "source")] == (
        "source `rejet` is not declared under `sources`"
    )
    assert ("entities", "ledger_entries", "feeds", 1, "fields") in paths
    assert not any(path[:4] == ("entities", "ledger_entries", "feeds", 0) for path in paths)


def test_two_incremental_feeds_each_resume_from_their_own_watermark(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    erp = tmp_path / "erp.db"
    with sqlite3.connect(erp) as conn:
        for table in ("journal", "rejets"):
            conn.execute(
                f"CREATE TABLE {table} (id TEXT PRIMARY KEY, compte TEXT, jour TEXT,"
                " montant TEXT, modifie TEXT)"
            )
        conn.executemany(
            "INSERT INTO journal VALUES (?, ?, ?, ?, ?)",
            [("E1", "T1", "2026-03-01", "500.00", "2026-03-01 08:00:00"),
             ("E2", "T2", "2026-03-01", "650.00", "2026-03-01 09:00:00")],
        )  # fmt: skip
        conn.execute(
            "INSERT INTO rejets VALUES ('R1', 'T1', '2026-03-10', '500.00', '2026-03-10 06:00:00')"
        )
    columns = ("id", "compte", "jour", "montant")
    document = _datafix(
        mode="incremental",
        feeds=[
            _ledger_feed("journal", columns, {"const": "rent_call"}),
            _ledger_feed("rejets", columns, {"const": "rejected_debit"}),
        ],
    )
    document["sources"] = {
        name: {
            "kind": "sql",
            "url": f"sqlite:///{erp}",
            "table": name,
            "key": ["id"],
            "cursor": {"column": "modifie"},
        }
        for name in ("journal", "rejets")
    }
    path = write_datafix(tmp_path, document)
    first, _ = _run(path, warehouse, "night-1")
    assert first.rows == 3
    assert {feed: mark.value for feed, mark in first.watermarks.items()} == {
        "journal": "2026-03-01 09:00:00",
        "rejets": "2026-03-10 06:00:00",
    }
    with sqlite3.connect(erp) as conn:
        conn.execute(
            "INSERT INTO rejets VALUES ('R2', 'T2', '2026-03-11', '650.00', '2026-03-11 06:00:00')"
        )
    second, _ = _run(path, warehouse, "night-2")
    assert [(read.label, len(read.raw)) for read in second.reads] == [("rejets", 1)]
    assert warehouse.cursor(LANDLORD, "ledger_entries", "journal").value == "2026-03-01 09:00:00"
    assert warehouse.cursor(LANDLORD, "ledger_entries", "rejets").value == "2026-03-11 06:00:00"
    third, _ = _run(path, warehouse, "night-3")
    assert third.status == "unchanged"
    url = warehouse.engine.url.render_as_string(hide_password=False)
    assert balances(url, LANDLORD) == {"T1": 100000, "T2": 130000}


def test_feeds_pass_the_json_schema_the_editor_uses() -> None:
    import json

    import jsonschema

    from schemas.reference import JSON_SCHEMA_PATH

    validator = jsonschema.Draft202012Validator(json.loads(JSON_SCHEMA_PATH.read_text("utf-8")))
    landlord = Path(__file__).parents[2] / "landlords" / "bocage-habitat" / "bocage-habitat.yaml"
    for document in (
        _datafix(feeds=FEEDS),
        yaml.safe_load(landlord.read_text(encoding="utf-8")),
    ):
        assert [error.message for error in validator.iter_errors(document)] == []
    # neither form, or both: the editor says so too
    assert list(validator.iter_errors(_datafix(mode="snapshot")))
    assert list(validator.iter_errors(_datafix(feeds=FEEDS, source="journal", fields={})))
