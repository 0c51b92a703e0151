"""The demo data makes every insight visible (issue 15, point 7): computed as of the demo day
(its files are dated up to it; the hand-worked figures below for the reference day 31/10/2026,
the file-based checks at the end on eight demo days), the demo landlords have tenants in every
ageing bucket, repayment plans on track, late and broken, rejected direct debits, missed
appointments, repeat visits that are not a first-time fix, paid invoices with their date (some
paid late) and completions left uninvoiced; and the morning report shows each.

The demo landlords' files go through the real stages (pull, normalise, load) into a SQLite
warehouse (the computations are proven on PostgreSQL too by their own tests). The amounts of the
hand-written Cité des Jardins accounts (`_CITE_ACCOUNTS` in `connectors.sandbox.demo_files`)
are worked out by hand below; the other phenomena are counted with plain SQL on the canonical
and derived tables.
"""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import pytest
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


def loaded_demo(
    hub_home: Path, landlord: str, day: date = EXTRACTED_ON
) -> tuple[Warehouse, LoadedDatafix]:
    """The landlord's demo files, dated for the demo day `day` (by default the reference day,
    whose figures are worked out by hand below), loaded into a fresh SQLite warehouse."""
    write_demo_sources(hub_home, day)
    warehouse = Warehouse(f"sqlite:///{hub_home}/warehouse.db")
    warehouse.migrate()
    loaded = load_landlord(landlord)
    for entity in loaded.datafix.entities:
        rows = normalise(loaded, pull(loaded, entity, warehouse=warehouse))
        load(warehouse, loaded, rows, run_id=f"load-{landlord}")
    return warehouse, loaded


def sections(warehouse: Warehouse, loaded: LoadedDatafix) -> dict[str, Section]:
    return {section.title: section for section in build_sections(warehouse, loaded, AS_OF)}


def cite_arrears(warehouse: Warehouse, loaded: LoadedDatafix, as_of: date) -> tuple[list, list]:
    """Cité des Jardins' tenant arrears as the morning computes them on `as_of` (balances, then
    arrears), with the landlord's open alerts."""
    with warehouse.engine.begin() as connection:
        record_tenant_balances(connection, CITE_JARDINS, as_of, "morning")
        refresh_arrears(connection, CITE_JARDINS, as_of, "morning", loaded.datafix.arrears)
    with warehouse.engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT * FROM tenant_arrears WHERE landlord_id = :l"), {"l": CITE_JARDINS}
        ).all()
        return list(rows), insight_alerts(connection, loaded)


def test_the_demo_arrears_show_every_bucket_plan_status_and_rejected_debits(
    hub_home: Path,
) -> None:
    warehouse, loaded = loaded_demo(hub_home, CITE_JARDINS)
    try:
        rows, alerts = cite_arrears(warehouse, loaded, AS_OF)
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
    # left in April: 3 × 520.00 due since 05/02 (268 days), 680.00 on 15/05 (169), 214.80 on
    # 20/08 (72)
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


# --- Every demo day: the story read from the files alone ---------------------------------------
# The demo data is dated for the demo day (`connectors.sandbox.demo_calendar`: whole months from
# the reference, nothing after the demo day). Whatever the day, the files must show what the
# insight steps, which age to today, make visible. Everything below is computed from the files
# with plain Python, not by the hub: FIFO ageing (credits pay the oldest debits first, a debit
# aged from its due date, else its posting date), missed plan instalments, rejected debits,
# absences, SLA terms and invoice dates.

TODAY = datetime.now(ZoneInfo("Europe/Paris")).date()
DEMO_DAYS = {
    "reference": EXTRACTED_ON,  # 31/10/2026
    "a year later": date(2027, 10, 31),
    "today": TODAY,
    "first of a month after February": date(2027, 3, 1),
    "before the rent falls due": date(2026, 12, 4),
    "plan broken this week": date(2027, 1, 14),
    "mid-month": date(2027, 6, 20),
    "leap day": date(2028, 2, 29),
}
BUCKETS = {  # ageing bucket: (fewest, most) days since the debit fell due; future is 0–30
    "debt_0_30_cents": (None, 30),
    "debt_31_60_cents": (31, 60),
    "debt_61_90_cents": (61, 90),
    "debt_91_180_cents": (91, 180),
    "debt_over_180_cents": (181, None),
}
CITE_KNOWN_MOVEMENTS = {
    "APPEL", "LOYER", "CHARGES", "REGUL", "FRAIS", "REJET", "ENCAIS", "CAF", "REMB", "AVOIR",
    "ECHPA", "TRPA",
}  # fmt: skip
EXCEL_EPOCH = date(1899, 12, 30)


@dataclass(frozen=True)
class Movement:
    tenant: str
    piece: str
    posted: date
    due: date | None
    kind: str
    cents: int


def _iso_day(text: str | None) -> date | None:
    try:
        return None if text is None else date.fromisoformat(text)
    except ValueError:  # the seeded impossible dates (2026-09-31)
        return None


