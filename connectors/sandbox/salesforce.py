"""A local HTTPS Salesforce that answers the REST and Bulk API 2.0 calls simple-salesforce makes.

simple-salesforce hard-codes `https://`, so the peer terminates real TLS: at start it makes a CA
and a server certificate for 127.0.0.1/localhost with `trustme`, and exposes the CA bundle
(`peer.ca_path`) for the client's `requests.Session` (`session.verify = peer.ca_path`).

What it answers (paths under `/services/data/v{version}/`, version 20.0 to 66.0):
- `GET query/?q=` and `queryAll/?q=` (queryAll also returns deleted rows), pages of
  `page_size` records with `done`, `totalSize` and a `nextRecordsUrl` *path*
  (`/services/data/v59.0/query/01g…-200`) that `GET` serves next (simple-salesforce joins it
  to `https://{instance}` as is).
- `GET sobjects/`, `GET sobjects/{Object}/describe/`, `GET limits/`, `GET /services/data/`.
- Bulk API 2.0 query jobs: `POST jobs/query` (state `UploadComplete`), `GET jobs/query/{id}`
  (`InProgress` for `bulk_polls_in_progress` polls, then `JobComplete`), `GET
  jobs/query/{id}/results?maxRecords=&locator=` (CSV, every value quoted, pages of at most
  `bulk_page_size` rows, `Sforce-Locator` (`null` on the last page) and
  `Sforce-NumberOfRecords` headers, gzip when the client accepts it), `PATCH` (abort) and
  `DELETE`. Ingest jobs are not served yet: add routes with `peer.add_route`.
- Every answer carries `Sforce-Limit-Info: api-usage=N/M`; each authenticated call counts.
- Errors are JSON lists `[{"message", "errorCode"}]`: 401 `INVALID_SESSION_ID`, 403
  `REQUEST_LIMIT_EXCEEDED`, 400 `MALFORMED_QUERY` / `INVALID_FIELD` / `INVALID_TYPE`, 404
  `NOT_FOUND`, 503 `SERVER_UNAVAILABLE`.

SOQL subset: `SELECT f, Rel.f FROM Object [WHERE cond] [ORDER BY f [ASC|DESC] [NULLS
FIRST|LAST], …] [LIMIT n]`, where `cond` combines `f op literal` (`= != <> < <= > >=`),
`f [NOT] IN (…)`, `f LIKE '…'`, `AND`, `OR`, `NOT` and parentheses; literals are quoted strings,
numbers, `true`/`false`/`null`, unquoted dates and UTC date-times (quoting a date-time is refused
as Salesforce does). Names are case-insensitive; answers use the API names' own case. REST
writes date-times as `2026-01-05T10:00:00.000+0000`, Bulk CSV as `2026-01-05T10:00:00.000Z`.

Faults for tests (`peer.faults`): an expired session, the next N calls answering 503, the next
N calls answering only after a delay; `peer.exhaust_api_limit()` uses up the daily allocation.
`peer.calls` counts calls per `METHOD path`. `demo_store()` is the org the sandbox serves
(`connectors/sandbox/run.py`), with a few deliberately bad records. No dagster import: this is
a plain helper.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import datetime as dt
import functools
import gzip
import io
import itertools
import json
import re
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "DATA_PATH",
    "DEFAULT_SESSION_ID",
    "DEMO_ACCOUNT",
    "DEMO_WORK_ORDERS",
    "FIELD_SERVICE_SCHEMA",
    "FieldSpec",
    "ObjectSpec",
    "PeerFault",
    "PeerFaults",
    "PeerRequest",
    "PeerResponse",
    "SalesforcePeer",
    "SalesforceStore",
    "demo_store",
    "field_service_store",
    "json_text",
    "parse_soql",
    "salesforce_id",
]

DEFAULT_SESSION_ID = "00D5E0000000001!AQ4AQLocalPeerSessionForTestsOnly"
UTC = dt.UTC

# --------------------------------------------------------------------------------------------
# Schema: the objects the peer knows, with Field Service names (PROTOCOLS.md §1.9)


@dataclass(frozen=True)
class FieldSpec:
    """One field: its API name and type (`id`, `string`, `textarea`, `picklist`, `reference`,
    `datetime`, `date`, `currency`, `double`, `int`, `boolean`)."""

    name: str
    type: str = "string"
    reference_to: str | None = None
    relationship_name: str | None = None
    external_id: bool = False


@dataclass(frozen=True)
class ObjectSpec:
    """One sObject type: API name, the 3-character key prefix of its ids, its fields."""

    name: str
    key_prefix: str
    fields: tuple[FieldSpec, ...]

    def field(self, name: str) -> FieldSpec | None:
        lowered = name.lower()
        return next((spec for spec in self.fields if spec.name.lower() == lowered), None)

    def relationship(self, name: str) -> FieldSpec | None:
        lowered = name.lower()
        return next(
            (
                spec
                for spec in self.fields
                if spec.relationship_name and spec.relationship_name.lower() == lowered
            ),
            None,
        )


def _system_fields() -> tuple[FieldSpec, ...]:
    return (
        FieldSpec("Id", "id"),
        FieldSpec("IsDeleted", "boolean"),
        FieldSpec("CreatedDate", "datetime"),
        FieldSpec("LastModifiedDate", "datetime"),
        FieldSpec("SystemModstamp", "datetime"),
    )


def _account_lookup() -> FieldSpec:
    return FieldSpec("AccountId", "reference", "Account", "Account")


FIELD_SERVICE_SCHEMA: dict[str, ObjectSpec] = {
    spec.name: spec
    for spec in (
        ObjectSpec(
            "Account",
            "001",
            (
                *_system_fields(),
                FieldSpec("Name"),
                FieldSpec("BillingCity"),
                FieldSpec("BillingPostalCode"),
            ),
        ),
        ObjectSpec(
            "WorkOrder",
            "0WO",
            (
                *_system_fields(),
                FieldSpec("WorkOrderNumber"),
                FieldSpec("Status", "picklist"),
                FieldSpec("StatusCategory", "picklist"),
                FieldSpec("Priority", "picklist"),
                FieldSpec("Subject"),
                FieldSpec("Description", "textarea"),
                FieldSpec("StartDate", "datetime"),
                FieldSpec("EndDate", "datetime"),
                FieldSpec("Duration", "double"),
                FieldSpec("DurationType", "picklist"),
                _account_lookup(),
                FieldSpec("Street", "textarea"),
                FieldSpec("City"),
                FieldSpec("PostalCode"),
                FieldSpec("BT_Number__c", external_id=True),
                FieldSpec("Montant_Engage__c", "currency"),
                FieldSpec("Urgent__c", "boolean"),
                FieldSpec("Date_Commande__c", "date"),
                FieldSpec("Categorie__c", "picklist"),
            ),
        ),
        ObjectSpec(
            "ServiceAppointment",
            "08p",
            (
                *_system_fields(),
                FieldSpec("AppointmentNumber"),
                FieldSpec("Status", "picklist"),
                FieldSpec("StatusCategory", "picklist"),
                FieldSpec("Subject"),
                # polymorphic in Salesforce: no relationship traversal offered here
                FieldSpec("ParentRecordId", "reference", "WorkOrder"),
                _account_lookup(),
                FieldSpec("EarliestStartTime", "datetime"),
                FieldSpec("DueDate", "datetime"),
                FieldSpec("SchedStartTime", "datetime"),
                FieldSpec("SchedEndTime", "datetime"),
                FieldSpec("ArrivalWindowStartTime", "datetime"),
                FieldSpec("ArrivalWindowEndTime", "datetime"),
                FieldSpec("ActualStartTime", "datetime"),
                FieldSpec("ActualEndTime", "datetime"),
                FieldSpec("ActualDuration", "double"),
                FieldSpec("Duration", "double"),
                FieldSpec("DurationType", "picklist"),
                FieldSpec("Work_Order__c", "reference", "WorkOrder", "Work_Order__r"),
                FieldSpec("BT_Number__c"),
                FieldSpec("Technicien__c"),
                FieldSpec("Absence_Locataire__c", "boolean"),
                FieldSpec("Note_Locataire__c", "double"),
            ),
        ),
    )
}

_ID_CHECKSUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def salesforce_id(prefix: str, number: int) -> str:
    """An 18-character id shaped like Salesforce's: prefix, pod, counter, case checksum."""
    short = f"{prefix}5E{number:010d}"
    suffix = ""
    for chunk in range(3):
        bits = sum(
            1 << i for i, char in enumerate(short[chunk * 5 : chunk * 5 + 5]) if char.isupper()
        )
        suffix += _ID_CHECKSUM[bits]
    return short + suffix


