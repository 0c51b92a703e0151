"""The `pull` job: everything the nightly job does but derive and push (issue 11)."""

from pipelines.definitions import defs

DEFINITIONS = defs()


def test_the_pull_job_loads_and_computes_the_figures_without_deriving_or_pushing() -> None:
    nightly = DEFINITIONS.resolve_job_def("nightly")
    pull = DEFINITIONS.resolve_job_def("pull")
    nightly_keys = {key.to_user_string() for key in nightly.asset_layer.selected_asset_keys}
    pull_keys = {key.to_user_string() for key in pull.asset_layer.selected_asset_keys}
    assert {"raw_invoices", "warehouse_invoices", "insight_tenant_balances"} <= pull_keys
    assert not [key for key in pull_keys if key.startswith(("outgoing_", "push_"))]
    assert nightly_keys - pull_keys == {
        key for key in nightly_keys if key.startswith(("outgoing_", "push_"))
    }
    assert pull.partitions_def == nightly.partitions_def
