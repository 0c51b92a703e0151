"""A landlord ERP's SOAP web service, served locally for the tests and the demo.

The service is described by the static document/literal WSDL `wsdl/landlord_erp.wsdl` (read
it: it documents the operations, the two paging schemes and the fault codes). The peer serves
it at `/wsdl` (its `soap:address` rewritten to the peer's own `/soap` URL) and answers the
operations at `/soap`:

- `ListTenants(pageNumber, pageSize, modifiedSince?)`, paged by number, answers
  `tenants.tenant*`, `pageNumber`, `totalCount`;
- `ListLedgerEntries(pageNumber, pageSize, modifiedSince?)`, paged by number, answers
  `ledgerEntries.entry*`, `pageNumber`, `hasMore`;
- `ListWorkOrders(continuationToken?, pageSize, modifiedSince?)`, paged by continuation
  token, answers `workOrders.workOrder*`, `nextContinuationToken?` (absent on the last page).

`modifiedSince` keeps the records whose `modifiedAt` is at or after it (inclusive). Records come
back in the seed's order; `pageNumber` starts at 1; `pageSize` is 1 to `max_page_size`.

Paging switches, as real ERPs behave (attributes, also constructor arguments):

- `page_cap` (None: no cap): a page holds at most that many records whatever `pageSize` asks,
  silently, as a server-side cap does; page N starts at record `(N - 1) × the capped size`
  and a continuation token after the records really sent;
- `total_skew` (0): `totalCount` announces that many records more (or fewer) than there are:
  a peer that lies about its total.

A
wrong argument (page size out of range, page number below 1, an unknown continuation token, a
date that is not ISO) is answered by the fault `soap:Client.InvalidArgument`.

The data is the `seed` given to the constructor: `{"tenants": [...], "ledger_entries": [...],
"work_orders": [...]}`, each record a dict keyed by the WSDL's field names (`tenantRef`,
`monthlyRent` …) holding `str`, `Decimal`, `int`, `bool`, `date`, `datetime` (naive means UTC),
nested dicts for `contact` / `sla`, or None (field left out; `moveOutDate` is sent nil).
`modifiedAt` is required. A key the WSDL does not know is refused at construction.

Fault modes (`set_fault(mode, times=None)`: every operation call, or only the next `times`
calls, after which the peer answers normally again; the WSDL itself is always served):

- `slow`: the right answer after `slow_seconds` (5 s): a client timeout, retriable;
- `http_500`: HTTP 500 with a plain-text body: retriable;
- `http_503`: HTTP 503, `Retry-After: 0`, an HTML body: retriable;
- `http_429`: HTTP 429, `Retry-After: 0`, an empty body: retriable;
- `http_400`: HTTP 400, an empty body: permanent;
- `fault_busy`: SOAP fault `soap:Server.Busy` (HTTP 500): retriable;
- `fault_invalid_argument`: SOAP fault `soap:Client.InvalidArgument` (HTTP 500): permanent;
- `fault_server`: SOAP fault `soap:Server` (HTTP 500), an internal error: permanent unless
  the datafix lists `Server` in `transient_faults`;
- `fault_maintenance`: SOAP fault `soap:Server.Maintenance` (HTTP 500): permanent by default,
  transient for a datafix listing `Server.Maintenance` in `transient_faults`;
- `http_502`: HTTP 502 with an HTML body (a proxy in front of the ERP): retriable;

and `cut_connections(times)` (`SoapPeer`): the next `times` calls are cut in the middle of
the answer, as a connection reset does: retriable.
- `malformed_xml`: HTTP 200, the envelope cut in half: permanent;
- `dtd_billion_laughs`: HTTP 200, the answer with a billion-laughs DTD: to be refused;
- `xxe_file`: HTTP 200, an external entity naming `secret_file`: refused, file never read;
- `xxe_http`: HTTP 200, an external entity at `canary_url`: refused, never contacted;
- `xxe_parameter`: HTTP 200, an external parameter entity at `canary_url`: idem;
- `external_dtd`: HTTP 200, an external DTD at `canary_url`: idem.

Imports (the push side, port `LandlordErpImportPort` of the same WSDL, same `/soap` endpoint):

- `SubmitCommitments(Commitments.Commitment+)`: a batch of commitments (engagements);
  answers `Results.Result*` (`Reference`, `Status` ACCEPTED/REJECTED, `ErpId`, `Message`);
- `SubmitCompletionReport(Reference, IdempotencyKey, CompletedAt, TenantAbsent, Rating?,
  Technician)`: one completion report per call; answers `Result` (a `Rating` outside 1-5 is
  the fault `soap:Client.InvalidArgument`: the whole call refused);
- `GetCommitments(References.Reference*)` / `GetCompletionReports(…)`: what the ERP holds for
  each known reference: current values, the `IdempotencyKey` of its last movement, `ErpId`,
  `MovementCount` (`Commitments.Commitment*` / `Reports.Report*`).

Idempotency, as a real ERP's import module does it: a submission whose `IdempotencyKey` the
ERP has not seen records one *movement* (`movements[kind][reference]`) and sets the record's
current values (`held[kind][reference]`); a key already seen answers the earlier result and
records nothing (`replays[kind]` counts them). A hub that resends with the same key never
duplicates; one that invents a new key per attempt shows duplicate movements
(`duplicate_movements(kind)`). A rejected item records nothing, and its key is not kept (a
resend once the ERP is fixed goes through). Kinds: `commitments`, `completion_reports`.

Test hooks of the imports:

- `peer.poison(reference, message)`: that reference is REJECTED with `message` every time
  (the rest of a batch is accepted); `peer.cure(reference)` lifts it;
- `peer.transient_rate = 0.2` (seeded by `transient_seed`): that share of import calls
  (submissions and read-backs) fails transiently, one of `http_503`, `fault_busy`
  (`soap:Server.Busy`) or `slow` (the call *is* processed, then the answer stalls
  `slow_seconds`, past the client's timeout); `peer.transient_faults` counts them by mode;
- a missing `BudgetLine` is REJECTED with the ERP's message ("Ligne budgétaire obligatoire").

The peer counts what it receives: `calls` (operation calls, faulted or not),
`calls_by_operation` and `wsdl_requests`. `demo_seed()` is a small fixed data set for the
demo; `python -m connectors.sandbox.soap_erp [--fault MODE]` serves it until Ctrl-C.
No dagster import: a plain connector helper.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime as dt
import itertools
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from lxml import etree

from connectors.sandbox.demo_calendar import DemoCalendar
from connectors.sandbox.http import (
    HOSTILE_MODES,
    SOAP_ENV,
    Reply,
    serve_until_interrupted,
    soap_fault_reply,
)
from connectors.sandbox.soap import PushFaultHooks, SoapPeer, TransientFaults

__all__ = [
    "BINDING",
    "ERP_FAULT_MODES",
    "IMPORT_BINDING",
    "NAMESPACE",
    "WSDL_PATH",
    "LandlordErpPeer",
    "Movement",
    "demo_seed",
    "main",
]

WSDL_PATH = Path(__file__).with_name("wsdl") / "landlord_erp.wsdl"
NAMESPACE = "urn:datafix-hub:landlord-erp:v1"
BINDING = f"{{{NAMESPACE}}}LandlordErpSoapBinding"
IMPORT_BINDING = f"{{{NAMESPACE}}}LandlordErpImportSoapBinding"
_PLACEHOLDER_ADDRESS = "http://127.0.0.1:8123/soap"
_XSI = "http://www.w3.org/2001/XMLSchema-instance"

ERP_FAULT_MODES = frozenset(
    {
        "slow",
        "http_500",
        "http_503",
        "http_429",
        "http_400",
        "fault_busy",
        "fault_invalid_argument",
        "fault_server",
        "fault_maintenance",
        "http_502",
        "malformed_xml",
        *HOSTILE_MODES,
    }
)

# field order of each record type, as the WSDL's xsd:sequence declares it (strict clients
# refuse elements out of order); a nested tuple is a nested complex type
_CONTACT = ("email", "phone", "channel")
_SLA = ("gtiHours", "gtrHours")
_TENANT: tuple[tuple[str, tuple[str, ...] | None], ...] = (
    ("tenantRef", None),
    ("lastName", None),
    ("firstName", None),
    ("dwellingRef", None),
    ("moveInDate", None),
    ("moveOutDate", None),
    ("monthlyRent", None),
    ("housingAid", None),
    ("householdSize", None),
    ("contact", _CONTACT),
    ("modifiedAt", None),
)
_LEDGER_ENTRY: tuple[tuple[str, tuple[str, ...] | None], ...] = (
    ("entryId", None),
    ("tenantRef", None),
    ("entryDate", None),
    ("kind", None),
    ("label", None),
    ("amount", None),
    ("sepaReasonCode", None),
    ("modifiedAt", None),
)
_WORK_ORDER: tuple[tuple[str, tuple[str, ...] | None], ...] = (
    ("orderNumber", None),
    ("contractor", None),
    ("dwellingRef", None),
    ("category", None),
    ("committedAmount", None),
    ("status", None),
    ("plannedAt", None),
    ("sla", _SLA),
    ("modifiedAt", None),
)
_NILLABLE = {"moveOutDate"}


@dataclass(frozen=True)
class _Entity:
    seed_key: str
    operation: str
    list_element: str
    item_element: str
    fields: tuple[tuple[str, tuple[str, ...] | None], ...]
    paging: str  # "page_number" | "continuation_token"
    end_marker: str  # "totalCount" | "hasMore" | "nextContinuationToken"


_ENTITIES = {
    entity.operation: entity
    for entity in (
        _Entity(
            "tenants", "ListTenants", "tenants", "tenant", _TENANT, "page_number", "totalCount"
        ),
        _Entity(
            "ledger_entries",
            "ListLedgerEntries",
            "ledgerEntries",
            "entry",
            _LEDGER_ENTRY,
            "page_number",
            "hasMore",
        ),
        _Entity(
            "work_orders",
            "ListWorkOrders",
            "workOrders",
            "workOrder",
            _WORK_ORDER,
            "continuation_token",
            "nextContinuationToken",
        ),
    )
}


# --------------------------------------------------------------------------------------------
# Imports (the push side)


@dataclass(frozen=True)
class Movement:
    """One recorded submission: its sequence number, key and the values it set."""

    number: int
    reference: str
    idempotency_key: str
    values: Mapping[str, str]


@dataclass(frozen=True)
class _ImportKind:
    name: str  # the store's key: `commitments`, `completion_reports`
    submit: str  # the submit operation
    read: str  # the read-back operation
    batch: tuple[str, str] | None  # (list element, item element) of a batch submission
    held: tuple[str, str]  # (list element, item element) of the read-back answer
    fields: tuple[str, ...]  # the submission's fields, in the WSDL's order
    id_prefix: str


_IMPORT_KINDS = (
    _ImportKind(
        "commitments",
        "SubmitCommitments",
        "GetCommitments",
        ("Commitments", "Commitment"),
        ("Commitments", "Commitment"),
        (
            "Reference",
            "IdempotencyKey",
            "Contractor",
            "BudgetLine",
            "AmountExclTaxCents",
            "AmountInclTax",
            "OrderedOn",
            "PlannedEnd",
            "Label",
        ),
        "ENG",
    ),
    _ImportKind(
        "completion_reports",
        "SubmitCompletionReport",
        "GetCompletionReports",
        None,
        ("Reports", "Report"),
        ("Reference", "IdempotencyKey", "CompletedAt", "TenantAbsent", "Rating", "Technician"),
        "PVR",
    ),
)
_SUBMITS = {kind.submit: kind for kind in _IMPORT_KINDS}
_READS = {kind.read: kind for kind in _IMPORT_KINDS}


def _children(node: etree._Element) -> dict[str, str]:
    return {etree.QName(child).localname: (child.text or "") for child in node}


def _named(node: etree._Element, name: str) -> list[etree._Element]:
    return [child for child in node if etree.QName(child).localname == name]


class _InvalidArgument(Exception):
    """A request argument the ERP refuses: answered by soap:Client.InvalidArgument."""


def _as_utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def _parse_datetime(text: str, what: str) -> dt.datetime:
    try:
        return _as_utc(dt.datetime.fromisoformat(text.strip()))
    except ValueError:
        raise _InvalidArgument(f"{what} is not an ISO date-time: {text!r}") from None


def _xml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def _check_record(record: Mapping[str, Any], entity: _Entity, position: int) -> dict[str, Any]:
    known = {name: nested for name, nested in entity.fields}
    for name, value in record.items():
        if name not in known:
            raise ValueError(
                f"seed {entity.seed_key}[{position}]: unknown field {name!r}"
                f" (the WSDL has {', '.join(known)})"
            )
        nested = known[name]
        if nested is not None and value is not None:
            unknown = set(value) - set(nested)
            if unknown:
                raise ValueError(
                    f"seed {entity.seed_key}[{position}].{name}: unknown fields {sorted(unknown)}"
                )
    modified = record.get("modifiedAt")
    if modified is None:
        raise ValueError(f"seed {entity.seed_key}[{position}]: modifiedAt is required")
    if isinstance(modified, str):
        modified = dt.datetime.fromisoformat(modified)
    return {**record, "modifiedAt": _as_utc(modified)}


class LandlordErpPeer(PushFaultHooks, SoapPeer):
    """The landlord ERP web service on 127.0.0.1 (see the module docstring), on `port` (0: one
    the system picks)."""

    wsdl_path = WSDL_PATH
    placeholder_address = _PLACEHOLDER_ADDRESS
    endpoint_path = "/soap"
    fault_modes = ERP_FAULT_MODES
    http_faults: ClassVar[Mapping[str, Reply]] = {
        "http_500": Reply(500, b"Internal Server Error", "text/plain; charset=utf-8"),
        "http_503": Reply(
            503,
            b"<html><body><h1>503 Service Unavailable</h1></body></html>",
            "text/html; charset=utf-8",
            {"Retry-After": "0"},
        ),
        "http_429": Reply(429, b"", "text/plain", {"Retry-After": "0"}),
        "http_400": Reply(400, b"", "text/plain"),
        "http_502": Reply(
            502,
            b"<html><body><h1>502 Bad Gateway</h1></body></html>",
            "text/html; charset=utf-8",
        ),
    }
    envelope_fault_code = "Client.InvalidArgument"

    def __init__(
        self,
        seed: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
        *,
        max_page_size: int = 500,
        page_cap: int | None = None,
        total_skew: int = 0,
        slow_seconds: float = 5.0,
        secret_file: str | Path = "/etc/passwd",
        canary_url: str = "http://127.0.0.1:9",
        port: int = 0,
        transient_seed: int = 0,
    ) -> None:
        seed = seed or {}
        unknown = set(seed) - {entity.seed_key for entity in _ENTITIES.values()}
        if unknown:
            raise ValueError(f"unknown seed entities {sorted(unknown)}")
        self.records: dict[str, list[dict[str, Any]]] = {
            entity.seed_key: [
                _check_record(record, entity, position)
                for position, record in enumerate(seed.get(entity.seed_key, ()))
            ]
            for entity in _ENTITIES.values()
        }
        self.max_page_size = max_page_size
        self.page_cap = page_cap
        self.total_skew = total_skew
        kinds = [kind.name for kind in _IMPORT_KINDS]
        self.held: dict[str, dict[str, dict[str, str]]] = {kind: {} for kind in kinds}
        self.movements: dict[str, dict[str, list[Movement]]] = {kind: {} for kind in kinds}
        self.replays: Counter[str] = Counter()
        self.poisoned: dict[str, str] = {}
        self.transient = TransientFaults(("http_503", "fault_busy", "slow"), seed=transient_seed)
        self._results: dict[tuple[str, str], tuple[str, str, str, str]] = {}
        self._movement_count = 0
        self._store_lock = threading.Lock()
        super().__init__(
            name="sandbox-soap-erp",
            slow_seconds=slow_seconds,
            secret_file=secret_file,
            canary_url=canary_url,
            port=port,
        )

    def duplicate_movements(self, kind: str) -> int:
        """Movements that repeat the values of the same reference's previous movement: what a
        hub inventing a new idempotency key per attempt leaves behind."""
        with self._store_lock:
            return sum(
                1
                for movements in self.movements[kind].values()
                for before, after in itertools.pairwise(movements)
                if before.values == after.values
            )

    def movement_count(self, kind: str) -> int:
        with self._store_lock:
            return sum(len(movements) for movements in self.movements[kind].values())

    # answers -----------------------------------------------------------------------------
    def _answer(self, operation: str, body: etree._Element, mode: str | None) -> bytes | Reply:
        if mode is None and (operation in _SUBMITS or operation in _READS):
            transient = self.transient.draw()
            if transient == "http_503":
                return self.http_faults["http_503"]
            if transient == "fault_busy":
                return soap_fault_reply("Server.Busy", "The ERP is busy; try again in a moment")
            if transient == "slow":
                return self._stalled(operation, body)
        if mode == "fault_busy":
            return soap_fault_reply("Server.Busy", "The ERP is busy; try again in a moment")
        if mode == "fault_invalid_argument":
            return soap_fault_reply("Client.InvalidArgument", f"{operation}: invalid argument")
        if mode == "fault_server":
            return soap_fault_reply("Server", f"{operation}: internal error")
        if mode == "fault_maintenance":
            return soap_fault_reply("Server.Maintenance", "ERP en maintenance, réessayer")
        try:
            if operation in _SUBMITS:
                return self._submit(_SUBMITS[operation], body)
            if operation in _READS:
                return self._read_back(_READS[operation], body)
            return self._page(operation, body)
        except _InvalidArgument as error:
            return soap_fault_reply("Client.InvalidArgument", str(error))

    # imports -----------------------------------------------------------------------------
    def _submit(self, kind: _ImportKind, body: etree._Element) -> bytes:
        if kind.batch is None:
            items = [_children(body)]
        else:
            containers = _named(body, kind.batch[0])
            if len(containers) != 1:
                raise _InvalidArgument(f"{kind.submit}: {kind.batch[0]} is required")
            items = [_children(node) for node in _named(containers[0], kind.batch[1])]
            if not items:
                raise _InvalidArgument(f"{kind.submit}: at least one {kind.batch[1]} is required")
        for item in items:
            self._check_item(kind, item)
        results = [self._record(kind, item) for item in items]
        response = etree.Element(f"{{{NAMESPACE}}}{kind.submit}Response", nsmap={"tns": NAMESPACE})
        parent = response
        if kind.batch is not None:
            parent = etree.SubElement(response, f"{{{NAMESPACE}}}Results")
        for reference, status, erp_id, message in results:
            result = etree.SubElement(parent, f"{{{NAMESPACE}}}Result")
            etree.SubElement(result, f"{{{NAMESPACE}}}Reference").text = reference
            etree.SubElement(result, f"{{{NAMESPACE}}}Status").text = status
            if erp_id:
                etree.SubElement(result, f"{{{NAMESPACE}}}ErpId").text = erp_id
            if message:
                etree.SubElement(result, f"{{{NAMESPACE}}}Message").text = message
        return self._envelope(response)

    @staticmethod
    def _check_item(kind: _ImportKind, item: Mapping[str, str]) -> None:
        """What the ERP refuses as a malformed request (a fault for the whole call)."""
        unknown = sorted(set(item) - set(kind.fields))
        if unknown:
            raise _InvalidArgument(f"{kind.submit}: unknown fields {', '.join(unknown)}")
        if item.get("Rating"):
            try:
                rating = int(item["Rating"])
            except ValueError:
                rating = 0
            if not 1 <= rating <= 5:
                raise _InvalidArgument(f"Rating must be 1 to 5 (got {item['Rating']!r})")

    @staticmethod
    def _rejection(kind: _ImportKind, item: Mapping[str, str]) -> str:
        """The ERP's business reason to reject an item ("" when it is acceptable)."""
        if not item.get("Reference") or not item.get("IdempotencyKey"):
            return "Reference et IdempotencyKey obligatoires"
        if kind.name == "commitments" and not item.get("BudgetLine", "").strip():
            return f"{item['Reference']} : ligne budgétaire obligatoire"
        return ""

    def _record(self, kind: _ImportKind, item: Mapping[str, str]) -> tuple[str, str, str, str]:
        """Record one submission (or answer the earlier result of its key)."""
        reference = item.get("Reference", "")
        key = item.get("IdempotencyKey", "")
        with self._store_lock:
            earlier = self._results.get((kind.name, key))
            if earlier is not None:
                self.replays[kind.name] += 1
                return earlier
            if reference in self.poisoned:
                return (reference, "REJECTED", "", self.poisoned[reference])
            reason = self._rejection(kind, item)
            if reason:
                return (reference, "REJECTED", "", reason)
            held = self.held[kind.name].get(reference)
            movements = self.movements[kind.name].setdefault(reference, [])
            if held is None:
                count = len(self.held[kind.name]) + 1
                erp_id = f"{kind.id_prefix}-{count:06d}"
            else:
                erp_id = held["ErpId"]
            self._movement_count += 1
            values = {name: item[name] for name in kind.fields if name in item}
            del values["IdempotencyKey"]  # kept on the movement, not among its values
            movements.append(Movement(self._movement_count, reference, key, values))
            self.held[kind.name][reference] = {
                **values,
                "IdempotencyKey": key,
                "ErpId": erp_id,
                "MovementCount": str(len(movements)),
            }
            result = (reference, "ACCEPTED", erp_id, "")
            self._results[(kind.name, key)] = result
            return result

    def _read_back(self, kind: _ImportKind, body: etree._Element) -> bytes:
        references = [
            node.text or ""
            for container in _named(body, "References")
            for node in _named(container, "Reference")
        ]
        response = etree.Element(f"{{{NAMESPACE}}}{kind.read}Response", nsmap={"tns": NAMESPACE})
        container = etree.SubElement(response, f"{{{NAMESPACE}}}{kind.held[0]}")
        with self._store_lock:
            found = [
                dict(self.held[kind.name][reference])
                for reference in dict.fromkeys(references)
                if reference in self.held[kind.name]
            ]
        for held in found:
            item = etree.SubElement(container, f"{{{NAMESPACE}}}{kind.held[1]}")
            for name in (*kind.fields, "ErpId", "MovementCount"):
                if name in held:
                    etree.SubElement(item, f"{{{NAMESPACE}}}{name}").text = held[name]
        return self._envelope(response)

    # pages -------------------------------------------------------------------------------
    def _page(self, operation: str, body: etree._Element) -> bytes:
        entity = _ENTITIES.get(operation)
        if entity is None:
            raise _InvalidArgument(f"unknown operation {operation!r}")
        arguments = {etree.QName(child).localname: (child.text or "") for child in body}
        page_size = self._int_argument(arguments, "pageSize")
        if not 1 <= page_size <= self.max_page_size:
            raise _InvalidArgument(f"pageSize must be between 1 and {self.max_page_size}")
        records = self.records[entity.seed_key]
        if arguments.get("modifiedSince"):
            since = _parse_datetime(arguments["modifiedSince"], "modifiedSince")
            records = [record for record in records if record["modifiedAt"] >= since]
        if self.page_cap is not None:
            page_size = min(page_size, self.page_cap)  # silently, as a server-side cap does
        if entity.paging == "page_number":
            page_number = self._int_argument(arguments, "pageNumber")
            if page_number < 1:
                raise _InvalidArgument("pageNumber starts at 1")
            start = (page_number - 1) * page_size
        else:
            start = self._token_offset(arguments.get("continuationToken", ""))
        page = records[start : start + page_size]
        more = start + page_size < len(records)

        response = etree.Element(f"{{{NAMESPACE}}}{operation}Response", nsmap={"tns": NAMESPACE})
        container = etree.SubElement(response, f"{{{NAMESPACE}}}{entity.list_element}")
        for record in page:
            item = etree.SubElement(container, f"{{{NAMESPACE}}}{entity.item_element}")
            self._fill(item, record, entity.fields)
        if entity.paging == "page_number":
            etree.SubElement(response, f"{{{NAMESPACE}}}pageNumber").text = str(page_number)
        if entity.end_marker == "totalCount":
            total = len(records) + self.total_skew
            etree.SubElement(response, f"{{{NAMESPACE}}}totalCount").text = str(total)
        elif entity.end_marker == "hasMore":
            etree.SubElement(response, f"{{{NAMESPACE}}}hasMore").text = _xml_text(more)
        elif more:
            token = etree.SubElement(response, f"{{{NAMESPACE}}}nextContinuationToken")
            token.text = self._token(start + page_size)
        return self._envelope(response)

    @staticmethod
    def _int_argument(arguments: Mapping[str, str], name: str) -> int:
        try:
            return int(arguments[name])
        except KeyError:
            raise _InvalidArgument(f"{name} is required") from None
        except ValueError:
            raise _InvalidArgument(f"{name} must be an integer: {arguments[name]!r}") from None

    @staticmethod
    def _token(offset: int) -> str:
        return base64.urlsafe_b64encode(f"work-orders:{offset}".encode()).decode()

    @staticmethod
    def _token_offset(token: str) -> int:
        if not token:
            return 0
        try:
            prefix, offset = base64.urlsafe_b64decode(token.encode()).decode().split(":")
            if prefix != "work-orders" or int(offset) < 0:
                raise ValueError
            return int(offset)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise _InvalidArgument(f"unknown continuationToken {token!r}") from None

    def _fill(
        self,
        parent: etree._Element,
        record: Mapping[str, Any],
        fields: Sequence[tuple[str, tuple[str, ...] | None]],
    ) -> None:
        for name, nested in fields:
            value = record.get(name)
            if value is None:
                if name in _NILLABLE and name in record:
                    node = etree.SubElement(parent, f"{{{NAMESPACE}}}{name}")
                    node.set(f"{{{_XSI}}}nil", "true")
                continue
            node = etree.SubElement(parent, f"{{{NAMESPACE}}}{name}")
            if nested is None:
                node.text = _xml_text(value)
            else:
                self._fill(node, value, [(child, None) for child in nested])

    @staticmethod
    def _envelope(payload: etree._Element) -> bytes:
        envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV})
        etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body").append(payload)
        return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")


