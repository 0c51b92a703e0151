"""The stages stream an entity chunk by chunk (issue 13, point 1).

A ledger CSV goes through pull → normalise → contract → load as the nightly job runs it, with
the rows mapped, checked and loaded `chunk` rows at a time (1, 7, 1,000 and the whole file in
one chunk), on SQLite and PostgreSQL. The warehouse must end up the same whatever the chunk:
same canonical rows (row hashes included), same quarantine, same counts in `load_runs`, across
two nights (the second a snapshot that drops rows: soft deletes). The expected figures come
from the fixture's own numbers, written by hand. A contract failure found only in the last
chunk leaves nothing of that night's rows in the warehouse and records the blocked load.
"""

from __future__ import annotations

import gc
import stat
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

import pipelines.lib.warehouse as warehouse_module
from pipelines.lib.datafixes import LoadedDatafix, load_datafix
from pipelines.lib.stages import (
    NormalisedEntity,
    check_contract,
    load,
    normalise,
    pull,
    record_refused,
)
from pipelines.lib.warehouse import Warehouse
from schemas.tables import CANONICAL_TABLES, load_runs, quarantine
from tests.pipelines.lib.helpers import ecritures_datafix, ledger_night, migrated_warehouse

LANDLORD = "stream-habitat"
LEDGER = CANONICAL_TABLES["ledger_entries"]
ENTRIES = 60  # E001…E060 on lines 2…61
DUPLICATED = {30: 5, 58: 12}  # line → the entry it repeats (an earlier chunk's at chunk 7)
BAD_AMOUNT = {20}  # a line whose amount does not read
WHOLE = 1_000_000
CHUNKS = [1, 7, 1_000, WHOLE]


@pytest.fixture
def warehouse(warehouse_url: str) -> Any:
    yield from migrated_warehouse(warehouse_url)


def write_ledger(inbox: Path, entries: range, *, changed: set[int] = frozenset()) -> None:
    """One line per entry of `entries` (E001…), in order; the lines in DUPLICATED repeat an
    earlier entry's reference (with other values); `changed` entries carry another amount."""
    lines = ["Pièce;Compte;Date;Code;Montant"]
    for number in entries:
        line = number + 1
        reference = DUPLICATED.get(line, number)
        code, amount = ("LOY", 400 + number) if number % 2 else ("REG", -(400 + number))
        if number in changed:
            amount += 1 if amount > 0 else -1
        text = f"{amount},50" if line not in BAD_AMOUNT else "douze"
        lines.append(f"E{reference:03d};T{number % 7:03d};01/03/2026;{code};{text}")
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "ecritures.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def ledger_datafix(folder: Path, inbox: Path, **mapping: Any) -> Path:
    return ecritures_datafix(folder, inbox, (LANDLORD, "Stream Habitat"), **mapping)


def night(
    path: Path, warehouse: Warehouse, run_id: str, chunk: int, stage: bool | None = None
) -> tuple[Any, Any, Any]:
    """Normalise `chunk` rows at a time, the contract, then the load (or the blocked trace);
    on SQLite the rows are staged by a helper process unless `stage` is False."""
    return ledger_night(path, warehouse, run_id, chunk=chunk, stage=stage)


def landlord_rows(
    conn: sa.Connection, table: sa.Table, names: str, *more: Any, order: str = ""
) -> list[tuple]:
    """The landlord's rows of `table`: the columns `names` (space-separated), then `more`,
    ordered by `order` (default: the first of `names`)."""
    columns = [table.c[name] for name in names.split()]
    order_by = table.c[order or names.split()[0]]
    query = sa.select(*columns, *more).where(table.c.landlord_id == LANDLORD).order_by(order_by)
    return [tuple(row) for row in conn.execute(query)]


def chunked_ledger(
    tmp_path: Path, entries: range, *, chunk: int
) -> tuple[LoadedDatafix, NormalisedEntity]:
    """The ledger of `entries` written to the inbox, pulled and normalised `chunk` rows at a
    time (no warehouse)."""
    inbox = tmp_path / "inbox"
    path = ledger_datafix(tmp_path, inbox)
    write_ledger(inbox, entries)
    loaded = load_datafix(path)
    return loaded, normalise(loaded, pull(loaded, "ledger_entries"), chunk=chunk)


def contents(warehouse: Warehouse) -> dict[str, list[tuple]]:
    """What the warehouse holds for the landlord, without the run's own ids and times."""
    entries = "entry_ref tenant_ref entry_date kind amount_cents source_row row_hash"
    counts = "status rows_in_source read loaded inserted updated unchanged deleted quarantined"
    resolved = quarantine.c.resolved_at.is_not(None)
    with warehouse.engine.connect() as conn:
        return {
            "ledger": landlord_rows(conn, LEDGER, entries, LEDGER.c.deleted_at.is_not(None)),
            "quarantine": landlord_rows(conn, quarantine, "source_row reason message", resolved),
            "runs": landlord_rows(conn, load_runs, counts, order="run_id"),
        }