def _cents(text: str) -> int | None:
    match = re.fullmatch(r"(-?)(\d+)\.(\d{2})", text)
    if match is None:  # the seeded `12,5O`
        return None
    sign, euros, cents = match.groups()
    return (-1 if sign else 1) * (int(euros) * 100 + int(cents))


def cite_movements(inbox: Path) -> list[Movement]:
    """Cité des Jardins' ledger as its ERP stores it, the seeded bad rows left out."""
    with closing(sqlite3.connect(inbox / CITE_JARDINS / "erp.db")) as connection:
        rows = connection.execute(
            "SELECT t.code_tiers, e.num_piece, e.date_ecriture, e.date_echeance, e.type_mvt,"
            " e.montant FROM ecritures e JOIN tiers t ON t.id = e.tiers_id"
            " WHERE t.code_tiers IS NOT NULL"
        ).fetchall()
    movements = []
    for tenant, piece, posted, due, kind, amount in rows:
        day, cents = _iso_day(posted), _cents(amount)
        if day is None or cents is None or kind not in CITE_KNOWN_MOVEMENTS:
            continue
        movements.append(Movement(tenant, piece, day, _iso_day(due), kind, cents))
    return movements


def unpaid_debits(movements: list[Movement], as_of: date) -> list[tuple[Movement, int]]:
    """Each debit posted by `as_of` with what the credits posted by then leave unpaid (FIFO)."""
    live = [m for m in movements if m.posted <= as_of]
    paid: dict[str, int] = {}
    for movement in live:
        if movement.cents < 0:
            paid[movement.tenant] = paid.get(movement.tenant, 0) - movement.cents
    unpaid = []
    running: dict[str, int] = {}
    debits = sorted(
        (m for m in live if m.cents > 0), key=lambda m: (m.due or m.posted, m.posted, m.piece)
    )
    for debit in debits:
        running[debit.tenant] = running.get(debit.tenant, 0) + debit.cents
        left = min(debit.cents, max(0, running[debit.tenant] - paid.get(debit.tenant, 0)))
        unpaid.append((debit, left))
    return unpaid


def tenants_per_bucket(movements: list[Movement], as_of: date) -> dict[str, set[str]]:
    tenants: dict[str, set[str]] = {bucket: set() for bucket in BUCKETS}
    for debit, left in unpaid_debits(movements, as_of):
        age = (as_of - (debit.due or debit.posted)).days
        for bucket, (fewest, most) in BUCKETS.items():
            if left > 0 and (fewest is None or age >= fewest) and (most is None or age <= most):
                tenants[bucket].add(debit.tenant)
    return tenants


def plans_broken(inbox: Path, movements: list[Movement], as_of: date) -> set[str]:
    """Plans started by `as_of` that are broken then: by the ERP (`ROMPU`), or by two or more
    instalments fallen due before `as_of` and left unpaid (the tenant's latest plan only)."""
    with closing(sqlite3.connect(inbox / CITE_JARDINS / "erp.db")) as connection:
        plans = connection.execute(
            "SELECT ref_plan, code_tiers, date_debut, statut FROM plans_apurement"
        ).fetchall()
    latest: dict[str, tuple[date, str, str]] = {}
    for ref, tenant, start, status in plans:
        started = _iso_day(start)
        if started is not None and started <= as_of and status in ("EC", "SOLDE", "ROMPU"):
            latest[tenant] = max(latest.get(tenant, (started, ref, status)), (started, ref, status))
    missed: dict[str, int] = {}
    for debit, left in unpaid_debits(movements, as_of):
        due = debit.due or debit.posted
        plan = latest.get(debit.tenant)
        if debit.kind == "ECHPA" and left > 0 and plan and plan[0] <= due < as_of:
            missed[debit.tenant] = missed.get(debit.tenant, 0) + 1
    return {
        ref
        for tenant, (_, ref, status) in latest.items()
        if status == "ROMPU" or (status == "EC" and missed.get(tenant, 0) >= 2)
    }


