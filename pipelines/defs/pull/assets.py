"""Pull: one raw asset per canonical entity, reading the source the landlord's datafix names."""

import dagster as dg

from connectors.errors import ConnectorError
from pipelines.defs.common import landlord_asset, refused
from pipelines.defs.resources import DatafixesResource, WarehouseResource
from pipelines.lib.metadata import AssetRole, counts, full_refresh
from pipelines.lib.stages import PulledSource, pull
from schemas.canonical import ENTITIES


def build_pull_asset(entity: str) -> dg.AssetsDefinition:
    """The `raw_<entity>` asset: the rows of the source feeding `entity`, as text."""

    role = AssetRole("pull", entity)

    @landlord_asset(
        role,
        description=f"Raw rows of the landlord's source for {entity}, as the source holds"
        " them (skipped when unchanged since the last load).",
    )
    def raw_entity(
        context: dg.AssetExecutionContext,
        datafixes: DatafixesResource,
        warehouse: WarehouseResource,
    ) -> dg.Output[PulledSource]:
        try:
            loaded = datafixes.get_client(context.partition_key)
            pulled = pull(
                loaded,
                entity,
                warehouse=warehouse.get_client(),
                full_refresh=full_refresh(context),
            )
        except ConnectorError as error:
            raise refused(error) from error
        context.log.info("%s/%s: %s, %d rows", loaded.landlord_id, entity, pulled.status,
                         pulled.rows)  # fmt: skip
        return dg.Output(
            pulled,
            metadata={
                **role.entries(),
                "status": pulled.status,
                "source": pulled.source_name or "-",
                "origin": "; ".join(read.raw.origin for read in pulled.reads) or "-",
                "fingerprint": pulled.fingerprint or "-",
                "datafix_sha": loaded.sha,
                **counts(rows_in_source=pulled.rows),
            },
        )

    return raw_entity


@dg.definitions
def defs() -> dg.Definitions:
    """One pull asset per canonical entity."""
    return dg.Definitions(assets=[build_pull_asset(entity) for entity in ENTITIES])
