"""The arrears assets and their alerts materialised through Dagster, for a landlord of
`datafixes/` whose warehouse holds the hand-made ledger of `tests/pipelines/lib/test_arrears`.

The assets compute for today (Paris): every entry of that ledger is months in the past, so what
does not depend on the day is asserted: tenant A owes 1,600.01 € (2,600.00 € less A9, paid
on July 2nd: over the default 1,500.00 € warning, under the 5,000.00 € error) with no earlier
day in the history, and B's plan is broken.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest

from pipelines.defs.insight.assets import (
    insight_prevention_actions,
    insight_tenant_arrears,
    insight_tenant_balances,
)
from pipelines.defs.insight.checks import debt_crossed_threshold, plans_broken_this_week
from pipelines.defs.resources import DatafixesResource, WarehouseResource
from pipelines.lib.warehouse import Warehouse
from tests.pipelines.lib.arrears_cases import hand_made_warehouse
from tests.pipelines.lib.test_arrears import LANDLORD


@pytest.fixture
def warehouse(warehouse_url: str) -> Iterator[Warehouse]:
    yield from hand_made_warehouse(warehouse_url)


def morning(warehouse: Warehouse) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        [insight_tenant_balances, insight_tenant_arrears, insight_prevention_actions,
         debt_crossed_threshold, plans_broken_this_week],
        partition_key=LANDLORD,
        resources={"warehouse": WarehouseResource(url=warehouse.url),
                   "datafixes": DatafixesResource()},
    )  # fmt: skip
    assert result.success
    return result


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    [event] = result.asset_materializations_for_node(asset)
    return {key: getattr(value, "value", value) for key, value in event.metadata.items()}


def test_the_morning_computes_once_and_the_alerts_name_the_keys(warehouse: Warehouse) -> None:
    first = morning(warehouse)
    arrears = metadata(first, "insight_tenant_arrears")
    assert arrears["recomputed"] is True
    assert (arrears["tenants"], arrears["tenants_in_debt"]) == (7, 5)
    assert arrears["debt_cents"] == (260_000 - 99_999) + 20_000 + 5_000 + 41_000 + 30_000
    actions = metadata(first, "insight_prevention_actions")
    assert actions["created"] == actions["open"] > 0
    checks = {e.check_name: e for e in first.get_asset_check_evaluations()}
    debt = checks["debt_crossed_threshold"]
    assert (debt.passed, debt.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert debt.metadata["keys"].value == ["A"]
    assert debt.metadata["keys_error"].value == []
    plans = checks["plans_broken_this_week"]
    assert (plans.passed, plans.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert plans.metadata["keys"].value == ["P-B"]

    # the same morning again: nothing summed again, no action created or closed
    second = morning(warehouse)
    assert metadata(second, "insight_tenant_arrears")["recomputed"] is False
    again = metadata(second, "insight_prevention_actions")
    assert (again["created"], again["closed"], again["open"]) == (0, 0, actions["open"])
