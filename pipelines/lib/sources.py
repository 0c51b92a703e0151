"""One entry point per datafix source kind: read it, or read its header, as a RawTable.

Each kind's connector lives in `connectors/<system>/client.py`; this module only turns a
datafix source (with `${VARIABLES}` resolved) into the connector's call. Incremental reads
resume after a `Watermark`: SQL pushes the whole (cursor, key) condition down; the other
connectors filter `cursor >= value` at the peer and the rows already loaded at that exact value
are dropped here, so a pull neither skips nor repeats a row.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import requests

from connectors.files.client import header_key, read_csv, read_header, read_xlsx, resolve_files
from connectors.files.models import RawTable, Watermark
from connectors.sage.client import read_sage_x3
from connectors.salesforce.client import read_salesforce
from connectors.salesforce.models import SalesforceAuth
from connectors.soap.client import read_soap
from connectors.soap.models import SoapPaging
from connectors.sql.client import read_sql, read_sql_header
from connectors.sql.odbc import read_odbc, read_odbc_header, resolve_connection_string
from pipelines.lib.datafixes import LoadedDatafix, resolve_env
from schemas.datafix import (
    CsvSource,
    EntityMapping,
    OdbcSource,
    SageX3Source,
    SalesforceSource,
    SoapSource,
    SqlSource,
    XlsxSource,
)

FILE_KINDS = (CsvSource, XlsxSource)


def read_source(loaded: LoadedDatafix, entity: str, *, after: Watermark | None = None) -> RawTable:
    """Every row of the source feeding `entity` (or those past `after`), as text."""
    mapping = loaded.datafix.entities[entity]
    source = loaded.datafix.sources[mapping.source]
    if isinstance(source, FILE_KINDS):
        return _read_files(loaded, mapping, _expected_columns(entity, mapping))
    if isinstance(source, SqlSource):
        return read_sql(
            resolve_env(source.url),
            table=source.table,
            schema=source.db_schema,
            query=source.query,
            key=source.key,
            after=after,
        )
    since = None if after is None or after.value is None else after.value
    if isinstance(source, OdbcSource):
        raw = read_odbc(
            _odbc_connection(source),
            table=source.table,
            schema=source.db_schema,
            query=source.query,
            key=source.key,
            since=None if since is None else (after.column, since),
            dialect=source.dialect,
        )
    elif isinstance(source, SoapSource):
        raw = read_soap(
            resolve_env(source.wsdl),
            operation=source.operation,
            arguments=dict(source.arguments),
            records_path=source.records,
            paging=None if source.paging is None else SoapPaging(**source.paging.model_dump()),
            since=None
            if since is None or source.cursor is None
            else (source.cursor.argument, since),
            key=source.key,
            timeout=source.timeout,
            operation_timeout=source.operation_timeout,
            address=None if source.address is None else resolve_env(source.address),
        )
    elif isinstance(source, SalesforceSource):
        session = _salesforce_session(source)
        try:
            raw = read_salesforce(
                _salesforce_auth(source),
                object_name=source.object,
                fields=source.fields,
                where=source.where,
                since=None if since is None else (after.column, since),
                bulk=source.bulk,
                key=source.key,
                session=session,
                timeout=source.timeout,
            )
        finally:
            if session is not None:
                session.close()
    else:
        assert isinstance(source, SageX3Source)
        auth = None
        if source.username is not None and source.password is not None:
            auth = (resolve_env(source.username), resolve_env(source.password))
        raw = read_sage_x3(
            resolve_env(source.wsdl),
            pool_alias=source.pool_alias,
            public_name=source.public_name,
            keys=source.keys,
            language=source.language,
            lines=source.lines,
            address=None if source.address is None else resolve_env(source.address),
            auth=auth,
            timeout=source.timeout,
            operation_timeout=source.operation_timeout,
        )
    return raw if after is None else past_watermark(raw, after)


def source_header(loaded: LoadedDatafix, entity: str) -> list[str] | None:
    """The source's column labels, cheaply; None for web services (known only by calling)."""
    mapping = loaded.datafix.entities[entity]
    source = loaded.datafix.sources[mapping.source]
    expected = _expected_columns(entity, mapping)
    if isinstance(source, SqlSource):
        return read_sql_header(
            resolve_env(source.url), table=source.table, schema=source.db_schema, query=source.query
        )
    if isinstance(source, OdbcSource):
        return read_odbc_header(
            _odbc_connection(source),
            table=source.table,
            schema=source.db_schema,
            query=source.query,
            dialect=source.dialect,
        )
    if isinstance(source, SalesforceSource):
        return list(source.fields)
    if not isinstance(source, FILE_KINDS):
        return None
    paths = resolve_files(loaded.inbox(), source.path, source.files)
    options = _file_options(source, mapping)
    return read_header(paths, kind=source.kind, expected_columns=expected, **options)


