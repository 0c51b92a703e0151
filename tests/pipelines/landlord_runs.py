"""One landlord run through the runner, and its materialisations read back from the Dagster
instance as the UI reads them (the console tests: health, rerun selection)."""

import dagster as dg

from pipelines.lib.runner import LandlordOutcome, run_landlords

LANDLORD = "loire-habitat"  # files only, no push: its runs can leave the insight steps out


def run_once() -> LandlordOutcome:
    """The landlord run once, successfully."""
    [outcome] = run_landlords([LANDLORD], workers=1)
    assert outcome.success, outcome.errors
    return outcome


def latest_materialisation(instance: dg.DagsterInstance, asset: str) -> dg.EventLogRecord:
    """The landlord's latest materialisation of `asset` (there must be one)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[LANDLORD]), limit=1
    ).records
    assert records, f"{asset} was never materialised for {LANDLORD}"
    return records[0]
