"""Normalise: one canonical asset per entity, mapping raw rows through the datafix."""

import dagster as dg

from connectors.errors import ConnectorError
from pipelines.defs.common import landlord_asset, refused
from pipelines.defs.health.tables import skipped_metadata
from pipelines.defs.resources import DatafixesResource, WarehouseResource
from pipelines.lib.metadata import AssetRole, counts, markdown_preview
from pipelines.lib.stages import NormalisedEntity, PulledSource, normalise
from pipelines.lib.staging import helper_wanted
from schemas.canonical import ENTITIES


def build_normalise_asset(entity: str) -> dg.AssetsDefinition:
    """The `canonical_<entity>` asset: canonical rows plus the rows sent to quarantine."""

    role = AssetRole("normalise", entity)

    @landlord_asset(
        role,
        ins={"pulled": dg.AssetIn(key=f"raw_{entity}")},
        description=f"{ENTITIES[entity].description} Canonical rows of one landlord; rows that"
        " cannot be mapped, or that break a row rule of the contract, are set aside for quarantine"
        " with a reason.",
    )
    def canonical_entity(
        context: dg.AssetExecutionContext,
        datafixes: DatafixesResource,
        warehouse: WarehouseResource,
        pulled: PulledSource,
    ) -> dg.Output[NormalisedEntity]:
        try:
            normalised = normalise(
                datafixes.get_client(context.partition_key),
                pulled,
                stage=warehouse.get_client().dialect == "sqlite" and helper_wanted(),
            )
        except ConnectorError as error:
            raise refused(error) from error
        batch = normalised.batch
        metadata = {
            **role.entries(),
            "status": normalised.status,
            "datafix_sha": normalised.datafix_sha,
        }
        if batch is None:  # not read: what the warehouse holds, and since when
            metadata |= skipped_metadata(
                warehouse.get_client(), normalised.landlord_id, entity, normalised.status
            )
        else:
            metadata |= counts(
                rows_read=batch.read,
                rows_accepted=batch.accepted,
                rows_quarantined=batch.quarantined,
                rows_skipped=batch.skipped,
            )
            metadata["dagster/row_count"] = dg.MetadataValue.int(batch.accepted)
            metadata["preview"] = markdown_preview(normalised.head(), entity)
            if batch.quarantined:
                metadata["quarantine_reasons"] = dg.MetadataValue.json(batch.reasons)
            if batch.warnings:  # rows breaking a row rule the datafix sets to `warn`: loaded
                metadata["rule_warnings"] = dg.MetadataValue.json(batch.warnings)
        return dg.Output(normalised, metadata=metadata)

    return canonical_entity


@dg.definitions
def defs() -> dg.Definitions:
    """One normalise asset per canonical entity."""
    return dg.Definitions(assets=[build_normalise_asset(entity) for entity in ENTITIES])
