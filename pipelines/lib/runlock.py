"""One run per landlord at a time, held in the warehouse the runs write to.

Two runs of one landlord at once would load the same keys twice over (a UNIQUE error, or one
run's rows on top of the other's refused ones); runs of different landlords share nothing and go
on together. The lock lives where the data does, so it holds across the command line, the
schedule, the inbox sensor and the UI, whatever process runs them:

- PostgreSQL: a session advisory lock (`pg_try_advisory_lock`) on a connection held for the whole
  run; the server releases it when the process dies (kill -9 included). A `run_locks` row names
  the holder, for the message a waiting run gives.
- SQLite: the `run_locks` row *is* the lock, taken in a write transaction (`BEGIN IMMEDIATE`, see
  `warehouse._sqlite_begin_immediate`). It names the holder's pid and process start time: a row
  whose process is gone (same host) is taken over.

A run that finds its landlord busy waits up to `DATAFIX_LOCK_WAIT` seconds (default 600), then
gives up with `LandlordBusyError` naming the other run (run id, pid, host, since). Within one
process the lock is re-entrant for the same run: the command line takes it before it starts the
Dagster run, and the run's own `run_lock` resource then finds it already held.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import sqlalchemy as sa

from connectors.environment import seconds_variable
from connectors.processes import process_running, process_started
from schemas.tables import run_locks

__all__ = [
    "LOCK_WAIT_VARIABLE",
    "LandlordBusyError",
    "LockHolder",
    "advisory_key",
    "landlord_locks",
    "lock_wait_seconds",
]

LOCK_WAIT_VARIABLE = "DATAFIX_LOCK_WAIT"
DEFAULT_LOCK_WAIT_SECONDS = 600.0
POLL_SECONDS = 0.5

Notice = Callable[[str], None]


class Warehouse(Protocol):
    """What the lock needs of `pipelines.lib.warehouse.Warehouse` (which imports this module)."""

    url: str
    engine: sa.Engine

    @property
    def dialect(self) -> str: ...


class LandlordBusyError(Exception):
    """Another run of the landlord held it for longer than this run would wait."""


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for a PostgreSQL advisory lock named `name`."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def lock_wait_seconds() -> float:
    """How long a run waits for a busy landlord: `DATAFIX_LOCK_WAIT` seconds (default 600)."""
    return seconds_variable(
        LOCK_WAIT_VARIABLE,
        DEFAULT_LOCK_WAIT_SECONDS,
        fix="set it to how long a run waits for another run of the same landlord (e.g. 600;"
        " 0: do not wait)",
    )


@dataclass(frozen=True)
class LockHolder:
    """The run holding a landlord."""

    run_id: str
    pid: int
    process_started: float
    host: str
    since: datetime

    @classmethod
    def this_process(cls, run_id: str) -> LockHolder:
        pid = os.getpid()
        return cls(run_id, pid, process_started(pid) or 0.0, socket.gethostname(), _now())

    def describe(self) -> str:
        since = self.since if self.since.tzinfo else self.since.replace(tzinfo=UTC)
        return (
            f"run {self.run_id} (pid {self.pid} on {self.host},"
            f" since {since.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC)"
        )

    def gone(self) -> bool:
        """True when the holder's process is no longer running (known on its own host only)."""
        if self.host != socket.gethostname():
            return False
        return not process_running(self.pid, self.process_started or None)

    def row(self, landlord_id: str) -> dict[str, object]:
        return {
            "landlord_id": landlord_id,
            "run_id": self.run_id,
            "pid": self.pid,
            "process_started": self.process_started,
            "host": self.host,
            "since": self.since,
        }


# (warehouse url, landlord) → (run id, depth): the locks this process holds
_held: dict[tuple[str, str], tuple[str, int]] = {}
_held_guard = threading.Lock()


@contextmanager
def landlord_locks(
    warehouse: Warehouse,
    landlords: Sequence[str],
    run_id: str,
    *,
    wait: float | None = None,
    notice: Notice | None = None,
) -> Iterator[None]:
    """Hold every landlord of `landlords` for run `run_id` for the block (taken in sorted order,
    so two runs of overlapping landlords never wait on each other crosswise). Waits up to
    `wait` seconds (default `DATAFIX_LOCK_WAIT`) per busy landlord, saying so once through
    `notice`; raises LandlordBusyError if it stays busy."""
    seconds = lock_wait_seconds() if wait is None else wait
    with ExitStack() as stack:
        for landlord in sorted(set(landlords)):
            stack.enter_context(_landlord_lock(warehouse, landlord, run_id, seconds, notice))
        yield


