"""Warehouse writes: schema migration, idempotent upserts, soft deletes and quarantine.

One load = one transaction: canonical rows, soft deletes, quarantine rows, the audit row and the
source state commit together or not at all, so a crash never leaves half a load.

Upsert on the natural key (`landlord_id`, reference). A row whose mapped values did not change
(same `row_hash`) is not rewritten, so re-running the same inputs changes nothing, lineage
included. Rows that vanish from a *snapshot* source are soft-deleted (`deleted_at` set) rather
than removed: arrears history must survive an incomplete export, and a row that comes back is
revived. A snapshot that would soft-delete more than `max_vanished_percent` of the landlord's
live rows is refused (a truncated export must not wipe the warehouse). Rows rejected in this run
are never soft-deleted: a bad cell is not a vanished tenant.

A load refused by the contract (`blocked`) or that failed (`failed`) still leaves its trace
(`record_refused`): an audit row with the status and the reason, and its quarantine rows, kept
until the next successful load of the entity resolves them. Nothing else is written: the
canonical table, the source state and the watermark stay as the last successful load left them.

Bulk writes go straight to the driver: executemany on SQLite, COPY on PostgreSQL.
"""

from __future__ import annotations

import itertools
import json
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from connectors.errors import ConfigError, ConnectorError, RetriableError
from connectors.lazy import lazy_module, pa, pd
from connectors.rawtable import Watermark
from connectors.secrets import scrub
from pipelines.lib.personal import RawSealer
from pipelines.lib.runlock import advisory_key
from pipelines.lib.staging import (
    STAGED_TABLE,
    DriverValues,
    Staging,
    insert_rows,
    row_values,
)
from schemas.canonical import ENTITIES
from schemas.tables import (
    CANONICAL_TABLES,
    SCHEMA_VERSION,
    VIEWS,
    feed_cursors,
    hub_schema,
    legacy_source_cursors,
    load_runs,
    metadata,
    quarantine,
    source_state,
)

if TYPE_CHECKING:
    import pyarrow.csv as pacsv

    from pipelines.lib.spool import Spool
else:
    pacsv = lazy_module("pyarrow.csv")

BULK_REINDEX_ROWS = 50_000
SQLITE_BUSY_TIMEOUT_MS = 300_000
MIGRATION_LOCK_KEY = advisory_key("datafix-hub:migrate")
# the name a load attaches a helper's staged rows under (`staging.StagedRows`)
STAGED_SCHEMA = "datafix_staged"
LINEAGE = ("source_name", "source_row", "datafix_sha", "run_id", "loaded_at", "row_hash")


class VanishGuardError(Exception):
    """A snapshot would soft-delete too many rows; nothing was written."""


@dataclass(frozen=True)
class LoadRequest:
    """Everything one load writes: canonical rows, rejects and lineage."""

    landlord_id: str
    entity: str
    source_name: str
    rows: pd.DataFrame
    rejects: pd.DataFrame
    datafix_sha: str
    run_id: str
    fingerprint: str
    rows_in_source: int
    skipped: int
    mode: str = "snapshot"
    max_vanished_percent: float = 50.0
    # feed → where its next incremental pull resumes: advanced with the load, never before
    watermarks: dict[str, Watermark] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)  # rule set to `warn` → rows loaded
    # rows and rejects waiting on disk chunk by chunk (`spool.Spool`), read in place of `rows`
    # and `rejects`, one chunk at a time within the load's one transaction
    parts: Spool | None = None

    def row_frames(self) -> Iterator[pd.DataFrame]:
        """The canonical rows, a chunk at a time."""
        if self.parts is None:
            yield self.rows
        else:
            yield from self.parts.frames("rows")

    def reject_frames(self) -> Iterator[pd.DataFrame]:
        """The rejects, a chunk at a time."""
        if self.parts is None:
            yield self.rejects
        else:
            yield from self.parts.frames("rejects")

    @property
    def row_count(self) -> int:
        """Canonical rows in the load."""
        return len(self.rows) if self.parts is None else self.parts.count("rows")


@dataclass(frozen=True)
class LoadResult:
    """What a load changed."""

    inserted: int
    updated: int
    unchanged: int
    deleted: int
    quarantined: int

    @property
    def loaded(self) -> int:
        """Rows accepted into the canonical table (new, changed or unchanged)."""
        return self.inserted + self.updated + self.unchanged


def newest_first(
    partition_by: sa.ColumnElement | tuple[sa.ColumnElement, ...], *order: sa.ColumnElement
) -> sa.Label:
    """`rank`: 1 for the newest row of each `partition_by` group, newest by `order` (each
    column descending: a date, then a reference to break ties)."""
    return (
        sa.func.row_number()
        .over(partition_by=partition_by, order_by=tuple(column.desc() for column in order))
        .label("rank")
    )


