"""The push engine and its outbox, over a real warehouse (SQLite and PostgreSQL).

The sink here is an in-memory peer with the outcomes the protocol allows (sent, retry, dead,
whole-call transient failures, a crash after the peer applied a batch): the logic under test
is the outbox's. Real peers are exercised in tests/connectors/test_*_push.py and end to end
in tests/test_push_e2e.py.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import pytest
import sqlalchemy as sa

from connectors.delivery import Delivered, OutgoingRecord
from connectors.errors import RetriableError
from pipelines.lib.datafixes import LoadedDatafix
from pipelines.lib.derive import derive
from pipelines.lib.outbox import Outbox, PushBusyError
from pipelines.lib.push import PushOutcome, push_landlord, record_contract
from pipelines.lib.warehouse import Warehouse
from schemas.tables import outbox
from tests.pipelines.lib.helpers import migrated_warehouse
from tests.pipelines.lib.pushing import load_all, write_datafix, write_works

INVOICE_FIELDS = {
    "Reference": "invoice_ref",
    "BT": "order_ref",
    "Document": "document",
    "AmountExclVat": {"from": "amount_cents", "as": "euros"},
    "Amount": "total_cents",
    "IssuedOn": "issued_date",
}


class Crash(BaseException):
    """Stands for kill -9: not an Exception, so nothing in the engine handles it."""


class MemoryPeer:
    """A peer keeping records by key, counting applications per idempotency key."""

    def __init__(self) -> None:
        self.held: dict[str, tuple[str, dict]] = {}  # key → (idempotency key, fields)
        self.applied: Counter[str] = Counter()  # idempotency key → times applied
        self.calls = 0
        self.poisoned: set[str] = set()
        self.transient_rate = 0.0
        self.locked: Counter[str] = Counter()  # key → per-record transient refusals left
        self.crash_after_apply_on_call: int | None = None
        self.random = random.Random(7)


class MemorySink:
    kind = "memory"

    def __init__(self, peer: MemoryPeer, name: str = "erp", size: int = 100) -> None:
        self.peer, self.name, self.size = peer, name, size
        self.closed = False

    def batch_size(self, pending: int) -> int:
        return self.size

    def send(self, records: Sequence[OutgoingRecord]) -> list[Delivered]:
        peer = self.peer
        peer.calls += 1
        if peer.random.random() < peer.transient_rate:
            raise RetriableError("HTTP 503 from the peer")
        results = []
        for record in records:
            if record.key in peer.poisoned:
                results.append(Delivered(record.key, "dead", message=f"{record.key}: BT unknown"))
                continue
            if peer.locked[record.key] > 0:
                peer.locked[record.key] -= 1
                results.append(Delivered(record.key, "retry", message="UNABLE_TO_LOCK_ROW"))
                continue
            held = peer.held.get(record.key)
            if held is None or held[0] != record.idempotency_key:
                peer.applied[record.idempotency_key] += 1
            peer.held[record.key] = (record.idempotency_key, dict(record.fields))
            results.append(Delivered(record.key, "sent", peer_id=f"ID-{record.key}"))
        if peer.crash_after_apply_on_call == peer.calls:
            raise Crash
        return results

    def read_back(self, records: Sequence[OutgoingRecord]) -> dict[str, str]:
        self.peer.calls += 1
        return {
            r.key: f"ID-{r.key}"
            for r in records
            if self.peer.held.get(r.key, ("",))[0] == r.idempotency_key
        }

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def warehouse(warehouse_url: str) -> Iterator[Warehouse]:
    yield from migrated_warehouse(warehouse_url)


@pytest.fixture
def peer() -> MemoryPeer:
    """A fresh in-memory peer, without faults until a test sets them."""
    return MemoryPeer()


def setup_landlord(
    tmp_path: Path,
    warehouse: Warehouse,
    orders: int = 50,
    sink: dict[str, object] | None = None,
    **works: object,
) -> LoadedDatafix:
    write_works(tmp_path / "data", orders=orders, **works)
    path = write_datafix(
        tmp_path, "delta-habitat", {"erp": {"kind": "soap", "wsdl": "unused.wsdl",
                                            "operation": "Submit", "sends": "invoices",
                                            "fields": INVOICE_FIELDS, **(sink or {})}},
    )  # fmt: skip
    return load_all(warehouse, path)


def push(warehouse: Warehouse, loaded: LoadedDatafix, peer: MemoryPeer, **kwargs: object):
    sinks: list[MemorySink] = []

    def build(_loaded: LoadedDatafix, name: str) -> MemorySink:
        sinks.append(MemorySink(peer, name))
        return sinks[-1]

    outcomes = push_landlord(warehouse, loaded, build, sleep=lambda _s: None, **kwargs)
    assert all(sink.closed for sink in sinks)
    return outcomes


def states(warehouse: Warehouse) -> Counter[str]:
    with warehouse.engine.connect() as conn:
        return Counter(dict(conn.execute(
            sa.select(outbox.c.state, sa.func.count()).group_by(outbox.c.state)
        ).all()))  # fmt: skip


def test_derived_commitments_add_accepted_additional_quotes(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    loaded = setup_landlord(tmp_path, warehouse, orders=20)
    frame = derive(warehouse, loaded.landlord_id, "commitments").set_index("order_ref")
    # BT000005: committed 105,50 + accepted additional quote 250,00; cancelled orders excluded
    assert frame.loc["BT000005", "amount_cents"] == 10550 + 25000
    assert frame.loc["BT000005", "source_rows"] == "work_orders:BT000005;quotes:DV000005"
    assert frame.loc["BT000010", "amount_cents"] == 11050  # its quote was only sent
    assert "BT000003" not in frame.index  # status ANN → cancelled
    assert len(frame) == 15


def test_proforma_invoices_go_out_as_regularisation_requests(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    loaded = setup_landlord(tmp_path, warehouse, orders=20, invoice_statuses={3: "BRO"})
    frame = derive(warehouse, loaded.landlord_id, "invoices").set_index("invoice_ref")
    assert frame.loc["FA000010", "document"] == "regularisation_request"
    assert frame.loc["FA000011", "document"] == "invoice"
    assert frame.loc["FA000011", "total_cents"] == 21125 + 2000
    assert "FA000003" not in frame.index  # a draft is not confirmed


def test_a_second_push_makes_no_call_and_ten_changes_make_ten_updates(
    tmp_path: Path, warehouse: Warehouse, peer: MemoryPeer
) -> None:
    loaded = setup_landlord(tmp_path, warehouse, orders=1_000)
    [first] = push(warehouse, loaded, peer)
    assert (first.sent, first.queued, first.status) == (1_000, 1_000, "sent")
    assert peer.calls == 10
    peer.calls = 0
    [second] = push(warehouse, loaded, peer)
    assert (second.sent, second.unchanged, peer.calls) == (0, 1_000, 0)
    write_works(
        tmp_path / "data", orders=1_000,
        amount_overrides={i: "9999,99" for i in range(100, 110)},
    )  # fmt: skip
    loaded = load_all(warehouse, loaded.path, run_id="run-2")
    [third] = push(warehouse, loaded, peer)
    assert (third.queued, third.sent, third.unchanged) == (10, 10, 990)
    assert peer.held["FA000100"][1]["AmountExclVat"] == "9999.99"
    assert sum(peer.applied.values()) == 1_010  # 1,000 creations + 10 updates


def test_transient_whole_call_failures_still_deliver_every_record_once(
    tmp_path: Path, warehouse: Warehouse, peer: MemoryPeer
) -> None:
    loaded = setup_landlord(tmp_path, warehouse, orders=1_000)
    peer.transient_rate = 0.2
    [outcome] = push(warehouse, loaded, peer)
    assert (outcome.sent, outcome.dead, outcome.failed) == (1_000, 0, 0)
    assert len(peer.held) == 1_000
    assert max(peer.applied.values()) == 1
    assert states(warehouse) == {"sent": 1_000}


def push_seven_poisoned(
    tmp_path: Path, warehouse: Warehouse, peer: MemoryPeer, sink: dict[str, object] | None = None
) -> tuple[LoadedDatafix, PushOutcome]:
    """1,000 orders loaded, then pushed to the peer refusing seven of them for good."""
    loaded = setup_landlord(tmp_path, warehouse, orders=1_000, sink=sink)
    peer.poisoned = {f"FA{i:06d}" for i in (3, 50, 51, 400, 777, 901, 1000)}
    [outcome] = push(warehouse, loaded, peer)
    return loaded, outcome


def test_poisoned_records_are_dead_lettered_once_with_the_peer_message(
    tmp_path: Path, warehouse: Warehouse, peer: MemoryPeer
) -> None:
    loaded, outcome = push_seven_poisoned(tmp_path, warehouse, peer)
    assert (outcome.sent, outcome.dead) == (993, 7)
    assert states(warehouse) == {"sent": 993, "dead": 7}
    with warehouse.engine.connect() as conn:
        dead = conn.execute(
            sa.select(outbox.c.record_key, outbox.c.last_error, outbox.c.attempts).where(
                outbox.c.state == "dead"
            )
        ).all()
    assert {row.last_error for row in dead} == {f"{key}: BT unknown" for key in peer.poisoned}
    assert {row.attempts for row in dead} == {1}  # never retried
    peer.calls = 0
    [again] = push(warehouse, loaded, peer)
    assert (again.sent, again.dead_waiting, peer.calls) == (0, 7, 0)
    # the cause fixed at the peer, an operator replays the dead letters
    peer.poisoned = set()
    assert Outbox(warehouse.engine).replay(loaded.landlord_id, "erp") == 7
    [replayed] = push(warehouse, loaded, peer)
    assert (replayed.sent, len(peer.held)) == (7, 1_000)


def test_a_locked_record_is_retried_later_in_the_run(
    tmp_path: Path, warehouse: Warehouse, peer: MemoryPeer
) -> None:
    loaded = setup_landlord(tmp_path, warehouse, orders=200)
    peer.locked["FA000007"] = 3
    [outcome] = push(warehouse, loaded, peer)
    assert (outcome.sent, outcome.failed) == (200, 0)
    with warehouse.engine.connect() as conn:
        attempts = conn.execute(
            sa.select(outbox.c.attempts).where(outbox.c.record_key == "FA000007")
        ).scalar_one()
    assert attempts == 4


def test_a_crash_after_the_peer_applied_a_batch_neither_duplicates_nor_loses(
    tmp_path: Path, warehouse: Warehouse, peer: MemoryPeer
) -> None:
    loaded = setup_landlord(tmp_path, warehouse, orders=1_000)
    peer.crash_after_apply_on_call = 4
    with pytest.raises(Crash):
        push(warehouse, loaded, peer)
    assert states(warehouse)["sending"] == 100  # handed to the peer, answer never recorded
    peer.crash_after_apply_on_call = None
    Outbox(warehouse.engine).release(loaded.landlord_id, "not-the-holder")
    with warehouse.engine.begin() as conn:  # the crashed process is gone: its lease with it
        conn.execute(sa.text("UPDATE push_leases SET pid = 2147483646"))
    [outcome] = push(warehouse, loaded, peer)
    assert outcome.recovered == 100
    assert outcome.sent == 600
    assert len(peer.held) == 1_000 and max(peer.applied.values()) == 1


def test_a_landlord_pushes_one_at_a_time(tmp_path: Path, warehouse: Warehouse) -> None:
    loaded = setup_landlord(tmp_path, warehouse, orders=10)
    Outbox(warehouse.engine).acquire(
        loaded.landlord_id, "other-run", stale_after=dt.timedelta(hours=1)
    )
    with pytest.raises(PushBusyError, match="another push of delta-habitat is running"):
        push(warehouse, loaded, MemoryPeer())


def test_a_failed_contract_holds_the_push(tmp_path: Path, warehouse: Warehouse) -> None:
    loaded = setup_landlord(tmp_path, warehouse, orders=10)
    record_contract(
        warehouse, loaded.landlord_id, "invoices", passed=False,
        summary="2 rows break `amount_cents >= 0`", run_id="run-9",
    )  # fmt: skip
    peer = MemoryPeer()
    [outcome] = push(warehouse, loaded, peer)
    assert outcome.status == "blocked"
    assert "invoices contract failed in run run-9" in outcome.error
    assert (peer.calls, states(warehouse)) == (0, Counter())
    record_contract(
        warehouse, loaded.landlord_id, "invoices", passed=True, summary="ok", run_id="run-10"
    )
    [outcome] = push(warehouse, loaded, peer)
    assert outcome.sent == 10


def test_dry_run_lists_changes_field_by_field_and_sends_nothing(
    tmp_path: Path, warehouse: Warehouse, peer: MemoryPeer
) -> None:
    loaded = setup_landlord(tmp_path, warehouse, orders=30)
    [dry] = push(warehouse, loaded, peer, dry_run=True)
    assert (dry.status, dry.queued, peer.calls, states(warehouse)) == ("dry run", 30, 0, Counter())
    assert dry.changes[0].action == "create"
    push(warehouse, loaded, peer)
    write_works(tmp_path / "data", orders=30, amount_overrides={2: "1000,00"})
    loaded = load_all(warehouse, loaded.path, run_id="run-2")
    [dry] = push(warehouse, loaded, peer, dry_run=True)
    [change] = dry.changes
    assert change.key == "FA000002" and change.action == "update"
    assert change.fields == {"AmountExclVat": ("202.25", "1000.00"), "Amount": (22225, 102000)}


def test_datafix_check_opens_erp_tables_and_drop_folders_before_any_push(
    tmp_path: Path,
) -> None:
    import sqlite3

    from pipelines.lib.checks import check_datafix

    write_works(tmp_path / "data", orders=3)
    erp = tmp_path / "erp.db"
    with sqlite3.connect(erp) as conn:
        conn.execute("CREATE TABLE engagements (bt TEXT PRIMARY KEY, montant INTEGER)")
    conn.close()
    sinks = {
        "erp": {"kind": "sql", "sends": "commitments", "url": f"sqlite:///{erp}",
                "table": "engagements", "key_column": "bt",
                "fields": {"bt": "order_ref", "montant": "amount_cents", "libelle": "category"}},
        "sage": {"kind": "sage100_file", "sends": "invoices", "folder": str(tmp_path / "nope"),
                 "fields": {"Piece": "invoice_ref"}},
    }  # fmt: skip
    path = write_datafix(tmp_path, "delta-habitat", sinks)
    problems = [str(problem) for problem in check_datafix(path)]
    assert len(problems) == 2, problems
    sql, folder = sorted(problems, key=lambda p: "sage" in p)
    assert (
        "sink `erp`" in sql
        and "has no column `libelle`" in sql
        and "its columns: bt, montant" in sql
    )
    assert f"{tmp_path / 'nope'} does not exist" in folder
    # each problem points at the sink's line in the file
    lines = path.read_text(encoding="utf-8").splitlines()
    sql_line = int(sql.split(":")[1])
    assert lines[sql_line - 1].strip().startswith("url:")


@pytest.mark.parametrize(
    ("rule", "column_type", "value", "expected"),
    [
        pytest.param({"from": "a", "as": "euros"}, "cents", 123456, "1234.56", id="euros"),
        pytest.param({"from": "a", "as": "euros"}, "cents", -5, "-0.05", id="euros-negative"),
        pytest.param({"from": "a", "as": "euros_comma"}, "cents", 100, "1,00", id="euros-comma"),
        pytest.param({"from": "a"}, "cents", 2**40 + 1, 2**40 + 1, id="cents-stay-exact"),
        pytest.param(
            {"from": "a", "as": "yyyymmdd"}, "date", dt.date(2026, 3, 1),
            "20260301", id="yyyymmdd",
        ),
        pytest.param(
            {"from": "a", "as": "datetime"}, "datetime",
            dt.datetime(2026, 3, 1, 13, 30), "2026-03-01T13:30:00+00:00",
            id="naive-datetime-is-utc",
        ),
        pytest.param({"from": "a", "map": {"true": "O", "false": "N"}}, "boolean", True, "O",
                     id="map-boolean"),
        pytest.param({"from": "a", "map": {"done": "Completed"}}, "choice", "done", "Completed",
                     id="map-choice"),
        pytest.param({"from": "a", "map": {"done": "Completed"}}, "choice", "received",
                     "received", id="map-passes-unmapped"),
        pytest.param({"from": "a", "as": "euros"}, "cents", None, None, id="blank-stays-blank"),
        pytest.param({"value": "HUB"}, "text", "ignored", "HUB", id="fixed-value"),
    ],
)  # fmt: skip
def test_a_field_rule_writes_what_the_target_expects(
    rule: dict, column_type: str, value: object, expected: object
) -> None:
    from pipelines.lib.push import convert
    from schemas.canonical import ColumnType
    from schemas.config import OutFieldRule

    assert convert(value, OutFieldRule.model_validate(rule), ColumnType(column_type)) == expected


# -- honest results (issue 11, point 7) -----------------------------------------------------


def test_a_push_whose_every_record_is_refused_is_failed(
    tmp_path: Path, warehouse: Warehouse, peer: MemoryPeer
) -> None:
    loaded = setup_landlord(tmp_path, warehouse, orders=40)
    peer.poisoned = {f"FA{i:06d}" for i in range(1, 41)}
    [outcome] = push(warehouse, loaded, peer)
    assert (outcome.sent, outcome.dead) == (0, 40)
    assert outcome.status == "failed"
    assert "all 40 record(s) refused: 40 dead" in outcome.error
    assert states(warehouse) == {"dead": 40}  # the peer refused them: dead letters to replay


def test_some_dead_letters_fail_the_push_unless_the_datafix_tolerates_them(
    tmp_path: Path, warehouse: Warehouse, peer: MemoryPeer
) -> None:
    loaded, outcome = push_seven_poisoned(tmp_path, warehouse, peer)
    assert (outcome.status, outcome.sent, outcome.dead) == ("dead letters", 993, 7)
    assert "7 of 1000 record(s) refused for good (0.7 %" in outcome.error
    assert "max_dead_percent" in outcome.error
    # the next push sends nothing: the dead letters wait for a fix, they do not fail it again
    [again] = push(warehouse, loaded, peer)
    assert (again.status, again.dead_waiting, again.error) == ("nothing to send", 7, "")


def test_dead_letters_within_the_declared_tolerance_leave_the_push_sent(
    tmp_path: Path, warehouse: Warehouse, peer: MemoryPeer
) -> None:
    loaded, outcome = push_seven_poisoned(tmp_path, warehouse, peer, {"max_dead_percent": 1})
    assert (outcome.status, outcome.sent, outcome.dead, outcome.error) == ("sent", 993, 7, "")
    peer.poisoned |= {f"FA{i:06d}" for i in range(100, 104)}  # 11 of 1000: above 1 %
    every = {i: "1,00" for i in range(1, 1_001)}  # every record changed: all 1000 go again
    write_works(tmp_path / "data", orders=1_000, amount_overrides=every)
    loaded = load_all(warehouse, loaded.path, run_id="run-2")
    [second] = push(warehouse, loaded, peer)
    assert (second.status, second.dead) == ("dead letters", 11)


class BrokenSink(MemorySink):
    """Cannot build its request: a mapped field has no place in it (a configuration error)."""

    def send(self, records: Sequence[OutgoingRecord]) -> list[Delivered]:
        from connectors.errors import ConfigError

        raise ConfigError("sink `erp`: Submit has no element `AmountExclVat` (did you mean Amount)")


def test_a_sink_that_cannot_build_its_request_is_one_error_without_dead_letters(
    tmp_path: Path, warehouse: Warehouse, peer: MemoryPeer
) -> None:
    loaded = setup_landlord(tmp_path, warehouse, orders=250)
    outcomes = push_landlord(
        warehouse, loaded, lambda _l, name: BrokenSink(peer, name), sleep=lambda _s: None
    )
    [outcome] = outcomes
    assert outcome.status == "failed" and outcome.sent == outcome.dead == 0
    assert outcome.error.count("has no element `AmountExclVat`") == 1
    assert states(warehouse) == {"pending": 250}  # nothing sent, no dead letter
    assert peer.calls == 0


def test_dry_run_lists_records_pending_from_an_earlier_run_and_dead_ones(
    tmp_path: Path, warehouse: Warehouse, peer: MemoryPeer
) -> None:
    loaded = setup_landlord(tmp_path, warehouse, orders=30)
    peer.poisoned = {"FA000004"}
    peer.transient_rate = 1.0  # every call fails transiently: nothing is delivered
    [first] = push(warehouse, loaded, peer)
    assert first.status == "failed" and states(warehouse) == {"failed": 30}
    [dry] = push(warehouse, loaded, peer, dry_run=True)
    assert (dry.queued, dry.pending, dry.unchanged) == (0, 30, 0)
    assert {change.action for change in dry.changes} == {"resend"}
    assert len(dry.changes) == 30
    peer.transient_rate = 0.0
    [second] = push(warehouse, loaded, peer)
    assert (second.sent, second.dead) == (29, 1)
    [dry] = push(warehouse, loaded, peer, dry_run=True)
    assert (dry.queued, dry.pending, dry.unchanged, dry.dead_waiting) == (0, 0, 29, 1)
    [dead] = dry.changes
    assert (dead.key, dead.action) == ("FA000004", "dead")


class CheckingSink(MemorySink):
    """Builds its requests before the first send (`prepare`): `Amount` has no place in them."""

    prepared: ClassVar[list[list[str]]] = []

    def prepare(self, records: Sequence[OutgoingRecord]) -> None:
        from connectors.errors import ConfigError

        CheckingSink.prepared.append([record.key for record in records])
        if any("Amount" in record.fields for record in records):
            raise ConfigError("sink `erp`: Submit has no element `Amount` (did you mean Montant)")


def test_a_sink_that_prepares_its_requests_fails_the_run_before_sending_anything(
    tmp_path: Path, warehouse: Warehouse, peer: MemoryPeer
) -> None:
    loaded = setup_landlord(tmp_path, warehouse, orders=250)
    CheckingSink.prepared = []
    [outcome] = push_landlord(
        warehouse, loaded, lambda _l, name: CheckingSink(peer, name), sleep=lambda _s: None
    )
    assert (outcome.status, outcome.sent, outcome.dead, peer.calls) == ("failed", 0, 0, 0)
    assert "has no element `Amount`" in outcome.error
    assert states(warehouse) == {"pending": 250}
    # every record fills the same fields: one record built, not 250
    assert [len(keys) for keys in CheckingSink.prepared] == [1]
    # nothing to send: prepare is not even asked
    with warehouse.engine.begin() as conn:
        conn.execute(sa.update(outbox).values(state="sent"))
    CheckingSink.prepared = []
    push_landlord(warehouse, loaded, lambda _l, n: CheckingSink(peer, n), sleep=lambda _s: None)
    assert CheckingSink.prepared == []
