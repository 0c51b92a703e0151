"""The inbox sensor: new files in a landlord's inbox start one run of that landlord.

- **What is new** is decided against the warehouse, not against the sensor's memory: an entity
  read from files needs a run when the fingerprint `pull` would give its files now (names and
  bytes) is neither the last one loaded (`source_state`) nor that of the last attempt
  (`load_runs`, a blocked load included). A fresh Dagster instance over a warehouse that already
  loaded today's files therefore launches nothing.
- **One run per landlord per drop**: the files of every changed entity go into one run request,
  its run key `inbox:<landlord>:<digest of the changed entities' fingerprints>` (file names and
  content); the cursor keeps the last key requested per landlord, so a second tick over the same
  drop requests nothing, and Dagster drops a repeated key within an instance anyway.
- **Cool-down**: a landlord's files are looked at only once none of them is still being written:
  each file's size and modification time must have stayed the same for the source's settling
  interval (the datafix's `settle_seconds`, else `DATAFIX_FILE_SETTLE_SECONDS`, else 2 s), the
  cursor remembering when each last changed.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from connectors import registry
from connectors.errors import ConnectorError
from connectors.files.client import settle_seconds
from pipelines.defs.automation import nightly_job
from pipelines.defs.partitions import landlord_partitions
from pipelines.defs.resources import WarehouseResource
from pipelines.lib.datafixes import LoadedDatafix, load_landlord
from pipelines.lib.stages import files_fingerprint
from pipelines.lib.warehouse import Warehouse

TAG_TRIGGER_FILES = "datafix/trigger_files"
_TAG_LIMIT = 1000  # characters of file names kept in the tag


@dataclass
class InboxCursor:
    """What the sensor remembers between ticks (its cursor, as JSON)."""

    # landlord → file (relative to its inbox) → [size, mtime_ns, when it last changed, when it
    # was last looked at] (epoch seconds)
    files: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    # landlord → the run key last requested for it
    requested: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> InboxCursor:
        if not text:
            return cls()
        try:
            data = json.loads(text)
        except ValueError:
            return cls()  # an older sensor's cursor: start over, the warehouse knows the rest
        if not isinstance(data, dict):
            return cls()
        return cls(files=dict(data.get("files") or {}), requested=dict(data.get("requested") or {}))

    def dump(self) -> str:
        return json.dumps({"files": self.files, "requested": self.requested}, sort_keys=True)


@dataclass(frozen=True)
class LandlordVerdict:
    """What one tick decided for one landlord."""

    request: dg.RunRequest | None = None
    waiting: list[str] = field(default_factory=list)  # files still being written
    problem: str | None = None


def inbox_tick(
    landlords: list[str], warehouse: Warehouse, cursor: InboxCursor, now: float | None = None
) -> tuple[list[dg.RunRequest], list[str]]:
    """One evaluation over `landlords`: the run requests and what to log; updates `cursor`."""
    now = time.time() if now is None else now
    requests: list[dg.RunRequest] = []
    notes: list[str] = []
    for landlord in landlords:
        verdict = _landlord_tick(landlord, warehouse, cursor, now)
        if verdict.problem:
            notes.append(f"{landlord}: {verdict.problem}")
        if verdict.waiting:
            notes.append(
                f"{landlord}: waiting for {', '.join(verdict.waiting)} to settle (still being"
                " written)"
            )
        if verdict.request is not None:
            requests.append(verdict.request)
    return requests, notes


def _landlord_tick(
    landlord: str, warehouse: Warehouse, cursor: InboxCursor, now: float
) -> LandlordVerdict:
    try:
        loaded = load_landlord(landlord)
    except ConnectorError as error:
        return LandlordVerdict(problem=str(error))
    inbox = loaded.inbox()
    watched = _watched_files(loaded, inbox)
    if not watched:
        cursor.files.pop(landlord, None)
        return LandlordVerdict()
    waiting = _cool_down(cursor.files.setdefault(landlord, {}), watched, inbox, now)
    if waiting:
        return LandlordVerdict(waiting=waiting)
    processed = warehouse.processed_fingerprints(landlord)
    changed: dict[str, str] = {}
    for entity in loaded.datafix.entities:
        try:
            fingerprint = files_fingerprint(loaded, entity)
        except (ConnectorError, OSError):
            # nothing of this entity landed yet, a file vanished since the listing, or it cannot
            # be read: the next tick looks again, a run would say what is wrong
            continue
        if fingerprint is not None and fingerprint not in processed.get(entity, set()):
            changed[entity] = fingerprint
    if not changed:
        return LandlordVerdict()
    drop = "\n".join(f"{entity}={fingerprint}" for entity, fingerprint in sorted(changed.items()))
    run_key = f"inbox:{landlord}:{hashlib.sha256(drop.encode()).hexdigest()[:16]}"
    if cursor.requested.get(landlord) == run_key:
        return LandlordVerdict()  # this drop's run was requested at an earlier tick
    cursor.requested[landlord] = run_key
    names = ", ".join(sorted(cursor.files[landlord]))
    return LandlordVerdict(
        request=dg.RunRequest(
            run_key=run_key,
            partition_key=landlord,
            tags={
                TAG_TRIGGER_FILES: names[:_TAG_LIMIT],
                "datafix/trigger_entities": ", ".join(sorted(changed)),
            },
        )
    )


def _watched_files(loaded: LoadedDatafix, inbox: Path) -> dict[Path, float]:
    """Every file of the landlord's file sources in its inbox → its settling interval."""
    watched: dict[Path, float] = {}
    for name, settings in loaded.datafix.sources.items():
        kind = registry.source_kind(settings.kind)
        if kind is None or kind.watch is None:
            continue  # databases and web services: no file
        source = loaded.source(name)
        try:
            found = kind.watch(source, inbox)
        except ConnectorError:
            continue  # nothing landed yet for this source
        settle = settle_seconds(getattr(source, "settle_seconds", None))
        for path in found:
            watched[path] = max(settle, watched.get(path, 0.0))
    return watched


