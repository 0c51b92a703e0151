"""Warehouse tables, derived from the canonical model (`schemas.canonical`).

One table per canonical entity, keyed on (`landlord_id`, the entity's own reference), plus the
hub's bookkeeping: `quarantine` (every rejected row), `load_runs` (one audit row per load,
blocked and failed ones included, with the reason), `source_state` (what was last loaded from
each source, so an unchanged source is skipped), `feed_cursors` (incremental watermarks),
`contract_results` (the last contract verdict per entity, which gates the push), and the push
side: `outbox` (every record to deliver, its state and the peer's answer) and `push_leases` (one
push per landlord at a time); insight's figures (`tenant_balances`, and `balance_states`: which
ledger loads the balances of a day were computed from, so an unchanged ledger is not summed again);
arrears (schema 7): `tenant_arrears` (each tenant's ageing, payments, rejections, plan, aid and
profile today), the ageing columns of `tenant_balances` (the history, one row per tenant per day),
`prevention_actions` (the actions of the profiles' scenarios, each due once) and `insight_states`
(what a day's arrears were computed from, so unchanged inputs are not computed again);
works tracking (schema 8): `works_events` (the events of an order read from the other tables and
the outbox), `works_orders` (each order's stage, SLA and delays, with the events its own row
gives), the view `works_timeline` (every event of every order: both together) and the missed
appointments (`works_missed_by_tenant`, `works_missed_by_slot`).
"""

from __future__ import annotations

import sqlalchemy as sa

from schemas.canonical import ENTITIES, ColumnType, EntitySpec

SCHEMA_VERSION = 8

metadata = sa.MetaData()
# the warehouse's views (`VIEWS`): read through these tables, created by `Warehouse.migrate`
views = sa.MetaData()

_SQL_TYPES: dict[ColumnType, sa.types.TypeEngine] = {
    ColumnType.TEXT: sa.Text(),
    ColumnType.CHOICE: sa.String(32),
    ColumnType.CENTS: sa.BigInteger(),
    ColumnType.INTEGER: sa.Integer(),
    ColumnType.DATE: sa.Date(),
    ColumnType.DATETIME: sa.DateTime(timezone=True),
    ColumnType.BOOLEAN: sa.Boolean(),
}

LANDLORD_ID = sa.String(64)
KEY = sa.String(128)
RUN_ID = sa.String(64)
SHA = sa.String(64)  # SHA-256 hex digests: datafix versions, source fingerprints, payload hashes
TIMESTAMP = sa.DateTime(timezone=True)


def _required(column_type: sa.types.TypeEngine, *names: str) -> list[sa.Column]:
    """Columns of one type that every row fills."""
    return [sa.Column(name, column_type, nullable=False) for name in names]


def _written(at: str) -> list[sa.Column]:
    """The run that last wrote the row, and when (column `at`)."""
    return [sa.Column("run_id", RUN_ID, nullable=False), sa.Column(at, TIMESTAMP, nullable=False)]


def _landlord_entity_key() -> list[sa.Column]:
    """The key of a bookkeeping row kept per landlord and entity."""
    return [
        sa.Column("landlord_id", LANDLORD_ID, primary_key=True),
        sa.Column("entity", sa.String(32), primary_key=True),
    ]


def _canonical_table(spec: EntitySpec) -> sa.Table:
    columns = [
        sa.Column("landlord_id", LANDLORD_ID, primary_key=True),
        sa.Column(spec.key, KEY, primary_key=True),
    ]
    columns += [
        sa.Column(column.name, _SQL_TYPES[column.type], nullable=not column.required)
        for column in spec.columns
        if column.name != spec.key
    ]
    columns += [
        sa.Column("source_name", sa.String(128), nullable=False),
        sa.Column("source_row", sa.Text(), nullable=False),
        sa.Column("datafix_sha", SHA, nullable=False),
        sa.Column("run_id", RUN_ID, nullable=False),
        sa.Column("loaded_at", TIMESTAMP, nullable=False),
        sa.Column("row_hash", sa.BigInteger(), nullable=False),
        sa.Column("deleted_at", TIMESTAMP, nullable=True),
    ]
    return sa.Table(spec.name, metadata, *columns, comment=spec.description)


