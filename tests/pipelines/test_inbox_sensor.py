"""Issue 14: the inbox sensor starts one run per landlord per new drop, never for files the
warehouse already loaded, and never for a file still being written.

The demo landlords' files are written into the hub's home and loaded into a real SQLite
warehouse by the hub's own `pull` job; the sensor is then evaluated with Dagster's testing API
(`dg.build_sensor_context`) on fresh instances, its cursor carried from tick to tick as the
daemon carries it.
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import dagster as dg
import pytest

from connectors.sandbox.demo_files import write_demo_sources
from pipelines.definitions import defs
from pipelines.defs.pull.sensors import TAG_TRIGGER_FILES, inbox_sensor
from pipelines.defs.resources import WarehouseResource

# the loaded warehouse is built once for the module: keep its tests on one xdist worker
pytestmark = pytest.mark.xdist_group("inbox_sensor")
DEFINITIONS = defs()
AN_HOUR_AGO = time.time() - 3600
SETTLE = 1.0  # seconds a file must stay unchanged (DATAFIX_FILE_SETTLE_SECONDS)


def _age(path: Path) -> None:
    os.utime(path, (AN_HOUR_AGO, AN_HOUR_AGO))


class Ticks:
    """The sensor evaluated tick after tick on one instance, its cursor carried over."""

    def __init__(self, instance: dg.DagsterInstance, url: str, cursor: str | None = None) -> None:
        self.instance, self.url, self.cursor = instance, url, cursor

    def tick(self) -> list[dg.RunRequest]:
        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            resources={"warehouse": WarehouseResource(url=self.url)},
        )
        result = inbox_sensor(context)
        self.cursor = result.cursor
        return list(result.run_requests or [])


def _write_drop(home: Path) -> dict[str, list[Path]]:
    """The demo landlords' file exports (csv, xlsx) in `home`'s inboxes, dropped an hour ago
    (the generator is deterministic: the same bytes in every home)."""
    files = {
        landlord: [p for p in paths if p.suffix in (".csv", ".xlsx")]
        for landlord, paths in write_demo_sources(home).items()
    }
    files = {landlord: paths for landlord, paths in files.items() if paths}
    for paths in files.values():
        for path in paths:
            _age(path)
    return files


@pytest.fixture(scope="module")
def loaded_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite warehouse in which the hub's `pull` job loaded every file landlord's drop
    (once for the module: each test works on a copy)."""
    root = tmp_path_factory.mktemp("loaded")
    home = root / "home"
    home.mkdir()
    database = root / "warehouse.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DATAFIX_HOME", str(home))
        patch.setenv("DATAFIX_INBOX_ROOTS", str(root))
        patch.setenv("DATAFIX_WAREHOUSE_URL", f"sqlite:///{database}")
        patch.delenv("DAGSTER_HOME", raising=False)
        job = DEFINITIONS.resolve_job_def("pull")
        with dg.instance_for_test() as instance:
            for landlord in _write_drop(home):
                job.execute_in_process(
                    partition_key=landlord, instance=instance, raise_on_error=False
                )
    return database


@pytest.fixture
def drop(hub_home: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Path]]:
    """This test's copy of the drop, in its own hub home."""
    monkeypatch.setenv("DATAFIX_FILE_SETTLE_SECONDS", str(SETTLE))
    return _write_drop(hub_home)


@pytest.fixture
def loaded_url(
    drop: dict[str, list[Path]],
    loaded_warehouse: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    """A copy of the loaded warehouse, the hub pointed at it."""
    database = tmp_path / "warehouse.db"
    # SQLite's backup, not a file copy: the loads may still sit in the write-ahead log
    with (
        closing(sqlite3.connect(loaded_warehouse)) as source,
        closing(sqlite3.connect(database)) as copy,
    ):
        source.backup(copy)
    url = f"sqlite:///{database}"
    monkeypatch.setenv("DATAFIX_WAREHOUSE_URL", url)
    return url


def test_a_fresh_instance_over_an_empty_warehouse_requests_one_run_per_landlord(
    drop: dict[str, list[Path]], tmp_path: Path
) -> None:
    """The counter-proof of the next test: the same files, nothing loaded yet."""
    with dg.instance_for_test() as instance:
        requests = Ticks(instance, f"sqlite:///{tmp_path}/empty.db").tick()
    assert sorted(r.partition_key for r in requests) == sorted(drop)  # several files, one run
    for request in requests:
        names = request.tags[TAG_TRIGGER_FILES]
        assert {p.name for p in drop[str(request.partition_key)]} <= set(names.split(", "))


def test_a_fresh_instance_over_a_warehouse_that_loaded_the_files_launches_nothing(
    loaded_url: str,
) -> None:
    with dg.instance_for_test() as instance:
        ticks = Ticks(instance, loaded_url)
        assert ticks.tick() == []
        assert ticks.tick() == []


def test_one_new_file_is_one_run_however_many_ticks(
    drop: dict[str, list[Path]], loaded_url: str
) -> None:
    export = next(p for p in drop["loire-habitat"] if p.name.startswith("locataires"))  # tenants
    with dg.instance_for_test() as instance:
        ticks = Ticks(instance, loaded_url)
        assert ticks.tick() == []
        # the night's new export (one line fewer than yesterday's), copied in and closed
        export.write_bytes(b"".join(export.read_bytes().splitlines(keepends=True)[:-1]))
        time.sleep(SETTLE + 0.2)
        first = ticks.tick()
        assert [r.partition_key for r in first] == ["loire-habitat"]
        assert first[0].tags["datafix/trigger_entities"] == "tenants"
        assert first[0].run_key and first[0].run_key.startswith("inbox:loire-habitat:")
        assert ticks.tick() == []  # the second tick over the same drop
        assert ticks.tick() == []
        # a sensor restarted on another instance (no cursor) names the drop by the same key:
        # Dagster's run-key check drops it there
        again = Ticks(instance, loaded_url).tick()
        assert [r.run_key for r in again] == [first[0].run_key]
        # once the hub has loaded it, nothing is new any more, whatever the cursor
        tenants = [dg.AssetKey(f"{stage}_tenants") for stage in ("raw", "canonical", "warehouse")]
        loaded = DEFINITIONS.resolve_job_def("pull").execute_in_process(
            partition_key="loire-habitat", instance=instance, asset_selection=tenants
        )
        assert loaded.success
        assert Ticks(instance, loaded_url).tick() == []


def test_a_file_still_being_written_is_not_picked_until_it_settles(
    drop: dict[str, list[Path]], loaded_url: str
) -> None:
    export = drop["loire-habitat"][0]
    lines = export.read_bytes().splitlines(keepends=True)
    with dg.instance_for_test() as instance:
        ticks = Ticks(instance, loaded_url)
        assert ticks.tick() == []
        # a copy in progress: half the file now, the rest a moment later
        export.write_bytes(b"".join(lines[: len(lines) // 2]))
        assert ticks.tick() == []
        with export.open("ab") as stream:
            stream.write(b"".join(lines[len(lines) // 2 : -1]))
        assert ticks.tick() == []
        time.sleep(SETTLE + 0.2)  # the writer is done: size and mtime stay as they are
        settled = ticks.tick()
        assert [r.partition_key for r in settled] == ["loire-habitat"]
        assert ticks.tick() == []


def test_the_nightly_schedule_says_what_it_does_in_paris_time() -> None:
    from pipelines.defs.automation import nightly_schedule

    assert nightly_schedule.execution_timezone == "Europe/Paris"
    assert "02:00" in (nightly_schedule.description or "")
    assert "Europe/Paris" in (nightly_schedule.description or "")