def file_paths(loaded: LoadedDatafix, entity: str) -> list | None:
    """The files a file source would read now (None for other kinds)."""
    mapping = loaded.datafix.entities[entity]
    source = loaded.datafix.sources[mapping.source]
    if not isinstance(source, FILE_KINDS):
        return None
    return resolve_files(loaded.inbox(), source.path, source.files)


def past_watermark(raw: RawTable, after: Watermark) -> RawTable:
    """Rows strictly after the watermark in (cursor, key) order, sorted in that order.

    Numbers compare as numbers and everything else as text (ISO timestamps sort as text).
    Without `key_values` the bound is inclusive; without `value` every row is kept.
    """
    frame = raw.frame
    if frame.empty:
        return raw
    labels = {header_key(label): label for label in frame.columns}
    columns = [labels[header_key(name)] for name in (after.column, *after.key)]
    sortable = [_sortable(frame[column]) for column in columns]
    order = np.lexsort([values.to_numpy() for values in reversed(sortable)])
    keep = np.ones(len(frame), dtype=bool)
    if after.value is not None:
        converters = [_converter(values) for values in sortable]
        bound = [converters[0](after.value)]
        bound += [convert(v) for convert, v in zip(converters[1:], after.key_values, strict=False)]
        cursor = sortable[0].to_numpy()
        if after.key_values:
            keep = cursor > bound[0]
            tie = cursor == bound[0]
            later = np.zeros(len(frame), dtype=bool)
            equal_so_far = tie.copy()
            for values, limit in zip(sortable[1:], bound[1:], strict=False):
                array = values.to_numpy()
                later |= equal_so_far & (array > limit)
                equal_so_far &= array == limit
            keep |= later
        else:
            keep = cursor >= bound[0]
    order = order[keep[order]]
    return RawTable(
        frame=frame.iloc[order].reset_index(drop=True),
        source_rows=raw.source_rows.iloc[order].reset_index(drop=True),
        fingerprint=raw.fingerprint,
        origin=raw.origin,
    )


def _sortable(values: pd.Series) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().all():
        return numbers.astype("float64")
    return values.astype(object)


def _converter(values: pd.Series) -> Callable[[str], object]:
    if values.dtype == "float64":
        return float
    return str


def _expected_columns(entity: str, mapping: EntityMapping) -> list[str]:
    from pipelines.lib.transforms import EntityTransformer

    return EntityTransformer(entity, mapping).source_columns


def _file_options(source: CsvSource | XlsxSource, mapping: EntityMapping) -> dict[str, object]:
    options: dict[str, object] = {
        "header_row": source.header_row if mapping.header_row is None else mapping.header_row,
        "header_rows": source.header_rows if mapping.header_rows is None else mapping.header_rows,
    }
    if isinstance(source, CsvSource):
        options |= {"encoding": source.encoding, "separator": source.separator}
    else:
        options["sheet"] = mapping.sheet or source.sheet
    return options


def _read_files(loaded: LoadedDatafix, mapping: EntityMapping, expected: list[str]) -> RawTable:
    source = loaded.datafix.sources[mapping.source]
    assert isinstance(source, FILE_KINDS)
    paths = resolve_files(loaded.inbox(), source.path, source.files)
    options = _file_options(source, mapping)
    reader = read_csv if isinstance(source, CsvSource) else read_xlsx
    return reader(paths, expected_columns=expected, **options)  # type: ignore[arg-type]


def _odbc_connection(source: OdbcSource) -> str:
    if source.dsn is not None:
        return resolve_connection_string(dsn=resolve_env(source.dsn))
    assert source.connection is not None
    return resolve_env(source.connection)


def _salesforce_auth(source: SalesforceSource) -> SalesforceAuth:
    values = {
        name: resolve_env(value)
        for name, value in source.auth.model_dump().items()
        if value is not None
    }
    return SalesforceAuth(**values)


def _salesforce_session(source: SalesforceSource) -> requests.Session | None:
    if source.ca_bundle is None:
        return None
    session = requests.Session()
    session.verify = resolve_env(source.ca_bundle)
    return session
