"""The morning report (`pipelines.lib.report`), opened in headless Chromium (Debian's
`chromium`, installed by `.ci/system-deps.sh`): a screenshot is taken, and the page's text as
Chromium renders it (`--dump-dom`) holds every section with the figures the hand-made data
gives (worked out in `test_works.py`), and `not computed yet` where the arrears tables of
points 1-3 are missing. On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import struct
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from pipelines.lib.datafixes import LoadedDatafix, load_datafix
from pipelines.lib.report import NOT_COMPUTED, build_sections, report_path, write_report
from pipelines.lib.works import refresh_works
from schemas.tables import (
    AGEING_COLUMNS,
    load_runs,
    prevention_actions,
    tenant_arrears,
    tenant_balances,
)
from tests.pipelines.lib.helpers import migrated_warehouse, write_datafix
from tests.pipelines.lib.test_works import AS_OF, LANDLORD, write_works

SECTIONS = (
    "Loads and quarantine",
    "Pushes and dead letters",
    "Arrears: balances and ageing",
    "Tenant profiles",
    "Due prevention actions",
    "Works orders by stage",
    "SLA and first-time fix",
    "Alerts",
)


def works_datafix(folder: Path, **sections: Any) -> LoadedDatafix:
    """The landlord's datafix: its works orders from a CSV, plus `sections` (`works=...`)."""
    document = {
        "landlord": {"id": LANDLORD, "name": "Opale Logement"},
        "sources": {"works": {"kind": "csv", "path": "works.csv"}},
        "entities": {"work_orders": {"source": "works", "fields": {
            "order_ref": "BT", "category": "Type", "status": "Statut",
            "ordered_date": "Commandé le"}}},
        **sections,
    }  # fmt: skip
    return load_datafix(write_datafix(folder, document))


def chromium() -> str:
    found = shutil.which("chromium")
    assert found, "Debian's chromium is not installed: run `make system-deps` (.ci/system-deps.sh)"
    return found


@pytest.fixture
def report(warehouse_url: str, tmp_path: Path) -> Iterator[Path]:
    """The hand-made works, three days of balances and one load, reported for AS_OF."""
    for warehouse in migrated_warehouse(warehouse_url):
        write_works(warehouse)
        with warehouse.engine.begin() as connection:
            refresh_works(connection, LANDLORD, AS_OF, "insight-run", first_time_fix_days=5)
            connection.execute(
                tenant_balances.insert(),
                [
                    {"landlord_id": LANDLORD, "tenant_ref": tenant, "as_of": day,
                     "balance_cents": cents, "run_id": "r"}
                    for day, tenant, cents in [
                        (dt.date(2026, 3, 8), "T1", 10_000), (dt.date(2026, 3, 9), "T1", 15_000),
                        (dt.date(2026, 3, 10), "T1", 20_000), (dt.date(2026, 3, 10), "T2", -5_000),
                        (dt.date(2026, 3, 10), "T3", 12_345),
                    ]
                ],
            )  # fmt: skip
            connection.execute(
                load_runs.insert().values(
                    run_id="load-1", landlord_id=LANDLORD, entity="work_orders",
                    source_name="works", status="loaded", rows_in_source=9, skipped=0, read=9,
                    loaded=9, inserted=9, updated=0, unchanged=0, deleted=0, quarantined=0,
                    fingerprint="0" * 64, datafix_sha="0" * 64,
                    finished_at=dt.datetime(2026, 3, 10, 2, 0, tzinfo=dt.UTC),
                )
            )  # fmt: skip
        loaded = works_datafix(
            tmp_path, works={"alerts": {"completion_not_invoiced": {"warn_after_days": 6}}}
        )
        yield write_report(warehouse, loaded, AS_OF)


class Text(HTMLParser):
    """The page's visible text, one string (Chromium's DOM after rendering)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self.hidden += tag in ("style", "title")

    def handle_endtag(self, tag: str) -> None:
        self.hidden -= tag in ("style", "title")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)

    def text(self) -> str:
        return re.sub(r"\s+", " ", " ".join(self.parts))


def sections_of(text: str) -> dict[str, str]:
    """Each section's text, from its title to the next one."""
    places = sorted((text.index(title), title) for title in SECTIONS)
    ends = [place for place, _ in places[1:]] + [len(text)]
    return {title: text[start:end] for (start, title), end in zip(places, ends, strict=True)}


