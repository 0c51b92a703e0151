"""The Dagster code location: definitions, schedule, sensor, and assets run for real.

Level 2 calls assets directly with `dg.build_asset_context`; level 3 materialises a demo
landlord through `dg.materialize` and reads checks back from the result.
"""

import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import sqlalchemy as sa

from connectors.sandbox.demo_files import (
    DEMO_BAD_ROWS,
    DEMO_ROWS,
    DEMO_SANDBOX_LANDLORDS,
    write_demo_sources,
    write_demo_targets,
)
from pipelines.definitions import defs, run_definitions
from pipelines.defs.automation import nightly_schedule
from pipelines.defs.normalise.assets import build_normalise_asset
from pipelines.defs.resources import DatafixesResource, WarehouseResource
from pipelines.lib.datafixes import landlord_ids, load_landlord
from pipelines.lib.environment import REPO_ROOT
from pipelines.lib.metadata import AssetRole
from pipelines.lib.stages import pull
from pipelines.lib.warehouse import Warehouse
from pipelines.lib.works import WORKS_ALERTS
from schemas.canonical import ENTITIES
from schemas.outgoing import OUTGOING
from schemas.tables import load_runs

DEFINITIONS = defs()


def test_one_asset_per_stage_and_entity_and_a_blocking_contract_each() -> None:
    keys = {key.to_user_string() for key in DEFINITIONS.resolve_asset_graph().get_all_asset_keys()}
    expected = {
        f"{stage}_{entity}" for stage in ("raw", "canonical", "warehouse") for entity in ENTITIES
    }
    expected |= {f"{stage}_{name}" for stage in ("outgoing", "push") for name in OUTGOING}
    expected |= {
        "insight_tenant_balances",
        "insight_tenant_arrears",
        "insight_prevention_actions",
        "insight_works",
        "insight_morning_report",
        "landlord_health",
    }
    assert keys == expected
    checks = DEFINITIONS.resolve_asset_graph().asset_check_keys
    contracts = {(f"canonical_{entity}", "contract") for entity in ENTITIES}
    alerts = {("insight_works", name) for name in WORKS_ALERTS} | {
        ("insight_tenant_arrears", "debt_crossed_threshold"),
        ("insight_tenant_arrears", "plans_broken_this_week"),
        ("landlord_health", "healthy"),
    }
    delivered = {(f"push_{name}", "delivered") for name in OUTGOING}
    assert {
        (c.asset_key.to_user_string(), c.name) for c in checks
    } == contracts | alerts | delivered
    for key in checks:
        blocking = DEFINITIONS.resolve_asset_graph().get_check_spec(key).blocking
        # a contract holds the load; an alert only tells (warn or error), it stops nothing; a
        # failed delivery fails the run, but not before works and the report have run after it
        assert blocking == (key.name == "contract"), key


def test_the_nightly_job_runs_pull_through_push_and_push_runs_alone() -> None:
    graph = DEFINITIONS.resolve_asset_graph()
    nightly = DEFINITIONS.resolve_job_def("nightly")
    push = DEFINITIONS.resolve_job_def("push")
    nightly_keys = {key.to_user_string() for key in nightly.asset_layer.selected_asset_keys}
    push_keys = {key.to_user_string() for key in push.asset_layer.selected_asset_keys}
    assert {
        "raw_invoices",
        "warehouse_invoices",
        "outgoing_invoices",
        "push_invoices",
        "insight_tenant_balances",
    } <= nightly_keys
    assert push_keys == {f"{stage}_{name}" for stage in ("outgoing", "push") for name in OUTGOING}
    # a push follows the loads it reads, so a blocking contract upstream holds it in the run
    upstream = graph.get(dg.AssetKey("push_commitments")).parent_keys
    assert upstream == {dg.AssetKey("outgoing_commitments")}
    assert graph.get(dg.AssetKey("outgoing_commitments")).parent_keys == {
        dg.AssetKey("warehouse_work_orders"),
        dg.AssetKey("warehouse_quotes"),
    }


