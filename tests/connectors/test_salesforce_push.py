"""The Salesforce sink against the local HTTPS peer, simple-salesforce used unmodified.

10,000 upserts take 50 collection calls (REST) or one Bulk API 2.0 job; sending them again
creates nothing; poisoned records come back dead with the peer's own words while the rest are
sent; a locked row is a retry; a whole call that fails transiently raises RetriableError; the
read-back returns only records held in this very version; nothing connects before the first
call. Counts are read at the peer.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import Any

import pytest

from connectors.delivery import Delivered, OutgoingRecord, payload_hash
from connectors.errors import ConfigError, RetriableError
from connectors.salesforce.push import SalesforceSink
from connectors.sandbox.salesforce import SalesforcePeer

API = "/services/data/v59.0"
OBJECT = "WorkOrder"
EXTERNAL_ID = "Hub_External_Id__c"
COLLECTIONS = f"{API}/composite/sobjects/{OBJECT}/{EXTERNAL_ID}"
UTC = dt.UTC
PARIS = dt.timezone(dt.timedelta(hours=1))
pytestmark = pytest.mark.usefixtures("no_thread_left_behind")

MODES = pytest.mark.parametrize("bulk", [False, True], ids=["collections", "bulk"])

SinkFactory = Callable[..., SalesforceSink]


@pytest.fixture
def make_sink(peer: SalesforcePeer) -> Iterator[SinkFactory]:
    """`SalesforceSink` on the peer's WorkOrder, trusting its CA; closed at teardown."""
    made: list[SalesforceSink] = []

    def factory(**options: Any) -> SalesforceSink:
        options.setdefault("object_name", OBJECT)
        options.setdefault("external_id_field", EXTERNAL_ID)
        options.setdefault("ca_bundle", peer.ca_path)
        options.setdefault("bulk_poll_wait", 0)
        options.setdefault("timeout", 10)
        sink = SalesforceSink("fsm-completions", peer.session_auth(), **options)
        made.append(sink)
        return sink

    yield factory
    for sink in made:
        sink.close()


def completion(number: int, **changes: Any) -> OutgoingRecord:
    """The completion of work order `number`, as the outbox would hand it over."""
    fields: dict[str, Any] = {
        "Status": "Completed",
        "Completed_At__c": dt.datetime(2026, 1, 5, 9, 30, tzinfo=PARIS)
        + dt.timedelta(minutes=number),
        "Tenant_Absent__c": number % 3 == 0,
        "Rating__c": number % 5 + 1,
        "Technician__c": f"Technicien {number % 17}",
        "Completion_Ref__c": f"CR-{number:06d}" if number % 4 else None,
        "Date_Commande__c": dt.date(2025, 12, 1) + dt.timedelta(days=number % 30),
        **changes,
    }
    return OutgoingRecord(
        key=f"WO-{number:06d}", idempotency_key=payload_hash(fields), fields=fields
    )


def completions(count: int, start: int = 0) -> list[OutgoingRecord]:
    return [completion(number) for number in range(start, start + count)]


def push_all(sink: SalesforceSink, records: Sequence[OutgoingRecord]) -> list[Delivered]:
    """Send everything, a batch of `sink.batch_size(pending)` at a time, as the outbox does."""
    delivered: list[Delivered] = []
    pending = list(records)
    while pending:
        size = sink.batch_size(len(pending))
        batch, pending = pending[:size], pending[size:]
        answers = sink.send(batch)
        assert [answer.key for answer in answers] == [record.key for record in batch]
        delivered.extend(answers)
    return delivered


def pushed_rows(peer: SalesforcePeer) -> list[dict[str, Any]]:
    return [row for row in peer.store.rows(OBJECT) if row[EXTERNAL_ID] is not None]


