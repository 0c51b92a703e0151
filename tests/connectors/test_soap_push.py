"""`SoapSink` against the local landlord ERP peer's import port, through zeep over loopback.

Covers batch (`SubmitCommitments`) and one-call-per-record (`SubmitCompletionReport`) modes,
per-item rejections, a client fault or values the WSDL refuses for one record, transient
faults, read-back of the held versions, and resends after a crash (no duplicate movement, no
missing record), with and without the peer's seeded transient faults.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from connectors.delivery import Delivered, OutgoingRecord
from connectors.errors import RetriableError
from connectors.retry import RetryPolicy
from connectors.sandbox.soap_erp import LandlordErpPeer
from connectors.soap.push import ReadBack, SoapSink, cents_text
from tests.connectors.erp_records import erp_commitments, erp_reports
from tests.connectors.sinks import FAST, deliver, send_poisoned

ONCE = RetryPolicy(attempts=1, first_wait=0, max_wait=0, jitter=0)
pytestmark = pytest.mark.usefixtures("no_thread_left_behind")


@pytest.fixture
def erp() -> Iterator[LandlordErpPeer]:
    with LandlordErpPeer(slow_seconds=0.6, transient_seed=7) as peer:
        yield peer


def _commitment_sink(peer: LandlordErpPeer, **options: object) -> SoapSink:
    settings: dict[str, object] = {
        "wsdl": peer.wsdl_url,
        "operation": "SubmitCommitments",
        "read_back": ReadBack("GetCommitments"),
        "amount_fields": ["AmountInclTax"],
        "operation_timeout": 0.3,
        "retry": FAST,
    }
    settings.update(options)
    return SoapSink("erp-commitments", **settings)  # type: ignore[arg-type]


def _report_sink(peer: LandlordErpPeer, **options: object) -> SoapSink:
    settings: dict[str, object] = {
        "wsdl": peer.wsdl_url,
        "operation": "SubmitCompletionReport",
        "read_back": ReadBack("GetCompletionReports"),
        "operation_timeout": 0.3,
        "retry": FAST,
    }
    settings.update(options)
    return SoapSink("erp-reports", **settings)  # type: ignore[arg-type]


SINKS = {"batch": ("commitments", _commitment_sink, erp_commitments)}
SINKS["per-record"] = ("completion_reports", _report_sink, erp_reports)


def test_nothing_connects_before_the_first_send(erp: LandlordErpPeer) -> None:
    sink = _commitment_sink(erp)
    assert sink.batch_size(1000) == 100
    assert sink.send([]) == [] and sink.read_back([]) == {}
    assert (erp.wsdl_requests, erp.calls) == (0, 0)
    sink.send(erp_commitments(1))
    assert (erp.wsdl_requests, erp.calls) == (1, 1)
    sink.close()


@pytest.mark.parametrize(
    ("operation", "mode"),
    [("SubmitCommitments", "batch"), ("SubmitCompletionReport", "per_record")],
    ids=["list-input-is-batch", "record-input-is-per-record"],
)
def test_the_mode_is_read_from_the_wsdl(erp: LandlordErpPeer, operation: str, mode: str) -> None:
    sink = SoapSink("erp", wsdl=erp.wsdl_url, operation=operation)
    records = erp_commitments(2) if mode == "batch" else erp_reports(2)
    assert [delivered.outcome for delivered in sink.send(records)] == ["sent", "sent"]
    assert sink.mode == mode
    assert erp.calls_by_operation[operation] == (1 if mode == "batch" else 2)


def test_values_arrive_exact(erp: LandlordErpPeer) -> None:
    delivered = _commitment_sink(erp).send(erp_commitments(1))
    assert delivered == [
        Delivered("BT000001", "sent", peer_id="ENG-000001", details={"status": "ACCEPTED"})
    ]
    held = erp.held["commitments"]["BT000001"]
    assert held["AmountExclTaxCents"] == "18051"
    assert Decimal(held["AmountInclTax"]) == Decimal("198.56")
    assert held["OrderedOn"] == "2026-03-02"
    assert held["IdempotencyKey"] == "v1-BT000001"
    assert cents_text(-5) == "-0.05" and cents_text(100) == "1.00"


@pytest.mark.parametrize("kind", ["batch", "per-record"])
def test_a_thousand_records_with_seven_poisoned(erp: LandlordErpPeer, kind: str) -> None:
    store, make_sink, make_records = SINKS[kind]
    records = make_records(1000)
    poisoned = (0, 99, 100, 333, 500, 998, 999)

    def refusal(key: str) -> str:
        return f"{key} : engagement clôturé, aucune modification possible"

    # a batch of 100 is not a slow call: a generous timeout, so that a loaded machine (CI's
    # two workers) does not time a batch out and have it retried (11 calls, not 10)
    sink = make_sink(erp, operation_timeout=30)
    dead = send_poisoned(sink, records, poisoned, lambda key: erp.poison(key, refusal(key)))
    assert dead == {records[index].key: refusal(records[index].key) for index in poisoned}
    assert erp.movement_count(store) == 993
    assert erp.calls == (10 if kind == "batch" else 1000)


def test_an_item_the_erp_rejects_is_dead_with_its_message(erp: LandlordErpPeer) -> None:
    records = erp_commitments(3)
    fields = {**records[1].fields, "BudgetLine": ""}
    records[1] = OutgoingRecord(records[1].key, records[1].idempotency_key, fields)
    outcomes = [(d.outcome, d.message) for d in _commitment_sink(erp).send(records)]
    assert outcomes == [
        ("sent", ""),
        ("dead", "BT000002 : ligne budgétaire obligatoire"),
        ("sent", ""),
    ]


def test_a_client_fault_on_a_one_record_call_kills_that_record_only(erp: LandlordErpPeer) -> None:
    records = erp_reports(3)
    records[1] = OutgoingRecord(records[1].key, "bad", {**records[1].fields, "Rating": 9})
    delivered = _report_sink(erp).send(records)
    assert [d.outcome for d in delivered] == ["sent", "dead", "sent"]
    assert delivered[1].message == "SubmitCompletionReport: Rating must be 1 to 5 (got '9')"


def test_values_the_wsdl_refuses_kill_that_item_and_the_batch_goes_on(
    erp: LandlordErpPeer,
) -> None:
    records = erp_commitments(3)
    fields = {name: value for name, value in records[0].fields.items() if name != "OrderedOn"}
    records[0] = OutgoingRecord(records[0].key, records[0].idempotency_key, fields)
    delivered = _commitment_sink(erp).send(records)
    assert [d.outcome for d in delivered] == ["dead", "sent", "sent"]
    assert "Missing element OrderedOn" in delivered[0].message
    assert erp.movement_count("commitments") == 2


@pytest.mark.parametrize("mode", ["http_503", "fault_busy", "slow"])
@pytest.mark.parametrize("kind", ["batch", "per-record"])
def test_a_transient_fault_of_the_whole_call_is_retriable(
    erp: LandlordErpPeer, kind: str, mode: str
) -> None:
    _, make_sink, make_records = SINKS[kind]
    erp.set_fault(mode)
    with pytest.raises(RetriableError):
        make_sink(erp, retry=ONCE).send(make_records(2))


def test_a_transient_fault_is_retried_inside_with_the_same_key(erp: LandlordErpPeer) -> None:
    erp.set_fault("slow", times=1)  # processed, answer lost: the retry is answered as a replay
    delivered = _commitment_sink(erp).send(erp_commitments(5))
    assert [d.outcome for d in delivered] == ["sent"] * 5
    assert erp.movement_count("commitments") == 5
    assert erp.replays["commitments"] == 5


@pytest.mark.parametrize("kind", ["batch", "per-record"])
def test_read_back_finds_exactly_the_held_versions(erp: LandlordErpPeer, kind: str) -> None:
    _, make_sink, make_records = SINKS[kind]
    sink = make_sink(erp)
    sink.send(make_records(4)[:3])
    asked = make_records(4)[:2] + make_records(4, "v2")[2:]  # v1 held, v1 held, v2, never sent
    held = sink.read_back(asked)
    assert sorted(held) == ["BT000001", "BT000002"]
    assert all(peer_id.endswith(("000001", "000002")) for peer_id in held.values())


@pytest.mark.parametrize("kind", ["batch", "per-record"])
def test_a_resend_after_a_crash_leaves_no_duplicate_and_no_hole(
    erp: LandlordErpPeer, kind: str
) -> None:
    store, make_sink, make_records = SINKS[kind]
    records = make_records(200)
    make_sink(erp, max_batch=20).send(records[:130])  # the answers are lost in the crash
    erp.transient_rate = 0.2
    delivered = deliver(make_sink(erp, max_batch=20), records)
    assert sum(erp.transient_faults.values()) > 0
    assert {d.outcome for d in delivered.values()} == {"sent"}
    assert len(delivered) == 200
    assert erp.movement_count(store) == 200
    assert erp.duplicate_movements(store) == 0
    assert all(len(movements) == 1 for movements in erp.movements[store].values())


def test_a_hub_inventing_a_key_per_attempt_would_duplicate(erp: LandlordErpPeer) -> None:
    sink = _commitment_sink(erp)
    sink.send(erp_commitments(3))
    sink.send(erp_commitments(3))  # the same keys: replays, nothing recorded
    assert erp.duplicate_movements("commitments") == 0
    same_payload = [
        OutgoingRecord(record.key, f"fresh-{record.idempotency_key}", record.fields)
        for record in erp_commitments(3)
    ]
    sink.send(same_payload)
    assert erp.duplicate_movements("commitments") == 3
