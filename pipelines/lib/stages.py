"""The stages of one landlord's entity as plain functions: pull, normalise, check, load.

The Dagster assets, `datafix preview` and the benchmark all call these, so what the UI shows,
what the command line prints and what the benchmark measures are the same code.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from connectors.files.client import fingerprint_files
from connectors.lazy import pd
from connectors.rawtable import (
    ChunkStream,
    RawTable,
    StreamEnd,
    Watermark,
    chunk_rows,
    header_key,
    rechunk,
)
from connectors.watermark import WatermarkError
from pipelines.lib.datafixes import LoadedDatafix
from pipelines.lib.quality import ContractResult, quarantine_guard, run_contract_chunks
from pipelines.lib.sources import concrete_feeds, file_paths, read_source
from pipelines.lib.spool import KeyIndex, Spool, release_freed_memory
from pipelines.lib.staging import StagedRows
from pipelines.lib.transforms import EntityTransformer, NormalisedBatch, union_feeds
from pipelines.lib.warehouse import LoadRequest, LoadResult, Warehouse
from schemas.canonical import ENTITIES
from schemas.datafix import Feed

PullStatus = Literal["read", "unchanged", "not_configured"]


@dataclass(frozen=True)
class EntityLineage:
    """Where one landlord's entity comes from in this run, carried from pull through load."""

    landlord_id: str
    entity: str
    datafix_sha: str
    status: PullStatus
    source_name: str = ""
    fingerprint: str = ""
    # incremental feed → where its next pull resumes
    watermarks: dict[str, Watermark] = field(default_factory=dict)

    def lineage(self) -> dict[str, Any]:
        """The lineage alone (not the status), to hand on to the next stage or the load."""
        return {f.name: getattr(self, f.name) for f in fields(EntityLineage) if f.name != "status"}


@dataclass(frozen=True)
class FeedRead:
    """The rows read from one feed of an entity (one source, or one sheet of a workbook)."""

    feed: Feed
    raw: RawTable

    @property
    def label(self) -> str:
        """The feed's name in the warehouse (`source_name` of its rows)."""
        return self.feed.label


@dataclass(frozen=True)
class PulledSource(EntityLineage):
    """What the pull stage hands to normalise for one landlord's entity: one read per feed."""

    reads: tuple[FeedRead, ...] = ()

    @property
    def raw(self) -> RawTable | None:
        """The rows of the entity's only feed (of its first feed read, when it has several),
        every row in `frame` (a streamed read read back whole: small tables, tests; the stages
        read `reads` chunk by chunk)."""
        return self.reads[0].raw.whole() if self.reads else None

    @property
    def rows(self) -> int:
        """Rows read from the entity's feeds (0 when skipped)."""
        return sum(len(read.raw) for read in self.reads)


@dataclass(frozen=True)
class SpooledBatch:
    """Canonical rows and rejects of one entity, waiting on disk chunk by chunk (`Spool`),
    with the counts the stages report; what `NormalisedBatch` is for a table held whole."""

    entity: str
    spool: Spool
    rows_in_source: int
    skipped: int
    warnings: dict[str, int] = field(default_factory=dict)  # row rule set to `warn` → rows
    reasons: dict[str, int] = field(default_factory=dict)  # quarantine reason → rows

    @property
    def read(self) -> int:
        """Data rows offered to the mapping (blank and `skip_rows` rows excluded)."""
        return self.rows_in_source - self.skipped

    @property
    def accepted(self) -> int:
        """Canonical rows (every chunk)."""
        return self.spool.count("rows")

    @property
    def quarantined(self) -> int:
        """Rejected rows (every chunk)."""
        return self.spool.count("rejects")

    def row_frames(self) -> Iterator[pd.DataFrame]:
        """The canonical rows, a chunk at a time."""
        return self.spool.frames("rows")

    def reject_frames(self) -> Iterator[pd.DataFrame]:
        """The rejects, a chunk at a time."""
        return self.spool.frames("rejects")

    @property
    def rows(self) -> pd.DataFrame:
        """Every canonical row in one frame (small tables, tests: the stages read chunks)."""
        return self.spool.whole("rows")

    @property
    def rejects(self) -> pd.DataFrame:
        """Every reject in one frame (small tables, tests: the stages read chunks)."""
        return self.spool.whole("rejects")


