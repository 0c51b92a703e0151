"""Issue 12, run isolation: real `datafix run` processes side by side on one warehouse.

A run is held at its source's gate (`gate_kinds.py`) while a second one starts: runs of one
landlord wait for each other (a lock held in the warehouse), runs of different landlords go
on together, first runs on a fresh home and warehouse both succeed, and no run leaves data in
Dagster's storage for another run to load.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.landlords.common import connected, python
from tests.reliability.gate_kinds import (
    finish,
    install_gated_landlord,
    reached,
    start_run,
    wait_for,
)

RUN_LINE = re.compile(r"^(?P<landlord>[\w-]+) \(run (?P<run>[0-9a-f]{8})\): (?P<state>\w+)", re.M)
# the columns a run writes on its own account (which run, when); the data is everything else
RUN_COLUMNS = {"run_id", "loaded_at", "updated_at", "created_at", "first_seen_at"}


def tenants(url: str) -> list[tuple]:
    """The tenants table, run columns left out, sorted."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            table = sa.Table("tenants", sa.MetaData(), autoload_with=conn)
            columns = [c for c in table.columns if c.name not in RUN_COLUMNS]
            rows = conn.execute(sa.select(*columns)).all()
    finally:
        engine.dispose()
    return sorted(tuple(str(value) for value in row) for row in rows)


