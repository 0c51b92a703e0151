"""A tiny code location for the production-instance test (tests/deploy/test_production_queue.py):
one job partitioned by landlord whose only op records its process id and then waits. The run
worker is the process the op runs in (in-process executor), so killing that pid kills the run."""

import os
import time
from pathlib import Path

import dagster as dg

LANDLORDS = dg.StaticPartitionsDefinition(["north-habitat", "south-habitat"])


@dg.op(config_schema={"seconds": float})
def hold(context: dg.OpExecutionContext) -> None:
    """Write this run worker's pid to `$DEPLOY_TEST_PIDS/<run id>`, then wait `seconds`."""
    pids = Path(os.environ["DEPLOY_TEST_PIDS"])
    (pids / context.run_id).write_text(str(os.getpid()), encoding="utf-8")
    time.sleep(context.op_config["seconds"])


@dg.job(partitions_def=LANDLORDS, executor_def=dg.in_process_executor)
def hold_landlord() -> None:
    """One landlord's stand-in run."""
    hold()


defs = dg.Definitions(jobs=[hold_landlord])