@dataclass(frozen=True)
class NormalisedEntity(EntityLineage):
    """Canonical rows and rejects of one landlord's entity, with their lineage."""

    batch: SpooledBatch | None = None

    @property
    def rows(self) -> pd.DataFrame:
        """Canonical rows with `landlord_id`, ready for the contract and the load (every row:
        the stages read `row_frames`)."""
        if self.batch is None:
            return pd.DataFrame()
        return self._with_landlord(self.batch.rows.copy())

    def head(self, limit: int = 5) -> pd.DataFrame:
        """The first canonical rows with `landlord_id` (the first chunk holding rows, read
        alone: what a preview shows)."""
        if self.batch is None:
            return pd.DataFrame()
        spool = self.batch.spool
        for number, count in enumerate(spool.counts["rows"]):
            if count:
                return self._with_landlord(spool.frame("rows", number).head(limit).copy())
        return self._with_landlord(self.batch.rows.copy())

    def row_frames(self) -> Iterator[pd.DataFrame]:
        """Canonical rows with `landlord_id`, a chunk at a time."""
        if self.batch is None:
            return
        for frame in self.batch.row_frames():
            yield self._with_landlord(frame)

    def _with_landlord(self, rows: pd.DataFrame) -> pd.DataFrame:
        rows.insert(0, "landlord_id", pd.Series(self.landlord_id, index=rows.index, dtype="str"))
        return rows


def pull(
    loaded: LoadedDatafix,
    entity: str,
    *,
    warehouse: Warehouse | None = None,
    full_refresh: bool = False,
) -> PulledSource:
    """Read the feeds of `entity`, skipping what the last load already has.

    A feed whose source has a `cursor` is read past its own watermark. Every other feed is
    read in full, and the whole entity is skipped (`unchanged`) when their fingerprint (file
    bytes, or rows) and the datafix are those of the last committed load and no cursor brought
    anything new; files are fingerprinted before being parsed, so an unchanged file costs one
    hash.
    """
    mapping = loaded.datafix.entities.get(entity)
    if mapping is None:
        return PulledSource(loaded.landlord_id, entity, loaded.sha, status="not_configured")
    base = _lineage(loaded, entity)
    feeds = concrete_feeds(loaded, entity)
    reads: list[FeedRead] = []
    watermarks: dict[str, Watermark] = {}
    full = []
    for feed in feeds:
        if getattr(loaded.datafix.sources[feed.source], "cursor", None) is None:
            full.append(feed)
            continue
        read, watermark = _pull_incremental(loaded, entity, feed, warehouse, full_refresh)
        if read is not None and watermark is not None:
            reads.append(read)
            watermarks[feed.label] = watermark
    if not full:
        if not reads:
            return PulledSource(**base, status="unchanged")
        fingerprint = _combined([read.raw.fingerprint for read in reads])
        return PulledSource(
            **base,
            status="read",
            fingerprint=fingerprint,
            reads=tuple(reads),
            watermarks=watermarks,
        )
    last = None
    if warehouse is not None and not full_refresh:
        last = warehouse.last_state(loaded.landlord_id, entity)
    if not reads:
        fingerprint = _files_fingerprint(loaded, entity, full)
        if fingerprint is not None and last == (fingerprint, loaded.sha):
            return PulledSource(**base, status="unchanged", fingerprint=fingerprint)
    whole = [
        FeedRead(feed, _drained(read_source(loaded, entity, feed), loaded, entity)[0])
        for feed in full
    ]
    fingerprint = _combined([read.raw.fingerprint for read in whole])
    if not reads and last == (fingerprint, loaded.sha):
        return PulledSource(**base, status="unchanged", fingerprint=fingerprint)
    return PulledSource(
        **base,
        status="read",
        fingerprint=fingerprint,
        reads=tuple(whole + reads),
        watermarks=watermarks,
    )


def files_fingerprint(loaded: LoadedDatafix, entity: str) -> str | None:
    """The fingerprint `pull` would give `entity` from its files as they are now (their names
    and bytes, nothing parsed): what the inbox sensor compares with the warehouse's record.
    None when the entity is not configured, or one of its feeds reads no file or resumes from
    a cursor."""
    if entity not in loaded.datafix.entities:
        return None
    feeds = concrete_feeds(loaded, entity)
    if any(getattr(loaded.datafix.sources[f.source], "cursor", None) for f in feeds):
        return None
    return _files_fingerprint(loaded, entity, feeds)


def _files_fingerprint(loaded: LoadedDatafix, entity: str, feeds: list[Feed]) -> str | None:
    paths = [file_paths(loaded, entity, feed) for feed in feeds]
    if not paths or any(found is None for found in paths):
        return None
    return _combined([fingerprint_files(found) for found in paths if found is not None])