def two_nights(
    tmp_path: Path, warehouse: Warehouse, chunk: int, stage: bool | None = None
) -> dict[str, list[tuple]]:
    """Night 1: the 60 lines. Night 2: lines of E055…E060 gone (a snapshot: soft-deleted),
    E003 and E004 changed."""
    inbox = tmp_path / "inbox"
    path = ledger_datafix(tmp_path, inbox)
    write_ledger(inbox, range(1, ENTRIES + 1))
    _, contract, _ = night(path, warehouse, "run-1", chunk, stage)
    assert contract.passed, contract.summary()
    write_ledger(inbox, range(1, 55), changed={3, 4})
    _, contract, _ = night(path, warehouse, "run-2", chunk, stage)
    assert contract.passed, contract.summary()
    return contents(warehouse)


@pytest.mark.parametrize("chunk", CHUNKS)
def test_the_warehouse_holds_the_same_whatever_the_chunk(
    tmp_path: Path, warehouse: Warehouse, chunk: int, warehouse_url: str
) -> None:
    got = two_nights(tmp_path, warehouse, chunk)
    # by hand: night 1 reads 60 lines; line 20 (E019) has a bad amount, lines 30 and 58 repeat
    # E005 and E012 (quarantined as duplicates, naming the first line): 57 rows loaded
    assert got["runs"][0] == ("loaded", 60, 60, 57, 57, 0, 0, 0, 3)
    # night 2: 54 lines, E055…E060 gone but E057 (line 58 repeated E012, never loaded) → 5
    # soft deletes; E003, E004 changed; line 30 (dup) and 20 (bad) quarantined again
    assert got["runs"][1] == ("loaded", 54, 54, 52, 0, 2, 50, 5, 2)
    live = [row for row in got["ledger"] if not row[-1]]
    assert len(got["ledger"]) == 57 and len(live) == 52
    assert {row[0] for row in got["ledger"]} - {row[0] for row in live} == {
        "E055", "E056", "E058", "E059", "E060",
    }  # fmt: skip
    duplicates = [row for row in got["quarantine"] if row[1] == "duplicate_key"]
    assert [(row[0], row[2], row[3]) for row in duplicates] == [
        (
            "ecritures.csv:30",
            "entry_ref 'E005' already appears at ecritures.csv:6 — keep one row per reference"
            " in the export",
            False,
        ),
        (
            "ecritures.csv:58",
            "entry_ref 'E012' already appears at ecritures.csv:13 — keep one row per reference"
            " in the export",
            True,  # gone from night 2's export: resolved
        ),
    ]
    if chunk != WHOLE:
        # the same warehouse, row hashes included, as with the whole file in one chunk
        other = tmp_path / "whole"
        other.mkdir()
        whole_url = warehouse_url
        if warehouse_url.startswith("sqlite"):
            whole_url = f"sqlite:///{other}/warehouse.db"
            reference = Warehouse(whole_url)
            reference.migrate()
        else:
            reference = warehouse
            with warehouse.engine.begin() as conn:
                for table in (LEDGER, quarantine, load_runs):
                    conn.execute(table.delete().where(table.c.landlord_id == LANDLORD))
        try:
            assert two_nights(other, reference, WHOLE) == got
        finally:
            if reference is not warehouse:
                reference.dispose()


