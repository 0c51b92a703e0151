"""Works tracking, computed in the warehouse: set-based SQL (SQLAlchemy Core), the same
statements on SQLite and PostgreSQL, no Python loop over orders.

`refresh_works` replaces the landlord's four works tables (`schemas.tables`) in one transaction:
- `works_timeline`: every order's events up to the end of the as-of day (Paris), from the
  canonical tables (orders, quotes, commitments, completions, invoices) and the push outbox (a
  commitment or an invoice delivered);
- `works_orders`: per order, the current stage (its furthest event) and days in it, GTI and GTR
  met / missed / pending, first-time fix, commitment lag and invoice delays;
- `works_missed_by_tenant` and `works_missed_by_slot`: missed appointments per household and
  per weekday and two-hour slot.

Time rules (written once here, the tests and the datafix reference repeat them):
- instants are compared as epoch seconds (`epoch_seconds`, compiled per dialect); a date-only
  value (an order's `ordered_date`, a `done_date`) is the start of that day in Paris;
- a visit is a completion report: tenant present (`completed`) or absent (`tenant_absent`);
  GTI runs from the order to the first visit (a missed appointment is an intervention on time:
  the contractor came); GTR runs from the order to the first visit with the tenant present (or
  the order's `done_date` without a report), less the excused time: from each missed
  appointment before restoration to the next visit (or to the end of the as-of day);
- an open order is `pending` until its term has run out, `missed` after; an order without a
  term is `no_term`; a cancelled order is never judged (`no_term`);
- first-time fix: restored at one visit and no new order (not cancelled) for the same dwelling
  and category within `window_days` after restoration; unknown (NULL) until the window closes.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import FunctionElement

from pipelines.lib.insight import analyse, load_version
from schemas.datafix import WorksAlert
from schemas.tables import (
    CANONICAL_TABLES,
    WORKS_EVENTS,
    outbox,
    works_missed_by_slot,
    works_missed_by_tenant,
    works_orders,
    works_timeline,
)

PARIS = ZoneInfo("Europe/Paris")
# the canonical tables the works tables are computed from
WORKS_INPUTS = ("work_orders", "quotes", "commitments", "completions", "invoices")
DAY = 86_400
HOUR = 3_600

ORDERS = CANONICAL_TABLES["work_orders"]
QUOTES = CANONICAL_TABLES["quotes"]
COMMITMENTS = CANONICAL_TABLES["commitments"]
COMPLETIONS = CANONICAL_TABLES["completions"]
INVOICES = CANONICAL_TABLES["invoices"]

RANKS: dict[str, int] = {event: rank for rank, event in enumerate(WORKS_EVENTS, start=1)}
VISITS = ("completed", "tenant_absent")
# a visit's two-hour slot (Paris time), by the hour it starts
SLOTS: dict[int, str] = {hour: f"{hour:02d}-{hour + 2:02d}" for hour in range(0, 24, 2)}
# invoice statuses that mean an invoice was really issued (a draft is not; a cancelled one
# no longer counts)
ISSUED_INVOICES = ("issued", "paid")


# --- Portable time arithmetic ------------------------------------------------------------


class epoch_seconds(FunctionElement):
    """Seconds since 1970-01-01 UTC of a date (its midnight, UTC) or a timestamp stored in UTC,
    as an integer: `julianday` on SQLite (which stores timestamps as UTC text), `EXTRACT(EPOCH)`
    on PostgreSQL."""

    type = sa.BigInteger()
    inherit_cache = True
    name = "epoch_seconds"


@compiles(epoch_seconds, "sqlite")
def _epoch_sqlite(element: epoch_seconds, compiler: SQLCompiler, **kw: object) -> str:
    value = compiler.process(element.clauses, **kw)
    return f"CAST(ROUND((julianday({value}) - 2440587.5) * 86400) AS INTEGER)"


@compiles(epoch_seconds)
def _epoch_default(element: epoch_seconds, compiler: SQLCompiler, **kw: object) -> str:
    return f"CAST(EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)}) AS BIGINT)"


class utc_timestamp(FunctionElement):
    """The UTC timestamp of an epoch-seconds integer."""

    type = sa.DateTime(timezone=True)
    inherit_cache = True
    name = "utc_timestamp"


@compiles(utc_timestamp, "sqlite")
def _timestamp_sqlite(element: utc_timestamp, compiler: SQLCompiler, **kw: object) -> str:
    return f"datetime({compiler.process(element.clauses, **kw)}, 'unixepoch')"


@compiles(utc_timestamp)
def _timestamp_default(element: utc_timestamp, compiler: SQLCompiler, **kw: object) -> str:
    return f"to_timestamp({compiler.process(element.clauses, **kw)})"


class epoch_day_date(FunctionElement):
    """The date of a day number (days since 1970-01-01)."""

    type = sa.Date()
    inherit_cache = True
    name = "epoch_day_date"


@compiles(epoch_day_date, "sqlite")
def _day_sqlite(element: epoch_day_date, compiler: SQLCompiler, **kw: object) -> str:
    return f"date(({compiler.process(element.clauses, **kw)}) * 86400, 'unixepoch')"


@compiles(epoch_day_date)
def _day_default(element: epoch_day_date, compiler: SQLCompiler, **kw: object) -> str:
    return f"(DATE '1970-01-01' + CAST({compiler.process(element.clauses, **kw)} AS INTEGER))"


def _summer_spans(first: int = 2000, last: int = 2060) -> list[tuple[int, int]]:
    """Europe/Paris summer time as (start, end) epoch seconds: from the last Sunday of March to
    the last Sunday of October, 01:00 UTC (the EU rule since 1996; `test_works` checks it
    against the zoneinfo database hour by hour over a year)."""

    def last_sunday(year: int, month: int) -> int:
        day = date(year, month, 31)
        day -= timedelta(days=(day.weekday() + 1) % 7)
        return int(datetime.combine(day, time(1), UTC).timestamp())

    return [(last_sunday(year, 3), last_sunday(year, 10)) for year in range(first, last + 1)]


SUMMER_SPANS = _summer_spans()


def paris_offset(epoch: sa.ColumnElement) -> sa.ColumnElement:
    """Paris's offset from UTC, in seconds, at an epoch-seconds instant (one CASE over the
    summer-time spans: the same SQL everywhere, no time-zone database in the server)."""
    summer = sa.or_(*(sa.and_(epoch >= start, epoch < end) for start, end in SUMMER_SPANS))
    return sa.case((summer, 2 * HOUR), else_=HOUR)


def paris_day(epoch: sa.ColumnElement) -> sa.ColumnElement:
    """The Paris day number (days since 1970-01-01) of an epoch-seconds instant."""
    return (epoch + paris_offset(epoch)) // DAY


def day_number(day: date) -> int:
    """The day number of a date (days since 1970-01-01)."""
    return (day - date(1970, 1, 1)).days


def day_end(as_of: date) -> int:
    """Epoch seconds of the end of the as-of day in Paris (the next day's midnight)."""
    return int(datetime.combine(as_of + timedelta(days=1), time(0), PARIS).timestamp())


# --- The timeline ------------------------------------------------------------------------


@dataclass(frozen=True)
class WorksSummary:
    """The landlord's works figures of one computation (from the stored tables)."""

    orders: int
    open_orders: int
    events: int
    stages: dict[str, int]
    gti: dict[str, int]
    gtr: dict[str, int]
    first_time_fix_rate: float | None
    missed_appointments: int
    median_invoice_delay_days: float | None


def _live(table: sa.Table, landlord_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(table.c.landlord_id == landlord_id, table.c.deleted_at.is_(None))


def _event(
    order_ref: sa.ColumnElement,
    event: str,
    reference: sa.ColumnElement,
    utc: sa.ColumnElement,
    *,
    is_date: bool | sa.ColumnElement,
) -> list[sa.ColumnElement]:
    """One event's columns: `utc` in epoch seconds; `is_date` 1 when it is a date's midnight
    UTC (placed at the start of its Paris day by the caller)."""
    if isinstance(is_date, bool):
        is_date = sa.literal(1 if is_date else 0, sa.Integer())
    return [
        order_ref.label("order_ref"),
        sa.literal(event, sa.String(32)).label("event"),
        sa.cast(reference, sa.String(128)).label("reference"),
        sa.cast(utc, sa.BigInteger()).label("utc"),
        is_date.label("is_date"),
    ]


def _timeline_events(landlord_id: str) -> sa.CTE:
    """Every event of the landlord's live orders: (order_ref, event, reference, at) with `at`
    in epoch seconds (a date-only event at the start of its Paris day)."""
    o, q, c, v, i = ORDERS, QUOTES, COMMITMENTS, COMPLETIONS, INVOICES
    present = sa.or_(v.c.tenant_absent.is_(None), v.c.tenant_absent.is_(False))
    live_order = sa.and_(_live(o, landlord_id))
    sent = sa.and_(outbox.c.landlord_id == landlord_id, outbox.c.sent_at.is_not(None))
    any_present = (
        sa.select(v.c.completion_ref)
        .where(_live(v, landlord_id), v.c.order_ref == o.c.order_ref, present)
        .exists()
    )

    def visit(event: str, condition: sa.ColumnElement[bool]) -> sa.Select:
        """An event of each live completion report meeting `condition`, at its instant."""
        at = epoch_seconds(v.c.completed_at)
        return sa.select(
            *_event(v.c.order_ref, event, v.c.completion_ref, at, is_date=False)
        ).where(_live(v, landlord_id), condition)

    selects = [
        sa.select(
            *_event(
                o.c.order_ref,
                "ordered",
                o.c.order_ref,
                sa.func.coalesce(epoch_seconds(o.c.ordered_at), epoch_seconds(o.c.ordered_date)),
                is_date=sa.case((o.c.ordered_at.is_(None), 1), else_=0),
            )
        ).where(live_order),
        sa.select(
            *_event(
                q.c.order_ref,
                "quote_sent",
                q.c.quote_ref,
                epoch_seconds(q.c.issued_date),
                is_date=True,
            )
        ).where(
            _live(q, landlord_id),
            q.c.status.in_(("sent", "accepted", "refused")),
            q.c.issued_date.is_not(None),
        ),
        sa.select(
            *_event(
                q.c.order_ref,
                "quote_accepted",
                q.c.quote_ref,
                epoch_seconds(q.c.accepted_date),
                is_date=True,
            )
        ).where(_live(q, landlord_id), q.c.status == "accepted", q.c.accepted_date.is_not(None)),
        sa.select(
            *_event(
                c.c.order_ref,
                "commitment_raised",
                c.c.commitment_ref,
                epoch_seconds(c.c.committed_date),
                is_date=True,
            )
        ).where(_live(c, landlord_id), c.c.status != "cancelled"),
        sa.select(
            *_event(
                outbox.c.record_key,
                "commitment_sent",
                outbox.c.sink,
                epoch_seconds(outbox.c.sent_at),
                is_date=False,
            )
        ).where(sent, outbox.c.entity == "commitments"),
        sa.select(
            *_event(
                o.c.order_ref,
                "appointment",
                o.c.order_ref,
                epoch_seconds(o.c.planned_date),
                is_date=True,
            )
        ).where(live_order, o.c.planned_date.is_not(None)),
        visit("tenant_absent", v.c.tenant_absent.is_(True)),
        visit("completed", present),
        # an order done by its date, with no report of a visit with the tenant present
        sa.select(
            *_event(
                o.c.order_ref,
                "completed",
                o.c.order_ref,
                epoch_seconds(o.c.done_date),
                is_date=True,
            )
        ).where(live_order, o.c.done_date.is_not(None), ~any_present),
        visit("signed", v.c.tenant_signed.is_(True)),
        sa.select(
            *_event(
                i.c.order_ref,
                "invoiced",
                i.c.invoice_ref,
                epoch_seconds(i.c.issued_date),
                is_date=True,
            )
        ).where(_live(i, landlord_id), i.c.status.in_(ISSUED_INVOICES)),
        sa.select(
            *_event(
                i.c.order_ref,
                "invoice_sent",
                i.c.invoice_ref + "@" + outbox.c.sink,
                epoch_seconds(outbox.c.sent_at),
                is_date=False,
            )
        )
        .join_from(i, outbox, sa.and_(outbox.c.record_key == i.c.invoice_ref, sent))
        .where(_live(i, landlord_id), outbox.c.entity == "invoices"),
        sa.select(
            *_event(
                i.c.order_ref, "paid", i.c.invoice_ref, epoch_seconds(i.c.paid_date), is_date=True
            )
        ).where(_live(i, landlord_id), i.c.status == "paid", i.c.paid_date.is_not(None)),
    ]
    # MATERIALIZED (SQLite and PostgreSQL): computed once, then read. Flattened, each use of
    # `at` below repeated the whole expression (about 120 times, through paris_offset) inside
    # each other use: 7 s of CPU for 12,000 events instead of 0.1 s
    raw = sa.union_all(*selects).cte("raw_events").prefix_with("MATERIALIZED")
    # a date-only event starts at its Paris midnight: midnight UTC less Paris's offset then
    at = raw.c.utc - raw.c.is_date * paris_offset(raw.c.utc)
    placed = sa.select(raw.c.order_ref, raw.c.event, raw.c.reference, at.label("at")).subquery(
        "placed_events"
    )
    # only the events of the landlord's live orders (an outbox row outlives its order)
    return (
        sa.select(placed)
        .join_from(placed, o, sa.and_(o.c.order_ref == placed.c.order_ref, live_order))
        .cte("events")
        .prefix_with("MATERIALIZED")
    )


def _record_timeline(connection: sa.Connection, landlord_id: str, as_of: date, run_id: str) -> None:
    events = _timeline_events(landlord_id)
    rank = sa.case(RANKS, value=events.c.event)
    select = sa.select(
        sa.literal(landlord_id, ORDERS.c.landlord_id.type),
        events.c.order_ref,
        events.c.event,
        events.c.reference,
        rank,
        utc_timestamp(events.c.at),
        epoch_day_date(paris_day(events.c.at)),
        sa.literal(as_of, sa.Date()),
        sa.literal(run_id, works_timeline.c.run_id.type),
    ).where(events.c.at < day_end(as_of))
    columns = ["landlord_id", "order_ref", "event", "reference", "stage_rank", "event_at",
               "event_date", "as_of", "run_id"]  # fmt: skip
    connection.execute(works_timeline.insert().from_select(columns, select))


# --- Per order ---------------------------------------------------------------------------


def _hours(seconds: sa.ColumnElement) -> sa.ColumnElement:
    return sa.cast(seconds, sa.Float()) / HOUR


def _sla_status(
    term_hours: sa.ColumnElement,
    elapsed: sa.ColumnElement,
    reached: sa.ColumnElement,
    cancelled: sa.ColumnElement,
) -> sa.ColumnElement:
    """met / missed / pending / no_term, with `elapsed` seconds so far (to the event or to the
    end of the as-of day)."""
    return sa.case(
        (sa.or_(term_hours.is_(None), cancelled), "no_term"),
        (elapsed > term_hours * HOUR, "missed"),
        (reached, "met"),
        else_="pending",
    )


def _record_orders(
    connection: sa.Connection, landlord_id: str, as_of: date, run_id: str, window_days: int
) -> None:
    t, o = works_timeline, ORDERS
    at = epoch_seconds(t.c.event_at)
    mine = t.c.landlord_id == landlord_id
    now = day_end(as_of)
    today = day_number(as_of)

    def first(event: str | tuple[str, ...], value: sa.ColumnElement = at) -> sa.ColumnElement:
        events = (event,) if isinstance(event, str) else event
        return sa.func.min(sa.case((t.c.event.in_(events), value)))

    def count(event: str) -> sa.ColumnElement:
        return sa.func.sum(sa.case((t.c.event == event, 1), else_=0))

    day = epoch_seconds(t.c.event_date) // DAY
    per_order = (
        sa.select(
            t.c.order_ref,
            sa.func.max(t.c.stage_rank).label("top_rank"),
            first("ordered").label("started"),
            first(VISITS).label("first_visit"),
            first("completed").label("restored"),
            first("completed", day).label("restored_day"),
            count("completed").label("visits"),
            count("tenant_absent").label("absences"),
            sa.func.max(sa.case((t.c.event == "quote_accepted", day))).label("accepted_day"),
            sa.func.max(sa.case((t.c.event == "commitment_sent", day))).label("sent_day"),
            first("invoiced", day).label("invoiced_day"),
            first("invoice_sent", day).label("invoice_sent_day"),
        )
        .where(mine)
        .group_by(t.c.order_ref)
        .cte("per_order")
        .prefix_with("MATERIALIZED")  # read three times below: computed once
    )
    # the current stage: the furthest event, since the last time it happened
    stage = (
        sa.select(
            t.c.order_ref,
            t.c.event.label("stage"),
            sa.func.max(t.c.event_date).label("stage_date"),
        )
        .join_from(
            t,
            per_order,
            sa.and_(per_order.c.order_ref == t.c.order_ref, per_order.c.top_rank == t.c.stage_rank),
        )
        .where(mine)
        .group_by(t.c.order_ref, t.c.event)
        .subquery("stage")
    )
    # excused time: from each missed appointment before restoration to the next visit
    absent, visit = t.alias("absent"), t.alias("visit")
    fixed = t.alias("fixed")
    restored_at = (
        sa.select(sa.func.min(epoch_seconds(fixed.c.event_at)))
        .where(
            fixed.c.landlord_id == landlord_id,
            fixed.c.order_ref == absent.c.order_ref,
            fixed.c.event == "completed",
        )
        .correlate(absent)
        .scalar_subquery()
    )
    gaps = (
        sa.select(
            absent.c.order_ref,
            absent.c.reference,
            epoch_seconds(absent.c.event_at).label("missed_at"),
            sa.func.coalesce(sa.func.min(epoch_seconds(visit.c.event_at)), now).label("next_at"),
        )
        .join_from(
            absent,
            visit,
            sa.and_(
                visit.c.landlord_id == landlord_id,
                visit.c.order_ref == absent.c.order_ref,
                visit.c.event.in_(VISITS),
                epoch_seconds(visit.c.event_at) > epoch_seconds(absent.c.event_at),
            ),
            isouter=True,
        )
        .where(absent.c.landlord_id == landlord_id, absent.c.event == "tenant_absent")
        .where(sa.or_(restored_at.is_(None), epoch_seconds(absent.c.event_at) < restored_at))
        .group_by(absent.c.order_ref, absent.c.reference, absent.c.event_at)
        .subquery("gaps")
    )
    excused = (
        sa.select(gaps.c.order_ref, sa.func.sum(gaps.c.next_at - gaps.c.missed_at).label("secs"))
        .group_by(gaps.c.order_ref)
        .subquery("excused")
    )
    # a repeat: another live, not cancelled order for the same dwelling and category, placed
    # after the restoration and within the window
    repeat, again = o.alias("repeat_of"), o.alias("again")
    again_start = sa.func.coalesce(
        epoch_seconds(again.c.ordered_at),
        epoch_seconds(again.c.ordered_date) - paris_offset(epoch_seconds(again.c.ordered_date)),
    )
    # each candidate order's start computed once (MATERIALIZED): joined on the dwelling and
    # category, the planner can index it; computed in the join, the start (a CASE over the
    # summer-time spans) was evaluated for every pair of orders
    starts = (
        sa.select(
            again.c.order_ref, again.c.dwelling_ref, again.c.category, again_start.label("start")
        )
        .where(
            again.c.landlord_id == landlord_id,
            again.c.deleted_at.is_(None),
            again.c.status != "cancelled",
        )
        .cte("order_starts")
        .prefix_with("MATERIALIZED")
    )
    repeats = (
        sa.select(repeat.c.order_ref)
        .join_from(repeat, per_order, per_order.c.order_ref == repeat.c.order_ref)
        .join(
            starts,
            sa.and_(
                starts.c.order_ref != repeat.c.order_ref,
                starts.c.dwelling_ref == repeat.c.dwelling_ref,
                starts.c.category == repeat.c.category,
                starts.c.start > per_order.c.restored,
                starts.c.start <= per_order.c.restored + window_days * DAY,
            ),
        )
        .where(repeat.c.landlord_id == landlord_id, repeat.c.deleted_at.is_(None))
        .distinct()
        .subquery("repeats")
    )
    p, s = per_order, stage
    cancelled = o.c.status == "cancelled"
    excused_secs = sa.func.coalesce(excused.c.secs, 0)
    gti_elapsed = sa.func.coalesce(p.c.first_visit, now) - p.c.started
    gtr_elapsed = sa.func.coalesce(p.c.restored, now) - p.c.started - excused_secs
    window_closed = p.c.restored + window_days * DAY <= now
    first_time_fix = sa.case(
        (p.c.restored.is_(None), sa.null()),
        (sa.or_(p.c.visits > 1, repeats.c.order_ref.is_not(None)), sa.false()),
        (window_closed, sa.true()),
        else_=sa.null(),
    )

    def days_after(later: sa.ColumnElement, earlier: sa.ColumnElement) -> sa.ColumnElement:
        return sa.cast(later - earlier, sa.Integer())

    select = (
        sa.select(
            sa.literal(landlord_id, o.c.landlord_id.type),
            o.c.order_ref,
            o.c.contractor,
            o.c.category,
            o.c.dwelling_ref,
            cancelled,
            sa.case((cancelled, "cancelled"), else_=s.c.stage),
            s.c.stage_date,
            sa.cast(today - epoch_seconds(s.c.stage_date) // DAY, sa.Integer()),
            p.c.visits,
            p.c.absences,
            _hours(excused_secs),
            o.c.gti_hours,
            _hours(gti_elapsed),
            _sla_status(o.c.gti_hours, gti_elapsed, p.c.first_visit.is_not(None), cancelled),
            o.c.gtr_hours,
            _hours(gtr_elapsed),
            _sla_status(o.c.gtr_hours, gtr_elapsed, p.c.restored.is_not(None), cancelled),
            sa.case((cancelled, sa.null()), else_=first_time_fix),
            sa.case((p.c.sent_day >= p.c.accepted_day, days_after(p.c.sent_day, p.c.accepted_day))),
            days_after(p.c.invoiced_day, p.c.restored_day),
            days_after(p.c.invoice_sent_day, p.c.restored_day),
            sa.literal(as_of, sa.Date()),
            sa.literal(run_id, works_orders.c.run_id.type),
        )
        .join_from(p, o, sa.and_(o.c.order_ref == p.c.order_ref, _live(o, landlord_id)))
        .join(s, s.c.order_ref == p.c.order_ref)
        .outerjoin(excused, excused.c.order_ref == p.c.order_ref)
        .outerjoin(repeats, repeats.c.order_ref == p.c.order_ref)
    )
    columns = [
        "landlord_id", "order_ref", "contractor", "category", "dwelling_ref", "cancelled",
        "current_stage", "stage_date", "days_in_stage", "visits", "absences", "excused_hours",
        "gti_hours", "gti_elapsed_hours", "gti_status", "gtr_hours", "gtr_elapsed_hours",
        "gtr_status", "first_time_fix", "commitment_lag_days", "invoice_delay_days",
        "invoice_sent_delay_days", "as_of", "run_id",
    ]  # fmt: skip
    connection.execute(works_orders.insert().from_select(columns, select))


# --- Missed appointments -----------------------------------------------------------------


def _record_missed(connection: sa.Connection, landlord_id: str, as_of: date, run_id: str) -> None:
    t, o = works_timeline, ORDERS
    visits = (
        sa.select(
            t.c.order_ref,
            epoch_seconds(t.c.event_at).label("at"),
            sa.case((t.c.event == "tenant_absent", 1), else_=0).label("missed"),
        )
        .where(
            t.c.landlord_id == landlord_id,
            t.c.event.in_(VISITS),
            t.c.reference != t.c.order_ref,  # a real visit report, not a done date
        )
        .subquery("visits")
    )
    # group keys computed in a subquery first: PostgreSQL matches GROUP BY expressions by their
    # text, and bound parameters would number differently in the SELECT and the GROUP BY
    unknown = sa.literal_column("'(unknown)'", sa.String())
    households = (
        sa.select(
            sa.func.coalesce(o.c.tenant_ref, o.c.dwelling_ref, unknown).label("household"),
            o.c.tenant_ref,
            o.c.dwelling_ref,
            visits.c.missed,
        )
        .join_from(visits, o, sa.and_(o.c.order_ref == visits.c.order_ref, _live(o, landlord_id)))
        .subquery("households")
    )
    h = households
    per_household = (
        sa.select(
            sa.literal(landlord_id, o.c.landlord_id.type),
            h.c.household,
            sa.func.max(h.c.tenant_ref),
            sa.func.max(h.c.dwelling_ref),
            sa.func.count(),
            sa.func.sum(h.c.missed),
            sa.literal(as_of, sa.Date()),
            sa.literal(run_id, works_orders.c.run_id.type),
        )
        .group_by(h.c.household)
        .having(sa.func.sum(h.c.missed) > 0)
    )
    connection.execute(
        works_missed_by_tenant.insert().from_select(
            [
                "landlord_id",
                "household",
                "tenant_ref",
                "dwelling_ref",
                "appointments",
                "missed",
                "as_of",
                "run_id",
            ],
            per_household,
        )
    )
    local = visits.c.at + paris_offset(visits.c.at)
    start = (local % DAY) // (2 * HOUR) * 2
    placed = sa.select(
        ((local // DAY + 3) % 7).label("weekday"),  # 1970-01-01: Thursday
        sa.case(SLOTS, value=start).label("slot"),
        visits.c.missed,
    ).subquery("placed")
    per_slot = sa.select(
        sa.literal(landlord_id, o.c.landlord_id.type),
        placed.c.weekday,
        placed.c.slot,
        sa.func.count(),
        sa.func.sum(placed.c.missed),
        sa.literal(as_of, sa.Date()),
        sa.literal(run_id, works_orders.c.run_id.type),
    ).group_by(placed.c.weekday, placed.c.slot)
    connection.execute(
        works_missed_by_slot.insert().from_select(
            ["landlord_id", "weekday", "slot", "appointments", "missed", "as_of", "run_id"],
            per_slot,
        )
    )


# --- The whole refresh -------------------------------------------------------------------

WORKS_TABLES = (works_timeline, works_orders, works_missed_by_tenant, works_missed_by_slot)


def refresh_works(
    connection: sa.Connection,
    landlord_id: str,
    as_of: date,
    run_id: str,
    *,
    first_time_fix_days: int = 30,
) -> None:
    """Replace the landlord's works tables with their computation for `as_of` (call it inside
    one transaction: a reader sees the old tables or the new ones)."""
    for table in WORKS_TABLES:
        connection.execute(table.delete().where(table.c.landlord_id == landlord_id))
    # the planner's statistics first (`insight.analyse`): right after a load, PostgreSQL knew
    # nothing of the orders and took over 7 min on the timeline of 5,000 of them
    analyse(connection, ORDERS, QUOTES, COMMITMENTS, COMPLETIONS, INVOICES, outbox)
    _record_timeline(connection, landlord_id, as_of, run_id)
    analyse(connection, works_timeline)
    _record_orders(connection, landlord_id, as_of, run_id, first_time_fix_days)
    analyse(connection, works_orders)
    _record_missed(connection, landlord_id, as_of, run_id)


def works_inputs(connection: sa.Connection, landlord_id: str, first_time_fix_days: int) -> str:
    """What the works tables are computed from: each input table's loads, the deliveries of
    the outbox and the first-time-fix window (`computed_once` compares it with the last)."""
    versions = {
        entity: dataclasses.astuple(load_version(connection, landlord_id, entity))
        for entity in WORKS_INPUTS
    }
    sent = connection.execute(
        sa.select(sa.func.count(), sa.func.max(outbox.c.sent_at)).where(
            outbox.c.landlord_id == landlord_id, outbox.c.sent_at.is_not(None)
        )
    ).one()
    versions["outbox"] = (int(sent[0]), str(sent[1]))
    return json.dumps({**versions, "first_time_fix_days": first_time_fix_days}, sort_keys=True)


def works_as_of(connection: sa.Connection, landlord_id: str) -> date | None:
    """The day the landlord's stored works tables were computed for (None: never)."""
    return connection.execute(
        sa.select(sa.func.max(works_orders.c.as_of)).where(
            works_orders.c.landlord_id == landlord_id
        )
    ).scalar()


def works_summary(connection: sa.Connection, landlord_id: str) -> WorksSummary:
    """Counts of the stored works tables (SQL aggregates), for metadata and the report."""
    w = works_orders
    mine = w.c.landlord_id == landlord_id

    def by(column: sa.Column) -> dict[str, int]:
        rows = connection.execute(
            sa.select(column, sa.func.count()).where(mine).group_by(column).order_by(column)
        )
        return {str(key): int(number) for key, number in rows}

    orders, open_orders, fixed, judged = connection.execute(
        sa.select(
            sa.func.count(),
            sa.func.coalesce(
                sa.func.sum(
                    sa.case(
                        (
                            w.c.current_stage.in_(
                                ("cancelled", "invoiced", "invoice_sent", "paid")
                            ),
                            0,
                        ),
                        else_=1,
                    )
                ),
                0,
            ),
            sa.func.coalesce(sa.func.sum(sa.case((w.c.first_time_fix.is_(True), 1), else_=0)), 0),
            sa.func.count(w.c.first_time_fix),
        ).where(mine)
    ).one()
    missed = connection.execute(
        sa.select(sa.func.coalesce(sa.func.sum(works_missed_by_slot.c.missed), 0)).where(
            works_missed_by_slot.c.landlord_id == landlord_id
        )
    ).scalar_one()
    events = connection.execute(
        sa.select(sa.func.count()).where(works_timeline.c.landlord_id == landlord_id)
    ).scalar_one()
    delays = sorted(
        int(value)
        for (value,) in connection.execute(
            sa.select(w.c.invoice_delay_days).where(mine, w.c.invoice_delay_days.is_not(None))
        )
    )
    return WorksSummary(
        orders=int(orders),
        open_orders=int(open_orders),
        events=int(events),
        stages=by(w.c.current_stage),
        gti=by(w.c.gti_status),
        gtr=by(w.c.gtr_status),
        first_time_fix_rate=(int(fixed) / int(judged)) if judged else None,
        missed_appointments=int(missed),
        median_invoice_delay_days=_median(delays),
    )


def _median(values: list[int]) -> float | None:
    if not values:
        return None
    middle = len(values) // 2
    if len(values) % 2:
        return float(values[middle])
    return (values[middle - 1] + values[middle]) / 2


# --- Alerts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertKey:
    """One key an alert lists, and how many days late it is."""

    key: str
    days: int


WORKS_ALERTS = (
    "orders_past_gtr",
    "commitment_not_sent",
    "invoice_without_order",
    "completion_not_invoiced",
)


def _days_since(day: sa.ColumnElement, as_of: date) -> sa.ColumnElement:
    """Whole days from a date column to the as-of day."""
    return sa.cast(day_number(as_of) - epoch_seconds(day) // DAY, sa.Integer())


def works_alerts(
    connection: sa.Connection,
    landlord_id: str,
    as_of: date,
    *,
    pushes_commitments: bool,
    only: str | None = None,
) -> dict[str, list[AlertKey]]:
    """Every key each works alert (or the `only` one) could list, with its days late (from the
    stored works tables and the canonical invoices and orders), most late first; thresholds
    are the caller's."""
    t, w, o, i = works_timeline, works_orders, ORDERS, INVOICES
    mine = t.c.landlord_id == landlord_id

    restored = t.alias("restored")
    open_order = ~(
        sa.select(restored.c.order_ref)
        .where(
            restored.c.landlord_id == landlord_id,
            restored.c.order_ref == w.c.order_ref,
            restored.c.event == "completed",
        )
        .exists()
    )
    queries: dict[str, sa.Select] = {
        "orders_past_gtr": sa.select(
            w.c.order_ref,
            sa.cast((w.c.gtr_elapsed_hours - w.c.gtr_hours) / 24, sa.Integer()),
        ).where(w.c.landlord_id == landlord_id, w.c.gtr_status == "missed", open_order),
        "invoice_without_order": sa.select(
            i.c.invoice_ref, _days_since(i.c.issued_date, as_of)
        ).where(
            _live(i, landlord_id),
            i.c.status != "cancelled",
            ~sa.select(o.c.order_ref)
            .where(_live(o, landlord_id), o.c.order_ref == i.c.order_ref)
            .exists(),
        ),
    }
    sent, invoiced, restoring = t.alias("sent"), t.alias("invoiced"), t.alias("restoring")
    if pushes_commitments:
        queries["commitment_not_sent"] = sa.select(
            t.c.reference, _days_since(t.c.event_date, as_of)
        ).where(
            mine,
            t.c.event == "quote_accepted",
            ~sa.select(sent.c.order_ref)
            .where(
                sent.c.landlord_id == landlord_id,
                sent.c.order_ref == t.c.order_ref,
                sent.c.event == "commitment_sent",
                sent.c.event_date >= t.c.event_date,
            )
            .exists(),
        )
    first_restored = (
        sa.select(restoring.c.order_ref, sa.func.min(restoring.c.event_date).label("day"))
        .where(restoring.c.landlord_id == landlord_id, restoring.c.event == "completed")
        .group_by(restoring.c.order_ref)
        .subquery("first_restored")
    )
    queries["completion_not_invoiced"] = (
        sa.select(first_restored.c.order_ref, _days_since(first_restored.c.day, as_of))
        .join_from(
            first_restored,
            w,
            sa.and_(w.c.landlord_id == landlord_id, w.c.order_ref == first_restored.c.order_ref),
        )
        .where(
            w.c.cancelled.is_(False),
            ~sa.select(invoiced.c.order_ref)
            .where(
                invoiced.c.landlord_id == landlord_id,
                invoiced.c.order_ref == first_restored.c.order_ref,
                invoiced.c.event == "invoiced",
            )
            .exists(),
        )
    )
    alerts: dict[str, list[AlertKey]] = {name: [] for name in WORKS_ALERTS}
    for name, query in queries.items():
        if only is not None and name != only:
            continue
        rows = connection.execute(query).all()
        keys = [AlertKey(str(key), int(days)) for key, days in rows]
        alerts[name] = sorted(keys, key=lambda alert: (-alert.days, alert.key))
    return alerts


def judge(alert: WorksAlert, keys: list[AlertKey]) -> tuple[list[AlertKey], bool]:
    """The keys at or past the alert's warning threshold, and whether one is past its error
    threshold (a disabled alert lists nothing)."""
    if not alert.enabled:
        return [], False
    listed = [key for key in keys if key.days >= alert.warn_after_days]
    error = alert.error_after_days
    return listed, error is not None and any(key.days >= error for key in listed)
