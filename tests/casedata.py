"""Test cases kept as data: `tests/cases/<topic>.yaml`, one table of cases per test.

A topic file maps a table name to its cases, one mapping a case: an `id` (left out, pytest
derives it from the values) and one value per parameter of the test, by name:

    french-and-plain:
      - {id: comma-decimal, cell: '12,50', cents: 1250}

    @parametrize("amounts", "french-and-plain", "cell, cents")
    def test_parse_cents_reads_french_and_plain_amounts(cell: str, cents: int) -> None: ...
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

CASES_DIR = Path(__file__).parent / "cases"


@cache
def _topic(topic: str) -> dict[str, list[dict[str, Any]]]:
    return yaml.safe_load((CASES_DIR / f"{topic}.yaml").read_text(encoding="utf-8"))


def cases(topic: str, table: str, names: str) -> list[Any]:
    """The cases of `table` in tests/cases/<topic>.yaml as pytest params, values in the order
    of `names` ("cell, cents"); a case with a key that is not a name, or without one, fails."""
    fields = [name.strip() for name in names.split(",")]
    params = []
    for case in _topic(topic)[table]:
        values = {key: value for key, value in case.items() if key != "id"}
        if sorted(values) != sorted(fields):
            raise ValueError(f"{topic}.yaml `{table}`: case {case} does not give {names}")
        params.append(pytest.param(*(values[field] for field in fields), id=case.get("id")))
    return params


def parametrize(topic: str, table: str, names: str) -> pytest.MarkDecorator:
    """`pytest.mark.parametrize(names, cases(topic, table, names))`."""
    return pytest.mark.parametrize(names, cases(topic, table, names))
