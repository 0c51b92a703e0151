"""Resources: thin wrappers that hand the assets their clients."""

import os
from functools import cache

import dagster as dg

from pipelines.lib.datafixes import LoadedDatafix, load_landlord
from pipelines.lib.environment import warehouse_url
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


@dg.definitions
def resources() -> dg.Definitions:
    """The hub's resources; the warehouse URL may hold a password, so it stays an EnvVar."""
    url = dg.EnvVar("DATAFIX_WAREHOUSE_URL") if "DATAFIX_WAREHOUSE_URL" in os.environ else None
    return dg.Definitions(
        resources={"warehouse": WarehouseResource(url=url), "datafixes": DatafixesResource()}
    )
