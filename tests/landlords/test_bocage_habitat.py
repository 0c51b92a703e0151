"""Bocage Habitat: a workbook written by LibreOffice, the ledger in two sheets (issue 10).

`bocage-habitat/inbox/grand-livre.xlsx` was converted by LibreOffice from the hand-written
`grand-livre.fods` (`bocage-habitat/build.py`): a title block, a two-row merged header, dates and
amounts typed as French text among real ones, a Total row, and the rejected direct debits on a
second sheet, one of them posted under a piece number the first sheet already has. The datafix
unions the two sheets into one ledger (`feeds`). What the warehouse must hold is computed here
with openpyxl over the committed workbook (the hub reads it with calamine) and this test's own
reading of French dates and amounts. The tenants' arrears (issue 15) are checked the same way:
FIFO ageing, rejected debits and housing aid worked out here from the workbook.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
import sqlalchemy as sa

from pipelines.lib import environment
from pipelines.lib.arrears import compute_arrears
from schemas.arrears import ArrearsSection
from schemas.tables import tenant_arrears
from tests.landlords import common

LANDLORD = "bocage-habitat"
WORKBOOK = Path(__file__).resolve().parent / LANDLORD / "inbox" / "grand-livre.xlsx"
EXTRACTED_ON = dt.date(2026, 3, 31)  # the workbook's "Extraction du …" day (build.py)
LEDGER_SHEET, REJECTS_SHEET, TENANTS_SHEET = "Grand livre", "Prélèvements rejetés", "Locataires"

# Bocage Habitat's movement codes, as its accountant describes them
KINDS = {
    "QUI": "rent_call",
    "APL": "housing_aid",
    "PRL": "payment",
    "VIR": "payment",
    "CHQ": "payment",
    "FRA": "fee",
    "RGC": "charge_regularisation",
}
DEBIT_KINDS = {"rent_call", "fee", "rejected_debit"}
CREDIT_KINDS = {"payment", "housing_aid"}

_FRENCH_AMOUNT = re.compile(r"^\d{1,3}(?:[ \u00a0\u202f]?\d{3})*(?:,\d{1,2})?$")
_FRENCH_DATE = re.compile(r"^(\d{2})/(\d{2})/(\d{2}|\d{4})$")


class Unreadable(Exception):
    """A cell this test cannot read as a date or an amount: the hub must not either."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def cents(cell: object) -> int | None:
    """A number cell, or French text (`1 204,50`, `12,00 €`), as cents; None when blank."""
    if cell is None or (isinstance(cell, str) and not cell.strip()):
        return None
    if isinstance(cell, int | float):
        value = Decimal(repr(float(cell)))
    else:
        text = str(cell).strip().removesuffix("€").strip()
        if not _FRENCH_AMOUNT.match(text):
            raise Unreadable("bad_amount")
        value = Decimal(re.sub(r"[ \u00a0\u202f]", "", text).replace(",", "."))
    hundred = value * 100
    assert hundred == hundred.to_integral_value(), cell
    return int(hundred)


def date(cell: object) -> dt.date:
    """A date cell, or a date typed as `05/03/2026` or `05/03/26`."""
    if isinstance(cell, dt.datetime):
        return cell.date()
    if isinstance(cell, dt.date):
        return cell
    match = _FRENCH_DATE.match(str(cell or "").strip())
    if not match:
        raise Unreadable("bad_date")
    day, month, year = (int(part) for part in match.groups())
    try:
        return dt.date(year + 2000 if year < 100 else year, month, day)
    except ValueError:
        raise Unreadable("bad_date") from None


