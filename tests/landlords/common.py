"""Run a foreign test landlord as a user would, and read back what the warehouse holds.

Each landlord under `tests/landlords/<landlord-id>/` was written from a description of a real
landlord's exports, not by the demo generator: its datafix is `<landlord-id>.yaml`, the files the
landlord drops are under `inbox/`, and `build.py` (when there is one) regenerates them. The tests
compute what the warehouse must hold in plain Python over the fixture files, never with the
hub's own code, and compare with what these helpers read back over SQL.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from pipelines.lib.environment import REPO_ROOT, datafix_home

LANDLORDS = Path(__file__).resolve().parent
DATAFIX = str(Path(sys.executable).parent / "datafix")


def install_landlord(landlord_id: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put landlord `landlord_id`'s datafix where the hub reads datafixes and its files in its
    inbox (`$DATAFIX_HOME/inbox/<id>`), as landlord IT and the nightly drop would; returns the
    inbox. The hub's home is the test's own (`hub_home` in conftest)."""
    folder = LANDLORDS / landlord_id
    datafixes = datafix_home() / "datafixes"
    datafixes.mkdir(exist_ok=True)
    shutil.copy(folder / f"{landlord_id}.yaml", datafixes / f"{landlord_id}.yaml")
    monkeypatch.setenv("DATAFIX_DATAFIXES_DIR", str(datafixes))
    inbox = datafix_home() / "inbox" / landlord_id
    inbox.mkdir(parents=True, exist_ok=True)
    files = folder / "inbox"
    if files.is_dir():
        for path in files.iterdir():
            shutil.copy(path, inbox / path.name)
    return inbox


def datafix(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    command: Sequence[str] = (DATAFIX,),
) -> subprocess.CompletedProcess[str]:
    """The `datafix` command in a subprocess, as a user runs it (`datafix run LANDLORD`), with
    the test's environment (its own home, warehouse and datafixes folder) and `env` on top of
    it. Never raises on a failing command: the caller asserts on `returncode` and the output.

    `command` is what runs: `datafix` itself, or a module that registers a test's own kinds
    before it runs the command (`python -m tests.toy_kinds`). `timeout` (seconds) bounds a call
    a test expects could hang: `TimeoutExpired` then fails the test."""
    return subprocess.run(
        [*command, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def datafix_ok(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`datafix(*args)` that must succeed: a failure shows the command's output."""
    completed = datafix(*args, env=env)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed


def python(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """This virtualenv's Python in a subprocess (`python("-c", script)`), run as `datafix` is:
    from the repository's root, in the test's environment, never raising on a failure."""
    return datafix(*args, timeout=timeout, command=(sys.executable,))


def balances(url: str, landlord_id: str) -> dict[str, int]:
    """Live ledger balance per tenant, in cents (soft-deleted entries left out)."""
    query = sa.text(
        "SELECT tenant_ref, SUM(amount_cents) FROM ledger_entries"
        " WHERE landlord_id = :landlord AND deleted_at IS NULL GROUP BY tenant_ref"
    )
    with connected(url) as conn:
        return {ref: int(total) for ref, total in conn.execute(query, {"landlord": landlord_id})}


def live_rows(url: str, landlord_id: str, entity: str, columns: str) -> list[tuple]:
    """`columns` (SQL list) of the live rows of `entity`, sorted."""
    query = sa.text(
        f"SELECT {columns} FROM {entity} WHERE landlord_id = :landlord AND deleted_at IS NULL"
    )
    with connected(url) as conn:
        return sorted(tuple(row) for row in conn.execute(query, {"landlord": landlord_id}))


def open_quarantine(url: str, landlord_id: str, entity: str) -> dict[str, str]:
    """Open quarantine rows of `entity`: source row (lineage) → reason."""
    query = sa.text(
        "SELECT source_row, reason FROM quarantine WHERE landlord_id = :landlord"
        " AND entity = :entity AND resolved_at IS NULL"
    )
    with connected(url) as conn:
        rows = conn.execute(query, {"landlord": landlord_id, "entity": entity})
        return {source_row: reason for source_row, reason in rows}


def last_load_run(url: str, landlord_id: str, entity: str) -> dict[str, object]:
    """The latest `load_runs` row of `entity` (status, reason and counts)."""
    query = sa.text(
        "SELECT * FROM load_runs WHERE landlord_id = :landlord AND entity = :entity"
        " ORDER BY finished_at DESC"
    )
    with connected(url) as conn:
        row = conn.execute(query, {"landlord": landlord_id, "entity": entity}).mappings().first()
    assert row is not None, f"no load run recorded for {landlord_id}/{entity}"
    return dict(row)


def assert_load(
    url: str,
    landlord_id: str,
    entity: str,
    *,
    quarantine: dict[str, str],
    counts: tuple[int, int, int, int],
    status: str = "loaded",
) -> dict[str, object]:
    """Check what the last `datafix run` did with `entity`, and return its `load_runs` row.

    - the open quarantine of `entity` is exactly `quarantine` (source row → reason);
    - the last load run ended with `status`;
    - its counts `(read, loaded, quarantined, skipped)` are `counts`;
    - its counts add up as the hub promises (datafixes/README.md, quarantine): skipped rows are
      counted apart from the rows read, so read == loaded + quarantined, and the source's rows
      == loaded + quarantined + skipped.

    `quarantine` and `counts` are the test's own, computed from the fixture without the hub's
    code. A failed check prints the whole run row (its reason included). The caller checks any
    other column (`inserted`, `rows_in_source`, ...) on the row returned.
    """
    assert open_quarantine(url, landlord_id, entity) == quarantine
    run = last_load_run(url, landlord_id, entity)
    assert run["status"] == status, run
    assert (run["read"], run["loaded"], run["quarantined"], run["skipped"]) == counts, run
    assert run["read"] == run["loaded"] + run["quarantined"], run
    assert run["rows_in_source"] == run["loaded"] + run["quarantined"] + run["skipped"], run
    return run


@contextmanager
def connected(url: str) -> Iterator[sa.Connection]:
    """A connection to the database at `url`, its engine disposed of afterwards."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()
