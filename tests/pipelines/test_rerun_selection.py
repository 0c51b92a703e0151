"""What a command-line run leaves out before launching (pipelines/lib/upfront.py), read back from
the Dagster instance as the UI reads it.

An unchanged rerun runs the entity steps (their assets say `unchanged`, the contract shows
*Skipped*) and the landlord's health, not the insight steps: those keep the materialisation and
the alerts the verdict of the run that last computed them. Anything the insight steps read that
changed (a source file, today's report gone, a replayed outbox or a requeue) brings them all back.
"""

import gc
import uuid
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from connectors.sandbox.demo_files import DEMO_ROWS, write_demo_sources
from pipelines.lib.datafixes import load_landlord
from pipelines.lib.instance import ensure_instance
from pipelines.lib.report import report_path
from pipelines.lib.requeue import requeue
from pipelines.lib.runner import LandlordOutcome, run_landlords
from pipelines.lib.upfront import STAMP_STEP, today
from schemas.tables import insight_states, load_runs
from tests.pipelines.landlord_runs import LANDLORD, latest_materialisation, run_once

ENTITY_STEPS = {
    step
    for entity in DEMO_ROWS[LANDLORD]
    for step in (
        f"raw_{entity}",
        f"canonical_{entity}",
        f"canonical_{entity}_contract",
        f"warehouse_{entity}",
    )
}
INSIGHT_STEPS = {
    "insight_tenant_balances",
    "insight_tenant_arrears",
    "insight_prevention_actions",
    "insight_works",
    "insight_morning_report",
}


def steps(instance: dg.DagsterInstance, outcome: LandlordOutcome) -> set[str]:
    return {stat.step_key for stat in instance.get_run_step_stats(outcome.run_id)}


def latest_run(instance: dg.DagsterInstance, asset: str) -> str:
    return latest_materialisation(instance, asset).run_id


def test_an_unchanged_rerun_runs_the_entity_steps_and_the_health_only(
    hub_home: Path, warehouse_url: str
) -> None:
    sources = write_demo_sources(hub_home)[LANDLORD]
    first = run_once()
    instance = ensure_instance()
    assert INSIGHT_STEPS | ENTITY_STEPS | {"landlord_health"} <= steps(instance, first)

    second = run_once()
    assert steps(instance, second) == ENTITY_STEPS | {"landlord_health"}
    assert {e.status for e in second.entities.values()} == {"unchanged"}
    assert set(second.entities) == set(DEMO_ROWS[LANDLORD])
    # the health is refreshed by the run; the insight assets keep the run that computed them
    assert latest_run(instance, "landlord_health") == second.run_id
    for asset in INSIGHT_STEPS:
        assert latest_run(instance, asset) == first.run_id, asset
    for entity in DEMO_ROWS[LANDLORD]:
        assert latest_run(instance, f"warehouse_{entity}") == second.run_id
        key = dg.AssetCheckKey(dg.AssetKey(f"canonical_{entity}"), "contract")
        [record] = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
        assert (record.run_id, record.status) == (
            second.run_id,
            AssetCheckExecutionRecordStatus.PLANNED,  # *Skipped* in the UI, never Passed
        )
    alert = dg.AssetCheckKey(dg.AssetKey("insight_tenant_arrears"), "debt_crossed_threshold")
    [verdict] = instance.event_log_storage.get_asset_check_execution_history(alert, limit=1)
    assert verdict.run_id == first.run_id  # the last verdict, not re-planned
    assert verdict.status != AssetCheckExecutionRecordStatus.PLANNED

    # today's report gone: the insight steps run again (and write it)
    report = report_path(LANDLORD, today())
    report.unlink()
    third = run_once()
    assert steps(instance, third) >= INSIGHT_STEPS
    assert report.is_file()
    assert steps(instance, run_once()) == ENTITY_STEPS | {"landlord_health"}

    # a changed source: its entity is read and loaded, and the whole chain runs after it
    changed = next(path for path in sources if path.suffix == ".csv")
    changed.write_bytes(changed.read_bytes() + b"\n")
    fourth = run_once()
    assert steps(instance, fourth) >= INSIGHT_STEPS | ENTITY_STEPS
    assert steps(instance, run_once()) == ENTITY_STEPS | {"landlord_health"}


