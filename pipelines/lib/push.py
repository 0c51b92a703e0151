"""Push one landlord's confirmed records to the sinks its datafix declares, exactly once.

For each sink of the landlord's `push:` section, in name order:

1. **Gate**: the records come from canonical tables whose last contract must have passed
   (`contract_results`); a failed contract holds that sink's push with the reason.
2. **Recover**: records left `sending` by a push that died are read back from the peer; those
   it holds are marked sent, the others queued again with the *same* idempotency key.
3. **Enqueue**: the confirmed records (`pipelines.lib.derive`) are mapped onto the sink's
   fields; only payloads that differ from the last one sent are queued.
4. **Deliver** in batches: a whole call failing transiently is retried with exponential
   backoff and jitter, reading the peer back before each resend; a record refused for good goes
   to the dead letter with the peer's message while the rest of the batch goes on; a record
   refused transiently is retried later in the run, then on the next run. A batch the sink
   raises on unexpectedly (a value it cannot build a request from, a driver error) is sent
   again one record at a time, read back first: the record at fault is dead (a bad value) or
   failed, with the cause, and the others go on; no record can wedge its sink.
5. **Verdict**: `sent` when the records went out; `failed` when the call failed, when the sink
   could not build its request (a configuration error: one error for the run, the records
   stay queued, no dead letter) or when every record handled ended dead or failed; `dead
   letters` when some were refused for good beyond the sink's `max_dead_percent` (default
   0). A failed or blocked sink, or dead letters, make the run fail (`datafix` exits 1).

Nothing connects to a sink that has nothing to send or recover, so a run with no change makes
no call at all. A landlord's records can only reach the sinks built from its own datafix.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from connectors.delivery import Delivered, OutgoingRecord, Sink, printable, unsafe_text
from connectors.errors import ConfigError, ConnectorError, RetriableError
from connectors.lazy import pd
from connectors.retry import RetryPolicy, with_retries
from pipelines.lib.datafixes import LoadedDatafix
from pipelines.lib.derive import SOURCE_ROWS, derive
from pipelines.lib.outbox import Change, Outbox, OutboxRow, PushBusyError, QueuedRecord
from pipelines.lib.warehouse import Warehouse
from schemas.canonical import ColumnType
from schemas.config import OutFieldRule, SinkBase
from schemas.outgoing import OUTGOING, OutgoingSpec
from schemas.tables import contract_results

__all__ = [
    "FAILING",
    "PushBusyError",
    "PushOutcome",
    "map_records",
    "push_landlord",
    "record_contract",
    "sinks_sending",
]

log = logging.getLogger(__name__)

# a whole call failing transiently: tried up to 8 times, waits growing from 0.2 s to 20 s
CALL_RETRY = RetryPolicy(attempts=8, first_wait=0.2, max_wait=20.0, jitter=0.2)
LEASE_STALE_AFTER = dt.timedelta(minutes=30)

SinkFactory = Callable[[LoadedDatafix, str], Sink]


@dataclass
class PushOutcome:
    """What one push did for one sink of one landlord."""

    landlord_id: str
    sink: str
    kind: str
    sends: str
    # sent, nothing to send, dry run; blocked, failed, dead letters (these fail the run)
    status: str = "nothing to send"
    confirmed: int = 0  # confirmed records derived
    queued: int = 0  # new or changed this run
    pending: int = 0  # queued by an earlier run and not sent yet: sent (again) by this one
    unchanged: int = 0  # sent earlier with this very payload
    recovered: int = 0  # in flight after a crash, found at the peer
    sent: int = 0
    failed: int = 0  # still failing transiently at the end (retried next run)
    dead: int = 0  # refused for good this run
    dead_waiting: int = 0  # dead earlier, same payload: waiting for a fix or a replay
    calls: int = 0  # send and read-back calls made
    error: str = ""
    changes: list[Change] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """False when the push failed, was held, or left more dead letters than tolerated."""
        return self.status not in FAILING


# the statuses that fail a push (the push asset, hence the run and `datafix` exit 1)
FAILING = ("blocked", "failed", "dead letters")


def sinks_sending(loaded: LoadedDatafix, name: str) -> list[str]:
    """The landlord's sinks that receive the outgoing records `name`, in name order."""
    push = loaded.datafix.push
    if push is None:
        return []
    return sorted(sink_name for sink_name, sink in push.sinks.items() if sink.sends == name)


