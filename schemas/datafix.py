"""The datafix file model: what a landlord's YAML may say, validated before anything runs.

A datafix names the landlord, its sources (spreadsheets, SQL databases) and, per canonical
entity, which source feeds it and how each canonical field is mapped. It holds no code: every
transform is a declarative rule interpreted by `pipelines.lib.transforms`. Secrets never appear
in a datafix, only `${ENV_VAR}` references, resolved when a source is opened.

Structural errors come from pydantic (unknown keys are refused); cross-references (an entity
naming a missing source, a field that is not a canonical column, a mapped value that is not an
allowed canonical value) come from `semantic_issues`, each with the YAML path it concerns so the
checker can print `file:line:column`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.canonical import ENTITIES, ColumnType
from schemas.outgoing import OUTGOING

ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
LANDLORD_ID = r"^[a-z0-9][a-z0-9-]{1,62}$"

YamlPath = tuple[str | int, ...]


class StrictModel(BaseModel):
    """Refuse unknown keys so a typo is an error, not a silently ignored setting."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Landlord(StrictModel):
    """Who the datafix is for."""

    id: str = Field(
        pattern=LANDLORD_ID,
        description="Short id, lowercase letters, digits and dashes; must equal the file name.",
    )
    name: str = Field(min_length=1, description="The landlord's name as people say it.")


class FileSource(StrictModel):
    """Options shared by spreadsheet sources found in the landlord's inbox folder."""

    path: str = Field(
        description="File name or glob (e.g. `locataires_*.csv`) inside the landlord's inbox."
    )
    files: Literal["newest", "all"] = Field(
        "newest",
        description="When the glob matches several files: read the newest one, or all of them.",
    )
    header_row: int | Literal["auto"] = Field(
        "auto",
        description="1-based line or row of the header; `auto` finds it from the mapped columns.",
    )
    header_rows: int = Field(
        1,
        ge=1,
        le=3,
        description="Header depth: 2 when a merged cell spans sub-headers (`Montant` over `HT`).",
    )

    @field_validator("header_row")
    @classmethod
    def _header_row_positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("header_row counts from 1 (the first line of the file)")
        return value


class CsvSource(FileSource):
    """A CSV export, typically from French Excel (`;`, decimal comma, cp1252)."""

    kind: Literal["csv"]
    encoding: str = Field(
        "auto", description="`auto` (UTF-8 with or without BOM, else cp1252) or a codec name."
    )
    separator: str = Field(
        "auto", description="`auto` (sniffed among `; , tab |`) or one character."
    )

    @field_validator("separator")
    @classmethod
    def _one_character(cls, value: str) -> str:
        if value != "auto" and len(value.replace("\\t", "\t")) != 1:
            raise ValueError("separator must be one character (use \\t for tab) or auto")
        return value.replace("\\t", "\t")


class XlsxSource(FileSource):
    """An Excel workbook (.xlsx)."""

    kind: Literal["xlsx"]
    sheet: str | None = Field(
        None, description="Sheet name; the first sheet when omitted. An entity may override it."
    )


class CursorSpec(StrictModel):
    """How an incremental source tells new and changed rows: a column that grows with them."""

    column: str = Field(
        description="Column whose value grows when a row is added or changed (a modification"
        " timestamp, or a sequence number)."
    )
    lookback_minutes: int = Field(
        0,
        ge=0,
        le=7 * 24 * 60,
        description="Re-read rows changed up to this many minutes before the last watermark, for"
        " sources whose transactions commit late (re-read rows change nothing if unchanged).",
    )


class SqlSource(StrictModel):
    """A SQL database reached through a SQLAlchemy URL, read through a table or a query."""

    kind: Literal["sql"]
    url: str = Field(
        description="SQLAlchemy URL; put credentials in `${ENV_VAR}` references, never inline."
    )
    table: str | None = Field(None, description="Table (or view) to read.")
    db_schema: str | None = Field(None, alias="schema", description="Schema of the table.")
    query: str | None = Field(None, description="A read-only SELECT (or WITH … SELECT) query.")
    key: list[str] = Field(
        default_factory=list,
        description="Columns that identify a row, recorded as its lineage (`source_row`).",
    )
    cursor: CursorSpec | None = Field(
        None,
        description="Pull incrementally: only rows past the last watermark (the entities it"
        " feeds must use `mode: incremental`).",
    )

    @model_validator(mode="after")
    def _table_or_query(self) -> SqlSource:
        _check_table_or_query(self.table, self.query)
        if self.cursor is not None and not self.key:
            raise ValueError(
                "an incremental source (`cursor`) needs `key`: the columns that tell apart rows"
                " sharing one cursor value"
            )
        return self