def test_the_report_opens_in_headless_chromium_with_every_section(
    report: Path, tmp_path: Path
) -> None:
    assert report == report_path(LANDLORD, AS_OF)
    assert report.parent.name == LANDLORD and report.name == "2026-03-10.html"
    html = report.read_text(encoding="utf-8")
    # self-contained: nothing fetched, no script
    assert not re.search(r"<script|<link|src=|@import|https?://", html), "the report fetches"
    screenshot = tmp_path / "report.png"
    shot = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--screenshot={screenshot}", "--window-size=1200,2600", report.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert shot.returncode == 0, shot.stderr
    assert "Uncaught" not in shot.stderr
    png = screenshot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (1200, 2600)  # the IHDR's width and height
    assert len(png) > 20_000  # text and charts drawn, not a blank page
    dom = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", report.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    assert dom.count("<svg") == 4  # the 30-day trend, stage, GTI and GTR charts, inline
    parser = Text()
    parser.feed(dom)
    sections = sections_of(parser.text())
    assert set(sections) == set(SECTIONS)

    assert "work_orders loaded 9 9 0" in sections["Loads and quarantine"]
    pushes = sections["Pushes and dead letters"]
    assert "Dead letters 0" in pushes
    assert "erp commitments sent 1 sage invoices sent 1" in pushes
    arrears = sections["Arrears: balances and ageing"]
    # 10 March: T1 owes 200.00, T3 123.45, T2 is in credit: 323.45 owed by 2 of 3 tenants
    assert "Tenants 3 Tenants in debt 2 Total owed 323.45 €" in arrears
    assert "last 30 days (3 day(s) recorded)" in arrears
    assert f"Ageing buckets {NOT_COMPUTED}" in arrears
    assert sections["Tenant profiles"].strip() == f"Tenant profiles {NOT_COMPUTED}"
    assert sections["Due prevention actions"].strip() == f"Due prevention actions {NOT_COMPUTED}"
    stages = sections["Works orders by stage"]
    assert "Orders 8" in stages
    for stage, count in [("ordered", 2), ("invoiced", 1), ("signed", 1), ("paid", 1),
                         ("cancelled", 1), ("completed", 1), ("quote_accepted", 1)]:  # fmt: skip
        assert f"{stage} {count}" in stages, stage
    sla = sections["SLA and first-time fix"]
    assert "First-time fix rate 50%" in sla
    assert "Missed appointments 1" in sla
    assert "Commitment lag (mean) 3.0 days" in sla
    assert "completion → invoice (mean) 4.0 days" in sla  # BT1 3 days, BT6 5 days
    assert "Mon 14-16 1 1" in sla
    assert "T2 2 1" in sla
    alerts = sections["Alerts"]
    assert f"Arrears alerts {NOT_COMPUTED}" in alerts
    assert "orders_past_gtr warning 1 BT4 (3 d)" in alerts  # defaults: warn from 0, error from 7
    assert "invoice_without_order error 1 F9 (4 d)" in alerts
    # warn from 6 days (the datafix), never an error: BT3 (7 days) listed, BT2 (5) not
    assert "completion_not_invoiced warning 1 BT3 (7 d)" in alerts
    # the datafix pushes no commitment: the alert has nothing to say
    assert "commitment_not_sent ok 0" in alerts
    assert "BT4 ordered 4 Plomberie des Dunes" in stages  # longest in its stage: the contractor


def arrears_row(tenant: str, profile: str, **cents: int) -> dict[str, object]:
    """A `tenant_arrears` row as pipelines.lib.arrears stores it; unlisted buckets are 0."""
    buckets = {name: cents.get(name, 0) for name in AGEING_COLUMNS}
    return {
        "landlord_id": LANDLORD, "tenant_ref": tenant, "as_of": AS_OF,
        "balance_cents": sum(buckets.values()), **buckets, "months_owed": 0, "rejects_90d": 0,
        "rejects_365d": 0, "plan_missed": 0, "housing_aid_90d_cents": 0, "debt_days_90d": 0,
        "profile": profile, "profile_rule": "test", "run_id": "r",
    }  # fmt: skip


def action_row(key: str, tenant: str, channel: str, status: str) -> dict[str, object]:
    return {
        "landlord_id": LANDLORD, "action_key": key, "tenant_ref": tenant, "profile": "p",
        "step": "s", "action": "call", "channel": channel, "template": "t", "opened_on": AS_OF,
        "due_date": AS_OF, "balance_cents": 1, "status": status, "run_id": "r",
    }  # fmt: skip


def bars(chart: str) -> dict[str, str]:
    """A bar chart's labels and the values written beside their bars."""
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", str(chart))
    return dict(zip(texts[::2], texts[1::2], strict=True))


def test_the_arrears_sections_read_the_arrears_tables(warehouse_url: str, tmp_path: Path) -> None:
    for warehouse in migrated_warehouse(warehouse_url):
        with warehouse.engine.begin() as connection:
            connection.execute(
                tenant_arrears.insert(),
                [
                    arrears_row("T1", "first_incident", debt_0_30_cents=12_000),
                    arrears_row("T2", "chronic", debt_31_60_cents=30_000,
                                debt_over_180_cents=600_000),
                    arrears_row("T3", "chronic", debt_0_30_cents=5_000),
                ],
            )  # fmt: skip
            connection.execute(
                prevention_actions.insert(),
                [
                    action_row("a1", "T1", "sms", "open"),
                    action_row("a2", "T2", "letter", "open"),
                    action_row("a3", "T3", "sms", "open"),
                    action_row("a4", "T3", "email", "closed"),  # closed: not due
                ],
            )
        loaded = works_datafix(tmp_path)
        sections = {s.title: s for s in build_sections(warehouse, loaded, AS_OF)}
    [(_, ageing)] = [c for c in sections["Arrears: balances and ageing"].charts if "age" in c[0]]
    # 0-30: 120.00 + 50.00; 31-60: 300.00; over 180: 6,000.00
    assert bars(ageing) == {
        "debt_0_30": "170 €", "debt_31_60": "300 €", "debt_61_90": "0 €", "debt_91_180": "0 €",
        "debt_over_180": "6 000 €",
    }  # fmt: skip
    [(_, profiles)] = sections["Tenant profiles"].charts
    assert bars(profiles) == {"chronic": "2", "first_incident": "1"}
    [(_, channels)] = sections["Due prevention actions"].charts
    assert bars(channels) == {"sms": "2", "letter": "1"}  # the closed e-mail is not due
    alerts = sections["Alerts"]
    [(_, _, rows)] = [t for t in alerts.tables if t[0] == "Arrears alerts"]
    # T2 owes 6,300.00 with no earlier day: crossed 1,500.00 (warn) and 5,000.00 (error)
    assert rows[0] == ["debt_crossed_threshold", "error", 1, "T2"]
    assert rows[1] == ["plans_broken_this_week", "ok", 0, ""]
