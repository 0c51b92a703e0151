"""Helpers the push-sink tests share (SOAP, Sage X3): a retry policy for fast peers, records
keyed by work order, a minimal outbox loop and a send with poisoned records."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from connectors.delivery import Delivered, OutgoingRecord, Sink
from connectors.errors import RetriableError
from connectors.retry import RetryPolicy

FAST = RetryPolicy(attempts=4, first_wait=0.01, max_wait=0.02, jitter=0.01)


def work_order_records(
    count: int, version: str, document: str, fields: Callable[[int], dict[str, object]]
) -> list[OutgoingRecord]:
    """Records keyed by work order (`BT000001` …), the idempotency key naming the `document`
    (`BT`, `PV`) and its `version`, with `fields(number)`."""
    return [
        OutgoingRecord(
            key=f"BT{number:06d}",
            idempotency_key=f"{version}-{document}{number:06d}",
            fields=fields(number),
        )
        for number in range(1, count + 1)
    ]


def deliver(sink: Sink, records: Sequence[OutgoingRecord]) -> dict[str, Delivered]:
    """A minimal outbox: read back what is in doubt, send the rest, start again after a
    transient failure of a whole call (a `retry` outcome stays pending)."""
    done: dict[str, Delivered] = {}
    pending = list(records)
    for _ in range(1000):
        if not pending:
            return done
        try:
            held = sink.read_back(pending)
            for record in pending:
                if record.key in held:
                    done[record.key] = Delivered(record.key, "sent", peer_id=held[record.key])
            pending = [record for record in pending if record.key not in done]
            size = sink.batch_size(len(pending))
            for start in range(0, len(pending), size):
                for delivered in sink.send(pending[start : start + size]):
                    if delivered.outcome != "retry":
                        done[delivered.key] = delivered
        except RetriableError:
            pass
        pending = [record for record in pending if record.key not in done]
    raise AssertionError(f"{len(pending)} records still pending after 1000 rounds")


def send_poisoned(
    sink: Sink,
    records: Sequence[OutgoingRecord],
    poisoned: Sequence[int],
    poison: Callable[[str], None],
) -> dict[str, str]:
    """Have the peer refuse the records at the indexes `poisoned` (`poison(key)`), send all the
    records in one `send`, check one outcome per record in order and every other record sent;
    returns the dead records' messages by key."""
    for index in poisoned:
        poison(records[index].key)
    delivered = sink.send(records)
    assert [item.key for item in delivered] == [record.key for record in records]
    assert sum(item.outcome == "sent" for item in delivered) == len(records) - len(poisoned)
    return {item.key: item.message for item in delivered if item.outcome == "dead"}
