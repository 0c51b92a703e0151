"""The works asset, its alert checks and the morning report asset, materialised through Dagster
for one landlord partition on the hand-made works of `test_works.py` (today is the as-of day
here: every order of the hand-made data is long past), with the demo datafix of
`opale-logement` (default thresholds; it pushes commitments)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from pipelines.defs.insight.report import insight_morning_report
from pipelines.defs.insight.works import build_works_check, insight_works
from pipelines.defs.resources import DatafixesResource, WarehouseResource
from pipelines.lib.works import WORKS_ALERTS
from tests.pipelines.lib.helpers import migrated_warehouse
from tests.pipelines.lib.test_works import LANDLORD, write_works


@pytest.fixture
def result(warehouse_url: str) -> dg.ExecuteInProcessResult:
    for warehouse in migrated_warehouse(warehouse_url):
        write_works(warehouse)
        return dg.materialize(
            [insight_works, insight_morning_report, *map(build_works_check, WORKS_ALERTS)],
            partition_key=LANDLORD,
            resources={"warehouse": WarehouseResource(url=warehouse_url),
                       "datafixes": DatafixesResource()},
            raise_on_error=True,
        )  # fmt: skip
    raise AssertionError("no warehouse")


def test_the_alerts_list_their_keys_with_warn_or_error(result: dg.ExecuteInProcessResult) -> None:
    assert result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(checks) == set(WORKS_ALERTS)

    def keys(name: str) -> set[str]:
        return {key["key"] for key in checks[name].metadata["keys"].value}

    # every open order with a GTR is past it by now: BT4, BT5 (ordered 10 March 2026), BT9
    assert keys("orders_past_gtr") == {"BT4", "BT5", "BT9"}
    assert checks["orders_past_gtr"].severity == dg.AssetCheckSeverity.ERROR  # > 7 days
    assert keys("invoice_without_order") == {"F9"}
    # opale-logement pushes commitments: Q8's acceptance never went out
    assert keys("commitment_not_sent") == {"Q8"}
    assert keys("completion_not_invoiced") == {"BT2", "BT3"}
    assert not any(check.passed for check in checks.values())


def test_the_report_is_linked_from_the_asset_metadata(result: dg.ExecuteInProcessResult) -> None:
    events = result.asset_materializations_for_node("insight_morning_report")
    metadata = events[0].metadata
    path = Path(metadata["report"].value)
    assert path.is_file() and path.parent.name == LANDLORD
    assert metadata["report_url"].value == path.as_uri()
    assert "Works orders by stage" in path.read_text(encoding="utf-8")
    works = result.asset_materializations_for_node("insight_works")[0].metadata
    assert works["orders"].value == 9  # BT9 is no longer in the future
    assert works["missed_appointments"].value == 1
