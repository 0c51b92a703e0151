"""Issue 12, "one bad value wedges a sink": a control character in an invoice reference raised
an uncaught ValueError in the Sage X3 sink on every run, and no record of that sink left again.

Each sink kind against its real peer, through `pipelines.lib.push.push_landlord` on a warehouse
loaded from CSV files, with one record holding a value the target cannot take (a control
character, a value too long for the column, a value of the wrong type): that record is `dead`
with a reason naming the record, the field and the fix; every other record reaches the peer
once; the next push makes no call and does not raise; the outbox holds no record `sending`.
"""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import openpyxl
import pytest
import sqlalchemy as sa

from connectors import registry
from connectors.delivery import OutgoingRecord, printable
from connectors.sandbox.sage_x3 import SageX3Peer, demo_seed
from connectors.sandbox.salesforce import SalesforcePeer, field_service_store
from connectors.sandbox.soap_erp import LandlordErpPeer
from pipelines.lib.outbox import Outbox
from pipelines.lib.push import PushOutcome, push_landlord
from pipelines.lib.sinks import build_sink
from pipelines.lib.warehouse import Warehouse
from schemas.config import EnvText, SinkBase
from schemas.tables import outbox
from tests.conftest import temporary_postgres_database
from tests.pipelines.lib.pushing import ERP_COMMITMENT_SINK, load_all, write_datafix, write_works
from tests.toy_kinds import Drawer

N = 12  # orders, invoices
BAD = 3  # the record holding the bad value: invoice FA000003 / order BT000003
LANDLORD = "delta-habitat"


@dataclass
class Case:
    """One sink kind: its datafix sink, how to spoil record BAD, what the peer holds."""

    sink: dict[str, Any]
    spoil: Callable[[Path], None]  # rewrites the source files under `data`
    held: Callable[[], list[str]]  # the references the peer holds (one per delivery)
    field: str  # the field the reason must name
    bad_key: str = f"FA{BAD:06d}"
    good_key: Callable[[int], str] = lambda i: f"FA{i:06d}"
    push: dict[str, Any] | None = None


