"""What the transform tests share: RawTables shaped like the readers' output, and a mapping
applied to them with the batch's accounting checked."""

from __future__ import annotations

from typing import Any

import pandas as pd

from connectors.rawtable import RawTable
from pipelines.lib.transforms import EntityTransformer, NormalisedBatch
from schemas.canonical import ENTITIES
from schemas.datafix import EntityMapping

ACTIVE = {"status": {"const": "active"}}
# a ledger's tenant and date, for the tests that do not look at them
ONE_TENANT_AND_DAY = {"tenant_ref": {"const": "T1"}, "entry_date": {"const": "2026-03-01"}}


def raw_of(frame: pd.DataFrame, name: str = "export.csv") -> RawTable:
    """`frame` as a reader hands it over: lineage `export.csv:<line>` (header: line 1)."""
    lines = pd.Series([f"{name}:{line}" for line in range(2, len(frame) + 2)], dtype="str")
    return RawTable(frame=frame, source_rows=lines, fingerprint="0" * 64, origin=name)


def raw_table(header: list[str], rows: list[list[str]], name: str = "export.csv") -> RawTable:
    """A RawTable like the CSV reader's: text cells, lineage `export.csv:<line>` (header: 1)."""
    return raw_of(pd.DataFrame(rows, columns=header, dtype="str"), name)


def contract_rules_left_in(entity: str) -> dict[str, str]:
    """`rules:` setting every row rule of `entity` to `block`: normalise leaves them in."""
    return {rule.name: "block" for rule in ENTITIES[entity].rules}


def mapping_of(entity: str, fields: dict[str, Any], **options: Any) -> EntityMapping:
    """The entity's mapping from the source `export`; row rules left to the contract unless
    `rules` says otherwise."""
    options = {"rules": contract_rules_left_in(entity), **options}
    return EntityMapping.model_validate({"source": "export", "fields": fields, **options})


def transform(
    entity: str, fields: dict[str, Any], header: list[str], rows: list[list[str]], **options: Any
) -> NormalisedBatch:
    """Apply a mapping; every batch must account for every row it was given.

    The contract's row rules are left to the contract (`block`) unless `rules` says otherwise:
    these tests look at the field rules alone (a `const` kind with amounts of either sign).
    """
    mapping = mapping_of(entity, fields, **options)
    batch = EntityTransformer(entity, mapping).apply(raw_table(header, rows))
    assert batch.rows_in_source == len(rows)
    assert batch.read == len(batch.rows) + len(batch.rejects)
    assert batch.read + batch.skipped == len(rows)
    return batch
