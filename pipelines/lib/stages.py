"""The three stages of one landlord's entity as plain functions: pull, normalise, load.

The Dagster assets, `datafix preview` and the benchmark all call these, so what the UI shows,
what the command line prints and what the benchmark measures are the same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeVar

import pandas as pd

from connectors.files.client import (
    fingerprint_files,
    header_key,
    read_csv,
    read_xlsx,
    resolve_files,
)
from connectors.files.models import RawTable, Watermark
from connectors.sql.client import read_sql
from pipelines.lib.datafixes import LoadedDatafix, resolve_env
from pipelines.lib.transforms import EntityTransformer, NormalisedBatch
from pipelines.lib.warehouse import LoadRequest, LoadResult, Warehouse
from schemas.canonical import ENTITIES
from schemas.datafix import CsvSource, SqlSource, XlsxSource

PullStatus = Literal["read", "unchanged", "not_configured"]
T = TypeVar("T")


@dataclass(frozen=True)
class PulledSource:
    """What the pull stage hands to normalise for one landlord's entity."""

    landlord_id: str
    entity: str
    datafix_sha: str
    status: PullStatus
    source_name: str = ""
    fingerprint: str = ""
    raw: RawTable | None = None
    watermark: Watermark | None = None  # where the next incremental pull resumes

    @property
    def rows(self) -> int:
        """Rows read from the source (0 when skipped)."""
        return 0 if self.raw is None else len(self.raw)


@dataclass(frozen=True)
class NormalisedEntity:
    """Canonical rows and rejects of one landlord's entity, with their lineage."""

    landlord_id: str
    entity: str
    datafix_sha: str
    status: PullStatus
    source_name: str = ""
    fingerprint: str = ""
    batch: NormalisedBatch | None = None
    watermark: Watermark | None = None

    @property
    def rows(self) -> pd.DataFrame:
        """Canonical rows with `landlord_id`, ready for the contract and the load."""
        if self.batch is None:
            return pd.DataFrame()
        rows = self.batch.rows.copy()
        rows.insert(0, "landlord_id", pd.Series(self.landlord_id, index=rows.index, dtype="str"))
        return rows


def pull(
    loaded: LoadedDatafix,
    entity: str,
    *,
    warehouse: Warehouse | None = None,
    full_refresh: bool = False,
) -> PulledSource:
    """Read the source feeding `entity`; skip it when it is unchanged since the last load."""
    base = {"landlord_id": loaded.landlord_id, "entity": entity, "datafix_sha": loaded.sha}
    mapping = loaded.datafix.entities.get(entity)
    if mapping is None:
        return PulledSource(**base, status="not_configured")
    source = loaded.datafix.sources[mapping.source]
    expected = EntityTransformer(entity, mapping).source_columns
    last = (
        None
        if warehouse is None or full_refresh
        else warehouse.last_state(loaded.landlord_id, entity)
    )
    if isinstance(source, SqlSource) and source.cursor is not None:
        return _pull_incremental(loaded, entity, source, warehouse, full_refresh)
    if isinstance(source, SqlSource):
        raw = read_sql(
            resolve_env(source.url),
            table=source.table,
            schema=source.db_schema,
            query=source.query,
            key=source.key,
        )
    else:
        paths = resolve_files(loaded.inbox(), source.path, source.files)
        fingerprint = fingerprint_files(paths)
        if last == (fingerprint, loaded.sha):
            return PulledSource(
                **base, status="unchanged", source_name=mapping.source, fingerprint=fingerprint
            )
        if isinstance(source, CsvSource):
            raw = read_csv(
                paths,
                encoding=source.encoding,
                separator=source.separator,
                header_row=_override(mapping.header_row, source.header_row),
                header_rows=_override(mapping.header_rows, source.header_rows),
                expected_columns=expected,
            )
        else:
            assert isinstance(source, XlsxSource)
            raw = read_xlsx(
                paths,
                sheet=mapping.sheet or source.sheet,
                header_row=_override(mapping.header_row, source.header_row),
                header_rows=_override(mapping.header_rows, source.header_rows),
                expected_columns=expected,
            )
    if last == (raw.fingerprint, loaded.sha):
        return PulledSource(
            **base, status="unchanged", source_name=mapping.source, fingerprint=raw.fingerprint
        )
    return PulledSource(
        **base, status="read", source_name=mapping.source, fingerprint=raw.fingerprint, raw=raw
    )