def test_a_warehouse_changed_outside_a_run_brings_the_insight_steps_back(
    hub_home: Path, warehouse_url: str
) -> None:
    write_demo_sources(hub_home)
    run_once()
    instance = ensure_instance()
    assert steps(instance, run_once()) == ENTITY_STEPS | {"landlord_health"}
    # a requeue (no source read, no Dagster run) maps the quarantine again and writes a load
    from pipelines.defs.resources import WarehouseResource

    loaded = load_landlord(LANDLORD)
    warehouse = WarehouseResource().get_client()
    before = _loads(warehouse.engine)
    for entity in loaded.datafix.entities:
        requeue(warehouse, loaded, entity, run_id=str(uuid.uuid4()))
    assert _loads(warehouse.engine) > before
    again = run_once()
    assert steps(instance, again) >= INSIGHT_STEPS
    assert steps(instance, run_once()) == ENTITY_STEPS | {"landlord_health"}


@pytest.mark.parametrize("what", ["full_refresh", "other_day"])
def test_a_full_refresh_or_a_new_day_runs_the_insight_steps(hub_home: Path, what: str) -> None:
    write_demo_sources(hub_home)
    run_once()
    instance = ensure_instance()
    if what == "full_refresh":
        [outcome] = run_landlords([LANDLORD], workers=1, full_refresh=True)
    else:  # the record of the insight group says yesterday
        from pipelines.defs.resources import WarehouseResource

        engine = WarehouseResource().get_client().engine
        with engine.begin() as connection:
            connection.execute(
                insight_states.update()
                .where(
                    insight_states.c.landlord_id == LANDLORD,
                    insight_states.c.step == STAMP_STEP,
                )
                .values(as_of=date(2000, 1, 1))
            )
        [outcome] = run_landlords([LANDLORD], workers=1)
    assert outcome.success, outcome.errors
    assert steps(instance, outcome) >= INSIGHT_STEPS


def _loads(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        query = sa.select(sa.func.count()).where(load_runs.c.landlord_id == LANDLORD)
        return int(connection.execute(query).scalar_one())


def test_a_command_process_runs_the_collector_again_after_its_set_up(
    hub_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`datafix run` pauses the garbage collector for its imports; the runner's set-up freezes
    what it made and starts the collector again, even when the set-up fails."""
    from pipelines.lib import runner

    gc.disable()
    try:
        before = gc.get_freeze_count()
        made = runner.LandlordRunner("pull", own_process=True)
        assert gc.isenabled()
        assert gc.get_freeze_count() > before  # the set-up's objects, out of the passes
        assert made.known  # the set-up is whole

        gc.disable()

        def unreachable() -> None:
            raise OSError("the instance's disk is gone")

        monkeypatch.setattr(runner, "ensure_instance", unreachable)
        with pytest.raises(OSError):
            runner.LandlordRunner("pull", own_process=True)
        assert gc.isenabled()
    finally:
        gc.unfreeze()
        gc.enable()


def test_an_unchanged_rerun_imports_no_data_frame_library(hub_home: Path) -> None:
    """An unchanged rerun touches no data frame: pandas, numpy and pyarrow (a fifth of the
    process's CPU) are imported at their first use only (connectors/lazy.py). Run in a fresh
    process, as `datafix run` is; the runs it writes are the instance's like any other."""
    import json
    import os
    import subprocess
    import sys

    write_demo_sources(hub_home)
    first = run_once()
    probe = (
        "import json, sys\n"
        "from pipelines.lib.runner import run_landlords\n"
        f"[outcome] = run_landlords([{LANDLORD!r}], workers=1)\n"
        "print(json.dumps({'success': outcome.success, 'run_id': outcome.run_id,\n"
        "    'statuses': sorted({e.status for e in outcome.entities.values()}),\n"
        "    'imported': [m for m in ('pandas', 'numpy', 'pyarrow') if m in sys.modules]}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=dict(os.environ)
    )
    assert done.returncode == 0, done.stderr
    second = json.loads(done.stdout.strip().splitlines()[-1])
    assert second["success"]
    assert second["statuses"] == ["unchanged"]
    assert second["imported"] == []
    assert steps(ensure_instance(), first) >= ENTITY_STEPS  # the first run read and loaded
    rerun = LandlordOutcome(LANDLORD, run_id=second["run_id"])
    assert steps(ensure_instance(), rerun) == ENTITY_STEPS | {"landlord_health"}
