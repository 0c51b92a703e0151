"""The measuring instrument of Table 1 (tests/bench/process.py): what it reports is the measured
child's own, and the landlords it generates are datafixes the hub accepts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pipelines.lib.datafixes import load_datafix
from tests.bench import process

ALLOCATE = "x = bytearray({mb} << 20); x[::4096] = b'1' * len(x[::4096]); print('{{}}')"


def test_a_child_s_peak_rss_is_its_own_not_the_bench_process_s(tmp_path: Path) -> None:
    held = bytearray(600 << 20)  # this process's peak: far above the child's
    held[::4096] = b"1" * len(held[::4096])
    result = process.timed(
        [sys.executable, "-c", ALLOCATE.format(mb=150)], {}, tmp_path / "logs" / "child"
    )
    assert "error" not in result
    assert 150 < result["peak_rss_mb"] < 400
    assert result["exit_code"] == 0
    assert result["cpu_seconds"] > 0
    assert result["seconds"] >= result["cpu_seconds"] / 8
    del held


def test_a_failing_child_is_an_error_with_the_tail_of_its_output(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "import sys; print('line one', file=sys.stderr); sys.exit(3)"]
    result = process.timed(command, {}, tmp_path / "logs" / "failing")
    assert result["exit_code"] == 3
    assert result["error"] == "line one"


def test_a_generated_landlord_is_a_valid_datafix_reading_its_own_inbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = process.generated_ledger("bench-many-007", "many/bench-many-007", 500, 2, 7)
    home = process.fresh_home("many", [ledger])
    for name, value in process.hub_env(home, ledger.datafixes).items():
        if name.startswith("DATAFIX_"):
            monkeypatch.setenv(name, value)
    loaded = load_datafix(ledger.datafixes / "bench-many-007.yaml")
    assert loaded.datafix.landlord.id == "bench-many-007"
    inbox = home / "bench" / "many" / "bench-many-007"
    assert (inbox / ledger.path.name).samefile(ledger.path)
    assert (ledger.rows, ledger.bad_rows) == (500, 2)
    lines = ledger.path.read_bytes().decode("cp1252").splitlines()
    assert len(lines) == 1 + 500 + 2  # the header, the movements, a blank line and the totals
