"""How every connector retries a call that failed with a transient fault.

One policy type and one tenacity wrapper serve the SOAP, Sage X3 and Salesforce clients; each
client keeps its own defaults as a named `RetryPolicy` constant beside its models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from connectors.errors import ConfigError, RetriableError

__all__ = ["ONE_ATTEMPT", "RetryPolicy", "with_retries"]

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of a call that failed with a transient fault (timeout, 5xx, 429, busy fault).

    Waits grow exponentially from `first_wait` up to `max_wait` seconds, each with up to
    `jitter` seconds added at random, for `attempts` calls in all (the first included).
    """

    attempts: int
    first_wait: float
    max_wait: float
    jitter: float

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ConfigError(f"retry attempts must be at least 1 (got {self.attempts})")
        if min(self.first_wait, self.max_wait, self.jitter) < 0:
            raise ConfigError("retry waits must not be negative")


# For calls whose caller retries itself: the push's outbox resends whole calls, reading the
# peer back between attempts, so its sinks make one attempt each (no retries nested in retries).
ONE_ATTEMPT = RetryPolicy(attempts=1, first_wait=0, max_wait=0, jitter=0)


def with_retries(
    function: Callable[[], T],
    policy: RetryPolicy,
    *,
    retriable: tuple[type[BaseException], ...] = (RetriableError,),
) -> T:
    """`function()`, called again as `policy` says while it raises one of `retriable`.

    Any other exception goes through at once. When the attempts are used up, the last error is
    raised as it was (same class, same cause), its message ending `(gave up after N attempts)`
    when more than one attempt was made.
    """
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.attempts),
        wait=tenacity.wait_exponential_jitter(
            multiplier=policy.first_wait, max=policy.max_wait, jitter=policy.jitter
        ),
        retry=tenacity.retry_if_exception_type(retriable),
        reraise=True,
    )
    try:
        return retrying(function)
    except retriable as error:
        if policy.attempts > 1:
            error.args = (f"{error} (gave up after {policy.attempts} attempts)",)
        raise
