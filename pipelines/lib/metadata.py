"""Dagster metadata helpers: counts and short previews with personal data masked."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pandas as pd

from pipelines.lib.stages import preview_frame

RUN_TAG_FULL_REFRESH = "datafix/full_refresh"


def markdown_preview(frame: pd.DataFrame, entity: str, limit: int = 5) -> dg.MetadataValue:
    """The first rows as a Markdown table (personal columns masked)."""
    if frame.empty:
        return dg.MetadataValue.md("_no rows_")
    shown = preview_frame(frame, entity, limit).drop(columns=["landlord_id"], errors="ignore")
    return dg.MetadataValue.md(shown.astype("str").to_markdown(index=False))


def counts(**values: int) -> dict[str, Any]:
    """Integer metadata entries."""
    return {name: dg.MetadataValue.int(int(value)) for name, value in values.items()}


def full_refresh(context: dg.AssetExecutionContext) -> bool:
    """True when the run asked to re-read sources even if unchanged."""
    return context.run.tags.get(RUN_TAG_FULL_REFRESH, "false").lower() == "true"
