"""The demo data makes every insight visible (issue 15, point 7): computed as of the demo's
extraction day (its files are dated up to it), the demo landlords have tenants in every ageing
bucket, repayment plans on track, late and broken, rejected direct debits, missed appointments,
repeat visits that are not a first-time fix, paid invoices with their date (some paid late) and
completions left uninvoiced; and the morning report shows each.

The demo landlords' files go through the real stages (pull, normalise, load) into a SQLite
warehouse (the computations are proven on PostgreSQL too by their own tests). The amounts of the
hand-written Cité des Jardins accounts (`_CITE_ACCOUNTS` in `connectors.sandbox.demo_files`)
are worked out by hand below; the other phenomena are counted with plain SQL on the canonical
and derived tables.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from connectors.sandbox.demo_files import (
    CITE_JARDINS,
    EXTRACTED_ON,
    OPALE_LOGEMENT,
    write_demo_sources,
)
from pipelines.lib.arrears import refresh_arrears
from pipelines.lib.datafixes import LoadedDatafix, load_landlord
from pipelines.lib.health import insight_alerts
from pipelines.lib.insight import record_tenant_balances
from pipelines.lib.report import Section, build_sections
from pipelines.lib.stages import load, normalise, pull
from pipelines.lib.warehouse import Warehouse
from pipelines.lib.works import refresh_works, works_summary
from schemas.tables import AGEING_COLUMNS

AS_OF = EXTRACTED_ON  # 31/10/2026


def loaded_demo(hub_home: Path, landlord: str) -> tuple[Warehouse, LoadedDatafix]:
    """The landlord's demo files loaded into a fresh SQLite warehouse."""
    write_demo_sources(hub_home)
    warehouse = Warehouse(f"sqlite:///{hub_home}/warehouse.db")
    warehouse.migrate()
    loaded = load_landlord(landlord)
    for entity in loaded.datafix.entities:
        rows = normalise(loaded, pull(loaded, entity, warehouse=warehouse))
        load(warehouse, loaded, rows, run_id=f"load-{landlord}")
    return warehouse, loaded


def sections(warehouse: Warehouse, loaded: LoadedDatafix) -> dict[str, Section]:
    return {section.title: section for section in build_sections(warehouse, loaded, AS_OF)}


def test_the_demo_arrears_show_every_bucket_plan_status_and_rejected_debits(
    hub_home: Path,
) -> None:
    warehouse, loaded = loaded_demo(hub_home, CITE_JARDINS)
    try:
        with warehouse.engine.begin() as connection:
            record_tenant_balances(connection, CITE_JARDINS, AS_OF, "morning")
            refresh_arrears(connection, CITE_JARDINS, AS_OF, "morning", loaded.datafix.arrears)
        with warehouse.engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT * FROM tenant_arrears WHERE landlord_id = :l"), {"l": CITE_JARDINS}
            ).all()
            alerts = insight_alerts(connection, loaded)
        report = sections(warehouse, loaded)
    finally:
        warehouse.dispose()
    arrears = {row.tenant_ref: row for row in rows}
    # some tenants in each bucket
    for bucket in AGEING_COLUMNS:
        assert sum(getattr(row, bucket) > 0 for row in rows) >= 1, bucket
    # the hand-written accounts (rent call 520.00, instalments 200.00 due on the 10th)
    on_track, late, broken, departed = (arrears[f"41100900{n}"] for n in (1, 2, 3, 4))
    assert (on_track.balance_cents, on_track.plan_status, on_track.plan_missed) == (
        0, "on_track", 0,
    )  # fmt: skip
    # October's instalment unpaid: 21 days old
    assert (late.balance_cents, late.debt_0_30_cents) == (20_000, 20_000)
    assert (late.plan_ref, late.plan_status, late.plan_missed) == ("PA-2026-102", "late", 1)
    # nothing paid since the September debit came back: the rejected 520.00 (11/09) and
    # September's instalment (10/09) are 50 and 51 days old, October's rent and instalment
    # 26 and 21 days; two instalments missed break the plan
    assert (broken.balance_cents, broken.debt_31_60_cents, broken.debt_0_30_cents) == (
        144_000, 72_000, 72_000,
    )  # fmt: skip
    assert (broken.plan_status, broken.plan_missed) == ("broken", 2)
    assert (broken.rejects_90d, broken.reject_reasons) == (1, "AM04")
    # left in April: 3 × 520.00 due 05/04 (209 days), 680.00 on 15/05 (169), 214.80 on 20/08 (72)
    assert (departed.debt_over_180_cents, departed.debt_91_180_cents) == (156_000, 68_000)
    assert (departed.debt_61_90_cents, departed.balance_cents) == (21_480, 245_480)
    # the generated tenants add plans broken by the ERP itself and more rejected debits
    assert sum(row.plan_status == "broken" for row in rows) >= 2
    assert sum(row.rejects_90d > 0 for row in rows) >= 2
    [broken_this_week] = [a for a in alerts["arrears"] or [] if a.name == "plans_broken_this_week"]
    assert "PA-2026-103" in broken_this_week.keys

    balances = report["Arrears: balances and ageing"]
    [(_, _, per_bucket)] = [t for t in balances.tables if t[0] == "Tenants per ageing bucket"]
    assert [row[0] for row in per_bucket] == [c.removesuffix("_cents") for c in AGEING_COLUMNS]
    assert all(row[1] >= 1 for row in per_bucket), per_bucket
    figures = dict(balances.figures)
    assert "late 1" in figures["Repayment plans"] and "on_track" in figures["Repayment plans"]
    assert int(figures["Tenants with a rejected direct debit (90 days)"]) >= 2


