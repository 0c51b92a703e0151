"""The hub's Dagster instance (`$DATAFIX_HOME/dagster`): created safely, and kept free of dead runs.

- **Creation** happens under a file lock in `$DATAFIX_HOME`: `dagster.yaml` is written whole (a
  temporary file renamed over it) and Dagster's own SQLite storages are created and migrated by
  one process at a time, so two first runs on a fresh home no longer run two schema migrations
  at once.
- **Dead runs**: every run records the process running it (`datafix/pid`, its start time and
  host, in the run's tags). At every start (`ensure_instance`, and the `run_lock` resource at
  the start of every run, the daemon's included) a STARTING or STARTED run whose process is gone
  is reported failed, with the reason. Dagster cannot see a run worker die under the default
  run launcher; run monitoring is turned on for the rest (start and cancel timeouts).
- **Cheap commits**: Dagster's SQLite storages (WAL) write every event in a transaction of its
  own, on a new connection closed right after (some 40 to 250 per landlord's run). At SQLite's
  defaults each commit is an fsync, and closing the file's last connection checkpoints the WAL
  (two more). The hub's process opens them with `synchronous=NORMAL`, as it opens its warehouse
  (in WAL mode the files stay consistent whatever happens; only the last events before a power
  cut, not a crash of the process, may be lost), and keeps one idle connection to each file it
  wrote (the current run's shard only), so Dagster's closes are not the last and checkpoints
  come as SQLite schedules them (every 1000 pages). Measured on an unchanged rerun of the bench
  landlord: commits 2.4 s -> 0.6 s, fsyncs ~1,000 -> 77 (strace). A new file (each run's own
  event file) is put in WAL mode as it is opened, before Dagster creates its tables there:
  Dagster makes every one of its SQLite files WAL, but only after creating some 20 tables and
  indexes, each committed (two fsyncs) in the rollback journal's mode: 0.2-0.3 s of every run.
- **No intermediate data in the instance**: outputs stay in the run's memory (the `io_manager`
  resource) and step stdout/stderr are not captured: nothing lands under `storage/`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from connectors.processes import process_running, process_started
from pipelines.lib.environment import dagster_home, datafix_home

INSTANCE_CONFIG = """\
# written by the hub: the Dagster instance used by `datafix run` and `make ui`
telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 2
    tag_concurrency_limits:
      # one run at a time per landlord: the schedule and the inbox sensor may overlap
      - key: dagster/partition
        value:
          applyLimitPerUniqueValue: true
        limit: 1
# the daemon fails runs stuck starting or cancelling; a run whose process died is failed by the
# next start (pipelines/lib/instance.py): the default run launcher cannot see its worker die
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
  poll_interval_seconds: 60
# step output is not kept: it may carry source values (personal data) the hub keeps out of files
compute_logs:
  module: dagster._core.storage.noop_compute_log_manager
  class: NoOpComputeLogManager
