"""The console's repair side: dead letters shown per sink with their reasons, the `replay` job
(the command line's replay code, from the launchpad), the health refreshed after a run that did
not refresh it, and quarantine rows shown with their personal cells masked.

Dead letters are written straight into a real warehouse's outbox (the rows a push leaves: the
push itself is tested in tests/pipelines/lib/test_push.py); the expected counts are the rows
written here.
"""

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from pipelines.defs.health.sensors import health_after_runs
from pipelines.defs.resources import WarehouseResource
from pipelines.lib.health import MASK, masked_raw
from pipelines.lib.instance import ensure_instance
from pipelines.lib.personal import SEALED_PREFIX
from schemas.tables import outbox

LANDLORD = "opale-logement"
SINK = "erp_engagements"
REFUSALS = {"BT unknown to the ERP": 3, "amount over the order's budget": 2}


def write_dead_letters(url: str) -> None:
    now = dt.datetime.now(dt.UTC)
    rows = [
        {
            "landlord_id": LANDLORD,
            "sink": SINK,
            "record_key": f"BT{reason[:2]}{i}",
            "entity": "commitments",
            "sink_kind": "sql",
            "state": "dead",
            "version": 1,
            "payload": json.dumps({"bt": f"BT{i}"}),
            "payload_hash": "0" * 64,
            "idempotency_key": f"idem-{reason[:2]}-{i}",
            "source_rows": f"work_orders:BT{i}",
            "attempts": 1,
            "last_error": reason,
            "enqueued_run_id": "run-0",
            "updated_at": now,
        }
        for reason, count in REFUSALS.items()
        for i in range(count)
    ]
    engine = WarehouseResource(url=url).get_client().engine
    with engine.begin() as connection:
        connection.execute(outbox.insert(), rows)


def states(url: str) -> dict[str, int]:
    engine = WarehouseResource(url=url).get_client().engine
    with engine.connect() as connection:
        found = connection.execute(
            sa.select(outbox.c.state, sa.func.count()).group_by(outbox.c.state)
        ).all()
    return {state: count for state, count in found}


@pytest.fixture
def url(hub_home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{hub_home}/warehouse.db"
    monkeypatch.setenv("DATAFIX_WAREHOUSE_URL", url)
    return url


def test_the_health_shows_dead_letters_per_sink_and_fails(url: str) -> None:
    from pipelines.definitions import defs

    write_dead_letters(url)
    instance = ensure_instance()
    result = (
        defs()
        .resolve_job_def("health")
        .execute_in_process(partition_key=LANDLORD, instance=instance)
    )
    assert result.success
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed
    assert f"sink {SINK}: 5 dead letter(s)" in (evaluation.description or "")
    [event] = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    reasons = {
        r.data["reason"]: r.data["letters"] for r in metadata[f"{SINK}/dead_letters"].value.records
    }
    assert reasons == REFUSALS
    shown = metadata[f"{SINK}/dead_letter_rows"].value.records
    assert len(shown) == 5 and all("payload" not in row.data for row in shown)
    assert metadata["dead_letters"].value == 5
    sinks = {row.data["sink"]: row.data for row in metadata["sinks"].value.records}
    assert sinks[SINK]["dead"] == "5"


def test_the_replay_job_queues_the_dead_letters_of_one_reason(url: str) -> None:
    from pipelines.definitions import defs

    write_dead_letters(url)
    job = defs().resolve_job_def("replay")
    instance = ensure_instance()
    config = {"ops": {"replay_dead_letters_op": {"config": {"sink": SINK, "reason": "bt unknown"}}}}
    result = job.execute_in_process(partition_key=LANDLORD, instance=instance, run_config=config)
    assert result.success
    assert states(url) == {"pending": 3, "dead": 2}
    # a sink the landlord does not have: the cause, naming its sinks, and nothing replayed
    config = {"ops": {"replay_dead_letters_op": {"config": {"sink": "sage"}}}}
    refused = job.execute_in_process(
        partition_key=LANDLORD, instance=instance, run_config=config, raise_on_error=False
    )
    assert not refused.success
    [failure] = refused.get_step_failure_events()
    description = failure.step_failure_data.user_failure_data.description
    assert description == (
        f"nothing was replayed: `sage` is not a sink of {LANDLORD} (its sinks: {SINK},"
        " sage100_factures, sage_x3_factures, salesforce_quitus)"
    )
    assert states(url) == {"pending": 3, "dead": 2}
    # the sensor asks for the landlord's health after each of those runs, once
    context = dg.build_sensor_context(instance=instance, cursor="0")
    sensed = health_after_runs(context)
    assert [r.partition_key for r in sensed.run_requests] == [LANDLORD, LANDLORD]
    assert {r.run_key for r in sensed.run_requests} == {
        f"health:{result.run_id}",
        f"health:{refused.run_id}",
    }
    again = health_after_runs(dg.build_sensor_context(instance=instance, cursor=sensed.cursor))
    assert again.run_requests == []


def test_quarantine_raw_values_are_shown_with_sealed_cells_masked() -> None:
    stored = json.dumps({"Ref": "T001", "Nom": f"{SEALED_PREFIX}gAAAAtoken", "Statut": "XX"})
    assert masked_raw(stored) == f"Ref=T001; Nom={MASK}; Statut=XX"