class Warehouse:
    """The hub's warehouse behind one SQLAlchemy engine."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = sa.create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            sa.event.listen(self.engine, "begin", _sqlite_begin_immediate)
        sa.event.listen(self.engine, "handle_error", warehouse_fault)

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    @property
    def dialect(self) -> str:
        """`sqlite`, `postgresql`, …"""
        return self.engine.dialect.name

    def migrate(self) -> None:
        """Create missing tables and add missing columns; record the schema version. Two first
        runs may migrate at once: on PostgreSQL an advisory lock makes the second wait and then
        find the tables made (on SQLite, the transaction's write lock does)."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
            metadata.create_all(conn, checkfirst=True)
            inspector = sa.inspect(conn)
            for table in metadata.sorted_tables:
                present = {column["name"] for column in inspector.get_columns(table.name)}
                for column in table.columns:
                    if column.name not in present:
                        column_type = column.type.compile(dialect=conn.dialect)
                        conn.exec_driver_sql(
                            f"ALTER TABLE {_quote(conn, table.name)} ADD COLUMN"
                            f" {_quote(conn, column.name)} {column_type}"
                        )
                # indexes an older warehouse lacks, or declared with other columns since (the
                # ledger's tenant index covers the balances' sum from schema 6)
                indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes(table.name)}
                for index in table.indexes:
                    columns = [column.name for column in index.columns]
                    if indexes.get(index.name, columns) != columns:
                        index.drop(conn)
                    if indexes.get(index.name) != columns:
                        index.create(conn)
            if inspector.has_table(legacy_source_cursors.name):
                _copy_legacy_cursors(conn)
            applied = conn.execute(sa.select(sa.func.max(hub_schema.c.version))).scalar()
            _create_views(conn, replace=applied is not None and applied < SCHEMA_VERSION)
            if applied is None or applied < SCHEMA_VERSION:
                conn.execute(hub_schema.insert().values(version=SCHEMA_VERSION, applied_at=_now()))

    def last_state(self, landlord_id: str, entity: str) -> tuple[str, str] | None:
        """(fingerprint, datafix_sha) of the last committed load, if any."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(source_state.c.fingerprint, source_state.c.datafix_sha).where(
                    source_state.c.landlord_id == landlord_id, source_state.c.entity == entity
                )
            ).first()
        return None if row is None else (row.fingerprint, row.datafix_sha)

    def processed_fingerprints(self, landlord_id: str) -> dict[str, set[str]]:
        """Per entity, the fingerprints of what the hub already did something with: the last
        committed load (`source_state`) and the newest load attempt (`load_runs`, a blocked or
        failed one included; requeues read no source and are left out). A source whose
        fingerprint is among them needs no new run."""
        newest = (
            sa.select(
                load_runs.c.entity,
                load_runs.c.fingerprint,
                newest_first(load_runs.c.entity, load_runs.c.finished_at, load_runs.c.run_id),
            )
            .where(load_runs.c.landlord_id == landlord_id, load_runs.c.fingerprint != "requeue")
            .subquery()
        )
        processed: dict[str, set[str]] = {}
        with self.engine.connect() as conn:
            for entity, fingerprint in conn.execute(
                sa.select(source_state.c.entity, source_state.c.fingerprint).where(
                    source_state.c.landlord_id == landlord_id
                )
            ):
                processed.setdefault(entity, set()).add(fingerprint)
            for entity, fingerprint in conn.execute(
                sa.select(newest.c.entity, newest.c.fingerprint).where(newest.c.rank == 1)
            ):
                processed.setdefault(entity, set()).add(fingerprint)
        return processed

    def cursor(self, landlord_id: str, entity: str, feed: str) -> Watermark | None:
        """The watermark of one incremental feed of an entity (its source's name for an entity
        read from one source), if it was ever loaded."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(feed_cursors).where(
                    feed_cursors.c.landlord_id == landlord_id,
                    feed_cursors.c.entity == entity,
                    feed_cursors.c.feed == feed,
                )
            ).first()
        if row is None:
            return None
        return Watermark(
            column=row.cursor_column,
            value=row.cursor_value,
            key=tuple(json.loads(row.key_columns)),
            key_values=tuple(json.loads(row.key_values)),
            # None in a warehouse written before watermarks kept their kinds: read untyped
            kinds=tuple(json.loads(row.value_kinds or "[]")),
        )

    def reset_cursor(
        self,
        landlord_id: str,
        entities: Sequence[str],
        *,
        to: str | None = None,
        feeds: Sequence[str] | None = None,
    ) -> int:
        """Forget watermarks (next pull reads everything) or set them to `to` (inclusive), of
        `entities` (only of `feeds` when given)."""
        scope = sa.and_(
            feed_cursors.c.landlord_id == landlord_id, feed_cursors.c.entity.in_(entities)
        )
        if feeds is not None:
            scope = sa.and_(scope, feed_cursors.c.feed.in_(feeds))
        with self.engine.begin() as conn:
            if to is None:
                return conn.execute(feed_cursors.delete().where(scope)).rowcount
            return conn.execute(
                feed_cursors.update()
                .where(scope)
                .values(
                    cursor_value=to,
                    key_values="[]",
                    value_kinds=None,  # a value set by hand: the reader takes the column's kind
                    updated_at=_now(),
                    run_id="manual",
                )
            ).rowcount

    def load(self, request: LoadRequest) -> LoadResult:
        """Write one batch in one transaction; see the module docstring for the rules."""
        now = _now()
        with self.engine.connect() as conn, self._staged(conn, request) as staged, conn.begin():
            result = self._upsert(conn, request, now, staged)
            quarantined = self._quarantine(conn, request, now)
            result = LoadResult(
                result.inserted, result.updated, result.unchanged, result.deleted, quarantined
            )
            self._audit(conn, request, result, now, status="loaded")
            self._record(conn, request, now)
            for feed, watermark in request.watermarks.items():
                self._advance(conn, request, feed, watermark, now)
        return result

    @contextmanager
    def _staged(self, conn: sa.Connection, request: LoadRequest) -> Iterator[Staging | None]:
        """The rows a helper staged for this load (`staging.StagedRows`), attached to `conn`
        as `STAGED_SCHEMA` (before the load's transaction: SQLite attaches outside one) and
        detached after; None when none were staged (not SQLite, a table of one chunk, or the
        helper failed: the load binds the rows itself)."""
        staging = request.parts.staged if request.parts is not None else None
        staged = None
        if staging is not None and self.dialect == "sqlite":
            staged = staging.finished(request.row_count)
        if staged is None:
            yield None
            return
        driver = conn.connection.driver_connection
        driver.execute(f"ATTACH DATABASE ? AS {STAGED_SCHEMA}", (str(staged.path),))
        try:
            yield staged
        finally:
            driver.execute(f"DETACH DATABASE {STAGED_SCHEMA}")

    def open_quarantine(
        self, landlord_id: str, entity: str, reason: str | None = None
    ) -> pd.DataFrame:
        """Quarantine rows of `entity` still open (optionally of one `reason`): id, source_name,
        source_row, raw (JSON, its sealed cells opened with the quarantine key), reason, message;
        oldest first."""
        scope = [
            quarantine.c.landlord_id == landlord_id,
            quarantine.c.entity == entity,
            quarantine.c.resolved_at.is_(None),
        ]
        if reason is not None:
            scope.append(quarantine.c.reason == reason)
        query = (
            sa.select(
                quarantine.c.id,
                quarantine.c.source_name,
                quarantine.c.source_row,
                quarantine.c.raw,
                quarantine.c.reason,
                quarantine.c.message,
            )
            .where(*scope)
            .order_by(quarantine.c.id)
        )
        with self.engine.connect() as conn:
            found = conn.execute(query).all()
        columns = ["id", "source_name", "source_row", "raw", "reason", "message"]
        frame = pd.DataFrame([tuple(row) for row in found], columns=columns)
        if len(frame):
            sealer = RawSealer()
            frame["raw"] = [
                json.dumps(sealer.open(raw, f"quarantine row {row_id}"), ensure_ascii=False)
                for row_id, raw in zip(frame["id"], frame["raw"], strict=True)
            ]
        return frame

    def live_lineage(self, landlord_id: str, entity: str, keys: Sequence[str]) -> dict[str, str]:
        """Key → source row of the live rows of `entity` among `keys`."""
        table = CANONICAL_TABLES[entity]
        key = table.c[ENTITIES[entity].key]
        found: dict[str, str] = {}
        wanted = list(dict.fromkeys(keys))
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                rows = conn.execute(
                    sa.select(key, table.c.source_row).where(
                        table.c.landlord_id == landlord_id,
                        table.c.deleted_at.is_(None),
                        key.in_(wanted[start : start + 500]),
                    )
                )
                found.update({str(k): str(row) for k, row in rows})
        return found

    def load_requeued(self, request: LoadRequest, requeued: Sequence[int]) -> LoadResult:
        """Write what a requeue made of the open quarantine rows `requeued`, in one transaction:
        the rows that now pass are upserted (never deleting anything), those still rejected
        keep their row with the new reason, the others (now skipped) are resolved. The source's
        watermark and fingerprint are left as they are: a requeue reads no source."""
        now = _now()
        with self.engine.begin() as conn:
            result = self._upsert(conn, request, now)
            rejects = request.rejects
            still = {
                row: (reason, message)
                for row, reason, message in zip(
                    rejects["source_row"], rejects["reason"], rejects["message"], strict=True
                )
            }
            ids = list(requeued)
            found = []
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                found.extend(
                    conn.execute(
                        sa.select(quarantine.c.id, quarantine.c.source_row).where(
                            quarantine.c.id.in_(chunk)
                        )
                    ).all()
                )
            resolved = [row.id for row in found if row.source_row not in still]
            for row in found:
                if row.source_row in still:
                    reason, message = still[row.source_row]
                    conn.execute(
                        quarantine.update()
                        .where(quarantine.c.id == row.id)
                        .values(
                            reason=reason, message=message, run_id=request.run_id, last_seen_at=now
                        )
                    )
            for start in range(0, len(resolved), 500):
                conn.execute(
                    quarantine.update()
                    .where(quarantine.c.id.in_(resolved[start : start + 500]))
                    .values(resolved_at=now, run_id=request.run_id)
                )
            result = LoadResult(
                result.inserted,
                result.updated,
                result.unchanged,
                result.deleted,
                len(found) - len(resolved),
            )
            self._audit(conn, request, result, now, status="requeued")
        return result

    def _upsert(
        self,
        conn: sa.Connection,
        request: LoadRequest,
        now: datetime,
        staged: Staging | None = None,
    ) -> LoadResult:
        """The canonical rows of `request` written: bulk-inserted into an empty table, else
        merged by key (a snapshot soft-deleting what vanished); read from `staged` when a
        helper staged them."""
        spec = ENTITIES[request.entity]
        table = CANONICAL_TABLES[request.entity]
        columns = [*spec.column_names, *LINEAGE]
        live_before = conn.execute(
            sa.select(sa.func.count())
            .select_from(table)
            .where(table.c.landlord_id == request.landlord_id)
        ).scalar_one()
        rows = _LoadRows(
            (_column_values(frame, request, now, self.dialect) for frame in request.row_frames()),
            request.row_count,
            staged,
            _lineage(request, now, self.dialect),
        )
        if live_before == 0:
            self._bulk_insert(conn, table, ["landlord_id", *columns], rows)
            return LoadResult(rows.count, 0, 0, 0, 0)
        return self._merge(conn, request, table, columns, rows, now)

    def record_refused(self, request: LoadRequest, *, status: str, reason: str) -> LoadResult:
        """The trace of a load that did not happen (`blocked` by the contract, or `failed`):
        its quarantine rows and an audit row with the reason, in one transaction. Quarantine
        rows of earlier runs stay open: only a successful load resolves them."""
        now = _now()
        with self.engine.begin() as conn:
            quarantined = self._quarantine(conn, request, now, resolve_others=False)
            result = LoadResult(0, 0, 0, 0, quarantined)
            self._audit(conn, request, result, now, status=status, reason=reason)
        return result

    def _advance(
        self,
        conn: sa.Connection,
        request: LoadRequest,
        feed: str,
        watermark: Watermark,
        now: datetime,
    ) -> None:
        values = {
            "landlord_id": request.landlord_id,
            "entity": request.entity,
            "feed": feed,
            "cursor_column": watermark.column,
            "cursor_value": watermark.value,
            "key_columns": json.dumps(list(watermark.key)),
            "key_values": json.dumps(list(watermark.key_values), ensure_ascii=False),
            "value_kinds": json.dumps(list(watermark.kinds)) if watermark.kinds else None,
            "run_id": request.run_id,
            "updated_at": now,
        }
        statement = _dialect_insert(conn, feed_cursors).values(**values)
        key = ("landlord_id", "entity", "feed")
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=list(key),
                set_={c: statement.excluded[c] for c in values if c not in key},
            )
        )

    def _merge(
        self,
        conn: sa.Connection,
        request: LoadRequest,
        table: sa.Table,
        columns: list[str],
        rows: _LoadRows,
        now: datetime,
    ) -> LoadResult:
        spec = ENTITIES[request.entity]
        key = spec.key
        stage = _temp_table(conn, f"stage_{uuid.uuid4().hex[:12]}", table)
        self._bulk_insert(conn, stage, ["landlord_id", *columns], rows)
        # the vanished-row check below asks, for every live row, whether the stage holds its key:
        # without an index that is a scan of the stage per row (20k rows: 7 s, 1M rows: hours)
        sa.Index(f"ix_{stage.name}", stage.c[key]).create(conn)
        target_key = table.c[key]
        matched = sa.and_(table.c.landlord_id == stage.c.landlord_id, target_key == stage.c[key])
        changed = sa.or_(table.c.row_hash != stage.c.row_hash, table.c.deleted_at.is_not(None))
        # one pass over the stage for both counts (each pass: a key lookup per staged row)
        existing, updated = conn.execute(
            sa.select(
                sa.func.count(), sa.func.coalesce(sa.func.sum(sa.case((changed, 1), else_=0)), 0)
            ).select_from(stage.join(table, matched))
        ).one()
        inserted = rows.count - existing
        deleted = 0
        if request.mode == "snapshot":
            protected = _temp_table(
                conn,
                f"keep_{uuid.uuid4().hex[:12]}",
                sa.Table("k", sa.MetaData(), sa.Column(key, table.c[key].type)),
            )
            for rejects in request.reject_frames():
                rejected_keys = [
                    k for k in rejects.get("key", pd.Series(dtype="str")).dropna().unique()
                ]
                if rejected_keys:
                    conn.execute(protected.insert(), [{key: k} for k in rejected_keys])
            sa.Index(f"ix_{protected.name}", protected.c[key]).create(conn)
            vanished = sa.and_(
                table.c.landlord_id == request.landlord_id,
                # always true (keys are non-empty text), it makes SQLite walk the landlord's
                # rows through the primary key (landlord_id, key), in key order like the
                # stage's index: left alone it took the tenant index (it holds deleted_at)
                # and one random row lookup per line, 6 s of a 1M-line reload against 0.6 s
                target_key >= "",
                table.c.deleted_at.is_(None),
                ~sa.exists().where(stage.c[key] == target_key),
                ~sa.exists().where(protected.c[key] == target_key),
            )
            deleted = conn.execute(
                sa.select(sa.func.count()).select_from(table).where(vanished)
            ).scalar_one()
            live = conn.execute(
                sa.select(sa.func.count())
                .select_from(table)
                .where(table.c.landlord_id == request.landlord_id, table.c.deleted_at.is_(None))
            ).scalar_one()
            if live and deleted * 100 > request.max_vanished_percent * live:
                raise VanishGuardError(
                    f"{request.landlord_id}/{request.entity}: this snapshot of"
                    f" `{request.source_name}` lacks {deleted} of the {live} rows already"
                    f" loaded ({deleted * 100 / live:.0f} % > max_vanished_percent"
                    f" {request.max_vanished_percent:g} %). Nothing was written. If the export"
                    " is complete, raise `max_vanished_percent` for this entity in the datafix;"
                    " otherwise ask for a full export."
                )
            if deleted:
                conn.execute(
                    table.update()
                    .where(vanished)
                    .values(deleted_at=now, run_id=request.run_id, loaded_at=now)
                )
        if inserted or updated:  # else every staged row is already there, unchanged and live
            insert = _dialect_insert(conn, table).from_select(
                ["landlord_id", *columns],
                sa.select(*[stage.c[c] for c in ["landlord_id", *columns]]).where(sa.true()),
            )
            update_columns = {c: insert.excluded[c] for c in columns}
            update_columns["deleted_at"] = sa.null()
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=["landlord_id", key],
                    set_=update_columns,
                    where=sa.or_(
                        table.c.row_hash != insert.excluded.row_hash,
                        table.c.deleted_at.is_not(None),
                    ),
                )
            )
        for temp in (stage, protected) if request.mode == "snapshot" else (stage,):
            temp.drop(conn)
        return LoadResult(inserted, updated, existing - updated, deleted, 0)

    def _quarantine(
        self,
        conn: sa.Connection,
        request: LoadRequest,
        now: datetime,
        *,
        resolve_others: bool = True,
    ) -> int:
        scope = sa.and_(
            quarantine.c.landlord_id == request.landlord_id,
            quarantine.c.entity == request.entity,
        )
        written = 0
        sealer = None
        for rejects in request.reject_frames():
            if not len(rejects):
                continue
            written += len(rejects)
            # personal cells sealed, the plaintext hashed with a key (pipelines.lib.personal)
            sealer = sealer or RawSealer()
            sealed, hashes = sealer.seal_all(
                rejects["raw"], rejects.get("open_columns", ["[]"] * len(rejects))
            )
            records = [
                {
                    "landlord_id": request.landlord_id,
                    "entity": request.entity,
                    "source_name": source_name,
                    "source_row": source_row,
                    "raw": raw,
                    "raw_hash": raw_hash,
                    "reason": reason,
                    "message": message,
                    "first_run_id": request.run_id,
                    "run_id": request.run_id,
                    "first_seen_at": now,
                    "last_seen_at": now,
                    "resolved_at": None,
                }
                for source_name, source_row, raw, raw_hash, reason, message in zip(
                    rejects.get("source_name", [request.source_name] * len(rejects)),
                    rejects["source_row"],
                    sealed,
                    hashes,
                    rejects["reason"],
                    rejects["message"],
                    strict=True,
                )
            ]
            statement = _dialect_insert(conn, quarantine)
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["landlord_id", "entity", "source_row", "raw_hash"],
                    set_={
                        "run_id": statement.excluded.run_id,
                        "last_seen_at": statement.excluded.last_seen_at,
                        "reason": statement.excluded.reason,
                        "message": statement.excluded.message,
                        "resolved_at": None,
                    },
                ),
                records,
            )
        if resolve_others:
            earlier = sa.and_(
                scope, quarantine.c.resolved_at.is_(None), quarantine.c.run_id != request.run_id
            )
            if request.mode == "snapshot":
                # the snapshot holds every row: an earlier reject not rejected again is fixed
                conn.execute(quarantine.update().where(earlier).values(resolved_at=now))
            else:
                self._supersede(conn, request, earlier, now)
        return written

    def _supersede(
        self, conn: sa.Connection, request: LoadRequest, earlier: Any, now: datetime
    ) -> None:
        """An incremental load holds only what changed: an earlier reject is resolved only when
        its record came again (same lineage) in this load; the others stay open for a requeue."""
        open_rows = conn.execute(sa.select(quarantine.c.id, quarantine.c.source_row).where(earlier))
        again: set[str] = set()
        for rows in request.row_frames():
            again.update(rows.get("source_row", pd.Series(dtype="str")).astype("str"))
        for rejects in request.reject_frames():
            again.update(rejects.get("source_row", pd.Series(dtype="str")).astype("str"))
        ids = [row.id for row in open_rows if row.source_row in again]
        for start in range(0, len(ids), 500):
            conn.execute(
                quarantine.update()
                .where(quarantine.c.id.in_(ids[start : start + 500]))
                .values(resolved_at=now)
            )

    def _audit(
        self,
        conn: sa.Connection,
        request: LoadRequest,
        result: LoadResult,
        now: datetime,
        *,
        status: str,
        reason: str | None = None,
    ) -> None:
        conn.execute(
            load_runs.insert().values(
                **_source_of(request),
                run_id=request.run_id,
                status=status,
                reason=reason,
                warnings=json.dumps(request.warnings) if request.warnings else None,
                rows_in_source=request.rows_in_source,
                skipped=request.skipped,
                read=request.rows_in_source - request.skipped,
                loaded=result.loaded,
                **asdict(result),  # inserted, updated, unchanged, deleted, quarantined
                finished_at=now,
            )
        )

    def _record(self, conn: sa.Connection, request: LoadRequest, now: datetime) -> None:
        state = _dialect_insert(conn, source_state).values(
            **_source_of(request), run_id=request.run_id, loaded_at=now
        )
        conn.execute(
            state.on_conflict_do_update(
                index_elements=["landlord_id", "entity"],
                set_={
                    c: state.excluded[c]
                    for c in ("source_name", "fingerprint", "datafix_sha", "run_id", "loaded_at")
                },
            )
        )

    def _bulk_insert(
        self, conn: sa.Connection, table: sa.Table, columns: list[str], rows: _LoadRows
    ) -> None:
        """Insert every chunk of `rows` into `table`."""
        if rows.count == 0:
            return
        if self.dialect == "sqlite":
            _sqlite_bulk_insert(conn, table, columns, rows)
        elif self.dialect == "postgresql" and conn.dialect.driver == "psycopg":
            _postgres_copy(conn, table, columns, rows)
        else:
            for chunk in rows.chunks:
                for grid in chunk.grids(columns):
                    conn.execute(
                        table.insert(), [dict(zip(columns, r, strict=True)) for r in grid.tolist()]
                    )


