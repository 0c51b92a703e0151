"""A landlord's plug-in source with a bug, for `tests/reliability/test_failure_causes.py`.

- `split_csv` reads a CSV export as `csv` does, then splits the rows into `parts` chunks;
  `parts: 0` divides by zero: a bug in the plug-in, not an error the hub raises on purpose.

`python -m tests.reliability.failing_kinds <datafix arguments>` runs the real `datafix` command
with the kind registered.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Literal

from pydantic import Field

from connectors import registry
from connectors.files.kinds import CSV_SOURCE, CsvSource
from connectors.rawtable import RawTable
from connectors.registry import SourceRequest


class SplitCsvSource(CsvSource):
    """A CSV export read in `parts` chunks."""

    kind: Literal["split_csv"]  # type: ignore[assignment]
    parts: int = Field(1, description="Chunks the rows are read in.")


def read_split(settings: SplitCsvSource, request: SourceRequest) -> RawTable:
    table = CSV_SOURCE.read(settings, request)
    chunk = len(table.frame) // settings.parts  # the bug: parts 0
    assert chunk >= 0
    return table


SPLIT_CSV = dataclasses.replace(
    CSV_SOURCE, name="split_csv", settings=SplitCsvSource, read=read_split
)


if __name__ == "__main__":
    registry.register(SPLIT_CSV)
    from pipelines.cli import main

    main(sys.argv[1:], prog_name="datafix")