def outcomes(delivered: Sequence[Delivered]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for answer in delivered:
        counts[answer.outcome] = counts.get(answer.outcome, 0) + 1
    return counts


# --- Connecting -----------------------------------------------------------------------------


def test_nothing_connects_before_the_first_send(
    peer: SalesforcePeer, make_sink: SinkFactory
) -> None:
    sink = make_sink()
    assert sink.kind == "salesforce"
    assert sink.batch_size(10) == 200
    assert sink.send([]) == []
    assert sink.read_back([]) == {}
    sink.close()
    assert peer.count() == 0


@pytest.mark.parametrize(
    ("options", "wording"),
    [
        pytest.param({"object_name": "Work Order"}, "not an API name", id="object-name"),
        pytest.param({"external_id_field": "Ext'--"}, "not a field API name", id="ext-field"),
        pytest.param({"bulk_threshold": 0}, "bulk_threshold", id="threshold"),
        pytest.param({"api_version": "v59.0"}, "no leading v", id="version"),
        pytest.param({"ca_bundle": "/nowhere/ca.pem"}, "does not exist", id="ca-bundle"),
    ],
)
def test_bad_settings_are_refused_before_any_call(
    peer: SalesforcePeer, make_sink: SinkFactory, options: dict[str, Any], wording: str
) -> None:
    with pytest.raises(ConfigError, match=wording):
        make_sink(**options)
    assert peer.count() == 0


def test_batch_size_is_one_collection_below_the_threshold_and_everything_above(
    make_sink: SinkFactory,
) -> None:
    sink = make_sink(bulk_threshold=2000)
    assert [sink.batch_size(n) for n in (1, 199, 200, 1999, 2000, 10_000)] == [
        200,
        200,
        200,
        200,
        2000,
        10_000,
    ]


# --- Volume and idempotency -----------------------------------------------------------------


@MODES
def test_ten_thousand_upserts_then_the_same_again_create_nothing_new(
    peer: SalesforcePeer, make_sink: SinkFactory, bulk: bool
) -> None:
    sink = make_sink(bulk_threshold=2000 if bulk else 20_000)
    records = completions(10_000)

    first = push_all(sink, records)

    assert outcomes(first) == {"sent": 10_000}
    assert all(answer.created is True and answer.peer_id for answer in first)
    if bulk:
        assert len(peer.ingest_jobs()) == 1
        assert peer.count("POST", f"{API}/jobs/ingest") == 1
        assert peer.count("PATCH", COLLECTIONS) == 0
    else:
        assert peer.count("PATCH", COLLECTIONS) == 50
        assert peer.count() <= 50
        assert peer.ingest_jobs() == []
    rows = pushed_rows(peer)
    assert len(rows) == 10_000
    assert peer.store.duplicates(OBJECT, EXTERNAL_ID) == {}

    second = push_all(sink, records)

    assert outcomes(second) == {"sent": 10_000}
    assert all(answer.created is False for answer in second)
    assert [answer.peer_id for answer in second] == [answer.peer_id for answer in first]
    assert len(pushed_rows(peer)) == 10_000
    assert peer.store.duplicates(OBJECT, EXTERNAL_ID) == {}


@MODES
def test_values_arrive_with_their_salesforce_types(
    peer: SalesforcePeer, make_sink: SinkFactory, bulk: bool
) -> None:
    sink = make_sink(bulk_threshold=2 if bulk else 1000)
    empty = completion(7, Completion_Ref__c=None, Rating__c=None, Tenant_Absent__c=False)
    records = [completion(1), empty]

    assert outcomes(sink.send(records)) == {"sent": 2}

    (held,) = peer.store.find(OBJECT, EXTERNAL_ID, "WO-000001")
    assert held["Status"] == "Completed"
    assert held["Completed_At__c"] == dt.datetime(2026, 1, 5, 8, 31, tzinfo=UTC)
    assert held["Date_Commande__c"] == dt.date(2025, 12, 2)
    assert held["Rating__c"] == Decimal(2)
    assert held["Tenant_Absent__c"] is False
    assert held["Completion_Ref__c"] == "CR-000001"
    (cleared,) = peer.store.find(OBJECT, EXTERNAL_ID, "WO-000007")
    assert cleared["Completion_Ref__c"] is None
    assert cleared["Rating__c"] is None


def test_the_external_id_in_the_fields_wins_over_the_key(
    peer: SalesforcePeer, make_sink: SinkFactory
) -> None:
    record = OutgoingRecord(
        key="BT345678", idempotency_key="v1", fields={EXTERNAL_ID: "HUB-1", "Status": "Completed"}
    )

    (answer,) = make_sink().send([record])

    assert answer.key == "BT345678"
    assert answer.outcome == "sent"
    assert [row["Id"] for row in peer.store.find(OBJECT, EXTERNAL_ID, "HUB-1")] == [answer.peer_id]


def test_a_float_is_dead_before_sending_and_the_rest_is_sent(
    peer: SalesforcePeer, make_sink: SinkFactory
) -> None:
    records = [completion(1), completion(2, Rating__c=4.5)]

    sent, refused = make_sink().send(records)

    assert sent.outcome == "sent"
    assert refused.outcome == "dead"
    assert "Rating__c" in refused.message and "float" in refused.message
    assert peer.store.find(OBJECT, EXTERNAL_ID, "WO-000002") == []


# --- Per-record refusals --------------------------------------------------------------------


@MODES
def test_poisoned_records_are_dead_with_the_peer_message_and_the_rest_are_sent(
    peer: SalesforcePeer, make_sink: SinkFactory, bulk: bool
) -> None:
    poisoned = {f"WO-{number:06d}" for number in (3, 150, 151, 402, 677, 900, 999)}
    peer.poison(
        OBJECT,
        EXTERNAL_ID,
        lambda value: value in poisoned,
        "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        "Le bon de travaux est clos côté bailleur",
    )
    sink = make_sink(bulk_threshold=500 if bulk else 5000)

    delivered = push_all(sink, completions(1000))

    assert outcomes(delivered) == {"sent": 993, "dead": 7}
    dead = [answer for answer in delivered if answer.outcome == "dead"]
    assert {answer.key for answer in dead} == poisoned
    for answer in dead:
        assert answer.message == (
            "FIELD_CUSTOM_VALIDATION_EXCEPTION: Le bon de travaux est clos côté bailleur"
        )
    assert len(pushed_rows(peer)) == 993


@MODES
def test_a_restricted_picklist_value_is_dead_naming_the_field(
    make_sink: SinkFactory, bulk: bool
) -> None:
    sink = make_sink(bulk_threshold=2 if bulk else 1000)

    good, bad = sink.send([completion(1), completion(2, Status="Terminé")])

    assert good.outcome == "sent"
    assert bad.outcome == "dead"
    assert bad.message.startswith("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST: Status: bad value")
    assert bad.message.endswith("(Status)")


@MODES
def test_a_locked_row_is_a_retry_that_goes_through_next_time(
    peer: SalesforcePeer, make_sink: SinkFactory, bulk: bool
) -> None:
    peer.lock_rows(OBJECT, EXTERNAL_ID, "WO-000004", times=1)
    sink = make_sink(bulk_threshold=10 if bulk else 1000)
    records = completions(10)

    first = sink.send(records)

    assert outcomes(first) == {"sent": 9, "retry": 1}
    (locked,) = [answer for answer in first if answer.outcome == "retry"]
    assert locked.key == "WO-000004"
    assert locked.message.startswith("UNABLE_TO_LOCK_ROW: unable to obtain exclusive access")
    assert [answer.outcome for answer in sink.send([records[4]])] == ["sent"]


def test_a_value_held_twice_at_the_peer_is_refused_not_guessed(
    peer: SalesforcePeer, make_sink: SinkFactory
) -> None:
    for _ in range(2):  # a plain create never deduplicates: a hub bug would look like this
        peer.store.insert(OBJECT, {EXTERNAL_ID: "WO-000001", "Status": "New"})

    (answer,) = make_sink().send([completion(1)])

    assert answer.outcome == "dead"
    assert answer.message.startswith("DUPLICATE_EXTERNAL_ID: Hub_External_Id__c: more than one")
    assert len(peer.store.duplicates(OBJECT, EXTERNAL_ID)["wo-000001"]) == 2


# --- Whole-call failures --------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind",
    ["503", "500", "429", "403", "stall"],
    ids=["unavailable-503", "server-error-500", "too-many-429", "limit-403", "timeout"],
)
@MODES
def test_a_transient_whole_call_failure_raises_retriable_and_a_resend_converges(
    peer: SalesforcePeer, make_sink: SinkFactory, bulk: bool, kind: str
) -> None:
    sink = make_sink(bulk_threshold=20 if bulk else 1000, timeout=0.5)
    records = completions(20)
    peer.faults.transient_kinds = (kind,)
    peer.faults.stall_seconds = 1.5
    peer.faults.transient_rate = 1.0

    with pytest.raises(RetriableError):
        sink.send(records)

    peer.faults.transient_rate = 0.0
    assert peer.faults.injected[kind] >= 1
    assert outcomes(sink.send(records)) == {"sent": 20}
    assert len(pushed_rows(peer)) == 20
    assert peer.store.duplicates(OBJECT, EXTERNAL_ID) == {}