def reindexes(conn: sa.Connection, table: sa.Table, incoming: int) -> bool:
    """Whether `incoming` rows go into `table` faster with its indexes dropped and built once
    afterwards: a b-tree fed in random order costs more than one sort, unless the table already
    holds more rows (other landlords', other days') than this insert brings, which the rebuild
    would sort again. The load's rule (`_sqlite_bulk_insert`), the works derive's too."""
    if incoming < BULK_REINDEX_ROWS:
        return False
    held = conn.exec_driver_sql(f"SELECT count(*) FROM {_quote(conn, table.name)}").scalar()
    return (held or 0) <= incoming


def _postgres_copy(
    conn: sa.Connection, table: sa.Table, columns: list[str], rows: _LoadRows
) -> None:
    """COPY of every chunk of `rows` into `table` (psycopg 3), as CSV written by Arrow.

    Each chunk goes to the server as one CSV text made by Arrow's writer from the chunk's
    columns (`DriverValues.arrow`), not row by row from Python objects (`write_row`: ~2/3 of
    the client's CPU in a 1M-line load). Arrow quotes every text value, so `""` is an empty
    text and an unquoted empty field a null, as COPY's CSV format reads them.

    A first bulk load (`reindexes`) goes into the table without its indexes, built once
    afterwards (one sort each instead of a b-tree fed in random order: the 1M-line ledger's
    COPY cost the server ~21 CPU s with its two indexes in place, ~6 s without and ~7 s for
    the two builds), when the table can be locked at once (`_postgres_lock_now`): a table
    another transaction is using keeps its indexes."""
    rebuild: list[str] = []
    if reindexes(conn, table, rows.count) and _postgres_lock_now(conn, table):
        rebuild = _postgres_drop_indexes(conn, table)
    names = ", ".join(_quote(conn, c) for c in columns)
    options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
    cursor = conn.connection.driver_connection.cursor()
    statement = f"COPY {_quote(conn, table.name)} ({names}) FROM STDIN (FORMAT csv)"
    with cursor.copy(statement) as copy:
        # Arrow's writer hands the text over a batch of rows at a time: no chunk-sized buffer
        stream = pa.PythonFile(_CopyStream(copy), mode="w")
        for chunk in rows.chunks:
            pacsv.write_csv(chunk.arrow(columns), stream, options)
    for statement in rebuild:
        conn.exec_driver_sql(statement)


