"""Landlord partitions: one per datafix file, so a new file is a new partition, no code change."""

import dagster as dg

from pipelines.lib.datafixes import landlord_ids

# built from file names, not contents: a broken datafix fails its own runs, never the whole
# code location. Read when this module is imported; a process that builds the definitions again
# after the folder's landlords changed imports `defs/` afresh (`pipelines.definitions`)
landlord_partitions = dg.StaticPartitionsDefinition(landlord_ids())
