"""Issue 12, dead runs: a `datafix run` killed with -9 in the middle of its run is marked failed
by the next start, which takes over the landlord's lock and proceeds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from tests.landlords.common import connected
from tests.reliability.gate_kinds import (
    finish,
    install_gated_landlord,
    reached,
    start_run,
    wait_for,
)


def dagster_runs(hub_home: Path) -> dict[str, dg.DagsterRun]:
    """Every run of the hub's Dagster instance, by run id."""
    with dg.DagsterInstance.from_config(str(hub_home / "dagster")) as instance:
        return {run.run_id: run for run in instance.get_runs()}


def failure_message(hub_home: Path, run_id: str) -> str:
    """The message of the run's RUN_FAILURE event."""
    with dg.DagsterInstance.from_config(str(hub_home / "dagster")) as instance:
        records = instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.RUN_FAILURE
        ).records
        return "\n".join(record.event_log_entry.message or "" for record in records)


@pytest.mark.slow
def test_a_run_killed_with_sigkill_is_marked_failed_and_the_next_run_proceeds(
    hub_home: Path, warehouse_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    datafixes = tmp_path / "datafixes"
    monkeypatch.setenv("DATAFIX_DATAFIXES_DIR", str(datafixes))
    install_gated_landlord(hub_home, datafixes, "aube-habitat", rows=50)
    gate = tmp_path / "gate"
    gate.mkdir()
    killed = start_run("aube-habitat", env={"DATAFIX_TEST_GATE": str(gate)})
    wait_for(lambda: reached(gate, killed), "the run to reach its source")
    os.kill(killed.pid, signal.SIGKILL)
    killed.communicate(timeout=30)
    [dead] = dagster_runs(hub_home).values()
    assert dead.status == dg.DagsterRunStatus.STARTED  # what kill -9 leaves behind

    # the next run does not wait for the dead one's lock (it would give up after 5 s)
    code, output = finish(start_run("aube-habitat", env={"DATAFIX_LOCK_WAIT": "5"}))
    assert code == 0, output
    assert "tenants          loaded" in output, output
    runs = dagster_runs(hub_home)
    assert runs[dead.run_id].status == dg.DagsterRunStatus.FAILURE
    message = failure_message(hub_home, dead.run_id)
    assert f"pid {killed.pid}" in message and "is gone" in message, message
    [next_run] = [run for run in runs.values() if run.run_id != dead.run_id]
    assert next_run.status == dg.DagsterRunStatus.SUCCESS
    with connected(warehouse_url) as conn:
        loaded = conn.execute(
            sa.text("SELECT run_id, status, loaded FROM load_runs WHERE entity = 'tenants'")
        ).all()
        locks = conn.execute(sa.text("SELECT count(*) FROM run_locks")).scalar()
    assert [tuple(row) for row in loaded] == [(next_run.run_id, "loaded", 50)]
    assert locks == 0  # released at the end of the run that took it over


def test_the_daemon_sensor_fails_a_run_whose_process_is_gone(hub_home: Path) -> None:
    from pipelines.defs.automation import dead_runs_sensor
    from pipelines.lib.instance import TAG_PID, ensure_instance, process_tags

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=30)
    instance = ensure_instance()
    tags = {**process_tags(), TAG_PID: str(gone.pid)}
    dead = dg.DagsterRun(job_name="nightly", status=dg.DagsterRunStatus.STARTED, tags=tags)
    alive = dg.DagsterRun(
        job_name="nightly", status=dg.DagsterRunStatus.STARTED, tags=process_tags()
    )
    instance.add_run(dead)
    instance.add_run(alive)
    result = dead_runs_sensor(dg.build_sensor_context(instance=instance))
    assert dead.run_id in str(result.skip_message)
    assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.FAILURE
    assert instance.get_run_by_id(alive.run_id).status == dg.DagsterRunStatus.STARTED
    assert f"pid {gone.pid}" in failure_message(hub_home, dead.run_id)