def _cell_moment(value: object) -> datetime | None:
    """A workbook date as the export writes it: a date cell, `dd/mm/yyyy[ HH:MM]` text or a bare
    Excel serial number; the seeded impossible dates give None."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, int):
        return datetime.combine(EXCEL_EPOCH + timedelta(days=value), time())
    if isinstance(value, str):
        for layout in ("%d/%m/%Y %H:%M", "%d/%m/%Y"):
            try:
                return datetime.strptime(value, layout)
            except ValueError:
                continue
    return None


def _sheet_rows(path: Path, sheet: str, first_row: int) -> list[tuple[object, ...]]:
    book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        rows = []
        for row in book[sheet].iter_rows(min_row=first_row, values_only=True):
            if row[0] == "Total" or all(value is None for value in row):
                break
            rows.append(row)
        return rows
    finally:
        book.close()


def test_the_demo_days_are_whole_months_from_the_reference_and_never_after_the_demo_day(
    tmp_path: Path,
) -> None:
    day = date(2027, 3, 1)
    write_demo_sources(tmp_path, day)
    movements = cite_movements(tmp_path / "inbox")
    assert max(m.posted for m in movements) == day
    # the rent of the demo day's month is called on the 1st and due on the 5th, as at the
    # reference (October 2026 became March 2027: five months)
    calls = {(m.posted, m.due) for m in movements if m.kind == "APPEL" and m.posted.day == 1}
    assert (date(2027, 3, 1), date(2027, 3, 5)) in calls
    assert (date(2026, 10, 1), date(2026, 10, 5)) in calls  # May 2026's
    assert {m.posted for m in movements if m.kind == "APPEL"} >= {date(2026, 10, 1)}
    assert not [m for m in movements if m.posted < date(2026, 10, 1) and m.kind == "APPEL"]
    # the same seed on the same day: the same bytes; another day: another file
    again = tmp_path / "again"
    write_demo_sources(again, day)
    for name in ("cite-jardins/erp.db", "opale-logement/travaux_2027-03.xlsx"):
        assert (tmp_path / "inbox" / name).read_bytes() == (again / "inbox" / name).read_bytes()
    write_demo_sources(again, date(2027, 3, 2))
    assert (tmp_path / "inbox" / "cite-jardins" / "erp.db").read_bytes() != (
        again / "inbox" / "cite-jardins" / "erp.db"
    ).read_bytes()


@pytest.mark.parametrize("day", list(DEMO_DAYS.values()), ids=list(DEMO_DAYS))
def test_on_every_demo_day_the_files_show_every_insight(tmp_path: Path, day: date) -> None:
    written = write_demo_sources(tmp_path, day)
    inbox = tmp_path / "inbox"
    movements = cite_movements(inbox)
    assert max(m.posted for m in movements) <= day  # nothing happens after the demo day

    # arrears: tenants in every ageing bucket, broken plans, rejected debits within 90 days
    per_bucket = tenants_per_bucket(movements, day)
    assert all(per_bucket.values()), {bucket: len(ts) for bucket, ts in per_bucket.items()}
    broken = plans_broken(inbox, movements, day)
    assert len(broken) >= 2, broken
    rejected = {m.tenant for m in movements if m.kind == "REJET" and (day - m.posted).days <= 90}
    assert len(rejected) >= 2, rejected
    if 11 <= day.day <= 17:  # the hand-written plan's 2nd missed instalment fell due on the 10th
        assert "PA-2026-103" in broken - plans_broken(inbox, movements, day - timedelta(days=7))

    # works: absences, SLA terms missed and still running, invoices paid late, completions
    # left uninvoiced
    [workbook] = written[OPALE_LOGEMENT]
    assert workbook.name == f"travaux_{day:%Y-%m}.xlsx"
    orders = {
        row[0]: (_cell_moment(row[7]), row[11])
        for row in _sheet_rows(workbook, "Commandes", 6)
        if row[0] and _cell_moment(row[7])
    }
    visits = [
        (row[1], _cell_moment(row[2]), row[4] == "Oui")
        for row in _sheet_rows(workbook, "Quitus", 5)
        if row[1] and _cell_moment(row[2])
    ]
    invoices = [
        (row[1], _cell_moment(row[5]), _cell_moment(row[6]), _cell_moment(row[8]))
        for row in _sheet_rows(workbook, "Factures", 5)
    ]
    start_of_day, end_of_day = (datetime.combine(d, time()) for d in (day, day + timedelta(1)))
    assert max(at for _, at, _ in visits if at) < end_of_day
    assert max(ordered for ordered, _ in orders.values() if ordered) <= start_of_day
    assert any(absent for _, _, absent in visits)
    restored: dict[str, datetime] = {}
    for order_ref, at, absent in visits:
        if not absent and at is not None:
            restored[order_ref] = min(restored.get(order_ref, at), at)
    missed = pending = 0
    for order_ref, (ordered, gtr_hours) in orders.items():
        if not isinstance(gtr_hours, int) or ordered is None:
            continue
        term = ordered + timedelta(hours=gtr_hours)
        if order_ref in restored:
            missed += restored[order_ref] > term
        elif term >= end_of_day:
            pending += 1
        elif term < start_of_day:
            missed += 1
    assert missed >= 1 and pending >= 1, (missed, pending)
    paid_late = [ref for ref, _, due, paid in invoices if paid and due and paid > due]
    assert paid_late
    invoiced = {ref for ref, *_ in invoices}
    uninvoiced = {ref for ref, at, absent in visits if not absent and ref not in invoiced}
    assert uninvoiced


def test_today_the_hub_shows_every_bucket_and_broken_plans(hub_home: Path) -> None:
    """The hub's own arrears of the demo day today (what `datafix demo` shows this morning)
    agree with the files: every bucket holds tenants, plans are broken."""
    warehouse, loaded = loaded_demo(hub_home, CITE_JARDINS, TODAY)
    try:
        rows, alerts = cite_arrears(warehouse, loaded, TODAY)
    finally:
        warehouse.dispose()
    expected = tenants_per_bucket(cite_movements(hub_home / "inbox"), TODAY)
    for bucket in AGEING_COLUMNS:
        assert {row.tenant_ref for row in rows if getattr(row, bucket) > 0} == expected[bucket]
    [broken_this_week] = [a for a in alerts["arrears"] or [] if a.name == "plans_broken_this_week"]
    assert broken_this_week.keys
