"""Dagster metadata helpers: what each asset is (its stage and entity), counts and short
previews with personal data masked."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg

from connectors.lazy import pd
from pipelines.lib.stages import preview_frame

RUN_TAG_FULL_REFRESH = "datafix/full_refresh"

# what an asset is, as plain text: in its definition's tags and in every materialization, check
# evaluation and failure it emits, so readers (the runner) never parse asset keys
STAGE = "datafix/stage"
ENTITY = "datafix/entity"
SENDS = "datafix/sends"


@dataclass(frozen=True)
class AssetRole:
    """One asset's place in the hub: its stage (`pull`, `normalise`, `load`, `derive`, `push`,
    `insight`) and the canonical entity it carries, or the outgoing record kind it sends."""

    stage: str
    entity: str = ""
    sends: str = ""

    def entries(self) -> dict[str, str]:
        """As tags or metadata entries (plain text)."""
        entries = {STAGE: self.stage, ENTITY: self.entity, SENDS: self.sends}
        return {key: value for key, value in entries.items() if value}

    @classmethod
    def read(cls, entries: Mapping[str, Any]) -> AssetRole | None:
        """The role recorded in tags or metadata, None when there is none."""
        plain = {key: str(getattr(value, "value", value)) for key, value in entries.items()}
        if STAGE not in plain:
            return None
        return cls(plain[STAGE], plain.get(ENTITY, ""), plain.get(SENDS, ""))


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
