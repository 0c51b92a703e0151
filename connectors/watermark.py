"""Where an incremental pull resumes, applied to rows a peer returned.

SQL sources push the whole (cursor, key) condition down to the database. Peers that can only
filter `cursor >= value` (ODBC drivers without row values, SOAP, Salesforce, Sage X3) return the
rows at the watermark's exact cursor value again; `past_watermark` drops those already loaded,
so a pull neither skips nor repeats a row.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from connectors.rawtable import RawTable, Watermark, header_key

__all__ = ["past_watermark"]


def past_watermark(raw: RawTable, after: Watermark) -> RawTable:
    """Rows strictly after the watermark in (cursor, key) order, sorted in that order.

    Numbers compare as numbers and everything else as text (ISO timestamps sort as text).
    Without `key_values` the bound is inclusive; without `value` every row is kept.
    """
    frame = raw.frame
    if frame.empty:
        return raw
    labels = {header_key(label): label for label in frame.columns}
    columns = [labels[header_key(name)] for name in (after.column, *after.key)]
    sortable = [_sortable(frame[column]) for column in columns]
    order = np.lexsort([values.to_numpy() for values in reversed(sortable)])
    keep = np.ones(len(frame), dtype=bool)
    if after.value is not None:
        converters = [_converter(values) for values in sortable]
        bound = [converters[0](after.value)]
        bound += [convert(v) for convert, v in zip(converters[1:], after.key_values, strict=False)]
        cursor = sortable[0].to_numpy()
        if after.key_values:
            keep = cursor > bound[0]
            tie = cursor == bound[0]
            later = np.zeros(len(frame), dtype=bool)
            equal_so_far = tie.copy()
            for values, limit in zip(sortable[1:], bound[1:], strict=False):
                array = values.to_numpy()
                later |= equal_so_far & (array > limit)
                equal_so_far &= array == limit
            keep |= later
        else:
            keep = cursor >= bound[0]
    order = order[keep[order]]
    return RawTable(
        frame=frame.iloc[order].reset_index(drop=True),
        source_rows=raw.source_rows.iloc[order].reset_index(drop=True),
        fingerprint=raw.fingerprint,
        origin=raw.origin,
    )


def _sortable(values: pd.Series) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().all():
        return numbers.astype("float64")
    return values.astype(object)


def _converter(values: pd.Series) -> Callable[[str], object]:
    if values.dtype == "float64":
        return float
    return str
