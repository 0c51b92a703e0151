"""The operators' console, read back from the Dagster instance as the UI reads it.

An unchanged rerun keeps the last load's counts and contract verdict and leaves the contract
check *Skipped* (planned, no evaluation, in a run that succeeded), never *Passed*; an entity the
landlord does not map is shown as not configured, its check skipped too; the landlord's health
asset lists its entities with their counts and fails its check when a contract failed, or when
an insight alert reaches its error threshold (a warning is listed, not failed), and links the
morning report. Expected counts are the demo's seeded numbers (`DEMO_ROWS`, `DEMO_BAD_ROWS`),
written by hand there; the tenants an alert lists are summed from the canonical ledger in SQL.
"""

import datetime as dt
import shutil
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from connectors.sandbox.demo_files import DEMO_BAD_ROWS, DEMO_ROWS, write_demo_sources
from pipelines.lib.environment import REPO_ROOT
from pipelines.lib.instance import ensure_instance
from pipelines.lib.runner import LandlordOutcome, run_landlords
from schemas.canonical import ENTITIES
from tests.pipelines.landlord_runs import LANDLORD, latest_materialisation, run_once

PARIS = ZoneInfo("Europe/Paris")


def latest_metadata(instance: dg.DagsterInstance, asset: str) -> dict:
    materialization = latest_materialisation(instance, asset).asset_materialization
    assert materialization is not None
    return {key: value.value for key, value in materialization.metadata.items()}


def check_record(instance: dg.DagsterInstance, asset: str, check: str):
    key = dg.AssetCheckKey(dg.AssetKey(asset), check)
    history = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
    assert history, f"{asset}:{check} never planned"
    return history[0]


@pytest.fixture
def datafixes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The demo datafixes in a folder of the test's own (so one can be edited)."""
    folder = tmp_path / "datafixes"
    shutil.copytree(REPO_ROOT / "datafixes", folder)
    monkeypatch.setenv("DATAFIX_DATAFIXES_DIR", str(folder))
    return folder


def demo_run(hub_home: Path) -> LandlordOutcome:
    """The demo's files written and the landlord run once, successfully."""
    write_demo_sources(hub_home)
    return run_once()


def test_an_unchanged_rerun_keeps_the_last_counts_and_skips_the_contract(
    hub_home: Path, datafixes: Path
) -> None:
    first = demo_run(hub_home)
    second = run_once()
    instance = ensure_instance()
    for entity, rows in DEMO_ROWS[LANDLORD].items():
        assert second.entities[entity].status == "unchanged"
        loaded = latest_metadata(instance, f"warehouse_{entity}")
        assert loaded["status"] == "unchanged"
        assert loaded["summary"].startswith(f"skipped, unchanged since run {first.run_id[:8]}")
        assert loaded["unchanged_since_run"] == first.run_id
        assert loaded["last_load/rows_read"] == rows
        assert loaded["last_load/rows_quarantined"] == DEMO_BAD_ROWS[LANDLORD][entity]
        assert loaded["last_load/rows_loaded"] == rows - DEMO_BAD_ROWS[LANDLORD][entity]
        assert loaded["last_contract"] == f"passed (run {first.run_id[:8]})"
        assert loaded["quarantine_open"] == DEMO_BAD_ROWS[LANDLORD][entity]
        # the second run planned the contract and gave no verdict: Dagster shows it *Skipped*
        record = check_record(instance, f"canonical_{entity}", "contract")
        assert record.run_id == second.run_id
        assert record.status == AssetCheckExecutionRecordStatus.PLANNED
        run = instance.get_run_by_id(second.run_id)
        assert run is not None and run.is_success
    # the previous verdict is still the last evaluation in the check's history
    key = dg.AssetCheckKey(dg.AssetKey("canonical_tenants"), "contract")
    history = instance.event_log_storage.get_asset_check_execution_history(key, limit=2)
    assert [h.status for h in history] == [
        AssetCheckExecutionRecordStatus.PLANNED,
        AssetCheckExecutionRecordStatus.SUCCEEDED,
    ]
    assert history[1].run_id == first.run_id


