"""Push records to a landlord ERP's SOAP import operations: `SoapSink` (kind `soap`).

The sink speaks the contract of `connectors.delivery` through the hardened zeep client of
`connectors.soap.client` (same settings, guarded transport, timeouts and fault classes).

Two ways an ERP takes records, chosen from the WSDL (or forced with `mode`):

- `batch`: the operation's input is one list (`Commitments.Commitment+`): `send` makes one call
  per batch, and reads one result per item (`Results.Result*`), matched by reference;
- `per_record`: the input is the record itself (`SubmitCompletionReport(Reference, …)`, or one
  nested element, `EnregistrerEngagement(engagement {numeroBon, montant {valeur, devise} …})`):
  one call per record; a SOAP `Client.*` fault or values the WSDL refuses concern that record
  only: it is `dead` with the fault's message, the others go on.

In both modes a record holding a character XML cannot carry (a control character) is `dead`
with a message naming the field, never sent nor looked for by `read_back`.

**Requests from the WSDL's types.** A record's fields are keyed by *target paths*, dotted from
the operation's input (per record) or from one list item (batch): `engagement.montant.valeur`,
`engagement.lignes.ligne.libelle` (a repeated element: a list value makes one item per value,
lists under the same element zipped by position; `ligne[1].libelle` names one item), an
attribute by its name (or `@name`). Each path is resolved against zeep's type introspection of
the operation's input (`_Shape`) when the sink connects — before anything is sent — and a path
the WSDL does not have is a `ConfigError` naming it with a did-you-mean, for the whole run
(never a dead letter per record); so is a required element left unmapped when the sink knows
its targets (`targets`, the datafix's `fields`). Only the mapped elements are sent, plus the
reference and the idempotency key when the sink places them. Wrapped and bare document/literal
and RPC styles all come down to zeep's input body type, whose children are the call's
arguments.

**Idempotency the way the target does it.** Either every item carries the record's idempotency
key (`idempotency_field`, a dotted path), or the target is idempotent on its own business key
(`natural_key`, a target path: no idempotency element is sent; the record's reference is the
value at that path). The reference (`reference_field`, the record's key unless its fields hold
one) names a record in results and read-backs.

**Results by path.** `results.reference`, `status`, `id` and `message` are dotted paths in one
result (the answer itself or its one child per record; one list item per record in batch);
`results.statuses` maps the target's status codes to `sent`, `retry` or `dead` (`accepted`
lists more `sent` ones; any other status is `dead` with the ERP's own message);
`results.faults` maps SOAP fault codes to an outcome for every record of the call.

**Read-back** (`read_back`), used for records in doubt after a crash or a lost answer: a
list/search operation given a list of references (`GetCommitments`), or a lookup by reference
(`argument`: the input path taking one reference, e.g. `LireEngagement(numeroBon)`; "not found"
is a fault code, `not_found_fault`, or an empty answer, `not_found_empty`). A held record is
this very version when it holds this record's idempotency key (`idempotency_key`, when the sink
sends one), else when it holds every value the request would send (compared as values:
`12.50` is `12.5`). Without a `read_back` operation, `read_back` knows nothing (`{}`) and
everything in doubt is resent, which only an idempotent peer makes harmless.

A timeout, a refused or cut connection, HTTP 5xx/429 without a SOAP fault, or a SOAP fault
whose code is listed as transient (`retriable_faults`, the datafix's `transient_faults`;
`Server.Busy` … by default) of the whole call is transient, as for a SOAP source
(`connectors.soap.client.classify_error`); once the client's own retries (`retry`) are used
up, it raises `RetriableError` and the outbox reads back before resending.

Values: `None` fields are left out; `amount_fields` holding int cents travel as exact decimal
text (`12345` → `"123.45"`); dates, date-times, booleans and ints are serialised by zeep from
the WSDL's types. Nothing connects (not even the WSDL download) before the first `send`,
`read_back`, `prepare` or `check`. No dagster import.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import requests
import zeep.exceptions as zeep_errors
from lxml import etree
from zeep.proxy import ServiceProxy
from zeep.xsd import Attribute, ComplexType

from connectors.delivery import (
    BatchedSink,
    Delivered,
    FieldValue,
    Outcome,
    OutgoingRecord,
    unsafe_text,
)
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
from connectors.soap.wsdl import SettingProblems

__all__ = ["ReadBack", "Results", "SoapSink", "cents_text", "list_path", "masked_envelope"]

Mode = Literal["auto", "batch", "per_record"]
OUTCOMES: tuple[Outcome, ...] = ("sent", "retry", "dead")
Problem = tuple[tuple[str | int, ...], str]  # (the sink setting at fault, what is wrong)


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


def _nest(path: Sequence[str], values: Any) -> dict[str, Any]:
    """`{"Commitments": {"Commitment": values}}` for `("Commitments", "Commitment")`."""
    nested: Any = values
    for name in reversed(path[1:]):
        nested = {name: nested}
    return {path[0]: nested}


def _one_line(text: object, limit: int = 300) -> str:
    return " ".join(str(text or "").split())[:limit]


def _did_you_mean(name: str, choices: Iterable[str]) -> str:
    options = list(choices)
    by_lower = {option.lower(): option for option in options}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    if close:
        return f"did you mean `{by_lower[close[0]]}`?"
    return f"there: {', '.join(options)}" if options else "nothing is there"


def _setting_text(setting: tuple[str | int, ...]) -> str:
    """`results.status: ` (a mapped field names its own path in the message: "")."""
    return (
        ""
        if setting[:1] == ("fields",) and len(setting) > 1
        else f"{'.'.join(map(str, setting))}: "
    )


# --- target paths against the WSDL's types -------------------------------------------------

_SEGMENT = re.compile(r"^(@?)([^.\[\]@\s]+)(?:\[(\d+)\])?$")


@dataclass(frozen=True)
class _Step:
    """One segment of a resolved path: the element (or attribute) name zeep takes, whether
    it repeats, and the item a `[n]` names."""

    name: str
    repeated: bool = False
    index: int | None = None


@dataclass(frozen=True)
class _Child:
    name: str
    node: Any  # zeep Element or Attribute
    attribute: bool
    repeated: bool
    required: bool
    complex_type: ComplexType | None


def _repeats(element: Any) -> bool:
    most = getattr(element, "max_occurs", 1)
    return most == "unbounded" or (isinstance(most, int) and most > 1)


def _children(xsd_type: ComplexType | None) -> dict[str, _Child]:
    """A complex type's elements (those of its sequences, choices and groups) and attributes;
    an element inside a choice or an optional group is never required."""
    found: dict[str, _Child] = {}
    if xsd_type is None:
        return found

    def walk(items: Iterable[tuple[Any, Any]], optional: bool) -> None:
        for name, item in items:
            if hasattr(item, "elements") and not hasattr(item, "type"):  # sequence, choice …
                inner = optional or type(item).__name__ == "Choice"
                walk(item.elements, inner or getattr(item, "min_occurs", 1) == 0)
                continue
            key = getattr(item, "attr_name", None) or name
            found[key] = _Child(
                key,
                item,
                False,
                _repeats(item),
                not optional and getattr(item, "min_occurs", 1) >= 1,
                complex_type_of(getattr(item, "type", None)),
            )

    walk(xsd_type.elements_nested, False)
    for name, attribute in xsd_type.attributes:
        if isinstance(attribute, Attribute) or name:
            found[name] = _Child(
                name, attribute, True, False, bool(getattr(attribute, "required", False)), None
            )
    return found


class _Shape:
    """An operation's input (or one batch item) as the WSDL types it: resolves target paths
    (`engagement.montant.valeur`, `lignes.ligne[0].libelle`, `montant.@devise`) and builds the
    nested values zeep takes from `{path: value}`."""

    def __init__(self, xsd_type: ComplexType | None, where: str) -> None:
        self.type = xsd_type
        self.where = where
        self._resolved: dict[str, tuple[_Step, ...]] = {}

    def problem(self, path: str, *, leaf: bool = True) -> str | None:
        """What is wrong with `path` (with a did-you-mean), None when the WSDL has it."""
        try:
            self._walk(path, leaf=leaf)
        except ConfigError as error:
            return str(error)
        return None

    def resolve(self, path: str) -> tuple[_Step, ...]:
        """The steps of a path to a value; ConfigError when the WSDL has no such element."""
        steps = self._resolved.get(path)
        if steps is None:
            steps = self._resolved[path] = self._walk(path, leaf=True)
        return steps

    def _walk(self, path: str, *, leaf: bool) -> tuple[_Step, ...]:
        current = self.type
        steps: list[_Step] = []
        walked: list[str] = []
        for segment in path.split("."):
            match = _SEGMENT.match(segment)
            place = f"`{'.'.join(walked)}`" if walked else "the request"
            if match is None:
                raise ConfigError(f"`{path}`: `{segment}` is not an element name")
            at, name, index = match.groups()
            if current is None:
                raise ConfigError(
                    f"`{path}` is not in the WSDL: {place} holds a value, no elements"
                )
            children = _children(current)
            child = children.get(name)
            if child is None or (at and not child.attribute):
                hint = _did_you_mean(name, children)
                suggestion = hint
                if hint.startswith("did you mean `"):
                    close = hint[len("did you mean `") : -2]
                    suggestion = f"did you mean `{'.'.join([*walked, close])}`?"
                raise ConfigError(
                    f"`{path}` is not in the WSDL: {place} has no `{name}` — {suggestion}"
                )
            if index is not None and not child.repeated:
                raise ConfigError(f"`{path}`: `{name}` is not repeated, it takes no [{index}]")
            steps.append(_Step(name, child.repeated, None if index is None else int(index)))
            walked.append(name)
            current = child.complex_type
        if leaf and current is not None:
            inner = _children(current)
            if "_value_1" in inner and not inner["_value_1"].attribute:
                steps.append(_Step("_value_1"))  # simple content with attributes
            else:
                raise ConfigError(
                    f"`{path}` holds elements ({', '.join(inner)}), not a value: map each of"
                    " them (e.g. `" + f"{path}.{next(iter(inner), '…')}`)"
                )
        return tuple(steps)

    def missing_required(self, paths: Collection[str]) -> list[str]:
        """Required elements left out: under the request, or under an element some mapped
        path fills (an optional group left wholly unmapped is not sent at all)."""
        present = set()
        for path in paths:
            names = [step.name for step in self.resolve(path) if step.name != "_value_1"]
            present.update(".".join(names[:end]) for end in range(len(names) + 1))
        missing: list[str] = []

        def visit(xsd_type: ComplexType | None, prefix: str) -> None:
            for name, child in _children(xsd_type).items():
                here = f"{prefix}.{name}" if prefix else name
                if here in present:
                    if child.complex_type is not None:
                        visit(child.complex_type, here)
                elif child.required and name != "_value_1":
                    missing.append(here)

        visit(self.type, "")
        return missing

    def build(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The nested arguments for zeep from `{path: value}` (None values left out)."""
        tree: dict[str, Any] = {}
        for path, value in values.items():
            if value is not None:
                self._place(tree, self.resolve(path), value, path)
        return _finish(tree)

    def _place(self, node: dict[str, Any], steps: Sequence[_Step], value: Any, path: str) -> None:
        step, rest = steps[0], steps[1:]
        if not step.repeated:
            if isinstance(value, list | tuple) and not any(s.repeated for s in rest):
                raise _RecordRefused(f"`{path}` takes one value, not a list")
            if rest:
                self._place(node.setdefault(step.name, {}), rest, value, path)
            else:
                node[step.name] = value
            return
        items = node.setdefault(step.name, _Items())
        if step.index is not None:
            positions = [(step.index, value)]
        elif isinstance(value, list | tuple):
            positions = list(enumerate(value))
        else:
            positions = [(0, value)]
        for position, item in positions:
            if item is None:
                continue
            if rest:
                self._place(items.setdefault(position, {}), rest, item, path)
            else:
                items[position] = item


