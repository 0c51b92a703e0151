"""The arrears of the demo landlords against a plain pandas reference, row for row.

The demo landlords' files are loaded through the real stages (pull, normalise, load); the
reference reads the canonical tables back with `pandas.read_sql` and computes every column of
`tenant_arrears` and the actions in plain pandas, straight from the rules' meaning (credits pay
the oldest debits first; a profile is the first rule whose tests all hold), not with the hub's
SQL.
"""

from __future__ import annotations

import datetime as dt
import numbers
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from connectors.sandbox.demo_files import EXTRACTED_ON, write_demo_sources
from pipelines.lib.arrears import refresh_actions, refresh_arrears
from pipelines.lib.datafixes import load_landlord
from pipelines.lib.insight import record_tenant_balances
from pipelines.lib.stages import load, normalise, pull
from pipelines.lib.warehouse import Warehouse
from schemas.arrears import FACTS, ArrearsSection, FactKind

AS_OF = dt.date(2026, 11, 30)
BUCKETS = {
    "debt_0_30_cents": (-10_000, 30),
    "debt_31_60_cents": (31, 60),
    "debt_61_90_cents": (61, 90),
    "debt_91_180_cents": (91, 180),
    "debt_over_180_cents": (181, 10_000),
}
DEMO = ["loire-habitat", "cite-jardins"]  # the file landlords with a ledger (and plans)


@pytest.fixture
def warehouse(warehouse_url: str, hub_home: Path) -> Iterator[Warehouse]:
    write_demo_sources(hub_home, EXTRACTED_ON)  # dated for 31/10/2026: AS_OF a month on
    warehouse = Warehouse(warehouse_url)
    warehouse.migrate()
    for landlord in DEMO:
        loaded = load_landlord(landlord)
        for entity in loaded.datafix.entities:
            load(warehouse, loaded, normalise(loaded, pull(loaded, entity, warehouse=warehouse)),
                 run_id=f"load-{landlord}")  # fmt: skip
        with warehouse.engine.begin() as connection:
            settings = loaded.datafix.arrears
            record_tenant_balances(connection, landlord, AS_OF, "morning")
            refresh_arrears(connection, landlord, AS_OF, "morning", settings)
            refresh_actions(connection, landlord, AS_OF, "morning", settings)
    yield warehouse
    warehouse.dispose()


def read(warehouse: Warehouse, table: str, landlord: str) -> pd.DataFrame:
    frame = pd.read_sql(f"SELECT * FROM {table} WHERE landlord_id = '{landlord}'", warehouse.engine)
    if "deleted_at" in frame:
        frame = frame[frame["deleted_at"].isna()]
    return frame


def day(value: Any) -> dt.date | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).date()


