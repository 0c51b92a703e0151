"""Every sink kind through the real push path, counted at the peer.

`push_landlord(warehouse, loaded, build_sink)` with a datafix written by
`tests/pipelines/lib/pushing.py`, against the real peer of each kind (SQLite and PostgreSQL
tables, the landlord ERP over SOAP, Sage X3 over SOAP, a Sage 100 drop folder, Salesforce over
HTTPS by composite collections or a Bulk job):

1. N records: every one lands at the peer once, `outcome.sent == N`, no duplicate;
2. a second push: no call at the peer, `outcome.unchanged == N`;
3. 10 changed amounts, loaded again: 10 queued, 10 sent, exactly 10 updates at the peer.
"""

from __future__ import annotations

import contextlib
import csv
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.sandbox.sage_x3 import SageX3Peer, demo_seed
from connectors.sandbox.salesforce import SalesforcePeer, field_service_store
from connectors.sandbox.soap_erp import LandlordErpPeer
from connectors.sql import push as sql_push
from pipelines.lib.push import PushOutcome, push_landlord
from pipelines.lib.sinks import build_sink
from pipelines.lib.warehouse import Warehouse
from tests.conftest import temporary_postgres_database
from tests.pipelines.lib.pushing import (
    ERP_COMMITMENT_SINK,
    change_order_amounts,
    load_all,
    run_sql,
    write_datafix,
    write_works,
)

N = 10_000
X3_N = N  # Sage X3 saves one invoice per call (~145 a second): the longest case
CHANGED = range(100, 110)  # records 100 … 109 change between the second and the third push
OBJECT = "WorkOrder"
EXTERNAL_ID = "Hub_External_Id__c"
TABLE = "factures_hub"


@dataclass
class Peer:
    """One running peer, as the test sees it: the datafix sink, and counts read at the peer."""

    sink: dict[str, Any]
    held: Callable[[], Counter[str]]  # record key → times the peer holds it
    calls: Callable[[], int]  # calls the peer received (SQL: connections opened)
    state: Callable[[], dict[str, Any]]  # record key → what the peer holds for it
    orders: int = N
    push: dict[str, Any] = field(default_factory=dict)  # extra `push:` settings
    key: Callable[[int], str] = lambda i: f"FA{i:06d}"
    updates: Callable[[], int] | None = None  # update operations the peer counts itself


# --- the peers ------------------------------------------------------------------------------


@contextlib.contextmanager
def sql_peer(url: str, connections: Counter[str]) -> Iterator[Peer]:
    run_sql(
        url,
        f"CREATE TABLE {TABLE} (facture VARCHAR(20) NOT NULL, bt VARCHAR(20),"
        " montant_cts BIGINT, montant_eur VARCHAR(20), date_facture DATE, hub_idem VARCHAR(80))",
    )  # no unique key on purpose: a record written twice would show as two rows
    engine = sa.create_engine(url)

    def rows() -> list[tuple[Any, ...]]:
        with engine.connect() as connection:
            return list(connection.exec_driver_sql(f"SELECT * FROM {TABLE}"))

    try:
        yield Peer(
            sink={
                "kind": "sql", "sends": "invoices", "url": url, "table": TABLE,
                "key_column": "facture", "idempotency_column": "hub_idem",
                "fields": {
                    "facture": "invoice_ref", "bt": "order_ref", "montant_cts": "amount_cents",
                    "montant_eur": {"from": "amount_cents", "as": "euros"},
                    "date_facture": "issued_date",
                },
            },
            held=lambda: Counter(row[0] for row in rows()),
            calls=lambda: connections["connect"],
            state=lambda: {row[0]: tuple(row[1:]) for row in rows()},
        )  # fmt: skip
    finally:
        engine.dispose()


@contextlib.contextmanager
def sqlite_peer(tmp_path: Path, connections: Counter[str]) -> Iterator[Peer]:
    with sql_peer(f"sqlite:///{tmp_path}/erp.db", connections) as peer:
        yield peer


@contextlib.contextmanager
def postgresql_peer(tmp_path: Path, connections: Counter[str]) -> Iterator[Peer]:
    with temporary_postgres_database() as url, sql_peer(url, connections) as peer:
        yield peer


