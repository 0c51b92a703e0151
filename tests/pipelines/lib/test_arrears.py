"""Arrears, profiles and actions (`pipelines.lib.arrears`) on SQLite and on a fresh PostgreSQL
database, from a hand-made ledger whose figures are worked out by hand in the comments.

The day computed is AS_OF = 2026-06-30. Debits age from their due date (else their posting
date); credits pay the oldest debits first.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from pipelines.lib.arrears import arrears_figures, compute_arrears, refresh_actions
from pipelines.lib.insight import record_tenant_balances
from pipelines.lib.warehouse import Warehouse
from schemas.arrears import ArrearsSection, ProfileRule
from schemas.tables import prevention_actions, tenant_arrears, tenant_balances
from tests.pipelines.lib.arrears_cases import entry, hand_made_warehouse, put

LANDLORD = "loire-habitat"
AS_OF = dt.date(2026, 6, 30)

LEDGER = [
    # A: five rents of 500.00 € and one not yet due, two partial payments (400.00 € in all)
    entry("A1", "A", "2025-12-01", "rent", 50_000, due="2025-12-05"),  # 207 days: > 180
    entry("A2", "A", "2026-02-01", "rent", 50_000, due="2026-02-05"),  # 145 days: 91–180
    entry("A3", "A", "2026-04-01", "rent", 50_000, due="2026-04-05"),  # 86 days: 61–90
    entry("A4", "A", "2026-05-01", "rent", 50_000, due="2026-05-05"),  # 56 days: 31–60
    entry("A5", "A", "2026-06-01", "rent", 50_000, due="2026-06-05"),  # 25 days: 0–30
    entry("A6", "A", "2026-06-25", "rent", 50_000, due="2026-07-05"),  # not due yet: 0–30
    entry("A7", "A", "2026-01-10", "payment", -25_000, method="cheque"),
    entry("A8", "A", "2026-03-10", "payment", -15_000, method="transfer"),
    entry("A9", "A", "2026-07-02", "payment", -99_999, method="card"),  # after AS_OF
    # B: a plan of 100.00 € a month from March; March and April paid, May and June missed
    entry("B1", "B", "2026-03-01", "plan_instalment", 10_000, due="2026-03-05"),
    entry("B2", "B", "2026-04-01", "plan_instalment", 10_000, due="2026-04-05"),
    entry("B3", "B", "2026-05-01", "plan_instalment", 10_000, due="2026-05-05"),
    entry("B4", "B", "2026-06-01", "plan_instalment", 10_000, due="2026-06-05"),
    entry("B5", "B", "2026-03-06", "payment", -10_000, method="transfer"),
    entry("B6", "B", "2026-04-06", "payment", -10_000, method="transfer"),
    # C: a plan of 50.00 € from May; May paid, June missed
    entry("C1", "C", "2026-05-01", "plan_instalment", 5_000, due="2026-05-05"),
    entry("C2", "C", "2026-06-01", "plan_instalment", 5_000, due="2026-06-05"),
    entry("C3", "C", "2026-05-04", "payment", -5_000, method="card"),
    # D: direct debits rejected (AM04 in May, MS02 in June; AC04 in February, > 90 days)
    entry("D1", "D", "2026-02-10", "rejected_debit", 1_000, reason="AC04"),
    entry("D2", "D", "2026-05-01", "rent_call", 40_000, due="2026-05-05"),
    entry("D3", "D", "2026-05-05", "payment", -40_000, method="sepa_debit"),
    entry("D4", "D", "2026-05-08", "rejected_debit", 40_000, reason="AM04"),
    entry("D5", "D", "2026-06-01", "rent_call", 40_000, due="2026-06-05"),
    entry("D6", "D", "2026-06-05", "payment", -40_000, method="sepa_debit"),
    entry("D7", "D", "2026-06-08", "rejected_debit", 40_000, reason="MS02"),
    entry("D8", "D", "2026-03-25", "housing_aid", -20_000),  # 97 days ago: not in the 90
    entry("D9", "D", "2026-06-25", "housing_aid", -20_000),
    # E: in credit
    entry("E1", "E", "2026-06-01", "rent_call", 40_000, due="2026-06-05"),
    entry("E2", "E", "2026-05-28", "payment", -50_000, method="transfer"),
    # G: left owing one rent
    entry("G1", "G", "2026-04-01", "rent", 30_000),
]


def tenant(ref: str, status: str = "active", **attributes: Any) -> dict[str, Any]:
    return {"tenant_ref": ref, "status": status, **attributes}


TENANTS = [
    tenant("A", move_in_date=dt.date(2020, 1, 1), payment_method="cheque",
           preferred_channel="sms", housing_aid="none"),
    tenant("B", preferred_channel="letter"),
    tenant("C", preferred_channel="email"),
    tenant("D", housing_aid="apl", payment_method="sepa_debit"),
    tenant("E"),
    tenant("F", "left"),  # no ledger entry at all
    tenant("G", "left"),
]  # fmt: skip
PLANS = [
    {"plan_ref": "P-B", "tenant_ref": "B", "start_date": dt.date(2026, 3, 1),
     "total_cents": 60_000, "instalment_cents": 10_000, "instalments": 6, "status": "active"},
    {"plan_ref": "P-C", "tenant_ref": "C", "start_date": dt.date(2026, 5, 1),
     "total_cents": 30_000, "instalment_cents": 5_000, "instalments": 6, "status": "active"},
]  # fmt: skip


@pytest.fixture
def warehouse(warehouse_url: str) -> Iterator[Warehouse]:
    for warehouse in hand_made_warehouse(warehouse_url):
        # another landlord's tenant A owes a lot: never counted here
        with warehouse.engine.begin() as connection:
            put(connection, "ledger_entries", "opale-logement",
                [entry("A1", "A", "2026-01-01", "rent", 999_999)])  # fmt: skip
        yield warehouse


def compute(warehouse: Warehouse, settings: ArrearsSection | None = None, run: str = "r1") -> None:
    with warehouse.engine.begin() as connection:
        record_tenant_balances(connection, LANDLORD, AS_OF, run)
        compute_arrears(connection, LANDLORD, AS_OF, run, settings or ArrearsSection())


def rows(warehouse: Warehouse, *columns: str) -> dict[str, tuple[Any, ...]]:
    table = tenant_arrears
    with warehouse.engine.connect() as connection:
        found = connection.execute(
            sa.select(table.c.tenant_ref, *[table.c[c] for c in columns])
            .where(table.c.landlord_id == LANDLORD)
            .order_by(table.c.tenant_ref)
        ).all()
    return {row[0]: tuple(row[1:]) for row in found}


AGEING = ("balance_cents", "debt_over_180_cents", "debt_91_180_cents", "debt_61_90_cents",
          "debt_31_60_cents", "debt_0_30_cents", "oldest_unpaid_date", "months_owed")  # fmt: skip


def test_ageing_allocates_credits_to_the_oldest_debits_first(warehouse: Warehouse) -> None:
    compute(warehouse)
    got = rows(warehouse, *AGEING)
    # A: debits 300 000, credits 40 000 (A9 is after AS_OF) → balance 260 000; the 40 000 pay
    # A1 (50 000) in part: 10 000 of it left (> 180), then A2 … A5 whole, A6 (not due) 0–30;
    # last rent 50 000 → 5 months owed
    assert got["A"] == (260_000, 10_000, 50_000, 50_000, 50_000, 100_000,
                        dt.date(2025, 12, 5), 5)  # fmt: skip
    # B: 40 000 - 20 000 = 20 000: B3 (due May 5th, 56 days) and B4 (June 5th, 25 days)
    assert got["B"] == (20_000, 0, 0, 0, 10_000, 10_000, dt.date(2026, 5, 5), 0)
    # D: debits 1 000 + 40 000 × 4, credits 40 000 × 2 + 20 000 × 2 = 120 000 → 41 000; by due
    # date D1 (1 000), D2, D4 (cum. 81 000) and D5 (cum. 121 000: 1 000 left) then D7 40 000
    assert got["D"] == (41_000, 0, 0, 0, 0, 41_000, dt.date(2026, 6, 5), 1)
    # E: in credit: nothing aged; F: no entry; G: 30 000 posted April 1st (90 days: 61–90)
    assert got["E"] == (-10_000, 0, 0, 0, 0, 0, None, 0)
    assert got["F"] == (0, 0, 0, 0, 0, 0, None, 0)
    assert got["G"] == (30_000, 0, 0, 30_000, 0, 0, dt.date(2026, 4, 1), 1)


def test_payments_rejections_aid_and_plans(warehouse: Warehouse) -> None:
    compute(warehouse)
    got = rows(warehouse, "last_payment_date", "last_payment_method", "rejects_90d",
               "rejects_365d", "reject_reasons", "housing_aid_90d_cents", "plan_ref",
               "plan_status", "plan_missed")  # fmt: skip
    assert got["A"] == (dt.date(2026, 3, 10), "transfer", 0, 0, None, 0, None, None, 0)
    # B: May and June instalments unpaid past their due date: 2 missed → broken
    assert got["B"] == (dt.date(2026, 4, 6), "transfer", 0, 0, None, 0, "P-B", "broken", 2)
    # C: June unpaid: 1 missed → late
    assert got["C"] == (dt.date(2026, 5, 4), "card", 0, 0, None, 0, "P-C", "late", 1)
    # D: AM04 and MS02 within 90 days, AC04 within the year; aid of June 25th only
    assert got["D"] == (dt.date(2026, 6, 5), "sepa_debit", 2, 3, "AM04 MS02", 20_000, None,
                        None, 0)  # fmt: skip


def test_a_plan_paid_on_time_is_on_track_and_one_broken_at_source_stays_broken(
    warehouse: Warehouse,
) -> None:
    with warehouse.engine.begin() as connection:
        put(connection, "ledger_entries", LANDLORD, [
            entry("C4", "C", "2026-06-04", "payment", -5_000, method="card"),
        ])  # fmt: skip
        connection.execute(
            sa.text("UPDATE repayment_plans SET status = 'broken' WHERE plan_ref = 'P-B'")
        )
    compute(warehouse, ArrearsSection(plan_broken_after=3))
    got = rows(warehouse, "plan_status", "plan_missed")
    assert got["C"] == ("on_track", 0)
    assert got["B"] == ("broken", 2)  # 2 < 3 missed, but the landlord says broken


def test_every_tenant_gets_one_profile_with_the_rule_that_placed_it(warehouse: Warehouse) -> None:
    compute(warehouse)
    assert rows(warehouse, "profile", "profile_rule") == {
        "A": ("heavy_debt", "11: months_owed >= 3"),
        "B": ("plan_broken", "6: plan_status = broken and balance_cents >= 1"),
        "C": ("plan_late", "7: plan_status = late"),
        "D": ("sepa_refused", "15: reject_reason in (MS02, MD06) and balance_cents >= 1"),
        "E": ("in_credit", "38: balance_cents <= -1"),
        "F": ("departed_settled", "3: lease_status = left"),
        "G": ("departed_with_debt", "1: lease_status = left and balance_cents >= 1"),
    }
    # the history row of the day carries the ageing and the profile
    with warehouse.engine.connect() as connection:
        day = connection.execute(
            sa.select(tenant_balances.c.tenant_ref, tenant_balances.c.debt_over_180_cents,
                      tenant_balances.c.plan_status, tenant_balances.c.profile)
            .where(tenant_balances.c.landlord_id == LANDLORD, tenant_balances.c.as_of == AS_OF)
            .order_by(tenant_balances.c.tenant_ref)
        ).all()  # fmt: skip
    assert [tuple(row) for row in day][:2] == [
        ("A", 10_000, None, "heavy_debt"),
        ("B", 0, "broken", "plan_broken"),
    ]


def test_a_datafix_rule_goes_before_the_defaults_and_replace_keeps_only_its_own(
    warehouse: Warehouse,
) -> None:
    big = ProfileRule(profile="big_debt", when={"balance_cents": {"at_least": 200_000}})
    compute(warehouse, ArrearsSection(profiles=[big]))
    got = rows(warehouse, "profile", "profile_rule")
    assert got["A"] == ("big_debt", "1: balance_cents >= 200000")
    assert got["B"] == ("plan_broken", "7: plan_status = broken and balance_cents >= 1")
    compute(warehouse, ArrearsSection(profiles=[big], default_profiles="replace"))
    got = rows(warehouse, "profile")
    assert got == {"A": ("big_debt",), **{t: ("unprofiled",) for t in "BCDEFG"}}


def test_figures_sum_the_stored_rows(warehouse: Warehouse) -> None:
    compute(warehouse)
    with warehouse.engine.connect() as connection:
        figures = arrears_figures(connection, LANDLORD)
    # in debt: A 260 000, B 20 000, C 5 000, D 41 000, G 30 000
    assert (figures.tenants, figures.tenants_in_debt, figures.debt_cents) == (7, 5, 356_000)
    assert figures.ageing_cents["debt_0_30_cents"] == 100_000 + 10_000 + 5_000 + 41_000
    assert figures.plans == {"broken": 1, "late": 1}


def actions(warehouse: Warehouse) -> list[tuple[Any, ...]]:
    table = prevention_actions
    with warehouse.engine.connect() as connection:
        found = connection.execute(
            sa.select(table.c.action_key, table.c.action, table.c.channel, table.c.due_date,
                      table.c.status, table.c.closed_reason)
            .where(table.c.landlord_id == LANDLORD)
            .order_by(table.c.action_key)
        ).all()  # fmt: skip
    return [tuple(row) for row in found]


def refresh(warehouse: Warehouse, as_of: dt.date = AS_OF, run: str = "r1") -> Any:
    with warehouse.engine.begin() as connection:
        return refresh_actions(connection, LANDLORD, as_of, run, ArrearsSection())


def test_actions_are_created_once_and_closed_when_the_balance_clears(warehouse: Warehouse) -> None:
    compute(warehouse)
    counts = refresh(warehouse)
    day = AS_OF

    def later(days: int) -> dt.date:
        return AS_OF + dt.timedelta(days=days)

    expected = [
        ("A:heavy_debt:formal_notice:2026-06-30", "formal_notice", "letter", day, "open", None),
        ("A:heavy_debt:social_referral:2026-06-30", "social_referral", "letter", later(15),
         "open", None),
        ("B:plan_broken:formal_notice:2026-06-30", "formal_notice", "letter", day, "open", None),
        ("B:plan_broken:social_referral:2026-06-30", "social_referral", "letter", later(15),
         "open", None),
        # C prefers e-mail: the reminder goes there
        ("C:plan_late:reminder:2026-06-30", "reminder", "email", day, "open", None),
        ("D:sepa_refused:call:2026-06-30", "call", "phone", day, "open", None),
        ("G:departed_with_debt:departure_notice:2026-06-30", "departure_notice", "letter", day,
         "open", None),
        ("G:departed_with_debt:formal_notice:2026-06-30", "formal_notice", "letter", later(30),
         "open", None),
    ]  # fmt: skip
    assert actions(warehouse) == expected
    assert (counts.created, counts.closed, counts.open) == (8, 0, 8)

    # the next morning, same figures: nothing created, nothing closed, no key changed
    compute(warehouse, run="r2")
    counts = refresh(warehouse, AS_OF, run="r2")
    assert (counts.created, counts.closed, counts.open) == (0, 0, 8)
    assert actions(warehouse) == expected

    # C pays its June instalment: C's reminder closes; nothing else moves
    with warehouse.engine.begin() as connection:
        put(connection, "ledger_entries", LANDLORD, [
            entry("C5", "C", "2026-06-30", "payment", -5_000, method="card"),
        ])  # fmt: skip
    compute(warehouse, run="r3")
    counts = refresh(warehouse, run="r3")
    assert (counts.created, counts.closed, counts.open) == (0, 1, 7)
    closed = {row[0]: row[4:] for row in actions(warehouse)}
    assert closed["C:plan_late:reminder:2026-06-30"] == ("closed", "balance_cleared")
    assert sum(1 for row in actions(warehouse) if row[4] == "open") == 7


def test_a_tenant_changing_profile_closes_the_old_steps_and_opens_the_new(
    warehouse: Warehouse,
) -> None:
    compute(warehouse)
    refresh(warehouse)
    # D's last rejection is cancelled at the source: 1 000 owed, a small balance now
    with warehouse.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE ledger_entries SET deleted_at = loaded_at WHERE entry_ref = 'D7'")
        )
    compute(warehouse, run="r2")
    assert rows(warehouse, "balance_cents", "profile")["D"] == (1_000, "sepa_insufficient_funds")
    counts = refresh(warehouse, run="r2")
    assert (counts.created, counts.closed) == (2, 1)
    got = {row[0]: (row[2], row[4], row[5]) for row in actions(warehouse) if row[0][0] == "D"}
    assert got == {
        "D:sepa_refused:call:2026-06-30": ("phone", "closed", "profile_changed"),
        "D:sepa_insufficient_funds:sms:2026-06-30": ("sms", "open", None),
        "D:sepa_insufficient_funds:call:2026-06-30": ("phone", "open", None),
    }


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            {"profiles": [{"profile": "big", "when": {"balnce_cents": {"at_least": 1}}}]},
            "`balnce_cents` is not a tenant fact a profile can test: did you mean `balance_cents`?",
        ),
        (
            {"profiles": [{"profile": "big", "when": {"balance_cents": 100}}]},
            "`balance_cents` takes {at_least: N} and/or {at_most: N}",
        ),
        (
            {"profiles": [{"profile": "x", "when": {"reject_reason": "AM4"}}]},
            "`AM4` is not a value of `reject_reason`",
        ),
        (
            {"scenarios": {"heavy_dept": []}},
            "scenario `heavy_dept` names no profile: did you mean `heavy_debt`?",
        ),
    ],
    ids=["unknown-fact", "number-without-bounds", "unknown-code", "scenario-of-no-profile"],
)
def test_a_wrong_profile_or_scenario_is_refused_with_what_to_write(
    section: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        ArrearsSection.model_validate(section)
