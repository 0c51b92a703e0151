"""Source kind `salesforce` (REST queries or Bulk 2.0 jobs) and sink kind `salesforce` (upsert by
external id)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from connectors.delivery import Sink
from connectors.rawtable import RawTable, closed_after
from connectors.registry import SinkKind, SourceKind, SourceRequest
from connectors.watermark import past_watermark_stream
from schemas.config import CursorSpec, EnvText, Secret, SinkBase, StrictModel

if TYPE_CHECKING:
    import requests

    from connectors.salesforce.models import SalesforceAuth

__all__ = [
    "SALESFORCE_SINK",
    "SALESFORCE_SOURCE",
    "SalesforceAuthSpec",
    "SalesforceSink",
    "SalesforceSource",
]


class SalesforceAuthSpec(StrictModel):
    """Credentials, each a `${VARIABLE}`: a session, a password login, or a JWT bearer flow."""

    session_id: Secret | None = None
    instance_url: EnvText | None = None
    username: EnvText | None = None
    password: Secret | None = None
    security_token: Secret | None = None
    consumer_key: Secret | None = None
    private_key_file: EnvText | None = None
    domain: EnvText = Field("login", description="`login`, `test` or a My Domain prefix.")


class SalesforceSource(StrictModel):
    """Salesforce objects (REST query with paging, or Bulk API 2.0 for large objects)."""

    kind: Literal["salesforce"]
    auth: SalesforceAuthSpec
    object: str = Field(description="sObject, e.g. `WorkOrder` or `ServiceAppointment`.")
    fields: list[str] = Field(min_length=1, description="Fields to read (`Rel.Field` allowed).")
    where: str | None = Field(None, description="Extra SOQL condition (read-only filter).")
    bulk: bool = Field(False, description="Use a Bulk API 2.0 query job (large objects).")
    key: list[str] = Field(default_factory=lambda: ["Id"], description="Fields identifying a row.")
    cursor: CursorSpec | None = Field(
        None, description="Pull incrementally, normally on `SystemModstamp`."
    )
    ca_bundle: EnvText | None = Field(
        None, description="CA certificates file to trust (the local sandbox's own CA)."
    )
    timeout: float = Field(30, gt=0, le=600, description="Seconds per HTTP call.")


class SalesforceSink(SinkBase):
    """Salesforce: upsert by external id (composite collections, or Bulk 2.0 when large)."""

    kind: Literal["salesforce"]
    auth: SalesforceAuthSpec
    object: str = Field(description="sObject, e.g. `WorkOrder`.")
    external_id_field: str = Field(description="External id field the upsert matches on.")
    bulk_threshold: int = Field(
        2000, ge=1, description="From this many records, one Bulk API 2.0 job instead."
    )
    ca_bundle: EnvText | None = Field(None, description="CA file for a private certificate.")


def _auth(spec: SalesforceAuthSpec) -> SalesforceAuth:
    from connectors.salesforce.models import SalesforceAuth

    return SalesforceAuth(**{k: v for k, v in spec.model_dump().items() if v is not None})


def _session(ca_bundle: str | None) -> requests.Session | None:
    """A session trusting `ca_bundle` (a private CA, such as the sandbox's), else None."""
    if ca_bundle is None:
        return None
    import requests

    session = requests.Session()
    session.verify = ca_bundle
    return session


def _read(source: SalesforceSource, request: SourceRequest) -> RawTable:
    from connectors.salesforce.client import read_salesforce

    after = request.after
    since = None if after is None or after.value is None else (after.column, after.value)
    session = _session(source.ca_bundle)
    try:
        raw = read_salesforce(
            _auth(source.auth),
            object_name=source.object,
            fields=source.fields,
            where=source.where,
            since=since,
            bulk=source.bulk,
            key=source.key,
            session=session,
            timeout=source.timeout,
            stream=request.stream,
        )
    except BaseException:
        if session is not None:
            session.close()
        raise
    if session is not None:  # the client's calls go through its adapters: closed at the end
        raw = closed_after(raw, session.close)
    return raw if after is None else past_watermark_stream(raw, after)


def _header(source: SalesforceSource, request: SourceRequest) -> list[str]:
    return list(source.fields)


def _build_sink(name: str, spec: SalesforceSink) -> Sink:
    from connectors.salesforce.push import SalesforceSink as SalesforceConnector

    return SalesforceConnector(
        name,
        _auth(spec.auth),
        object_name=spec.object,
        external_id_field=spec.external_id_field,
        ca_bundle=spec.ca_bundle,
        bulk_threshold=spec.bulk_threshold,
        timeout=spec.timeout,
        session=_session(spec.ca_bundle),
    )


SALESFORCE_SOURCE = SourceKind(
    "salesforce", SalesforceSource, read=_read, header=_header, locator="auth"
)
SALESFORCE_SINK = SinkKind("salesforce", SalesforceSink, build=_build_sink, locator="auth")
