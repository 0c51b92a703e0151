"""`SageX3Sink` against the local `CAdxWebServiceXmlCC` peer (writable), through zeep.

Covers save (a new NUM per call), modify, status 0 business errors as dead records with X3's
messages, exact values, transient faults (never a blind resend of save), read-back by query
on the reference field, and resends after a crash: no duplicate invoice, no missing one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from connectors.delivery import Delivered, OutgoingRecord
from connectors.errors import RetriableError
from connectors.sage.push import SageX3Sink
from connectors.sandbox.sage_x3 import SageX3Peer, demo_seed
from tests.connectors.sinks import FAST, deliver, send_poisoned

pytestmark = pytest.mark.usefixtures("no_thread_left_behind")
GROUPS = {name: "SIH1_1" for name in ("YBTNUM", "AMTNOT", "AMTATI", "YHUBREF", "YHUBVER")}


@pytest.fixture
def sage() -> Iterator[SageX3Peer]:
    with SageX3Peer(demo_seed(), writable=True, slow_seconds=0.6, transient_seed=3) as peer:
        yield peer


def _sink(peer: SageX3Peer, **options: object) -> SageX3Sink:
    settings: dict[str, object] = {
        "wsdl": peer.wsdl_url,
        "pool_alias": "SEED",
        "field_groups": GROUPS,
        "lines_table": "SIH4_1",
        "amount_fields": ["AMTNOT", "AMTATI", "SIH4_1.1.GROPRI"],
        "operation_timeout": 0.3,
        "retry": FAST,
    }
    settings.update(options)
    return SageX3Sink("x3-invoices", **settings)  # type: ignore[arg-type]


def _invoices(count: int, version: str = "v1", customer: str = "C0002") -> list[OutgoingRecord]:
    return [
        OutgoingRecord(
            key=f"HUB-FA-{number:05d}",
            idempotency_key=f"{version}-{number:05d}",
            fields={
                "SALFCY": "SED",
                "SIVTYP": "FRN",
                "INVDAT": dt.date(2026, 3, 5),
                "BPCINV": customer,
                "CUR": "EUR",
                "YBTNUM": f"BT{345000 + number}",
                "AMTNOT": 12345 + number,
                "AMTATI": 13580 + number,
                "SIH4_1.1.ITMREF": "DEPANNAGE",
                "SIH4_1.1.QTY": 1,
                "SIH4_1.1.GROPRI": 12345 + number,
            },
        )
        for number in range(1, count + 1)
    ]


def test_nothing_connects_before_the_first_send(sage: SageX3Peer) -> None:
    sink = _sink(sage)
    assert sink.send([]) == [] and sink.read_back([]) == {}
    assert (sage.wsdl_requests, sage.calls) == (0, 0)
    sink.send(_invoices(1))
    assert (sage.wsdl_requests, sage.calls) == (1, 1)


def test_save_creates_an_invoice_with_exact_values(sage: SageX3Peer) -> None:
    [delivered] = _sink(sage).send(_invoices(1))
    assert delivered == Delivered(
        "HUB-FA-00001",
        "sent",
        peer_id="FRN-26/50001",
        created=True,
        details={"operation": "save"},
    )
    invoice = sage.records["SIH"][-1]
    assert invoice["NUM"] == "FRN-26/50001"
    assert (invoice["AMTNOT"], invoice["AMTATI"], invoice["INVDAT"]) == (
        "123.46",
        "135.81",
        "20260305",
    )
    assert invoice["SIH4_1"] == [{"ITMREF": "DEPANNAGE", "QTY": "1", "GROPRI": "123.46"}]
    assert (invoice["YHUBREF"], invoice["YHUBVER"]) == ("HUB-FA-00001", "v1-00001")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"BPCINV": "C9999"}, "[error] Client C9999 : fiche inexistante"),
        ({"YBTNUM": None}, "[error] Référence BT (YBTNUM) obligatoire"),
        ({"SIH4_1.1.COLOR": "red"}, "[error] Zone COLOR inconnue dans le tableau SIH4_1"),
    ],
    ids=["unknown-customer", "missing-bt-reference", "unknown-line-field"],
)
def test_a_business_error_is_a_dead_record_with_the_x3_message(
    sage: SageX3Peer, change: dict[str, object], message: str
) -> None:
    good, bad = _invoices(2)
    bad = OutgoingRecord(bad.key, bad.idempotency_key, {**bad.fields, **change})
    delivered = _sink(sage).send([bad, good])
    assert [(d.outcome, d.message) for d in delivered] == [("dead", message), ("sent", "")]
    assert sage.created == ["FRN-26/50001"]


def test_a_thousand_invoices_with_seven_poisoned(sage: SageX3Peer) -> None:
    records = _invoices(1000)
    poisoned = (0, 1, 250, 499, 500, 777, 999)
    dead = send_poisoned(
        _sink(sage),
        records,
        poisoned,
        lambda key: sage.poison(key, f"{key} : période comptable fermée"),
    )
    assert dead == {
        records[index].key: f"[error] {records[index].key} : période comptable fermée"
        for index in poisoned
    }
    assert len(sage.created) == 993
    assert sage.calls_by_operation["save"] == 1000


@pytest.mark.parametrize("mode", ["http_500", "http_503", "slow"])
def test_a_transient_fault_is_retriable_and_save_is_not_repeated(
    sage: SageX3Peer, mode: str
) -> None:
    sage.set_fault(mode, times=1)
    with pytest.raises(RetriableError):
        _sink(sage).send(_invoices(1))
    assert sage.calls_by_operation["save"] == 1


def test_read_back_finds_exactly_the_held_versions(sage: SageX3Peer) -> None:
    _sink(sage).send(_invoices(3)[:2])
    crashed = _sink(sage)  # a new sink: nothing remembered from the sends
    asked = _invoices(3)[:1] + _invoices(3, "v2")[1:]  # v1 held, v2 of a held one, never sent
    assert crashed.read_back(asked) == {"HUB-FA-00001": "FRN-26/50001"}
    [resent] = crashed.send([asked[1]])  # held in another version: modified, not saved again
    assert (resent.outcome, resent.peer_id, resent.created) == ("sent", "FRN-26/50002", False)
    assert sage.numbers_by_reference() == {
        "HUB-FA-00001": ["FRN-26/50001"],
        "HUB-FA-00002": ["FRN-26/50002"],
    }


def test_a_record_with_a_peer_id_is_modified(sage: SageX3Peer) -> None:
    [first] = _sink(sage).send(_invoices(1))
    [changed] = _invoices(1, "v2", customer="C0003")
    update = OutgoingRecord(changed.key, changed.idempotency_key, changed.fields, first.peer_id)
    [delivered] = _sink(sage).send([update])
    assert (delivered.outcome, delivered.created) == ("sent", False)
    assert sage.records["SIH"][-1]["BPCINV"] == "C0003"
    assert sage.calls_by_operation["modify"] == 1


def test_a_resend_after_a_crash_leaves_no_duplicate_and_no_hole(sage: SageX3Peer) -> None:
    records = _invoices(120)
    sage.poison("HUB-FA-00007", "HUB-FA-00007 : période comptable fermée")
    _sink(sage).send(records[:50])  # the answers are lost in the crash
    sage.transient_rate = 0.2
    delivered = deliver(_sink(sage, max_batch=10), records)
    assert sum(sage.transient_faults.values()) > 0
    assert len(delivered) == 120
    assert [key for key, d in delivered.items() if d.outcome == "dead"] == ["HUB-FA-00007"]
    by_reference = sage.numbers_by_reference()
    assert len(by_reference) == 119
    assert all(len(numbers) == 1 for numbers in by_reference.values())