class _CopyStream:
    """A write-only file over a psycopg COPY (what `pa.PythonFile` wraps)."""

    def __init__(self, copy: Any) -> None:
        self.copy = copy
        self.closed = False

    def write(self, data: bytes) -> int:
        self.copy.write(data)
        return len(data)

    def flush(self) -> None:
        pass


def _postgres_lock_now(conn: sa.Connection, table: sa.Table) -> bool:
    """Whether this transaction now holds `table` alone (ACCESS EXCLUSIVE, until it ends):
    False, and nothing changed, when another transaction holds a lock on it (waiting for it,
    while this one holds a lock on the table already, could deadlock two first loads)."""
    try:
        with conn.begin_nested():
            conn.exec_driver_sql(
                f"LOCK TABLE {_quote(conn, table.name)} IN ACCESS EXCLUSIVE MODE NOWAIT"
            )
    except sa.exc.OperationalError as error:
        if getattr(error.orig, "sqlstate", None) == "55P03":  # lock_not_available
            return False
        raise
    return True


def _postgres_drop_indexes(conn: sa.Connection, table: sa.Table) -> list[str]:
    """Drop every index of `table` (its primary key's and unique constraints' included); the
    statements that build them again as they were."""
    found = conn.exec_driver_sql(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid), c.conname,"
        " pg_get_constraintdef(c.oid)"
        " FROM pg_index i LEFT JOIN pg_constraint c"
        " ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid AND c.contype IN ('p', 'u')"
        " WHERE i.indrelid = %(table)s::regclass ORDER BY c.conname IS NULL, 1",
        {"table": _quote(conn, table.name)},
    ).all()
    name = _quote(conn, table.name)
    rebuild = []
    for index, definition, constraint, constraint_definition in found:
        if constraint is not None:
            constraint = _quote(conn, constraint)
            conn.exec_driver_sql(f"ALTER TABLE {name} DROP CONSTRAINT {constraint}")
            rebuild.append(
                f"ALTER TABLE {name} ADD CONSTRAINT {constraint} {constraint_definition}"
            )
        else:
            conn.exec_driver_sql(f"DROP INDEX {index}")
            rebuild.append(definition)
    return rebuild