def _pull_incremental(
    loaded: LoadedDatafix,
    entity: str,
    source: SqlSource,
    warehouse: Warehouse | None,
    full_refresh: bool,
) -> PulledSource:
    """Rows past the entity's watermark, and the watermark the load will advance to."""
    assert source.cursor is not None
    mapping = loaded.datafix.entities[entity]
    last = (
        None if warehouse is None or full_refresh else warehouse.cursor(loaded.landlord_id, entity)
    )
    after = Watermark(source.cursor.column, None, tuple(source.key))  # from the start
    if last is not None:
        after = Watermark(source.cursor.column, last.value, tuple(source.key), last.key_values)
        if source.cursor.lookback_minutes:
            after = Watermark(
                source.cursor.column,
                _minus_minutes(last.value, source.cursor.lookback_minutes),
                tuple(source.key),
            )
    raw = read_sql(
        resolve_env(source.url),
        table=source.table,
        schema=source.db_schema,
        query=source.query,
        key=source.key,
        after=after,
    )
    base = {"landlord_id": loaded.landlord_id, "entity": entity, "datafix_sha": loaded.sha}
    if len(raw) == 0:
        return PulledSource(**base, status="unchanged", source_name=mapping.source)
    labels = {header_key(label): label for label in raw.frame.columns}
    last_row = raw.frame.iloc[-1]
    watermark = Watermark(
        column=source.cursor.column,
        value=str(last_row[labels[header_key(source.cursor.column)]]),
        key=tuple(source.key),
        key_values=tuple(str(last_row[labels[header_key(k)]]) for k in source.key),
    )
    return PulledSource(
        **base,
        status="read",
        source_name=mapping.source,
        fingerprint=raw.fingerprint,
        raw=raw,
        watermark=watermark,
    )


def _minus_minutes(value: str | None, minutes: int) -> str | None:
    """A timestamp cursor moved back; an integer cursor (a sequence) is left as it is."""
    if value is None:
        return None
    try:
        moved = pd.Timestamp(value) - pd.Timedelta(minutes=minutes)
    except ValueError:
        return value
    return moved.strftime("%Y-%m-%d %H:%M:%S")


def normalise(loaded: LoadedDatafix, pulled: PulledSource) -> NormalisedEntity:
    """Map the pulled rows onto the canonical entity; rejected rows keep their reason."""
    batch = None
    if pulled.raw is not None:
        mapping = loaded.datafix.entities[pulled.entity]
        batch = EntityTransformer(pulled.entity, mapping).apply(pulled.raw)
    return NormalisedEntity(
        landlord_id=pulled.landlord_id,
        entity=pulled.entity,
        datafix_sha=pulled.datafix_sha,
        status=pulled.status,
        source_name=pulled.source_name,
        fingerprint=pulled.fingerprint,
        batch=batch,
        watermark=pulled.watermark,
    )


def load(
    warehouse: Warehouse, loaded: LoadedDatafix, normalised: NormalisedEntity, *, run_id: str
) -> LoadResult | None:
    """Upsert the canonical rows and record the rejects; None when there was nothing to load."""
    if normalised.batch is None:
        return None
    mapping = loaded.datafix.entities[normalised.entity]
    batch = normalised.batch
    return warehouse.load(
        LoadRequest(
            landlord_id=normalised.landlord_id,
            entity=normalised.entity,
            source_name=normalised.source_name,
            rows=batch.rows,
            rejects=batch.rejects,
            datafix_sha=normalised.datafix_sha,
            run_id=run_id,
            fingerprint=normalised.fingerprint,
            rows_in_source=batch.rows_in_source,
            skipped=batch.skipped,
            mode=mapping.mode,
            max_vanished_percent=mapping.max_vanished_percent,
            watermark=normalised.watermark,
        )
    )


def _override(entity_value: T | None, source_value: T) -> T:
    return source_value if entity_value is None else entity_value


def preview_frame(frame: pd.DataFrame, entity: str, limit: int = 5) -> pd.DataFrame:
    """The first rows of a canonical frame with personal data masked (GDPR)."""
    spec = ENTITIES[entity]
    shown = frame.head(limit).copy()
    for column in spec.columns:
        if column.personal and column.name in shown:
            shown[column.name] = shown[column.name].map(
                lambda v: v if pd.isna(v) else f"{str(v)[:1]}***"
            )
    return shown
