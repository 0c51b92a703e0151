"""Bulk API 2.0: query jobs (CSV results paged by locator) and ingest jobs (insert and
upsert of an uploaded CSV, written through `_write`) (a mixin of `SalesforcePeer`)."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from connectors.sandbox.salesforce.schema import UTC, salesforce_id
from connectors.sandbox.salesforce.server import PeerRequest, PeerResponse
from connectors.sandbox.salesforce.soql import Query, path_value
from connectors.sandbox.salesforce.wire import PeerFault, csv_value, rest_datetime


@dataclass
class QueryJob:
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
class IngestJob:
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


def _job_info(job: QueryJob | IngestJob, job_type: str) -> dict[str, Any]:
    """What a Bulk API 2.0 job's info says whatever its type (query or ingest)."""
    stamp = rest_datetime(job.created)
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
_Job = TypeVar("_Job", QueryJob, IngestJob)


class BulkApi:
    """`jobs/query` and `jobs/ingest` of `SalesforcePeer` (its store, lock, jobs, page
    size and `bulk_polls_in_progress`)."""

    # -- Bulk API 2.0 query jobs
    def _job(self, request: PeerRequest) -> QueryJob:
        return _find_job(self._jobs, request)

    def _create_query_job(self, request: PeerRequest) -> PeerResponse:
        body = request.json()
        if not isinstance(body, dict) or body.get("operation") not in ("query", "queryAll"):
            raise PeerFault(400, "INVALIDJOB", "operation must be query or queryAll")
        delimiter, line_ending = _csv_format(body)
        with self.lock:
            query = self._parse(body.get("query"))
            job = QueryJob(
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
                [csv_value(path_value(path, record, self.store)) for path in query.fields]
                for record in records
            ]
            self._jobs[job.id] = job
            info = job.info()
        return PeerResponse.json(info)

    def _query_job_info(self, request: PeerRequest) -> PeerResponse:
        with self.lock:
            return self._polled(self._job(request))

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
            text = _csv_text(job, job.header, rows)
            locator = _locator(end) if end < len(job.rows) else "null"
        return PeerResponse(
            200,
            text,
            "text/csv",
            {"Sforce-Locator": locator, "Sforce-NumberOfRecords": str(len(rows))},
        )

    # -- Bulk API 2.0 ingest jobs
    def _ingest_job(self, request: PeerRequest) -> IngestJob:
        return _find_job(self._ingest_jobs, request)

    def _polled(self, job: QueryJob | IngestJob) -> PeerResponse:
        """A job's info as `GET` answers it: a started job shows `InProgress` for
        `bulk_polls_in_progress` polls, then `JobComplete`. Call under the lock."""
        if job.state in ("UploadComplete", "InProgress"):
            job.polls += 1
            job.state = "InProgress" if job.polls <= self.bulk_polls_in_progress else "JobComplete"
        return PeerResponse.json(job.info())

    def _create_ingest_job(self, request: PeerRequest) -> PeerResponse:
        body = request.json()
        if not isinstance(body, dict):
            raise PeerFault(400, "INVALIDJOB", "InvalidJob : the body must be a JSON object")
        operation = body.get("operation")
        if operation not in ("insert", "upsert"):
            raise PeerFault(
                400, "INVALIDJOB", f"InvalidJob : operation {operation!r} is not served here"
            )
        delimiter, line_ending = _csv_format(body)
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
            job = IngestJob(
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

    def _process_ingest(self, job: IngestJob) -> None:
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
            return self._polled(self._ingest_job(request))

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
            text = _csv_text(job, header, rows)
        return PeerResponse(200, text, "text/csv")


def _find_job(jobs: Mapping[str, _Job], request: PeerRequest) -> _Job:
    assert request.match is not None
    job = jobs.get(request.match["job"])
    if job is None:
        raise PeerFault(404, "NOT_FOUND", "The requested resource does not exist")
    return job


def _csv_format(body: Mapping[str, Any]) -> tuple[str, str]:
    """A new job's `columnDelimiter` and `lineEnding` (defaults COMMA, LF), checked."""
    delimiter = body.get("columnDelimiter", "COMMA")
    line_ending = body.get("lineEnding", "LF")
    if delimiter not in _DELIMITERS or line_ending not in _LINE_ENDINGS:
        raise PeerFault(400, "INVALIDJOB", "unknown columnDelimiter or lineEnding")
    return delimiter, line_ending


def _csv_text(job: QueryJob | IngestJob, header: list[str], rows: list[list[str]]) -> bytes:
    """Results as Bulk 2.0 writes them: the job's delimiter and line ending, every value
    quoted; no header line when `header` is empty."""
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
    return buffer.getvalue().encode()


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
