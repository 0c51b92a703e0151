"""Resources: thin wrappers that hand the assets their clients; the run's IO manager and the
landlord's run lock it holds."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import dagster as dg

from pipelines.defs.partitions import landlord_partitions
from pipelines.lib.datafixes import LoadedDatafix, load_landlord
from pipelines.lib.environment import warehouse_url
from pipelines.lib.instance import TAG_PID, process_tags, reap_dead_runs
from pipelines.lib.runlock import landlord_locks
from pipelines.lib.runmemory import run_memory_io_manager
from pipelines.lib.warehouse import Warehouse


@cache
def _migrated_warehouse(url: str) -> Warehouse:
    warehouse = Warehouse(url)
    warehouse.migrate()
    return warehouse


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse (SQLite by default, PostgreSQL in production), migrated on first use."""

    url: str | None = None

    def get_client(self) -> Warehouse:
        """The warehouse behind `url`, else `DATAFIX_WAREHOUSE_URL`, else SQLite in the home."""
        return _migrated_warehouse(self.url or warehouse_url())


class DatafixesResource(dg.ConfigurableResource):
    """Reads landlords' datafix files (validated on every load)."""

    def get_client(self, landlord_id: str) -> LoadedDatafix:
        """The validated datafix of one landlord; raises DatafixError listing every problem."""
        return load_landlord(landlord_id)


class RunLockResource(dg.ConfigurableResource):
    """Holds the run's landlord(s) for the whole run, whoever launched it (command line,
    schedule, sensor, UI): one run per landlord at a time (`pipelines/lib/runlock.py`). At the
    start it records the run's process in the run's tags and fails the runs of dead processes."""

    warehouse: WarehouseResource

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator["RunLockResource"]:
        run = context.run
        instance = context.instance
        if run is None or instance is None:  # built outside a run: nothing to hold
            yield self
            return
        if TAG_PID not in run.tags:  # the command line recorded it already
            instance.add_run_tags(run.run_id, process_tags())
        reap_dead_runs(instance)
        landlords = _run_landlords(run.tags)
        with landlord_locks(
            self.warehouse.get_client(), landlords, run.run_id, notice=context.log.info
        ):
            yield self


def _run_landlords(tags: dict[str, str]) -> list[str]:
    """The landlords (partitions) a run touches, from its tags."""
    if "dagster/partition" in tags:
        return [tags["dagster/partition"]]
    start = tags.get("dagster/asset_partition_range_start")
    end = tags.get("dagster/asset_partition_range_end")
    if start and end:
        return list(
            landlord_partitions.get_partition_keys_in_range(dg.PartitionKeyRange(start, end))
        )
    return []


@dg.definitions
def resources() -> dg.Definitions:
    """The hub's resources; the warehouse URL may hold a password, so it stays an EnvVar. Every
    run executes in one process (the jobs' executor, and the one for assets materialised from the
    UI): the IO manager keeps outputs in that process's memory."""
    url = dg.EnvVar("DATAFIX_WAREHOUSE_URL") if "DATAFIX_WAREHOUSE_URL" in os.environ else None
    warehouse = WarehouseResource(url=url)
    return dg.Definitions(
        resources={
            "warehouse": warehouse,
            "datafixes": DatafixesResource(),
            "run_lock": RunLockResource(warehouse=warehouse),
            "io_manager": run_memory_io_manager,
        },
        executor=dg.in_process_executor,
    )
