"""Source kind `soap` (a landlord ERP's web service, read through its WSDL) and sink kind `soap`
(its import operation).

The outbox retries whole calls itself, reading the peer back between attempts, so the sink's
connector is built with a single attempt per call (no retries nested in retries).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from connectors.delivery import Sink
from connectors.rawtable import RawTable
from connectors.registry import SinkKind, SourceKind, SourceRequest
from connectors.retry import ONE_ATTEMPT
from connectors.soap.models import RETRIABLE_FAULT_CODES
from connectors.watermark import past_watermark
from schemas.config import CursorSpec, EnvText, Secret, SinkBase, StrictModel

__all__ = ["SOAP_SINK", "SOAP_SOURCE", "SoapSink", "SoapSource"]


class SoapCursorSpec(CursorSpec):
    """Incremental SOAP pulls: the record field that grows, and the argument that filters."""

    argument: str = Field(
        description="Operation argument taking the lower bound, e.g. `modifiedSince`."
    )


class SoapPagingSpec(StrictModel):
    """How a SOAP operation pages (see connectors/soap/models.py for every field)."""

    kind: Literal["page_number", "offset", "continuation_token", "cursor"] = Field(
        description="page_number, offset, continuation_token (from the answer) or cursor (the"
        " last record's field)."
    )
    page_size: int = Field(100, ge=1, le=10_000, description="Records asked for per call.")
    page_size_argument: str = "pageSize"
    page_argument: str = Field("pageNumber", description="Page number argument (page_number).")
    first_page: Literal[0, 1] = 1
    offset_argument: str = Field("offset", description="Offset argument (offset).")
    first_offset: Literal[0, 1] = 0
    token_argument: str = "continuationToken"
    token_path: str = Field(
        "nextContinuationToken", description="Answer path of the next token (continuation_token)."
    )
    cursor_argument: str = Field("after", description="Cursor argument (cursor).")
    cursor_field: str | None = Field(
        None, description="Record field whose last value is the next cursor (cursor: required)."
    )
    total_path: str | None = Field(
        None, description="Answer path of the total record count: decides the end first."
    )
    has_more_path: str | None = Field(
        None, description="Answer path of the 'more pages follow' flag."
    )

    @model_validator(mode="after")
    def _cursor_needs_a_field(self) -> SoapPagingSpec:
        if self.kind == "cursor" and not self.cursor_field:
            raise ValueError("paging kind `cursor` needs `cursor_field` (e.g. the record's id)")
        return self


def _transient_faults() -> list[str]:
    return sorted(RETRIABLE_FAULT_CODES)


_TRANSIENT_FAULTS = (
    "SOAP fault codes meaning 'try again later', retried with backoff like timeouts, cut"
    " connections and HTTP 5xx; any other fault is permanent."
)


class SoapSource(StrictModel):
    """A landlord ERP web service described by a WSDL (zeep, hardened)."""

    kind: Literal["soap"]
    wsdl: EnvText = Field(description="WSDL file path or http(s) URL.")
    address: EnvText | None = Field(None, description="Service address overriding the WSDL's.")
    operation: str = Field(description="Operation to call, e.g. `ListLedgerEntries`.")
    arguments: dict[str, str | int | bool] = Field(
        default_factory=dict, description="Fixed arguments of the operation."
    )
    records: str = Field(description="Dotted path of the record list in the response.")
    paging: SoapPagingSpec | None = Field(None, description="How the operation pages.")
    key: list[str] = Field(default_factory=list, description="Record fields identifying a row.")
    cursor: SoapCursorSpec | None = Field(None, description="Pull incrementally.")
    timeout: float = Field(30, gt=0, le=600, description="Seconds to connect/read the WSDL.")
    operation_timeout: float = Field(60, gt=0, le=3600, description="Seconds per call.")
    transient_faults: list[str] = Field(
        default_factory=_transient_faults, description=_TRANSIENT_FAULTS
    )

    @model_validator(mode="after")
    def _cursor_needs_key(self) -> SoapSource:
        if self.cursor is not None and not self.key:
            raise ValueError("an incremental source (`cursor`) needs `key`")
        return self


class SoapResults(StrictModel):
    """Where a batch operation's answer says what became of each record."""

    path: str | None = Field(None, description="Dotted path of the result list (default: WSDL).")
    reference: str = Field("Reference", description="Result field naming the record.")
    status: str = Field("Status", description="Result field with the outcome.")
    id: str = Field("ErpId", description="Result field with the ERP's id for the record.")
    message: str = Field("Message", description="Result field with the ERP's message.")
    accepted: list[str] = Field(
        default_factory=lambda: ["ACCEPTED"], min_length=1, description="Statuses meaning done."
    )


