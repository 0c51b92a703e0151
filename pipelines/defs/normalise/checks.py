"""Contracts: a blocking great-expectations suite per canonical entity.

A failed contract stops that landlord's load of the entity in the same run, and its metadata
names the failing business keys so an integration engineer knows which rows to look at. The
verdict is also kept in the warehouse (`contract_results`): a push started later, alone, holds
the records derived from an entity whose latest contract failed.
"""

import dagster as dg

from pipelines.defs.partitions import landlord_partitions
from pipelines.defs.resources import WarehouseResource
from pipelines.lib.metadata import AssetRole
from pipelines.lib.push import record_contract
from pipelines.lib.quality import contract_description, run_contract
from pipelines.lib.stages import NormalisedEntity
from schemas.canonical import ENTITIES


def build_contract_check(entity: str) -> dg.AssetChecksDefinition:
    """The blocking `contract` check on `canonical_<entity>`."""
    role = AssetRole("normalise", entity)

    @dg.asset_check(
        asset=f"canonical_{entity}",
        name="contract",
        blocking=True,
        partitions_def=landlord_partitions,
        description=f"The {entity} contract: " + "; ".join(contract_description(entity)),
    )
    def contract(
        context: dg.AssetCheckExecutionContext,
        warehouse: WarehouseResource,
        canonical: NormalisedEntity,
    ) -> dg.AssetCheckResult:
        if canonical.batch is None:
            return dg.AssetCheckResult(
                passed=True,
                metadata={**role.entries(), "status": f"not checked: source {canonical.status}"},
            )
        result = run_contract(entity, canonical.rows)
        record_contract(
            warehouse.get_client(),
            canonical.landlord_id,
            entity,
            passed=result.passed,
            summary=result.summary(),
            run_id=context.run.run_id,
        )
        return dg.AssetCheckResult(
            passed=result.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=result.summary(),
            metadata={
                **role.entries(),
                "rows": dg.MetadataValue.int(result.rows),
                "failing_keys": dg.MetadataValue.json(result.failing_keys()),
                "failures": dg.MetadataValue.json(result.failures),
                "statistics": dg.MetadataValue.json(result.statistics),
            },
        )

    # the check reads the canonical asset through its parameter name
    return contract


@dg.definitions
def defs() -> dg.Definitions:
    """One blocking contract per canonical entity."""
    return dg.Definitions(asset_checks=[build_contract_check(entity) for entity in ENTITIES])