def record_contract(
    warehouse: Warehouse, landlord_id: str, entity: str, *, passed: bool, summary: str, run_id: str
) -> None:
    """Remember the verdict of the latest contract on a landlord's entity (gates the push)."""
    values = {"passed": passed, "summary": summary, "run_id": run_id, "checked_at": _now()}
    with warehouse.engine.begin() as conn:
        updated = conn.execute(
            contract_results.update()
            .where(
                contract_results.c.landlord_id == landlord_id, contract_results.c.entity == entity
            )
            .values(**values)
        )
        if not updated.rowcount:
            conn.execute(
                contract_results.insert().values(landlord_id=landlord_id, entity=entity, **values)
            )


def _blocked_by(warehouse: Warehouse, landlord_id: str, entities: Sequence[str]) -> str:
    """Why the push of records read from `entities` is held, or '' when it may go."""
    with warehouse.engine.connect() as conn:
        rows = conn.execute(
            sa.select(contract_results).where(
                contract_results.c.landlord_id == landlord_id,
                contract_results.c.entity.in_(list(entities)),
                contract_results.c.passed.is_(False),
            )
        ).all()
    return "; ".join(
        f"the {row.entity} contract failed in run {row.run_id}: {row.summary}"
        for row in sorted(rows, key=lambda r: r.entity)
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- mapping ---------------------------------------------------------------------------------


def _native(value: Any) -> Any:
    """A pandas cell as a plain Python value (None for blanks, int for Int64)."""
    if type(value) in _PLAIN:  # the common case first: this runs for every field of every record
        return value
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if hasattr(value, "item") and not isinstance(value, str | dt.date):
        return value.item()
    return value


_PLAIN = frozenset((str, int, bool, dt.date, dt.datetime))


def _euros(cents: int, separator: str) -> str:
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(int(cents)), 100)
    return f"{sign}{whole}{separator}{part:02d}"


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def convert(value: Any, rule: OutFieldRule, column_type: ColumnType | None) -> Any:
    """One target value from one outgoing value, as the rule's `as` and `map` say."""
    if rule.from_ is None:
        return rule.value
    value = _native(value)
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        value = _utc(value)
    if rule.as_ == "euros":
        value = _euros(value, ".")
    elif rule.as_ == "euros_comma":
        value = _euros(value, ",")
    elif rule.as_ == "date":
        value = (value.date() if isinstance(value, dt.datetime) else value).isoformat()
    elif rule.as_ == "yyyymmdd":
        value = (value.date() if isinstance(value, dt.datetime) else value).strftime("%Y%m%d")
    elif rule.as_ == "datetime":
        value = value.isoformat()
    elif rule.as_ == "text":
        value = str(value).lower() if isinstance(value, bool) else str(value)
    if rule.map is not None:
        lookup = str(value).lower() if isinstance(value, bool) else str(value)
        value = rule.map.get(lookup, value)
    return value


def map_records(frame: pd.DataFrame, sink: SinkBase, spec: OutgoingSpec) -> list[QueuedRecord]:
    """The sink's payload for each confirmed record, keyed by the record's natural key (or the
    sink's `key`: then the latest record of each key value, by `spec.latest_by`)."""
    key = sink.key or spec.key
    if sink.key is not None and sink.key != spec.key:
        frame = frame[frame[key].notna()]
        frame = frame.sort_values([spec.latest_by, spec.key], kind="stable", na_position="first")
        frame = frame.drop_duplicates(subset=[key], keep="last").sort_values(key, kind="stable")
    types = {column.name: column.type for column in spec.columns}
    records = []
    columns = list(frame.columns)
    for values in frame.itertuples(index=False, name=None):
        row = dict(zip(columns, values, strict=True))
        payload = {
            target: convert(
                row.get(rule.from_) if rule.from_ else None, rule, types.get(rule.from_ or "")
            )
            for target, rule in sink.fields.items()
        }
        records.append(QueuedRecord(str(row[key]), payload, str(row[SOURCE_ROWS])))
    return records


def decoder(sink: SinkBase, spec: OutgoingSpec) -> Callable[[str], dict[str, Any]]:
    """Turns a stored payload (JSON) back into typed values: dates and datetimes as such."""
    typed: dict[str, Callable[[str], Any]] = {}
    for target, rule in sink.fields.items():
        if rule.from_ is None or rule.as_ != "native" or rule.map is not None:
            continue
        column_type = spec.column(rule.from_).type
        if column_type is ColumnType.DATE:
            typed[target] = dt.date.fromisoformat
        elif column_type is ColumnType.DATETIME:
            typed[target] = dt.datetime.fromisoformat

    def decode(text: str) -> dict[str, Any]:
        fields = json.loads(text)
        for target, parse in typed.items():
            if fields.get(target) is not None:
                fields[target] = parse(fields[target])
        return fields

    return decode


