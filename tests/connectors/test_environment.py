"""Seconds read from environment variables: the file settling interval and the run-lock wait."""

from __future__ import annotations

import pytest

from connectors.environment import seconds_variable
from connectors.errors import ConfigError
from connectors.files.client import SETTLE_VARIABLE, settle_seconds
from pipelines.lib.runlock import DEFAULT_LOCK_WAIT_SECONDS, LOCK_WAIT_VARIABLE, lock_wait_seconds


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, 7.0), ("", 7.0), ("  ", 7.0), ("0", 0.0), (" 2.5 ", 2.5), ("30", 30.0)],
    ids=["unset", "empty", "blank", "zero", "spaces-around", "at-most"],
)
def test_a_number_of_seconds_or_the_default(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: float
) -> None:
    if value is None:
        monkeypatch.delenv("DATAFIX_TEST_SECONDS", raising=False)
    else:
        monkeypatch.setenv("DATAFIX_TEST_SECONDS", value)
    assert seconds_variable("DATAFIX_TEST_SECONDS", 7.0, most=30, fix="fix it") == expected


@pytest.mark.parametrize("value", ["soon", "-1", "30.5", "nan", "1e400"])
def test_anything_else_names_the_variable_and_the_fix(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("DATAFIX_TEST_SECONDS", value)
    with pytest.raises(ConfigError) as refused:
        seconds_variable("DATAFIX_TEST_SECONDS", 7.0, most=30, fix="fix it")
    assert str(refused.value) == (
        f"DATAFIX_TEST_SECONDS={value!r} is not a number of seconds between 0 and 30 — fix it"
    )


def test_settle_seconds_prefers_the_datafix_then_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(SETTLE_VARIABLE, "0.5")
    assert settle_seconds(3.0) == 3.0
    assert settle_seconds(None) == 0.5
    monkeypatch.setenv(SETTLE_VARIABLE, "601")
    with pytest.raises(ConfigError, match="between 0 and 600 — fix or unset it"):
        settle_seconds(None)
    monkeypatch.delenv(SETTLE_VARIABLE)
    assert settle_seconds(None) == 2.0


def test_lock_wait_has_no_upper_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LOCK_WAIT_VARIABLE, raising=False)
    assert lock_wait_seconds() == DEFAULT_LOCK_WAIT_SECONDS == 600
    monkeypatch.setenv(LOCK_WAIT_VARIABLE, "86400")
    assert lock_wait_seconds() == 86400.0
    monkeypatch.setenv(LOCK_WAIT_VARIABLE, "-5")
    with pytest.raises(ConfigError, match=r"is not a number of seconds — set it to how long"):
        lock_wait_seconds()