def _sqlite_bulk_insert(
    conn: sa.Connection, table: sa.Table, columns: list[str], rows: _LoadRows
) -> None:
    """Every chunk of `rows` into `table` in multi-row INSERTs straight to the driver, the
    load's constants written inline (`staging.insert_rows`); or, when a helper staged them
    (`staging.StagedRows`, attached as `STAGED_SCHEMA`), copied from there in one
    `INSERT … SELECT`, the constants bound once."""
    driver = conn.connection.driver_connection
    # DROP INDEX is DDL, which sqlite3 runs outside any transaction unless one is open:
    # open it first so that a failed load gets its index back with the rollback
    if not driver.in_transaction:
        conn.exec_driver_sql("BEGIN")
    if rows.staged is not None:
        staged = rows.staged.columns
        picked = [_quote(conn, c) if c in staged else f":{c}" for c in columns]
        with _indexes_rebuilt(conn, table, rows.count):
            driver.execute(
                f"INSERT INTO {_quote(conn, table.name)}"
                f" ({', '.join(_quote(conn, c) for c in columns)})"
                f" SELECT {', '.join(picked)} FROM {STAGED_SCHEMA}.{STAGED_TABLE}"
                " ORDER BY rowid",
                {c: rows.constants[c] for c in columns if c not in staged},
            )
        return
    chunks = iter(rows.chunks)
    first = next(chunks, None)
    if first is None:
        return
    with _indexes_rebuilt(conn, table, rows.count):
        insert_rows(
            driver,
            _quote(conn, table.name),
            columns,
            itertools.chain([first], chunks),
            lambda name: _quote(conn, name),
        )


