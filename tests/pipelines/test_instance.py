"""pipelines/lib/instance.py: how the hub's process opens the Dagster instance's SQLite files.

A file under the instance is in WAL mode from its first connection (before Dagster creates its
tables there, which it would otherwise commit one by one, each with fsyncs, in the rollback
journal's mode) and commits with synchronous=NORMAL; a SQLite file elsewhere is left as SQLite
opens it.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from pipelines.lib.environment import dagster_home
from pipelines.lib.instance import ensure_instance


def _modes(path: Path) -> tuple[str, int]:
    engine = sa.create_engine(f"sqlite:///{path}", poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar_one()
            synchronous = connection.exec_driver_sql("PRAGMA synchronous").scalar_one()
    finally:
        engine.dispose()
    return str(mode).lower(), int(synchronous)


def test_a_new_file_of_the_instance_is_write_ahead_from_its_first_connection(
    tmp_path: Path,
) -> None:
    ensure_instance()
    new_file = dagster_home() / "history" / "runs" / "a-new-run.db"
    assert not new_file.exists()
    assert _modes(new_file) == ("wal", 1)  # 1: NORMAL
    elsewhere = tmp_path / "elsewhere.db"
    assert _modes(elsewhere) == ("delete", 2)  # SQLite's defaults: rollback journal, FULL


def test_a_run_keeps_its_event_file_in_write_ahead_mode(hub_home: Path) -> None:
    instance = ensure_instance()

    @dg.op
    def nothing() -> None:
        return None

    @dg.job
    def tiny() -> None:
        nothing()

    result = tiny.execute_in_process(instance=instance)
    assert result.success
    shard = dagster_home() / "history" / "runs" / f"{result.run_id}.db"
    assert shard.is_file()
    assert _modes(shard)[0] == "wal"
    # the run reads back from the instance as the UI reads it
    assert instance.get_run_by_id(result.run_id).is_success
    assert instance.all_logs(result.run_id)
