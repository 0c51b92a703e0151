"""How a SOAP source pages through its records, and how hard a failed call is retried."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from connectors.errors import ConfigError
from connectors.retry import RetryPolicy

__all__ = ["RETRIABLE_FAULT_CODES", "SOAP_RETRY", "SoapPaging"]

# SOAP 1.1 fault codes (the part after the namespace prefix) that mean "try again later".
# Every other fault (`Client.*`, other `Server.*` codes) is permanent: retrying the same
# request cannot change the answer.
RETRIABLE_FAULT_CODES = frozenset({"Server.Busy", "Server.Unavailable", "Server.Timeout"})


@dataclass(frozen=True)
class SoapPaging:
    """How an operation pages, named by its own argument and response fields.

    Two schemes:

    - `page_number`: the operation takes a page number (`page_argument`, e.g. `pageNumber`,
      the first page being `first_page`) and a page size. The pull stops when
      `has_more_path` (a dotted path in the response to a boolean, e.g. `hasMore`) is false,
      or, without it, when a page holds fewer than `page_size` records.
    - `continuation_token`: the first call goes without a token; each response carries the
      next token at `token_path` (e.g. `nextContinuationToken`), sent back as
      `token_argument` (e.g. `continuationToken`). The pull stops when the token is absent
      or empty. A token the service repeats is refused (it would loop forever).

    Attributes:
        kind: `page_number` or `continuation_token`.
        page_size: records asked for per call, sent as `page_size_argument`.
        page_size_argument: the operation's page size argument (`pageSize`).
        page_argument: the page number argument (`page_number` only).
        first_page: the number of the first page, 1 or 0 (`page_number` only).
        has_more_path: response path of the "more pages follow" flag (`page_number` only;
            optional).
        token_argument: the continuation token argument (`continuation_token` only).
        token_path: response path of the next token (`continuation_token` only).
    """

    kind: Literal["page_number", "continuation_token"]
    page_size: int = 100
    page_size_argument: str = "pageSize"
    page_argument: str = "pageNumber"
    first_page: int = 1
    has_more_path: str | None = None
    token_argument: str = "continuationToken"
    token_path: str = "nextContinuationToken"

    def __post_init__(self) -> None:
        if self.kind not in ("page_number", "continuation_token"):
            raise ConfigError(
                f"paging kind `{self.kind}` is unknown — use `page_number` or `continuation_token`"
            )
        if self.page_size < 1:
            raise ConfigError(f"paging page_size must be at least 1 (got {self.page_size})")
        if self.first_page not in (0, 1):
            raise ConfigError(f"paging first_page must be 0 or 1 (got {self.first_page})")
        for name in ("page_size_argument", "page_argument", "token_argument", "token_path"):
            if not getattr(self, name):
                raise ConfigError(f"paging {name} must not be empty")


# How hard a SOAP call (and the WSDL load) is retried unless the caller says otherwise.
SOAP_RETRY = RetryPolicy(attempts=4, first_wait=0.5, max_wait=8.0, jitter=0.5)