@contextmanager
def _indexes_rebuilt(conn: sa.Connection, table: sa.Table, incoming: int) -> Iterator[None]:
    """The indexes of `table` dropped while `incoming` rows go in, and built once after, when
    that is faster (`reindexes`): a b-tree fed in random order costs more than one sort."""
    rebuild = list(table.indexes) if table.indexes and reindexes(conn, table, incoming) else []
    for index in rebuild:
        index.drop(conn)
    yield
    for index in rebuild:
        index.create(conn)


# the warehouse's disk is full or failing: SQLite (SQLITE_FULL, SQLITE_IOERR: a write refused by
# the file system), PostgreSQL (SQLSTATE 53100 disk_full; "could not extend file"), MariaDB (1021)
DISK_FAULT = re.compile(
    r"database or disk is full|disk I/O error|No space left on device|could not extend file"
    r"|could not write|disk full|Errcode: 28",
    re.IGNORECASE,
)


def warehouse_fault(context: sa.engine.ExceptionContext) -> ConnectorError | None:
    """The hub's own error for a warehouse fault the operator must see as such (SQLAlchemy's
    `handle_error` hook): a full or failing disk, a server that cannot be reached, a SQLite file
    that cannot be opened. Each names the warehouse (password masked) and what to do; the
    transaction was rolled back, so nothing of it was written. Any other error (a bug, a
    constraint the hub's own code handles) goes through unchanged."""
    original = context.original_exception
    text = " ".join(str(original).split())[:300]
    url = context.engine.url if context.engine is not None else None
    where = scrub(url.render_as_string(hide_password=True)) if url is not None else "?"
    text = scrub(text)
    code = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    if code == "53100" or DISK_FAULT.search(text):
        local = url is not None and url.get_backend_name() == "sqlite" and url.database
        folder = f" (on the disk of {Path(url.database).resolve().parent})" if local else ""
        return RetriableError(
            f"the warehouse {where} could not write: {text} — the disk holding it is full or"
            f" failing: free space there{folder} and run again; this transaction was rolled"
            " back, nothing of it was written"
        )
    connecting = context.connection is None or context.is_disconnect
    if connecting and url is not None and url.get_backend_name() == "sqlite":
        return ConfigError(
            f"the warehouse {where} cannot be opened: {text} — check that its folder exists and"
            " is writable, or fix DATAFIX_WAREHOUSE_URL"
        )
    if connecting and isinstance(original, Exception) and not isinstance(original, TypeError):
        return RetriableError(
            f"the warehouse {where} cannot be reached: {text} — check that the database server"
            " is up, and the host, port, database, user and password of DATAFIX_WAREHOUSE_URL"
        )
    return None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Transactions are begun by `_sqlite_begin_immediate`, not by the driver's implicit BEGIN
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # Runs of different landlords write to one file: a writer waits for the other's commit
    # (a large load holds the file for a while) instead of failing with `database is locked`
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    # 16 KiB pages (SQLite's default is 4 KiB) for a new warehouse: bulk loads write and
    # checkpoint a quarter of the pages; measured on a 1M-row load: ~0.8 s less CPU. Only an
    # empty database takes it (before WAL is set); an existing one keeps its page size.
    cursor.execute("PRAGMA page_size=16384")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Temporary storage in files (the OS caches them), not in memory: SQLite's sorter cannot
    # use helper threads with in-memory temp storage and writes its runs to 1 KiB memory chunks.
    # Rebuilding the ledger's tenant index after a 1M-row load: 1.4 s -> 0.6-0.7 s; a merge's
    # 1M-row stage table no longer lives in the process (peak RSS 995 MB -> 552 MB).
    cursor.execute("PRAGMA temp_store=FILE")
    cursor.execute("PRAGMA threads=2")
    cursor.close()


