"""Issue 12, "a full disk → traceback" and "causes, not wrappers", on the warehouse's side: a
warehouse whose disk fills up in the middle of a load, or whose server cannot be reached, ends
the run with the hub's message naming the warehouse and what to do (no traceback, no SQLAlchemy
dump), and nothing of the load is half-written.

The disk fills up for real: the run's process gets a file size limit (RLIMIT_FSIZE) above every
file it already has but far below what the load needs, so the warehouse's writes are refused by
the kernel part-way, as on a full disk.
"""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.lib.environment import REPO_ROOT
from tests.reliability.gate_kinds import install_gated_landlord

LANDLORD = "aube-habitat"


def run(env: dict[str, str], *, file_size_limit: int | None = None) -> tuple[int, str]:
    """`datafix run aube-habitat` in its own process (bounded); exit code and its output."""

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a refused write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    completed = subprocess.run(
        [sys.executable, "-m", "tests.reliability.gate_kinds", "run", LANDLORD],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        preexec_fn=limit_file_size if file_size_limit else None,
    )
    return completed.returncode, completed.stdout + completed.stderr


def tenant_count(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        return connection.execute("SELECT count(*) FROM tenants").fetchone()[0]


@pytest.mark.slow
def test_a_warehouse_disk_filling_up_mid_load_is_named_and_nothing_is_half_written(
    hub_home: Path, datafixes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATAFIX_WAREHOUSE_URL", raising=False)  # the home's SQLite warehouse
    warehouse = hub_home / "warehouse.db"
    install_gated_landlord(hub_home, datafixes, LANDLORD, rows=50)
    code, output = run({})
    assert code == 0, output
    assert tenant_count(warehouse) == 50

    # the export grows to 30,000 tenants: the load needs megabytes more than the disk has left
    install_gated_landlord(hub_home, datafixes, LANDLORD, rows=30_000)
    biggest = max(path.stat().st_size for path in hub_home.rglob("*") if path.is_file())
    code, output = run({}, file_size_limit=biggest + 256 * 1024)

    assert code == 1, output
    assert "Traceback" not in output, output
    assert "OperationalError" not in output and "sqlalche.me" not in output, output
    assert f"the warehouse sqlite:///{warehouse} could not write" in output, output
    assert f"free space there (on the disk of {hub_home})" in output, output
    assert "nothing of it was written" in output, output
    assert tenant_count(warehouse) == 50  # the load's transaction was rolled back whole

    # space is back: the next run loads the whole export
    code, output = run({})
    assert code == 0, output
    assert tenant_count(warehouse) == 30_000


@pytest.mark.slow
def test_a_warehouse_server_that_cannot_be_reached_is_named_with_its_password_masked(
    hub_home: Path, datafixes: Path
) -> None:
    install_gated_landlord(hub_home, datafixes, LANDLORD, rows=5)
    password = "p@ss:w/rd?%"  # URL-encoded below, as a user writes it in the variable
    url = "postgresql+psycopg://hub:p%40ss%3Aw%2Frd%3F%25@127.0.0.1:1/warehouse"

    code, output = run({"DATAFIX_WAREHOUSE_URL": url})

    assert code == 1, output
    assert "Traceback" not in output, output
    assert "the warehouse postgresql+psycopg://hub:***@127.0.0.1:1/warehouse cannot be reached" in (
        output
    ), output
    assert "check that the database server is up" in output, output
    assert password not in output and "p%40ss" not in output, output