def _rewrite(path: Path, column: str, row: int, value: Callable[[str], str]) -> None:
    """Set `column` of data row `row` (1-based) of a `;` CSV file to `value(old)`."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter=";"))
    index = rows[0].index(column)
    rows[row][index] = value(rows[row][index])
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, delimiter=";").writerows(rows)


SPOILT_REF = f"FA\x01{BAD:06d}"  # the invoice reference with a control character


def control_in_invoice_ref(data: Path) -> None:
    _rewrite(data / "factures.csv", "facture", BAD, lambda ref: SPOILT_REF)


# --- the peers ------------------------------------------------------------------------------


@contextlib.contextmanager
def sage_x3(tmp_path: Path) -> Iterator[Case]:
    with SageX3Peer(demo_seed(), writable=True) as x3:
        yield Case(
            sink={
                "kind": "sage_x3", "sends": "invoices", "wsdl": x3.wsdl_url,
                "pool_alias": "SEED", "public_name": "SIH", "group": "SIH0_1",
                "field_groups": {name: "SIH1_1" for name in
                                 ("YBTNUM", "AMTNOT", "YHUBREF", "YHUBVER")},
                "reference_field": "YHUBREF", "timeout": 10, "operation_timeout": 10,
                "fields": {
                    "SALFCY": {"value": "OPA"}, "BPCINV": {"value": "C0002"},
                    "CUR": {"value": "EUR"},
                    "INVDAT": {"from": "issued_date", "as": "yyyymmdd"},
                    "YBTNUM": "order_ref",
                    "AMTNOT": {"from": "amount_cents", "as": "euros"},
                    "YHUBREF": "invoice_ref",
                },
            },
            spoil=control_in_invoice_ref,
            bad_key=SPOILT_REF,
            held=lambda: [
                ref for ref, nums in x3.numbers_by_reference().items() for _ in nums
                if ref.startswith("FA")
            ],
            field="YHUBREF",
        )  # fmt: skip


@contextlib.contextmanager
def soap_erp(tmp_path: Path) -> Iterator[Case]:
    # commitments in batches (SubmitCommitments); the control character in a contractor's name
    with LandlordErpPeer() as erp:

        def held() -> list[str]:
            with erp._store_lock:
                moves = erp.movements["commitments"]
                return [ref for ref, items in moves.items() for _ in items]

        yield Case(
            sink={
                **ERP_COMMITMENT_SINK, "wsdl": erp.wsdl_url, "timeout": 10, "operation_timeout": 10,
            },
            spoil=lambda data: _rewrite(
                data / "bt.csv", "entreprise", BAD, lambda name: "Plomberie\x0bMartin"
            ),
            held=held,
            field="Contractor",
            bad_key=f"BT{BAD:06d}",
            good_key=lambda i: f"BT{i:06d}",
            push={"confirmed": {"commitments": {
                "status": ["received", "scheduled", "done", "cancelled"]}}},
        )  # fmt: skip
        assert erp.duplicate_movements("commitments") == 0


def _sage100(file_format: str) -> Callable[[Path], contextlib.AbstractContextManager[Case]]:
    @contextlib.contextmanager
    def start(tmp_path: Path) -> Iterator[Case]:
        drop = tmp_path / "sage100"
        drop.mkdir()

        def held() -> list[str]:
            refs: list[str] = []
            for path in sorted(drop.glob(f"DELTA_*.{file_format}")):
                if file_format == "csv":
                    with path.open(encoding="cp1252", newline="") as handle:
                        refs += [row["Piece"] for row in csv.DictReader(handle, delimiter=";")]
                else:
                    sheet = openpyxl.load_workbook(path, read_only=True).active
                    rows = list(sheet.iter_rows(values_only=True))
                    refs += [str(row[rows[0].index("Piece")]) for row in rows[1:]]
            return refs

        yield Case(
            sink={
                "kind": "sage100_file", "sends": "invoices", "folder": str(drop),
                "file_prefix": "DELTA", "format": file_format,
                "fields": {"Piece": "invoice_ref", "BT": "order_ref", "Date": "issued_date",
                           "MontantHT": "amount_cents"},
            },
            spoil=control_in_invoice_ref,
            bad_key=SPOILT_REF,
            held=held,
            field="Piece",
        )  # fmt: skip

    return start


@contextlib.contextmanager
def salesforce(tmp_path: Path) -> Iterator[Case]:
    # a currency field given text: the peer refuses that record's type
    with (
        SalesforcePeer(field_service_store(), api_limit=1_000_000) as sf,
        pytest.MonkeyPatch.context() as env,
    ):
        env.setenv("SF_SESSION_ID", sf.session_id)

        def held() -> list[str]:
            with sf.lock:
                rows = sf.store.rows("WorkOrder")
            refs = [row["Hub_External_Id__c"] or "" for row in rows]
            return [ref for ref in refs if ref.startswith("FA")]

        yield Case(
            sink={
                "kind": "salesforce", "sends": "invoices",
                "auth": {"session_id": "${SF_SESSION_ID}", "instance_url": sf.instance_url},
                "ca_bundle": sf.ca_path, "object": "WorkOrder",
                "external_id_field": "Hub_External_Id__c", "timeout": 10,
                "fields": {
                    "Hub_External_Id__c": "invoice_ref", "Description": "order_ref",
                    # every order's amount is 12.50, but BT000003's: its text is no amount
                    "Montant_Engage__c": {"from": "order_ref", "map": {
                        f"BT{i:06d}": "12.50" for i in range(1, N + 1) if i != BAD}},
                },
            },
            spoil=lambda data: None,
            held=held,
            field="Montant_Engage__c",
        )  # fmt: skip


def _sql(backend: str) -> Callable[[Path], contextlib.AbstractContextManager[Case]]:
    @contextlib.contextmanager
    def start(tmp_path: Path) -> Iterator[Case]:
        with contextlib.ExitStack() as stack:
            if backend == "sqlite":
                url = f"sqlite:///{tmp_path}/erp.db"
            else:
                url = stack.enter_context(temporary_postgres_database())
            engine = sa.create_engine(url)
            stack.callback(engine.dispose)
            with engine.begin() as connection:
                connection.exec_driver_sql(
                    "CREATE TABLE factures_hub (facture VARCHAR(12) PRIMARY KEY"
                    " CHECK (length(facture) <= 12), bt VARCHAR(20), montant_cts BIGINT,"
                    " hub_idem VARCHAR(80))"
                )

            def held() -> list[str]:
                with engine.connect() as connection:
                    return [row[0] for row in connection.exec_driver_sql(
                        "SELECT facture FROM factures_hub")]  # fmt: skip

            yield Case(
                sink={
                    "kind": "sql", "sends": "invoices", "url": url, "table": "factures_hub",
                    "key_column": "facture", "idempotency_column": "hub_idem",
                    "fields": {"facture": "invoice_ref", "bt": "order_ref",
                               "montant_cts": "amount_cents"},
                },
                spoil=lambda data: _rewrite(
                    data / "factures.csv", "facture", BAD, lambda ref: ref + "-AVOIR-2026"
                ),
                held=held,
                field="facture",
                bad_key=f"FA{BAD:06d}-AVOIR-2026",
            )  # fmt: skip

    return start


CASES = {
    "sage-x3": sage_x3,
    "soap-erp": soap_erp,
    "sage100-csv": _sage100("csv"),
    "sage100-xlsx": _sage100("xlsx"),
    "salesforce": salesforce,
    "sql-sqlite": _sql("sqlite"),
    "sql-postgresql": _sql("postgresql"),
}


@pytest.fixture
def warehouse(warehouse_url: str) -> Iterator[Warehouse]:
    """The hub's warehouse (outbox included), on SQLite and on PostgreSQL."""
    warehouse = Warehouse(warehouse_url)
    warehouse.migrate()
    yield warehouse
    warehouse.dispose()