CANONICAL_TABLES: dict[str, sa.Table] = {
    name: _canonical_table(spec) for name, spec in ENTITIES.items()
}

# Covers the balances' GROUP BY (pipelines/lib/insight.py): the sum per tenant is read from the
# index alone. Measured on the 1M-line bench ledger (SQLite): the GROUP BY 3.6-4.8 s through a
# (landlord_id, tenant_ref) index (a table lookup per entry) -> 0.2 s; building the index after
# the first bulk load 1.6 s -> 2.6 s.
_LEDGER = CANONICAL_TABLES["ledger_entries"]
sa.Index("ix_ledger_entries_tenant", _LEDGER.c.landlord_id, _LEDGER.c.tenant_ref,
         _LEDGER.c.entry_date, _LEDGER.c.amount_cents, _LEDGER.c.deleted_at)  # fmt: skip

quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("landlord_id", LANDLORD_ID, nullable=False),
    sa.Column("entity", sa.String(32), nullable=False),
    sa.Column("source_name", sa.String(128), nullable=False),
    sa.Column("source_row", sa.Text(), nullable=False),
    sa.Column("raw", sa.Text(), nullable=False, comment="The raw source values, as JSON."),
    sa.Column("raw_hash", sa.String(32), nullable=False),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("message", sa.Text(), nullable=False),
    sa.Column("first_run_id", RUN_ID, nullable=False),
    sa.Column("run_id", RUN_ID, nullable=False, comment="Last run that rejected it."),
    sa.Column("first_seen_at", TIMESTAMP, nullable=False),
    sa.Column("last_seen_at", TIMESTAMP, nullable=False),
    sa.Column(
        "resolved_at",
        TIMESTAMP,
        nullable=True,
        comment="Set when a later load no longer rejects the row (fixed at the source).",
    ),
    sa.UniqueConstraint(
        "landlord_id", "entity", "source_row", "raw_hash", name="uq_quarantine_row"
    ),
    comment="Every rejected row, with the reason and a message a person can act on.",
)

load_runs = sa.Table(
    "load_runs",
    metadata,
    sa.Column("run_id", RUN_ID, primary_key=True),
    *_landlord_entity_key(),
    sa.Column("source_name", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, comment="loaded, blocked or failed."),
    sa.Column("reason", sa.Text(), nullable=True, comment="Why a load was blocked or failed."),
    sa.Column(
        "warnings",
        sa.Text(),
        nullable=True,
        comment="JSON: row rule set to `warn` → rows loaded though they break it.",
    ),
    *_required(sa.Integer(), "rows_in_source", "skipped", "read", "loaded"),
    *_required(sa.Integer(), "inserted", "updated", "unchanged", "deleted", "quarantined"),
    *_required(SHA, "fingerprint", "datafix_sha"),
    sa.Column("finished_at", TIMESTAMP, nullable=False),
    comment="One audit row per load of one landlord's entity, blocked and failed ones included.",
)
# what insight's balances are computed from (pipelines/lib/insight.py: the loads of a ledger)
sa.Index("ix_load_runs_entity", load_runs.c.landlord_id, load_runs.c.entity)

source_state = sa.Table(
    "source_state",
    metadata,
    *_landlord_entity_key(),
    sa.Column("source_name", sa.String(128), nullable=False),
    *_required(SHA, "fingerprint", "datafix_sha"),
    *_written("loaded_at"),
    comment="What was last loaded for each landlord's entity: an unchanged source is skipped.",
)

feed_cursors = sa.Table(
    "feed_cursors",
    metadata,
    *_landlord_entity_key(),
    sa.Column(
        "feed",
        sa.String(128),
        primary_key=True,
        comment="The feed read incrementally: its source's name (`classeur[Rejets]` for a sheet).",
    ),
    sa.Column("cursor_column", sa.String(128), nullable=False),
    sa.Column("cursor_value", sa.Text(), nullable=False),
    sa.Column("key_columns", sa.Text(), nullable=False, comment="JSON list of column names."),
    sa.Column("key_values", sa.Text(), nullable=False, comment="JSON list: the last row's key."),
    sa.Column(
        "value_kinds",
        sa.Text(),
        nullable=True,
        comment="JSON list: the kind of the cursor value and of each key value (timestamptz,"
        " timestamp, date, integer, decimal, text), bound as that type by the next pull; NULL"
        " when unknown (kept before kinds were, or set by hand).",
    ),
    *_written("updated_at"),
    comment="Watermarks of incremental feeds, one per landlord, entity and feed: advanced in the"
    " same transaction as the load.",
)