# --------------------------------------------------------------------------------------------
# The record store


class SalesforceStore:
    """Records per object, typed: `str`, `Decimal`, `int`, `bool`, `date`, aware `datetime`,
    `None`. Thread-safe through the peer's lock only: use it from one thread at a time."""

    def __init__(self, schema: Mapping[str, ObjectSpec] = FIELD_SERVICE_SCHEMA) -> None:
        self.schema = dict(schema)
        self.records: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in self.schema}
        self._numbers = itertools.count(1)
        self.clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(UTC)

    def spec(self, object_name: str) -> ObjectSpec | None:
        lowered = object_name.lower()
        return next((spec for name, spec in self.schema.items() if name.lower() == lowered), None)

    def _typed(self, spec: ObjectSpec, values: Mapping[str, Any]) -> dict[str, Any]:
        typed: dict[str, Any] = {}
        for name, value in values.items():
            field_spec = spec.field(name)
            if field_spec is None:
                raise KeyError(f"no field {name} on {spec.name}")
            typed[field_spec.name] = _coerce(field_spec, value)
        return typed

    def insert(self, object_name: str, values: Mapping[str, Any]) -> str:
        """Add a record (system fields filled in when absent); its id."""
        spec = self.spec(object_name)
        if spec is None:
            raise KeyError(f"no object {object_name}")
        record: dict[str, Any] = {field_spec.name: None for field_spec in spec.fields}
        now = self.clock()
        record.update(
            Id=salesforce_id(spec.key_prefix, next(self._numbers)),
            IsDeleted=False,
            CreatedDate=now,
            LastModifiedDate=now,
            SystemModstamp=now,
        )
        record.update(self._typed(spec, values))
        self.records[spec.name][record["Id"]] = record
        return record["Id"]

    def update(self, object_name: str, record_id: str, values: Mapping[str, Any]) -> None:
        """Change fields of a record; `LastModifiedDate` and `SystemModstamp` move to now."""
        spec = self.spec(object_name)
        assert spec is not None
        record = self.records[spec.name][record_id]
        now = self.clock()
        record.update(self._typed(spec, values))
        record.update(LastModifiedDate=now, SystemModstamp=now)

    def get(self, object_name: str, record_id: str | None) -> dict[str, Any] | None:
        spec = self.spec(object_name)
        if spec is None or record_id is None:
            return None
        return self.records[spec.name].get(record_id)

    def rows(self, object_name: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        spec = self.spec(object_name)
        assert spec is not None
        return [
            record
            for record in self.records[spec.name].values()
            if include_deleted or not record["IsDeleted"]
        ]


def _coerce(spec: FieldSpec, value: Any) -> Any:
    if value is None:
        return None
    kind = spec.type
    if kind == "boolean":
        return bool(value)
    if kind in ("currency", "double"):
        return value if isinstance(value, Decimal) else Decimal(str(value))
    if kind == "int":
        return int(value)
    if kind == "datetime":
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    if kind == "date":
        return dt.date.fromisoformat(value) if isinstance(value, str) else value
    return str(value)


# --------------------------------------------------------------------------------------------
# Demo data: social landlords' maintenance works in Field Service objects

_WORK_ORDER_STATUSES = (
    "New",
    "In Progress",
    "On Hold",
    "Completed",
    "Cannot Complete",
    "Closed",
    "Canceled",
)
_APPOINTMENT_STATUSES = (
    "None",
    "Scheduled",
    "Dispatched",
    "In Progress",
    "Completed",
    "Cannot Complete",
    "Canceled",
)
_SUBJECTS = (
    "Recherche de fuite, salle de bains",
    "Dépannage chaudière",
    'Remplacement "cumulus" 200 L',
    "Porte palière; serrure bloquée",
    "Débouchage colonne d’eaux usées",
    "VMC bruyante",
)
_CATEGORIES = ("dépannage", "recherche de fuite", "travaux programmés", "entretien")
_ACCOUNTS = (
    ("Loire Habitat Social", "Nantes", "44000"),
    ('Opale "Logement"', "Boulogne-sur-Mer", "62200"),
    ("Cité des Jardins, Lyon", "Lyon", "69007"),
    ("Résidences de l'Estuaire", "Saint-Nazaire", "44600"),
    ("Habitat Côte d’Opale", "Calais", "62100"),
)
_TECHNICIANS = ("Léa Martin", "Karim Benali", "Sophie O'Neill", "Jean-Luc Durand")
_MODSTAMP_START = dt.datetime(2025, 12, 1, tzinfo=UTC)


def field_service_store(work_orders: int = 450, *, appointments_every: int = 2) -> SalesforceStore:
    """A deterministic org: 5 accounts, `work_orders` work orders (one every 97 deleted), and a
    service appointment for every `appointments_every`-th work order.

    Work order `i` has `SystemModstamp` 2025-12-01 + 3 h × i (so `i = 248` is exactly
    2026-01-01T00:00:00Z), amounts as exact decimals (some null), an urgent flag, an order date,
    texts with commas, quotes, semicolons, accents and (every tenth) a line break.
    """
    store = SalesforceStore()
    account_ids = []
    for number, (name, city, postcode) in enumerate(_ACCOUNTS):
        stamp = _MODSTAMP_START - dt.timedelta(days=30 - number)
        account_ids.append(
            store.insert(
                "Account",
                {
                    "Name": name,
                    "BillingCity": city,
                    "BillingPostalCode": postcode,
                    "CreatedDate": stamp,
                    "LastModifiedDate": stamp,
                    "SystemModstamp": stamp,
                },
            )
        )
    appointment = 0
    for i in range(work_orders):
        stamp = _MODSTAMP_START + dt.timedelta(hours=3 * i)
        start = stamp + dt.timedelta(days=2, minutes=30 * (i % 4))
        account_index = i % len(_ACCOUNTS)
        status = _WORK_ORDER_STATUSES[i % len(_WORK_ORDER_STATUSES)]
        amount = None if i % 13 == 5 else Decimal(f"{(i * 137) % 9000 + 50}.{(i * 7) % 100:02d}")
        order_id = store.insert(
            "WorkOrder",
            {
                "WorkOrderNumber": f"{i + 1:08d}",
                "Status": status,
                "StatusCategory": status.replace(" ", ""),
                "Priority": ("Low", "Medium", "High", "Critical")[i % 4],
                "Subject": f"{_SUBJECTS[i % len(_SUBJECTS)]} — logement {i % 97 + 1}",
                "Description": "Fuite sous l'évier\nAccès par le gardien" if i % 10 == 0 else None,
                "StartDate": start,
                "EndDate": None if i % 3 == 0 else start + dt.timedelta(hours=2),
                "Duration": Decimal("1.5") if i % 2 else Decimal("2"),
                "DurationType": "Hours",
                "AccountId": None if i % 11 == 7 else account_ids[account_index],
                "Street": f"{i % 40 + 1} rue des Lilas",
                "City": _ACCOUNTS[account_index][1],
                "PostalCode": _ACCOUNTS[account_index][2],
                "BT_Number__c": f"BT{345678 + i}",
                "Montant_Engage__c": amount,
                "Urgent__c": i % 5 == 0,
                "Date_Commande__c": dt.date(2025, 11, 20) + dt.timedelta(days=i // 3),
                "Categorie__c": _CATEGORIES[i % len(_CATEGORIES)],
                "IsDeleted": i % 97 == 96,
                "CreatedDate": stamp - dt.timedelta(days=1),
                "LastModifiedDate": stamp,
                "SystemModstamp": stamp,
            },
        )
        if i % appointments_every:
            continue
        appointment += 1
        done = status in ("Completed", "Closed")
        store.insert(
            "ServiceAppointment",
            {
                "AppointmentNumber": f"SA-{appointment:04d}",
                "Status": "Completed" if done else _APPOINTMENT_STATUSES[i % 7],
                "StatusCategory": "Completed" if done else _APPOINTMENT_STATUSES[i % 7],
                "Subject": f"Intervention BT{345678 + i}",
                "ParentRecordId": order_id,
                "AccountId": None if i % 11 == 7 else account_ids[account_index],
                "EarliestStartTime": stamp,
                "DueDate": stamp + dt.timedelta(days=7),
                "SchedStartTime": start,
                "SchedEndTime": start + dt.timedelta(hours=2),
                "ArrivalWindowStartTime": start - dt.timedelta(hours=1),
                "ArrivalWindowEndTime": start + dt.timedelta(hours=1),
                "ActualStartTime": start + dt.timedelta(minutes=10) if done else None,
                "ActualEndTime": start + dt.timedelta(minutes=95) if done else None,
                "ActualDuration": Decimal("85") if done else None,
                "Duration": Decimal("2"),
                "DurationType": "Hours",
                "Work_Order__c": order_id,
                "BT_Number__c": f"BT{345678 + i}",
                "Technicien__c": _TECHNICIANS[i % len(_TECHNICIANS)],
                "Absence_Locataire__c": i % 9 == 4,
                "Note_Locataire__c": Decimal(i % 5 + 1) if done else None,
                "CreatedDate": stamp,
                "LastModifiedDate": stamp,
                "SystemModstamp": stamp + dt.timedelta(minutes=1),
            },
        )
    return store


DEMO_WORK_ORDERS = 120
DEMO_ACCOUNT = "Résidences de l'Estuaire"


def demo_store() -> SalesforceStore:
    """The org the sandbox serves (`datafix sandbox`, `datafix demo`): `field_service_store`
    with `DEMO_WORK_ORDERS` work orders, plus one deliberately bad work order of
    `DEMO_ACCOUNT`, with no `BT_Number__c` (the landlord's order number was never typed in).

    The store has bad records of its own, which the demo's quarantine shows too: work orders
    `Cannot Complete` (a status the hub has no value for), and their appointments marked
    `Completed` with no `ActualEndTime`. Identical from one call to the next (every date is
    fixed).
    """
    store = field_service_store(DEMO_WORK_ORDERS)
    account_id = next(
        record_id
        for record_id, record in store.records["Account"].items()
        if record["Name"] == DEMO_ACCOUNT
    )
    stamp = _MODSTAMP_START + dt.timedelta(hours=3 * DEMO_WORK_ORDERS)
    store.insert(
        "WorkOrder",
        {
            "WorkOrderNumber": f"{DEMO_WORK_ORDERS + 1:08d}",
            "Status": "New",
            "StatusCategory": "New",
            "Priority": "High",
            "Subject": "Dégât des eaux, plafond de la cuisine",
            "AccountId": account_id,
            "City": "Saint-Nazaire",
            "PostalCode": "44600",
            "BT_Number__c": None,
            "Montant_Engage__c": Decimal("640.00"),
            "Date_Commande__c": dt.date(2026, 1, 5),
            "Categorie__c": "dépannage",
            "CreatedDate": stamp,
            "LastModifiedDate": stamp,
            "SystemModstamp": stamp,
        },
    )
    return store


# --------------------------------------------------------------------------------------------
# Errors and value formats


class PeerFault(Exception):
    """An error answer: HTTP status and Salesforce's `errorCode` and `message`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def _malformed(message: str) -> PeerFault:
    return PeerFault(400, "MALFORMED_QUERY", message)


def _no_column(name: str, entity: str) -> PeerFault:
    return PeerFault(
        400,
        "INVALID_FIELD",
        f"No such column '{name}' on entity '{entity}'. If you are attempting to use a custom"
        " field, be sure to append the '__c' after the custom field name. Please reference your"
        " WSDL or the describe call for the appropriate names.",
    )


def _rest_datetime(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S") + f".{value.microsecond // 1000:03d}+0000"


def _csv_datetime(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S") + f".{value.microsecond // 1000:03d}Z"


# a Decimal travels through json.dumps as a marked string, then loses its quotes: the C encoder
# stays in charge and the digits are written exactly as stored
_NUMBER_MARK = "\x00decimal\x00"
_MARKED_NUMBER = re.compile(r'"\\u0000decimal\\u0000([-+0-9.Ee]+)"')


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return f"{_NUMBER_MARK}{value}"
    if isinstance(value, dt.datetime):
        return _rest_datetime(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def json_text(value: Any) -> str:
    """JSON with `Decimal` written digit for digit (the json module would need floats) and
    date-times as REST writes them."""
    text = json.dumps(value, ensure_ascii=False, default=_json_default, separators=(",", ":"))
    return _MARKED_NUMBER.sub(r"\1", text)


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return _csv_datetime(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


# --------------------------------------------------------------------------------------------
# SOQL: a practical subset, parsed and run over the store

_TOKEN = re.compile(
    r"""(?P<space>\s+)
    |(?P<string>'(?:[^'\\]|\\.)*')
    |(?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:?\d{2}))
    |(?P<date>\d{4}-\d{2}-\d{2}(?![\dT]))
    |(?P<number>[+-]?\d+(?:\.\d+)?)
    |(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    |(?P<op><=|>=|!=|<>|=|<|>)
    |(?P<punct>[(),])""",
    re.VERBOSE,
)
_KEYWORDS = frozenset(
    [
        "SELECT",
        "FROM",
        "WHERE",
        "AND",
        "OR",
        "NOT",
        "IN",
        "LIKE",
        "ORDER",
        "BY",
        "ASC",
        "DESC",
        "NULLS",
        "FIRST",
        "LAST",
        "LIMIT",
    ]
)
_STRING_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}
_TEXT_TYPES = frozenset({"id", "string", "textarea", "picklist", "reference"})
_NUMBER_TYPES = frozenset({"currency", "double", "int"})


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    column: int

    @property
    def word(self) -> str:
        return self.text.upper() if self.kind == "name" else ""


@dataclass(frozen=True)
class _Path:
    """A resolved field path: the reference fields followed, then the field read."""

    hops: tuple[FieldSpec, ...]
    field: FieldSpec

    @property
    def name(self) -> str:
        return ".".join([*(hop.relationship_name or "" for hop in self.hops), self.field.name])


@dataclass(frozen=True)
class Query:
    """A parsed SOQL query (the subset above)."""

    object: ObjectSpec
    fields: tuple[_Path, ...]
    condition: Callable[[dict[str, Any], SalesforceStore], bool] | None
    order: tuple[tuple[_Path, bool, bool], ...]  # path, descending, nulls last
    limit: int | None

    def run(self, store: SalesforceStore, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        rows = [
            record
            for record in sorted(
                store.rows(self.object.name, include_deleted=include_deleted),
                key=lambda record: record["Id"],
            )
            if self.condition is None or self.condition(record, store)
        ]
        for path, descending, nulls_last in reversed(self.order):
            present = [row for row in rows if _value(path, row, store) is not None]
            absent = [row for row in rows if _value(path, row, store) is None]
            present.sort(key=lambda row: _sort_key(_value(path, row, store)), reverse=descending)
            rows = present + absent if nulls_last else absent + present
        return rows if self.limit is None else rows[: self.limit]


def _value(path: _Path, record: dict[str, Any] | None, store: SalesforceStore) -> Any:
    for hop in path.hops:
        if record is None:
            return None
        record = store.get(hop.reference_to or "", record.get(hop.name))
    return None if record is None else record.get(path.field.name)


def _sort_key(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _tokens(text: str) -> list[_Token]:
    tokens = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise _malformed(
                f"ERROR at Row:1:Column:{position + 1} unexpected token: '{text[position]}'"
            )
        if match.lastgroup != "space":
            tokens.append(_Token(match.lastgroup or "", match.group(), position + 1))
        position = match.end()
    tokens.append(_Token("end", "<EOF>", len(text) + 1))
    return tokens


class _Parser:
    def __init__(self, text: str, schema: Callable[[str], ObjectSpec | None]) -> None:
        self.tokens = _tokens(text)
        self.position = 0
        self.schema = schema
        self.object: ObjectSpec | None = None

    # -- token helpers
    def peek(self) -> _Token:
        return self.tokens[self.position]

    def take(self) -> _Token:
        token = self.tokens[self.position]
        self.position += 1
        return token

    def unexpected(self, token: _Token | None = None) -> PeerFault:
        token = token or self.peek()
        return _malformed(f"ERROR at Row:1:Column:{token.column} unexpected token: '{token.text}'")

    def expect_word(self, *words: str) -> None:
        for word in words:
            if self.peek().word != word:
                raise self.unexpected()
            self.take()

    def accept_word(self, word: str) -> bool:
        if self.peek().word == word:
            self.take()
            return True
        return False

    def expect_punct(self, text: str) -> None:
        if self.peek().text != text:
            raise self.unexpected()
        self.take()

    # -- names
    def resolve(self, dotted: str) -> _Path:
        assert self.object is not None
        current = self.object
        parts = dotted.split(".")
        if len(parts) > 1 and parts[0].lower() == current.name.lower():
            parts = parts[1:]  # `WorkOrder.Status` is allowed
        hops = []
        for part in parts[:-1]:
            hop = current.relationship(part)
            if hop is None or hop.reference_to is None:
                raise PeerFault(
                    400,
                    "INVALID_FIELD",
                    f"Didn't understand relationship '{part}' in field path. If you are"
                    " attempting to use a custom relationship, be sure to append the '__r'"
                    " after the custom relationship name. Please reference your WSDL or the"
                    " describe call for the appropriate names.",
                )
            hops.append(hop)
            target = self.schema(hop.reference_to)
            assert target is not None
            current = target
        spec = current.field(parts[-1])
        if spec is None:
            raise _no_column(parts[-1], current.name)
        return _Path(tuple(hops), spec)

    def field_name(self) -> str:
        token = self.take()
        if token.kind != "name" or token.word in _KEYWORDS:
            raise self.unexpected(token)
        if self.peek().text == "(":
            raise _malformed(
                f"ERROR at Row:1:Column:{token.column} function {token.text}() is not supported"
                " by this local peer"
            )
        return token.text

    # -- grammar
    def query(self) -> Query:
        self.expect_word("SELECT")
        names = [self.field_name()]
        while self.peek().text == ",":
            self.take()
            names.append(self.field_name())
        self.expect_word("FROM")
        token = self.take()
        if token.kind != "name" or token.word in _KEYWORDS or "." in token.text:
            raise self.unexpected(token)
        self.object = self.schema(token.text)
        if self.object is None:
            raise PeerFault(
                400,
                "INVALID_TYPE",
                f"sObject type '{token.text}' is not supported. If you are attempting to use a"
                " custom object, be sure to append the '__c' after the entity name. Please"
                " reference your WSDL or the describe call for the appropriate names.",
            )
        fields = tuple(self.resolve(name) for name in names)
        seen: set[str] = set()
        for path in fields:
            if path.name.lower() in seen:
                raise _malformed(f"duplicate field selected: {path.name}")
            seen.add(path.name.lower())
        condition = None
        if self.accept_word("WHERE"):
            condition = self.disjunction()
        order: list[tuple[_Path, bool, bool]] = []
        if self.accept_word("ORDER"):
            self.expect_word("BY")
            while True:
                path = self.resolve(self.field_name())
                descending = self.accept_word("DESC")
                if not descending:
                    self.accept_word("ASC")
                nulls_last = descending
                if self.accept_word("NULLS"):
                    if self.accept_word("LAST"):
                        nulls_last = True
                    else:
                        self.expect_word("FIRST")
                        nulls_last = False
                order.append((path, descending, nulls_last))
                if self.peek().text != ",":
                    break
                self.take()
        limit = None
        if self.accept_word("LIMIT"):
            token = self.take()
            if token.kind != "number" or not token.text.isdigit():
                raise self.unexpected(token)
            limit = int(token.text)
        if self.peek().kind != "end":
            raise self.unexpected()
        return Query(self.object, fields, condition, tuple(order), limit)

    def disjunction(self) -> Callable[[dict[str, Any], SalesforceStore], bool]:
        parts = [self.conjunction()]
        while self.accept_word("OR"):
            parts.append(self.conjunction())
        if len(parts) == 1:
            return parts[0]
        return lambda record, store: any(part(record, store) for part in parts)

    def conjunction(self) -> Callable[[dict[str, Any], SalesforceStore], bool]:
        parts = [self.negation()]
        while self.accept_word("AND"):
            parts.append(self.negation())
        if len(parts) == 1:
            return parts[0]
        return lambda record, store: all(part(record, store) for part in parts)

    def negation(self) -> Callable[[dict[str, Any], SalesforceStore], bool]:
        if self.accept_word("NOT"):
            inner = self.negation()
            return lambda record, store: not inner(record, store)
        if self.peek().text == "(":
            self.take()
            inner = self.disjunction()
            self.expect_punct(")")
            return inner
        return self.comparison()

    def literal(self, path: _Path) -> Any:
        token = self.take()
        spec = path.field
        kind = spec.type
        if token.word == "NULL":
            return None
        if kind == "datetime":
            if token.kind != "datetime":
                raise PeerFault(
                    400,
                    "INVALID_FIELD",
                    f"value of filter criterion for field '{spec.name}' must be of type dateTime"
                    " and should not be enclosed in quotes",
                )
            text = token.text.replace("Z", "+00:00")
            return dt.datetime.fromisoformat(text).astimezone(UTC)
        if kind == "date":
            if token.kind != "date":
                raise PeerFault(
                    400,
                    "INVALID_FIELD",
                    f"value of filter criterion for field '{spec.name}' must be of type date"
                    " and should not be enclosed in quotes",
                )
            return dt.date.fromisoformat(token.text)
        if kind == "boolean":
            if token.word not in ("TRUE", "FALSE"):
                raise PeerFault(
                    400,
                    "INVALID_FIELD",
                    f"value of filter criterion for field '{spec.name}' must be of type boolean"
                    " and should not be enclosed in quotes",
                )
            return token.word == "TRUE"
        if kind in _NUMBER_TYPES:
            if token.kind != "number":
                raise PeerFault(
                    400,
                    "INVALID_FIELD",
                    f"value of filter criterion for field '{spec.name}' must be of type double"
                    " and should not be enclosed in quotes",
                )
            return Decimal(token.text)
        if token.kind != "string":
            if token.kind == "end" or token.kind in ("op", "punct"):
                raise self.unexpected(token)
            raise PeerFault(
                400,
                "INVALID_FIELD",
                f"value of filter criterion for field '{spec.name}' must be of type string and"
                " should be enclosed in quotes",
            )
        return re.sub(
            r"\\(.)", lambda m: _STRING_ESCAPES.get(m[1], m[1]), token.text[1:-1], flags=re.S
        )

    def comparison(self) -> Callable[[dict[str, Any], SalesforceStore], bool]:
        path = self.resolve(self.field_name())
        token = self.peek()
        if token.kind == "op":
            self.take()
            operator = "!=" if token.text == "<>" else token.text
            literal = self.literal(path)
            return lambda record, store: _compare(_value(path, record, store), operator, literal)
        negate = self.accept_word("NOT")
        if self.accept_word("IN"):
            self.expect_punct("(")
            values = [self.literal(path)]
            while self.peek().text == ",":
                self.take()
                values.append(self.literal(path))
            self.expect_punct(")")
            keys = {_sort_key(value) for value in values}
            return lambda record, store: (_sort_key(_value(path, record, store)) in keys) != negate
        if not negate and self.accept_word("LIKE"):
            pattern_token = self.peek()
            literal = self.literal(path)
            if not isinstance(literal, str):
                raise self.unexpected(pattern_token)
            pattern = re.compile(
                "".join(
                    ".*" if char == "%" else "." if char == "_" else re.escape(char)
                    for char in literal
                ),
                re.IGNORECASE | re.DOTALL,
            )
            return lambda record, store: bool(
                isinstance(value := _value(path, record, store), str) and pattern.fullmatch(value)
            )
        raise self.unexpected()


def _compare(value: Any, operator: str, literal: Any) -> bool:
    if literal is None or value is None:
        if operator == "=":
            return value is None and literal is None
        if operator == "!=":
            return (value is None) != (literal is None)
        return False
    left, right = _sort_key(value), _sort_key(literal)
    if operator == "=":
        return left == right
    if operator == "!=":
        return left != right
    if operator == "<":
        return left < right
    if operator == "<=":
        return left <= right
    if operator == ">":
        return left > right
    return left >= right


def parse_soql(text: str, schema: Callable[[str], ObjectSpec | None]) -> Query:
    """Parse `text` against the known objects; a `PeerFault` (400) says what is wrong."""
    return _Parser(text, schema).query()


def _rest_record(
    spec: ObjectSpec,
    record: dict[str, Any],
    paths: Sequence[_Path],
    store: SalesforceStore,
    version: str,
) -> dict[str, Any]:
    """One record as REST writes it: `attributes`, then fields, parents as nested records."""
    out: dict[str, Any] = {
        "attributes": {
            "type": spec.name,
            "url": f"/services/data/v{version}/sobjects/{spec.name}/{record['Id']}",
        }
    }
    parents: dict[str, tuple[FieldSpec, list[_Path]]] = {}
    for path in paths:
        if not path.hops:
            out[path.field.name] = record.get(path.field.name)
            continue
        hop = path.hops[0]
        name = hop.relationship_name or hop.name
        if name not in parents:
            parents[name] = (hop, [])
            out[name] = None  # keeps the select-list order
        parents[name][1].append(_Path(path.hops[1:], path.field))
    for name, (hop, sub_paths) in parents.items():
        parent = store.get(hop.reference_to or "", record.get(hop.name))
        parent_spec = store.spec(hop.reference_to or "")
        if parent is not None and parent_spec is not None:
            out[name] = _rest_record(parent_spec, parent, sub_paths, store, version)
    return out


# --------------------------------------------------------------------------------------------
# HTTP plumbing


@dataclass
class PeerRequest:
    """A request as a route handler sees it."""

    method: str
    path: str
    params: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    version: str = ""
    match: re.Match[str] | None = None

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.params.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            raise PeerFault(400, "JSON_PARSER_ERROR", "Unexpected character in the body") from None


@dataclass
class PeerResponse:
    """What a route handler answers; `body=None` for 204."""

    status: int = 200
    body: bytes | None = b""
    content_type: str = "application/json;charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, value: Any, status: int = 200) -> PeerResponse:
        return cls(status, json_text(value).encode())


@dataclass
class PeerFaults:
    """Faults the peer plays, set by a test (thread-safe through the peer's lock)."""

    expired_session: bool = False
    unavailable_calls: int = 0  # the next N calls answer 503 SERVER_UNAVAILABLE
    slow_calls: int = 0  # the next N calls answer after `slow_seconds`
    slow_seconds: float = 0.0
    path_prefix: str = "/"  # the 503 and slow faults only hit paths starting with this


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Callable[[PeerRequest], PeerResponse]
    public: bool = False


@dataclass
class _Cursor:
    rows: list[dict[str, Any]]
    total: int


@dataclass
class _QueryJob:
    id: str
    operation: str
    object: str
    query: Query
    delimiter: str
    line_ending: str
    api_version: str
    created: dt.datetime
    rows: list[list[str]] | None = None
    header: list[str] = field(default_factory=list)
    state: str = "UploadComplete"
    polls: int = 0

    def info(self) -> dict[str, Any]:
        stamp = _rest_datetime(self.created)
        info: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.object,
            "createdById": salesforce_id("005", 1),
            "createdDate": stamp,
            "systemModstamp": stamp,
            "state": self.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": Decimal(self.api_version),
            "jobType": "V2Query",
            "lineEnding": self.line_ending,
            "columnDelimiter": self.delimiter,
        }
        if self.state == "JobComplete" and self.rows is not None:
            info.update(numberRecordsProcessed=len(self.rows), retries=0, totalProcessingTime=42)
        return info


_DELIMITERS = {"COMMA": ",", "SEMICOLON": ";", "TAB": "\t", "PIPE": "|", "CARET": "^"}
_DELIMITERS["BACKQUOTE"] = "`"
_LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
DATA_PATH = r"/services/data/v(?P<version>\d+\.\d)/"


class _Server(ThreadingHTTPServer):
    # handler threads are tracked (socketserver only tracks non-daemon ones) and joined by
    # server_close(); stop() first shuts their sockets down so none of them lingers
    daemon_threads = False
    block_on_close = True

    def __init__(self, peer: SalesforcePeer, context: ssl.SSLContext, port: int = 0) -> None:
        self.peer = peer
        self.context = context
        super().__init__(("127.0.0.1", port), _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs here, in the connection's own thread, not in the accept loop.
        # stop() shuts connections down through a duplicate of the socket: shutdown() acts on
        # the connection itself, and the TLS object of another thread is never touched.
        handle = request.dup()
        try:
            if not self.peer._register(handle):
                return
            request.settimeout(10)
            # answers leave at once: small writes would otherwise wait on Nagle's algorithm
            # and the client's delayed ACK (40 ms per call)
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                connection = self.context.wrap_socket(request, server_side=True)
            except OSError:  # a client that does not trust the certificate, or went away
                return
            try:
                self.RequestHandlerClass(connection, client_address, self)
            except OSError:
                pass  # the client went away, or the peer is stopping
            finally:
                with contextlib.suppress(OSError):
                    connection.close()
        finally:
            self.peer._unregister(handle)
            handle.close()
            request.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            self.peer.errors.append(traceback.format_exc())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 1 << 16  # headers and body in as few TLS records as possible
    timeout = 30  # an idle keep-alive connection is dropped after this (stop() is faster)
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        request = PeerRequest(
            method=self.command,
            path=parts.path,
            params=parse_qs(parts.query, keep_blank_values=True),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
        )
        response = self.server.peer._dispatch(request)
        self.send_response(response.status)
        headers = {
            "Sforce-Limit-Info": self.server.peer._limit_info(),
            **response.headers,
        }
        payload = response.body
        if payload is not None:
            if "gzip" in request.headers.get(
                "accept-encoding", ""
            ) and response.content_type.startswith("text/csv"):
                payload = gzip.compress(payload, mtime=0)
                headers["Content-Encoding"] = "gzip"
            headers["Content-Type"] = response.content_type
            headers["Content-Length"] = str(len(payload))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


# --------------------------------------------------------------------------------------------
# The peer


@functools.cache
def _certificates() -> tuple[Any, Any]:
    """A CA and its certificate for 127.0.0.1/localhost, made once per process (key
    generation is the slow part of starting a peer)."""
    try:
        import trustme
    except ModuleNotFoundError:  # a dev dependency: the peer is for demos and tests
        raise RuntimeError(
            "the local Salesforce peer needs trustme — pip install trustme"
        ) from None
    authority = trustme.CA(organization_name="Datafix Hub local Salesforce peer")
    return authority, authority.issue_cert("127.0.0.1", "localhost")


class SalesforcePeer:
    """A Salesforce org on 127.0.0.1 over HTTPS; use as a context manager (or start/stop).

    `page_size` is the REST page size (Salesforce: 2,000), `bulk_page_size` the most rows per
    Bulk results page whatever `maxRecords` asks, `api_limit` the daily allocation, `port`
    the port to listen on (0: one the system picks).
    """

    def __init__(
        self,
        store: SalesforceStore | None = None,
        *,
        page_size: int = 2000,
        bulk_page_size: int = 50_000,
        session_id: str = DEFAULT_SESSION_ID,
        api_limit: int = 15_000,
        bulk_polls_in_progress: int = 1,
        port: int = 0,
    ) -> None:
        if page_size < 1 or bulk_page_size < 1:
            raise ValueError("page sizes must be at least 1")
        self.store = store if store is not None else field_service_store()
        self.page_size = page_size
        self.bulk_page_size = bulk_page_size
        self.session_id = session_id
        self.api_limit = api_limit
        self.api_used = 0
        self.bulk_polls_in_progress = bulk_polls_in_progress
        self.requested_port = port
        self.faults = PeerFaults()
        self.calls: Counter[str] = Counter()
        self.log: list[tuple[str, str, int]] = []  # method, path with query, status
        self.errors: list[str] = []  # unexpected exceptions inside the peer (tests assert [])
        self.lock = threading.RLock()
        self._routes: list[_Route] = []
        self._cursors: dict[str, _Cursor] = {}
        self._jobs: dict[str, _QueryJob] = {}
        self._numbers = itertools.count(1)
        self._connections: set[Any] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._folder: Path | None = None
        self._add_default_routes()

    # -- life cycle
    def start(self) -> SalesforcePeer:
        if self._server is not None:
            return self
        authority, certificate = _certificates()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        certificate.configure_cert(context)
        self._folder = Path(tempfile.mkdtemp(prefix="salesforce-peer-"))
        authority.cert_pem.write_to_path(str(self._folder / "ca.pem"))
        self._stopping.clear()
        try:
            self._server = _Server(self, context, self.requested_port)
        except OSError:  # the port is taken: leave nothing behind
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
            raise
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"salesforce-peer-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections, join every thread, remove the CA file."""
        server, thread = self._server, self._thread
        if server is None:
            return
        with self.lock:
            self._stopping.set()
        server.shutdown()
        with self.lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if thread is not None:
            thread.join()
        self._server = self._thread = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def __enter__(self) -> SalesforcePeer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _register(self, connection: Any) -> bool:
        with self.lock:
            if self._stopping.is_set():
                return False
            self._connections.add(connection)
            return True

    def _unregister(self, connection: Any) -> None:
        with self.lock:
            self._connections.discard(connection)

    # -- addresses
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the peer is not started")
        return int(self._server.server_address[1])

    @property
    def instance_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_path(self) -> str:
        """The CA bundle (PEM) that signs the peer's certificate."""
        if self._folder is None:
            raise RuntimeError("the peer is not started")
        return str(self._folder / "ca.pem")

    def http_session(self) -> Any:
        """A `requests.Session` that trusts the peer (the caller closes it)."""
        import requests

        session = requests.Session()
        session.verify = self.ca_path
        # otherwise REQUESTS_CA_BUNDLE (or a proxy variable) from the environment would win
        session.trust_env = False
        return session

    def session_auth(self) -> Any:
        """`SalesforceAuth` for this peer (session id + instance URL)."""
        from connectors.salesforce.models import SalesforceAuth

        return SalesforceAuth(session_id=self.session_id, instance_url=self.instance_url)

    # -- test helpers
    def count(self, method: str | None = None, path_prefix: str = "") -> int:
        """Calls received (any status) whose method and path match."""
        with self.lock:
            return sum(
                number
                for call, number in self.calls.items()
                if (method is None or call.split(" ", 1)[0] == method)
                and call.split(" ", 1)[1].startswith(path_prefix)
            )

    def exhaust_api_limit(self) -> None:
        with self.lock:
            self.api_used = self.api_limit

    def add_route(
        self,
        method: str,
        pattern: str,
        handler: Callable[[PeerRequest], PeerResponse],
        *,
        public: bool = False,
    ) -> None:
        """Serve `method` on paths matching `pattern`, a regex over the whole path (start it
        with `DATA_PATH` for `/services/data/vNN.N/`; the match is `request.match`, the version
        `request.version`). Calls are authenticated and counted unless `public`. Routes added
        later win over the defaults: this is where Bulk 2.0 ingest jobs or sObject writes go."""
        self._routes.insert(0, _Route(method, re.compile(pattern), handler, public))

    def _limit_info(self) -> str:
        with self.lock:
            return f"api-usage={self.api_used}/{self.api_limit}"

    # -- dispatch
    def _dispatch(self, request: PeerRequest) -> PeerResponse:
        with self.lock:
            self.calls[f"{request.method} {request.path}"] += 1
            targeted = request.path.startswith(self.faults.path_prefix)
            slow = targeted and self.faults.slow_calls > 0
            if slow:
                self.faults.slow_calls -= 1
            unavailable = targeted and self.faults.unavailable_calls > 0
            if unavailable:
                self.faults.unavailable_calls -= 1
        if slow:
            self._stopping.wait(self.faults.slow_seconds)
        try:
            if unavailable:
                raise PeerFault(
                    503, "SERVER_UNAVAILABLE", "Server temporarily unavailable, please retry"
                )
            response = self._route(request)
        except PeerFault as fault:
            response = PeerResponse.json([{"message": fault.message, "errorCode": fault.code}])
            response.status = fault.status
        except Exception:
            self.errors.append(traceback.format_exc())
            response = PeerResponse.json(
                [{"message": "An unexpected error occurred.", "errorCode": "UNKNOWN_EXCEPTION"}]
            )
            response.status = 500
        query = "&".join(f"{k}={v}" for k, values in request.params.items() for v in values)
        with self.lock:
            self.log.append(
                (request.method, request.path + (f"?{query}" if query else ""), response.status)
            )
        return response

    def _route(self, request: PeerRequest) -> PeerResponse:
        allowed = []
        for route in self._routes:
            match = route.pattern.fullmatch(request.path)
            if match is None:
                continue
            if route.method != request.method:
                allowed.append(route.method)
                continue
            request.match = match
            request.version = match.groupdict().get("version") or ""
            if request.version and not 20.0 <= float(request.version) <= 66.0:
                break
            if not route.public:
                self._authorise(request)
            return route.handler(request)
        if allowed:
            raise PeerFault(
                405,
                "METHOD_NOT_ALLOWED",
                f"HTTP Method '{request.method}' not allowed. Allowed are {','.join(allowed)}",
            )
        raise PeerFault(404, "NOT_FOUND", "The requested resource does not exist")

    def _authorise(self, request: PeerRequest) -> None:
        token = request.headers.get("authorization", "")
        scheme, _, value = token.partition(" ")
        with self.lock:
            if (
                self.faults.expired_session
                or scheme.lower() not in ("bearer", "oauth")
                or value != self.session_id
            ):
                raise PeerFault(401, "INVALID_SESSION_ID", "Session expired or invalid")
            if self.api_used >= self.api_limit:
                raise PeerFault(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            self.api_used += 1

    def _next_id(self, prefix: str) -> str:
        return salesforce_id(prefix, next(self._numbers))

    # -- REST
    def _add_default_routes(self) -> None:
        routes = (
            ("GET", r"/services/data/?", self._versions, True),
            ("GET", DATA_PATH + r"(?P<kind>query|queryAll)/?", self._query, False),
            ("GET", DATA_PATH + r"(?:query|queryAll)/(?P<cursor>[^/]+)/?", self._query_more, False),
            ("GET", DATA_PATH + r"sobjects/?", self._describe_global, False),
            ("GET", DATA_PATH + r"sobjects/(?P<object>\w+)/describe/?", self._describe, False),
            ("GET", DATA_PATH + r"limits/?", self._limits, False),
            ("POST", DATA_PATH + r"jobs/query/?", self._create_query_job, False),
            ("GET", DATA_PATH + r"jobs/query/(?P<job>\w+)/?", self._query_job_info, False),
            ("PATCH", DATA_PATH + r"jobs/query/(?P<job>\w+)/?", self._query_job_state, False),
            ("DELETE", DATA_PATH + r"jobs/query/(?P<job>\w+)/?", self._query_job_delete, False),
            ("GET", DATA_PATH + r"jobs/query/(?P<job>\w+)/results/?", self._query_results, False),
        )
        for method, pattern, handler, public in routes:
            self._routes.append(_Route(method, re.compile(pattern), handler, public))

    def _versions(self, request: PeerRequest) -> PeerResponse:
        return PeerResponse.json(
            [
                {
                    "label": f"v{version}.0",
                    "url": f"/services/data/v{version}.0",
                    "version": f"{version}.0",
                }
                for version in range(31, 67)
            ]
        )

    def _parse(self, text: str | None) -> Query:
        if not text:
            raise _malformed("ERROR at Row:1:Column:1 unexpected token: '<EOF>'")
        return parse_soql(text, self.store.spec)

    def _page(self, cursor_id: str, offset: int, version: str) -> PeerResponse:
        cursor = self._cursors[cursor_id]
        end = offset + self.page_size
        body: dict[str, Any] = {"totalSize": cursor.total, "done": end >= len(cursor.rows)}
        if not body["done"]:
            body["nextRecordsUrl"] = f"/services/data/v{version}/query/{cursor_id}-{end}"
        body["records"] = cursor.rows[offset:end]
        return PeerResponse.json(body)

    def _query(self, request: PeerRequest) -> PeerResponse:
        with self.lock:
            query = self._parse(request.param("q"))
            include_deleted = request.match is not None and request.match["kind"] == "queryAll"
            rows = [
                _rest_record(query.object, record, query.fields, self.store, request.version)
                for record in query.run(self.store, include_deleted=include_deleted)
            ]
            cursor_id = self._next_id("01g")
            self._cursors[cursor_id] = _Cursor(rows, len(rows))
            return self._page(cursor_id, 0, request.version)

    def _query_more(self, request: PeerRequest) -> PeerResponse:
        assert request.match is not None
        cursor_id, _, offset = request.match["cursor"].rpartition("-")
        with self.lock:
            if cursor_id not in self._cursors or not offset.isdigit():
                raise PeerFault(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
            return self._page(cursor_id, int(offset), request.version)

    def _describe_global(self, request: PeerRequest) -> PeerResponse:
        return PeerResponse.json(
            {
                "encoding": "UTF-8",
                "maxBatchSize": 200,
                "sobjects": [
                    {
                        "name": spec.name,
                        "label": spec.name,
                        "keyPrefix": spec.key_prefix,
                        "queryable": True,
                        "custom": spec.name.endswith("__c"),
                        "urls": {
                            "sobject": f"/services/data/v{request.version}/sobjects/{spec.name}",
                            "describe": f"/services/data/v{request.version}/sobjects/{spec.name}"
                            "/describe",
                        },
                    }
                    for spec in self.store.schema.values()
                ],
            }
        )

    def _describe(self, request: PeerRequest) -> PeerResponse:
        assert request.match is not None
        spec = self.store.spec(request.match["object"])
        if spec is None:
            raise PeerFault(404, "NOT_FOUND", "The requested resource does not exist")
        return PeerResponse.json(
            {
                "name": spec.name,
                "label": spec.name,
                "keyPrefix": spec.key_prefix,
                "queryable": True,
                "custom": spec.name.endswith("__c"),
                "fields": [
                    {
                        "name": field_spec.name,
                        "label": field_spec.name,
                        "type": field_spec.type,
                        "custom": field_spec.name.endswith("__c"),
                        "nillable": field_spec.name not in ("Id", "IsDeleted"),
                        "externalId": field_spec.external_id,
                        "idLookup": field_spec.external_id or field_spec.type == "id",
                        "referenceTo": [field_spec.reference_to] if field_spec.reference_to else [],
                        "relationshipName": field_spec.relationship_name,
                    }
                    for field_spec in spec.fields
                ],
            }
        )

    def _limits(self, request: PeerRequest) -> PeerResponse:
        with self.lock:
            return PeerResponse.json(
                {
                    "DailyApiRequests": {
                        "Max": self.api_limit,
                        "Remaining": max(self.api_limit - self.api_used, 0),
                    }
                }
            )

    # -- Bulk API 2.0 query jobs
    def _job(self, request: PeerRequest) -> _QueryJob:
        assert request.match is not None
        job = self._jobs.get(request.match["job"])
        if job is None:
            raise PeerFault(404, "NOT_FOUND", "The requested resource does not exist")
        return job

    def _create_query_job(self, request: PeerRequest) -> PeerResponse:
        body = request.json()
        if not isinstance(body, dict) or body.get("operation") not in ("query", "queryAll"):
            raise PeerFault(400, "INVALIDJOB", "operation must be query or queryAll")
        delimiter = body.get("columnDelimiter", "COMMA")
        line_ending = body.get("lineEnding", "LF")
        if delimiter not in _DELIMITERS or line_ending not in _LINE_ENDINGS:
            raise PeerFault(400, "INVALIDJOB", "unknown columnDelimiter or lineEnding")
        with self.lock:
            query = self._parse(body.get("query"))
            job = _QueryJob(
                id=self._next_id("750"),
                operation=body["operation"],
                object=query.object.name,
                query=query,
                delimiter=delimiter,
                line_ending=line_ending,
                api_version=request.version,
                created=dt.datetime.now(UTC).replace(microsecond=0),
            )
            # a snapshot, taken as the job starts, like Salesforce's
            records = query.run(self.store, include_deleted=job.operation == "queryAll")
            job.header = [path.name for path in query.fields]
            job.rows = [
                [_csv_value(_value(path, record, self.store)) for path in query.fields]
                for record in records
            ]
            self._jobs[job.id] = job
            info = job.info()
        return PeerResponse.json(info)

    def _query_job_info(self, request: PeerRequest) -> PeerResponse:
        with self.lock:
            job = self._job(request)
            if job.state in ("UploadComplete", "InProgress"):
                job.polls += 1
                job.state = (
                    "InProgress" if job.polls <= self.bulk_polls_in_progress else "JobComplete"
                )
            return PeerResponse.json(job.info())

    def _query_job_state(self, request: PeerRequest) -> PeerResponse:
        body = request.json()
        with self.lock:
            job = self._job(request)
            if not isinstance(body, dict) or body.get("state") != "Aborted":
                raise PeerFault(400, "INVALIDJOBSTATE", "a query job can only be aborted")
            if job.state != "JobComplete":
                job.state = "Aborted"
            return PeerResponse.json(job.info())

    def _query_job_delete(self, request: PeerRequest) -> PeerResponse:
        with self.lock:
            job = self._job(request)
            del self._jobs[job.id]
        return PeerResponse(204, None)

    def _query_results(self, request: PeerRequest) -> PeerResponse:
        with self.lock:
            job = self._job(request)
            if job.state != "JobComplete" or job.rows is None:
                raise PeerFault(
                    400, "INVALIDJOBSTATE", f"Job {job.id} is {job.state}, not JobComplete"
                )
            if request.version != job.api_version:
                raise PeerFault(
                    409, "INVALIDVERSION", "use the API version the job was created with"
                )
            try:
                max_records = int(request.param("maxRecords") or self.bulk_page_size)
            except ValueError:
                raise PeerFault(400, "INVALIDPARAMETER", "maxRecords must be a number") from None
            size = max(1, min(max_records, self.bulk_page_size))
            offset = _locator_offset(request.param("locator"))
            if offset > len(job.rows):
                raise PeerFault(400, "INVALIDLOCATOR", "invalid locator")
            rows = job.rows[offset : offset + size]
            end = offset + len(rows)
            buffer = io.StringIO()
            writer = csv.writer(
                buffer,
                delimiter=_DELIMITERS[job.delimiter],
                lineterminator=_LINE_ENDINGS[job.line_ending],
                quoting=csv.QUOTE_ALL,
            )
            writer.writerow(job.header)
            writer.writerows(rows)
            locator = _locator(end) if end < len(job.rows) else "null"
        return PeerResponse(
            200,
            buffer.getvalue().encode(),
            "text/csv",
            {"Sforce-Locator": locator, "Sforce-NumberOfRecords": str(len(rows))},
        )


def _locator(offset: int) -> str:
    return base64.b64encode(str(offset).encode()).decode().rstrip("=")


def _locator_offset(locator: str | None) -> int:
    if not locator:
        return 0
    try:
        text = base64.b64decode(locator + "=" * (-len(locator) % 4), validate=True).decode()
        return int(text)
    except (ValueError, UnicodeDecodeError):
        raise PeerFault(400, "INVALIDLOCATOR", "invalid locator") from None


def main(argv: Iterable[str] | None = None) -> int:
    """Run the peer in the foreground for a demo: prints how to reach it, stops on Ctrl-C."""
    del argv
    with SalesforcePeer() as peer:
        sys.stdout.write(
            f"Salesforce peer at {peer.instance_url}\nCA bundle: {peer.ca_path}\n"
            f"session id: {peer.session_id}\n"
        )
        sys.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