class OdbcSource(StrictModel):
    """A database reached over ODBC (pyodbc): a connection string or a DSN."""

    kind: Literal["odbc"]
    connection: str | None = Field(
        None,
        description="ODBC connection string, e.g. `Driver={PostgreSQL Unicode};Server=erp;"
        "Database=gestion;UID=hub;PWD=${ERP_PASSWORD}`.",
    )
    dsn: str | None = Field(None, description="A DSN declared in odbc.ini, instead of a string.")
    table: str | None = Field(None, description="Table (or view) to read.")
    db_schema: str | None = Field(None, alias="schema", description="Schema of the table.")
    query: str | None = Field(None, description="A read-only SELECT (or WITH … SELECT) query.")
    key: list[str] = Field(default_factory=list, description="Columns that identify a row.")
    cursor: CursorSpec | None = Field(None, description="Pull incrementally (see `sql`).")
    dialect: Literal["postgresql", "mysql", "mssql", "ansi"] | None = Field(
        None, description="How identifiers are quoted; detected from the driver when omitted."
    )

    @model_validator(mode="after")
    def _target(self) -> OdbcSource:
        if (self.connection is None) == (self.dsn is None):
            raise ValueError("give exactly one of `connection` or `dsn`")
        _check_table_or_query(self.table, self.query)
        if self.cursor is not None and not self.key:
            raise ValueError("an incremental source (`cursor`) needs `key`")
        return self


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
    wsdl: str = Field(description="WSDL file path or http(s) URL.")
    address: str | None = Field(None, description="Service address overriding the WSDL's.")
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


class SalesforceAuthSpec(StrictModel):
    """Credentials, each a `${VARIABLE}`: a session, a password login, or a JWT bearer flow."""

    session_id: str | None = None
    instance_url: str | None = None
    username: str | None = None
    password: str | None = None
    security_token: str | None = None
    consumer_key: str | None = None
    private_key_file: str | None = None
    domain: str = Field("login", description="`login`, `test` or a My Domain prefix.")


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
    ca_bundle: str | None = Field(
        None, description="CA certificates file to trust (the local sandbox's own CA)."
    )
    timeout: float = Field(30, gt=0, le=600, description="Seconds per HTTP call.")


class SageX3Source(StrictModel):
    """Sage X3 classic SOAP web services (`CAdxWebServiceXmlCC`), read with query/read."""

    kind: Literal["sage_x3"]
    wsdl: str = Field(description="WSDL of CAdxWebServiceXmlCC (file path or URL).")
    address: str | None = Field(None, description="Service address overriding the WSDL's.")
    pool_alias: str = Field(description="Sage X3 pool alias (e.g. `SEED`).")
    public_name: str = Field(description="Web service public name, e.g. `BPC` or `SIH`.")
    keys: list[str] = Field(min_length=1, description="Key fields of the object.")
    language: str = "FRA"
    lines: str | None = Field(None, description="Group of detail lines read as rows.")
    username: str | None = Field(None, description="`${VARIABLE}` for Basic auth.")
    password: str | None = Field(None, description="`${VARIABLE}` for Basic auth.")
    timeout: float = Field(30, gt=0, le=600)
    operation_timeout: float = Field(60, gt=0, le=3600)


Source = Annotated[
    CsvSource | XlsxSource | SqlSource | OdbcSource | SoapSource | SalesforceSource | SageX3Source,
    Field(discriminator="kind"),
]
SOURCE_KINDS = ("csv", "xlsx", "sql", "odbc", "soap", "salesforce", "sage_x3")


