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
from connectors.watermark import past_watermark_stream
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
    flatten: str | None = Field(
        None,
        description="Repeated element inside each record (`lignes.ligne`): one row per"
        " occurrence, carrying the record's fields, its own as `lignes.ligne.<field>`.",
    )
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


SinkOutcome = Literal["sent", "retry", "dead"]


class SoapResults(StrictModel):
    """Where the answer says what became of each record, and what its status codes mean."""

    path: str | None = Field(
        None,
        description="Dotted path of the result (per record) or result list (batch) in the"
        ' answer; "" for the answer itself (default: from the WSDL).',
    )
    reference: str = Field("Reference", description="Path in a result naming the record.")
    status: str = Field("Status", description="Path in a result of its status code.")
    id: str = Field("ErpId", description="Path in a result of the ERP's id for the record.")
    message: str = Field("Message", description="Path in a result of the ERP's message.")
    accepted: list[str] = Field(
        default_factory=lambda: ["ACCEPTED"], min_length=1, description="Statuses meaning done."
    )
    statuses: dict[str, SinkOutcome] = Field(
        default_factory=dict,
        description="Status code → sent, retry or dead (e.g. `{CREE: sent, REFUSE: dead}`);"
        " a status in neither `statuses` nor `accepted` is dead.",
    )
    faults: dict[str, SinkOutcome] = Field(
        default_factory=dict,
        description="SOAP fault code → sent, retry or dead for every record of the call (e.g."
        " `{Server.Refuse: dead}`); by default a `Client.*` fault of a one-record call is dead,"
        " a `transient_faults` one retried, any other stops the push.",
    )


class SoapNotFound(StrictModel):
    """How a lookup by reference says "no such record": a fault code, or an empty answer."""

    fault: str | None = Field(None, description="Fault code, e.g. `Client.Introuvable`.")
    empty: bool = Field(False, description="An empty answer (or an empty `path`).")

    @model_validator(mode="after")
    def _one_way(self) -> SoapNotFound:
        if (self.fault is None) == (not self.empty):
            raise ValueError("not_found takes `fault: <code>` or `empty: true` (one of them)")
        return self


class SoapReadBack(StrictModel):
    """The operation reading records back (recovery of records in doubt after a crash): a
    list/search operation given references, or a lookup by one reference (`argument`)."""

    operation: str = Field(description="Operation taking a list of references, or one.")
    argument: str | None = Field(
        None,
        description="Lookup by reference: the input path taking one reference (`numeroBon`).",
    )
    not_found: SoapNotFound | None = Field(
        None, description="Lookup: how the answer says not found (`{fault: …}`, `{empty: true}`)."
    )
    path: str | None = Field(
        None,
        description="Dotted path of the held record(s) in the answer (lookup: default the"
        " answer itself; list: from the WSDL).",
    )
    id: str = Field("ErpId", description="Path of the ERP's id in a held record.")
    idempotency_key: str | None = Field(
        "IdempotencyKey",
        description="Path of the idempotency key a held record holds (compared when the sink"
        " sends one; otherwise the held values are compared with the request's).",
    )

    @model_validator(mode="after")
    def _lookup_settings(self) -> SoapReadBack:
        if self.argument is None and self.not_found is not None:
            raise ValueError("`not_found` is for a lookup by reference: give `argument` too")
        if self.argument is not None and self.not_found is None:
            raise ValueError(
                "a lookup by reference (`argument`) needs `not_found`: `{fault: <code>}` or"
                " `{empty: true}`"
            )
        return self


def _none(value: str | None) -> str | None:
    return None if value is None or value.strip().lower() in ("none", "") else value