def test_a_full_job_run_shows_unmapped_entities_as_not_configured_never_passed(
    hub_home: Path, datafixes: Path
) -> None:
    from pipelines.definitions import defs

    write_demo_sources(hub_home)
    instance = ensure_instance()
    job = defs().resolve_job_def("pull")  # the whole job, as the UI's launchpad launches it
    result = job.execute_in_process(partition_key=LANDLORD, instance=instance)
    assert result.success
    unmapped = set(ENTITIES) - set(DEMO_ROWS[LANDLORD])
    assert unmapped
    evaluated = {
        (e.asset_key.path[-1], e.check_name)
        for e in result.get_asset_check_evaluations()
        if e.check_name in ("contract", "healthy")  # not the insight alerts: they only tell
    }
    assert evaluated == {(f"canonical_{entity}", "contract") for entity in DEMO_ROWS[LANDLORD]} | {
        ("landlord_health", "healthy")
    }
    for entity in unmapped:
        assert latest_metadata(instance, f"warehouse_{entity}")["summary"] == (
            f"not configured: the landlord's datafix maps no {entity}"
        )
        record = check_record(instance, f"canonical_{entity}", "contract")
        assert record.status == AssetCheckExecutionRecordStatus.PLANNED  # skipped, not passed
    health = latest_metadata(instance, "landlord_health")
    assert health["not_configured"] == ", ".join(e for e in ENTITIES if e in unmapped)
    rows = {row.data["entity"]: row.data for row in health["entities"].records}
    assert set(rows) == set(DEMO_ROWS[LANDLORD])
    for entity, read in DEMO_ROWS[LANDLORD].items():
        bad = DEMO_BAD_ROWS[LANDLORD][entity]
        assert (rows[entity]["read"], rows[entity]["quarantined"]) == (str(read), str(bad))
        assert (rows[entity]["loaded"], rows[entity]["contract"]) == (str(read - bad), "passed")
        reasons = health[f"{entity}/quarantine_reasons"].records
        assert sum(r.data["rows"] for r in reasons) == bad
        shown = health[f"{entity}/quarantine_rows"].records
        assert len(shown) == min(bad, 5)
        assert {row.data["reason"] for row in shown} <= {r.data["reason"] for r in reasons}
        # the sealed cells (personal, unmapped) are masked, never opened nor shown sealed
        assert all("•••" in row.data["raw"] for row in shown if entity == "tenants")
        assert not any("fernet:" in row.data["raw"] for row in shown)
    assert health["healthy"] is True
    assert health["rows_read"] == sum(DEMO_ROWS[LANDLORD].values())


def test_a_failed_contract_makes_the_landlord_unhealthy(hub_home: Path, datafixes: Path) -> None:
    path = datafixes / f"{LANDLORD}.yaml"
    text = path.read_text(encoding="utf-8")
    # 4 of the 121 tenants are quarantined (3.3 %): more than 1 % blocks the load
    path.write_text(
        text.replace("  tenants:\n    source: locataires\n", "  tenants:\n    source:"
                     " locataires\n    max_quarantine_percent: 1\n", 1),
        encoding="utf-8",
    )  # fmt: skip
    write_demo_sources(hub_home)
    [outcome] = run_landlords([LANDLORD], workers=1)
    assert not outcome.success
    assert outcome.entities["tenants"].contract == "FAILED"
    instance = ensure_instance()
    # the run stopped before the health asset: `datafix` refreshed it in a run of its own
    health = latest_metadata(instance, "landlord_health")
    assert health["healthy"] is False
    # the verdict and the first problems, short enough for the UI to show without a click
    assert health["summary"].startswith(f"**{LANDLORD}: UNHEALTHY**\n\n- tenants: contract FAILED")
    assert len(health["summary"]) < 1000
    rows = {row.data["entity"]: row.data for row in health["entities"].records}
    assert (rows["tenants"]["status"], rows["tenants"]["contract"]) == ("blocked", "FAILED")
    assert rows["ledger_entries"]["contract"] == "passed"
    record = check_record(instance, "landlord_health", "healthy")
    assert record.status == AssetCheckExecutionRecordStatus.FAILED
    evaluation = record.event.asset_check_evaluation
    assert evaluation.description.startswith("tenants: contract FAILED")
    assert "max_quarantine_percent" in evaluation.description
    # and the run that was blocked is named, with its cause in the hub's words: which check
    # of which entity, and why (not Dagster's `DagsterAssetCheckFailedError`)
    assert (
        f"last run (nightly, {outcome.run_id[:8]}) failed: the tenants contract failed, its load"
        " was held: " in evaluation.description
    )
    assert "DagsterAssetCheckFailedError" not in evaluation.description
    assert "Error" not in evaluation.description.split("last run", 1)[1]