# Schema 4 and earlier kept one watermark per entity here; `Warehouse.migrate` copies its rows
# into `feed_cursors` once. Not in `metadata`: a new warehouse never has it.
legacy_source_cursors = sa.Table(
    "source_cursors",
    sa.MetaData(),
    *_landlord_entity_key(),
    *_required(sa.String(128), "source_name", "cursor_column"),
    sa.Column("cursor_value", sa.Text(), nullable=False),
    sa.Column("key_columns", sa.Text(), nullable=False),
    sa.Column("key_values", sa.Text(), nullable=False),
    *_written("updated_at"),
)

hub_schema = sa.Table(
    "hub_schema",
    metadata,
    sa.Column("version", sa.Integer(), primary_key=True),
    sa.Column("applied_at", TIMESTAMP, nullable=False),
    comment="Schema versions the hub has applied to this warehouse.",
)

contract_results = sa.Table(
    "contract_results",
    metadata,
    *_landlord_entity_key(),
    sa.Column("passed", sa.Boolean(), nullable=False),
    sa.Column("summary", sa.Text(), nullable=False),
    *_written("checked_at"),
    comment="The last contract verdict on each landlord's entity: a failed one holds the push.",
)

OUTBOX_STATES = ("pending", "sending", "sent", "failed", "dead")

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("landlord_id", LANDLORD_ID, primary_key=True),
    sa.Column("sink", sa.String(64), primary_key=True, comment="The sink's name in the datafix."),
    sa.Column("record_key", KEY, primary_key=True, comment="The record's natural key."),
    sa.Column("entity", sa.String(32), nullable=False, comment="commitments, invoices, …"),
    sa.Column("sink_kind", sa.String(32), nullable=False),
    sa.Column("state", sa.String(16), nullable=False, comment=", ".join(OUTBOX_STATES)),
    sa.Column("version", sa.Integer(), nullable=False, comment="Bumped when the payload changes."),
    sa.Column("payload", sa.Text(), nullable=False, comment="The mapped record, as JSON."),
    sa.Column("payload_hash", SHA, nullable=False),
    sa.Column(
        "idempotency_key",
        sa.String(64),
        nullable=False,
        comment="Stable per version: a resend after a crash is recognised by the peer.",
    ),
    sa.Column("source_rows", sa.Text(), nullable=False, comment="The canonical rows it came from."),
    sa.Column("attempts", sa.Integer(), nullable=False, comment="Deliveries tried, this version."),
    sa.Column("last_error", sa.Text(), nullable=True, comment="The peer's message, as it said it."),
    sa.Column("next_attempt_at", TIMESTAMP, nullable=True),
    sa.Column("claimed_by", RUN_ID, nullable=True, comment="Run sending it (`sending`)."),
    sa.Column("peer_id", sa.String(128), nullable=True, comment="The id the peer gave it."),
    sa.Column("sent_hash", SHA, nullable=True, comment="Hash of the payload last sent."),
    sa.Column("sent_payload", sa.Text(), nullable=True, comment="The payload last sent."),
    sa.Column("sent_at", TIMESTAMP, nullable=True),
    sa.Column("enqueued_run_id", RUN_ID, nullable=False),
    sa.Column("updated_at", TIMESTAMP, nullable=False),
    comment="Every record to push: only a changed payload is queued; states pending → sending →"
    " sent, or failed (retried) or dead (refused for good, kept with the peer's message).",
)
sa.Index("ix_outbox_state", outbox.c.landlord_id, outbox.c.sink, outbox.c.state)

