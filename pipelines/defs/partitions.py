"""Landlord partitions: one per datafix file, so a new file is a new partition, no code change."""

import dagster as dg

from pipelines.lib.datafixes import landlord_ids

# built from file names, not contents: a broken datafix fails its own runs, never the whole
# code location
landlord_partitions = dg.StaticPartitionsDefinition(landlord_ids())
