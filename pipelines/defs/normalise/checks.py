"""Contracts: a blocking great-expectations suite per canonical entity.

Rows breaking a row rule were already quarantined by normalise (unless the datafix says `warn`
or `block`); what fails here are the table rules (and rules set to `block`). A failed contract
stops that landlord's load of the entity in the same run, and its metadata names the failing
business keys so an integration engineer knows which rows to look at. The blocked load leaves
its trace: a `load_runs` row (`blocked`, with the reason) and its quarantine rows. The
verdict is also kept in the warehouse (`contract_results`): a push started later, alone, holds
the records derived from an entity whose latest contract failed.

An entity the run did not read (its source unchanged, or not configured for the landlord) gets
no verdict: the check emits no result, which Dagster shows as *Skipped* (a check planned in a run
that succeeded without evaluating it), never as *Passed*; the verdict shown stays the last real
one (the check's history, and `last_contract` on the entity's assets).
"""

from collections.abc import Iterator

import dagster as dg

from connectors.secrets import scrub
from pipelines.defs.common import hub_failures, safe_metadata
from pipelines.defs.partitions import landlord_partitions
from pipelines.defs.resources import DatafixesResource, WarehouseResource
from pipelines.lib.metadata import AssetRole
from pipelines.lib.push import record_contract
from pipelines.lib.quality import contract_description
from pipelines.lib.stages import NormalisedEntity, check_contract, record_refused
from schemas.canonical import ENTITIES


def build_contract_check(entity: str) -> dg.AssetChecksDefinition:
    """The blocking `contract` check on `canonical_<entity>`."""
    role = AssetRole("normalise", entity)

    # one spec, subsettable: its result is optional, so a run that did not read the entity
    # leaves the check *Skipped* (Dagster 1.13 lets the downstream load go on ungated)
    @dg.multi_asset_check(
        name=f"canonical_{entity}_contract",
        specs=[
            dg.AssetCheckSpec(
                "contract",
                asset=f"canonical_{entity}",
                blocking=True,
                partitions_def=landlord_partitions,
                description=f"The {entity} contract: " + "; ".join(contract_description(entity)),
            )
        ],
        can_subset=True,
        ins={"canonical": dg.AssetIn(key=f"canonical_{entity}")},
    )
    @hub_failures
    def contract(
        context: dg.AssetCheckExecutionContext,
        datafixes: DatafixesResource,
        warehouse: WarehouseResource,
        canonical: NormalisedEntity,
    ) -> Iterator[dg.AssetCheckResult]:
        if canonical.batch is None:
            context.log.info(
                f"{canonical.landlord_id}/{entity}: contract skipped, source {canonical.status}"
            )
            return
        loaded = datafixes.get_client(canonical.landlord_id)
        result = check_contract(loaded, canonical)
        client = warehouse.get_client()
        run_id = context.run.run_id
        record_contract(
            client,
            canonical.landlord_id,
            entity,
            passed=result.passed,
            summary=result.summary(),
            run_id=run_id,
        )
        if not result.passed:
            record_refused(
                client, loaded, canonical, run_id=run_id, status="blocked", reason=result.summary()
            )
        yield dg.AssetCheckResult(
            asset_key=f"canonical_{entity}",
            check_name="contract",
            passed=result.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=scrub(result.summary()),
            metadata=safe_metadata(
                {
                    **role.entries(),
                    "rows": dg.MetadataValue.int(result.rows),
                    "failing_keys": dg.MetadataValue.json(result.failing_keys()),
                    "failures": dg.MetadataValue.json(result.failures),
                    "statistics": dg.MetadataValue.json(result.statistics),
                    "warnings": dg.MetadataValue.json(result.warnings),
                }
            ),
        )

    # the check reads the canonical asset through its parameter name
    return contract


@dg.definitions
def defs() -> dg.Definitions:
    """One blocking contract per canonical entity."""
    return dg.Definitions(asset_checks=[build_contract_check(entity) for entity in ENTITIES])
