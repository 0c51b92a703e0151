"""A landlord's health as the operators' console shows it: set-based reads of the warehouse's
own bookkeeping (`load_runs`, `source_state`, `contract_results`, `quarantine`, `outbox`), the
same SQL on SQLite and PostgreSQL, no Dagster.

What an entity *is* this morning does not depend on whether last night's run read it: an
unchanged source keeps the counts and the contract verdict of the load that wrote what the
warehouse holds (`source_state.run_id`), and says since when. Quarantined rows and dead letters
are shown with their reasons and a few rows whose personal cells stay masked: the quarantine's
sealed cells (`pipelines.lib.personal`) are never opened here, and a dead letter's payload is
not shown at all (the peer's message and the canonical rows it came from are).

The insight alerts (arrears and works) are judged here once, by the functions their asset
checks use (`arrears_alerts`, `works_alerts` + `judge`), for the landlord's health and for the
morning report alike: an alert at its *error* threshold makes the landlord unhealthy, one at its
*warning* threshold is listed as open without changing the verdict (the alert's own check
already warns).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa

from pipelines.lib.arrears import arrears_alerts
from pipelines.lib.datafixes import LoadedDatafix
from pipelines.lib.personal import SEALED_PREFIX
from pipelines.lib.push import sinks_sending
from pipelines.lib.works import WORKS_ALERTS, judge, works_alerts, works_as_of
from schemas.tables import (
    contract_results,
    load_runs,
    outbox,
    quarantine,
    source_state,
    tenant_arrears,
)

__all__ = [
    "EntityHealth",
    "InsightAlert",
    "LandlordHealth",
    "SinkHealth",
    "dead_letter_reasons",
    "dead_letter_sample",
    "entity_health",
    "insight_alerts",
    "landlord_health",
    "latest_loads",
    "masked_raw",
    "quarantine_reasons",
    "quarantine_sample",
]

MASK = "•••"


@dataclass(frozen=True)
class EntityHealth:
    """One entity of one landlord as the warehouse holds it: its latest load (blocked and failed
    ones included), the load that wrote its current data, the contract verdict and the open
    quarantine."""

    entity: str
    status: str  # loaded, blocked, failed, never loaded, not configured
    run_id: str = ""  # the latest load's run
    finished_at: dt.datetime | None = None
    reason: str = ""  # why the latest load was blocked or failed
    read: int = 0
    loaded: int = 0
    quarantined: int = 0
    skipped: int = 0
    data_run_id: str = ""  # the load that wrote what the warehouse holds (source_state)
    data_loaded_at: dt.datetime | None = None
    contract: str = "-"  # passed, FAILED, - (never checked)
    contract_summary: str = ""
    open_quarantine: int = 0

    @property
    def healthy(self) -> bool:
        """Loaded (or not configured) and its contract not failed."""
        return self.status in ("loaded", "not configured") and self.contract != "FAILED"

    def age_hours(self, now: dt.datetime) -> float | None:
        """Hours since the warehouse's data of this entity was loaded (None: never)."""
        if self.data_loaded_at is None:
            return None
        return round((now - _aware(self.data_loaded_at)).total_seconds() / 3600, 1)


@dataclass(frozen=True)
class SinkHealth:
    """One sink of one landlord: its outbox records per state."""

    sink: str
    states: dict[str, int] = field(default_factory=dict)  # pending, sending, sent, failed, dead

    @property
    def dead(self) -> int:
        return self.states.get("dead", 0)

    @property
    def failed(self) -> int:
        return self.states.get("failed", 0)

    @property
    def healthy(self) -> bool:
        """No dead letter and no record failing."""
        return not self.dead and not self.failed


