"""Issue 12, "failures hide their cause": a failed run showed `DagsterExecutionStepExecutionError`
in the CLI and the UI, the cause only in the event log.

A real `datafix run` subprocess whose source fails: stdout names the cause (for a bug in a
plug-in source, its type and message first), never Dagster's wrapper; the traceback stays in
the run's event log (the step failure event of the Dagster instance under `DATAFIX_HOME`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from pipelines.lib.failures import failure_cause
from tests.landlords import common

LANDLORD = "acme"


def datafix_with_plugin(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`datafix …` with the plug-in source registered (bounded: a hang fails the test)."""
    plugin = (sys.executable, "-m", "tests.reliability.failing_kinds")
    return common.datafix(*args, env=env, timeout=300, command=plugin)


def write_landlord(home: Path, datafixes: Path, source: dict[str, object]) -> None:
    inbox = home / "inbox" / LANDLORD
    inbox.mkdir(parents=True)
    export = inbox / "bt.csv"
    export.write_text(
        "bt;entreprise;logement;nature;montant;statut;date_commande\n"
        "BT1;Plomberie Martin;L1;DEP;100,00;REC;03/01/2026\n",
        encoding="utf-8",
    )
    an_hour_ago = time.time() - 3600  # a file at rest, not one being copied
    os.utime(export, (an_hour_ago, an_hour_ago))
    datafixes.mkdir()
    document = {
        "landlord": {"id": LANDLORD, "name": "Acme"},
        "sources": {"orders": source},
        "entities": {
            "work_orders": {
                "source": "orders",
                "fields": {
                    "order_ref": "bt", "contractor": "entreprise", "dwelling_ref": "logement",
                    "category": {"from": "nature", "map": {"DEP": "repair"}},
                    "committed_cents": "montant",
                    "status": {"from": "statut", "map": {"REC": "received"}},
                    "ordered_date": "date_commande",
                },
            }
        },
    }  # fmt: skip
    (datafixes / f"{LANDLORD}.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")


def step_failures(home: Path) -> list[dg.EventLogEntry]:
    """The step failure events of every run of the hub's Dagster instance."""
    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    try:
        return [
            entry
            for run in instance.get_runs()
            for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        ]
    finally:
        instance.dispose()


def failed_run(
    tmp_path: Path, source: dict[str, object]
) -> tuple[subprocess.CompletedProcess[str], Any]:
    """`datafix run` of the landlord whose orders come from `source`, a run that fails: it
    exits 1 without naming Dagster's wrapper (the old summary's line); returns the run and the
    step failure recorded for `raw_work_orders` (exactly one)."""
    home = Path(os.environ["DATAFIX_HOME"])
    datafixes = tmp_path / "datafixes"
    write_landlord(home, datafixes, source)
    completed = datafix_with_plugin("run", LANDLORD, env={"DATAFIX_DATAFIXES_DIR": str(datafixes)})
    output = completed.stdout + completed.stderr
    assert completed.returncode == 1, output
    assert "DagsterExecutionStepExecutionError" not in output
    [failure] = [
        entry for entry in step_failures(home) if "raw_work_orders" in (entry.step_key or "")
    ]
    return completed, failure.dagster_event.step_failure_data


def test_a_bug_in_a_plugin_source_shows_its_type_and_message(tmp_path: Path) -> None:
    completed, data = failed_run(tmp_path, {"kind": "split_csv", "path": "bt.csv", "parts": 0})
    output = completed.stdout + completed.stderr
    assert "ZeroDivisionError: integer division or modulo by zero" in completed.stdout, output
    assert "traceback is in the run's event log" in completed.stdout

    # the event log keeps the traceback, down to the plug-in's line
    assert failure_cause(data.error).startswith("ZeroDivisionError: integer division")
    stack = data.error
    while stack.cause is not None:
        stack = stack.cause
    assert any("failing_kinds.py" in line for line in stack.stack), stack.stack


def test_a_hub_error_from_a_source_is_the_message_cli_and_event_log(tmp_path: Path) -> None:
    """A source the hub refuses (a configuration error): the CLI prints the hub's message as
    it is, and the step failure recorded in the instance carries it (what the UI shows)."""
    source = {"kind": "split_csv", "path": "absent.csv", "parts": 1}
    completed, data = failed_run(tmp_path, source)
    assert "absent.csv" in completed.stdout, completed.stdout + completed.stderr
    described = data.user_failure_data.description if data.user_failure_data else ""
    assert "absent.csv" in (described or ""), data


def test_a_hub_error_raised_in_any_stage_is_the_step_failure_message() -> None:
    """Assets of every stage (`landlord_asset`) turn the hub's errors into the step's failure
    message (what the UI shows), not `DagsterExecutionStepExecutionError`; a bug fails with its
    type and message, its exception and traceback kept as the failure's cause."""
    from connectors.errors import ConfigError
    from pipelines.defs.common import landlord_asset
    from pipelines.defs.partitions import landlord_partitions
    from pipelines.lib.metadata import AssetRole

    message = "acme.yaml:3:5: `mode` must be snapshot or incremental — fix the datafix"

    @landlord_asset(AssetRole("load", "tenants"), description="A load that refuses.")
    def warehouse_tenants() -> None:
        raise ConfigError(message)

    @landlord_asset(AssetRole("derive", sends="invoices"), description="A derive with a bug.")
    def outgoing_invoices() -> None:
        raise KeyError("amount_cents")

    key = landlord_partitions.get_partition_keys()[0]
    for asset, cause in ((warehouse_tenants, message), (outgoing_invoices, None)):
        result = dg.materialize([asset], partition_key=key, raise_on_error=False)
        [event] = result.get_step_failure_events()
        data = event.step_failure_data
        if cause is not None:
            assert data.user_failure_data is not None
            assert data.user_failure_data.description == cause
            assert failure_cause(data.error) == cause
        else:  # not a hub error: a short cause, the KeyError and its traceback kept under it
            assert data.user_failure_data is not None
            assert data.user_failure_data.description.startswith("KeyError: 'amount_cents'")
            assert failure_cause(data.error).startswith("KeyError: 'amount_cents'")
            assert data.error.cause is not None and data.error.cause.stack