def _combined(fingerprints: list[str]) -> str:
    """One fingerprint for several feeds (the feed's own when there is one)."""
    if len(fingerprints) == 1:
        return fingerprints[0]
    return hashlib.sha256("\n".join(fingerprints).encode()).hexdigest()


def _pull_incremental(
    loaded: LoadedDatafix,
    entity: str,
    feed: Feed,
    warehouse: Warehouse | None,
    full_refresh: bool,
) -> tuple[FeedRead | None, Watermark | None]:
    """Rows of `feed` past its watermark, and the watermark the load will advance it to (None,
    None when nothing is new)."""
    source = loaded.datafix.sources[feed.source]
    cursor = source.cursor
    key = tuple(source.key)
    last = None
    if warehouse is not None and not full_refresh:
        last = warehouse.cursor(loaded.landlord_id, entity, feed.label)
    after = Watermark(cursor.column, None, key)  # a first pull: everything, in cursor order
    if last is not None and cursor.lookback_minutes:
        kind = last.kinds[0] if last.kinds else None
        moved = _minus_minutes(last.value, cursor.lookback_minutes, kind)
        after = Watermark(cursor.column, moved, key, kinds=last.kinds[:1])
    elif last is not None:
        after = Watermark(cursor.column, last.value, key, last.key_values, last.kinds)
    try:
        raw, last_row = _drained(read_source(loaded, entity, feed, after=after), loaded, entity)
    except WatermarkError as error:
        raise WatermarkError(
            error.column,
            f"{loaded.landlord_id}: source `{feed.source}` ({entity}): {error} — run `datafix"
            f" reset-cursor {loaded.landlord_id} {feed.source}` to read it again from the start"
            f" (or `--to VALUE` with a value as the column holds now)",
        ) from None
    if len(raw) == 0 or last_row is None:
        return None, None
    labels = {header_key(label): label for label in raw.frame.columns}
    watermark = Watermark(
        column=cursor.column,
        value=str(last_row[labels[header_key(cursor.column)]]),
        key=key,
        key_values=tuple(str(last_row[labels[header_key(k)]]) for k in key),
        kinds=raw.watermark_kinds,
    )
    return FeedRead(feed, raw), watermark


def _drained(
    raw: RawTable, loaded: LoadedDatafix, entity: str
) -> tuple[RawTable, dict[str, str] | None]:
    """`raw`, with every row available, and the row an incremental pull's next watermark is
    taken from (the last row, or the one the reader names: `StreamEnd.last`; None: no row).

    A table streamed from a peer (a database, a web service: `RawTable.peer_stream`) knows its
    fingerprint and its last row only once read: it is read here, chunk by chunk, into a spool
    on disk (`Spool`, one chunk held in memory), so the pull decides `unchanged` and the next
    watermark exactly as for a table read whole, the peer is read once, and a peer failing
    half-way (a connection cut, a fault on a page) fails the pull before anything is
    normalised. The table returned streams the spooled chunks back. Other tables are returned
    as they are (a streamed file knows its fingerprint from its bytes)."""
    if not raw.peer_stream:
        if raw.stream is not None or not len(raw.frame):
            return raw, None  # a streamed file is not incremental
        last = raw.frame.iloc[-1]
        return raw, dict(zip(map(str, last.index), map(str, last.tolist()), strict=True))
    spool = Spool(f"{loaded.landlord_id}-{entity}-pull", parts=_RAW_PARTS)
    header = raw.frame
    rows = 0
    last_row = None
    stream = raw.chunks(chunk_rows())
    while True:
        try:
            part = next(stream)
        except StopIteration as finished:
            end: StreamEnd = finished.value or StreamEnd(fingerprint="")
            break
        if rows == 0 and not len(spool.counts["frame"]):
            header = part.frame.iloc[:0].copy()
        spool.add("frame", part.frame)
        spool.add("lineage", part.source_rows.rename("source_row").to_frame())
        faults = _no_faults() if part.faults is None else part.faults
        spool.add("faults", faults.rename_axis("row").reset_index())
        rows += len(part.frame)
        if len(part.frame):
            last = part.frame.iloc[-1]
            last_row = dict(zip(map(str, last.index), map(str, last.tolist()), strict=True))
        del part
        release_freed_memory()
    if end.last is not None:
        last_row = end.last

    def spooled() -> Iterator[RawTable]:
        if not rows:
            yield RawTable(header, pd.Series([], dtype="str"), end.fingerprint, raw.origin)
            return
        for number, count in enumerate(spool.counts["frame"]):
            if not count:
                continue
            faults = None
            if spool.counts["faults"][number]:
                faults = spool.frame("faults", number).set_index("row").rename_axis(None)
            yield RawTable(
                frame=spool.frame("frame", number),
                source_rows=spool.frame("lineage", number)["source_row"],
                fingerprint=end.fingerprint,
                origin=raw.origin,
                watermark_kinds=end.watermark_kinds,
                faults=faults,
            )

    def replay(size: int) -> ChunkStream:
        return (yield from rechunk(spooled(), size))

    drained = RawTable(
        frame=header,
        source_rows=pd.Series([], dtype="str"),
        fingerprint=end.fingerprint,
        origin=raw.origin,
        watermark_kinds=end.watermark_kinds,
        stream=replay,
        streamed_rows=rows,
    )
    return drained, last_row


