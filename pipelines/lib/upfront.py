"""What a command-line run of one landlord can leave out, decided before it is launched.

The insight steps (balances, arrears and their alerts, prevention actions, works and their
alerts, the morning report) read only the warehouse, the datafix and the day. Each of them
already skips its own computation when what it reads did not change (`insight.computed_once`),
but a step left to find that out still costs a Dagster step (its events in the instance, its
queries): on an unchanged rerun of the 1M-line bench landlord, 11 of the run's 16 steps.

So `datafix run` leaves the insight group out of the run when it can tell, before launching,
that none of it would change anything:
- every entity the landlord maps will be found unchanged by its pull (`sources_unchanged`:
  its files hash to the fingerprint of the last committed load, under the same datafix; a
  source that is not files, or that resumes from a cursor, cannot be told and keeps the group);
- the warehouse is, for this landlord, as the insight steps last saw it in a command-line run
  that ran them all and succeeded (`insight_stamp`: the day, the datafix, the loads and requeues,
  the quarantine, the outbox; recorded in `insight_states` by `record_insight_stamp`);
- today's morning report is on disk.

The entity steps stay in the run (their assets record `unchanged` with the last counts and the
contract shows *Skipped*), and so does the landlord's health, refreshed by every run. The steps
left out keep their last materialisation and their checks their last verdict: nothing they
read changed since.
"""

from __future__ import annotations

import json
from datetime import date, datetime

import sqlalchemy as sa

from pipelines.lib.datafixes import LoadedDatafix
from pipelines.lib.insight import computed_once
from pipelines.lib.report import report_path
from pipelines.lib.stages import files_fingerprint
from pipelines.lib.warehouse import Warehouse
from pipelines.lib.works import PARIS
from schemas.tables import insight_states, load_runs, outbox, quarantine

# the `insight_states` row of the insight group as a whole (the steps have their own rows)
STAMP_STEP = "insight_group"


def today() -> date:
    """The day the insight steps compute for (Paris)."""
    return datetime.now(PARIS).date()


def sources_unchanged(warehouse: Warehouse, loaded: LoadedDatafix) -> bool:
    """Whether the pull of every entity the datafix maps will find it unchanged: its files
    fingerprint (names and bytes, nothing parsed; the pull reuses the digest) as the last
    committed load's, under the same datafix. False when one cannot be told before reading
    (a source that is not files, a cursor) or when the datafix maps nothing."""
    entities = list(loaded.datafix.entities)
    for entity in entities:
        fingerprint = files_fingerprint(loaded, entity)
        if fingerprint is None:
            return False
        if warehouse.last_state(loaded.landlord_id, entity) != (fingerprint, loaded.sha):
            return False
    return bool(entities)


def insight_stamp(connection: sa.Connection, loaded: LoadedDatafix, as_of: date) -> str:
    """What the insight steps read, as a text that changes whenever it does: the day, the
    datafix (rules, thresholds, sinks), the landlord's loads (a requeue is one), its quarantine
    and its outbox (pushes, replays)."""
    landlord_id = loaded.landlord_id
    loads = connection.execute(
        sa.select(sa.func.count(), sa.func.max(load_runs.c.finished_at)).where(
            load_runs.c.landlord_id == landlord_id
        )
    ).one()
    rejected = connection.execute(
        sa.select(
            sa.func.count(),
            sa.func.count(quarantine.c.resolved_at),
            sa.func.max(quarantine.c.last_seen_at),
            sa.func.max(quarantine.c.resolved_at),
        ).where(quarantine.c.landlord_id == landlord_id)
    ).one()
    queued = connection.execute(
        sa.select(sa.func.count(), sa.func.max(outbox.c.updated_at)).where(
            outbox.c.landlord_id == landlord_id
        )
    ).one()
    return json.dumps(
        {
            "as_of": as_of.isoformat(),
            "datafix": loaded.sha,
            "loads": [str(value) for value in loads],
            "quarantine": [str(value) for value in rejected],
            "outbox": [str(value) for value in queued],
        },
        sort_keys=True,
    )


def insight_current(warehouse: Warehouse, loaded: LoadedDatafix) -> bool:
    """Whether the insight steps would change nothing if run now (see the module's doc): the
    sources are unchanged, the warehouse is as they last saw it, today's report exists."""
    as_of = today()
    if not report_path(loaded.landlord_id, as_of).is_file():
        return False
    if not sources_unchanged(warehouse, loaded):
        return False
    state = insight_states
    with warehouse.engine.connect() as connection:
        recorded = connection.execute(
            sa.select(state.c.as_of, state.c.inputs).where(
                state.c.landlord_id == loaded.landlord_id, state.c.step == STAMP_STEP
            )
        ).first()
        return recorded is not None and tuple(recorded) == (
            as_of,
            insight_stamp(connection, loaded, as_of),
        )


def record_insight_stamp(warehouse: Warehouse, loaded: LoadedDatafix, run_id: str) -> None:
    """Record the warehouse as the insight steps of run `run_id` (all run, all succeeded) left
    it: a later run finding it so may leave them out."""
    as_of = today()
    with warehouse.engine.begin() as connection:
        stamp = insight_stamp(connection, loaded, as_of)
        computed_once(connection, loaded.landlord_id, STAMP_STEP, as_of, run_id, stamp, _nothing)


def _nothing() -> None:
    """The insight group's record computes nothing itself: its steps did."""
