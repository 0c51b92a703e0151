"""The morning report: one self-contained HTML file per landlord and day,
`$DATAFIX_HOME/reports/<landlord>/<YYYY-MM-DD>.html` (Jinja2 template in `templates/`, charts
as inline SVG: no script, no file or network fetch).

Every figure is read from the warehouse as the night's run left it (SQL aggregates; no tenant
name or other personal value is shown, only counts, amounts and references): loads and
quarantine, pushes and dead letters, arrears (balances, ageing with a 30-day trend, profiles,
due actions per channel), works orders by stage, SLA and first-time fix, and the alerts. A
section whose table the warehouse does not hold yet (an insight not computed for this
landlord, or not built in this version of the hub) says `not computed yet`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from markupsafe import Markup

from connectors.lazy import lazy_module
from pipelines.lib.datafixes import LoadedDatafix
from pipelines.lib.environment import datafix_home
from pipelines.lib.health import insight_alerts, latest_loads, quarantine_reasons
from pipelines.lib.warehouse import Warehouse
from pipelines.lib.works import WORKS_ALERTS, works_as_of, works_summary
from schemas.datafix import WorksAlerts
from schemas.tables import (
    AGEING_COLUMNS,
    CANONICAL_TABLES,
    outbox,
    prevention_actions,
    tenant_arrears,
    tenant_balances,
    works_missed_by_slot,
    works_missed_by_tenant,
    works_orders,
)

if TYPE_CHECKING:
    import jinja2
else:
    jinja2 = lazy_module("jinja2")

INVOICES = CANONICAL_TABLES["invoices"]
TEMPLATES = Path(__file__).parent / "templates"
NOT_COMPUTED = "not computed yet"
TREND_DAYS = 30

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def report_path(landlord_id: str, as_of: date) -> Path:
    """Where the landlord's report of a day is written."""
    return datafix_home() / "reports" / landlord_id / f"{as_of.isoformat()}.html"


def latest_report(landlord_id: str) -> Path | None:
    """The landlord's newest morning report on disk (its day is its name), None when none was
    ever written."""
    days = sorted((datafix_home() / "reports" / landlord_id).glob("????-??-??.html"))
    return days[-1] if days else None


# --- Inline SVG charts -------------------------------------------------------------------


