"""The derived tables of a generated landlord over four mornings (`arrears_hashes`) hash as they
did before issue 15's speed-up of the balances, arrears and actions: the same rows, to the
cent and the day, on SQLite and PostgreSQL. The hashes were taken from the code before the
change (`python tests/pipelines/lib/arrears_hashes.py --code <checkout> <url>`)."""

from __future__ import annotations

import pytest

from tests.pipelines.lib.arrears_hashes import morning_hashes

RECORDED = {
    "m1": {
        "tenant_balances": "2159:785784ae2a6469ae",
        "tenant_arrears": "2660:10b5fe35cbd1a475",
        "prevention_actions": "2391:c20c6825fda459b5",
    },
    "m2": {
        "tenant_balances": "4355:429d845d92e5f60e",
        "tenant_arrears": "2661:d1366bd7aadaec0c",
        "prevention_actions": "2733:2f3cc8942255009d",
    },
    "m3": {
        "tenant_balances": "4355:429d845d92e5f60e",
        "tenant_arrears": "2661:b7327d61b6137303",
        "prevention_actions": "2733:2f3cc8942255009d",
    },
    "m4": {
        "tenant_balances": "6554:6d576472dd1cb188",
        "tenant_arrears": "2661:ab91dfe7865bbd31",
        "prevention_actions": "3124:86217c2f5ff3fb2d",
    },
}


@pytest.mark.usefixtures("hub_home")
def test_the_derived_tables_are_the_rows_the_code_before_the_speed_up_wrote(
    warehouse_url: str,
) -> None:
    assert dict(morning_hashes(warehouse_url)) == RECORDED
