"""Derive: what goes back out, per landlord: confirmed commitments, invoices and completions."""

import dagster as dg

from pipelines.defs.common import landlord_asset
from pipelines.defs.resources import DatafixesResource, WarehouseResource
from pipelines.lib.derive import confirmed_rule, derive
from pipelines.lib.metadata import AssetRole
from pipelines.lib.push import sinks_sending
from schemas.outgoing import OUTGOING, OutgoingSpec


def build_derive_asset(spec: OutgoingSpec) -> dg.AssetsDefinition:
    """The `outgoing_<name>` asset: the landlord's confirmed records of that kind."""

    role = AssetRole("derive", sends=spec.name)

    @landlord_asset(
        role,
        deps=[f"warehouse_{entity}" for entity in spec.inputs]
        + (["warehouse_work_orders"] if "work_orders" not in spec.inputs else [])
        + list(spec.after),
        description=f"{spec.description} Derived from the warehouse; only records the"
        " landlord's datafix calls confirmed (`push.confirmed`).",
    )
    def outgoing(
        context: dg.AssetExecutionContext,
        datafixes: DatafixesResource,
        warehouse: WarehouseResource,
    ) -> dg.MaterializeResult:
        loaded = datafixes.get_client(context.partition_key)
        push = loaded.datafix.push
        senders = sinks_sending(loaded, spec.name)
        if push is None or not senders:
            return dg.MaterializeResult(metadata={**role.entries(), "status": "no sink sends it"})
        frame = derive(warehouse.get_client(), loaded.landlord_id, spec.name, push.confirmed)
        preview = frame.head(5).drop(columns=["source_rows"]).astype("str")
        return dg.MaterializeResult(
            metadata={
                **role.entries(),
                "status": "derived",
                "confirmed": dg.MetadataValue.int(len(frame)),
                "confirmed_rule": dg.MetadataValue.json(confirmed_rule(spec.name, push.confirmed)),
                "sinks": ", ".join(senders),
                "dagster/row_count": dg.MetadataValue.int(len(frame)),
                "preview": dg.MetadataValue.md(
                    preview.to_markdown(index=False) if len(frame) else "_no records_"
                ),
            }
        )

    return outgoing


@dg.definitions
def defs() -> dg.Definitions:
    """One derive asset per kind of outgoing record."""
    return dg.Definitions(assets=[build_derive_asset(spec) for spec in OUTGOING.values()])