def _sqlite_begin_immediate(conn: sa.Connection) -> None:
    """Every transaction takes SQLite's write lock when it begins (waiting up to the busy
    timeout): a deferred transaction that read first cannot take it later once another process
    committed meanwhile (WAL answers `database is locked` at once, whatever the timeout), which
    is how two concurrent loads of different landlords failed."""
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _source_of(request: LoadRequest) -> dict[str, str]:
    """The columns naming what a load read: landlord, entity, source, fingerprint, datafix."""
    return {
        name: getattr(request, name)
        for name in ("landlord_id", "entity", "source_name", "fingerprint", "datafix_sha")
    }


def _create_views(conn: sa.Connection, *, replace: bool) -> None:
    """Create the views of `schemas.tables.VIEWS` that are missing (every one again when
    `replace`: a newer schema may define them otherwise), each from its SELECT compiled for the
    warehouse. A table of a view's name is dropped first: schema 7 stored the whole works
    timeline (`works_timeline`), now a view; its rows come back at the landlord's next works
    computation (`works.works_inputs` names the layout)."""
    inspector = sa.inspect(conn)
    tables, present = set(inspector.get_table_names()), set(inspector.get_view_names())
    for view, select in VIEWS.items():
        name = _quote(conn, view.name)
        if view.name in tables:
            conn.exec_driver_sql(f"DROP TABLE {name}")
        if view.name in present and replace:
            conn.exec_driver_sql(f"DROP VIEW {name}")
            present.discard(view.name)
        if view.name not in present:
            body = select.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
            conn.exec_driver_sql(f"CREATE VIEW {name} AS {body}")