def push(warehouse: Warehouse, loaded: Any) -> PushOutcome:
    [outcome] = push_landlord(warehouse, loaded, build_sink, sleep=lambda _seconds: None)
    return outcome


def outbox_rows(warehouse: Warehouse) -> dict[str, tuple[str, str]]:
    """record key → (state, last error) of the landlord's outbox."""
    box = Outbox(warehouse.engine)
    states = {state for _, _, state, _ in box.states(LANDLORD)}
    assert "sending" not in states, states  # nothing left in flight
    with warehouse.engine.connect() as connection:
        rows = connection.execute(
            sa.select(outbox.c.record_key, outbox.c.state, outbox.c.last_error).where(
                outbox.c.landlord_id == LANDLORD
            )
        ).all()
    return {row[0]: (row[1], row[2] or "") for row in rows}


@contextlib.contextmanager
def spoilt_landlord(kind: str, tmp_path: Path, warehouse: Warehouse) -> Iterator[tuple[Case, Any]]:
    """The `kind` peer running, and N orders with record BAD spoilt loaded into the warehouse:
    the case and the loaded datafix."""
    with CASES[kind](tmp_path) as case:
        data = tmp_path / "data"
        write_works(data, orders=N)
        case.spoil(data)
        path = write_datafix(tmp_path, LANDLORD, {"target": case.sink}, **(case.push or {}))
        yield case, load_all(warehouse, path)


@pytest.mark.parametrize("kind", list(CASES), ids=list(CASES))
def test_one_bad_value_is_dead_and_the_sink_goes_on(
    kind: str, tmp_path: Path, warehouse: Warehouse
) -> None:
    with spoilt_landlord(kind, tmp_path, warehouse) as (case, loaded):
        first = push(warehouse, loaded)  # the old code raised here (Sage X3, SOAP, xlsx)
        assert (first.sent, first.dead, first.failed) == (N - 1, 1, 0), first
        assert first.status == "dead letters"  # 1 dead fails the push: max_dead_percent 0
        held = case.held()
        assert sorted(held) == sorted(case.good_key(i) for i in range(1, N + 1) if i != BAD)

        rows = outbox_rows(warehouse)
        state, reason = rows[case.bad_key]
        assert state == "dead"
        assert case.field in reason, reason
        if kind != "salesforce":  # the hub's own reason (Salesforce's is the peer's words)
            assert f"record {printable(case.bad_key)}:" in reason, reason
            assert " — " in reason, reason  # then the fix
        assert {s for key, (s, _) in rows.items() if key != case.bad_key} == {"sent"}

        second = push(warehouse, loaded)  # the dead record is not retried: no call at all
        assert (second.sent, second.dead, second.dead_waiting, second.calls) == (0, 0, 1, 0)
        assert sorted(case.held()) == sorted(held)
        assert outbox_rows(warehouse)[case.bad_key][0] == "dead"