def test_an_expired_session_is_a_config_error(peer: SalesforcePeer, make_sink: SinkFactory) -> None:
    peer.faults.expired_session = True

    with pytest.raises(ConfigError, match="session expired or invalid"):
        make_sink().send(completions(3))


@pytest.mark.parametrize(
    ("options", "changes", "wording"),
    [
        pytest.param({}, {"Nope__c": "x"}, "INVALID_FIELD", id="unknown-field"),
        pytest.param(
            {"external_id_field": "Subject"}, {}, "is an External ID field", id="not-external-id"
        ),
        pytest.param({"object_name": "Chantier__c"}, {}, "check that the object", id="no-object"),
    ],
)
def test_a_refused_configuration_is_a_config_error(
    make_sink: SinkFactory, options: dict[str, Any], changes: dict[str, Any], wording: str
) -> None:
    with pytest.raises(ConfigError, match=wording):
        make_sink(**options).send([completion(1, **changes)])


def test_random_transient_faults_end_with_every_record_held_once(
    peer: SalesforcePeer, make_sink: SinkFactory
) -> None:
    """The outbox's loop: on RetriableError read back, keep what arrived, resend the rest."""
    peer.faults.rng = random.Random(42)
    peer.faults.stall_seconds = 1.0
    peer.faults.transient_rate = 0.2
    sink = make_sink(timeout=0.5)
    pending = completions(1200)
    rounds = 0
    while pending:
        rounds += 1
        assert rounds < 200
        batch = pending[: sink.batch_size(len(pending))]
        try:
            answers = sink.send(batch)
        except RetriableError:
            try:
                held = sink.read_back(batch)
            except RetriableError:
                continue
            pending = [record for record in pending if record.key not in held]
            continue
        assert outcomes(answers) == {"sent": len(batch)}
        pending = pending[len(batch) :]

    assert sum(peer.faults.injected.values()) >= 3
    assert len(pushed_rows(peer)) == 1200
    assert peer.store.duplicates(OBJECT, EXTERNAL_ID) == {}