"""
HUB_MARK = INSTANCE_CONFIG.splitlines()[0]

TAG_PID = "datafix/pid"
TAG_PROCESS_STARTED = "datafix/process_started"
TAG_HOST = "datafix/host"
LIVE_STATUSES = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def ensure_instance() -> dg.DagsterInstance:
    """The hub's Dagster instance, created under `$DATAFIX_HOME/dagster` on first use (one
    process at a time), with the runs of dead processes marked failed."""
    home = dagster_home()
    os.environ["DAGSTER_HOME"] = str(home)
    _commit_without_fsync(home)
    with _home_lock():
        _write_config(home / "dagster.yaml")
        instance = dg.DagsterInstance.get()
        # open (create, migrate) every storage while holding the lock
        _ = (instance.run_storage, instance.event_log_storage, instance.schedule_storage)
        instance.get_runs(limit=1)
    reap_dead_runs(instance)
    return instance


_FAST_COMMIT_HOMES: set[str] = set()
_ANCHORS: dict[str, sqlite3.Connection] = {}  # file → an idle connection kept open
_ANCHORS_LOCK = threading.Lock()


def _commit_without_fsync(home: Path) -> None:
    """Open every SQLite file of the instance under `home` with `synchronous=NORMAL`, and keep
    an idle connection to each (Dagster opens a new engine per event: the pragma is set on
    each of its connections)."""
    if not _FAST_COMMIT_HOMES:
        sa.event.listen(sa.engine.Engine, "connect", _dagster_sqlite_pragmas)
    _FAST_COMMIT_HOMES.add(str(home) + os.sep)


def _dagster_sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    path = next((row[2] for row in dbapi_connection.execute("PRAGMA database_list")), "")
    if not path or not any(path.startswith(home) for home in _FAST_COMMIT_HOMES):
        return
    if path not in _ANCHORS:  # a file met once is in WAL mode already (the file keeps it)
        _write_ahead(dbapi_connection)
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")
    with _ANCHORS_LOCK:
        if path not in _ANCHORS:
            shard = Path(path).parent.name == "runs" and Path(path).name != "index.db"
            if shard:  # one run's own event file: only the current run's is kept open
                for other in [p for p in _ANCHORS if Path(p).parent == Path(path).parent]:
                    if Path(other).name != "index.db":
                        _ANCHORS.pop(other).close()
            _ANCHORS[path] = sqlite3.connect(path, check_same_thread=False)
        # an idle connection counts only once it has read the file in WAL mode: read again
        # each time, microseconds
        _ANCHORS[path].execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()


def _write_ahead(dbapi_connection: sqlite3.Connection) -> None:
    """Put the file in WAL mode, as Dagster leaves every one of its SQLite files, before Dagster
    creates its tables there (a new run's event file): in the rollback journal's mode each of
    its ~20 statements commits with two fsyncs. A file another connection holds in the other
    mode (locked) is left as it is: Dagster sets the mode itself after its tables."""
    (mode,) = dbapi_connection.execute("PRAGMA journal_mode").fetchone()
    if str(mode).lower() != "wal":
        with contextlib.suppress(sqlite3.OperationalError):
            dbapi_connection.execute("PRAGMA journal_mode=WAL")


def process_tags() -> dict[str, str]:
    """The tags naming the process that runs a run (how a dead run is recognised)."""
    pid = os.getpid()
    return {
        TAG_PID: str(pid),
        TAG_PROCESS_STARTED: repr(process_started(pid) or 0.0),
        TAG_HOST: socket.gethostname(),
    }


def reap_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Report failed every STARTING/STARTED run whose process (named by its tags) is gone from
    this host; returns their run ids. Runs without the tags, or of another host, are left to run
    monitoring."""
    host = socket.gethostname()
    reaped = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=LIVE_STATUSES)):
        tags = run.tags
        if tags.get(TAG_HOST) != host or not tags.get(TAG_PID, "").isdigit():
            continue
        pid = int(tags[TAG_PID])
        try:
            started = float(tags.get(TAG_PROCESS_STARTED, "0")) or None
        except ValueError:
            started = None
        if process_running(pid, started):
            continue
        instance.report_run_failed(
            run,
            f"the process running this run (pid {pid} on {host}) is gone: it was killed or"
            f" crashed before the run ended; marked failed by the next start (pid {os.getpid()})."
            " Its landlord's lock is released; run it again.",
        )
        reaped.append(run.run_id)
    return reaped


@contextmanager
def _home_lock() -> Iterator[None]:
    """An exclusive lock on `$DATAFIX_HOME/.instance.lock` for the block (released by the
    system if the process dies)."""
    path = datafix_home() / ".instance.lock"
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_config(config: Path) -> None:
    """Write the hub's `dagster.yaml` whole: when missing, or when an older hub wrote it (an
    operator's own file, without the hub's first line, is left alone)."""
    if config.exists():
        current = config.read_text(encoding="utf-8")
        if current == INSTANCE_CONFIG or not current.startswith(HUB_MARK):
            return
    temporary = config.with_name(f".{config.name}.{os.getpid()}.tmp")
    temporary.write_text(INSTANCE_CONFIG, encoding="utf-8")
    os.replace(temporary, config)
