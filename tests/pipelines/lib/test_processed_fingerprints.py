"""`Warehouse.processed_fingerprints`: what the inbox sensor treats as already done, on SQLite
and on PostgreSQL. The rows are written here by hand; the expected sets are read off them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipelines.lib.warehouse import Warehouse
from schemas.tables import load_runs, source_state

NIGHT = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
COUNTS = dict.fromkeys(
    (
        "rows_in_source", "skipped", "read", "loaded", "inserted", "updated", "unchanged",
        "deleted", "quarantined",
    ),
    0,
)  # fmt: skip


def _attempt(run: str, landlord: str, entity: str, fingerprint: str, status: str, hour: int):
    return {
        "run_id": run,
        "landlord_id": landlord,
        "entity": entity,
        "source_name": "export",
        "status": status,
        "fingerprint": fingerprint,
        "datafix_sha": "d" * 64,
        "finished_at": NIGHT + timedelta(hours=hour),
        **COUNTS,
    }


def test_the_last_load_and_the_newest_attempt_count_requeues_and_older_attempts_do_not(
    warehouse_url: str,
) -> None:
    warehouse = Warehouse(warehouse_url)
    warehouse.migrate()
    with warehouse.engine.begin() as conn:
        conn.execute(
            source_state.insert(),
            [
                {
                    "landlord_id": "north",
                    "entity": "tenants",
                    "source_name": "export",
                    "fingerprint": "A",
                    "datafix_sha": "d" * 64,
                    "run_id": "r1",
                    "loaded_at": NIGHT,
                }
            ],
        )
        conn.execute(
            load_runs.insert(),
            [
                _attempt("r0", "north", "tenants", "OLD", "loaded", 0),
                _attempt("r1", "north", "tenants", "A", "loaded", 1),
                _attempt("r2", "north", "tenants", "B", "blocked", 2),
                _attempt("r3", "north", "tenants", "requeue", "loaded", 3),
                _attempt("r4", "north", "ledger_entries", "C", "failed", 1),
                _attempt("r5", "south", "tenants", "S", "loaded", 1),
            ],
        )
    assert warehouse.processed_fingerprints("north") == {
        "tenants": {"A", "B"},  # the last load and the blocked attempt after it
        "ledger_entries": {"C"},
    }
    assert warehouse.processed_fingerprints("nobody") == {}
    warehouse.engine.dispose()
