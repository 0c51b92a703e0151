"""Push records to Sage X3 through `CAdxWebServiceXmlCC`: `SageX3Sink` (kind `sage_x3`).

Same hardened zeep client as the reader (`connectors.soap.client.make_client` with the bundled
SOAP-encoding schema), same `resultXml` parser (`connectors.sage.client.parse_result_xml`).

Each record is one call: `save(objectXml)` creates the object (an SIH invoice) and X3 answers
its new `NUM`; a record with a `peer_id` (or whose invoice an earlier `read_back` found) is
changed with `modify(objectKeys NUM=…, objectXml)`. Status 1 → `sent` with `peer_id` = NUM;
status 0 → `dead` with X3's messages (`[error] Client C999 : fiche inexistante`): a business
error concerns that record, never the run; so does a value no request can carry (a control
character: `dead` naming the field, nothing sent, and never read back). A transport or server
failure (timeout, HTTP 5xx, "No Web services accepted") raises `RetriableError` at once,
*without* retrying inside the sink: X3's `save` is not idempotent, so a blind resend could make
a second invoice. The outbox then calls `read_back`, which `query`s X3 on `reference_field` (a
custom field such as `YHUBREF` holding the hub's reference) and, with `version_field`
(`YHUBVER`, written with the record's idempotency key), `read`s each found invoice to tell
whether it holds this very version (without a version field, the header values sent are
compared). A reference X3 already holds in another version is remembered, so the resend
`modify`s it instead of saving a duplicate. Reads (`query`, `read`) are retried as the reader
retries them.

objectXml: `PARAM` → `GRP ID=group` (or `field_groups[name]`) of `FLD NAME=…`; with
`lines_table` (`SIH4_1`), fields named `SIH4_1.<line>.<FIELD>` go to `TAB ID=SIH4_1` →
`LIN NUM=<line>`. Values: int cents of `amount_fields` as exact decimal text (`12345` →
`123.45`), dates and date-times `YYYYMMDD`, booleans X3's local menu 1/2 (no/yes), other
values as text; `None` fields are left out. Nothing connects before the first `send` or
`read_back`. No dagster import.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import requests
import zeep
from lxml import etree
from zeep.proxy import ServiceProxy

from connectors.delivery import BatchedSink, Delivered, FieldValue, OutgoingRecord, unsafe_text
from connectors.errors import ConfigError
from connectors.retry import RetryPolicy
from connectors.sage.client import (
    call_context,
    object_keys_param,
    parse_result_xml,
    query_lines,
    sage_result,
)
from connectors.sage.models import SAGE_X3_RETRY
from connectors.soap.client import call_operation, make_client, masked_location, service_for
from connectors.soap.push import cents_text

__all__ = ["SageX3Sink"]

# writes are tried once: a resend of a non-idempotent save is decided after a read-back
_ONCE = RetryPolicy(attempts=1, first_wait=0, max_wait=0, jitter=0)


def _same(held: str, sent: str) -> bool:
    if held == sent:
        return True
    try:
        return Decimal(held) == Decimal(sent)
    except InvalidOperation:
        return False


class SageX3Sink(BatchedSink):
    """Delivers records as Sage X3 objects (module docstring), one `save`/`modify` each.

    Args:
        name: the sink's name in the landlord's datafix.
        wsdl: the `CAdxWebServiceXmlCC` WSDL, a file or an http(s) URL.
        pool_alias / language: `callContext.poolAlias` and `codeLang`.
        user / password: HTTP Basic authentication (X3 V7 and later), when given.
        public_name: the published object (`SIH`); `key_field` its key (`NUM`).
        group: the block header fields go to (`SIH0_1`); `field_groups` names others.
        reference_field: the field holding the hub's reference (the record's key unless its
            fields hold one), queried by `read_back`.
        version_field: the field written with the record's idempotency key (None: compare
            the header values instead).
        lines_table: the table of lines (`SIH4_1`) fed by `TABLE.LINE.FIELD` fields.
        amount_fields: fields whose int values are cents, sent as decimal text.
        max_batch / list_size: records per `send`; lines a read-back `query` may return.
        address / timeout / operation_timeout / retry / session / request_config: as
            `connectors.sage.client.read_sage_x3` (retry for reads only).
    """

    kind = "sage_x3"

    def __init__(
        self,
        name: str,
        *,
        wsdl: str,
        pool_alias: str,
        language: str = "FRA",
        user: str | None = None,
        password: str | None = None,
        public_name: str = "SIH",
        key_field: str = "NUM",
        group: str = "SIH0_1",
        field_groups: Mapping[str, str] | None = None,
        reference_field: str = "YHUBREF",
        version_field: str | None = "YHUBVER",
        lines_table: str | None = None,
        amount_fields: Collection[str] = (),
        max_batch: int = 50,
        list_size: int = 20,
        request_config: str = "adxwss.optreturn=XML",
        address: str | None = None,
        timeout: float = 30,
        operation_timeout: float = 60,
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
    ) -> None:
        if max_batch < 1 or list_size < 1:
            raise ConfigError(f"sink {name}: max_batch and list_size must be at least 1")
        self.name = name
        self.wsdl = wsdl
        self.public_name = public_name
        self.key_field = key_field
        self.group = group
        self.field_groups = dict(field_groups or {})
        self.reference_field = reference_field
        self.version_field = version_field
        self.lines_table = lines_table
        self.amount_fields = frozenset(amount_fields)
        self.max_batch = max_batch
        self.list_size = list_size
        self.context = call_context(pool_alias, language, request_config)
        auth = (user, password or "") if user else None
        retry = retry or SAGE_X3_RETRY
        self._hold_transport(address, timeout, operation_timeout, retry, session, auth)
        self._client: zeep.Client | None = None
        self._service: ServiceProxy | None = None
        self._numbers: dict[str, str] = {}  # key → NUM this sink created or found
        self._versions: dict[str, str] = {}  # key → idempotency key delivered by this sink
        self._origin = f"{masked_location(wsdl)} {public_name}"

    # the contract ---------------------------------------------------------------------------
    def send(self, records: Sequence[OutgoingRecord]) -> list[Delivered]:
        if not records:
            return []
        self._connect()
        return [self._send_one(record) for record in records]

    def read_back(self, records: Sequence[OutgoingRecord]) -> dict[str, str]:
        if not records:
            return {}
        self._connect()
        found: dict[str, str] = {}
        for record in records:
            if self._versions.get(record.key) == record.idempotency_key:
                found[record.key] = self._numbers[record.key]
                continue
            if unsafe_text(record) is not None:  # X3 cannot hold what no request can carry
                continue
            number = self._held_version(record)
            if number is not None:
                found[record.key] = number
        return found

    def close(self) -> None:
        self._client = self._service = None
        super().close()

    # calls ----------------------------------------------------------------------------------
    def _connect(self) -> None:
        self._check_open()
        if self._service is not None:
            return
        self._client = make_client(
            self.wsdl,
            timeout=self.timeout,
            operation_timeout=self.operation_timeout,
            session=self._http_session(),
            soap_encoding=True,
            retry=self.retry,
        )
        self._service = service_for(self._client, self.address)

    def _call(self, operation: str, retry: RetryPolicy, **parameters: Any) -> Any:
        assert self._service is not None
        self.calls[operation] += 1
        answer = call_operation(
            self._service,
            operation,
            {"callContext": self.context, "publicName": self.public_name, **parameters},
            where=f"{self._origin} {operation}",
            retry=retry,
        )
        return sage_result(answer)

    def _keys(self, pairs: Sequence[tuple[str, str]]) -> Any:
        assert self._client is not None
        return object_keys_param(self._client, pairs)

    # sending --------------------------------------------------------------------------------
    def _reference(self, record: OutgoingRecord) -> str:
        value = record.fields.get(self.reference_field)
        return record.key if value is None else str(value)

    def _text(self, name: str, value: FieldValue) -> str:
        if isinstance(value, bool):
            return "2" if value else "1"
        # a line field counts as an amount by its full name or its field name alone
        if isinstance(value, int) and {name, name.rsplit(".", 1)[-1]} & self.amount_fields:
            return cents_text(value)
        if isinstance(value, dt.datetime | dt.date):
            return value.strftime("%Y%m%d")
        return str(value)

    def _header(self, record: OutgoingRecord) -> dict[str, str]:
        header = {
            name: self._text(name, value)
            for name, value in record.fields.items()
            if value is not None
            and not (self.lines_table and name.startswith(f"{self.lines_table}."))
        }
        header[self.reference_field] = self._reference(record)
        if self.version_field:
            header[self.version_field] = record.idempotency_key
        return header

    def _object_xml(self, record: OutgoingRecord) -> str:
        root = etree.Element("PARAM")
        groups: dict[str, etree._Element] = {}
        for name, text in self._header(record).items():
            group_id = self.field_groups.get(name, self.group)
            if group_id not in groups:
                groups[group_id] = etree.SubElement(root, "GRP", ID=group_id)
            etree.SubElement(groups[group_id], "FLD", NAME=name).text = text
        if self.lines_table:
            lines: dict[int, dict[str, str]] = {}
            for name, value in record.fields.items():
                parts = name.split(".")
                if value is None or len(parts) != 3 or parts[0] != self.lines_table:
                    continue
                if not parts[1].isdigit():
                    raise ConfigError(
                        f"{self._origin}: field `{name}`: lines are named"
                        f" {self.lines_table}.<line number>.<FIELD>"
                    )
                lines.setdefault(int(parts[1]), {})[parts[2]] = self._text(name, value)
            if lines:
                table = etree.SubElement(root, "TAB", ID=self.lines_table)
                for number in sorted(lines):
                    line = etree.SubElement(table, "LIN", NUM=str(number))
                    for name, text in lines[number].items():
                        etree.SubElement(line, "FLD", NAME=name).text = text
        return etree.tostring(root, xml_declaration=True, encoding="utf-8").decode("utf-8")

    def _send_one(self, record: OutgoingRecord) -> Delivered:
        refused = unsafe_text(record)
        if refused is not None:  # lxml would refuse to serialise it: this record is dead
            return refused
        number = record.peer_id or self._numbers.get(record.key)
        payload = self._object_xml(record)
        if number:
            operation = "modify"
            result = self._call(
                "modify",
                _ONCE,
                objectKeys=self._keys([(self.key_field, number)]),
                objectXml=payload,
            )
        else:
            operation = "save"
            result = self._call("save", _ONCE, objectXml=payload)
        if not result.ok:
            said = "; ".join(map(str, result.messages)) or f"status {result.status}, no message"
            return Delivered(record.key, "dead", peer_id=number, message=said)
        fields = self._fields(parse_result_xml(result.result_xml, f"{self._origin} {operation}"))
        held = fields.get(self.key_field) or number or ""
        self._numbers[record.key] = held
        self._versions[record.key] = record.idempotency_key
        return Delivered(
            record.key,
            "sent",
            peer_id=held,
            created=operation == "save",
            details={"operation": operation},
        )

    @staticmethod
    def _fields(root: etree._Element | None) -> dict[str, str]:
        found: dict[str, str] = {}
        if root is not None:
            for node in root.iter("FLD"):
                found.setdefault(node.get("NAME", ""), node.text or "")
        return found

    # reading back ---------------------------------------------------------------------------
    def _held_version(self, record: OutgoingRecord) -> str | None:
        """The NUM of the invoice holding this very version of `record`, if X3 has one."""
        where = f"{self._origin} query"
        result = self._call(
            "query",
            self.retry,
            objectKeys=self._keys([(self.reference_field, self._reference(record))]),
            listSize=self.list_size,
        )
        if not result.ok:
            said = "; ".join(map(str, result.messages)) or "no message"
            raise ConfigError(
                f"{where}: Sage X3 refused to query on {self.reference_field} ({said}) — check"
                " `reference_field` in the datafix"
            )
        numbers = [
            line[self.key_field]
            for line in query_lines(parse_result_xml(result.result_xml, where))
            if line.get(self.key_field)
        ]
        if not numbers:
            return None
        # X3 holds this reference: a resend must change that invoice, never save another
        self._numbers.setdefault(record.key, numbers[0])
        expected = self._header(record)
        for number in numbers:
            read = self._call("read", self.retry, objectKeys=self._keys([(self.key_field, number)]))
            if not read.ok:
                continue
            held = self._fields(parse_result_xml(read.result_xml, f"{self._origin} read"))
            if self.version_field:
                matches = held.get(self.version_field) == record.idempotency_key
            else:
                matches = all(_same(held.get(name, ""), text) for name, text in expected.items())
            if matches:
                self._numbers[record.key] = number
                self._versions[record.key] = record.idempotency_key
                return number
        return None
