"""Bench of the push: records/s per sink kind against the local peers, beside the raw connector.

For each sink kind, N confirmed records go out through the real push path,
`pipelines.lib.push.push_landlord(warehouse, loaded, pipelines.lib.sinks.build_sink)`, from a
SQLite warehouse loaded by `tests/pipelines/lib/pushing.py` (write_works → write_datafix →
load_all; loaded once, then copied fresh for every measurement):

- `salesforce_collections`: `SalesforcePeer` (HTTPS), composite collections of 200
  (`bulk_threshold` above N), commitments onto `WorkOrder` by `Hub_External_Id__c`;
- `salesforce_bulk`: the same through one Bulk API 2.0 ingest job (the peer's job answers
  JobComplete at the first poll: `bulk_polls_in_progress=0`, so no poll wait is measured);
- `soap_batch`: `LandlordErpPeer`, `SubmitCommitments` (a list of up to 100 per call);
- `soap_node_per_record`: the works-order ERP on node-soap (`TravauxErpPeer`, a different SOAP
  server stack), `EnregistrerEngagement`, one call per commitment into its nested `engagement`
  element, idempotent on the works-order number (`natural_key`, no idempotency element): the
  same 10,000 commitments as `soap_batch`, in the same run, so the two SOAP modes sit side by
  side (the comparison line under the table). Its calls are counted at the peer
  (`stats()["callsTotal"]`: SOAP operations, the WSDL download not included) and so are its
  writes (one per record: no duplicate); the rerun with nothing changed must make 0 calls;
- `sage_x3`: `SageX3Peer` (writable), `save` per record of the invoices (SIH); 1,000 records
  only, a call per record;
- `sage100_csv`: `Sage100FileSink`, csv import files dropped into a folder (5,000 rows a file);
- `sql_sqlite` / `sql_postgresql`: `SqlSink` upserting into a table of an SQLite file, and of a
  PostgreSQL database created for the bench (127.0.0.1:5432, user postgres) and dropped after.

Beside each push, the baseline measured in the same run: the raw connector alone, built by the
same `build_sink` from the same datafix, `sink.send` in a loop over batches of
`sink.batch_size(n)` with the very records the outbox would hand over (mapped and idempotency
keys made before the clock starts), no outbox, no warehouse. The ratio push / raw is the
outbox's overhead (derive + map + enqueue + claim/record per batch + the lease). Then the
second push with no change: its time and the calls the peer received (must be 0).

Every measurement gets a fresh peer on port 0 (started inside this process, before the clock)
and a fresh target; they run in `ATTEMPTS` interleaved rounds (raw, push, second push for each
kind, then the next round) and the fastest run of each is kept.

`python tests/bench/push.py [--kind KIND ...] [--attempts N]` runs it alone; tests/bench/run.py
calls `run_all()` and `print_table()` (`run.py --only push`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
for _path in (str(HERE), str(REPO)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import generate  # noqa: E402  (tests/bench/generate.py: bench_home)
from text_table import text_table  # noqa: E402  (tests/bench/text_table.py)

from tests.pipelines.lib.pushing import (  # noqa: E402
    ERP_COMMITMENT_SINK,
    SF_EXTERNAL_ID,
    SF_OBJECT,
    TRAVAUX_COMMITMENT_FIELDS,
    TRAVAUX_COMMITMENT_SINK,
    run_sql,
)

ATTEMPTS = 2
RECORDS = 10_000
X3_RECORDS = 1_000  # one SOAP call per record (about 100 records/s): fewer, to keep the bench short
# the node-soap per-record push of the 10,000 commitments: a sane bound, not a speed target
# (one HTTP round trip per record; a MISS means something is badly off, e.g. a retry storm)
NODE_PER_RECORD_MAX_SECONDS = 300.0
LANDLORD = "bench-push"
X3_LANDLORD = "bench-push-x3"
# write_works: orders whose status is not cancelled (3 in 4) become commitments
ORDERS = RECORDS * 4 // 3  # 13,333 orders → 10,000 commitments
PG_HOST = os.environ.get("DATAFIX_BENCH_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("DATAFIX_BENCH_PG_PORT", "5432"))
PG_USER = os.environ.get("DATAFIX_BENCH_PG_USER", "postgres")
SQL_TABLE = "erp_invoices"
SQL_DDL = (
    f"CREATE TABLE {SQL_TABLE} (invoice_no VARCHAR(20) PRIMARY KEY, bt VARCHAR(20),"
    " amount_cents BIGINT, total_cents BIGINT, issued_on DATE, hub_key VARCHAR(120))"
)
SF_SESSION_VARIABLE = "DATAFIX_BENCH_SF_SESSION"

COMMITMENTS_SF = {
    "Subject": "contractor",
    "City": "dwelling_ref",
    "Description": {"from": "amount_cents", "as": "euros"},
    "Date_Commande__c": "ordered_date",
}
INVOICES_X3 = {
    "SALFCY": {"value": "SED"},
    "SIVTYP": {"value": "FRN"},
    "INVDAT": "issued_date",
    "BPCINV": {"value": "C0002"},
    "CUR": {"value": "EUR"},
    "YBTNUM": "order_ref",
    "AMTNOT": {"from": "amount_cents", "as": "euros"},
    "AMTATI": {"from": "total_cents", "as": "euros"},
}
X3_FIELD_GROUPS = {name: "SIH1_1" for name in ("YBTNUM", "AMTNOT", "AMTATI", "YHUBREF", "YHUBVER")}
INVOICES_SAGE100 = {
    "Facture": "invoice_ref",
    "BT": "order_ref",
    "MontantHT": "amount_cents",
    "MontantTTC": "total_cents",
    "Date": "issued_date",
}
INVOICES_SQL = {
    "bt": "order_ref",
    "amount_cents": "amount_cents",
    "total_cents": "total_cents",
    "issued_on": "issued_date",
}


# --------------------------------------------------------------------------------------------
# Peers and targets: one fresh set per measurement


class Target:
    """A started peer (or a fresh folder / table) and the sink declaration pointing at it."""

    def __init__(self, kind: str, folder: Path) -> None:
        self.kind = kind
        self.folder = folder
        self.peer: Any = None
        self.sink: dict[str, Any] = {}
        self.pg_database: str | None = None

    def peer_calls(self) -> int | None:
        """Calls the peer received (HTTP peers: every request, the WSDL download included)."""
        peer = self.peer
        if peer is None:
            return None
        if self.kind.startswith("salesforce"):
            return peer.count()
        if self.kind == "soap_node_per_record":
            return int(peer.stats()["callsTotal"])
        return int(peer.calls) + int(peer.wsdl_requests)

    def writes(self) -> int | None:
        """Writes the peer made (one per record expected), when it counts them."""
        if self.kind == "soap_node_per_record":
            return int(self.peer.stats()["writes"])
        return None

    def held(self) -> int:
        """Records the target holds after the push (checked against N)."""
        if self.kind.startswith("salesforce"):
            rows = self.peer.store.rows(SF_OBJECT)
            return sum(1 for row in rows if row.get(SF_EXTERNAL_ID) is not None)
        if self.kind == "soap_batch":
            return len(self.peer.held["commitments"])
        if self.kind == "soap_node_per_record":
            return int(self.peer.stats()["engagements"])
        if self.kind == "sage_x3":
            return len(self.peer.created)
        if self.kind == "sage100_csv":
            count = 0
            for path in sorted(self.folder.glob("drop/*.csv")):
                with path.open(encoding="cp1252") as handle:
                    count += sum(1 for _ in handle) - 1  # the header line
            return count
        import sqlalchemy as sa

        engine = sa.create_engine(self.sink["url"])
        try:
            with engine.connect() as conn:
                return conn.exec_driver_sql(f"SELECT count(*) FROM {SQL_TABLE}").scalar_one()
        finally:
            engine.dispose()


def _pg_admin(statement: str) -> None:
    import psycopg

    with psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(statement)


def _x3_spec_has_field_groups() -> bool:
    from connectors.sage.kinds import SageX3Sink

    return "field_groups" in SageX3Sink.model_fields


@contextlib.contextmanager
def started(kind: str, folder: Path) -> Iterator[Target]:
    """A fresh peer/target for `kind`, stopped (and dropped) afterwards."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    target = Target(kind, folder)
    with contextlib.ExitStack() as stack:
        if kind.startswith("salesforce"):
            from connectors.sandbox.salesforce import SalesforcePeer, SalesforceStore

            peer = stack.enter_context(SalesforcePeer(SalesforceStore(), bulk_polls_in_progress=0))
            target.peer = peer
            os.environ[SF_SESSION_VARIABLE] = peer.session_id
            stack.callback(os.environ.pop, SF_SESSION_VARIABLE, None)
            target.sink = {
                "kind": "salesforce",
                "sends": "commitments",
                "fields": COMMITMENTS_SF,
                # a secret is never written in clear in a datafix: `${VARIABLE}`
                "auth": {
                    "session_id": "${" + SF_SESSION_VARIABLE + "}",
                    "instance_url": peer.instance_url,
                },
                "object": SF_OBJECT,
                "external_id_field": SF_EXTERNAL_ID,
                "ca_bundle": peer.ca_path,
                "bulk_threshold": 1_000_000 if kind == "salesforce_collections" else 2_000,
            }
        elif kind == "soap_batch":
            from connectors.sandbox.soap_erp import LandlordErpPeer

            peer = stack.enter_context(LandlordErpPeer())
            target.peer = peer
            target.sink = {**ERP_COMMITMENT_SINK, "wsdl": peer.wsdl_url, "mode": "batch"}
        elif kind == "soap_node_per_record":
            from connectors.sandbox.erp_node import TravauxErpPeer

            peer = stack.enter_context(TravauxErpPeer())
            target.peer = peer
            target.sink = {
                **TRAVAUX_COMMITMENT_SINK,
                # the works order's category as the line's label
                "fields": {
                    **TRAVAUX_COMMITMENT_FIELDS,
                    "engagement.lignes.ligne.libelle": "category",
                },
                "wsdl": peer.wsdl_url,
            }
        elif kind == "sage_x3":
            from connectors.sandbox.sage_x3 import SageX3Peer, demo_seed

            peer = stack.enter_context(SageX3Peer(demo_seed(), writable=True))
            target.peer = peer
            target.sink = {
                "kind": "sage_x3",
                "sends": "invoices",
                "fields": INVOICES_X3,
                "wsdl": peer.wsdl_url,
                "pool_alias": "SEED",
            }
            if _x3_spec_has_field_groups():
                target.sink["field_groups"] = X3_FIELD_GROUPS
        elif kind == "sage100_csv":
            (folder / "drop").mkdir()
            target.sink = {
                "kind": "sage100_file",
                "sends": "invoices",
                "fields": INVOICES_SAGE100,
                "folder": str(folder / "drop"),
                "format": "csv",
            }
        elif kind == "sql_sqlite":
            url = f"sqlite:///{folder / 'erp.db'}"
            run_sql(url, SQL_DDL)
            target.sink = _sql_sink(url)
        elif kind == "sql_postgresql":
            database = f"datafix_bench_push_{os.getpid()}_{uuid.uuid4().hex[:6]}"
            _pg_admin(f'CREATE DATABASE "{database}"')
            target.pg_database = database
            stack.callback(_pg_admin, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            url = f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"
            run_sql(url, SQL_DDL)
            target.sink = _sql_sink(url)
        else:
            raise ValueError(f"unknown kind {kind}")
        yield target


def _sql_sink(url: str) -> dict[str, object]:
    """The ERP table sink of the SQL benches (SQLite and PostgreSQL alike)."""
    return {
        "kind": "sql",
        "sends": "invoices",
        "fields": INVOICES_SQL,
        "url": url,
        "table": SQL_TABLE,
        "key_column": "invoice_no",
        "idempotency_column": "hub_key",
    }


@dataclass(frozen=True)
class Kind:
    name: str
    label: str
    landlord: str
    records: int


KINDS = (
    Kind("salesforce_collections", "Salesforce composite collections", LANDLORD, RECORDS),
    Kind("salesforce_bulk", "Salesforce Bulk API 2.0", LANDLORD, RECORDS),
    Kind("soap_batch", "landlord ERP SOAP batch", LANDLORD, RECORDS),
    Kind("soap_node_per_record", "works-order ERP node-soap per record", LANDLORD, RECORDS),
    Kind("sage_x3", "Sage X3 save per record", X3_LANDLORD, X3_RECORDS),
    Kind("sage100_csv", "Sage 100 file drop (csv)", LANDLORD, RECORDS),
    Kind("sql_sqlite", "SQL ERP table (SQLite file)", LANDLORD, RECORDS),
    Kind("sql_postgresql", "SQL ERP table (PostgreSQL)", LANDLORD, RECORDS),
)
BY_NAME = {kind.name: kind for kind in KINDS}


# --------------------------------------------------------------------------------------------
# The warehouse: loaded once, copied for every measurement


def _home() -> Path:
    folder = generate.bench_home() / "push"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _landlord_folder(landlord: str) -> Path:
    return _home() / "landlords" / landlord


def prepare_template() -> dict:
    """Load both landlords' works data into a template SQLite warehouse (made every run)."""
    from pipelines.lib.push import record_contract
    from pipelines.lib.warehouse import Warehouse
    from tests.pipelines.lib.pushing import load_all, write_datafix, write_works

    started_at = time.perf_counter()
    template = _home() / "template.db"
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{template}{suffix}").unlink(missing_ok=True)
    warehouse = Warehouse(f"sqlite:///{template}")
    warehouse.migrate()
    counts = {}
    try:
        for landlord, orders, invoices in (
            (LANDLORD, ORDERS, RECORDS),
            (X3_LANDLORD, X3_RECORDS, X3_RECORDS),
        ):
            folder = _landlord_folder(landlord)
            if folder.exists():
                shutil.rmtree(folder)
            write_works(folder / "data", orders=orders, invoices=invoices)
            path = write_datafix(folder, landlord, _placeholder_sink())
            loaded = load_all(warehouse, path)
            for entity in loaded.datafix.entities:  # the contracts gate the push: passed
                record_contract(
                    warehouse, landlord, entity, passed=True, summary="bench", run_id="run-1"
                )
            counts[landlord] = {"orders": orders, "invoices": invoices}
    finally:
        warehouse.dispose()
    return {"seconds": round(time.perf_counter() - started_at, 2), "landlords": counts}


def _placeholder_sink() -> dict[str, Any]:
    return {"erp": {"kind": "sage100_file", "sends": "invoices", "fields": INVOICES_SAGE100,
                    "folder": str(_home() / "unused")}}  # fmt: skip


def _fresh_warehouse(name: str) -> Any:
    from pipelines.lib.warehouse import Warehouse

    path = _home() / f"{name}.db"
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(_home() / "template.db", path)
    return Warehouse(f"sqlite:///{path}")


def _datafix(kind: Kind, target: Target) -> Any:
    from pipelines.lib.datafixes import load_datafix
    from tests.pipelines.lib.pushing import write_datafix

    folder = _landlord_folder(kind.landlord)
    return load_datafix(write_datafix(folder, kind.landlord, {kind.name: target.sink}))


def _build_sink(kind: Kind) -> Callable[..., Any]:
    """`pipelines.lib.sinks.build_sink`, plus the X3 field groups when the datafix schema
    cannot say them yet (older `SageX3Sink` spec without `field_groups`)."""
    from pipelines.lib.sinks import build_sink

    if kind.name != "sage_x3" or _x3_spec_has_field_groups():
        return build_sink

    def build(loaded: Any, name: str) -> Any:
        sink = build_sink(loaded, name)
        sink.field_groups = dict(X3_FIELD_GROUPS)
        return sink

    return build


# --------------------------------------------------------------------------------------------
# The measurements


def measure_raw(kind: Kind) -> dict:
    """The connector alone: the outbox's records, `sink.send` over `sink.batch_size(n)`."""
    from connectors.delivery import OutgoingRecord, payload_hash, payload_json
    from pipelines.lib.derive import derive
    from pipelines.lib.outbox import idempotency_key
    from pipelines.lib.push import decoder, map_records
    from schemas.outgoing import OUTGOING

    warehouse = _fresh_warehouse(f"raw-{kind.name}")
    try:
        with started(kind.name, _home() / "targets" / f"raw-{kind.name}") as target:
            loaded = _datafix(kind, target)
            push = loaded.datafix.push
            config = push.sinks[kind.name]
            spec = OUTGOING[config.sends]
            frame = derive(warehouse, loaded.landlord_id, config.sends, push.confirmed)
            decode = decoder(config, spec)
            records = [
                OutgoingRecord(
                    queued.key,
                    idempotency_key(
                        loaded.landlord_id, kind.name, queued.key, 1, payload_hash(queued.payload)
                    ),
                    decode(payload_json(queued.payload)),
                )
                for queued in map_records(frame, config, spec)
            ]
            sink = _build_sink(kind)(loaded, kind.name)
            calls = 0
            outcomes: dict[str, int] = {}
            started_at = time.perf_counter()
            try:
                pending = records
                while pending:
                    size = sink.batch_size(len(pending))
                    batch, pending = pending[:size], pending[size:]
                    calls += 1
                    for delivered in sink.send(batch):
                        outcomes[delivered.outcome] = outcomes.get(delivered.outcome, 0) + 1
            finally:
                sink.close()
            seconds = time.perf_counter() - started_at
            return {
                "records": len(records),
                "seconds": seconds,
                "calls": calls,
                "peer_calls": target.peer_calls(),
                "outcomes": outcomes,
                "held": target.held(),
                "writes": target.writes(),
            }
    finally:
        warehouse.dispose()


def measure_push(kind: Kind) -> dict:
    """`push_landlord` of the sink, then the same again with no change (timed apart)."""
    from pipelines.lib.push import push_landlord

    warehouse = _fresh_warehouse(f"push-{kind.name}")
    try:
        with started(kind.name, _home() / "targets" / f"push-{kind.name}") as target:
            loaded = _datafix(kind, target)
            build = _build_sink(kind)
            built = 0

            def counting_build(loaded_: Any, name: str) -> Any:
                nonlocal built
                built += 1
                return build(loaded_, name)

            before = target.peer_calls()
            started_at = time.perf_counter()
            [first] = push_landlord(warehouse, loaded, counting_build)
            seconds = time.perf_counter() - started_at
            after = target.peer_calls()
            built_first = built
            held = target.held()
            writes = target.writes()

            started_at = time.perf_counter()
            [second] = push_landlord(warehouse, loaded, counting_build)
            rerun_seconds = time.perf_counter() - started_at
            final = target.peer_calls()
            return {
                "records": first.confirmed,
                "seconds": seconds,
                "status": first.status,
                "sent": first.sent,
                "dead": first.dead,
                "failed": first.failed,
                "push_error": first.error or None,
                "calls": first.calls,
                "peer_calls": None if after is None else after - (before or 0),
                "held": held,
                "writes": writes,
                "rerun": {
                    "seconds": rerun_seconds,
                    "status": second.status,
                    "queued": second.queued,
                    "unchanged": second.unchanged,
                    "calls": second.calls,
                    # HTTP peers: requests received; file and SQL targets: sinks built
                    "peer_calls": (final - after) if final is not None else built - built_first,
                    "writes": None if writes is None else target.writes() - writes,
                },
            }
    finally:
        warehouse.dispose()


def _safe(measure: Callable[[Kind], dict], kind: Kind) -> dict:
    try:
        return measure(kind)
    except Exception as error:
        return {"error": f"{type(error).__name__}: {error}"[:500]}


def run_all(kinds: list[str] | None = None, attempts: int = ATTEMPTS) -> dict:
    """Every kind `attempts` times, interleaved; the fastest raw and push runs kept."""
    chosen = [BY_NAME[name] for name in kinds] if kinds else list(KINDS)
    prepared = prepare_template()
    print(f"  push warehouse loaded in {prepared['seconds']:.1f} s", flush=True)
    runs: dict[str, dict[str, list[dict]]] = {k.name: {"raw": [], "push": []} for k in chosen}
    for attempt in range(attempts):
        for kind in chosen:
            for part, measure in (("raw", measure_raw), ("push", measure_push)):
                done = runs[kind.name][part]
                if done and "error" in done[-1]:
                    continue
                result = _safe(measure, kind)
                done.append(result)
                if "error" in result:
                    shown = "error: " + result["error"]
                else:
                    shown = f"{result['seconds']:.2f} s"
                    if part == "push":
                        shown += f", second run {result['rerun']['seconds']:.2f} s"
                print(f"  {kind.name} {part} #{attempt + 1}: {shown}", flush=True)
    results = {}
    for kind in chosen:
        best: dict[str, dict] = {}
        for part, done in runs[kind.name].items():
            good = [run for run in done if "error" not in run]
            chosen_run = min(good, key=lambda run: run["seconds"]) if good else dict(done[-1])
            best[part] = chosen_run | {"runs": [run.get("seconds") for run in done]}
        push, raw = best["push"], best["raw"]
        if "error" not in push and "error" not in raw:
            reruns = [run["rerun"] for run in runs[kind.name]["push"] if "rerun" in run]
            best["rerun"] = min(reruns, key=lambda run: run["seconds"]) | {
                "max_peer_calls": max(run["peer_calls"] for run in reruns)
            }
            best["ratio_vs_raw"] = push["seconds"] / raw["seconds"]
            best["push_records_per_second"] = push["records"] / push["seconds"]
            best["raw_records_per_second"] = raw["records"] / raw["seconds"]
        results[kind.name] = {"label": kind.label, "n": kind.records} | best
        if kind.name == "soap_node_per_record":
            results[kind.name]["max_seconds"] = NODE_PER_RECORD_MAX_SECONDS
    per_record, batch = results.get("soap_node_per_record"), results.get("soap_batch")
    if per_record and batch and "ratio_vs_raw" in per_record and "ratio_vs_raw" in batch:
        results["soap_node_per_record"]["vs_soap_batch"] = {
            "seconds": per_record["push"]["seconds"] / batch["push"]["seconds"],
            "peer_calls": per_record["push"]["peer_calls"] / batch["push"]["peer_calls"],
        }
    report = {"attempts": attempts, "prepared": prepared, "results": results}
    out = generate.bench_home().parent / "bench-push.json"
    out.write_text(json.dumps(report, indent=2, default=str))
    report["written_to"] = str(out)
    return report


def _check(result: dict) -> str:
    push, raw, rerun = result["push"], result["raw"], result.get("rerun")
    if "error" in push or "error" in raw or rerun is None:
        return "MISS (error)"
    missed = []
    n = result["n"]
    if push["records"] != n or push["sent"] != n or push["held"] != n or raw["held"] != n:
        missed.append("counts")
    if push.get("writes") not in (None, n) or raw.get("writes") not in (None, n):
        missed.append("writes")  # a peer counting its writes: exactly one per record
    if rerun["max_peer_calls"] != 0 or rerun["calls"] != 0 or rerun.get("writes") not in (None, 0):
        missed.append("2nd-run calls")
    if result.get("max_seconds") is not None and push["seconds"] > result["max_seconds"]:
        missed.append(f"over {result['max_seconds']:g} s")
    return "PASS" if not missed else "MISS (" + ", ".join(missed) + ")"


def print_table(report: dict) -> None:
    header = (
        "sink kind",
        "records",
        "push s",
        "push rec/s",
        "calls",
        "peer calls",
        "raw s",
        "raw rec/s",
        "raw calls",
        "push/raw",
        "2nd run s",
        "2nd calls",
        "check",
    )
    lines = []
    for name, result in report["results"].items():
        push, raw, rerun = result["push"], result["raw"], result.get("rerun") or {}
        if "error" in push or "error" in raw:
            lines.append((name, f"{result['n']:,}", *["-"] * 10, "MISS (error)"))
            continue
        lines.append(
            (
                name,
                f"{push['records']:,}",
                f"{push['seconds']:.2f}",
                f"{result['push_records_per_second']:,.0f}",
                f"{push['calls']:,}",
                "-" if push["peer_calls"] is None else f"{push['peer_calls']:,}",
                f"{raw['seconds']:.2f}",
                f"{result['raw_records_per_second']:,.0f}",
                f"{raw['calls']:,}",
                f"{result['ratio_vs_raw']:.2f}x",
                f"{rerun.get('seconds', 0):.2f}",
                str(rerun.get("max_peer_calls", "-")),
                _check(result),
            )
        )
    print("\n".join(text_table(header, lines, right=range(1, 12))))  # kind and check: left
    for name, result in report["results"].items():
        for part in ("push", "raw"):
            if "error" in result[part]:
                print(f"{name} {part}: {result[part]['error']}")
    print(
        "push: push_landlord through build_sink (outbox); raw: build_sink's connector alone,"
        " sink.send over sink.batch_size(n); push/raw: the outbox's overhead (time ratio)."
    )
    print(
        "calls: the push's send/read-back calls (raw: send calls); peer calls: requests the"
        " peer received (WSDL included; node-soap: SOAP operations only); 2nd calls: peer"
        " requests of the unchanged second push"
        " (file and SQL targets: sinks built), worst of the runs."
    )
    _print_soap_modes(report)
    print(
        f"sage_x3 pushes {X3_RECORDS:,} records (one save call each), the others {RECORDS:,};"
        f" best of {report['attempts']} interleaved rounds. Figures: {report.get('written_to')}"
    )


def _print_soap_modes(report: dict) -> None:
    """The two SOAP peers side by side: per record on node-soap, batch on the first peer."""
    per_record = report["results"].get("soap_node_per_record")
    batch = report["results"].get("soap_batch")
    if not per_record or "vs_soap_batch" not in per_record:
        return
    node, first = per_record["push"], batch["push"]
    rerun = per_record["rerun"]
    print(
        f"soap_node_per_record: {node['records']:,} commitments to the works-order ERP"
        f" (node-soap), one EnregistrerEngagement each: {node['seconds']:.2f} s wall,"
        f" {node['peer_calls']:,} calls at the peer, {node['writes']:,} writes"
        f" (raw connector {per_record['raw']['seconds']:.2f} s); beside soap_batch on the first"
        f" peer in this run: {first['seconds']:.2f} s, {first['peer_calls']:,} peer requests"
        f" → per record takes {per_record['vs_soap_batch']['seconds']:.1f}x the time and"
        f" {per_record['vs_soap_batch']['peer_calls']:.0f}x the peer requests; rerun with"
        f" nothing changed: {rerun['max_peer_calls']} calls (target 0), {rerun['seconds']:.2f} s;"
        " bound"
        f" {per_record['max_seconds']:g} s for the per-record push (a sanity bound)."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", action="append", choices=sorted(BY_NAME), help="repeatable")
    parser.add_argument("--attempts", type=int, default=ATTEMPTS)
    args = parser.parse_args()
    report = run_all(args.kind, args.attempts)
    print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