@contextlib.contextmanager
def soap_erp_peer(tmp_path: Path, connections: Counter[str]) -> Iterator[Peer]:
    # The ERP imports no invoice: it takes commitments (SubmitCommitments), one per order.
    with LandlordErpPeer(slow_seconds=1.5) as erp:

        def held() -> Counter[str]:
            with erp._store_lock:
                return Counter(
                    {ref: len(moves) for ref, moves in erp.movements["commitments"].items()}
                )

        def state() -> dict[str, Any]:
            with erp._store_lock:
                return {ref: len(moves) for ref, moves in erp.movements["commitments"].items()}

        yield Peer(
            sink={
                **ERP_COMMITMENT_SINK, "wsdl": erp.wsdl_url, "timeout": 10, "operation_timeout": 10,
            },
            held=held,
            calls=lambda: erp.calls,
            state=state,
            # every order is a commitment (cancelled ones too): N orders make N commitments
            push={"confirmed": {"commitments": {
                "status": ["received", "scheduled", "done", "cancelled"]}}},
            key=lambda i: f"BT{i:06d}",
        )  # fmt: skip
        assert erp.duplicate_movements("commitments") == 0


@contextlib.contextmanager
def sage_x3_peer(tmp_path: Path, connections: Counter[str]) -> Iterator[Peer]:
    with SageX3Peer(demo_seed(), writable=True, slow_seconds=1.5) as x3:

        def state() -> dict[str, Any]:
            created = set(x3.created)
            with x3._store_lock:
                return {
                    r["YHUBREF"]: (r["AMTNOT"], r["AMTATI"])
                    for r in x3.records["SIH"]
                    if r.get("NUM") in created
                }

        yield Peer(
            sink={
                "kind": "sage_x3", "sends": "invoices", "wsdl": x3.wsdl_url,
                "pool_alias": "SEED", "public_name": "SIH", "group": "SIH0_1",
                "field_groups": {name: "SIH1_1" for name in
                                 ("YBTNUM", "AMTNOT", "AMTATI", "YHUBREF", "YHUBVER")},
                "reference_field": "YHUBREF", "timeout": 10, "operation_timeout": 10,
                "fields": {
                    "SALFCY": {"value": "OPA"},
                    "SIVTYP": {"from": "document",
                               "map": {"invoice": "FAC", "regularisation_request": "PRF"}},
                    "INVDAT": {"from": "issued_date", "as": "yyyymmdd"},
                    "BPCINV": {"value": "C0002"}, "CUR": {"value": "EUR"},
                    "YBTNUM": "order_ref",
                    "AMTNOT": {"from": "amount_cents", "as": "euros"},
                    "AMTATI": {"from": "total_cents", "as": "euros"},
                    "YHUBREF": "invoice_ref",
                },
            },
            held=lambda: Counter({r: len(nums) for r, nums in x3.numbers_by_reference().items()}),
            calls=lambda: x3.calls,
            state=state,
            orders=X3_N,
            updates=lambda: x3.calls_by_operation["modify"],
        )  # fmt: skip


@contextlib.contextmanager
def sage100_peer(tmp_path: Path, connections: Counter[str]) -> Iterator[Peer]:
    drop = tmp_path / "sage100" / "import"
    drop.mkdir(parents=True)

    def files() -> list[Path]:
        return sorted(p for p in drop.iterdir() if not p.name.startswith("."))

    def rows() -> list[dict[str, str]]:
        found = []
        for path in files():
            with path.open(encoding="cp1252", newline="") as handle:
                found.extend(csv.DictReader(handle, delimiter=";"))
        return found

    yield Peer(
        sink={
            "kind": "sage100_file", "sends": "invoices", "folder": str(drop),
            "file_prefix": "DELTA",
            "fields": {
                "Piece": "invoice_ref", "BT": "order_ref",
                "Type": {"from": "document", "map": {"invoice": "FA",
                                                     "regularisation_request": "PR"}},
                "Date": "issued_date", "MontantHT": "amount_cents", "TVA": "vat_cents",
                "MontantTTC": "total_cents",
            },
        },
        held=lambda: Counter(row["Piece"] for row in rows()),
        calls=lambda: len(files()),
        state=lambda: Counter(row["Piece"] for row in rows()),  # a changed record: one more row
    )  # fmt: skip
    # a HUB_ID is one version of one record: the same one twice would be a duplicate
    hub_ids = Counter(row["HUB_ID"] for row in rows())
    assert max(hub_ids.values()) == 1, hub_ids.most_common(3)