def test_a_contract_failure_in_the_last_chunk_loads_nothing_of_the_night(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    """`sign_matches_kind: block`: the rows breaking it stay for the contract, which fails on
    the last line only (chunk 9 of 7 rows); nothing of night 2 is written but its trace."""
    inbox = tmp_path / "inbox"
    path = ledger_datafix(tmp_path, inbox, rules={"sign_matches_kind": "block"})
    write_ledger(inbox, range(1, ENTRIES + 1))
    night(path, warehouse, "run-1", 7)
    before = contents(warehouse)["ledger"]
    lines = (inbox / "ecritures.csv").read_text(encoding="utf-8").splitlines()
    # every amount changed (a load would update them all), the last line's sign broken
    lines = [lines[0]] + [line.replace(",50", ",75") for line in lines[1:]]
    lines[-1] = lines[-1].replace(";-460,75", ";460,75")  # E060 REG (a credit) made positive
    assert lines[-1].endswith("REG;460,75")
    (inbox / "ecritures.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _, contract, result = night(path, warehouse, "run-2", 7)
    assert not contract.passed
    assert [f["expectation"] for f in contract.failures] == ["sign_matches_kind"]
    assert contract.failures[0]["failing_keys"] == ["E060"]
    assert result.loaded == 0
    after = contents(warehouse)
    assert after["ledger"] == before  # not one amount of night 2
    assert after["runs"][-1][:2] == ("blocked", 60)


def test_a_key_repeated_in_the_last_chunk_fails_the_contract(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    """The contract's key rule looks across chunks: a spooled last chunk repeating a key of
    the first (written here by hand: normalise itself quarantines such rows) fails it, and
    the blocked load writes no canonical row."""
    loaded, normalised = chunked_ledger(tmp_path, range(1, 15), chunk=7)
    assert normalised.batch is not None
    spool = normalised.batch.spool
    first = spool.frame("rows", 0)
    spool.add("rows", first.iloc[[2]].assign(source_row="ecritures.csv:99"))
    spool.add("rejects", spool.whole("rejects").iloc[:0])
    contract = check_contract(loaded, normalised)
    assert not contract.passed
    [failure] = contract.failures
    assert failure["expectation"] == "entry_ref_unique"
    assert failure["failing_keys"] == ["E003"] and failure["unexpected_count"] == 2
    record_refused(
        warehouse, loaded, normalised, run_id="run-1", status="blocked", reason=contract.summary()
    )
    got = contents(warehouse)
    assert got["ledger"] == [] and got["runs"][0][0] == "blocked"


def test_the_spool_is_private_and_removed_when_released(tmp_path: Path) -> None:
    _, normalised = chunked_ledger(tmp_path, range(1, 30), chunk=10)
    assert normalised.batch is not None
    folder = normalised.batch.spool.folder
    files = sorted(folder.iterdir())
    # rows of 3 chunks, rejects of the 2 holding lines 20 and 30: each part's last chunk is
    # held in memory (`Spool._last`), the others on disk
    assert len(files) == 3
    assert normalised.batch.spool.counts["rows"] == [10, 9, 8]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {stat.S_IMODE(file.stat().st_mode) for file in files} == {0o600}
    rows = normalised.batch.rows
    assert len(rows) == 27 and rows["entry_ref"].is_unique
    assert isinstance(rows, pd.DataFrame)
    del normalised, rows
    gc.collect()
    assert not folder.exists()


def test_a_preview_reads_the_first_chunk_only(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    path = ledger_datafix(tmp_path, inbox)
    write_ledger(inbox, range(1, ENTRIES + 1))
    loaded = load_datafix(path)
    pulled = pull(loaded, "ledger_entries")
    assert pulled.rows == ENTRIES
    normalised = normalise(loaded, pulled, chunk=25, limit=1)
    assert normalised.batch is not None
    # lines 2…26: E019's bad amount quarantined, the rest accepted
    assert (normalised.batch.rows_in_source, normalised.batch.accepted) == (25, 24)
    assert normalised.batch.reasons == {"bad_amount": 1}


# --- Rows staged by a helper process for a SQLite load (pipelines.lib.staging) -------------


def sqlite_warehouse(folder: Path) -> Warehouse:
    folder.mkdir()
    warehouse = Warehouse(f"sqlite:///{folder}/warehouse.db")
    warehouse.migrate()
    return warehouse


def stored(warehouse: Warehouse) -> list[tuple]:
    """Every canonical ledger row as SQLite stores it: each value with its storage class, the
    run's own ids and times left out."""
    names = [c.name for c in LEDGER.columns if c.name not in ("run_id", "loaded_at", "deleted_at")]
    picked = ", ".join(f'"{name}", typeof("{name}")' for name in names)
    with warehouse.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            f"SELECT {picked}, deleted_at IS NULL FROM ledger_entries ORDER BY entry_ref"
        )
        return [tuple(row) for row in rows]


@pytest.mark.parametrize("chunk", [1, 7])
def test_staged_rows_leave_the_warehouse_a_bound_load_leaves(tmp_path: Path, chunk: int) -> None:
    """Two nights (a first bulk load, then a merge with soft deletes and changes) with the rows
    staged by the helper, and with the load binding them itself: the same rows, row hashes,
    storage classes, quarantine and counts."""
    got = {}
    for stage in (True, False):
        warehouse = sqlite_warehouse(tmp_path / f"warehouse-{stage}")
        try:  # the same datafix and inbox (the datafix's version is in every row)
            got[stage] = (
                two_nights(tmp_path, warehouse, chunk, stage),
                stored(warehouse),
            )
        finally:
            warehouse.dispose()
    assert got[True] == got[False]
    assert len(got[True][1]) == 57 and got[True][0]["runs"][1][0] == "loaded"


def test_the_load_copies_the_rows_the_helper_staged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The staged file is what the load reads: its rows copied with one INSERT … SELECT (the
    driver's multi-row INSERT never runs), the lineage from the load."""
    warehouse = sqlite_warehouse(tmp_path / "warehouse")
    loaded, normalised = chunked_ledger(tmp_path, range(1, ENTRIES + 1), chunk=7)
    assert normalised.batch is None or normalised.batch.spool.staged is None  # not asked for
    normalised = normalise(loaded, pull(loaded, "ledger_entries"), chunk=7, stage=True)
    assert normalised.batch is not None and normalised.batch.spool.staged is not None

    def not_bound(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the rows were bound again")

    monkeypatch.setattr(warehouse_module, "insert_rows", not_bound)
    try:
        result = load(warehouse, loaded, normalised, run_id="run-1")
        assert result is not None and result.inserted == 57
        with warehouse.engine.connect() as conn:
            lineage = conn.execute(
                sa.select(LEDGER.c.landlord_id, LEDGER.c.run_id, LEDGER.c.source_name).distinct()
            ).all()
        assert [tuple(row) for row in lineage] == [(LANDLORD, "run-1", "ecritures")]
    finally:
        warehouse.dispose()


def test_a_helper_that_failed_leaves_the_load_to_bind_the_rows(tmp_path: Path) -> None:
    warehouse = sqlite_warehouse(tmp_path / "warehouse")
    reference = sqlite_warehouse(tmp_path / "reference")
    try:
        for target, stage in ((warehouse, True), (reference, False)):
            # the same datafix and inbox (the datafix's version is in every row)
            loaded, _ = chunked_ledger(tmp_path, range(1, 30), chunk=7)
            normalised = normalise(loaded, pull(loaded, "ledger_entries"), chunk=7, stage=stage)
            assert normalised.batch is not None
            staged = normalised.batch.spool.staged
            if stage:
                assert staged is not None
                staged._process.kill()  # the helper dies before the load
            load(target, loaded, normalised, run_id="run-1")
        assert stored(warehouse) == stored(reference) and len(stored(warehouse)) == 27
    finally:
        warehouse.dispose()
        reference.dispose()


def test_a_contract_failure_in_the_last_chunk_loads_nothing_staged(tmp_path: Path) -> None:
    """The helper stages every chunk of night 2, whose last line breaks a blocking rule: the
    contract fails, the staged file is never read, nothing of night 2 is written."""
    warehouse = sqlite_warehouse(tmp_path / "warehouse")
    try:
        inbox = tmp_path / "inbox"
        path = ledger_datafix(tmp_path, inbox, rules={"sign_matches_kind": "block"})
        write_ledger(inbox, range(1, ENTRIES + 1))
        night(path, warehouse, "run-1", 7, stage=True)
        before = stored(warehouse)
        lines = (inbox / "ecritures.csv").read_text(encoding="utf-8").splitlines()
        lines = [lines[0]] + [line.replace(",50", ",75") for line in lines[1:]]
        lines[-1] = lines[-1].replace(";-460,75", ";460,75")
        (inbox / "ecritures.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        normalised, contract, result = night(path, warehouse, "run-2", 7, stage=True)
        assert normalised.batch is not None and normalised.batch.spool.staged is not None
        assert not contract.passed and result.loaded == 0
        assert stored(warehouse) == before
        assert contents(warehouse)["runs"][-1][:2] == ("blocked", 60)
    finally:
        warehouse.dispose()


def test_the_staged_file_is_private_and_removed_with_the_spool(tmp_path: Path) -> None:
    loaded, _ = chunked_ledger(tmp_path, range(1, 30), chunk=10)
    normalised = normalise(loaded, pull(loaded, "ledger_entries"), chunk=10, stage=True)
    assert normalised.batch is not None
    spool = normalised.batch.spool
    staged = spool.staged
    assert staged is not None
    finished = staged.finished(normalised.batch.accepted)
    assert finished is not None and finished.rows == 27
    assert finished.path.parent == spool.folder
    assert stat.S_IMODE(spool.folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(finished.path.stat().st_mode) == 0o600
    process = staged._process
    del normalised, spool, staged
    gc.collect()
    assert not finished.path.parent.exists()
    assert process.poll() is not None


def test_a_released_spool_ends_its_helper(tmp_path: Path) -> None:
    """A run that stops before its load (a failure, the contract) ends the helper with the
    spool, whatever it was doing."""
    loaded, _ = chunked_ledger(tmp_path, range(1, 30), chunk=10)
    normalised = normalise(loaded, pull(loaded, "ledger_entries"), chunk=10, stage=True)
    assert normalised.batch is not None
    spool = normalised.batch.spool
    assert spool.staged is not None
    process = spool.staged._process
    spool.remove()
    assert process.poll() is not None and not spool.folder.exists()