def reference(warehouse: Warehouse, landlord: str, settings: ArrearsSection) -> pd.DataFrame:
    """tenant_arrears of `landlord`, computed in pandas from the canonical tables."""
    ledger = read(warehouse, "ledger_entries", landlord)
    ledger["entry_date"] = ledger["entry_date"].map(day)
    ledger["due_date"] = ledger["due_date"].map(day)
    ledger = ledger[ledger["entry_date"] <= AS_OF]
    tenants = read(warehouse, "tenants", landlord).set_index("tenant_ref")
    plans = read(warehouse, "repayment_plans", landlord)
    everyone = sorted(set(tenants.index) | set(ledger["tenant_ref"]))
    out = pd.DataFrame(index=pd.Index(everyone, name="tenant_ref"))
    out["balance_cents"] = ledger.groupby("tenant_ref")["amount_cents"].sum()
    out["balance_cents"] = out["balance_cents"].fillna(0).astype(int)

    # FIFO: each tenant's credits pay their debits in due-date order
    ledger["aged_on"] = ledger["due_date"].where(ledger["due_date"].notna(), ledger["entry_date"])
    debits = ledger[ledger["amount_cents"] > 0].sort_values(
        ["tenant_ref", "aged_on", "entry_date", "entry_ref"]
    )
    paid = -ledger[ledger["amount_cents"] < 0].groupby("tenant_ref")["amount_cents"].sum()
    unpaid_parts = []
    for tenant, rows in debits.groupby("tenant_ref"):
        credit = int(paid.get(tenant, 0))
        for _, debit in rows.iterrows():
            used = min(credit, int(debit["amount_cents"]))
            credit -= used
            unpaid_parts.append((tenant, debit["kind"], debit["aged_on"],
                                 int(debit["amount_cents"]) - used))  # fmt: skip
    unpaid = pd.DataFrame(unpaid_parts, columns=["tenant_ref", "kind", "aged_on", "unpaid"])
    unpaid["age"] = unpaid["aged_on"].map(lambda d: (AS_OF - d).days)
    for name, (low, high) in BUCKETS.items():
        inside = unpaid[(unpaid["age"] >= low) & (unpaid["age"] <= high)]
        out[name] = inside.groupby("tenant_ref")["unpaid"].sum()
        out[name] = out[name].fillna(0).astype(int)
    owing = unpaid[unpaid["unpaid"] > 0]
    out["oldest_unpaid_date"] = owing.groupby("tenant_ref")["aged_on"].min()

    latest = ledger.sort_values(["entry_date", "entry_ref"])

    def last_of(kind: str) -> pd.Series:
        return latest[latest["kind"] == kind].groupby("tenant_ref")["amount_cents"].last()

    rent_call, rent, charges = last_of("rent_call"), last_of("rent"), last_of("service_charges")
    monthly = {}
    for tenant in everyone:
        if tenant in rent_call:
            monthly[tenant] = int(rent_call[tenant])
        elif tenant in rent:
            monthly[tenant] = int(rent[tenant]) + int(charges.get(tenant, 0))
        elif tenant in charges:
            monthly[tenant] = int(charges[tenant])
    out["monthly_rent_cents"] = pd.Series(monthly, dtype="Int64")
    out["months_owed"] = [
        b // m if b > 0 and pd.notna(m) and m > 0 else 0
        for b, m in zip(out["balance_cents"], out["monthly_rent_cents"], strict=True)
    ]
    payments = latest[latest["kind"] == "payment"].groupby("tenant_ref").last()
    out["last_payment_date"] = payments["entry_date"]
    out["last_payment_method"] = payments["payment_method"]
    rejects = ledger[ledger["kind"] == "rejected_debit"]
    recent = rejects[rejects["entry_date"].map(lambda d: (AS_OF - d).days < 90)]
    year = rejects[rejects["entry_date"].map(lambda d: (AS_OF - d).days < 365)]
    out["rejects_90d"] = recent.groupby("tenant_ref").size()
    out["rejects_365d"] = year.groupby("tenant_ref").size()
    out[["rejects_90d", "rejects_365d"]] = out[["rejects_90d", "rejects_365d"]].fillna(0)
    order = list(FACTS["reject_reason"].choices)
    out["reject_reasons"] = (
        recent.dropna(subset=["reject_reason"])
        .groupby("tenant_ref")["reject_reason"]
        .agg(lambda codes: " ".join(sorted(set(codes), key=order.index)))
    )
    aid = ledger[(ledger["kind"] == "housing_aid")
                 & ledger["entry_date"].map(lambda d: (AS_OF - d).days < 90)]  # fmt: skip
    out["housing_aid_90d_cents"] = (
        (-aid.groupby("tenant_ref")["amount_cents"].sum()).reindex(out.index).fillna(0).astype(int)
    )

    plans["start_date"] = plans["start_date"].map(day)
    plans = plans[plans["start_date"] <= AS_OF].sort_values(["start_date", "plan_ref"])
    plan = plans.groupby("tenant_ref").last()
    out["plan_ref"] = plan["plan_ref"]
    missed = {}
    for tenant, row in plan.iterrows():
        mine = unpaid[(unpaid["tenant_ref"] == tenant) & (unpaid["kind"] == "plan_instalment")]
        instalments = mine[(mine["aged_on"] >= row["start_date"]) & (mine["aged_on"] < AS_OF)
                           & (mine["unpaid"] > 0)]  # fmt: skip
        missed[tenant] = len(instalments)
    out["plan_missed"] = pd.Series(missed).reindex(out.index).fillna(0).astype(int)

    def plan_status(tenant: str) -> str | None:
        if tenant not in plan.index:
            return None
        source, count = plan.loc[tenant, "status"], out.loc[tenant, "plan_missed"]
        if source == "completed":
            return "completed"
        if source == "broken" or count >= settings.plan_broken_after:
            return "broken"
        return "late" if count >= 1 else "on_track"

    out["plan_status"] = [plan_status(t) for t in out.index]
    # the history holds only this morning: one day in debt for those who owe
    out["debt_days_90d"] = [
        1 if b > 0 and t in set(ledger["tenant_ref"]) else 0
        for t, b in zip(out.index, out["balance_cents"], strict=True)
    ]

    facts = out.join(tenants.rename(columns={"status": "lease_status"}))
    facts["overdue_cents"] = sum(facts[name] for name in list(BUCKETS)[1:])
    facts["plan_status"] = facts["plan_status"].fillna("none")
    dated = {"tenancy_days": "move_in_date", "debt_age_days": "oldest_unpaid_date",
             "days_since_payment": "last_payment_date"}  # fmt: skip
    for fact, column in dated.items():
        facts[fact] = facts[column].map(lambda d: None if day(d) is None else (AS_OF - day(d)).days)
    profiles = pd.Series(None, index=facts.index, dtype=object)
    rules = pd.Series(None, index=facts.index, dtype=object)
    for number, rule in enumerate(settings.rules(), start=1):
        holds = pd.Series(True, index=facts.index)
        for name, test in rule.when.items():
            kind = FACTS[name].kind
            values = facts[name] if name != "reject_reason" else facts["reject_reasons"]
            if kind in (FactKind.NUMBER, FactKind.DAYS):
                numbers = pd.to_numeric(values)
                if "at_least" in test:
                    holds &= numbers.ge(test["at_least"]).fillna(False).astype(bool)
                if "at_most" in test:
                    holds &= numbers.le(test["at_most"]).fillna(False).astype(bool)
            elif kind is FactKind.BOOLEAN:
                holds &= values.map(
                    lambda v, t=test: v is not None and not pd.isna(v) and bool(v) == t
                )
            elif kind is FactKind.REASON:
                holds &= values.map(lambda v, t=test: isinstance(v, str) and any(c in v for c in t))
            else:
                holds &= values.isin(test)
        free = holds & profiles.isna()
        profiles[free] = rule.profile
        rules[free] = f"{number}: {rule.rule_text()}"
    out["profile"] = profiles.fillna("unprofiled")
    out["profile_rule"] = rules.fillna("no rule holds")
    return out.reset_index()


