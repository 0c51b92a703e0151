"""Compatibility names: `RawTable` and `Watermark` live in `connectors.rawtable`."""

from __future__ import annotations

from connectors.rawtable import RawTable, Watermark

__all__ = ["RawTable", "Watermark"]
