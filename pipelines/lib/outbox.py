"""The outbox: every record the hub pushes, its state, and the peer's answer, in the warehouse.

One row per (landlord, sink, record key). A record is queued only when its payload differs from
the last one sent (`sent_hash`); each new payload bumps `version`, and the idempotency key is
derived from (landlord, sink, key, version, payload hash), so a resend of the same version is
recognised by the peer while a changed record is a new delivery.

States: `pending` (to send) → `sending` (handed to the peer: committed *before* the call) →
`sent`; `failed` (a transient refusal, retried with backoff in this run and again on the next
one) or `dead` (refused for good, with the peer's message; only a changed payload or `datafix
replay` queues it again). A record still `sending` when a push starts was in flight when the
previous push died: it is read back from the peer before anything is resent.

Every write is one transaction, so a crash at any moment leaves each row in one of the states
above; `push_leases` keeps two pushes of the same landlord from interleaving.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from connectors.delivery import Delivered, payload_json
from connectors.errors import ConfigError
from connectors.processes import pid_alive
from schemas.tables import outbox, push_leases

if TYPE_CHECKING:
    from pipelines.lib.datafixes import LoadedDatafix

__all__ = [
    "EnqueueResult",
    "Outbox",
    "OutboxRow",
    "PushBusyError",
    "QueuedRecord",
    "idempotency_key",
    "replay_dead_letters",
]


class PushBusyError(Exception):
    """Another push of the same landlord holds the lease."""


@dataclass(frozen=True)
class QueuedRecord:
    """A record offered to the outbox: its key, mapped payload and lineage."""

    key: str
    payload: Mapping[str, Any]
    source_rows: str


@dataclass(frozen=True)
class OutboxRow:
    """One outbox row as the delivery loop needs it."""

    key: str
    version: int
    payload: str
    payload_hash: str
    idempotency_key: str
    attempts: int
    peer_id: str | None
    sent_payload: str | None = None  # the payload last delivered (None: never sent)


@dataclass(frozen=True)
class Change:
    """What a push would do to one record (the dry run prints these)."""

    key: str
    # create, update (new or changed this run); resend (queued by an earlier run, not sent
    # yet); in doubt (in flight when a push stopped: read back, resent if the peer lacks it);
    # dead (refused for good, same payload: waits for a fix and `datafix replay`, not sent)
    action: str
    fields: dict[str, tuple[Any, Any]]  # field → (last sent, new); every field for a create


@dataclass
class EnqueueResult:
    """What enqueuing one sink's records did."""

    queued: int = 0  # new or changed, now pending
    unchanged: int = 0  # same payload as last sent: nothing to do
    pending: int = 0  # queued by an earlier run (pending, failed or in flight): still to send
    dead_unchanged: int = 0  # dead with the same payload: not retried until changed or replayed
    changes: list[Change] = field(default_factory=list)


def idempotency_key(landlord_id: str, sink: str, key: str, version: int, digest: str) -> str:
    """Stable for one version of one record: a resend after a crash carries the same key."""
    text = f"{landlord_id}\x1f{sink}\x1f{key}\x1f{version}\x1f{digest}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands timestamps back naive (they are stored in UTC)."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