def test_the_health_lists_the_open_alerts_links_the_morning_report_and_fails_on_an_error(
    hub_home: Path, datafixes: Path
) -> None:
    # Loire Habitat's thresholds lowered: a balance of 1,000 € warns, 2,000 € is an error. On
    # the first day every tenant at or above a threshold has crossed it (no earlier day).
    path = datafixes / f"{LANDLORD}.yaml"
    text = path.read_text(encoding="utf-8").rstrip("\n")
    path.write_text(
        text + "\narrears:\n  alerts:\n    debt_warn_cents: 100000\n    debt_error_cents: 200000\n",
        encoding="utf-8",
    )
    demo_run(hub_home)
    # the tenants at or above each threshold, from the canonical ledger with plain SQL
    engine = sa.create_engine(f"sqlite:///{hub_home}/warehouse.db")
    with engine.connect() as connection:
        balances = dict(
            connection.execute(
                sa.text(
                    "SELECT tenant_ref, SUM(amount_cents) FROM ledger_entries"
                    " WHERE landlord_id = :landlord AND deleted_at IS NULL GROUP BY tenant_ref"
                ),
                {"landlord": LANDLORD},
            ).all()
        )
    engine.dispose()
    warned = sorted(tenant for tenant, cents in balances.items() if cents >= 100_000)
    errors = [tenant for tenant in warned if balances[tenant] >= 200_000]
    assert errors and len(warned) > len(errors)  # the demo has both kinds

    instance = ensure_instance()
    health = latest_metadata(instance, "landlord_health")
    assert health["healthy"] is False
    assert health["open_alerts"] == 1  # plans_broken_this_week: Loire Habitat has no plans
    [alert] = [row.data for row in health["alerts"].records]
    assert (alert["alert"], alert["family"], alert["level"]) == (
        "debt_crossed_threshold", "arrears", "error",
    )  # fmt: skip
    assert alert["keys"] == str(len(warned))
    assert alert["which"].startswith(", ".join(warned[:15]))
    # the morning report the same run wrote, as a path and a link, and in the Markdown
    report = hub_home / "reports" / LANDLORD / f"{dt.datetime.now(PARIS).date()}.html"
    assert report.is_file()
    assert health["morning_report"] == str(report)
    assert health["morning_report_url"] == report.as_uri()
    assert f"Morning report: [{report.stem}]({report.as_uri()})" in health["report"]
    assert f"Morning report: [{report.stem}]({report.as_uri()})" in health["summary"]
    assert "### Open alerts" in health["report"]
    assert (
        f"arrears alert debt_crossed_threshold (error): {len(warned)} key(s)" in (health["report"])
    )
    record = check_record(instance, "landlord_health", "healthy")
    assert record.status == AssetCheckExecutionRecordStatus.FAILED
    description = record.event.asset_check_evaluation.description
    assert description.startswith(
        f"arrears alert debt_crossed_threshold (error): {len(warned)} key(s): "
        + ", ".join(warned[:5])
    )


def test_warnings_are_listed_without_making_the_landlord_unhealthy(
    hub_home: Path, datafixes: Path
) -> None:
    # the demo's own thresholds (1,500 € warns, 5,000 € is an error): no Loire tenant owes 5,000 €
    demo_run(hub_home)
    instance = ensure_instance()
    health = latest_metadata(instance, "landlord_health")
    [alert] = [row.data for row in health["alerts"].records]
    assert (alert["alert"], alert["level"]) == ("debt_crossed_threshold", "warning")
    assert int(alert["keys"]) > 0
    assert health["healthy"] is True
    record = check_record(instance, "landlord_health", "healthy")
    assert record.status == AssetCheckExecutionRecordStatus.SUCCEEDED
