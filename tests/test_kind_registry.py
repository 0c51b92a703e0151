"""A kind is one module + one registry line: toy kinds added from `tests/toy_kinds.py` alone go
through `datafix check`, `preview`, `run` and `push` like the hub's own; and a run parses its
landlord's datafix once."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from connectors import registry
from schemas.datafix import Datafix
from tests.landlords import common
from tests.toy_kinds import DRAWER, JSONL

INVOICES = [
    # ref, order, kind, amount HT (euros), VAT, issued, status
    ("F-001", "BT-1", "Définitive", "1200.50", "240.10", "2026-11-02", "Émise"),
    ("F-002", "BT-2", "Proforma", "80", "16", "2026-11-03", "Émise"),
    ("F-003", "BT-3", "Définitive", "99.99", "0", "2026-11-04", "Brouillon"),
    ("F-004", "", "Définitive", "10", "2", "2026-11-05", "Émise"),  # no BT: quarantined
]

DATAFIX = """\
landlord: {id: toy-habitat, name: Toy Habitat}
sources:
  factures: {kind: jsonl, path: factures.jsonl}
entities:
  invoices:
    source: factures
    max_quarantine_percent: 50 # one invoice of four has no BT number
    fields:
      invoice_ref: numero
      order_ref: bt
      kind: {from: type, map: {Proforma: proforma, Définitive: final}}
      amount_cents: ht
      vat_cents: tva
      issued_date: {from: date, formats: [yyyy-mm-dd]}
      status: {from: statut, map: {Brouillon: draft, Émise: issued}}
push:
  confirmed:
    invoices: {status: [issued]}
  sinks:
    tiroir:
      kind: drawer
      sends: invoices
      folder: "${DATAFIX_HOME}/drawer"
      fields:
        Numero: invoice_ref
        BT: order_ref
        TTC: {from: total_cents, as: euros}
"""


def toy_datafix(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The real `datafix` command, with the toy kinds registered (tests/toy_kinds.py)."""
    return common.datafix(*args, env=env, command=(sys.executable, "-m", "tests.toy_kinds"))


@pytest.fixture
def toy_landlord(hub_home: Path, tmp_path: Path) -> dict[str, str]:
    datafixes = tmp_path / "datafixes"
    datafixes.mkdir()
    (datafixes / "toy-habitat.yaml").write_text(DATAFIX, encoding="utf-8")
    inbox = hub_home / "inbox" / "toy-habitat"
    inbox.mkdir(parents=True)
    keys = ("numero", "bt", "type", "ht", "tva", "date", "statut")
    lines = [json.dumps(dict(zip(keys, row, strict=True))) for row in INVOICES]
    (inbox / "factures.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (hub_home / "drawer").mkdir()
    return {"DATAFIX_DATAFIXES_DIR": str(datafixes)}


def test_an_unregistered_kind_is_refused_and_a_registered_one_validates() -> None:
    section = {"kind": "jsonl", "path": "x.jsonl"}
    document = {
        "landlord": {"id": "toy-habitat", "name": "Toy"},
        "sources": {"f": section},
        "entities": {},
    }
    with pytest.raises(ValidationError, match="unknown source kind `jsonl`"):
        Datafix.model_validate(document)
    with registry.registered(JSONL, DRAWER):
        datafix = Datafix.model_validate(document)
        assert type(datafix.sources["f"]).__name__ == "JsonLinesSource"
        with pytest.raises(ValueError, match="already registered"):
            registry.register(JSONL)
    assert registry.source_kind("jsonl") is None


@pytest.mark.slow
def test_toy_kinds_go_through_check_preview_run_and_push(
    toy_landlord: dict[str, str], hub_home: Path
) -> None:
    check = toy_datafix("check", env=toy_landlord)
    assert check.returncode == 0, check.stdout + check.stderr

    preview = toy_datafix("preview", "toy-habitat", env=toy_landlord)
    assert preview.returncode == 0, preview.stdout + preview.stderr
    assert "F-002" in preview.stdout and "factures.jsonl:4" in preview.stdout

    run = toy_datafix("run", "toy-habitat", env={**toy_landlord, "DATAFIX_COUNT_PARSES": "1"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"invoices\s+loaded\s+4\s+3\s+1\s+0\s+passed", run.stdout), run.stdout
    assert re.search(r"tiroir\s+invoices\s+sent\s+2\s+0\s+0\s+0", run.stdout), run.stdout
    # the run parsed the landlord's datafix once, however many assets read it
    assert "datafix parses: 1" in run.stderr, run.stderr
    delivered = {
        path.stem: json.loads(path.read_text(encoding="utf-8"))["fields"]
        for path in (hub_home / "drawer").glob("*.json")
    }
    # issued and mapped: F-001 (1,200.50 + 240.10), F-002 (80 + 16); F-003 is a draft, F-004
    # has no BT number
    assert delivered == {
        "F-001": {"Numero": "F-001", "BT": "BT-1", "TTC": "1440.60"},
        "F-002": {"Numero": "F-002", "BT": "BT-2", "TTC": "96.00"},
    }

    push = toy_datafix("push", "toy-habitat", env=toy_landlord)
    assert push.returncode == 0, push.stdout + push.stderr
    # nothing changed: nothing is sent again
    assert re.search(r"tiroir\s+invoices\s+nothing to send\s+0\s+2\s+0\s+0", push.stdout)


def test_a_broken_toy_sink_folder_is_a_check_error(
    toy_landlord: dict[str, str], hub_home: Path
) -> None:
    (hub_home / "drawer").rmdir()
    check = toy_datafix("check", env=toy_landlord)
    assert check.returncode == 1
    assert "toy-habitat.yaml" in check.stdout
    assert "sink `tiroir`: folder" in check.stdout and "does not exist" in check.stdout
