"""Row rules quarantine, table rules block (issue 10, points 1 and 2).

A ledger of 10,000 rows exported as CSV, whose `Code` maps onto debit or credit kinds: rows
whose amount has the wrong sign for their kind break `sign_matches_kind`. The stages run as the
nightly job runs them (pull → normalise → contract → load, or the blocked load's trace), on
SQLite and PostgreSQL (`warehouse_url`). Expected figures come from the fixture's own numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from pipelines.lib.checks import check_datafix
from pipelines.lib.warehouse import Warehouse
from schemas.tables import CANONICAL_TABLES, load_runs, quarantine
from tests.pipelines.lib.helpers import ecritures_datafix, ledger_night, migrated_warehouse

ROWS = 10_000
LANDLORD = "sigma-habitat"
LEDGER = CANONICAL_TABLES["ledger_entries"]


@pytest.fixture
def warehouse(warehouse_url: str) -> Any:
    yield from migrated_warehouse(warehouse_url)


def write_ledger(inbox: Path, wrong_sign: set[int]) -> None:
    """10,000 entries E00001…: rent calls (LOY, debits) and payments (REG, credits); an entry in
    `wrong_sign` carries the sign of the other side."""
    lines = ["Pièce;Compte;Date;Code;Montant"]
    for i in range(1, ROWS + 1):
        code, amount = ("LOY", 450.25) if i % 2 else ("REG", -450.25)
        if i in wrong_sign:
            amount = -amount
        lines.append(f"E{i:05d};T{i % 300:04d};01/03/2026;{code};{amount:.2f}".replace(".", ","))
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "ecritures.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def ledger_datafix(folder: Path, inbox: Path, **mapping: Any) -> Path:
    return ecritures_datafix(folder, inbox, (LANDLORD, "Sigma Habitat"), **mapping)


def night(path: Path, warehouse: Warehouse, run_id: str) -> tuple[Any, Any, Any]:
    """What the nightly job does for the ledger (`ledger_night`), with the normalised batch."""
    normalised, contract, result = ledger_night(path, warehouse, run_id)
    return normalised.batch, contract, result


def table(warehouse: Warehouse, query: Any) -> list[Any]:
    with warehouse.engine.connect() as conn:
        return list(conn.execute(query).all())


def ledger_rows(warehouse: Warehouse) -> int:
    return table(warehouse, sa.select(sa.func.count()).select_from(LEDGER))[0][0]


def open_quarantine(warehouse: Warehouse) -> list[Any]:
    return table(
        warehouse,
        sa.select(quarantine.c.source_row, quarantine.c.reason, quarantine.c.message)
        .where(quarantine.c.resolved_at.is_(None))
        .order_by(quarantine.c.source_row),
    )


def audit(warehouse: Warehouse) -> list[Any]:
    return table(
        warehouse,
        sa.select(
            load_runs.c.run_id, load_runs.c.status, load_runs.c.reason, load_runs.c.read,
            load_runs.c.loaded, load_runs.c.quarantined, load_runs.c.skipped,
        ).order_by(load_runs.c.finished_at),
    )  # fmt: skip


def test_one_row_breaking_a_row_rule_is_quarantined_and_the_rest_loads(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    write_ledger(tmp_path / "inbox", wrong_sign={4_242})  # a payment with a positive amount
    path = ledger_datafix(tmp_path, tmp_path / "inbox")

    batch, contract, result = night(path, warehouse, "run-1")

    assert contract.passed, contract.summary()
    assert (result.loaded, result.quarantined) == (9_999, 1)
    assert batch.read == ROWS == result.loaded + result.quarantined + batch.skipped
    assert ledger_rows(warehouse) == 9_999
    [(source_row, reason, message)] = open_quarantine(warehouse)
    assert (source_row, reason) == ("ecritures.csv:4243", "sign_matches_kind")  # header: line 1
    assert "kind payment, amount_cents 45025" in message
    assert audit(warehouse) == [("run-1", "loaded", None, ROWS, 9_999, 1, 0)]


def test_30_percent_broken_blocks_the_load_and_keeps_its_trace(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    write_ledger(tmp_path / "inbox", wrong_sign={5})
    path = ledger_datafix(tmp_path, tmp_path / "inbox")
    night(path, warehouse, "run-1")
    broken = set(range(1, ROWS + 1, 10)) | set(range(2, ROWS + 1, 10)) | set(range(3, ROWS, 10))
    assert len(broken) == 3_000
    write_ledger(tmp_path / "inbox", wrong_sign=broken)

    _, contract, result = night(path, warehouse, "run-2")

    assert not contract.passed
    [failure] = contract.failures
    assert failure["expectation"] == "max_quarantine_percent"
    assert failure["reasons"] == {"sign_matches_kind": 3_000}
    assert failure["failing_keys"][:3] == ["E00001", "E00002", "E00003"]
    assert "3,000 of 10,000 rows quarantined (30 % > max_quarantine_percent 20 %" in (
        contract.summary()
    )
    assert (result.loaded, result.quarantined) == (0, 3_000)
    # nothing of run 2 was loaded: the 9,999 rows of run 1 stand, untouched
    assert ledger_rows(warehouse) == 9_999
    assert table(warehouse, sa.select(sa.func.max(LEDGER.c.run_id)))[0][0] == "run-1"
    runs = audit(warehouse)
    assert [run[:2] for run in runs] == [("run-1", "loaded"), ("run-2", "blocked")]
    assert "max_quarantine_percent" in runs[1][2] and runs[1][3:] == (ROWS, 0, 3_000, 0)
    # the blocked run's rows are kept in quarantine; run 1's row is kept too (E00005 is not
    # broken any more, but only a successful load says so)
    kept = open_quarantine(warehouse)
    assert len(kept) == 3_001
    assert {reason for _, reason, _ in kept} == {"sign_matches_kind"}

    write_ledger(tmp_path / "inbox", wrong_sign=set())  # fixed at the source
    _, contract, result = night(path, warehouse, "run-3")
    assert contract.passed and (result.loaded, result.quarantined) == (ROWS, 0)
    assert open_quarantine(warehouse) == []  # the next successful load resolved them


def test_warn_loads_the_row_and_counts_it(tmp_path: Path, warehouse: Warehouse) -> None:
    write_ledger(tmp_path / "inbox", wrong_sign={4_242})
    path = ledger_datafix(tmp_path, tmp_path / "inbox", rules={"sign_matches_kind": "warn"})

    batch, contract, result = night(path, warehouse, "run-1")

    assert batch.warnings == {"sign_matches_kind": 1}
    assert contract.passed, contract.summary()
    assert [w["expectation"] for w in contract.warnings] == ["sign_matches_kind"]
    assert contract.warnings[0]["failing_keys"] == ["E04242"]
    assert (result.loaded, result.quarantined) == (ROWS, 0)
    assert ledger_rows(warehouse) == ROWS and open_quarantine(warehouse) == []
    with warehouse.engine.connect() as conn:  # the count stays readable outside Dagster
        warned = conn.execute(sa.text("SELECT warnings FROM load_runs")).scalar_one()
    assert json.loads(warned) == {"sign_matches_kind": 1}


def test_block_restores_the_whole_load_refused_naming_the_key(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    write_ledger(tmp_path / "inbox", wrong_sign={4_242})
    path = ledger_datafix(tmp_path, tmp_path / "inbox", rules={"sign_matches_kind": "block"})

    batch, contract, result = night(path, warehouse, "run-1")

    assert len(batch.rejects) == 0 and len(batch.rows) == ROWS
    assert not contract.passed
    assert [f["expectation"] for f in contract.failures] == ["sign_matches_kind"]
    assert contract.failing_keys() == ["E04242"]
    assert ledger_rows(warehouse) == 0 and result.loaded == 0
    [(run_id, status, reason, *_)] = audit(warehouse)
    assert (run_id, status) == ("run-1", "blocked") and "sign_matches_kind: E04242" in reason


def test_max_quarantine_percent_is_a_datafix_setting(tmp_path: Path, warehouse: Warehouse) -> None:
    write_ledger(tmp_path / "inbox", wrong_sign=set(range(1, ROWS + 1, 4)))  # 25 %
    path = ledger_datafix(tmp_path, tmp_path / "inbox", max_quarantine_percent=30)

    _, contract, result = night(path, warehouse, "run-1")

    assert contract.passed and (result.loaded, result.quarantined) == (7_500, 2_500)


def test_an_unknown_rule_name_is_a_check_error_with_did_you_mean(tmp_path: Path) -> None:
    write_ledger(tmp_path / "inbox", wrong_sign=set())
    path = ledger_datafix(tmp_path, tmp_path / "inbox", rules={"sign_matches_knd": "warn"})

    [problem] = check_datafix(path)

    assert problem.message == "`sign_matches_knd` is not a row rule of ledger_entries"
    assert problem.hint == "did you mean `sign_matches_kind`?"
    line = path.read_text(encoding="utf-8").splitlines()[problem.line - 1]
    assert line.strip().startswith("sign_matches_knd:")


def test_a_severity_outside_block_quarantine_warn_is_refused(tmp_path: Path) -> None:
    write_ledger(tmp_path / "inbox", wrong_sign=set())
    path = ledger_datafix(tmp_path, tmp_path / "inbox", rules={"sign_matches_kind": "ignore"})

    [problem] = check_datafix(path)

    assert problem.message == "Input should be 'block', 'quarantine' or 'warn'"
    line = path.read_text(encoding="utf-8").splitlines()[problem.line - 1]
    assert line.strip() == "sign_matches_kind: ignore"
