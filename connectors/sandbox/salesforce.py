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
  `DELETE`.
- Writes (`_write`, one code path for all of them; every record answered on its own):
  `POST sobjects/{O}/` creates (201; never deduplicates, so a hub that creates twice shows as
  a duplicate), `PATCH sobjects/{O}/{Id}` updates (204), `PATCH sobjects/{O}/{Ext}/{value}`
  upserts (201 created, 200 `created:false` from API 46.0, 204 before, 300 with the records'
  URLs when 2+ hold the value, 404 when `{Ext}` is not an External ID field);
  `PATCH composite/sobjects/{O}/{Ext}` upserts up to 200 records (each with
  `attributes.type`; 400 `EXCEEDED_ID_LIMIT` above) and answers 200 with one
  `{id, success, errors: [{statusCode, message, fields}], created}` per record in order,
  `allOrNone` honoured (`ALL_OR_NONE_OPERATION_ROLLED_BACK`). External ids match
  case-insensitively; a value held by 2+ records or given twice in one call is refused
  (`DUPLICATE_EXTERNAL_ID`); bad types, read-only fields and restricted picklist values are
  per-record errors; an unknown field is a 400 `INVALID_FIELD` for the whole call.
- Bulk API 2.0 ingest jobs (insert, upsert): `POST jobs/ingest` (Open), `PUT
  jobs/ingest/{id}/batches` (text/csv, 201, once), `PATCH` `UploadComplete` (the rows are
  written then; `GET` shows `InProgress` for `bulk_polls_in_progress` polls, then
  `JobComplete` with `numberRecordsProcessed`/`numberRecordsFailed`) or `Aborted`, `GET
  …/successfulResults` (`sf__Id`, `sf__Created` + the uploaded columns), `…/failedResults`
  (`sf__Id`, `sf__Error` = `CODE:message:fields --`, + columns), `…/unprocessedRecords`, all
  CSV in no particular order. The CSV header may list columns in any order; `#N/A` sets null,
  an empty value leaves the field as it is; an unknown column fails the job.
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
N calls answering only after a delay, and `transient_rate` (each call fails at random, drawn
from `faults.rng`, as 503, 500, 429, 403 REQUEST_LIMIT_EXCEEDED or a stall after the work is
done; `faults.injected` counts them); `peer.exhaust_api_limit()` uses up the daily allocation;
`peer.poison(object, field, value_or_predicate, status_code, message, times=None)` refuses the
matching records on every write (or `times` writes), `peer.lock_rows(...)` is the transient
`UNABLE_TO_LOCK_ROW` case. `peer.calls` counts calls per `METHOD path` (`peer.count(method,
path_prefix)` sums them), `peer.ingest_jobs()` lists the Bulk ingest jobs, and
`peer.store.rows / find / duplicates` read the org back. `demo_store()` is the org the
sandbox serves (`connectors/sandbox/run.py`), with a few deliberately bad records. No dagster
import: this is a plain helper.
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
import random
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
from urllib.parse import parse_qs, unquote, urlsplit

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
    # an External ID field: upserts match on it, case-insensitively, as Salesforce does
    external_id: bool = False
    # the Unique attribute: a create or update giving a value another record holds is refused
    # (DUPLICATE_VALUE). Off by default, as in Salesforce: then a plain create *can* make a
    # second record with the same external id, and a later upsert on it is refused
    unique: bool = False
    updateable: bool = True  # False: system fields, refused on writes (INVALID_FIELD_FOR_…)
    picklist: tuple[str, ...] = ()  # a restricted picklist's values (writes are checked)


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
        FieldSpec("Id", "id", updateable=False),
        FieldSpec("IsDeleted", "boolean", updateable=False),
        FieldSpec("CreatedDate", "datetime", updateable=False),
        FieldSpec("LastModifiedDate", "datetime", updateable=False),
        FieldSpec("SystemModstamp", "datetime", updateable=False),
    )


