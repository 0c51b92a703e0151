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
