"""End to end: the push, through the `datafix` command, against the loopback peers.

The peers (Salesforce over HTTPS, the landlord ERP over SOAP) run in this process on threads;
the pusher is the real `datafix push` in a subprocess, with its own warehouse, home and
datafixes folder. What is asserted is what the peer holds, counted at the peer:

1. a 10,000-record push killed with SIGKILL at 20 seeded random moments, then finished: every
   record once, none twice, none missing, the outbox all `sent`, a further push makes no call;
2. 20 % transient faults at the peer (5xx, 429, stalls past the timeout): every record
   delivered, none twice;
3. 7 poisoned records out of 1,000: 993 delivered, 7 dead with the peer's message, never
   retried; `datafix outbox` shows them, `datafix replay` delivers them once the peer is fixed;
4. 10,000 Salesforce upserts in 50 collection calls or one Bulk job; a second push makes no
   call; 10 changed records make exactly 10 updates;
5. two landlords sharing the peers: each push delivers its own records only;
6. a failed contract holds the push, and the command says why.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import yaml

from connectors.sandbox.salesforce import SalesforcePeer, field_service_store
from connectors.sandbox.soap_erp import LandlordErpPeer
from pipelines.lib.datafixes import LoadedDatafix
from pipelines.lib.environment import REPO_ROOT
from pipelines.lib.push import PushOutcome, push_landlord, record_contract
from pipelines.lib.sinks import build_sink
from pipelines.lib.warehouse import Warehouse
from schemas.tables import outbox
from tests.pipelines.lib.helpers import migrated_warehouse
from tests.pipelines.lib.pushing import (
    ERP_COMMITMENT_SINK,
    SF_EXTERNAL_ID,
    SF_OBJECT,
    load_all,
    write_datafix,
    write_works,
)

DATAFIX = str(Path(sys.executable).parent / "datafix")

# invoices → Salesforce WorkOrder, upserted on Hub_External_Id__c = invoice_ref
SALESFORCE_INVOICES = {
    "kind": "salesforce",
    "sends": "invoices",
    "auth": {"session_id": "${SF_SESSION_ID}", "instance_url": "${SF_INSTANCE_URL}"},
    "ca_bundle": "${SF_CA_BUNDLE}",
    "object": SF_OBJECT,
    "external_id_field": SF_EXTERNAL_ID,
    "bulk_threshold": 20_000,  # above 10,000: composite collections of 200
    "timeout": 10,
    "fields": {
        SF_EXTERNAL_ID: "invoice_ref",
        "Subject": "document",
        "Description": "order_ref",
        "Montant_Engage__c": {"from": "total_cents", "as": "euros"},
        "Date_Commande__c": "issued_date",
    },
}
# completions → the same Salesforce object, keyed by completion_ref
SALESFORCE_COMPLETIONS = {
    **SALESFORCE_INVOICES,
    "sends": "completions",
    "fields": {
        SF_EXTERNAL_ID: "completion_ref",
        "Completed_At__c": "completed_at",
        "Tenant_Absent__c": "tenant_absent",
        "Technician__c": "technician",
    },
}
# commitments → the ERP's SubmitCommitments (batches of 100), read back by GetCommitments
ERP_COMMITMENTS = {
    **ERP_COMMITMENT_SINK,
    "wsdl": "${ERP_WSDL}",
    "timeout": 10,
    "operation_timeout": 10,
}
# every order is a commitment (cancelled ones too): N orders make N commitments
ALL_COMMITMENTS = {"commitments": {"status": ["received", "scheduled", "done", "cancelled"]}}


# --- the hub, as a user runs it -------------------------------------------------------------


@dataclass
class Hub:
    """A datafixes folder, a home and a SQLite warehouse, and the `datafix` command on them."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def datafixes(self) -> Path:
        return self.root / "datafixes"

    @property
    def url(self) -> str:
        return f"sqlite:///{self.root}/warehouse.db"

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "DATAFIX_DATAFIXES_DIR": str(self.datafixes),
            "DATAFIX_WAREHOUSE_URL": self.url,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            **self.env,
        }

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [DATAFIX, *args],
            cwd=REPO_ROOT,
            env=self.environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [DATAFIX, *args],
            cwd=REPO_ROOT,
            env=self.environment(),
            capture_output=True,
            text=True,
            check=False,
        )

    def landlord(
        self, landlord: str, sinks: dict[str, Any], *, data: str = "data", **works: Any
    ) -> Path:
        """Works data in `root/<data>`, the datafix in the datafixes folder, all loaded."""
        write_works(self.root / data, **works)
        path = write_datafix(self.datafixes, landlord, sinks, confirmed=ALL_COMMITMENTS)
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        document["inbox"] = str(self.root / data)
        path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        self.load(path)
        return path

    def push(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`datafix push ARGS`, which must succeed."""
        completed = self.run("push", *args)
        assert completed.returncode == 0, completed.stdout + completed.stderr
        return completed

    def load(self, path: Path, run_id: str = "load-1") -> None:
        warehouse = Warehouse(self.url)
        try:
            warehouse.migrate()
            load_all(warehouse, path, run_id=run_id)
        finally:
            warehouse.dispose()

    def outbox(self, landlord: str | None = None) -> Counter[tuple[str, str, str]]:
        """(landlord, sink, state) → records."""
        engine = sa.create_engine(self.url)
        try:
            query = sa.select(
                outbox.c.landlord_id, outbox.c.sink, outbox.c.state, sa.func.count()
            ).group_by(outbox.c.landlord_id, outbox.c.sink, outbox.c.state)
            if landlord is not None:
                query = query.where(outbox.c.landlord_id == landlord)
            with engine.connect() as conn:
                return Counter({(a, b, c): n for a, b, c, n in conn.execute(query).all()})
        finally:
            engine.dispose()


@pytest.fixture
def hub(tmp_path: Path) -> Hub:
    hub = Hub(tmp_path)
    hub.datafixes.mkdir()
    return hub


@pytest.fixture
def salesforce(hub: Hub) -> Iterator[SalesforcePeer]:
    with SalesforcePeer(field_service_store(), api_limit=1_000_000) as peer:
        hub.env.update(
            SF_SESSION_ID=peer.session_id, SF_INSTANCE_URL=peer.instance_url,
            SF_CA_BUNDLE=peer.ca_path,
        )  # fmt: skip
        yield peer
    assert peer.errors == []


@pytest.fixture
def erp(hub: Hub) -> Iterator[LandlordErpPeer]:
    with LandlordErpPeer(slow_seconds=1.5, transient_seed=11) as peer:
        hub.env["ERP_WSDL"] = peer.wsdl_url
        yield peer


def sf_writes(peer: SalesforcePeer) -> int:
    """Write calls received: composite collections, single upserts, Bulk ingest jobs."""
    with peer.lock:
        return sum(
            n
            for call, n in peer.calls.items()
            if (call.startswith("PATCH ") and "/composite/sobjects/" in call)
            or (call.startswith("POST ") and call.rstrip("/").endswith("/jobs/ingest"))
        )


def sf_held(peer: SalesforcePeer, prefix: str = "") -> Counter[str]:
    """External id → records holding it, for the records the hub pushed."""
    with peer.lock:
        rows = peer.store.rows(SF_OBJECT)
    return Counter(
        row[SF_EXTERNAL_ID]
        for row in rows
        if row[SF_EXTERNAL_ID] and row[SF_EXTERNAL_ID].startswith(prefix)
    )


def erp_writes(peer: LandlordErpPeer) -> int:
    return peer.calls_by_operation["SubmitCommitments"]


# --- 1. kill -9 during the push -------------------------------------------------------------


@dataclass
class KillLog:
    moments: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


def push_under_kills(
    hub: Hub,
    landlord: str,
    writes: Callable[[], int],
    calls: Callable[[], int],
    *,
    kills: int,
    seed: int,
    most_writes: int = 2,
    most_seconds: float = 0.3,
) -> KillLog:
    """`datafix push` SIGKILLed `kills` times at seeded random moments.

    A moment is drawn either by the peer's count of write calls (once 1 to `most_writes`
    writes of that run arrived, plus 0-40 ms so the kill lands before, during or after the
    answer reaches the pusher) or by time (0 to `most_seconds` after the run's first call at
    the peer, read-backs included, and no later than its `most_writes`-th write: a fast pusher
    makes ~20 writes in 0.3 s, and twenty such kills would use up the push before the last).
    Startup (Dagster) dominates a run, so the moments are drawn within the push window, where
    a kill matters."""
    rng = random.Random(seed)
    log = KillLog()
    for number in range(kills):
        before_writes, before_calls = writes(), calls()
        by_calls = rng.random() < 0.6
        target = rng.randint(1, most_writes)
        delay = rng.uniform(0, 0.04) if by_calls else rng.uniform(0, most_seconds)
        process = hub.start("push", landlord)
        first_call: float | None = None
        while process.poll() is None:
            if by_calls and writes() >= before_writes + target:
                time.sleep(delay)
                break
            if not by_calls:
                if first_call is None and calls() > before_calls:
                    first_call = time.monotonic()
                if first_call is not None and time.monotonic() - first_call >= delay:
                    break
                # a moment late in a fast push would let it run to the end: cap it at
                # `most_writes` writes too, so that the kills cannot use up the push
                if writes() >= before_writes + most_writes:
                    break
            time.sleep(0.002)
        finished = process.poll() is not None
        if not finished:
            os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        process.wait()
        log.outputs.append(output)
        how = f"{target} write(s) +{delay * 1000:.0f} ms" if by_calls else f"+{delay:.2f} s"
        log.moments.append(
            f"kill {number + 1} ({how}): writes {before_writes}->{writes()}"
            + (" FINISHED BEFORE THE KILL" if finished else "")
        )
    return log


def push_under_kills_then_to_the_end(
    hub: Hub, landlord: str, writes: Callable[[], int], calls: Callable[[], int], **kills: Any
) -> tuple[KillLog, int, float]:
    """`push_under_kills`, then one push that must run to the end; the kill moments are printed.
    Returns the kill log, the write calls made under kills and the seconds it all took."""
    started = time.monotonic()
    log = push_under_kills(hub, landlord, writes, calls, **kills)
    writes_killed = writes()
    hub.push(landlord)
    elapsed = time.monotonic() - started
    print("\n".join(log.moments))
    return log, writes_killed, elapsed


def test_kill_9_twenty_times_during_a_10000_record_push_to_salesforce(
    hub: Hub, salesforce: SalesforcePeer
) -> None:
    hub.landlord("alpha", {"crm": SALESFORCE_INVOICES}, orders=100, invoices=10_000)
    log, writes_killed, elapsed = push_under_kills_then_to_the_end(
        hub, "alpha", lambda: sf_writes(salesforce), salesforce.count, kills=20, seed=1
    )
    print(
        f"salesforce: 20 kills + 1 run in {elapsed:.1f} s; write calls {writes_killed} under"
        f" kills, {sf_writes(salesforce)} in all (50 without kills), {salesforce.count()} calls"
    )
    assert not [moment for moment in log.moments if "FINISHED" in moment], log.moments

    held = sf_held(salesforce, "FA")
    assert len(held) == 10_000  # 0 missing
    assert [key for key, n in held.items() if n > 1] == []  # 0 duplicates
    assert salesforce.store.duplicates(SF_OBJECT, SF_EXTERNAL_ID) == {}
    assert not [entry for entry in salesforce.log if entry[2] == 300]  # no "multiple matches"
    assert hub.outbox("alpha") == Counter({("alpha", "crm", "sent"): 10_000})

    calls = salesforce.count()
    hub.push("alpha")
    assert salesforce.count() == calls  # nothing to send or recover: not one call


def test_kill_9_twenty_times_during_a_10000_record_push_to_the_erp(
    hub: Hub, erp: LandlordErpPeer
) -> None:
    hub.landlord("alpha", {"erp": ERP_COMMITMENTS}, orders=10_000)
    log, writes_killed, elapsed = push_under_kills_then_to_the_end(
        hub, "alpha", lambda: erp_writes(erp), lambda: erp.calls, kills=20, seed=2,
        most_writes=3,
    )  # fmt: skip
    print(
        f"erp: 20 kills + 1 run in {elapsed:.1f} s; SubmitCommitments {writes_killed} under"
        f" kills, {erp_writes(erp)} in all (100 without kills); {dict(erp.calls_by_operation)};"
        f" replays {erp.replays['commitments']}"
    )
    assert not [moment for moment in log.moments if "FINISHED" in moment], log.moments

    held = erp.held["commitments"]
    assert len(held) == 10_000  # 0 missing
    assert held.keys() == {f"BT{i:06d}" for i in range(1, 10_001)}
    movements = {reference: len(m) for reference, m in erp.movements["commitments"].items()}
    assert [ref for ref, n in movements.items() if n != 1] == []  # no key applied twice
    assert erp.movement_count("commitments") == 10_000
    assert erp.duplicate_movements("commitments") == 0
    assert hub.outbox("alpha") == Counter({("alpha", "erp", "sent"): 10_000})

    calls, wsdl = erp.calls, erp.wsdl_requests
    hub.push("alpha")
    assert (erp.calls, erp.wsdl_requests) == (calls, wsdl)  # not one call, not even the WSDL


# --- 2. 20 % transient faults ---------------------------------------------------------------


@pytest.fixture
def warehouse(warehouse_url: str) -> Iterator[Warehouse]:
    yield from migrated_warehouse(warehouse_url)


def outbox_rows(warehouse: Warehouse, landlord: str) -> list[Any]:
    with warehouse.engine.connect() as conn:
        return conn.execute(sa.select(outbox).where(outbox.c.landlord_id == landlord)).all()


def push_timed(warehouse: Warehouse, loaded: LoadedDatafix) -> tuple[PushOutcome, float]:
    """One in-process push of the landlord's single sink: its outcome and the seconds it took."""
    started = time.monotonic()
    [outcome] = push_landlord(warehouse, loaded, build_sink, run_id="faulty")
    return outcome, time.monotonic() - started


