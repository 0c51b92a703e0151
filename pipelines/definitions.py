"""The Dagster code location: every definition under `pipelines/defs/`, autoloaded."""

from pathlib import Path

import dagster as dg

from connectors.secrets import scrub_log_records
from pipelines.lib.personal import private_umask

private_umask()  # the code location's files (instance, storage, logs) readable by the hub only
scrub_log_records()  # no secret in any log line, the event log's included


@dg.definitions
def defs() -> dg.Definitions:
    """All assets, checks, jobs, schedules, sensors and resources of the hub."""
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