class Expected:
    """What the warehouse must hold, read from the committed workbook alone."""

    def __init__(self, path: Path) -> None:
        workbook = openpyxl.load_workbook(path, data_only=True)
        self.sheets = workbook
        self.balances: dict[str, int] = defaultdict(int)
        self.ledger_rows: list[tuple] = []
        self.entry_dates: dict[str, dt.date] = {}  # piece → posting date, rows loaded only
        self.ledger_rejects: dict[str, str] = {}
        self.ledger_skipped = 0
        self.text_cells: Counter[str] = Counter()

        # (lineage, piece, tenant, kind, cents or a reason, reject reason, date) of every row read
        candidates: list[tuple[str, str, str, str, int | str, str | None, object]] = []
        ledger = workbook[LEDGER_SHEET]
        # title, extraction date, blank, then the two header rows: the data start on row 6
        assert [ledger.cell(5, col).value for col in range(2, 9)] == [
            "Compte", "Nom", "Date", "Code", "Libellé", "Débit", "Crédit"
        ]  # fmt: skip
        for number, values in enumerate(ledger.iter_rows(min_row=6, values_only=True), start=6):
            piece, account, _name, when, code, _label, debit, credit = values[:8]
            if all(value is None for value in values) or re.match(r"(?i)^total", str(piece)):
                self.ledger_skipped += 1
                continue
            self.text_cells.update(
                kind
                for kind, value in (("date", when), ("amount", debit), ("amount", credit))
                if isinstance(value, str)
            )
            try:
                date(when)
                debit_cents, credit_cents = cents(debit), cents(credit)
                assert (debit_cents is None) != (credit_cents is None), values
                amount: int | str = (debit_cents or 0) - (credit_cents or 0)
            except Unreadable as unreadable:
                amount = unreadable.reason
            candidates.append(
                (f"grand-livre.xlsx:{LEDGER_SHEET}:{number}", piece, account, KINDS[code], amount,
                 None, when)
            )  # fmt: skip
        self.ledger_sheet_rows = len(candidates)

        rejects = workbook[REJECTS_SHEET]
        assert [cell.value for cell in rejects[1]][:4] == [
            "N° pièce", "Compte", "Date du rejet", "Montant"
        ]  # fmt: skip
        for number, values in enumerate(rejects.iter_rows(min_row=2, values_only=True), start=2):
            piece, account, when, amount_cell, reason, _label = values[:6]
            self.text_cells.update(
                kind
                for kind, value in (("date", when), ("amount", amount_cell))
                if isinstance(value, str)
            )
            try:
                date(when)
                amount = cents(amount_cell)
            except Unreadable as unreadable:
                amount = unreadable.reason
            candidates.append(
                (f"grand-livre.xlsx:{REJECTS_SHEET}:{number}", piece, account, "rejected_debit",
                 amount, reason, when)
            )  # fmt: skip
        self.rejects_sheet_rows = len(candidates) - self.ledger_sheet_rows

        # a piece number found on both sheets: neither row can be trusted
        sheet_of = defaultdict(set)
        for lineage, piece, *_ in candidates:
            sheet_of[piece].add(lineage.split(":")[1])
        self.shared = {piece for piece, sheets in sheet_of.items() if len(sheets) > 1}

        for lineage, piece, account, kind, amount, reason, when in candidates:
            faults = []
            if isinstance(amount, str):
                faults.append(amount)
            if piece in self.shared:
                faults.append("key_in_two_sources")
            if isinstance(amount, int) and (
                (kind in DEBIT_KINDS and amount < 0) or (kind in CREDIT_KINDS and amount > 0)
            ):
                faults.append("sign_matches_kind")
            # a row carries one fault at most: which reason wins is not what this test is about
            assert len(faults) <= 1, (lineage, faults)
            if faults:
                self.ledger_rejects[lineage] = faults[0]
                continue
            assert isinstance(amount, int)
            self.balances[account] += amount
            self.ledger_rows.append((piece, account, kind, amount, reason))
            self.entry_dates[piece] = date(when)
        self.ledger_read = len(candidates)

        tenants = workbook[TENANTS_SHEET]
        self.tenant_rows = sorted(
            (account, "left" if move_out is not None else "active")
            for account, _name, _dwelling, _move_in, move_out in tenants.iter_rows(
                min_row=2, max_col=5, values_only=True
            )
            if account is not None
        )


