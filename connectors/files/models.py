"""What every source reader returns: raw rows as text, with where each row came from."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class RawTable:
    """Rows read from one source, before any mapping.

    Attributes:
        frame: one column per source header label (labels as written in the source, made
            unique), every value a `str`; a blank cell is `""`. Text is the lossless common
            form: amounts stay exact decimals, dates are ISO (`2026-03-01`, `2026-03-01 14:30:00`)
            when the source stored a real date, or the text as typed otherwise.
        source_rows: lineage of each row, aligned with `frame`: `file.csv:12`,
            `book.xlsx:Sheet:12` (1-based line / row numbers as a person sees them), or
            `table:id=42` for SQL.
        fingerprint: SHA-256 over what was read (file bytes, or the rows for SQL); equal
            fingerprints mean the source did not change.
        origin: the files or table read, for messages.
    """

    frame: pd.DataFrame
    source_rows: pd.Series
    fingerprint: str
    origin: str

    def __len__(self) -> int:
        return len(self.frame)


@dataclass(frozen=True)
class Watermark:
    """Where an incremental pull resumes: after the row (`value`, `key_values`) in cursor order.

    Readers return the rows strictly after that position in (`column`, *`key`) order, sorted in
    that order, so the last row read is the next watermark. With no `key_values` (a manual
    reset to a value, or a lookback) the bound is inclusive: `column >= value`; with no `value`
    (a first pull) every row is read, in cursor order. Rows sharing one cursor value are told
    apart by the key, so none is skipped and none is read twice.
    """

    column: str
    value: str | None
    key: tuple[str, ...] = ()
    key_values: tuple[str, ...] = ()