def _salesforce(
    bulk: bool,
) -> Callable[[Path, Counter[str]], contextlib.AbstractContextManager[Peer]]:
    @contextlib.contextmanager
    def start(tmp_path: Path, connections: Counter[str]) -> Iterator[Peer]:
        with (
            SalesforcePeer(field_service_store(), api_limit=1_000_000) as sf,
            pytest.MonkeyPatch.context() as env,
        ):
            env.setenv("SF_SESSION_ID", sf.session_id)  # a datafix holds no secret in clear

            def pushed() -> list[dict[str, Any]]:
                with sf.lock:
                    rows = sf.store.rows(OBJECT)
                return [r for r in rows if (r[EXTERNAL_ID] or "").startswith("FA")]

            yield Peer(
                sink={
                    "kind": "salesforce", "sends": "invoices",
                    "auth": {"session_id": "${SF_SESSION_ID}", "instance_url": sf.instance_url},
                    "ca_bundle": sf.ca_path, "object": OBJECT,
                    "external_id_field": EXTERNAL_ID,
                    # collections of 200 below the threshold, one Bulk API 2.0 job above
                    "bulk_threshold": 5 if bulk else 20_000, "timeout": 10,
                    "fields": {
                        EXTERNAL_ID: "invoice_ref", "Subject": "document",
                        "Description": "order_ref",
                        "Montant_Engage__c": {"from": "total_cents", "as": "euros"},
                        "Date_Commande__c": "issued_date",
                    },
                },
                held=lambda: Counter(r[EXTERNAL_ID] for r in pushed()),
                calls=lambda: sf.count(),
                state=lambda: {r[EXTERNAL_ID]: r["Montant_Engage__c"] for r in pushed()},
            )  # fmt: skip
            assert sf.store.duplicates(OBJECT, EXTERNAL_ID) == {}
            # bulk: one ingest job per push that sent something (10,000 then 10); else none
            assert len(sf.ingest_jobs()) == (2 if bulk else 0)
        assert sf.errors == []

    return start


PEERS = {
    "sql-sqlite": sqlite_peer,
    "sql-postgresql": postgresql_peer,
    "soap-erp": soap_erp_peer,
    "sage-x3": sage_x3_peer,
    "sage100-csv": sage100_peer,
    "salesforce-composite": _salesforce(bulk=False),
    "salesforce-bulk": _salesforce(bulk=True),
}


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Warehouse]:
    # the outbox on a PostgreSQL warehouse is proven by tests/pipelines/lib/test_push.py; here
    # the peers are the point, and 7 kinds x 10,000 records twice would double the suite's time
    url = f"sqlite:///{tmp_path}/warehouse.db"
    monkeypatch.setenv("DATAFIX_WAREHOUSE_URL", url)
    warehouse = Warehouse(url)
    warehouse.migrate()
    yield warehouse
    warehouse.dispose()


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Connections the SQL sink opens (its link connects on first use only)."""
    opened: Counter[str] = Counter()
    connect = sql_push.AlchemyLink.connect

    def counted(link: Any) -> None:
        opened["connect"] += 1
        connect(link)

    monkeypatch.setattr(sql_push.AlchemyLink, "connect", counted)
    return opened


def push(warehouse: Warehouse, loaded: Any) -> PushOutcome:
    [outcome] = push_landlord(warehouse, loaded, build_sink, sleep=lambda _seconds: None)
    assert outcome.error == "", outcome.error
    return outcome


@pytest.mark.parametrize("kind", list(PEERS), ids=list(PEERS))
def test_every_record_once_then_no_call_then_ten_updates(
    kind: str, tmp_path: Path, warehouse: Warehouse, connections: Counter[str]
) -> None:
    with PEERS[kind](tmp_path, connections) as peer:
        n = peer.orders
        data = tmp_path / "data"
        write_works(data, orders=n)
        path = write_datafix(tmp_path, "delta-habitat", {"target": peer.sink}, **peer.push)
        loaded = load_all(warehouse, path, run_id="run-1")

        # 1. every record lands at the peer, once
        first = push(warehouse, loaded)
        held = peer.held()
        assert (first.queued, first.sent, first.dead, first.failed) == (n, n, 0, 0)
        assert set(held) == {peer.key(i) for i in range(1, n + 1)}  # 0 missing
        assert sum(held.values()) == n  # 0 duplicates

        # 2. nothing changed: no call at the peer
        calls = peer.calls()
        before = peer.state()
        second = push(warehouse, loaded)
        assert (second.unchanged, second.queued, second.sent, second.calls) == (n, 0, 0, 0)
        assert peer.calls() == calls
        assert peer.state() == before

        # 3. 10 changed amounts: 10 updates at the peer, nothing else
        overrides = {i: "9999,99" for i in CHANGED}
        write_works(data, orders=n, amount_overrides=overrides)
        if kind == "soap-erp":  # commitments: their amounts come from the orders
            change_order_amounts(data, CHANGED)
        updates = peer.updates() if peer.updates else 0
        loaded = load_all(warehouse, path, run_id="run-2")
        third = push(warehouse, loaded)
        assert (third.queued, third.sent, third.unchanged) == (10, 10, n - 10)
        after = peer.state()
        assert {key for key in after if after[key] != before.get(key)} == {
            peer.key(i) for i in CHANGED
        }
        assert len(after) == n
        if peer.updates:
            assert peer.updates() - updates == 10