class Outbox:
    """The outbox table of one warehouse (its engine is the warehouse's)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    # -- lease -------------------------------------------------------------------------------

    def acquire(self, landlord_id: str, holder: str, *, stale_after: dt.timedelta) -> None:
        """Take the landlord's push lease, or raise PushBusyError naming who holds it.

        A lease is taken over when its process is gone (same host, pid not running) or when it
        was not renewed for `stale_after` (another host).
        """
        host, pid, now = socket.gethostname(), os.getpid(), _now()
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(push_leases).where(push_leases.c.landlord_id == landlord_id)
            ).first()
            if row is not None and row.holder != holder:
                alive = (
                    pid_alive(row.pid)
                    if row.host == host
                    else now - _aware(row.renewed_at) < stale_after
                )
                if alive:
                    raise PushBusyError(
                        f"another push of {landlord_id} is running (run {row.holder}, pid"
                        f" {row.pid} on {row.host}, last seen {row.renewed_at:%Y-%m-%d %H:%M:%S}"
                        " UTC); wait for it to finish"
                    )
            values = {"holder": holder, "host": host, "pid": pid, "renewed_at": now}
            if row is None:
                conn.execute(push_leases.insert().values(landlord_id=landlord_id, **values))
            else:
                conn.execute(
                    push_leases.update()
                    .where(push_leases.c.landlord_id == landlord_id)
                    .values(**values)
                )

    def renew(self, landlord_id: str, holder: str) -> None:
        """Show the lease is still held (called between batches)."""
        with self.engine.begin() as conn:
            conn.execute(
                push_leases.update()
                .where(push_leases.c.landlord_id == landlord_id, push_leases.c.holder == holder)
                .values(renewed_at=_now())
            )

    def release(self, landlord_id: str, holder: str) -> None:
        """Give the lease back."""
        with self.engine.begin() as conn:
            conn.execute(
                push_leases.delete().where(
                    push_leases.c.landlord_id == landlord_id, push_leases.c.holder == holder
                )
            )

    # -- queueing ----------------------------------------------------------------------------

    def enqueue(
        self,
        landlord_id: str,
        sink: str,
        sink_kind: str,
        entity: str,
        records: Sequence[QueuedRecord],
        *,
        run_id: str,
        dry_run: bool = False,
    ) -> EnqueueResult:
        """Queue the records whose payload differs from the last one sent (one transaction).

        A record already queued with the same payload keeps its place (and its idempotency
        key) and counts as `pending`, never as unchanged; so do the sink's queued records no
        longer offered (they are still sent). A dead record with the same payload stays dead.
        """
        result = EnqueueResult()
        now = _now()
        where = (outbox.c.landlord_id == landlord_id) & (outbox.c.sink == sink)
        with self.engine.begin() as conn:
            existing = {
                row.record_key: row
                for row in conn.execute(
                    sa.select(
                        outbox.c.record_key,
                        outbox.c.state,
                        outbox.c.version,
                        outbox.c.payload_hash,
                        outbox.c.sent_hash,
                        outbox.c.sent_payload,
                        outbox.c.payload,
                    ).where(where)
                )
            }
            inserts: list[dict[str, Any]] = []
            updates: list[dict[str, Any]] = []
            for record in records:
                text = payload_json(record.payload)
                digest = hashlib.sha256(text.encode("utf-8")).hexdigest()  # = payload_hash
                old = existing.get(record.key)
                if old is None:
                    result.queued += 1
                    if dry_run:  # only a dry run lists changes: a night need not build them
                        result.changes.append(_change(record.key, "create", None, text))
                    inserts.append(
                        {
                            "landlord_id": landlord_id,
                            "sink": sink,
                            "record_key": record.key,
                            "entity": entity,
                            "sink_kind": sink_kind,
                            "state": "pending",
                            "version": 1,
                            "payload": text,
                            "payload_hash": digest,
                            "idempotency_key": idempotency_key(
                                landlord_id, sink, record.key, 1, digest
                            ),
                            "source_rows": record.source_rows,
                            "attempts": 0,
                            "enqueued_run_id": run_id,
                            "updated_at": now,
                        }
                    )
                    continue
                if old.payload_hash == digest:
                    _carried(result, old, dry_run=dry_run)
                    continue
                if old.state == "sent" and old.sent_hash == digest:
                    result.unchanged += 1
                    continue
                result.queued += 1
                if dry_run:
                    previous = json.loads(old.sent_payload) if old.sent_payload else None
                    action = "update" if previous is not None else "create"
                    result.changes.append(_change(record.key, action, previous, text))
                version = old.version + 1
                updates.append(
                    {
                        "b_key": record.key,
                        "state": "pending",
                        "version": version,
                        "payload": text,
                        "payload_hash": digest,
                        "idempotency_key": idempotency_key(
                            landlord_id, sink, record.key, version, digest
                        ),
                        "source_rows": record.source_rows,
                        "attempts": 0,
                        "last_error": None,
                        "next_attempt_at": None,
                        "claimed_by": None,
                        "enqueued_run_id": run_id,
                        "updated_at": now,
                    }
                )
            offered = {record.key for record in records}
            for key in sorted(existing.keys() - offered):  # still queued: it goes out too
                if existing[key].state != "sent":
                    _carried(result, existing[key], dry_run=dry_run)
            if dry_run:
                conn.rollback()
                return result
            if inserts:
                conn.execute(outbox.insert(), inserts)
            if updates:
                conn.execute(
                    outbox.update()
                    .where(where, outbox.c.record_key == sa.bindparam("b_key"))
                    .values({name: sa.bindparam(name) for name in updates[0] if name != "b_key"}),
                    updates,
                )
        return result

    def start_run(self, landlord_id: str, sink: str) -> None:
        """A new run gives records that failed transiently a fresh budget of attempts."""
        with self.engine.begin() as conn:
            conn.execute(
                outbox.update()
                .where(
                    outbox.c.landlord_id == landlord_id,
                    outbox.c.sink == sink,
                    outbox.c.state == "failed",
                )
                .values(attempts=0, next_attempt_at=None)
            )

    # -- delivery ----------------------------------------------------------------------------

    def in_flight(self, landlord_id: str, sink: str) -> list[OutboxRow]:
        """Records a previous push handed to the peer without recording the answer."""
        return self._rows(
            (outbox.c.landlord_id == landlord_id)
            & (outbox.c.sink == sink)
            & (outbox.c.state == "sending")
        )

    def ready(self, landlord_id: str, sink: str, max_attempts: int) -> sa.ColumnElement[bool]:
        """Rows that may be sent now: pending, or failed and due again within the budget."""
        now = _now()
        return (
            (outbox.c.landlord_id == landlord_id)
            & (outbox.c.sink == sink)
            & (
                (outbox.c.state == "pending")
                | (
                    (outbox.c.state == "failed")
                    & (outbox.c.attempts < max_attempts)
                    & ((outbox.c.next_attempt_at.is_(None)) | (outbox.c.next_attempt_at <= now))
                )
            )
        )

    def count_ready(self, landlord_id: str, sink: str, max_attempts: int) -> int:
        """How many records may be sent now."""
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).where(self.ready(landlord_id, sink, max_attempts))
                ).scalar_one()
            )

    def _ready_keys(
        self, conn: sa.Connection, landlord_id: str, sink: str, max_attempts: int, limit: int
    ) -> list[str]:
        """The keys of up to `limit` records that may be sent now, in key order."""
        return [
            row.record_key
            for row in conn.execute(
                sa.select(outbox.c.record_key)
                .where(self.ready(landlord_id, sink, max_attempts))
                .order_by(outbox.c.record_key)
                .limit(limit)
            )
        ]

    def peek_ready(
        self, landlord_id: str, sink: str, max_attempts: int, *, limit: int
    ) -> list[OutboxRow]:
        """Up to `limit` records that may be sent now, left as they are (not claimed)."""
        with self.engine.connect() as conn:
            keys = self._ready_keys(conn, landlord_id, sink, max_attempts, limit)
        rows: list[OutboxRow] = []
        for chunk in _chunks(keys, 500):
            rows += self._rows(
                (outbox.c.landlord_id == landlord_id)
                & (outbox.c.sink == sink)
                & outbox.c.record_key.in_(chunk)
            )
        return rows

    def next_retry(self, landlord_id: str, sink: str, max_attempts: int) -> dt.datetime | None:
        """When the earliest failed record within its budget is due, if any."""
        with self.engine.connect() as conn:
            value = conn.execute(
                sa.select(sa.func.min(outbox.c.next_attempt_at)).where(
                    outbox.c.landlord_id == landlord_id,
                    outbox.c.sink == sink,
                    outbox.c.state == "failed",
                    outbox.c.attempts < max_attempts,
                )
            ).scalar()
        return _aware(value)

    def claim(
        self, landlord_id: str, sink: str, *, limit: int, run_id: str, max_attempts: int
    ) -> list[OutboxRow]:
        """Mark up to `limit` ready records `sending` and return them (committed first)."""
        with self.engine.begin() as conn:
            keys = self._ready_keys(conn, landlord_id, sink, max_attempts, limit)
            if not keys:
                return []
            _update_records(
                conn, landlord_id, sink, keys, state="sending", claimed_by=run_id, updated_at=_now()
            )
        where = (
            (outbox.c.landlord_id == landlord_id)
            & (outbox.c.sink == sink)
            & (outbox.c.state == "sending")
            & (outbox.c.claimed_by == run_id)
        )
        return self._rows(where)

    def record(
        self,
        landlord_id: str,
        sink: str,
        rows: Sequence[OutboxRow],
        results: Iterable[Delivered],
        *,
        retry_delay: Mapping[int, float],
    ) -> dict[str, int]:
        """Store the peer's answers (one transaction); returns counts per outcome.

        `retry_delay` maps an attempt number to the seconds to wait before the next one.
        """
        by_key = {row.key: row for row in rows}
        now = _now()
        counts = {"sent": 0, "retry": 0, "dead": 0}
        sent: list[dict[str, Any]] = []
        other: list[dict[str, Any]] = []
        for result in results:
            row = by_key[result.key]
            counts[result.outcome] += 1
            attempts = row.attempts + 1
            if result.outcome == "sent":
                sent.append(
                    {
                        "b_key": row.key,
                        "b_version": row.version,
                        "state": "sent",
                        "attempts": attempts,
                        "peer_id": result.peer_id or row.peer_id,
                        "sent_hash": row.payload_hash,
                        "sent_payload": row.payload,
                        "sent_at": now,
                        "last_error": None,
                        "claimed_by": None,
                        "updated_at": now,
                    }
                )
            else:
                delay = retry_delay.get(attempts, max(retry_delay.values(), default=1.0))
                other.append(
                    {
                        "b_key": row.key,
                        "b_version": row.version,
                        "state": "failed" if result.outcome == "retry" else "dead",
                        "attempts": attempts,
                        "last_error": result.message or "refused without a message",
                        "next_attempt_at": now + dt.timedelta(seconds=delay),
                        "claimed_by": None,
                        "updated_at": now,
                    }
                )
        with self.engine.begin() as conn:
            for batch in (sent, other):
                if not batch:
                    continue
                conn.execute(
                    outbox.update()
                    .where(
                        outbox.c.landlord_id == landlord_id,
                        outbox.c.sink == sink,
                        outbox.c.record_key == sa.bindparam("b_key"),
                        outbox.c.version == sa.bindparam("b_version"),
                    )
                    .values({k: sa.bindparam(k) for k in batch[0] if not k.startswith("b_")}),
                    batch,
                )
        return counts

    def unclaim(
        self,
        landlord_id: str,
        sink: str,
        rows: Sequence[OutboxRow],
        *,
        state: str,
        error: str,
        retry_in: float | None = None,
    ) -> None:
        """Give claimed records back (`pending` or `failed`) after a whole-call failure."""
        now = _now()
        next_at = None if retry_in is None else now + dt.timedelta(seconds=retry_in)
        with self.engine.begin() as conn:
            _update_records(
                conn,
                landlord_id,
                sink,
                [row.key for row in rows],
                outbox.c.state == "sending",
                state=state,
                last_error=error,
                next_attempt_at=next_at,
                claimed_by=None,
                attempts=outbox.c.attempts + (1 if state == "failed" else 0),
                updated_at=now,
            )

    # -- operators ---------------------------------------------------------------------------

    def replay(self, landlord_id: str, sink: str | None = None, reason: str | None = None) -> int:
        """Queue dead records again (after the cause was fixed); returns how many. `reason`:
        only the letters whose peer message contains that text (case ignored)."""
        where = (outbox.c.landlord_id == landlord_id) & (outbox.c.state == "dead")
        if sink is not None:
            where &= outbox.c.sink == sink
        if reason:
            where &= sa.func.lower(sa.func.coalesce(outbox.c.last_error, "")).contains(
                reason.lower(), autoescape=True
            )
        with self.engine.begin() as conn:
            result = conn.execute(
                outbox.update()
                .where(where)
                .values(state="pending", attempts=0, next_attempt_at=None, updated_at=_now())
            )
        return int(result.rowcount or 0)

    def states(self, landlord_id: str) -> list[tuple[str, str, str, int]]:
        """(sink, entity, state, records) of one landlord, sorted."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(outbox.c.sink, outbox.c.entity, outbox.c.state, sa.func.count())
                .where(outbox.c.landlord_id == landlord_id)
                .group_by(outbox.c.sink, outbox.c.entity, outbox.c.state)
                .order_by(outbox.c.sink, outbox.c.state)
            ).all()
        return [(row[0], row[1], row[2], int(row[3])) for row in rows]

    def problems(self, landlord_id: str, limit: int = 20) -> list[dict[str, Any]]:
        """Dead and failed records with the peer's message, newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    *(outbox.c[name] for name in ("sink", "record_key", "state", "attempts")),
                    *(outbox.c[name] for name in ("last_error", "source_rows", "updated_at")),
                )
                .where(outbox.c.landlord_id == landlord_id, outbox.c.state.in_(("dead", "failed")))
                .order_by(outbox.c.updated_at.desc(), outbox.c.record_key)
                .limit(limit)
            ).all()
        return [dict(row._mapping) for row in rows]

    def stored(self, landlord_id: str, sink: str, key: str) -> OutboxRow | None:
        """The outbox row of one record of a sink (None: never queued)."""
        rows = self._rows(
            (outbox.c.landlord_id == landlord_id)
            & (outbox.c.sink == sink)
            & (outbox.c.record_key == key)
        )
        return rows[0] if rows else None

    def _rows(self, where: sa.ColumnElement[bool]) -> list[OutboxRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    outbox.c.record_key,
                    outbox.c.version,
                    outbox.c.payload,
                    outbox.c.payload_hash,
                    outbox.c.idempotency_key,
                    outbox.c.attempts,
                    outbox.c.peer_id,
                    outbox.c.sent_payload,
                )
                .where(where)
                .order_by(outbox.c.record_key)
            ).all()
        return [OutboxRow(*row) for row in rows]


# what a record already in the outbox with the payload on offer becomes: the dry run's action
_CARRIED = {"pending": "resend", "failed": "resend", "sending": "in doubt", "dead": "dead"}


def _carried(result: EnqueueResult, old: Any, *, dry_run: bool) -> None:
    """Count (and, for a dry run, list) a record whose payload is already in the outbox."""
    if old.state == "sent":
        result.unchanged += 1
        return
    if old.state == "dead":
        result.dead_unchanged += 1
    else:
        result.pending += 1
    if dry_run:
        previous = json.loads(old.sent_payload) if old.sent_payload else None
        result.changes.append(_change(old.record_key, _CARRIED[old.state], previous, old.payload))


def _change(key: str, action: str, previous: Mapping[str, Any] | None, new_json: str) -> Change:
    fresh = json.loads(new_json)
    old = previous or {}
    fields = {
        name: (old.get(name), value)
        for name, value in fresh.items()
        if previous is None or old.get(name) != value
    }
    return Change(key, action, fields)


def _update_records(
    conn: sa.Connection,
    landlord_id: str,
    sink: str,
    keys: Sequence[str],
    *conditions: sa.ColumnElement[bool],
    **values: Any,
) -> None:
    """Set `values` on the sink's records named by `keys` (that also meet `conditions`), 500
    keys per statement: an IN list stays well below every driver's parameter limit."""
    for chunk in _chunks(keys, 500):
        conn.execute(
            outbox.update()
            .where(
                outbox.c.landlord_id == landlord_id,
                outbox.c.sink == sink,
                outbox.c.record_key.in_(chunk),
                *conditions,
            )
            .values(**values)
        )


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def replay_dead_letters(
    box: Outbox, loaded: LoadedDatafix, sink: str | None = None, reason: str | None = None
) -> int:
    """`datafix replay` and the `replay` job: queue the landlord's dead letters again (of one
    sink of its datafix, of one reason), for the next push. Raises `ConfigError` naming the
    landlord's sinks when `sink` is not one of them."""
    sinks = loaded.datafix.push.sinks if loaded.datafix.push else {}
    if sink is not None and sink not in sinks:
        known = ", ".join(sorted(sinks)) or "none"
        raise ConfigError(f"`{sink}` is not a sink of {loaded.landlord_id} (its sinks: {known})")
    return box.replay(loaded.landlord_id, sink, reason)
