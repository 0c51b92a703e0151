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
- **Storage**: Dagster's default SQLite storage (the same files and tables under
  `$DAGSTER_HOME`, read by the UI and the daemon as before), through the hub's subclasses
  (`pipelines/lib/instance_storage.py`): each file opened once per process instead of once per
  event, no migration scripts read to open a file, a new run's event file copied from an empty
  one, commits with `synchronous=NORMAL`. Measured on an unchanged rerun (10,000-line ledger
  landlord): some 160 engines and five readings of Dagster's ~90 migration scripts gone per
  `datafix run`; the Dagster run 0.55 -> 0.26 s of CPU, opening the instance 0.34 -> 0.27 s
  (what is left there is importing Dagster's storage modules).
- **No intermediate data in the instance**: outputs stay in the run's memory (the `io_manager`
  resource) and step stdout/stderr are not captured: nothing lands under `storage/`.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

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
# Dagster's SQLite storage in the instance's folder, each file opened once per process
# (pipelines/lib/instance_storage.py); the folder written out, as Dagster's default storage
# takes the folder of its `dagster.yaml` (an instance opened with `DagsterInstance.from_config`)
STORAGE_CONFIG = """\
# Dagster's SQLite storage, each file opened once per process (pipelines/lib/instance_storage.py)
storage:
  custom:
    module: pipelines.lib.instance_storage
    class: HubSqliteStorage
    config:
      base_dir: {base_dir}
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
    with _home_lock():
        _write_config(home / "dagster.yaml")
        instance = dg.DagsterInstance.get()
        # open (create, migrate) every storage while holding the lock
        _ = (instance.run_storage, instance.event_log_storage, instance.schedule_storage)
        instance.get_runs(limit=1)
    reap_dead_runs(instance)
    return instance


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


def instance_config(folder: Path) -> str:
    """The hub's `dagster.yaml` for the instance in `folder`."""
    return INSTANCE_CONFIG + STORAGE_CONFIG.format(base_dir=json.dumps(str(folder.resolve())))


def _write_config(config: Path) -> None:
    """Write the hub's `dagster.yaml` whole: when missing, or when an older hub wrote it or the
    instance's folder moved (an operator's own file, without the hub's first line, is left
    alone)."""
    wanted = instance_config(config.parent)
    if config.exists():
        current = config.read_text(encoding="utf-8")
        if current == wanted or not current.startswith(HUB_MARK):
            return
    temporary = config.with_name(f".{config.name}.{os.getpid()}.tmp")
    temporary.write_text(wanted, encoding="utf-8")
    os.replace(temporary, config)