# --- Read-back ------------------------------------------------------------------------------


def test_read_back_returns_only_records_held_in_this_very_version(
    peer: SalesforcePeer, make_sink: SinkFactory
) -> None:
    sink = make_sink()
    records = completions(1000)
    ids = {answer.key: answer.peer_id for answer in push_all(sink, records)}
    queries_before = peer.count("GET", f"{API}/query")
    changed = completion(10, Rating__c=5 if records[10].fields["Rating__c"] != 5 else 4)
    moved = completion(20, Completed_At__c=dt.datetime(2026, 1, 5, 8, 50, 1, tzinfo=UTC))
    cleared = completion(30, Technician__c=None)
    never_sent = completion(5000)
    asked = [*records[:10], changed, *records[11:20], moved, *records[21:30], cleared]
    asked += [*records[31:], never_sent]

    held = sink.read_back(asked)

    unchanged = {record.key for record in records} - {"WO-000010", "WO-000020", "WO-000030"}
    assert held == {key: ids[key] for key in unchanged}
    queries = [path for method, path, _ in peer.log if method == "GET" and "/query" in path]
    assert peer.count("GET", f"{API}/query") - queries_before > 1  # split to keep URLs short
    assert max(len(path) for path in queries) < 16_000


def test_read_back_normalises_types_and_time_zones(
    peer: SalesforcePeer, make_sink: SinkFactory
) -> None:
    sink = make_sink()
    record = completion(3)
    (answer,) = sink.send([record])
    same_instant = dict(record.fields)
    same_instant["Completed_At__c"] = record.fields["Completed_At__c"].astimezone(UTC)
    same_instant["Rating__c"] = str(record.fields["Rating__c"])
    as_text = OutgoingRecord(record.key, "v2", same_instant)

    assert sink.read_back([as_text]) == {record.key: answer.peer_id}


def test_read_back_ignores_a_value_held_twice(peer: SalesforcePeer, make_sink: SinkFactory) -> None:
    sink = make_sink()
    record = completion(1)
    sink.send([record])
    peer.store.insert(OBJECT, {EXTERNAL_ID: "wo-000001", "Status": "Completed"})

    assert sink.read_back([record]) == {}