class SoapSink(SinkBase):
    """A web service of the landlord's ERP, described by its WSDL. Target names in `fields`
    are dotted paths in the operation's input (one list item in batch mode):
    `engagement.montant.valeur`, `engagement.lignes.ligne.libelle`."""

    kind: Literal["soap"]
    wsdl: EnvText = Field(description="WSDL file path or http(s) URL.")
    address: EnvText | None = Field(None, description="Service address overriding the WSDL's.")
    operation: str = Field(description="Operation receiving the records.")
    mode: Literal["auto", "batch", "per_record"] = Field(
        "auto", description="A list of records per call, or one call per record (auto: WSDL)."
    )
    natural_key: str | None = Field(
        None,
        description="Target path of the business key the target is idempotent on"
        " (`engagement.numeroBon`): no idempotency element is sent, records in doubt are read"
        " back by it.",
    )
    reference_field: str | None = Field(
        None,
        description="Target path carrying the record's reference (filled with its key when not"
        " mapped); default: `natural_key`, else `Reference`; `none`: not sent.",
    )
    idempotency_field: str | None = Field(
        "IdempotencyKey",
        description="Target path carrying the record's idempotency key; `none` (implied by"
        " `natural_key` unless set): no idempotency element.",
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

    def placed_fields(self) -> tuple[str | None, str | None]:
        """(reference path, idempotency path) as the connector places them (None: not sent)."""
        reference = self.reference_field
        if reference is None:
            reference = self.natural_key or "Reference"
        idempotency = self.idempotency_field
        if self.natural_key is not None and "idempotency_field" not in self.model_fields_set:
            idempotency = None
        return _none(reference), _none(idempotency)


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
        flatten=source.flatten,
        paging=None if source.paging is None else SoapPaging(**source.paging.model_dump()),
        since=since,
        address=source.address,
        retriable_faults=frozenset(source.transient_faults),
        stream=request.stream,
    )
    return raw if after is None else past_watermark_stream(raw, after)


def _header(source: SoapSource, request: SourceRequest) -> list[str] | None:
    """`datafix check`: the source's settings against its WSDL (operation, records, flatten,
    paging, arguments, required request elements, key and cursor; each problem at its
    setting, `connectors.soap.wsdl.SettingProblems`), and the columns its rows will have, which
    the mapped fields are checked against. The service is not called."""
    from connectors.soap.client import check_source
    from connectors.soap.models import SoapPaging

    return check_source(
        source.wsdl,
        operation=source.operation,
        records_path=source.records,
        arguments=dict(source.arguments),
        paging=None if source.paging is None else SoapPaging(**source.paging.model_dump()),
        since_argument=None if source.cursor is None else source.cursor.argument,
        cursor_column=None if source.cursor is None else source.cursor.column,
        key=source.key,
        flatten=source.flatten,
        timeout=source.timeout,
    )


def _build_sink(name: str, spec: SoapSink) -> Sink:
    from connectors.soap.push import ReadBack, Results
    from connectors.soap.push import SoapSink as SoapConnector

    auth = None
    if spec.username is not None and spec.password is not None:
        auth = (spec.username, spec.password)
    results = spec.results
    read_back = spec.read_back
    reference, idempotency = spec.placed_fields()
    paths = {"reference", "status", "id", "message"}
    return SoapConnector(
        name,
        **spec.model_dump(include={"wsdl", "operation", "mode", "address", "natural_key"}),
        **spec.model_dump(include={"timeout", "operation_timeout"}),
        reference_field=reference,
        idempotency_field=idempotency,
        targets=list(spec.fields),
        results=Results(
            **results.model_dump(exclude={"accepted", "statuses", "faults"}),
            accepted=frozenset(results.accepted),
            statuses=dict(results.statuses),
            faults=dict(results.faults),
            checked=frozenset({"status"} | (results.model_fields_set & paths)),
        ),
        read_back=None
        if read_back is None
        else ReadBack(
            **read_back.model_dump(exclude={"not_found", "idempotency_key"}),
            idempotency_key=_none(read_back.idempotency_key),
            not_found_fault=None if read_back.not_found is None else read_back.not_found.fault,
            not_found_empty=read_back.not_found is not None and read_back.not_found.empty,
        ),
        max_batch=spec.batch_size or 100,
        auth=auth,
        retry=ONE_ATTEMPT,
        retriable_faults=frozenset(spec.transient_faults),
    )


def _check_sink(sink: Sink, spec: SoapSink) -> None:
    """`datafix check`: the WSDL loads, and the sink's operation, every mapped target path,
    the reference / idempotency / natural-key paths, the result and read-back paths are in
    it, with no required element left unmapped (a did-you-mean for a misspelt one). No
    operation is called."""
    sink.check()  # type: ignore[attr-defined]


SOAP_SOURCE = SourceKind("soap", SoapSource, read=_read, header=_header, locator="wsdl")
SOAP_SINK = SinkKind("soap", SoapSink, build=_build_sink, check=_check_sink, locator="wsdl")
