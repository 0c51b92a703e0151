"""A Sage X3-style SOAP web service (`CAdxWebServiceXmlCC`), served locally for tests and demo.

What it speaks (PROTOCOLS.md §3a): SOAP 1.1, RPC/encoded, namespace `http://www.adonix.com/WSS`,
the static WSDL `wsdl/sage_x3.wsdl` (served at `/wsdl`, its address rewritten to this peer's
`/soap-generic/syracuse/collaboration/syracuse/CAdxWebServiceXmlCC`). Every answer is a
`CAdxResultXml`: `status` 1 (success) or 0 (failure), `messages` sent as multiRef elements as
X3 does (`type` 1 information, 2 warning, 3 error), `resultXml` as a CDATA payload
(`RESULT` → `GRP ID=…` of `FLD NAME=… TYPE=…`, `LST NAME=…` of `ITM`, `TAB ID=…` of
`LIN NUM=…`; dates `YYYYMMDD`), nil on failure, and `technicalInfos`.

Operations implemented: `query` (the object's list: one `LIN` per record holding its
`query_fields`, `objectKeys` as equality criteria on any header field, at most `listSize`
lines) and `read` (one record by its key fields). With `writable=True` (a pool opened for
writing) also:

- `save(objectXml)`: creates a NEW record on every call, with a new `NUM` (`FRN-26/50001` …),
  as the real `save` does: it is not idempotent, a resend makes a second invoice. Answers
  status 1 and the record as `resultXml` (`GRP` … `FLD NAME="NUM"`); a business error
  (unknown customer `BPCINV`, missing BT reference `YBTNUM`, a poisoned reference, an unknown
  group or field) answers status 0 with a type-3 message, HTTP 200, no record created;
- `modify(objectKeys NUM, objectXml)`: changes the fields sent (a table sent replaces its
  lines); status 0 "Fiche inexistante" for an unknown NUM.

The other operations of the WSDL answer a SOAP fault. To add one, write a method
`(SageCall) -> SageAnswer` and register it in `self.operations` (one that works on an object:
`(SageCall, SageObject) -> SageAnswer`, registered through `self._on_object`); `self.records`
holds the data by public name and `self.objects` their descriptions.

Test hooks of the writes: `peer.poison(reference, message)` (a save or modify of a record whose
`reference_field` (`YHUBREF`) holds `reference` answers status 0 with `message`),
`peer.transient_rate = 0.2` (seeded by `transient_seed`: that share of calls answers HTTP 503,
HTTP 500 "No Web services accepted", or is processed then stalls `slow_seconds`; counted in
`peer.transient_faults`), `peer.created` (NUMs created by `save`, in order) and
`peer.numbers_by_reference()` (`{reference: [NUM, …]}` of the saved records: more than one
NUM for a reference is a duplicate invoice).

The call context is checked on every call: `poolAlias` must be the peer's `pool_alias`
(else a `soapenv:Server.userException` fault, as Axis reports an X3 exception) and `codeLang`
one of `languages` (same fault). With `credentials` set, HTTP Basic authentication is
required (V7+ style; 401 otherwise). Incoming envelopes are accepted with or without
`xsi:type` attributes (zeep sends none; Axis clients do).

Objects (`DEFAULT_OBJECTS`, extensible by passing `objects=`): `BPC` customers (key `BPCNUM`),
`SIH` sales invoices (key `NUM`, lines in table `SIH4_1`). Group, field and table codes follow
the standard screens as far as public samples show them; the layout of `query` answers is not
documented publicly [NOT VERIFIED]: one `TAB` of `LIN`s, as the read answers use.

Seed: `{"BPC": [{"BPCNUM": "C001", "BPCNAM": "…", "UPDDAT": date(…), "REP": ["R1"]}, …],
"SIH": [{"NUM": "…", …, "SIH4_1": [{"ITMREF": …}, …]}]}`: field values as `str`, `int`,
`Decimal` or `date`; a list field (`LST`) as a list of texts; a table as a list of dicts.

Fault modes (`set_fault(mode, times=None)`, like the landlord ERP peer): `slow`, `http_500`
(the body X3 sends when no web-service child process is available: "No Web services
accepted"), `http_503`, `malformed_xml`, the envelope-level DTD attacks of
`connectors.sandbox.http.HOSTILE_MODES`, and the same attacks inside the `resultXml` payload:
`result_dtd_billion_laughs`, `result_xxe_file`, `result_xxe_http`. Counters: `calls`,
`calls_by_operation`, `wsdl_requests`. `demo_seed()` is a small fixed data set for the demo;
`python -m connectors.sandbox.sage_x3 [--pool SEED] [--fault MODE]` serves it until Ctrl-C.
No dagster import: a plain connector helper.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from lxml import etree

from connectors.sandbox.demo_calendar import DemoCalendar
from connectors.sandbox.http import (
    HOSTILE_MODES,
    SOAP_ENV,
    Reply,
    Request,
    serve_until_interrupted,
    soap_fault_reply,
)
from connectors.sandbox.soap import PushFaultHooks, SoapPeer, TransientFaults

__all__ = [
    "DEFAULT_OBJECTS",
    "ENDPOINT_PATH",
    "SAGE_FAULT_MODES",
    "WSDL_PATH",
    "WSS",
    "SageAnswer",
    "SageCall",
    "SageField",
    "SageObject",
    "SageX3Peer",
    "demo_seed",
    "main",
]

WSDL_PATH = Path(__file__).with_name("wsdl") / "sage_x3.wsdl"
WSS = "http://www.adonix.com/WSS"
SOAP_ENC = "http://schemas.xmlsoap.org/soap/encoding/"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
ENDPOINT_PATH = "/soap-generic/syracuse/collaboration/syracuse/CAdxWebServiceXmlCC"
_PLACEHOLDER_ADDRESS = f"http://127.0.0.1:8124{ENDPOINT_PATH}"

_RESULT_HOSTILE = {
    "result_dtd_billion_laughs": "dtd_billion_laughs",
    "result_xxe_file": "xxe_file",
    "result_xxe_http": "xxe_http",
}
SAGE_FAULT_MODES = frozenset(
    {"slow", "http_500", "http_503", "malformed_xml", *HOSTILE_MODES, *_RESULT_HOSTILE}
)

_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
# what the peer's own parser accepts in objectXml: no DTD, no entities, no network
_PAYLOAD_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=True
)


@dataclass(frozen=True)
class SageField:
    """One screen field: its code and X3 type (`Char`, `Integer`, `Decimal`, `Date`)."""

    name: str
    type: str = "Char"
    is_list: bool = False  # a LST (several values, one ITM each)


@dataclass(frozen=True)
class SageObject:
    """A published object: its key fields, its query list, its groups and tables."""

    public_name: str
    keys: tuple[str, ...]
    query_fields: tuple[str, ...]
    groups: tuple[tuple[str, tuple[SageField, ...]], ...]
    tables: tuple[tuple[str, tuple[SageField, ...]], ...] = ()

    def header_fields(self) -> dict[str, SageField]:
        return {item.name: item for _, fields in self.groups for item in fields}


DEFAULT_OBJECTS: dict[str, SageObject] = {
    "BPC": SageObject(
        public_name="BPC",
        keys=("BPCNUM",),
        query_fields=("BPCNUM", "BPCNAM", "UPDDAT"),
        groups=(
            (
                "BPC0_1",
                (SageField("BPCNUM"), SageField("BPCNAM"), SageField("BPCSHO")),
            ),
            (
                "BPC1_1",
                (
                    SageField("BPCTYP", "Integer"),
                    SageField("CUR"),
                    SageField("OSTAUZ", "Decimal"),
                    SageField("REP", is_list=True),
                ),
            ),
            ("BPC5_1", (SageField("CREDAT", "Date"), SageField("UPDDAT", "Date"))),
        ),
    ),
    "SIH": SageObject(
        public_name="SIH",
        keys=("NUM",),
        query_fields=("NUM", "BPCINV", "INVDAT", "AMTATI", "UPDDAT"),
        groups=(
            (
                "SIH0_1",
                (
                    SageField("SALFCY"),
                    SageField("SIVTYP"),
                    SageField("NUM"),
                    SageField("INVDAT", "Date"),
                    SageField("BPCINV"),
                    SageField("CUR"),
                ),
            ),
            (
                "SIH1_1",
                (
                    SageField("YBTNUM"),
                    SageField("AMTNOT", "Decimal"),
                    SageField("AMTATI", "Decimal"),
                    SageField("UPDDAT", "Date"),
                    # custom fields of the landlord's install: the hub's invoice reference and
                    # the version (idempotency key) it last wrote
                    SageField("YHUBREF"),
                    SageField("YHUBVER"),
                ),
            ),
        ),
        tables=(
            (
                "SIH4_1",
                (
                    SageField("ITMREF"),
                    SageField("ITMDES"),
                    SageField("QTY", "Decimal"),
                    SageField("GROPRI", "Decimal"),
                    SageField("AMTNOTLIN", "Decimal"),
                ),
            ),
        ),
    ),
}


@dataclass(frozen=True)
class SageCall:
    """One incoming call: operation, call context, public name and the other parameters."""

    operation: str
    context: Mapping[str, str]
    public_name: str
    object_keys: tuple[tuple[str, str], ...]
    parameters: Mapping[str, str]


@dataclass(frozen=True)
class SageAnswer:
    """What an operation answers: status 1/0, the RESULT payload, `(type, text)` messages."""

    status: int
    result_xml: str | None = None
    messages: tuple[tuple[int, str], ...] = field(default_factory=tuple)


class _Refused(Exception):
    """A call X3 would reject with an exception: answered by a SOAP fault."""


def _field_text(item: SageField, value: Any) -> str:
    if value is None:
        return ""
    if item.type == "Date":
        if isinstance(value, dt.date):
            return value.strftime("%Y%m%d")
        return str(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _fld(parent: etree._Element, item: SageField, value: Any) -> None:
    if item.is_list:
        values = list(value or [])
        node = etree.SubElement(
            parent, "LST", NAME=item.name, SIZE=str(len(values)), TYPE=item.type
        )
        for entry in values:
            etree.SubElement(node, "ITM").text = _field_text(item, entry)
        return
    node = etree.SubElement(parent, "FLD", NAME=item.name, TYPE=item.type)
    node.text = _field_text(item, value)


def _result_text(root: etree._Element) -> str:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8").decode("utf-8")


class SageX3Peer(PushFaultHooks, SoapPeer):
    """The Sage X3 `CAdxWebServiceXmlCC` service on 127.0.0.1 (see the module docstring), on
    `port` (0: one the system picks)."""

    wsdl_path = WSDL_PATH
    placeholder_address = _PLACEHOLDER_ADDRESS
    endpoint_path = ENDPOINT_PATH
    fault_modes = SAGE_FAULT_MODES
    http_faults: ClassVar[Mapping[str, Reply]] = {
        "http_500": Reply(500, b"No Web services accepted", "text/plain; charset=utf-8"),
        "http_503": Reply(503, b"Service Unavailable", "text/plain", {"Retry-After": "0"}),
    }
    envelope_fault_code = "Client"

    def __init__(
        self,
        seed: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
        *,
        pool_alias: str = "SEED",
        languages: Sequence[str] = ("FRA", "ENG"),
        objects: Mapping[str, SageObject] | None = None,
        credentials: tuple[str, str] | None = None,
        slow_seconds: float = 5.0,
        secret_file: str | Path = "/etc/passwd",
        canary_url: str = "http://127.0.0.1:9",
        port: int = 0,
        writable: bool = False,
        reference_field: str = "YHUBREF",
        transient_seed: int = 0,
    ) -> None:
        self.objects: dict[str, SageObject] = dict(objects or DEFAULT_OBJECTS)
        seed = seed or {}
        unknown = set(seed) - set(self.objects)
        if unknown:
            raise ValueError(f"no object {sorted(unknown)} (there: {sorted(self.objects)})")
        self.records: dict[str, list[dict[str, Any]]] = {
            name: [dict(record) for record in seed.get(name, ())] for name in self.objects
        }
        self.pool_alias = pool_alias
        self.languages = tuple(languages)
        self.credentials = credentials
        self.contexts: list[Mapping[str, str]] = []  # every call context received, in order
        self.operations: dict[str, Callable[[SageCall], SageAnswer]] = {
            "query": self._on_object(self._query),
            "read": self._on_object(self._read),
        }
        if writable:
            self.operations |= {
                "save": self._on_object(self._save),
                "modify": self._on_object(self._modify),
            }
        self.reference_field = reference_field
        self.poisoned: dict[str, str] = {}
        self.created: list[str] = []
        self.transient = TransientFaults(("http_503", "http_500", "slow"), seed=transient_seed)
        self._next_number = 50001
        self._store_lock = threading.Lock()
        super().__init__(
            name="sandbox-sage-x3",
            slow_seconds=slow_seconds,
            secret_file=secret_file,
            canary_url=canary_url,
            port=port,
        )

    # HTTP ------------------------------------------------------------------------------
    def _refusal(self, request: Request) -> Reply | None:
        if self.credentials is None:
            return None
        user, password = self.credentials
        expected = base64.b64encode(f"{user}:{password}".encode()).decode()
        if request.headers.get("authorization", "") == f"Basic {expected}":
            return None
        return Reply(status=401, headers={"WWW-Authenticate": 'Basic realm="Sage X3"'})

    # test hooks ------------------------------------------------------------------------------
    def numbers_by_reference(self, public_name: str = "SIH") -> dict[str, list[str]]:
        """`{reference: [NUM, …]}` of the records `save` created, by `reference_field`."""
        created = set(self.created)
        found: dict[str, list[str]] = {}
        with self._store_lock:
            for record in self.records[public_name]:
                if record.get("NUM") in created:
                    reference = str(record.get(self.reference_field) or "")
                    found.setdefault(reference, []).append(str(record["NUM"]))
        return found

    def _answer(self, operation: str, body: etree._Element, mode: str | None) -> bytes | Reply:
        if mode is None:
            transient = self.transient.draw()
            if transient in self.http_faults:
                return self.http_faults[transient]
            if transient == "slow":
                return self._stalled(operation, body)
        try:
            call = self._call(operation, body)
            handler = self.operations.get(operation)
            if handler is None:
                raise _Refused(f"operation {operation} is not available in this sandbox")
            answer = handler(call)
        except _Refused as error:
            return soap_fault_reply("Server.userException", str(error))
        if mode in _RESULT_HOSTILE and answer.result_xml is not None:
            payload = self._hostile(answer.result_xml.encode("utf-8"), _RESULT_HOSTILE[mode])
            answer = SageAnswer(answer.status, payload.decode("utf-8"), answer.messages)
        return self._envelope(operation, answer)

    def _call(self, operation: str, body: etree._Element) -> SageCall:
        parameters: dict[str, etree._Element] = {
            etree.QName(child).localname: child for child in body
        }
        context_node = parameters.pop("callContext", None)
        if context_node is None:
            raise _Refused("callContext is missing")
        context = {etree.QName(child).localname: (child.text or "") for child in context_node}
        with self._lock:
            self.contexts.append(context)
        if context.get("poolAlias", "") != self.pool_alias:
            raise _Refused(f"Pool alias {context.get('poolAlias', '')!r} unknown")
        if context.get("codeLang", "") not in self.languages:
            raise _Refused(f"Language code {context.get('codeLang', '')!r} not available")
        keys_node = parameters.pop("objectKeys", None)
        object_keys: list[tuple[str, str]] = []
        if keys_node is not None:
            for item in keys_node:
                values = {etree.QName(child).localname: (child.text or "") for child in item}
                object_keys.append((values.get("key", ""), values.get("value", "")))
        public_name_node = parameters.pop("publicName", None)
        return SageCall(
            operation=operation,
            context=context,
            public_name=(public_name_node.text or "") if public_name_node is not None else "",
            object_keys=tuple(object_keys),
            parameters={name: (node.text or "") for name, node in parameters.items()},
        )

    def _error_answer(self, call: SageCall, french: str, english: str) -> SageAnswer:
        """A status-0 answer with one error message, in the call's language (`codeLang`)."""
        message = french if call.context.get("codeLang") == "FRA" else english
        return SageAnswer(0, messages=((3, message),))

    def _on_object(
        self, operation: Callable[[SageCall, SageObject], SageAnswer]
    ) -> Callable[[SageCall], SageAnswer]:
        """`operation` given the object the call's `publicName` names; an error answer when
        no such web service is published."""

        def handler(call: SageCall) -> SageAnswer:
            described = self.objects.get(call.public_name)
            if described is None:
                return self._error_answer(
                    call,
                    f"Web service {call.public_name} non publié",
                    f"Web service {call.public_name} not published",
                )
            return operation(call, described)

        return handler

    # operations --------------------------------------------------------------------------
    def _query(self, call: SageCall, described: SageObject) -> SageAnswer:
        header = described.header_fields()
        records = self.records[described.public_name]
        for key, value in call.object_keys:
            if key not in header:
                return self._error_answer(
                    call, f"Critère {key} inconnu", f"Unknown criterion {key}"
                )
            records = [
                record for record in records if _field_text(header[key], record.get(key)) == value
            ]
        try:
            list_size = int(call.parameters.get("listSize") or 0)
        except ValueError:
            raise _Refused("listSize is not an integer") from None
        chosen = records[: max(list_size, 0)]
        root = etree.Element("RESULT")
        table = etree.SubElement(
            root,
            "TAB",
            DIM=str(list_size),
            ID=f"{described.public_name}_QUERY",
            SIZE=str(len(chosen)),
        )
        for number, record in enumerate(chosen, start=1):
            line = etree.SubElement(table, "LIN", NUM=str(number))
            for name in described.query_fields:
                _fld(line, header[name], record.get(name))
        return SageAnswer(1, _result_text(root))

    def _read(self, call: SageCall, described: SageObject) -> SageAnswer:
        wanted = dict(call.object_keys)
        missing = [key for key in described.keys if key not in wanted]
        if missing:
            return self._error_answer(
                call, f"Clé {', '.join(missing)} obligatoire", f"Key {', '.join(missing)} mandatory"
            )
        header = described.header_fields()
        found = next(
            (
                record
                for record in self.records[described.public_name]
                if all(
                    _field_text(header[key], record.get(key)) == wanted[key]
                    for key in described.keys
                )
            ),
            None,
        )
        if found is None:
            shown = ", ".join(wanted[key] for key in described.keys)
            return self._error_answer(
                call, f"{shown} : Fiche inexistante", f"{shown}: Record does not exist"
            )
        return SageAnswer(1, self._render(described, found))

    def _render(self, described: SageObject, record: Mapping[str, Any]) -> str:
        root = etree.Element("RESULT")
        for group_id, fields in described.groups:
            group = etree.SubElement(root, "GRP", ID=group_id)
            for item in fields:
                _fld(group, item, record.get(item.name))
        for table_id, fields in described.tables:
            lines = list(record.get(table_id) or [])
            table = etree.SubElement(root, "TAB", DIM="300", ID=table_id, SIZE=str(len(lines)))
            for number, values in enumerate(lines, start=1):
                line = etree.SubElement(table, "LIN", NUM=str(number))
                for item in fields:
                    _fld(line, item, values.get(item.name))
        return _result_text(root)

    def _payload(
        self, call: SageCall, described: SageObject
    ) -> tuple[dict[str, Any], dict[str, list[dict[str, str]]]] | SageAnswer:
        """The header values and tables of `objectXml`, or a status-0 answer naming the fault."""

        text = call.parameters.get("objectXml", "")
        try:
            root = etree.fromstring(_DECLARATION.sub("", text, count=1).encode(), _PAYLOAD_PARSER)
        except etree.XMLSyntaxError:
            return self._error_answer(call, "objectXml : XML invalide", "objectXml: invalid XML")
        if root.getroottree().docinfo.doctype or root.tag != "PARAM":
            return self._error_answer(
                call, "objectXml : PARAM attendu", "objectXml: PARAM expected"
            )
        groups = {group_id: {item.name for item in fields} for group_id, fields in described.groups}
        tables = dict(described.tables)
        header: dict[str, Any] = {}
        lines: dict[str, list[dict[str, str]]] = {}
        for node in root:
            node_id = node.get("ID", "")
            if node.tag == "GRP" and node_id in groups:
                for field_node in node.iterchildren("FLD"):
                    name = field_node.get("NAME", "")
                    if name not in groups[node_id]:
                        return self._error_answer(
                            call,
                            f"Zone {name} inconnue dans le bloc {node_id}",
                            f"Field {name} unknown in block {node_id}",
                        )
                    header[name] = field_node.text or ""
            elif node.tag == "TAB" and node_id in tables:
                known = {item.name for item in tables[node_id]}
                lines[node_id] = []
                for line in node.iterchildren("LIN"):
                    values = {f.get("NAME", ""): f.text or "" for f in line.iterchildren("FLD")}
                    unknown = sorted(set(values) - known)
                    if unknown:
                        return self._error_answer(
                            call,
                            f"Zone {unknown[0]} inconnue dans le tableau {node_id}",
                            f"Field {unknown[0]} unknown in table {node_id}",
                        )
                    lines[node_id].append(values)
            else:
                return self._error_answer(
                    call, f"Bloc {node_id} inconnu", f"Unknown block {node_id}"
                )
        return header, lines

    def _business_error(self, call: SageCall, record: Mapping[str, Any]) -> SageAnswer | None:
        reference = str(record.get(self.reference_field) or "")
        if reference and reference in self.poisoned:
            return SageAnswer(0, messages=((3, self.poisoned[reference]),))
        described = self.objects[call.public_name]
        header = described.header_fields()
        if "YBTNUM" in header and not str(record.get("YBTNUM") or "").strip():
            return self._error_answer(
                call, "Référence BT (YBTNUM) obligatoire", "BT reference (YBTNUM) mandatory"
            )
        customer = record.get("BPCINV")
        if "BPCINV" in header and "BPC" in self.records:
            known = {str(item.get("BPCNUM")) for item in self.records["BPC"]}
            if str(customer or "") not in known:
                return self._error_answer(
                    call,
                    f"Client {customer or ''} : fiche inexistante",
                    f"Customer {customer or ''}: record does not exist",
                )
        return None

    def _save(self, call: SageCall, described: SageObject) -> SageAnswer:
        payload = self._payload(call, described)
        if isinstance(payload, SageAnswer):
            return payload
        header, lines = payload
        record: dict[str, Any] = {**header, **lines}
        refusal = self._business_error(call, record)
        if refusal is not None:
            return refusal
        with self._store_lock:
            number = f"{record.get('SIVTYP') or 'FRN'}-26/{self._next_number:05d}"
            self._next_number += 1
            record["NUM"] = number
            record["UPDDAT"] = dt.date.today()
            self.records[described.public_name].append(record)
            self.created.append(number)
        return SageAnswer(1, self._render(described, record))

    def _modify(self, call: SageCall, described: SageObject) -> SageAnswer:
        wanted = dict(call.object_keys)
        header = described.header_fields()
        with self._store_lock:
            found = next(
                (
                    record
                    for record in self.records[described.public_name]
                    if all(
                        _field_text(header[key], record.get(key)) == wanted.get(key)
                        for key in described.keys
                    )
                ),
                None,
            )
        if found is None:
            shown = ", ".join(wanted.get(key, "") for key in described.keys)
            return self._error_answer(
                call, f"{shown} : Fiche inexistante", f"{shown}: Record does not exist"
            )
        payload = self._payload(call, described)
        if isinstance(payload, SageAnswer):
            return payload
        values, lines = payload
        changed = {**found, **values, **lines}
        refusal = self._business_error(call, changed)
        if refusal is not None:
            return refusal
        with self._store_lock:
            found.update(values, **lines)
            found["UPDDAT"] = dt.date.today()
        return SageAnswer(1, self._render(described, found))

    # envelope ----------------------------------------------------------------------------
    def _envelope(self, operation: str, answer: SageAnswer) -> bytes:
        nsmap = {"soapenv": SOAP_ENV, "xsd": "http://www.w3.org/2001/XMLSchema", "xsi": XSI}
        envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap=nsmap)
        body = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body")
        response = etree.SubElement(
            body, f"{{{WSS}}}{operation}Response", nsmap={"wss": WSS, "soapenc": SOAP_ENC}
        )
        response.set(f"{{{SOAP_ENV}}}encodingStyle", SOAP_ENC)
        result = etree.SubElement(response, f"{operation}Return")
        result.set(f"{{{XSI}}}type", "wss:CAdxResultXml")
        messages = etree.SubElement(result, "messages")
        messages.set(f"{{{XSI}}}type", "soapenc:Array")
        messages.set(f"{{{SOAP_ENC}}}arrayType", f"wss:CAdxMessage[{len(answer.messages)}]")
        for index in range(len(answer.messages)):
            etree.SubElement(messages, "messages", href=f"#id{index}")
        result_xml = etree.SubElement(result, "resultXml")
        if answer.result_xml is None:
            result_xml.set(f"{{{XSI}}}nil", "true")
        else:
            result_xml.set(f"{{{XSI}}}type", "xsd:string")
            result_xml.text = etree.CDATA(answer.result_xml)
        status = etree.SubElement(result, "status")
        status.set(f"{{{XSI}}}type", "xsd:int")
        status.text = str(answer.status)
        infos = etree.SubElement(result, "technicalInfos")
        infos.set(f"{{{XSI}}}type", "wss:CAdxTechnicalInfos")
        for name, value in (
            ("busy", "false"),
            ("changeLanguage", "false"),
            ("changeUserId", "false"),
            ("flushAdx", "false"),
            ("loadWebsDuration", "0.0"),
            ("nbDistributionCycle", "-1"),
            ("poolDistribDuration", "-1.0"),
            ("poolEntryIdx", "1"),
            ("poolExecDuration", "12.0"),
            ("poolRequestDuration", "-1.0"),
            ("poolWaitDuration", "0.0"),
            ("processReport", None),
            ("processReportSize", "-1"),
            ("reloadWebs", "false"),
            ("resumitAfterDBOpen", "false"),
            ("rowInDistribStack", "-1"),
            ("totalDuration", "14.0"),
            ("traceRequest", None),
            ("traceRequestSize", "-1"),
        ):
            node = etree.SubElement(infos, name)
            if value is None:
                node.set(f"{{{XSI}}}nil", "true")
            else:
                node.text = value
        for index, (kind, text) in enumerate(answer.messages):
            reference = etree.SubElement(
                body, "multiRef", id=f"id{index}", nsmap={"wss": WSS, "soapenc": SOAP_ENC}
            )
            reference.set(f"{{{SOAP_ENC}}}root", "0")
            reference.set(f"{{{SOAP_ENV}}}encodingStyle", SOAP_ENC)
            reference.set(f"{{{XSI}}}type", "wss:CAdxMessage")
            etree.SubElement(reference, "message").text = text
            etree.SubElement(reference, "type").text = str(kind)
        return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")