def _cool_down(
    seen: dict[str, list[float]], watched: dict[Path, float], inbox: Path, now: float
) -> list[str]:
    """Update `seen` with the files' sizes and modification times; return the files changed
    less than their settling interval ago (a file first seen counts from its mtime)."""
    waiting: list[str] = []
    current: dict[str, list[float]] = {}
    for path, settle in sorted(watched.items()):
        name = path.relative_to(inbox).as_posix()
        try:
            status = path.stat()
        except OSError:
            continue  # gone between the listing and now
        state = [status.st_size, status.st_mtime_ns]
        modified = status.st_mtime_ns / 1e9
        before = seen.get(name)
        if before is None or len(before) != 4:
            changed_at = min(modified, now)
        elif before[:2] != state:
            # changed since the last tick: at its mtime when that falls in between, else now (a
            # copy that keeps the original's mtime, a clock in the future)
            changed_at = modified if before[3] < modified <= now else now
        else:
            changed_at = before[2]
        current[name] = [*state, changed_at, now]
        if now - changed_at < settle:
            waiting.append(name)
    seen.clear()
    seen.update(current)
    return waiting


@dg.sensor(
    job=nightly_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts one run of a landlord when new files land in its inbox: new means not"
    " yet loaded by the warehouse (compared by content), once the files have stopped changing;"
    " one run per drop, whatever the number of ticks.",
)
def inbox_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.SensorResult:
    """Watch every landlord's inbox."""
    cursor = InboxCursor.parse(context.cursor)
    requests, notes = inbox_tick(
        landlord_partitions.get_partition_keys(), warehouse.get_client(), cursor
    )
    for note in notes:
        context.log.info(note)
    return dg.SensorResult(
        run_requests=requests,
        cursor=cursor.dump(),
        skip_reason=None if requests else "no new settled file in any inbox",
    )