@pytest.mark.parametrize("kind", ["sage-x3", "soap-erp"])
def test_a_bad_record_left_in_flight_by_the_old_sink_is_settled(
    kind: str, tmp_path: Path, warehouse: Warehouse
) -> None:
    """The old sink crashed with the batch `sending`: the next push reads back what it can,
    settles the bad record dead, and sends the others once."""
    with spoilt_landlord(kind, tmp_path, warehouse) as (case, loaded):
        box = Outbox(warehouse.engine)
        config = loaded.datafix.push.sinks["target"]
        records = push_records(warehouse, loaded)
        box.enqueue(LANDLORD, "target", config.kind, config.sends, records, run_id="old")
        box.claim(LANDLORD, "target", limit=N, run_id="old", max_attempts=5)  # then it died

        outcome = push(warehouse, loaded)
        assert (outcome.sent, outcome.dead) == (N - 1, 1), outcome
        assert sorted(case.held()) == sorted(case.good_key(i) for i in range(1, N + 1) if i != BAD)
        assert outbox_rows(warehouse)[case.bad_key][0] == "dead"


def push_records(warehouse: Warehouse, loaded: Any) -> list[Any]:
    from pipelines.lib.derive import derive
    from pipelines.lib.push import map_records
    from schemas.outgoing import OUTGOING

    push_config = loaded.datafix.push
    config = push_config.sinks["target"]
    frame = derive(warehouse, LANDLORD, config.sends, push_config.confirmed)
    return map_records(frame, config, OUTGOING[config.sends])


# --- a plug-in sink that raises ---------------------------------------------------------------


class AsciiDrawer(SinkBase):
    """A landlord's plug-in: one `<key>.txt` per record, written as ASCII (naively)."""

    kind: Literal["ascii_drawer"]
    folder: EnvText


class AsciiDrawerSink(Drawer):
    """Its connector: the toy `drawer`, with text files written as ASCII, all at once."""

    kind = "ascii_drawer"
    suffix = ".txt"

    def batch_size(self, pending: int) -> int:
        return pending

    def write(self, target: Path, record: OutgoingRecord) -> None:
        text = "\n".join(f"{k}={v}" for k, v in record.fields.items())
        # raises UnicodeEncodeError on the first accent, after the records before it
        target.write_bytes(f"{record.idempotency_key}\n{text}".encode("ascii"))

    def holds(self, target: Path, record: OutgoingRecord) -> bool:
        return target.read_bytes().startswith(record.idempotency_key.encode())


def test_a_plugin_sink_raising_on_one_record_does_not_wedge(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    """A sink that raises (here UnicodeEncodeError, after writing the records before the bad
    one) on a batch: each record is tried alone, read back first, the bad one is dead with
    the exception's type and message."""
    kind = registry.SinkKind(
        "ascii_drawer", AsciiDrawer, build=lambda name, s: AsciiDrawerSink(name, Path(s.folder))
    )
    folder = tmp_path / "drawer"
    folder.mkdir()
    data = tmp_path / "data"
    write_works(data, orders=N)
    _rewrite(data / "factures.csv", "facture", BAD, lambda ref: ref[:2] + "é" + ref[2:])
    sink = {"kind": "ascii_drawer", "sends": "invoices", "folder": str(folder),
            "fields": {"ref": "invoice_ref", "bt": "order_ref"}}  # fmt: skip
    with registry.registered(kind):
        path = write_datafix(tmp_path, LANDLORD, {"target": sink})
        loaded = load_all(warehouse, path)
        first = push(warehouse, loaded)
        assert (first.sent, first.dead, first.failed) == (N - 1, 1, 0), first
        assert sorted(p.stem for p in folder.iterdir()) == [
            f"FA{i:06d}" for i in range(1, N + 1) if i != BAD
        ]
        state, reason = outbox_rows(warehouse)["FAé000003"]
        assert state == "dead"
        assert "UnicodeEncodeError" in reason and "FAé000003" in reason, reason
        second = push(warehouse, loaded)
        assert (second.sent, second.dead, second.calls) == (0, 0, 0)