def test_every_asset_declares_its_stage_and_entity_in_its_tags() -> None:
    graph = DEFINITIONS.resolve_asset_graph()
    roles = {
        key.to_user_string(): AssetRole.read(graph.get(key).tags)
        for key in graph.get_all_asset_keys()
    }
    assert roles["raw_tenants"] == AssetRole("pull", entity="tenants")
    assert roles["canonical_invoices"] == AssetRole("normalise", entity="invoices")
    assert roles["warehouse_ledger_entries"] == AssetRole("load", entity="ledger_entries")
    assert roles["outgoing_commitments"] == AssetRole("derive", sends="commitments")
    assert roles["push_completions"] == AssetRole("push", sends="completions")
    assert roles["insight_tenant_balances"] == AssetRole("insight")
    for key in graph.get_all_asset_keys():
        assert roles[key.to_user_string()].stage == graph.get(key).group_name, key
    # the morning figures follow the loads they read
    assert graph.get(dg.AssetKey("insight_tenant_balances")).parent_keys == {
        dg.AssetKey("warehouse_ledger_entries")
    }
    # works follows the loads it reads and this run's push of commitments and invoices, whose
    # deliveries are events of its timeline
    assert graph.get(dg.AssetKey("insight_works")).parent_keys == {
        dg.AssetKey(f"warehouse_{entity}")
        for entity in ("work_orders", "quotes", "commitments", "completions", "invoices")
    } | {dg.AssetKey("push_commitments"), dg.AssetKey("push_invoices")}
    assert graph.get(dg.AssetKey("insight_morning_report")).parent_keys == {
        dg.AssetKey("insight_tenant_balances"),
        dg.AssetKey("insight_prevention_actions"),
        dg.AssetKey("insight_works"),
    }
    assert graph.get(dg.AssetKey("insight_prevention_actions")).parent_keys == {
        dg.AssetKey("insight_tenant_arrears")
    }
    # the actions pushed are those of the morning
    assert (
        dg.AssetKey("insight_prevention_actions")
        in graph.get(dg.AssetKey("outgoing_actions")).parent_keys
    )


def test_partitions_are_the_datafix_files() -> None:
    job = DEFINITIONS.resolve_job_def("nightly")
    assert job.partitions_def is not None
    assert job.partitions_def.get_partition_keys() == landlord_ids()
    assert landlord_ids() == sorted(p.stem for p in (REPO_ROOT / "datafixes").glob("*.yaml"))