@dataclass(frozen=True)
class LandlordHealth:
    """Every entity the datafix maps and every sink it pushes to."""

    landlord_id: str
    entities: list[EntityHealth]
    sinks: list[SinkHealth]

    @property
    def problems(self) -> list[str]:
        """One line per part that is not healthy (empty: the landlord is healthy)."""
        lines = []
        for entity in self.entities:
            if entity.healthy:
                continue
            if entity.contract == "FAILED":
                lines.append(f"{entity.entity}: contract FAILED: {entity.contract_summary}")
            else:
                why = f": {entity.reason}" if entity.reason else ""
                lines.append(f"{entity.entity}: {entity.status}{why}")
        for sink in self.sinks:
            if sink.dead:
                lines.append(f"sink {sink.sink}: {sink.dead} dead letter(s)")
            if sink.failed:
                lines.append(f"sink {sink.sink}: {sink.failed} record(s) failing")
        return lines


def entity_health(
    connection: sa.Connection, landlord_id: str, entities: Iterable[str]
) -> list[EntityHealth]:
    """The health of `entities` (the ones the datafix maps), in that order: five set-based
    queries, whatever the number of entities."""
    wanted = list(entities)
    latest = latest_loads(connection, landlord_id)
    data = {
        row.entity: row
        for row in connection.execute(
            sa.select(source_state.c.entity, source_state.c.run_id, source_state.c.loaded_at).where(
                source_state.c.landlord_id == landlord_id
            )
        )
    }
    verdicts = {
        row.entity: row
        for row in connection.execute(
            sa.select(
                contract_results.c.entity, contract_results.c.passed, contract_results.c.summary
            ).where(contract_results.c.landlord_id == landlord_id)
        )
    }
    waiting = {
        entity: sum(count for _, count in reasons)
        for entity, reasons in quarantine_reasons(connection, landlord_id).items()
    }
    found = []
    for entity in wanted:
        last = latest.get(entity)
        written = data.get(entity)
        verdict = verdicts.get(entity)
        found.append(
            EntityHealth(
                entity=entity,
                status=last.status if last is not None else "never loaded",
                run_id=last.run_id if last is not None else "",
                finished_at=last.finished_at if last is not None else None,
                reason=(last.reason or "") if last is not None else "",
                read=last.read if last is not None else 0,
                loaded=last.loaded if last is not None else 0,
                quarantined=last.quarantined if last is not None else 0,
                skipped=last.skipped if last is not None else 0,
                data_run_id=written.run_id if written is not None else "",
                data_loaded_at=written.loaded_at if written is not None else None,
                contract="-" if verdict is None else ("passed" if verdict.passed else "FAILED"),
                contract_summary=verdict.summary if verdict is not None else "",
                open_quarantine=waiting.get(entity, 0),
            )
        )
    return found


def landlord_health(
    connection: sa.Connection, landlord_id: str, entities: Iterable[str], sinks: Iterable[str]
) -> LandlordHealth:
    """The landlord's entities and sinks (only those its datafix names)."""
    states: dict[str, dict[str, int]] = {sink: {} for sink in sinks}
    rows = connection.execute(
        sa.select(outbox.c.sink, outbox.c.state, sa.func.count())
        .where(outbox.c.landlord_id == landlord_id)
        .group_by(outbox.c.sink, outbox.c.state)
    )
    for sink, state, count in rows:
        if sink in states:
            states[sink][state] = int(count)
    return LandlordHealth(
        landlord_id,
        entity_health(connection, landlord_id, entities),
        [SinkHealth(sink, found) for sink, found in states.items()],
    )


@dataclass(frozen=True)
class InsightAlert:
    """One insight alert of the landlord as its asset check judges it: its level against the
    datafix's thresholds and the keys it lists (at the warning threshold or past it)."""

    family: str  # arrears, works
    name: str
    level: str  # error, warning, ok
    keys: list[str] = field(default_factory=list)

    @property
    def open(self) -> bool:
        """At its warning threshold or past it."""
        return self.level != "ok"

    def which(self, shown: int = 15) -> str:
        """`A, B, C` (the first `shown` keys, then how many more)."""
        more = f" … and {len(self.keys) - shown} more" if len(self.keys) > shown else ""
        return ", ".join(self.keys[:shown]) + more

    def line(self, shown: int = 15) -> str:
        """`name (error): 3 key(s): A, B, C`."""
        return f"{self.name} ({self.level}): {len(self.keys)} key(s): {self.which(shown)}"