def _check_table_or_query(table: str | None, query: str | None) -> None:
    if (table is None) == (query is None):
        raise ValueError("give exactly one of `table` or `query`")
    if query is not None:
        statement = query.strip().rstrip(";").strip()
        if ";" in statement:
            raise ValueError("query must be a single statement (no `;` inside)")
        if not re.match(r"(?is)^(select|with)\b", statement):
            raise ValueError("query must be read-only: start it with SELECT or WITH")


def _short_form(value: Any, map_key: Callable[[Any], str]) -> Any:
    """A field rule given as a bare column name is `{from: <name>}`; the keys of its `map` are
    made text (YAML reads an unquoted code such as `1:` or `01:` as a number)."""
    if isinstance(value, str):
        return {"from": value}
    if isinstance(value, dict) and isinstance(value.get("map"), dict):
        value = {**value, "map": {map_key(k): v for k, v in value["map"].items()}}
    return value


class FieldRule(StrictModel):
    """How one canonical field is computed from a source row.

    Exactly one origin: `from` (a column), `concat` (several columns), `const` (a fixed value),
    or `debit` + `credit` (two amount columns folded into one signed amount).
    """

    from_: str | None = Field(None, alias="from", description="Source column to read.")
    concat: list[str] | None = Field(None, min_length=2, description="Columns joined in order.")
    separator: str = Field(" ", description="Text put between concatenated values.")
    const: str | int | bool | None = Field(None, description="A fixed value for every row.")
    debit: str | None = Field(None, description="Debit column (becomes a positive amount).")
    credit: str | None = Field(None, description="Credit column (becomes a negative amount).")
    map: dict[str, str | int | bool] | None = Field(
        None, description="Source value → canonical value; case, accents and spaces are ignored."
    )
    unmapped: Literal["reject", "default"] = Field(
        "reject",
        description="A value missing from `map`: quarantine the row, or use `default`.",
    )
    default: str | int | bool | None = Field(
        None, description="Value used when the source cell is blank (or unmapped, see above)."
    )
    formats: list[str] | None = Field(
        None,
        description="Date formats tried in order, e.g. `dd/mm/yyyy`, `yyyy-mm-dd HH:MI`."
        " Excel serial numbers are always understood.",
    )
    unit: Literal["euros", "cents"] = Field("euros", description="Unit of a source amount.")
    negate: bool = Field(False, description="Flip the sign of an amount.")

    @model_validator(mode="before")
    @classmethod
    def _bare_column_name(cls, value: Any) -> Any:
        # `tenant_ref: "N° locataire"` is the short form of `tenant_ref: {from: "N° locataire"}`
        return _short_form(value, str)

    @model_validator(mode="after")
    def _one_origin(self) -> FieldRule:
        origins = [
            name
            for name, present in (
                ("from", self.from_ is not None),
                ("concat", self.concat is not None),
                ("const", self.const is not None),
                ("debit/credit", self.debit is not None or self.credit is not None),
            )
            if present
        ]
        if len(origins) != 1:
            found = ", ".join(origins) if origins else "none"
            raise ValueError(
                f"give exactly one of from, concat, const or debit+credit (found: {found})"
            )
        if (self.debit is None) != (self.credit is None):
            raise ValueError("debit and credit go together: name both columns")
        if self.unmapped == "default" and self.default is None:
            raise ValueError("unmapped: default needs a `default` value")
        return self

    @property
    def source_columns(self) -> list[str]:
        """The source columns this rule reads."""
        if self.from_ is not None:
            return [self.from_]
        if self.concat is not None:
            return list(self.concat)
        if self.debit is not None and self.credit is not None:
            return [self.debit, self.credit]
        return []


class RowFilter(StrictModel):
    """Rows to skip before mapping, e.g. a `Total` line at the bottom of an export."""

    column: str = Field(description="Source column tested.")
    matches: str | None = Field(None, description="Regular expression, case-insensitive.")
    equals: str | None = Field(None, description="Exact value (after trimming spaces).")
    blank: bool | None = Field(None, description="true: skip rows where the column is empty.")

    @model_validator(mode="after")
    def _one_test(self) -> RowFilter:
        tests = [self.matches is not None, self.equals is not None, self.blank is not None]
        if sum(tests) != 1:
            raise ValueError("give exactly one of matches, equals or blank")
        if self.matches is not None:
            try:
                re.compile(self.matches)
            except re.error as error:
                raise ValueError(f"matches is not a valid regular expression: {error}") from None
        return self