push_leases = sa.Table(
    "push_leases",
    metadata,
    sa.Column("landlord_id", LANDLORD_ID, primary_key=True),
    sa.Column("holder", RUN_ID, nullable=False, comment="The run pushing."),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer(), nullable=False),
    sa.Column("renewed_at", TIMESTAMP, nullable=False),
    comment="One push per landlord at a time; a lease whose process died is taken over.",
)

run_locks = sa.Table(
    "run_locks",
    metadata,
    sa.Column("landlord_id", LANDLORD_ID, primary_key=True),
    sa.Column("run_id", RUN_ID, nullable=False, comment="The Dagster run holding the landlord."),
    sa.Column("pid", sa.Integer(), nullable=False),
    sa.Column(
        "process_started",
        sa.Float(),
        nullable=False,
        comment="When the holding process started (epoch seconds): a reused pid is not it.",
    ),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("since", TIMESTAMP, nullable=False),
    comment="One run per landlord at a time (pipelines/lib/runlock.py). On SQLite this row is the"
    " lock, taken over when its process is gone; on PostgreSQL an advisory lock is, and the row"
    " names its holder.",
)

# -- arrears (schema 7, pipelines/lib/arrears.py) ---------------------------------------------
# the debt split by age (days since each unpaid debit fell due), oldest unpaid debit first
AGEING_BUCKETS: dict[str, tuple[int, int | None]] = {
    "debt_0_30_cents": (0, 30),
    "debt_31_60_cents": (31, 60),
    "debt_61_90_cents": (61, 90),
    "debt_91_180_cents": (91, 180),
    "debt_over_180_cents": (181, None),
}
AGEING_COLUMNS = tuple(AGEING_BUCKETS)
PLAN_STATUSES = ("on_track", "late", "broken", "completed")

tenant_arrears = sa.Table(
    "tenant_arrears",
    metadata,
    sa.Column("landlord_id", LANDLORD_ID, primary_key=True),
    sa.Column("tenant_ref", KEY, primary_key=True),
    sa.Column("as_of", sa.Date(), nullable=False, comment="The day computed (Paris)."),
    sa.Column("balance_cents", sa.BigInteger(), nullable=False, comment="> 0: the tenant owes."),
    *[sa.Column(name, sa.BigInteger(), nullable=False) for name in AGEING_COLUMNS],
    sa.Column(
        "oldest_unpaid_date",
        sa.Date(),
        nullable=True,
        comment="Due date (else posting date) of the oldest debit not paid off.",
    ),
    sa.Column("monthly_rent_cents", sa.BigInteger(), nullable=True, comment="Last rent called."),
    sa.Column(
        "months_owed", sa.Integer(), nullable=False, comment="Whole months of rent owed (floor)."
    ),
    sa.Column("last_payment_date", sa.Date(), nullable=True),
    sa.Column("last_payment_method", sa.String(32), nullable=True),
    sa.Column("rejects_90d", sa.Integer(), nullable=False, comment="Rejected debits, 90 days."),
    sa.Column("rejects_365d", sa.Integer(), nullable=False, comment="Rejected debits, a year."),
    sa.Column(
        "reject_reasons", sa.String(128), nullable=True, comment="SEPA codes of the 90 days."
    ),
    sa.Column("plan_ref", KEY, nullable=True, comment="The tenant's latest repayment plan."),
    sa.Column("plan_status", sa.String(16), nullable=True, comment=", ".join(PLAN_STATUSES)),
    sa.Column("plan_missed", sa.Integer(), nullable=False, comment="Instalments due, unpaid."),
    sa.Column("housing_aid_90d_cents", sa.BigInteger(), nullable=False, comment="Aid received."),
    sa.Column(
        "debt_days_90d", sa.Integer(), nullable=False, comment="Days in debt of the last 90."
    ),
    sa.Column("profile", sa.String(64), nullable=False),
    sa.Column("profile_rule", sa.Text(), nullable=False, comment="The rule that placed it."),
    sa.Column("run_id", RUN_ID, nullable=False),
    comment="Each tenant's arrears today: balance, ageing (oldest unpaid debit first), months"
    " owed, last payment, rejected debits, repayment plan, housing aid and profile.",
)

