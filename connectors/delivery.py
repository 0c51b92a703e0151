"""What every push sink speaks: outgoing records in, one outcome per record out.

The hub's outbox (`pipelines/lib/outbox.py`) hands a sink batches of `OutgoingRecord`s and
records each `Delivered` outcome. A sink is a plain client (no dagster import) built from one
landlord's datafix: it can only ever reach the peer that landlord declared.

Rules every sink follows, so a crash at any moment leaves no duplicate and no hole at the peer:

- `send` is safe to repeat: it upserts by the record's key (external id, key column) or passes
  `idempotency_key` to a peer that deduplicates on it. A sink whose peer call is *not*
  idempotent (Sage X3 `save`) reads the peer back before creating anything a second time.
- `send` answers for every record, in order: `sent`, `retry` (a transient per-record refusal,
  e.g. a locked row) or `dead` (the peer refused this record for good; its own message kept).
- When the whole call fails transiently (timeout, connection reset, 5xx, 429) `send` raises
  `RetriableError`: nothing is known about the batch, the outbox reads back and resends.
  When the whole call is refused for good (credentials, configuration) it raises
  `PermanentError` or `ConfigError`: the records stay queued and the push stops with the message.
- A record the sink cannot turn into a request *because of its configuration* (a mapped field
  the target has no place for, an unknown operation) is not the record's fault and never a
  dead letter: the sink raises `ConfigError` for the whole call. A sink may also offer
  `prepare(records)` (optional): build the requests of a few records without sending them and
  raise `ConfigError` when the datafix cannot be placed; the outbox calls it once before the
  first send of a run, so a configuration error is one error for the run, with nothing sent.
- `read_back` tells which records the peer already holds *in this very version* (same
  idempotency key, or the same field values): used for records that were in flight when the
  hub stopped, before anything is resent.
- Nothing connects before the first `send` or `read_back`: a run with nothing to push makes no
  call at all.
- A record the sink cannot build or send *because of one of its values* (a control character
  XML cannot carry, a character the file's encoding lacks, a value the target's type refuses)
  is `dead` with a message naming the record, the field and the fix (`refused_value`,
  `unsafe_text`), never an exception: one bad value must not stop the rest of the batch, nor
  every later run. The outbox (`pipelines.lib.push`) isolates what a sink still raises.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from connectors.retry import RetryPolicy

__all__ = [
    "BatchedSink",
    "Delivered",
    "Outcome",
    "OutgoingRecord",
    "Sink",
    "payload_hash",
    "payload_json",
    "printable",
    "refused_value",
    "unsafe_text",
]

Outcome = Literal["sent", "retry", "dead"]

# Values a record's fields may hold: exact money travels as int cents or as a Decimal-formatted
# string, never as a float.
FieldValue = str | int | bool | dt.date | dt.datetime | None


@dataclass(frozen=True)
class OutgoingRecord:
    """One record to deliver, already mapped onto the target's field names."""

    key: str  # the landlord's natural key (BT number, invoice number …), unique in a batch
    idempotency_key: str  # stable for this version of this record; changes when the payload does
    fields: Mapping[str, FieldValue]  # target field name → value
    peer_id: str | None = None  # the peer's id from an earlier delivery (update, not create)


@dataclass(frozen=True)
class Delivered:
    """The peer's answer for one record."""

    key: str
    outcome: Outcome
    peer_id: str | None = None  # the id the peer gave the record (Salesforce Id, X3 NUM …)
    message: str = ""  # the peer's own words when it refused the record
    created: bool | None = None  # True: created, False: updated, None: the peer did not say
    details: Mapping[str, Any] = field(default_factory=dict)


class Sink(Protocol):
    """A push target of one landlord (see the module docstring for the rules)."""

    kind: str  # sql, soap, sage_x3, sage100_file, salesforce
    name: str  # the sink's name in the landlord's datafix

    def batch_size(self, pending: int) -> int:
        """How many records to hand `send` at once when `pending` are waiting."""
        ...

    def send(self, records: Sequence[OutgoingRecord]) -> list[Delivered]:
        """Deliver `records`; one `Delivered` per record, in the same order."""
        ...

    def read_back(self, records: Sequence[OutgoingRecord]) -> dict[str, str]:
        """`{key: peer_id}` of the records the peer already holds in exactly this version."""
        ...

    def close(self) -> None:
        """Release connections; the sink may not be used afterwards."""
        ...


