"""`parse_cents` on whole columns of generated amounts, against the amount each was made from.

Each cell is written from a known number of cents in one of the forms French and other exports
use (sign before or after, parentheses, thousands grouped by a space, U+00A0, U+202F, a dot or a
comma, a decimal comma or point, one or two decimals, zeros after a decimal comma, the euro
sign or `EUR`), or in a form the hub refuses (three significant decimals, `1.234`, two signs,
letters). The column mixes them all, blanks included, so every path of the parser (the plain
amounts, the same once spaces and the currency are gone, the full rules) meets its neighbours;
the expected cents come from the generator, not from the hub.
"""

from __future__ import annotations

import random

import pandas as pd
import pytest

from pipelines.lib.transforms import parse_cents, per_distinct

SPACES = [" ", "\u00a0", "\u202f"]


def _grouped(whole: int, separator: str) -> str:
    digits = str(whole)
    groups = []
    while len(digits) > 3:
        groups.insert(0, digits[-3:])
        digits = digits[:-3]
    return separator.join([digits, *groups])


def _written(chooser: random.Random, cents: int) -> str:
    """One way an export writes `cents` (the amount it means is always `cents`)."""
    whole, fraction = divmod(abs(cents), 100)
    style = chooser.choice(["comma", "comma", "point", "plain"])
    if style == "comma":
        thousands = chooser.choice([*SPACES, ".", ""])
        body = _grouped(whole, thousands)
        decimals = chooser.choice([f"{fraction:02d}", f"{fraction:02d}0"])
        if fraction % 10 == 0 and chooser.random() < 0.5:
            decimals = str(fraction // 10)
        # `2.272` alone is refused as ambiguous: a dot-grouped amount keeps its decimal comma
        if fraction or thousands == "." or chooser.random() < 0.5:
            body += "," + decimals
    elif style == "point":
        body = _grouped(whole, chooser.choice([",", ""])) + f".{fraction:02d}"
    else:
        if fraction:
            return _written(chooser, cents)
        body = str(whole)
    if chooser.random() < 0.3:
        body += chooser.choice([" €", "\u00a0€", "€", " EUR", " eur"])
    if cents < 0:
        return chooser.choice(["-" + body, body + "-", "(" + body + ")"])
    return ("+" + body) if chooser.random() < 0.05 else body


REFUSED = ["12,345", "1.234", "1,234", "--12", "12,5O", "abc", "12,50 $", "1 2,5,0", "+-3", "1.2.3"]


def _column(seed: int, size: int) -> tuple[list[str | None], list[int | None], list[bool]]:
    chooser = random.Random(seed)
    cells: list[str | None] = []
    cents: list[int | None] = []
    bad: list[bool] = []
    for _ in range(size):
        roll = chooser.random()
        if roll < 0.1:
            cells.append(None)
            cents.append(None)
            bad.append(False)
        elif roll < 0.15:
            cells.append(chooser.choice(REFUSED))
            cents.append(None)
            bad.append(True)
        else:
            magnitude = chooser.choice([100, 10_000, 1_000_000, 10**9, 10**17 - 1])
            amount = chooser.randint(-magnitude, magnitude)
            cells.append(_written(chooser, amount))
            cents.append(amount)
            bad.append(False)
    return cells, cents, bad


@pytest.mark.parametrize("seed", range(6))
def test_a_column_of_mixed_amounts_reads_as_the_cents_they_were_written_from(seed: int) -> None:
    cells, cents, bad = _column(seed, 3000)
    values = pd.Series(cells, dtype="str")

    parsed, flagged = parse_cents(values)

    assert parsed.dtype == "Int64"
    got = [None if pd.isna(value) else int(value) for value in parsed]
    wrong = [(c, e, g) for c, e, g in zip(cells, cents, got, strict=True) if e != g]
    assert not wrong, wrong[:10]
    assert flagged.tolist() == bad
    # the same column through its distinct values (how the engine calls it)
    spread, spread_bad = per_distinct(values, parse_cents)
    assert [None if pd.isna(value) else int(value) for value in spread] == cents
    assert spread_bad.tolist() == bad


def test_a_column_in_several_chunks_reads_as_one() -> None:
    # several files read one after the other are concatenated: their columns come in chunks
    cells, cents, bad = _column(99, 400)
    first = pd.Series(cells[:150], dtype="str")
    second = pd.Series(cells[150:], dtype="str")
    values = pd.concat([first, second], ignore_index=True)
    assert values.array._pa_array.num_chunks == 2  # what this test is about

    parsed, flagged = parse_cents(values)

    assert [None if pd.isna(value) else int(value) for value in parsed] == cents
    assert flagged.tolist() == bad