class SoapReadBack(StrictModel):
    """The operation reading records back by reference (recovery after a crash)."""

    operation: str = Field(description="Operation taking a list of references.")
    path: str | None = Field(None, description="Dotted path of the record list in the answer.")
    id: str = Field("ErpId", description="Field with the ERP's id.")
    idempotency_key: str = Field(
        "IdempotencyKey", description="Field with the idempotency key the ERP holds."
    )


class SoapSink(SinkBase):
    """A web service of the landlord's ERP, described by its WSDL."""

    kind: Literal["soap"]
    wsdl: EnvText = Field(description="WSDL file path or http(s) URL.")
    address: EnvText | None = Field(None, description="Service address overriding the WSDL's.")
    operation: str = Field(description="Operation receiving the records.")
    mode: Literal["auto", "batch", "per_record"] = Field(
        "auto", description="A list of records per call, or one call per record (auto: WSDL)."
    )
    reference_field: str = Field(
        "Reference", description="Field of a record carrying its key (added when not mapped)."
    )
    idempotency_field: str = Field(
        "IdempotencyKey", description="Field of a record carrying its idempotency key."
    )
    results: SoapResults = Field(default_factory=SoapResults)
    read_back: SoapReadBack | None = Field(
        None, description="How to read records back; without it, records in doubt are resent."
    )
    operation_timeout: float = Field(60, gt=0, le=3600, description="Seconds per call.")
    transient_faults: list[str] = Field(
        default_factory=_transient_faults, description=_TRANSIENT_FAULTS
    )
    username: EnvText | None = Field(None, description="`${VARIABLE}` for Basic auth.")
    password: Secret | None = Field(None, description="`${VARIABLE}` for Basic auth.")


def _read(source: SoapSource, request: SourceRequest) -> RawTable:
    from connectors.soap.client import read_soap
    from connectors.soap.models import SoapPaging

    after = request.after
    since = None
    if after is not None and after.value is not None and source.cursor is not None:
        since = (source.cursor.argument, after.value)
    raw = read_soap(
        source.wsdl,
        **source.model_dump(include={"operation", "key", "timeout", "operation_timeout"}),
        arguments=dict(source.arguments),
        records_path=source.records,
        paging=None if source.paging is None else SoapPaging(**source.paging.model_dump()),
        since=since,
        address=source.address,
        retriable_faults=frozenset(source.transient_faults),
    )
    return raw if after is None else past_watermark(raw, after)


def _build_sink(name: str, spec: SoapSink) -> Sink:
    from connectors.soap.push import ReadBack, Results
    from connectors.soap.push import SoapSink as SoapConnector

    auth = None
    if spec.username is not None and spec.password is not None:
        auth = (spec.username, spec.password)
    results = spec.results
    same = {"wsdl", "operation", "mode", "idempotency_field", "reference_field", "address"}
    return SoapConnector(
        name,
        **spec.model_dump(include={*same, "timeout", "operation_timeout"}),
        results=Results(
            **results.model_dump(exclude={"accepted"}), accepted=frozenset(results.accepted)
        ),
        read_back=None if spec.read_back is None else ReadBack(**spec.read_back.model_dump()),
        max_batch=spec.batch_size or 100,
        auth=auth,
        retry=ONE_ATTEMPT,
        retriable_faults=frozenset(spec.transient_faults),
    )


SOAP_SOURCE = SourceKind("soap", SoapSource, read=_read, locator="wsdl")
SOAP_SINK = SinkKind("soap", SoapSink, build=_build_sink, locator="wsdl")