class BatchedSink:
    """Base of the web-service sinks (SOAP, Sage X3): at most `max_batch` records a `send`,
    over an HTTP session, and no use after `close`.

    The session is the caller's (TLS trust, proxies, mounted adapters: shared, never closed
    here) or, when `auth` (HTTP Basic) is given without one, a session made on first use, the
    only one `close` closes. A subclass calls `_hold_transport` from its constructor, then
    `_check_open` and `_http_session` when it connects.
    """

    name: str
    max_batch: int

    def _hold_transport(
        self,
        address: str | None,
        timeout: float,
        operation_timeout: float,
        retry: RetryPolicy,
        session: Any,
        auth: tuple[str, str] | None,
    ) -> None:
        """What every web-service sink holds: the endpoint `address` (None: the WSDL's), the
        `timeout` of a connection and the `operation_timeout` of one call, its `retry` policy,
        the calls it made (by operation) and the HTTP session (`session`, or one for `auth`)."""
        self.address = address
        self.timeout = timeout
        self.operation_timeout = operation_timeout
        self.retry = retry
        self.calls: Counter[str] = Counter()
        self._session = session
        self._http_auth = auth
        self._own_session = False
        self._closed = False

    def batch_size(self, pending: int) -> int:
        return max(0, min(pending, self.max_batch))

    def close(self) -> None:
        if self._own_session and self._session is not None:
            self._session.close()
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"sink {self.name} is closed")

    def _http_session(self) -> Any:
        """The session calls go through: the caller's, or one made here for `auth`."""
        if self._http_auth is not None:
            if self._session is None:
                import requests  # only web-service sinks need it

                self._session = requests.Session()
                self._own_session = True
            self._session.auth = self._http_auth
        return self._session


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"cannot put {type(value).__name__} in a payload: {value!r}")


def payload_json(fields: Mapping[str, FieldValue]) -> str:
    """The canonical JSON text of a payload (sorted keys): what the outbox stores and hashes."""
    return json.dumps(
        dict(fields),
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
        default=_json_default,
    )


def payload_hash(fields: Mapping[str, FieldValue]) -> str:
    """SHA-256 of `payload_json(fields)`: equal payloads, equal hashes, whatever the key order."""
    return hashlib.sha256(payload_json(fields).encode("utf-8")).hexdigest()


# characters XML 1.0 cannot carry (lxml refuses them, openpyxl too): C0 controls but tab, line
# feed and carriage return; lone surrogates; U+FFFE and U+FFFF
XML_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def printable(text: str) -> str:
    """`text` with its control characters written as escapes (`\\x01`), fit for a message."""
    return _CONTROL.sub(lambda found: found.group().encode("unicode_escape").decode(), text)


_CONTROL = re.compile("[\x00-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def refused_value(record: OutgoingRecord, field_name: str, problem: str, fix: str) -> Delivered:
    """A `dead` outcome for a record one of whose values the target cannot take."""
    return Delivered(
        record.key,
        "dead",
        message=f"record {printable(record.key)}: field `{field_name}` {problem} — {fix}",
        details={"field": field_name},
    )


def unsafe_text(
    record: OutgoingRecord, pattern: re.Pattern[str] = XML_UNSAFE, *, target: str = "XML"
) -> Delivered | None:
    """A `dead` outcome when a text field or the record's key holds a character `pattern`
    matches (by default one XML cannot carry), else None."""
    texts = [*record.fields.items(), ("(the record's key)", record.key)]
    for name, value in texts:
        if not isinstance(value, str):
            continue
        found = pattern.search(value)
        if found is None:
            continue
        character = found.group()
        return refused_value(
            record,
            name,
            f"holds the control character U+{ord(character):04X} at position"
            f" {found.start() + 1} of {len(value)}, which {target} cannot carry",
            "remove it from the source row (`datafix outbox` names it): the next run sends the"
            " changed record",
        )
    return None
