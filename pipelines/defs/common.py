"""What every stage's assets share: one landlord partition each, grouped by stage, tagged with
their role (`datafix/stage`, `datafix/entity` or `datafix/sends`) so the runner and the UI read
what an asset is from data, never from its name."""

from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg

from pipelines.defs.partitions import landlord_partitions
from pipelines.lib.metadata import AssetRole

# stage → (prefix of its assets' names, what they compute with, shown as kinds in the UI)
STAGES: dict[str, tuple[str, set[str]]] = {
    "pull": ("raw", {"pandas"}),
    "normalise": ("canonical", {"pandas"}),
    "load": ("warehouse", {"sql"}),
    "derive": ("outgoing", {"pandas"}),
    "push": ("push", {"python"}),
    "insight": ("insight", {"sql"}),
}


def asset_name(role: AssetRole) -> str:
    """`<prefix>_<entity or record kind>`: `raw_tenants`, `push_invoices`, …"""
    return f"{STAGES[role.stage][0]}_{role.entity or role.sends}"


def landlord_asset(
    role: AssetRole,
    *,
    description: str,
    name: str = "",
    ins: dict[str, dg.AssetIn] | None = None,
    deps: Sequence[str] | None = None,
) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """`@dg.asset` for one stage's asset, named after its role (unless `name` says otherwise):
    partitioned by landlord, in its stage's group."""
    return dg.asset(
        name=name or asset_name(role),
        partitions_def=landlord_partitions,
        group_name=role.stage,
        kinds=STAGES[role.stage][1],
        tags=role.entries(),
        ins=ins,
        deps=deps,
        description=description,
    )


def refused(error: Exception) -> dg.Failure:
    """A failure that retrying cannot fix (bad datafix, unreachable source, refused snapshot)."""
    return dg.Failure(description=str(error), allow_retries=False)
