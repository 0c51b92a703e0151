"""The hub's Dagster storage on SQLite: Dagster's own SQLite storages, each file opened once.

`dagster.yaml` (pipelines/lib/instance.py) names `HubSqliteStorage` as the instance's storage. It
is Dagster's default storage (`DagsterSqliteStorage`: the same files, tables and layout under
`$DAGSTER_HOME`, read the same way by the UI and the daemon) with three differences in how the
files are opened, all for the fixed cost of a run:

- **One engine per file, kept.** Dagster's SQLite storages create a new SQLAlchemy engine for every
  read and every event written (an engine, a connection, the dialect's first-connect queries, every
  statement compiled again: nothing is cached across events) and close the file after it, some 150
  to 250 times per landlord's run. Here each storage keeps one engine per file, with one
  connection kept in its pool (more are opened, and closed after use, by concurrent threads, as
  before). Every read and every write is still its own transaction on that connection, so other
  processes (another landlord's run, the UI, the daemon) see the same file, locked by SQLite as
  before; the run-sharded event storage still serialises its own use in the process under
  Dagster's lock.
- **No migration scripts read to open a file.** Dagster checks each file's schema revision
  against the head revision of its migration scripts, which it reads (some 90 Python files) at
  every check: when each storage opens, and at the first use of each file of the event log per
  process (the index and the run's own file), five times per `datafix run`. A file is created
  and stamped only when it has no revision at all (Dagster never migrates on open): here a file
  that carries a revision is used as it is, and one without goes through Dagster's own code.
- **A new run's event file is a copy.** Each run writes its events to a file of its own that
  Dagster creates (some 20 tables and indexes, then the migration scripts read again to stamp
  it). Here a new run's file is a copy of an empty one that Dagster created once per Dagster
  version (`.shard-template-<version>.sqlite` beside the runs' files, made by Dagster's own
  code), put in place with a hard link: the file appears whole or not at all, and a run's file
  that already exists (made by another process) is used as it is.

Every connection commits with `synchronous=NORMAL`: in WAL mode (Dagster makes every one of its
SQLite files WAL) the files stay consistent whatever happens; only the last events before a
power cut, not a crash of a process, may be lost. At SQLite's defaults each commit is an fsync.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from dagster import __version__ as dagster_version
from dagster._core.storage.base_storage import DagsterStorage
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SqliteEventLogStorage,
)
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS, create_db_conn_string
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage
from dagster._serdes import ConfigurableClassData
from dagster._utils import mkdir_p

# pysqlite's default busy timeout, which Dagster's run and schedule storages keep
RUN_STORAGE_TIMEOUT_SECONDS = 5.0
# the run files whose engines a process keeps beside the index (the UI reads many runs' files)
KEPT_SHARDS = 4


def sqlite_engine(conn_string: str, timeout: float, kept: int = 1) -> sa.Engine:
    """An engine on one SQLite file that keeps `kept` connections open, opens more for
    concurrent uses and closes those after use (`max_overflow=-1`: no limit, as with Dagster's
    engine per use); each connection commits with `synchronous=NORMAL`."""
    engine = sa.create_engine(
        conn_string,
        pool_size=kept,
        max_overflow=-1,
        connect_args={"timeout": timeout, "check_same_thread": False},
    )
    sa.event.listen(engine, "connect", _normal_commits)
    _ENGINES.add(engine)
    return engine


# every kept engine of this process: a forked child starts each with a new pool of its own,
# the parent's connections left to the parent (SQLAlchemy's recipe for engines across a fork;
# Dagster and the hub spawn their processes, this is for a fork by anyone else)
_ENGINES: weakref.WeakSet[sa.Engine] = weakref.WeakSet()


def _forget_parents_connections() -> None:
    for engine in list(_ENGINES):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_parents_connections)


def _normal_commits(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")


def stamped(connection: sa.Connection) -> bool:
    """Whether the file carries a schema revision: Dagster's own check when it opens a file
    (which creates and stamps a file only when it carries none, and never migrates one)."""
    return bool(MigrationContext.configure(connection).get_current_revision())


class _KeptEngine:
    """A run or schedule storage's `connect`: every use a transaction of its own, as Dagster's,
    on one engine kept for the storage's life."""

    _conn_string: str

    def __init__(self, conn_string: str, inst_data: ConfigurableClassData | None = None):
        super().__init__(conn_string, inst_data)  # type: ignore[call-arg]
        self._kept_engine: sa.Engine | None = None
        self._kept_engine_lock = threading.Lock()

    @contextmanager
    def connect(self) -> Iterator[sa.Connection]:
        with self._kept_engine_lock:
            if self._kept_engine is None:
                self._kept_engine = sqlite_engine(self._conn_string, RUN_STORAGE_TIMEOUT_SECONDS)
            engine = self._kept_engine
        with engine.connect() as conn, conn.begin():
            yield conn

    def _ready(self, *tables: str) -> bool:
        """Whether the file is stamped and holds `tables`: nothing for Dagster to create."""
        with self.connect() as conn:
            return stamped(conn) and all(sa.inspect(conn).has_table(t) for t in tables)

    def dispose(self) -> None:
        with self._kept_engine_lock:
            if self._kept_engine is not None:
                self._kept_engine.dispose()
                self._kept_engine = None
        super().dispose()  # type: ignore[misc]


