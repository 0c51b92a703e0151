"""Works tracking, computed in the warehouse: set-based SQL (SQLAlchemy Core), the same
statements on SQLite and PostgreSQL (but for Paris's offset, compiled per dialect, and the
lookup of a repeat, shaped for each planner), no Python loop over orders.

`refresh_works` replaces the landlord's four works tables (`schemas.tables`) in one transaction:
- `works_events`: the events of every order up to the end of the as-of day (Paris) that its own
  row does not give, from the other canonical tables (quotes, commitments, completions,
  invoices) and the push outbox (a commitment or an invoice delivered);
- `works_orders`: per order, the current stage (its furthest event) and days in it, GTI and GTR
  met / missed / pending, first-time fix, commitment lag and invoice delays, and the events its
  own row gives (ordered, appointment, completed by its done date: `<event>_at`, `<event>_date`);
- the view `works_timeline` (created by the warehouse's migration) lists both: every order's
  events, what the alerts, the report and the tests read;
- `works_missed_by_tenant` and `works_missed_by_slot`: missed appointments per household and
  per weekday and two-hour slot.

How (`make bench`, Table 3: 200,000 orders): each order's events are written once (the
bench's 487,176 events all come from the orders' own rows: stored again as rows of a timeline
table, their insert and its key cost more than the load of the orders) and placed once, with
their instants and Paris days as integers, into two TEMPORARY tables: `ORDER_EVENTS`, one row per
order with the three events its own row gives, and `FOREIGN_EVENTS`, one row per event of the
other tables (grouped per order in one pass of conditional aggregates). The timeline, the
per-order figures and the missed appointments all read them; no date is parsed twice, Paris's
offset is a binary search (`paris_offset`), every step is a set-based statement.

Time rules (written once here, the tests and the datafix reference repeat them):
- instants are compared as epoch seconds (`epoch_seconds`, compiled per dialect); a date-only
  value (an order's `ordered_date`, a `done_date`) is the start of that day in Paris (its
  offset: `paris_offset`, the EU rule from 2000 to 2060, checked against zoneinfo);
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import FunctionElement

from pipelines.lib.insight import analyse, load_version, staged, staging_table
from pipelines.lib.warehouse import reindexes
from schemas.datafix import WorksAlert
from schemas.tables import (
    CANONICAL_TABLES,
    KEY,
    WORKS_EVENTS,
    WORKS_OWN_EVENTS,
    outbox,
    works_events,
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
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for a lock refused by NOWAIT


# --- Portable time arithmetic ------------------------------------------------------------


class DialectFunction(FunctionElement):
    """A one-argument SQL function written one way on SQLite and another on PostgreSQL: a
    subclass gives the two texts, in which `{value}` stands for the compiled argument, and its
    result type; its name is its class name."""

    inherit_cache = True

    def __init_subclass__(cls, *, sqlite: str, default: str, **kw: object) -> None:
        super().__init_subclass__(**kw)
        cls.name = cls.__name__
        cls.inherit_cache = True  # SQLAlchemy reads it from each class's own namespace
        compiles(cls, "sqlite")(cls._writer(sqlite))
        compiles(cls)(cls._writer(default))

    @staticmethod
    def _writer(template: str) -> Callable[..., str]:
        def write(element: FunctionElement, compiler: SQLCompiler, **kw: object) -> str:
            return template.replace("{value}", compiler.process(element.clauses, **kw))

        return write


class epoch_seconds(
    DialectFunction,
    sqlite="CAST(ROUND((julianday({value}) - 2440587.5) * 86400) AS INTEGER)",
    default="CAST(EXTRACT(EPOCH FROM {value}) AS BIGINT)",
):
    """Seconds since 1970-01-01 UTC of a date (its midnight, UTC) or a timestamp stored in UTC,
    as an integer: `julianday` on SQLite (which stores timestamps as UTC text), `EXTRACT(EPOCH)`
    on PostgreSQL."""

    type = sa.BigInteger()


class utc_timestamp(
    DialectFunction,
    sqlite="datetime({value}, 'unixepoch')",
    default="to_timestamp({value})",
):
    """The UTC timestamp of an epoch-seconds integer."""

    type = sa.DateTime(timezone=True)


class epoch_day_date(
    DialectFunction,
    sqlite="date(({value}) * 86400, 'unixepoch')",
    default="(DATE '1970-01-01' + CAST({value} AS INTEGER))",
):
    """The date of a day number (days since 1970-01-01)."""

    type = sa.Date()


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
# every change of the offset, in order: a start of summer time, its end, the next start …
_CHANGES = tuple(instant for span in SUMMER_SPANS for instant in span)


def _integer(value: int) -> sa.ColumnElement:
    """An integer written into the SQL (a constant of this module, not a bound parameter)."""
    return sa.literal_column(str(int(value)), sa.BigInteger())


def _offset_search(low: int, high: int) -> str:
    """The nested CASEs finding the offset at `{value}` when between `low` and `high` of the
    changes are at or before it (SQLite's text, written once: the expression is large)."""
    if low == high:
        return str(2 * HOUR if low % 2 else HOUR)
    middle = (low + high) // 2
    return (
        f"CASE WHEN ({{value}}) < {_CHANGES[middle]} THEN {_offset_search(low, middle)}"
        f" ELSE {_offset_search(middle + 1, high)} END"
    )


class paris_offset(
    DialectFunction,
    sqlite=_offset_search(0, len(_CHANGES)),
    default="CASE mod(width_bucket(CAST({value} AS BIGINT),"
    f" ARRAY[{', '.join(str(change) for change in _CHANGES)}]::BIGINT[]), 2)"
    f" WHEN 1 THEN {2 * HOUR} ELSE {HOUR} END",
):
    """Paris's offset from UTC, in seconds, at an epoch-seconds instant: summer time when an odd
    number of the offset's changes (`SUMMER_SPANS`, flattened) are at or before it; before 2000
    and after 2060, winter time. Found by a binary search over the changes, never by a
    time-zone database in the server: on PostgreSQL `width_bucket` (the count of the changes at
    or before the instant, searched in C), on SQLite nested CASEs (7 comparisons, each reading
    the instant again: give it a column, not an expression). `test_works` checks both against
    zoneinfo hour by hour across the changes."""

    type = sa.Integer()


def paris_day(epoch: sa.ColumnElement) -> sa.ColumnElement:
    """The Paris day number (days since 1970-01-01) of an epoch-seconds instant."""
    return (epoch + paris_offset(epoch)) // DAY


def day_number(day: date) -> int:
    """The day number of a date (days since 1970-01-01)."""
    return (day - date(1970, 1, 1)).days


def day_end(as_of: date) -> int:
    """Epoch seconds of the end of the as-of day in Paris (the next day's midnight)."""
    return int(datetime.combine(as_of + timedelta(days=1), time(0), PARIS).timestamp())


# --- The events and the timeline ---------------------------------------------------------


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


# An order's events come from two places, each placed once into a TEMPORARY table
# (`insight.staged`, dropped at the end of the refresh) with its instants and Paris days as
# integers, then read by every table:
# - its own row gives three (`OWN_EVENTS`): one row per order in `ORDER_EVENTS`, with what the
#   works tables need of the order, so the per-order figures read the order's row, grouping
#   nothing and joining nothing for them;
# - the other tables (quotes, commitments, completion reports, invoices) and the outbox give
#   the rest, any number per order: one row per event in `FOREIGN_EVENTS`, grouped per order.
OWN_EVENTS = WORKS_OWN_EVENTS  # ordered, appointment, completed
ORDER_COLUMNS = ("contractor", "category", "dwelling_ref", "status", "gti_hours", "gtr_hours")
ORDER_EVENTS = staging_table(
    "works_order_events",
    sa.Column("order_ref", KEY, nullable=False),
    *(sa.Column(name, ORDERS.c[name].type) for name in ORDER_COLUMNS),
    *(
        column
        for event in OWN_EVENTS
        for column in (
            sa.Column(f"{event}_happened", sa.Integer(), nullable=False,
                      comment="1: the order has it by the end of the as-of day."),
            sa.Column(f"{event}_at", sa.BigInteger(), comment="Epoch seconds."),
            sa.Column(f"{event}_day", sa.Integer(), comment="Its Paris day number."),
        )
    ),
)  # fmt: skip
FOREIGN_EVENTS = staging_table(
    "works_foreign_events",
    sa.Column("order_ref", KEY, nullable=False),
    sa.Column("stage_rank", sa.Integer(), nullable=False),
    sa.Column("reference", KEY, nullable=False),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("at", sa.BigInteger(), nullable=False, comment="Epoch seconds."),
    sa.Column("day", sa.Integer(), nullable=False, comment="Its Paris day number."),
)
# SQLite: the staged orders that are candidates for a repeat (`_candidate`) by dwelling,
# category and start (their `ordered` instant): a partial index of `ORDER_EVENTS`, built once
# the table is filled (one sort), one B-tree seek per restored order (`_index_starts`)
STARTS_INDEX = "works_order_starts"


def _live(table: sa.Table, landlord_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(table.c.landlord_id == landlord_id, table.c.deleted_at.is_(None))


def _reported(landlord_id: str) -> sa.Select:
    """The orders with a report of a visit with the tenant present (whenever it was): their
    done date is no event of theirs. Read once as a set (a correlated EXISTS per order had no
    index on the completions' order to use)."""
    v = COMPLETIONS
    present = sa.or_(v.c.tenant_absent.is_(None), v.c.tenant_absent.is_(False))
    return sa.select(v.c.order_ref).where(
        _live(v, landlord_id), present, v.c.order_ref.is_not(None)
    )


def _placed(
    utc: sa.ColumnElement, is_date: bool | sa.ColumnElement[bool], as_of: date
) -> tuple[sa.ColumnElement, sa.ColumnElement, sa.ColumnElement[bool]]:
    """(at, day, by the end of the as-of day) of an event at `utc` (epoch seconds; when
    `is_date`, a date's midnight UTC). A date-only event starts at its Paris midnight:
    midnight UTC less Paris's offset then. Its Paris day is the date's own, and it is before
    the end of the as-of day when the date is not after it: the offset changes at 01:00 UTC,
    never in the hour or two between a Paris midnight and midnight UTC. So the offset is
    searched once per event (give `utc` as a value: a column)."""
    dated = utc - paris_offset(utc), utc // DAY, utc < (day_number(as_of) + 1) * DAY
    timed = utc, paris_day(utc), utc < day_end(as_of)
    if isinstance(is_date, bool):
        return dated if is_date else timed
    at, day, by_end = (sa.case((is_date, d), else_=t) for d, t in zip(dated, timed, strict=True))
    return at, day, by_end


def _order_events(landlord_id: str, as_of: date) -> sa.Select:
    """The rows of `ORDER_EVENTS`: the landlord's live orders with their three own events,
    ordered (at its instant, else at the start of its date), appointment (its planned date)
    and completed (its done date, unless a report says when the tenant was visited). The
    epochs first, MATERIALIZED on SQLite: each computed once, then read as a value by the
    offset's search (its CASEs read it again and again; PostgreSQL computes it as cheaply
    again, inlined)."""
    o = ORDERS
    reported = sa.case(
        (o.c.done_date.is_(None), 0), (o.c.order_ref.in_(_reported(landlord_id)), 1), else_=0
    )
    epochs = (
        sa.select(
            o.c.order_ref,
            *(o.c[name] for name in ORDER_COLUMNS),
            sa.case((o.c.ordered_at.is_(None), 1), else_=0).label("date_only"),
            epoch_seconds(o.c.ordered_at).label("ordered_at"),
            epoch_seconds(o.c.ordered_date).label("ordered_date"),
            epoch_seconds(o.c.planned_date).label("planned_date"),
            epoch_seconds(o.c.done_date).label("done_date"),
            reported.label("reported"),
        )
        .where(_live(o, landlord_id))
        .cte("order_epochs")
        .prefix_with("MATERIALIZED", dialect="sqlite")
    )
    e = epochs.c
    sources = {
        "ordered": (sa.func.coalesce(e.ordered_at, e.ordered_date), e.date_only == 1, sa.true()),
        "appointment": (e.planned_date, True, sa.true()),
        "completed": (e.done_date, True, e.reported == 0),
    }
    placed = []
    for event in OWN_EVENTS:
        utc, is_date, condition = sources[event]
        at, day, by_end = _placed(utc, is_date, as_of)
        placed += [sa.case((sa.and_(condition, by_end), 1), else_=0), at, day]
    return sa.select(e.order_ref, *(e[name] for name in ORDER_COLUMNS), *placed)


def _event(
    order_ref: sa.ColumnElement,
    event: str,
    reference: sa.ColumnElement,
    utc: sa.ColumnElement,
    *,
    is_date: bool,
) -> list[sa.ColumnElement]:
    """One foreign event's columns: `utc` in epoch seconds; `is_date` when it is a date's
    midnight UTC (placed at the start of its Paris day by the caller)."""
    return [
        order_ref.label("order_ref"),
        sa.literal(event, sa.String(32)).label("event"),
        sa.cast(reference, sa.String(128)).label("reference"),
        sa.cast(utc, sa.BigInteger()).label("utc"),
        sa.literal(1 if is_date else 0, sa.Integer()).label("is_date"),
    ]


def _foreign_events(landlord_id: str, as_of: date) -> sa.Select:
    """The rows of `FOREIGN_EVENTS`: every event of the landlord's live orders from the other
    tables and the outbox, up to the end of the as-of day."""
    o, q, c, v, i = ORDERS, QUOTES, COMMITMENTS, COMPLETIONS, INVOICES
    present = sa.or_(v.c.tenant_absent.is_(None), v.c.tenant_absent.is_(False))
    sent = sa.and_(outbox.c.landlord_id == landlord_id, outbox.c.sent_at.is_not(None))

    def of_live_order(select: sa.Select, order_ref: sa.ColumnElement) -> sa.Select:
        """`select` for the live orders only: an outbox row outlives its order, an invoice
        may name none."""
        return select.join(o, sa.and_(o.c.order_ref == order_ref, _live(o, landlord_id)))

    def visit(event: str, condition: sa.ColumnElement[bool]) -> sa.Select:
        """An event of each live completion report meeting `condition`, at its instant."""
        at = epoch_seconds(v.c.completed_at)
        select = sa.select(*_event(v.c.order_ref, event, v.c.completion_ref, at, is_date=False))
        return of_live_order(select.where(_live(v, landlord_id), condition), v.c.order_ref)

    def dated(
        table: sa.Table, event: str, reference: sa.ColumnElement, day: sa.Column, *where: object
    ) -> sa.Select:
        """An event of each live row of `table` meeting `where`, at the start of `day`."""
        at = epoch_seconds(day)
        select = sa.select(*_event(table.c.order_ref, event, reference, at, is_date=True))
        return of_live_order(select.where(_live(table, landlord_id), *where), table.c.order_ref)

    selects = [
        dated(q, "quote_sent", q.c.quote_ref, q.c.issued_date,
              q.c.status.in_(("sent", "accepted", "refused")), q.c.issued_date.is_not(None)),
        dated(q, "quote_accepted", q.c.quote_ref, q.c.accepted_date,
              q.c.status == "accepted", q.c.accepted_date.is_not(None)),
        dated(c, "commitment_raised", c.c.commitment_ref, c.c.committed_date,
              c.c.status != "cancelled"),
        of_live_order(
            sa.select(
                *_event(outbox.c.record_key, "commitment_sent", outbox.c.sink,
                        epoch_seconds(outbox.c.sent_at), is_date=False)
            ).where(sent, outbox.c.entity == "commitments"),
            outbox.c.record_key,
        ),
        visit("tenant_absent", v.c.tenant_absent.is_(True)),
        visit("completed", present),
        visit("signed", v.c.tenant_signed.is_(True)),
        dated(i, "invoiced", i.c.invoice_ref, i.c.issued_date, i.c.status.in_(ISSUED_INVOICES)),
        of_live_order(
            sa.select(
                *_event(i.c.order_ref, "invoice_sent", i.c.invoice_ref + "@" + outbox.c.sink,
                        epoch_seconds(outbox.c.sent_at), is_date=False)
            )
            .join_from(i, outbox, sa.and_(outbox.c.record_key == i.c.invoice_ref, sent))
            .where(_live(i, landlord_id), outbox.c.entity == "invoices"),
            i.c.order_ref,
        ),
        dated(i, "paid", i.c.invoice_ref, i.c.paid_date,
              i.c.status == "paid", i.c.paid_date.is_not(None)),
    ]  # fmt: skip
    # SQLite: MATERIALIZED, `utc` computed once per event, then read as a value by each
    # comparison of the offset's search (flattened, each read parsed the timestamp again)
    raw = sa.union_all(*selects).cte("raw_events").prefix_with("MATERIALIZED", dialect="sqlite")
    at, day, by_end = _placed(raw.c.utc, raw.c.is_date == 1, as_of)
    return sa.select(
        raw.c.order_ref, sa.case(RANKS, value=raw.c.event), raw.c.reference, raw.c.event, at, day
    ).where(by_end)


def _record_events(connection: sa.Connection, landlord_id: str, as_of: date, run_id: str) -> None:
    """`works_events`: the staged foreign events (the own ones are columns of works_orders)."""
    f = FOREIGN_EVENTS
    select = sa.select(
        sa.literal(landlord_id, ORDERS.c.landlord_id.type),
        f.c.order_ref,
        f.c.event,
        f.c.reference,
        f.c.stage_rank,
        utc_timestamp(f.c.at),
        epoch_day_date(f.c.day),
        sa.literal(as_of, sa.Date()),
        sa.literal(run_id, works_events.c.run_id.type),
    )
    columns = ["landlord_id", "order_ref", "event", "reference", "stage_rank", "event_at",
               "event_date", "as_of", "run_id"]  # fmt: skip
    connection.execute(works_events.insert().from_select(columns, select))


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


# The current stage and the day it began, as one integer: rank * STAGE_KEY + day + STAGE_KEY / 2
# is largest for the furthest event and, among its occurrences, the latest day (any Paris day
# within ±STAGE_KEY / 2 days of 1970); read back by // and %
STAGE_KEY = 1 << 24


def _stage_key(rank: sa.ColumnElement | int, day: sa.ColumnElement) -> sa.ColumnElement:
    return rank * _integer(STAGE_KEY) + day + _integer(STAGE_KEY // 2)


def _earlier(first: sa.ColumnElement, second: sa.ColumnElement) -> sa.ColumnElement:
    """The smaller of two values, either of them NULL (NULL when both are)."""
    return sa.case((sa.or_(second.is_(None), first <= second), first), else_=second)


def _later(first: sa.ColumnElement, second: sa.ColumnElement) -> sa.ColumnElement:
    """The larger of two values, either of them NULL (NULL when both are)."""
    return sa.case((sa.or_(second.is_(None), first >= second), first), else_=second)


def _candidate() -> sa.ColumnElement[bool]:
    """A staged order that may be another's repeat: not cancelled, with a dwelling."""
    own = ORDER_EVENTS.c
    return sa.and_(own.status != "cancelled", own.dwelling_ref.is_not(None))


def _order_starts() -> sa.Select:
    """The candidates for a repeat: each live, not cancelled order with a dwelling, with its
    start: when it was placed, its `ordered` instant (by the end of the as-of day or not)."""
    own = ORDER_EVENTS.c
    start = own.ordered_at.label("start")
    return sa.select(own.dwelling_ref, own.category, start, own.order_ref).where(_candidate())


def _index_starts(connection: sa.Connection) -> None:
    """SQLite: `STARTS_INDEX`, the partial index of the candidates by dwelling, category and
    start, on the filled `ORDER_EVENTS` (dropped with it). The repeat's lookup reads the
    candidates through `_order_starts`, which SQLite flattens into it: its WHERE is the
    index's, so it seeks the index. The candidates were once copied, sorted, into a table of
    their own (WITHOUT ROWID): the index is the same one sort without the copy, its ANALYZE
    and its DROP (the bench's 200,000 orders: ~0.15-0.25 CPU s less)."""
    quote = connection.dialect.identifier_preparer.quote
    own = ORDER_EVENTS.c
    columns = ", ".join(quote(c.name) for c in (own.dwelling_ref, own.category, own.ordered_at))
    where = _candidate().compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True})
    connection.exec_driver_sql(
        f"CREATE INDEX {quote(STARTS_INDEX)} ON {quote(ORDER_EVENTS.name)} ({columns})"
        f" WHERE {where}"
    )


def _record_orders(
    connection: sa.Connection, landlord_id: str, as_of: date, run_id: str, window_days: int
) -> None:
    """`works_orders`: one row per live order with an event, read from the order's own row
    (its own events, computed there) with the aggregates of its foreign events, the excused
    time of its absences and a repeat looked up by key."""
    f = FOREIGN_EVENTS
    now = day_end(as_of)
    today = day_number(as_of)
    rank = {event: _integer(value) for event, value in RANKS.items()}

    def when(event: str, value: sa.ColumnElement) -> sa.ColumnElement:
        return sa.case((f.c.stage_rank == rank[event], value))

    def count(event: str) -> sa.ColumnElement:
        return sa.func.sum(sa.case((f.c.stage_rank == rank[event], 1), else_=0))

    grouped = (
        sa.select(
            f.c.order_ref,
            sa.func.max(_stage_key(f.c.stage_rank, f.c.day)).label("stage"),
            sa.func.min(when("completed", f.c.at)).label("restored"),
            sa.func.min(when("completed", f.c.day)).label("restored_day"),
            count("completed").label("visits"),
            sa.func.min(when("tenant_absent", f.c.at)).label("first_absence"),
            count("tenant_absent").label("absences"),
            sa.func.max(when("quote_accepted", f.c.day)).label("accepted_day"),
            sa.func.max(when("commitment_sent", f.c.day)).label("sent_day"),
            sa.func.min(when("invoiced", f.c.day)).label("invoiced_day"),
            sa.func.min(when("invoice_sent", f.c.day)).label("invoice_sent_day"),
        )
        .group_by(f.c.order_ref)
        .subquery("grouped")
    )
    own = ORDER_EVENTS
    # with the excused time of the orders with a missed appointment (each has a foreign
    # event, its absence): joined to the few orders with foreign events, not to every order
    excused = _excused(own, now)
    foreign = (
        sa.select(grouped, excused.c.secs.label("excused_secs"))
        .outerjoin(excused, excused.c.order_ref == grouped.c.order_ref)
        .cte("foreign_events")  # PostgreSQL reads it twice (the repeats): computed once
    )
    o, x = own.c, foreign.c

    def happened(event: str) -> sa.ColumnElement[bool]:
        return o[f"{event}_happened"] == 1

    # the order's own events with its foreign ones; the furthest own event first
    own_stage = sa.case(
        *((happened(event), _stage_key(RANKS[event], o[f"{event}_day"]))
          for event in sorted(OWN_EVENTS, key=RANKS.__getitem__, reverse=True)),
    )  # fmt: skip
    stage_key = _later(own_stage, x.stage)
    own_restored = sa.case((happened("completed"), o.completed_at))
    restored = _earlier(own_restored, x.restored)
    own_first = sa.and_(
        happened("completed"), sa.or_(x.restored.is_(None), o.completed_at <= x.restored)
    )
    restored_day = sa.case((own_first, o.completed_day), else_=x.restored_day)
    started = sa.case((happened("ordered"), o.ordered_at))
    first_visit = _earlier(restored, x.first_absence)
    visits = o.completed_happened + sa.func.coalesce(x.visits, 0)
    any_event = sa.or_(*(happened(event) for event in OWN_EVENTS), x.order_ref.is_not(None))

    cancelled = o.status == "cancelled"
    # a repeat: another live, not cancelled order for the same dwelling and category, placed
    # after the restoration and within the window. Looked up only for the orders it decides
    # (not cancelled, restored at one visit): SQLite evaluates it inside the CASE below,
    # seeking the candidates' partial index (`_index_starts`); PostgreSQL as a semi-join,
    # hashing the candidates (a probe per order there costs more than the hash)
    sqlite = connection.dialect.name == "sqlite"
    s = _order_starts().subquery("starts")
    repeated = (
        sa.select(s.c.order_ref)
        .where(
            s.c.dwelling_ref == o.dwelling_ref,
            s.c.category == o.category,
            s.c.start > restored,
            s.c.start <= restored + window_days * DAY,
            s.c.order_ref != o.order_ref,
        )
        .exists()
    )
    joins: list[tuple[sa.Subquery, sa.ColumnElement[bool]]] = []
    if not sqlite:
        repeats = (
            sa.select(o.order_ref)
            .select_from(own)
            .outerjoin(foreign, x.order_ref == o.order_ref)
            .where(~cancelled, restored.is_not(None), visits <= 1, repeated)
            .subquery("repeats")
        )
        joins.append((repeats, repeats.c.order_ref == o.order_ref))
        repeated = repeats.c.order_ref.is_not(None)
    top_rank = stage_key // _integer(STAGE_KEY)
    stage_day = stage_key % _integer(STAGE_KEY) - _integer(STAGE_KEY // 2)
    excused_secs = sa.func.coalesce(x.excused_secs, 0)
    gti_elapsed = sa.func.coalesce(first_visit, now) - started
    gtr_elapsed = sa.func.coalesce(restored, now) - started - excused_secs
    window_closed = restored + window_days * DAY <= now
    first_time_fix = sa.case(
        (sa.or_(cancelled, restored.is_(None)), sa.null()),
        (sa.or_(visits > 1, repeated), sa.false()),
        (window_closed, sa.true()),
        else_=sa.null(),
    )

    def days_after(later: sa.ColumnElement, earlier: sa.ColumnElement) -> sa.ColumnElement:
        return sa.cast(later - earlier, sa.Integer())

    stage = sa.case({value: event for event, value in RANKS.items()}, value=top_rank)
    select = (
        sa.select(
            sa.literal(landlord_id, ORDERS.c.landlord_id.type),
            o.order_ref,
            o.contractor,
            o.category,
            o.dwelling_ref,
            cancelled,
            sa.case((cancelled, "cancelled"), else_=stage),
            epoch_day_date(stage_day),
            sa.cast(today - stage_day, sa.Integer()),
            visits,
            sa.func.coalesce(x.absences, 0),
            _hours(excused_secs),
            o.gti_hours,
            _hours(gti_elapsed),
            _sla_status(o.gti_hours, gti_elapsed, first_visit.is_not(None), cancelled),
            o.gtr_hours,
            _hours(gtr_elapsed),
            _sla_status(o.gtr_hours, gtr_elapsed, restored.is_not(None), cancelled),
            first_time_fix,
            sa.case((x.sent_day >= x.accepted_day, days_after(x.sent_day, x.accepted_day))),
            days_after(x.invoiced_day, restored_day),
            days_after(x.invoice_sent_day, restored_day),
            *(
                value
                for event in OWN_EVENTS
                for value in (
                    sa.case((happened(event), utc_timestamp(o[f"{event}_at"]))),
                    sa.case((happened(event), epoch_day_date(o[f"{event}_day"]))),
                )
            ),
            sa.literal(as_of, sa.Date()),
            sa.literal(run_id, works_orders.c.run_id.type),
        )
        .select_from(own)
        .outerjoin(foreign, x.order_ref == o.order_ref)
        .where(any_event)
    )
    for joined, on in joins:
        select = select.outerjoin(joined, on)
    names = [
        "landlord_id", "order_ref", "contractor", "category", "dwelling_ref", "cancelled",
        "current_stage", "stage_date", "days_in_stage", "visits", "absences", "excused_hours",
        "gti_hours", "gti_elapsed_hours", "gti_status", "gtr_hours", "gtr_elapsed_hours",
        "gtr_status", "first_time_fix", "commitment_lag_days", "invoice_delay_days",
        "invoice_sent_delay_days",
        *(f"{event}_{part}" for event in OWN_EVENTS for part in ("at", "date")),
        "as_of", "run_id",
    ]  # fmt: skip
    if sqlite:
        _index_starts(connection)
    connection.execute(works_orders.insert().from_select(names, select))


def _excused(own: sa.Table, now: int) -> sa.Subquery:
    """Per order with a missed appointment, the excused seconds: from each missed appointment
    before restoration to the next visit (or to the end of the as-of day). Read from the
    visits of those orders only: their reports and their done date."""
    f = FOREIGN_EVENTS
    absent, restored = RANKS["tenant_absent"], RANKS["completed"]
    absent_orders = sa.select(f.c.order_ref).where(f.c.stage_rank == _integer(absent))
    reported = sa.select(f.c.order_ref, f.c.stage_rank, f.c.at).where(
        f.c.stage_rank.in_(tuple(_integer(RANKS[event]) for event in VISITS)),
        f.c.order_ref.in_(absent_orders),
    )
    by_date = sa.select(own.c.order_ref, _integer(restored), own.c.completed_at).where(
        own.c.completed_happened == 1, own.c.order_ref.in_(absent_orders)
    )
    visit = sa.union_all(reported, by_date).subquery("visit")
    by_order = {"partition_by": visit.c.order_ref}
    visits = sa.select(
        visit.c.order_ref,
        visit.c.stage_rank,
        visit.c.at,
        # the first visit strictly after this one (at >= its instant + 1 s)
        sa.func.min(visit.c.at)
        .over(**by_order, order_by=visit.c.at, range_=(1, None))
        .label("next"),
        sa.func.min(sa.case((visit.c.stage_rank == _integer(restored), visit.c.at)))
        .over(**by_order)
        .label("restored"),
    ).subquery("visits")
    return (
        sa.select(
            visits.c.order_ref,
            sa.func.sum(sa.func.coalesce(visits.c.next, now) - visits.c.at).label("secs"),
        )
        .where(
            visits.c.stage_rank == _integer(absent),
            sa.or_(visits.c.restored.is_(None), visits.c.at < visits.c.restored),
        )
        .group_by(visits.c.order_ref)
        .subquery("excused")
    )


# --- Missed appointments -----------------------------------------------------------------


def _record_missed(connection: sa.Connection, landlord_id: str, as_of: date, run_id: str) -> None:
    """`works_missed_by_tenant` and `works_missed_by_slot` from the reports of visits (the
    staged foreign events; a done date is no visit report)."""
    f, o = FOREIGN_EVENTS, ORDERS
    visits = (
        sa.select(
            f.c.order_ref,
            f.c.at,
            sa.case((f.c.stage_rank == _integer(RANKS["tenant_absent"]), 1), else_=0).label(
                "missed"
            ),
        )
        .where(
            f.c.stage_rank.in_(tuple(_integer(RANKS[event]) for event in VISITS)),
            f.c.reference != f.c.order_ref,  # a real visit report, not a done date
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

WORKS_TABLES = (works_events, works_orders, works_missed_by_tenant, works_missed_by_slot)


@contextmanager
def _keyed_after(connection: sa.Connection) -> Iterator[None]:
    """PostgreSQL: the primary keys of works_events and of works_orders dropped for the block and
    built once after it (one sort instead of a B-tree kept up row by row: the 487,176 timeline
    rows the bench once stored went in for 1.9-2.0 CPU s with the key, 0.6-0.9 without it and
    0.9-1.0 to build it after), each when its table holds no more rows than the block brings it
    (`warehouse.reindexes`, the load's rule). Inside the transaction: a failure gets the keys
    back with the rollback, and readers of the tables wait for the commit (the lock of ALTER
    TABLE) instead of reading the old rows. The lock is taken without waiting (`_locked_now`):
    while another transaction uses the table (another landlord's refresh), the key stays and is
    kept up row by row, so that two refreshes never wait on each other. SQLite cannot drop a
    primary key: unchanged there."""
    if connection.dialect.name != "postgresql":
        yield
        return
    quote = connection.dialect.identifier_preparer.quote
    dropped = []
    for table, rows in _incoming(connection).items():
        if not reindexes(connection, table, rows) or not _locked_now(connection, table):
            continue
        name = sa.inspect(connection).get_pk_constraint(table.name)["name"]
        connection.execute(
            sa.text(f"ALTER TABLE {quote(table.name)} DROP CONSTRAINT {quote(name)}")
        )
        dropped.append((table, name))
    yield
    for table, name in dropped:
        columns = ", ".join(quote(column.name) for column in table.primary_key)
        connection.execute(
            sa.text(
                f"ALTER TABLE {quote(table.name)} ADD CONSTRAINT {quote(name)}"
                f" PRIMARY KEY ({columns})"
            )
        )


def _locked_now(connection: sa.Connection, table: sa.Table) -> bool:
    """PostgreSQL: `table` locked for this transaction alone (ACCESS EXCLUSIVE, what ALTER
    TABLE takes) if no other transaction holds a lock on it, without waiting; False, and the
    transaction still usable (a savepoint), if one does."""
    quote = connection.dialect.identifier_preparer.quote
    try:
        with connection.begin_nested():
            connection.execute(
                sa.text(f"LOCK TABLE {quote(table.name)} IN ACCESS EXCLUSIVE MODE NOWAIT")
            )
    except sa.exc.OperationalError as error:
        if getattr(error.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise
        return False
    return True


def _incoming(connection: sa.Connection) -> dict[sa.Table, int]:
    """The rows works_events and works_orders are about to receive, from the staged events:
    works_events' exactly, works_orders' at most (one per order with an event)."""
    orders = connection.execute(sa.select(sa.func.count()).select_from(ORDER_EVENTS)).scalar_one()
    foreign = connection.execute(
        sa.select(sa.func.count()).select_from(FOREIGN_EVENTS)
    ).scalar_one()
    return {works_events: int(foreign), works_orders: int(orders)}


# PostgreSQL's statistics target for the works' ANALYZEs: 10 rows of MCV and histogram per
# column from a sample of 3,000 rows (300 x the target) instead of 30,000 (the default 100)
WORKS_STATISTICS_TARGET = 10


@contextmanager
def _sampled_statistics(connection: sa.Connection) -> Iterator[None]:
    """PostgreSQL: the ANALYZEs of the block read a sample of `WORKS_STATISTICS_TARGET` x 300
    rows, then the setting is what it was. The work orders' and the staged events' ANALYZEs
    took 0.5-0.65 CPU s of the 200,000-order derive, under 0.05 so; the plans are the same
    (EXPLAIN, bench and random test data): they need row counts, null fractions, the few
    statuses and whether a key is unique, not fine histograms. SQLite's ANALYZE (index
    statistics only) is left alone."""
    if connection.dialect.name != "postgresql":
        yield
        return
    before = connection.execute(sa.text("SHOW default_statistics_target")).scalar_one()
    connection.execute(
        sa.text(f"SET LOCAL default_statistics_target = {WORKS_STATISTICS_TARGET:d}")
    )
    yield
    connection.execute(sa.text(f"SET LOCAL default_statistics_target = {int(before):d}"))


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
    # (on PostgreSQL it also sets work_mem for the per-order aggregate, see there); on a
    # sample (`_sampled_statistics`), as are those of the staged events
    with _sampled_statistics(connection):
        analyse(connection, ORDERS, QUOTES, COMMITMENTS, COMPLETIONS, INVOICES, outbox)
        # the events placed once, then read by each table (none of which is read back here:
        # no ANALYZE of them, PostgreSQL's autovacuum keeps their statistics)
        with (
            staged(connection, ORDER_EVENTS, _order_events(landlord_id, as_of)),
            staged(connection, FOREIGN_EVENTS, _foreign_events(landlord_id, as_of)),
        ):
            with _keyed_after(connection):
                _record_events(connection, landlord_id, as_of, run_id)
                _record_orders(connection, landlord_id, as_of, run_id, first_time_fix_days)
            _record_missed(connection, landlord_id, as_of, run_id)


# how the works tables are laid out, among their inputs: a warehouse migrated from another
# layout computes them again on its next run, even from unchanged data (schema 8: the orders'
# own events moved from the timeline's rows to works_orders' columns)
WORKS_LAYOUT = 2


def works_inputs(connection: sa.Connection, landlord_id: str, first_time_fix_days: int) -> str:
    """What the works tables are computed from: each input table's loads, the deliveries of
    the outbox, the first-time-fix window and the tables' layout (`computed_once` compares it
    with the last)."""
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
    settings = {"first_time_fix_days": first_time_fix_days, "layout": WORKS_LAYOUT}
    return json.dumps({**versions, **settings}, sort_keys=True)


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
    are the caller's. The events an order's own row never gives (quotes, deliveries,
    invoices) are read from works_events, the others from the timeline (the view); an order
    is open while it has no `completed` event: none of its visits had the tenant present."""
    t, w, o, i = works_events, works_orders, ORDERS, INVOICES
    mine = t.c.landlord_id == landlord_id
    open_order = w.c.visits == 0
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
    sent, invoiced = t.alias("sent"), t.alias("invoiced")
    restoring = works_timeline.alias("restoring")
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
