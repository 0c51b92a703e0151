"""A failed step says its cause, not a trace: the hub's own message (with the file and row it
names, as metadata too) or, for an unexpected error, its type and message; the traceback is in
the run's log. Assets built with the hub's own `landlord_asset`, run by Dagster for real."""

import dagster as dg

from connectors.errors import SourceDataError
from pipelines.defs.common import landlord_asset
from pipelines.lib.metadata import AssetRole

LANDLORD = "loire-habitat"
MESSAGE = (
    "locataires_2026-10.csv:12: column `Date d'entrée`: '31/02/2026' is not a date —"
    " fix the export or add its format to `formats`"
)


@landlord_asset(AssetRole("insight"), name="failing_on_bad_data", description="Fails.")
def failing_on_bad_data(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    raise SourceDataError(MESSAGE)


@landlord_asset(AssetRole("insight"), name="failing_on_a_bug", description="Fails.")
def failing_on_a_bug(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return {"ledger": 1}["tenants"]


def failure_of(asset: dg.AssetsDefinition, instance: dg.DagsterInstance) -> tuple[str, object]:
    result = dg.materialize(
        [asset], partition_key=LANDLORD, instance=instance, raise_on_error=False
    )
    assert not result.success
    [failure] = result.get_step_failure_events()
    return result.run_id, failure.step_failure_data


def test_a_hub_error_is_its_message_with_file_and_row_and_no_trace_shown() -> None:
    with dg.instance_for_test() as instance:
        run_id, data = failure_of(failing_on_bad_data, instance)
        assert data.user_failure_data.description == MESSAGE
        shown = {k: v.value for k, v in data.user_failure_data.metadata.items()}
        assert shown == {
            "error": "SourceDataError",
            "transient": False,
            "file": "locataires_2026-10.csv",
            "row": "12",
        }
        # no chained cause: the UI shows the message, not the source error's traceback
        assert data.error.cause is None
        # which stays in the run's log, on the step's DEBUG line, for support
        traces = [
            entry.user_message
            for entry in instance.all_logs(run_id)
            if "Traceback (most recent call last)" in entry.user_message
        ]
        assert len(traces) == 1 and traces[0].startswith(MESSAGE)
        assert "SourceDataError" in traces[0]


def test_a_bug_is_its_type_and_message_its_trace_kept_as_the_cause() -> None:
    with dg.instance_for_test() as instance:
        _, data = failure_of(failing_on_a_bug, instance)
        assert data.user_failure_data.description == (
            "KeyError: 'tenants' — an unexpected error: its traceback is in the run's event log"
            " (Dagster UI)"
        )
        shown = {k: v.value for k, v in data.user_failure_data.metadata.items()}
        assert shown == {"error": "KeyError", "transient": False}
        assert data.error.cause is not None and data.error.cause.cls_name == "KeyError"
        assert any("test_step_failures.py" in line for line in data.error.cause.stack)
