"""Foreign test landlord (d), Rives de l'Orne: tenants whose status comes from dates (issue 10).

The landlord's tenant database (PostgreSQL, `kind: sql`) keeps no lease status, only typed
DATE columns: the datafix derives the status with `cases` rules against the day of the run.
The database is built fresh by `rives-de-l-orne/build.py`, the datafix installed as landlord IT
would, and `datafix run` runs as a subprocess. What the warehouse must hold is computed here in
plain Python from the rows the builder wrote: nothing from pipelines/ or schemas/ decides it.
"""

from __future__ import annotations

import importlib.util
from collections import Counter, defaultdict
from datetime import date, datetime
from decimal import Decimal
from types import ModuleType
from zoneinfo import ZoneInfo

import pytest

from pipelines.lib.environment import warehouse_url
from tests.conftest import DatabaseFactory
from tests.landlords import common

LANDLORD = "rives-de-l-orne"

# The landlord's movement codes → the sign each allows, as the landlord describes its ledger
# ("+": a debit, "-": a credit): the datafix maps them onto canonical kinds of those signs.
CODE_SIGNS = {
    "QUIT": "+", "DG": "+", "FRP": "+", "REJ": "+", "REMB": "+", "REGC": "+-",
    "REGL": "-", "APL": "-", "RDG": "-", "AVO": "-",
}  # fmt: skip

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def _builder() -> ModuleType:
    path = common.LANDLORDS / LANDLORD / "build.py"
    spec = importlib.util.spec_from_file_location("rives_de_l_orne_build", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def paris_today() -> date:
    """The day of the run as the landlord means it: today in Paris."""
    return datetime.now(ZoneInfo("Europe/Paris")).date()


def expected_status(lease: dict, today: date) -> str:
    """No move-out date → active, unless notice was given (leaving); a move-out date still to
    come → leaving; a move-out date past → left."""
    move_out = lease["date_sortie"]
    if move_out is None:
        return "leaving" if lease["date_preavis"] is not None else "active"
    return "left" if move_out < today else "leaving"


def broken_lease(lease: dict) -> str | None:
    """Why the hub must refuse a lease: it cannot end before it starts."""
    move_out = lease["date_sortie"]
    if move_out is not None and move_out < lease["date_entree"]:
        return "move_out_after_move_in"
    return None


def broken_movement(move: dict, tenant_of: dict[int, str]) -> str | None:
    """Why the hub must refuse a movement: no tenant, an unknown code, a sign its code forbids."""
    if move["bail_id"] not in tenant_of:
        return "missing_value"
    if move["code"] not in CODE_SIGNS:
        return "unmapped_value"
    amount, signs = move["montant"], CODE_SIGNS[move["code"]]
    if (amount > 0 and "+" not in signs) or (amount < 0 and "-" not in signs):
        return "sign_matches_kind"
    return None


def cents(amount: Decimal) -> int:
    whole = amount * 100
    assert whole == whole.to_integral_value(), amount
    return int(whole)


def test_statuses_from_dates_balances_and_quarantine(
    postgres_database: DatabaseFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    today = paris_today()
    with postgres_database() as source_url:
        rows = _builder().build(source_url, today)
        leases, movements = rows["baux"], rows["ecritures"]
        monkeypatch.setenv("ORNE_DB_URL", source_url)
        common.install_landlord(LANDLORD, monkeypatch)
        result = common.datafix("run", LANDLORD)
    assert result.returncode == 0, result.stdout + result.stderr

    # the fixture holds every case it is meant to, and no move-out date near today's boundary
    statuses = Counter(expected_status(lease, today) for lease in leases if not broken_lease(lease))
    assert statuses["active"] and statuses["leaving"] and statuses["left"], statuses
    assert any(lease["date_entree"] > today and not broken_lease(lease) for lease in leases)
    assert any(lease["date_sortie"] == lease["date_entree"] for lease in leases)
    assert any(
        lease["date_sortie"] is None and lease["date_preavis"] is not None for lease in leases
    )
    assert all(
        abs((lease["date_sortie"] - today).days) > 2
        for lease in leases
        if lease["date_sortie"] is not None
    )

    url = warehouse_url()

    # (1) each tenant's status follows from its dates; broken leases are not loaded
    expected_tenants = sorted(
        (lease["ref_locataire"], expected_status(lease, today))
        for lease in leases
        if not broken_lease(lease)
    )
    assert common.live_rows(url, LANDLORD, "tenants", "tenant_ref, status") == expected_tenants
    dates = common.live_rows(url, LANDLORD, "tenants", "tenant_ref, move_in_date, move_out_date")
    assert [
        (ref, str(move_in), None if move_out is None else str(move_out))
        for ref, move_in, move_out in dates
    ] == sorted(
        (
            lease["ref_locataire"],
            lease["date_entree"].isoformat(),
            None if lease["date_sortie"] is None else lease["date_sortie"].isoformat(),
        )
        for lease in leases
        if not broken_lease(lease)
    )

    # (2) per-tenant balance in cents, over the movements the hub may load
    tenant_of = {lease["id"]: lease["ref_locataire"] for lease in leases}
    expected_balances: dict[str, int] = defaultdict(int)
    for move in movements:
        if broken_movement(move, tenant_of) is None:
            expected_balances[tenant_of[move["bail_id"]]] += cents(move["montant"])
    assert common.balances(url, LANDLORD) == dict(expected_balances)

    # (3) open quarantine: source row (the `key` lineage, `table:id=N` / `query:id=N`) → reason
    expected_tenant_quarantine = {
        f"baux:id={lease['id']}": reason for lease in leases if (reason := broken_lease(lease))
    }
    expected_ledger_quarantine = {
        f"query:id={move['id']}": reason
        for move in movements
        if (reason := broken_movement(move, tenant_of))
    }
    assert sorted(expected_tenant_quarantine.values()) == ["move_out_after_move_in"] * 3
    assert Counter(expected_ledger_quarantine.values()) == {
        "missing_value": 2,
        "unmapped_value": 1,
        "sign_matches_kind": 2,
    }

    # (4) each entity's open quarantine and load run: every row read, nothing skipped, the
    # quarantined ones under the default threshold (20 %)
    for entity, read, quarantine in (
        ("tenants", len(leases), expected_tenant_quarantine),
        ("ledger_entries", len(movements), expected_ledger_quarantine),
    ):
        quarantined = len(quarantine)
        assert quarantined * 100 <= 20 * read, (entity, quarantined, read)
        counts = (read, read - quarantined, quarantined, 0)
        run = common.assert_load(url, LANDLORD, entity, quarantine=quarantine, counts=counts)
        assert run["inserted"] == run["loaded"], run  # a first load inserts every row