class EntityMapping(StrictModel):
    """Which source feeds a canonical entity, which rows to skip and how fields map."""

    source: str = Field(description="Name of a source declared under `sources`.")
    sheet: str | None = Field(None, description="Sheet of an xlsx source (overrides the source's).")
    header_row: int | Literal["auto"] | None = Field(
        None, description="Header row for this entity's sheet (overrides the source's)."
    )
    header_rows: int | None = Field(
        None,
        ge=1,
        le=3,
        description="Header depth for this entity's sheet (overrides the source's).",
    )
    mode: Literal["snapshot", "incremental"] = Field(
        "snapshot",
        description="snapshot: the source holds every row, so rows that vanish are soft-deleted;"
        " incremental: the source holds only new or changed rows, nothing is deleted.",
    )
    max_vanished_percent: float = Field(
        50.0,
        ge=0,
        le=100,
        description="Refuse a snapshot that would soft-delete more than this share of the rows"
        " already loaded (a truncated export must not wipe the warehouse).",
    )
    skip_rows: list[RowFilter] = Field(default_factory=list, description="Rows to skip.")
    fields: dict[str, FieldRule] = Field(description="Canonical field → rule.")


OUTGOING_NAMES = ("commitments", "invoices", "completions")
SINK_NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class OutFieldRule(StrictModel):
    """How one field of a pushed record is filled: from an outgoing column, or a fixed value.

    `Status: status` is the short form of `Status: {from: status}`.
    """

    from_: str | None = Field(None, alias="from", description="Outgoing column to send.")
    value: str | int | bool | None = Field(None, description="A fixed value for every record.")
    as_: Literal["native", "text", "euros", "euros_comma", "date", "yyyymmdd", "datetime"] = Field(
        "native",
        alias="as",
        description="How the value is written: `native` (cents as a whole number, dates as"
        " dates), `text`, `euros` (cents as `1234.56`), `euros_comma` (`1234,56`), `date`"
        " (`2026-11-22`), `yyyymmdd` (`20261122`) or `datetime` (ISO 8601 with offset).",
    )
    map: dict[str, str | int | bool] | None = Field(
        None, description="Value → what the target expects (e.g. `done: Completed`)."
    )

    @model_validator(mode="before")
    @classmethod
    def _bare_column_name(cls, value: Any) -> Any:
        return _short_form(value, _map_key)

    @model_validator(mode="after")
    def _one_origin(self) -> OutFieldRule:
        if (self.from_ is None) == (self.value is None):
            raise ValueError("give exactly one of `from` (an outgoing column) or `value`")
        return self


def _map_key(key: object) -> str:
    # YAML reads `true:` as a boolean and `1:` as a number; the map compares text
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


class SinkBase(StrictModel):
    """What every sink says: which records it receives and how their fields are filled."""

    sends: Literal["commitments", "invoices", "completions"] = Field(
        description="The outgoing records this sink receives."
    )
    fields: dict[str, OutFieldRule] = Field(
        min_length=1, description="Target field → outgoing column (or `{value: …}`)."
    )
    key: str | None = Field(
        None,
        description="Outgoing column the target keys records on, when not the record's own"
        " reference (e.g. `order_ref` for a Salesforce WorkOrder fed by completion reports:"
        " the latest report of each order is sent).",
    )
    batch_size: int | None = Field(
        None, ge=1, le=100_000, description="Records per call (default: the sink's own)."
    )
    max_attempts: int = Field(
        8, ge=1, le=100, description="Tries per record and run on transient refusals."
    )
    timeout: float = Field(30, gt=0, le=600, description="Seconds per call.")