def _copy_legacy_cursors(conn: sa.Connection) -> None:
    """The watermarks a schema-4 warehouse kept per entity (`source_cursors`), copied once into
    `feed_cursors` (an entity read from one source: its feed is named by the source)."""
    if conn.execute(sa.select(sa.func.count()).select_from(feed_cursors)).scalar_one():
        return
    legacy = legacy_source_cursors
    rows = conn.execute(sa.select(legacy)).mappings().all()
    if rows:
        conn.execute(
            feed_cursors.insert(),
            [
                {
                    **{c.name: row[c.name] for c in legacy.columns if c.name != "source_name"},
                    "feed": row["source_name"],
                }
                for row in rows
            ],
        )


def _now() -> datetime:
    return datetime.now(UTC)


def _quote(conn: sa.Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def _dialect_insert(conn: sa.Connection, table: sa.Table) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(
        f"the warehouse supports SQLite and PostgreSQL, not {conn.dialect.name}"
    )


def _temp_table(conn: sa.Connection, name: str, like: sa.Table) -> sa.Table:
    temp = sa.Table(
        name,
        sa.MetaData(),
        *[sa.Column(c.name, c.type) for c in like.columns],
        prefixes=["TEMPORARY"],
        **({"postgresql_on_commit": "DROP"} if conn.dialect.name == "postgresql" else {}),
    )
    temp.create(conn)
    return temp


@dataclass(frozen=True)
class _LoadRows:
    """The rows of one load on their way to the driver: `chunks` (read once) and their `count`;
    on SQLite, when a helper staged them (`staged`), read from its file with the load's
    lineage `constants` instead."""

    chunks: Iterable[DriverValues]
    count: int
    staged: Staging | None = None
    constants: dict[str, Any] = field(default_factory=dict)


def _lineage(request: LoadRequest, now: datetime, dialect: str) -> dict[str, Any]:
    """The values every row of a load shares: landlord, source, datafix version, run, time."""
    stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f") + ("+00:00" if dialect == "postgresql" else "")
    return {
        "landlord_id": request.landlord_id,
        "source_name": request.source_name,
        "datafix_sha": request.datafix_sha,
        "run_id": request.run_id,
        "loaded_at": stamp,
    }


def _column_values(
    rows: pd.DataFrame, request: LoadRequest, now: datetime, dialect: str
) -> DriverValues:
    """Driver-ready values per column (`staging.row_values`) with the load's lineage."""
    values = row_values(rows, request.entity, dialect)
    constants = {
        name: value
        for name, value in _lineage(request, now, dialect).items()
        if name not in values.columns  # an entity with several feeds: each row names its own
    }
    return replace(values, constants=constants)