prevention_actions = sa.Table(
    "prevention_actions",
    metadata,
    sa.Column("landlord_id", LANDLORD_ID, primary_key=True),
    sa.Column(
        "action_key",
        KEY,
        primary_key=True,
        comment="tenant:profile:step:opened_on — stable: the action is due once.",
    ),
    sa.Column("tenant_ref", KEY, nullable=False),
    sa.Column("profile", sa.String(64), nullable=False),
    sa.Column("step", sa.String(64), nullable=False),
    sa.Column("action", sa.String(32), nullable=False, comment="reminder, sms, call, letter …"),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("template", sa.String(128), nullable=False),
    sa.Column("opened_on", sa.Date(), nullable=False),
    sa.Column("due_date", sa.Date(), nullable=False),
    sa.Column("balance_cents", sa.BigInteger(), nullable=False, comment="Balance when opened."),
    sa.Column("status", sa.String(16), nullable=False, comment="open or closed."),
    sa.Column("closed_on", sa.Date(), nullable=True),
    sa.Column("closed_reason", sa.String(32), nullable=True, comment="balance_cleared, …"),
    sa.Column("run_id", RUN_ID, nullable=False, comment="The run that last changed it."),
    comment="Prevention actions of the profiles' scenarios: created once, closed when the"
    " balance clears (or the tenant leaves the profile); pushed through the outbox.",
)
sa.Index(
    "ix_prevention_actions_tenant",
    prevention_actions.c.landlord_id,
    prevention_actions.c.tenant_ref,
    prevention_actions.c.status,
)

insight_states = sa.Table(
    "insight_states",
    metadata,
    sa.Column("landlord_id", LANDLORD_ID, primary_key=True),
    sa.Column("step", sa.String(32), primary_key=True, comment="arrears, …"),
    sa.Column("as_of", sa.Date(), nullable=False),
    sa.Column("inputs", sa.Text(), nullable=False, comment="The inputs' versions, as JSON."),
    *_written("computed_at"),
    comment="What an insight step last computed from: unchanged inputs on the same day are not"
    " computed again.",
)

tenant_balances = sa.Table(
    "tenant_balances",
    metadata,
    sa.Column("landlord_id", LANDLORD_ID, primary_key=True),
    sa.Column("tenant_ref", KEY, primary_key=True),
    sa.Column("as_of", sa.Date(), primary_key=True),
    sa.Column("balance_cents", sa.BigInteger(), nullable=False, comment="> 0: the tenant owes."),
    sa.Column("run_id", RUN_ID, nullable=False),
    # schema 7: the day's ageing and plan status, so a trend (and "broken this week") is read
    # from the history; NULL on the rows written before
    *[sa.Column(name, sa.BigInteger(), nullable=True) for name in AGEING_COLUMNS],
    sa.Column("plan_status", sa.String(16), nullable=True),
    sa.Column("profile", sa.String(64), nullable=True),
    comment="Each tenant's balance on a date: the sum of their live ledger entries up to it;"
    " with the arrears (schema 7), the debt's ageing, plan status and profile that day.",
)
sa.Index("ix_tenant_balances_day", tenant_balances.c.landlord_id, tenant_balances.c.as_of)

balance_states = sa.Table(
    "balance_states",
    metadata,
    sa.Column("landlord_id", LANDLORD_ID, primary_key=True),
    sa.Column("as_of", sa.Date(), primary_key=True),
    sa.Column(
        "ledger_loads",
        sa.Integer(),
        nullable=False,
        comment="How many loads had written the landlord's ledger (`load_runs` rows, `loaded` or"
        " `requeued`) when the balances were computed.",
    ),
    sa.Column(
        "ledger_run_id",
        RUN_ID,
        nullable=True,
        comment="The last of those loads (None: the ledger was never loaded).",
    ),
    *_written("computed_at"),
    comment="What the balances of a landlord's day (`tenant_balances`) were computed from: while"
    " no load wrote the ledger since, they are not computed again.",
)

# --- Works tracking (pipelines/lib/works.py) ---------------------------------------------------
# Each table holds the landlord's latest computation (replaced whole at every run, in one
# transaction), stamped with the run and the as-of date (the Paris day it was computed for).