def test_each_build_of_the_definitions_takes_the_landlords_its_folder_holds_then(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two hub homes, one after the other, in one process (a test of one home, then a test of
    another; a landlord dropped in while a code location runs, then a reload): the second build
    partitions every asset, job and schedule by the second home's landlords, not by those the
    first import of `pipelines/defs/partitions.py` saw."""
    night = datetime(2026, 11, 23, 2, 0, tzinfo=ZoneInfo("Europe/Paris"))
    for home, landlords in (("first", ["habitat-a"]), ("second", ["habitat-b", "habitat-c"])):
        folder = tmp_path / home
        folder.mkdir()
        for landlord in landlords:  # the partitions are the file names: the contents are not read
            (folder / f"{landlord}.yaml").touch()
        monkeypatch.setenv("DATAFIX_DATAFIXES_DIR", str(folder))
        for definitions in (defs(), run_definitions()):
            assets = definitions.resolve_asset_graph().assets_defs
            partitioned = {tuple(a.partitions_def.get_partition_keys()) for a in assets if a.keys}
            assert partitioned == {tuple(landlords)}, home
            for job in ("nightly", "requeue"):
                partitions = definitions.resolve_job_def(job).partitions_def
                assert partitions is not None
                assert partitions.get_partition_keys() == landlords, (home, job)
            schedule = definitions.resolve_schedule_def("nightly_schedule")
            context = dg.build_schedule_context(
                scheduled_execution_time=night, repository_def=definitions.get_repository_def()
            )
            requests = schedule.evaluate_tick(context).run_requests
            assert [r.partition_key for r in requests or []] == landlords, home


def test_nightly_schedule_runs_every_landlord_at_two_in_paris() -> None:
    assert nightly_schedule.cron_schedule == "0 2 * * *"
    assert nightly_schedule.execution_timezone == "Europe/Paris"
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 23, 2, 0, tzinfo=ZoneInfo("Europe/Paris")),
        repository_def=DEFINITIONS.get_repository_def(),
    )
    requests = nightly_schedule.evaluate_tick(context).run_requests
    assert requests is not None
    assert [r.partition_key for r in requests] == landlord_ids()
    assert {r.run_key for r in requests} == {f"nightly:{key}:2026-11-23" for key in landlord_ids()}


def test_workspace_validates_with_the_dagster_cli() -> None:
    dagster = Path(sys.executable).parent / "dagster"
    completed = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_canonical_asset_called_directly_splits_rows_and_rejects(hub_home: Path) -> None:
    write_demo_sources(hub_home)
    loaded = load_landlord("loire-habitat")
    pulled = pull(loaded, "tenants")
    asset = build_normalise_asset("tenants")
    context = dg.build_asset_context(partition_key="loire-habitat")
    output = asset(
        context=context, datafixes=DatafixesResource(), warehouse=WarehouseResource(), pulled=pulled
    )
    normalised = output.value
    assert normalised.batch is not None
    assert normalised.batch.read == DEMO_ROWS["loire-habitat"]["tenants"]
    assert len(normalised.batch.rejects) == DEMO_BAD_ROWS["loire-habitat"]["tenants"]
    assert output.metadata["rows_read"].value == normalised.batch.read
    assert "preview" in output.metadata


def test_a_failed_load_leaves_its_trace(hub_home: Path, warehouse_url: str) -> None:
    written = write_demo_sources(hub_home)
    job = DEFINITIONS.resolve_job_def("nightly")
    tenants = [dg.AssetKey(f"{stage}_tenants") for stage in ("raw", "canonical", "warehouse")]
    with dg.instance_for_test() as instance:
        first = job.execute_in_process(
            partition_key="loire-habitat", instance=instance, asset_selection=tenants
        )
        assert first.success
        # a truncated export (the header and 3 rows): the vanish guard refuses the snapshot
        [export] = [p for p in written["loire-habitat"] if p.name.startswith("locataires_")]
        export.write_bytes(b"".join(export.read_bytes().splitlines(keepends=True)[:4]))
        second = job.execute_in_process(
            partition_key="loire-habitat",
            instance=instance,
            asset_selection=tenants,
            raise_on_error=False,
        )
        assert not second.success
    warehouse = Warehouse(warehouse_url)
    try:
        with warehouse.engine.connect() as conn:
            runs = conn.execute(
                sa.select(load_runs.c.run_id, load_runs.c.status, load_runs.c.reason)
                .where(load_runs.c.landlord_id == "loire-habitat")
                .order_by(load_runs.c.finished_at)
            ).all()
    finally:
        warehouse.dispose()
    assert [(run.run_id, run.status) for run in runs] == [
        (first.run_id, "loaded"),
        (second.run_id, "failed"),
    ]
    assert "max_vanished_percent" in runs[1].reason and "Nothing was written" in runs[1].reason


@pytest.mark.parametrize(
    "landlord", ["loire-habitat", "opale-logement", "val-de-seine", "residences-estuaire"]
)
def test_materialize_a_demo_landlord_loads_every_row_or_quarantines_it(
    landlord: str, hub_home: Path, warehouse_url: str, request: pytest.FixtureRequest
) -> None:
    pushes = load_landlord(landlord).datafix.push is not None
    if landlord in DEMO_SANDBOX_LANDLORDS or pushes:
        request.getfixturevalue("sandbox")  # data read from, or pushed to, the sandbox peers
    write_demo_sources(hub_home)
    write_demo_targets(hub_home)
    job = DEFINITIONS.resolve_job_def("nightly")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(partition_key=landlord, instance=instance)
        assert result.success
        # the contracts (the works and arrears alerts only tell: tested in their own tests)
        evaluations = [
            e for e in result.get_asset_check_evaluations() if e.check_name == "contract"
        ]
        checked = {e.asset_key.path[-1] for e in evaluations if "status" not in e.metadata}
        assert checked == {f"canonical_{entity}" for entity in DEMO_ROWS[landlord]}
        assert all(e.passed for e in evaluations)
        pushed = {}
        for event in result.get_asset_materialization_events():
            name = event.materialization.asset_key.path[-1]
            if name.startswith("push_"):
                pushed[name] = {k: v.value for k, v in event.materialization.metadata.items()}
            if not name.startswith("warehouse_"):
                continue
            entity = name.removeprefix("warehouse_")
            metadata = {k: v.value for k, v in event.materialization.metadata.items()}
            if entity not in DEMO_ROWS[landlord]:
                assert metadata["status"] == "not_configured"
                continue
            assert metadata["rows_read"] == DEMO_ROWS[landlord][entity]
            assert metadata["rows_quarantined"] == DEMO_BAD_ROWS[landlord][entity]
            assert metadata["rows_read"] == metadata["rows_loaded"] + metadata["rows_quarantined"]
    # the night ends with the push: every sink of the datafix got its confirmed records
    assert set(pushed) == {f"push_{name}" for name in OUTGOING}
    sinks = [sink for meta in pushed.values() for sink in meta.get("sinks") or []]
    declared = load_landlord(landlord).datafix.push
    assert {sink["sink"] for sink in sinks} == (set(declared.sinks) if declared else set())
    for sink in sinks:
        assert sink["status"] == "sent" and sink["sent"] == sink["confirmed"] > 0, sink
        assert sink["dead"] == sink["failed"] == 0, sink
        meta = next(m for m in pushed.values() if sink["sink"] in (s["sink"] for s in m["sinks"]))
        assert meta[f"{sink['sink']}/sent"] == sink["sent"]  # a number the UI can plot
    warehouse = Warehouse(warehouse_url)
    try:
        for entity, rows in DEMO_ROWS[landlord].items():
            state = warehouse.last_state(landlord, entity)
            assert state is not None and state[1] == load_landlord(landlord).sha
            del rows
    finally:
        warehouse.dispose()


def test_warehouse_resource_uses_the_environment_url(warehouse_url: str) -> None:
    assert WarehouseResource().get_client().url == warehouse_url


def test_the_run_definitions_are_the_code_locations_without_the_component_catalogue() -> None:
    """`datafix run` builds its definitions with `run_definitions` (no catalogue of component
    types): every asset, check, job (its snapshot included), schedule, sensor and resource is
    the UI's."""
    import warnings

    from pipelines.definitions import run_definitions

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a Dagster warning would reach the command's stderr
        ran = run_definitions()

    def shape(definitions: dg.Definitions) -> dict[str, list[str]]:
        repository = definitions.get_repository_def()
        graph = repository.asset_graph
        return {
            "assets": sorted(key.to_user_string() for key in graph.get_all_asset_keys()),
            "checks": sorted(str(key) for key in graph.asset_check_keys),
            "jobs": sorted(job.name for job in repository.get_all_jobs()),
            "schedules": sorted(schedule.name for schedule in repository.schedule_defs),
            "sensors": sorted(sensor.name for sensor in repository.sensor_defs),
            "resources": sorted(repository.get_top_level_resources()),
        }

    assert shape(ran) == shape(DEFINITIONS)
    assert "nightly" in shape(ran)["jobs"]
    for job in ("nightly", "pull", "push", "health"):
        ours = ran.resolve_job_def(job).get_job_snapshot()
        theirs = DEFINITIONS.resolve_job_def(job).get_job_snapshot()
        assert ours.snapshot_id == theirs.snapshot_id, job
    catalogue = "plugin_component_types_json"
    assert catalogue in DEFINITIONS.get_repository_def().metadata
    assert catalogue not in ran.get_repository_def().metadata


def test_the_run_definitions_tree_is_dagsters_for_the_project() -> None:
    """`component_tree` reads pyproject.toml itself: the tree Dagster's `for_project` makes."""
    from pipelines.definitions import PROJECT, component_tree

    ours, theirs = component_tree(), dg.ComponentTree.for_project(PROJECT)
    assert ours.defs_module is theirs.defs_module
    assert ours.project_root == theirs.project_root
    assert ours.code_location_name == theirs.code_location_name == "datafix_hub"
