"""Requeue: map an entity's open quarantine rows again, with the datafix as it is now.

Quarantine keeps every rejected row's raw values (`quarantine.raw`). Once landlord IT has fixed
the datafix (a code added to a `map`, a date format, a rule set to `warn`), `datafix requeue`
(or the `requeue` job in the UI) re-normalises those rows from the kept values: rows that now
pass are loaded, the others stay in quarantine with their new reason, rows a new `skip_rows`
filter skips are resolved. It reads no source, so it works for incremental sources whose
watermark has long moved past the rows, and it never moves a watermark nor the fingerprint the
next pull compares with. Counts hold for every requeue: read = loaded + quarantined, and
read + skipped = the rows requeued.

A requeued row whose key is already live from another row (a duplicate, or a later version of
the record loaded since) stays in quarantine: requeueing never overwrites newer data.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from connectors.errors import ConfigError
from connectors.lazy import pd
from connectors.rawtable import RawTable
from pipelines.lib.datafixes import LoadedDatafix
from pipelines.lib.transforms import EntityTransformer, NormalisedBatch, union_feeds
from pipelines.lib.warehouse import LoadRequest, Warehouse
from schemas.canonical import ENTITIES

__all__ = ["RequeueResult", "requeue"]


@dataclass(frozen=True)
class RequeueResult:
    """What one requeue did to one entity's open quarantine."""

    landlord_id: str
    entity: str
    requeued: int = 0  # open quarantine rows taken (of the chosen reason)
    loaded: int = 0
    quarantined: int = 0  # still quarantined, with their new reason
    skipped: int = 0  # now skipped by the datafix's `skip_rows`: resolved
    left: int = 0  # rows of a feed the datafix no longer has: left as they were
    reasons: dict[str, int] = field(default_factory=dict)  # reason → rows still quarantined

    @property
    def read(self) -> int:
        """Rows offered to the mapping: requeued minus skipped (and minus those left)."""
        return self.requeued - self.skipped - self.left

    def summary(self) -> str:
        """One line: what the requeue loaded, what it left and why."""
        where = f"{self.landlord_id}/{self.entity}"
        if not self.requeued:
            return f"{where}: nothing in quarantine"
        still = ", ".join(f"{reason} {count}" for reason, count in sorted(self.reasons.items()))
        line = (
            f"{where}: {self.requeued} quarantined row(s) requeued: {self.loaded} loaded,"
            f" {self.quarantined} still quarantined" + (f" ({still})" if still else "")
        )
        if self.skipped:
            line += f", {self.skipped} now skipped"
        if self.left:
            line += (
                f", {self.left} left as they were (the feed that rejected them is no longer in"
                " the datafix)"
            )
        return line


def requeue(
    warehouse: Warehouse,
    loaded: LoadedDatafix,
    entity: str,
    *,
    run_id: str,
    reason: str | None = None,
) -> RequeueResult:
    """Re-normalise `entity`'s open quarantine rows (of `reason`, else all) with `loaded`'s
    datafix and write the outcome in one transaction; see the module docstring."""
    mapping = loaded.datafix.entities.get(entity)
    if mapping is None:
        raise ConfigError(
            f"{loaded.landlord_id}: the datafix maps no `{entity}` (it maps"
            f" {', '.join(loaded.datafix.entities)}): nothing to requeue"
        )
    waiting = warehouse.open_quarantine(loaded.landlord_id, entity, reason)
    result = RequeueResult(loaded.landlord_id, entity, requeued=len(waiting))
    if waiting.empty:
        return result
    feeds = {feed.label: feed for feed in mapping.all_feeds}
    parts: list[tuple[str, NormalisedBatch, RawTable]] = []
    ids: list[int] = []
    left = 0
    for label, group in waiting.groupby("source_name", sort=False):
        feed = feeds.get(str(label))
        if feed is None:
            left += len(group)  # the feed that rejected them is gone from the datafix
            continue
        raw = _raw_table(group, f"{loaded.landlord_id}/{entity} quarantine of `{label}`")
        try:
            batch = EntityTransformer(entity, mapping, feed=feed).apply(raw)
        except ConfigError as error:
            raise ConfigError(f"requeue {loaded.landlord_id}/{entity}: {error}") from None
        parts.append((str(label), batch, raw))
        ids.extend(int(i) for i in group["id"])
    if not parts:
        return RequeueResult(loaded.landlord_id, entity, requeued=len(waiting), left=left)
    batch = parts[0][1] if mapping.feeds is None else union_feeds(entity, parts)
    batch = _keep_live_keys(warehouse, loaded.landlord_id, entity, batch)
    request = LoadRequest(
        landlord_id=loaded.landlord_id,
        entity=entity,
        source_name=" + ".join(label for label, _, _ in parts)[:128],
        rows=batch.rows,
        rejects=batch.rejects,
        datafix_sha=loaded.sha,
        run_id=run_id,
        fingerprint="requeue",
        rows_in_source=batch.rows_in_source,
        skipped=batch.skipped,
        mode="incremental",  # a requeue holds only some rows: it never soft-deletes
        warnings=batch.warnings,
    )
    written = warehouse.load_requeued(request, ids)
    return RequeueResult(
        loaded.landlord_id,
        entity,
        requeued=len(waiting),
        loaded=written.loaded,
        quarantined=written.quarantined,
        skipped=batch.skipped,
        left=left,
        reasons=dict(Counter(batch.rejects["reason"])),
    )


def _raw_table(group: pd.DataFrame, origin: str) -> RawTable:
    """The kept raw values of quarantine rows as the table their source once gave (text cells,
    blanks as ""), each row with its original lineage."""
    records = [json.loads(text) for text in group["raw"]]
    frame = pd.DataFrame.from_records(records).fillna("").astype("str")
    return RawTable(
        frame=frame,
        source_rows=pd.Series(group["source_row"].to_numpy(), dtype="str"),
        fingerprint="requeue",
        origin=origin,
    )


def _keep_live_keys(
    warehouse: Warehouse, landlord_id: str, entity: str, batch: NormalisedBatch
) -> NormalisedBatch:
    """`batch` with the rows whose key is already live from another source row moved to the
    rejects (`duplicate_key`): a requeue must not overwrite what a later load wrote."""
    key = ENTITIES[entity].key
    if batch.rows.empty:
        return batch
    live = warehouse.live_lineage(landlord_id, entity, batch.rows[key].astype("str").tolist())
    lineage = batch.rows[key].astype("str").map(live)
    taken = lineage.notna() & (lineage != batch.rows["source_row"].astype("str"))
    if not taken.any():
        return batch
    clashing = batch.rows.loc[taken]
    rejects = pd.DataFrame(
        {
            "source_row": clashing["source_row"].astype("str").to_numpy(),
            "key": clashing[key].astype("str").to_numpy(),
            "raw": "",  # unchanged: the quarantine row keeps its raw values
            "reason": "duplicate_key",
            "message": (
                f"{key} '"
                + clashing[key].astype("str")
                + "' is already loaded from "
                + lineage.loc[taken]
                + " — the requeued row would overwrite it; fix the source, the next pull"
                " settles it"
            ).to_numpy(),
        }
    )
    return NormalisedBatch(
        entity=batch.entity,
        rows=batch.rows.loc[~taken].reset_index(drop=True),
        rejects=pd.concat([batch.rejects, rejects], ignore_index=True),
        rows_in_source=batch.rows_in_source,
        skipped=batch.skipped,
        warnings=batch.warnings,
    )