def bar_chart(items: list[tuple[str, float]], *, unit: str = "", width: int = 520) -> Markup:
    """Horizontal bars, one per (label, value), labelled with the value."""
    if not items:
        return Markup("<p class='empty'>nothing to show</p>")
    top = max((value for _, value in items), default=0) or 1
    row, label_width = 24, 170
    height = row * len(items) + 8
    parts = [f"<svg width='{width}' height='{height}' role='img' viewBox='0 0 {width} {height}'>"]
    for index, (label, value) in enumerate(items):
        y = 4 + index * row
        length = int((width - label_width - 90) * value / top)
        shown = f"{value:,.0f}".replace(",", " ") + unit
        parts.append(
            f"<text x='0' y='{y + 16}' font-size='13'>{escape(label)}</text>"
            f"<rect x='{label_width}' y='{y + 3}' width='{max(length, 1)}' height='16'"
            f" fill='#3b6ea5'/>"
            f"<text x='{label_width + length + 6}' y='{y + 16}' font-size='13'>{shown}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def line_chart(points: list[tuple[date, float]], *, width: int = 520, height: int = 160) -> Markup:
    """A line over days (the 30-day trend), with its first and last values written."""
    if not points:
        return Markup("<p class='empty'>nothing to show</p>")
    values = [value for _, value in points]
    low, high = min(values), max(values)
    span = (high - low) or 1
    first_day = points[0][0]
    days = max((points[-1][0] - first_day).days, 1)
    margin = 30

    def xy(day: date, value: float) -> str:
        x = margin + (width - 2 * margin) * (day - first_day).days / days
        y = height - margin - (height - 2 * margin) * (value - low) / span
        return f"{x:.1f},{y:.1f}"

    line = " ".join(xy(day, value) for day, value in points)
    return Markup(
        f"<svg width='{width}' height='{height}' role='img'"
        f" viewBox='0 0 {width} {height}'>"
        f"<polyline fill='none' stroke='#a53b3b' stroke-width='2' points='{line}'/>"
        f"<text x='{margin}' y='{height - 8}' font-size='12'>{first_day.isoformat()}</text>"
        f"<text x='{width - margin - 70}' y='{height - 8}' font-size='12'>"
        f"{points[-1][0].isoformat()}</text>"
        f"<text x='0' y='14' font-size='12'>{euros(int(high))}</text>"
        f"<text x='0' y='{height - 24}' font-size='12'>{euros(int(low))}</text></svg>"
    )


def euros(cents: int) -> str:
    """`1 234.56 €` from integer cents (exact)."""
    value = Decimal(cents).scaleb(-2)
    return f"{value:,.2f} €".replace(",", " ")


# --- What the report reads ---------------------------------------------------------------


@dataclass
class Section:
    """One section of the report: a title, whether its data exists, and what to show."""

    title: str
    computed: bool = True
    figures: list[tuple[str, str]] = field(default_factory=list)
    charts: list[tuple[str, Markup]] = field(default_factory=list)
    tables: list[tuple[str, list[str], list[list[Any]]]] = field(default_factory=list)


def _loads(connection: sa.Connection, landlord_id: str) -> Section:
    section = Section("Loads and quarantine")
    rows = [row for _, row in sorted(latest_loads(connection, landlord_id).items())]
    if not rows:
        section.computed = False
        return section
    section.tables.append(
        (
            "Last load per entity",
            ["entity", "status", "read", "loaded", "quarantined", "finished (UTC)"],
            [[row.entity, row.status, row.read, row.loaded, row.quarantined,
              f"{row.finished_at:%Y-%m-%d %H:%M}"] for row in rows],
        )
    )  # fmt: skip
    open_rows = [
        (entity, reason, count)
        for entity, reasons in quarantine_reasons(connection, landlord_id).items()
        for reason, count in reasons
    ]
    total = sum(int(row[2]) for row in open_rows)
    section.figures.append(("Rows in quarantine (open)", str(total)))
    section.tables.append(
        ("Open quarantine by reason", ["entity", "reason", "rows"], [list(r) for r in open_rows])
    )
    return section


def _pushes(connection: sa.Connection, landlord_id: str) -> Section:
    section = Section("Pushes and dead letters")
    rows = connection.execute(
        sa.select(outbox.c.sink, outbox.c.entity, outbox.c.state, sa.func.count())
        .where(outbox.c.landlord_id == landlord_id)
        .group_by(outbox.c.sink, outbox.c.entity, outbox.c.state)
        .order_by(outbox.c.sink, outbox.c.entity, outbox.c.state)
    ).all()
    if not rows:
        section.figures.append(("Records in the outbox", "0 (nothing pushed)"))
        return section
    dead = connection.execute(
        sa.select(outbox.c.sink, outbox.c.record_key, outbox.c.last_error)
        .where(outbox.c.landlord_id == landlord_id, outbox.c.state == "dead")
        .order_by(outbox.c.sink, outbox.c.record_key)
        .limit(20)
    ).all()
    section.figures.append(("Dead letters", str(sum(r[3] for r in rows if r[2] == "dead"))))
    section.tables.append(
        (
            "Outbox per sink and state",
            ["sink", "records", "state", "count"],
            [list(r) for r in rows],
        )
    )
    section.tables.append(
        (
            "Dead letters (first 20)",
            ["sink", "record", "the peer's message"],
            [[r[0], r[1], (r[2] or "")[:200]] for r in dead],
        )
    )
    return section


def _latest(connection: sa.Connection, table: sa.Table, landlord_id: str, as_of: date) -> Any:
    if "as_of" not in table.c:
        return None
    return connection.execute(
        sa.select(sa.func.max(table.c.as_of)).where(
            table.c.landlord_id == landlord_id, table.c.as_of <= as_of
        )
    ).scalar()


def _arrears(connection: sa.Connection, landlord_id: str, as_of: date) -> list[Section]:
    balances = Section("Arrears: balances and ageing")
    b = tenant_balances
    day = _latest(connection, b, landlord_id, as_of)
    if day is None:
        balances.computed = False
    else:
        owed = sa.func.coalesce(sa.func.sum(sa.case((b.c.balance_cents > 0, b.c.balance_cents))), 0)
        tenants, in_debt, total = connection.execute(
            sa.select(sa.func.count(), sa.func.count(sa.case((b.c.balance_cents > 0, 1))), owed)
            .where(b.c.landlord_id == landlord_id, b.c.as_of == day)
        ).one()  # fmt: skip
        balances.figures += [
            ("Balances as of", day.isoformat()),
            ("Tenants", str(tenants)),
            ("Tenants in debt", str(in_debt)),
            ("Total owed", euros(int(total))),
        ]
        trend = connection.execute(
            sa.select(b.c.as_of, owed)
            .where(b.c.landlord_id == landlord_id, b.c.as_of > day - timedelta(days=TREND_DAYS),
                   b.c.as_of <= day)
            .group_by(b.c.as_of)
            .order_by(b.c.as_of)
        ).all()  # fmt: skip
        balances.charts.append(
            (f"Total owed, last {TREND_DAYS} days ({len(trend)} day(s) recorded)",
             line_chart([(row[0], float(row[1])) for row in trend]))
        )  # fmt: skip
    profiles, actions = Section("Tenant profiles"), Section("Due prevention actions")
    a = tenant_arrears
    # one row per tenant, replaced each morning (pipelines/lib/arrears.py): none, not computed
    if not connection.execute(
        sa.select(sa.func.count()).where(a.c.landlord_id == landlord_id)
    ).scalar():
        balances.figures.append(("Ageing buckets", NOT_COMPUTED))
        profiles.computed = actions.computed = False
        return [balances, profiles, actions]
    buckets = [a.c[name] for name in AGEING_COLUMNS]
    sums = connection.execute(
        sa.select(*(sa.func.coalesce(sa.func.sum(c), 0) for c in buckets)).where(
            a.c.landlord_id == landlord_id
        )
    ).one()
    balances.charts.append(
        ("Debt by age (euros)",
         bar_chart([(c.name.removesuffix("_cents"), int(v) / 100) for c, v in
                    zip(buckets, sums, strict=True)], unit=" €"))
    )  # fmt: skip
    mine = a.c.landlord_id == landlord_id
    per_bucket = connection.execute(
        sa.select(*(sa.func.count(sa.case((c > 0, 1))) for c in buckets)).where(mine)
    ).one()
    balances.tables.append(
        ("Tenants per ageing bucket", ["bucket", "tenants", "owed"],
         [[c.name.removesuffix("_cents"), int(n), euros(int(v))]
          for c, n, v in zip(buckets, per_bucket, sums, strict=True)])
    )  # fmt: skip
    plans = connection.execute(
        sa.select(a.c.plan_status, sa.func.count())
        .where(mine, a.c.plan_status.is_not(None))
        .group_by(a.c.plan_status)
        .order_by(a.c.plan_status)
    ).all()
    rejected = connection.execute(
        sa.select(sa.func.count()).where(mine, a.c.rejects_90d > 0)
    ).scalar()
    balances.figures += [
        ("Repayment plans", ", ".join(f"{status} {n}" for status, n in plans) or "none"),
        ("Tenants with a rejected direct debit (90 days)", str(rejected)),
    ]
    _count_by(connection, profiles, a.c.profile, a.c.landlord_id == landlord_id,
              "Tenants per profile")  # fmt: skip
    p = prevention_actions
    _count_by(connection, actions, p.c.channel,
              (p.c.landlord_id == landlord_id) & (p.c.status == "open"),
              "Open actions per channel")  # fmt: skip
    return [balances, profiles, actions]


def _count_by(
    connection: sa.Connection,
    section: Section,
    column: sa.Column,
    where: sa.ColumnElement[bool],
    chart: str,
) -> None:
    """A bar chart of the rows matching `where` per value of `column`, most first."""
    rows = connection.execute(
        sa.select(column, sa.func.count())
        .where(where)
        .group_by(column)
        .order_by(sa.func.count().desc(), column)
    ).all()
    section.charts.append((chart, bar_chart([(str(r[0]), int(r[1])) for r in rows])))


def _works(connection: sa.Connection, landlord_id: str) -> list[Section]:
    stages, sla = Section("Works orders by stage"), Section("SLA and first-time fix")
    day = works_as_of(connection, landlord_id)
    if day is None:
        stages.computed = sla.computed = False
        return [stages, sla]
    summary = works_summary(connection, landlord_id)
    stages.figures += [
        ("Computed for", day.isoformat()),
        ("Orders", str(summary.orders)),
        ("Open orders", str(summary.open_orders)),
    ]
    stages.charts.append(("Orders per current stage", bar_chart(list(summary.stages.items()))))
    w = works_orders
    stuck = connection.execute(
        sa.select(w.c.order_ref, w.c.current_stage, w.c.days_in_stage, w.c.contractor)
        .where(w.c.landlord_id == landlord_id, w.c.current_stage.not_in(("paid", "cancelled")))
        .order_by(w.c.days_in_stage.desc(), w.c.order_ref)
        .limit(10)
    ).all()
    stages.tables.append(
        (
            "Longest in their stage",
            ["order", "stage", "days", "contractor"],
            [list(r) for r in stuck],
        )
    )
    rate = summary.first_time_fix_rate
    delays = connection.execute(
        sa.select(sa.func.avg(w.c.commitment_lag_days), sa.func.avg(w.c.invoice_delay_days),
                  sa.func.avg(w.c.invoice_sent_delay_days))
        .where(w.c.landlord_id == landlord_id)
    ).one()  # fmt: skip

    def days(value: Any) -> str:
        return "—" if value is None else f"{float(value):.1f} days"

    i = INVOICES
    paid, paid_late = connection.execute(
        sa.select(sa.func.count(), sa.func.count(sa.case((i.c.paid_date > i.c.due_date, 1)))).where(
            i.c.landlord_id == landlord_id,
            i.c.deleted_at.is_(None),
            i.c.status == "paid",
            i.c.paid_date.is_not(None),
        )
    ).one()
    sla.figures += [
        ("First-time fix rate", "—" if rate is None else f"{rate:.0%}"),
        ("Missed appointments", str(summary.missed_appointments)),
        ("Commitment lag (mean)", days(delays[0])),
        ("Invoice delay, completion → invoice (mean)", days(delays[1])),
        ("Invoice delay, completion → Sage (mean)", days(delays[2])),
        ("Invoices paid (with their date)", str(paid)),
        ("Invoices paid after their due date", str(paid_late)),
    ]
    sla.charts.append(("GTI (time to intervene)", bar_chart(list(summary.gti.items()))))
    sla.charts.append(("GTR (time to restore)", bar_chart(list(summary.gtr.items()))))
    slots = connection.execute(
        sa.select(works_missed_by_slot.c.weekday, works_missed_by_slot.c.slot,
                  works_missed_by_slot.c.appointments, works_missed_by_slot.c.missed)
        .where(works_missed_by_slot.c.landlord_id == landlord_id, works_missed_by_slot.c.missed > 0)
        .order_by(works_missed_by_slot.c.missed.desc(), works_missed_by_slot.c.weekday)
        .limit(10)
    ).all()  # fmt: skip
    sla.tables.append(
        ("Missed appointments by weekday and slot", ["weekday", "slot", "visits", "missed"],
         [[WEEKDAYS[r[0]], r[1], r[2], r[3]] for r in slots])
    )  # fmt: skip
    households = connection.execute(
        sa.select(works_missed_by_tenant.c.household, works_missed_by_tenant.c.appointments,
                  works_missed_by_tenant.c.missed)
        .where(works_missed_by_tenant.c.landlord_id == landlord_id)
        .order_by(works_missed_by_tenant.c.missed.desc(), works_missed_by_tenant.c.household)
        .limit(10)
    ).all()  # fmt: skip
    sla.tables.append(
        ("Missed appointments per tenant (or dwelling)", ["tenant / dwelling", "visits", "missed"],
         [list(r) for r in households])
    )  # fmt: skip
    return [stages, sla]


def _alerts(connection: sa.Connection, loaded: LoadedDatafix) -> Section:
    """The alerts as their asset checks (and the landlord's health) judge them."""
    section = Section("Alerts")
    judged = insight_alerts(connection, loaded)
    if all(alerts is None for alerts in judged.values()):
        section.computed = False
        return section
    columns = ["alert", "level", "keys", "which"]
    for title, alerts in (("Works alerts", judged["works"]), ("Arrears alerts", judged["arrears"])):
        if alerts is None:
            section.figures.append((title, NOT_COMPUTED))
        else:
            rows = [[a.name, a.level, len(a.keys), a.which()] for a in alerts]
            section.tables.append((title, columns, rows))
    return section


def _alert_help() -> dict[str, str]:
    return {name: WorksAlerts.model_fields[name].description or "" for name in WORKS_ALERTS}


def build_sections(warehouse: Warehouse, loaded: LoadedDatafix, as_of: date) -> list[Section]:
    """Every section of the landlord's report, from the warehouse as it is."""
    with warehouse.engine.connect() as connection:
        landlord_id = loaded.landlord_id
        return [
            _loads(connection, landlord_id),
            _pushes(connection, landlord_id),
            *_arrears(connection, landlord_id, as_of),
            *_works(connection, landlord_id),
            _alerts(connection, loaded),
        ]


def render_report(warehouse: Warehouse, loaded: LoadedDatafix, as_of: date) -> str:
    """The report's HTML."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    template = environment.get_template("morning_report.html.j2")
    return template.render(
        landlord=loaded.datafix.landlord,
        as_of=as_of,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        sections=build_sections(warehouse, loaded, as_of),
        alert_help=_alert_help(),
        not_computed=NOT_COMPUTED,
    )


def write_report(warehouse: Warehouse, loaded: LoadedDatafix, as_of: date) -> Path:
    """Write the landlord's report of `as_of` (replacing the day's earlier one, atomically)."""
    path = report_path(loaded.landlord_id, as_of)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".html.partial")
    partial.write_text(render_report(warehouse, loaded, as_of), encoding="utf-8")
    partial.replace(path)
    return path