# --------------------------------------------------------------------------------------------
# Demo data and a standalone run


def demo_seed(calendar: DemoCalendar | None = None) -> dict[str, list[dict[str, Any]]]:
    """A small fixed seed (invented companies): 5 customers (landlords billed by a contractor)
    and 6 sales invoices with 1 to 3 lines each, every one carrying a work-order number. With a
    `calendar` (the sandbox's), its dates are moved to the demo day like the demo files'."""
    names = (
        "Loire Habitat Social",
        "Opale Logement",
        "Cité des Jardins",
        "Val de Seine Habitat",
        "Mer et Pins HLM",
    )
    customers = [
        {
            "BPCNUM": f"C{number:04d}",
            "BPCNAM": name,
            "BPCSHO": name.split()[0].upper()[:10],
            "BPCTYP": 1,
            "CUR": "EUR",
            "OSTAUZ": Decimal("50000.00") * number,
            "REP": [f"REP{number:02d}"],
            "CREDAT": dt.date(2018 + number, 1, 15),
            "UPDDAT": dt.date(2026, 3, 2 * number),
        }
        for number, name in enumerate(names, start=1)
    ]
    invoices = []
    for number in range(1, 7):
        lines = [
            {
                "ITMREF": ("DEPANNAGE", "FOURNITURE", "DEPLACEMENT")[line % 3],
                "ITMDES": ("Dépannage", "Fournitures", "Déplacement")[line % 3],
                "QTY": Decimal(line + 1),
                "GROPRI": Decimal("85.50") * (line + 1),
                "AMTNOTLIN": Decimal("85.50") * (line + 1) * (line + 1),
            }
            for line in range(1 + number % 3)
        ]
        net = sum((line["AMTNOTLIN"] for line in lines), Decimal("0.00"))
        invoices.append(
            {
                "SALFCY": "SED",
                "SIVTYP": "FRN",
                "NUM": f"FRN-26/{number:05d}",
                "INVDAT": dt.date(2026, 3, number * 3),
                "BPCINV": customers[number % len(customers)]["BPCNUM"],
                "CUR": "EUR",
                "YBTNUM": f"BT{345670 + number}",
                "AMTNOT": net,
                "AMTATI": (net * Decimal("1.10")).quantize(Decimal("0.01")),
                "UPDDAT": dt.date(2026, 3, number * 3 + 1),
                "SIH4_1": lines,
            }
        )
    seed = {"BPC": customers, "SIH": invoices}
    return seed if calendar is None else calendar.value(seed)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the demo Sage X3 service until interrupted: `python -m connectors.sandbox.sage_x3`."""
    parser = argparse.ArgumentParser(description="Serve the sandbox Sage X3 web service.")
    parser.add_argument("--pool", default="SEED", help="the pool alias callers must name")
    parser.add_argument("--fault", choices=sorted(SAGE_FAULT_MODES), help="answer with a fault")
    options = parser.parse_args(argv)
    with SageX3Peer(demo_seed(), pool_alias=options.pool) as peer:
        peer.set_fault(options.fault)
        serve_until_interrupted(
            f"Sage X3 WSDL: {peer.wsdl_url} pool {options.pool} (Ctrl-C to stop)\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
