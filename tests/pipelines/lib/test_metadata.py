"""An asset's role as plain-text entries (`pipelines.lib.metadata.AssetRole`)."""

import dagster as dg
import pytest

from pipelines.lib.metadata import AssetRole


@pytest.mark.parametrize(
    ("role", "entries"),
    [
        pytest.param(
            AssetRole("load", entity="tenants"),
            {"datafix/stage": "load", "datafix/entity": "tenants"},
            id="entity",
        ),
        pytest.param(
            AssetRole("push", sends="invoices"),
            {"datafix/stage": "push", "datafix/sends": "invoices"},
            id="sends",
        ),
        pytest.param(AssetRole("insight"), {"datafix/stage": "insight"}, id="stage-only"),
    ],
)
def test_a_role_is_written_as_plain_entries_and_read_back(
    role: AssetRole, entries: dict[str, str]
) -> None:
    assert role.entries() == entries
    assert AssetRole.read(entries) == role
    # as a materialization's metadata holds them: MetadataValue-wrapped, among other entries
    wrapped = {key: dg.MetadataValue.text(value) for key, value in entries.items()}
    assert AssetRole.read({**wrapped, "rows_read": dg.MetadataValue.int(3)}) == role


def test_entries_without_a_stage_are_no_role() -> None:
    assert AssetRole.read({"datafix/entity": "tenants", "status": "loaded"}) is None
