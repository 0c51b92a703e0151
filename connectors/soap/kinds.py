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

    kind: Literal["page_number", "continuation_token"]
    page_size: int = Field(100, ge=1, le=10_000)
    page_size_argument: str = "pageSize"
    page_argument: str = "pageNumber"
    first_page: Literal[0, 1] = 1
    has_more_path: str | None = None
    token_argument: str = "continuationToken"
    token_path: str = "nextContinuationToken"


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
    )


SOAP_SOURCE = SourceKind("soap", SoapSource, read=_read, locator="wsdl")
SOAP_SINK = SinkKind("soap", SoapSink, build=_build_sink, locator="wsdl")