class HubSqliteRunStorage(_KeptEngine, SqliteRunStorage):
    """Dagster's SQLite run storage (`history/runs.db`) on one kept engine."""

    @classmethod
    def from_local(cls, base_dir: str, inst_data: ConfigurableClassData | None = None) -> Any:
        mkdir_p(base_dir)
        storage = cls(create_db_conn_string(base_dir, "runs"), inst_data)
        if storage._ready("instance_info"):
            return storage
        storage.dispose()
        return super().from_local(base_dir, inst_data)  # created (or completed) by Dagster


class HubSqliteScheduleStorage(_KeptEngine, SqliteScheduleStorage):
    """Dagster's SQLite schedule storage (`schedules/schedules.db`) on one kept engine."""

    @classmethod
    def from_local(cls, base_dir: str, inst_data: ConfigurableClassData | None = None) -> Any:
        mkdir_p(base_dir)
        storage = cls(create_db_conn_string(base_dir, "schedules"), inst_data)
        if storage._ready():
            return storage
        storage.dispose()
        return super().from_local(base_dir, inst_data)


class HubSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's run-sharded SQLite event log (`history/runs/`: `index.db` and one file per run)
    on one kept engine per file (the index and the last `KEPT_SHARDS` runs' files), a new run's
    file copied from an empty one."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self._engines: OrderedDict[str, sa.Engine] = OrderedDict()
        self._index_engine: sa.Engine | None = None
        self._index_engine_lock = threading.Lock()
        super().__init__(base_dir, inst_data)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[sa.Connection]:
        # as Dagster's own `_connect`, its lock held while the connection is in use
        with self._db_lock:
            if shard not in self._initialized_dbs:
                if shard != INDEX_SHARD_NAME:
                    self._place_new_shard(shard)
                engine = self._engine_for(shard)
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            else:
                engine = self._engine_for(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def _initdb(self, engine: sa.Engine, for_index_shard: bool = False) -> None:
        """Dagster's own initialisation, for a file that carries no schema revision only."""
        with engine.connect() as connection:
            if stamped(connection):
                return
        super()._initdb(engine, for_index_shard=for_index_shard)

    def has_table(self, table_name: str) -> bool:
        """Dagster's own check, on the index's kept engine (Dagster makes an engine for each, some
        ten per run). Called while the storage's lock is held (in the middle of a write), as
        Dagster's is: the engine's pool hands it a connection of its own."""
        engine = self._index_kept()
        with engine.connect() as conn:
            return bool(engine.dialect.has_table(conn, table_name))

    def _index_kept(self) -> sa.Engine:
        with self._index_engine_lock:
            if self._index_engine is None:
                # two kept: `has_table` asks while a write holds the other
                self._index_engine = sqlite_engine(
                    self.conn_string_for_shard(INDEX_SHARD_NAME), SQLITE_BUSY_TIMEOUT_SECONDS, 2
                )
            return self._index_engine

    def _engine_for(self, shard: str) -> sa.Engine:
        if shard == INDEX_SHARD_NAME:
            return self._index_kept()
        engine = self._engines.get(shard)
        if engine is not None:
            self._engines.move_to_end(shard)
            return engine
        engine = sqlite_engine(self.conn_string_for_shard(shard), SQLITE_BUSY_TIMEOUT_SECONDS)
        self._engines[shard] = engine
        for name in list(self._engines)[:-KEPT_SHARDS]:
            self._engines.pop(name).dispose()
        return engine

    def _place_new_shard(self, shard: str) -> None:
        """A new run's file, as a copy of the empty template, put in place whole (a hard link
        that fails if the file appeared meanwhile); an existing file is left as it is."""
        path = self.path_for_shard(shard)
        if os.path.exists(path):
            return
        template = self._template()
        if template is None:
            return  # Dagster creates the file itself
        temporary = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            shutil.copyfile(template, temporary)
            with suppress(FileExistsError):
                os.link(temporary, path)
        except OSError:
            return  # Dagster creates (or finds) the file itself
        finally:
            with suppress(OSError):
                os.unlink(temporary)

    def _template(self) -> str | None:
        """The empty run file of this Dagster version, created once by Dagster's own code
        (tables, indexes, WAL mode, revision stamped) and never opened again but to be
        copied."""
        path = os.path.join(self._base_dir, f".shard-template-{dagster_version}.sqlite")
        if os.path.isfile(path):
            return path
        temporary = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        engine = sa.create_engine(
            f"sqlite:///{temporary}",
            poolclass=sa.pool.NullPool,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
        )
        try:
            SqliteEventLogStorage._initdb(self, engine)
            with engine.connect() as connection:
                if not stamped(connection):
                    return None
            engine.dispose()  # its last connection closed: the file whole, no WAL beside it
            if os.path.exists(f"{temporary}-wal"):
                return None
            with suppress(FileExistsError):
                os.link(temporary, path)
        except (OSError, sa.exc.SQLAlchemyError):
            return None
        finally:
            engine.dispose()
            for suffix in ("", "-wal", "-shm"):
                with suppress(OSError):
                    os.unlink(temporary + suffix)
        return path

    def wipe(self) -> None:
        with self._db_lock:
            self._dispose_engines()
        super().wipe()

    def dispose(self) -> None:
        with self._db_lock:
            self._dispose_engines()
        super().dispose()

    def _dispose_engines(self) -> None:
        while self._engines:
            self._engines.popitem()[1].dispose()
        with self._index_engine_lock:
            if self._index_engine is not None:
                self._index_engine.dispose()
                self._index_engine = None


class HubSqliteStorage(DagsterSqliteStorage):
    """Dagster's default SQLite storage under `base_dir` (the same files), through the hub's
    storages above. In `dagster.yaml`:

        storage:
          custom:
            module: pipelines.lib.instance_storage
            class: HubSqliteStorage
            config:
              base_dir: "/path/to/the/instance"
    """

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self.base_dir = base_dir
        self._run_storage = HubSqliteRunStorage.from_local(os.path.join(base_dir, "history", ""))
        self._event_log_storage = HubSqliteEventLogStorage(
            os.path.join(base_dir, "history", "runs", "")
        )
        self._schedule_storage = HubSqliteScheduleStorage.from_local(
            os.path.join(base_dir, "schedules")
        )
        self._inst_data = inst_data
        DagsterStorage.__init__(self)

    @classmethod
    def from_config_value(  # ty: ignore[invalid-method-override]
        cls, inst_data: ConfigurableClassData | None, config_value: Any
    ) -> HubSqliteStorage:
        return cls.from_local(inst_data=inst_data, **config_value)