# --------------------------------------------------------------------------------------------
# Demo data and a standalone run

_LAST_NAMES = ("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand")
_FIRST_NAMES = ("Léa", "Hugo", "Chloé", "Louis", "Manon", "Gabriel", "Inès", "Jules")
_CATEGORIES = ("dépannage", "recherche de fuite", "travaux programmés")
_STATUSES = ("received", "scheduled", "done", "invoiced")


# The ERP's movement codes (`kind` of a ledger entry): rent call, rejected direct debit,
# housing aid paid by the CAF; `PEN` (late-payment penalty) is a code the demo datafix does not
# map, so the entry carrying it is quarantined
_ENTRY_CODES = {"rent_call": "QUI", "rejected_debit": "REJ", "housing_aid": "CAF"}
# deliberately bad records, one defect each, so the demo shows quarantine at work
_BAD_CHANNEL_TENANT = 7  # contact channel `fax`: not a channel the hub knows
_NO_TENANT_ENTRY = 20  # posted to no tenant account (blank tenantRef)
_UNKNOWN_CODE_ENTRY = 25  # movement code `PEN`


def demo_seed(calendar: DemoCalendar | None = None) -> dict[str, list[dict[str, Any]]]:
    """A small fixed seed (invented people): 12 tenants, 36 ledger entries, 9 work orders.

    With a `calendar` (the sandbox's: `datafix demo`), every date and label is moved to its
    demo day like the demo files' (`connectors.sandbox.demo_calendar`); without, as written.

    Identical from one call to the next; `modifiedAt` spreads over March 2026 so incremental
    pulls have something to skip. Three records are deliberately bad, for the demo's
    quarantine: tenant `LOC-00007` has the contact channel `fax`, entry `ECR-000020` has no
    tenant reference and entry `ECR-000025` the movement code `PEN`.
    """
    start = dt.datetime(2026, 3, 1, 7, 0, tzinfo=dt.UTC)
    tenants = [
        {
            "tenantRef": f"LOC-{number:05d}",
            "lastName": _LAST_NAMES[number % len(_LAST_NAMES)],
            "firstName": _FIRST_NAMES[number % len(_FIRST_NAMES)],
            "dwellingRef": f"LGT-{100 + number}",
            "moveInDate": dt.date(2015 + number % 10, 1 + number % 12, 1),
            "moveOutDate": dt.date(2026, 6, 30) if number == 5 else None,
            "monthlyRent": Decimal("389.40") + Decimal(number * 13) + Decimal("0.05"),
            "housingAid": number % 3 == 0,
            "householdSize": 1 + number % 5,
            "contact": {
                "email": f"locataire{number}@exemple.fr",
                "phone": f"06 12 34 56 {number:02d}",
                "channel": "fax"
                if number == _BAD_CHANNEL_TENANT
                else ("sms", "email", "letter")[number % 3],
            },
            "modifiedAt": start + dt.timedelta(days=number, hours=number),
        }
        for number in range(1, 13)
    ]
    entries = []
    for number in range(1, 37):
        tenant = tenants[(number - 1) % len(tenants)]
        if number % 11 == 0:  # a rejected direct debit: the rent is owed again
            kind, label, amount, reason = "rejected_debit", "Rejet prélèvement SEPA", None, "AM04"
        elif number % 3 == 0:
            kind, label, amount = "housing_aid", "Paiement CAF (APL)", Decimal("-212.37")
            reason = None
        else:
            kind, label, amount, reason = "rent_call", "Avis d'échéance mars 2026", None, None
        entries.append(
            {
                "entryId": f"ECR-{number:06d}",
                "tenantRef": "" if number == _NO_TENANT_ENTRY else tenant["tenantRef"],
                "entryDate": dt.date(2026, 3, 1 + number % 25),
                "kind": "PEN" if number == _UNKNOWN_CODE_ENTRY else _ENTRY_CODES[kind],
                "label": label,
                "amount": tenant["monthlyRent"] if amount is None else amount,
                "sepaReasonCode": reason,
                "modifiedAt": start + dt.timedelta(hours=number * 17),
            }
        )
    orders = [
        {
            "orderNumber": f"BT{345670 + number}",
            "contractor": ("Plomberie du Centre", "Élec Services", "Multi-Travaux 44")[number % 3],
            "dwellingRef": f"LGT-{100 + number}",
            "category": _CATEGORIES[number % len(_CATEGORIES)],
            "committedAmount": Decimal("180.00") * number + Decimal("0.50"),
            "status": _STATUSES[number % len(_STATUSES)],
            "plannedAt": start + dt.timedelta(days=number + 2, hours=9),
            "sla": {"gtiHours": 4 if number % 3 == 0 else 24, "gtrHours": 72},
            "modifiedAt": start + dt.timedelta(days=2 * number),
        }
        for number in range(1, 10)
    ]
    seed = {"tenants": tenants, "ledger_entries": entries, "work_orders": orders}
    if calendar is None:
        return seed
    for entry in entries:
        entry["label"] = calendar.label(entry["label"])
    return calendar.value(seed)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the demo ERP until interrupted: `python -m connectors.sandbox.soap_erp`."""
    parser = argparse.ArgumentParser(description="Serve the sandbox landlord ERP (SOAP).")
    parser.add_argument("--fault", choices=sorted(ERP_FAULT_MODES), help="answer with a fault")
    options = parser.parse_args(argv)
    with LandlordErpPeer(demo_seed()) as peer:
        peer.set_fault(options.fault)
        serve_until_interrupted(f"landlord ERP WSDL: {peer.wsdl_url} (Ctrl-C to stop)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