def test_the_demo_works_show_absences_a_repeat_visit_and_late_invoices(hub_home: Path) -> None:
    warehouse, loaded = loaded_demo(hub_home, OPALE_LOGEMENT)
    try:
        with warehouse.engine.begin() as connection:
            refresh_works(connection, OPALE_LOGEMENT, AS_OF, "morning", first_time_fix_days=30)
        with warehouse.engine.connect() as connection:
            summary = works_summary(connection, OPALE_LOGEMENT)
            # orders visited twice with the tenant present, and whether each is a first-time fix
            repeats = connection.execute(
                sa.text(
                    "SELECT c.order_ref, w.first_time_fix FROM completions c"
                    " JOIN works_orders w ON w.landlord_id = c.landlord_id"
                    "  AND w.order_ref = c.order_ref"
                    " WHERE c.landlord_id = :l AND NOT c.tenant_absent"
                    " GROUP BY c.order_ref, w.first_time_fix HAVING count(*) >= 2"
                ),
                {"l": OPALE_LOGEMENT},
            ).all()
            absent, paid, paid_late = connection.execute(
                sa.text(
                    "SELECT (SELECT count(*) FROM completions WHERE landlord_id = :l"
                    "        AND tenant_absent),"
                    " (SELECT count(*) FROM invoices WHERE landlord_id = :l"
                    "        AND paid_date IS NOT NULL),"
                    " (SELECT count(*) FROM invoices WHERE landlord_id = :l"
                    "        AND paid_date > due_date)"
                ),
                {"l": OPALE_LOGEMENT},
            ).one()
            alerts = insight_alerts(connection, loaded)
        report = sections(warehouse, loaded)
    finally:
        warehouse.dispose()
    assert absent >= 1 and summary.missed_appointments >= 1
    # the leak came back: 20 repairs had a second visit with the tenant present (one in six)
    assert len(repeats) >= 20
    assert not any(fixed for _, fixed in repeats)
    assert summary.first_time_fix_rate is not None and 0 < summary.first_time_fix_rate < 0.95
    assert paid >= 1 and 1 <= paid_late < paid
    [uninvoiced] = [a for a in alerts["works"] or [] if a.name == "completion_not_invoiced"]
    assert uninvoiced.open and uninvoiced.keys

    sla = dict(report["SLA and first-time fix"].figures)
    assert sla["First-time fix rate"] not in ("100%", "—")
    assert int(sla["Missed appointments"]) >= 1
    assert (sla["Invoices paid (with their date)"], sla["Invoices paid after their due date"]) == (
        str(paid), str(paid_late),
    )  # fmt: skip
    assert int(dict(report["Works orders by stage"].figures)["Orders"]) > 0