def loads(url: str) -> list[tuple[str, str, int, int]]:
    """(landlord, status, read, loaded) of every load recorded, in order."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            query = "SELECT landlord_id, status, read, loaded FROM load_runs ORDER BY finished_at"
            return [tuple(row) for row in conn.execute(sa.text(query))]
    finally:
        engine.dispose()


def waiting_notice(process: subprocess.Popen[str]) -> str:
    """The line where a run says it waits for another ("" if it ends without one)."""
    assert process.stderr is not None
    for line in process.stderr:
        if "waiting" in line:
            return line
    return ""


@pytest.mark.slow
def test_a_second_run_of_a_busy_landlord_waits_and_the_tables_equal_one_run(
    hub_home: Path, datafixes: Path, warehouse_url: str, tmp_path: Path
) -> None:
    install_gated_landlord(hub_home, datafixes, "aube-habitat", rows=300)
    first_gate, second_gate = tmp_path / "gate-1", tmp_path / "gate-2"
    first_gate.mkdir()
    second_gate.mkdir()
    (second_gate / "open").touch()  # the second run never waits at its source: only on the lock
    first = start_run("aube-habitat", env={"DATAFIX_TEST_GATE": str(first_gate)})
    wait_for(lambda: reached(first_gate, first), "the first run to reach its source")
    second = start_run("aube-habitat", env={"DATAFIX_TEST_GATE": str(second_gate)})
    # the second run says it waits for the first (naming it) and does not touch the source
    notice = waiting_notice(second)
    assert f"pid {first.pid}" in notice, notice
    assert not reached(second_gate, second)
    (first_gate / "open").touch()
    first_code, first_output = finish(first)
    second_code, second_output = finish(second)
    assert first_code == 0, first_output
    assert second_code == 0, second_output
    # the first loaded 300 rows; the second, started after the first had committed, found the
    # source unchanged (it did not even open it) and wrote nothing
    assert not reached(second_gate, second)
    assert loads(warehouse_url) == [("aube-habitat", "loaded", 300, 300)]
    assert "unchanged" in second_output

    # the same landlord run once, alone, on a fresh warehouse, leaves the same tenants table
    alone_url = f"sqlite:///{tmp_path}/alone.db"
    alone_gate = tmp_path / "gate-alone"
    alone_gate.mkdir()
    (alone_gate / "open").touch()
    alone = start_run(
        "aube-habitat",
        env={"DATAFIX_TEST_GATE": str(alone_gate), "DATAFIX_WAREHOUSE_URL": alone_url},
    )
    code, output = finish(alone)
    assert code == 0, output
    assert tenants(warehouse_url) == tenants(alone_url)
    assert len(tenants(alone_url)) == 300


@pytest.mark.slow
def test_a_run_of_a_busy_landlord_gives_up_after_its_wait_naming_the_other_run(
    hub_home: Path, datafixes: Path, warehouse_url: str, tmp_path: Path
) -> None:
    install_gated_landlord(hub_home, datafixes, "aube-habitat", rows=10)
    gate = tmp_path / "gate"
    gate.mkdir()
    first = start_run("aube-habitat", env={"DATAFIX_TEST_GATE": str(gate)})
    try:
        wait_for(lambda: reached(gate, first), "the first run to reach its source")
        with connected(warehouse_url) as conn:
            holder = conn.execute(
                sa.text("SELECT run_id, pid FROM run_locks WHERE landlord_id = 'aube-habitat'")
            ).one()
        assert holder.pid == first.pid
        second = start_run("aube-habitat", env={"DATAFIX_LOCK_WAIT": "1"})
        code, output = finish(second)
        assert code == 1, output
        assert re.search(
            rf"aube-habitat is busy: run {holder.run_id} \(pid {first.pid} on [\w.-]+, since"
            r" \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\).* nothing was run",
            output,
        ), output
        assert not (gate / "open").exists() and first.poll() is None  # the first still holds
    finally:
        (gate / "open").touch()
    code, output = finish(first)
    assert code == 0, output
    assert loads(warehouse_url) == [("aube-habitat", "loaded", 10, 10)]


@pytest.mark.slow
def test_runs_of_different_landlords_go_on_together_and_both_load(
    hub_home: Path, datafixes: Path, warehouse_url: str, tmp_path: Path
) -> None:
    rows = 20_000  # loads long enough to overlap
    gate = tmp_path / "gate"
    gate.mkdir()
    runs = {}
    for landlord in ("aube-habitat", "brie-logement"):
        install_gated_landlord(hub_home, datafixes, landlord, rows=rows)
    for landlord in ("aube-habitat", "brie-logement"):
        runs[landlord] = start_run(landlord, env={"DATAFIX_TEST_GATE": str(gate)})
    # both are at their source at once: neither waits for the other
    for landlord, process in runs.items():
        wait_for(lambda process=process: reached(gate, process), f"{landlord} at its source")
    (gate / "open").touch()  # both read and load together
    for process in runs.values():
        code, output = finish(process)
        assert code == 0, output
        assert re.search(rf"tenants\s+loaded\s+{rows}\s+{rows}\s+0\s", output), output
    assert sorted(loads(warehouse_url)) == [
        ("aube-habitat", "loaded", rows, rows),
        ("brie-logement", "loaded", rows, rows),
    ]


@pytest.mark.slow
@pytest.mark.postgres
def test_two_first_runs_on_a_fresh_home_and_a_fresh_postgres_both_succeed(
    hub_home: Path, datafixes: Path, postgres_database, tmp_path: Path
) -> None:
    landlords = ("aube-habitat", "brie-logement", "caux-habitat")
    for landlord in landlords:
        install_gated_landlord(hub_home, datafixes, landlord, rows=20)
    assert not (hub_home / "dagster").exists()
    with postgres_database() as url:
        runs = [start_run(landlord, env={"DATAFIX_WAREHOUSE_URL": url}) for landlord in landlords]
        for process in runs:
            code, output = finish(process)
            assert code == 0, output
        assert sorted(loads(url)) == [(landlord, "loaded", 20, 20) for landlord in landlords]


@pytest.mark.slow
def test_a_run_leaves_nothing_in_dagster_storage(hub_home: Path, datafixes: Path) -> None:
    install_gated_landlord(hub_home, datafixes, "aube-habitat", rows=5)
    code, output = finish(start_run("aube-habitat", env={}))
    assert code == 0, output
    storage = hub_home / "dagster" / "storage"
    left = sorted(str(path.relative_to(storage)) for path in storage.rglob("*"))
    assert left == [], left


SUBSET_RUN = """
import dagster as dg
from connectors import registry
from pipelines.lib.runner import ensure_instance
from tests.reliability.gate_kinds import GATED_CSV

registry.register(GATED_CSV)
from pipelines.definitions import defs

job = defs().resolve_implicit_global_asset_job_def()
result = job.execute_in_process(
    partition_key="aube-habitat",
    instance=ensure_instance(),
    asset_selection=[dg.AssetKey("canonical_tenants")],
    raise_on_error=False,
)
print("success" if result.success else "failed")
for event in result.get_step_failure_events():
    print(event.step_failure_data.error.to_string())
"""


@pytest.mark.slow
def test_a_subset_run_never_loads_another_runs_output(hub_home: Path, datafixes: Path) -> None:
    install_gated_landlord(hub_home, datafixes, "aube-habitat", rows=5)
    code, output = finish(start_run("aube-habitat", env={}))  # computes raw_tenants once
    assert code == 0, output
    # canonical_tenants alone, as a user materialising it from the UI: raw_tenants is not
    # computed in this run, and the previous run's is not read (it is nowhere to be read)
    subset = python("-c", SUBSET_RUN, timeout=180)
    assert subset.stdout.startswith("failed"), subset.stdout + subset.stderr
    assert (
        "`canonical_tenants` reads `raw_tenants`, which this run did not produce" in subset.stdout
    ), subset.stdout
    assert "Select `raw_tenants` too" in subset.stdout