class SqlSink(SinkBase):
    """Upsert into a table of the landlord's ERP database (SQLAlchemy URL or ODBC)."""

    kind: Literal["sql"]
    url: str | None = Field(None, description="SQLAlchemy URL; `${VARIABLE}` for the password.")
    connection: str | None = Field(
        None, description="ODBC connection string instead of `url` (`PWD=${VARIABLE}`)."
    )
    table: str = Field(description="Target table; it must exist.")
    db_schema: str | None = Field(None, alias="schema", description="Schema of the table.")
    key_column: str = Field(description="Column holding the record's key (upsert on it).")
    idempotency_column: str | None = Field(
        None, description="Column storing each record's idempotency key (optional)."
    )

    @model_validator(mode="after")
    def _one_address(self) -> SqlSink:
        if (self.url is None) == (self.connection is None):
            raise ValueError("give exactly one of `url` (SQLAlchemy) or `connection` (ODBC)")
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
    wsdl: str = Field(description="WSDL file path or http(s) URL.")
    address: str | None = Field(None, description="Service address overriding the WSDL's.")
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
    username: str | None = Field(None, description="`${VARIABLE}` for Basic auth.")
    password: str | None = Field(None, description="`${VARIABLE}` for Basic auth.")


class SageX3Sink(SinkBase):
    """Sage X3 `CAdxWebServiceXmlCC`: `save` (create) or `modify` of an object, e.g. SIH."""

    kind: Literal["sage_x3"]
    wsdl: str = Field(description="WSDL of CAdxWebServiceXmlCC (file path or URL).")
    pool_alias: str = Field(description="Sage X3 pool alias (e.g. `SEED`).")
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
    address: str | None = Field(None, description="Service address overriding the WSDL's.")
    operation_timeout: float = Field(60, gt=0, le=3600, description="Seconds per call.")
    language: str = "FRA"
    username: str | None = Field(None, description="`${VARIABLE}` for Basic auth.")
    password: str | None = Field(None, description="`${VARIABLE}` for Basic auth.")


class Sage100FileSink(SinkBase):
    """Sage 100: an import file (import paramétrable) dropped atomically into a folder."""

    kind: Literal["sage100_file"]
    folder: str = Field(description="Drop folder Sage 100 imports from.")
    file_prefix: str = Field("HUB_", description="Start of every file name the hub writes.")
    format: Literal["csv", "xlsx"] = "csv"
    delimiter: str = Field(";", min_length=1, max_length=1)
    encoding: str = "cp1252"
    date_format: str = Field(
        "dd/mm/yyyy", description="How dates are written: `dd/mm/yyyy`, `ddmmyy`, `yyyymmdd`…"
    )
    archive_folders: list[str] = Field(
        default_factory=list, description="Where Sage moves imported files (read back)."
    )
    idempotency_column: str = Field("HUB_ID", description="File column with the record's id.")
    rows_per_file: int = Field(5000, ge=1, le=1_000_000)


class SalesforceSink(SinkBase):
    """Salesforce: upsert by external id (composite collections, or Bulk 2.0 when large)."""

    kind: Literal["salesforce"]
    auth: SalesforceAuthSpec
    object: str = Field(description="sObject, e.g. `WorkOrder`.")
    external_id_field: str = Field(description="External id field the upsert matches on.")
    bulk_threshold: int = Field(
        2000, ge=1, description="From this many records, one Bulk API 2.0 job instead."
    )
    ca_bundle: str | None = Field(None, description="CA file for a private certificate.")


Sink = Annotated[
    SqlSink | SoapSink | SageX3Sink | Sage100FileSink | SalesforceSink,
    Field(discriminator="kind"),
]
SINK_KINDS = ("sql", "soap", "sage_x3", "sage100_file", "salesforce")


class PushSection(StrictModel):
    """What the hub pushes back for this landlord, and where."""

    confirmed: dict[str, dict[str, list[str | bool | int]]] = Field(
        default_factory=dict,
        description="Per outgoing record: column → values that let a record out.",
    )
    sinks: dict[str, Sink] = Field(description="Named sinks.")


class Datafix(StrictModel):
    """One landlord's datafix file."""

    version: Literal[1] = Field(1, description="Format version of this file.")
    landlord: Landlord
    inbox: str | None = Field(
        None,
        description="Folder where the landlord's files land; default `$DATAFIX_HOME/inbox/<id>`.",
    )
    sources: dict[str, Source] = Field(description="Named sources.")
    entities: dict[str, EntityMapping] = Field(description="Canonical entity → mapping.")
    push: PushSection | None = Field(None, description="What goes back out, and where.")