_RAW_PARTS = ("frame", "lineage", "faults")


def _no_faults() -> pd.DataFrame:
    return pd.DataFrame(
        {"reason": pd.Series([], dtype="str"), "message": pd.Series([], dtype="str")}
    )


def _lineage(loaded: LoadedDatafix, entity: str) -> dict[str, str]:
    """The lineage of an entity the datafix maps: landlord, entity, datafix version, and the
    source (its feeds' names joined, when it has several)."""
    mapping = loaded.datafix.entities[entity]
    return {
        "landlord_id": loaded.landlord_id,
        "entity": entity,
        "datafix_sha": loaded.sha,
        "source_name": " + ".join(feed.label for feed in mapping.all_feeds)[:128],
    }


def _minus_minutes(value: str | None, minutes: int, kind: str | None = None) -> str | None:
    """A timestamp cursor moved back (keeping its offset), a date cursor to the date of that
    moment; an integer cursor (a sequence) is left as it is."""
    if value is None:
        return None
    if kind in ("timestamptz", "timestamp", "date"):
        try:
            moment = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            return value  # the reader names the value that does not parse
        moved = moment - dt.timedelta(minutes=minutes)
        return moved.date().isoformat() if kind == "date" else moved.isoformat(" ")
    if kind in ("integer", "decimal"):
        return value
    try:  # text (SQLite keeps date-times as text) or a kind not known: a timestamp if it reads
        moved = pd.Timestamp(value) - pd.Timedelta(minutes=minutes)
    except ValueError:
        return value
    return moved.strftime("%Y-%m-%d %H:%M:%S")


