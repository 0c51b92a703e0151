"""pipelines/lib/instance.py and instance_storage.py: the hub's Dagster instance on SQLite.

The instance stores through the hub's subclasses of Dagster's SQLite storages: the same files,
which Dagster's own storage (as the UI would read them with Dagster's defaults) reads back; a
new run's event file is a whole copy of an empty one made by Dagster, in WAL mode from its first
byte; connections commit with synchronous=NORMAL; opening the instance and running a job read
none of Dagster's migration scripts once the files exist; a file without a schema revision goes
through Dagster's own creation; a SQLite file elsewhere is left as SQLite opens it.
"""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage import sql as dagster_sql
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

from pipelines.lib.environment import dagster_home
from pipelines.lib.instance import ensure_instance, instance_config
from pipelines.lib.instance_storage import (
    HubSqliteEventLogStorage,
    HubSqliteRunStorage,
    HubSqliteScheduleStorage,
)


@dg.op
def nothing() -> None:
    return None


@dg.job
def tiny() -> None:
    nothing()


@dg.asset
def counted() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"rows": 3})


@dg.asset_check(asset=counted)
def counted_is_positive() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


def _modes(path: Path) -> tuple[str, int]:
    engine = sa.create_engine(f"sqlite:///{path}", poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar_one()
            synchronous = connection.exec_driver_sql("PRAGMA synchronous").scalar_one()
    finally:
        engine.dispose()
    return str(mode).lower(), int(synchronous)


def _runs_folder() -> Path:
    return dagster_home() / "history" / "runs"


@pytest.fixture
def migration_script_readings(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Each reading of Dagster's migration scripts (alembic's ScriptDirectory), recorded."""
    readings: list[str] = []
    original = dagster_sql.ScriptDirectory.from_config.__func__  # type: ignore[attr-defined]

    def counting(cls: type, config: object) -> object:
        readings.append(str(config))
        return original(cls, config)

    monkeypatch.setattr(dagster_sql.ScriptDirectory, "from_config", classmethod(counting))
    yield readings


def test_the_instance_stores_through_the_hubs_storages() -> None:
    instance = ensure_instance()
    assert isinstance(instance.run_storage, HubSqliteRunStorage)
    assert isinstance(instance.event_log_storage, HubSqliteEventLogStorage)
    assert isinstance(instance.schedule_storage, HubSqliteScheduleStorage)
    assert (dagster_home() / "history" / "runs.db").is_file()
    assert (_runs_folder() / "index.db").is_file()
    assert (dagster_home() / "schedules" / "schedules.db").is_file()


def test_a_runs_event_file_is_a_write_ahead_copy_that_dagsters_own_storage_reads(
    tmp_path: Path,
) -> None:
    instance = ensure_instance()
    result = dg.materialize([counted, counted_is_positive], instance=instance)
    assert result.success
    shard = _runs_folder() / f"{result.run_id}.db"
    assert shard.is_file()
    assert _modes(shard) == ("wal", 2)  # WAL from the template; a new connection: FULL
    templates = list(_runs_folder().glob(".shard-template-*.sqlite"))
    assert [t.name for t in templates] == [f".shard-template-{dg.__version__}.sqlite"]
    # the hub's own connections commit with synchronous=NORMAL
    with instance.event_log_storage.run_connection(result.run_id) as connection:
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar_one() == 1
    # the run, its events, its materialisation and its check as Dagster's default storage
    # (the UI's, had the hub not configured its own) reads them from the same files
    plain = _dagster_default_instance(tmp_path)
    try:
        assert type(plain.event_log_storage) is SqliteEventLogStorage
        run = plain.get_run_by_id(result.run_id)
        assert run is not None and run.is_success
        events = plain.all_logs(result.run_id)
        kinds = {event.dagster_event_type for event in events if event.is_dagster_event}
        assert dg.DagsterEventType.ASSET_MATERIALIZATION in kinds
        assert dg.DagsterEventType.ASSET_CHECK_EVALUATION in kinds
        assert dg.DagsterEventType.RUN_SUCCESS in kinds
        latest = plain.get_latest_materialization_event(counted.key)
        assert latest is not None and latest.run_id == result.run_id
        assert latest.asset_materialization.metadata["rows"].value == 3
        # the template is no run of the instance
        assert plain.event_log_storage.get_all_run_ids() == [result.run_id]
    finally:
        plain.dispose()


def _dagster_default_instance(config_dir: Path) -> dg.DagsterInstance:
    """An instance on the hub's files with Dagster's default storage (a `dagster.yaml` of
    its own, naming no storage)."""
    (config_dir / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    ref = InstanceRef.from_dir(str(dagster_home()), config_dir=str(config_dir))
    return dg.DagsterInstance.from_ref(ref)


def test_a_second_open_and_run_read_no_migration_script(
    migration_script_readings: list[str],
) -> None:
    ensure_instance()
    assert tiny.execute_in_process(instance=ensure_instance()).success  # the template made
    assert migration_script_readings  # Dagster created the files (and the template) with them
    migration_script_readings.clear()
    instance = ensure_instance()  # a new instance on the same files, as the next process's
    result = tiny.execute_in_process(instance=instance)
    assert result.success
    assert instance.get_run_by_id(result.run_id).is_success
    assert instance.all_logs(result.run_id)
    assert migration_script_readings == []


def test_a_file_without_revision_is_created_by_dagster(hub_home: Path) -> None:
    ensure_instance()
    run_id = "0" * 8 + "-0000-0000-0000-" + "0" * 12
    empty = _runs_folder() / f"{run_id}.db"
    sqlite3.connect(empty).close()  # an empty file, as a connection of another process makes
    assert empty.stat().st_size == 0
    instance = ensure_instance()
    with instance.event_log_storage.run_connection(run_id) as connection:
        tables = set(sa.inspect(connection).get_table_names())
    assert {"event_logs", "alembic_version"} <= tables


def test_an_existing_run_file_is_used_as_it_is() -> None:
    instance = ensure_instance()
    result = tiny.execute_in_process(instance=instance)
    shard = _runs_folder() / f"{result.run_id}.db"
    before = len(instance.all_logs(result.run_id))
    storage = ensure_instance().event_log_storage
    assert isinstance(storage, HubSqliteEventLogStorage)
    storage._place_new_shard(result.run_id)  # another process got there first: nothing done
    assert len(ensure_instance().all_logs(result.run_id)) == before
    assert shard.is_file()


def _run_tiny(home: str, queue: multiprocessing.Queue) -> None:
    os.environ["DATAFIX_HOME"] = home
    try:
        instance = ensure_instance()
        ids = [tiny.execute_in_process(instance=instance).run_id for _ in range(3)]
        queue.put(ids)
    except Exception as error:  # reported to the test
        queue.put(repr(error))


def test_runs_of_two_processes_on_one_fresh_home_all_land(hub_home: Path) -> None:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_run_tiny, args=(str(hub_home), queue)) for _ in range(2)]
    for worker in workers:
        worker.start()
    answers = [queue.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert all(isinstance(answer, list) for answer in answers), answers
    run_ids = {run_id for answer in answers for run_id in answer}
    assert len(run_ids) == 6
    instance = ensure_instance()
    for run_id in run_ids:
        assert instance.get_run_by_id(run_id).is_success
        assert any(event.is_dagster_event for event in instance.all_logs(run_id))
    assert len(instance.get_runs()) == 6


def test_a_sqlite_file_elsewhere_is_left_as_sqlite_opens_it(tmp_path: Path) -> None:
    tiny.execute_in_process(instance=ensure_instance())
    assert _modes(tmp_path / "elsewhere.db") == ("delete", 2)  # rollback journal, FULL


def test_a_moved_instance_gets_its_own_folder_in_dagster_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = ensure_instance()
    run_id = tiny.execute_in_process(instance=first).run_id
    moved = tmp_path / "moved-home"
    dagster_home().parent.rename(moved)
    monkeypatch.setenv("DATAFIX_HOME", str(moved))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    instance = ensure_instance()
    config = (moved / "dagster" / "dagster.yaml").read_text(encoding="utf-8")
    assert instance_config(moved / "dagster") == config
    assert str(moved / "dagster") in config
    assert instance.get_run_by_id(run_id).is_success  # the runs moved with it
    # opened from its folder alone, as a test or a script opens it
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with dg.DagsterInstance.from_config(str(moved / "dagster")) as opened:
        assert opened.get_run_by_id(run_id).is_success


def test_a_forked_child_opens_connections_of_its_own() -> None:
    instance = ensure_instance()
    assert tiny.execute_in_process(instance=instance).success
    kept = [
        instance.run_storage._kept_engine,  # type: ignore[attr-defined]
        instance.event_log_storage._index_engine,  # type: ignore[attr-defined]
        *instance.event_log_storage._engines.values(),  # type: ignore[attr-defined]
    ]
    assert all(engine is not None and engine.pool.checkedin() >= 1 for engine in kept)
    pid = os.fork()
    if pid == 0:  # the child: none of the parent's connections in its pools, and it runs
        code = 1
        try:
            fresh = all(engine.pool.checkedin() == 0 for engine in kept)
            code = 0 if fresh and tiny.execute_in_process(instance=instance).success else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert tiny.execute_in_process(instance=instance).success  # the parent's still work
    assert len(instance.get_runs()) == 3
    assert all(run.is_success for run in instance.get_runs())
