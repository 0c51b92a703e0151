"""What every stage's assets share: one landlord partition each, grouped by stage, tagged with
their role (`datafix/stage`, `datafix/entity` or `datafix/sends`) so the runner and the UI read
what an asset is from data, never from its name."""

from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg

from pipelines.defs.partitions import landlord_partitions
from pipelines.lib.metadata import AssetRole


def landlord_asset(
    role: AssetRole,
    *,
    name: str,
    kinds: set[str],
    description: str,
    ins: dict[str, dg.AssetIn] | None = None,
    deps: Sequence[str] | None = None,
) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """`@dg.asset` for one stage's asset: partitioned by landlord, in its stage's group."""
    return dg.asset(
        name=name,
        partitions_def=landlord_partitions,
        group_name=role.stage,
        kinds=kinds,
        tags=role.entries(),
        ins=ins,
        deps=deps,
        description=description,
    )


def refused(error: Exception) -> dg.Failure:
    """A failure that retrying cannot fix (bad datafix, unreachable source, refused snapshot)."""
    return dg.Failure(description=str(error), allow_retries=False)