def normalise(
    loaded: LoadedDatafix,
    pulled: PulledSource,
    *,
    chunk: int | None = None,
    limit: int = 0,
    stage: bool = False,
) -> NormalisedEntity:
    """Map the pulled rows onto the canonical entity, each feed with its own field rules;
    rejected rows keep their reason. Several feeds are unioned (`union_feeds`).

    The rows are mapped `chunk` rows at a time (default `chunk_rows()`) and spooled to disk
    (`SpooledBatch`): the memory held stays that of one chunk. The table rules that look at
    every row stay exact across chunks: a key already kept in an earlier chunk makes the row a
    `duplicate_key` naming that row (`KeyIndex`). An entity with several feeds is mapped whole
    (`union_feeds` compares the feeds), then spooled. `limit` (a preview): stop after the
    chunk that reaches that many rows read. `stage` (a SQLite warehouse): a helper process
    stages the rows for the load as they are spooled, on the other core (`staging.StagedRows`).
    """
    if not pulled.reads:
        return NormalisedEntity(**pulled.lineage(), status=pulled.status)
    size = chunk_rows() if chunk is None else max(1, chunk)
    mapping = loaded.datafix.entities[pulled.entity]
    stager = functools.partial(StagedRows, entity=pulled.entity) if stage else None
    spool = Spool(f"{pulled.landlord_id}-{pulled.entity}", stage=stager)
    warnings: dict[str, int] = {}
    reasons: dict[str, int] = {}
    rows_in_source = skipped = 0

    def spooled(part: NormalisedBatch) -> None:
        nonlocal rows_in_source, skipped
        spool.add("rows", part.rows)
        spool.add("rejects", part.rejects)
        rows_in_source += part.rows_in_source
        skipped += part.skipped
        for name, count in part.warnings.items():
            warnings[name] = warnings.get(name, 0) + count
        for reason, count in part.rejects["reason"].value_counts().items():
            reasons[str(reason)] = reasons.get(str(reason), 0) + int(count)

    if mapping.feeds is None:
        read = pulled.reads[0]
        transformer = EntityTransformer(pulled.entity, mapping, feed=read.feed)
        keys = KeyIndex(spool, ENTITIES[pulled.entity].key)
        pending = None  # the keys of the chunk just mapped, indexed once another one comes
        # a table read whole (a workbook) holds its cells already: it is mapped in chunks twice
        # as long, each stage paying a chunk's fixed cost half as often (the bench's
        # 100,000-order workbook is one chunk, not two), their canonical rows staying under what
        # the pull held (the works bench's peak RSS unchanged)
        whole = read.raw.stream is None
        for raw in read.raw.chunks(size * 2 if whole and chunk is None else size):
            if pending is not None:
                keys.add(pending)
                # what the chunk before freed goes back to the system before this one is
                # mapped; not after the last chunk, whose freed memory the contract and the
                # load reuse (trimmed, it is faulted in again: ~10,000 page faults for the
                # works bench's 100,000 orders)
                release_freed_memory()
            part = transformer.apply(raw, earlier=keys.earlier)
            spooled(part)
            pending = part.rows[keys.key]
            del part, raw
            if limit and rows_in_source >= limit:
                break
    else:
        parts = []
        for read in pulled.reads:
            raw = read.raw.whole()
            transformer = EntityTransformer(pulled.entity, mapping, feed=read.feed)
            parts.append((read.label, transformer.apply(raw), raw))
        batch = union_feeds(pulled.entity, parts)
        del parts
        for start in range(0, max(len(batch.rows), len(batch.rejects), 1), size):
            spooled(
                replace(
                    batch,
                    rows=batch.rows.iloc[start : start + size],
                    rejects=batch.rejects.iloc[start : start + size],
                    rows_in_source=batch.rows_in_source if not start else 0,
                    skipped=batch.skipped if not start else 0,
                    warnings=batch.warnings if not start else {},
                )
            )
    spool.seal()
    return NormalisedEntity(
        **pulled.lineage(),
        status=pulled.status,
        batch=SpooledBatch(pulled.entity, spool, rows_in_source, skipped, warnings, reasons),
    )


def check_contract(loaded: LoadedDatafix, normalised: NormalisedEntity) -> ContractResult:
    """The entity's contract on the normalised rows: the GX suite (row rules the datafix sets to
    `warn` only warn) and the share of quarantined rows (`max_quarantine_percent`)."""
    assert normalised.batch is not None, "nothing to check: the source was not read"
    mapping = loaded.datafix.entities[normalised.entity]
    batch = normalised.batch
    warn = [name for name, severity in mapping.rules.items() if severity == "warn"]
    result = run_contract_chunks(normalised.entity, normalised.row_frames, warn=warn)
    return result.blocked_by(
        quarantine_guard(
            normalised.entity,
            batch.read,
            batch.quarantined,
            batch.reasons,
            lambda: [frame["key"] for frame in batch.reject_frames()],
            mapping.max_quarantine_percent,
        )
    )


def load(
    warehouse: Warehouse, loaded: LoadedDatafix, normalised: NormalisedEntity, *, run_id: str
) -> LoadResult | None:
    """Upsert the canonical rows and record the rejects; None when there was nothing to load."""
    if normalised.batch is None:
        return None
    return warehouse.load(_load_request(loaded, normalised, run_id))


def record_refused(
    warehouse: Warehouse,
    loaded: LoadedDatafix,
    normalised: NormalisedEntity,
    *,
    run_id: str,
    status: Literal["blocked", "failed"],
    reason: str,
) -> LoadResult | None:
    """Keep the trace of a load that did not happen: its rejects in quarantine and a
    `load_runs` row with `status` and `reason`; None when there was nothing to load."""
    if normalised.batch is None:
        return None
    request = _load_request(loaded, normalised, run_id)
    return warehouse.record_refused(request, status=status, reason=reason)


def _load_request(loaded: LoadedDatafix, normalised: NormalisedEntity, run_id: str) -> LoadRequest:
    mapping = loaded.datafix.entities[normalised.entity]
    batch = normalised.batch
    assert batch is not None
    return LoadRequest(
        **normalised.lineage(),
        rows=pd.DataFrame(),
        rejects=pd.DataFrame(),
        parts=batch.spool,
        run_id=run_id,
        rows_in_source=batch.rows_in_source,
        skipped=batch.skipped,
        mode=mapping.mode,
        max_vanished_percent=mapping.max_vanished_percent,
        warnings=batch.warnings,
    )


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