WORKS_EVENTS: tuple[str, ...] = (
    "ordered", "quote_sent", "quote_accepted", "commitment_raised", "commitment_sent",
    "appointment", "tenant_absent", "completed", "signed", "invoiced", "invoice_sent", "paid",
)  # fmt: skip
SLA_STATUSES: tuple[str, ...] = ("met", "missed", "pending", "no_term")


def _works_stamp() -> list[sa.Column]:
    return [
        sa.Column("as_of", sa.Date(), nullable=False, comment="The Paris day computed for."),
        sa.Column("run_id", RUN_ID, nullable=False),
    ]


# The events an order's own row gives (its placing, its planned date, its done date when no
# report of a visit with the tenant present exists) are columns of `works_orders` (`<event>_at`,
# `<event>_date`); the others, any number per order, rows of `works_events`; the view
# `works_timeline` lists both (the bench's 200,000 orders give 487,176 events, of which
# every one came from the order's row: writing them a second time cost more than the load)
WORKS_OWN_EVENTS: tuple[str, ...] = ("ordered", "appointment", "completed")


def _timeline_columns(*, key: bool) -> list[sa.Column]:
    """The columns of a timeline's rows (`works_events`, the view `works_timeline`)."""
    return [
        sa.Column("landlord_id", LANDLORD_ID, primary_key=key),
        sa.Column("order_ref", KEY, primary_key=key),
        sa.Column("event", sa.String(32), primary_key=key, comment=", ".join(WORKS_EVENTS)),
        sa.Column(
            "reference",
            KEY,
            primary_key=key,
            comment="The row the event comes from: quote, commitment, completion or invoice"
            " reference (the order's own for ordered, appointment and a completion known by"
            " date).",
        ),
        sa.Column(
            "stage_rank", sa.Integer(), nullable=False, comment="The event's place, 1 = ordered."
        ),
        sa.Column("event_at", TIMESTAMP, nullable=False, comment="When it happened (UTC)."),
        sa.Column("event_date", sa.Date(), nullable=False, comment="Its day in Paris."),
        *_works_stamp(),
    ]


works_events = sa.Table(
    "works_events",
    metadata,
    *_timeline_columns(key=True),
    comment="The events of each works order that its own row does not give, up to the as-of"
    " day: quotes, commitments and their deliveries (push outbox), completion reports, invoices"
    " and their deliveries. The whole timeline is the view `works_timeline`.",
)

works_orders = sa.Table(
    "works_orders",
    metadata,
    sa.Column("landlord_id", LANDLORD_ID, primary_key=True),
    sa.Column("order_ref", KEY, primary_key=True),
    sa.Column("contractor", sa.Text(), nullable=True),
    sa.Column("category", sa.String(32), nullable=False),
    sa.Column("dwelling_ref", sa.Text(), nullable=True),
    sa.Column("cancelled", sa.Boolean(), nullable=False),
    sa.Column("current_stage", sa.String(32), nullable=False, comment="The furthest event."),
    sa.Column("stage_date", sa.Date(), nullable=False, comment="Paris day the stage began."),
    sa.Column("days_in_stage", sa.Integer(), nullable=False),
    sa.Column("visits", sa.Integer(), nullable=False, comment="Visits with the tenant present."),
    sa.Column("absences", sa.Integer(), nullable=False, comment="Visits the tenant missed."),
    sa.Column(
        "excused_hours",
        sa.Float(),
        nullable=False,
        comment="Time from each missed"
        " appointment (before restoration) to the next visit: not the contractor's.",
    ),
    sa.Column("gti_hours", sa.Integer(), nullable=True),
    sa.Column("gti_elapsed_hours", sa.Float(), nullable=True, comment="Order → first visit."),
    sa.Column("gti_status", sa.String(16), nullable=False, comment=", ".join(SLA_STATUSES)),
    sa.Column("gtr_hours", sa.Integer(), nullable=True),
    sa.Column(
        "gtr_elapsed_hours",
        sa.Float(),
        nullable=True,
        comment="Order → restored (or → end of the as-of day while open), less excused_hours.",
    ),
    sa.Column("gtr_status", sa.String(16), nullable=False, comment=", ".join(SLA_STATUSES)),
    sa.Column(
        "first_time_fix",
        sa.Boolean(),
        nullable=True,
        comment="Restored at one visit and no new order for the dwelling and category within"
        " the window; None while not restored or the window is open.",
    ),
    sa.Column(
        "commitment_lag_days",
        sa.Integer(),
        nullable=True,
        comment="Last quote accepted → commitment delivered on or after it.",
    ),
    sa.Column(
        "invoice_delay_days",
        sa.Integer(),
        nullable=True,
        comment="Restored → first invoice issued.",
    ),
    sa.Column(
        "invoice_sent_delay_days",
        sa.Integer(),
        nullable=True,
        comment="Restored → first invoice delivered (to Sage).",
    ),
    *(
        column
        for event in WORKS_OWN_EVENTS
        for column in (
            sa.Column(
                f"{event}_at",
                TIMESTAMP,
                nullable=True,
                comment=f"The order's own `{event}` event (UTC), as in the timeline;"
                " None when it has none by the end of the as-of day.",
            ),
            sa.Column(f"{event}_date", sa.Date(), nullable=True, comment="Its day in Paris."),
        )
    ),
    *_works_stamp(),
    comment="Each works order today: stage and days in it, GTI/GTR met or missed, first-time fix,"
    " commitment lag, invoice delay.",
)

