"""Push records to a landlord ERP's SOAP import operations: `SoapSink` (kind `soap`).

The sink speaks the contract of `connectors.delivery` through the hardened zeep client of
`connectors.soap.client` (same settings, guarded transport, timeouts and fault classes).

Two ways an ERP takes records, chosen from the WSDL (or forced with `mode`):

- `batch`: the operation's input is one list (`Commitments.Commitment+`): `send` makes one call
  per batch, and reads one result per item (`Results.Result*`), matched by reference;
- `per_record`: the input is the record itself (`SubmitCompletionReport(Reference, …)`): one
  call per record; a SOAP `Client.*` fault or values the WSDL refuses concern that record
  only: it is `dead` with the fault's message, the others go on.

Every item carries the record's idempotency key (`idempotency_field`) and its reference
(`reference_field`, the record's key unless its fields hold one). A result whose status is in
`results.accepted` is `sent` (peer id from `results.id`); any other status is `dead` with the
ERP's own message. A timeout, a refused or cut connection, HTTP 5xx/429 without a SOAP fault,
or a SOAP fault whose code is listed as transient (`retriable_faults`, the datafix's
`transient_faults`; `Server.Busy` … by default) of the whole call is transient, as for a SOAP
source (`connectors.soap.client.classify_error`); once the client's own retries (`retry`) are
used up, it raises `RetriableError`: the outbox then calls
`read_back`, which asks the `read_back` operation what the ERP holds and keeps the records whose
held idempotency key is this record's. Retrying inside the sink is safe only because the ERP
deduplicates on that key; without a `read_back` operation, `read_back` knows nothing (`{}`) and
everything in doubt is resent, which again only an idempotent peer makes harmless.

Values: `None` fields are left out; `amount_fields` holding int cents travel as exact decimal
text (`12345` → `"123.45"`); dates, date-times, booleans and ints are serialised by zeep from
the WSDL's types. Nothing connects (not even the WSDL download) before the first `send` or
`read_back`. No dagster import.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import requests
import zeep.exceptions as zeep_errors
from lxml import etree
from zeep.proxy import ServiceProxy
from zeep.xsd import ComplexType

from connectors.delivery import BatchedSink, Delivered, FieldValue, OutgoingRecord
from connectors.errors import ConfigError, PermanentError
from connectors.retry import RetryPolicy, with_retries
from connectors.soap.client import (
    classify_error,
    complex_type_of,
    fault_code,
    make_client,
    masked_location,
    response_data,
    response_type_of,
    transient_fault,
    value_at_path,
)
from connectors.soap.models import RETRIABLE_FAULT_CODES, SOAP_RETRY

__all__ = ["ReadBack", "Results", "SoapSink", "cents_text", "list_path"]

Mode = Literal["auto", "batch", "per_record"]


def cents_text(cents: int) -> str:
    """Integer cents as exact decimal text: `12345` → `"123.45"`, `-5` → `"-0.05"`."""
    if isinstance(cents, bool) or not isinstance(cents, int):
        raise TypeError(f"an amount in cents must be an int, not {cents!r}")
    sign = "-" if cents < 0 else ""
    units, rest = divmod(abs(cents), 100)
    return f"{sign}{units}.{rest:02d}"


def list_path(xsd_type: Any) -> tuple[str, ...] | None:
    """The path to the one repeated element a type wraps: `("Commitments", "Commitment")` for
    `<Commitments><Commitment/>…</Commitments>`, `("items",)` for a repeated `items`; None when
    the type is not such a list (a record's own fields)."""
    complex_type = complex_type_of(xsd_type)
    if complex_type is None or complex_type.attributes or len(complex_type.elements) != 1:
        return None
    name, element = complex_type.elements[0]
    if getattr(element, "max_occurs", 1) != 1:
        return (name,)
    inner = complex_type_of(getattr(element, "type", None))
    if inner is not None and not inner.attributes and len(inner.elements) == 1:
        inner_name, inner_element = inner.elements[0]
        if getattr(inner_element, "max_occurs", 1) != 1:
            return (name, inner_name)
    return None


def _nest(path: Sequence[str], values: list[Any]) -> dict[str, Any]:
    """`{"Commitments": {"Commitment": values}}` for `("Commitments", "Commitment")`."""
    nested: Any = values
    for name in reversed(path[1:]):
        nested = {name: nested}
    return {path[0]: nested}


def _one_line(text: object, limit: int = 300) -> str:
    return " ".join(str(text or "").split())[:limit]


class _RecordRefused(Exception):
    """One record of a one-record call refused for good (client fault, values the WSDL
    refuses): that record is dead, the others go on."""


class _BatchInvalid(Exception):
    """The values of some item in a batch do not fit the WSDL."""


@dataclass(frozen=True)
class Results:
    """Where a batch operation's answer says what became of each record.

    `path`: the result list in the answer (`Results.Result`, `Result`; "" for the answer
    itself), found from the WSDL when None; `reference`, `status`, `id`, `message`: a result's
    fields naming the record, its outcome, the ERP's id and the ERP's message; `accepted`: the
    status values meaning "recorded".
    """

    path: str | None = None
    reference: str = "Reference"
    status: str = "Status"
    id: str = "ErpId"
    message: str = "Message"
    accepted: frozenset[str] = field(default_factory=lambda: frozenset({"ACCEPTED"}))


@dataclass(frozen=True)
class ReadBack:
    """The operation telling what the ERP holds (`GetCommitments`, given a list of
    references), the record list in its answer (`path`, found from the WSDL when None), and
    the held records' fields with the ERP's `id` and the `idempotency_key` it holds (a held
    record names its reference in the field `Results.reference` names)."""

    operation: str
    path: str | None = None
    id: str = "ErpId"
    idempotency_key: str = "IdempotencyKey"


class SoapSink(BatchedSink):
    """Delivers records to one SOAP import operation of a landlord ERP (module docstring).

    Args:
        name: the sink's name in the landlord's datafix.
        wsdl: the service's WSDL, a file path or an http(s) URL.
        operation: the import operation (`SubmitCommitments`, `SubmitCompletionReport`).
        mode: `batch`, `per_record`, or `auto` (from the operation's input in the WSDL).
        idempotency_field / reference_field: the item fields holding the record's
            idempotency key and reference.
        results: where a batch answer says what became of each record (`Results`).
        read_back: the operation telling what the ERP holds (`ReadBack`); None: none.
        amount_fields: fields whose int values are cents, sent as decimal text.
        max_batch: the most records per `send` (and per read-back call).
        address: the endpoint to call instead of the WSDL's `soap:address`.
        timeout / operation_timeout: seconds for the WSDL load / for each call.
        auth: (user, password) for HTTP Basic authentication.
        retry: retries of a transient fault inside one call (`SOAP_RETRY` by default).
        session: a requests session (TLS settings …).
    """

    kind = "soap"

    def __init__(
        self,
        name: str,
        *,
        wsdl: str,
        operation: str,
        mode: Mode = "auto",
        idempotency_field: str = "IdempotencyKey",
        reference_field: str = "Reference",
        results: Results = Results(),
        read_back: ReadBack | None = None,
        amount_fields: Collection[str] = (),
        max_batch: int = 100,
        address: str | None = None,
        timeout: float = 30,
        operation_timeout: float = 60,
        auth: tuple[str, str] | None = None,
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
        retriable_faults: Collection[str] = RETRIABLE_FAULT_CODES,
    ) -> None:
        if mode not in ("auto", "batch", "per_record"):
            raise ConfigError(
                f"sink {name}: mode `{mode}` is unknown — use auto, batch or per_record"
            )
        if max_batch < 1:
            raise ConfigError(f"sink {name}: max_batch must be at least 1 (got {max_batch})")
        self.name = name
        self.wsdl = wsdl
        self.operation = operation
        self.mode: Mode = mode
        self.idempotency_field = idempotency_field
        self.reference_field = reference_field
        self.results = results
        self.read_back_call = read_back
        self.amount_fields = frozenset(amount_fields)
        self.max_batch = max_batch
        self.address = address
        self.timeout = timeout
        self.operation_timeout = operation_timeout
        self.auth = auth
        self.retry = retry or SOAP_RETRY
        self.retriable_faults = frozenset(retriable_faults)
        self.calls: Counter[str] = Counter()  # operation calls made, by operation
        self._hold_session(session, auth)
        self._services: dict[str, ServiceProxy] = {}
        self._input_list: tuple[str, ...] | None = None
        self._read_input: tuple[str, ...] | None = None
        self._connected = False
        self._origin = f"{masked_location(wsdl)} {operation}"

    # the contract ---------------------------------------------------------------------------
    def send(self, records: Sequence[OutgoingRecord]) -> list[Delivered]:
        if not records:
            return []
        self._connect()
        if self.mode == "batch":  # never more than max_batch items in one call
            return [
                delivered
                for start in range(0, len(records), self.max_batch)
                for delivered in self._send_batch(records[start : start + self.max_batch])
            ]
        return [self._send_one(record) for record in records]

    def read_back(self, records: Sequence[OutgoingRecord]) -> dict[str, str]:
        call = self.read_back_call
        if not records or call is None:
            return {}
        self._connect()
        operation = call.operation
        assert self._read_input is not None
        path = call.path or ".".join(self._answer_list(operation))
        by_reference = {self._reference(record): record for record in records}
        references = list(by_reference)
        found: dict[str, str] = {}
        for start in range(0, len(references), self.max_batch):
            chunk = references[start : start + self.max_batch]
            answer = self._call(operation, _nest(self._read_input, chunk), single_record=False)
            for held in self._records_at(operation, answer, path):
                record = by_reference.get(str(held.get(self.results.reference) or ""))
                if record is None:
                    continue
                if str(held.get(call.idempotency_key) or "") == record.idempotency_key:
                    found[record.key] = str(held.get(call.id) or "")
        return found

    def close(self) -> None:
        self._services.clear()
        super().close()

    # connecting -----------------------------------------------------------------------------
    def _connect(self) -> None:
        self._check_open()
        if self._connected:
            return
        client = make_client(
            self.wsdl,
            timeout=self.timeout,
            operation_timeout=self.operation_timeout,
            session=self._http_session(),
            retry=self.retry,
        )
        call = self.read_back_call
        wanted = [self.operation, *([call.operation] if call is not None else [])]
        ports = [
            port for service in client.wsdl.services.values() for port in service.ports.values()
        ]
        for operation in wanted:
            port = next((p for p in ports if operation in p.binding._operations), None)
            if port is None:
                known = sorted({name for p in ports for name in p.binding._operations})
                raise ConfigError(
                    f"{self._origin}: the WSDL has no operation `{operation}` (there:"
                    f" {', '.join(known)}) — fix the sink's operation names in the datafix"
                )
            address = self.address or port.binding_options["address"]
            self._services[operation] = client.create_service(port.binding.name.text, address)
        shape = list_path(self._input_type(self.operation))
        if self.mode == "auto":
            self.mode = "batch" if shape is not None else "per_record"
        if self.mode == "batch":
            if shape is None:
                raise ConfigError(
                    f"{self._origin}: mode batch, but the operation's input is not one list of"
                    " items — use mode per_record"
                )
            self._input_list = shape
        if call is not None:
            self._read_input = list_path(self._input_type(call.operation))
            if self._read_input is None:
                raise ConfigError(
                    f"{masked_location(self.wsdl)} {call.operation}: the read-back"
                    " operation does not take one list of references — check the datafix"
                )
        self._connected = True

    def _input_type(self, operation: str) -> ComplexType | None:
        binding = self._services[operation]._binding
        return complex_type_of(getattr(binding._operations[operation].input.body, "type", None))

    def _answer_list(self, operation: str) -> tuple[str, ...]:
        service = self._services[operation]
        shape = list_path(response_type_of(service, operation))
        if shape is None:
            raise ConfigError(
                f"{masked_location(self.wsdl)} {operation}: cannot tell where the answer's"
                " records are — set the results / read-back path in the datafix"
            )
        return shape

    # calling --------------------------------------------------------------------------------
    def _call(self, operation: str, arguments: Mapping[str, Any], *, single_record: bool) -> Any:
        service = self._services[operation]
        method = getattr(service, operation)
        transport = service._client.transport
        where = f"{masked_location(self.wsdl)} {operation}"

        def once() -> Any:
            self.calls[operation] += 1
            try:
                return method(**arguments)
            except zeep_errors.Fault as fault:
                transient = transient_fault(fault, self.retriable_faults)
                if single_record and not transient and fault_code(fault.code).startswith("Client"):
                    raise _RecordRefused(_one_line(fault.message)) from None
                raise self._classified(fault, where, transport) from None
            except (zeep_errors.ValidationError, TypeError) as error:
                if single_record:
                    raise _RecordRefused(
                        f"the values do not fit the WSDL ({_one_line(error)})"
                    ) from None
                if operation == self.operation and self.mode == "batch":
                    raise _BatchInvalid from None
                raise self._classified(error, where, transport) from None
            except Exception as error:
                raise self._classified(error, where, transport) from None

        return with_retries(once, self.retry)

    def _classified(self, error: BaseException, where: str, transport: Any) -> Exception:
        return classify_error(
            error,
            where,
            status=getattr(transport, "last_status", None),
            retriable_faults=self.retriable_faults,
            operation_timeout=self.operation_timeout,
        )

    def _records_at(self, operation: str, answer: Any, path: str) -> list[Mapping[str, Any]]:
        service = self._services[operation]
        data = response_data(answer, response_type_of(service, operation))
        where = f"{masked_location(self.wsdl)} {operation}"
        found = data if not path else value_at_path(data, path, where, "results path")
        if found is None:
            return []
        return found if isinstance(found, list) else [found]

    # items and results ----------------------------------------------------------------------
    def _reference(self, record: OutgoingRecord) -> str:
        value = record.fields.get(self.reference_field)
        return record.key if value is None else str(value)

    def _item(self, record: OutgoingRecord) -> dict[str, Any]:
        item: dict[str, Any] = {}
        for name, value in record.fields.items():
            if value is None:
                continue
            item[name] = self._value(name, value)
        item[self.reference_field] = self._reference(record)
        item[self.idempotency_field] = record.idempotency_key
        return item

    def _value(self, name: str, value: FieldValue) -> Any:
        if name in self.amount_fields and isinstance(value, int) and not isinstance(value, bool):
            return cents_text(value)
        return value

    def _delivered(self, record: OutgoingRecord, result: Mapping[str, Any] | None) -> Delivered:
        if result is None:
            return Delivered(
                record.key,
                "retry",
                message=f"{self.operation}: the ERP gave no result for {self._reference(record)}",
            )
        status = str(result.get(self.results.status) or "")
        peer_id = result.get(self.results.id)
        message = _one_line(result.get(self.results.message), 1000)
        if status in self.results.accepted:
            return Delivered(
                record.key,
                "sent",
                peer_id=None if peer_id in (None, "") else str(peer_id),
                message=message,
                details={"status": status},
            )
        return Delivered(
            record.key,
            "dead",
            peer_id=None if peer_id in (None, "") else str(peer_id),
            message=message or f"{self.operation}: the ERP answered status {status or '(none)'}",
            details={"status": status},
        )

    def _send_one(self, record: OutgoingRecord) -> Delivered:
        try:
            answer = self._call(self.operation, self._item(record), single_record=True)
        except _RecordRefused as refused:
            return Delivered(record.key, "dead", message=f"{self.operation}: {refused}")
        path = self.results.path
        if path is None:
            path = self._single_result_path()
        results = self._records_at(self.operation, answer, path)
        return self._delivered(record, results[0] if results else None)

    def _single_result_path(self) -> str:
        response = response_type_of(self._services[self.operation], self.operation)
        names = [name for name, _ in response.elements] if response is not None else []
        if self.results.status in names or len(names) != 1:
            return ""
        return names[0]

    def _send_batch(self, records: Sequence[OutgoingRecord]) -> list[Delivered]:
        assert self._input_list is not None
        items = [self._item(record) for record in records]
        try:
            answer = self._call(self.operation, _nest(self._input_list, items), single_record=False)
        except _BatchInvalid:
            return self._send_valid_part(records, items)
        path = self.results.path
        if path is None:
            path = ".".join(self._answer_list(self.operation))
        results: dict[str, Mapping[str, Any]] = {}
        for result in self._records_at(self.operation, answer, path):
            results.setdefault(str(result.get(self.results.reference) or ""), result)
        return [self._delivered(record, results.get(self._reference(record))) for record in records]

    def _send_valid_part(
        self, records: Sequence[OutgoingRecord], items: list[dict[str, Any]]
    ) -> list[Delivered]:
        """A batch whose values the WSDL refuses: the items at fault are dead, the rest is
        sent again without them."""
        assert self._input_list is not None
        element = self._input_type(self.operation)
        for name in self._input_list:
            found = dict(element.elements)[name] if element is not None else None
            element_type = getattr(found, "type", None)
            element = complex_type_of(element_type)
        refused: dict[str, str] = {}
        for record, item in zip(records, items, strict=True):
            try:
                assert element is not None
                element.render(etree.Element("probe"), element(**item))
            except (zeep_errors.ValidationError, TypeError) as error:
                refused[record.key] = f"the values do not fit the WSDL ({_one_line(error)})"
        if not refused:  # the WSDL refused the call, not one item: the datafix is wrong
            raise PermanentError(
                f"{masked_location(self.wsdl)} {self.operation}: the batch does not fit the"
                " WSDL, though each item does — check the sink's settings"
            )
        rest = [record for record in records if record.key not in refused]
        sent = {delivered.key: delivered for delivered in self._send_batch(rest)} if rest else {}
        return [
            sent[record.key]
            if record.key in sent
            else Delivered(record.key, "dead", message=f"{self.operation}: {refused[record.key]}")
            for record in records
        ]