def test_salesforce_push_through_20_percent_transient_faults(
    tmp_path: Path,
    warehouse: Warehouse,
    salesforce: SalesforcePeer,
    hub: Hub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in hub.env.items():
        monkeypatch.setenv(name, value)
    sink = {**SALESFORCE_INVOICES, "timeout": 2}
    write_works(tmp_path / "data", orders=100, invoices=5_000)
    loaded = load_all(warehouse, write_datafix(tmp_path, "alpha", {"crm": sink}))
    faults = salesforce.faults
    faults.transient_rate, faults.stall_seconds = 0.2, 4.0  # a stall outlasts the 2 s timeout
    outcome, elapsed = push_timed(warehouse, loaded)
    print(
        f"salesforce 20 %: 5,000 in {elapsed:.1f} s ({5_000 / elapsed:.0f} records/s),"
        f" {outcome.calls} calls by the hub, faults {dict(faults.injected)}"
    )
    assert sum(faults.injected.values()) >= 5
    assert outcome.status == "sent" and outcome.error == ""
    assert outcome.sent + outcome.recovered == 5_000
    held = sf_held(salesforce, "FA")
    assert len(held) == 5_000 and max(held.values()) == 1  # every record, none twice
    rows = outbox_rows(warehouse, "alpha")
    assert Counter(row.state for row in rows) == Counter({"sent": 5_000})
    assert max(row.attempts for row in rows) <= sink.get("max_attempts", 8)  # no retry storm


def test_erp_push_through_20_percent_transient_faults(
    tmp_path: Path,
    warehouse: Warehouse,
    erp: LandlordErpPeer,
    hub: Hub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ERP_WSDL", erp.wsdl_url)
    sink = {**ERP_COMMITMENTS, "operation_timeout": 1.0}  # the peer's stall: 1.5 s
    write_works(tmp_path / "data", orders=2_000)
    path = write_datafix(tmp_path, "alpha", {"erp": sink}, confirmed=ALL_COMMITMENTS)
    loaded = load_all(warehouse, path)
    erp.transient_rate = 0.2  # 503, soap:Server.Busy, processed then stalled past the timeout
    erp.set_fault("http_429", times=2)  # and the first two calls answer 429
    outcome, elapsed = push_timed(warehouse, loaded)
    print(
        f"erp 20 %: 2,000 in {elapsed:.1f} s ({2_000 / elapsed:.0f} records/s), {outcome.calls}"
        f" calls by the hub, faults {dict(erp.transient_faults)} + 2 x 429,"
        f" replays {erp.replays['commitments']}"
    )
    assert sum(erp.transient_faults.values()) >= 3
    assert outcome.status == "sent" and outcome.error == ""
    assert outcome.sent + outcome.recovered == 2_000
    assert len(erp.held["commitments"]) == 2_000
    assert erp.movement_count("commitments") == 2_000  # every record, none twice
    assert erp.duplicate_movements("commitments") == 0
    assert Counter(row.state for row in outbox_rows(warehouse, "alpha")) == {"sent": 2_000}


# --- 3. poisoned records --------------------------------------------------------------------

POISONED = [f"FA{i:06d}" for i in (3, 150, 151, 404, 777, 900, 1000)]
POISONED_ORDERS = [f"BT{i:06d}" for i in (3, 150, 151, 404, 777, 900, 1000)]


def test_seven_poisoned_records_out_of_1000_go_dead_once_then_replay_delivers_them(
    hub: Hub, salesforce: SalesforcePeer, erp: LandlordErpPeer
) -> None:
    hub.landlord("alpha", {"crm": SALESFORCE_INVOICES, "erp": ERP_COMMITMENTS}, orders=1_000)
    sf_tries: Counter[str] = Counter()

    def refused(value: Any) -> bool:
        if value in POISONED:
            sf_tries[value] += 1
            return True
        return False

    salesforce.poison(
        SF_OBJECT, SF_EXTERNAL_ID, refused, "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        "Montant hors plafond du marché (règle R-12)",
    )  # fmt: skip
    erp_tries: Counter[str] = Counter()
    record = erp._record

    def counted(kind: Any, item: Any) -> Any:
        if item.get("Reference") in POISONED_ORDERS:
            erp_tries[item["Reference"]] += 1
        return record(kind, item)

    erp._record = counted  # type: ignore[method-assign]
    for reference in POISONED_ORDERS:
        erp.poison(reference, f"{reference} : fournisseur bloqué (litige)")

    first = hub.run("push", "alpha")
    # 7 dead letters and no tolerance declared: the push fails, with the count
    assert first.returncode == 1, first.stdout + first.stderr
    assert "dead letters" in first.stdout, first.stdout + first.stderr
    assert first.stdout.count("7 of 1000 record(s) refused for good (0.7 %") == 2, first.stdout
    assert len(sf_held(salesforce, "FA")) == 993
    assert not set(sf_held(salesforce, "FA")) & set(POISONED)
    assert len(erp.held["commitments"]) == 993
    assert hub.outbox("alpha") == Counter({
        ("alpha", "crm", "sent"): 993, ("alpha", "crm", "dead"): 7,
        ("alpha", "erp", "sent"): 993, ("alpha", "erp", "dead"): 7,
    })  # fmt: skip
    assert sf_tries == Counter(dict.fromkeys(POISONED, 1))  # never retried
    assert erp_tries == Counter(dict.fromkeys(POISONED_ORDERS, 1))

    sf_calls, erp_calls = salesforce.count(), erp.calls
    hub.push("alpha")
    assert (salesforce.count(), erp.calls) == (sf_calls, erp_calls)  # the dead are not resent
    assert sf_tries == Counter(dict.fromkeys(POISONED, 1))

    shown = hub.run("outbox", "alpha", "--limit", "50")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    for key in POISONED:
        line = next(line for line in shown.stdout.splitlines() if f"crm {key} " in line)
        assert "dead" in line and "Montant hors plafond du marché (règle R-12)" in line, line
    for reference in POISONED_ORDERS:
        line = next(line for line in shown.stdout.splitlines() if f"erp {reference} " in line)
        assert "dead" in line and f"{reference} : fournisseur bloqué (litige)" in line, line

    salesforce.poisons.clear()
    for reference in POISONED_ORDERS:
        erp.cure(reference)
    replay = hub.run("replay", "alpha")
    assert replay.returncode == 0 and "14 dead letter(s)" in replay.stdout, replay.stdout
    hub.push("alpha")
    held = sf_held(salesforce, "FA")
    assert len(held) == 1_000 and max(held.values()) == 1
    assert erp.movement_count("commitments") == 1_000
    assert erp_tries == Counter(dict.fromkeys(POISONED_ORDERS, 2))
    assert hub.outbox("alpha") == Counter(
        {("alpha", "crm", "sent"): 1_000, ("alpha", "erp", "sent"): 1_000}
    )


# --- 4. Salesforce call budget --------------------------------------------------------------


def sf_rows(peer: SalesforcePeer) -> dict[str, dict[str, Any]]:
    with peer.lock:
        return {
            row[SF_EXTERNAL_ID]: dict(row)
            for row in peer.store.rows(SF_OBJECT)
            if row[SF_EXTERNAL_ID]
        }


@pytest.mark.parametrize("bulk", [False, True], ids=["collections", "bulk"])
def test_10000_salesforce_upserts_in_50_calls_or_one_bulk_job(
    hub: Hub, salesforce: SalesforcePeer, bulk: bool
) -> None:
    sink = {**SALESFORCE_INVOICES, "bulk_threshold": 5_000 if bulk else 20_000}
    path = hub.landlord("alpha", {"crm": sink}, orders=100, invoices=10_000)
    started = time.monotonic()
    first = hub.run("push", "alpha")
    elapsed = time.monotonic() - started
    assert first.returncode == 0, first.stdout + first.stderr
    calls = salesforce.count()
    print(f"{'bulk' if bulk else 'collections'}: 10,000 in {elapsed:.1f} s (CLI), {calls} calls")
    assert len(sf_held(salesforce, "FA")) == 10_000
    if bulk:
        assert len(salesforce.ingest_jobs()) == 1
        assert salesforce.ingest_jobs()[0]["numberRecordsProcessed"] == 10_000
        assert sf_writes(salesforce) == 1
    else:
        assert salesforce.ingest_jobs() == []
        assert sf_writes(salesforce) == calls <= 50

    hub.push("alpha")
    assert salesforce.count() == calls  # nothing changed: not one call

    before = sf_rows(salesforce)
    changed = [17, 18, 500, 1234, 2000, 4999, 5000, 7777, 9998, 10_000]
    write_works(
        hub.root / "data", orders=100, invoices=10_000,
        amount_overrides={i: "1234,56" for i in changed},
    )  # fmt: skip
    hub.load(path, run_id="load-2")
    hub.push("alpha")
    after = sf_rows(salesforce)
    assert after.keys() == before.keys()
    updated = sorted(key for key in after if after[key] != before[key])
    assert updated == [f"FA{i:06d}" for i in changed]
    assert {after[key]["Montant_Engage__c"] for key in updated} == {Decimal("1254.56")}  # + VAT
    assert salesforce.count() == calls + 1  # 10 records: one collection call
    assert sf_writes(salesforce) == (1 if bulk else 50) + 1


# --- 5. isolation ---------------------------------------------------------------------------


def test_two_landlords_sharing_the_peers_each_push_only_their_records(
    hub: Hub, salesforce: SalesforcePeer, erp: LandlordErpPeer
) -> None:
    hub.landlord("alpha", {"crm": SALESFORCE_INVOICES, "erp": ERP_COMMITMENTS}, orders=30)
    hub.landlord("beta", {"crm": SALESFORCE_COMPLETIONS}, data="data-beta", orders=40)

    hub.push("beta")
    assert sf_held(salesforce) == Counter({f"RI{i:06d}": 1 for i in range(2, 41, 4)})
    assert erp.calls == 0 and erp.wsdl_requests == 0  # beta has no ERP sink: nothing there
    assert hub.outbox() == Counter({("beta", "crm", "sent"): 10})
    beta_rows = sf_rows(salesforce)

    hub.push("alpha")
    assert sf_held(salesforce, "FA") == Counter({f"FA{i:06d}": 1 for i in range(1, 31)})
    assert {key: row for key, row in sf_rows(salesforce).items() if key.startswith("RI")} == (
        beta_rows
    )  # beta's records untouched
    assert set(erp.held["commitments"]) == {f"BT{i:06d}" for i in range(1, 31)}
    assert hub.outbox() == Counter({
        ("beta", "crm", "sent"): 10, ("alpha", "crm", "sent"): 30, ("alpha", "erp", "sent"): 30,
    })  # fmt: skip


# --- 6. gating ------------------------------------------------------------------------------


def test_a_failed_contract_holds_the_push_and_the_command_says_why(
    hub: Hub, salesforce: SalesforcePeer
) -> None:
    hub.landlord("alpha", {"crm": SALESFORCE_INVOICES}, orders=30)
    warehouse = Warehouse(hub.url)
    try:
        record_contract(
            warehouse, "alpha", "invoices", passed=False,
            summary="amount_cents: 3 values below 0", run_id="run-bad",
        )  # fmt: skip
    finally:
        warehouse.dispose()
    held = hub.run("push", "alpha")
    assert held.returncode != 0, held.stdout
    assert "blocked" in held.stdout
    assert "the invoices contract failed in run run-bad: amount_cents: 3 values below 0" in (
        held.stdout
    )
    assert salesforce.count() == 0 and hub.outbox() == Counter()


# --- the dry run ----------------------------------------------------------------------------


def test_a_dry_run_shows_creations_and_updates_field_by_field_and_sends_nothing(
    hub: Hub, salesforce: SalesforcePeer
) -> None:
    # five orders: the fifth has a quote (a header-only quotes export is refused as empty)
    path = hub.landlord("alpha", {"crm": SALESFORCE_INVOICES}, orders=5)
    dry = hub.push("alpha", "--dry-run")
    assert "alpha → crm (salesforce, invoices): 5 to send, 0 unchanged" in dry.stdout
    assert "  create FA000002\n" in dry.stdout
    assert "      Montant_Engage__c: '222.25'\n" in dry.stdout  # 202,25 + 20,00 VAT
    assert "dry run: nothing was sent or written" in dry.stdout
    assert salesforce.count() == 0 and hub.outbox() == Counter()

    hub.push("alpha")
    write_works(hub.root / "data", orders=5, amount_overrides={2: "300,00"})
    hub.load(path, run_id="load-2")
    calls = salesforce.count()
    dry = hub.run("push", "alpha", "--dry-run")
    assert "alpha → crm (salesforce, invoices): 1 to send, 4 unchanged" in dry.stdout
    assert "  update FA000002\n      Montant_Engage__c: '222.25' → '320.00'\n" in dry.stdout
    assert salesforce.count() == calls
    assert hub.outbox() == Counter({("alpha", "crm", "sent"): 5})


def test_a_failing_contract_in_the_nightly_run_holds_that_push_then_and_alone(
    hub: Hub, erp: LandlordErpPeer
) -> None:
    # BT000007 is done before it was ordered: the work_orders contract fails on it (the datafix
    # sets that row rule to `block`; by default the row would be quarantined, the rest loaded)
    write_works(hub.root / "data", orders=30, done_before_ordered={7})
    path = write_datafix(hub.datafixes, "alpha", {"erp": ERP_COMMITMENTS})
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    document["inbox"] = str(hub.root / "data")
    document["entities"]["work_orders"]["rules"] = {"done_after_ordered": "block"}
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")

    night = hub.run("run", "alpha")
    assert night.returncode == 1, night.stdout + night.stderr
    assert "work_orders" in night.stdout and "FAILED" in night.stdout
    assert "BT000007" in night.stdout  # the failing key is named
    assert erp.calls == 0 and erp.wsdl_requests == 0  # the push after it never ran

    alone = hub.run("push", "alpha")
    assert alone.returncode == 1, alone.stdout + alone.stderr
    assert "blocked" in alone.stdout and "the work_orders contract failed in run" in alone.stdout
    assert erp.calls == 0 and hub.outbox() == Counter()

    write_works(hub.root / "data", orders=30)  # fixed at the source: the next night pushes
    fixed = hub.run("run", "alpha")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert hub.outbox() == Counter({("alpha", "erp", "sent"): 23})  # 30 orders less 7 cancelled


# --- honest results and exit codes (issue 11) -----------------------------------------------


def test_a_push_the_peer_refuses_entirely_fails_and_exits_1(hub: Hub, erp: LandlordErpPeer) -> None:
    hub.landlord("alpha", {"erp": ERP_COMMITMENTS}, orders=30)
    for i in range(1, 31):
        erp.poison(f"BT{i:06d}", f"BT{i:06d} : fournisseur bloqué (litige)")
    pushed = hub.run("push", "alpha")
    assert pushed.returncode == 1, pushed.stdout + pushed.stderr
    line = next(line for line in pushed.stdout.splitlines() if line.startswith("  erp "))
    assert line.split()[2] == "failed", line
    assert "all 30 record(s) refused: 30 dead, 0 failed" in pushed.stdout
    assert "0 of 1 landlord(s) ok, 1 failed" in pushed.stdout
    assert hub.outbox("alpha") == Counter({("alpha", "erp", "dead"): 30})

    # the dry run lists the dead letters waiting for a replay, not as unchanged
    dry = hub.run("push", "alpha", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert (
        "alpha → erp (soap, commitments): 0 to send, 0 unchanged, 30 dead waiting for a fix"
        in dry.stdout
    )
    assert (
        "  dead, not sent (refused earlier; fix the cause, then `datafix replay`) BT000001\n"
        in (dry.stdout)
    )
    # replayed (the cause fixed), they are pending: the dry run shows them to be sent
    for i in range(1, 31):
        erp.cure(f"BT{i:06d}")
    assert hub.run("replay", "alpha").returncode == 0
    dry = hub.run("push", "alpha", "--dry-run")
    assert "30 to send, 0 unchanged (0 new or changed, 30 queued by an earlier run)" in dry.stdout
    assert "  resend (queued by an earlier run, not sent yet) BT000030\n" in dry.stdout
    assert erp.calls_by_operation["SubmitCommitments"] == 1  # the dry runs called nothing
    hub.push("alpha")
    assert hub.outbox("alpha") == Counter({("alpha", "erp", "sent"): 30})


def test_a_night_whose_push_fails_still_tracks_its_deliveries_then_exits_1(
    hub: Hub, erp: LandlordErpPeer, hub_home: Path
) -> None:
    # the works timeline and the morning report come after the night's own push, a failed one
    # included: 10 of the 30 commitments are refused for good, the 20 others are delivered
    write_works(hub.root / "data", orders=30)
    path = write_datafix(
        hub.datafixes, "alpha", {"erp": ERP_COMMITMENTS}, confirmed=ALL_COMMITMENTS
    )
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    document["inbox"] = str(hub.root / "data")
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    refused = {f"BT{i:06d}" for i in range(1, 11)}
    for ref in refused:
        erp.poison(ref, f"{ref} : fournisseur bloqué (litige)")

    night = hub.run("run", "alpha")
    assert night.returncode == 1, night.stdout + night.stderr
    line = next(line for line in night.stdout.splitlines() if line.startswith("  erp "))
    assert line.split()[2:4] == ["dead", "letters"] and line.split()[-2:] == ["0", "10"], line
    assert "0 of 1 landlord(s) ok, 1 failed" in night.stdout
    assert hub.outbox("alpha") == Counter(
        {("alpha", "erp", "sent"): 20, ("alpha", "erp", "dead"): 10}
    )

    engine = sa.create_engine(hub.url)
    try:
        with engine.connect() as conn:
            sent = conn.execute(
                sa.text(
                    "SELECT order_ref FROM works_timeline"
                    " WHERE landlord_id = 'alpha' AND event = 'commitment_sent'"
                )
            ).scalars()
            # the timeline computed in this run holds this run's 20 deliveries, and only them
            assert sorted(sent) == sorted(f"BT{i:06d}" for i in range(11, 31))
    finally:
        engine.dispose()
    today = datetime.now(ZoneInfo("Europe/Paris")).date().isoformat()
    report = hub_home / "reports" / "alpha" / f"{today}.html"
    assert report.is_file(), night.stdout  # written in the failed run, after its push


def test_a_sink_that_cannot_place_a_field_is_one_error_with_nothing_sent_and_no_dead_letter(
    hub: Hub, tmp_path: Path
) -> None:
    import sqlite3

    erp = tmp_path / "erp.db"
    with sqlite3.connect(erp) as conn:
        conn.execute("CREATE TABLE engagements (bt TEXT PRIMARY KEY, montant INTEGER)")
    conn.close()
    sink = {
        "kind": "sql", "sends": "commitments", "url": f"sqlite:///{erp}",
        "table": "engagements", "key_column": "bt",
        "fields": {"bt": "order_ref", "montant": "amount_cents", "libelle": "category"},
    }  # fmt: skip
    hub.landlord("alpha", {"erp": sink}, orders=30)
    pushed = hub.run("push", "alpha")
    assert pushed.returncode == 1, pushed.stdout + pushed.stderr
    assert pushed.stdout.count("has no column `libelle`") == 1, pushed.stdout
    assert hub.outbox("alpha") == Counter({("alpha", "erp", "pending"): 30})
    with sqlite3.connect(erp) as conn:
        assert conn.execute("SELECT count(*) FROM engagements").fetchone() == (0,)
    conn.close()


def test_run_no_push_and_pull_load_without_pushing_and_the_night_pushes(
    hub: Hub, erp: LandlordErpPeer
) -> None:
    write_works(hub.root / "data", orders=30)
    path = write_datafix(hub.datafixes, "alpha", {"erp": ERP_COMMITMENTS})
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    document["inbox"] = str(hub.root / "data")
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")

    pulled = hub.run("run", "alpha", "--no-push")
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    assert "work_orders" in pulled.stdout and "push to" not in pulled.stdout
    assert erp.calls == 0 and erp.wsdl_requests == 0 and hub.outbox() == Counter()
    engine = sa.create_engine(hub.url)
    try:
        with engine.connect() as conn:
            loaded = conn.execute(sa.text("SELECT count(*) FROM work_orders")).scalar_one()
    finally:
        engine.dispose()
    assert loaded == 30

    again = hub.run("pull", "alpha", "--full-refresh")
    assert again.returncode == 0, again.stdout + again.stderr
    assert erp.calls == 0 and hub.outbox() == Counter()

    night = hub.run("run", "alpha")
    assert night.returncode == 0, night.stdout + night.stderr
    assert hub.outbox() == Counter({("alpha", "erp", "sent"): 23})  # 30 orders less 7 cancelled