# -- the push --------------------------------------------------------------------------------


def push_landlord(
    warehouse: Warehouse,
    loaded: LoadedDatafix,
    build_sink: SinkFactory,
    *,
    run_id: str | None = None,
    sinks: Sequence[str] | None = None,
    dry_run: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> list[PushOutcome]:
    """Push the landlord's records to its sinks (all, or those named); one outcome per sink.

    A sink that fails (peer down beyond the retries, refused credentials) is reported in its
    outcome and the other sinks still run. Raises PushBusyError when another push of the
    landlord holds the lease, ConfigError for an unknown sink name.
    """
    push = loaded.datafix.push
    if push is None:
        return []
    run_id = run_id or f"push-{uuid.uuid4().hex[:12]}"
    names = sorted(push.sinks) if sinks is None else list(sinks)
    unknown = [name for name in names if name not in push.sinks]
    if unknown:
        raise ConfigError(
            f"{loaded.landlord_id} has no sink {', '.join(unknown)} (its sinks:"
            f" {', '.join(sorted(push.sinks)) or 'none'})"
        )
    outbox = Outbox(warehouse.engine)
    if not dry_run:
        outbox.acquire(loaded.landlord_id, run_id, stale_after=LEASE_STALE_AFTER)
    frames: dict[str, pd.DataFrame] = {}
    outcomes = []
    try:
        for name in names:
            spec_sink = push.sinks[name]
            outcome = PushOutcome(loaded.landlord_id, name, spec_sink.kind, spec_sink.sends)
            outcomes.append(outcome)
            try:
                _push_sink(
                    warehouse,
                    outbox,
                    loaded,
                    name,
                    build_sink,
                    frames,
                    outcome,
                    run_id=run_id,
                    dry_run=dry_run,
                    sleep=sleep,
                )
            except ConnectorError as error:
                outcome.status = "failed"
                outcome.error = str(error)
                log.warning("push %s/%s failed: %s", loaded.landlord_id, name, error)
    finally:
        if not dry_run:
            outbox.release(loaded.landlord_id, run_id)
    return outcomes


def _push_sink(
    warehouse: Warehouse,
    outbox: Outbox,
    loaded: LoadedDatafix,
    name: str,
    build_sink: SinkFactory,
    frames: dict[str, pd.DataFrame],
    outcome: PushOutcome,
    *,
    run_id: str,
    dry_run: bool,
    sleep: Callable[[float], None],
) -> None:
    push = loaded.datafix.push
    assert push is not None
    config = push.sinks[name]
    spec = OUTGOING[config.sends]
    landlord = loaded.landlord_id
    gated = [entity for entity in spec.inputs if entity in loaded.datafix.entities]
    reason = _blocked_by(warehouse, landlord, gated)
    if reason:
        outcome.status = "blocked"
        outcome.error = reason
        return
    if config.sends not in frames:
        frames[config.sends] = derive(warehouse, landlord, config.sends, push.confirmed)
    records = map_records(frames[config.sends], config, spec)
    outcome.confirmed = len(records)
    client: Sink | None = None

    def sink() -> Sink:
        nonlocal client
        if client is None:
            client = build_sink(loaded, name)
        return client

    delivery = _Delivery(outbox, landlord, name, sink, decoder(config, spec), outcome)
    try:
        if not dry_run:
            outbox.start_run(landlord, name)
            in_flight = outbox.in_flight(landlord, name)
            if in_flight:
                outcome.recovered = _recover(delivery, in_flight)
        queued = outbox.enqueue(
            landlord, name, config.kind, config.sends, records, run_id=run_id, dry_run=dry_run
        )
        outcome.queued, outcome.unchanged = queued.queued, queued.unchanged
        outcome.pending, outcome.dead_waiting = queued.pending, queued.dead_unchanged
        if dry_run:
            outcome.status = "dry run"
            outcome.changes = queued.changes
            return
        _deliver(delivery, config, run_id=run_id, sleep=sleep)
        _verdict(outcome, config.max_dead_percent)
    finally:
        if client is not None:
            client.close()


def _records(
    rows: Sequence[OutboxRow], decode: Callable[[str], dict[str, Any]]
) -> list[OutgoingRecord]:
    return [
        OutgoingRecord(row.key, row.idempotency_key, decode(row.payload), row.peer_id)
        for row in rows
    ]


@dataclass(frozen=True)
class _Delivery:
    """One sink's delivery under way: where its records wait (`outbox`, `landlord`, sink
    `name`), the sink (built on first use), how a queued payload becomes the record's fields
    (`decode`), and the outcome it counts into."""

    outbox: Outbox
    landlord: str
    name: str
    sink: Callable[[], Sink]
    decode: Callable[[str], dict[str, Any]]
    outcome: PushOutcome


def _recover(delivery: _Delivery, rows: Sequence[OutboxRow]) -> int:
    """Settle records a dead push left in flight: read back, then sent or queued again."""
    outbox, landlord, name = delivery.outbox, delivery.landlord, delivery.name
    sink, outcome = delivery.sink, delivery.outcome
    records = _records(rows, delivery.decode)

    def read() -> dict[str, str]:
        outcome.calls += 1
        return sink().read_back(records)

    try:
        held = with_retries(read, CALL_RETRY)
    except ConnectorError:
        raise
    except Exception:  # one record the sink cannot even look for: read the others alone
        held = {}
        for record in records:
            try:
                outcome.calls += 1
                held.update(sink().read_back([record]))
            except ConnectorError:
                raise
            except Exception as error:  # not held: the send will say why, per record
                log.warning("push: read-back of %s raised %r", printable(record.key), error)
    found = [row for row in rows if row.key in held]
    if found:
        outbox.record(
            landlord,
            name,
            found,
            [Delivered(row.key, "sent", peer_id=held[row.key]) for row in found],
            retry_delay={},
        )
    missing = [row for row in rows if row.key not in held]
    if missing:
        outbox.unclaim(
            landlord, name, missing, state="pending", error="in flight when a push stopped; resent"
        )
    return len(found)


def _retry_delays(max_attempts: int) -> dict[int, float]:
    """Seconds before a record refused transiently is tried again: 0.5 s doubling, ≤ 30 s."""
    return {
        n: min(30.0, 0.5 * 2 ** (n - 1)) * random.uniform(0.8, 1.2)
        for n in range(1, max_attempts + 1)
    }


def _deliver(
    delivery: _Delivery, config: SinkBase, *, run_id: str, sleep: Callable[[float], None]
) -> None:
    outbox, landlord, name = delivery.outbox, delivery.landlord, delivery.name
    sink, outcome = delivery.sink, delivery.outcome
    max_attempts = config.max_attempts
    _prepare(delivery, max_attempts)
    while True:
        ready = outbox.count_ready(landlord, name, max_attempts)
        if ready == 0:
            due = outbox.next_retry(landlord, name, max_attempts)
            if due is None:
                break
            sleep(max(0.0, (due - _now()).total_seconds()))
            continue
        # the sink has the last word: a Salesforce batch above 200 must become a Bulk job
        wanted = min(ready, config.batch_size) if config.batch_size else ready
        limit = max(1, sink().batch_size(wanted))
        rows = outbox.claim(landlord, name, limit=limit, run_id=run_id, max_attempts=max_attempts)
        if not rows:
            continue
        try:
            results = _send(delivery, rows)
        except RetriableError as error:
            outbox.unclaim(landlord, name, rows, state="failed", error=str(error), retry_in=60.0)
            outcome.error = f"{name}: {error}"
            break
        except ConnectorError as error:
            outbox.unclaim(landlord, name, rows, state="pending", error=str(error))
            raise
        counts = outbox.record(
            landlord, name, rows, results, retry_delay=_retry_delays(max_attempts)
        )
        outcome.sent += counts["sent"]
        outcome.dead += counts["dead"]
        outbox.renew(landlord, run_id)
    states = {
        state: count for sink_name, _, state, count in outbox.states(landlord) if sink_name == name
    }
    outcome.failed = states.get("failed", 0)
    if outcome.error:
        outcome.status = "failed"
    elif outcome.sent or outcome.dead or outcome.recovered or outcome.failed:
        outcome.status = "sent"


def _verdict(outcome: PushOutcome, max_dead_percent: float) -> None:
    """Fail a delivery that left only refusals, or more dead letters than the sink tolerates."""
    if outcome.status != "sent":
        return
    delivered = outcome.sent + outcome.recovered
    refused = outcome.dead + outcome.failed
    where = f"see `datafix outbox {outcome.landlord_id}`"
    if refused and not delivered:
        outcome.status = "failed"
        outcome.error = (
            f"all {refused} record(s) refused: {outcome.dead} dead, {outcome.failed} failed"
            f" (retried next run) — {where}"
        )
        return
    if not outcome.dead:
        return
    total = delivered + refused
    percent = 100 * outcome.dead / total
    if percent > max_dead_percent:
        outcome.status = "dead letters"
        outcome.error = (
            f"{outcome.dead} of {total} record(s) refused for good ({percent:.1f} %, above the"
            f" sink's max_dead_percent of {max_dead_percent:g} %) — {where}; once the cause is"
            f" fixed: `datafix replay {outcome.landlord_id}`"
        )


def _prepare(delivery: _Delivery, max_attempts: int) -> None:
    """Before the first send, let a sink that can (`prepare`, optional) build the requests of
    one record per set of filled fields: a configuration error (a mapped field with no place
    in the request) then stops the run with one error, nothing sent and no dead letter."""
    rows = delivery.outbox.peek_ready(
        delivery.landlord, delivery.name, max_attempts, limit=PREPARE_SAMPLE
    )
    if not rows:
        return
    prepare = getattr(delivery.sink(), "prepare", None)
    if prepare is None:
        return
    sample: dict[frozenset[str], OutgoingRecord] = {}
    for record in _records(rows, delivery.decode):
        filled = frozenset(k for k, v in record.fields.items() if v is not None)
        sample.setdefault(filled, record)
    prepare(list(sample.values()))


# ready records looked at to pick the records `prepare` builds (one per set of filled fields)
PREPARE_SAMPLE = 1_000


def _send(delivery: _Delivery, rows: Sequence[OutboxRow]) -> list[Delivered]:
    """One batch through the sink; a transient whole-call failure is retried, reading back first."""
    sink, outcome = delivery.sink, delivery.outcome
    remaining = _records(rows, delivery.decode)
    settled: list[Delivered] = []
    tries = 0

    def attempt() -> list[Delivered]:
        nonlocal remaining, tries
        if tries:
            outcome.calls += 1
            held = sink().read_back(remaining)
            settled.extend(
                Delivered(r.key, "sent", peer_id=held[r.key]) for r in remaining if r.key in held
            )
            remaining = [r for r in remaining if r.key not in held]
            if not remaining:
                return []
        tries += 1
        outcome.calls += 1
        results = sink().send(remaining)
        if [r.key for r in results] != [r.key for r in remaining]:
            raise ConfigError(
                f"sink answered for {len(results)} records out of {len(remaining)} (a sink bug)"
            )
        return results

    try:
        return settled + with_retries(attempt, CALL_RETRY)
    except ConnectorError:
        raise
    except Exception as error:  # the sink could not build or send one of the records
        log.warning("push: a sink raised %s on a batch of %d", type(error).__name__, len(remaining))
        return settled + _one_by_one(remaining, sink, outcome, error)


# what a sink raises when a value cannot go into its request (bad value: the record is dead);
# anything else unexpected leaves the record failed, retried with backoff and next run
_BAD_VALUE = (ValueError, TypeError, ArithmeticError)


def _one_by_one(
    records: Sequence[OutgoingRecord],
    sink: Callable[[], Sink],
    outcome: PushOutcome,
    error: Exception,
) -> list[Delivered]:
    """A batch the sink raised on (not a ConnectorError): each record alone, read back first
    (the sink may have sent some before it raised), so one record that cannot be built or sent
    is `dead` (a bad value) or `failed`, with the cause, and the others go on."""
    results = []
    for record in records:
        try:
            outcome.calls += 1
            held = sink().read_back([record])
            if record.key in held:
                results.append(Delivered(record.key, "sent", peer_id=held[record.key]))
                continue
            if len(records) == 1:  # it was sent alone already: that is its answer
                raise error
            outcome.calls += 1
            [result] = sink().send([record])
        except ConnectorError:
            raise
        except Exception as alone:
            result = _refused(record, sink().name, alone)
        results.append(result)
    return results


def _refused(record: OutgoingRecord, sink_name: str, error: Exception) -> Delivered:
    """The outcome of a record its sink raised on: the cause, and the field it likely is."""
    suspect = unsafe_text(record)
    where = f" (field `{suspect.details['field']}` holds a control character)" if suspect else ""
    said = " ".join(str(error).split()) or "no message"
    cause = f"{type(error).__name__}: {said}"
    if isinstance(error, _BAD_VALUE):
        return Delivered(
            record.key,
            "dead",
            message=f"record {printable(record.key)}: sink `{sink_name}` cannot build or send it:"
            f" {cause}{where} — fix the value at the source (`datafix outbox` names the row):"
            " the next run sends the changed record",
        )
    return Delivered(
        record.key,
        "retry",
        message=f"record {printable(record.key)}: sink `{sink_name}` failed on it: {cause}{where}"
        " — retried next run; if it persists, report it with this message",
    )