COLUMNS = ["tenant_ref", "balance_cents", *BUCKETS, "oldest_unpaid_date", "monthly_rent_cents",
           "months_owed", "last_payment_date", "last_payment_method", "rejects_90d",
           "rejects_365d", "reject_reasons", "housing_aid_90d_cents", "plan_ref", "plan_status",
           "plan_missed", "debt_days_90d", "profile", "profile_rule"]  # fmt: skip


DATES = ("oldest_unpaid_date", "last_payment_date")


def records(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    def plain(column: str, value: Any) -> Any:
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            return None
        if column in DATES:  # SQLite hands dates back as text
            return day(value)
        if isinstance(value, numbers.Integral | float) and not isinstance(value, bool):
            return int(value)
        return value

    ordered = frame.sort_values("tenant_ref")[COLUMNS]
    return [
        tuple(plain(c, v) for c, v in zip(COLUMNS, row, strict=True))
        for row in ordered.itertuples(index=False, name=None)
    ]


def test_the_demo_landlords_arrears_and_actions_equal_a_pandas_reference(
    warehouse: Warehouse,
) -> None:
    # one test for both landlords and both tables: loading the demo is the costly part
    for landlord in DEMO:
        tenant_arrears_equal_the_reference(warehouse, landlord)
        actions_equal_the_scenarios_of_the_indebted_tenants(warehouse, landlord)


def tenant_arrears_equal_the_reference(warehouse: Warehouse, landlord: str) -> None:
    settings = load_landlord(landlord).datafix.arrears
    stored = read(warehouse, "tenant_arrears", landlord)
    expected = reference(warehouse, landlord, settings)
    assert len(stored) == len(expected) > 100
    assert records(stored) == records(expected)
    # the demo shows each part: debts in every bucket, rejections, aid and profiles
    owing = expected[expected["balance_cents"] > 0]
    assert len(owing) > 5
    assert expected["profile"].nunique() > 5


def actions_equal_the_scenarios_of_the_indebted_tenants(
    warehouse: Warehouse, landlord: str
) -> None:
    settings = load_landlord(landlord).datafix.arrears
    arrears = read(warehouse, "tenant_arrears", landlord)
    tenants = read(warehouse, "tenants", landlord).set_index("tenant_ref")
    expected = []
    for _, row in arrears[arrears["balance_cents"] > 0].iterrows():
        for step in settings.scenario_steps().get(row["profile"], []):
            preferred = tenants["preferred_channel"].get(row["tenant_ref"])
            channel = step.channel
            if channel == "preferred":
                channel = preferred if isinstance(preferred, str) else step.fallback
            key = f"{row['tenant_ref']}:{row['profile']}:{step.step}:{AS_OF}"
            expected.append((key, channel, AS_OF + dt.timedelta(days=step.after_days), "open"))
    actions = read(warehouse, "prevention_actions", landlord)
    stored = [
        (row.action_key, row.channel, day(row.due_date), row.status) for row in actions.itertuples()
    ]
    assert sorted(stored) == sorted(expected)
    assert len(expected) > 5
