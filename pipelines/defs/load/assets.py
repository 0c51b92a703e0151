"""Load: one warehouse asset per entity, upserting canonical rows and recording quarantine.

A load that fails (a refused snapshot, a database error) rolls back whole, then leaves its
trace: a `load_runs` row (`failed`, with the error) and its quarantine rows.
"""

import dagster as dg

from pipelines.defs.common import landlord_asset, refused
from pipelines.defs.health.tables import quarantine_metadata, skipped_metadata
from pipelines.defs.resources import DatafixesResource, WarehouseResource
from pipelines.lib.metadata import AssetRole, counts
from pipelines.lib.stages import NormalisedEntity, load, record_refused
from pipelines.lib.warehouse import VanishGuardError
from schemas.canonical import ENTITIES


def build_load_asset(entity: str) -> dg.AssetsDefinition:
    """The `warehouse_<entity>` asset: the landlord's rows in the warehouse table."""

    role = AssetRole("load", entity)

    @landlord_asset(
        role,
        ins={"normalised": dg.AssetIn(key=f"canonical_{entity}")},
        description=f"Warehouse table `{entity}` for one landlord: upserted on the natural key,"
        " soft-deleting rows that vanished from a snapshot; rejects go to `quarantine`.",
    )
    def warehouse_entity(
        context: dg.AssetExecutionContext,
        datafixes: DatafixesResource,
        warehouse: WarehouseResource,
        normalised: NormalisedEntity,
    ) -> dg.MaterializeResult:
        loaded = datafixes.get_client(context.partition_key)
        client = warehouse.get_client()
        run_id = context.run.run_id
        try:
            result = load(client, loaded, normalised, run_id=run_id)
        except Exception as error:
            try:
                record_refused(
                    client, loaded, normalised, run_id=run_id, status="failed", reason=str(error)
                )
            except Exception as trace_error:  # the load's own error is the one to report
                context.log.warning(f"the failed load could not be recorded: {trace_error}")
            if isinstance(error, VanishGuardError):
                raise refused(error) from error
            raise
        if result is None:
            metadata = {
                **role.entries(),
                "status": normalised.status,
                "datafix_sha": normalised.datafix_sha,
                **skipped_metadata(client, loaded.landlord_id, entity, normalised.status),
            }
            if normalised.status != "not_configured":
                with client.engine.connect() as connection:
                    metadata |= quarantine_metadata(connection, loaded.landlord_id, entity)
            return dg.MaterializeResult(metadata=metadata)
        batch = normalised.batch
        assert batch is not None
        with client.engine.connect() as connection:
            open_quarantine = quarantine_metadata(connection, loaded.landlord_id, entity)
        return dg.MaterializeResult(
            metadata={
                **role.entries(),
                "status": "loaded",
                "datafix_sha": normalised.datafix_sha,
                **counts(
                    rows_read=batch.read,
                    rows_loaded=result.loaded,
                    rows_quarantined=result.quarantined,
                    rows_skipped=batch.skipped,
                    inserted=result.inserted,
                    updated=result.updated,
                    unchanged=result.unchanged,
                    soft_deleted=result.deleted,
                ),
                **open_quarantine,
            }
        )

    return warehouse_entity


@dg.definitions
def defs() -> dg.Definitions:
    """One load asset per canonical entity."""
    return dg.Definitions(assets=[build_load_asset(entity) for entity in ENTITIES])