works_missed_by_tenant = sa.Table(
    "works_missed_by_tenant",
    metadata,
    sa.Column("landlord_id", LANDLORD_ID, primary_key=True),
    sa.Column("household", KEY, primary_key=True, comment="tenant_ref, else dwelling_ref."),
    sa.Column("tenant_ref", KEY, nullable=True),
    sa.Column("dwelling_ref", sa.Text(), nullable=True),
    *_required(sa.Integer(), "appointments", "missed"),
    *_works_stamp(),
    comment="Missed appointments per tenant (per dwelling when orders name no tenant): households"
    " with at least one missed visit.",
)

works_missed_by_slot = sa.Table(
    "works_missed_by_slot",
    metadata,
    sa.Column("landlord_id", LANDLORD_ID, primary_key=True),
    sa.Column("weekday", sa.Integer(), primary_key=True, comment="0 = Monday … 6 = Sunday."),
    sa.Column("slot", sa.String(8), primary_key=True, comment="Two Paris hours: `08-10` …"),
    *_required(sa.Integer(), "appointments", "missed"),
    *_works_stamp(),
    comment="Visits and missed appointments per weekday and two-hour slot (Paris time).",
)


# --- Views (created by `Warehouse.migrate`, from these SELECTs) -----------------------------

works_timeline = sa.Table(
    "works_timeline",
    views,
    *_timeline_columns(key=False),
    comment="Each works order's timeline, like a parcel's: one row per event up to the as-of"
    " day, from the canonical tables and the push outbox (deliveries): a view of the events of"
    " the orders' own rows (`works_orders`) and of the others (`works_events`).",
)


def _works_timeline_select() -> sa.Select:
    """`works_timeline`: each own event of `works_orders` that happened, then `works_events`
    (the same statement on SQLite and PostgreSQL)."""
    w = works_orders
    own = [
        sa.select(
            w.c.landlord_id,
            w.c.order_ref,
            sa.cast(sa.literal_column(f"'{event}'"), sa.String(32)).label("event"),
            w.c.order_ref.label("reference"),
            sa.literal_column(str(WORKS_EVENTS.index(event) + 1), sa.Integer()).label("stage_rank"),
            w.c[f"{event}_at"].label("event_at"),
            w.c[f"{event}_date"].label("event_date"),
            w.c.as_of,
            w.c.run_id,
        ).where(w.c[f"{event}_at"].is_not(None))
        for event in WORKS_OWN_EVENTS
    ]
    e = works_events
    return sa.union_all(*own, sa.select(*(e.c[column.name] for column in works_timeline.c)))


# each view and its SELECT, in the order they are created
VIEWS: dict[sa.Table, sa.Select | sa.CompoundSelect] = {works_timeline: _works_timeline_select()}
