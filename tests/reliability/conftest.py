"""Fixtures the reliability tests share."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def datafixes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test's own datafixes folder (`DATAFIX_DATAFIXES_DIR`), created by who writes to it."""
    folder = tmp_path / "datafixes"
    monkeypatch.setenv("DATAFIX_DATAFIXES_DIR", str(folder))
    return folder