@contextmanager
def _landlord_lock(
    warehouse: Warehouse, landlord: str, run_id: str, wait: float, notice: Notice | None
) -> Iterator[None]:
    slot = (warehouse.url, landlord)
    with _held_guard:
        held = _held.get(slot)
        if held is not None and held[0] == run_id:
            _held[slot] = (run_id, held[1] + 1)
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _held_guard:
                _held[slot] = (run_id, _held[slot][1] - 1)
        return
    holder = LockHolder.this_process(run_id)
    take = _postgres_lock if warehouse.dialect == "postgresql" else _row_lock
    with take(warehouse, landlord, holder, wait, notice):
        with _held_guard:
            _held[slot] = (run_id, 1)
        try:
            yield
        finally:
            with _held_guard:
                _held.pop(slot, None)


def _wait_turn(
    landlord: str, holder: LockHolder | None, started: float, wait: float, notice: Notice | None
) -> None:
    """Give up once the run waited `wait` seconds, else say (through `notice`) that it waits."""
    other = holder.describe() if holder else "another run"
    if time.monotonic() - started >= wait:
        raise LandlordBusyError(
            f"{landlord} is busy: {other} is running it; gave up after {wait:g} s"
            f" ({LOCK_WAIT_VARIABLE}), nothing was run — wait for that run to end, or stop it"
        )
    if notice is not None:
        notice(f"{landlord}: waiting for {other} to end (up to {wait:g} s, {LOCK_WAIT_VARIABLE})")


@contextmanager
def _row_lock(
    warehouse: Warehouse, landlord: str, holder: LockHolder, wait: float, notice: Notice | None
) -> Iterator[None]:
    started, told = time.monotonic(), False
    while True:
        with warehouse.engine.begin() as conn:  # BEGIN IMMEDIATE: one taker at a time
            current = _holder(conn, landlord)
            if current is None or current.run_id == holder.run_id or current.gone():
                conn.execute(run_locks.delete().where(run_locks.c.landlord_id == landlord))
                conn.execute(run_locks.insert().values(**holder.row(landlord)))
                break
        _wait_turn(landlord, current, started, wait, None if told else notice)
        told = True
        time.sleep(POLL_SECONDS)
    try:
        yield
    finally:
        _release_row(warehouse, landlord, holder)


@contextmanager
def _postgres_lock(
    warehouse: Warehouse, landlord: str, holder: LockHolder, wait: float, notice: Notice | None
) -> Iterator[None]:
    key = advisory_key(f"datafix-hub:run:{landlord}")
    session = warehouse.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        started, told = time.monotonic(), False
        while not session.execute(sa.select(sa.func.pg_try_advisory_lock(key))).scalar():
            with warehouse.engine.connect() as conn:
                current = _holder(conn, landlord)
            _wait_turn(landlord, current, started, wait, None if told else notice)
            told = True
            time.sleep(POLL_SECONDS)
        with warehouse.engine.begin() as conn:
            conn.execute(run_locks.delete().where(run_locks.c.landlord_id == landlord))
            conn.execute(run_locks.insert().values(**holder.row(landlord)))
        try:
            yield
        finally:
            try:
                _release_row(warehouse, landlord, holder)
            finally:
                session.execute(sa.select(sa.func.pg_advisory_unlock(key)))
    except BaseException:
        session.invalidate()  # never back to the pool while it might still hold the lock
        raise
    finally:
        session.close()


def _release_row(warehouse: Warehouse, landlord: str, holder: LockHolder) -> None:
    with warehouse.engine.begin() as conn:
        conn.execute(
            run_locks.delete().where(
                run_locks.c.landlord_id == landlord, run_locks.c.run_id == holder.run_id
            )
        )


def _holder(conn: sa.Connection, landlord: str) -> LockHolder | None:
    row = conn.execute(sa.select(run_locks).where(run_locks.c.landlord_id == landlord)).first()
    if row is None:
        return None
    return LockHolder(row.run_id, row.pid, row.process_started, row.host, row.since)


def _now() -> datetime:
    return datetime.now(UTC)