def test_bocage_habitat_libreoffice_workbook_two_feeds(monkeypatch: pytest.MonkeyPatch) -> None:
    common.install_landlord(LANDLORD, monkeypatch)
    checked = common.datafix("check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    result = common.datafix("run", LANDLORD)
    assert result.returncode == 0, result.stdout + result.stderr

    expected = Expected(WORKBOOK)
    # the fixture is what it claims: merged two-row header, French text among real cells, one
    # piece number on both sheets, one bad date and one bad amount
    ledger = expected.sheets[LEDGER_SHEET]
    merged = {str(cell_range) for cell_range in ledger.merged_cells.ranges}
    assert {"A4:A5", "B4:C4", "D4:F4", "G4:H4"} <= merged
    assert str(ledger["A2"].value).startswith("Extraction du ")
    assert expected.text_cells["date"] >= 20 and expected.text_cells["amount"] >= 15
    assert len(expected.shared) == 1
    assert sorted(expected.ledger_rejects.values()) == sorted(
        ["bad_amount", "bad_date", "key_in_two_sources", "key_in_two_sources"]
    )
    assert (expected.ledger_sheet_rows, expected.rejects_sheet_rows) == (390, 15)
    assert expected.ledger_skipped == 1  # the Total row

    url = environment.warehouse_url()
    assert common.balances(url, LANDLORD) == dict(expected.balances)
    columns = "entry_ref, tenant_ref, kind, amount_cents, reject_reason"
    rows, rejects = sorted(expected.ledger_rows), expected.ledger_rejects
    assert common.live_rows(url, LANDLORD, "ledger_entries", columns) == rows
    counts = (expected.ledger_read, len(rows), len(rejects), expected.ledger_skipped)
    common.assert_load(url, LANDLORD, "ledger_entries", quarantine=rejects, counts=counts)

    assert common.live_rows(url, LANDLORD, "tenants", "tenant_ref, status") == expected.tenant_rows
    assert common.open_quarantine(url, LANDLORD, "tenants") == {}


# The arrears of datafixes/README.md ("arrears prevention"), read by this test alone: the debt is
# split by the days since each unpaid debit was posted (no due date in this workbook), credits
# paying the oldest debits first.
BUCKETS = (
    ("debt_0_30_cents", 0, 30),  # future debits count in the first bucket
    ("debt_31_60_cents", 31, 60),
    ("debt_61_90_cents", 61, 90),
    ("debt_91_180_cents", 91, 180),
    ("debt_over_180_cents", 181, None),
)
ARREARS = (
    *(name for name, *_ in BUCKETS), "balance_cents", "oldest_unpaid_date", "monthly_rent_cents",
    "months_owed", "last_payment_date", "rejects_90d", "rejects_365d", "reject_reasons",
    "housing_aid_90d_cents",
)  # fmt: skip


def expected_arrears(expected: Expected, as_of: dt.date) -> dict[str, dict[str, object]]:
    """Each tenant's arrears on `as_of`, from the rows the warehouse must hold: every tenant
    account, with or without movements, and every movement posted on or before `as_of`."""
    movements: dict[str, list[tuple]] = defaultdict(list)
    for piece, account, kind, amount, reason in expected.ledger_rows:
        posted = expected.entry_dates[piece]
        if posted <= as_of:
            movements[account].append((posted, piece, kind, amount, reason))
    recent = as_of - dt.timedelta(days=90)
    year = as_of - dt.timedelta(days=365)
    arrears = {}
    for tenant in {account for account, _status in expected.tenant_rows} | set(movements):
        rows = sorted(movements[tenant])  # oldest first
        figures: dict[str, object] = {name: 0 for name, *_ in BUCKETS}
        credit = -sum(amount for *_, amount, _reason in rows if amount < 0)
        oldest = None
        for posted, _piece, _kind, amount, _reason in rows:
            if amount <= 0:
                continue
            paid = min(amount, credit)
            credit -= paid
            if amount > paid:
                age = (as_of - posted).days
                bucket = next(n for n, low, high in BUCKETS if high is None or age <= high)
                figures[bucket] += amount - paid  # type: ignore[operator]
                oldest = oldest or posted
        balance = sum(amount for *_, amount, _reason in rows)
        rents = [amount for _p, _r, kind, amount, _x in rows if kind == "rent_call"]
        payments = [posted for posted, _r, kind, *_ in rows if kind == "payment"]
        rejects = [
            (posted, reason) for posted, _r, kind, _a, reason in rows if kind == "rejected_debit"
        ]
        figures.update(
            balance_cents=balance,
            oldest_unpaid_date=oldest,
            monthly_rent_cents=rents[-1] if rents else None,
            months_owed=balance // rents[-1] if rents and balance > 0 and rents[-1] > 0 else 0,
            last_payment_date=max(payments, default=None),
            rejects_90d=sum(posted > recent for posted, _reason in rejects),
            rejects_365d=sum(posted > year for posted, _reason in rejects),
            reject_reasons=" ".join(sorted({r for posted, r in rejects if posted > recent}))
            or None,
            housing_aid_90d_cents=-sum(
                amount for posted, _r, kind, amount, _x in rows
                if kind == "housing_aid" and posted > recent
            ),
        )  # fmt: skip
        arrears[tenant] = figures
    return arrears


def stored_arrears(connection: sa.Connection) -> tuple[set[dt.date], dict[str, dict[str, object]]]:
    """The days and the figures per tenant of the landlord's `tenant_arrears`."""
    rows = connection.execute(
        sa.select(tenant_arrears).where(tenant_arrears.c.landlord_id == LANDLORD)
    ).mappings()
    days, figures = set(), {}
    for row in rows:
        days.add(row["as_of"])
        assert row["profile"] and row["profile_rule"], row  # every tenant gets one profile
        figures[row["tenant_ref"]] = {name: row[name] for name in ARREARS}
    return days, figures


def test_bocage_habitat_arrears_from_the_libreoffice_workbook(
    warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The arrears of a ledger the hub was not written for (two sheets, French text cells, a
    debit/credit pair of columns, rejected debits on their own sheet): the night's run
    computes them for today, and the same computation on the day of the extract (31 March 2026,
    when the debts spread over every bucket) matches this test's own FIFO reading. On SQLite
    and on PostgreSQL as the warehouse."""
    common.install_landlord(LANDLORD, monkeypatch)
    result = common.datafix("run", LANDLORD)
    assert result.returncode == 0, result.stdout + result.stderr
    expected = Expected(WORKBOOK)
    engine = sa.create_engine(warehouse_url)
    try:
        with engine.begin() as connection:
            (today,), tonight = stored_arrears(connection)
            assert tonight == expected_arrears(expected, today)

            compute_arrears(connection, LANDLORD, EXTRACTED_ON, "bocage-test", ArrearsSection())
            (day,), then = stored_arrears(connection)
        assert day == EXTRACTED_ON
        assert then == expected_arrears(expected, EXTRACTED_ON)
        # the fixture is what it claims on that day: debts in four buckets at least, rejected
        # debits with their SEPA reasons, housing aid, a tenant whose debt spans buckets
        spread = {name for figures in then.values() for name, *_ in BUCKETS if figures[name]}
        assert len(spread) >= 4, spread
        assert any(figures["reject_reasons"] for figures in then.values())
        assert any(figures["housing_aid_90d_cents"] for figures in then.values())
        assert any(sum(bool(f[name]) for name, *_ in BUCKETS) >= 2 for f in then.values())
    finally:
        engine.dispose()