_WORK_ORDER_STATUSES = (
    "New",
    "In Progress",
    "On Hold",
    "Completed",
    "Cannot Complete",
    "Closed",
    "Canceled",
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
                FieldSpec("Status", "picklist", picklist=_WORK_ORDER_STATUSES),
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
                # what the hub pushes back when a work order is completed
                FieldSpec("Hub_External_Id__c", external_id=True),
                FieldSpec("Completed_At__c", "datetime"),
                FieldSpec("Tenant_Absent__c", "boolean"),
                FieldSpec("Rating__c", "double"),
                FieldSpec("Technician__c"),
                FieldSpec("Completion_Ref__c"),
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

    def index(self, object_name: str, field_name: str) -> dict[Any, list[str]]:
        """Live record ids by the value of `field_name` (text compared case-insensitively, as
        Salesforce matches external ids); built afresh, so it sees any change a test made."""
        spec = self.spec(object_name)
        assert spec is not None
        field_spec = spec.field(field_name)
        assert field_spec is not None
        index: dict[Any, list[str]] = {}
        for record in self.rows(spec.name):
            value = record.get(field_spec.name)
            if value is not None:
                index.setdefault(_match_key(value), []).append(record["Id"])
        return index

    def find(self, object_name: str, field_name: str, value: Any) -> list[dict[str, Any]]:
        """The live records whose `field_name` matches `value` (case-insensitive text)."""
        spec = self.spec(object_name)
        assert spec is not None
        ids = self.index(spec.name, field_name).get(_match_key(value), [])
        return [self.records[spec.name][record_id] for record_id in ids]

    def duplicates(self, object_name: str, field_name: str) -> dict[Any, list[str]]:
        """`{value: [Id, …]}` for every value of `field_name` that 2+ live records hold."""
        return {
            value: ids for value, ids in self.index(object_name, field_name).items() if len(ids) > 1
        }


def _match_key(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


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

    def __init__(
        self, status: int, code: str, message: str, fields: Sequence[str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = list(fields) if fields is not None else None


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


_WRITE_DATETIME = re.compile(
    r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)(Z|[+-]\d{2}:?\d{2})?"
)
_TRUE_TEXT = frozenset({"true", "1", "yes"})
_FALSE_TEXT = frozenset({"false", "0", "no"})


def _write_value(spec: FieldSpec, value: Any) -> Any:
    """A value a client wrote (JSON value or CSV text) as the store keeps it; ValueError when
    it is not of the field's type."""
    if value is None:
        return None
    kind = spec.type
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE_TEXT | _FALSE_TEXT:
            return value.strip().lower() in _TRUE_TEXT
        raise ValueError(value)
    if kind in _NUMBER_TYPES:
        if isinstance(value, bool) or not isinstance(value, int | Decimal | float | str):
            raise ValueError(value)
        number = Decimal(str(value).strip())  # InvalidOperation is a ValueError
        if not number.is_finite():
            raise ValueError(value)
        return int(number) if kind == "int" else number
    if kind == "date":
        if not isinstance(value, str) or len(value) != 10:
            raise ValueError(value)
        return dt.date.fromisoformat(value)
    if kind == "datetime":
        match = _WRITE_DATETIME.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise ValueError(value)
        zone = match[2] or "+00:00"  # no offset: Salesforce reads the instant as UTC
        if zone != "Z" and ":" not in zone:
            zone = f"{zone[:3]}:{zone[3:]}"
        parsed = dt.datetime.fromisoformat(match[1] + ("+00:00" if zone == "Z" else zone))
        return parsed.astimezone(UTC)
    if isinstance(value, bool | dict | list):
        raise ValueError(value)
    return str(value)


def _item_error(code: str, message: str, fields: Sequence[str] = ()) -> dict[str, Any]:
    return {"statusCode": code, "message": message, "fields": list(fields)}


@dataclass
class _ItemResult:
    """The outcome of writing one record: an id and `created`, or errors."""

    id: str | None = None
    created: bool | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        if self.errors:
            body: dict[str, Any] = {"id": self.id} if self.id else {}
            return {**body, "success": False, "errors": self.errors}
        return {"id": self.id, "success": True, "errors": [], "created": self.created}

    def bulk_error(self) -> str:
        # Bulk API 2.0's sf__Error: `CODE:message:fields --` (exact text NOT VERIFIED)
        return " ".join(
            f"{error['statusCode']}:{error['message']}:{','.join(error['fields'])} --"
            for error in self.errors
        )


@dataclass
class _Poison:
    """Records whose `field` matches are refused with `code`/`message` (`times` left: None =
    always)."""

    object: str
    field: str
    match: Any
    code: str
    message: str
    times: int | None

    def hits(self, value: Any) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if callable(self.match):
            return bool(self.match(value))
        return value is not None and _match_key(value) == _match_key(self.match)


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
    path_prefix: str = "/"  # the 503, slow and transient faults only hit paths starting so
    # each call fails at random with this probability, as one of `transient_kinds`: "503",
    # "500", "429" and "403" (REQUEST_LIMIT_EXCEEDED) answer at once without doing anything;
    # "stall" does the work, then holds the answer `stall_seconds` (past the client's timeout:
    # the write happened, the client never hears of it)
    transient_rate: float = 0.0
    transient_kinds: tuple[str, ...] = ("503", "500", "429", "403", "stall")
    stall_seconds: float = 2.0
    rng: random.Random = field(default_factory=lambda: random.Random(20260101))
    injected: Counter[str] = field(default_factory=Counter)  # transient faults played, by kind


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
        info = _job_info(self, "V2Query")
        if self.state == "JobComplete" and self.rows is not None:
            info.update(numberRecordsProcessed=len(self.rows), retries=0, totalProcessingTime=42)
        return info


@dataclass
class _IngestJob:
    """A Bulk API 2.0 ingest job: Open → (CSV uploaded) → UploadComplete → InProgress →
    JobComplete, or Aborted / Failed."""

    id: str
    operation: str
    object: str
    external_id_field: str | None
    delimiter: str
    line_ending: str
    api_version: str
    created: dt.datetime
    state: str = "Open"
    data: str | None = None
    header: list[str] = field(default_factory=list)
    successful: list[list[str]] = field(default_factory=list)
    failed: list[list[str]] = field(default_factory=list)
    unprocessed: list[list[str]] = field(default_factory=list)
    error_message: str = ""
    polls: int = 0

    def info(self) -> dict[str, Any]:
        info = _job_info(self, "V2Ingest")
        if self.external_id_field:
            info["externalIdFieldName"] = self.external_id_field
        if self.state not in ("Open", "UploadComplete"):
            info.update(
                numberRecordsProcessed=len(self.successful) + len(self.failed),
                numberRecordsFailed=len(self.failed),
                retries=0,
                totalProcessingTime=42,
                apiActiveProcessingTime=21,
                apexProcessingTime=0,
            )
        if self.error_message:
            info["errorMessage"] = self.error_message
        return info


def _job_info(job: _QueryJob | _IngestJob, job_type: str) -> dict[str, Any]:
    """What a Bulk API 2.0 job's info says whatever its type (query or ingest)."""
    stamp = _rest_datetime(job.created)
    return {
        "id": job.id,
        "operation": job.operation,
        "object": job.object,
        "createdById": salesforce_id("005", 1),
        "createdDate": stamp,
        "systemModstamp": stamp,
        "state": job.state,
        "concurrencyMode": "Parallel",
        "contentType": "CSV",
        "apiVersion": Decimal(job.api_version),
        "jobType": job_type,
        "lineEnding": job.line_ending,
        "columnDelimiter": job.delimiter,
    }


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
        self._ingest_jobs: dict[str, _IngestJob] = {}
        self.poisons: list[_Poison] = []
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

    def poison(
        self,
        object_name: str,
        field_name: str,
        match: Any,
        status_code: str = "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        message: str = "This record breaks a validation rule",
        *,
        times: int | None = None,
    ) -> None:
        """Refuse every write of a record of `object_name` whose `field_name` (as written)
        equals `match` (case-insensitive text) or satisfies `match(value)` when it is callable:
        that record gets a per-item error `status_code`/`message` (REST collections, single
        calls, Bulk `sf__Error`) while the others succeed. `times`: only that many refusals
        (e.g. a transient UNABLE_TO_LOCK_ROW); None: every time."""
        spec = self.store.spec(object_name)
        if spec is None or spec.field(field_name) is None:
            raise KeyError(f"no field {field_name} on {object_name}")
        with self.lock:
            self.poisons.append(
                _Poison(spec.name, spec.field(field_name).name, match, status_code, message, times)  # type: ignore[union-attr]
            )

    def lock_rows(self, object_name: str, field_name: str, match: Any, *, times: int = 1) -> None:
        """The matching records are locked by another transaction for the next `times` writes:
        per-item `UNABLE_TO_LOCK_ROW`, as Salesforce answers under contention."""
        self.poison(
            object_name,
            field_name,
            match,
            "UNABLE_TO_LOCK_ROW",
            "unable to obtain exclusive access to this record or 1 records",
            times=times,
        )

    def ingest_jobs(self) -> list[dict[str, Any]]:
        """The Bulk API 2.0 ingest jobs created so far (their job info)."""
        with self.lock:
            return [job.info() for job in self._ingest_jobs.values()]

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
            transient = ""
            if (
                targeted
                and self.faults.transient_rate > 0
                and self.faults.rng.random() < self.faults.transient_rate
            ):
                transient = self.faults.rng.choice(self.faults.transient_kinds)
                self.faults.injected[transient] += 1
        if slow:
            self._stopping.wait(self.faults.slow_seconds)
        try:
            if unavailable or transient == "503":
                raise PeerFault(
                    503, "SERVER_UNAVAILABLE", "Server temporarily unavailable, please retry"
                )
            if transient == "500":
                raise PeerFault(500, "UNKNOWN_EXCEPTION", "An unexpected error occurred.")
            if transient == "429":
                raise PeerFault(429, "REQUEST_LIMIT_EXCEEDED", "Too many requests, retry later")
            if transient == "403":
                raise PeerFault(
                    403, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded."
                )
            response = self._route(request)
            if transient == "stall":
                self._stopping.wait(self.faults.stall_seconds)
        except PeerFault as fault:
            error: dict[str, Any] = {"message": fault.message, "errorCode": fault.code}
            if fault.fields is not None:
                error["fields"] = fault.fields
            response = PeerResponse.json([error])
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
            ("POST", DATA_PATH + r"sobjects/(?P<object>\w+)/?", self._create_one, False),
            (
                "PATCH",
                DATA_PATH + r"sobjects/(?P<object>\w+)/(?P<id>\w+)/?",
                self._update_one,
                False,
            ),
            (
                "PATCH",
                DATA_PATH + r"sobjects/(?P<object>\w+)/(?P<field>\w+)/(?P<value>[^/]+)/?",
                self._upsert_one,
                False,
            ),
            (
                "PATCH",
                DATA_PATH + r"composite/sobjects/(?P<object>\w+)/(?P<field>\w+)/?",
                self._upsert_collection,
                False,
            ),
            ("POST", DATA_PATH + r"jobs/ingest/?", self._create_ingest_job, False),
            ("GET", DATA_PATH + r"jobs/ingest/(?P<job>\w+)/?", self._ingest_job_info, False),
            ("PATCH", DATA_PATH + r"jobs/ingest/(?P<job>\w+)/?", self._ingest_job_state, False),
            ("DELETE", DATA_PATH + r"jobs/ingest/(?P<job>\w+)/?", self._ingest_job_delete, False),
            ("PUT", DATA_PATH + r"jobs/ingest/(?P<job>\w+)/batches/?", self._ingest_upload, False),
            (
                "GET",
                DATA_PATH + r"jobs/ingest/(?P<job>\w+)/(?P<kind>successfulResults|failedResults"
                r"|unprocessedRecords)/?",
                self._ingest_results,
                False,
            ),
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

    # -- sObject writes (REST single calls, collections, Bulk API 2.0 ingest share _write)
    def _object_spec(self, name: str) -> ObjectSpec:
        spec = self.store.spec(name)
        if spec is None:
            raise PeerFault(
                404, "NOT_FOUND", f"The requested resource does not exist: sObject type {name}"
            )
        return spec

    def _external_id(self, spec: ObjectSpec, name: str) -> FieldSpec:
        field_spec = spec.field(name)
        if field_spec is None or not (field_spec.external_id or field_spec.type == "id"):
            raise PeerFault(
                404,
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {name}",
            )
        return field_spec

    def _write(
        self,
        spec: ObjectSpec,
        items: Sequence[Mapping[str, Any]],
        *,
        external_id: FieldSpec | None,
        all_or_none: bool = False,
        record_id: str | None = None,
    ) -> list[_ItemResult]:
        """Create (no `external_id`), upsert (matching on `external_id`) or update (`record_id`)
        `items`, each a {field name: value as written}; every item answered on its own.
        Unknown fields are a PeerFault (400 INVALID_FIELD) for the whole call. Call under the
        lock."""
        for item in items:
            for name in item:
                if spec.field(name) is None:
                    raise PeerFault(
                        400,
                        "INVALID_FIELD",
                        f"No such column '{name}' on sobject of type {spec.name}",
                    )
        index = self.store.index(spec.name, external_id.name) if external_id else {}
        plans: list[tuple[_ItemResult, dict[str, Any]]] = []
        seen: Counter[Any] = Counter()
        typed_items: list[dict[str, Any]] = []
        results: list[_ItemResult] = []
        for item in items:
            result = _ItemResult()
            typed: dict[str, Any] = {}
            for name, value in item.items():
                field_spec = spec.field(name)
                assert field_spec is not None
                if not field_spec.updateable and not (
                    external_id is not None and field_spec is external_id
                ):
                    result.errors.append(
                        _item_error(
                            "INVALID_FIELD_FOR_INSERT_UPDATE",
                            f"Unable to create/update fields: {field_spec.name}. Please check"
                            " the security settings of this field and verify that it is"
                            " read/write for your profile or permission set.",
                            [field_spec.name],
                        )
                    )
                    continue
                try:
                    typed[field_spec.name] = _write_value(field_spec, value)
                except (ValueError, TypeError, ArithmeticError):
                    result.errors.append(
                        _item_error(
                            "INVALID_TYPE_ON_FIELD_IN_RECORD",
                            f"{field_spec.name}: value not of required type: {value}",
                            [field_spec.name],
                        )
                    )
                    continue
                if (
                    field_spec.picklist
                    and typed[field_spec.name] is not None
                    and typed[field_spec.name] not in field_spec.picklist
                ):
                    result.errors.append(
                        _item_error(
                            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                            f"{field_spec.name}: bad value for restricted picklist field: {value}",
                            [field_spec.name],
                        )
                    )
            if external_id is not None and typed.get(external_id.name) is not None:
                seen[_match_key(typed[external_id.name])] += 1
            typed_items.append(typed)
            results.append(result)
        for typed, result in zip(typed_items, results, strict=True):
            key = _match_key(typed[external_id.name]) if external_id is not None else None
            if external_id is not None and not result.errors:
                if key is None:
                    result.errors.append(
                        _item_error(
                            "MISSING_ARGUMENT",
                            f"{external_id.name} not specified",
                            [external_id.name],
                        )
                    )
                elif seen[key] > 1:
                    result.errors.append(
                        _item_error(
                            "DUPLICATE_EXTERNAL_ID",
                            f"Duplicate external id specified: {typed[external_id.name]}",
                            [external_id.name],
                        )
                    )
                elif len(index.get(key, ())) > 1:
                    result.errors.append(
                        _item_error(
                            "DUPLICATE_EXTERNAL_ID",
                            f"{external_id.name}: more than one record found for external id"
                            f" field: [{', '.join(index[key])}]",
                            [external_id.name],
                        )
                    )
            if not result.errors:
                for poison in self.poisons:
                    if poison.object == spec.name and poison.hits(typed.get(poison.field)):
                        if poison.times is not None:
                            poison.times -= 1
                        result.errors.append(_item_error(poison.code, poison.message))
                        break
            if not result.errors:
                for field_spec in spec.fields:
                    value = typed.get(field_spec.name)
                    if not field_spec.unique or value is None:
                        continue
                    holders = self.store.index(spec.name, field_spec.name).get(
                        _match_key(value), []
                    )
                    target = record_id or (index.get(key, [None])[0] if key else None)
                    if [holder for holder in holders if holder != target]:
                        result.errors.append(
                            _item_error(
                                "DUPLICATE_VALUE",
                                f"duplicate value found: {field_spec.name} duplicates value on"
                                f" record with id: {holders[0]}",
                                [field_spec.name],
                            )
                        )
            plans.append((result, typed))
        if all_or_none and any(result.errors for result, _ in plans):
            for result, _ in plans:
                if not result.errors:
                    result.errors.append(
                        _item_error(
                            "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                            "Record rolled back because not all records were valid and the"
                            " request was using AllOrNone header",
                        )
                    )
            return [result for result, _ in plans]
        for result, typed in plans:
            if result.errors:
                continue
            target = record_id
            if external_id is not None:
                matches = index.get(_match_key(typed[external_id.name]), [])
                target = matches[0] if matches else None
            if target is None:
                result.id = self.store.insert(spec.name, typed)
                result.created = True
            else:
                self.store.update(spec.name, target, typed)
                result.id, result.created = target, False
        return [result for result, _ in plans]

    @staticmethod
    def _write_body(request: PeerRequest) -> Any:
        try:
            return json.loads(request.body or b"null", parse_float=Decimal)
        except ValueError:
            raise PeerFault(400, "JSON_PARSER_ERROR", "Unexpected character in the body") from None

    @staticmethod
    def _refusal(result: _ItemResult) -> PeerResponse:
        """A single call's per-item errors as Salesforce answers them: 400 and a JSON list."""
        return PeerResponse.json(
            [
                {
                    "message": error["message"],
                    "errorCode": error["statusCode"],
                    **({"fields": error["fields"]} if error["fields"] else {}),
                }
                for error in result.errors
            ],
            status=400,
        )

    def _single_record(self, request: PeerRequest) -> dict[str, Any]:
        body = self._write_body(request)
        if not isinstance(body, dict):
            raise PeerFault(400, "JSON_PARSER_ERROR", "The body must be a JSON object")
        body.pop("attributes", None)
        return body

    def _create_one(self, request: PeerRequest) -> PeerResponse:
        """`POST sobjects/{O}/`: always a new record, duplicates included (no deduplication)."""
        assert request.match is not None
        with self.lock:
            spec = self._object_spec(request.match["object"])
            (result,) = self._write(spec, [self._single_record(request)], external_id=None)
        if result.errors:
            return self._refusal(result)
        return PeerResponse.json({"id": result.id, "success": True, "errors": []}, status=201)

    def _update_one(self, request: PeerRequest) -> PeerResponse:
        """`PATCH sobjects/{O}/{Id}` → 204."""
        assert request.match is not None
        with self.lock:
            spec = self._object_spec(request.match["object"])
            record = self.store.get(spec.name, request.match["id"])
            if record is None or record["IsDeleted"]:
                raise PeerFault(404, "NOT_FOUND", "The requested resource does not exist")
            (result,) = self._write(
                spec, [self._single_record(request)], external_id=None, record_id=record["Id"]
            )
        return self._refusal(result) if result.errors else PeerResponse(204, None)

    def _upsert_one(self, request: PeerRequest) -> PeerResponse:
        """`PATCH sobjects/{O}/{ExtField}/{value}`: 201 created, 200 `created:false` (API ≥ 46;
        204 before), 300 with the matching records' URLs when 2+ hold the value."""
        assert request.match is not None
        value = unquote(request.match["value"])
        with self.lock:
            spec = self._object_spec(request.match["object"])
            external_id = self._external_id(spec, request.match["field"])
            record = self._single_record(request)
            record = {
                name: item
                for name, item in record.items()
                if name.lower() != external_id.name.lower()
            }
            matches = self.store.index(spec.name, external_id.name).get(
                _match_key(_write_value(external_id, value)), []
            )
            if len(matches) > 1:
                return PeerResponse.json(
                    [
                        f"/services/data/v{request.version}/sobjects/{spec.name}/{match}"
                        for match in matches
                    ],
                    status=300,
                )
            (result,) = self._write(
                spec, [{external_id.name: value, **record}], external_id=external_id
            )
        if result.errors:
            return self._refusal(result)
        if result.created:
            return PeerResponse.json(result.json(), status=201)
        if float(request.version) < 46.0:
            return PeerResponse(204, None)
        return PeerResponse.json(result.json())

    def _upsert_collection(self, request: PeerRequest) -> PeerResponse:
        """`PATCH composite/sobjects/{O}/{ExtField}`: ≤ 200 records, 200 with one result per
        record in request order; `allOrNone` honoured."""
        assert request.match is not None
        body = self._write_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise PeerFault(400, "JSON_PARSER_ERROR", "The body must have a records list")
        records = body["records"]
        if len(records) > 200:
            raise PeerFault(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        with self.lock:
            spec = self._object_spec(request.match["object"])
            external_id = self._external_id(spec, request.match["field"])
            items = []
            for record in records:
                attributes = record.get("attributes") if isinstance(record, dict) else None
                kind = attributes.get("type") if isinstance(attributes, dict) else None
                if not isinstance(kind, str) or kind.lower() != spec.name.lower():
                    raise PeerFault(
                        400,
                        "INVALID_TYPE",
                        f"Each record must have attributes.type {spec.name} in this call",
                    )
                items.append(
                    {name: value for name, value in record.items() if name != "attributes"}
                )
            results = self._write(
                spec, items, external_id=external_id, all_or_none=bool(body.get("allOrNone"))
            )
        return PeerResponse.json([result.json() for result in results])

    # -- Bulk API 2.0 ingest jobs
    def _ingest_job(self, request: PeerRequest) -> _IngestJob:
        assert request.match is not None
        job = self._ingest_jobs.get(request.match["job"])
        if job is None:
            raise PeerFault(404, "NOT_FOUND", "The requested resource does not exist")
        return job

    def _create_ingest_job(self, request: PeerRequest) -> PeerResponse:
        body = request.json()
        if not isinstance(body, dict):
            raise PeerFault(400, "INVALIDJOB", "InvalidJob : the body must be a JSON object")
        operation = body.get("operation")
        if operation not in ("insert", "upsert"):
            raise PeerFault(
                400, "INVALIDJOB", f"InvalidJob : operation {operation!r} is not served here"
            )
        delimiter = body.get("columnDelimiter", "COMMA")
        line_ending = body.get("lineEnding", "LF")
        if delimiter not in _DELIMITERS or line_ending not in _LINE_ENDINGS:
            raise PeerFault(400, "INVALIDJOB", "unknown columnDelimiter or lineEnding")
        if body.get("contentType", "CSV") != "CSV":
            raise PeerFault(400, "INVALIDJOB", "InvalidJob : contentType must be CSV")
        with self.lock:
            spec = self.store.spec(str(body.get("object") or ""))
            if spec is None:
                raise PeerFault(
                    400, "INVALIDJOB", f"InvalidJob : Invalid object: {body.get('object')}"
                )
            external = None
            if operation == "upsert":
                name = str(body.get("externalIdFieldName") or "")
                field_spec = spec.field(name)
                if field_spec is None or not (field_spec.external_id or field_spec.type == "id"):
                    raise PeerFault(
                        400,
                        "INVALIDJOB",
                        f"InvalidJob : Field name provided, {name} is not an External ID or"
                        f" indexed field for {spec.name}",
                    )
                external = field_spec.name
            job = _IngestJob(
                id=self._next_id("750"),
                operation=operation,
                object=spec.name,
                external_id_field=external,
                delimiter=delimiter,
                line_ending=line_ending,
                api_version=request.version,
                created=dt.datetime.now(UTC).replace(microsecond=0),
            )
            self._ingest_jobs[job.id] = job
            return PeerResponse.json(job.info())

    def _ingest_upload(self, request: PeerRequest) -> PeerResponse:
        if not request.headers.get("content-type", "").startswith("text/csv"):
            raise PeerFault(400, "INVALIDCONTENTTYPE", "the batch must be sent as text/csv")
        with self.lock:
            job = self._ingest_job(request)
            if job.state != "Open" or job.data is not None:
                raise PeerFault(
                    409, "INVALIDJOBSTATE", f"Job {job.id} is {job.state}: no upload accepted"
                )
            job.data = request.body.decode("utf-8")
        return PeerResponse(201, b"", "text/plain")

    def _ingest_job_state(self, request: PeerRequest) -> PeerResponse:
        body = request.json()
        state = body.get("state") if isinstance(body, dict) else None
        with self.lock:
            job = self._ingest_job(request)
            if state == "UploadComplete" and job.state == "Open":
                job.state = "UploadComplete"
                self._process_ingest(job)  # at once; GET shows InProgress a while first
            elif state == "Aborted" and job.state in ("Open", "UploadComplete", "InProgress"):
                job.state = "Aborted"
            else:
                raise PeerFault(
                    400, "INVALIDJOBSTATE", f"Job {job.id} is {job.state}: cannot go to {state}"
                )
            return PeerResponse.json(job.info())

    def _process_ingest(self, job: _IngestJob) -> None:
        """Write every row of the uploaded CSV (`#N/A` = null, empty = leave as is); rows
        never fail one another."""
        if job.data is None:
            job.state, job.error_message = "Failed", "InvalidBatch : no data uploaded"
            return
        reader = csv.reader(io.StringIO(job.data, newline=""), delimiter=_DELIMITERS[job.delimiter])
        rows = list(reader)
        if not rows:
            job.state, job.error_message = "Failed", "InvalidBatch : empty CSV"
            return
        job.header, data_rows = rows[0], rows[1:]
        spec = self.store.spec(job.object)
        assert spec is not None
        unknown = [name for name in job.header if spec.field(name) is None]
        if unknown or (
            job.external_id_field
            and job.external_id_field.lower() not in [name.lower() for name in job.header]
        ):
            missing = unknown[0] if unknown else job.external_id_field
            job.state = "Failed"
            job.error_message = f"InvalidBatch : Field name not found : {missing}"
            return
        items = [
            {
                name: (None if text == "#N/A" else text)
                for name, text in zip(job.header, row, strict=False)
                if text != ""
            }
            for row in data_rows
        ]
        external = spec.field(job.external_id_field) if job.external_id_field else None
        results = self._write(spec, items, external_id=external)
        for row, result in zip(data_rows, results, strict=True):
            if result.errors:
                job.failed.append([result.id or "", result.bulk_error(), *row])
            else:
                job.successful.append(
                    [result.id or "", "true" if result.created else "false", *row]
                )
        # Salesforce gives no order; neither does the peer (a fixed shuffle per job)
        shuffle = random.Random(job.id)
        shuffle.shuffle(job.successful)
        shuffle.shuffle(job.failed)

    def _ingest_job_info(self, request: PeerRequest) -> PeerResponse:
        with self.lock:
            job = self._ingest_job(request)
            if job.state in ("UploadComplete", "InProgress"):
                job.polls += 1
                job.state = (
                    "InProgress" if job.polls <= self.bulk_polls_in_progress else "JobComplete"
                )
            return PeerResponse.json(job.info())

    def _ingest_job_delete(self, request: PeerRequest) -> PeerResponse:
        with self.lock:
            job = self._ingest_job(request)
            if job.state not in ("JobComplete", "Aborted", "Failed"):
                raise PeerFault(400, "INVALIDJOBSTATE", f"Job {job.id} is {job.state}")
            del self._ingest_jobs[job.id]
        return PeerResponse(204, None)

    def _ingest_results(self, request: PeerRequest) -> PeerResponse:
        assert request.match is not None
        kind = request.match["kind"]
        with self.lock:
            job = self._ingest_job(request)
            if job.state not in ("JobComplete", "Aborted", "Failed"):
                raise PeerFault(
                    400, "INVALIDJOBSTATE", f"Job {job.id} is {job.state}: no results yet"
                )
            if kind == "successfulResults":
                header, rows = ["sf__Id", "sf__Created", *job.header], job.successful
            elif kind == "failedResults":
                header, rows = ["sf__Id", "sf__Error", *job.header], job.failed
            else:
                # rows of an upload that was never processed (a job aborted while Open)
                parsed = (
                    list(
                        csv.reader(
                            io.StringIO(job.data, newline=""), delimiter=_DELIMITERS[job.delimiter]
                        )
                    )
                    if job.data is not None and not job.header
                    else []
                )
                header, rows = (parsed[0], parsed[1:]) if parsed else (job.header, [])
            buffer = io.StringIO()
            writer = csv.writer(
                buffer,
                delimiter=_DELIMITERS[job.delimiter],
                lineterminator=_LINE_ENDINGS[job.line_ending],
                quoting=csv.QUOTE_ALL,
            )
            if header:
                writer.writerow(header)
            writer.writerows(rows)
        return PeerResponse(200, buffer.getvalue().encode(), "text/csv")


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
