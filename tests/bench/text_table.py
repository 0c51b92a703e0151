"""The bench's tables as aligned plain text: one line a row, columns two spaces apart."""

from __future__ import annotations

from collections.abc import Collection, Sequence


def text_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], right: Collection[int]
) -> list[str]:
    """`header`, a rule of dashes, then `rows`; each column as wide as its widest cell, the
    columns whose index is in `right` aligned right (numbers), the others left."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]

    def render(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(width) if index in right else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return [render(header), rule, *(render(row) for row in rows)]