class _Items(dict):  # type: ignore[type-arg]
    """The items of a repeated element while a request is built, by position."""


def _finish(node: Any) -> Any:
    if isinstance(node, _Items):
        return [_finish(node[position]) for position in sorted(node)]
    if isinstance(node, dict):
        return {name: _finish(value) for name, value in node.items()}
    return node


def _get(data: Any, path: str) -> Any:
    """The value at a dotted path of plain answer data; None where anything is missing."""
    current = data
    for segment in path.split(".") if path else ():
        if isinstance(current, list):
            current = current[0] if len(current) == 1 else None
        if not isinstance(current, Mapping):
            return None
        current = current.get(segment.lstrip("@"))
    return current


def _canonical(value: Any) -> Any:
    """A value as compared with what the ERP holds: numbers as Decimal, dates as ISO text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, int | Decimal):
        return Decimal(value).normalize()
    text = str(value).strip()
    if re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)", text):
        try:
            return Decimal(text).normalize()
        except InvalidOperation:  # pragma: no cover - the pattern admits decimals only
            return text
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}T.+", text):
        try:
            return _canonical(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
        except ValueError:
            return text
    return text


def _covers(sent: Any, held: Any) -> bool:
    """The ERP holds every value of `sent` (the request's nested arguments)."""
    if isinstance(sent, Mapping):
        if not isinstance(held, Mapping):
            return False
        return all(_covers(value, held.get(name)) for name, value in sent.items())
    if isinstance(sent, list):
        items = held if isinstance(held, list) else ([] if held is None else [held])
        return len(items) == len(sent) and all(map(_covers, sent, items))
    if held is None:
        return False
    return bool(_canonical(sent) == _canonical(held))


class _RecordRefused(Exception):
    """One record of a one-record call refused for good (client fault, values the WSDL
    refuses): that record is dead, the others go on."""


class _FaultOutcome(Exception):
    """A fault whose code the datafix maps to an outcome (`results.faults`)."""

    def __init__(self, outcome: Outcome, message: str) -> None:
        super().__init__(message)
        self.outcome: Outcome = outcome
        self.message = message


class _NotFound(Exception):
    """The read-back lookup's "not found" fault."""


class _BatchInvalid(Exception):
    """The values of some item in a batch do not fit the WSDL."""


@dataclass(frozen=True)
class Results:
    """Where the answer says what became of each record.

    `path`: the result (per record) or result list (batch) in the answer (`Results.Result`,
    `resultat`; "" for the answer itself), found from the WSDL when None; `reference`,
    `status`, `id`, `message`: dotted paths in one result naming the record, its outcome, the
    ERP's id and the ERP's message; `accepted`: status values meaning "recorded";
    `statuses`: status value → `sent`, `retry` or `dead` (before `accepted`; any other status
    is dead); `faults`: SOAP fault code → the outcome of every record of the call;
    `checked`: the paths checked against the WSDL when the sink connects (those a datafix
    sets; `status` always).
    """

    path: str | None = None
    reference: str = "Reference"
    status: str = "Status"
    id: str = "ErpId"
    message: str = "Message"
    accepted: frozenset[str] = field(default_factory=lambda: frozenset({"ACCEPTED"}))
    statuses: Mapping[str, Outcome] = field(default_factory=dict)
    faults: Mapping[str, Outcome] = field(default_factory=dict)
    checked: frozenset[str] = frozenset({"status"})

    def outcome(self, status: str) -> Outcome:
        if status in self.statuses:
            return self.statuses[status]
        return "sent" if status in self.accepted else "dead"


@dataclass(frozen=True)
class ReadBack:
    """The operation telling what the ERP holds.

    Two forms: a list/search operation given a list of references (`GetCommitments`; the
    record list in its answer at `path`, found from the WSDL when None; a held record names
    its reference at `Results.reference`), or, with `argument`, a lookup by reference
    (`LireEngagement`, `argument` the input path taking the reference; the held record at
    `path`, "" or None for the answer itself; "not found" is the fault `not_found_fault` or,
    with `not_found_empty`, an empty answer). `id`: the path of the ERP's id in a held record;
    `idempotency_key`: the path of the key it holds (compared when the sink sends one; else
    the held values are compared with the request's).
    """

    operation: str
    path: str | None = None
    id: str = "ErpId"
    idempotency_key: str | None = "IdempotencyKey"
    argument: str | None = None
    not_found_fault: str | None = None
    not_found_empty: bool = False


class SoapSink(BatchedSink):
    """Delivers records to one SOAP import operation of a landlord ERP (module docstring).

    Args:
        name: the sink's name in the landlord's datafix.
        wsdl: the service's WSDL, a file path or an http(s) URL.
        operation: the import operation (`SubmitCommitments`, `EnregistrerEngagement`).
        mode: `batch`, `per_record`, or `auto` (from the operation's input in the WSDL).
        idempotency_field: the target path carrying the record's idempotency key; None: none
            is sent (the target is idempotent on `natural_key`, or not at all).
        reference_field: the target path carrying the record's reference (filled with the
            record's key when not mapped); None: the reference is not sent.
        natural_key: the target path of the business key the target is idempotent on; the
            reference is read there (it replaces the default `reference_field`).
        targets: the target paths the datafix maps: checked against the WSDL on connecting
            (with the required elements they leave out), before anything is sent.
        results: where an answer says what became of each record (`Results`).
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
        idempotency_field: str | None = "IdempotencyKey",
        reference_field: str | None = "Reference",
        natural_key: str | None = None,
        targets: Collection[str] = (),
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
        for code, outcome in [*results.statuses.items(), *results.faults.items()]:
            if outcome not in OUTCOMES:
                raise ConfigError(
                    f"sink {name}: `{code}: {outcome}` — an outcome is sent, retry or dead"
                )
        self.name = name
        self.wsdl = wsdl
        self.operation = operation
        self.mode: Mode = mode
        self.idempotency_field = idempotency_field
        self.natural_key = natural_key
        if natural_key is not None and reference_field == "Reference":  # the default
            reference_field = natural_key
        self.reference_field = reference_field
        self.targets = tuple(targets)
        self.results = results
        self.read_back_call = read_back
        self.amount_fields = frozenset(amount_fields)
        self.max_batch = max_batch
        self.auth = auth
        self.retriable_faults = frozenset(retriable_faults)
        retry = retry or SOAP_RETRY
        self._hold_transport(address, timeout, operation_timeout, retry, session, auth)
        self._services: dict[str, ServiceProxy] = {}
        self._input_list: tuple[str, ...] | None = None
        self._read_input: tuple[str, ...] | None = None
        self._shape: _Shape | None = None
        self._lookup: _Shape | None = None
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

    def prepare(self, records: Sequence[OutgoingRecord]) -> None:
        """Build the requests of `records` without sending anything: ConfigError when the
        datafix's fields cannot be placed in the WSDL's request."""
        self._connect()
        for record in records:
            try:
                self._item(record)
            except _RecordRefused:
                continue  # this record's values, not the configuration

    def check(self) -> None:
        """What `datafix check` verifies: the WSDL loads, the operations exist, every mapped
        path, the reference, idempotency and natural-key paths, the result and read-back paths
        are in it, and no required element is left unmapped. Calls no operation."""
        self._connect()

    def request(self, record: OutgoingRecord) -> dict[str, Any]:
        """The arguments `send` would pass zeep for `record` alone, nested as the WSDL says
        (batch: a one-item list). ConfigError when the datafix's fields cannot be placed."""
        self._connect()
        try:
            item = self._item(record)
        except _RecordRefused as refused:
            raise PermanentError(f"{self._origin}: {refused}") from None
        return item if self._input_list is None else _nest(self._input_list, [item])

    def envelope(self, record: OutgoingRecord) -> str:
        """The SOAP envelope `send` would post for `record` alone (nothing is sent)."""
        arguments = self.request(record)
        service = self._services[self.operation]
        message = service._client.create_message(service, self.operation, **arguments)
        return etree.tostring(message, encoding="unicode", pretty_print=True)

    def read_back(self, records: Sequence[OutgoingRecord]) -> dict[str, str]:
        call = self.read_back_call
        # a record no request can carry was never sent, and its reference cannot be asked for
        records = [record for record in records if unsafe_text(record) is None]
        if not records or call is None:
            return {}
        self._connect()
        if call.argument is not None:
            return self._read_back_by_reference(records, call)
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
                record = by_reference.get(str(_get(held, self.results.reference) or ""))
                if record is not None and self._holds(record, held):
                    found[record.key] = str(_get(held, call.id) or "")
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
                setting = ("operation",) if operation == self.operation else ("read_back",)
                message = (
                    f"{masked_location(self.wsdl)}: the WSDL has no operation `{operation}` —"
                    f" {_did_you_mean(operation, known)}"
                )
                raise SettingProblems([(setting, message, "")])
            address = self.address or port.binding_options["address"]
            self._services[operation] = client.create_service(port.binding.name.text, address)
        input_type = self._input_type(self.operation)
        shape = list_path(input_type)
        if self.mode == "auto":
            self.mode = "batch" if shape is not None else "per_record"
        item_type = input_type
        if self.mode == "batch":
            if shape is None:
                raise ConfigError(
                    f"{self._origin}: mode batch, but the operation's input is not one list of"
                    " items — use mode per_record"
                )
            self._input_list = shape
            for name in shape:
                item_type = _children(item_type)[name].complex_type
        self._shape = _Shape(item_type, self._origin)
        problems = self._request_problems()
        problems += self._result_problems()
        if call is not None:
            problems += self._read_back_problems(call)
        if problems:
            raise SettingProblems(
                [
                    (setting, f"{self._origin}: {_setting_text(setting)}{message}", "")
                    for setting, message in problems
                ]
            )
        self._connected = True

    def _request_problems(self) -> list[Problem]:
        assert self._shape is not None
        problems: list[Problem] = []
        checked: list[tuple[tuple[str | int, ...], str]] = [
            (("fields", target), target) for target in self.targets
        ]
        for setting in ("reference_field", "idempotency_field", "natural_key"):
            path = getattr(self, setting)
            if path is not None and (setting != "reference_field" or path != self.natural_key):
                checked.append(((setting,), path))
        for where, target in checked:
            problem = self._shape.problem(target)
            if problem is None:
                continue
            if where == ("idempotency_field",):
                problem += (
                    " (the element carrying the hub's idempotency key; a target idempotent on"
                    " its own business key: `natural_key: <path>`, or `idempotency_field: none`)"
                )
            problems.append((where, problem))
        if problems or not self.targets:
            return problems
        sent = [*self.targets, *(p for p in (self.reference_field, self.idempotency_field) if p)]
        missing = self._shape.missing_required(sent)
        if missing:
            problems.append(
                (
                    ("fields",),
                    "required element(s) left unmapped: "
                    + ", ".join(f"`{path}`" for path in missing)
                    + " — map them (a fixed value: `{value: …}`)",
                )
            )
        return problems

    def _result_problems(self) -> list[Problem]:
        """The result paths the datafix sets, against the answer's type."""
        response = response_type_of(self._services[self.operation], self.operation)
        if response is None:
            return []
        path = self.results.path
        if path is None:
            path = (
                ".".join(self._answer_list(self.operation))
                if self.mode == "batch"
                else self._single_result_path()
            )
        answer = _Shape(response, self._origin)
        if path:
            problem = answer.problem(path, leaf=False)
            if problem is not None:
                return [(("results", "path"), problem)]
        result_type: ComplexType | None = response
        for name in path.split(".") if path else ():
            result_type = _children(result_type)[name.split("[")[0].lstrip("@")].complex_type
        in_result = _Shape(result_type, self._origin)
        problems: list[Problem] = []
        for name in sorted(self.results.checked):
            problem = in_result.problem(getattr(self.results, name))
            if problem is not None:
                problems.append((("results", name), problem))
        return problems

    def _read_back_problems(self, call: ReadBack) -> list[Problem]:
        input_type = self._input_type(call.operation)
        where = f"{masked_location(self.wsdl)} {call.operation}"
        if call.argument is None:
            self._read_input = list_path(input_type)
            if self._read_input is None:
                return [
                    (
                        ("read_back", "operation"),
                        f"{call.operation} does not take one list of references — give"
                        " `argument` (the input path taking one reference) for a lookup",
                    )
                ]
            return []
        self._lookup = _Shape(input_type, where)
        problem = self._lookup.problem(call.argument)
        if problem is not None:
            return [(("read_back", "argument"), problem)]
        return []

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
    def _call(
        self,
        operation: str,
        arguments: Mapping[str, Any],
        *,
        single_record: bool,
        not_found: str | None = None,
    ) -> Any:
        service = self._services[operation]
        method = getattr(service, operation)
        transport = service._client.transport
        where = f"{masked_location(self.wsdl)} {operation}"

        def once() -> Any:
            self.calls[operation] += 1
            try:
                return method(**arguments)
            except zeep_errors.Fault as fault:
                code = fault_code(fault.code)
                if not_found is not None and fault_code(not_found) == code:
                    raise _NotFound from None
                if operation == self.operation and code in self._faults:
                    raise _FaultOutcome(
                        self._faults[code], f"{code}: {_one_line(fault.message, 1000)}"
                    ) from None
                transient = transient_fault(fault, self.retriable_faults)
                if single_record and not transient and code.startswith("Client"):
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

    @property
    def _faults(self) -> dict[str, Outcome]:
        return {fault_code(code): outcome for code, outcome in self.results.faults.items()}

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
        path = self.reference_field or self.natural_key
        value = record.fields.get(path) if path else None
        return record.key if value is None else str(value)

    def _item(self, record: OutgoingRecord) -> dict[str, Any]:
        """The record's request (per record) or list item (batch), nested as the WSDL says."""
        assert self._shape is not None
        control = unsafe_text(record)
        if control is not None:  # lxml would refuse to serialise the whole call
            raise _RecordRefused(control.message)
        values: dict[str, Any] = {}
        for name, value in record.fields.items():
            if value is not None:
                values[name] = self._value(name, value)
        if self.reference_field:
            values[self.reference_field] = self._reference(record)
        if self.idempotency_field:
            values[self.idempotency_field] = record.idempotency_key
        try:
            return self._shape.build(values)
        except ConfigError as error:
            raise ConfigError(f"{self._origin}: {error}") from None

    def _value(self, name: str, value: FieldValue) -> Any:
        if name in self.amount_fields and isinstance(value, int) and not isinstance(value, bool):
            return cents_text(value)
        return value

    def _holds(self, record: OutgoingRecord, held: Any) -> bool:
        """The ERP holds this very version of the record."""
        call = self.read_back_call
        assert call is not None
        if self.idempotency_field and call.idempotency_key:
            return str(_get(held, call.idempotency_key) or "") == record.idempotency_key
        try:
            return _covers(self._item(record), held)
        except _RecordRefused:
            return False

    def _read_back_by_reference(
        self, records: Sequence[OutgoingRecord], call: ReadBack
    ) -> dict[str, str]:
        assert self._lookup is not None and call.argument is not None
        operation = call.operation
        found: dict[str, str] = {}
        for record in records:
            arguments = self._lookup.build({call.argument: self._reference(record)})
            try:
                answer = self._call(
                    operation, arguments, single_record=False, not_found=call.not_found_fault
                )
            except _NotFound:
                continue
            held_records = self._records_at(operation, answer, call.path or "")
            if not held_records:
                if call.not_found_empty:
                    continue
                raise PermanentError(
                    f"{masked_location(self.wsdl)} {operation}: an empty answer for"
                    f" {self._reference(record)} — set read_back.not_found in the datafix"
                )
            held = held_records[0]
            if self._holds(record, held):
                found[record.key] = str(_get(held, call.id) or "")
        return found

    def _delivered(self, record: OutgoingRecord, result: Mapping[str, Any] | None) -> Delivered:
        if result is None:
            return Delivered(
                record.key,
                "retry",
                message=f"{self.operation}: the ERP gave no result for {self._reference(record)}",
            )
        status = str(_get(result, self.results.status) or "")
        peer_id = _get(result, self.results.id)
        message = _one_line(_get(result, self.results.message), 1000)
        outcome = self.results.outcome(status)
        if outcome != "sent" and not message:
            message = f"{self.operation}: the ERP answered status {status or '(none)'}"
        return Delivered(
            record.key,
            outcome,
            peer_id=None if peer_id in (None, "") else str(peer_id),
            message=message,
            details={"status": status},
        )

    def _send_one(self, record: OutgoingRecord) -> Delivered:
        try:
            item = self._item(record)
            answer = self._call(self.operation, item, single_record=True)
        except _RecordRefused as refused:
            return Delivered(record.key, "dead", message=f"{self.operation}: {refused}")
        except _FaultOutcome as fault:
            return Delivered(record.key, fault.outcome, message=f"{self.operation}: {fault}")
        path = self.results.path
        if path is None:
            path = self._single_result_path()
        results = self._records_at(self.operation, answer, path)
        return self._delivered(record, results[0] if results else None)

    def _single_result_path(self) -> str:
        response = response_type_of(self._services[self.operation], self.operation)
        names = [name for name, _ in response.elements] if response is not None else []
        first = self.results.status.split(".")[0]
        if first in names or len(names) != 1:
            return ""
        return names[0]

    def _send_batch(self, records: Sequence[OutgoingRecord]) -> list[Delivered]:
        assert self._input_list is not None
        items: list[dict[str, Any] | None] = []
        refused: dict[str, str] = {}
        for record in records:
            try:
                items.append(self._item(record))
            except _RecordRefused as error:
                items.append(None)
                refused[record.key] = str(error)
        if refused:
            rest = [record for record in records if record.key not in refused]
            sent = {d.key: d for d in self._send_batch(rest)} if rest else {}
            return [
                sent[record.key]
                if record.key in sent
                else Delivered(
                    record.key, "dead", message=f"{self.operation}: {refused[record.key]}"
                )
                for record in records
            ]
        try:
            answer = self._call(self.operation, _nest(self._input_list, items), single_record=False)
        except _BatchInvalid:
            return self._send_valid_part(records, [item for item in items if item is not None])
        except _FaultOutcome as fault:
            message = f"{self.operation}: {fault}"
            return [Delivered(record.key, fault.outcome, message=message) for record in records]
        path = self.results.path
        if path is None:
            path = ".".join(self._answer_list(self.operation))
        results: dict[str, Mapping[str, Any]] = {}
        for result in self._records_at(self.operation, answer, path):
            results.setdefault(str(_get(result, self.results.reference) or ""), result)
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


# elements and attributes whose text the dry run never prints (an idempotency key is shown)
_SECRET_NAMES = re.compile(
    r"pass(word|wd)?$|pwd$|mot_?de_?passe|secret|token|jeton|api_?key|cle_?api|credential",
    re.IGNORECASE,
)


def masked_envelope(envelope: str, settings: Any) -> str:
    """`envelope` re-indented, with the text of password-, token- or secret-named elements
    and attributes, and every value of the sink's `Secret` settings, shown as `***`."""
    from lxml import etree

    from connectors.secrets import scrub
    from schemas.config import env_fields

    root = etree.fromstring(
        envelope.encode("utf-8"), etree.XMLParser(remove_blank_text=True, resolve_entities=False)
    )
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        if _SECRET_NAMES.search(etree.QName(element).localname) and element.text:
            element.text = "***"
        for name in element.attrib:
            if _SECRET_NAMES.search(etree.QName(name).localname):
                element.attrib[name] = "***"
    text = etree.tostring(root, encoding="unicode", pretty_print=True)
    secrets = {value for _, marker, value in env_fields(settings) if marker.check == "secret"}
    return scrub(text, secrets)