def insight_alerts(
    connection: sa.Connection, loaded: LoadedDatafix
) -> dict[str, list[InsightAlert] | None]:
    """The landlord's arrears and works alerts (family → alerts, in the checks' order; None
    while that insight was never computed for the landlord), judged like their asset checks:
    the arrears by `arrears_alerts`, the works by `works_alerts` on the day the works tables
    were computed and `judge` (a works key is shown as `key (days late d)`)."""
    landlord_id = loaded.landlord_id
    found: dict[str, list[InsightAlert] | None] = {"arrears": None, "works": None}
    computed = connection.execute(
        sa.select(sa.func.count()).where(tenant_arrears.c.landlord_id == landlord_id)
    ).scalar()
    if computed:
        found["arrears"] = [
            InsightAlert("arrears", alert.name, alert.level, alert.listed)
            for alert in arrears_alerts(connection, landlord_id, loaded.datafix.arrears.alerts)
        ]
    day = works_as_of(connection, landlord_id)
    if day is not None:
        keys = works_alerts(
            connection,
            landlord_id,
            day,
            pushes_commitments=bool(sinks_sending(loaded, "commitments")),
        )
        found["works"] = []
        for name in WORKS_ALERTS:
            listed, error = judge(getattr(loaded.datafix.works.alerts, name), keys[name])
            level = "error" if error else ("warning" if listed else "ok")
            shown = [f"{key.key} ({key.days} d)" for key in listed]
            found["works"].append(InsightAlert("works", name, level, shown))
    return found


def alert_problems(alerts: dict[str, list[InsightAlert] | None]) -> list[str]:
    """One problem line per alert at its error threshold (warnings are not problems)."""
    return [
        f"{alert.family} alert {alert.line(5)}"
        for judged in alerts.values()
        for alert in judged or []
        if alert.level == "error"
    ]


def latest_loads(connection: sa.Connection, landlord_id: str) -> dict[str, sa.Row]:
    """The latest `load_runs` row of each entity of the landlord (requeues included)."""
    newest = (
        sa.select(load_runs.c.entity, sa.func.max(load_runs.c.finished_at).label("at"))
        .where(load_runs.c.landlord_id == landlord_id)
        .group_by(load_runs.c.entity)
        .subquery()
    )
    rows = connection.execute(
        sa.select(load_runs)
        .join(
            newest,
            (load_runs.c.entity == newest.c.entity) & (load_runs.c.finished_at == newest.c.at),
        )
        .where(load_runs.c.landlord_id == landlord_id)
    )
    return {row.entity: row for row in rows}


def last_data_load(connection: sa.Connection, landlord_id: str, entity: str) -> sa.Row | None:
    """The `load_runs` row of the load that wrote what the warehouse holds of `entity` (the run
    `source_state` names), None when it was never loaded."""
    return connection.execute(
        sa.select(load_runs)
        .join(
            source_state,
            (load_runs.c.run_id == source_state.c.run_id)
            & (load_runs.c.landlord_id == source_state.c.landlord_id)
            & (load_runs.c.entity == source_state.c.entity),
        )
        .where(source_state.c.landlord_id == landlord_id, source_state.c.entity == entity)
    ).first()


def contract_verdict(connection: sa.Connection, landlord_id: str, entity: str) -> sa.Row | None:
    """The last contract verdict on `entity` (passed, summary, run_id, checked_at)."""
    return connection.execute(
        sa.select(contract_results).where(
            contract_results.c.landlord_id == landlord_id, contract_results.c.entity == entity
        )
    ).first()