class Issue(BaseModel):
    """A problem found in a datafix, located by its YAML path."""

    model_config = ConfigDict(frozen=True)

    path: YamlPath
    message: str
    hint: str = ""
    key_position: bool = False  # point at the key itself rather than its value


def did_you_mean(word: str, candidates: list[str] | tuple[str, ...]) -> str:
    """A `did you mean …?` hint, or a list of what is allowed when nothing is close."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    if close:
        return f"did you mean `{close[0]}`?"
    return "allowed: " + ", ".join(sorted(candidates))


def _choice_matches(value: object, choices: tuple[str, ...]) -> bool:
    return isinstance(value, str) and value in choices


def semantic_issues(datafix: Datafix, *, file_stem: str | None = None) -> list[Issue]:
    """Cross-reference checks the structure alone cannot express."""
    issues: list[Issue] = []
    if file_stem is not None and datafix.landlord.id != file_stem:
        issues.append(
            Issue(
                path=("landlord", "id"),
                message=f"landlord id `{datafix.landlord.id}` differs from the file name",
                hint=f"rename the file to `{datafix.landlord.id}.yaml` or set `id: {file_stem}`",
            )
        )
    for source_name, source in datafix.sources.items():
        issues.extend(_secret_issues(("sources", source_name), source))
    if datafix.push is not None:
        issues.extend(_push_issues(datafix))
    for entity_name, mapping in datafix.entities.items():
        if entity_name not in ENTITIES:
            issues.append(
                Issue(
                    path=("entities", entity_name),
                    message=f"`{entity_name}` is not a canonical entity",
                    hint=did_you_mean(entity_name, tuple(ENTITIES)),
                    key_position=True,
                )
            )
            continue
        spec = ENTITIES[entity_name]
        base: YamlPath = ("entities", entity_name)
        source = datafix.sources.get(mapping.source)
        if source is None:
            issues.append(
                Issue(
                    path=(*base, "source"),
                    message=f"source `{mapping.source}` is not declared under `sources`",
                    hint=did_you_mean(mapping.source, tuple(datafix.sources)),
                )
            )
        elif getattr(source, "cursor", None) is not None and mapping.mode != "incremental":
            issues.append(
                Issue(
                    path=(*base, "mode"),
                    message=f"`{mapping.source}` is pulled incrementally (it has a `cursor`), so"
                    " each pull holds only changed rows",
                    hint="set `mode: incremental` (a snapshot would soft-delete every row not in"
                    " the latest changes)",
                    key_position=True,
                )
            )
        elif mapping.sheet is not None and not isinstance(source, XlsxSource):
            issues.append(
                Issue(
                    path=(*base, "sheet"),
                    message=f"`sheet` only applies to xlsx sources; `{mapping.source}` is"
                    f" {source.kind}",
                    hint="remove `sheet`",
                )
            )
        for field_name, rule in mapping.fields.items():
            if field_name not in spec.column_names:
                issues.append(
                    Issue(
                        path=(*base, "fields", field_name),
                        message=f"`{field_name}` is not a column of {entity_name}",
                        hint=did_you_mean(field_name, spec.column_names),
                        key_position=True,
                    )
                )
                continue
            issues.extend(
                _rule_issues(rule, spec.column(field_name), (*base, "fields", field_name))
            )
        # a misspelt required field is reported once, as the unknown key it is
        misspelt = {
            match
            for name in mapping.fields
            if name not in spec.column_names
            for match in difflib.get_close_matches(name, spec.column_names, n=1, cutoff=0.6)
        }
        for required in spec.required_columns:
            if required not in mapping.fields and required not in misspelt:
                issues.append(
                    Issue(
                        path=(*base, "fields"),
                        message=f"{entity_name} needs `{required}` but the mapping has no rule"
                        " for it",
                        hint=f"add `{required}: <source column>` under fields",
                        key_position=True,
                    )
                )
    return issues


_SECRET_HINT = (
    "write `${VARIABLE}` instead and export the variable; secrets never live in a datafix"
)


def _secret_issues(base: YamlPath, source: object) -> list[Issue]:
    """Secrets written in clear: passwords in URLs and connection strings, tokens, keys."""
    found: list[Issue] = []
    url = getattr(source, "url", None) if isinstance(source, SqlSource | SqlSink) else None
    if url is not None and _inline_password(url):
        found.append(
            Issue(
                path=(*base, "url"),
                message="the url holds a password in clear",
                hint=_SECRET_HINT + " (e.g. postgresql://hub:${ERP_PASSWORD}@…)",
            )
        )
    connection = getattr(source, "connection", None)
    if isinstance(source, OdbcSource | SqlSink) and connection is not None:
        match = re.search(r"(?i)(?:^|;)\s*(?:pwd|password)\s*=\s*([^;]*)", connection)
        if match and match.group(1).strip() and not ENV_REFERENCE.fullmatch(match.group(1).strip()):
            found.append(
                Issue(
                    path=(*base, "connection"),
                    message="the connection string holds a password in clear",
                    hint=_SECRET_HINT + " (e.g. PWD=${ERP_PASSWORD})",
                )
            )
    secrets: dict[str, str | None] = {}
    if isinstance(source, SalesforceSource | SalesforceSink):
        auth = source.auth
        secrets = {
            "session_id": auth.session_id,
            "password": auth.password,
            "security_token": auth.security_token,
            "consumer_key": auth.consumer_key,
        }
        base = (*base, "auth")
    elif isinstance(source, SageX3Source | SageX3Sink | SoapSink):
        secrets = {"password": source.password}
    for name, value in secrets.items():
        if value is not None and not ENV_REFERENCE.fullmatch(value.strip()):
            found.append(
                Issue(
                    path=(*base, name), message=f"`{name}` is written in clear", hint=_SECRET_HINT
                )
            )
    return found


_AS_TYPES: dict[str, tuple[ColumnType, ...]] = {
    "euros": (ColumnType.CENTS,),
    "euros_comma": (ColumnType.CENTS,),
    "date": (ColumnType.DATE, ColumnType.DATETIME),
    "yyyymmdd": (ColumnType.DATE, ColumnType.DATETIME),
    "datetime": (ColumnType.DATETIME,),
}


def _push_issues(datafix: Datafix) -> list[Issue]:
    """The `push:` section: known records and columns, allowed values, inputs mapped."""
    push = datafix.push
    assert push is not None
    issues: list[Issue] = []
    for name, rule in push.confirmed.items():
        base: YamlPath = ("push", "confirmed", name)
        spec = OUTGOING.get(name)
        if spec is None:
            issues.append(
                Issue(
                    path=base,
                    message=f"`{name}` is not something the hub pushes",
                    hint=did_you_mean(name, tuple(OUTGOING)),
                    key_position=True,
                )
            )
            continue
        allowed = (*spec.column_names, *spec.confirmed_options)
        for column, values in rule.items():
            if column not in allowed:
                issues.append(
                    Issue(
                        path=(*base, column),
                        message=f"`{column}` is not a column of the outgoing {name}",
                        hint=did_you_mean(column, allowed),
                        key_position=True,
                    )
                )
                continue
            choices = spec.column(column).choices if column in spec.column_names else ()
            if column == "quote_status":
                choices = ENTITIES["quotes"].column("status").choices
            for index, value in enumerate(values):
                if choices and value not in choices:
                    issues.append(
                        Issue(
                            path=(*base, column, index),
                            message=f"`{value}` is not an allowed value of {column}",
                            hint=did_you_mean(str(value), choices),
                        )
                    )
    for sink_name, sink in push.sinks.items():
        base = ("push", "sinks", sink_name)
        if not re.match(SINK_NAME, sink_name):
            issues.append(
                Issue(
                    path=base,
                    message=f"sink name `{sink_name}` is not allowed",
                    hint="use lowercase letters, digits, `-` and `_` (at most 64)",
                    key_position=True,
                )
            )
        issues.extend(_secret_issues(base, sink))
        spec = OUTGOING[sink.sends]
        unmapped = [entity for entity in spec.inputs[:1] if entity not in datafix.entities]
        for entity in unmapped:
            issues.append(
                Issue(
                    path=(*base, "sends"),
                    message=f"{sink.sends} are derived from {entity}, which this datafix does"
                    " not map",
                    hint=f"map `{entity}` under entities, or remove this sink",
                )
            )
        if sink.key is not None and sink.key not in spec.column_names:
            issues.append(
                Issue(
                    path=(*base, "key"),
                    message=f"`{sink.key}` is not a column of the outgoing {sink.sends}",
                    hint=did_you_mean(sink.key, spec.column_names),
                )
            )
        for target, rule in sink.fields.items():
            if rule.from_ is None:
                continue
            if rule.from_ not in spec.column_names:
                issues.append(
                    Issue(
                        path=(*base, "fields", target),
                        message=f"`{rule.from_}` is not a column of the outgoing {sink.sends}",
                        hint=did_you_mean(rule.from_, spec.column_names),
                    )
                )
                continue
            column_type = spec.column(rule.from_).type
            needs = _AS_TYPES.get(rule.as_)
            if needs is not None and column_type not in needs:
                issues.append(
                    Issue(
                        path=(*base, "fields", target, "as"),
                        message=f"`as: {rule.as_}` does not apply to {rule.from_}"
                        f" ({column_type.value})",
                        hint="use `as: text` or `native`",
                    )
                )
    return issues


def _inline_password(url: str) -> bool:
    """True when a URL carries a literal password (`user:secret@host`), not a `${VAR}`."""
    match = re.match(r"^[\w+.-]+://([^/@]*)@", url)
    if match is None or ":" not in match.group(1):
        return False
    password = match.group(1).split(":", 1)[1]
    return bool(password) and ENV_REFERENCE.fullmatch(password) is None


def _rule_issues(rule: FieldRule, column: Any, path: YamlPath) -> list[Issue]:
    issues: list[Issue] = []
    if column.type is ColumnType.CHOICE:
        for source_value, target in (rule.map or {}).items():
            if not _choice_matches(target, column.choices):
                hint = did_you_mean(str(target), column.choices)
                if not isinstance(target, str):
                    hint = f"write the value in quotes (YAML read it as a number); {hint}"
                issues.append(
                    Issue(
                        path=(*path, "map", source_value),
                        message=f"`{target}` is not an allowed value of {column.name}",
                        hint=hint,
                    )
                )
        for key in ("const", "default"):
            value = getattr(rule, key)
            if value is not None and not _choice_matches(value, column.choices):
                issues.append(
                    Issue(
                        path=(*path, key),
                        message=f"`{value}` is not an allowed value of {column.name}",
                        hint=did_you_mean(str(value), column.choices),
                    )
                )
    elif rule.map is not None and column.type not in (ColumnType.TEXT, ColumnType.BOOLEAN):
        issues.append(
            Issue(
                path=(*path, "map"),
                message=f"`map` applies to text, yes/no and choice columns; {column.name} is"
                f" {column.type.value}",
                hint="remove `map`",
            )
        )
    if (rule.debit is not None) and column.type is not ColumnType.CENTS:
        issues.append(
            Issue(
                path=path,
                message=f"debit/credit folding needs an amount column; {column.name} is"
                f" {column.type.value}",
                hint="use `from:` instead",
            )
        )
    if rule.formats is not None and column.type not in (ColumnType.DATE, ColumnType.DATETIME):
        issues.append(
            Issue(
                path=(*path, "formats"),
                message=f"`formats` applies to dates; {column.name} is {column.type.value}",
                hint="remove `formats`",
            )
        )
    return issues


def env_references(value: object, path: YamlPath = ()) -> list[tuple[YamlPath, str]]:
    """Every `${VAR}` referenced anywhere in a raw datafix document, with its YAML path."""
    found: list[tuple[YamlPath, str]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(env_references(item, (*path, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(env_references(item, (*path, index)))
    elif isinstance(value, str):
        found.extend((path, name) for name in ENV_REFERENCE.findall(value))
    return found
