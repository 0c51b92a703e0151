"""Table 3 of the bench (tests/bench/derive.py): its verdicts compare each derive with the load
of the same data and the arrears' memory at two sizes, and its generated works landlord is a
datafix the hub accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.lib.datafixes import load_datafix
from tests.bench import derive


def _entry(database: str, kind: str, data: str, load: float, seconds: float, rss: float) -> dict:
    return {
        "database": database,
        "data": data,
        "derive_kind": kind,
        "load": {"steps": {"load": {"seconds": load, "cpu_seconds": load}}},
        "derive": {"seconds": seconds, "cpu_seconds": seconds, "peak_rss_mb": rss,
                   "steps": {kind: {"seconds": seconds, "cpu_seconds": seconds}}},
    }  # fmt: skip


def test_a_derive_slower_than_its_load_is_a_miss_and_memory_is_judged_between_sizes() -> None:
    report = {
        "sizes": [250_000, 1_000_000],
        "results": [
            _entry("sqlite", "arrears", "ledger 250,000 lines", 2.0, 1.5, 200.0),
            _entry("sqlite", "arrears", "ledger 1,000,000 lines", 8.0, 9.0, 300.0),
            _entry("sqlite", "works", "works 200,000 orders", 3.0, 1.0, 180.0),
            {
                "database": "postgresql",
                "data": "works 200,000 orders",
                "derive_kind": "works",
                "load": {"error": "OperationalError: no server"},
            },
        ],
    }
    lines = derive.verdicts(report)
    assert lines[0].startswith("MET: sqlite: arrears on ledger 250,000 lines: derive 1.50 s")
    assert lines[1].startswith("MISS: sqlite: arrears on ledger 1,000,000 lines: derive 9.00 s")
    assert lines[2].startswith("MET: sqlite: works on works 200,000 orders")
    assert lines[3] == "MISS: postgresql: works on works 200,000 orders: error"
    assert lines[4].startswith("MISS: sqlite: arrears peak RSS 300 MB on 1,000,000 lines")
    assert "1.50x" in lines[4]
    assert len(lines) == 5  # no memory verdict for PostgreSQL: its ledgers were not measured


@pytest.fixture
def bench_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The hub's home for the generated data sets, whose files the bench writes under `bench/`
    (the operator's inbox root the landlords read)."""
    monkeypatch.setenv("DATAFIX_HOME", str(tmp_path))
    monkeypatch.setenv("DATAFIX_INBOX_ROOTS", str(tmp_path / "bench"))
    return tmp_path


def test_the_generated_works_landlord_is_a_valid_datafix_reading_its_own_inbox(
    bench_home: Path,
) -> None:
    data = derive.works_set(50)
    loaded = load_datafix(data.datafixes / "bench-works-50.yaml")
    assert loaded.datafix.landlord.id == "bench-works-50"
    assert loaded.datafix.inbox.endswith("/bench/derive/works-50")
    assert (bench_home / "bench" / "derive" / "works-50" / "commandes_2024-12.xlsx").is_file()
    assert (data.entity, data.derive, data.rows) == ("work_orders", "works", 50)


def test_the_derive_ledgers_have_one_tenant_per_ten_lines_in_their_own_folder(
    bench_home: Path,
) -> None:
    data = derive.ledger_set(2_000)
    assert (data.landlord, data.entity, data.derive) == ("bench-ledger-2000", "ledger_entries",
                                                         "arrears")  # fmt: skip
    assert (data.rows, data.tenants) == (2_000, 200)
    made = bench_home / "bench" / "derive" / "ledger-2000" / "quittancement_2024-12.csv"
    lines = made.read_text(encoding="cp1252").splitlines()[1:-2]  # header; blank and total
    assert len(lines) == 2_000
    assert len({line.split(";")[1] for line in lines}) == 200  # T100000 … T100199, all drawn
    loaded = load_datafix(data.datafixes / "bench-ledger-2000.yaml")
    assert loaded.datafix.inbox.endswith("/bench/derive/ledger-2000")