def quarantine_reasons(
    connection: sa.Connection, landlord_id: str, entity: str | None = None
) -> dict[str, list[tuple[str, int]]]:
    """Entity → (reason, open rows), most rows first."""
    scope = [quarantine.c.landlord_id == landlord_id, quarantine.c.resolved_at.is_(None)]
    if entity is not None:
        scope.append(quarantine.c.entity == entity)
    return _counts_by(connection, quarantine.c.entity, quarantine.c.reason, scope)


def _counts_by(
    connection: sa.Connection,
    group: sa.ColumnElement,
    label: sa.ColumnElement,
    scope: list[sa.ColumnElement[bool]],
) -> dict[str, list[tuple[str, int]]]:
    """`group` → (`label`, rows) over the rows in `scope`, most rows first (then by label)."""
    rows = connection.execute(
        sa.select(group, label, sa.func.count())
        .where(*scope)
        .group_by(group, label)
        .order_by(group, sa.func.count().desc(), label)
    )
    found: dict[str, list[tuple[str, int]]] = {}
    for key, text, count in rows:
        found.setdefault(key, []).append((text, int(count)))
    return found


def quarantine_sample(
    connection: sa.Connection, landlord_id: str, entity: str, limit: int = 5
) -> list[dict[str, str]]:
    """The first open quarantine rows of `entity`: source, row, reason, message and the raw
    values with every sealed (personal or unmapped) cell masked."""
    rows = connection.execute(
        sa.select(
            quarantine.c.source_name,
            quarantine.c.source_row,
            quarantine.c.reason,
            quarantine.c.message,
            quarantine.c.raw,
        )
        .where(
            quarantine.c.landlord_id == landlord_id,
            quarantine.c.entity == entity,
            quarantine.c.resolved_at.is_(None),
        )
        .order_by(quarantine.c.id)
        .limit(limit)
    )
    return [
        {
            "source": row.source_name,
            "row": row.source_row,
            "reason": row.reason,
            "message": row.message,
            "raw": masked_raw(row.raw),
        }
        for row in rows
    ]


def masked_raw(stored: str) -> str:
    """A quarantine row's stored raw values as `column=value` pairs, sealed cells (personal
    data, unmapped columns) shown as `•••`: nothing is opened with the quarantine key."""
    try:
        values = json.loads(stored)
    except ValueError:
        return MASK
    if not isinstance(values, dict):
        return MASK
    shown = []
    for column, value in values.items():
        text = "" if value is None else str(value)
        shown.append(f"{column}={MASK if text.startswith(SEALED_PREFIX) else text}")
    return "; ".join(shown)


def dead_letter_reasons(
    connection: sa.Connection, landlord_id: str, sink: str | None = None
) -> dict[str, list[tuple[str, int]]]:
    """Sink → (the peer's message, dead letters), most letters first."""
    scope = [outbox.c.landlord_id == landlord_id, outbox.c.state == "dead"]
    if sink is not None:
        scope.append(outbox.c.sink == sink)
    message = sa.func.coalesce(outbox.c.last_error, "")
    return _counts_by(connection, outbox.c.sink, message, scope)


def dead_letter_sample(
    connection: sa.Connection, landlord_id: str, sink: str, limit: int = 5
) -> list[dict[str, str]]:
    """The first dead letters of `sink`: record key, entity, attempts, the peer's message and
    the canonical rows it came from (the payload, which may hold personal data, is not shown)."""
    rows = connection.execute(
        sa.select(
            outbox.c.record_key,
            outbox.c.entity,
            outbox.c.attempts,
            outbox.c.last_error,
            outbox.c.source_rows,
        )
        .where(outbox.c.landlord_id == landlord_id, outbox.c.sink == sink, outbox.c.state == "dead")
        .order_by(outbox.c.record_key)
        .limit(limit)
    )
    return [
        {
            "record": row.record_key,
            "entity": row.entity,
            "attempts": str(row.attempts),
            "message": row.last_error or "",
            "source_rows": row.source_rows,
        }
        for row in rows
    ]


def _aware(moment: dt.datetime) -> dt.datetime:
    """SQLite gives naive UTC datetimes back; PostgreSQL aware ones."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
