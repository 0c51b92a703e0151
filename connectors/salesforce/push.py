"""Push records into one Salesforce object by upsert on an External ID field (a `Sink`).

Two ways to send, chosen by how many records wait (`batch_size`):
- fewer than `bulk_threshold`: sObject Collections upsert, `PATCH
  composite/sobjects/{Object}/{ExternalId}` with up to 200 records a call and `allOrNone`
  off, so each record is answered on its own, in request order;
- `bulk_threshold` or more: one Bulk API 2.0 upsert ingest job for the whole set (CSV), whose
  successful, failed and unprocessed results are read back and matched to the records by
  external id value (Salesforce gives them in no particular order).

A record's external id is `fields[external_id_field]` when the record carries it, else its
`key`. Values travel as Salesforce reads them: dates `2026-01-05`, date-times in UTC with
milliseconds `2026-01-05T10:00:00.000Z` (a naive date-time is taken as UTC), integers and
booleans as such, `None` as JSON null (REST) or `#N/A` (Bulk CSV, where an empty cell would
leave the field unchanged). A float is refused before sending: money travels as int cents or
as a decimal string.

Per-record refusals become outcomes: transient codes (`UNABLE_TO_LOCK_ROW`,
`REQUEST_LIMIT_EXCEEDED`, `SERVER_UNAVAILABLE` …) `retry`, every other code `dead` with
`CODE: message (fields)`. A whole call that fails transiently (5xx, 429, 403
REQUEST_LIMIT_EXCEEDED, timeout, dropped connection) raises `RetriableError`; an expired
session, a refused permission or an unknown object or field raises `ConfigError` /
`PermanentError`. The errors are mapped by `connectors.salesforce.client.translate_error`, the one
mapping the reader uses too. Nothing is retried here: the outbox retries whole calls. Nothing
connects before the first `send` or `read_back`.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar

import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceBulkV2LoadError,
    SalesforceMalformedRequest,
    SalesforceResourceNotFound,
)
from simple_salesforce.util import exception_handler

from connectors.delivery import Delivered, FieldValue, OutgoingRecord
from connectors.errors import ConfigError, PermanentError
from connectors.retry import RetryPolicy
from connectors.salesforce.client import (
    DEFAULT_API_VERSION,
    TimedSession,
    check_api_version,
    connect,
    detail_text,
    error_detail,
    record_value,
    translate_error,
)
from connectors.salesforce.models import SalesforceAuth
from connectors.salesforce.soql import check_name, check_object

__all__ = ["COLLECTION_SIZE", "TRANSIENT_STATUS_CODES", "SalesforceSink"]

T = TypeVar("T")

COLLECTION_SIZE = 200  # records per sObject Collections call (Salesforce's limit)

# per-record status codes that say "not now" rather than "never"
TRANSIENT_STATUS_CODES = frozenset(
    {
        "UNABLE_TO_LOCK_ROW",
        "REQUEST_LIMIT_EXCEEDED",
        "SERVER_UNAVAILABLE",
        "REQUEST_RUNNING_TOO_LONG",
        "QUERY_TIMEOUT",
        "CONCURRENT_REQUEST_LIMIT_EXCEEDED",
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",  # this record was fine; another one failed
    }
)

# the SOQL of one read-back query stays under this many characters: URL-encoded it remains
# well inside the 16 KB a Salesforce request line may take
_SOQL_BUDGET = 4000
_NO_RETRY = RetryPolicy(attempts=1, first_wait=0, max_wait=0, jitter=0)
_HELD_DATETIME = re.compile(
    r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)(Z|[+-]\d{2}:?\d{2})?"
)
_BULK_ERROR = re.compile(r"(?P<code>[A-Z_]+):(?P<rest>.*?)(?: --)?\s*$", re.S)


class _NotSendable(ValueError):
    """A record value Salesforce cannot be given (a float, an object …)."""


def _utc_text(value: dt.datetime) -> str:
    if value.tzinfo is None:  # the hub's naive date-times are UTC
        value = value.replace(tzinfo=dt.UTC)
    value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S") + f".{value.microsecond // 1000:03d}Z"


def _rest_value(name: str, value: FieldValue) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, dt.datetime):
        return _utc_text(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    raise _NotSendable(
        f"field {name}: a {type(value).__name__} cannot be sent ({value!r}) — money travels as"
        " int cents or a decimal string, never a float"
    )


def _csv_text(value: Any) -> str:
    """A REST value as a Bulk CSV cell: `#N/A` sets null (an empty cell changes nothing)."""
    if value is None or value == "":
        return "#N/A"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _soql_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f"'{escaped}'"


def _held_datetime(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        parsed = value
    else:
        match = _HELD_DATETIME.fullmatch(str(value))
        if match is None:
            return None
        zone = match[2] or "+00:00"
        zone = "+00:00" if zone == "Z" else zone if ":" in zone else f"{zone[:3]}:{zone[3:]}"
        try:
            parsed = dt.datetime.fromisoformat(match[1] + zone)
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    parsed = parsed.astimezone(dt.UTC)
    return parsed.replace(microsecond=parsed.microsecond // 1000 * 1000)  # Salesforce keeps ms


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    try:
        return Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None


def _same(sent: FieldValue, held: Any) -> bool:
    """Whether Salesforce holds `sent`, whatever the form it answers in (types normalised)."""
    if sent is None or sent == "":
        return held is None or held == ""
    if held is None:
        return False
    if isinstance(sent, bool) or isinstance(held, bool):
        return str(sent).lower() == str(held).lower()
    if isinstance(sent, dt.datetime):
        return _held_datetime(held) == _held_datetime(sent)
    if isinstance(sent, dt.date):
        return str(held) == sent.isoformat()
    if isinstance(sent, int) or isinstance(held, int | Decimal):
        left, right = _number(sent), _number(held)
        return left is not None and left == right
    if str(sent) == str(held):
        return True
    left_time, right_time = _held_datetime(sent), _held_datetime(held)
    return left_time is not None and left_time == right_time


def _refusal(errors: Sequence[Mapping[str, Any]]) -> tuple[str, str, list[str]]:
    """The outcome ("retry" / "dead"), the message and the codes of per-record errors."""
    codes = [str(error.get("statusCode") or "UNKNOWN") for error in errors] or ["UNKNOWN"]
    parts = []
    for error, code in zip(errors, codes, strict=False):
        fields = [str(name) for name in error.get("fields") or []]
        text = f"{code}: {' '.join(str(error.get('message') or '').split())}"
        parts.append(text + (f" ({', '.join(fields)})" if fields else ""))
    message = "; ".join(parts) or "UNKNOWN: Salesforce refused the record without a reason"
    outcome = "retry" if all(code in TRANSIENT_STATUS_CODES for code in codes) else "dead"
    return outcome, message, codes


def _bulk_errors(text: str) -> list[dict[str, Any]]:
    """`sf__Error` (`CODE:message:fields --`) as REST-style error objects."""
    match = _BULK_ERROR.fullmatch(text.strip())
    if match is None:
        return [{"statusCode": "UNKNOWN", "message": text.strip(), "fields": []}]
    message, _, fields = match["rest"].rpartition(":")
    if not message:  # no `:fields` part
        message, fields = match["rest"], ""
    names = [name.strip() for name in fields.split(",") if name.strip()]
    return [{"statusCode": match["code"], "message": message, "fields": names}]


class SalesforceSink:
    """Upserts `OutgoingRecord`s into `object_name` on `external_id_field` (see the module
    docstring); `kind = "salesforce"`.

    `ca_bundle` is the PEM file that signs the org's certificate when it is not a public CA
    (the sandbox); `bulk_poll_wait` the pause between polls of a Bulk job; `session` a
    `requests.Session` template (TLS trust, proxies) used instead of `ca_bundle`.
    """

    kind = "salesforce"

    def __init__(
        self,
        name: str,
        auth: SalesforceAuth,
        *,
        object_name: str,
        external_id_field: str,
        ca_bundle: str | Path | None = None,
        api_version: str = DEFAULT_API_VERSION,
        bulk_threshold: int = 2000,
        timeout: float = 30.0,
        bulk_poll_wait: float = 2.0,
        session: requests.Session | None = None,
    ) -> None:
        check_object(object_name)
        check_name(external_id_field, "external id field")
        if "." in external_id_field:
            raise ConfigError(
                f"Salesforce external id field {external_id_field!r} must be a field of"
                f" {object_name} itself, not through a relationship"
            )
        check_api_version(api_version)
        if not isinstance(bulk_threshold, int) or bulk_threshold < 1:
            raise ConfigError(f"bulk_threshold {bulk_threshold!r} must be a positive integer")
        if timeout <= 0 or bulk_poll_wait < 0:
            raise ConfigError("timeout must be positive and bulk_poll_wait not negative")
        if ca_bundle is not None and not Path(ca_bundle).is_file():
            raise ConfigError(
                f"Salesforce CA bundle {ca_bundle} does not exist — fix the path (the PEM file"
                " that signs the org's certificate)"
            )
        self.name = name
        self.auth = auth
        self.object_name = object_name
        self.external_id_field = external_id_field
        self.ca_bundle = str(ca_bundle) if ca_bundle is not None else None
        self.api_version = api_version
        self.bulk_threshold = bulk_threshold
        self.timeout = timeout
        self.bulk_poll_wait = bulk_poll_wait
        self._template = session
        self._own_template: requests.Session | None = None
        self._sf: Salesforce | None = None
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"SalesforceSink({self.name!r}, {self.object_name}.{self.external_id_field},"
            f" {self.auth.instance_url or self.auth.domain})"
        )

    # -- connection
    def _client(self) -> Salesforce:
        if self._closed:
            raise RuntimeError(f"Salesforce sink {self.name} is closed")
        if self._sf is None:
            template = self._template
            if template is None and self.ca_bundle is not None:
                template = self._own_template = requests.Session()
                template.verify = self.ca_bundle
            self._sf = connect(
                self.auth,
                session=template,
                timeout=self.timeout,
                version=self.api_version,
                retry=_NO_RETRY,  # the outbox retries whole calls; no retry on retry
            )
        return self._sf

    def close(self) -> None:
        if self._sf is not None:
            self._sf.session.close()
            self._sf = None
        if self._own_template is not None:
            self._own_template.close()
            self._own_template = None
        self._closed = True

    def _call(self, call: Callable[[], T], what: str) -> T:
        """`call()`, any failure raised as a connector error (ConfigError / PermanentError /
        RetriableError) that names this sink and what was being done."""
        sf = self._client()
        http = sf.session
        assert isinstance(http, TimedSession)
        host = sf.sf_instance
        target = f"{self.object_name}.{self.external_id_field}"
        try:
            return call()
        except SalesforceResourceNotFound as error:
            raise ConfigError(
                f"Salesforce {host} ({self.name}): {what} of {target} refused"
                f" ({detail_text(*error_detail(error))}) — check that the object exists and that"
                f" {self.external_id_field} is an External ID field of it"
            ) from error
        except SalesforceMalformedRequest as error:
            code, message = error_detail(error)
            kind = ConfigError if code in ("INVALID_FIELD", "INVALID_TYPE") else PermanentError
            raise kind(
                f"Salesforce {host} ({self.name}): {what} of {target} refused"
                f" ({detail_text(code, message)}) — check the sink's field mapping"
            ) from error
        except SalesforceBulkV2LoadError as error:
            raise PermanentError(
                f"Salesforce {host} ({self.name}): Bulk API 2.0 {what} of {target} refused: {error}"
            ) from error
        except Exception as error:
            translated = translate_error(error, host, None, http)
            if translated is None or translated is error:
                raise
            translated.args = (f"{translated} ({self.name}: {what} of {target})",)
            raise translated from error

    # -- payloads
    def _external_value(self, record: OutgoingRecord) -> tuple[str, str]:
        """The external id field's name as the record spells it, and its value."""
        wanted = self.external_id_field.lower()
        for name, value in record.fields.items():
            if name.lower() == wanted and value is not None:
                return name, str(value)
        return self.external_id_field, record.key

    def _payload(self, record: OutgoingRecord) -> tuple[str, dict[str, Any]]:
        """The external id value and the REST body of `record` (`_NotSendable` if it cannot
        be sent)."""
        name, value = self._external_value(record)
        body: dict[str, Any] = {}
        for field, item in record.fields.items():
            check_name(field)
            body[field] = _rest_value(field, item)
        body[name] = value
        return value, body

    # -- the Sink protocol
    def batch_size(self, pending: int) -> int:
        """200 (one collection call) below `bulk_threshold`, else everything (one Bulk job)."""
        return COLLECTION_SIZE if pending < self.bulk_threshold else pending

    def send(self, records: Sequence[OutgoingRecord]) -> list[Delivered]:
        """Upsert `records`; one `Delivered` per record, in order."""
        if not records:
            return []
        outcomes: list[Delivered | None] = [None] * len(records)
        ready: list[tuple[int, str, dict[str, Any]]] = []
        for position, record in enumerate(records):
            try:
                value, body = self._payload(record)
            except _NotSendable as error:
                outcomes[position] = Delivered(
                    record.key, "dead", message=f"NOT_SENT: {error}", details={"codes": []}
                )
                continue
            ready.append((position, value, body))
        if ready:
            if len(records) >= self.bulk_threshold:
                answers = self._send_bulk(records, ready)
            else:
                answers = self._send_collections(records, ready)
            for position, delivered in answers.items():
                outcomes[position] = delivered
        return [outcome for outcome in outcomes if outcome is not None]

    def _send_collections(
        self, records: Sequence[OutgoingRecord], ready: Sequence[tuple[int, str, dict[str, Any]]]
    ) -> dict[int, Delivered]:
        sf = self._client()
        path = f"composite/sobjects/{self.object_name}/{self.external_id_field}"
        answers: dict[int, Delivered] = {}
        for start in range(0, len(ready), COLLECTION_SIZE):
            chunk = ready[start : start + COLLECTION_SIZE]
            body = {
                "allOrNone": False,
                "records": [
                    {"attributes": {"type": self.object_name}, **payload} for _, _, payload in chunk
                ],
            }
            results = self._call(
                lambda body=body: sf.restful(path, method="PATCH", json=body),
                "sObject Collections upsert",
            )
            if not isinstance(results, list) or len(results) != len(chunk):
                raise PermanentError(
                    f"Salesforce {sf.sf_instance} ({self.name}): the collection upsert of"
                    f" {len(chunk)} records answered {type(results).__name__} of"
                    f" {len(results) if isinstance(results, list) else 'no'} results"
                )
            for (position, _, _), result in zip(chunk, results, strict=True):
                key = records[position].key
                if result.get("success"):
                    answers[position] = Delivered(
                        key, "sent", peer_id=result.get("id"), created=result.get("created")
                    )
                else:
                    outcome, message, codes = _refusal(result.get("errors") or [])
                    answers[position] = Delivered(
                        key,
                        outcome,  # type: ignore[arg-type]
                        peer_id=result.get("id"),
                        message=message,
                        details={"codes": codes},
                    )
        return answers

    def _send_bulk(
        self, records: Sequence[OutgoingRecord], ready: Sequence[tuple[int, str, dict[str, Any]]]
    ) -> dict[int, Delivered]:
        sf = self._client()
        handler = getattr(sf.bulk2, self.object_name)
        rows = [
            {name: _csv_text(value) for name, value in payload.items()} for _, _, payload in ready
        ]
        jobs = self._call(
            lambda: handler.upsert(
                records=rows,
                external_id_field=self.external_id_field,
                wait=self.bulk_poll_wait,  # type: ignore[arg-type]
            ),
            "Bulk API 2.0 upsert",
        )
        by_value: dict[str, int] = {}
        for position, value, _ in ready:
            by_value.setdefault(value, position)
            by_value.setdefault(value.casefold(), position)
        answers: dict[int, Delivered] = {}

        def position_of(row: Mapping[str, str]) -> int | None:
            value = record_value(row, [self.external_id_field])
            if value is None:
                return None
            return by_value.get(value, by_value.get(str(value).casefold()))

        for job in jobs:
            job_id = str(job["job_id"])
            texts = {
                kind: self._call(
                    lambda kind=kind, job_id=job_id: self._results_csv(sf, job_id, kind),
                    f"Bulk API 2.0 {kind} of job {job_id}",
                )
                for kind in ("successfulResults", "failedResults", "unprocessedRecords")
            }
            for kind, text in texts.items():
                for row in csv.DictReader(io.StringIO(text, newline="")):
                    position = position_of(row)
                    if position is None:
                        continue
                    key = records[position].key
                    if kind == "successfulResults":
                        created = (row.get("sf__Created") or "").lower()
                        answers[position] = Delivered(
                            key,
                            "sent",
                            peer_id=row.get("sf__Id") or None,
                            created=created == "true" if created else None,
                            details={"job_id": job_id},
                        )
                    elif kind == "failedResults":
                        outcome, message, codes = _refusal(_bulk_errors(row.get("sf__Error", "")))
                        answers[position] = Delivered(
                            key,
                            outcome,  # type: ignore[arg-type]
                            peer_id=row.get("sf__Id") or None,
                            message=message,
                            details={"job_id": job_id, "codes": codes},
                        )
                    else:
                        answers[position] = Delivered(
                            key,
                            "retry",
                            message=f"UNPROCESSED: Bulk API 2.0 job {job_id} did not process it",
                            details={"job_id": job_id},
                        )
        job_ids = ", ".join(str(job["job_id"]) for job in jobs)
        for position, _, _ in ready:
            if position not in answers:
                answers[position] = Delivered(
                    records[position].key,
                    "retry",
                    message=f"UNREPORTED: Bulk API 2.0 job {job_ids} reported nothing for it",
                    details={"job_id": job_ids},
                )
        return answers

    @staticmethod
    def _results_csv(sf: Salesforce, job_id: str, kind: str) -> str:
        """A job's results CSV, read as UTF-8 (Bulk API 2.0 data always is) whatever charset
        the answer names: simple-salesforce's getters return `response.text`, which requests
        decodes as ISO-8859-1 when `text/csv` names none."""
        response = sf.session.get(
            f"{sf.bulk2_url}ingest/{job_id}/{kind}/",
            headers={**sf.headers, "Accept": "text/csv"},
        )
        if response.status_code >= 300:
            exception_handler(response, f"ingest/{job_id}/{kind}")
        return response.content.decode("utf-8-sig")

    def read_back(self, records: Sequence[OutgoingRecord]) -> dict[str, str]:
        """`{key: Id}` of the records Salesforce holds with exactly these field values (one
        record per external id; a value held twice is not taken as delivered)."""
        wanted: dict[str, list[OutgoingRecord]] = {}
        names: dict[str, str] = {}
        for record in records:
            _, value = self._external_value(record)
            wanted.setdefault(value.casefold(), []).append(record)
            for name in record.fields:
                names.setdefault(name.lower(), check_name(name))
        if not wanted:
            return {}
        names.pop(self.external_id_field.lower(), None)
        names.pop("id", None)
        select = ", ".join(["Id", self.external_id_field, *names.values()])
        head = f"SELECT {select} FROM {self.object_name} WHERE {self.external_id_field} IN ("
        sf = self._client()
        held: dict[str, list[Mapping[str, Any]]] = {}
        literals: list[str] = []
        values = sorted({self._external_value(record)[1] for record in records})

        def run(batch: list[str]) -> None:
            soql = head + ", ".join(batch) + ")"
            answer = self._call(lambda: sf.query_all(soql), "read-back query")
            for row in answer["records"]:
                value = record_value(row, [self.external_id_field])
                if value is not None:
                    held.setdefault(str(value).casefold(), []).append(row)

        size = len(head) + 1
        for value in values:
            literal = _soql_string(value)
            if literals and size + len(literal) + 2 > _SOQL_BUDGET:
                run(literals)
                literals, size = [], len(head) + 1
            literals.append(literal)
            size += len(literal) + 2
        if literals:
            run(literals)
        found: dict[str, str] = {}
        for folded, candidates in wanted.items():
            rows = held.get(folded, [])
            if len(rows) != 1:
                continue
            row = rows[0]
            for record in candidates:
                if all(
                    _same(value, record_value(row, [name])) for name, value in record.fields.items()
                ):
                    found[record.key] = str(row["Id"])
        return found
