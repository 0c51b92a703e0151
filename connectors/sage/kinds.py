"""Sage: source kind `sage_x3` (classic SOAP web services, query/read), sink kinds `sage_x3`
(`save`/`modify` of an object such as SIH) and `sage100_file` (an import file dropped
atomically into a folder Sage 100 imports from).

The outbox retries whole calls itself, reading the peer back between attempts, so the X3 sink's
connector is built with a single attempt per call (no retries nested in retries).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from connectors.delivery import Sink
from connectors.rawtable import RawTable
from connectors.registry import SinkKind, SourceKind, SourceRequest
from connectors.retry import ONE_ATTEMPT
from connectors.watermark import past_watermark
from schemas.canonical import ColumnType
from schemas.config import EnvText, Secret, SinkBase, StrictModel
from schemas.outgoing import OUTGOING

__all__ = [
    "SAGE100_FILE_SINK",
    "SAGE_X3_SINK",
    "SAGE_X3_SOURCE",
    "Sage100FileSink",
    "SageX3Sink",
    "SageX3Source",
]


class SageX3Source(StrictModel):
    """Sage X3 classic SOAP web services (`CAdxWebServiceXmlCC`), read with query/read."""

    kind: Literal["sage_x3"]
    wsdl: EnvText = Field(description="WSDL of CAdxWebServiceXmlCC (file path or URL).")
    address: EnvText | None = Field(None, description="Service address overriding the WSDL's.")
    pool_alias: EnvText = Field(description="Sage X3 pool alias (e.g. `SEED`).")
    public_name: str = Field(description="Web service public name, e.g. `BPC` or `SIH`.")
    keys: list[str] = Field(min_length=1, description="Key fields of the object.")
    language: str = "FRA"
    lines: str | None = Field(None, description="Group of detail lines read as rows.")
    username: EnvText | None = Field(None, description="`${VARIABLE}` for Basic auth.")
    password: Secret | None = Field(None, description="`${VARIABLE}` for Basic auth.")
    timeout: float = Field(30, gt=0, le=600)
    operation_timeout: float = Field(60, gt=0, le=3600)


class SageX3Sink(SinkBase):
    """Sage X3 `CAdxWebServiceXmlCC`: `save` (create) or `modify` of an object, e.g. SIH."""

    kind: Literal["sage_x3"]
    wsdl: EnvText = Field(description="WSDL of CAdxWebServiceXmlCC (file path or URL).")
    pool_alias: EnvText = Field(description="Sage X3 pool alias (e.g. `SEED`).")
    public_name: str = Field("SIH", description="Web service public name (sales invoice: SIH).")
    group: str = Field("SIH0_1", description="Screen block (GRP ID) the fields belong to.")
    field_groups: dict[str, str] = Field(
        default_factory=dict, description="Fields of other blocks: field → GRP ID."
    )
    reference_field: str = Field(
        "YHUBREF", description="X3 field holding the hub's reference, queried to read back."
    )
    version_field: str | None = Field(
        "YHUBVER", description="X3 field holding the record's idempotency key (read back)."
    )
    key_field: str = Field("NUM", description="X3 key of the object (the invoice number).")
    lines_table: str | None = Field(None, description="TAB ID of the object's lines, if any.")
    address: EnvText | None = Field(None, description="Service address overriding the WSDL's.")
    operation_timeout: float = Field(60, gt=0, le=3600, description="Seconds per call.")
    language: str = "FRA"
    username: EnvText | None = Field(None, description="`${VARIABLE}` for Basic auth.")
    password: Secret | None = Field(None, description="`${VARIABLE}` for Basic auth.")


class Sage100FileSink(SinkBase):
    """Sage 100: an import file (import paramétrable) dropped atomically into a folder."""

    kind: Literal["sage100_file"]
    folder: EnvText = Field(description="Drop folder Sage 100 imports from.")
    file_prefix: str = Field("HUB_", description="Start of every file name the hub writes.")
    format: Literal["csv", "xlsx"] = "csv"
    delimiter: str = Field(";", min_length=1, max_length=1)
    encoding: str = "cp1252"
    date_format: str = Field(
        "dd/mm/yyyy", description="How dates are written: `dd/mm/yyyy`, `ddmmyy`, `yyyymmdd`…"
    )
    archive_folders: list[EnvText] = Field(
        default_factory=list, description="Where Sage moves imported files (read back)."
    )
    idempotency_column: str = Field("HUB_ID", description="File column with the record's id.")
    rows_per_file: int = Field(5000, ge=1, le=1_000_000)


def _basic_auth(spec: SageX3Source | SageX3Sink) -> tuple[str, str] | None:
    if spec.username is None or spec.password is None:
        return None
    return spec.username, spec.password


def _read_x3(source: SageX3Source, request: SourceRequest) -> RawTable:
    from connectors.sage.client import read_sage_x3

    same = {"pool_alias", "public_name", "keys", "language", "lines", "address", "timeout"}
    raw = read_sage_x3(
        source.wsdl,
        **source.model_dump(include={*same, "operation_timeout"}),
        auth=_basic_auth(source),
    )
    return raw if request.after is None else past_watermark(raw, request.after)


def _build_x3_sink(name: str, spec: SageX3Sink) -> Sink:
    from connectors.sage.push import SageX3Sink as SageX3Connector

    same = {"wsdl", "pool_alias", "language", "public_name", "key_field", "group", "address"}
    same |= {"reference_field", "version_field", "lines_table", "timeout", "operation_timeout"}
    return SageX3Connector(
        name,
        **spec.model_dump(include=same),
        user=spec.username,
        password=spec.password,
        field_groups=dict(spec.field_groups) or None,
        max_batch=spec.batch_size or 50,
        retry=ONE_ATTEMPT,
    )


def _cents_fields(spec: SinkBase) -> list[str]:
    """Target fields carrying whole cents (`as: native` of an amount): the file shows euros."""
    columns = OUTGOING[spec.sends]
    return [
        target
        for target, rule in spec.fields.items()
        if rule.from_ is not None
        and rule.as_ == "native"
        and rule.map is None
        and columns.column(rule.from_).type is ColumnType.CENTS
    ]


def _build_file_sink(name: str, spec: Sage100FileSink) -> Sink:
    from connectors.sage.sage100 import Sage100FileSink as Sage100Connector

    same = {"file_prefix", "format", "date_format", "delimiter", "encoding", "idempotency_column"}
    return Sage100Connector(
        name,
        **spec.model_dump(include=same),
        drop_folder=Path(spec.folder).expanduser(),
        columns=list(spec.fields),
        amount_columns=_cents_fields(spec),
        archive_folders=[Path(folder).expanduser() for folder in spec.archive_folders],
        max_rows_per_file=spec.batch_size or spec.rows_per_file,
    )


def _check_file_sink(sink: Sink, spec: Sage100FileSink) -> None:
    """The drop folder exists and the hub may write there."""
    sink.probe(list(spec.fields))  # type: ignore[attr-defined]


SAGE_X3_SOURCE = SourceKind("sage_x3", SageX3Source, read=_read_x3, locator="wsdl")
SAGE_X3_SINK = SinkKind("sage_x3", SageX3Sink, build=_build_x3_sink, locator="wsdl")
SAGE100_FILE_SINK = SinkKind(
    "sage100_file",
    Sage100FileSink,
    build=_build_file_sink,
    check=_check_file_sink,
    locator="folder",
)
