"""The one retry policy and wrapper every web-service connector uses."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from connectors.errors import ConfigError, PermanentError, RetriableError
from connectors.retry import RetryPolicy, with_retries
from connectors.sage.models import SAGE_X3_RETRY
from connectors.salesforce.models import SALESFORCE_RETRY
from connectors.soap.models import SOAP_RETRY

NO_WAIT = RetryPolicy(attempts=3, first_wait=0, max_wait=0, jitter=0)


class Busy(RetriableError):
    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


def failing(errors: list[Exception]) -> tuple[list[int], Callable[[], str]]:
    """A call raising `errors` one after the other, then answering `done`."""
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return "done"

    return calls, call


def test_a_transient_fault_is_retried_until_the_call_succeeds() -> None:
    calls, call = failing([RetriableError("busy"), RetriableError("busy")])
    assert with_retries(call, NO_WAIT) == "done"
    assert len(calls) == 3


def test_the_last_error_says_how_many_attempts_were_made() -> None:
    cause = OSError("reset")
    last = Busy("HTTP 503", code=503)
    last.__cause__ = cause
    calls, call = failing([Busy("HTTP 500"), Busy("HTTP 502"), last])
    with pytest.raises(Busy) as raised:
        with_retries(call, NO_WAIT)
    assert str(raised.value) == "HTTP 503 (gave up after 3 attempts)"
    assert raised.value is last and raised.value.code == 503
    assert raised.value.__cause__ is cause
    assert len(calls) == 3


def test_a_single_attempt_keeps_the_message_as_it_was() -> None:
    calls, call = failing([RetriableError("busy")])
    policy = RetryPolicy(attempts=1, first_wait=0, max_wait=0, jitter=0)
    with pytest.raises(RetriableError, match=r"^busy$"):
        with_retries(call, policy)
    assert len(calls) == 1


@pytest.mark.parametrize(
    "error", [PermanentError("refused"), ConfigError("bad"), ValueError("bug")], ids=type
)
def test_other_errors_are_not_retried(error: Exception) -> None:
    calls, call = failing([error])
    with pytest.raises(type(error), match=f"^{error}$"):
        with_retries(call, NO_WAIT)
    assert len(calls) == 1


def test_only_the_named_retriable_errors_are_retried() -> None:
    calls, call = failing([RetriableError("limit used up")])
    with pytest.raises(RetriableError, match=r"^limit used up$"):
        with_retries(call, NO_WAIT, retriable=(Busy,))
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"attempts": 0}, "retry attempts must be at least 1 (got 0)"),
        ({"first_wait": -1}, "retry waits must not be negative"),
        ({"max_wait": -1}, "retry waits must not be negative"),
        ({"jitter": -0.5}, "retry waits must not be negative"),
    ],
    ids=["no attempt", "negative first wait", "negative max wait", "negative jitter"],
)
def test_a_policy_is_checked_when_made(fields: dict[str, float], message: str) -> None:
    values = {"attempts": 2, "first_wait": 0.1, "max_wait": 1.0, "jitter": 0.1} | fields
    with pytest.raises(ConfigError, match=re.escape(message)):
        RetryPolicy(**values)


def test_each_client_keeps_its_own_defaults() -> None:
    assert RetryPolicy(attempts=4, first_wait=0.5, max_wait=8.0, jitter=0.5) == SOAP_RETRY
    assert SAGE_X3_RETRY == SOAP_RETRY
    assert RetryPolicy(attempts=5, first_wait=1.0, max_wait=60.0, jitter=1.0) == SALESFORCE_RETRY
